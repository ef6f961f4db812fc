"""``blis serve``: simulated vLLM instances behind a real OpenAI-compatible HTTP API.

``blis serve --model M --num-instances N --port P`` starts N simulated vLLM
instances, each a real HTTP server (aiohttp) on its own port P, P+1, ...,
serving ``POST /v1/completions`` and ``POST /v1/chat/completions`` (SSE
streaming or not, ``usage`` included), ``GET /v1/models``, ``GET /health`` and
``GET /metrics`` (Prometheus text with vLLM's metric names).  With
``--router`` one more port, P, fronts the instances (which move to P+1..P+N)
and routes with any ``--routing-policy``; the instance ports then serve only
the GET endpoints.

One :class:`~blis.engine.Simulation` (N instances, the ``blis run`` model,
latency, KV and batching flags) runs in real time in one asyncio loop.  A
request enters the simulation at its wall-clock arrival, ``t_sim = (wall -
t0) * speed`` (µs), where wall is when its last bytes reached the server,
pinned to the instance whose port received it (or routed, in router mode).
A driver task processes every simulated event that wall time has reached,
one event time at a time, and after each reads the requests' progress: a
request's first token is due at ``arrival + TTFT``, decode token k at
``arrival + TTFT + ITL_1 + ... + ITL_k`` (the simulator's own accounting),
the last token and the end of the response at ``arrival + E2E``.  Each token
is written to its HTTP stream when the wall clock reaches its simulated time
(never earlier), so what a client measures follows the latency model, the
batch and the KV cache under the offered load.  A stream's response (200 and
headers) starts once its request is queued at an instance, as vLLM's does
before the first token.  The driver sleeps on a thread's timer rather than
asyncio's (whose epoll waits round up to whole milliseconds) and lets due
tokens go out before it processes the events at their time; on loopback a
client's TTFT and E2E then exceed the simulated values by the HTTP path
alone, about 1 ms (``blis:token_release_lateness_seconds`` in ``/metrics``
shows the server's share).

Prompt length: the ``prompt_token_ids``-style list when the prompt is a list of
ints, else one token per whitespace-separated word plus one per further 8
bytes of a long word (chat: over every message's text, no template tokens).
Output length: ``max_tokens`` (``max_completion_tokens`` for chat); without
it, ``--default-max-tokens`` capped by the context.  A request whose prompt
plus ``max_tokens`` exceeds ``--max-model-len`` gets vLLM's 400.  Errors are
OpenAI-style JSON (``{"error": {"message", "type", "param", "code"}}``).

A client that disconnects aborts its request: it leaves the simulated queue or
batch and its KV blocks are released at once (counted as timed out in the
results).  SIGINT/SIGTERM stop the servers, cancel open streams and write the
results of what was simulated (``--results-path`` in ``blis replay``'s format
plus each request's ``x_request_id``, ``--metrics-path``,
``--results-parquet``, ``--trace-output``), and print the run summary.
"""
from __future__ import annotations

import asyncio
import bisect
import hashlib
import heapq
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from blis.errors import BlisError, ConfigError

log = logging.getLogger("blis.serve")

INT64_MAX = 9223372036854775807

#: vLLM's histogram buckets (seconds)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)

_WORD_JSON: Optional[List[bytes]] = None   # the token texts JSON-encoded (Server._word_json)

_DONE = -1      # queue item: the response is complete
_ERROR = -2     # queue item: the request failed (live.error)
_ACCEPTED = -3  # queue item: the request is queued at its instance (a stream's headers can go out)


# ---------------------------------------------------------------------------
# Errors and request parsing
# ---------------------------------------------------------------------------
class APIError(Exception):
    """An OpenAI-style error response."""

    TYPES = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowed", 429: "TooManyRequests",
             500: "InternalServerError", 503: "ServiceUnavailable"}

    def __init__(self, status: int, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "Error"),
                          "param": self.param, "code": self.status}}


def estimate_tokens(text: str) -> int:
    """Prompt tokens of a text: one per whitespace-separated word plus one per further 8 bytes."""
    n = 0
    for w in text.split():
        n += 1 + (len(w.encode("utf-8")) - 1) // 8
    return n


def _prompt_tokens(prompt) -> int:
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        return _prompt_tokens(prompt[0])
    if isinstance(prompt, list) and prompt and all(isinstance(x, int) and not isinstance(x, bool) for x in prompt):
        return len(prompt)
    if isinstance(prompt, list) and len(prompt) > 1:
        raise APIError(400, "batched prompts (a list of several prompts) are not supported by blis serve; "
                            "send one prompt per request", "prompt")
    raise APIError(400, "prompt must be a string, a list of token ids or a one-element list of either", "prompt")


def _message_tokens(messages) -> int:
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list of {role, content} objects", "messages")
    n = 0
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise APIError(400, "each message must be an object with a 'role'", "messages")
        c = m.get("content")
        if isinstance(c, str):
            n += estimate_tokens(c)
        elif isinstance(c, list):
            for part in c:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    n += estimate_tokens(part["text"])
        elif c is not None:
            raise APIError(400, "message content must be a string or a list of content parts", "messages")
    return n


@dataclass
class ParsedRequest:
    chat: bool
    model: str
    prompt_tokens: int
    output_tokens: int
    max_tokens: Optional[int]
    stream: bool
    include_usage: bool
    content_seed: int


