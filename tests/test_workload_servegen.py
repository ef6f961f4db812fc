"""ServeGen data loading (spec/04 §4.14) and ``blis convert servegen`` (§13), on synthetic data directories."""
import math

import numpy as np
import pytest

from blis import convert
from blis.errors import ConfigError
from blis.rng import GoRand
from blis.workload import servegen as SG
from blis.workload.spec import (
    ServeGenDataSpec, WorkloadSpec, expand_workload_spec, generate_spec_requests, load_workload_spec,
    parse_workload_spec,
)

from servegen_data import WINDOW_STARTS, write_language, write_reasoning


def _cli(capsys, *args):
    rc = convert.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_pdf_parsing_and_lognormal_fit():
    assert SG.parse_pdf("{100: 0.5, 200.7: 0.25, 3e2: 2.5e-1,}") == {100: 0.5, 200: 0.25, 300: 0.25}
    assert SG.parse_float_pdf('{"0.0": 0.1, "0.5": 0.9}') == {0.0: 0.1, 0.5: 0.9}
    for bad, msg in [("100: 1", "expected a dict"), ("{}", "empty PDF"), ("{a: 1}", "invalid key"),
                     ("{1 2}", "invalid key:value"), ("{1: x}", "invalid value")]:
        with pytest.raises(ValueError, match=msg):
            SG.parse_pdf(bad)
    with pytest.raises(ValueError, match="outside valid range"):
        SG.parse_float_pdf("{1.5: 1}")
    mu, sigma = SG.fit_lognormal({0: 5.0, 100: 0.25, 400: 0.75, 50: 0.0})
    lx = np.log([100.0, 400.0])
    w = np.array([0.25, 0.75])
    assert mu == pytest.approx((w * lx).sum(), rel=1e-15)
    assert sigma == pytest.approx(math.sqrt((w * lx * lx).sum() - mu * mu), rel=1e-12)
    with pytest.raises(ValueError, match="negative probability"):
        SG.fit_lognormal({10: -1.0})


def test_nearest_dataset_prefers_exact_then_preceding():
    ds = {0: 1, 21600: 2, 43200: 3}
    assert [SG.nearest_dataset(q, ds) for q in (21600, 28800, 599, 90000)] == [21600, 21600, 0, 43200]
    assert SG.nearest_dataset(5, {10: 1}) is None


def test_chunk_becomes_a_client_with_one_window_per_active_row(tmp_path):
    root = write_language(tmp_path / "d", chunks=2)
    c = SG.load_chunk("0", str(root / "chunk-0-trace.csv"), str(root / "chunk-0-dataset.json"))
    active = [s for w, s in enumerate(WINDOW_STARTS) if w % 3 != 0]
    assert [w.start_us for w in c.lifecycle] == [s * 1_000_000 for s in active]
    assert all(w.end_us - w.start_us == 600_000_000 for w in c.lifecycle)
    w1 = c.lifecycle[0]  # chunk 0, window 1: Weibull with fitted shape/scale (scale s -> µs)
    assert (w1.arrival.process, w1.arrival.cv, w1.arrival.shape, w1.arrival.scale) == ("weibull", 1.2, 0.8, 1.51e6)
    assert w1.trace_rate == pytest.approx(0.6)
    # windows use datasets 0, 21600 and 43200: per-window lognormal fits, gaussian client fallback
    assert c.input_distribution.type == "gaussian"
    assert {w.input_distribution.params["mu"] for w in c.lifecycle} == {
        SG.fit_lognormal(SG.parse_pdf(f"{{{k - 40}: 0.25, {k}: 0.5, {k + 40}: 0.25}}"))[0] for k in (200, 210, 220)}
    assert (c.id, c.tenant_id, c.slo_class, c.streaming) == ("servegen-chunk-0", "chunk-0", "standard", True)


