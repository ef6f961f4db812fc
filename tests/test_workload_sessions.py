"""Multimodal, open-loop reasoning and time-varying generation (spec/04 §4.5, §4.6, §4.9-§4.11).

BLIS has no fixtures for these paths, so each test recomputes the expected
draws independently: a Python loop over :class:`blis.rng.GoRand` (Go's
``math/rand``) in the order BLIS's ``generator.go`` / ``reasoning.go`` /
``multimodal.go`` draw, compared with the compiled generator.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from blis.errors import ConfigError
from blis.rng import GoRand, SUBSYSTEM_WORKLOAD_GEN, derive_seed
from blis.workload import generator as G
from blis.workload.distributions import make_arrival_sampler, make_length_sampler
from blis.workload.spec import (
    ActiveWindow, ArrivalSpec, ClientSpec, DistSpec, MultimodalSpec, MultiTurnSpec, ReasoningSpec,
    WorkloadSpec, generate_spec_requests, parse_workload_spec,
)
from blis.workload.synthesis import generate_requests

MAX_TOKEN = 128000
NO_TIMEOUT = None


def _skip(rng, k):
    if k > 0:
        rng.skip_intn(MAX_TOKEN, k)


def _sampler(d):
    return make_length_sampler(d.type, d.params)


def _client_rng(seed, prefix_lengths=()):
    w = GoRand(derive_seed(seed, SUBSYSTEM_WORKLOAD_GEN))
    for n in prefix_lengths:
        w.skip_intn(MAX_TOKEN, n)
    return w


def _labels(t, col):
    return [t.label(col, i) for i in range(len(t))]


# ---------------------------------------------------------------------------
# Multimodal (§4.5)
# ---------------------------------------------------------------------------
MM = MultimodalSpec(
    text_distribution=DistSpec("exponential", {"mean": 40, "min": 4, "max": 200}),
    image_distribution=DistSpec("gaussian", {"mean": 500, "std_dev": 80, "min": 100, "max": 900}),
    image_count_distribution=DistSpec("empirical", {"1": 0.5, "2": 0.3, "3": 0.2}),
    audio_distribution=DistSpec("constant", {"value": 300}),
    audio_count_distribution=DistSpec(""),  # unset count: no audio, no draw
    video_distribution=DistSpec("constant", {"value": 1000}),
    video_count_distribution=DistSpec("gaussian", {"mean": 1, "std_dev": 1, "min": 0, "max": 2}),
)


def _mm_spec(**kw):
    c = ClientSpec(id="vis", rate_fraction=1.0, arrival=ArrivalSpec("poisson"),
                   input_distribution=DistSpec("constant", {"value": 7}),
                   output_distribution=DistSpec("lognormal", {"mu": 4.0, "sigma": 0.6, "min": 2, "max": 400}),
                   prefix_group="sys", prefix_length=24, multimodal=MM, streaming=True, **kw)
    return WorkloadSpec(seed=77, aggregate_rate=5.0, num_requests=300, clients=[c])


def test_multimodal_draws_follow_blis_order():
    spec = _mm_spec()
    t = generate_requests(spec)
    rng = GoRand(_client_rng(77, [24]).int63())
    a = make_arrival_sampler("poisson", 5.0 / 1e6)
    s = {k: _sampler(getattr(MM, k)) for k in G.MULTIMODAL_KEYS if getattr(MM, k).type}
    out = _sampler(spec.clients[0].output_distribution)
    clock = 0
    rows = []
    for _ in range(300):
        clock += a.sample_iat(rng)
        text = s["text_distribution"].sample(rng)
        image = sum(s["image_distribution"].sample(rng) for _ in range(s["image_count_distribution"].sample(rng)))
        video = sum(s["video_distribution"].sample(rng) for _ in range(s["video_count_distribution"].sample(rng)))
        total = max(text + image + video, 1)
        _skip(rng, total)
        lo = out.sample(rng)
        _skip(rng, lo)
        rows.append((clock, total + 24, lo, text, image, 0, video))
    exp = np.array(rows).T
    for k, name in enumerate(["arrival_us", "input_len", "output_len", "text_tokens", "image_tokens",
                              "audio_tokens", "video_tokens"]):
        np.testing.assert_array_equal(t[name], exp[k], err_msg=name)
    assert (t["prefix_len"] == 24).all() and set(_labels(t, "prefix_group")) == {"sys"}
    assert t["streaming"].all() and (t["deadline_us"] == 0).all()
    # a Gaussian count is floored at 1 (min 0 only matters when min == max)
    assert (t["image_tokens"] > 0).all() and set(t["video_tokens"].tolist()) == {1000, 2000}


def test_multimodal_input_is_the_modality_total_with_a_floor_of_one():
    empty = MultimodalSpec(text_distribution=DistSpec("gaussian", {"mean": 0, "std_dev": 0, "min": 0, "max": 0}))
    c = ClientSpec(id="e", rate_fraction=1.0, arrival=ArrivalSpec("constant"), multimodal=empty,
                   input_distribution=DistSpec("constant", {"value": 50}),
                   output_distribution=DistSpec("constant", {"value": 3}))
    t = generate_requests(WorkloadSpec(seed=1, aggregate_rate=10, num_requests=20, clients=[c]))
    assert len(t) == 20 and (t["input_len"] == 1).all() and (t["text_tokens"] == 0).all()
    t = generate_requests(_mm_spec())
    total = t["text_tokens"] + t["image_tokens"] + t["audio_tokens"] + t["video_tokens"]
    np.testing.assert_array_equal(t["input_len"] - t["prefix_len"], np.maximum(total, 1))


def test_multimodal_counts_survive_a_tracev2_export(tmp_path):
    from blis.workload.tracev2 import load_tracev2, make_header, records_from_simulation, write_tracev2

    t = generate_requests(_mm_spec())
    rec = records_from_simulation(t, np.array(["ok"] * len(t)), np.zeros(len(t)), np.zeros(len(t)))
    write_tracev2(make_header("generated"), tmp_path / "t.yaml", tmp_path / "t.csv", records=rec)
    back = load_tracev2(tmp_path / "t.yaml", tmp_path / "t.csv", 5)
    for name in ("text_tokens", "image_tokens", "audio_tokens", "video_tokens", "input_len", "arrival_us"):
        np.testing.assert_array_equal(back[name], t[name], err_msg=name)


# ---------------------------------------------------------------------------
# Reasoning sessions (§4.6, §4.9, §4.10)
# ---------------------------------------------------------------------------
RATIO = DistSpec("gaussian", {"mean": 55, "std_dev": 30, "min": 0, "max": 120})


def _rs_client(cid="think", *, rounds=4, think=1_500_000, growth="accumulate", single=False, **kw):
    base = dict(id=cid, rate_fraction=1.0, arrival=ArrivalSpec("poisson"), closed_loop=False,
                input_distribution=DistSpec("exponential", {"mean": 120, "min": 1, "max": 2000}),
                output_distribution=DistSpec("gaussian", {"mean": 300, "std_dev": 90, "min": 10, "max": 900}),
                reasoning=ReasoningSpec(RATIO, MultiTurnSpec(rounds, think, growth, single)))
    base.update(kw)
    return ClientSpec(**base)


def _expected_session(rng, c, start, plen):
    mt = c.reasoning.multi_turn
    s_in, s_out, s_rr = _sampler(c.input_distribution), _sampler(c.output_distribution), _sampler(RATIO)
    sid = rng.int63()
    in0, out0 = s_in.sample(rng), s_out.sample(rng)
    rows, hist, t = [], 0, start
    for r in range(mt.max_rounds):
        li, lo = (in0, out0) if r == 0 else (s_in.sample(rng), s_out.sample(rng))
        _skip(rng, li)
        _skip(rng, lo)
        rr = min(1.0, max(0.0, s_rr.sample(rng) / 100.0))
        total = plen + hist + li if mt.context_growth == "accumulate" else plen + li
        hist += li + lo
        rows.append((t, total, lo, r, f"sess_{sid}", rr))
        t += mt.think_time_us + lo
    return rows


def test_open_loop_sessions_follow_blis_draws_and_stamping():
    c = _rs_client(prefix_group="p", prefix_length=30)
    spec = WorkloadSpec(seed=5, aggregate_rate=0.5, clients=[c])
    horizon = 60_000_000
    t = generate_requests(spec, horizon, 0)
    rng = GoRand(_client_rng(5, [30]).int63())
    a = make_arrival_sampler("poisson", 0.5 / 1e6)
    clock, rows = 0, []
    while True:
        clock += a.sample_iat(rng)
        if clock >= horizon:
            break
        rows += [r for r in _expected_session(rng, c, clock, 30) if r[0] < horizon]
    rows.sort(key=lambda r: r[0])  # stable: ties keep generation order
    assert len(t) == len(rows) > 20
    assert t["arrival_us"].tolist() == [r[0] for r in rows]
    assert t["input_len"].tolist() == [r[1] for r in rows]
    assert t["output_len"].tolist() == [r[2] for r in rows]
    assert t["round_index"].tolist() == [r[3] for r in rows]
    assert _labels(t, "session") == [r[4] for r in rows]
    assert t["reason_ratio"].tolist() == [r[5] for r in rows]
    assert (t["prefix_len"] == 30).all() and not t["streaming"].any()
    np.testing.assert_array_equal(t["deadline_us"], t["arrival_us"] + 300_000_000)  # session default
    # accumulate: each round's input holds every earlier round of its session plus a new input
    sess = np.array(_labels(t, "session"))
    for name in np.unique(sess)[:10]:
        m = sess == name
        ins, outs, rnd = t["input_len"][m], t["output_len"][m], t["round_index"][m]
        assert rnd.tolist() == list(range(m.sum()))
        for r in range(1, m.sum()):
            assert ins[r] > ins[r - 1] + outs[r - 1]
            assert t["arrival_us"][m][r] == t["arrival_us"][m][r - 1] + 1_500_000 + outs[r - 1]


def test_non_accumulating_sessions_send_prefix_plus_new_input_only():
    c = _rs_client(growth="", rounds=3)
    t = generate_requests(WorkloadSpec(seed=9, aggregate_rate=1.0, clients=[c]), 30_000_000, 0)
    rng = GoRand(_client_rng(9).int63())
    first = make_arrival_sampler("poisson", 1e-6).sample_iat(rng)
    exp = _expected_session(rng, c, first, 0)
    got = [i for i in range(len(t)) if t.label("session", i) == exp[0][4]]
    assert [int(t["input_len"][i]) for i in got] == [r[1] for r in exp]
    assert max(t["input_len"]) <= 2000


def test_single_session_starts_one_iat_into_the_first_window_and_keeps_in_window_rounds():
    c = _rs_client(single=True, rounds=40, think=200_000,
                   lifecycle=[ActiveWindow(1_000_000, 3_000_000), ActiveWindow(5_000_000, 9_000_000)])
    spec = WorkloadSpec(seed=3, aggregate_rate=2.0, clients=[c])
    t = generate_requests(spec, 8_000_000, 0)
    rng = GoRand(_client_rng(3).int63())
    iat = make_arrival_sampler("poisson", 2.0 / 1e6).sample_iat(rng)
    exp = [r for r in _expected_session(rng, c, 1_000_000 + iat, 0)
           if r[0] < 8_000_000 and (1_000_000 <= r[0] < 3_000_000 or 5_000_000 <= r[0] < 9_000_000)]
    assert t["arrival_us"].tolist() == [r[0] for r in exp] and len(exp) > 3
    assert t["round_index"].tolist() == [r[3] for r in exp]
    assert len(set(_labels(t, "session"))) == 1


def test_session_deadlines_and_slo_targets():
    clients = [_rs_client("a"), _rs_client("b", timeout=0), _rs_client("c", timeout=2_000, slo_target_us=77)]
    t = generate_requests(WorkloadSpec(seed=2, aggregate_rate=3.0, clients=clients), 20_000_000, 0)
    who = np.array(_labels(t, "client"))
    arr, dl = t["arrival_us"], t["deadline_us"]
    np.testing.assert_array_equal(dl[who == "a"], arr[who == "a"] + 300_000_000)
    assert (dl[who == "b"] == 0).all()
    np.testing.assert_array_equal(dl[who == "c"], arr[who == "c"] + 2_000)
    assert (t["slo_target_us"][who == "c"] == 77).all() and (t["slo_target_us"][who != "c"] == 0).all()


def test_closed_loop_sessions_keep_round_zero_of_the_open_loop_generation():
    yaml_text = """