def parse_request(body, chat: bool, served: List[str], max_model_len: int, default_max_tokens: int) -> ParsedRequest:
    """Validate an OpenAI request body as vLLM does; raises :class:`APIError`."""
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    model = body.get("model")
    if model is None:
        model = served[0]
    if not isinstance(model, str) or model not in served:
        raise APIError(404, f"The model `{model}` does not exist.", "model")
    if chat:
        if "messages" not in body:
            raise APIError(400, "Field required: 'messages'", "messages")
        p = _message_tokens(body["messages"])
        raw = json.dumps(body["messages"], sort_keys=True)
    else:
        if "prompt" not in body or body["prompt"] is None:
            raise APIError(400, "Field required: 'prompt'", "prompt")
        p = _prompt_tokens(body["prompt"])
        raw = json.dumps(body["prompt"])
    if p <= 0:
        raise APIError(400, "The prompt cannot be empty", "messages" if chat else "prompt")
    mt = body.get("max_completion_tokens") if chat and body.get("max_completion_tokens") is not None \
        else body.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool)):
        raise APIError(400, f"max_tokens must be an integer, got {mt!r}", "max_tokens")
    if mt is not None and mt < 1:
        raise APIError(400, f"max_tokens must be at least 1, got {mt}.", "max_tokens")
    n = body.get("n", 1)
    if n != 1:
        raise APIError(400, f"n must be 1 (blis serve returns one choice), got {n!r}", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, f"stream must be a boolean, got {stream!r}", "stream")
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise APIError(400, "stream_options must be an object", "stream_options")
    if so and not stream:
        raise APIError(400, "Stream options can only be defined when `stream=True`.", "stream_options")
    include_usage = bool(so and so.get("include_usage"))
    if max_model_len > 0:
        if p >= max_model_len:
            raise APIError(400, f"This model's maximum context length is {max_model_len} tokens. However, your "
                                f"request has {p} input tokens. Please reduce the length of the input messages.",
                           "messages" if chat else "prompt")
        if mt is not None and p + mt > max_model_len:
            raise APIError(400, f"'max_tokens' or 'max_completion_tokens' is too large: {mt}. This model's maximum "
                                f"context length is {max_model_len} tokens and your request has {p} input tokens "
                                f"({mt} > {max_model_len} - {p}).", "max_tokens")
    out = mt if mt is not None else default_max_tokens
    if max_model_len > 0:
        out = min(out, max_model_len - p)
    seed = int.from_bytes(hashlib.blake2b(raw.encode("utf-8"), digest_size=8).digest(), "little")
    return ParsedRequest(chat, model, p, out, mt, stream, include_usage, seed)


# ---------------------------------------------------------------------------
# Live requests
# ---------------------------------------------------------------------------
class Live:
    """One HTTP request in the simulation."""

    __slots__ = ("rid", "row", "req", "items", "event", "sched", "token_times", "finished", "cancelled",
                 "error", "finish_reason", "out_tokens", "x_request_id", "inst", "delivered", "created")

    def __init__(self, rid: int, row: int, req: ParsedRequest, x_request_id: str):
        self.rid = rid
        self.row = row
        self.req = req
        self.items: List[int] = []
        self.event = asyncio.Event()
        self.sched = 0                 # tokens scheduled for the client so far
        self.token_times: List[int] = []
        self.finished = False          # terminal in the simulation (its last items are scheduled)
        self.cancelled = False
        self.error: Optional[APIError] = None
        self.finish_reason = "length"
        self.out_tokens = 0
        self.x_request_id = x_request_id
        self.inst = -1
        self.delivered = False
        self.created = int(time.time())


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1   # the first bucket with v <= its bound
        self.sum += v
        self.n += 1

    def observe_many(self, values: np.ndarray) -> None:
        """``observe`` each of ``values`` (float64 seconds)."""
        if len(values):
            self.counts = (np.asarray(self.counts, np.int64)
                           + np.bincount(np.searchsorted(self.buckets, values, side="left"),
                                         minlength=len(self.counts))).tolist()
            for v in values.tolist():   # in order: the same float sum as observe's
                self.sum += v
            self.n += len(values)

    def add(self, other: "Histogram") -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum
        self.n += other.n


class InstanceStats:
    """Per-instance request-level metrics, observed when a response completes (simulated seconds)."""

    def __init__(self):
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.tpot = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.success = {"length": 0, "stop": 0, "abort": 0}
        self.prompt_tokens = 0
        self.generation_tokens = 0

    def merged(self, others) -> "InstanceStats":
        out = InstanceStats()
        for o in [self] + list(others):
            for a, b in ((out.ttft, o.ttft), (out.itl, o.itl), (out.tpot, o.tpot), (out.e2e, o.e2e)):
                a.add(b)
            for k in out.success:
                out.success[k] += o.success[k]
            out.prompt_tokens += o.prompt_tokens
            out.generation_tokens += o.generation_tokens
        return out


