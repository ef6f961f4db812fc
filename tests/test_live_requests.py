"""Requests added while the simulation runs, finish hooks and wall-clock stepping.

These are the engine hooks closed-loop sessions and ``blis serve`` build on:
``Simulation.add_finish_hook`` (terminal requests handed to Python at their event),
``Simulation.add_requests`` (arrivals injected through the cluster event queue) and
``Simulation.advance_to`` (process events up to a time, then stop).
"""
import numpy as np
import pytest

from blis.engine import EngineConfig, Simulation
from blis.kernels import layout as Lo
from blis.requests import RequestTable

from test_engine_invariants import (SAFETY_HORIZON_US, assert_kv_conservation, assert_request_conservation,
                                    make_table, random_table, toy)


def _sim(table, **cfg):
    cfg.setdefault("total_kv_blocks", 1000)
    cfg.setdefault("horizon_us", SAFETY_HORIZON_US)
    return Simulation(table, EngineConfig(**cfg), toy(base_us=500.0, per_prefill_token_us=2.0))


def _rows(arrival, ilen, olen, ids, seeds):
    return RequestTable(dict(request_id=np.asarray(ids), arrival_us=np.asarray(arrival),
                             input_len=np.asarray(ilen), output_len=np.asarray(olen),
                             content_seed=np.asarray(seeds, np.uint64)))


def _per_request(res):
    c = res.cols
    return {int(i): (int(a), int(f), int(e)) for i, a, f, e in
            zip(c["request_id"], c["arrival_us"], c["ttft_us"], c["e2e_us"])}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_finish_hook_sees_every_terminal_request_once_at_its_event_time(seed):
    table = random_table(seed, n=60, deadline_frac=0.3)
    seen = []

    def hook(sim, rows):
        for r in rows.tolist():
            seen.append((r, sim.clock, int(sim.rq[Lo.R_STATE, r])))

    sim = _sim(table, total_kv_blocks=40, num_instances=2)
    sim.add_finish_hook(hook)
    res = sim.run()
    rows = [r for r, _, _ in seen]
    assert len(rows) == len(set(rows))
    st = res.cols["state"].astype(np.int64)
    terminal = set(np.flatnonzero(np.isin(st, [Lo.ST_COMPLETED, Lo.ST_TIMED_OUT, Lo.ST_DROPPED])).tolist())
    assert set(rows) == terminal
    clocks = [t for _, t, _ in seen]
    assert clocks == sorted(clocks)  # handed over in event order
    for r, t, state in seen:
        assert state in (Lo.ST_COMPLETED, Lo.ST_TIMED_OUT, Lo.ST_DROPPED)
        if state == Lo.ST_COMPLETED:  # handed over at the step event that completes it
            assert res.cols["arrival_us"][r] <= t <= res.cols["arrival_us"][r] + res.cols["e2e_us"][r]


def test_a_finish_hook_does_not_change_the_run():
    table = random_table(7, n=80, deadline_frac=0.2)
    plain = _sim(table, total_kv_blocks=30).run()
    sim = _sim(table, total_kv_blocks=30)
    sim.add_finish_hook(lambda s, rows: None)
    hooked = sim.run()
    assert hooked.stdout_text() == plain.stdout_text()
    assert _per_request(hooked) == _per_request(plain)


def test_closed_loop_follow_ups_arrive_after_completion_plus_think_time():
    """Each round-0 request spawns one follow-up ``think`` us after it completes."""
    n, think = 30, 2500
    table = make_table(np.arange(n) * 700, np.full(n, 40), np.full(n, 6))
    spawned = {}

    def hook(sim, rows):
        for r in rows.tolist():
            if r < n and int(sim.rq[Lo.R_STATE, r]) == Lo.ST_COMPLETED:
                new = sim.add_requests(_rows([sim.clock + think], [50], [4], [1000 + r], [77 + r]))
                spawned[int(new[0])] = (r, sim.clock)

    sim = _sim(table, num_instances=2, routing=Lo.ROUTE_LEAST_LOADED, max_request_tokens=100)
    sim.add_finish_hook(hook)
    res = sim.run()
    c = res.cols
    assert len(c["request_id"]) == 2 * n == len(sim.table)
    assert_request_conservation(res, 2 * n, finished=True)
    assert_kv_conservation(sim, finished=True)
    for new, (parent, t_done) in spawned.items():
        assert c["request_id"][new] == 1000 + parent
        assert c["arrival_us"][new] == t_done + think
        assert c["arrival_us"][new] <= c["arrival_us"][parent] + c["e2e_us"][parent] + think
        assert c["ttft_us"][new] > 0 and c["e2e_us"][new] >= c["ttft_us"][new]
        assert c["input_tokens"][new] == 50
    # determinism with follow-ups
    sim2 = _sim(table, num_instances=2, routing=Lo.ROUTE_LEAST_LOADED, max_request_tokens=100)
    spawned.clear()
    sim2.add_finish_hook(hook)
    assert sim2.run().stdout_text() == res.stdout_text()


def test_advance_to_in_slices_gives_the_same_run_as_run():
    table = random_table(11, n=70, deadline_frac=0.2)
    whole = _sim(table, total_kv_blocks=35, num_instances=3).run()
    sim = _sim(table, total_kv_blocks=35, num_instances=3)
    t, last = 0, -1
    while sim.next_event_time() != np.iinfo(np.int64).max:
        t += 997
        sim.advance_to(t)
        assert sim.clock <= t and sim.clock >= last  # never past the target, never backwards
        last = sim.clock
        assert sim.next_event_time() > t
    res = sim.finish()
    assert res.stdout_text() == whole.stdout_text()
    assert _per_request(res) == _per_request(whole)


def test_requests_injected_just_in_time_match_the_same_requests_known_up_front():
    n = 40
    rng = np.random.default_rng(5)
    arrival = np.cumsum(rng.integers(50, 900, n))  # distinct times: no ordering ties
    ilen, olen = rng.integers(5, 120, n), rng.integers(1, 30, n)
    seeds = rng.integers(1, 2 ** 62, n).astype(np.uint64)
    upfront = _sim(make_table(arrival, ilen, olen, content_seed=seeds), total_kv_blocks=25).run()
    # live: the table holds only request 0; the rest are injected as wall-clock time reaches them
    live = _sim(make_table(arrival[:1], ilen[:1], olen[:1], content_seed=seeds[:1]),
                total_kv_blocks=25, max_request_tokens=int((ilen + olen).max()))
    for k in range(1, n):
        live.advance_to(int(arrival[k]) - 1)
        live.add_requests(_rows(arrival[k:k + 1], ilen[k:k + 1], olen[k:k + 1], [k], seeds[k:k + 1]))
    live.advance_to(np.iinfo(np.int64).max)
    res = live.finish()
    assert _per_request(res) == _per_request(upfront)
    assert res.stdout_text() == upfront.stdout_text()


def test_add_requests_rejects_arrivals_in_the_past_and_grows_the_kv_lists_for_longer_requests():
    sim = _sim(make_table([0, 5000], [10, 10], [5, 5]))
    sim.advance_to(3000)
    with pytest.raises(ValueError, match="arrival_us must be >= the current clock"):
        sim.add_requests(_rows([sim.clock - 1], [10], [2], [9], [1]))
    before = sim.kv[7].shape[2]
    sim.add_requests(_rows([sim.clock + 10], [500], [2], [9], [1]))  # longer than any request so far
    assert sim.kv[7].shape[2] > before and sim.max_request_tokens >= 502
    res = sim.run()
    assert np.all(res.cols["state"] == Lo.ST_COMPLETED) and int(res.cols["input_tokens"][-1]) == 500
