"""Engine invariants (spec 01 §12) and behavioural checks, on the toy step-time backend.

The toy backend (``BACKEND_CONSTANT``) charges ``base + per_prefill * prefill_tokens
+ per_decode * decode_requests`` microseconds per step, so timelines can be worked
out by hand.  Random workloads are built column by column from a seeded numpy RNG;
each run is checked for request conservation, KV block conservation, causality,
clock bounds and determinism, and compared request by request with a plain-Python
reference instance written from the spec (bottom of this file, built on the naive
KV twin in tests/naive_kv.py).  Named scenarios pin the schedulers, preemption,
chunked prefill, the prefix cache, the horizon, deadlines and the max-model-len caps.
"""
import heapq
import math
from dataclasses import dataclass

import numpy as np
import pytest

from blis.engine import EngineConfig, Simulation
from blis.kernels import layout as Lo
from blis.kernels.latency import BACKEND_CONSTANT
from blis.requests import RequestTable

from naive_kv import NaiveKVCache, NaiveRequest, request_tokens

SLO_NAMES = ["", "critical", "standard", "batch", "sheddable", "background"]
#: default horizon of every run here: all workloads finish within ~1 s of simulated time, so
#: a regression that livelocks (e.g. leaked KV blocks) fails an assertion instead of hanging
SAFETY_HORIZON_US = 10 ** 8


@dataclass(frozen=True, eq=False)
class ToyLatency:
    """Mimics ``blis.latency.LatencyModel`` for the toy backend."""

    params: np.ndarray
    code: int = BACKEND_CONSTANT
    queueing_alpha0: float = 100.0
    queueing_alpha1: float = 0.0
    otpt_us: int = 50
    post_decode_us: int = 0


def toy(base_us=1000.0, per_prefill_token_us=0.0, per_decode_us=0.0, **kw):
    return ToyLatency(params=np.array([base_us, per_prefill_token_us, per_decode_us], np.float64), **kw)


def make_table(arrival_us, input_len, output_len, *, slo=None, deadline_us=None, group=None,
               prefix_len=None, max_output_len=None, content_seed=None):
    """A RequestTable from explicit columns (ids 0..n-1; prefix groups g1, g2, ...)."""
    n = len(arrival_us)
    if content_seed is None:
        content_seed = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    cols = dict(request_id=np.arange(n), arrival_us=arrival_us, input_len=input_len,
                output_len=output_len, content_seed=content_seed)
    names = {"slo_class": list(SLO_NAMES)}
    gseeds = np.zeros(1, np.uint64)
    if slo is not None:
        cols["slo_class"] = [SLO_NAMES.index(s) for s in slo]
    if deadline_us is not None:
        cols["deadline_us"] = deadline_us
    if max_output_len is not None:
        cols["max_output_len"] = max_output_len
    if group is not None:
        cols["prefix_group"] = group
        cols["prefix_len"] = prefix_len
        ng = int(max(group)) + 1
        names["prefix_group"] = [""] + [f"g{k}" for k in range(1, ng)]
        gseeds = np.array([0] + [1000003 * k + 7 for k in range(1, ng)], np.uint64)
    t = RequestTable(cols, names, gseeds)
    t.validate()
    return t


