"""Request generation for multimodal, reasoning (multi-turn) and per-window-override clients.

spec/04-workload-io.md §4.5 (multimodal sampling order), §4.6 + §4.9 (open-loop
reasoning sessions), §4.10 (session deadlines) and §4.11 (the time-varying path).
:func:`blis.workload.synthesis.generate_requests` calls into this module; the
draws follow BLIS's ``generator.go``, ``reasoning.go`` and ``multimodal.go``
exactly, so the same seed gives BLIS's arrivals, lengths, session ids, round
indices, reason ratios and modality counts.

Everything that touches the RNG runs in compiled loops (no per-request Python
objects).  A client's samplers are packed into a *sampler pack*
(:class:`SamplerPack`): row ``j`` holds one length sampler, ``kind < 0`` marks
an unset distribution (BLIS's ``type: ""``).

Each generator returns a :class:`Part` (one client's rows, in generation
order); :func:`blis.workload.synthesis.build_table` merges the parts.

This is the one implementation of reasoning sessions: closed-loop clients
(:func:`blis.workload.sessions.generate_session_workload`) are generated here
too, open-loop, and keep their round-0 rows.  Under ``context_growth:
accumulate`` the rows record the full input length; ``build_table`` links each
round to the previous one through ``context_parent`` so the KV prefix cache
sees the shared context.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..kernels.gorand import go_seed, int63_nb, skip_intn_nb
from ..kernels.jit import njit
from .distributions import (
    ARRIVAL_PROCESSES,
    go_int_nb,
    make_arrival_sampler,
    make_length_sampler,
    sample_iat_nb,
    sample_length_nb,
)

log = logging.getLogger("blis.workload")

#: BLIS's ``MaxTokenID`` (token ids are ``Intn(128000)``)
MAX_TOKEN_ID = 128000
#: multimodal pack rows: text, then (tokens, count) per modality, then the output length
MM_TEXT, MM_IMAGE, MM_IMAGE_COUNT, MM_AUDIO, MM_AUDIO_COUNT, MM_VIDEO, MM_VIDEO_COUNT, MM_OUTPUT = range(8)
MULTIMODAL_KEYS = ("text_distribution", "image_distribution", "image_count_distribution", "audio_distribution",
                   "audio_count_distribution", "video_distribution", "video_count_distribution")
#: reasoning pack rows
RS_INPUT, RS_OUTPUT, RS_RATIO = range(3)
#: safety cap on the number of IATs one time-varying window may draw
MAX_WINDOW_REQUESTS = 100_000_000


def _get(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


# ---------------------------------------------------------------------------
# Sampler packs
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerPack:
    """Several length samplers as padded arrays a compiled loop can index by row."""

    kinds: np.ndarray    # int64[m], -1 = unset
    params: np.ndarray   # float64[m, 5]
    values: np.ndarray   # int64[m, V]
    cdf: np.ndarray      # float64[m, V]
    nvals: np.ndarray    # int64[m]


def make_pack(dists: Sequence, where: Sequence[str]) -> SamplerPack:
    """A pack from DistSpecs (``None`` or ``type == ""`` = unset), checked as BLIS's ``NewLengthSampler``."""
    samplers = []
    for d, w in zip(dists, where):
        t = "" if d is None else str(_get(d, "type", "") or "")
        samplers.append(None if not t else make_length_sampler(t, dict(_get(d, "params", None) or {}), where=w))
    m = len(samplers)
    width = max([len(s.values) for s in samplers if s is not None] + [1])
    kinds = np.full(m, -1, np.int64)
    params = np.zeros((m, 5), np.float64)
    values = np.zeros((m, width), np.int64)
    cdf = np.zeros((m, width), np.float64)
    nvals = np.zeros(m, np.int64)
    for j, s in enumerate(samplers):
        if s is None:
            continue
        kinds[j] = s.kind
        params[j, :len(s.params)] = s.params
        values[j, :len(s.values)] = s.values
        cdf[j, :len(s.cdf)] = s.cdf
        nvals[j] = len(s.values)
    return SamplerPack(kinds, params, values, cdf, nvals)


@njit
def _draw_nb(state, kinds, params, values, cdf, nvals, j):
    n = nvals[j]
    return sample_length_nb(state, kinds[j], params[j], values[j, :n], cdf[j, :n])


