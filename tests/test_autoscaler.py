"""Autoscaling: engines (BLIS's engine recipe), the V2 saturation analyzer, the
stabilization gate, node pools and instance lifecycle, the end-to-end load-spike
scenario, the scale trace, determinism and the policy YAML / CLI surface."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from blis.autoscaler import (ENGINES, AnalyzerConfig, AnalyzerResult, Autoscaler, AutoscalerConfig, DelaySpec,
                             GPUInventory, ModelSignals, NodePoolConfig, ReplicaMetrics, ScaleDecision,
                             VariantCapacity, VariantSpec, analyze, dump_decisions, greedy_engine, register_engine,
                             scale_down_n, scale_up_n, unlimited_engine)
from blis.cli import main
from blis.engine import EngineConfig, Simulation
from blis.errors import ConfigError
from blis.kernels import layout as L
from blis.policy_config import parse_policy_config
from blis.requests import RequestTable
from test_cluster import lat

H100 = VariantSpec("H100", 1)
A100 = VariantSpec("A100", 1)
H100_TP2 = VariantSpec("H100", 2)


def vc(v, supply, replicas, cost, demand=0.0):
    return VariantCapacity(v, supply, demand, replicas, cost)


def up(model, required, *vcs):
    return AnalyzerResult(model, required_capacity=required, variant_capacities=list(vcs))


def down(model, spare, *vcs):
    return AnalyzerResult(model, spare_capacity=spare, variant_capacities=list(vcs))


# ---------------------------------------------------------------------------- engines (recipe list)
def test_scale_up_delta_and_cheapest_variant():
    # per-replica capacity of the chosen (cheapest) variant = 100_000 / 2 = 50_000 -> ceil(120_000/50_000) = 3
    r = up("m", 120_000.0, vc(H100, 300_000.0, 3, 4.0), vc(A100, 100_000.0, 2, 2.0))
    assert dump_decisions(unlimited_engine([r], GPUInventory())) == [("m", "A100", 1, 3)]


def test_scale_up_uses_the_chosen_variants_own_capacity():
    # the cheapest variant is inactive: its capacity is unknown -> exactly one replica (not sized by H100's)
    r = up("m", 500_000.0, vc(A100, 0.0, 0, 1.0), vc(H100, 100_000.0, 1, 4.0))
    assert dump_decisions(unlimited_engine([r], GPUInventory())) == [("m", "A100", 1, 1)]


def test_greedy_inventory_pass_and_fail():
    r = up("m", 120_000.0, vc(A100, 100_000.0, 2, 2.0), vc(H100, 300_000.0, 3, 4.0))
    # A100 needs 3 slots: passes with 3 free
    assert dump_decisions(greedy_engine([r], GPUInventory({A100: 3, H100: 0}))) == [("m", "A100", 1, 3)]
    # A100 has only 2 free -> falls through to H100 (per-replica 100_000 -> 2 replicas, 2 slots)
    assert dump_decisions(greedy_engine([r], GPUInventory({A100: 2, H100: 2}))) == [("m", "H100", 1, 2)]
    # nothing fits -> no decision at all (unlimited would still ask)
    assert greedy_engine([r], GPUInventory({A100: 2, H100: 1})) == []
    assert len(unlimited_engine([r], GPUInventory({A100: 0, H100: 0}))) == 1


def test_scale_down_from_spare_capacity_clamped_to_replica_count():
    # most expensive active variant: H100 (cost 4), per-replica 50_000; spare 120_000 -> floor = 2
    r = down("m", 120_000.0, vc(A100, 100_000.0, 2, 2.0), vc(H100, 150_000.0, 3, 4.0))
    assert dump_decisions(unlimited_engine([r], GPUInventory())) == [("m", "H100", 1, -2)]
    # spare far beyond the variant's supply -> clamped to its 3 replicas
    r = down("m", 10_000_000.0, vc(A100, 100_000.0, 2, 2.0), vc(H100, 150_000.0, 3, 4.0))
    assert dump_decisions(greedy_engine([r], GPUInventory())) == [("m", "H100", 1, -3)]
    # spare below one replica's supply still removes one
    assert scale_down_n(10.0, vc(H100, 150_000.0, 3, 4.0)) == 1


def test_zero_capacity_edge_cases():
    vcs = [vc(H100, 100_000.0, 2, 4.0)]
    for engine in (unlimited_engine, greedy_engine):
        assert engine([AnalyzerResult("m", variant_capacities=vcs)], GPUInventory({H100: 8})) == []
        assert engine([], GPUInventory({H100: 8})) == []
        # a scale-up signal without any variant cannot be placed
        assert engine([up("m", 5.0)], GPUInventory({H100: 8})) == []
    assert scale_up_n(1.0, []) == 1
    assert scale_down_n(1.0, vc(H100, 0.0, 0, 1.0)) == 0
    assert scale_down_n(1.0, vc(H100, 0.0, 2, 1.0)) == 1


def test_inactive_variants_are_skipped_for_scale_down():
    # the most expensive variant has no replicas: the next active one is drained
    r = down("m", 100_000.0, vc(H100, 0.0, 0, 9.0), vc(A100, 200_000.0, 4, 2.0))
    assert dump_decisions(unlimited_engine([r], GPUInventory())) == [("m", "A100", 1, -2)]
    r = down("m", 100_000.0, vc(H100, 0.0, 0, 9.0))
    assert unlimited_engine([r], GPUInventory()) == []


def test_tp_greater_than_one_needs_n_times_tp_slots():
    r = up("m", 90_000.0, vc(H100_TP2, 100_000.0, 2, 4.0))      # per-replica 50_000 -> 2 replicas = 4 GPUs
    assert greedy_engine([r], GPUInventory({H100_TP2: 3})) == []
    assert dump_decisions(greedy_engine([r], GPUInventory({H100_TP2: 4}))) == [("m", "H100", 2, 2)]


def test_several_models_are_decided_independently():
    rs = [up("a", 10.0, vc(H100, 100.0, 1, 1.0)), AnalyzerResult("b", variant_capacities=[vc(H100, 100.0, 2, 1.0)]),
          down("c", 60.0, vc(H100, 100.0, 2, 1.0))]
    assert dump_decisions(unlimited_engine(rs, GPUInventory())) == [("a", "H100", 1, 1), ("c", "H100", 1, -1)]
    assert dump_decisions(greedy_engine(rs, GPUInventory({H100: 1}))) == [("a", "H100", 1, 1), ("c", "H100", 1, -1)]


def test_inventory_variants_sorted():
    inv = GPUInventory({VariantSpec("H100", 2): 1, VariantSpec("A100", 1): 2, VariantSpec("H100", 1): 3})
    assert [str(v) for v in inv.variants()] == ["A100/tp1", "H100/tp1", "H100/tp2"]
    assert inv.free_slots(VariantSpec("B200", 1)) == 0


# ---------------------------------------------------------------------------- analyzer
def rm(name, cap, used, qd=0, v=H100, cost=1.0):
    return ReplicaMetrics(name, v, used / cap, qd, 0, cost, cap, used)


def test_analyzer_spec_example():
    # 2 replicas x 160,000-token KV -> supply 256,000; demand 230,000 -> required 31,500 -> one replica
    res = analyze(ModelSignals("m", [rm("a", 160_000, 115_000), rm("b", 160_000, 115_000)]), AnalyzerConfig())
    assert res.total_supply == 256_000.0 and res.total_demand == 230_000.0
    assert res.required_capacity == pytest.approx(31_500.0) and res.spare_capacity == 0
    assert scale_up_n(res.required_capacity, res.variant_capacities[0:1]) == 1


def test_analyzer_pending_supply_and_spare_rules():
    cfg = AnalyzerConfig()
    sig = ModelSignals("m", [rm("a", 160_000, 115_000), rm("b", 160_000, 115_000)], 1, 160_000)
    assert analyze(sig, cfg).required_capacity == 0          # pending capacity covers the shortfall
    # demand 10,000 + 2 queued x 512: spare = 256,000 - 11,024/0.4 > 0 and one replica can go
    res = analyze(ModelSignals("m", [rm("a", 160_000, 10_000, qd=2), rm("b", 160_000, 0)]), cfg)
    assert res.spare_capacity == pytest.approx(256_000 - 11_024 / 0.4)
    # a single replica is never scaled down; no replicas -> empty result even with pending ones
    assert analyze(ModelSignals("m", [rm("a", 160_000, 0)]), cfg).spare_capacity == 0
    assert analyze(ModelSignals("m", [], 2, 320_000), cfg) == AnalyzerResult("m")
    # variants sorted by cost, then GPU type
    res = analyze(ModelSignals("m", [rm("a", 1000, 900, v=H100, cost=5.0), rm("b", 1000, 900, v=A100, cost=5.0),
                                     rm("c", 1000, 900, v=H100_TP2, cost=1.0)]), cfg)
    assert [str(x.variant) for x in res.variant_capacities] == ["H100/tp2", "A100/tp1", "H100/tp1"]


# ---------------------------------------------------------------------------- simulations
def spike_table(rates=((5, 20), (50, 20), (5, 40)), seed=1, ilen=(200, 600), olen=(50, 200)):
    rng = np.random.default_rng(seed)
    arr, t = [], 0.0
    for rate, dur in rates:
        end = t + dur
        while True:
            t += rng.exponential(1.0 / rate)
            if t >= end:
                t = end
                break
            arr.append(int(t * 1e6))
    n = len(arr)
    tb = RequestTable.empty(n)
    tb.cols["request_id"][:] = np.arange(n)
    tb.cols["arrival_us"][:] = arr
    tb.cols["input_len"][:] = rng.integers(*ilen, n)
    tb.cols["output_len"][:] = rng.integers(*olen, n)
    tb.cols["content_seed"][:] = rng.integers(1, 2**62, n).astype(np.uint64)
    return tb


POOL = NodePoolConfig("a", "H100", 8, 80.0, 1, 0, 1, cost_per_hour=4.0)
SPIKE_LAT = dict(base=3000, per_prefill=2.0, per_decode=60.0)


def run_auto(table, acfg, n=2, routing=L.ROUTE_LEAST_LOADED, seed=42, **kw):
    kw.setdefault("total_kv_blocks", 400)
    kw.setdefault("max_num_seqs", 64)
    cfg = EngineConfig(num_instances=n, routing=routing, seed=seed, **kw)
    auto = Autoscaler(acfg, model="m", gpu="H100", tp=1, seed=seed) if acfg is not None else None
    sim = Simulation(table, cfg, lat(**SPIKE_LAT), autoscaler=auto)
    return sim, sim.run()


def spike_config(**kw):
    base = dict(interval_us=1e6, scale_down_window_us=10e6, node_pools=[POOL], loading_delay=DelaySpec(2.0, 0.5),
                warm_start_initial_instances=True)
    base.update(kw)
    return AutoscalerConfig(**base)


def _events(auto, kind):
    return [e for e in auto.events if e.kind == kind]


@pytest.fixture(scope="module")
def spike_runs():
    tb = spike_table()
    return tb, run_auto(tb, spike_config()), run_auto(tb, None)


def test_load_spike_grows_recovers_and_shrinks(spike_runs):
    tb, (sim, res), (_, res_fixed) = spike_runs
    auto = sim.autoscaler
    c = res.cols
    # conservation through loading and draining: every request completes
    assert (c["state"] == L.ST_COMPLETED).sum() == len(tb)
    adds = _events(auto, "add")
    assert adds, "the cluster never grew"
    assert 20e6 <= adds[0].time_us < 25e6                # grows shortly after the spike begins (t = 20 s)
    peak = max(e.active for e in auto.events)
    assert peak >= 4
    # shrinks after the spike (t = 40 s) only once the 10 s stabilization window has passed
    late_drains = [e for e in _events(auto, "drain") if e.time_us >= 40e6]
    assert late_drains and late_drains[0].time_us >= 40e6 + 10e6 - 1e6
    assert auto.events[-1].active < peak
    # latency recovers: late-spike requests wait less than early-spike ones, and much less than
    # on the fixed two-instance cluster
    arr, ttft = c["arrival_us"], c["ttft_us"]
    early = (arr >= 20e6) & (arr < 24e6)
    late = (arr >= 32e6) & (arr < 40e6)
    assert ttft[late].mean() < 0.5 * ttft[early].mean()
    fixed = res_fixed.cols["ttft_us"]
    assert ttft[late].mean() < 0.5 * fixed[late].mean()
    after = (arr >= 60e6)
    assert ttft[after].mean() < 2.0 * ttft[arr < 20e6].mean()


def test_scale_trace_explains_every_change(spike_runs):
    _, (sim, res), _ = spike_runs
    auto = sim.autoscaler
    names = sim.instance_names
    n_init = 2
    # replay the trace: per-instance state machine and the counts it reports
    state = {nm: "active" for nm in names[:n_init]}
    for e in auto.events:
        if e.kind == "add":
            assert e.instance not in state
            state[e.instance] = "loading"
        elif e.kind == "loaded":
            assert state[e.instance] == "loading"
            state[e.instance] = "active"
        elif e.kind == "drain":
            assert state[e.instance] == "active"
            state[e.instance] = "draining"
        elif e.kind == "terminated":
            assert state[e.instance] == "draining"
            state[e.instance] = "terminated"
        vals = list(state.values())
        assert (e.active, e.loading, e.draining) == (vals.count("active"), vals.count("loading"),
                                                    vals.count("draining")), e
        assert e.free_gpus == 8 - sum(1 for s in vals if s != "terminated"), e
    # every decision that passed is followed by its adds/drains (the delta is fully explained)
    decided = sum(e.delta for e in _events(auto, "decision"))
    acted = sum(e.delta for e in auto.events if e.kind in ("add", "drain", "place-failed", "drain-failed"))
    assert decided == acted
    # the final states are the engine's
    life = {L.LIFE_ACTIVE: "active", L.LIFE_LOADING: "loading", L.LIFE_DRAINING: "draining",
            L.LIFE_TERMINATED: "terminated"}
    assert [state[nm] for nm in names] == [life[int(x)] for x in sim.ins[:len(names), L.I_LIFE]]
    # routing respected the lifecycle: nothing routed to an instance before it loaded or after it drained
    c = res.cols
    for e in auto.events:
        if e.kind not in ("loaded", "drain"):
            continue
        i = names.index(e.instance)
        routed = c["instance"] == i
        at = sim.rq[L.R_ROUTED_AT]
        if e.kind == "loaded":
            assert (at[routed] >= e.time_us).all() and routed.any()
        if e.kind == "drain":
            assert (at[routed] <= e.time_us).all()
    # the Parquet form and the summary aggregate the same events
    tab = auto.to_arrow()
    assert tab.num_rows == len(auto.events) and tab.column("kind").to_pylist()[0] == auto.events[0].kind
    u = res.extra["autoscaler"]
    assert u["scale_ups"] == len(_events(auto, "add")) and u["terminated"] == len(_events(auto, "terminated"))
    assert u["gpu_hours"] > 0 and u["cost"] == pytest.approx(u["replica_hours"] * 4.0)


def test_autoscaler_runs_are_deterministic():
    tb = spike_table(rates=((5, 5), (40, 10), (5, 10)), seed=7)
    acfg = spike_config(hpa_scrape_delay=DelaySpec(0.3, 0.2))
    (s1, r1), (s2, r2) = run_auto(tb, acfg, seed=9), run_auto(tb, acfg, seed=9)
    assert s1.autoscaler.events == s2.autoscaler.events and len(s1.autoscaler.events) > 3
    for k in r1.cols:
        assert np.array_equal(r1.cols[k], r2.cols[k]), k
    # a different seed changes the sampled loading/scrape delays
    s3, _ = run_auto(tb, acfg, seed=10)
    assert [e.time_us for e in s3.autoscaler.events] != [e.time_us for e in s1.autoscaler.events]


def test_stabilization_window_example():
    """Interval 30 s, window 240 s, steady signal from t = 0 -> passes at t = 240 s (spec example)."""
    calls = []

    def always_up(results, inventory):
        calls.append(len(results))
        return [ScaleDecision(r.model_id, VariantSpec("H100", 1), 1) for r in results]

    register_engine("test-always-up", always_up)
    try:
        tb = spike_table(rates=((1, 400),), seed=2)
        acfg = AutoscalerConfig(interval_us=30e6, scale_up_window_us=240e6, engine="test-always-up")
        sim, res = run_auto(tb, acfg)   # no node pools: scale-up cannot place anything
        passed = [e.time_us for e in _events(sim.autoscaler, "decision")]
        assert passed == [240_000_000]
        # passing deletes the timer: the next tick starts a fresh window (next pass at 510 s > end of run)
        sup = {e.time_us: e.reason for e in _events(sim.autoscaler, "suppressed")}
        assert "window started" in sup[0] and "window started" in sup[270_000_000]
        assert "30000000 of" in sup[30_000_000]
        assert all(e.kind == "place-failed" for e in sim.autoscaler.events if e.kind not in ("decision", "suppressed"))
        assert calls and set(calls) == {1}
        assert (res.cols["state"] == L.ST_COMPLETED).sum() == len(tb)
    finally:
        ENGINES.unregister("test-always-up")


def test_scale_down_without_node_pools_drains_lexicographically():
    """No node pools: instances have TP 0 (variant tp 1) and cost 0; BLIS drains the
    smallest ID first - instance_10 sorts before instance_2.  An idle cluster has
    zero demand, so the whole spare capacity goes (BLIS scales to zero: the analyzer
    only requires the supply left after one removal to cover the demand), and every
    later request is rejected at routing - still conserved."""
    tb = spike_table(rates=((2, 30),), seed=3, ilen=(20, 60), olen=(5, 20))
    acfg = AutoscalerConfig(interval_us=1e6)
    sim, res = run_auto(tb, acfg, n=12, routing=L.ROUTE_ROUND_ROBIN)
    drained = [e.instance for e in _events(sim.autoscaler, "drain")]
    assert drained == ["instance_0", "instance_1", "instance_10", "instance_11"] + [f"instance_{k}" for k in range(2, 10)]
    assert [e.delta for e in _events(sim.autoscaler, "decision")] == [-12]
    assert (res.cols["state"] == L.ST_ROUTE_REJECTED).sum() == len(tb) == res.routing_rejected
    # idle drained instances have no event left to notice they are empty: they stay draining
    assert (sim.ins[:12, L.I_LIFE] == L.LIFE_DRAINING).all()


def test_node_pools_without_autoscaler_place_and_load():
    """Two GPUs for three TP-1 instances: the third is never created; the placed ones load
    for 1 s, so the first second's requests find nothing routable."""
    tb = spike_table(rates=((20, 4),), seed=4)
    pool = NodePoolConfig("p", "H100", 2, 80.0, 1, 0, 1)
    acfg = AutoscalerConfig(node_pools=[pool], loading_delay=DelaySpec(1.0, 0.0))
    sim, res = run_auto(tb, acfg, n=3)
    assert sim.instance_names == ["instance_0", "instance_1"] and res.num_instances == 2
    c = res.cols
    early = c["arrival_us"] < 1_000_000
    assert (c["state"][early] == L.ST_ROUTE_REJECTED).all() and early.any()
    assert (c["state"][~early] == L.ST_COMPLETED).all()
    assert [e.kind for e in sim.autoscaler.events] == ["loaded", "loaded"]