def random_table(seed, n=40, *, n_groups=2, deadline_frac=0.0, max_in=80, max_out=20,
                 gap_us=400, max_output_frac=0.0):
    """A random workload: prefix groups, SLO classes, optional deadlines and max_tokens,
    and a few requests with identical content (full-prompt cache hits)."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.integers(0, max(n * gap_us, 1), n))
    ilen = rng.integers(1, max_in + 1, n)
    olen = rng.integers(0, max_out + 1, n)
    group = rng.integers(0, n_groups + 1, n)
    group_plen = rng.integers(min(8, max_in), max_in + 1, n_groups + 1)
    plen = np.where(group > 0, np.minimum(ilen, group_plen[group]), 0)
    deadline = np.where(rng.random(n) < deadline_frac, arrival + rng.integers(1, 30000, n), 0)
    max_out_len = np.where(rng.random(n) < max_output_frac, rng.integers(1, max_out + 5, n), 0)
    pool = rng.integers(0, 2 ** 63, 4, dtype=np.int64).astype(np.uint64)
    cseed = np.where(rng.random(n) < 0.2, pool[rng.integers(0, 4, n)],
                     rng.integers(0, 2 ** 63, n, dtype=np.int64).astype(np.uint64))
    cols = dict(request_id=np.arange(n), arrival_us=arrival, input_len=ilen, output_len=olen,
                prefix_group=group, prefix_len=plen, slo_class=rng.integers(0, len(SLO_NAMES), n),
                deadline_us=deadline, max_output_len=max_out_len, content_seed=cseed)
    names = {"slo_class": list(SLO_NAMES),
             "prefix_group": [""] + [f"g{k}" for k in range(1, n_groups + 1)]}
    gseeds = np.concatenate([[0], rng.integers(1, 2 ** 63, n_groups, dtype=np.int64)]).astype(np.uint64)
    t = RequestTable(cols, names, gseeds)
    t.validate()
    return t


def simulate(table, lat=None, **cfg):
    cfg.setdefault("total_kv_blocks", 1000)
    cfg.setdefault("horizon_us", SAFETY_HORIZON_US)
    sim = Simulation(table, EngineConfig(**cfg), lat if lat is not None else toy())
    return sim, sim.run()


# ---------------------------------------------------------------- invariant checks
def assert_request_conservation(res, n_requests, finished):
    """INV-1 per instance and for the cluster; every request is in exactly one state."""
    c = res.cols
    st = c["state"].astype(np.int64)
    inst = c["instance"].astype(np.int64)
    assert len(st) == n_requests
    all_states = (Lo.ST_PENDING, Lo.ST_QUEUED, Lo.ST_RUNNING, Lo.ST_COMPLETED, Lo.ST_TIMED_OUT,
                  Lo.ST_DROPPED, Lo.ST_REJECTED, Lo.ST_ROUTE_REJECTED)
    assert set(np.unique(st).tolist()) <= set(all_states)
    totals = dict(completed=0, queued=0, running=0, dropped=0, timed_out=0)
    for i, x in enumerate(res.instances):
        m = inst == i
        cnt = {s: int(np.count_nonzero(st[m] == s)) for s in all_states}
        assert x.completed == cnt[Lo.ST_COMPLETED]
        assert x.still_queued == cnt[Lo.ST_QUEUED]
        assert x.still_running == cnt[Lo.ST_RUNNING]
        assert x.dropped == cnt[Lo.ST_DROPPED]
        assert x.timed_out == cnt[Lo.ST_TIMED_OUT]
        # routed requests still in the instance's arrival/queueing pipeline are "pending"
        assert x.injected == (x.completed + x.still_queued + x.still_running + x.dropped
                              + x.timed_out + cnt[Lo.ST_PENDING])
        mo = res.metrics_output(i)
        assert mo["injected_requests"] == (mo["completed_requests"] + mo["still_queued"]
                                           + mo["still_running"] + mo["dropped_unservable"]
                                           + mo["timed_out_requests"])
        assert mo["completed_requests"] == x.completed
        for key, v in (("completed", x.completed), ("queued", x.still_queued),
                       ("running", x.still_running), ("dropped", x.dropped),
                       ("timed_out", x.timed_out)):
            totals[key] += v
    mo = res.metrics_output(None)
    assert mo["completed_requests"] == totals["completed"]
    assert mo["still_queued"] == totals["queued"]
    assert mo["still_running"] == totals["running"]
    assert mo["dropped_unservable"] == totals["dropped"]
    assert mo["timed_out_requests"] == totals["timed_out"]
    assert mo["injected_requests"] == sum(totals.values())
    routed = int(np.count_nonzero(inst >= 0))
    assert sum(x.injected for x in res.instances) == routed
    unrouted = st[inst < 0]
    assert set(unrouted.tolist()) <= {Lo.ST_PENDING, Lo.ST_REJECTED, Lo.ST_ROUTE_REJECTED}
    if finished:
        assert set(st.tolist()) <= {Lo.ST_COMPLETED, Lo.ST_DROPPED, Lo.ST_TIMED_OUT}
        assert routed == n_requests
        assert mo["injected_requests"] == n_requests


def assert_kv_conservation(sim, finished):
    """INV-4 at the end of a run, on every instance: used + free == total, the free
    list has FreeBlockCnt entries, refcounts match the running requests' block lists."""
    ref, nxt = sim.kv[0], sim.kv[3]
    sb, sl = sim.kv[7], sim.kv[8]
    ins, rq = sim.ins, sim.rq
    for i in range(ins.shape[0]):
        total = int(ins[i, Lo.I_TOTAL_BLOCKS])
        free_cnt = int(ins[i, Lo.I_FREE_CNT])
        walk = []
        b = int(ins[i, Lo.I_FREE_HEAD])
        while b >= 0 and len(walk) <= total:
            walk.append(b)
            b = int(nxt[i, b])
        assert len(walk) == free_cnt and len(set(walk)) == free_cnt
        assert int(np.count_nonzero(ref[i, :total] > 0)) == total - free_cnt
        holders = np.zeros(total, np.int64)
        for r in np.flatnonzero((rq[Lo.R_INST] == i) & (rq[Lo.R_SLOT] >= 0)):
            assert rq[Lo.R_STATE, r] == Lo.ST_RUNNING, f"request {r} owns blocks but is not running"
            s = int(rq[Lo.R_SLOT, r])
            for b in sb[i, s, :sl[i, s]]:
                holders[b] += 1
        assert np.array_equal(holders, ref[i, :total].astype(np.int64))
        if finished:
            assert free_cnt == total
            assert sorted(walk) == list(range(total))


def assert_causality_and_clock(res, table, lat, finished):
    """INV-3/INV-5 on the result columns."""
    c = res.cols
    st = c["state"]
    arr = c["arrival_us"]
    ttft, e2e, sd = c["ttft_us"], c["e2e_us"], c["scheduling_delay_us"]
    olen = c["output_tokens"].astype(np.int64)
    ilen = c["input_tokens"].astype(np.int64)
    qt = (lat.queueing_alpha0 + lat.queueing_alpha1 * ilen).astype(np.int64)
    done = st == Lo.ST_COMPLETED
    assert np.all(arr >= 0)
    # completed requests were admitted after being queued, got a first token, then finished
    assert np.all(sd[done] >= qt[done])
    assert np.all(ttft[done] > sd[done])
    assert np.all(ttft[done] <= e2e[done])
    post = np.where(olen > 0, lat.post_decode_us, 0)
    assert np.array_equal(e2e[done], ttft[done] + c["itl_sum_us"][done] + post[done])
    # requests that never completed have no E2E; requests never admitted have no TTFT
    assert np.all(e2e[~done] == -1)
    assert np.all(ttft[sd < 0] == -1)
    never_queued = (st == Lo.ST_DROPPED) | (st == Lo.ST_PENDING)
    assert np.all(sd[never_queued] == -1)
    ended = max(x.sim_ended_us for x in res.instances)
    assert all(x.sim_ended_us >= 0 for x in res.instances)
    if finished and done.any():
        # RequestLeft = end of the completing step; E2E counts OTPT per output token on top
        left_lb = arr + e2e - np.maximum(olen, 1) * lat.otpt_us - post
        assert ended >= int(left_lb[done].max())
        has_ttft = ttft >= 0
        assert ended >= int((arr + ttft - lat.otpt_us)[has_ttft].max())
        assert ended >= int((arr + sd)[sd >= 0].max())


def assert_token_accounting(res, table, max_model_len):
    c = res.cols
    st = c["state"]
    ilen = c["input_tokens"].astype(np.int64)
    olen = c["output_tokens"].astype(np.int64)
    done = st == Lo.ST_COMPLETED
    capped = c["length_capped"]
    passed_guards = np.isin(st, [Lo.ST_COMPLETED, Lo.ST_QUEUED, Lo.ST_RUNNING, Lo.ST_TIMED_OUT])
    mo = res.metrics_output(None)
    assert mo["total_input_tokens"] == int(ilen[passed_guards].sum())
    out = c["output_tokens_done"].astype(np.int64)
    assert np.array_equal(out[done & ~capped], olen[done & ~capped])
    if max_model_len > 0:
        assert np.array_equal(out[done & capped], max_model_len - ilen[done & capped])
    assert mo["total_output_tokens"] == int(out[done].sum())
    assert mo["length_capped_requests"] == int(np.count_nonzero(capped))
    assert not np.any(capped & ~done)
    itl_div = np.where(done & ~capped, np.maximum(olen - 1, 1), 1)
    normal = done & ~capped & (olen > 0)
    assert np.allclose(c["itl_mean_us"][normal], c["itl_sum_us"][normal] / itl_div[normal])


