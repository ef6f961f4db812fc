"""A fake OpenAI-compatible (vLLM-style) inference server for the observe tests.

It is a real HTTP server (aiohttp) on 127.0.0.1 with a random free port, run in
its own process so that its timing is not disturbed by the client under test.
It serves ``POST /v1/completions`` and ``POST /v1/chat/completions``, streamed
(SSE, ``data: {...}`` lines, then ``data: [DONE]``) or not, with known delays:

* the first token is sent ``first_token_delay_s`` after the request arrived;
* token ``k`` (0-based) at ``first_token_delay_s + k * token_gap_s`` -- an
  absolute schedule, so the gaps do not drift;
* ``max_tokens`` tokens are produced (the client sets ``ignore_eos``), the last
  one with ``finish_reason: "length"``; with ``stream_options.include_usage``
  a usage-only chunk (``choices: []``) follows at once, as vLLM sends it;
* ``usage.prompt_tokens`` is the number of whitespace-separated words of the
  prompt (chat: of every message's content), so one word = one token.

Faults are chosen by the request's ``max_tokens`` (the workload's output
length), so a test knows which request gets which fault:

* ``http500``: HTTP 500 with a JSON error body;
* ``malformed``: the second data line is not valid JSON;
* ``drop``: the connection is closed after two chunks, mid-stream;
* ``nodone``: the stream ends cleanly after the usage chunk without ``[DONE]``;
* ``hang``: nothing is ever sent (the handler waits up to ``hang_s``, or until
  the client gives up).

``GET /stats`` returns the per-endpoint request counts, the body and ``x-``
headers of every request received (for assertions on what the client sent) and,
per ``x-request-id``, the server's own Unix-µs timestamps: when the handler got
the request (``recv_us``) and when each data chunk was written (``chunks_us``,
the usage chunk included) -- the ground truth for the client's measurements.

Usage from a test::

    with FakeServer(first_token_delay_s=0.05, token_gap_s=0.01, faults={7: "http500"}) as srv:
        url = srv.url   # http://127.0.0.1:<port>

Run directly: ``python tests/fake_openai_server.py --config '{"token_gap_s": 0.01}'``
prints ``PORT <n>`` on stdout once it listens.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, Optional

FAULTS = ("http500", "malformed", "drop", "nodone", "hang")

DEFAULT_CONFIG: Dict[str, Any] = {
    "first_token_delay_s": 0.05,
    "token_gap_s": 0.01,
    "faults": {},          # max_tokens (as a string or int) -> fault name
    "hang_s": 30.0,        # upper bound on a "hang" fault
    "max_tokens_cap": 4096,
    "model": "fake-model",
}


# ---------------------------------------------------------------------------
# Server side (runs in the child process)
# ---------------------------------------------------------------------------
def _count_words(text: str) -> int:
    return len(text.split())


def _prompt_tokens(body: Dict[str, Any], chat: bool) -> int:
    if chat:
        return sum(_count_words(str(m.get("content", ""))) for m in body.get("messages", []) or [])
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    return _count_words(str(prompt))


def make_app(config: Dict[str, Any]):
    from aiohttp import web

    cfg = dict(DEFAULT_CONFIG)
    cfg.update(config or {})
    faults = {int(k): v for k, v in (cfg.get("faults") or {}).items()}
    for v in faults.values():
        if v not in FAULTS:
            raise ValueError(f"fake server: fault must be one of {FAULTS}, got {v!r}")
    stats: Dict[str, Any] = {"completions": 0, "chat": 0, "bodies": [], "headers": [], "timings": {}}
    counter = {"n": 0}

    def chunk(kind: str, rid: str, model: str, text: Optional[str], finish: Optional[str], first: bool):
        created = int(time.time())
        if kind == "chat":
            delta: Dict[str, Any] = {"content": text}
            if first:
                delta = {"role": "assistant", "content": text}
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                             "stop_reason": None}]}

    async def handle(request, kind: str):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        recv_us = time.time_ns() // 1000
        try:
            body = await request.json()
        except Exception:
            return web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        stats["completions" if kind == "completions" else "chat"] += 1
        stats["bodies"].append(body)
        stats["headers"].append({k.lower(): v for k, v in request.headers.items()
                                 if k.lower().startswith(("x-", "authorization"))})
        counter["n"] += 1
        rid = f"cmpl-{counter['n']}"
        timing = {"recv_us": recv_us, "chunks_us": [], "max_tokens": body.get("max_tokens"), "fault": None}
        stats["timings"][request.headers.get("x-request-id", rid)] = timing
        model = str(body.get("model", cfg["model"]))
        max_tokens = body.get("max_tokens")
        n_out = int(max_tokens) if isinstance(max_tokens, int) and max_tokens > 0 else 16
        n_out = min(n_out, int(cfg["max_tokens_cap"]))
        prompt_tokens = _prompt_tokens(body, kind == "chat")
        fault = faults.get(int(max_tokens)) if isinstance(max_tokens, int) else None
        timing["fault"] = fault
        d1 = float(cfg["first_token_delay_s"])
        gap = float(cfg["token_gap_s"])

        if fault == "hang":
            await asyncio.sleep(float(cfg["hang_s"]))
            return web.json_response({"error": {"message": "hang ended"}}, status=504)
        if fault == "http500":
            await asyncio.sleep(d1)
            return web.json_response({"error": {"message": "injected failure", "code": 500}}, status=500)

        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n_out,
                 "total_tokens": prompt_tokens + n_out}
        if not body.get("stream"):
            await asyncio.sleep(max(0.0, t0 + d1 + (n_out - 1) * gap - loop.time()))
            words = " ".join("tok" for _ in range(n_out))
            if kind == "chat":
                choice = {"index": 0, "message": {"role": "assistant", "content": words},
                          "finish_reason": "length"}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": words, "finish_reason": "length"}
                obj = "text_completion"
            return web.json_response({"id": rid, "object": obj, "created": int(time.time()), "model": model,
                                      "choices": [choice], "usage": usage})

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        # the chunk lines are rendered once per request: the schedule, not JSON work, sets the timing
        first_line = ("data: " + json.dumps(chunk(kind, rid, model, " tok", None, True)) + "\n\n").encode()
        mid_line = ("data: " + json.dumps(chunk(kind, rid, model, " tok", None, False)) + "\n\n").encode()
        last_line = ("data: " + json.dumps(chunk(kind, rid, model, " tok", "length", n_out == 1)) + "\n\n").encode()
        chunks_us = timing["chunks_us"]
        for k in range(n_out):
            delay = t0 + d1 + k * gap - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if fault == "drop" and k == 2:
                if request.transport is not None:
                    request.transport.abort()
                return resp
            if fault == "malformed" and k == 1:
                line = b'data: {"id": "broken", "choices": [\n\n'
            elif k == n_out - 1:
                line = last_line
            else:
                line = first_line if k == 0 else mid_line
            await resp.write(line)
            chunks_us.append(time.time_ns() // 1000)
        if include_usage:
            u = {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                 "created": int(time.time()), "model": model, "choices": [], "usage": usage}
            await resp.write(("data: " + json.dumps(u) + "\n\n").encode())
            timing["chunks_us"].append(time.time_ns() // 1000)
        if fault != "nodone":
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def completions(request):
        return await handle(request, "completions")

    async def chat(request):
        return await handle(request, "chat")

    async def get_stats(request):
        return web.json_response(stats)

    async def health(request):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/health", health)
    return app


async def _serve(config: Dict[str, Any], port: int) -> None:
    from aiohttp import web

    app = make_app(config)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    actual = sock.getsockname()[1]
    sys.stdout.write(f"PORT {actual}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # never outlive the test session: stop after max_lifetime_s
    try:
        await asyncio.wait_for(stop.wait(), timeout=float(config.get("max_lifetime_s", 600)))
    except asyncio.TimeoutError:
        pass
    await runner.cleanup()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="fake OpenAI-compatible server (tests)")
    p.add_argument("--config", default="{}", help="JSON config (see DEFAULT_CONFIG)")
    p.add_argument("--port", type=int, default=0)
    ns = p.parse_args(argv)
    asyncio.run(_serve(json.loads(ns.config), ns.port))
    return 0


# ---------------------------------------------------------------------------
# Client side (the test process)
# ---------------------------------------------------------------------------
class FakeServer:
    """Start the fake server in a child process; ``url`` once started; stop on exit."""

    def __init__(self, **config):
        self.config = dict(config)
        self.config.setdefault("max_lifetime_s", 300)
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "FakeServer":
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--config",
                                      json.dumps(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + timeout_s
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("PORT "):
                self.port = int(line.split()[1])
                return self
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        self.stop()
        raise RuntimeError(f"fake server did not start (last line {line!r}): {err}")

    def stats(self) -> Dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self.proc = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