version: "2"
seed: 11
aggregate_rate: 2
clients:
  - id: chat
    rate_fraction: 1
    arrival: {process: poisson}
    input_distribution: {type: constant, params: {value: 50}}
    output_distribution: {type: constant, params: {value: 20}}
    prefix_group: g
    prefix_length: 16
    reasoning:
      multi_turn: {max_rounds: 3, think_time_us: 1000}
"""
    spec = parse_workload_spec(yaml_text)
    full = generate_requests(spec, 10_000_000, 0)  # every round, open-loop stamping
    round0 = generate_spec_requests(spec, 10_000_000)
    first = np.flatnonzero(full["round_index"] == 0)
    assert (round0["round_index"] == 0).all() and len(round0) == len(first) == len(full) // 3
    assert round0["request_id"].tolist() == list(range(len(round0)))
    for col in ("arrival_us", "input_len", "output_len", "prefix_len", "deadline_us", "content_seed"):
        np.testing.assert_array_equal(round0[col], full[col][first])
    names = sorted({round0.label("session", i) for i in range(len(round0))})
    bps = round0.sessions.blueprints
    assert [bp.sid for bp in bps] == names
    seeds = GoRand(11 + 7919)
    assert [bp.rng.seed for bp in bps] == [seeds.int63() for _ in names]
    assert {(bp.max_rounds, bp.think_time_us, bp.prefix_len) for bp in bps} == {(3, 1000, 16)}
    # open-loop: every round is kept
    spec.clients[0].closed_loop = False
    assert len(generate_spec_requests(spec, 10_000_000)) == len(full)


# ---------------------------------------------------------------------------
# Time-varying path (§4.11)
# ---------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=60), st.integers(1, 10**12))
def test_rescaled_iats_sum_exactly_to_the_window(iats, duration):
    out = G.rescale_iats_nb(np.array(iats, np.int64), duration)
    assert int(out.sum()) == duration
    factor = duration / sum(iats)
    assert all(int(v * factor) == int(o) for v, o in zip(iats[:-1], out[:-1]))


def _tv_spec(aggregate=10.0):
    a = ClientSpec(id="a", rate_fraction=1.0, arrival=ArrivalSpec("gamma", cv=2.0), slo_target_us=500,
                   input_distribution=DistSpec("constant", {"value": 100}),
                   output_distribution=DistSpec("constant", {"value": 10}),
                   prefix_group="pg", timeout=9_000, streaming=True,
                   lifecycle=[ActiveWindow(0, 4_000_000, trace_rate=3.0),
                              ActiveWindow(4_000_000, 10_000_000, trace_rate=1.0,
                                           arrival=ArrivalSpec("weibull", cv=0.5),
                                           input_distribution=DistSpec("gaussian", {"mean": 50, "std_dev": 10,
                                                                                    "min": 20, "max": 80}))])
    b = ClientSpec(id="b", rate_fraction=1.0, arrival=ArrivalSpec("poisson"),
                   input_distribution=DistSpec("constant", {"value": 7}),
                   output_distribution=DistSpec("constant", {"value": 7}),
                   lifecycle=[ActiveWindow(2_000_000, 6_000_000)])
    always = ClientSpec(id="always", rate_fraction=0.5, arrival=ArrivalSpec("poisson"),
                        input_distribution=DistSpec("constant", {"value": 1}),
                        output_distribution=DistSpec("constant", {"value": 1}))
    return WorkloadSpec(seed=21, aggregate_rate=aggregate, clients=[a, b, always])


def _tv_expected(spec, horizon):
    w = _client_rng(spec.seed, [50])
    a, b, always = spec.clients
    # co-active sums: first overlapping window of each other client, always-on clients add rate_fraction
    plans = [(a, a.lifecycle[0], 10.0 * 3.0 / (3.0 + 1.0 + 0.5)),
             (a, a.lifecycle[1], 10.0 * 1.0 / (1.0 + 1.0 + 0.5)),
             (b, b.lifecycle[0], 10.0 * 1.0 / (1.0 + 3.0 + 0.5))]
    seeds = {"a": w.int63(), "b": w.int63()}
    rngs = {k: GoRand(v) for k, v in seeds.items()}
    rows = []
    for c, win, rate in plans:
        rng = rngs[c.id]
        end = min(win.end_us, horizon)
        n = math.ceil(rate * ((end - win.start_us) / 1e6))
        arr = win.arrival or c.arrival
        smp = make_arrival_sampler(arr.process, rate / 1e6, cv=arr.cv)
        iats = np.array([smp.sample_iat(rng) for _ in range(n)], np.int64)
        iats = G.rescale_iats_nb(iats, end - win.start_us)
        assert iats.sum() == end - win.start_us
        s_in = _sampler(win.input_distribution or c.input_distribution)
        s_out = _sampler(win.output_distribution or c.output_distribution)
        clock = win.start_us
        for iat in iats:
            clock += iat
            if clock >= end:
                break
            li, lo = s_in.sample(rng), s_out.sample(rng)
            _skip(rng, li)
            _skip(rng, lo)
            rows.append((clock, li, lo, c.id))
    rows.sort(key=lambda r: r[0])
    return rows, n


def test_time_varying_windows_follow_blis_rates_draws_and_clipping():
    spec = _tv_spec()
    t = generate_requests(spec, 10**12, 0)
    rows, _ = _tv_expected(spec, 10**12)
    assert t["arrival_us"].tolist() == [r[0] for r in rows]
    assert t["input_len"].tolist() == [r[1] for r in rows]
    assert t["output_len"].tolist() == [r[2] for r in rows]
    assert _labels(t, "client") == [r[3] for r in rows]
    # the rescaled IATs end exactly at the window end, so each window keeps ceil(rate x duration) - 1
    who = np.array(_labels(t, "client"))
    in_a0 = (who == "a") & (t["arrival_us"] < 4_000_000)
    assert in_a0.sum() == math.ceil(10 * 3 / 4.5 * 4) - 1
    assert (who == "b").sum() == math.ceil(10 / 4.5 * 4) - 1
    assert "always" not in who  # clients without windows generate nothing on this path
    # single-shot rows on this path: no prefix, no deadline, SLO target kept
    assert (t["prefix_len"] == 0).all() and (t["deadline_us"] == 0).all()
    assert (t["slo_target_us"][who == "a"] == 500).all() and t["streaming"][who == "a"].all()


def test_time_varying_windows_are_clipped_at_the_horizon():
    spec = _tv_spec()
    t = generate_requests(spec, 5_000_000, 0)
    rows, _ = _tv_expected(spec, 5_000_000)
    assert t["arrival_us"].tolist() == [r[0] for r in rows] and t["arrival_us"].max() < 5_000_000


def test_absolute_rate_mode_uses_trace_rates_verbatim():
    c = ClientSpec(id="x", rate_fraction=1.0, arrival=ArrivalSpec("constant"),
                   input_distribution=DistSpec("constant", {"value": 5}),
                   output_distribution=DistSpec("constant", {"value": 5}),
                   lifecycle=[ActiveWindow(0, 2_000_000, trace_rate=50.0), ActiveWindow(3_000_000, 4_000_000,
                                                                                        trace_rate=7.0)])
    t = generate_requests(WorkloadSpec(seed=1, aggregate_rate=0.0, clients=[c]), 10**12, 0)
    arr = t["arrival_us"]
    assert ((arr < 2_000_000).sum(), (arr >= 3_000_000).sum()) == (99, 6)
    # constant IATs rescaled: 2 s / 100 = 20 ms apart; 1 s / 7 -> 142857 µs apart
    assert set(np.diff(arr[arr < 2_000_000]).tolist()) == {20_000}
    assert set(np.diff(arr[arr >= 3_000_000]).tolist()) == {142_857}


def test_time_varying_reasoning_sessions_are_clipped_at_the_window_end():
    c = _rs_client(rounds=50, think=100_000, prefix_group="p",
                   lifecycle=[ActiveWindow(1_000_000, 3_000_000, trace_rate=2.0)])
    t = generate_requests(WorkloadSpec(seed=4, aggregate_rate=0.0, clients=[c]), 10**12, 0)
    assert len(t) > 4 and t["arrival_us"].min() >= 1_000_000 and t["arrival_us"].max() < 3_000_000
    assert (t["prefix_len"] == 50).all() and (t["slo_target_us"] == 0).all()
    np.testing.assert_array_equal(t["deadline_us"], t["arrival_us"] + 300_000_000)
    w = _client_rng(4, [50])
    rng = GoRand(w.int63())
    smp = make_arrival_sampler("poisson", 2.0 / 1e6)
    iats = G.rescale_iats_nb(np.array([smp.sample_iat(rng) for _ in range(4)], np.int64), 2_000_000)
    first = _expected_session(rng, c, 1_000_000 + iats[0], 50)
    got = [i for i in range(len(t)) if t.label("session", i) == first[0][4]]
    assert [int(t["arrival_us"][i]) for i in got] == [r[0] for r in first if r[0] < 3_000_000]


def test_same_seed_gives_identical_tables_for_every_path():
    for make in (lambda: _mm_spec(), lambda: _tv_spec(),
                 lambda: WorkloadSpec(seed=8, aggregate_rate=2, clients=[_rs_client()])):
        t1, t2 = generate_requests(make(), 30_000_000, 0), generate_requests(make(), 30_000_000, 0)
        for k in t1.cols:
            np.testing.assert_array_equal(t1[k], t2[k], err_msg=k)
        assert t1.names == t2.names
        assert len(np.unique(t1["content_seed"])) == len(t1)


# ---------------------------------------------------------------------------
# Open-loop accumulate: context parents (§4.6) and BLIS's empty prefix-group label
# ---------------------------------------------------------------------------
def _open_tokens(table, r, upto=None):
    """Explicit token list of row r (input then output), built by concatenation as BLIS's session buffer."""
    from blis.kernels.prefix_hash import request_token_nb
    c = table.cols
    L, N = int(c["input_len"][r]), int(c["output_len"][r])
    own = [int(request_token_nb(q, int(c["prefix_len"][r]), L, table.group_seeds[c["prefix_group"][r]],
                                np.uint64(c["content_seed"][r]))) for q in range(L + N)]
    p = int(c["context_parent"][r])
    if p >= 0:
        k = int(c["context_len"][r])
        own[:k] = _open_tokens(table, p)[:k]
    return own