# ---------------------------------------------------------------------------
# The real-time simulation
# ---------------------------------------------------------------------------
class Alarm:
    """Calls ``callback`` in ``loop`` at a ``time.perf_counter()`` deadline, woken from a thread.

    asyncio's timers (``call_later``) wait in ``epoll_wait``, whose timeout is whole milliseconds
    rounded up, so a token due at t would leave up to 1 ms late (0.9 ms median on loopback, and
    every client-observed TTFT and E2E with it).  A thread's timed wait has microsecond resolution
    and ``call_soon_threadsafe`` interrupts the loop's ``epoll_wait`` at once.  One deadline at a
    time: :meth:`set` replaces the previous one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback):
        self._loop = loop
        self._callback = callback
        self._cond = threading.Condition()
        self._deadline: Optional[float] = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="blis-serve-alarm", daemon=True)
        self._thread.start()

    def set(self, deadline: float) -> None:
        with self._cond:
            self._deadline = deadline
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(1.0)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.perf_counter()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                try:
                    self._loop.call_soon_threadsafe(self._callback)
                except RuntimeError:  # the loop is closed
                    return


class LiveSimulation:
    """A :class:`~blis.engine.Simulation` driven by the wall clock, fed by HTTP requests."""

    def __init__(self, sim, speed: float = 1.0, model_names=("",), pinned: bool = True):
        from blis.kernels import layout as Lo

        self.Lo = Lo
        self.sim = sim
        self.speed = float(speed)
        self.pinned = pinned
        self.pin: Dict[int, int] = {}
        self.lives: Dict[int, Live] = {}        # row -> live (until delivered or cancelled)
        self.active: Dict[int, Live] = {}       # row -> live still producing tokens in the simulation
        self.unaccepted: Dict[int, Live] = {}   # row -> streaming live not yet queued at an instance
        self._rows = np.zeros(0, np.int64)
        self._dirty = False
        self.deferred_cancel: List[int] = []
        self.due: list = []                     # heap of (t_sim, seq, row, item)
        self._seq = 0
        self.next_id = 0
        self.xids: Dict[int, str] = {}          # request id -> x-request-id
        self.stats = [InstanceStats() for _ in range(sim.ins.shape[0])]
        self.aborted = 0
        #: how late (simulated µs) items reached their streams: count, sum, max (a loaded host shows here)
        self.late_n = self.late_sum = self.late_max = 0
        self.model_code = {m: sim.table.code("model", m) for m in model_names}
        self._t0 = time.perf_counter()
        self._wake: Optional[asyncio.Future] = None
        #: runs (callback, arg) later: the driver's loop.call_soon, None = at once
        self.defer = None
        self._timer = None
        self.stopping = False
        sim.add_finish_hook(self._on_finish)

    # -- time ------------------------------------------------------------------
    def now_sim(self) -> int:
        return int((time.perf_counter() - self._t0) * 1e6 * self.speed)

    def sim_time(self, wall: Optional[float] = None) -> int:
        """Simulated time (µs) at ``time.perf_counter()`` value ``wall`` (default: now)."""
        if wall is None:
            return self.now_sim()
        return int((wall - self._t0) * 1e6 * self.speed)

    def wall_delay(self, t_sim: int) -> float:
        """Seconds of wall time until simulated time ``t_sim``."""
        return (t_sim / (1e6 * self.speed)) - (time.perf_counter() - self._t0)

    # -- requests in -----------------------------------------------------------
    def submit(self, req: ParsedRequest, arrival_us: int, instance: int = -1, x_request_id: str = "") -> Live:
        """Inject a request arriving at simulated time ``arrival_us`` (clamped to the clock)."""
        from blis.requests import RequestTable

        sim = self.sim
        t = sim.table
        rid = self.next_id
        self.next_id += 1
        rows = RequestTable.empty(1)
        c = rows.cols
        c["request_id"][0] = rid
        c["arrival_us"][0] = max(int(arrival_us), sim.clock)
        c["input_len"][0] = req.prompt_tokens
        c["output_len"][0] = req.output_tokens
        c["max_output_len"][0] = req.output_tokens
        c["model"][0] = self.model_code.get(req.model, 0)
        c["streaming"][0] = req.stream
        c["content_seed"][0] = np.uint64(req.content_seed)
        rows = RequestTable(c, t.names, t.group_seeds)
        row = int(sim.add_requests(rows)[0])
        live = Live(rid, row, req, x_request_id)
        if instance >= 0:
            self.pin[row] = instance
        self.lives[row] = live
        self.active[row] = live
        if req.stream:
            self.unaccepted[row] = live
        self._dirty = True
        if x_request_id:
            self.xids[rid] = x_request_id
        self.wake()
        return live

    def route(self, sim, r: int) -> int:
        """Python routing for pinned requests: the instance whose port received the request."""
        return self.pin.pop(r, 0)

    def cancel(self, live: Live) -> None:
        """The client went away: abort the request and free its simulated KV blocks now."""
        if live.finished or live.cancelled:
            return
        live.cancelled = True
        self.aborted += 1
        r = live.row
        self.active.pop(r, None)
        self.lives.pop(r, None)
        self._dirty = True
        if not self._cancel_row(r):
            st = int(self.sim.rq[self.Lo.R_STATE, r])
            if st == self.Lo.ST_PENDING:
                self.deferred_cancel.append(r)   # still in admission/routing: cancel at its instance
        inst = int(self.sim.rq[self.Lo.R_INST, r])
        if inst >= 0:
            self.stats[inst].success["abort"] += 1

    def _cancel_row(self, r: int) -> bool:
        from blis.kernels.engine import cancel_request_nb

        sim, Lo = self.sim, self.Lo
        i = int(sim.rq[Lo.R_INST, r])
        st = int(sim.rq[Lo.R_STATE, r])
        if i < 0 or st not in (Lo.ST_QUEUED, Lo.ST_RUNNING):
            return False
        if sim.ins[i, Lo.I_HLEN] + 2 > sim.ev[0].shape[1]:
            sim._grow(Lo.GROW_HEAP)
        return bool(cancel_request_nb(sim.rq, sim.ins, sim.ev, sim.wq, sim.bt, sim.kv, sim.itl, sim.glob,
                                      np.int64(r), np.int64(sim.clock)))

    # -- progress out ----------------------------------------------------------
    def _schedule(self, live: Live, t: int, item: int) -> None:
        self._seq += 1
        heapq.heappush(self.due, (t, self._seq, live.row, item, live))

    def _itl_values(self, r: int) -> List[int]:
        vals, nxt = self.sim.itl[0], self.sim.itl[1]
        Lo = self.Lo
        c = int(self.sim.rq[Lo.R_ITLHEAD, r])
        left = int(self.sim.rq[Lo.R_ITLCNT, r])
        out: List[int] = []
        while c >= 0 and left > 0:
            m = min(left, Lo.ITL_CHUNK)
            out.extend(vals[c, :m].tolist())
            left -= m
            c = int(nxt[c])
        return out

    def _harvest(self) -> None:
        """Schedule the tokens the simulation produced since the last look (after each event time)."""
        sim, Lo = self.sim, self.Lo
        if self._dirty:
            self._rows = np.fromiter(self.active.keys(), np.int64, len(self.active))
            self._dirty = False
        rows = self._rows
        if self.deferred_cancel:
            keep = []
            for r in self.deferred_cancel:
                st = int(sim.rq[Lo.R_STATE, r])
                if st == Lo.ST_PENDING:
                    keep.append(r)
                else:
                    self._cancel_row(r)
            self.deferred_cancel = keep
        if self.unaccepted:
            self._accept()
        if len(rows) == 0:
            return
        rq = sim.rq
        prod = rq[Lo.R_TTFTSET, rows] + rq[Lo.R_ITLCNT, rows]
        st = rq[Lo.R_STATE, rows]
        cand = np.flatnonzero((prod > 0) | (st >= Lo.ST_REJECTED))
        for k in cand.tolist():
            r = int(rows[k])
            live = self.active.get(r)
            if live is None or live.finished:
                continue
            s = int(st[k])
            if s >= Lo.ST_REJECTED:
                self._fail(live, APIError(429 if s in (Lo.ST_REJECTED, Lo.ST_GW_REJECTED, Lo.ST_GW_SHED) else 503,
                                          f"request rejected by the simulated cluster "
                                          f"({_STATE_NAMES.get(s, s)})"))
                continue
            n = int(prod[k])
            if n <= live.sched:
                continue
            a = int(rq[Lo.R_ARRIVAL, r])
            first = a + int(rq[Lo.R_FIRST, r])
            if n - live.sched == 1:
                times = [first + (int(rq[Lo.R_ITLSUM, r]) if n > 1 else 0)]
            else:
                cum = np.concatenate([[0], np.cumsum(self._itl_values(r))]).tolist()
                times = [first + int(cum[j]) for j in range(live.sched, n)]
            for t in times:
                self._schedule(live, t, live.sched)
                live.token_times.append(t)
                live.sched += 1

    def _accept(self) -> None:
        """Streams whose request reached its instance's queue: their response can start now.

        vLLM starts an SSE response (status 200 and headers) before the first token; doing
        the same keeps the headers (and the client's handling of them) out of the measured
        TTFT.  Rejections before this point (admission, routing, the gateway queue, a prompt
        the KV cache cannot hold) are still HTTP errors."""
        sim, Lo = self.sim, self.Lo
        for r, live in list(self.unaccepted.items()):
            if live.finished or live.cancelled:
                del self.unaccepted[r]
            elif int(sim.rq[Lo.R_STATE, r]) in (Lo.ST_QUEUED, Lo.ST_RUNNING, Lo.ST_COMPLETED):
                del self.unaccepted[r]
                self._schedule(live, sim.clock, _ACCEPTED)

    def _fail(self, live: Live, err: APIError) -> None:
        live.finished = True
        live.error = err
        self.active.pop(live.row, None)
        self._dirty = True
        self._schedule(live, self.sim.clock, _ERROR)

    def _on_finish(self, sim, rows) -> None:
        Lo = self.Lo
        for r in rows.tolist():
            live = self.active.get(r)
            if live is None or live.finished:
                continue
            st = int(sim.rq[Lo.R_STATE, r])
            if st == Lo.ST_DROPPED:
                self._fail(live, APIError(400, "request dropped: its prompt does not fit the simulated KV cache"))
                continue
            if st != Lo.ST_COMPLETED:
                continue
            live.finished = True
            self.active.pop(r, None)
            self._dirty = True
            a = int(sim.rq[Lo.R_ARRIVAL, r])
            end = a + int(sim.rq[Lo.R_E2E, r])
            n = int(sim.rq[Lo.R_OUTDONE, r])
            live.out_tokens = n
            mt = live.req.max_tokens
            capped = bool(sim.rq[Lo.R_CAPPED, r])
            live.finish_reason = "length" if capped or (mt is not None and n >= mt) else "stop"
            # tokens not yet scheduled: the last one leaves at arrival + E2E; any between (only when an
            # event time was skipped) are spread evenly before it
            last = live.token_times[-1] if live.token_times else a
            missing = n - live.sched
            for j in range(missing):
                t = end if j == missing - 1 else last + (end - last) * (j + 1) // missing
                self._schedule(live, t, live.sched)
                live.token_times.append(t)
                live.sched += 1
            self._schedule(live, end, _DONE)

    def _release(self, now: int) -> None:
        due = self.due
        done = []
        while due and due[0][0] <= now:
            t, _, _, item, live = heapq.heappop(due)
            if live.cancelled:
                continue
            if item != _ACCEPTED:
                late = now - t
                self.late_n += 1
                self.late_sum += late
                if late > self.late_max:
                    self.late_max = late
            live.items.append(item)
            live.event.set()
            if item == _DONE:
                self.lives.pop(live.row, None)
                done.append(live)
        if done:
            # the metrics after the streams: with a loop (drive), once their tasks have written
            (self.defer or _call)(self._record_all, done)

    def _record_all(self, lives: List[Live]) -> None:
        for live in lives:
            self._record(live)

    def _record(self, live: Live) -> None:
        Lo = self.Lo
        r = live.row
        i = int(self.sim.rq[Lo.R_INST, r])
        live.inst = i
        s = self.stats[i]
        ttft = int(self.sim.rq[Lo.R_FIRST, r])
        e2e = int(self.sim.rq[Lo.R_E2E, r])
        s.ttft.observe(ttft / 1e6)
        s.e2e.observe(e2e / 1e6)
        s.itl.observe_many(np.diff(np.asarray(live.token_times, np.int64)) / 1e6)
        if live.out_tokens > 1:
            s.tpot.observe((e2e - ttft) / 1e6 / (live.out_tokens - 1))
        s.success[live.finish_reason] += 1
        s.prompt_tokens += live.req.prompt_tokens
        s.generation_tokens += live.out_tokens

    # -- the driver ------------------------------------------------------------
    def step(self, now: Optional[int] = None) -> None:
        """Process every event up to ``now`` (default: what wall time has reached) and release what
        is due by then.

        What is already known to be due goes first: the simulator knows a step's tokens when
        the step starts, so the tokens due at an event time are not held back by that event's
        processing (0.1-0.3 ms of work when a step ends)."""
        sim = self.sim
        wall = now is None
        now = self.now_sim() if wall else int(now)
        self._release(now)
        while True:
            te = sim.next_event_time()
            if te > now:
                break
            sim.advance_to(te)
            self._harvest()
        if self._dirty or self.deferred_cancel:  # a request came or went since the last harvest
            self._harvest()
        self._release(self.now_sim() if wall else now)

    def wake(self) -> None:
        w = self._wake
        if w is not None and not w.done():
            w.set_result(None)

    async def drive(self, max_sleep_s: float = 0.05) -> None:
        """Step the simulation as wall time passes; sleeps until the next event or due token on
        an :class:`Alarm` (asyncio's own timers are up to a millisecond late)."""
        loop = asyncio.get_running_loop()
        alarm = Alarm(loop, self.wake)
        self.defer = loop.call_soon
        try:
            while not self.stopping:
                if self.due and self.due[0][0] <= self.now_sim():
                    # what is due now first, and its streams write before the simulation's work
                    # at this time (a step's end takes 0.1-0.3 ms to process)
                    self._release(self.now_sim())
                    await asyncio.sleep(0)
                self.step()
                nxt = self.sim.next_event_time()
                if self.due:
                    nxt = min(nxt, self.due[0][0])
                delay = max_sleep_s if nxt >= INT64_MAX else min(max(self.wall_delay(nxt), 0.0), max_sleep_s)
                if delay <= 0:
                    await asyncio.sleep(0)
                    continue
                self._wake = loop.create_future()
                alarm.set(time.perf_counter() + delay)
                try:
                    await self._wake
                finally:
                    self._wake = None
        finally:
            self.defer = None
            alarm.close()

    # -- instance state (metrics) ----------------------------------------------
    def gauges(self, i: int) -> dict:
        from blis.kernels.engine import wq_len_nb

        ins, Lo = self.sim.ins, self.Lo
        total = int(ins[i, Lo.I_TOTAL_BLOCKS])
        used = total - int(ins[i, Lo.I_FREE_CNT])
        B = self.sim.cfg.block_size
        return {"running": int(ins[i, Lo.I_BLEN]), "waiting": int(wq_len_nb(ins, np.int64(i))),
                "kv_used": used, "kv_total": total,
                "hits": int(ins[i, Lo.I_HITS]) * B, "queries": int(ins[i, Lo.I_HITS] + ins[i, Lo.I_MISSES]) * B,
                "preemptions": int(ins[i, Lo.I_PREEMPT])}


def _call(f, *args):
    f(*args)


_STATE_NAMES = {6: "rejected by admission", 7: "rejected by routing", 8: "rejected by the gateway queue",
                9: "shed from the gateway queue", 10: "expired in the gateway queue"}


# ---------------------------------------------------------------------------
# Prometheus text
# ---------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "+Inf"
        return repr(v)
    return f"{v}.0" if isinstance(v, int) else str(v)


def metrics_text(model: str, g: dict, s: InstanceStats, late=None) -> str:
    lab = f'model_name="{model}"'
    out: List[str] = []

    def metric(name, typ, help_, value, extra=""):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {typ}")
        labels = lab + ("," + extra if extra else "")
        out.append(f"{name}{{{labels}}} {_fmt(value)}")

    def hist(name, help_, h: Histogram):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} histogram")
        cum = 0
        for b, c in zip(list(h.buckets) + [math.inf], h.counts):
            cum += c
            le = "+Inf" if math.isinf(b) else repr(float(b))
            out.append(f'{name}_bucket{{{lab},le="{le}"}} {_fmt(cum)}')
        out.append(f"{name}_count{{{lab}}} {_fmt(h.n)}")
        out.append(f"{name}_sum{{{lab}}} {_fmt(float(h.sum))}")

    usage = g["kv_used"] / g["kv_total"] if g["kv_total"] else 0.0
    metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", g["running"])
    metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", g["waiting"])
    metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", float(usage))
    metric("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", float(usage))
    metric("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.",
           g["queries"])
    metric("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.",
           g["hits"])
    metric("vllm:gpu_prefix_cache_hit_rate", "gauge", "GPU prefix cache block hit rate.",
           float(g["hits"] / g["queries"]) if g["queries"] else 0.0)
    metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.",
           g["preemptions"])
    metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", s.prompt_tokens)
    metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", s.generation_tokens)
    out.append("# HELP vllm:request_success_total Count of successfully processed requests.")
    out.append("# TYPE vllm:request_success_total counter")
    for reason in ("length", "stop", "abort"):
        out.append(f'vllm:request_success_total{{{lab},finished_reason="{reason}"}} {_fmt(s.success[reason])}')
    if late is not None:
        n, tot, mx = late
        out.append("# HELP blis:token_release_lateness_seconds How late tokens left for their streams after their "
                   "simulated time (wall-clock jitter of this server, simulated seconds).")
        out.append("# TYPE blis:token_release_lateness_seconds summary")
        out.append(f"blis:token_release_lateness_seconds_count{{{lab}}} {_fmt(n)}")
        out.append(f"blis:token_release_lateness_seconds_sum{{{lab}}} {_fmt(tot / 1e6)}")
        metric("blis:token_release_lateness_max_seconds", "gauge", "Largest release lateness so far.", mx / 1e6)
    hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", s.ttft)
    hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", s.itl)
    hist("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", s.tpot)
    hist("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", s.e2e)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------