def check_run(sim, res, table, lat, *, finished, max_model_len=0):
    assert_request_conservation(res, len(table), finished)
    assert_kv_conservation(sim, finished)
    assert_causality_and_clock(res, table, lat, finished)
    assert_token_accounting(res, table, max_model_len)


# ---------------------------------------------------------------- random workloads
RANDOM_CASES = {
    "fcfs-ample-kv": dict(),
    "fcfs-tiny-kv-preempts": dict(total_kv_blocks=7),
    "priority-preemption-priority-fcfs": dict(total_kv_blocks=8, scheduler="priority-fcfs",
                                              preemption_policy="priority"),
    "sjf-chunked-prefill": dict(scheduler="sjf", long_prefill_token_threshold=16,
                                max_num_batched_tokens=64, total_kv_blocks=10),
    "reverse-priority-max-model-len": dict(scheduler="reverse-priority", max_model_len=64,
                                           total_kv_blocks=9),
    "max-num-seqs-2-sjf": dict(scheduler="sjf", max_num_seqs=2, total_kv_blocks=12),
    "round-robin-3-instances-deadlines": dict(num_instances=3, routing=Lo.ROUTE_ROUND_ROBIN,
                                              total_kv_blocks=8, deadlines=True),
    "least-loaded-3-instances-tight": dict(num_instances=3, routing=Lo.ROUTE_LEAST_LOADED,
                                           total_kv_blocks=7, max_model_len=100, deadlines=True,
                                           preemption_policy="priority", scheduler="priority-fcfs"),
    "least-loaded-2-instances-block-4": dict(num_instances=2, routing=Lo.ROUTE_LEAST_LOADED,
                                             block_size=4, total_kv_blocks=26,
                                             long_prefill_token_threshold=8),
    "block-1-tiny": dict(block_size=1, total_kv_blocks=101, max_num_batched_tokens=48),
}