def test_open_loop_accumulate_rounds_start_with_the_previous_rounds_input_and_output():
    from blis.engine import EngineConfig, Simulation
    from blis.kernels.prefix_hash import req_token_nb
    c = _rs_client(prefix_group="p", prefix_length=30, rounds=5)
    t = generate_requests(WorkloadSpec(seed=5, aggregate_rate=0.5, clients=[c]), 30_000_000, 0)
    t.validate()
    sess = t["session"]
    children = np.flatnonzero(t["round_index"] > 0)
    assert len(children) > 10 and (t["context_parent"][t["round_index"] == 0] == -1).all()
    for r in children.tolist():
        p = int(t["context_parent"][r])
        assert sess[p] == sess[r] and t["round_index"][p] == t["round_index"][r] - 1
        assert t["context_len"][r] == int(t["input_len"][p]) + int(t["output_len"][p]) < t["input_len"][r]
    # the kernels' token ids are those of an explicit concatenation: round r+1 = round r's tokens + new input
    sim = Simulation(t, EngineConfig(total_kv_blocks=50_000), _toy())
    for r in children[:6].tolist():
        p = int(t["context_parent"][r])
        toks = _open_tokens(t, r)
        assert [int(req_token_nb(sim.rq, t.group_seeds, r, q)) for q in range(len(toks))] == toks
        k = int(t["context_len"][r])
        assert toks[:k] == _open_tokens(t, p)[:k] and toks[k:] != _open_tokens(t, p)[k:len(toks)]
    # BLIS's reasoning rounds have an empty prefix-group label but carry the group's prefix tokens
    assert all(t.names["prefix_group"][g] == "" for g in t["prefix_group"].tolist())
    from blis.workload.synthesis import group_seed
    assert (t.group_seeds[t["prefix_group"]] == np.uint64(group_seed(5, "p"))).all()