@njit
def _skip_tokens_nb(state, k):
    """``GenerateRandomTokenIDs(rng, k)``: k draws of ``Intn(MaxTokenID)``, not stored."""
    if k > 0:
        skip_intn_nb(state, MAX_TOKEN_ID, k)


@njit
def _in_windows_nb(t, ws, we):
    for w in range(ws.shape[0]):
        if t >= ws[w] and t < we[w]:
            return True
    return False


@njit(inner=True)
def _last_end_nb(we):
    last = np.int64(0)
    for w in range(we.shape[0]):
        if we[w] > last:
            last = we[w]
    return last


#: what :func:`_next_arrival_nb` found
ARRIVAL_STOP, ARRIVAL_SKIP, ARRIVAL_EMIT = 0, 1, 2


@njit(inner=True)
def _next_arrival_nb(state, a_kind, a_params, a_seq, cursor, t, horizon, ws, we, last_end):
    """One step of a client's arrival loop: draw the next IAT after ``t``.

    Returns ``(t', what)``: ``ARRIVAL_STOP`` (an IAT of 0, or the horizon reached, or
    past the last window), ``ARRIVAL_SKIP`` (``t'`` falls outside the active windows:
    draw again from ``t'``) or ``ARRIVAL_EMIT`` (a request arrives at ``t'``)."""
    iat = sample_iat_nb(state, a_kind, a_params, a_seq, cursor)
    if iat == 0 or iat >= horizon - t:
        return t, ARRIVAL_STOP
    t += iat
    if ws.shape[0] > 0 and not _in_windows_nb(t, ws, we):
        return t, ARRIVAL_STOP if t >= last_end else ARRIVAL_SKIP
    return t, ARRIVAL_EMIT


# ---------------------------------------------------------------------------
# Growable row buffers (int64 columns + one float64 column)
# ---------------------------------------------------------------------------
@njit
def _grow_nb(ibuf, fbuf, n):
    if n < ibuf.shape[1]:
        return ibuf, fbuf
    cap = ibuf.shape[1] * 2
    i2 = np.empty((ibuf.shape[0], cap), np.int64)
    f2 = np.empty(cap, np.float64)
    for k in range(n):  # element copies: slice assignment compiles numba's shape-error path
        for c in range(ibuf.shape[0]):
            i2[c, k] = ibuf[c, k]
        f2[k] = fbuf[k]
    return i2, f2


# ---------------------------------------------------------------------------
# Multimodal (§4.5)
# ---------------------------------------------------------------------------
@njit
def multimodal_tokens_nb(state, kinds, params, values, cdf, nvals, out):
    """BLIS's ``GenerateMultimodalTokens``: fills ``out[0:4]`` with the text, image, audio
    and video token counts and returns the input length (their sum, at least 1).

    Draws: text length (when set); then per modality (when both its token and
    count distributions are set) one count and ``count`` token lengths; then the
    input token ids (one ``Intn`` per token)."""
    text = np.int64(0)
    if kinds[MM_TEXT] >= 0:
        text = _draw_nb(state, kinds, params, values, cdf, nvals, MM_TEXT)
    out[0] = text
    total = text
    for m in range(3):
        tok = MM_IMAGE + 2 * m
        cnt = tok + 1
        acc = np.int64(0)
        if kinds[tok] >= 0 and kinds[cnt] >= 0:
            c = _draw_nb(state, kinds, params, values, cdf, nvals, cnt)
            for _ in range(c):
                acc += _draw_nb(state, kinds, params, values, cdf, nvals, tok)
        out[1 + m] = acc
        total += acc
    if total == 0:
        total = np.int64(1)
    _skip_tokens_nb(state, total)
    return total