class Received(asyncio.Protocol):
    """An aiohttp server connection (the protocol ``web.Server`` makes) that notes, per
    transport, when bytes last came in.

    A request's simulated arrival is then the moment its last bytes reached this process, not
    when aiohttp got round to its handler: two event-loop iterations later, 0.2-0.3 ms on a quiet
    2-core host and more on a busy one, all of which a client would see added to TTFT and E2E.
    """

    __slots__ = ("inner", "received", "transport")

    def __init__(self, inner: asyncio.Protocol, received: Dict[object, float]):
        self.inner = inner
        self.received = received
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.received[self.transport] = time.perf_counter()
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received()

    def connection_lost(self, exc) -> None:
        self.received.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Server:
    """The HTTP front ends of a :class:`LiveSimulation` (one app per instance, plus the router)."""

    def __init__(self, live: LiveSimulation, served: List[str], max_model_len: int, default_max_tokens: int,
                 router: bool):
        self.live = live
        self.served = served
        self.mml = max_model_len
        self.default_max_tokens = default_max_tokens
        self.router = router
        self.router_url = ""
        #: connection (transport) -> time.perf_counter() when its latest bytes came in (see Received)
        self.received: Dict[object, float] = {}

    # -- helpers ---------------------------------------------------------------
    @staticmethod
    def _error(e: APIError):
        from aiohttp import web

        return web.json_response(e.body(), status=e.status)

    def make_app(self, instance: int):
        """``instance`` >= 0: an instance's app; -1: the router."""
        from aiohttp import web

        @web.middleware
        async def errors(request, handler):
            try:
                return await handler(request)
            except web.HTTPException as e:
                if e.status in (404, 405):
                    msg = "Not Found" if e.status == 404 else f"Method {request.method} not allowed"
                    return self._error(APIError(e.status, f"{msg}: {request.path}"))
                raise

        app = web.Application(middlewares=[errors], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", lambda req: self.metrics(req, instance))
        app.router.add_post("/v1/completions", lambda req: self.infer(req, False, instance))
        app.router.add_post("/v1/chat/completions", lambda req: self.infer(req, True, instance))
        return app

    async def health(self, request):
        from aiohttp import web

        return web.Response(status=200)

    async def models(self, request):
        from aiohttp import web

        data = [{"id": m, "object": "model", "created": int(time.time()), "owned_by": "blis", "root": m,
                 "parent": None, "max_model_len": self.mml} for m in self.served]
        return web.json_response({"object": "list", "data": data})

    async def metrics(self, request, instance: int):
        from aiohttp import web

        live = self.live
        n = live.sim.ins.shape[0]
        idx = [instance] if instance >= 0 else list(range(n))
        g = {}
        for i in idx:
            for k, v in live.gauges(i).items():
                g[k] = g.get(k, 0) + v
        s = live.stats[idx[0]].merged([live.stats[i] for i in idx[1:]])
        return web.Response(text=metrics_text(self.served[0], g, s, (live.late_n, live.late_sum, live.late_max)), content_type="text/plain",
                            charset="utf-8", headers={"X-Blis-Sim-Time-Us": str(live.sim.clock)})

    # -- inference -------------------------------------------------------------
    async def infer(self, request, chat: bool, instance: int):
        from aiohttp import web

        if self.router and instance >= 0:
            return self._error(APIError(400, f"blis serve runs with --router: send inference requests to the "
                                             f"router at {self.router_url}"))
        try:
            raw = await request.read()
            # it arrived when its last bytes came in, not when aiohttp got round to this handler
            arrival = self.live.sim_time(self.received.get(request.transport))
            try:
                body = json.loads(raw)
            except ValueError as e:
                raise APIError(400, f"Invalid JSON in the request body: {e}")
            req = parse_request(body, chat, self.served, self.mml, self.default_max_tokens)
        except APIError as e:
            return self._error(e)
        live = self.live.submit(req, arrival, instance if not self.router else -1,
                                request.headers.get("x-request-id", ""))
        try:
            if req.stream:
                return await self._stream(request, live)
            return await self._unary(live)
        except (ConnectionResetError, asyncio.CancelledError):
            self.live.cancel(live)
            raise
        finally:
            if not live.finished:
                self.live.cancel(live)

    def _word(self, live: Live, k: int) -> str:
        from blis.observe import VOCABULARY

        return " " + VOCABULARY[(live.req.content_seed + 7919 * k) % len(VOCABULARY)]

    def _word_json(self, live: Live, k: int) -> bytes:
        """``_word`` JSON-encoded (a string literal), from a table built once."""
        global _WORD_JSON
        if _WORD_JSON is None:
            from blis.observe import VOCABULARY

            _WORD_JSON = [json.dumps(" " + w).encode() for w in VOCABULARY]
        return _WORD_JSON[(live.req.content_seed + 7919 * k) % len(_WORD_JSON)]

    def _usage(self, live: Live) -> dict:
        p, c = live.req.prompt_tokens, live.out_tokens
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}

    async def _next_items(self, live: Live) -> List[int]:
        while not live.items:
            live.event.clear()
            await live.event.wait()
        items, live.items = live.items, []
        return items

    async def _unary(self, live: Live):
        from aiohttp import web

        text = []
        while True:
            for it in await self._next_items(live):
                if it == _ACCEPTED:
                    continue
                if it == _ERROR:
                    return self._error(live.error)
                if it == _DONE:
                    live.delivered = True
                    return web.json_response(self._full_body(live, "".join(text)),
                                             headers={"x-request-id": live.x_request_id} if live.x_request_id else None)
                text.append(self._word(live, it))

    def _full_body(self, live: Live, text: str) -> dict:
        model, rid = live.req.model, live.rid
        if live.req.chat:
            return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": live.created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                                 "logprobs": None, "finish_reason": live.finish_reason, "stop_reason": None}],
                    "usage": self._usage(live), "prompt_logprobs": None}
        return {"id": f"cmpl-{rid}", "object": "text_completion", "created": live.created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": live.finish_reason,
                             "stop_reason": None, "prompt_logprobs": None}],
                "usage": self._usage(live)}

    def _chunk(self, live: Live, word: Optional[str], finish: Optional[str], role: bool = False) -> bytes:
        base = {"id": f"{'chatcmpl' if live.req.chat else 'cmpl'}-{live.rid}",
                "object": "chat.completion.chunk" if live.req.chat else "text_completion",
                "created": live.created, "model": live.req.model}
        if live.req.chat:
            delta = {"role": "assistant", "content": ""} if role else {"content": word}
            base["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        else:
            base["choices"] = [{"index": 0, "text": word, "logprobs": None, "finish_reason": finish,
                                "stop_reason": None}]
        return b"data: " + json.dumps(base, separators=(",", ":")).encode() + b"\n\n"

    def _chunk_template(self, live: Live) -> Tuple[bytes, bytes]:
        """The bytes of a mid-stream token chunk before and after its JSON-encoded text: ``pre +
        _word_json(live, k) + post == _chunk(live, _word(live, k), None)``, without a dict built and
        encoded per token (the loop writes every stream's tokens of a step one after the other)."""
        mark = json.dumps("\x00").encode()
        pre, _, post = self._chunk(live, "\x00", None).rpartition(mark)
        return pre, post

    async def _stream(self, request, live: Live):
        from aiohttp import web

        resp = None
        pre, post = self._chunk_template(live)
        while True:
            items = await self._next_items(live)
            if resp is None:
                if items[0] == _ERROR:
                    return self._error(live.error)
                resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                               "Cache-Control": "no-cache"})
                if live.x_request_id:
                    resp.headers["x-request-id"] = live.x_request_id
                await resp.prepare(request)
            parts = []
            for it in items:
                if it == _ACCEPTED:
                    continue
                if it == _ERROR:
                    err = live.error.body()
                    parts.append(b"data: " + json.dumps(err).encode() + b"\n\n")
                    await resp.write(b"".join(parts))
                    return resp
                if it == _DONE:
                    if live.req.include_usage:
                        u = {"id": f"{'chatcmpl' if live.req.chat else 'cmpl'}-{live.rid}",
                             "object": "chat.completion.chunk" if live.req.chat else "text_completion",
                             "created": live.created, "model": live.req.model, "choices": [],
                             "usage": self._usage(live)}
                        parts.append(b"data: " + json.dumps(u, separators=(",", ":")).encode() + b"\n\n")
                    parts.append(b"data: [DONE]\n\n")
                    live.delivered = True
                    await resp.write(b"".join(parts))
                    await resp.write_eof()
                    return resp
                if it == 0 and live.req.chat:
                    parts.append(self._chunk(live, None, None, role=True))
                if live.finished and it == live.out_tokens - 1:
                    parts.append(self._chunk(live, self._word(live, it), live.finish_reason))
                else:
                    parts += (pre, self._word_json(live, it), post)
            if parts:
                await resp.write(b"".join(parts))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def add_subparser(subparsers):
    """Register ``serve`` on a ``blis`` subparsers object; ``ns._run(ns)`` runs it."""
    from blis.cli import _add, _float, _int, _sim_flags

    p = subparsers.add_parser("serve", help="serve simulated vLLM instances over a real OpenAI-compatible HTTP API",
                              description="Start N simulated vLLM instances, each an OpenAI-compatible HTTP server "
                                          "whose timing follows the simulation in real time.")
    _sim_flags(p)
    g = p.add_argument_group("serving")
    _add(g, "--host", str, "127.0.0.1", "address to listen on")
    _add(g, "--port", _int, 8000, "first port: instance k listens on port+k (router: port, instances port+1..)"
                                  "; 0 = free ports")
    _add(g, "--router", bool, False, "one port in front of the instances, routing with --routing-policy")
    _add(g, "--speed", _float, 1.0, "simulated time runs this many times faster than wall time")
    _add(g, "--served-model-name", str, "", "model name(s) clients send, comma-separated (default: --model)")
    _add(g, "--default-max-tokens", _int, 256, "output tokens of a request without max_tokens")
    _add(g, "--results-path", str, "", "on shutdown: per-request simulated results JSON (replay format + "
                                       "x_request_id)")
    p.set_defaults(_run=run)
    return p