def _toy():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_invariants import toy
    return toy(base_us=800.0, per_prefill_token_us=3.0, per_decode_us=1.0)


def test_open_loop_accumulate_hits_the_prefix_cache_on_the_previous_context():
    from blis.engine import EngineConfig, Simulation
    from blis.kernels import layout as Lo
    c = _rs_client(prefix_group="p", prefix_length=32, rounds=4, think=5_000_000,
                   input_distribution=DistSpec("constant", {"value": 100}),
                   output_distribution=DistSpec("constant", {"value": 50}))
    t = generate_requests(WorkloadSpec(seed=8, aggregate_rate=0.2, clients=[c]), 60_000_000, 0)
    runs = {}
    for linked in (True, False):
        tt = t.take(np.arange(len(t)))
        if not linked:  # the same lengths with every round's content its own: only the prefix can hit
            tt.cols["context_parent"][:] = -1
            tt.cols["context_len"][:] = 0
        sim = Simulation(tt, EngineConfig(total_kv_blocks=100_000, num_instances=1), _toy())
        runs[linked] = (sim, sim.run())
    sim, res = runs[True]
    children = np.flatnonzero(t["context_parent"] >= 0)
    assert len(children) > 10
    expect = 0
    for r in children.tolist():
        p = int(t["context_parent"][r])
        assert int(sim.rq[Lo.R_DONE_TICK, p]) < int(t["arrival_us"][r])  # the parent finished first
        expect += (int(t["context_len"][r]) - 1) // 16  # all but the never-computed last output token
    assert np.all(res.cols["state"] == Lo.ST_COMPLETED)
    # every later round hits its whole previous context; a first round hits the 2 prefix blocks (32 tokens)
    # once the prefix is cached, exactly as every request does when the rounds are unlinked
    first_rounds = len(t) - len(children)
    assert res.instances[0].cache_hits == expect + 2 * (first_rounds - 1)
    assert runs[False][1].instances[0].cache_hits == 2 * (len(t) - 1)


