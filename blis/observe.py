"""``blis observe``: drive a real OpenAI-compatible server and record a TraceV2 trace.

spec/04-workload-io.md §6.  The workload comes from the same sources as
``blis run`` (distribution flags, a preset, a workload-spec YAML) or from a
TraceV2 trace to re-drive (``--input-trace-header/--input-trace-data``, a blis
extension).  Requests are sent at their arrival times (open loop, at most
``--max-concurrency`` in flight) or by ``--concurrency`` virtual users (closed
loop, each sending its next request ``--think-time-ms`` after the previous one
finished).

Every request is a ``POST /v1/completions`` (``prompt``) or
``/v1/chat/completions`` (``messages``) with ``max_tokens`` = the workload's
output length, ``min_tokens`` = the same and ``ignore_eos: true`` (so a vLLM
server produces exactly that many tokens), ``stream_options.include_usage``
when streaming, and vLLM's ``priority`` for SLO classes.  Per request the trace
records the send time, the first and last chunk times (Unix µs), the chunk
count, the server's token counts (``usage``), the status (``ok``, ``error``,
``timeout`` or ``incomplete``), the error message and the finish reason.

The trace is written incrementally: the header YAML first, then the CSV header
row, then one row per request, appended and flushed as each request finishes
(in completion order), so an interrupted run keeps every completed record.  At
the end both files are rewritten atomically with BLIS's optional-column rules.
``--record-itl`` also writes every chunk time to
``<trace-data minus .csv>.itl.csv`` (``request_id,chunk_index,timestamp_us``,
appended per request; a ``.parquet`` ``--itl-output`` is written at the end).

SIGINT/SIGTERM stop dispatching and wait for the requests in flight; a second
signal cancels them (recorded as ``incomplete``).

Differences from BLIS: ``send_time_us`` is stamped when the request body is
written (after connection set-up and this client's request building; BLIS
stamps just before the HTTP call), so TTFT measures the server, not Python;
prompts are built from this module's own 100-word vocabulary and the requests'
procedural content (not BLIS's random token ids); a stream that ends without
``[DONE]`` is ``incomplete`` (BLIS: ``ok``); skipped malformed SSE chunks are
noted in ``error_message`` of an otherwise ``ok`` record; ``ignore_eos`` is
sent besides ``min_tokens``; ``--timeout`` accepts fractions of a second;
closed-loop (``--concurrency``) lengths are drawn from the distribution flags
as in rate mode.  Not supported yet: session follow-ups (multi-turn specs), the KV-metrics
scrape, saturation detectors, in-process goodput and ``--think-time-dist``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from blis.errors import BlisError, ConfigError

log = logging.getLogger("blis.observe")

INT64_MAX = 9223372036854775807
#: max_tokens sent when a request has no output length
DEFAULT_MAX_OUTPUT_TOKENS = 2048
#: max_tokens sent by completions requests with --unconstrained-output
UNCONSTRAINED_MAX_TOKENS = 2147483647
#: default prefix length of a prefix group without one
DEFAULT_PREFIX_LENGTH = 50
#: SLO class base priorities (higher = more urgent); vLLM's priority is max - class
SLO_PRIORITIES = {"critical": 4, "standard": 3, "batch": -1, "sheddable": -2, "background": -3}
DEFAULT_SLO_PRIORITY = 3
STATUSES = ("ok", "error", "timeout", "incomplete")

#: the prompt vocabulary: 100 short, common English words (one BPE token each
#: for most tokenizers), so a prompt of n words is close to n tokens
VOCABULARY = (
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child",
    "world", "school", "state", "family", "student", "group", "country", "problem", "hand", "part",
    "place", "case", "week", "company", "system", "program", "question", "work", "number", "night",
    "point", "home", "water", "room", "mother", "area", "money", "story", "fact", "month",
    "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side",
    "kind", "head", "house", "service", "friend", "father", "power", "hour", "game", "line",
    "end", "member", "law", "car", "city", "name", "team", "minute", "idea", "kid",
    "body", "back", "parent", "face", "others", "level", "office", "door", "health", "person",
    "art", "war", "history", "party", "result", "change", "morning", "reason", "research", "girl",
    "guy", "moment", "air", "teacher", "force", "order", "river", "music", "market", "sense",
)
WARM_PROMPT = "warm " * 256

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def now_us() -> int:
    """Unix time in microseconds."""
    return time.time_ns() // 1000


def _go_round(x: float) -> int:
    """``math.Round`` for x >= 0 (half away from zero)."""
    return int(math.floor(x + 0.5))


def vllm_priority(slo_class: str) -> int:
    """vLLM ``priority`` for an SLO class (0 = most urgent): max class priority minus the class's."""
    top = max(max(SLO_PRIORITIES.values()), DEFAULT_SLO_PRIORITY)
    return top - SLO_PRIORITIES.get(slo_class, DEFAULT_SLO_PRIORITY)


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------
def _mix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def content_words(seed: int, n: int) -> List[str]:
    """``n`` vocabulary words drawn deterministically from a request's content seed."""
    if n <= 0:
        return []
    k = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(int(seed) & _M64) + k * np.uint64(_GOLDEN)
    idx = (_mix64(z) % np.uint64(len(VOCABULARY))).astype(np.int64)
    return [VOCABULARY[i] for i in idx.tolist()]


def prefix_text(group: str, seed: int, length: int, tokens_per_word: float) -> str:
    """The fixed prompt prefix of a prefix group: ``round(length / tpw)`` words (at least 1)
    drawn from a Go ``math/rand`` source seeded with FNV-1a(seed little-endian ‖ group)."""
    from blis.rng import GoRand, fnv1a64, to_int64

    tpw = tokens_per_word if tokens_per_word > 0 else 1.0
    if length <= 0:
        length = DEFAULT_PREFIX_LENGTH
    n = max(1, _go_round(length / tpw))
    h = fnv1a64((int(seed) & _M64).to_bytes(8, "little") + group.encode("utf-8"))
    rng = GoRand(to_int64(h))
    return " ".join(VOCABULARY[rng.intn(len(VOCABULARY))] for _ in range(n)) + " "


def build_prompt(input_len: int, prefix_len: int, prefix: Optional[str], content_seed: int,
                 tokens_per_word: float) -> str:
    """The prompt text of one request, sized to about ``input_len`` server tokens.

    With a prefix-group string: the prefix followed by ``round(max(1, input - prefix) / tpw)``
    words of the request's own content; otherwise ``round(input / tpw)`` words (at least 1).
    Every word is followed by a space.
    """
    tpw = tokens_per_word if tokens_per_word > 0 else 1.0
    if prefix is not None:
        suffix = max(1, input_len - prefix_len)
        n = max(1, _go_round(suffix / tpw))
        return prefix + "".join(w + " " for w in content_words(content_seed, n))
    n = max(1, _go_round(input_len / tpw))
    return "".join(w + " " for w in content_words(content_seed, n))


# ---------------------------------------------------------------------------
# Requests and records
# ---------------------------------------------------------------------------
@dataclass
class ObserveRequest:
    """One request to send, taken from a workload row."""

    arrival_us: int
    input_len: int
    prefix_len: int = 0
    prefix_group: str = ""
    output_len: int = 0
    client_id: str = ""
    tenant_id: str = ""
    slo_class: str = ""
    model: str = ""
    session_id: str = ""
    round_index: int = 0
    streaming: bool = False
    deadline_us: int = 0
    slo_target_us: int = 0
    content_seed: int = 0


