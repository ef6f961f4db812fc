"""blis calibrate: the full observe -> replay -> calibrate loop, and the report's rules."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from blis import calibrate as C
from blis.workload.tracev2 import TraceV2, make_header, read_tracev2, write_tracev2

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline", "--hardware", "H100",
         "--tp", "1"]


def _quality(m, r):
    return ("excellent" if m < 0.10 and r > 0.95 else "good" if m < 0.20 and r > 0.85
            else "fair" if m < 0.35 and r > 0.70 else "poor")


def _check_metric(rep, real, sim):
    """The report's numbers for one metric, recomputed independently with numpy."""
    real, sim = np.asarray(real, float), np.asarray(sim, float)
    wl, rl = rep["workload_level"], rep["request_level"]
    assert rep["count"] == len(real)
    assert wl["real_mean"] == pytest.approx(real.mean()) and wl["sim_mean"] == pytest.approx(sim.mean())
    for p in (50, 90, 95, 99):
        assert wl[f"real_p{p}"] == pytest.approx(np.percentile(real, p))      # numpy "linear" = BLIS's rule
        assert wl[f"sim_p{p}"] == pytest.approx(np.percentile(sim, p))
        assert wl[f"p{p}_error"] == pytest.approx(np.percentile(sim, p) - np.percentile(real, p))
    assert wl["real_median"] == wl["real_p50"]
    assert wl["mean_percent_error"] == pytest.approx(abs(sim.mean() - real.mean()) / real.mean())
    nz = real != 0
    mape = np.mean(np.abs(real[nz] - sim[nz]) / real[nz])
    r = np.corrcoef(real, sim)[0, 1] if len(real) >= 3 else 0.0
    assert rl["mape"] == pytest.approx(mape)
    assert rl["pearson_r"] == pytest.approx(r, abs=1e-9)
    bias = (sim - real)[nz].sum()
    assert rl["bias_direction"] == ("over-predict" if bias > 0 else "under-predict" if bias < 0 else "neutral")
    assert rl["quality"] == _quality(mape, r)
    return mape


