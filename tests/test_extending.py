"""Each recipe in docs/extending.md, exercised with a toy implementation."""
import numpy as np
import pytest

from blis.batch_formation import BATCH_FORMATIONS, register_batch_formation
from blis.cli import main
from blis.engine import EngineConfig, Simulation
from blis.errors import ConfigError
from blis.kernels import layout as L
from blis.kernels.latency import BACKEND_LINEAR
from blis.latency import LATENCY_BACKENDS, LatencyModel, register_latency_backend
from blis.requests import RequestTable
from blis.results import REQUEST_METRICS, register_request_metric
from blis.schedulers import SCHEDULERS, register_scheduler

MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct", "--hardware", "H100", "--tp", "1"]


def _linear(base=1000.0, per_prefill=0.0, per_decode=0.0, otpt=0):
    return LatencyModel("toy", BACKEND_LINEAR, np.array([base, per_prefill, per_decode]), 0.0, 0.0, otpt, 0)


def _table(input_lens, output_lens, arrivals=None):
    n = len(input_lens)
    t = RequestTable.empty(n)
    t.cols["request_id"][:] = np.arange(n)
    t.cols["arrival_us"][:] = arrivals if arrivals is not None else np.zeros(n)
    t.cols["input_len"][:] = input_lens
    t.cols["output_len"][:] = output_lens
    t.cols["content_seed"][:] = np.arange(n, dtype=np.uint64) * 7919 + 1
    return t