@njit
def multimodal_client_nb(state, cap, horizon, a_kind, a_params, a_seq,
                         kinds, params, values, cdf, nvals, ws, we):
    """One multimodal single-shot client (the non-time-varying loop of §4.5).

    Per request: IAT, :func:`multimodal_tokens_nb`, output length, output ids.
    Returns int64 rows ``[arrival, input_len, output_len, text, image, audio, video]``
    (input_len excludes the prefix)."""
    ibuf = np.empty((7, 1024), np.int64)
    fbuf = np.empty(1024, np.float64)
    cursor = np.zeros(1, np.int64)
    counts = np.zeros(4, np.int64)
    last_end = _last_end_nb(we)
    n = 0
    t = np.int64(0)
    while t < horizon:
        if cap > 0 and n >= cap:
            break
        t, what = _next_arrival_nb(state, a_kind, a_params, a_seq, cursor, t, horizon, ws, we, last_end)
        if what == ARRIVAL_STOP:
            break
        if what == ARRIVAL_SKIP:
            continue
        li = multimodal_tokens_nb(state, kinds, params, values, cdf, nvals, counts)
        lo = _draw_nb(state, kinds, params, values, cdf, nvals, MM_OUTPUT)
        _skip_tokens_nb(state, lo)
        ibuf, fbuf = _grow_nb(ibuf, fbuf, n)
        ibuf[0, n] = t
        ibuf[1, n] = li
        ibuf[2, n] = lo
        ibuf[3, n] = counts[0]
        ibuf[4, n] = counts[1]
        ibuf[5, n] = counts[2]
        ibuf[6, n] = counts[3]
        n += 1
    return ibuf[:, :n].copy()


# ---------------------------------------------------------------------------
# Reasoning sessions (§4.6)
# ---------------------------------------------------------------------------
@njit
def reasoning_session_nb(state, kinds, params, values, cdf, nvals, max_rounds, think_us, accumulate,
                         prefix_len, start, r_arr, r_in, r_out, r_rr):
    """BLIS's ``GenerateReasoningRequests`` for one session starting at ``start``.

    Draws: the session id (``Int63``), round 0's input and output lengths; then
    per round r (r > 0 draws new lengths first) the new input ids, the output
    ids and the reason-ratio percentage (when set).  Fills the first
    ``max_rounds`` entries of ``r_arr`` (arrival), ``r_in`` (input length
    including the prefix and, with ``accumulate``, every earlier round's input
    and output), ``r_out`` and ``r_rr``; returns the session id number.
    Round r+1 arrives at ``arrival_r + think_us + output_r``.
    """
    sid = int63_nb(state)
    in0 = _draw_nb(state, kinds, params, values, cdf, nvals, RS_INPUT)
    out0 = _draw_nb(state, kinds, params, values, cdf, nvals, RS_OUTPUT)
    t = start
    hist = np.int64(0)
    for r in range(max_rounds):
        if r == 0:
            li = in0
            lo = out0
        else:
            li = _draw_nb(state, kinds, params, values, cdf, nvals, RS_INPUT)
            lo = _draw_nb(state, kinds, params, values, cdf, nvals, RS_OUTPUT)
        _skip_tokens_nb(state, li)
        _skip_tokens_nb(state, lo)
        rr = 0.0
        if kinds[RS_RATIO] >= 0:
            pct = _draw_nb(state, kinds, params, values, cdf, nvals, RS_RATIO)
            rr = min(1.0, max(0.0, np.float64(pct) / 100.0))
        if accumulate:
            r_in[r] = prefix_len + hist + li
            hist += li + lo
        else:
            r_in[r] = prefix_len + li
        r_arr[r] = t
        r_out[r] = lo
        r_rr[r] = rr
        t += think_us
        t += lo
    return sid


@njit
def _append_rounds_nb(ibuf, fbuf, n, r_arr, r_in, r_out, r_rr, max_rounds, s_idx, limit, ws, we):
    """Append a session's rounds while ``arrival < limit``, skipping rounds outside
    the windows ``ws/we`` (none = no window check).  Returns (ibuf, fbuf, n)."""
    check = ws.shape[0] > 0
    for r in range(max_rounds):
        if r_arr[r] >= limit:
            break
        if check and not _in_windows_nb(r_arr[r], ws, we):
            continue
        ibuf, fbuf = _grow_nb(ibuf, fbuf, n)
        ibuf[0, n] = r_arr[r]
        ibuf[1, n] = r_in[r]
        ibuf[2, n] = r_out[r]
        ibuf[3, n] = r
        ibuf[4, n] = s_idx
        fbuf[n] = r_rr[r]
        n += 1
    return ibuf, fbuf, n


