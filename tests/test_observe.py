"""blis observe against a fake OpenAI-compatible server (tests/fake_openai_server.py).

Loopback only; every run is bounded (request counts, --timeout, subprocess timeouts).
The fake server runs in its own process and records its own timestamps, which
are the ground truth the client's measurements are checked against.
"""
import asyncio
import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import FakeServer  # noqa: E402

from blis import observe  # noqa: E402
from blis.workload.tracev2 import TraceV2, make_header, read_tracev2, write_tracev2  # noqa: E402

FIRST_TOKEN_S = 0.04
TOKEN_GAP_S = 0.02
FAULTS = {3: "http500", 4: "malformed", 5: "drop", 6: "nodone", 7: "hang"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    with FakeServer(first_token_delay_s=FIRST_TOKEN_S, token_gap_s=TOKEN_GAP_S, faults=FAULTS, hang_s=20.0,
                    max_lifetime_s=240) as srv:
        yield srv


def _paths(tmp_path, name="obs"):
    return tmp_path / f"{name}.yaml", tmp_path / f"{name}.csv"


def _run_cli(server, tmp_path, *args, name="obs"):
    h, d = _paths(tmp_path, name)
    rc = observe.main(["--server-url", server.url, "--model", "fake-model", "--trace-header", str(h),
                       "--trace-data", str(d), "--tokens-per-word", "1", *args])
    return rc, h, d


def _load_itl(path):
    out = {}
    with open(path, newline="") as f:
        r = csv.reader(f)
        assert next(r) == ["request_id", "chunk_index", "timestamp_us"]
        for rid, idx, ts in r:
            out.setdefault(int(rid), []).append((int(idx), int(ts)))
    return {k: [t for _, t in sorted(v)] for k, v in out.items()}


def _max_in_flight(send, last):
    ev = sorted([(s, 1) for s in send] + [(e, -1) for e in last])
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def _input_trace(tmp_path, outputs, gap_us=2000, inputs=None, slo_class="", name="in"):
    """A TraceV2 with one row per output length (arrivals every gap_us) to re-drive."""
    n = len(outputs)
    rec = {
        "request_id": np.arange(n), "client_id": np.array(["c"] * n, dtype=object),
        "slo_class": np.array([slo_class] * n, dtype=object),
        "input_tokens": np.array(inputs if inputs is not None else [16] * n),
        "output_tokens": np.array(outputs), "streaming": np.ones(n, bool),
        "arrival_time_us": np.arange(1, n + 1) * gap_us, "send_time_us": np.arange(1, n + 1) * gap_us,
        "status": np.array(["ok"] * n, dtype=object),
    }
    h, d = tmp_path / f"{name}.yaml", tmp_path / f"{name}.csv"
    write_tracev2(TraceV2(make_header("generated", workload_seed=1), rec), h, d)
    return h, d


# ---------------------------------------------------------------------------
# Timing accuracy at 50 concurrent requests
# ---------------------------------------------------------------------------
def _timing_run(server, tmp_path, api, attempt, capsys):
    """One observe run at 50 requests in flight; checks the records and returns the timing errors."""
    n, out_tokens = 100, 10
    rc, h, d = _run_cli(server, tmp_path, "--api-format", api, "--rate", "300", "--num-requests", str(n),
                        "--max-concurrency", "50", "--prompt-tokens", "20", "--prompt-tokens-stdev", "0",
                        "--output-tokens", str(out_tokens), "--output-tokens-stdev", "0", "--record-itl",
                        name=f"{api}{attempt}")
    assert rc == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("=== Simulation Metrics ===")
    assert f'"completed_requests": {n}' in stdout
    tr = read_tracev2(h, d)
    r = tr.records
    assert len(tr) == n and sorted(r["request_id"].tolist()) == list(range(n))
    assert set(r["status"]) == {"ok"}
    assert (r["num_chunks"] == out_tokens + 1).all()            # every token chunk plus the usage chunk
    assert (r["output_tokens"] == out_tokens).all()
    assert (r["server_input_tokens"] == 20).all() and (r["input_tokens"] == 20).all()
    assert set(r["finish_reason"]) == {"length"}
    assert set(r["streaming"].tolist()) == {True}
    assert tr.header["mode"] == "real" and tr.header["time_unit"] == "us"
    assert _max_in_flight(r["send_time_us"], r["last_chunk_time_us"]) >= 45

    itl = _load_itl(str(d)[:-4] + ".itl.csv")
    truth = server.stats()["timings"]
    ttft_ms = (r["first_chunk_time_us"] - r["send_time_us"]) / 1000.0
    ttft_err, itl_err, itl_ms, server_ttft_ms = [], [], [], []
    for i in range(n):
        t = truth[r["x_request_id"][i]]
        assert len(t["chunks_us"]) == out_tokens + 1
        server_ttft = (t["chunks_us"][0] - t["recv_us"]) / 1000.0
        ttft_err.append(ttft_ms[i] - server_ttft)
        server_ttft_ms.append(server_ttft)
        chunks = itl[int(r["request_id"][i])]
        assert len(chunks) == out_tokens + 1
        assert chunks[0] == r["first_chunk_time_us"][i] and chunks[-1] == r["last_chunk_time_us"][i]
        client_gaps = np.diff(chunks[:out_tokens]).mean() / 1000.0       # token chunks only
        server_gaps = np.diff(t["chunks_us"][:out_tokens]).mean() / 1000.0
        itl_err.append(client_gaps - server_gaps)
        itl_ms.append(client_gaps)
    return ttft_ms, np.asarray(ttft_err), np.asarray(itl_ms), np.asarray(itl_err), np.asarray(server_ttft_ms)


@contextlib.contextmanager
def _raised_priority(*pids):
    """Best effort: run this process and the fake server at nice -10 (needs root), then restore."""
    old = {}
    for pid in pids:
        try:
            old[pid] = os.getpriority(os.PRIO_PROCESS, pid)
            os.setpriority(os.PRIO_PROCESS, pid, -10)
        except (OSError, AttributeError):
            old.pop(pid, None)
    try:
        yield
    finally:
        for pid, nice in old.items():
            try:
                os.setpriority(os.PRIO_PROCESS, pid, nice)
            except OSError:
                pass


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_ttft_and_itl_match_the_servers_delays_at_50_concurrent(server, tmp_path, api, capsys):
    with _raised_priority(os.getpid(), server.proc.pid):
        _timing_attempts(server, tmp_path, api, capsys)


def _timing_attempts(server, tmp_path, api, capsys):
    # Timing needs the CPU: on a machine shared with other work an attempt can be
    # delayed by the OS scheduler, so up to 3 attempts are made; every attempt must
    # produce correct records, and one must meet the 5 ms bounds.  When none does
    # and the machine is visibly oversubscribed (load average above the core count,
    # or the fake server itself missing its own schedule), the timing part is
    # skipped with the numbers rather than failed.
    failures, overloaded = [], []
    for attempt in range(3):
        ttft_ms, ttft_err, itl_ms, itl_err, server_ttft = _timing_run(server, tmp_path, api, attempt, capsys)
        load = os.getloadavg()[0]
        server_late = np.median(server_ttft) - FIRST_TOKEN_S * 1000
        overloaded.append(load > (os.cpu_count() or 1) or server_late > 2.0)
        checks = {
            # the recorded TTFT and ITL are within 5 ms of the server's known delays ...
            "median TTFT - first-token delay": abs(np.median(ttft_ms) - FIRST_TOKEN_S * 1000),
            "median ITL - token gap": abs(np.median(itl_ms) - TOKEN_GAP_S * 1000),
            "max per-request |ITL - token gap|": np.abs(itl_ms - TOKEN_GAP_S * 1000).max(),
            # ... and per request within 5 ms of the server's own timestamps
            "max per-request |ITL - server ITL|": np.abs(itl_err).max(),
            "median |TTFT - server TTFT|": np.median(np.abs(ttft_err)),
        }
        summary = ", ".join(f"{k} {v:.2f} ms" for k, v in checks.items())
        print(f"\n[{api} attempt {attempt + 1}] TTFT median {np.median(ttft_ms):.2f} ms, p90 "
              f"{np.percentile(ttft_ms, 90):.2f} ms; {summary}", file=sys.__stderr__)
        bad = {k: v for k, v in checks.items() if not v < 5}
        if not bad:
            return
        failures.append({**bad, "load average": load, "server schedule late (ms)": server_late})
    if all(overloaded):
        pytest.skip(f"machine oversubscribed, timing not measurable to 5 ms: {failures}")
    pytest.fail(f"timing outside 5 ms in every attempt: {failures}")


def test_closed_loop_concurrency_keeps_n_users_busy(server, tmp_path, capsys):
    rc, h, d = _run_cli(server, tmp_path, "--api-format", "chat", "--concurrency", "20", "--num-requests", "60",
                        "--prompt-tokens", "10", "--prompt-tokens-stdev", "0", "--output-tokens", "8",
                        "--output-tokens-stdev", "0", "--streaming")
    assert rc == 0
    tr = read_tracev2(h, d)
    r = tr.records
    assert len(tr) == 60 and set(r["status"]) == {"ok"}
    inflight = _max_in_flight(r["send_time_us"], r["last_chunk_time_us"])
    assert 15 <= inflight <= 20
    # arrival_time_us is the dispatch offset: non-decreasing in dispatch (request id) order
    order = np.argsort(r["request_id"])
    assert np.all(np.diff(r["arrival_time_us"][order]) >= 0)


def test_non_streaming_records_one_chunk(server, tmp_path):
    rc, h, d = _run_cli(server, tmp_path, "--rate", "200", "--num-requests", "10", "--prompt-tokens", "10",
                        "--prompt-tokens-stdev", "0", "--output-tokens", "9", "--output-tokens-stdev", "0")
    assert rc == 0
    r = read_tracev2(h, d).records
    assert set(r["status"]) == {"ok"} and (r["num_chunks"] == 1).all() and (r["output_tokens"] == 9).all()
    e2e = (r["last_chunk_time_us"] - r["send_time_us"]) / 1000.0
    assert (e2e >= (FIRST_TOKEN_S + 8 * TOKEN_GAP_S) * 1000 - 1).all()
    assert set(r["streaming"].tolist()) == {False}


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------
def test_each_fault_is_recorded_and_the_other_records_stay_intact(server, tmp_path):
    outputs = [12] * 30
    for k, pos in zip(sorted(FAULTS), (3, 9, 15, 21, 27)):
        outputs[pos] = k
    ih, idata = _input_trace(tmp_path, outputs)
    rc, h, d = _run_cli(server, tmp_path, "--input-trace-header", str(ih), "--input-trace-data", str(idata),
                        "--record-itl", "--timeout", "1.5")
    assert rc == 0
    tr = read_tracev2(h, d)
    r = tr.records
    assert len(tr) == 30
    # the request's max_tokens (its output length) picked the fault; the server says which it injected
    truth = server.stats()["timings"]
    fault_of = {x: truth[x]["fault"] for x in r["x_request_id"]}
    rows = {fault_of[r["x_request_id"][i]]: i for i in range(len(tr)) if fault_of[r["x_request_id"][i]]}
    assert set(rows) == set(FAULTS.values())

    i = rows["http500"]
    assert r["status"][i] == "error" and r["error_message"][i].startswith("HTTP 500: ")
    assert "injected failure" in r["error_message"][i]
    i = rows["malformed"]
    assert r["status"][i] == "ok" and "malformed SSE chunk" in r["error_message"][i]
    assert r["num_chunks"][i] == 5 and r["output_tokens"][i] == 4       # the bad line still counts as a chunk
    i = rows["drop"]
    assert r["status"][i] == "error" and r["error_message"][i].startswith("streaming error:")
    assert r["num_chunks"][i] == 2 and r["first_chunk_time_us"][i] > 0
    i = rows["nodone"]
    assert r["status"][i] == "incomplete" and "[DONE]" in r["error_message"][i]
    assert r["output_tokens"][i] == 6
    i = rows["hang"]
    assert r["status"][i] == "timeout" and r["error_message"][i].startswith("HTTP timeout")
    assert r["first_chunk_time_us"][i] == 0 and r["num_chunks"][i] == 0

    ok = [i for i in range(len(tr)) if not fault_of[r["x_request_id"][i]]]
    assert len(ok) == 25
    assert all(r["status"][i] == "ok" and r["error_message"][i] == "" for i in ok)
    assert all(r["num_chunks"][i] == 13 and r["output_tokens"][i] == 12 for i in ok)
    itl = _load_itl(str(d)[:-4] + ".itl.csv")
    # chunk times only for ok records
    assert set(itl) == {int(r["request_id"][i]) for i in range(len(tr)) if r["status"][i] == "ok"}


def test_unreachable_server_records_errors(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    h, d = _paths(tmp_path)
    rc = observe.main(["--server-url", f"http://127.0.0.1:{port}", "--model", "m", "--trace-header", str(h),
                       "--trace-data", str(d), "--rate", "100", "--num-requests", "3", "--timeout", "2"])
    assert rc == 0
    r = read_tracev2(h, d).records
    assert set(r["status"]) == {"error"}
    assert all(m.startswith("HTTP error:") for m in r["error_message"])


# ---------------------------------------------------------------------------
# Request contents
# ---------------------------------------------------------------------------
def test_request_body_and_headers(server, tmp_path):
    before = len(server.stats()["bodies"])
    ih, idata = _input_trace(tmp_path, [8, 9], inputs=[30, 40], slo_class="critical", name="body")
    rc, h, d = _run_cli(server, tmp_path, "--input-trace-header", str(ih), "--input-trace-data", str(idata),
                        "--api-key", "sekrit", "--api-format", "chat", name="body")
    assert rc == 0
    st = server.stats()
    bodies, headers = st["bodies"][before:], st["headers"][before:]
    tr = read_tracev2(h, d)
    r = tr.records
    assert len(bodies) == 2
    for b, hd in zip(bodies, headers):
        i = list(r["x_request_id"]).index(hd["x-request-id"])
        out = int(r["output_tokens"][i])
        assert b["max_tokens"] == out and b["min_tokens"] == out and b["ignore_eos"] is True
        assert b["stream"] is True and b["stream_options"] == {"include_usage": True}
        assert b["priority"] == 0 and b["model"] == "fake-model"
        assert len(b["messages"][0]["content"].split()) == r["input_tokens"][i]
        assert hd["authorization"] == "Bearer sekrit"
        assert hd["x-gateway-inference-objective"] == "critical"
    assert "vllm_priority" in Path(d).read_text().splitlines()[0].split(",")
    assert list(r["vllm_priority"]) == [0, 0]
    assert (r["server_input_tokens"] == r["input_tokens"]).all()


def test_prompt_sizes_and_prefix():
    p = observe.build_prompt(100, 0, None, 123, 1.0)
    assert len(p.split()) == 100 and p.endswith(" ")
    assert observe.build_prompt(100, 0, None, 123, 1.0) == p            # deterministic
    assert observe.build_prompt(100, 0, None, 124, 1.0) != p
    assert len(observe.build_prompt(100, 0, None, 1, 2.0).split()) == 50
    pre = observe.prefix_text("g", 42, 30, 1.0)
    assert len(pre.split()) == 30 and pre == observe.prefix_text("g", 42, 30, 1.0)
    assert pre != observe.prefix_text("h", 42, 30, 1.0)
    full = observe.build_prompt(80, 30, pre, 5, 1.0)
    assert full.startswith(pre) and len(full.split()) == 80
    assert observe.vllm_priority("critical") == 0 and observe.vllm_priority("standard") == 1
    assert observe.vllm_priority("batch") == 5 and observe.vllm_priority("background") == 7
    assert observe.vllm_priority("unknown") == 1


# ---------------------------------------------------------------------------
# Interruption
# ---------------------------------------------------------------------------
def test_cancel_midway_leaves_a_readable_trace_with_the_completed_rows(server, tmp_path):
    ih, idata = _input_trace(tmp_path, [8] * 200, gap_us=10_000)
    from blis.workload.tracev2 import load_tracev2

    table = load_tracev2(ih, idata)
    cfg = observe.ObserveConfig(server_url=server.url, model="m", tokens_per_word=1.0, max_concurrency=50,
                                timeout_s=10)
    h, d = _paths(tmp_path, "cancel")
    seen = []

    async def go():
        stop = asyncio.Event()

        def on_record(row):
            seen.append(row)
            if len(seen) == 10:
                stop.set()

        return await observe.observe_async(cfg, table, trace_header=h, trace_data=d, stop=stop,
                                           on_record=on_record)

    res = asyncio.run(asyncio.wait_for(go(), timeout=30))
    assert res.interrupted
    tr = read_tracev2(h, d)
    # every dispatched request finished (drained) and was recorded; nothing after the stop was sent
    assert len(tr) == len(seen) == res.dispatched
    assert 10 <= len(tr) < 200
    assert set(tr.records["status"]) == {"ok"}


def test_force_cancel_records_in_flight_requests_as_incomplete(server, tmp_path):
    ih, idata = _input_trace(tmp_path, [7, 12, 12], gap_us=1000)      # 7 hangs
    from blis.workload.tracev2 import load_tracev2

    cfg = observe.ObserveConfig(server_url=server.url, model="m", tokens_per_word=1.0, timeout_s=30)
    h, d = _paths(tmp_path, "force")

    async def go():
        stop, force = asyncio.Event(), asyncio.Event()
        done = []

        def on_record(row):
            if row["status"] == "ok":
                done.append(row)
                if len(done) == 2:      # the third request hangs: cancel it
                    stop.set()
                    force.set()

        return await observe.observe_async(cfg, load_tracev2(ih, idata), trace_header=h, trace_data=d,
                                           stop=stop, force=force, on_record=on_record)

    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(go(), timeout=20))
    assert time.monotonic() - t0 < 10
    r = read_tracev2(h, d).records
    assert sorted(r["status"].tolist()) == ["incomplete", "ok", "ok"]
    i = list(r["status"]).index("incomplete")
    assert "interrupted" in r["error_message"][i]


def _wait_rows(path, n, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) - 1 >= n:
            return True
        time.sleep(0.05)
    return False


def _spawn_observe(server, tmp_path, name):
    h, d = _paths(tmp_path, name)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "blis.observe", "--server-url", server.url, "--model", "m",
                             "--trace-header", str(h), "--trace-data", str(d), "--tokens-per-word", "1",
                             "--rate", "20", "--num-requests", "400", "--prompt-tokens", "10",
                             "--prompt-tokens-stdev", "0", "--output-tokens", "8", "--output-tokens-stdev", "0",
                             "--record-itl", "--timeout", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))
    return proc, h, d