def test_python_routing_policy_sees_routable_instances_only():
    from blis.policies import make_route_fn, register_routing_policy
    from blis.routing import ROUTING_POLICIES
    seen = []

    def last(view, r):
        seen.append(view.num_instances)
        return view.num_instances - 1

    register_routing_policy("test-last-routable", last)
    try:
        tb = spike_table(rates=((20, 4),), seed=4)
        pool = NodePoolConfig("p", "H100", 4, 80.0, 1, 0, 1)
        acfg = AutoscalerConfig(node_pools=[pool], loading_delay=DelaySpec(1.0, 0.5))
        cfg = EngineConfig(total_kv_blocks=400, num_instances=3, max_num_seqs=64)
        auto = Autoscaler(acfg, model="m", gpu="H100", tp=1, seed=1)
        route = make_route_fn(ROUTING_POLICIES.get("test-last-routable"), [], cfg)
        sim = Simulation(tb, cfg, lat(**SPIKE_LAT), route_fn=route, autoscaler=auto)
        res = sim.run()
        loaded = {sim.instance_names.index(e.instance): e.time_us for e in sim.autoscaler.events}
        c = res.cols
        for i, t in loaded.items():
            assert (sim.rq[L.R_ROUTED_AT][c["instance"] == i] >= t).all()
        assert 0 not in seen[:1] and max(seen) == 3
    finally:
        ROUTING_POLICIES.unregister("test-last-routable")