@njit
def reasoning_client_nb(state, single, cap, horizon, a_kind, a_params, a_seq,
                        kinds, params, values, cdf, nvals, max_rounds, think_us, accumulate, prefix_len,
                        ws, we):
    """One multi-turn client on the non-time-varying path (§4.6).

    ``single``: one session starting at one IAT (plus the first window's start
    when the client has windows).  Otherwise each IAT starts a session; ``cap``
    (0 = none) counts every generated round, kept or not.  Rounds are kept while
    ``< horizon`` and inside a window.  Returns ``(rows, fvals, session_ids)``:
    int64 rows ``[arrival, input_len, output_len, round, session_index]``, the
    reason ratios and each session's id number.
    """
    ibuf = np.empty((5, 1024), np.int64)
    fbuf = np.empty(1024, np.float64)
    sids = np.empty(64, np.int64)
    n_sess = 0
    cursor = np.zeros(1, np.int64)
    r_arr = np.empty(max_rounds, np.int64)
    r_in = np.empty(max_rounds, np.int64)
    r_out = np.empty(max_rounds, np.int64)
    r_rr = np.empty(max_rounds, np.float64)
    n_win = ws.shape[0]
    n = 0
    if single:
        iat = sample_iat_nb(state, a_kind, a_params, a_seq, cursor)
        if iat != 0:
            start = iat
            if n_win > 0:
                start = ws[0] + iat
            if start < horizon and (n_win == 0 or _in_windows_nb(start, ws, we)):
                sid = reasoning_session_nb(state, kinds, params, values, cdf, nvals, max_rounds, think_us,
                                           accumulate, prefix_len, start, r_arr, r_in, r_out, r_rr)
                sids[0] = sid
                n_sess = 1
                ibuf, fbuf, n = _append_rounds_nb(ibuf, fbuf, n, r_arr, r_in, r_out, r_rr, max_rounds, 0,
                                                  horizon, ws, we)
        return ibuf[:, :n].copy(), fbuf[:n].copy(), sids[:n_sess].copy()
    last_end = _last_end_nb(we)
    count = np.int64(0)
    t = np.int64(0)
    while t < horizon:
        if cap > 0 and count >= cap:
            break
        t, what = _next_arrival_nb(state, a_kind, a_params, a_seq, cursor, t, horizon, ws, we, last_end)
        if what == ARRIVAL_STOP:
            break
        if what == ARRIVAL_SKIP:
            continue
        sid = reasoning_session_nb(state, kinds, params, values, cdf, nvals, max_rounds, think_us,
                                   accumulate, prefix_len, t, r_arr, r_in, r_out, r_rr)
        if n_sess == sids.shape[0]:
            s2 = np.empty(2 * n_sess, np.int64)
            s2[:n_sess] = sids
            sids = s2
        sids[n_sess] = sid
        count += max_rounds
        ibuf, fbuf, n = _append_rounds_nb(ibuf, fbuf, n, r_arr, r_in, r_out, r_rr, max_rounds, n_sess,
                                          horizon, ws, we)
        n_sess += 1
    return ibuf[:, :n].copy(), fbuf[:n].copy(), sids[:n_sess].copy()


# ---------------------------------------------------------------------------
# Time-varying windows (§4.11)
# ---------------------------------------------------------------------------
@njit
def rescale_iats_nb(iats, target):
    """BLIS's ``rescaleIATsToMatchDuration``: scale by ``target / ΣIAT``, truncate,
    and add the truncation residual to the last IAT (sum == target exactly).
    A zero sum returns the IATs unchanged."""
    n = iats.shape[0]
    out = iats.copy()
    if n == 0:
        return out
    total = np.int64(0)
    for i in range(n):
        total += iats[i]
    if total == 0:
        return out
    factor = np.float64(target) / np.float64(total)
    acc = np.int64(0)
    for i in range(n):
        out[i] = go_int_nb(np.float64(iats[i]) * factor)
        acc += out[i]
    out[n - 1] += target - acc
    return out


@njit
def window_iats_nb(state, n, a_kind, a_params, a_seq, duration):
    """Draw ``n`` IATs from the window's sampler, then rescale them to ``duration``."""
    cursor = np.zeros(1, np.int64)
    raw = np.empty(n, np.int64)
    for i in range(n):
        raw[i] = sample_iat_nb(state, a_kind, a_params, a_seq, cursor)
    return rescale_iats_nb(raw, duration)


