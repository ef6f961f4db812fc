"""Closed-loop sessions (spec/04 §4.6-4.8): multi-turn reasoning clients, concurrency users,
the session manager's follow-up rules, context-parent token content and the CLI surface."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from blis.cli import main
from blis.engine import EngineConfig, Simulation
from blis.kernels import layout as Lo
from blis.kernels.prefix_hash import (_CHAIN_SALT, _ONE, _ZERO, mix64_nb, req_block_hash_nb, req_token_nb,
                                      request_token_nb)
from blis.workload.sessions import NameOrder
from blis.workload.spec import generate_spec_requests, parse_workload_spec
from blis.workload.synthesis import synthesize_distribution

from test_engine_invariants import assert_request_conservation, toy

MULTI = """
version: "2"
seed: {seed}
category: reasoning
aggregate_rate: {rate}
num_requests: {n}
clients:
  - id: chat
    rate_fraction: 1
    arrival: {{process: poisson}}
    input_distribution: {{type: gaussian, params: {{mean: 120, std_dev: 40, min: 20, max: 300}}}}
    output_distribution: {{type: gaussian, params: {{mean: 40, std_dev: 15, min: 3, max: 120}}}}
    prefix_group: sys
    prefix_length: 48
    {timeout}
    reasoning:
      multi_turn: {{max_rounds: {rounds}, think_time_us: {think}, context_growth: "{growth}"}}