# ---------------------------------------------------------------------------- YAML and CLI
POLICY = """
autoscaler:
  interval_us: 1000000
  scale_down_stabilization_window_us: 5000000
  engine: greedy
  hpa_scrape_delay: {mean: 0.2, stddev: 0.1}
node_pools:
  - name: h100
    gpu_type: H100
    gpus_per_node: 4
    gpu_memory_gib: 40
    initial_nodes: 1
    max_nodes: 1
    cost_per_hour: 2.5
instance_lifecycle:
  loading_delay: {mean: 1, stddev: 0.2}
  warm_start_initial_instances: true
"""
CLI = ["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline", "--hardware", "H100",
       "--tp", "1", "--num-requests", "400", "--rate", "30", "--num-instances", "2", "--routing-policy", "least-loaded"]


def test_policy_yaml_sections_parse():
    b = parse_policy_config(POLICY)
    a = b.autoscaler
    assert a.enabled and a.engine == "greedy" and a.scale_down_window_us == 5e6
    assert a.node_pools[0].gpu_type == "H100" and a.node_pools[0].cost_per_hour == 2.5
    assert a.hpa_scrape_delay == DelaySpec(0.2, 0.1) and a.warm_start_initial_instances
    assert a.analyzer == AnalyzerConfig()   # zero/absent -> defaults
    # sub-keys are read only when interval_us > 0
    off = parse_policy_config("autoscaler: {interval_us: 0, engine: greedy}").autoscaler
    assert not off.enabled and off.engine == "unlimited"