@njit
def window_single_shot_nb(state, iats, start, end, kinds, params, values, cdf, nvals):
    """Single-shot requests of one window: ``t = start + ΣIAT`` until ``t >= end``;
    per request input length, output length, input ids, output ids.
    Returns int64 rows ``[arrival, input_len, output_len]``."""
    n_max = iats.shape[0]
    out = np.empty((3, n_max), np.int64)
    t = start
    n = 0
    for i in range(n_max):
        t += iats[i]
        if t >= end:
            break
        li = _draw_nb(state, kinds, params, values, cdf, nvals, 0)
        lo = _draw_nb(state, kinds, params, values, cdf, nvals, 1)
        _skip_tokens_nb(state, li)
        _skip_tokens_nb(state, lo)
        out[0, n] = t
        out[1, n] = li
        out[2, n] = lo
        n += 1
    return out[:, :n].copy()


@njit
def window_reasoning_nb(state, iats, start, end, single, kinds, params, values, cdf, nvals, max_rounds,
                        think_us, accumulate, prefix_len, s_base):
    """Reasoning sessions of one window (single session at ``start + iats[0]``, or one
    session per IAT tick), rounds clipped at the window end.  Session indices
    start at ``s_base``.  Returns ``(rows, fvals, session_ids)`` as
    :func:`reasoning_client_nb`."""
    ibuf = np.empty((5, 256), np.int64)
    fbuf = np.empty(256, np.float64)
    sids = np.empty(max(iats.shape[0], 1), np.int64)
    no_win = np.empty(0, np.int64)
    r_arr = np.empty(max_rounds, np.int64)
    r_in = np.empty(max_rounds, np.int64)
    r_out = np.empty(max_rounds, np.int64)
    r_rr = np.empty(max_rounds, np.float64)
    n = 0
    n_sess = 0
    if single:
        s = start
        if iats.shape[0] > 0:
            s += iats[0]
        if s < end:
            sids[0] = reasoning_session_nb(state, kinds, params, values, cdf, nvals, max_rounds, think_us,
                                           accumulate, prefix_len, s, r_arr, r_in, r_out, r_rr)
            n_sess = 1
            ibuf, fbuf, n = _append_rounds_nb(ibuf, fbuf, n, r_arr, r_in, r_out, r_rr, max_rounds, s_base,
                                              end, no_win, no_win)
        return ibuf[:, :n].copy(), fbuf[:n].copy(), sids[:n_sess].copy()
    t = start
    for i in range(iats.shape[0]):
        t += iats[i]
        if t >= end:
            break
        sids[n_sess] = reasoning_session_nb(state, kinds, params, values, cdf, nvals, max_rounds, think_us,
                                            accumulate, prefix_len, t, r_arr, r_in, r_out, r_rr)
        ibuf, fbuf, n = _append_rounds_nb(ibuf, fbuf, n, r_arr, r_in, r_out, r_rr, max_rounds,
                                          s_base + n_sess, end, no_win, no_win)
        n_sess += 1
    return ibuf[:, :n].copy(), fbuf[:n].copy(), sids[:n_sess].copy()


# ---------------------------------------------------------------------------
# Parts: one client's generated rows
# ---------------------------------------------------------------------------
@dataclass
class Part:
    """One client's requests in generation order (merged by ``build_table``).

    ``input_len`` includes ``prefix_len``.  ``deadline_us`` is absolute (0 =
    none).  ``sessions`` names the sessions that ``session_index`` (−1 = not a
    session request) points into.  ``extras`` holds optional columns
    (``round_index``, ``reason_ratio``, ``text_tokens`` ... ``video_tokens``).
    """

    idx: int
    client_seed: int
    arrival: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    prefix_len: int = 0
    group: str = ""
    streaming: bool = False
    deadline_us: Optional[np.ndarray] = None
    slo_target_us: int = 0
    sessions: List[str] = field(default_factory=list)
    session_index: Optional[np.ndarray] = None
    extras: Dict[str, np.ndarray] = field(default_factory=dict)
    #: BLIS's reasoning rounds carry the prefix tokens (``prefix_len``) but an empty prefix-group
    #: label: the rows get a group code labelled "" that shares ``group``'s token content
    hide_group: bool = False
    #: ``context_growth: accumulate``: each round's input starts with the previous kept round's
    #: input and output (``build_table`` links them through ``context_parent``)
    accumulate: bool = False


