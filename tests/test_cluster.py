"""Cluster behaviour: routing policies and scorers, admission policies, tenant
budgets, policy bundles, decision traces, counterfactuals and fitness."""
import numpy as np
import pytest

from blis.cli import main
from blis.engine import EngineConfig, Simulation
from blis.errors import ConfigError
from blis.kernels import layout as L
from blis.kernels.latency import BACKEND_LINEAR
from blis.latency import LatencyModel
from blis.policy_config import parse_policy_config
from blis.requests import RequestTable
from blis.routing import parse_scorers
from blis.trace import build_trace, counterfactual


def lat(base=2000.0, per_prefill=1.0, per_decode=20.0):
    return LatencyModel("toy", BACKEND_LINEAR, np.array([base, per_prefill, per_decode]), 0.0, 0.0, 0, 0)


def workload(n=200, gap_us=500, seed=3, groups=0, classes=None, tenants=None, plen=64):
    rng = np.random.default_rng(seed)
    t = RequestTable.empty(n)
    t.cols["request_id"][:] = np.arange(n)
    t.cols["arrival_us"][:] = np.arange(n) * gap_us
    t.cols["input_len"][:] = rng.integers(32, 400, n)
    t.cols["output_len"][:] = rng.integers(4, 60, n)
    t.cols["content_seed"][:] = rng.integers(1, 2**62, n).astype(np.uint64)
    if groups:
        names = [""] + [f"g{k}" for k in range(groups)]
        t.names["prefix_group"] = names
        t.cols["prefix_group"][:] = 1 + rng.integers(0, groups, n)
        t.cols["prefix_len"][:] = plen
        t.cols["input_len"][:] += plen
        t.group_seeds = np.arange(len(names), dtype=np.uint64) * 1000003 + 7
    if classes:
        t.names["slo_class"] = [""] + list(classes)
        t.cols["slo_class"][:] = 1 + np.arange(n) % len(classes)
    if tenants:
        t.names["tenant"] = [""] + list(tenants)
        t.cols["tenant"][:] = 1 + np.arange(n) % len(tenants)
    return t


def run(table, **kw):
    kw.setdefault("total_kv_blocks", 4000)
    cfg = EngineConfig(**kw)
    sim = Simulation(table, cfg, lat())
    return sim, sim.run()


# ------------------------------------------------------------ scorers (naive twins)
def _minmax_inv(x):
    lo, hi = x.min(), x.max()
    return np.ones(len(x)) if hi == lo else (hi - x) / (hi - lo)


NAIVE = {
    "queue-depth": lambda qd, bs, fl, kvu: _minmax_inv(qd),
    "running-requests": lambda qd, bs, fl, kvu: _minmax_inv(bs),
    "vllm-dp": lambda qd, bs, fl, kvu: _minmax_inv(qd * 4 + bs),
    "kv-utilization": lambda qd, bs, fl, kvu: 1.0 - kvu,
    "load-balance": lambda qd, bs, fl, kvu: 1.0 / (1.0 + (qd + bs + fl)),
    "active-requests": lambda qd, bs, fl, kvu: np.array(
        [1.0 if (f == 0 or fl.max() == 0) else (fl.max() - f) / fl.max() for f in fl]),
    "load-aware": lambda qd, bs, fl, kvu: np.where(qd == 0, 0.5, 0.5 * (1.0 - np.minimum(qd, 128) / 128.0)),
}


@pytest.mark.parametrize("scorer", sorted(NAIVE))
def test_stateless_scorer_matches_naive_formula_and_stays_in_unit_range(scorer):
    sim, res = run(workload(300, gap_us=200), num_instances=4, routing=L.ROUTE_WEIGHTED,
                   routing_scorers=[(scorer, 1.0)], trace_decisions=True, snapshot_refresh_interval_us=0)
    tr = build_trace(sim).tables["candidates"].to_pandas() if False else build_trace(sim).tables["candidates"]
    score = tr["score"].to_numpy().reshape(-1, 4)
    qd = tr["queue_depth"].to_numpy().reshape(-1, 4).astype(float)
    bs = tr["batch_size"].to_numpy().reshape(-1, 4).astype(float)
    fl = tr["in_flight_requests"].to_numpy().reshape(-1, 4).astype(float)
    kvu = tr["kv_utilization"].to_numpy().reshape(-1, 4)
    assert score.shape[0] == 300                            # every decision scored every instance (INV-2)
    assert np.all((score >= 0) & (score <= 1))              # INV-1
    assert np.isfinite(score).all()
    for k in range(score.shape[0]):
        np.testing.assert_allclose(score[k], NAIVE[scorer](qd[k], bs[k], fl[k], kvu[k]), rtol=0, atol=1e-12)
    assert (res.cols["state"] == L.ST_COMPLETED).all()