def _random_run(case, seed):
    cfg = dict(RANDOM_CASES[case])
    deadlines = cfg.pop("deadlines", False)
    mml = cfg.get("max_model_len", 0)
    table = random_table(seed, n=40, deadline_frac=0.4 if deadlines else 0.0,
                         max_output_frac=0.3 if mml else 0.0)
    # every request must fit the cache alone, else recompute preemption can loop forever
    B = cfg.get("block_size", 16)
    longest = mml if mml > 0 else int((table["input_len"].astype(np.int64) + table["output_len"]).max())
    assert -(-longest // B) <= cfg.get("total_kv_blocks", 1000)
    lat = toy(500.0, 2.0, 10.0, otpt_us=30, post_decode_us=7)
    sim, res = simulate(table, lat, **cfg)
    return table, lat, sim, res, mml


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", sorted(RANDOM_CASES))
def test_random_workload_keeps_every_invariant(case, seed):
    table, lat, sim, res, mml = _random_run(case, seed)
    check_run(sim, res, table, lat, finished=True, max_model_len=mml)


def test_random_workloads_exercise_preemption_timeouts_caps_and_cache_hits():
    # the random cases above are only meaningful if they reach these code paths
    seen = dict(preempt=0, timed_out=0, capped=0, hits=0, dropped=0, instances=set())
    for case in RANDOM_CASES:
        table, lat, sim, res, mml = _random_run(case, 1)
        mo = res.metrics_output(None)
        seen["preempt"] += mo["preemption_count"]
        seen["timed_out"] += mo["timed_out_requests"]
        seen["capped"] += mo["length_capped_requests"]
        seen["dropped"] += mo["dropped_unservable"]
        seen["hits"] += sum(x.cache_hits for x in res.instances)
        seen["instances"] |= set(res.cols["instance"].tolist())
    assert seen["preempt"] > 0 and seen["timed_out"] > 0 and seen["capped"] > 0
    assert seen["hits"] > 0 and seen["dropped"] > 0
    assert seen["instances"] == {0, 1, 2}


@pytest.mark.parametrize("case", ["least-loaded-3-instances-tight", "sjf-chunked-prefill"])
def test_same_inputs_give_identical_results_and_stdout(case):
    _, _, _, a, _ = _random_run(case, 3)
    _, _, _, b, _ = _random_run(case, 3)
    assert a.cols.keys() == b.cols.keys()
    for k in a.cols:
        assert np.array_equal(a.cols[k], b.cols[k]), k
    assert a.instances == b.instances
    assert a.stdout_text().encode() == b.stdout_text().encode()


def test_round_robin_assigns_request_i_to_instance_i_mod_n():
    table = random_table(5, n=20)
    sim, res = simulate(table, num_instances=3, routing=Lo.ROUTE_ROUND_ROBIN)
    assert np.array_equal(res.cols["instance"], np.arange(20) % 3)
    assert [x.injected for x in res.instances] == [7, 7, 6]


def test_least_loaded_spreads_a_simultaneous_burst_evenly():
    # a burst at t=0: routing sees only the in-flight counters, so loads stay balanced
    table = make_table([0] * 9, [32] * 9, [4] * 9)
    sim, res = simulate(table, num_instances=3, routing=Lo.ROUTE_LEAST_LOADED)
    assert np.bincount(res.cols["instance"], minlength=3).tolist() == [3, 3, 3]
    check_run(sim, res, table, toy(), finished=True)


# ---------------------------------------------------------------- worked timeline (§9.4)
WORKED_TIMELINE_STDOUT = """=== Simulation Metrics ===
{
  "instance_id": "cluster",
  "completed_requests": 1,
  "still_queued": 0,
  "still_running": 0,
  "injected_requests": 1,
  "total_input_tokens": 40,
  "total_output_tokens": 3,
  "vllm_estimated_duration_s": 0.0031,
  "responses_per_sec": 322.5806451612903,
  "tokens_per_sec": 967.741935483871,
  "e2e_mean_ms": 3.25,
  "e2e_p90_ms": 3.25,
  "e2e_p95_ms": 3.25,
  "e2e_p99_ms": 3.25,
  "ttft_mean_ms": 1.15,
  "ttft_p90_ms": 1.15,
  "ttft_p95_ms": 1.15,
  "ttft_p99_ms": 1.15,
  "itl_mean_ms": 1.05,
  "itl_p90_ms": 1.05,
  "itl_p95_ms": 1.05,
  "itl_p99_ms": 1.05,
  "scheduling_delay_p99_ms": 0.1,
  "preemption_count": 0,
  "dropped_unservable": 0,
  "length_capped_requests": 0,
  "timed_out_requests": 0
}
"""


def test_worked_timeline_of_spec_9_4():
    # QueueingTime 100, OTPT 50, StepTime 1000; one request L=40, N=3, B=16, ample KV
    table = make_table([0], [40], [3])
    sim, res = simulate(table, toy(1000.0), block_size=16)
    c = res.cols
    assert c["state"][0] == Lo.ST_COMPLETED
    assert c["scheduling_delay_us"][0] == 100
    assert c["ttft_us"][0] == 1150            # 100 + 1000 + 50
    assert c["itl_sum_us"][0] == 2100         # [1050, 1050]
    assert c["itl_mean_us"][0] == 1050.0
    assert c["e2e_us"][0] == 3250             # 1150 + 2100
    assert c["output_tokens_done"][0] == 3
    assert res.instances[0].sim_ended_us == 3100   # RequestLeft of step 3
    assert res.instances[0].cache_misses == 3      # 16,16,8 tokens; o0..o2 top up block 3
    assert res.stdout_text() == WORKED_TIMELINE_STDOUT
    check_run(sim, res, table, toy(1000.0), finished=True)


def test_zero_cost_steps_still_advance_the_clock_by_one_tick():
    table = make_table([0], [40], [3])
    lat = toy(0.0)
    sim, res = simulate(table, lat)
    assert res.cols["ttft_us"][0] == 100 + 1 + 50
    assert res.cols["e2e_us"][0] == 151 + 2 * 51
    assert res.instances[0].sim_ended_us == 103
    check_run(sim, res, table, lat, finished=True)


# ---------------------------------------------------------------- schedulers
def test_sjf_admits_the_shortest_prompt_first_when_only_one_fits():
    table = make_table([0, 0], [100, 20], [2, 2])
    _, fcfs = simulate(table, max_num_seqs=1, scheduler="fcfs")
    _, sjf = simulate(table, max_num_seqs=1, scheduler="sjf")
    assert fcfs.cols["scheduling_delay_us"].tolist() == [100, 2100]
    assert sjf.cols["scheduling_delay_us"].tolist() == [2100, 100]
    assert sjf.cols["ttft_us"].tolist() == [3150, 1150]


@pytest.mark.parametrize("scheduler, expected", [
    ("fcfs", [100, 2100, 4100]),
    ("priority-fcfs", [2100, 100, 4100]),      # critical, standard, batch
    ("reverse-priority", [2100, 4100, 100]),   # batch, standard, critical
    ("sjf", [100, 2100, 4100]),                # equal lengths: arrival, then id
])
def test_scheduler_orders_admissions_by_its_key(scheduler, expected):
    table = make_table([0, 0, 0], [30, 30, 30], [2, 2, 2], slo=["standard", "critical", "batch"])
    sim, res = simulate(table, max_num_seqs=1, scheduler=scheduler)
    assert res.cols["scheduling_delay_us"].tolist() == expected
    check_run(sim, res, table, toy(), finished=True)


def test_priority_fcfs_breaks_class_ties_by_arrival_then_request_name():
    # ids 2 and 10 arrive together: "request_10" < "request_2" byte-wise
    ids = np.array([5, 2, 10])
    t = RequestTable(dict(request_id=ids, arrival_us=[0, 10, 10], input_len=[30, 30, 30],
                          output_len=[2, 2, 2], slo_class=[3, 3, 3],
                          content_seed=np.array([1, 2, 3], np.uint64)),
                     {"slo_class": list(SLO_NAMES)})
    # request_5 is admitted alone at t=100; the other two wait and are ordered by name
    sim, res = simulate(t, max_num_seqs=1, scheduler="priority-fcfs")
    sd = dict(zip(ids.tolist(), (res.cols["scheduling_delay_us"] + res.cols["arrival_us"]).tolist()))
    assert sd[5] < sd[10] < sd[2]


# ---------------------------------------------------------------- preemption
@pytest.mark.parametrize("policy", ["fcfs", "priority"])
def test_preemption_completes_every_request_under_kv_pressure(policy):
    table = random_table(11, n=30, max_in=60, max_out=40)
    lat = toy(300.0, 1.0, 5.0)
    sim, res = simulate(table, lat, total_kv_blocks=7, preemption_policy=policy,
                        scheduler="priority-fcfs" if policy == "priority" else "fcfs")
    mo = res.metrics_output(None)
    assert mo["preemption_count"] > 0
    assert mo["completed_requests"] == 30
    check_run(sim, res, table, lat, finished=True)


@pytest.mark.parametrize("policy, first_done", [("fcfs", 0), ("priority", 1)])
def test_preemption_victim_is_the_tail_or_the_least_urgent_request(policy, first_done):
    # A (batch) and B (critical) decode side by side until 4 blocks run out:
    # fcfs evicts the batch tail (B); priority evicts the least urgent (A).
    table = make_table([0, 0], [16, 16], [40, 40], slo=["batch", "critical"])
    sim, res = simulate(table, total_kv_blocks=4, preemption_policy=policy)
    c = res.cols
    victim = 1 - first_done
    assert res.metrics_output(None)["preemption_count"] >= 1
    assert c["scheduling_delay_us"][first_done] == 100               # never re-admitted
    assert c["scheduling_delay_us"][victim] > c["ttft_us"][first_done]  # re-admitted later
    assert c["e2e_us"][first_done] == 1150 + 39 * 1050
    assert (c["arrival_us"] + c["e2e_us"])[first_done] < (c["arrival_us"] + c["e2e_us"])[victim]
    check_run(sim, res, table, toy(), finished=True)


# ---------------------------------------------------------------- chunked prefill
@pytest.mark.parametrize("cfg, prefill_steps", [
    (dict(), 1),
    (dict(long_prefill_token_threshold=64), 8),
    (dict(long_prefill_token_threshold=100), 6),
    (dict(max_num_batched_tokens=128), 4),
    (dict(long_prefill_token_threshold=200, max_num_batched_tokens=128), 4),
])
def test_long_prompt_prefill_is_chunked_over_several_steps(cfg, prefill_steps):
    table = make_table([0], [512], [3])
    sim, res = simulate(table, **cfg)
    ttft = 100 + prefill_steps * 1000 + 50
    assert res.cols["ttft_us"][0] == ttft
    assert res.cols["e2e_us"][0] == ttft + 2 * 1050
    check_run(sim, res, table, toy(), finished=True)


def test_chunked_prefill_charges_only_each_steps_tokens():
    table = make_table([0], [100], [1])
    lat = toy(1000.0, 10.0)
    sim, res = simulate(table, lat, long_prefill_token_threshold=40)
    # chunks 40, 40, 20 -> steps of 1400, 1400, 1200
    assert res.cols["ttft_us"][0] == 100 + 1400 + 1400 + 1200 + 50


# ---------------------------------------------------------------- prefix cache
def test_shared_prefix_is_served_from_cache_and_only_uncached_tokens_are_charged():
    # A and B share a 64-token prefix (4 blocks of 16). B is admitted while A decodes.
    table = make_table([0, 50], [80, 80], [3, 3], group=[1, 1], prefix_len=[64, 64])
    lat = toy(1000.0, 10.0)
    sim, res = simulate(table, lat)
    c = res.cols
    assert c["ttft_us"][0] == 100 + 1000 + 800 + 50
    # step 2 starts at 1900: A decodes, B prefills 16 uncached tokens
    assert c["scheduling_delay_us"][1] == 1900 - 50
    assert c["ttft_us"][1] == 1900 + 1000 + 160 + 50 - 50
    assert res.instances[0].cache_hits == 4
    check_run(sim, res, table, lat, finished=True)


# ---------------------------------------------------------------- horizon
def test_short_horizon_leaves_requests_unfinished_and_ends_at_or_before_it():
    n = 60
    table = make_table(np.arange(n) * 90, [40] * n, [50] * n)   # last arrivals after 5000
    sim, res = simulate(table, horizon_us=5000, max_num_seqs=4)
    mo = res.metrics_output(None)
    c = res.cols
    assert mo["still_queued"] > 0 and mo["still_running"] > 0
    assert mo["completed_requests"] < n
    assert res.instances[0].sim_ended_us <= 5000
    pending = c["state"] == Lo.ST_PENDING
    # arrival 4950: routed, but its QueuedEvent (5050) is past the horizon
    assert pending[55] and c["instance"][55] == 0
    # arrivals after the horizon are never routed
    assert np.all(pending[56:]) and np.all(c["instance"][56:] == -1)
    assert not np.any(pending[:55])
    check_run(sim, res, table, toy(), finished=False)


def test_events_exactly_at_the_horizon_still_run():
    # the single request completes in the step at 2100; RequestLeft at 3100 == horizon
    table = make_table([0], [40], [3])
    sim, res = simulate(table, horizon_us=3100)
    assert res.cols["state"][0] == Lo.ST_COMPLETED
    assert res.instances[0].sim_ended_us == 3100
    sim, res = simulate(table, horizon_us=3099)
    assert res.cols["state"][0] == Lo.ST_COMPLETED   # completion is decided at step start
    assert res.instances[0].sim_ended_us == 2100     # RequestLeft(3100) is past the horizon


# ---------------------------------------------------------------- deadlines
@pytest.mark.parametrize("deadline, state, ttft, sim_ended", [
    (50, Lo.ST_TIMED_OUT, -1, 100),         # past due at enqueue (t=100): never queued
    (100, Lo.ST_TIMED_OUT, -1, 100),
    (101, Lo.ST_TIMED_OUT, 1150, 1100),     # cancelled while running; TTFT is kept
    (2099, Lo.ST_TIMED_OUT, 1150, 2100),    # the pending step at 2100 still fires
    (2100, Lo.ST_COMPLETED, 1150, 3100),    # step (prio 3) before timeout (prio 6)
    (2500, Lo.ST_COMPLETED, 1150, 3100),    # inside (now, now+adv] of the completing step
    (5000, Lo.ST_COMPLETED, 1150, 3100),    # lazily cancelled: does not move the clock
])
def test_deadline_times_out_unfinished_requests_and_releases_their_kv(deadline, state, ttft, sim_ended):
    table = make_table([0], [40], [3], deadline_us=[deadline])
    sim, res = simulate(table)
    mo = res.metrics_output(None)
    assert res.cols["state"][0] == state
    assert res.cols["ttft_us"][0] == ttft
    assert res.instances[0].sim_ended_us == sim_ended
    assert mo["timed_out_requests"] == (1 if state == Lo.ST_TIMED_OUT else 0)
    assert mo["total_input_tokens"] == 40
    assert sim.ins[0, Lo.I_FREE_CNT] == 1000
    check_run(sim, res, table, toy(), finished=True)


def test_timed_out_request_frees_its_blocks_for_the_queue():
    # A holds most of a tiny cache and times out; B (waiting) then gets admitted
    table = make_table([0, 10], [60, 60], [30, 5], deadline_us=[3000, 0])
    sim, res = simulate(table, total_kv_blocks=5)
    c = res.cols
    assert c["state"].tolist() == [Lo.ST_TIMED_OUT, Lo.ST_COMPLETED]
    assert c["scheduling_delay_us"][1] + c["arrival_us"][1] >= 3000
    check_run(sim, res, table, toy(), finished=True)


# ---------------------------------------------------------------- max-model-len / guards
def test_max_model_len_caps_output_and_drops_unservable_prompts():
    # mml 45: r0 capped after 5 output tokens; r1 (L >= mml) and r2 (L + max_tokens > mml)
    # dropped; r3 (L = mml - 1) capped right after prefill with one output token
    table = make_table([0, 0, 0, 0], [40, 50, 40, 44], [10, 3, 3, 3], max_output_len=[0, 0, 10, 0])
    sim, res = simulate(table, max_model_len=45)
    c = res.cols
    mo = res.metrics_output(None)
    assert c["state"].tolist() == [Lo.ST_COMPLETED, Lo.ST_DROPPED, Lo.ST_DROPPED, Lo.ST_COMPLETED]
    assert c["length_capped"].tolist() == [True, False, False, True]
    assert c["output_tokens_done"].tolist() == [5, 0, 0, 1]
    assert c["e2e_us"][0] == 1150 + 4 * 1050
    assert c["itl_mean_us"][0] == 4 * 1050 / 3     # len(ITL) - 1 for capped requests
    assert mo["length_capped_requests"] == 2 and mo["dropped_unservable"] == 2
    assert mo["total_input_tokens"] == 84 and mo["total_output_tokens"] == 6
    check_run(sim, res, table, toy(), finished=True, max_model_len=45)


def test_prompt_larger_than_the_whole_cache_is_dropped():
    table = make_table([0, 0], [40, 32], [3, 3])
    sim, res = simulate(table, total_kv_blocks=2)   # ceil(40/16) = 3 > 2
    assert res.cols["state"].tolist() == [Lo.ST_DROPPED, Lo.ST_COMPLETED]
    assert res.metrics_output(None)["dropped_unservable"] == 1
    assert "Dropped Unservable: 1" in res.stdout_text()
    check_run(sim, res, table, toy(), finished=True)


def test_zero_output_request_completes_in_its_prefill_step():
    table = make_table([0], [40], [0])
    sim, res = simulate(table)
    c = res.cols
    assert c["state"][0] == Lo.ST_COMPLETED
    assert c["ttft_us"][0] == c["e2e_us"][0] == 1150
    assert c["output_tokens_done"][0] == 0
    assert res.instances[0].sim_ended_us == 1100
    check_run(sim, res, table, toy(), finished=True)


# ---------------------------------------------------------------- plain-Python reference
# One instance written straight from spec 01 §2-§5 and §9.1 (cluster driver, default
# admission/routing latencies), on top of the naive KV twin.  Requests are plain objects,
# the wait queue and the batch are lists, events go through heapq.
class _RefRequest:
    def __init__(self, table, k):
        c = table.cols
        self.idx = k
        self.name = f"request_{int(c['request_id'][k])}"
        self.arrival = int(c["arrival_us"][k])
        self.L, self.N = int(c["input_len"][k]), int(c["output_len"][k])
        g = int(c["prefix_group"][k])
        inp, out = request_tokens(int(c["prefix_len"][k]), self.L, self.N,
                                  int(table.group_seeds[g]), int(c["content_seed"][k]))
        self.kv = NaiveRequest(k, inp, out)
        self.max_out = int(c["max_output_len"][k])
        self.deadline = int(c["deadline_us"][k])
        slo = table.names["slo_class"][int(c["slo_class"][k])]
        base = {"critical": 4, "standard": 3, "batch": -1, "sheddable": -2, "background": -3}
        self.priority = max([3] + list(base.values())) - base.get(slo, 3)
        self.state = "pending"
        self.pi = self.new = 0
        self.ttft_set, self.first, self.itl = False, -1, []
        self.sched, self.e2e, self.out_done, self.capped = -1, -1, 0, False


class ReferenceInstance:
    """Spec-level single instance: ``run()`` fills per-request fields and ``counters``."""

    def __init__(self, table, lat, *, total_kv_blocks, block_size=16, max_num_seqs=256,
                 max_num_batched_tokens=2048, long_prefill_token_threshold=0, max_model_len=0,
                 horizon_us=2 ** 63 - 1, scheduler="fcfs", preemption_policy="fcfs"):
        self.reqs = [_RefRequest(table, k) for k in range(len(table))]
        self.lat = lat
        self.B = block_size
        self.kvc = NaiveKVCache(total_kv_blocks, block_size)
        self.max_seqs, self.budget0 = max_num_seqs, max_num_batched_tokens
        self.thr, self.mml, self.horizon = long_prefill_token_threshold, max_model_len, horizon_us
        self.scheduler, self.preemption = scheduler, preemption_policy
        self.wq, self.batch, self.heap, self.computed = [], [], [], {}
        self.seq = 0
        self.step_pending = False
        self.step_count = 0
        self.n = dict(completed=0, dropped=0, timed_out=0, capped=0, preempted=0, alloc_fail=0,
                      in_tokens=0, out_tokens=0)
        self.clock = 0

    def _push(self, t, prio, kind, r=None):
        self.seq += 1
        heapq.heappush(self.heap, (t, prio, self.seq, kind, r))

    def _alloc(self, r, start, end, cached):
        r.kv.pi = r.pi
        return self.kvc.allocate(r.kv, start, end, cached)

    # ---- §4
    def _enqueue(self, r, now):
        if r.state == "timed_out":
            return
        L, mml = r.L, self.mml
        if r.max_out == 0 and mml > 0 and L < mml:
            r.max_out = mml - L
        drop = r.max_out < 0
        if not drop and mml > 0:
            drop = L >= mml or (r.max_out > 0 and L + r.max_out > mml)
        if drop or -(-L // self.B) > self.kvc.total_blocks:
            r.state = "dropped"
            self.n["dropped"] += 1
            return
        self.n["in_tokens"] += L
        if 0 < r.deadline <= now:
            r.state = "timed_out"
            self.n["timed_out"] += 1
            return
        r.state = "queued"
        self.wq.append(r)
        if 0 < r.deadline <= self.horizon:
            self._push(r.deadline, 6, "timeout", r)

    # ---- §5.2
    def _preempt_for_tokens(self, r, n, req_index, fb):
        adj = 0
        while True:
            if self._alloc(r, r.pi, r.pi + n, []):
                return True, adj
            if not self.batch:
                return False, adj
            fb["preempted"] = True
            v_idx = len(self.batch) - 1
            if self.preemption == "priority":
                for k in range(len(self.batch) - 2, -1, -1):
                    c, v = self.batch[k], self.batch[v_idx]
                    if c.priority > v.priority or (c.priority == v.priority and c.arrival > v.arrival):
                        v_idx = k
            v = self.batch.pop(v_idx)
            if v_idx < req_index - adj:
                adj += 1
            self.n["preempted"] += 1
            if v.new > 0:
                fb["budget"] += v.new
                v.new = 0
            v.state, v.pi, v.itl, v.ttft_set = "queued", 0, [], False
            self.kvc.release(v.kv)
            self.computed.pop(v.idx, None)
            self.wq.insert(0, v)
            if v is r:
                return False, adj

    def _form_batch(self):
        fb = dict(budget=self.budget0, preempted=False)
        thr, mml = self.thr, self.mml
        for r in self.batch:
            r.new = 0
        i = 0
        while i < len(self.batch):
            if fb["budget"] <= 0:
                break
            r = self.batch[i]
            pi0 = r.pi
            n = r.L - r.pi
            if n > 0:
                if 0 < thr < n:
                    n = thr
                n = min(n, fb["budget"])
                if mml > 0:
                    n = min(n, max(mml - 1 - r.pi, 0))
                ok, adj = self._preempt_for_tokens(r, n, i, fb)
                i -= adj
                if not ok:
                    break
                fb["budget"] -= n
                r.new = n
                self.computed[r.idx] += n
            if pi0 >= r.L and r.N > 0 and not (mml > 0 and pi0 + 1 > mml - 1):
                ok, adj = self._preempt_for_tokens(r, 1, i, fb)
                i -= adj
                if not ok:
                    break
                fb["budget"] -= 1
                r.new = 1
                self.computed[r.idx] += 1
            i += 1
        newly = []
        while (len(self.batch) < self.max_seqs and self.wq and fb["budget"] > 0
               and not fb["preempted"]):
            nx = self.wq[0]
            cached = self.kvc.get_cached_blocks(nx.kv.input)
            start = len(cached) * self.B
            n = nx.L - start
            if 0 < thr < n:
                n = thr
            n = min(n, fb["budget"])
            if mml > 0:
                n = min(n, max(mml - 1 - start, 0))
            if not self._alloc(nx, start, start + n, cached):
                break
            self.wq.pop(0)
            self.batch.append(nx)
            newly.append(nx)
            fb["budget"] -= n
            nx.state, nx.new = "running", n
            self.computed[nx.idx] = n + start
        return newly

    # ---- §5
    def _step(self, now):
        if not self.batch and not self.wq:
            self.step_pending = False
            return
        self.step_count += 1
        keys = {"priority-fcfs": lambda r: (r.priority, r.arrival, r.name),
                "sjf": lambda r: (r.L, r.arrival, r.name),
                "reverse-priority": lambda r: (-r.priority, r.arrival, r.name)}
        if self.scheduler in keys:
            self.wq.sort(key=keys[self.scheduler])
        for r in self._form_batch():
            r.sched = now - r.arrival
        base, per_pf, per_dc = (float(x) for x in self.lat.params)
        t, n_dc = base, 0
        for r in self.batch:
            if r.new > 0:
                if r.pi < r.L:
                    t += per_pf * r.new
                elif r.N > 0:
                    n_dc += 1
        adv = max(1, int(t + per_dc * n_dc))
        otpt = self.lat.otpt_us
        for r in self.batch:
            if r.pi < r.L:
                r.pi = self.computed[r.idx]
            elif r.new > 0:
                r.pi += 1
                r.itl.append(adv + otpt)
            if r.pi == r.L and not r.ttft_set:
                r.ttft_set, r.first = True, now + adv + otpt - r.arrival
        remaining = []
        for r in self.batch:
            normal = r.pi >= r.L + max(r.N, 1) - 1
            if normal or (self.mml > 0 and r.pi >= self.mml - 1):
                if normal and r.N > 0 and r.pi < r.L + r.N:
                    if not self._alloc(r, r.pi, r.pi + 1, []):
                        self.n["alloc_fail"] += 1
                if not normal:
                    self.n["capped"] += 1
                    r.capped = True
                r.state = "completed"
                self.kvc.release(r.kv)
                self._push(now + adv, 5, "left")
                self._record(r)
            else:
                remaining.append(r)
        self.batch = remaining
        self.step_pending = bool(remaining or self.wq)
        if self.step_pending:
            self._push(now + adv, 3, "step")

    def _record(self, r):
        self.n["completed"] += 1
        dec = r.pi - r.L
        if dec < r.N:
            dec += 1
        r.out_done = max(dec, 0)
        self.n["out_tokens"] += r.out_done
        r.e2e = r.first + sum(r.itl) + (self.lat.post_decode_us if r.N > 0 else 0)

    def _timeout(self, r, t):
        if r.state in ("completed", "timed_out"):
            return
        was_running = r.state == "running"
        r.state = "timed_out"
        self.n["timed_out"] += 1
        self.kvc.release(r.kv)
        self.computed.pop(r.idx, None)
        if was_running:
            self.batch = [x for x in self.batch if x is not r]
        elif r in self.wq:
            self.wq.remove(r)
        if not self.batch and not self.step_pending and self.wq:
            self._push(t, 3, "step")
            self.step_pending = True

    def run(self):
        arrivals = sorted(self.reqs, key=lambda r: r.arrival)
        a = 0
        while True:
            ti = self.heap[0][0] if self.heap else None
            if a < len(arrivals) and (ti is None or arrivals[a].arrival <= ti):
                r = arrivals[a]   # cluster events at time T run before instance events at T
                if r.arrival > self.horizon:
                    break
                a += 1
                self._push(r.arrival, 0, "arrival", r)
                continue
            if ti is None or ti > self.horizon:
                break
            t, _, _, kind, r = heapq.heappop(self.heap)
            if kind == "timeout" and r.state == "completed":
                continue      # lazily cancelled: the clock does not move
            self.clock = t
            if kind == "arrival":
                qt = int(0.0 + self.lat.queueing_alpha0 + self.lat.queueing_alpha1 * r.L)
                self._push(t + qt, 1, "queued", r)
            elif kind == "queued":
                self._enqueue(r, t)
                if not self.step_pending and self.wq:
                    self._push(t, 3, "step")
                    self.step_pending = True
            elif kind == "step":
                self._step(t)
            elif kind == "timeout":
                self._timeout(r, t)
        self.sim_ended = min(self.clock, self.horizon)
        return self


_REF_STATE = {"pending": Lo.ST_PENDING, "queued": Lo.ST_QUEUED, "running": Lo.ST_RUNNING,
              "completed": Lo.ST_COMPLETED, "timed_out": Lo.ST_TIMED_OUT, "dropped": Lo.ST_DROPPED}

_ENGINE_ONLY_KEYS = ("num_instances", "routing")


def _subset(table, idx):
    return RequestTable({k: v[idx] for k, v in table.cols.items()},
                        {k: list(v) for k, v in table.names.items()}, table.group_seeds)


def _spec_mean_ms(xs):
    total = 0.0
    for x in sorted(xs):
        total += float(x)
    return (total / len(xs)) / 1000 if xs else 0.0


def _spec_percentile_ms(xs, p):
    xs = sorted(xs)
    if not xs:
        return 0.0
    rank = p / 100.0 * (len(xs) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    if lo == hi:
        return xs[lo] / 1000
    return xs[lo] / 1000 + (xs[hi] - xs[lo]) * (rank - lo) / 1000


def assert_matches_reference(res, table, lat, cfg):
    """Each instance's requests and counters equal the reference run on that instance's
    routed requests (instances share nothing once routing is decided)."""
    c = res.cols
    ref_cfg = {k: v for k, v in cfg.items() if k not in _ENGINE_ONLY_KEYS}
    for i, x in enumerate(res.instances):
        idx = np.flatnonzero(c["instance"] == i)
        ref = ReferenceInstance(_subset(table, idx), lat, **ref_cfg).run()
        for r in ref.reqs:
            k = idx[r.idx]
            got = (int(c["state"][k]), int(c["ttft_us"][k]), int(c["e2e_us"][k]),
                   int(c["scheduling_delay_us"][k]), int(c["output_tokens_done"][k]),
                   bool(c["length_capped"][k]))
            want = (_REF_STATE[r.state], r.first, r.e2e, r.sched, r.out_done, r.capped)
            assert got == want, f"request {k} (instance {i}): got {got}, reference {want}"
            if r.state == "completed":
                assert int(c["itl_sum_us"][k]) == sum(r.itl)
        got = dict(completed=x.completed, dropped=x.dropped, timed_out=x.timed_out,
                   capped=x.length_capped, preempted=x.preemptions, alloc_fail=x.alloc_failures,
                   in_tokens=x.input_tokens, out_tokens=x.output_tokens)
        assert got == ref.n, f"instance {i} counters"
        assert (x.still_queued, x.still_running) == (len(ref.wq), len(ref.batch))
        assert (x.cache_hits, x.cache_misses) == (ref.kvc.cache_hits, ref.kvc.cache_misses)
        assert x.sim_ended_us == ref.sim_ended
        if res.num_instances == 1:
            _assert_summary_matches_reference(res, ref, lat)


def _assert_summary_matches_reference(res, ref, lat):
    """The summary JSON numbers follow spec §9.2/§9.3 over the reference's samples."""
    mo = res.metrics_output(None)
    done = [r for r in ref.reqs if r.state == "completed"]
    dur = ref.sim_ended / 1e6
    assert mo["vllm_estimated_duration_s"] == dur
    if done and dur > 0:
        assert mo["responses_per_sec"] == len(done) / dur
        assert mo["tokens_per_sec"] == ref.n["out_tokens"] / dur
    if not done:
        return
    samples = {"e2e": [float(r.e2e) for r in done],
               "ttft": [float(r.first) for r in ref.reqs if r.first >= 0],
               "itl": [v for r in done for v in r.itl]}      # AllITLs: every decode step
    for name, xs in samples.items():
        assert mo[f"{name}_mean_ms"] == _spec_mean_ms(xs), name
        for p in (90, 95, 99):
            assert mo[f"{name}_p{p}_ms"] == _spec_percentile_ms(xs, p), (name, p)
    sd = [float(r.sched) for r in ref.reqs if r.sched >= 0]
    assert mo["scheduling_delay_p99_ms"] == _spec_percentile_ms(sd, 99)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", sorted(RANDOM_CASES))
def test_engine_matches_plain_python_reference_instance(case, seed):
    table, lat, sim, res, mml = _random_run(case, seed)
    cfg = {k: v for k, v in RANDOM_CASES[case].items() if k != "deadlines"}
    cfg.setdefault("total_kv_blocks", 1000)
    assert_matches_reference(res, table, lat, dict(cfg, horizon_us=SAFETY_HORIZON_US))


@pytest.mark.parametrize("seed", range(6))
def test_engine_matches_reference_under_a_bounded_horizon_and_bursty_arrivals(seed):
    rng = np.random.default_rng(seed)
    cfg = dict(total_kv_blocks=int(rng.integers(6, 12)), block_size=int(rng.choice([3, 4, 16])),
               max_num_seqs=int(rng.choice([2, 256])), max_num_batched_tokens=int(rng.choice([17, 2048])),
               long_prefill_token_threshold=int(rng.choice([0, 5])), max_model_len=48,
               scheduler=str(rng.choice(["fcfs", "priority-fcfs", "sjf", "reverse-priority"])),
               preemption_policy=str(rng.choice(["fcfs", "priority"])),
               horizon_us=int(rng.integers(3000, 30000)))
    cfg["total_kv_blocks"] = max(cfg["total_kv_blocks"], -(-48 // cfg["block_size"]))
    table = random_table(seed + 100, n=30, max_in=40, max_out=30, gap_us=int(rng.choice([0, 50])),
                         deadline_frac=0.3, max_output_frac=0.3)
    lat = toy(float(rng.choice([0.0, 700.0])), 1.5, 3.3, otpt_us=int(rng.choice([0, 20])),
              post_decode_us=5, queueing_alpha1=0.5)
    sim, res = simulate(table, lat, **cfg)
    check_run(sim, res, table, lat, finished=False, max_model_len=48)
    assert_matches_reference(res, table, lat, cfg)