"""


def _spec_table(seed=3, rate=4.0, n=40, rounds=4, think=200_000, growth="accumulate", timeout="",
                horizon=10 ** 12):
    spec = parse_workload_spec(MULTI.format(seed=seed, rate=rate, n=n, rounds=rounds, think=think, growth=growth,
                                            timeout=timeout))
    return generate_spec_requests(spec, horizon, n)


def _run(table, **cfg):
    cfg.setdefault("total_kv_blocks", 4000)
    cfg.setdefault("horizon_us", 10 ** 12)
    sim = Simulation(table, EngineConfig(**cfg), toy(base_us=800.0, per_prefill_token_us=3.0, per_decode_us=1.0))
    return sim, sim.run()


def _by_session(sim):
    t = sim.table
    out = {}
    for r in range(len(t)):
        s = int(t["session"][r])
        if s:
            out.setdefault(s, []).append(r)
    for s in out:
        out[s].sort(key=lambda r: int(t["round_index"][r]))
    return out


def test_only_round_zero_is_generated_up_front_with_one_blueprint_per_session():
    t = _spec_table()
    assert len(t) > 0 and np.all(t["round_index"] == 0)
    assert t.sessions is not None
    assert len(t.sessions.blueprints) == len(np.unique(t["session"]))
    assert t.sessions.follow_up_budget == -1  # multi-turn only: no budget
    # BLIS's reasoning rounds carry the prefix tokens and length but no prefix group label
    assert np.all(t["prefix_len"] == 48)
    assert all(t.names["prefix_group"][g] == "" for g in t["prefix_group"].tolist())
    assert np.all(t.group_seeds[t["prefix_group"]] != 0)


@pytest.mark.parametrize("growth", ["accumulate", ""])
def test_follow_up_arrives_think_time_after_the_completion_tick_and_final_round_ends_the_session(growth):
    think, rounds = 150_000, 4
    sim, res = _run(_spec_table(rounds=rounds, think=think, growth=growth))
    rq = sim.rq
    sessions = _by_session(sim)
    assert sessions
    for rows in sessions.values():
        assert [int(sim.table["round_index"][r]) for r in rows] == list(range(rounds))  # final round ends it
        for prev, nxt in zip(rows, rows[1:]):
            done = int(rq[Lo.R_DONE_TICK, prev])
            # the tick is the end of the step that completes the request (BLIS: now + currStepAdvance)
            assert done >= int(rq[Lo.R_ARRIVAL, prev]) + int(rq[Lo.R_FIRST, prev])
            assert int(rq[Lo.R_ARRIVAL, nxt]) == done + think
    assert_request_conservation(res, len(sim.table), None)
    assert np.all(res.cols["state"] == Lo.ST_COMPLETED)


def test_accumulate_uses_the_actual_output_and_hits_the_prefix_cache():
    sim, res = _run(_spec_table(growth="accumulate"), num_instances=1)
    t, rq = sim.table, sim.rq
    fu = np.flatnonzero(t["round_index"] > 0)
    assert len(fu) > 0
    expect_hits = 0
    for r in fu.tolist():
        p = int(t["context_parent"][r])
        assert p >= 0 and int(t["session"][p]) == int(t["session"][r])
        assert int(t["round_index"][p]) == int(t["round_index"][r]) - 1
        L, pi = int(rq[Lo.R_ILEN, p]), int(rq[Lo.R_PI, p])
        assert int(t["context_len"][r]) == pi          # parent input + the output it actually produced
        assert L < pi < L + int(rq[Lo.R_OLEN, p])      # ProgressIndex stops one short of the oracle output
        assert int(t["input_len"][r]) > pi
        assert int(t["prefix_len"][r]) == 0 and int(t["prefix_group"][r]) == 0
        expect_hits += pi // 16
    # the previous context is in the cache (ample KV, one instance): every full block of it hits
    assert res.instances[0].cache_hits >= expect_hits


def test_length_capped_rounds_accumulate_only_what_they_produced():
    t0 = _spec_table(rounds=3, growth="accumulate", n=12)
    t0.cols["max_output_len"][:] = 0  # no client budget: auto-filled to the context window, so rounds get capped
    mml = int(np.median(t0["input_len"] + t0["output_len"]))
    sim, res = _run(t0, max_model_len=mml)
    t, rq = sim.table, sim.rq
    capped = np.flatnonzero(res.cols["length_capped"])
    assert len(capped) > 0
    checked = 0
    for r in np.flatnonzero(t["context_parent"] >= 0).tolist():
        p = int(t["context_parent"][r])
        if res.cols["length_capped"][p]:
            assert int(t["context_len"][r]) == int(rq[Lo.R_PI, p]) < int(rq[Lo.R_ILEN, p] + rq[Lo.R_OLEN, p])
            checked += 1
    assert checked > 0


def test_timeout_cancels_the_session():
    sim, res = _run(_spec_table(timeout="timeout: 2000"))
    st = res.cols["state"]
    assert np.any(st == Lo.ST_TIMED_OUT)
    for rows in _by_session(sim).values():
        for r in rows[:-1]:  # only the last request of a session may have failed: it ends the session
            assert st[r] == Lo.ST_COMPLETED
    timed_out = [rows for rows in _by_session(sim).values() if st[rows[-1]] == Lo.ST_TIMED_OUT]
    assert timed_out and all(len(rows) <= 4 for rows in timed_out)
    cancelled = sim.sessions.counts()["cancelled"]
    assert cancelled == len(timed_out)


def test_drop_cancels_the_session():
    # follow-ups outgrow max_model_len and are dropped unservable at enqueue
    sim, res = _run(_spec_table(rounds=6, think=1000, n=30), max_model_len=600)
    st = res.cols["state"]
    dropped = np.flatnonzero(st == Lo.ST_DROPPED)
    assert len(dropped) > 0
    for rows in _by_session(sim).values():
        if st[rows[-1]] == Lo.ST_DROPPED:
            assert all(st[r] != Lo.ST_DROPPED for r in rows[:-1])
    assert sim.sessions.counts()["cancelled"] == len(dropped)


def test_horizon_interrupts_sessions():
    horizon = 3_000_000
    t = _spec_table(think=400_000, rounds=50, n=200, horizon=horizon)
    sim, res = _run(t, horizon_us=horizon)
    assert int(sim.table["arrival_us"].max()) <= horizon
    counts = sim.sessions.counts()
    assert counts["horizon_interrupted"] > 0 and counts["completed"] == 0


def _conc(n_users, think_ms, num, seed=42, horizon=10 ** 12):
    return synthesize_distribution(seed=seed, horizon_us=horizon, concurrency=n_users, think_time_ms=think_ms,
                                   num_requests=num, prompt_tokens=100, prompt_tokens_stdev=30,
                                   prompt_tokens_min=10, prompt_tokens_max=300, output_tokens=30,
                                   output_tokens_stdev=10, output_tokens_min=2, output_tokens_max=90)


@pytest.mark.parametrize("users,think_ms", [(4, 0), (5, 30), (1, 10)])
def test_concurrency_users_keep_exactly_n_in_flight_and_the_budget_caps_requests(users, think_ms):
    num = 60
    t = _conc(users, think_ms, num)
    assert len(t) == users and t.sessions.follow_up_budget == num - users
    seeds = np.sort(t["arrival_us"])
    think = think_ms * 1000
    expect = [u * think // users if think > 0 and users > 1 else 0 for u in range(users)]
    assert seeds.tolist() == expect                         # staggered u·think/concurrency
    sim, res = _run(t)
    c = res.cols
    assert len(c["state"]) == num                           # follow-up budget caps the total
    assert np.all(c["state"] == Lo.ST_COMPLETED)
    arr = c["arrival_us"].astype(np.int64)
    done = sim.rq[Lo.R_DONE_TICK].astype(np.int64)
    # closed loop: at any instant at most `users` requests are between arrival and completion
    ev = sorted([(int(a), 1) for a in arr] + [(int(d), -1) for d in done], key=lambda x: (x[0], x[1]))
    live = peak = 0
    for _, d in ev:
        live += d
        peak = max(peak, live)
    assert peak == users
    for rows in _by_session(sim).values():
        for prev, nxt in zip(rows, rows[1:]):
            assert arr[nxt] == done[prev] + think
    assert_request_conservation(res, num, None)


def test_concurrency_with_no_num_requests_runs_to_the_horizon():
    horizon = 2_000_000
    t = _conc(3, 300, 0, horizon=horizon)
    assert t.sessions.follow_up_budget == -1
    sim, res = _run(t, horizon_us=horizon)
    assert int(sim.table["arrival_us"].max()) <= horizon
    assert sim.sessions.counts()["horizon_interrupted"] >= 1
    assert len(sim.table) > 6


def test_follow_up_names_and_their_tie_break_order():
    sim, res = _run(_conc(3, 0, 20))
    names = res.request_names()
    fu = np.flatnonzero(sim.table["round_index"] > 0)
    assert all(names[r].startswith("session_concurrency_distribution_user_") for r in fu.tolist())
    assert all(names[r].startswith("request_") for r in np.flatnonzero(sim.table["round_index"] == 0).tolist())
    key = list(zip(sim.rq[Lo.R_IDKEY].tolist(), sim.rq[Lo.R_IDDIG].tolist()))
    by_key = sorted(range(len(names)), key=lambda r: key[r])
    by_name = sorted(range(len(names)), key=lambda r: names[r].encode())
    assert by_key == by_name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab_0123456789", min_size=1, max_size=12), min_size=1, max_size=80, unique=True))
def test_name_order_matches_bytewise_order(words):
    class _S:
        rq = np.zeros((Lo.NRF, len(words)), np.int64)
    order = NameOrder()
    for r, w in enumerate(words):
        order.insert(_S, "session_" + w, r)
    keys = _S.rq[Lo.R_IDKEY]
    assert sorted(range(len(words)), key=lambda r: keys[r]) == sorted(range(len(words)),
                                                                      key=lambda r: words[r].encode())


# ---------------------------------------------------------------- context-parent token content
def _naive_tokens(rows, r, gseed):
    """Explicit token list of row r (input then output) built by concatenation, as BLIS's slices."""
    p, clen, P, L, N, g, cs = rows[r]
    own = [int(request_token_nb(q, P, L, np.uint64(gseed[g]), np.uint64(cs))) for q in range(L + N)]
    if p < 0:
        return own
    return _naive_tokens(rows, p, gseed)[:clen] + own[clen:]