def requests_from_table(table) -> List[ObserveRequest]:
    """The rows of a :class:`blis.requests.RequestTable` as :class:`ObserveRequest` s, in table order."""
    c = table.cols
    n = len(table)

    def labels(col):
        if col not in c:
            return [""] * n
        names = table.names.get(col, [""])
        return [names[i] for i in c[col].tolist()]

    def ints(col):
        return c[col].astype(np.int64).tolist() if col in c else [0] * n

    groups, slo, tenant, client = labels("prefix_group"), labels("slo_class"), labels("tenant"), labels("client")
    model, session = labels("model"), labels("session")
    arr, inl, pre, outl = ints("arrival_us"), ints("input_len"), ints("prefix_len"), ints("max_output_len")
    dead, rnd, slot = ints("deadline_us"), ints("round_index"), ints("slo_target_us")
    seeds = c["content_seed"].tolist() if "content_seed" in c else list(range(n))
    stream = c["streaming"].tolist() if "streaming" in c else [False] * n
    return [ObserveRequest(arrival_us=arr[i], input_len=inl[i], prefix_len=pre[i], prefix_group=groups[i],
                           output_len=outl[i], client_id=client[i], tenant_id=tenant[i], slo_class=slo[i],
                           model=model[i], session_id=session[i], round_index=rnd[i], streaming=bool(stream[i]),
                           deadline_us=dead[i], slo_target_us=slot[i], content_seed=int(seeds[i]))
            for i in range(n)]


@dataclass
class RequestRecord:
    """What one HTTP exchange produced (times are Unix µs; 0 = not reached)."""

    request_id: int
    status: str = "ok"
    error_message: str = ""
    x_request_id: str = ""
    vllm_priority: int = 0
    send_time_us: int = 0
    first_chunk_time_us: int = 0
    last_chunk_time_us: int = 0
    num_chunks: int = 0
    output_tokens: int = 0
    server_input_tokens: int = 0
    finish_reason: str = ""
    chunk_times_us: List[int] = field(default_factory=list)


# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------
def _describe(e: BaseException) -> str:
    s = str(e)
    return f"{type(e).__name__}: {s}" if s else type(e).__name__


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, (asyncio.TimeoutError, TimeoutError))


def _join(first: str, rest: str) -> str:
    return f"{first}; {rest}" if rest else first


def _usage_int(v) -> Optional[int]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return int(v)


async def _on_request_sent(session, ctx, params) -> None:
    rec = getattr(ctx, "trace_request_ctx", None)
    if isinstance(rec, RequestRecord):
        rec.send_time_us = now_us()


def request_trace_config():
    """aiohttp tracing that stamps ``send_time_us`` as the request goes out.

    The headers stamp it first; each body chunk stamps it again just before the chunk is
    written (aiohttp sends the headers together with the first body bytes, and on Python
    < 3.12 from a task of its own that runs a loop iteration or more after the headers are
    built).  The send time is then the moment the request's last bytes leave the client,
    after any connection set-up and the client's own request building, so TTFT measures the
    server (and the network), not this client's Python overhead.
    """
    import aiohttp

    tc = aiohttp.TraceConfig()
    tc.on_request_headers_sent.append(_on_request_sent)
    tc.on_request_chunk_sent.append(_on_request_sent)
    return tc