# ---------------------------------------------------------------------------
# The full loop
# ---------------------------------------------------------------------------
def test_observe_replay_calibrate_loop(tmp_path, capsys):
    pytest.importorskip("aiohttp")
    from fake_openai_server import FakeServer

    from blis import observe
    from blis.cli import main as blis_main

    h, d = tmp_path / "obs.yaml", tmp_path / "obs.csv"
    itl_path = tmp_path / "obs.itl.csv"
    with FakeServer(first_token_delay_s=0.02, token_gap_s=0.004, max_lifetime_s=120) as srv:
        rc = observe.main(["--server-url", srv.url, "--model", "fake", "--trace-header", str(h),
                           "--trace-data", str(d), "--tokens-per-word", "1", "--rate", "50", "--num-requests", "40",
                           "--prompt-tokens", "64", "--prompt-tokens-stdev", "16", "--prompt-tokens-min", "8",
                           "--prompt-tokens-max", "200", "--output-tokens", "24", "--output-tokens-stdev", "6",
                           "--output-tokens-min", "4", "--output-tokens-max", "40", "--record-itl",
                           "--rtt-ms", "0.25", "--warmup-requests", "4"])
    assert rc == 0
    capsys.readouterr()
    trace = read_tracev2(h, d)
    assert len(trace) == 36 and trace.header["warm_up_requests"] == 4
    assert trace.header["network"]["measured_rtt_ms"] == 0.25

    sim_path = tmp_path / "sim.json"
    assert blis_main(["replay", *MODEL, "--trace-header", str(h), "--trace-data", str(d),
                      "--results-path", str(sim_path)]) == 0
    capsys.readouterr()
    sims = json.loads(sim_path.read_text())
    assert sorted(s["request_id"] for s in sims) == sorted(trace.records["request_id"].tolist())

    report_path, png = tmp_path / "report.json", tmp_path / "cal.png"
    try:
        import matplotlib  # noqa: F401
        plot = ["--plot", str(png)]
    except ImportError:
        plot = []
    assert C.main(["--trace-header", str(h), "--trace-data", str(d), "--sim-results", str(sim_path),
                   "--report", str(report_path), "--itl-data", str(itl_path), *plot]) == 0
    rep = json.loads(report_path.read_text())
    assert list(rep) == ["trace_info", "metrics", "config_match", "known_limitations", "ttft_tolerance"]
    # observe never records warm-up ids, so the header's warm-up count excludes nothing here
    assert rep["trace_info"] == {"num_requests": 36, "warm_up_excluded": 0, "matched_pairs": 36,
                                 "token_mismatches": 0}
    assert list(rep["metrics"]) == ["e2e", "itl", "ttft"]
    assert rep["config_match"] == {} and len(rep["known_limitations"]) == 4

    # recompute every pair by hand: real from the trace, simulated + RTT (250 us) from the replay results
    r = trace.records
    by_id = {s["request_id"]: s for s in sims}
    ids = r["request_id"].tolist()
    real_ttft = (r["first_chunk_time_us"] - r["send_time_us"]).astype(float)
    real_e2e = (r["last_chunk_time_us"] - r["send_time_us"]).astype(float)
    sim_ttft = np.array([by_id[i]["ttft_us"] + 250 for i in ids])
    sim_e2e = np.array([by_id[i]["e2e_us"] + 250 for i in ids])
    ttft_mape = _check_metric(rep["metrics"]["ttft"], real_ttft, sim_ttft)
    _check_metric(rep["metrics"]["e2e"], real_e2e, sim_e2e)
    itl = C.load_itl(itl_path)
    real_itl = [np.diff([t for _, t in sorted(itl[i])]).mean() for i in ids]
    sim_itl = [(by_id[i]["e2e_us"] - by_id[i]["ttft_us"]) / (by_id[i]["output_tokens"] - 1) for i in ids]
    _check_metric(rep["metrics"]["itl"], real_itl, sim_itl)
    assert rep["ttft_tolerance"] == {"mape": pytest.approx(ttft_mape), "threshold": 0.15,
                                     "within": bool(ttft_mape <= 0.15)}
    if plot:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # an explicit warm-up count excludes by request id; RTT override is in microseconds
    assert C.main(["--trace-header", str(h), "--trace-data", str(d), "--sim-results", str(sim_path),
                   "--report", str(report_path), "--warmup-requests", "10", "--network-rtt-us", "0"]) == 0
    rep2 = json.loads(report_path.read_text())
    assert rep2["trace_info"]["warm_up_excluded"] == 6 and rep2["trace_info"]["matched_pairs"] == 30
    keep = [k for k, i in enumerate(ids) if i >= 10]
    _check_metric(rep2["metrics"]["ttft"], real_ttft[keep], (sim_ttft - 250)[keep])
    assert "itl" not in rep2["metrics"]


# ---------------------------------------------------------------------------
# Pairing rules and statistics on crafted data
# ---------------------------------------------------------------------------
def _trace(rows, header=None):
    """rows: (request_id, send, first, last, input, server_input, output[, status, slo_class])."""
    cols = {k: [] for k in ("request_id", "send_time_us", "first_chunk_time_us", "last_chunk_time_us",
                            "input_tokens", "server_input_tokens", "output_tokens", "status", "slo_class")}
    for row in rows:
        row = list(row) + ["ok", ""][len(row) - 7:] if len(row) < 9 else list(row)
        for k, v in zip(cols, row):
            cols[k].append(v)
    rec = {k: np.array(v, dtype=object if k in ("status", "slo_class") else np.int64) for k, v in cols.items()}
    rec["arrival_time_us"] = rec["send_time_us"].copy()
    return TraceV2(header or make_header("real", time_unit="us"), rec)


def _sim(rid, ttft, e2e, inp, out, **kw):
    return {"request_id": rid, "ttft_us": float(ttft), "e2e_us": float(e2e), "input_tokens": inp,
            "output_tokens": out, "slo_class": kw.get("slo_class", ""), "model": "",
            "itl_mean_us": kw.get("itl_mean_us", 0.0)}