def test_rounds_dropped_outside_windows_keep_their_tokens_in_later_rounds():
    # one session, rounds every ~0.3 s; the gap between the windows drops the middle rounds
    c = _rs_client(single=True, rounds=12, think=300_000,
                   input_distribution=DistSpec("constant", {"value": 40}),
                   output_distribution=DistSpec("constant", {"value": 20}),
                   lifecycle=[ActiveWindow(0, 1_500_000), ActiveWindow(2_500_000, 9_000_000)])
    t = generate_requests(WorkloadSpec(seed=4, aggregate_rate=5.0, clients=[c]), 9_000_000, 0)
    rounds = t["round_index"].tolist()
    gaps = [k for k in range(1, len(rounds)) if rounds[k] != rounds[k - 1] + 1]
    assert len(gaps) == 1 and rounds[0] == 0
    k = gaps[0]
    # input = every earlier round (kept or not) + 40 new tokens; the parent is the last kept round
    for r in range(len(t)):
        assert t["input_len"][r] == 60 * rounds[r] + 40
    assert t["context_parent"][k] == k - 1 and t["context_len"][k] == 60 * rounds[k - 1] + 60
    assert t["input_len"][k] - t["context_len"][k] == 60 * (rounds[k] - rounds[k - 1] - 1) + 40


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6), st.booleans(), st.booleans(), st.integers(0, 40))
def test_accumulate_parents_are_the_previous_kept_round_for_any_workload(seed, rounds, windows, single, n):
    lc = [ActiveWindow(0, 2_000_000), ActiveWindow(3_000_000, 6_000_000)] if windows else None
    c = _rs_client(rounds=rounds, think=400_000, single=single, lifecycle=lc, prefix_group="q")
    plain = ClientSpec(id="p", rate_fraction=1.0, arrival=ArrivalSpec("poisson"), prefix_group="q",
                       input_distribution=DistSpec("constant", {"value": 30}),
                       output_distribution=DistSpec("constant", {"value": 5}))
    t = generate_requests(WorkloadSpec(seed=seed, aggregate_rate=3.0, clients=[c, plain]), 8_000_000, n)
    t.validate()
    again = generate_requests(WorkloadSpec(seed=seed, aggregate_rate=3.0, clients=[c, plain]), 8_000_000, n)
    for k in t.cols:
        np.testing.assert_array_equal(t[k], again[k])  # deterministic
    sess, rnd, parent = t["session"], t["round_index"], t["context_parent"]
    for r in range(len(t)):
        earlier = [q for q in range(r) if sess[q] == sess[r] and sess[r] != 0]
        if not earlier:
            assert parent[r] == -1 and t["context_len"][r] == 0
            continue
        p = earlier[-1]
        assert parent[r] == p and rnd[p] < rnd[r]
        assert t["context_len"][r] == int(t["input_len"][p]) + int(t["output_len"][p]) <= t["input_len"][r]
    # the plain client's rows keep the visible group label; session rows show "" but share its content
    g = t["prefix_group"]
    assert {t.names["prefix_group"][x] for x in g[sess == 0].tolist()} <= {"q"}
    assert {t.names["prefix_group"][x] for x in g[sess != 0].tolist()} <= {""}
    assert len(set(t.group_seeds[g].tolist())) <= 1