# ---- 1. latency backend
def test_registered_latency_backend_is_selectable_from_the_cli(capsys):
    def build_blackbox(mc, hw, *, tp, dp=1, alpha=None, beta=None, **_):
        b = beta or [6000.0, 2.0, 40.0]
        return LatencyModel("toy-blackbox", BACKEND_LINEAR, np.array(b[:3], float), 0.0, 0.0, 0, 0)

    register_latency_backend("toy-blackbox", build_blackbox)
    try:
        argv = ["run", *MODEL, "--latency-model", "toy-blackbox", "--num-requests", "5", "--rate", "1",
                "--prompt-tokens", "100", "--prompt-tokens-stdev", "0", "--output-tokens", "2",
                "--output-tokens-stdev", "0"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        # one request at a time: prefill step 6000 + 2*100 us, then one decode step 6000 + 40 us
        assert '"ttft_mean_ms": 6.2,' in out
        assert '"e2e_mean_ms": 12.24,' in out
    finally:
        del LATENCY_BACKENDS["toy-blackbox"]


def test_unknown_latency_backend_error_lists_registered_names(capsys):
    register_latency_backend("toy-zzz", lambda *a, **k: _linear())
    try:
        assert main(["run", *MODEL, "--latency-model", "nope"]) == 1
        assert "toy-zzz" in capsys.readouterr().err
    finally:
        del LATENCY_BACKENDS["toy-zzz"]


# ---- 2. batch formation
def test_registered_batch_formation_variant_changes_admission():
    register_batch_formation("toy-one-admission", max_admissions_per_step=1)
    try:
        t = _table([10, 10, 10], [3, 3, 3])
        cfg = dict(total_kv_blocks=100)
        base = Simulation(t, EngineConfig(**cfg), _linear()).run()
        one = Simulation(t, EngineConfig(batch_formation="toy-one-admission", **cfg), _linear()).run()
        # default: all three admitted in the first step; toy: one per step
        assert sorted(base.cols["scheduling_delay_us"].tolist()) == [0, 0, 0]
        assert sorted(one.cols["scheduling_delay_us"].tolist()) == [0, 1000, 2000]
        assert (one.cols["state"] == L.ST_COMPLETED).all()
    finally:
        BATCH_FORMATIONS.unregister("toy-one-admission")


def test_no_chunked_prefill_waits_for_a_whole_prompt_budget():
    # budget 100 tokens: a 150-token prompt is chunked by default but can never be
    # admitted whole -- with chunking disabled it waits forever (horizon bounds the run)
    t = _table([60, 150], [2, 2])
    chunked = Simulation(t, EngineConfig(total_kv_blocks=100, max_num_batched_tokens=100), _linear()).run()
    assert (chunked.cols["state"] == L.ST_COMPLETED).all()
    whole = Simulation(t, EngineConfig(total_kv_blocks=100, max_num_batched_tokens=100, horizon_us=50_000,
                                       batch_formation="vllm-no-chunked-prefill"), _linear()).run()
    assert whole.cols["state"].tolist() == [L.ST_COMPLETED, L.ST_QUEUED]


# ---- 3. scheduler
def test_registered_scheduler_orders_the_queue_by_its_key():
    register_scheduler("toy-longest-first", lambda table, prio: -table["input_len"].astype(np.int64))
    try:
        # one request fits per step (max_num_seqs=1): the order of admission is the scheduler's
        t = _table([20, 50, 35], [2, 2, 2], arrivals=[0, 0, 0])
        res = Simulation(t, EngineConfig(total_kv_blocks=100, max_num_seqs=1, scheduler="toy-longest-first"),
                         _linear()).run()
        order = np.argsort(res.cols["scheduling_delay_us"], kind="stable")
        assert order.tolist() == [1, 2, 0]
        fcfs = Simulation(t, EngineConfig(total_kv_blocks=100, max_num_seqs=1), _linear()).run()
        assert np.argsort(fcfs.cols["scheduling_delay_us"], kind="stable").tolist() == [0, 1, 2]
    finally:
        SCHEDULERS.unregister("toy-longest-first")


def test_scheduler_registry_rejects_duplicates_and_bad_keys():
    with pytest.raises(ValueError, match="already registered"):
        register_scheduler("sjf", None)
    register_scheduler("toy-float", lambda t, p: np.zeros(len(t)))
    try:
        with pytest.raises(ValueError, match="integer"):
            Simulation(_table([5], [1]), EngineConfig(total_kv_blocks=10, scheduler="toy-float"), _linear())
    finally:
        SCHEDULERS.unregister("toy-float")
    with pytest.raises(ConfigError, match="valid: fcfs, priority-fcfs, reverse-priority, sjf"):
        SCHEDULERS.get("nope")


# ---- 4. per-request metric field
def test_registered_request_metric_appears_in_the_arrow_table():
    register_request_metric("toy_tpot_ms", lambda res: res.cols["itl_mean_us"] / 1000.0, np.float64, "ms")
    try:
        res = Simulation(_table([10, 20], [5, 1]), EngineConfig(total_kv_blocks=100), _linear(otpt=50)).run()
        tab = res.to_arrow()
        assert "toy_tpot_ms" in tab.column_names
        np.testing.assert_allclose(tab["toy_tpot_ms"].to_numpy(), res.cols["itl_mean_us"] / 1000.0)
        assert tab["toy_tpot_ms"].to_numpy()[0] == pytest.approx((1000 + 50) / 1000.0)
    finally:
        REQUEST_METRICS.unregister("toy_tpot_ms")


# ---- 5. routing / admission in Python
def test_python_routing_policy_decides_every_request():
    seen = []

    def last_instance(sim, r):
        seen.append(r)
        return sim.cfg.num_instances - 1

    t = _table([10] * 6, [2] * 6, arrivals=np.arange(6) * 100)
    res = Simulation(t, EngineConfig(total_kv_blocks=100, num_instances=3), _linear(),
                     route_fn=last_instance).run()
    assert seen == list(range(6))
    assert (res.cols["instance"] == 2).all()
    assert [x.completed for x in res.instances] == [0, 0, 6]


def test_python_admission_policy_rejections_are_counted():
    t = _table([10] * 4, [2] * 4, arrivals=np.arange(4) * 100)
    res = Simulation(t, EngineConfig(total_kv_blocks=100), _linear(),
                     admit_fn=lambda sim, r: r % 2 == 0).run()
    assert res.rejected == 2
    assert res.cols["state"].tolist() == [L.ST_COMPLETED, L.ST_REJECTED, L.ST_COMPLETED, L.ST_REJECTED]


# ---- 6. routing policy, admission policy, scorers (stateless, stateful), trace record types
from blis.policies import ADMISSION_POLICIES, register_admission_policy, register_routing_policy, register_scorer  # noqa: E402
from blis.routing import ROUTING_POLICIES, SCORERS  # noqa: E402
from blis.trace import TRACE_RECORDS, build_trace  # noqa: E402

RUN4 = ["run", *MODEL, "--latency-model", "roofline", "--num-requests", "40", "--rate", "50", "--num-instances", "4"]


def test_registered_routing_policy_is_selectable_by_name(tmp_path, capsys):
    register_routing_policy("toy-emptiest-queue", lambda view, r: int(view.effective_load.argmin()))
    try:
        assert main(RUN4 + ["--routing-policy", "toy-emptiest-queue", "--results-parquet", str(tmp_path / "r.parquet")]) == 0
        import polars as pl
        inst = pl.read_parquet(tmp_path / "r.parquet")["instance"].to_list()
        assert set(inst) == {0, 1, 2, 3} and len(inst) == 40
        out = capsys.readouterr().out
        assert '"completed_requests": 40' in out
    finally:
        ROUTING_POLICIES.unregister("toy-emptiest-queue")


def test_registered_admission_policy_is_selectable_by_name(capsys):
    register_admission_policy("toy-short-prompts-only", lambda view, r: view.input_len < 500)
    try:
        assert main(RUN4 + ["--admission-policy", "toy-short-prompts-only"]) == 0
        out = capsys.readouterr().out
        assert "Rejected Requests (Admission): " in out
        assert "Rejected Requests (Admission): 0" not in out
    finally:
        ADMISSION_POLICIES.unregister("toy-short-prompts-only")


def test_python_stateless_scorer_twin_gives_the_compiled_scorers_decisions():
    def queue_depth_twin(view, r):
        qd = view.queue_depth.astype(float)
        lo, hi = qd.min(), qd.max()
        return np.ones_like(qd) if hi == lo else (hi - qd) / (hi - lo)

    register_scorer("toy-queue-depth", queue_depth_twin)
    try:
        from blis.policies import make_route_fn
        t = _table(np.full(120, 64), np.full(120, 30), arrivals=np.arange(120) * 300)
        base = dict(total_kv_blocks=500, num_instances=4, routing=L.ROUTE_WEIGHTED)
        compiled = Simulation(t, EngineConfig(routing_scorers=[("queue-depth", 1.0), ("kv-utilization", 1.0)], **base),
                              _linear(per_decode=30.0)).run()
        scorers = [("toy-queue-depth", 1.0), ("kv-utilization", 1.0)]
        cfg = EngineConfig(routing_scorers=scorers, **base)
        py = Simulation(t, cfg, _linear(per_decode=30.0),
                        route_fn=make_route_fn(L.ROUTE_WEIGHTED, scorers, cfg)).run()
        assert py.cols["instance"].tolist() == compiled.cols["instance"].tolist()
        assert py.cols["e2e_us"].tolist() == compiled.cols["e2e_us"].tolist()
    finally:
        SCORERS.unregister("toy-queue-depth")


def test_python_stateful_scorer_observes_every_decision():
    home = {}
    calls = []

    def sticky(view, r):
        s = np.zeros(view.num_instances)
        if view.tenant in home:
            s[home[view.tenant]] = 1.0
        return s

    def observe(view, r, target):
        calls.append(r)
        home.setdefault(view.tenant, target)

    register_scorer("toy-sticky-tenant", sticky, observe)
    try:
        from blis.policies import make_route_fn
        t = _table(np.full(60, 32), np.full(60, 4), arrivals=np.arange(60) * 1000)
        t.names["tenant"] = ["", "a", "b", "c"]
        t.cols["tenant"][:] = 1 + np.arange(60) % 3
        scorers = [("toy-sticky-tenant", 3.0), ("queue-depth", 1.0)]
        cfg = EngineConfig(total_kv_blocks=200, num_instances=4, routing=L.ROUTE_WEIGHTED, routing_scorers=scorers)
        res = Simulation(t, cfg, _linear(), route_fn=make_route_fn(L.ROUTE_WEIGHTED, scorers, cfg)).run()
        assert calls == list(range(60))
        for code in (1, 2, 3):
            assert len(set(res.cols["instance"][t["tenant"] == code].tolist())) == 1
    finally:
        SCORERS.unregister("toy-sticky-tenant")


def test_registered_trace_record_type_is_written_with_the_decision_trace():
    import pyarrow as pa

    def per_instance_counts(sim, k):
        inst = sim.rq[L.R_INST]
        return pa.table({"instance": np.arange(sim.cfg.num_instances),
                         "requests": np.bincount(inst[inst >= 0], minlength=sim.cfg.num_instances)})

    TRACE_RECORDS.register("toy-instance-counts", per_instance_counts)
    try:
        t = _table(np.full(10, 32), np.full(10, 4), arrivals=np.arange(10) * 100)
        sim = Simulation(t, EngineConfig(total_kv_blocks=100, num_instances=2, trace_decisions=True), _linear())
        sim.run()
        tables = build_trace(sim).tables
        assert tables["toy-instance-counts"]["requests"].to_pylist() == [5, 5]
    finally:
        TRACE_RECORDS.unregister("toy-instance-counts")


# ---- 10. autoscaler engine
def test_registered_autoscaler_engine_is_selectable_from_the_policy_yaml(tmp_path, capsys):
    from blis.autoscaler import ENGINES, ScaleDecision, register_engine, sorted_by_asc_cost

    calls = []

    def one_at_a_time(results, inventory):
        calls.append([r.model_id for r in results])
        out = []
        for r in results:
            if r.required_capacity > 0:
                for vc in sorted_by_asc_cost(r.variant_capacities):
                    if inventory.free_slots(vc.variant) >= vc.variant.tp:
                        out.append(ScaleDecision(r.model_id, vc.variant, 1))
                        break
            elif r.spare_capacity > 0:
                active = [vc for vc in sorted_by_asc_cost(r.variant_capacities) if vc.replica_count > 0]
                if active:
                    out.append(ScaleDecision(r.model_id, active[-1].variant, -1))
        return out

    register_engine("one-at-a-time", one_at_a_time)
    try:
        pol = tmp_path / "p.yaml"
        pol.write_text("autoscaler:\n  interval_us: 500000\n  engine: one-at-a-time\n"
                       "node_pools:\n  - {name: h100, gpu_type: H100, gpus_per_node: 8, gpu_memory_gib: 80,"
                       " initial_nodes: 1, max_nodes: 1, cost_per_hour: 4}\n")
        st = tmp_path / "scale.parquet"
        argv = ["run", *MODEL, "--latency-model", "roofline", "--num-requests", "300", "--rate", "40",
                "--num-instances", "2", "--policy-config", str(pol), "--scale-trace", str(st)]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "Engine: one-at-a-time" in out
        assert calls and all(c == ["meta-llama/llama-3.1-8b-instruct"] for c in calls)
        import pyarrow.parquet as pq
        rows = pq.read_table(st).to_pylist()
        decisions = [r for r in rows if r["kind"] == "decision"]
        assert decisions and all(abs(r["delta"]) == 1 for r in decisions)
        # the first tick sees an idle cluster of two: it drains exactly one replica
        assert decisions[0]["time_us"] == 0 and decisions[0]["delta"] == -1
        # an unknown engine name is one clear error naming the field and the valid names
        pol.write_text("autoscaler:\n  interval_us: 500000\n  engine: two-at-a-time\n")
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "autoscaler.engine" in err and "one-at-a-time" in err and "greedy" in err
    finally:
        ENGINES.unregister("one-at-a-time")