def test_weighted_routing_always_picks_a_maximum_score_instance():
    sim, res = run(workload(300, gap_us=200), num_instances=4, routing=L.ROUTE_WEIGHTED,
                   trace_decisions=True)
    trace = build_trace(sim, counterfactual_k=4)
    assert trace.regret.max() == 0.0


def test_queue_depth_scorer_is_monotone_prefers_shorter_queues():
    qd = np.array([0.0, 3.0, 7.0, 10.0])
    s = NAIVE["queue-depth"](qd, qd, qd, qd)
    assert list(s) == sorted(s, reverse=True) and s[0] == 1.0 and s[-1] == 0.0


def test_prefix_affinity_keeps_a_prefix_group_on_one_instance():
    t = workload(240, gap_us=3000, groups=4, plen=256)
    sim, res = run(t, num_instances=4, routing=L.ROUTE_WEIGHTED, routing_scorers=[("prefix-affinity", 1.0)])
    inst = res.cols["instance"]
    groups = t["prefix_group"]
    for g in range(1, 5):
        # after the first request of a group, every later one follows it
        assert len(set(inst[groups == g][1:].tolist())) == 1


def test_precise_prefix_cache_raises_hit_rate_over_round_robin():
    t = workload(400, gap_us=2000, groups=8, plen=512)
    _, rr = run(t, num_instances=4)
    _, pp = run(t, num_instances=4, routing=L.ROUTE_WEIGHTED, routing_scorers=[("precise-prefix-cache", 1.0)],
                cache_signal_delay_us=0)
    def pooled(res):  # BLIS's cluster figure is a plain mean over instances; pool the counts here
        return sum(x.cache_hits for x in res.instances) / sum(x.cache_hits + x.cache_misses for x in res.instances)

    assert pooled(pp) > pooled(rr)
    groups = t["prefix_group"]
    for g in range(1, 9):  # every prefix group sticks to one instance
        assert len(set(pp.cols["instance"][groups == g].tolist())) == 1


def test_least_loaded_and_always_busiest_are_opposites():
    t = workload(200, gap_us=100)
    _, ll = run(t, num_instances=3, routing=L.ROUTE_LEAST_LOADED, snapshot_refresh_interval_us=0)
    _, ab = run(t, num_instances=3, routing=L.ROUTE_ALWAYS_BUSIEST, snapshot_refresh_interval_us=0)
    ll_counts = np.bincount(ll.cols["instance"], minlength=3)
    ab_counts = np.bincount(ab.cols["instance"], minlength=3)
    assert ll_counts.min() >= 50           # spread
    assert ab_counts.max() == 200          # piles onto one instance


def test_round_robin_cycles_instances_in_order():
    _, res = run(workload(12), num_instances=3)
    assert res.cols["instance"].tolist() == [0, 1, 2] * 4


def test_parse_scorers_validates_like_blis():
    assert parse_scorers("queue-depth:1, kv-utilization:2") == [("queue-depth", 1.0), ("kv-utilization", 2.0)]
    for bad, msg in (("queue-depth", "name:weight"), ("x:1", "known name"), ("queue-depth:1,queue-depth:2", "at most once"),
                     ("queue-depth:-1", "> 0"), ("queue-depth:nan", "> 0"), ("queue-depth:abc", "number")):
        with pytest.raises(ConfigError, match=msg):
            parse_scorers(bad)