def test_killed_run_keeps_every_completed_record(server, tmp_path):
    proc, h, d = _spawn_observe(server, tmp_path, "killed")
    try:
        assert _wait_rows(d, 8), proc.stderr.read() if proc.poll() is not None else "no rows"
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    tr = read_tracev2(h, d)                 # the incrementally written files are a valid trace
    assert 8 <= len(tr) < 400
    assert set(tr.records["status"]) == {"ok"}
    assert (tr.records["first_chunk_time_us"] > 0).all()
    itl = Path(str(d)[:-4] + ".itl.csv").read_text().splitlines()
    assert itl[0] == "request_id,chunk_index,timestamp_us" and len(itl) > 1


def test_sigint_drains_and_writes_the_final_trace(server, tmp_path):
    proc, h, d = _spawn_observe(server, tmp_path, "sigint")
    try:
        assert _wait_rows(d, 5), proc.stderr.read() if proc.poll() is not None else "no rows"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.startswith("=== Simulation Metrics ===")
    tr = read_tracev2(h, d)
    assert 5 <= len(tr) < 400 and set(tr.records["status"]) == {"ok"}
    assert "x_request_id" in Path(d).read_text().splitlines()[0]


# ---------------------------------------------------------------------------
# Command-line errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--rate", "1", "--num-requests", "1", "--record-itl", "--no-streaming"], "mutually exclusive"),
    (["--num-requests", "1"], "Either --workload"),
    (["--rate", "1", "--concurrency", "2", "--num-requests", "1"], "--concurrency and --rate"),
    (["--workload", "chatbot", "--num-requests", "1"], "requires --rate"),
    (["--rate", "1", "--num-requests", "1", "--api-format", "grpc"], "--api-format"),
    (["--rate", "1", "--num-requests", "1", "--timeout", "0"], "--timeout"),
    (["--rate", "1"], "bound generation"),
    (["--rate", "1", "--num-requests", "1", "--scrape-kv-metrics", "true"], "not supported"),
])
def test_bad_command_lines_fail_with_one_line(tmp_path, capsys, args, needle):
    h, d = _paths(tmp_path)
    rc = observe.main(["--server-url", "http://127.0.0.1:9", "--model", "m", "--trace-header", str(h),
                       "--trace-data", str(d), *args])
    err = capsys.readouterr().err
    assert rc == 1 and needle in err and "Traceback" not in err
    assert not d.exists()