class OpenAIClient:
    """Sends one workload request to an OpenAI-compatible server (aiohttp) and fills a :class:`RequestRecord`."""

    def __init__(self, session, base_url: str, model: str, api_format: str = "completions", api_key: str = "",
                 unconstrained: bool = False, ignore_eos: bool = True, max_error_body: int = 4096):
        if api_format not in ("completions", "chat"):
            raise ConfigError(f"--api-format must be 'completions' or 'chat', got {api_format!r}")
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_format = api_format
        self.api_key = api_key
        self.unconstrained = unconstrained
        self.ignore_eos = ignore_eos
        self.max_error_body = max_error_body

    @property
    def endpoint(self) -> str:
        return self.base_url + ("/v1/chat/completions" if self.api_format == "chat" else "/v1/completions")

    def body(self, prompt: str, max_output: int, streaming: bool, slo_class: str = "",
             min_tokens: Optional[int] = None) -> Tuple[Dict[str, Any], int]:
        """The JSON body and the vLLM priority sent (0 when no SLO class)."""
        b: Dict[str, Any] = {"model": self.model, "stream": bool(streaming)}
        if not self.unconstrained:
            if max_output < 0:
                log.warning("request max output %d is negative, using %d", max_output, DEFAULT_MAX_OUTPUT_TOKENS)
            b["max_tokens"] = max_output if max_output > 0 else DEFAULT_MAX_OUTPUT_TOKENS
        elif self.api_format == "completions":
            b["max_tokens"] = UNCONSTRAINED_MAX_TOKENS
        if min_tokens is None:
            min_tokens = 0 if self.unconstrained else max_output
        if min_tokens > 0:
            b["min_tokens"] = min_tokens
            if self.ignore_eos:
                b["ignore_eos"] = True
        if self.api_format == "chat":
            b["messages"] = [{"role": "user", "content": prompt}]
        else:
            b["prompt"] = prompt
        if streaming:
            b["stream_options"] = {"include_usage": True}
        pri = 0
        if slo_class:
            pri = vllm_priority(slo_class)
            b["priority"] = pri
        return b, pri

    async def send(self, rec: RequestRecord, prompt: str, max_output: int, streaming: bool, *,
                   slo_class: str = "", tenant: str = "", slo_target_us: int = 0,
                   min_tokens: Optional[int] = None, keep_chunks: bool = False) -> RequestRecord:
        """Send one request and fill ``rec`` (never raises for HTTP, transport or JSON problems)."""
        import aiohttp

        body, rec.vllm_priority = self.body(prompt, max_output, streaming, slo_class, min_tokens)
        rec.x_request_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json", "x-request-id": rec.x_request_id}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        if tenant:
            headers["x-gateway-inference-fairness-id"] = tenant
        if slo_class:
            headers["x-gateway-inference-objective"] = slo_class
        if slo_target_us > 0:
            headers["x-slo-ttft-ms"] = str((slo_target_us + 999) // 1000)
        data = json.dumps(body).encode()
        rec.send_time_us = now_us()     # refined to the moment the request is written (see request_trace_config)
        try:
            async with self.session.post(self.endpoint, data=data, headers=headers, trace_request_ctx=rec) as resp:
                if resp.status != 200:
                    try:
                        raw = await resp.content.read(self.max_error_body)
                        rec.status = "error"
                        rec.error_message = f"HTTP {resp.status}: {raw.decode('utf-8', 'replace')}"
                    except Exception as e:  # body read failed
                        rec.status = "timeout" if _is_timeout(e) else "error"
                        what = "timed out" if _is_timeout(e) else "failed"
                        rec.error_message = f"HTTP {resp.status}: (body read {what}: {_describe(e)})"
                    return rec
                if streaming:
                    await self._read_stream(resp, rec, keep_chunks)
                else:
                    await self._read_body(resp, rec)
        except aiohttp.ClientPayloadError as e:
            rec.status = "error"
            rec.error_message = _join(f"streaming error: {_describe(e)}", rec.error_message)
        except Exception as e:
            mid = " (mid-stream)" if rec.num_chunks else ""
            if _is_timeout(e):
                rec.status = "timeout"
                rec.error_message = _join(f"HTTP timeout{mid}: {_describe(e)}", rec.error_message)
            else:
                rec.status = "error"
                rec.error_message = _join(f"HTTP error{mid}: {_describe(e)}", rec.error_message)
        return rec

    async def _read_body(self, resp, rec: RequestRecord) -> None:
        parts = []
        first = 0
        while True:
            b = await resp.content.readany()
            if not b:
                break
            if not first:
                first = now_us()
            parts.append(b)
        last = now_us()
        rec.first_chunk_time_us = first or last
        rec.last_chunk_time_us = last
        rec.num_chunks = 1
        try:
            obj = json.loads(b"".join(parts))
        except ValueError as e:
            rec.status = "error"
            rec.error_message = f"JSON parse error: {e}"
            return
        if not isinstance(obj, dict):
            rec.status = "error"
            rec.error_message = f"JSON parse error: response is not an object: {str(obj)[:200]}"
            return
        self._apply_usage(rec, obj.get("usage"))
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            fr = choices[0].get("finish_reason")
            if isinstance(fr, str):
                rec.finish_reason = fr

    @staticmethod
    def _apply_usage(rec: RequestRecord, usage) -> None:
        if not isinstance(usage, dict):
            return
        ct = _usage_int(usage.get("completion_tokens"))
        if ct is not None:
            rec.output_tokens = ct
        pt = _usage_int(usage.get("prompt_tokens"))
        if pt is not None:
            rec.server_input_tokens = pt

    async def _read_stream(self, resp, rec: RequestRecord, keep_chunks: bool) -> None:
        """Read SSE ``data:`` lines until ``[DONE]``; every data line is one chunk, timestamped on arrival.

        ``rec`` is updated chunk by chunk, so a stream that fails midway keeps what it got.
        """
        usage = None
        malformed = 0
        malformed_msg = ""
        done = False
        times = rec.chunk_times_us
        try:
            async for raw in resp.content:
                if not raw.startswith(b"data: "):
                    continue
                data = raw[6:].rstrip(b"\r\n")
                if data == b"[DONE]":
                    done = True
                    break
                t = now_us()
                rec.num_chunks += 1
                if rec.num_chunks == 1:
                    rec.first_chunk_time_us = t
                rec.last_chunk_time_us = t
                if keep_chunks:
                    times.append(t)
                try:
                    chunk = json.loads(data)
                except ValueError as e:
                    malformed += 1
                    if not malformed_msg:
                        malformed_msg = f"{e}"
                    continue
                if not isinstance(chunk, dict):
                    continue
                u = chunk.get("usage")
                if isinstance(u, dict):
                    usage = u
                choices = chunk.get("choices")
                if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                    fr = choices[0].get("finish_reason")
                    if isinstance(fr, str) and fr:
                        rec.finish_reason = fr
        finally:
            self._apply_usage(rec, usage)
            if malformed:
                rec.error_message = f"skipped {malformed} malformed SSE chunk(s): {malformed_msg}"
        if usage is None and rec.num_chunks > 0:
            log.warning("observe: request %d: %d streamed chunks but no usage (server ignores stream_options?)",
                        rec.request_id, rec.num_chunks)
        if not done:
            rec.status = "incomplete"
            msg = "stream ended before data: [DONE]"
            rec.error_message = f"{msg}; {rec.error_message}" if rec.error_message else msg


# ---------------------------------------------------------------------------
# Trace recording (incremental)
# ---------------------------------------------------------------------------
def _trace_columns(requests: Sequence[ObserveRequest]) -> List[str]:
    """The CSV columns of an observe trace (mode real): vllm_priority when a request has an
    SLO class, slo_target_us when one is > 0, x_request_id always."""
    from blis.workload.tracev2 import BASE_COLUMNS

    pri = any(r.slo_class for r in requests)
    slo = any(r.slo_target_us > 0 for r in requests)
    cols: List[str] = []
    for i, name in enumerate(BASE_COLUMNS):
        cols.append(name)
        if i == 3 and pri:
            cols.append("vllm_priority")
        if name == "deadline_us" and slo:
            cols.append("slo_target_us")
    cols.append("x_request_id")
    return cols


def _format_field(name: str, v) -> str:
    from blis.workload.tracev2 import RECORD_DTYPES, _csv_field, go_format_float_f

    dt = RECORD_DTYPES[name]
    if v is None:
        v = "" if dt is object else 0
    if dt is object:
        return _csv_field(str(v))
    if dt is np.bool_:
        return "true" if v else "false"
    if dt is np.float64:
        return go_format_float_f(float(v))
    return str(int(v))


def _trace_record(req: ObserveRequest, rec: RequestRecord, arrival_us: int) -> Dict[str, Any]:
    inp = req.input_len - req.prefix_len
    plen = req.prefix_len
    if inp < 0:
        inp, plen = req.input_len, 0
    return {
        "request_id": rec.request_id, "client_id": req.client_id, "tenant_id": req.tenant_id,
        "slo_class": req.slo_class, "vllm_priority": rec.vllm_priority, "session_id": req.session_id,
        "round_index": req.round_index, "prefix_group": req.prefix_group, "prefix_length": plen,
        "streaming": req.streaming, "input_tokens": inp, "output_tokens": rec.output_tokens,
        "model": req.model, "deadline_us": req.deadline_us, "slo_target_us": req.slo_target_us,
        "server_input_tokens": rec.server_input_tokens, "arrival_time_us": arrival_us,
        "send_time_us": rec.send_time_us, "first_chunk_time_us": rec.first_chunk_time_us,
        "last_chunk_time_us": rec.last_chunk_time_us, "num_chunks": rec.num_chunks, "status": rec.status,
        "error_message": " ".join(rec.error_message.split("\n")).strip(), "finish_reason": rec.finish_reason,
        "x_request_id": rec.x_request_id,
    }


_RECORD_KEYS = frozenset(_trace_record(ObserveRequest(0, 0), RequestRecord(0), 0))


class TraceRecorder:
    """Collects trace records and, when paths are given, appends each to the TraceV2 files at once.

    ``open()`` writes the header YAML and the CSV header row; ``add()`` appends one
    row (and its chunk times to the ITL CSV) and flushes; ``finalize()`` rewrites
    both files atomically as BLIS writes them and returns the :class:`TraceV2`.
    """

    def __init__(self, header: Dict[str, Any], columns: List[str], header_path=None, data_path=None,
                 itl_path=None, record_itl: bool = False):
        self.header = header
        self.columns = columns
        self.header_path = Path(header_path) if header_path else None
        self.data_path = Path(data_path) if data_path else None
        self.itl_path = Path(itl_path) if itl_path else None
        self.record_itl = record_itl
        self.records: List[Dict[str, Any]] = []
        self.itl: Dict[int, List[int]] = {}
        self._data = None
        self._itl = None

    def open(self) -> "TraceRecorder":
        from blis.workload.tracev2 import _atomic_write, _csv_field, header_to_yaml

        if self.header_path is not None:
            _atomic_write(self.header_path, header_to_yaml(self.header))
        if self.data_path is not None:
            self._data = open(self.data_path, "w", encoding="utf-8", newline="")
            self._data.write(",".join(_csv_field(c) for c in self.columns) + "\n")
            self._data.flush()
        if self.record_itl and self.itl_path is not None and self.itl_path.suffix != ".parquet":
            self._itl = open(self.itl_path, "w", encoding="utf-8", newline="")
            self._itl.write("request_id,chunk_index,timestamp_us\n")
            self._itl.flush()
        return self

    def add(self, record: Dict[str, Any], chunk_times: Optional[List[int]] = None) -> None:
        self.records.append(record)
        if self._data is not None:
            self._data.write(",".join(_format_field(c, record.get(c)) for c in self.columns) + "\n")
            self._data.flush()
        if self.record_itl and chunk_times and record["status"] == "ok":
            rid = int(record["request_id"])
            self.itl[rid] = list(chunk_times)
            if self._itl is not None:
                self._itl.write("".join(f"{rid},{i},{t}\n" for i, t in enumerate(chunk_times)))
                self._itl.flush()

    def close(self) -> None:
        for f in (self._data, self._itl):
            if f is not None:
                f.close()
        self._data = self._itl = None

    def trace(self):
        from blis.workload.tracev2 import RECORD_FIELDS, TraceV2

        cols = {}
        for name, dtype, _, _ in RECORD_FIELDS:
            if self.records and name in _RECORD_KEYS:
                vals = [r[name] for r in self.records]
                if dtype is object:
                    arr = np.empty(len(vals), dtype=object)
                    arr[:] = vals
                    cols[name] = arr
                else:
                    cols[name] = np.asarray(vals, dtype=dtype)
        if not self.records:
            cols["request_id"] = np.zeros(0, np.int64)
        return TraceV2(self.header, cols)

    def finalize(self, header: Optional[Dict[str, Any]] = None):
        """Close the incremental files and rewrite them atomically (BLIS's layout)."""
        from blis.workload.tracev2 import write_tracev2

        self.close()
        if header is not None:
            self.header = header
        tr = self.trace()
        if self.header_path is not None and self.data_path is not None:
            write_tracev2(tr, self.header_path, self.data_path)
        if self.record_itl and self.itl_path is not None and self.itl_path.suffix == ".parquet":
            write_itl_parquet(self.itl, self.itl_path)
        return tr


def write_itl_parquet(itl: Dict[int, List[int]], path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rid, idx, ts = [], [], []
    for r, times in itl.items():
        rid.extend([r] * len(times))
        idx.extend(range(len(times)))
        ts.extend(times)
    table = pa.table({"request_id": pa.array(rid, pa.int64()), "chunk_index": pa.array(idx, pa.int64()),
                      "timestamp_us": pa.array(ts, pa.int64())})
    pq.write_table(table, str(path))


# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------
@dataclass
class ObserveConfig:
    """How to drive the server (the non-workload flags of ``blis observe``)."""

    server_url: str
    model: str
    api_format: str = "completions"
    api_key: str = ""
    server_type: str = "vllm"
    max_concurrency: int = 256
    warmup_requests: int = 0
    no_streaming: bool = False
    force_streaming: bool = False
    record_itl: bool = False
    timeout_s: float = 300.0
    unconstrained_output: bool = False
    ignore_eos: bool = True
    rtt_ms: float = 0.0
    tokens_per_word: float = 0.0
    concurrency: int = 0
    think_time_ms: int = 0
    horizon_us: int = INT64_MAX
    prewarm_s: float = 0.0
    seed: int = 42

    def validate(self) -> None:
        if not self.server_url:
            raise ConfigError("--server-url is required")
        if not self.model:
            raise ConfigError("--model is required")
        if self.api_format not in ("completions", "chat"):
            raise ConfigError(f"--api-format must be 'completions' or 'chat', got {self.api_format!r}")
        if self.max_concurrency <= 0:
            raise ConfigError(f"--max-concurrency must be > 0, got {self.max_concurrency}")
        if self.warmup_requests < 0:
            raise ConfigError(f"--warmup-requests must be >= 0, got {self.warmup_requests}")
        if not (math.isfinite(self.timeout_s) and 0 < self.timeout_s <= 86400):
            raise ConfigError(f"--timeout must be between 1 and 86400 seconds (1 day), got {self.timeout_s}")
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ConfigError(f"--rtt-ms must be a finite value >= 0, got {self.rtt_ms}")
        if self.record_itl and self.no_streaming:
            raise ConfigError("--record-itl and --no-streaming are mutually exclusive; "
                              "ITL recording requires streaming responses")
        if self.concurrency < 0:
            raise ConfigError(f"--concurrency must be >= 0, got {self.concurrency}")
        if self.think_time_ms < 0:
            raise ConfigError(f"--think-time-ms must be >= 0, got {self.think_time_ms}")
        if self.prewarm_s < 0:
            raise ConfigError(f"--prewarm-duration must be >= 0, got {self.prewarm_s}")


@dataclass
class ObserveResult:
    trace: Any
    itl: Dict[int, List[int]]
    wall_s: float
    interrupted: bool
    dispatched: int
    tokens_per_word: float


def observe_header(cfg: ObserveConfig, *, workload_seed: Optional[int] = None, workload_spec: str = "",
                   goodput_slo_targets: Optional[Dict[str, Dict[str, float]]] = None) -> Dict[str, Any]:
    """The trace header of an observe run (mode ``real``, time unit ``us``)."""
    from blis.workload.tracev2 import make_header

    return make_header(
        "real", time_unit="us",
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        warm_up_requests=cfg.warmup_requests, workload_seed=workload_seed, workload_spec=workload_spec,
        server={"type": cfg.server_type, "model": cfg.model},
        network={"measured_rtt_ms": float(cfg.rtt_ms)},
        goodput_slo_targets=goodput_slo_targets or None)


class _Observer:
    def __init__(self, cfg: ObserveConfig, requests: Sequence[ObserveRequest], recorder: TraceRecorder,
                 stop: asyncio.Event, force: asyncio.Event, on_record=None, progress=None):
        self.cfg = cfg
        self.requests = requests
        self.recorder = recorder
        self.stop = stop
        self.force = force
        self.on_record = on_record
        self.progress = progress
        self.inflight: set = set()
        self.errors: List[BaseException] = []
        self.dispatched = 0
        self.interrupted = False
        self.prefixes: Dict[str, Tuple[str, int]] = {}
        self.tpw = 1.0
        self.client: Optional[OpenAIClient] = None
        self.sem: Optional[asyncio.Semaphore] = None
        self.t0 = 0.0

    # -- helpers -----------------------------------------------------------
    async def _wait_stop(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; True when stopped meanwhile."""
        if self.stop.is_set():
            return True
        if delay <= 0:
            return False
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=delay)
            return True
        except asyncio.TimeoutError:
            return False

    async def _acquire(self) -> bool:
        """Take a concurrency slot; False when stopped first."""
        if not self.sem.locked():
            await self.sem.acquire()
            return True
        acq = asyncio.ensure_future(self.sem.acquire())
        stop = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({acq, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if acq.done() and not acq.cancelled():
            if self.stop.is_set():
                self.sem.release()
                return False
            return True
        acq.cancel()
        return False

    def _prompt(self, req: ObserveRequest) -> str:
        pre = self.prefixes.get(req.prefix_group) if req.prefix_group else None
        if pre is not None:
            return build_prompt(req.input_len, pre[1], pre[0], req.content_seed, self.tpw)
        return build_prompt(req.input_len, 0, None, req.content_seed, self.tpw)

    def _streaming(self, req: ObserveRequest) -> bool:
        cfg = self.cfg
        return (req.streaming or cfg.force_streaming or cfg.record_itl) and not cfg.no_streaming

    # -- one request -------------------------------------------------------
    async def _run_one(self, req: ObserveRequest, idx: int, arrival_us: int) -> None:
        rec = RequestRecord(request_id=idx)
        streaming = self._streaming(req)
        keep = self.cfg.record_itl
        try:
            try:
                await self.client.send(rec, self._prompt(req), req.output_len, streaming,
                                       slo_class=req.slo_class, tenant=req.tenant_id,
                                       slo_target_us=req.slo_target_us,
                                       min_tokens=0 if self.cfg.unconstrained_output else req.output_len,
                                       keep_chunks=keep)
            except asyncio.CancelledError:
                rec.status = "incomplete"
                rec.error_message = "cancelled: observe was interrupted before the response finished"
                self._record(req, rec, idx, arrival_us, streaming)
                raise
            self._record(req, rec, idx, arrival_us, streaming)
        finally:
            self.sem.release()

    def _record(self, req, rec, idx, arrival_us, streaming) -> None:
        req_streaming = ObserveRequest(**{**req.__dict__, "streaming": streaming})
        if idx >= self.cfg.warmup_requests:
            row = _trace_record(req_streaming, rec, arrival_us)
            self.recorder.add(row, rec.chunk_times_us if rec.status == "ok" else None)
            if self.on_record is not None:
                self.on_record(row)
        if self.progress is not None:
            self.progress.update(1)

    def _spawn(self, req: ObserveRequest, arrival_us: int) -> asyncio.Task:
        idx = self.dispatched
        self.dispatched += 1
        t = asyncio.ensure_future(self._run_one(req, idx, arrival_us))
        self.inflight.add(t)
        t.add_done_callback(self._task_done)
        return t

    def _task_done(self, t: asyncio.Task) -> None:
        self.inflight.discard(t)
        if not t.cancelled() and t.exception() is not None:
            self.errors.append(t.exception())
            self.stop.set()

    # -- dispatch loops ----------------------------------------------------
    async def _open_loop(self) -> None:
        loop = asyncio.get_running_loop()
        for req in self.requests:
            if self.stop.is_set():
                break
            target = self.t0 + req.arrival_us / 1e6
            if await self._wait_stop(target - loop.time()):
                break
            if not await self._acquire():
                break
            self._spawn(req, req.arrival_us)

    async def _closed_loop(self) -> None:
        loop = asyncio.get_running_loop()
        it = iter(self.requests)
        horizon_s = self.cfg.horizon_us / 1e6 if self.cfg.horizon_us < INT64_MAX else math.inf
        think = self.cfg.think_time_ms / 1000.0

        async def user():
            while not self.stop.is_set():
                elapsed = loop.time() - self.t0
                if elapsed > horizon_s:
                    return
                req = next(it, None)
                if req is None:
                    return
                if not await self._acquire():
                    return
                t = self._spawn(req, int(elapsed * 1e6))
                try:
                    await asyncio.shield(t)
                except asyncio.CancelledError:
                    if not t.done():
                        t.cancel()
                    raise
                if think > 0 and await self._wait_stop(think):
                    return

        users = [asyncio.ensure_future(user()) for _ in range(self.cfg.concurrency)]
        force = asyncio.ensure_future(self.force.wait())
        try:
            pending = set(users)
            while pending:
                done, pending = await asyncio.wait(pending | {force}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(force)
                if force in done:
                    for u in pending:
                        u.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
            for u in users:
                if u.done() and not u.cancelled() and u.exception() is not None:
                    raise u.exception()
        finally:
            force.cancel()

    async def _drain(self) -> None:
        force = asyncio.ensure_future(self.force.wait())
        try:
            while self.inflight and not self.force.is_set():
                await asyncio.wait(set(self.inflight) | {force}, return_when=asyncio.FIRST_COMPLETED)
            if self.inflight:
                tasks = list(self.inflight)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            force.cancel()

    # -- setup -------------------------------------------------------------
    async def _calibrate_tpw(self) -> float:
        prompt = " ".join(VOCABULARY)
        rec = RequestRecord(request_id=-1)
        try:
            await asyncio.wait_for(self.client.send(rec, prompt, 1, False, min_tokens=0), timeout=30)
        except asyncio.TimeoutError:
            rec.status, rec.error_message = "timeout", "calibration request timed out"
        if rec.status != "ok":
            log.warning("prompt token calibration failed (%s); using 1 token per word",
                        rec.error_message or f"status={rec.status}")
            return 1.0
        if rec.server_input_tokens <= 0:
            log.warning("prompt token calibration failed (server returned 0 prompt_tokens); using 1 token per word")
            return 1.0
        ratio = rec.server_input_tokens / len(VOCABULARY)
        if ratio < 1.0 or ratio > 3.0:
            log.warning("prompt token calibration ratio %.3f outside [1, 3]; using 1 token per word", ratio)
            return 1.0
        log.info("prompt token calibration: %d words -> %d tokens (%.3f tokens/word)",
                 len(VOCABULARY), rec.server_input_tokens, ratio)
        return ratio

    async def _prewarm(self, duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + duration_s
        sent = errors = 0

        async def worker():
            nonlocal sent, errors
            while loop.time() < end and not self.stop.is_set():
                rec = RequestRecord(request_id=-1)
                await self.client.send(rec, WARM_PROMPT, 64, False, min_tokens=0)
                sent += 1
                if rec.status != "ok":
                    errors += 1
                    if await self._wait_stop(min(0.5, max(0.0, end - loop.time()))):
                        return

        await asyncio.gather(*(worker() for _ in range(4)))
        if sent == 0 or errors == sent:
            log.warning("prewarm: %d/%d requests failed (is the server reachable at %s?)", errors, sent,
                        self.cfg.server_url)
        else:
            log.info("prewarm complete: %d requests sent, %d errors", sent, errors)

    async def run(self) -> None:
        import aiohttp

        cfg = self.cfg
        self.sem = asyncio.Semaphore(cfg.max_concurrency)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, connect=min(cfg.timeout_s, 30.0))
        connector = aiohttp.TCPConnector(limit=cfg.max_concurrency + 4, limit_per_host=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         trace_configs=[request_trace_config()]) as session:
            self.client = OpenAIClient(session, cfg.server_url, cfg.model, cfg.api_format, cfg.api_key,
                                       cfg.unconstrained_output, cfg.ignore_eos)
            self.tpw = cfg.tokens_per_word if cfg.tokens_per_word > 0 else await self._calibrate_tpw()
            groups: Dict[str, int] = {}
            for r in self.requests:
                if r.prefix_group and r.prefix_group not in groups:
                    groups[r.prefix_group] = r.prefix_len if r.prefix_len > 0 else DEFAULT_PREFIX_LENGTH
            for g, plen in groups.items():
                self.prefixes[g] = (prefix_text(g, cfg.seed, plen, self.tpw), plen)
            if cfg.prewarm_s > 0:
                await self._prewarm(cfg.prewarm_s)
            self.t0 = asyncio.get_running_loop().time()
            try:
                if cfg.concurrency > 0:
                    await self._closed_loop()
                else:
                    await self._open_loop()
            finally:
                self.interrupted = self.stop.is_set() and not self.errors
                await self._drain()
            if self.errors:
                raise self.errors[0]


async def observe_async(cfg: ObserveConfig, requests, *, header: Optional[Dict[str, Any]] = None,
                        trace_header=None, trace_data=None, itl_output=None,
                        stop: Optional[asyncio.Event] = None, force: Optional[asyncio.Event] = None,
                        on_record: Optional[Callable[[Dict[str, Any]], None]] = None,
                        progress=None) -> ObserveResult:
    """Drive the server with ``requests`` (a :class:`RequestTable` or :class:`ObserveRequest` list).

    Writes the trace incrementally when ``trace_header``/``trace_data`` are given
    (and the ITL file with ``cfg.record_itl``).  Setting ``stop`` ends dispatch and
    waits for the requests in flight; ``force`` cancels them.  ``on_record`` is
    called with each recorded trace row.
    """
    cfg.validate()
    if not isinstance(requests, list):
        requests = requests_from_table(requests)
    if header is None:
        header = observe_header(cfg)
    if cfg.record_itl and itl_output is None and trace_data:
        itl_output = default_itl_path(trace_data)
    recorder = TraceRecorder(header, _trace_columns(requests), trace_header, trace_data, itl_output,
                             cfg.record_itl)
    stop = stop or asyncio.Event()
    force = force or asyncio.Event()
    obs = _Observer(cfg, requests, recorder, stop, force, on_record, progress)
    recorder.open()
    t0 = time.monotonic()
    try:
        await obs.run()
    finally:
        wall = time.monotonic() - t0
        final_header = dict(recorder.header)
        final_header["created_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        trace = recorder.finalize(final_header)
    return ObserveResult(trace, recorder.itl, wall, obs.interrupted, obs.dispatched, obs.tpw)


def default_itl_path(trace_data) -> str:
    s = str(trace_data)
    return (s[:-4] if s.endswith(".csv") else s) + ".itl.csv"


# ---------------------------------------------------------------------------
# Summary (stdout)
# ---------------------------------------------------------------------------
def observe_metrics(trace, wall_s: float, itl: Optional[Dict[int, List[int]]] = None) -> Dict[str, Any]:
    """The MetricsOutput observe prints: ok records with 0 < TTFT <= E2E; ITL from chunk deltas > 0."""
    from blis import stats

    r = trace.records
    ok = r["status"] == "ok"
    ttft = r["first_chunk_time_us"] - r["send_time_us"]
    e2e = r["last_chunk_time_us"] - r["send_time_us"]
    keep = ok & (ttft > 0) & (e2e > 0) & (e2e >= ttft)
    ttfts = np.sort(ttft[keep])
    e2es = np.sort(e2e[keep])
    out_tokens = int(r["output_tokens"][keep].sum())
    itls: List[int] = []
    for rid in sorted(itl or {}):
        ts = itl[rid]
        if len(ts) < 2:
            continue
        d = np.diff(np.asarray(ts, np.int64))
        itls.extend(d[d > 0].tolist())
    itls_a = np.sort(np.asarray(itls, np.int64))
    n = len(ttfts)
    o: Dict[str, Any] = {
        "instance_id": "", "completed_requests": n, "still_queued": 0, "still_running": 0,
        "injected_requests": 0, "total_input_tokens": 0, "total_output_tokens": 0,
        "vllm_estimated_duration_s": 0.0,
        "responses_per_sec": n / wall_s if wall_s > 0 else 0.0,
        "tokens_per_sec": out_tokens / wall_s if wall_s > 0 else 0.0,
    }
    mean = lambda a: float(int(a.sum())) / len(a) / 1000.0 if len(a) else 0.0  # noqa: E731
    o["e2e_mean_ms"] = mean(e2es)
    for p in (90, 95, 99):
        o[f"e2e_p{p}_ms"] = stats.percentile_ms(e2es, p) if n else 0.0
    o["ttft_mean_ms"] = mean(ttfts)
    for p in (90, 95, 99):
        o[f"ttft_p{p}_ms"] = stats.percentile_ms(ttfts, p) if n else 0.0
    o["itl_mean_ms"] = mean(itls_a)
    for p in (90, 95, 99):
        o[f"itl_p{p}_ms"] = stats.percentile_ms(itls_a, p) if len(itls_a) else 0.0
    o["scheduling_delay_p99_ms"] = 0.0
    o["preemption_count"] = 0
    o["dropped_unservable"] = 0
    o["length_capped_requests"] = 0
    o["timed_out_requests"] = 0
    return o


def metrics_text(trace, wall_s: float, itl=None) -> str:
    from blis.gojson import marshal_indent

    return "=== Simulation Metrics ===\n" + marshal_indent(observe_metrics(trace, wall_s, itl)) + "\n"


# ---------------------------------------------------------------------------
# Workload sources
# ---------------------------------------------------------------------------
@dataclass
class ObserveWorkload:
    requests: List[ObserveRequest]
    seed: Optional[int]
    spec_label: str = ""
    goodput_slo_targets: Optional[Dict[str, Dict[str, float]]] = None


_DURATION_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go ``time.ParseDuration`` (e.g. ``1m30s``, ``500ms``, ``0``) in seconds."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ConfigError(f"invalid duration {text!r}; e.g. 60s, 1m30s, 500ms")
    return sign * total


def _defaults_path(path: str):
    return path if path and Path(path).is_file() else None


def _goodput_targets(spec) -> Optional[Dict[str, Dict[str, float]]]:
    targets = getattr(spec, "goodput_slo_targets", None) or {}
    out = {}
    for cls, t in targets.items():
        out[str(cls)] = {"ttft_ms": float(t.ttft_ms), "itl_ms": float(t.itl_ms), "e2e_ms": float(t.e2e_ms)}
    return out or None


def build_workload(ns) -> ObserveWorkload:
    """The requests of an observe command line (spec/04 §6 workload rules)."""
    from blis.workload import synthesis as syn

    ex = ns._explicit
    rate_set = "rate" in ex
    has_trace_in = bool(ns.input_trace_header or ns.input_trace_data)
    if not (ns.workload or ns.workload_spec or rate_set or ns.concurrency > 0 or has_trace_in):
        raise ConfigError("Either --workload, --workload-spec, --rate, --concurrency or --input-trace-data "
                          "is required")
    if ns.workload:
        if ns.workload_spec:
            raise ConfigError("--workload and --workload-spec are mutually exclusive")
        if ns.concurrency > 0:
            raise ConfigError("--workload and --concurrency are mutually exclusive; use --workload-spec with "
                              "clients[].concurrency for closed-loop preset workloads")
        if not rate_set:
            raise ConfigError(f"--workload {ns.workload!r} requires --rate (preset synthesis needs a request rate)")
    if ns.concurrency > 0 and rate_set:
        raise ConfigError("--concurrency and --rate are mutually exclusive; use one or the other")
    if ns.concurrency < 0:
        raise ConfigError(f"--concurrency must be >= 0, got {ns.concurrency}")
    if ns.think_time_ms < 0:
        raise ConfigError(f"--think-time-ms must be >= 0, got {ns.think_time_ms}")
    if rate_set and not (math.isfinite(ns.rate) and ns.rate > 0):
        raise ConfigError(f"--rate must be a finite value > 0, got {ns.rate}")
    if ns.num_requests < 0:
        raise ConfigError(f"--num-requests must be >= 0, got {ns.num_requests}")
    if has_trace_in:
        if not (ns.input_trace_header and ns.input_trace_data):
            raise ConfigError("--input-trace-header and --input-trace-data must be given together")
        if ns.workload or ns.workload_spec or rate_set:
            raise ConfigError("--input-trace-data excludes --workload, --workload-spec and --rate")
        return _trace_workload(ns)

    horizon = ns.horizon if ("horizon" in ex and ns.horizon > 0) else None
    if ns.workload_spec:
        if ns.concurrency > 0:
            raise ConfigError("--concurrency cannot be used with --workload-spec; define concurrency in the spec "
                              "file using clients[].concurrency instead")
        from blis.workload.spec import workload_from_spec_file

        table, _, spec = workload_from_spec_file(
            ns.workload_spec, seed=ns.seed if "seed" in ex else None, horizon_us=horizon,
            num_requests=ns.num_requests if ("num_requests" in ex and ns.num_requests > 0) else None,
            with_spec=True)
        return ObserveWorkload(requests_from_table(table), int(spec.seed), ns.workload_spec,
                               _goodput_targets(spec))
    horizon_us = horizon if horizon is not None else INT64_MAX
    if ns.workload:
        preset = syn.load_preset(ns.workload, _defaults_path(ns.defaults_filepath))
        spec = syn.preset_spec(preset, ns.rate, ns.num_requests, ns.seed)
        label = "preset:" + ns.workload
    else:
        params = syn.DistributionParams(
            rate=ns.rate if rate_set else 1.0, num_requests=ns.num_requests, prompt_tokens=ns.prompt_tokens,
            prompt_tokens_stdev=ns.prompt_tokens_stdev, prompt_tokens_min=ns.prompt_tokens_min,
            prompt_tokens_max=ns.prompt_tokens_max, output_tokens=ns.output_tokens,
            output_tokens_stdev=ns.output_tokens_stdev, output_tokens_min=ns.output_tokens_min,
            output_tokens_max=ns.output_tokens_max, prefix_tokens=ns.prefix_tokens)
        syn.validate_distribution_params(params)
        spec = syn.distribution_spec(params, seed=ns.seed)
        label = ""
    n = int(spec.num_requests)
    if n <= 0 and horizon_us == INT64_MAX:
        raise ConfigError("Workload requires either num_requests, --num-requests, or --horizon to bound generation")
    if ns.concurrency > 0:
        # closed loop: draw the lengths as in rate mode; arrival times are ignored
        table = syn.generate_requests(spec, INT64_MAX, n if n > 0 else 100_000)
    else:
        table = syn.generate_requests(spec, horizon_us, n)
    return ObserveWorkload(requests_from_table(table), int(spec.seed), label, None)


def _trace_workload(ns) -> ObserveWorkload:
    from blis.workload.tracev2 import TraceV2, read_tracev2, tracev2_to_requests

    for flag, v in (("--input-trace-header", ns.input_trace_header), ("--input-trace-data", ns.input_trace_data)):
        if not Path(v).is_file():
            raise ConfigError(f"{flag}: file must exist, got {v!r}")
    tr = read_tracev2(ns.input_trace_header, ns.input_trace_data)
    rec = dict(tr.records)
    # re-drive at the recorded arrival offsets (observe traces: send times are Unix µs)
    rec["send_time_us"] = np.zeros(len(tr), np.int64)
    table = tracev2_to_requests(TraceV2(tr.header, rec), ns.seed)
    reqs = requests_from_table(table)
    if "horizon" in ns._explicit and ns.horizon > 0:
        reqs = [r for r in reqs if r.arrival_us < ns.horizon]
    if "num_requests" in ns._explicit and ns.num_requests > 0:
        reqs = reqs[: ns.num_requests]
    tgt = tr.header.get("goodput_slo_targets") or None
    return ObserveWorkload(reqs, tr.header.get("workload_seed"), "", tgt)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
# flag helpers shared with `blis run` (explicit-flag tracking, numeric parsing)
from blis.cli import _add, _float, _int  # noqa: E402


_UNSUPPORTED = ("--scrape-kv-metrics", "--vllm-commit", "--kv-metrics-url", "--think-time-dist",
                "--slo-ttft", "--slo-itl", "--slo-e2e", "--detectors", "--saturation-config",
                "--saturation-report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server and output")
    _add(g, "--server-url", str, "", "inference server URL, e.g. http://localhost:8000 (required)")
    _add(g, "--model", str, "", "model name sent in every request (required)")
    _add(g, "--trace-header", str, "", "output TraceV2 header YAML (required)")
    _add(g, "--trace-data", str, "", "output TraceV2 data CSV (required)")
    _add(g, "--api-format", str, "completions", "completions (/v1/completions) or chat (/v1/chat/completions)")
    _add(g, "--api-key", str, "", "bearer token")
    _add(g, "--server-type", str, "vllm", "server type recorded in the trace header")
    _add(g, "--max-concurrency", _int, 256, "max requests in flight (default: --concurrency when given)")
    _add(g, "--warmup-requests", _int, 0, "first N dispatched requests are sent but not recorded")
    _add(g, "--prewarm-duration", str, "0", "warm the server with small unrecorded requests first (e.g. 60s)")
    _add(g, "--no-streaming", bool, False, "send every request non-streaming")
    _add(g, "--streaming", bool, False, "send every request streaming (blis extension; default: per workload)")
    _add(g, "--timeout", _float, 300.0, "per-request HTTP timeout in seconds (0 < t <= 86400)")
    _add(g, "--record-itl", bool, False, "record every chunk time (forces streaming)")
    _add(g, "--itl-output", str, "", "chunk-time file (default <trace-data minus .csv>.itl.csv; .parquet allowed)")
    _add(g, "--rtt-ms", _float, 0.0, "measured network RTT (ms), recorded in the trace header")
    _add(g, "--unconstrained-output", bool, False, "do not constrain the output length (no min_tokens)")
    _add(g, "--no-ignore-eos", bool, False, "do not send ignore_eos: true (blis extension)")
    _add(g, "--tokens-per-word", _float, 0.0, "prompt tokens per word (0 = measure with one request)")
    _add(g, "--progress", str, "auto", "progress bar on stderr: auto (when a terminal), always, never")
    _add(g, "--log", str, "warn", "log level: debug, info, warn, error")
    g = p.add_argument_group("workload")
    _add(g, "--workload-spec", str, "", "workload-spec YAML (v2)")
    _add(g, "--workload", str, "", "preset name (chatbot, summarization, contentgen, multidoc); needs --rate")
    _add(g, "--defaults-filepath", str, "defaults.yaml", "defaults.yaml with the presets (bundled copy if absent)")
    _add(g, "--input-trace-header", str, "", "re-drive a TraceV2 trace: its header YAML (blis extension)")
    _add(g, "--input-trace-data", str, "", "re-drive a TraceV2 trace: its data CSV (blis extension)")
    _add(g, "--rate", _float, 0.0, "requests per second (distribution mode)")
    _add(g, "--concurrency", _int, 0, "closed-loop virtual users (excludes --rate)")
    _add(g, "--think-time-ms", _int, 0, "closed-loop think time between requests (ms)")
    _add(g, "--num-requests", _int, 0, "number of requests (0 = from the spec or unbounded)")
    _add(g, "--seed", _int, 42, "workload seed")
    _add(g, "--horizon", _int, 0, "observation horizon in microseconds (0 = from the spec or unlimited)")
    _add(g, "--prompt-tokens", _int, 512, "mean prompt tokens")
    _add(g, "--prompt-tokens-stdev", _int, 256, "prompt tokens standard deviation")
    _add(g, "--prompt-tokens-min", _int, 2, "min prompt tokens")
    _add(g, "--prompt-tokens-max", _int, 7000, "max prompt tokens")
    _add(g, "--output-tokens", _int, 512, "mean output tokens")
    _add(g, "--output-tokens-stdev", _int, 256, "output tokens standard deviation")
    _add(g, "--output-tokens-min", _int, 2, "min output tokens")
    _add(g, "--output-tokens-max", _int, 7000, "max output tokens")
    _add(g, "--prefix-tokens", _int, 0, "shared prefix tokens (distribution mode)")
    _add(g, "--lazy-generation", bool, False, "accepted for compatibility; no effect")
    g = p.add_argument_group("not supported by this version")
    for flag in _UNSUPPORTED:
        _add(g, flag, str, None, argparse.SUPPRESS)


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``observe`` on a ``blis`` subparsers object; ``ns._run(ns)`` runs it."""
    p = subparsers.add_parser("observe", help="drive a real OpenAI-compatible server and record a TraceV2 trace",
                              description="Send a workload to a real inference server and record timing (TraceV2).")
    add_arguments(p)
    p.set_defaults(_run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blis observe",
                                description="Send a workload to a real inference server and record timing (TraceV2).")
    add_arguments(p)
    return p


def config_from_args(ns) -> ObserveConfig:
    ex = ns._explicit
    for flag in _UNSUPPORTED:
        if getattr(ns, flag[2:].replace("-", "_"), None) is not None:
            raise ConfigError(f"{flag}: not supported by blis observe in this version yet")
    if ns.progress not in ("auto", "always", "never"):
        raise ConfigError(f"--progress must be auto, always or never, got {ns.progress!r}")
    for flag, v in (("--server-url", ns.server_url), ("--model", ns.model), ("--trace-header", ns.trace_header),
                    ("--trace-data", ns.trace_data)):
        if not v:
            raise ConfigError(f"{flag} is required")
    if ns.itl_output and not ns.record_itl:
        log.warning("--itl-output is set but --record-itl is not enabled; no ITL data will be written")
    if ns.streaming and ns.no_streaming:
        raise ConfigError("--streaming and --no-streaming are mutually exclusive")
    max_conc = ns.max_concurrency
    if ns.concurrency > 0 and "max_concurrency" not in ex:
        max_conc = ns.concurrency
    cfg = ObserveConfig(
        server_url=ns.server_url, model=ns.model, api_format=ns.api_format, api_key=ns.api_key,
        server_type=ns.server_type, max_concurrency=max_conc, warmup_requests=ns.warmup_requests,
        no_streaming=ns.no_streaming, force_streaming=ns.streaming, record_itl=ns.record_itl,
        timeout_s=ns.timeout, unconstrained_output=ns.unconstrained_output, ignore_eos=not ns.no_ignore_eos,
        rtt_ms=ns.rtt_ms, tokens_per_word=ns.tokens_per_word, concurrency=ns.concurrency,
        think_time_ms=ns.think_time_ms,
        horizon_us=ns.horizon if ("horizon" in ex and ns.horizon > 0) else INT64_MAX,
        prewarm_s=parse_go_duration(ns.prewarm_duration), seed=ns.seed)
    if cfg.tokens_per_word < 0 or not math.isfinite(cfg.tokens_per_word):
        raise ConfigError(f"--tokens-per-word must be a finite value >= 0, got {cfg.tokens_per_word}")
    cfg.validate()
    return cfg


def _make_progress(mode: str, total: int):
    if mode == "never" or (mode == "auto" and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True, desc="observing")


async def _observe_main(cfg: ObserveConfig, wl: ObserveWorkload, ns) -> ObserveResult:
    stop, force = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal():
        if not stop.is_set():
            log.warning("received interrupt, stopping dispatch and waiting for the requests in flight "
                        "(interrupt again to cancel them)")
            stop.set()
        else:
            force.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    header = observe_header(cfg, workload_seed=wl.seed, workload_spec=wl.spec_label,
                            goodput_slo_targets=wl.goodput_slo_targets)
    total = len(wl.requests)
    if cfg.concurrency > 0 and ns.num_requests > 0:
        total = min(total, ns.num_requests)
    bar = _make_progress(ns.progress, total)
    try:
        return await observe_async(cfg, wl.requests, header=header, trace_header=ns.trace_header,
                                   trace_data=ns.trace_data, itl_output=ns.itl_output or None,
                                   stop=stop, force=force, progress=bar)
    finally:
        if bar is not None:
            bar.close()
        for sig in installed:
            loop.remove_signal_handler(sig)


def run(ns) -> int:
    """Run a parsed ``blis observe`` command line; returns the exit status."""
    if getattr(ns, "_explicit", None) is None:
        ns._explicit = set()
    level = {"debug": logging.DEBUG, "trace": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
             "warning": logging.WARNING, "error": logging.ERROR}.get(str(ns.log).lower(), logging.WARNING)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="level=%(levelname)s msg=%(message)s", level=level)
    log.setLevel(level)
    try:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise ConfigError("blis observe needs the aiohttp package (pip install aiohttp)") from None
        cfg = config_from_args(ns)
        wl = build_workload(ns)
        if not wl.requests:
            log.warning("no requests generated - writing an empty trace")
        res = asyncio.run(_observe_main(cfg, wl, ns))
    except BlisError as e:
        sys.stderr.write(f"blis observe: error: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"blis observe: error: {e}\n")
        return 1
    counts = {s: int(np.sum(res.trace.records["status"] == s)) for s in STATUSES}
    log.info("trace written: %d records (%s) to %s / %s in %.3f s", len(res.trace),
             ", ".join(f"{k} {v}" for k, v in counts.items() if v), ns.trace_header, ns.trace_data, res.wall_s)
    if res.interrupted:
        log.warning("observe was interrupted: %d requests dispatched, %d recorded", res.dispatched, len(res.trace))
    if cfg.record_itl and not res.itl:
        log.warning("--record-itl was set but no chunk times were recorded")
    sys.stdout.write(metrics_text(res.trace, res.wall_s, res.itl if cfg.record_itl else None))
    sys.stdout.flush()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``blis observe`` as a stand-alone entry point (argv without the ``observe`` word)."""
    ns = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(ns, "_explicit", None) is None:
        ns._explicit = set()
    return run(ns)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