def test_language_cohorts_follow_blis_window_choice_and_dealing(tmp_path):
    root = write_language(tmp_path / "d", chunks=7, days=2)
    sg = ServeGenDataSpec(path=str(root), window_duration_secs=300, drain_timeout_secs=60)
    cohorts, category = SG.load_servegen_cohorts(sg, 42)
    assert category == ""
    # expected, from the same Go stream: one Intn(3) per period, then one shuffle per period
    rng = GoRand(42)
    selected = [span + rng.intn(3) * 600 for span in (0, 28800, 50400)]
    expected = []
    for p, (name, sel) in enumerate(zip(("midnight", "morning", "afternoon"), selected)):
        w = WINDOW_STARTS.index(sel)
        active = [c for c in range(7) if (c + w) % 3 != 0]
        idx = np.arange(len(active), dtype=np.int64)
        rng.shuffle(idx)
        groups = {}
        for i, k in enumerate(idx.tolist()):
            groups.setdefault(SG.SLO_DEAL_ORDER[i % 5], []).append(active[k])
        for slo in sorted(groups):
            # average over the two days of each member's rate at that time of day
            rate = sum((0.5 + 0.25 * c + 0.1 * w) + 0.025 for c in groups[slo])
            expected.append((f"{name}-{slo}", len(groups[slo]), p, rate))
    assert [(k.id, k.population) for k in cohorts] == [e[:2] for e in expected]
    for k, (_, _, p, rate) in zip(cohorts, expected):
        assert k.spike.start_time_us == p * 360 * 1_000_000 and k.spike.duration_us == 300_000_000
        assert k.spike.trace_rate == pytest.approx(rate, rel=1e-12)
        assert k.streaming and k.rate_fraction == 1.0 and k.input_distribution.type == "lognormal"
        assert k.arrival.process in ("gamma", "weibull") and k.arrival.cv > 0 and k.arrival.shape > 0


def test_servegen_spec_generates_through_the_time_varying_path(tmp_path):
    root = write_language(tmp_path / "d")
    spec = WorkloadSpec(seed=42, servegen_data=ServeGenDataSpec(path=str(root), window_duration_secs=600,
                                                                drain_timeout_secs=180))
    ex = expand_workload_spec(spec)
    assert ex.aggregate_rate == 0 and ex.clients and ex.servegen_data is None
    t = generate_spec_requests(spec, 10**13, 0)
    t2 = generate_spec_requests(spec, 10**13, 0)
    np.testing.assert_array_equal(t["arrival_us"], t2["arrival_us"])
    arr = t["arrival_us"]
    # three 600 s periods separated by 180 s drains: nothing arrives during a drain
    assert len(t) > 1000 and arr.max() < 2160e6
    assert not ((arr >= 600e6) & (arr < 780e6)).any() and not ((arr >= 1380e6) & (arr < 1560e6)).any()
    assert t["streaming"].all() and set(t.names["slo_class"][1:]) <= set(SG.SLO_DEAL_ORDER)
    # absolute mode: each cohort member's spike keeps its share of the cohort's trace rate
    for k in ex.clients[:3]:
        who = np.array([t.label("client", i) for i in range(len(t))]) == k.id
        w = k.lifecycle[0]
        assert who.sum() == math.ceil(w.trace_rate * (w.end_us - w.start_us) / 1e6) - 1


def test_reasoning_data_gives_one_window_reasoning_cohorts(tmp_path):
    root = write_reasoning(tmp_path / "r", chunks=6)
    cohorts, category = SG.load_servegen_cohorts(ServeGenDataSpec(path=str(root)), 42)
    assert category == "reasoning"
    rng = GoRand(42)
    idx = np.arange(6, dtype=np.int64)
    rng.shuffle(idx)
    groups = {}
    for i, k in enumerate(idx.tolist()):
        groups.setdefault(SG.SLO_DEAL_ORDER[i % 5], []).append(k)
    assert [k.id for k in cohorts] == [f"reasoning-{s}" for s in sorted(groups)]
    for k in cohorts:
        members = groups[k.slo_class]
        assert k.population == len(members)
        assert k.spike.trace_rate == pytest.approx(sum(1.0 + c + 1.0 for c in members))  # window 1200 s
        assert k.closed_loop is False and k.reasoning.multi_turn.max_rounds == 1
        assert k.spike.duration_us == 600_000_000
    ratio = cohorts[0].reasoning.reason_ratio_distribution
    assert ratio.type == "empirical" and set(ratio.params) == {"0", "50", "100"}
    assert ratio.params["50"] == pytest.approx(np.mean([0.2 + 0.05 * c for c in range(6)]))
    t = generate_spec_requests(WorkloadSpec(seed=1, servegen_data=ServeGenDataSpec(path=str(root))), 10**13, 0)
    assert len(t) > 100 and (t["round_index"] == 0).all() and set(np.unique(t["reason_ratio"])) <= {0, 0.5, 1}