# ---------------------------------------------------------------------------
# Workload-spec source, prefix groups, prewarm, warm-up
# ---------------------------------------------------------------------------
def test_workload_spec_with_prefix_group_prewarm_and_warmup(server, tmp_path):
    spec = tmp_path / "w.yaml"
    spec.write_text(
        "version: \"2\"\nseed: 11\naggregate_rate: 100\nnum_requests: 12\n"
        "goodput_slo_targets:\n  standard:\n    ttft_ms: 500\n"
        "clients:\n"
        "  - id: alpha\n    tenant_id: t1\n    slo_class: standard\n    rate_fraction: 1\n"
        "    arrival:\n      process: poisson\n"
        "    input_distribution:\n      type: constant\n      params:\n        value: 25\n"
        "    output_distribution:\n      type: constant\n      params:\n        value: 8\n"
        "    prefix_group: sys\n    prefix_length: 30\n    streaming: true\n")
    before = server.stats()
    rc, h, d = _run_cli(server, tmp_path, "--workload-spec", str(spec), "--prewarm-duration", "300ms",
                        "--warmup-requests", "2", name="spec")
    assert rc == 0
    st = server.stats()
    bodies = st["bodies"][len(before["bodies"]):]
    warm = [b for b in bodies if b.get("max_tokens") == 64]
    real = [b for b in bodies if b.get("max_tokens") == 8]
    assert len(warm) >= 4 and all(b["prompt"].split() == ["warm"] * 256 for b in warm)
    assert len(real) == 12                                   # warm-up requests are sent ...
    tr = read_tracev2(h, d)
    r = tr.records
    assert sorted(r["request_id"].tolist()) == list(range(2, 12))    # ... but not recorded
    assert tr.header["workload_spec"] == str(spec) and tr.header["workload_seed"] == 11
    assert tr.header["warm_up_requests"] == 2
    assert tr.header["goodput_slo_targets"]["standard"]["ttft_ms"] == 500
    assert set(r["prefix_group"]) == {"sys"} and (r["prefix_length"] == 30).all()
    assert (r["input_tokens"] == 25).all() and (r["server_input_tokens"] == 55).all()
    assert set(r["tenant_id"]) == {"t1"} and set(r["slo_class"]) == {"standard"}
    assert set(r["vllm_priority"].tolist()) == {1} and set(r["streaming"].tolist()) == {True}
    prompts = [b["prompt"] for b in real]
    prefix = prompts[0].split()[:30]
    assert all(p.split()[:30] == prefix for p in prompts)   # one shared prefix string per group
    assert len({" ".join(p.split()[30:]) for p in prompts}) > 1