def deadlines(arrival: np.ndarray, timeout: Optional[int], session: bool) -> np.ndarray:
    """BLIS's ``computeDeadline``: no timeout = 300 s for session clients, none otherwise;
    0 = none; > 0 = arrival + timeout."""
    if timeout is None:
        if session:
            return arrival + np.int64(300_000_000)
        return np.zeros(len(arrival), np.int64)
    if timeout == 0:
        return np.zeros(len(arrival), np.int64)
    return arrival + np.int64(timeout)


def _multi_turn(client):
    r = _get(client, "reasoning")
    return None if r is None else _get(r, "multi_turn")


def is_multi_turn(client) -> bool:
    """Whether ``client`` generates sessions (``reasoning.multi_turn`` set)."""
    return _multi_turn(client) is not None


def is_closed_loop(client) -> bool:
    """BLIS's ``isClosedLoop``: the explicit ``closed_loop``, else whether the client is multi-turn."""
    cl = _get(client, "closed_loop")
    if cl is not None:
        return bool(cl)
    return is_multi_turn(client)


def session_name(number: int) -> str:
    """A generated session's id, ``sess_<Int63>``."""
    return f"sess_{int(number)}"


def _reasoning_pack(client, input_dist, output_dist) -> SamplerPack:
    cid = _get(client, "id", "")
    rr = _get(_get(client, "reasoning"), "reason_ratio_distribution")
    return make_pack([input_dist, output_dist, rr],
                     [f"client {cid!r} input_distribution", f"client {cid!r} output_distribution",
                      f"client {cid!r} reasoning.reason_ratio_distribution"])


def _mt_params(client):
    mt = _multi_turn(client)
    rounds = int(_get(mt, "max_rounds", 0) or 0)
    think = int(_get(mt, "think_time_us", 0) or 0)
    accumulate = (_get(mt, "context_growth", "") or "") == "accumulate"
    single = bool(_get(mt, "single_session", False))
    return rounds, think, accumulate, single


def _session_part(idx, client_seed, client, rows, rr, sids, prefix_len, deadline_session=True,
                  slo_target: Optional[int] = None, group: str = "") -> Part:
    arrival = np.ascontiguousarray(rows[0])
    timeout = _get(client, "timeout")
    if slo_target is None:
        slo_target = int(_get(client, "slo_target_us", 0) or 0)
    return Part(idx=idx, client_seed=client_seed, arrival=arrival, input_len=np.ascontiguousarray(rows[1]),
                output_len=np.ascontiguousarray(rows[2]), prefix_len=prefix_len, group=group, streaming=False,
                deadline_us=deadlines(arrival, timeout, deadline_session), slo_target_us=slo_target,
                sessions=[session_name(s) for s in sids.tolist()], session_index=np.ascontiguousarray(rows[4]),
                extras={"round_index": np.ascontiguousarray(rows[3]), "reason_ratio": rr},
                hide_group=True, accumulate=_mt_params(client)[2])


def generate_reasoning_client(idx, client, client_seed, state, arrival_sampler, prefix_len, group, cap,
                              horizon_us, windows) -> Part:
    """A multi-turn client on the non-time-varying path (all rounds, open-loop stamping)."""
    rounds, think, accumulate, single = _mt_params(client)
    if rounds <= 0:
        return Part(idx, client_seed, *(np.zeros(0, np.int64),) * 3)
    pack = _reasoning_pack(client, _get(client, "input_distribution"), _get(client, "output_distribution"))
    a = arrival_sampler
    ws = np.array([w[0] for w in windows], np.int64)
    we = np.array([w[1] for w in windows], np.int64)
    rows, rr, sids = reasoning_client_nb(
        state, single, cap, horizon_us, a.kind, a.params, a.seq,
        pack.kinds, pack.params, pack.values, pack.cdf, pack.nvals, rounds, think, accumulate, prefix_len, ws, we)
    return _session_part(idx, client_seed, client, rows, rr, sids, prefix_len, group=group)