def _naive_hash(prev, toks):
    h = mix64_nb(np.uint64(prev) ^ _CHAIN_SALT)
    for x in toks:
        h = mix64_nb(h ^ np.uint64(x))
    return _ONE if h == _ZERO else h


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_context_parent_tokens_and_block_hashes_match_a_naive_concatenation(data):
    n = data.draw(st.integers(1, 6))
    gseed = np.array([0, 0x1234567, 0x89ABCDEF], np.uint64)
    rows = []
    for r in range(n):
        if r > 0 and data.draw(st.booleans()):
            p = data.draw(st.integers(0, r - 1))
            span = rows[p][3] + rows[p][4]
            clen = data.draw(st.integers(0, span))
            L = clen + data.draw(st.integers(0, 40))
            P, g = 0, 0
        else:
            p, clen = -1, 0
            L = data.draw(st.integers(0, 60))
            P = data.draw(st.integers(0, L))
            g = data.draw(st.integers(0, 2)) if P else 0
        N = data.draw(st.integers(0, 30))
        rows.append((p, clen, P, L, N, g, data.draw(st.integers(1, 2 ** 62))))
    rq = np.zeros((Lo.NRF, n), np.int64)
    for r, (p, clen, P, L, N, g, cs) in enumerate(rows):
        rq[Lo.R_CTXP, r], rq[Lo.R_CTXLEN, r], rq[Lo.R_PLEN, r] = p, clen, P
        rq[Lo.R_ILEN, r], rq[Lo.R_OLEN, r], rq[Lo.R_GROUP, r], rq[Lo.R_CSEED, r] = L, N, g, cs
    B = data.draw(st.sampled_from([1, 4, 16]))
    for r in range(n):
        toks = _naive_tokens(rows, r, gseed)
        assert [int(req_token_nb(rq, gseed, r, q)) for q in range(len(toks))] == toks
        prev = np.uint64(0)
        for j in range(len(toks) // B):
            h = np.uint64(req_block_hash_nb(rq, gseed, r, prev, j * B, B))
            assert h == _naive_hash(prev, toks[j * B:(j + 1) * B])
            prev = h


# ---------------------------------------------------------------- CLI
CLI = ["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline", "--hardware", "H100",
       "--tp", "1"]


def test_cli_concurrency_run_is_deterministic_and_writes_follow_up_names(tmp_path, capsys):
    outs = []
    for k in range(2):
        m, tr = tmp_path / f"m{k}.json", tmp_path / f"t{k}"
        assert main(CLI + ["--concurrency", "3", "--think-time-ms", "20", "--num-requests", "25",
                           "--metrics-path", str(m), "--trace-output", str(tr)]) == 0
        out = capsys.readouterr().out
        outs.append((out, m.read_bytes(), (tmp_path / f"t{k}.csv").read_bytes()))
    assert outs[0] == outs[1]
    out = outs[0][0]
    assert "=== Session Metrics ===\n  Sessions: 3\n" in out
    reqs = json.loads(outs[0][1])["requests"]
    assert len(reqs) == 25
    assert sum(r["requestID"].startswith("session_concurrency_distribution_user_") for r in reqs) == 22
    assert len(outs[0][2].decode().strip().splitlines()) == 26  # header + every arrival, follow-ups included


def test_cli_workload_spec_with_a_concurrency_client(tmp_path, capsys):
    spec = tmp_path / "c.yaml"
    spec.write_text("""version: "2"
seed: 5
num_requests: 18
clients:
  - id: users
    concurrency: 2
    think_time_us: 10000
    input_distribution: {type: constant, params: {value: 64}}
    output_distribution: {type: constant, params: {value: 8}}
""")
    m = tmp_path / "m.json"
    assert main(CLI + ["--workload-spec", str(spec), "--metrics-path", str(m)]) == 0
    reqs = json.loads(m.read_text())["requests"]
    assert len(reqs) == 18
    assert {r["session_id"] for r in reqs} == {"concurrency_users_user_0", "concurrency_users_user_1"}


@pytest.mark.parametrize("extra,needle", [
    (["--concurrency", "3", "--rate", "2"], "--concurrency and --rate are mutually exclusive"),
    (["--concurrency", "-1"], "--concurrency: must be >= 0, got -1"),
    (["--concurrency", "2", "--think-time-ms", "-3"], "--think-time-ms: must be >= 0, got -3"),
    (["--concurrency", "2"], "Workload requires either num_requests or --horizon"),
    (["--concurrency", "2", "--num-requests", "5", "--prompt-tokens-min", "0"], "prompt-tokens-min"),
    (["--concurrency", "2", "--workload-spec", "x.yaml"], "--concurrency: cannot be used with --workload-spec"),
])
def test_cli_concurrency_flag_errors(extra, needle, capsys):
    assert main(CLI + extra) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
