"""Closed-loop session replay (spec/04 §5-§6; BLIS ``blis replay --session-mode closed-loop``):
follow-up rounds arrive a think time after the previous round completes; think-time
sources and ``--think-time-dist`` parsing; horizons; the CLI surface."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from blis.cli import main
from blis.engine import EngineConfig, Simulation
from blis.errors import ConfigError
from blis.kernels import layout as Lo
from blis.rng import GoRand
from blis.workload.distributions import LENGTH_CONSTANT, LENGTH_LOGNORMAL
from blis.workload.sessions import horizon_from_max_arrival, parse_think_time_dist, tracev2_session_workload
from blis.workload.tracev2 import TraceV2, make_header, write_tracev2

from test_engine_invariants import toy


def _trace(rows, growth=""):
    """A trace from (session, round, arrival, input, output, prefix_group, prefix_length, think) tuples."""
    cols = list(zip(*rows))
    n = len(rows)
    rec = {"request_id": np.arange(n), "session_id": list(cols[0]), "round_index": cols[1],
           "arrival_time_us": cols[2], "input_tokens": cols[3], "output_tokens": cols[4],
           "prefix_group": list(cols[5]), "prefix_length": cols[6], "think_time_us": cols[7],
           "client_id": ["c"] * n, "slo_class": ["gold" if s else "" for s in cols[0]],
           "deadline_us": [a + 10**9 for a in cols[2]]}
    return TraceV2(make_header("generated", session_context_growth=growth), rec)


#: two sessions (3 and 2 rounds) and a loose request; rounds recorded 1 s apart
ROWS = [
    ("s1", 0, 1_000, 120, 30, "sys", 32, 0),
    ("s2", 0, 2_000, 80, 20, "", 0, 0),
    ("", 0, 3_000, 60, 10, "", 0, 0),
    ("s1", 1, 1_001_000, 50, 25, "sys", 32, 0),
    ("s2", 1, 1_502_000, 40, 15, "", 0, 0),
    ("s1", 2, 2_001_000, 70, 5, "sys", 32, 0),
]


def _sim(table, horizon=10**12, **cfg):
    cfg.setdefault("total_kv_blocks", 20_000)
    sim = Simulation(table, EngineConfig(horizon_us=horizon, **cfg),
                     toy(base_us=800.0, per_prefill_token_us=3.0, per_decode_us=1.0))
    return sim, sim.run()


def _rounds(sim):
    t = sim.table
    out = {}
    for r in range(len(t)):
        s = t.label("session", r)
        if s:
            out.setdefault(s, []).append(r)
    return {s: sorted(rows, key=lambda r: int(t["round_index"][r])) for s, rows in out.items()}


# ---------------------------------------------------------------- the session table
def test_only_round_zero_and_loose_records_are_injected():
    t = tracev2_session_workload(_trace(ROWS), 42, None, 10**12)
    assert t["arrival_us"].tolist() == [1_000, 2_000, 3_000]
    assert t["request_id"].tolist() == [0, 1, 2] and (t["round_index"] == 0).all()
    assert [bp.sid for bp in t.sessions.blueprints] == ["s1", "s2"]
    assert [bp.max_rounds for bp in t.sessions.blueprints] == [3, 2]
    bp1 = t.sessions.blueprints[0]
    assert bp1.prefix_len == 32 and bp1.prefix_row == 0 and t["input_len"][0] == 152
    assert bp1.timeout is None and bp1.horizon == 10**12 and not bp1.accumulate


@pytest.mark.parametrize("think", [None, "constant:value=250ms"])
def test_follow_ups_arrive_think_time_after_the_previous_round_completes(think):
    sampler = parse_think_time_dist(think) if think else None
    sim, res = _sim(tracev2_session_workload(_trace(ROWS), 42, sampler, 10**12))
    t, rq = sim.table, sim.rq
    rounds = _rounds(sim)
    assert {s: len(r) for s, r in rounds.items()} == {"s1": 3, "s2": 2}
    # no think time given: the recorded arrival gaps (1 s and 1 s for s1, 1.5 s for s2)
    gaps = {"s1": [1_000_000, 1_000_000], "s2": [1_500_000]}
    recorded = {"s1": [(50, 25), (70, 5)], "s2": [(40, 15)]}
    for s, rows in rounds.items():
        for k, (prev, nxt) in enumerate(zip(rows, rows[1:])):
            think_us = 250_000 if think else gaps[s][k]
            assert int(rq[Lo.R_ARRIVAL, nxt]) == int(rq[Lo.R_DONE_TICK, prev]) + think_us
            li, lo = recorded[s][k]
            plen = 32 if s == "s1" else 0
            assert int(t["input_len"][nxt]) == plen + li and int(t["output_len"][nxt]) == lo
            assert t.label("session", nxt) == s and t.label("slo_class", nxt) == "gold"
            assert int(t["deadline_us"][nxt]) == int(t["arrival_us"][nxt]) + 300_000_000  # BLIS: session default
            assert t.names["name"][int(t["name"][nxt])].startswith(f"session_{s}_round_{k + 1}_")
    assert np.all(res.cols["state"] == Lo.ST_COMPLETED)


def test_recorded_think_times_win_over_arrival_gaps():
    rows = [r[:7] + ((0,) if r[1] == 0 else (7_000 * (r[1] + 1),)) for r in ROWS]
    sim, _ = _sim(tracev2_session_workload(_trace(rows), 42, None, 10**12))
    rq = sim.rq
    for s, rs in _rounds(sim).items():
        for k, (prev, nxt) in enumerate(zip(rs, rs[1:])):
            assert int(rq[Lo.R_ARRIVAL, nxt]) - int(rq[Lo.R_DONE_TICK, prev]) == 7_000 * (k + 2)


def test_accumulate_replays_the_previous_round_and_its_actual_output_then_the_recorded_input():
    sim, res = _sim(tracev2_session_workload(_trace(ROWS, "accumulate"), 42, None, 10**12), num_instances=1)
    t, rq = sim.table, sim.rq
    s1 = _rounds(sim)["s1"]
    for prev, nxt in zip(s1, s1[1:]):
        ctx = int(rq[Lo.R_PI, prev])  # the parent's input + the output it produced
        assert int(t["context_parent"][nxt]) == prev and int(t["context_len"][nxt]) == ctx
        assert int(t["input_len"][nxt]) == ctx + {1: 50, 2: 70}[int(t["round_index"][nxt])]
    assert res.instances[0].cache_hits >= sum(int(t["context_len"][r]) // 16 for r in s1[1:])


def test_the_horizon_interrupts_sessions_and_follow_ups_use_the_session_rng():
    # horizon between round 1 and round 2 of s1: round 2 is never generated
    sim, _ = _sim(tracev2_session_workload(_trace(ROWS), 42, None, 1_700_000))
    assert {s: len(r) for s, r in _rounds(sim).items()} == {"s1": 2, "s2": 2}
    assert sim.sessions.counts()["horizon_interrupted"] == 1


def test_lognormal_think_times_are_drawn_from_each_sessions_rng_as_blis_does():
    sampler = parse_think_time_dist("lognormal:mu=-1.0,sigma=0.8,min=50ms,max=3s")
    sim, _ = _sim(tracev2_session_workload(_trace(ROWS), 7, sampler, 10**12))
    rq = sim.rq
    # BLIS: rng = NewSource(seed); prefix tokens per group; then per session (first-appearance order)
    # NewSource(rng.Int63()), round 0's input and output tokens, then per follow-up: think, tokens
    rng = GoRand(7)
    rng.skip_intn(128000, 32)
    for s, (li0, lo0, follow) in {"s1": (120, 30, [(50, 25), (70, 5)]), "s2": (80, 20, [(40, 15)])}.items():
        srng = GoRand(rng.int63())
        srng.skip_intn(128000, li0)
        srng.skip_intn(128000, lo0)
        rows = _rounds(sim)[s]
        for (li, lo), prev, nxt in zip(follow, rows, rows[1:]):
            z = math.exp(-1.0 + math.log(1e6) + 0.8 * srng.norm_float64())
            want = min(3_000_000, max(50_000, int(round(z))))
            assert int(rq[Lo.R_ARRIVAL, nxt]) - int(rq[Lo.R_DONE_TICK, prev]) == want
            srng.skip_intn(128000, li)
            srng.skip_intn(128000, lo)


def test_session_errors():
    bad = [r for r in ROWS if not (r[0] == "s1" and r[1] == 1)]
    with pytest.raises(ConfigError, match=r"session 's1' round_index values must be consecutive from 0, "
                                          r"expected 1, got 2"):
        tracev2_session_workload(_trace(bad), 42, None, 0)
    with pytest.raises(ConfigError, match=r"session_context_growth must be \"accumulate\" or empty, got 'Accumulate'"):
        tracev2_session_workload(_trace(ROWS, "Accumulate"), 42, None, 0)


def test_a_trace_without_sessions_is_replayed_with_fixed_timing(caplog):
    rows = [r for r in ROWS if r[0] == ""]
    t = tracev2_session_workload(_trace(rows), 42, None, 0)
    assert t.sessions is None and t["arrival_us"].tolist() == [3_000]
    assert "no session records found" in caplog.text


# ---------------------------------------------------------------- --think-time-dist parsing
@pytest.mark.parametrize("text,kind,params", [
    ("constant:value=500ms", LENGTH_CONSTANT, [500_000]),
    ("constant:value=2s", LENGTH_CONSTANT, [2_000_000]),
    ("constant:value=250us", LENGTH_CONSTANT, [250]),
    ("constant:value=1.5", LENGTH_CONSTANT, [1_500]),         # bare number: milliseconds
    ("constant: value=3s , ", LENGTH_CONSTANT, [3_000_000]),  # blanks around items are trimmed
    ("lognormal:mu=2.0,sigma=0.6", LENGTH_LOGNORMAL, [2.0 + math.log(1e6), 0.6, 0, 0]),
    ("lognormal:mu=2.0,sigma=0.6,min=3s,max=30s", LENGTH_LOGNORMAL, [2.0 + math.log(1e6), 0.6, 3e6, 3e7]),
])
def test_think_time_dist_parses_blis_forms(text, kind, params):
    s = parse_think_time_dist(text)
    assert s.kind == kind and s.params.tolist() == params


@pytest.mark.parametrize("text,needle", [
    ("constant", r"--think-time-dist: must have the form type:key=value,\.\.\. \(types: lognormal, constant\), "
                 r"got 'constant'"),
    ("gamma:shape=2", r"--think-time-dist: type must be one of lognormal, constant, got 'gamma'"),
    ("constant:", r"constant requires parameter 'value'"),
    ("constant:value", r"parameter 'value' must be key=value"),
    ("constant:value=1s,value=2s", r"parameter 'value' must be given once"),
    ("constant:value=-5ms", r"constant value must be a non-negative time .* got '-5ms'"),
    ("constant:value=fast", r"constant value must be a non-negative time .* got 'fast'"),
    ("lognormal:sigma=1", r"lognormal requires parameter 'mu'"),
    ("lognormal:mu=1", r"lognormal requires parameter 'sigma'"),
    ("lognormal:mu=x,sigma=1", r"lognormal mu must be a number, got 'x'"),
    ("lognormal:mu=inf,sigma=1", r"lognormal mu must be a finite number, got 'inf'"),
    ("lognormal:mu=1,sigma=0", r"lognormal sigma must be a finite positive number, got '0'"),
    ("lognormal:mu=1,sigma=1,min=5s,max=1s", r"lognormal min must be <= max, got min=5000000 µs, max=1000000 µs"),
    ("lognormal:mu=1,sigma=1,max=NaNs", r"lognormal max must be a non-negative time"),
])
def test_think_time_dist_errors_name_the_flag_and_the_value(text, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_think_time_dist(text)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1e6, allow_nan=False), st.sampled_from([("us", 1), ("ms", 1_000), ("s", 1_000_000), ("", 1_000)]))
def test_constant_think_times_truncate_to_microseconds_like_go(v, unit):
    suffix, scale = unit
    s = parse_think_time_dist(f"constant:value={v!r}{suffix}")
    assert s.params[0] == math.trunc(v * scale)
    assert s.sample(GoRand(1)) == max(1, math.trunc(v * scale))  # BLIS's constant sampler floors at 1


def test_horizon_rule():
    assert horizon_from_max_arrival(0) == 600_000_000
    assert horizon_from_max_arrival(5) == 10
    assert horizon_from_max_arrival(2**62) == 2**63 - 1


# ---------------------------------------------------------------- CLI
CLI = ["replay", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline", "--hardware", "H100",
       "--tp", "1"]


def _files(tmp_path, rows=ROWS, growth=""):
    h, d = tmp_path / "t.yaml", tmp_path / "t.csv"
    write_tracev2(_trace(rows, growth), h, d)
    return ["--trace-header", str(h), "--trace-data", str(d)]


def test_cli_closed_loop_replay_is_deterministic_and_reports_sessions(tmp_path, capsys):
    outs = []
    for k in range(2):
        m, res, tr = tmp_path / f"m{k}.json", tmp_path / f"r{k}.json", tmp_path / f"t{k}"
        # BLIS's default horizon is twice the latest injected arrival (6 ms here): give one
        assert main(CLI + _files(tmp_path) + ["--session-mode", "closed-loop", "--think-time-dist",
                                              "lognormal:mu=-2,sigma=0.5", "--horizon", "60000000",
                                              "--metrics-path", str(m),
                                              "--results-path", str(res), "--trace-output", str(tr)]) == 0
        outs.append((capsys.readouterr().out, m.read_text(), res.read_text(), (tmp_path / f"t{k}.csv").read_text()))
    assert outs[0] == outs[1]
    metrics = json.loads(outs[0][1])
    assert metrics["completed_requests"] == 6  # 3 injected + 3 follow-ups
    assert [r["request_id"] for r in json.loads(outs[0][2])] == [0, 1, 2]  # follow-ups have no numeric id
    assert len(outs[0][3].strip().splitlines()) == 1 + 3  # the trace re-export lists the injected requests
    fixed = tmp_path / "fixed.json"
    assert main(CLI + _files(tmp_path) + ["--metrics-path", str(fixed)]) == 0
    capsys.readouterr()
    assert json.loads(fixed.read_text())["completed_requests"] == 6


@pytest.mark.parametrize("extra,needle", [
    (["--session-mode", "open"], "--session-mode: must be one of the valid names, got 'open'; valid: fixed, closed-loop"),
    (["--think-time-ms", "-1", "--session-mode", "closed-loop"], "--think-time-ms: must be >= 0, got -1"),
    (["--think-time-ms", "5"], "--think-time-ms: requires --session-mode closed-loop, got --session-mode fixed"),
    (["--think-time-dist", "constant:value=1s"], "--think-time-dist: requires --session-mode closed-loop"),
    (["--session-mode", "closed-loop", "--think-time-ms", "0", "--think-time-dist", "constant:value=1s"],
     "--think-time-ms and --think-time-dist are mutually exclusive"),
    (["--session-mode", "closed-loop", "--think-time-dist", ""], "--think-time-dist: must have the form"),
    (["--session-mode", "closed-loop", "--think-time-dist", "weibull:k=1"],
     "--think-time-dist: type must be one of lognormal, constant, got 'weibull'"),
])
def test_cli_session_flag_errors(tmp_path, capsys, extra, needle):
    assert main(CLI + _files(tmp_path) + extra) != 0
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_think_time_ms_is_a_constant_think_time(tmp_path, capsys):
    out = {}
    for name, flags in (("ms", ["--think-time-ms", "40"]), ("dist", ["--think-time-dist", "constant:value=40ms"])):
        m = tmp_path / f"{name}.json"
        assert main(CLI + _files(tmp_path) + ["--session-mode", "closed-loop", "--metrics-path", str(m)] + flags) == 0
        capsys.readouterr()
        out[name] = m.read_text()
    assert out["ms"] == out["dist"]


def test_cli_horizons_follow_blis(tmp_path):
    from blis.cli import build_replay_workload, parse_args
    rows = [r for r in ROWS]
    files = _files(tmp_path, rows)
    ns = parse_args(CLI + files + ["--session-mode", "closed-loop"])
    table, horizon = build_replay_workload(ns)
    # twice the latest injected arrival (round 0 and loose records; the recorded follow-ups do not count)
    assert horizon == 6_000 and {bp.horizon for bp in table.sessions.blueprints} == {6_000}
    ns = parse_args(CLI + files + ["--session-mode", "closed-loop", "--horizon", "123456789"])
    table, horizon = build_replay_workload(ns)
    assert horizon == 123_456_789 and {bp.horizon for bp in table.sessions.blueprints} == {123_456_789}
    ns = parse_args(CLI + files)
    table, horizon = build_replay_workload(ns)
    assert table.sessions is None and len(table) == 6 and horizon == 4_002_000  # fixed: every record


def test_cli_trace_export_lists_requests_in_blis_order(tmp_path, capsys):
    # the loose request arrives first but BLIS lists every session's round 0 before the loose records
    rows = [r if r[0] else ("", 0, 500, 60, 10, "", 0, 0) for r in ROWS]
    tr = tmp_path / "out"
    assert main(CLI + _files(tmp_path, rows) + ["--session-mode", "closed-loop", "--horizon", "60000000",
                                                "--trace-output", str(tr)]) == 0
    capsys.readouterr()
    lines = (tmp_path / "out.csv").read_text().strip().splitlines()
    head = lines[0].split(",")
    recs = [dict(zip(head, ln.split(","))) for ln in lines[1:]]
    assert [(r["request_id"], r["session_id"], r["arrival_time_us"]) for r in recs] == [
        ("0", "s1", "1000"), ("1", "s2", "2000"), ("2", "", "500")]