def _validate(ns):
    from blis.cli import _require

    _require(ns.port >= 0 and ns.port + ns.num_instances + (1 if ns.router else 0) - 1 <= 65535, "--port",
             "in [0, 65535] with room for every instance", ns.port)
    _require(math.isfinite(ns.speed) and ns.speed > 0, "--speed", "finite and > 0", ns.speed)
    _require(ns.default_max_tokens >= 1, "--default-max-tokens", ">= 1", ns.default_max_tokens)
    if ns.flow_control and not ns.router:
        raise ConfigError("--flow-control: needs --router (the gateway queue sits in front of the router), got "
                          "--router false")


def build_live(ns):
    """The :class:`LiveSimulation` a validated ``blis serve`` command line describes."""
    from blis.cli import build_gateway, engine_config, resolve_latency
    from blis.engine import Simulation
    from blis.policies import ADMISSION_POLICIES, make_admit_fn, make_route_fn
    from blis.requests import RequestTable
    from blis.routing import DEFAULT_SCORERS, ROUTING_POLICIES

    lat, blocks, mml = resolve_latency(ns)
    cfg = engine_config(ns, blocks, mml, ns.horizon)
    B = ns.block_size_in_tokens
    cfg.max_request_tokens = mml if mml > 0 else blocks * B
    served = [s.strip() for s in (ns.served_model_name or ns.model).split(",") if s.strip()]
    table = RequestTable.empty(0)
    if ns.router:
        route_fn = make_route_fn(ROUTING_POLICIES.get(ns.routing_policy), ns._scorers or DEFAULT_SCORERS, cfg)
        admit_fn = make_admit_fn(ADMISSION_POLICIES.get(ns.admission_policy))
        sim = Simulation(table, cfg, lat, route_fn=route_fn, admit_fn=admit_fn, gateway=build_gateway(ns, cfg))
        live = LiveSimulation(sim, ns.speed, served, pinned=False)
    else:
        holder = {}
        sim = Simulation(table, cfg, lat, route_fn=lambda s, r: holder["live"].route(s, r))
        live = LiveSimulation(sim, ns.speed, served, pinned=True)
        holder["live"] = live
    return live, served, mml