# ------------------------------------------------------------ admission
def test_token_bucket_example_from_the_spec():
    t = workload(2)
    t.cols["input_len"][:] = 512
    t.cols["arrival_us"][:] = [0, 500_000]
    sim, res = run(t, admission=L.ADMIT_TOKEN_BUCKET, token_bucket_capacity=10000, token_bucket_refill_rate=1000,
                   trace_decisions=True)
    assert res.rejected == 0
    tokens = sim.glob[L.G_TB_TOKENS_BITS:L.G_TB_TOKENS_BITS + 1].view(np.float64)[0]
    assert tokens == 9476.0


def test_token_bucket_never_admits_a_request_costlier_than_capacity():
    t = workload(5)
    t.cols["input_len"][:] = 600
    _, res = run(t, admission=L.ADMIT_TOKEN_BUCKET, token_bucket_capacity=500, token_bucket_refill_rate=1e9)
    assert res.rejected == 5 and res.shed_by_tier() == {"standard": 5}


def test_reject_all_rejects_everything_and_conservation_holds():
    _, res = run(workload(30), admission=L.ADMIT_REJECT_ALL)
    assert res.rejected == 30
    assert sum(x.injected for x in res.instances) == 0


def test_tier_shed_sheds_low_priority_classes_only_under_load():
    t = workload(300, gap_us=50, classes=("critical", "standard", "sheddable"))
    _, res = run(t, num_instances=2, admission=L.ADMIT_TIER_SHED, tier_shed_threshold=5, tier_shed_min_priority=3,
                 snapshot_refresh_interval_us=0)
    shed = res.shed_by_tier()
    assert shed.get("sheddable", 0) > 0
    assert "critical" not in shed and "standard" not in shed
    light = workload(30, gap_us=1_000_000, classes=("critical", "standard", "sheddable"))
    _, res2 = run(light, num_instances=2, admission=L.ADMIT_TIER_SHED, tier_shed_threshold=5,
                  tier_shed_min_priority=3)
    assert res2.rejected == 0


def test_gaie_legacy_rejects_only_sheddable_when_saturated():
    t = workload(400, gap_us=30, classes=("standard", "batch"))
    _, res = run(t, num_instances=1, admission=L.ADMIT_GAIE_LEGACY, gaie_qd_threshold=2, gaie_kv_threshold=0.8,
                 snapshot_refresh_interval_us=0)
    shed = res.shed_by_tier()
    assert shed.get("batch", 0) > 0 and "standard" not in shed


def test_tenant_budget_sheds_an_over_budget_tenants_sheddable_traffic():
    t = workload(400, gap_us=20, classes=("sheddable",), tenants=("a", "b"))
    _, res = run(t, num_instances=1, max_num_seqs=8, tenant_budgets={"a": 0.25})
    c = res.cols
    rejected_tenants = set(c["tenant"][c["state"] == L.ST_REJECTED].tolist())
    assert res.rejected > 0 and rejected_tenants == {1}


# ------------------------------------------------------------ policy bundle
def test_policy_config_is_strict_and_names_the_path():
    with pytest.raises(ConfigError, match=r"admission\.polcy: unknown key"):
        parse_policy_config("admission:\n  polcy: token-bucket\n")
    with pytest.raises(ConfigError, match=r"routing\.scorers\[1\]\.name: must be a known scorer, got 'magic'"):
        parse_policy_config("routing:\n  policy: weighted\n  scorers:\n  - {name: queue-depth, weight: 1}\n"
                            "  - {name: magic, weight: 1}\n")
    with pytest.raises(ConfigError, match=r"slo_priorities\.gold: must be in \[-100, 100\], got 500"):
        parse_policy_config("admission:\n  slo_priorities: {gold: 500}\n")
    b = parse_policy_config("admission:\n  policy: tier-shed\nrouting:\n  policy: least-loaded\nscheduler: sjf\n")
    assert (b.admission_policy, b.tier_shed_min_priority, b.routing_policy, b.scheduler) == \
        ("tier-shed", 3, "least-loaded", "sjf")