def generate_multimodal_client(idx, client, client_seed, state, arrival_sampler, cap, horizon_us,
                               windows) -> Part:
    """A multimodal single-shot client on the non-time-varying path.  ``input_len``
    excludes the prefix here (the caller adds it)."""
    cid = _get(client, "id", "")
    mm = _get(client, "multimodal")
    # BLIS builds (and so checks) the client's input sampler even though multimodal clients do not use it
    make_pack([_get(client, "input_distribution")], [f"client {cid!r} input_distribution"])
    dists = [_get(mm, k) for k in MULTIMODAL_KEYS] + [_get(client, "output_distribution")]
    where = [f"client {cid!r} multimodal.{k}" for k in MULTIMODAL_KEYS] + [f"client {cid!r} output_distribution"]
    if not str(_get(dists[-1], "type", "") or ""):
        raise ConfigError(f"{where[-1]}: type must be a known distribution, got ''")
    pack = make_pack(dists, where)
    a = arrival_sampler
    ws = np.array([w[0] for w in windows], np.int64)
    we = np.array([w[1] for w in windows], np.int64)
    rows = multimodal_client_nb(state, cap, horizon_us, a.kind, a.params, a.seq,
                                pack.kinds, pack.params, pack.values, pack.cdf, pack.nvals, ws, we)
    return Part(idx=idx, client_seed=client_seed, arrival=np.ascontiguousarray(rows[0]),
                input_len=np.ascontiguousarray(rows[1]), output_len=np.ascontiguousarray(rows[2]),
                extras={"text_tokens": np.ascontiguousarray(rows[3]), "image_tokens": np.ascontiguousarray(rows[4]),
                        "audio_tokens": np.ascontiguousarray(rows[5]), "video_tokens": np.ascontiguousarray(rows[6])})


# ---------------------------------------------------------------------------
# The time-varying path (§4.11)
# ---------------------------------------------------------------------------
def _window_list(client):
    lc = _get(client, "lifecycle")
    if lc is None:
        return []
    wins = lc if isinstance(lc, (list, tuple)) else (_get(lc, "windows", None) or [])
    return list(wins)


def _w(window, name, default=None):
    if isinstance(window, (tuple, list)):
        return {"start_us": window[0], "end_us": window[1]}.get(name, default)
    return _get(window, name, default)


def resolve_window(client, window):
    """BLIS's ``resolveWindowParameters``: the window's arrival / input / output / trace rate,
    each falling back to the client's (the trace rate falls back to ``rate_fraction``)."""
    arrival = _w(window, "arrival") or _get(client, "arrival")
    inp = _w(window, "input_distribution") or _get(client, "input_distribution")
    out = _w(window, "output_distribution") or _get(client, "output_distribution")
    tr = _w(window, "trace_rate")
    rate = float(_get(client, "rate_fraction", 0.0) or 0.0) if tr is None else float(tr)
    return arrival, inp, out, rate


def proportional_rate(client, start: int, end: int, trace_rate_set: bool, clients, aggregate_rate: float,
                      window) -> float:
    """BLIS's ``computeProportionalRate`` for the (horizon-clamped) window ``[start, end)``, in req/s."""
    _, _, _, rate = resolve_window(client, window)
    if aggregate_rate == 0 and trace_rate_set:
        return rate
    total = 0.0
    for other in clients:
        wins = _window_list(other)
        if not wins:
            total += float(_get(other, "rate_fraction", 0.0) or 0.0)
            continue
        for ow in wins:
            if int(_w(ow, "start_us", 0)) < end and start < int(_w(ow, "end_us", 0)):
                total += resolve_window(other, ow)[3]
                break
    if total == 0:
        log.warning("computeProportionalRate: totalTraceRate is zero for client %r window [%d-%d] (no co-active "
                    "windows with non-zero rates)", _get(client, "id", ""), start, end)
        return 0.0
    return aggregate_rate * (rate / total)


def window_request_count(rate_per_s: float, duration_us: int) -> int:
    """``ceil(rate · duration_s)``: how many IATs a window draws."""
    n = math.ceil(rate_per_s * (float(duration_us) / 1e6))
    if n > MAX_WINDOW_REQUESTS:
        raise ConfigError(f"time-varying window: requests per window (rate x duration) must be <= "
                          f"{MAX_WINDOW_REQUESTS}, got {n}")
    return int(n)