def test_itl_parquet_output_and_go_durations(server, tmp_path):
    import pyarrow.parquet as pq

    itl = tmp_path / "chunks.parquet"
    rc, h, d = _run_cli(server, tmp_path, "--rate", "100", "--num-requests", "5", "--prompt-tokens", "10",
                        "--prompt-tokens-stdev", "0", "--output-tokens", "8", "--output-tokens-stdev", "0",
                        "--record-itl", "--itl-output", str(itl), name="pq")
    assert rc == 0
    t = pq.read_table(itl).to_pydict()
    assert len(t["request_id"]) == 5 * 9 and sorted(set(t["request_id"])) == list(range(5))
    from blis.calibrate import load_itl

    assert {k: len(v) for k, v in load_itl(itl).items()} == {i: 9 for i in range(5)}
    assert observe.parse_go_duration("1m30s") == 90 and observe.parse_go_duration("250ms") == 0.25
    assert observe.parse_go_duration("0") == 0
    with pytest.raises(Exception, match="invalid duration"):
        observe.parse_go_duration("5 seconds")


def test_preset_source(server, tmp_path):
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("workloads:\n  tiny:\n    prompt_tokens: 20\n    prompt_tokens_stdev: 0\n"
                        "    prompt_tokens_min: 20\n    prompt_tokens_max: 20\n    output_tokens: 8\n"
                        "    output_tokens_stdev: 0\n    output_tokens_min: 8\n    output_tokens_max: 8\n")
    rc, h, d = _run_cli(server, tmp_path, "--workload", "tiny", "--defaults-filepath", str(defaults),
                        "--rate", "100", "--num-requests", "4", "--streaming", name="preset")
    assert rc == 0
    tr = read_tracev2(h, d)
    assert tr.header["workload_spec"] == "preset:tiny" and tr.header["workload_seed"] == 42
    r = tr.records
    assert len(tr) == 4 and set(r["status"]) == {"ok"} and (r["output_tokens"] == 8).all()
    assert (r["input_tokens"] == 20).all() and set(r["client_id"]) == {"distribution"}
    # open loop: arrivals at the constant inter-arrival time of 10 ms
    assert sorted(r["arrival_time_us"].tolist()) == [10000, 20000, 30000, 40000]