async def serve_async(ns, live: LiveSimulation, served: List[str], mml: int, ready=None) -> None:
    from aiohttp import web

    server = Server(live, served, mml, ns.default_max_tokens, ns.router)
    n = live.sim.ins.shape[0]
    runners = []
    listeners = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
    driver = None
    try:
        apps = ([(-1, "router")] if ns.router else []) + [(i, f"instance {i}") for i in range(n)]
        for k, (inst, name) in enumerate(apps):
            runner = web.AppRunner(server.make_app(inst), handler_cancellation=True, shutdown_timeout=0.5,
                                   access_log=None)
            await runner.setup()
            runners.append(runner)
            port = ns.port + k if ns.port else 0
            protocol = runner.server  # aiohttp's protocol factory, each connection wrapped in Received
            try:
                listener = await loop.create_server(lambda p=protocol: Received(p(), server.received), ns.host,
                                                    port, reuse_address=True, backlog=128)
            except OSError as e:
                raise ConfigError(f"--port: {name} cannot listen on {ns.host}:{port} ({e.strerror or e})")
            listeners.append(listener)
            actual = listener.sockets[0].getsockname()[1]
            url = f"http://{ns.host}:{actual}"
            if inst < 0:
                server.router_url = url
            sys.stderr.write(f"blis serve: {name} listening on {url}\n")
        sys.stderr.write(f"blis serve: ready ({n} simulated instance(s), model {served[0]}, speed {ns.speed:g})\n")
        sys.stderr.flush()
        live._t0 = time.perf_counter()
        driver = asyncio.ensure_future(live.drive())
        if ready is not None:
            ready()
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([driver, waiter], return_when=asyncio.FIRST_COMPLETED)
        if driver in done:
            driver.result()  # re-raise a driver failure
        waiter.cancel()
    finally:
        live.stopping = True
        live.wake()
        for listener in listeners:
            listener.close()
        for r in runners:
            await r.cleanup()
        if driver is not None:
            try:
                await asyncio.wait_for(driver, 2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass


def write_outputs(ns, live: LiveSimulation):
    """Finish the simulation and write the requested outputs; returns the results."""
    from blis.cli import _trace_export, atomic_write_text, write_parquet
    from blis.gojson import marshal_indent

    res = live.sim.finish()
    text = res.stdout_text()
    sys.stdout.write(text)
    sys.stdout.flush()
    if ns.results_path:
        rows = res.results_rows()
        for row in rows:
            x = live.xids.get(row["request_id"])
            if x:
                row["x_request_id"] = x
        atomic_write_text(ns.results_path, marshal_indent(rows))
    if ns.metrics_path:
        atomic_write_text(ns.metrics_path, marshal_indent(res.metrics_file()))
    if ns.results_parquet:
        write_parquet(res.to_arrow(), ns.results_parquet)
    if ns.trace_output:
        _trace_export(ns, live.sim.table, res, "replayed")
    return res


def run(ns) -> int:
    """``blis serve``: returns the exit status (errors: one line on stderr)."""
    from blis.cli import validate_common

    try:
        validate_common(ns)
        _validate(ns)
        if ns.trace_level != "none":
            raise ConfigError(f"--trace-level: not supported by blis serve, got {ns.trace_level!r}; valid: none")
        live, served, mml = build_live(ns)
        # compile the engine before listening (first requests must not wait for numba)
        live.sim.advance_to(0)
        try:
            asyncio.run(serve_async(ns, live, served, mml))
        except KeyboardInterrupt:  # pragma: no cover - signal handlers normally catch it
            pass
        sys.stderr.write(f"blis serve: stopped; {live.next_id} request(s) received, {live.aborted} aborted by "
                         "their clients\n")
        # a second signal (a process-group Ctrl-C, a supervisor's follow-up) must not cut the outputs short
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            write_outputs(ns, live)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
    except BlisError as e:
        sys.stderr.write(f"blis serve: error: {e}\n")
        return 1
    return 0