def test_convert_servegen_cli(tmp_path, capsys):
    root = write_language(tmp_path / "d")
    rc, out, err = _cli(capsys, "convert", "servegen", "--path", str(root))
    assert rc == 0, err
    assert out.startswith('version: "2"\nseed: 42\ncategory: ""\nclients: []\ncohorts:\n')
    assert "aggregate_rate: 0\n" in out
    spec = parse_workload_spec(out)
    assert [k.id.split("-")[0] for k in spec.cohorts][0] == "midnight"
    again = _cli(capsys, "convert", "servegen", "--path", str(root))[1]
    assert again == out  # deterministic
    rc, morning, _ = _cli(capsys, "convert", "servegen", "--path", str(root), "--time", "morning",
                          "--output", str(tmp_path / "m.yaml"))
    assert rc == 0 and morning == ""
    m = load_workload_spec(tmp_path / "m.yaml")
    assert m.cohorts and all(k.id.startswith("morning-") for k in m.cohorts)
    r = write_reasoning(tmp_path / "r")
    rc, out, _ = _cli(capsys, "convert", "servegen", "--path", str(r))
    assert rc == 0 and "category: reasoning" in out
    # empirical keys in yaml.v3's numeric-aware order
    assert out.index("                  0: ") < out.index("                  50: ") < out.index("100: ")
    rc, _, err = _cli(capsys, "convert", "servegen", "--path", str(r), "--time", "morning")
    assert rc == 1 and "--time must be empty for reasoning workloads" in err


@pytest.mark.parametrize("args,msg", [
    (["--time", "noon"], "--time must be one of: midnight, morning, afternoon (got 'noon')"),
    (["--window-duration-seconds", "0"], "--window-duration-seconds must be > 0, got 0"),
    (["--drain-timeout-seconds", "-1"], "--drain-timeout-seconds must be >= 0, got -1"),
])
def test_convert_servegen_flag_errors(tmp_path, capsys, args, msg):
    rc, out, err = _cli(capsys, "convert", "servegen", "--path", str(tmp_path), *args)
    assert rc == 1 and out == "" and msg in err and "Traceback" not in err


def test_servegen_errors_are_one_clear_line(tmp_path, capsys):
    rc, _, err = _cli(capsys, "convert", "servegen", "--path", str(tmp_path / "missing"))
    assert rc == 1 and "servegen_data.path must be a readable directory" in err
    rc, _, err = _cli(capsys, "convert", "servegen", "--path", str(tmp_path))
    assert rc == 1 and "no chunk-*-trace.csv files found" in err
    # every window poisson: the cohorts carry no cv, and the spec check rejects them (as in BLIS)
    rc, _, err = _cli(capsys, "convert", "servegen", "--path", str(write_language(tmp_path / "p", patterns=False)))
    assert rc == 1 and "generated spec is invalid" in err and "arrival.cv must be a finite number > 0, got 0" in err
    bad = write_language(tmp_path / "b", chunks=1)
    (bad / "chunk-0-dataset.json").write_text('{"0": {"input_tokens": 5}}')
    with pytest.raises(ConfigError, match="chunk 0: dataset .* must be a valid dataset JSON"):
        SG.load_servegen_cohorts(ServeGenDataSpec(path=str(bad)), 42)
    (bad / "chunk-0-trace.csv").write_text("0,1,1,Gamma\n600,1\n")
    with pytest.raises(ConfigError, match="line 2 must have 4 fields like the first record, got 2"):
        SG.parse_trace(str(bad / "chunk-0-trace.csv"))
    spec = WorkloadSpec(seed=1, servegen_data=ServeGenDataSpec(path=str(tmp_path)))
    with pytest.raises(ConfigError, match="loading ServeGen data: .*no chunk-"):
        generate_spec_requests(spec, 10**9)