@pytest.mark.parametrize("text,needle", [
    ("autoscaler: {interval_us: 1, engine: nope}", "autoscaler.engine"),
    ("autoscaler: {interval_us: -1}", "autoscaler.interval_us"),
    ("autoscaler: {interval_us: 1, bogus: 2}", "autoscaler.bogus"),
    ("autoscaler: {interval_us: 1, analyzer: {scale_down_boundary: 0.9}}", "scale_down_boundary"),
    ("autoscaler: {interval_us: 1, analyzer: {kv_cache_threshold: 1.5}}", "kv_cache_threshold"),
    ("node_pools: [{name: a, gpu_type: H100, gpus_per_node: 0, gpu_memory_gib: 80}]", "gpus_per_node"),
    ("node_pools: [{name: a, gpu_type: H100, gpus_per_node: 1, gpu_memory_gib: 80, initial_nodes: 2, max_nodes: 1}]",
     "max_nodes"),
    ("node_pools: [{name: a, gpu_type: H100, gpus_per_node: 1, gpu_memory_gib: 80},"
     " {name: a, gpu_type: A100, gpus_per_node: 1, gpu_memory_gib: 80}]", "unique"),
    ("node_pools: [{name: a, gpu_type: '', gpus_per_node: 1, gpu_memory_gib: 80}]", "gpu_type"),
    ("instance_lifecycle: {loading_delay: {mean: -1}}", "loading_delay.mean"),
    ("instance_lifecycle: {warm_start_initial_instances: 3}", "warm_start_initial_instances"),
])
def test_policy_yaml_errors(text, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_policy_config(text)


def test_cli_run_with_autoscaler(tmp_path, capsys):
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    outs = []
    for k in range(2):
        st, mp = tmp_path / f"st{k}.parquet", tmp_path / f"m{k}.json"
        assert main(CLI + ["--policy-config", str(pol), "--scale-trace", str(st), "--metrics-path", str(mp),
                           "--trace-level", "decisions", "--summarize-trace"]) == 0
        outs.append((capsys.readouterr().out, st.read_bytes(), mp.read_text()))
    assert outs[0] == outs[1]                       # byte-identical with the autoscaler on
    out, _, mtext = outs[0]
    assert "=== Autoscaler ===" in out and "Engine: greedy" in out and "Scale Events:" in out
    m = json.loads(mtext)
    assert m["autoscaler"]["instances_created"] >= 2 and m["autoscaler"]["gpu_hours"] > 0
    tab = pq.read_table(tmp_path / "st0.parquet")
    assert set(tab.column_names) >= {"time_us", "kind", "model", "gpu_type", "tp", "delta", "reason", "free_gpus"}
    handled = {r["handled_by"] for r in m["requests"]}
    assert handled <= {"instance_0", "instance_1"} | set(tab.column("instance").to_pylist())


def test_cli_pool_memory_sets_kv_capacity():
    """Instances placed on a node pool size their KV cache from the pool's GPU memory."""
    from blis.cli import build_simulation, parse_args, validate_common
    ns = parse_args(CLI + ["--policy-config", "/dev/null"])
    validate_common(ns)
    from blis.cli import build_run_workload
    table, horizon = build_run_workload(ns)
    base = build_simulation(ns, table, horizon).ins[0, L.I_TOTAL_BLOCKS]
    ns._autoscale = parse_policy_config(POLICY).autoscaler            # 40 GiB GPUs instead of 80
    sim = build_simulation(ns, table, horizon)
    small = sim.ins[0, L.I_TOTAL_BLOCKS]
    assert 0 < small < base


def test_cli_errors(tmp_path, capsys):
    assert main(CLI + ["--model-autoscaler-interval-us", "-5"]) == 1
    assert "--model-autoscaler-interval-us" in capsys.readouterr().err
    pol = tmp_path / "p.yaml"
    pol.write_text("autoscaler: {interval_us: 1000, engine: nope}\n")
    assert main(CLI + ["--policy-config", str(pol)]) == 1
    err = capsys.readouterr().err
    assert "autoscaler.engine" in err and "greedy" in err and "Traceback" not in err


def test_flag_enables_autoscaler_without_yaml(capsys):
    assert main(CLI + ["--model-autoscaler-interval-us", "500000"]) == 0
    out = capsys.readouterr().out
    assert "=== Autoscaler ===" in out and "Engine: unlimited" in out


# ---------------------------------------------------------------------------- compiled tick == Python tick
TWO_POOLS = [NodePoolConfig("b", "A100", 2, 80.0, 1, 0, 1, cost_per_hour=2.0), POOL]
FAST_CASES = {
    "spike": (dict(), dict()),
    "greedy-two-variants-scrape-delay": (dict(engine="greedy", node_pools=TWO_POOLS, scale_down_window_us=3e6,
                                              hpa_scrape_delay=DelaySpec(0.3, 0.2)), dict(n=3)),
    "cold-start-stale-snapshots": (dict(warm_start_initial_instances=False, interval_us=250_000),
                                   dict(snapshot_refresh_interval_us=400_000, routing=L.ROUTE_WEIGHTED)),
    "no-node-pools": (dict(node_pools=[], scale_down_window_us=0.0, interval_us=500_000), dict(n=3)),
}


def _checked_fast_path(auto):
    """Make every compiled tick also run the Python collector, analyzer and inventory on
    the same state and require identical results."""
    fast, seen = auto._fast_signals, []

    def both(sim, now):
        got = fast(sim, now)
        assert got is not None
        want = [analyze(ms, auto.cfg.analyzer) for ms in auto.collect(sim)]
        assert got == want, now                       # exact: same float sums, same variant order
        assert auto._cached_inventory(sim).by_variant == auto.inventory(sim).by_variant, now
        life = sim.ins[:sim.num_instances, L.I_LIFE]
        assert auto._life.tolist() == [int((life == k).sum()) for k in range(4)]
        seen.append(len(want))
        return got

    auto._fast_signals = both
    return seen


@pytest.mark.parametrize("case", sorted(FAST_CASES))
def test_compiled_tick_matches_the_python_tick(case):
    """The compiled scan (snapshot refresh + collector + analyzer aggregation, cached
    inventory, scan-time state counts) gives exactly the Python path's analyzer results
    every tick, and whole runs forced onto either path have identical scale traces,
    usage and per-request results."""
    acfg_kw, run_kw = FAST_CASES[case]
    tb = spike_table(rates=((5, 10), (50, 10), (5, 20)), seed=5)
    runs = []
    for mode in ("checked", "fast", "python"):
        acfg = spike_config(**acfg_kw)
        kw = dict(run_kw)
        n = kw.pop("n", 2)
        cfg = EngineConfig(num_instances=n, routing=kw.pop("routing", L.ROUTE_LEAST_LOADED), seed=42,
                           total_kv_blocks=400, max_num_seqs=64, **kw)
        auto = Autoscaler(acfg, model="m", gpu="H100", tp=1, seed=42)
        auto.fast_tick = mode != "python"
        seen = _checked_fast_path(auto) if mode == "checked" else None
        sim = Simulation(tb, cfg, lat(**SPIKE_LAT), autoscaler=auto)
        res = sim.run()
        if seen is not None:
            assert len(seen) == auto.ticks > 10 and max(seen) == 1
        runs.append((auto, res))
    (a0, r0), (a1, r1), (a2, r2) = runs
    kinds = {e.kind for e in a2.events}
    assert {"decision", "add"} <= kinds or {"decision", "drain"} <= kinds    # capacity did change
    assert a0.events == a1.events == a2.events
    assert a0.usage() == a1.usage() == a2.usage()
    for k in r2.cols:
        assert np.array_equal(r1.cols[k], r2.cols[k]) and np.array_equal(r0.cols[k], r2.cols[k]), k


def test_zero_capacity_replica_takes_the_python_path(caplog):
    """A routable replica without KV capacity makes the compiled scan give way to the
    Python collector, which logs and excludes it (same results as the Python path)."""
    acfg = spike_config(scale_down_window_us=5e6)
    cfg = EngineConfig(num_instances=2, routing=L.ROUTE_LEAST_LOADED, seed=42, total_kv_blocks=400)
    autos = []
    for fast in (True, False):
        auto = Autoscaler(acfg, model="m", gpu="H100", tp=1, seed=42)
        auto.fast_tick = fast
        sim = Simulation(spike_table(rates=((5, 2),)), cfg, lat(**SPIKE_LAT), autoscaler=auto)
        sim.ins[1, L.I_TOTAL_BLOCKS] = 0
        assert auto._fast_signals(sim, 0) is None
        caplog.clear()
        with caplog.at_level("WARNING", logger="blis.autoscaler"):
            auto.tick(sim, 0)
        assert "'instance_1' has zero KV capacity" in caplog.text
        autos.append(auto)
    assert autos[0].events == autos[1].events       # one replica counted: nothing to remove
    assert autos[0].ticks == autos[1].ticks == 1