def _window_arrival(arrival, rate_per_us: float):
    process = str(_get(arrival, "process", "") or "")
    if process not in ARRIVAL_PROCESSES:  # BLIS's NewArrivalSampler falls back to Poisson
        process = "poisson"
    return make_arrival_sampler(process, rate_per_us, cv=_get(arrival, "cv"), shape=_get(arrival, "shape"),
                                scale=_get(arrival, "scale"))


def generate_time_varying(clients: Sequence, aggregate_rate: float, horizon_us: int, workload_rng,
                          prefix_len: Dict[str, int]) -> List[Part]:
    """BLIS's ``generateTimeVaryingRequests`` after the prefix draws: one part per client with windows.

    Single-shot rows carry no prefix and no deadline (BLIS leaves both unset on
    this path) but keep the SLO target; reasoning rows carry the prefix, the
    session deadline and no SLO target.  Multimodal blocks are ignored here, as
    in BLIS.
    """
    parts: List[Part] = []
    for idx, c in enumerate(clients):
        wins = _window_list(c)
        cid = _get(c, "id", "")
        if not wins:
            log.warning("generateTimeVaryingRequests: client %r has no lifecycle windows and will generate no "
                        "requests (mixed always-on + windowed clients are not supported)", cid)
            continue
        client_seed = workload_rng.int63()
        state = go_seed(client_seed)
        group = _get(c, "prefix_group", "") or ""
        plen = prefix_len.get(group, 0) if group else 0
        mt = is_multi_turn(c)
        rounds, think, accumulate, single = _mt_params(c) if mt else (0, 0, False, False)
        blocks = []
        s_base = 0
        for w in wins:
            start, end = int(_w(w, "start_us", 0)), int(_w(w, "end_us", 0))
            if start >= horizon_us:
                continue
            end = min(end, horizon_us)
            arrival, inp, out, _ = resolve_window(c, w)
            rate = proportional_rate(c, start, end, _w(w, "trace_rate") is not None, clients, aggregate_rate, w)
            if rate <= 0:
                continue
            n = window_request_count(rate, end - start)
            if n == 0:
                continue
            a = _window_arrival(arrival, rate / 1e6)
            if mt:
                pack = _reasoning_pack(c, inp, out)
            else:
                pack = make_pack([inp, out], [f"client {cid!r} input_distribution",
                                              f"client {cid!r} output_distribution"])
            iats = window_iats_nb(state, n, a.kind, a.params, a.seq, end - start)
            if mt:
                if rounds <= 0:
                    continue
                rows, rr, sids = window_reasoning_nb(state, iats, start, end, single, pack.kinds, pack.params,
                                                     pack.values, pack.cdf, pack.nvals, rounds, think,
                                                     accumulate, plen, s_base)
                s_base += len(sids)
                blocks.append((rows, rr, sids))
            else:
                blocks.append(window_single_shot_nb(state, iats, start, end, pack.kinds, pack.params,
                                                    pack.values, pack.cdf, pack.nvals))
        if mt:
            rows = np.concatenate([b[0] for b in blocks], axis=1) if blocks else np.zeros((5, 0), np.int64)
            rr = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0)
            sids = np.concatenate([b[2] for b in blocks]) if blocks else np.zeros(0, np.int64)
            parts.append(_session_part(idx, client_seed, c, rows, rr, sids, plen, slo_target=0, group=group))
        else:
            rows = np.concatenate(blocks, axis=1) if blocks else np.zeros((3, 0), np.int64)
            arrival = np.ascontiguousarray(rows[0])
            parts.append(Part(idx=idx, client_seed=client_seed, arrival=arrival,
                              input_len=np.ascontiguousarray(rows[1]), output_len=np.ascontiguousarray(rows[2]),
                              streaming=bool(_get(c, "streaming", False)),
                              deadline_us=np.zeros(len(arrival), np.int64),
                              slo_target_us=int(_get(c, "slo_target_us", 0) or 0)))
    return parts


def has_window_overrides(clients: Sequence) -> bool:
    """BLIS's ``hasPerWindowParameters``: any window sets trace_rate, arrival or a distribution."""
    for c in clients:
        for w in _window_list(c):
            if isinstance(w, (tuple, list)):
                continue
            if any(_get(w, k) is not None for k in ("trace_rate", "arrival", "input_distribution",
                                                     "output_distribution")):
                return True
    return False