def test_pairing_rules():
    tr = _trace([
        (0, 1000, 2000, 5000, 10, 0, 4),        # warm-up (id < 1)
        (1, 1000, 1500, 9000, 10, 12, 4),       # server_input_tokens 12 = sim input: no mismatch
        (2, 1000, 1800, 7000, 10, 0, 5),        # output mismatch (sim says 4)
        (3, 1000, 0, 0, 10, 0, 0, "error"),     # negative latency: matched, mismatched AND unmatched (BLIS)
        (4, 1000, 1200, 3000, 10, 0, 4),        # no sim result: unmatched
    ])
    sims = [_sim(1, 400, 7000, 12, 4), _sim(2, 600, 5000, 10, 4), _sim(3, 1, 2, 10, 4), _sim(9, 1, 2, 1, 1)]
    p = C.prepare_pairs(tr, sims, warmup=1, rtt_us=100, bandwidth_mbps=8.0)
    assert (p.excluded_warmup, p.matched, p.unmatched_real, p.unmatched_sim, p.token_mismatches) == (1, 3, 2, 1, 2)
    assert p.ttft_real == [500.0, 800.0] and p.e2e_real == [8000.0, 6000.0]
    up = lambda n: n * 4 * 8 / 8.0     # noqa: E731  (µs at 8 Mbps)
    assert p.ttft_sim == pytest.approx([400 + 100 + up(12), 600 + 100 + up(10)])
    assert p.e2e_sim == pytest.approx([7000 + 100 + up(12) + up(4), 5000 + 100 + up(10) + up(4)])
    rep = C.build_report(p)
    assert rep["trace_info"] == {"num_requests": 6, "warm_up_excluded": 1, "matched_pairs": 3,
                                 "token_mismatches": 2}


def test_itl_pairs_and_dropped_requests():
    tr = _trace([(1, 0, 100, 1000, 5, 0, 4), (2, 0, 100, 1000, 5, 0, 4), (3, 0, 100, 1000, 5, 0, 1)])
    sims = [_sim(1, 100, 1000, 5, 4), _sim(2, 100, 1000, 5, 4), _sim(3, 100, 1000, 5, 1)]
    itl = {1: [(2, 400), (0, 100), (1, 250)],          # out of order: sorted by chunk index
           2: [(0, 500), (1, 400)],                   # only negative deltas: dropped
           3: [(0, 100), (1, 100)]}                   # a zero delta counts
    p = C.prepare_pairs(tr, sims, itl=itl)
    assert p.itl_real == [150.0, 0.0] and p.itl_sim == [300.0, 0.0] and p.itl_dropped == 1
    assert C.build_report(p)["trace_info"]["itl_dropped"] == 1


@pytest.mark.parametrize("real,sim,quality", [
    ([100, 200, 300, 400], [105, 195, 310, 390], "excellent"),
    ([100, 200, 300, 400], [115, 170, 340, 360], "good"),
    ([100, 200, 300, 400], [130, 150, 390, 300], "fair"),
    ([100, 200, 300, 400], [400, 300, 200, 100], "poor"),
    ([100, 200], [100, 200], "poor"),              # r needs n >= 3: 0 -> poor even when exact
])
def test_quality_verdicts(real, sim, quality):
    m = C.compare_metric(real, sim)
    _check_metric(m, real, sim)
    assert m["request_level"]["quality"] == quality