def test_cli_flag_beats_policy_config(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("admission:\n  policy: reject-all\n")
    base = ["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline",
            "--num-requests", "10", "--rate", "5", "--policy-config", str(cfg)]
    assert main(base) == 0
    assert "Rejected Requests (Admission): 10" in capsys.readouterr().out
    assert main(base + ["--admission-policy", "always-admit"]) == 0
    assert '"completed_requests": 10' in capsys.readouterr().out


# ------------------------------------------------------------ traces, counterfactuals, fitness
def test_counterfactual_round_robin_example_from_the_spec():
    # round-robin (no scores) picks A with load 5 while B has load 2 -> regret 3
    scores = np.full((1, 2), np.nan)
    loads = np.array([[5, 2]])
    regret, top = counterfactual(scores, loads, np.array([0]), k=2)
    assert regret.tolist() == [3.0] and top.tolist() == [[1, 0]]


def test_trace_records_every_admission_and_routing_decision(capsys):
    sim, res = run(workload(50, gap_us=100), num_instances=2, admission=L.ADMIT_TOKEN_BUCKET,
                   token_bucket_capacity=3000, token_bucket_refill_rate=100, trace_decisions=True)
    tr = build_trace(sim, counterfactual_k=1)
    s = tr.summary(["instance_0", "instance_1"])
    assert s["total_decisions"] == 50
    assert s["rejected"] == res.rejected > 0
    assert sum(s["target_distribution"].values()) == 50 - res.rejected
    assert tr.tables["routing"].num_rows == 50 - res.rejected


def test_fitness_ttft_component_example():
    _, res = run(workload(1))
    res.cols["ttft_us"][:] = 50_000
    f = res.fitness({"p99_ttft": 1.0})
    assert f["components"]["p99_ttft"] == pytest.approx(1 / 51)
    assert f["score"] == pytest.approx(1 / 51)


def test_jain_fairness_example_and_per_tenant_block():
    t = workload(2, tenants=("t0", "t1"))
    t.cols["output_len"][:] = [300, 100]
    _, res = run(t)
    text = res._per_tenant_text()
    assert "t0: requests=1, tokens=300" in text and "Jain Fairness Index: 0.8000" in text


def test_no_hit_lru_spreads_cold_requests_over_least_recently_used_instances():
    t = workload(8, gap_us=10_000)           # all cold (unique content, no shared prefix)
    _, res = run(t, num_instances=4, routing=L.ROUTE_WEIGHTED,
                 routing_scorers=[("no-hit-lru", 1.0)], cache_signal_delay_us=0)
    inst = res.cols["instance"].tolist()
    # first four go to never-used instances in order, then round the least recently used
    assert inst[:4] == [0, 1, 2, 3] and inst[4:] == [0, 1, 2, 3]


def test_no_hit_lru_scores_warm_requests_evenly():
    t = workload(40, gap_us=20_000, groups=1, plen=256)
    sim, res = run(t, num_instances=3, routing=L.ROUTE_WEIGHTED, routing_scorers=[("no-hit-lru", 1.0)],
                   cache_signal_delay_us=0, trace_decisions=True)
    score = build_trace(sim).tables["candidates"]["score"].to_numpy().reshape(-1, 3)
    assert (score[5:] == 0.5).all()     # the shared prefix is cached somewhere: warm


def test_per_model_block_lists_each_model():
    t = workload(40, gap_us=5000)
    t.names["model"] = ["", "m-large", "m-small"]
    t.cols["model"][:] = 1 + np.arange(40) % 2
    _, res = run(t, num_instances=2)
    text = res._per_model_text()
    assert text.startswith("=== Per-Model Metrics ===\n  m-large:\n    TTFT: p50=")
    assert "(n=20)" in text and "  m-small:" in text and "Throughput:" in text


def test_a_cluster_without_instances_is_refused_up_front():
    """BLIS's policies panic on empty snapshot lists; here the configuration is
    rejected before any routing decision can see an empty snapshot set."""
    with pytest.raises(ConfigError, match="num_instances must be >= 1"):
        Simulation(workload(3), EngineConfig(total_kv_blocks=100, num_instances=0), lat())


def test_python_policy_sees_every_instance_in_its_view():
    from blis.policies import RouterView
    seen = []

    def route(sim, r):
        v = RouterView(sim, r)
        seen.append((v.num_instances, len(v.queue_depth), len(v.effective_load)))
        return r % v.num_instances

    Simulation(workload(9), EngineConfig(total_kv_blocks=1000, num_instances=3), lat(), route_fn=route).run()
    assert seen == [(3, 3, 3)] * 9