def test_metric_edge_cases():
    m = C.compare_metric([0.0, 100.0, 200.0], [5.0, 100.0, 200.0])      # real 0 skipped in MAPE
    assert m["request_level"]["mape"] == 0 and m["request_level"]["bias_direction"] == "neutral"
    m = C.compare_metric([0.0, 0.0], [1.0, 2.0])                         # no usable pair
    assert m["request_level"]["bias_direction"] == "" and m["request_level"]["mape"] == 0
    assert m["workload_level"]["mean_percent_error"] == 0               # real mean 0: no division
    assert C.compare_metric([5.0, 5.0, 5.0], [1.0, 2.0, 3.0])["request_level"]["pearson_r"] == 0
    assert C.percentile_sorted([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)


def test_report_json_is_go_formatted():
    p = C.prepare_pairs(_trace([(i, 0, 1000 * (i + 1), 5000, 5, 0, 3) for i in range(3)]),
                        [_sim(i, 1000 * (i + 1), 5000, 5, 3) for i in range(3)])
    text = C.report_json(C.build_report(p))
    assert '"real_mean": 2000,' in text and '"count": 3\n' in text and '"mape": 0,' in text
    assert text.startswith('{\n  "trace_info": {\n    "num_requests": 3,')
    assert not text.endswith("\n")


def test_goodput_hit_rate_and_tolerance(tmp_path):
    header = make_header("real", time_unit="us",
                         goodput_slo_targets={"critical": {"ttft_ms": 1.0, "e2e_ms": 10.0}},
                         observed_kv_metrics={"source": "tiered", "hit_rate": 0.5, "block_hits": 5,
                                              "block_queries": 10})
    tr = _trace([(0, 0, 500, 8000, 5, 0, 3, "ok", "critical"),      # meets both
                 (1, 0, 1500, 8000, 5, 0, 3, "ok", "critical"),     # misses TTFT
                 (2, 0, 0, 0, 5, 0, 3, "error", "critical"),        # failed: denominator only
                 (3, 0, 500, 2_000_000, 5, 0, 3, "ok", "")], header)   # class "default": not targeted
    sims = [_sim(0, 900, 9000, 5, 3), _sim(1, 900, 9000, 5, 3), _sim(2, 900, 20000, 5, 3),
            _sim(3, 100, 200, 5, 3)]
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"completed_requests": 4, "cache_hit_rate": 0.53}))
    rep, _ = C.calibrate(tr, sims, C.CalibrationOptions(sim_metrics=str(metrics), ttft_mape_threshold=0.5))
    g = rep["goodput"]
    assert g["targets"] == {"critical": {"TTFTMs": 1.0, "ITLMs": 0.0, "E2EMs": 10.0}}
    pc = g["per_class"]["critical"]
    assert pc["count"] == 3
    assert pc["real_slo_attainment"] == pytest.approx(1 / 3) and pc["sim_slo_attainment"] == pytest.approx(2 / 3)
    runtime = 2.0                                                   # max last - min send over matched rows
    assert pc["real_goodput_rps"] == pytest.approx(1 / runtime) and pc["sim_goodput_rps"] == pytest.approx(2 / runtime)
    assert pc["real_attainment_by_dim"] == {"e2e": 1.0, "ttft": 0.5}
    assert pc["sim_attainment_by_dim"] == {"e2e": pytest.approx(2 / 3), "ttft": 1.0}
    hr = rep["hit_rate"]
    assert hr["abs_error_pp"] == pytest.approx(3.0) and hr["within"] and hr["source"] == "tiered"
    assert rep["ttft_tolerance"]["threshold"] == 0.5
    assert list(rep)[-3:] == ["goodput", "hit_rate", "ttft_tolerance"]
    # CLI targets override the header per dimension
    rep, _ = C.calibrate(tr, sims, C.CalibrationOptions(slo_ttft="critical=2ms"))
    assert rep["goodput"]["targets"]["critical"] == {"TTFTMs": 2.0, "ITLMs": 0.0, "E2EMs": 10.0}


def test_errors(tmp_path, capsys):
    tr = _trace([(1, 0, 100, 200, 5, 0, 3)])
    with pytest.raises(Exception, match="No sim results"):
        C.calibrate(tr, [])
    with pytest.raises(Exception, match="No matching request IDs"):
        C.calibrate(tr, [_sim(7, 1, 2, 5, 3)])
    with pytest.raises(Exception, match="negative latencies"):
        C.calibrate(_trace([(1, 500, 0, 0, 5, 0, 3, "error", "")]), [_sim(1, 1, 2, 5, 3)])
    with pytest.raises(Exception, match="--network-rtt-us must be >= 0"):
        C.calibrate(tr, [_sim(1, 1, 2, 5, 3)], C.CalibrationOptions(network_rtt_us=-5))
    with pytest.raises(Exception, match="--slo-ttft"):
        C.calibrate(tr, [_sim(1, 1, 2, 5, 3)], C.CalibrationOptions(slo_ttft="critical=fast"))
    h, d = tmp_path / "t.yaml", tmp_path / "t.csv"
    write_tracev2(tr, h, d)
    sims = tmp_path / "s.json"
    sims.write_text("[]")
    rc = C.main(["--trace-header", str(h), "--trace-data", str(d), "--sim-results", str(sims),
                 "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 1 and "No sim results" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()
    rc = C.main(["--trace-header", str(h), "--trace-data", str(d)])
    assert rc == 1 and "--sim-results is required" in capsys.readouterr().err
    bad_itl = tmp_path / "itl.csv"
    bad_itl.write_text("request_id,chunk_index,timestamp_us\n1,0,-5\n")
    with pytest.raises(Exception, match="negative value"):
        C.load_itl(bad_itl)
