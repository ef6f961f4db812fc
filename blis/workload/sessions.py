"""Closed-loop sessions: multi-turn reasoning clients, concurrency users and closed-loop replay.

BLIS (``sim/workload/session.go``, ``generator.go``) generates only the first
request of a closed-loop session up front and a ``SessionBlueprint`` per
session; ``SessionManager.OnComplete(req, tick)``, called at every terminal
event of a request, then builds the next round (think time, horizon
interruption, context growth from the output the request *actually*
produced, a global follow-up budget, cancellation on timeout or drop).  The
follow-up enters the cluster as a new arrival.

Here the manager is a finish hook of the :class:`blis.engine.Simulation`
(:meth:`SessionManager.attach`); follow-ups are appended with
``Simulation.add_requests``.  Token content stays procedural: a follow-up's
input starts with its *context parent's* first ``context_len`` tokens (the
previous round's input then its actual output under ``accumulate``; the
session prefix otherwise), which the KV kernels resolve through
``rq[R_CTXP]`` / ``rq[R_CTXLEN]`` (:mod:`blis.kernels.prefix_hash`), so the
prefix cache hits on a conversation's earlier turns exactly as with BLIS's
token slices.

Follow-ups are named ``session_<sid>_round_<n>_<counter>`` as in BLIS: the
table column ``name`` holds a code into ``names["name"]`` (0 = the default
``request_<id>``), and their tie-break keys (``R_IDKEY``/``R_IDDIG``) order
them after every ``request_<n>`` name and among themselves byte-wise, as
BLIS's string comparison does (:class:`NameOrder`).
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..kernels import layout as Lo
from ..kernels.gorand import go_seed_nb, int63_nb, skip_intn_nb
from ..kernels.jit import njit
from ..requests import RequestTable
from ..rng import GoRand, SUBSYSTEM_WORKLOAD_GEN, derive_seed, splitmix64, to_int64
from . import synthesis as _syn
from .distributions import LengthSampler, make_arrival_sampler, make_length_sampler, sample_iat_nb, sample_length_nb

log = logging.getLogger("blis.sessions")

INT64_MAX = np.iinfo(np.int64).max
#: offsets of BLIS's blueprint and concurrency RNG streams from the spec seed
BLUEPRINT_SEED_OFFSET = 7919
CONCURRENCY_SEED_OFFSET = 10007
#: tie-break keys of session follow-up names start here (every ``request_<n>`` key is below 10^18)
_NAME_KEY_BASE = 10 ** 18


# ---------------------------------------------------------------------------
# Blueprints and the manager
# ---------------------------------------------------------------------------
@dataclass
class SessionBlueprint:
    """One session's shape (BLIS ``SessionBlueprint``); codes are the workload table's."""

    session: int                 # code into names["session"]
    sid: str
    client: int
    max_rounds: int
    unlimited: bool
    accumulate: bool
    think_time_us: int
    timeout: Optional[int]       # µs; None = the 300 s session default, 0 = no deadline
    horizon: int
    input_sampler: LengthSampler
    output_sampler: LengthSampler
    rng: GoRand
    prefix_row: int = -1         # row whose first prefix_len tokens are the session prefix
    prefix_len: int = 0
    tenant: int = 0
    slo_class: int = 0
    model: int = 0
    adapter: int = 0
    slo_target_us: int = 0
    think_sampler: Optional[LengthSampler] = None


ACTIVE, COMPLETED, CANCELLED, HORIZON_INTERRUPTED, BUDGET_EXHAUSTED = range(5)
STATE_NAMES = ("active", "completed", "cancelled", "horizon_interrupted", "budget_exhausted")


@dataclass
class SessionPlan:
    """What closed-loop generation hands to the simulation: blueprints and the follow-up budget (-1 = none)."""

    blueprints: List[SessionBlueprint] = field(default_factory=list)
    follow_up_budget: int = -1

    def set_timeout(self, timeout_us: int) -> None:
        """``--timeout``: every blueprint's timeout becomes ``timeout_us`` (0 = no deadline)."""
        for bp in self.blueprints:
            bp.timeout = int(timeout_us)


def _fresh(s: Optional[LengthSampler]) -> Optional[LengthSampler]:
    return None if s is None else replace(s, params=s.params.copy())


class NameOrder:
    """Tie-break keys of follow-up names that keep BLIS's byte-wise name order.

    Keys live above every ``request_<n>`` key (``"request_" < "session_"``); a new
    name takes the midpoint between its sorted neighbours, and every key is
    re-spread when a gap closes.
    """

    def __init__(self):
        self.names: List[bytes] = []
        self.keys: List[int] = []
        self.rows: List[int] = []

    def insert(self, sim, name: str, row: int) -> None:
        b = name.encode()
        pos = bisect.bisect_left(self.names, b)
        lo = self.keys[pos - 1] if pos > 0 else _NAME_KEY_BASE
        hi = self.keys[pos] if pos < len(self.keys) else INT64_MAX
        self.names.insert(pos, b)
        self.rows.insert(pos, row)
        if hi - lo >= 2:
            self.keys.insert(pos, (lo + hi) // 2)
            sim.rq[Lo.R_IDKEY, row] = self.keys[pos]
        else:
            step = (INT64_MAX - _NAME_KEY_BASE) // (len(self.names) + 1)
            self.keys = [_NAME_KEY_BASE + step * (k + 1) for k in range(len(self.names))]
            sim.rq[Lo.R_IDKEY, np.asarray(self.rows, np.int64)] = np.asarray(self.keys, np.int64)
        sim.rq[Lo.R_IDDIG, row] = 0


class SessionManager:
    """BLIS's ``SessionManager``: attach it to a simulation with :meth:`attach`."""

    def __init__(self, plan: SessionPlan):
        # private copies: the RNGs and sequence cursors advance during a run, and a table may be simulated twice
        self.blueprints = [replace(bp, rng=bp.rng.copy(), input_sampler=_fresh(bp.input_sampler),
                                   output_sampler=_fresh(bp.output_sampler),
                                   think_sampler=_fresh(bp.think_sampler)) for bp in plan.blueprints]
        self.by_code: Dict[int, int] = {bp.session: k for k, bp in enumerate(self.blueprints)}
        n = len(self.blueprints)
        self.state = np.zeros(n, np.int8)
        self.round = np.zeros(n, np.int64)
        self.budget = int(plan.follow_up_budget)
        self.budget_enabled = self.budget >= 0
        self.follow_ups = 0
        self.counter = 0
        self.order = NameOrder()
        self.next_id = 0
        self._code_to_bp = None
        self._added_session: List[int] = []

    def attach(self, sim) -> None:
        """Install the manager as a finish hook of ``sim`` (its table gets private name lists)."""
        t = sim.table
        cols = dict(t.cols)
        if "name" not in cols:
            cols["name"] = np.zeros(len(t), np.int32)
        names = {k: list(v) for k, v in t.names.items()}
        names.setdefault("name", [""])
        t = sim.table = RequestTable(cols, names, t.group_seeds)
        ids = t["request_id"]
        self.next_id = int(ids.max()) + 1 if len(ids) else 0
        lut = np.full(len(t.names["session"]) + 1, -1, np.int64)
        for code, k in self.by_code.items():
            lut[code] = k
        self._code_to_bp = lut
        sim.add_finish_hook(self.on_finish)

    # -------------------------------------------------------------- OnComplete
    def on_finish(self, sim, rows) -> None:
        t = sim.table
        ses = t["session"]
        n0 = len(ses)
        new = []
        rq = sim.rq
        for r in rows.tolist():
            code = int(ses[r]) if r < n0 else self._added_session[r - n0]
            if code == 0:
                continue
            k = int(self._code_to_bp[code]) if code < len(self._code_to_bp) else -1
            if k < 0:
                continue  # open-loop session (BLIS logs a blueprint mismatch and ignores it)
            nxt = self._on_complete(rq, r, k)
            if nxt is not None:
                new.append(nxt)
        if new:
            self._inject(sim, new)

    def _on_complete(self, rq, r, k):
        if self.state[k] != ACTIVE:
            return None
        st = int(rq[Lo.R_STATE, r])
        if st == Lo.ST_TIMED_OUT or st == Lo.ST_DROPPED:
            self.state[k] = CANCELLED
            return None
        bp = self.blueprints[k]
        if not bp.unlimited and self.round[k] >= bp.max_rounds - 1:
            self.state[k] = COMPLETED
            return None
        if self.budget_enabled and self.follow_ups >= self.budget:
            self.state[k] = BUDGET_EXHAUSTED
            return None
        tick = int(rq[Lo.R_DONE_TICK, r])
        if bp.think_sampler is not None:
            think = bp.think_sampler.sample(bp.rng)
        else:
            think = bp.think_time_us
        arrival = tick + think
        if arrival > bp.horizon:
            self.state[k] = HORIZON_INTERRUPTED
            return None
        st_ = bp.rng.state
        in_len = int(sample_length_nb(st_, bp.input_sampler.kind, bp.input_sampler.params,
                                      bp.input_sampler.values, bp.input_sampler.cdf))
        out_len = int(sample_length_nb(st_, bp.output_sampler.kind, bp.output_sampler.params,
                                       bp.output_sampler.values, bp.output_sampler.cdf))
        skip_intn_nb(st_, _syn.MAX_TOKEN_ID, in_len + out_len)
        L = int(rq[Lo.R_ILEN, r])
        N = int(rq[Lo.R_OLEN, r])
        actual = int(rq[Lo.R_PI, r]) - L
        if actual < 0:
            log.error("session %s round %d: ProgressIndex < input length; accumulating no output",
                      bp.sid, int(self.round[k]))
            actual = 0
        if bp.accumulate:
            ctx = L
            if actual > 0 and N > 0:
                if actual > N:
                    log.error("session %s round %d: actual output %d > oracle output %d; cancelling the session",
                              bp.sid, int(self.round[k]), actual, N)
                    self.state[k] = CANCELLED
                    return None
                ctx = L + actual
            parent, ctx_len = r, ctx
        elif bp.prefix_len > 0 and bp.prefix_row >= 0:
            parent, ctx_len = bp.prefix_row, bp.prefix_len
        else:
            parent, ctx_len = -1, 0
        self.round[k] += 1
        self.counter += 1
        if bp.timeout is None:
            deadline = arrival + _syn.DEFAULT_TIMEOUT_US
        elif bp.timeout == 0:
            deadline = 0
        else:
            deadline = arrival + bp.timeout
        if self.budget_enabled:
            self.follow_ups += 1
        name = f"session_{bp.sid}_round_{int(self.round[k])}_{self.counter}"
        seed = splitmix64((bp.rng.seed & 0xFFFFFFFFFFFFFFFF) ^ (int(self.round[k]) * 0x9E3779B97F4A7C15
                                                                & 0xFFFFFFFFFFFFFFFF))
        return (arrival, ctx_len + in_len, out_len, parent, ctx_len, deadline, bp, int(self.round[k]), name, seed)

    def _inject(self, sim, new) -> None:
        t = sim.table
        k = len(new)
        cols = {}
        for name, col in t.cols.items():
            cols[name] = np.zeros(k, col.dtype)
        cols["context_parent"] = np.full(k, -1, np.int64)
        names_list = t.names["name"]
        for j, (arrival, ilen, olen, parent, ctx_len, deadline, bp, rnd, name, seed) in enumerate(new):
            cols["request_id"][j] = self.next_id
            self.next_id += 1
            cols["arrival_us"][j] = arrival
            cols["input_len"][j] = ilen
            cols["output_len"][j] = olen
            cols["max_output_len"][j] = olen
            cols["deadline_us"][j] = deadline
            cols["slo_class"][j] = bp.slo_class
            cols["tenant"][j] = bp.tenant
            cols["client"][j] = bp.client
            cols["model"][j] = bp.model
            cols["session"][j] = bp.session
            cols["round_index"][j] = rnd
            cols["content_seed"][j] = np.uint64(seed)
            cols["context_parent"][j] = parent
            cols["context_len"][j] = ctx_len
            if "adapter" in cols:
                cols["adapter"][j] = bp.adapter
            if "slo_target_us" in cols:
                cols["slo_target_us"][j] = bp.slo_target_us
            names_list.append(name)
            cols["name"][j] = len(names_list) - 1
        rows = RequestTable(cols, t.names, t.group_seeds)
        idx = sim.add_requests(rows)
        self._added_session.extend(cols["session"].tolist())
        for j, r in enumerate(idx.tolist()):
            self.order.insert(sim, new[j][8], r)

    def counts(self) -> Dict[str, int]:
        """Sessions per final state (``active`` = still running or never finished)."""
        return {STATE_NAMES[s]: int((self.state == s).sum()) for s in range(5)}


# ---------------------------------------------------------------------------
# Generation (GenerateWorkload for closed-loop clients)
# ---------------------------------------------------------------------------
def is_closed_loop(client) -> bool:
    """BLIS ``isClosedLoop``: ``closed_loop`` when set, else true exactly for multi-turn clients."""
    if client.closed_loop is not None:
        return bool(client.closed_loop)
    return client.reasoning is not None and client.reasoning.multi_turn is not None


def needs_sessions(clients: Sequence) -> bool:
    """True when the expanded client list has closed-loop multi-turn or concurrency clients."""
    return any(c.concurrency > 0 or (is_closed_loop(c) and c.reasoning is not None
                                     and c.reasoning.multi_turn is not None) for c in clients)


@njit
def reasoning_client_nb(state, cap, horizon, single, a_kind, a_params, a_seq,
                        i_kind, i_params, i_values, i_cdf, o_kind, o_params, o_values, o_cdf,
                        r_kind, r_params, r_values, r_cdf, has_rr,
                        win_start, win_end, max_rounds, think, token_space):
    """A multi-turn client's sessions with BLIS's draws (``GenerateReasoningRequests`` per session).

    Returns per kept round: arrival, new-input length, output length, round index,
    session number (0, 1, ... per client), reason ratio; and the ``Int63`` of each session id.
    """
    capacity = 1024
    arr = np.empty(capacity, np.int64)
    inl = np.empty(capacity, np.int64)
    outl = np.empty(capacity, np.int64)
    rnd = np.empty(capacity, np.int64)
    sess = np.empty(capacity, np.int64)
    rr = np.empty(capacity, np.float64)
    sids = np.empty(64, np.int64)
    cursor = np.zeros(1, np.int64)
    n_win = win_start.shape[0]
    last_end = np.int64(0)
    for w in range(n_win):
        if win_end[w] > last_end:
            last_end = win_end[w]
    n = 0
    ns = 0
    generated = np.int64(0)
    t = np.int64(0)
    while True:
        if single:
            if ns > 0:
                break
            iat = sample_iat_nb(state, a_kind, a_params, a_seq, cursor)
            if iat == 0:
                break
            start = iat
            if n_win > 0:
                start = win_start[0] + iat
            if start >= horizon:
                break
            if n_win > 0:
                inside = False
                for w in range(n_win):
                    if start >= win_start[w] and start < win_end[w]:
                        inside = True
                        break
                if not inside:
                    break
        else:
            if t >= horizon:
                break
            if cap > 0 and generated >= cap:
                break
            iat = sample_iat_nb(state, a_kind, a_params, a_seq, cursor)
            if iat == 0:
                break
            if iat >= horizon - t:
                break
            t += iat
            if n_win > 0:
                inside = False
                for w in range(n_win):
                    if t >= win_start[w] and t < win_end[w]:
                        inside = True
                        break
                if not inside:
                    if t >= last_end:
                        break
                    continue
            start = t
        # ---- one session
        sid = int63_nb(state)
        if ns == sids.shape[0]:
            s2 = np.empty(2 * ns, np.int64)
            s2[:ns] = sids[:ns]
            sids = s2
        sids[ns] = sid
        r0i = sample_length_nb(state, i_kind, i_params, i_values, i_cdf)
        r0o = sample_length_nb(state, o_kind, o_params, o_values, o_cdf)
        cur = start
        stopped = False
        for k in range(max_rounds):
            if k == 0:
                li = r0i
                lo = r0o
            else:
                li = sample_length_nb(state, i_kind, i_params, i_values, i_cdf)
                lo = sample_length_nb(state, o_kind, o_params, o_values, o_cdf)
            skip_intn_nb(state, token_space, li + lo)
            ratio = 0.0
            if has_rr:
                pct = sample_length_nb(state, r_kind, r_params, r_values, r_cdf)
                ratio = min(1.0, max(0.0, pct / 100.0))
            keep = not stopped
            if keep and cur >= horizon:
                stopped = True
                keep = False
            if keep and n_win > 0:
                inside = False
                for w in range(n_win):
                    if cur >= win_start[w] and cur < win_end[w]:
                        inside = True
                        break
                keep = inside
            if keep:
                if n == capacity:
                    capacity *= 2
                    a2 = np.empty(capacity, np.int64)
                    a2[:n] = arr[:n]
                    arr = a2
                    a2 = np.empty(capacity, np.int64)
                    a2[:n] = inl[:n]
                    inl = a2
                    a2 = np.empty(capacity, np.int64)
                    a2[:n] = outl[:n]
                    outl = a2
                    a2 = np.empty(capacity, np.int64)
                    a2[:n] = rnd[:n]
                    rnd = a2
                    a2 = np.empty(capacity, np.int64)
                    a2[:n] = sess[:n]
                    sess = a2
                    f2 = np.empty(capacity, np.float64)
                    f2[:n] = rr[:n]
                    rr = f2
                arr[n] = cur
                inl[n] = li
                outl[n] = lo
                rnd[n] = k
                sess[n] = ns
                rr[n] = ratio
                n += 1
            cur += think
            cur += lo
        generated += max_rounds
        ns += 1
    return (arr[:n].copy(), inl[:n].copy(), outl[:n].copy(), rnd[:n].copy(), sess[:n].copy(), rr[:n].copy(),
            sids[:ns].copy())


def _sampler_args(s: LengthSampler):
    return s.kind, s.params.copy(), s.values, s.cdf


def _deadline_default(arrival: np.ndarray, timeout: Optional[int]) -> np.ndarray:
    """``computeDeadline(arrival, timeout, isSession=true)``."""
    if timeout is None:
        return arrival + np.int64(_syn.DEFAULT_TIMEOUT_US)
    if timeout == 0:
        return np.zeros(len(arrival), np.int64)
    return arrival + np.int64(timeout)


def generate_session_workload(spec, horizon_us: int, max_requests: int):
    """BLIS's ``GenerateWorkload`` for a validated, expanded spec with closed-loop sessions or concurrency
    clients: ``(RequestTable, SessionPlan)``.

    Single-shot clients are generated as by :func:`blis.workload.synthesis.generate_requests`;
    closed-loop multi-turn clients generate every round (for BLIS's draws and its
    ``num_requests`` truncation) and keep round 0; concurrency clients add one seed per user.
    """
    clients = list(spec.clients)
    seed = int(spec.seed)
    for c in clients:
        if c.reasoning is not None and c.reasoning.multi_turn is not None and not is_closed_loop(c):
            raise ConfigError(f"client {c.id!r}: closed_loop must be true (or absent) for multi-turn clients in "
                              "a workload with closed-loop sessions or concurrency clients (open-loop multi-turn clients "
                              "cannot be mixed with them in this version), got false")
        if getattr(c, "multimodal", None) is not None:
            raise ConfigError(f"client {c.id!r}: multimodal must be empty for closed-loop workloads in this "
                              f"version, got {c.multimodal!r}")
        if any(ov for _, _, ov in _syn._windows(c)):
            raise ConfigError(f"client {c.id!r}: lifecycle windows must not override trace_rate/arrival/"
                              "distributions for closed-loop workloads (time-varying path not implemented)")
    rng = GoRand(derive_seed(seed, SUBSYSTEM_WORKLOAD_GEN))
    rates = _syn.normalize_rates(clients, float(spec.aggregate_rate))
    prefix_len: Dict[str, int] = {}
    for c in clients:
        if c.prefix_group and c.prefix_group not in prefix_len:
            prefix_len[c.prefix_group] = c.prefix_length if c.prefix_length > 0 else _syn.DEFAULT_PREFIX_LENGTH
            rng.skip_intn(_syn.MAX_TOKEN_ID, prefix_len[c.prefix_group])

    names: Dict[str, List[str]] = {k: [""] for k in ("prefix_group", "slo_class", "tenant", "client", "model",
                                                      "session", "adapter", "name")}
    group_alias: Dict[str, int] = {}

    def code(col, value):
        lst = names[col]
        if value in lst:
            return lst.index(value)
        lst.append(value)
        return len(lst) - 1

    def hidden_group(g):
        """A prefix-group code labelled "" that shares group g's content (BLIS's reasoning rounds carry
        the prefix tokens and PrefixLength but no PrefixGroup)."""
        if g not in group_alias:
            names["prefix_group"].append("")
            group_alias[g] = len(names["prefix_group"]) - 1
        return group_alias[g]

    cap_single = max_requests if max_requests > 0 else 0
    cap_multi = 2 * max_requests if max_requests > 0 else 0
    parts = []   # dicts of per-row arrays, in client order
    for idx, c in enumerate(clients):
        if rates[idx] <= 0:
            continue
        client_seed = rng.int63()
        state = go_seed_nb(client_seed)
        where = f"client {c.id!r}"
        if getattr(c, "custom_arrival", None) is not None:
            a = c.custom_arrival.make_sampler(GoRand(int(int63_nb(state))))
        else:
            a = make_arrival_sampler(c.arrival.process, rates[idx], cv=c.arrival.cv, shape=c.arrival.shape,
                                     scale=c.arrival.scale)
        s_in = make_length_sampler(c.input_distribution.type, c.input_distribution.params,
                                   where=f"{where} input_distribution")
        s_out = make_length_sampler(c.output_distribution.type, c.output_distribution.params,
                                    where=f"{where} output_distribution")
        wins = c.lifecycle or []
        ws = np.array([w.start_us for w in wins], np.int64)
        we = np.array([w.end_us for w in wins], np.int64)
        g = c.prefix_group or ""
        plen = prefix_len.get(g, 0) if g else 0
        mt = c.reasoning.multi_turn if c.reasoning is not None else None
        if mt is not None:
            rrd = c.reasoning.reason_ratio_distribution
            has_rr = bool(rrd.type)
            s_rr = make_length_sampler(rrd.type, rrd.params, where=f"{where} reason_ratio_distribution") \
                if has_rr else make_length_sampler("constant", {"value": 1})
            if mt.max_rounds <= 0:
                continue
            arr, inl, outl, rnd, sess, rr, sids = reasoning_client_nb(
                state, cap_multi, horizon_us, bool(mt.single_session), a.kind, a.params, a.seq,
                *_sampler_args(s_in), *_sampler_args(s_out), *_sampler_args(s_rr), has_rr,
                ws, we, int(mt.max_rounds), int(mt.think_time_us), _syn.MAX_TOKEN_ID)
            m = len(arr)
            sid_codes = np.array([code("session", f"sess_{int(x)}") for x in sids.tolist()], np.int32)
            parts.append(dict(
                client_idx=idx, arrival=arr, input_len=inl + plen, output_len=outl,
                prefix_len=np.full(m, plen, np.int64),
                prefix_group=np.full(m, hidden_group(g) if g else 0, np.int32),
                deadline_us=_deadline_default(arr, c.timeout),
                session=sid_codes[sess] if m else np.zeros(0, np.int32), round_index=rnd,
                reason_ratio=rr, streaming=np.zeros(m, np.bool_),
                content_seed=_syn.content_seeds(client_seed, m), closed=True))
        else:
            arr, inl, outl = _syn.generate_client_nb(
                state, cap_single, horizon_us, a.kind, a.params, a.seq,
                *_sampler_args(s_in), *_sampler_args(s_out), ws, we, _syn.MAX_TOKEN_ID)
            m = len(arr)
            parts.append(dict(
                client_idx=idx, arrival=arr, input_len=inl + plen, output_len=outl,
                prefix_len=np.full(m, plen, np.int64),
                prefix_group=np.full(m, code("prefix_group", g), np.int32),
                deadline_us=_syn._deadlines(arr, c.timeout),
                session=np.zeros(m, np.int32), round_index=np.zeros(m, np.int64),
                reason_ratio=np.zeros(m), streaming=np.full(m, bool(c.streaming), np.bool_),
                content_seed=_syn.content_seeds(client_seed, m), closed=False))
        p = parts[-1]
        p["client"] = np.full(m, code("client", c.id or ""), np.int32)
        for col, value in (("slo_class", c.slo_class), ("tenant", c.tenant_id), ("model", c.model),
                           ("adapter", c.adapter)):
            p[col] = np.full(m, code(col, value or ""), np.int32)
        p["slo_target_us"] = np.full(m, int(c.slo_target_us or 0), np.int64)

    keys = ("arrival", "input_len", "output_len", "prefix_len", "prefix_group", "deadline_us", "session",
            "round_index", "reason_ratio", "streaming", "content_seed", "client", "slo_class", "tenant", "model",
            "adapter", "slo_target_us")

    def cat(k, dtype):
        vals = [p[k] for p in parts]
        return np.concatenate(vals).astype(dtype) if vals else np.zeros(0, dtype)

    cols = {k: cat(k, np.uint64 if k == "content_seed" else (np.float64 if k == "reason_ratio" else
                                                            (np.bool_ if k == "streaming" else np.int64)))
            for k in keys}
    closed = np.concatenate([np.full(len(p["arrival"]), p["closed"]) for p in parts]) if parts else \
        np.zeros(0, bool)
    # GenerateRequests: stable sort by arrival, truncate to max_requests (every round counts)
    order = np.argsort(cols["arrival"], kind="stable")
    if max_requests > 0 and len(order) > max_requests:
        order = order[:max_requests]
    # GenerateWorkload: closed-loop sessions keep round 0 only
    keep = ~(closed[order] & (cols["round_index"][order] != 0))
    order = order[keep]
    cols = {k: v[order] for k, v in cols.items()}
    n_kept = len(order)

    # ---- blueprints of closed-loop multi-turn clients (seed + 7919, one Int63 per session in sorted id order)
    bp_rng = GoRand(to_int64(seed + BLUEPRINT_SEED_OFFSET))
    blueprints: List[SessionBlueprint] = []
    sess_names = names["session"]
    pending_prefix = []   # (blueprint, row in the kept order) resolved after the final sort
    for c in clients:
        if not is_closed_loop(c) or c.reasoning is None or c.reasoning.multi_turn is None:
            continue
        mt = c.reasoning.multi_turn
        cc = code("client", c.id or "")
        mine = np.flatnonzero((cols["client"] == cc) & (cols["session"] != 0) & (cols["round_index"] == 0))
        s_in = make_length_sampler(c.input_distribution.type, c.input_distribution.params)
        s_out = make_length_sampler(c.output_distribution.type, c.output_distribution.params)
        prefix_row, plen = -1, 0
        if c.prefix_group and c.prefix_length > 0 and len(mine):
            first = int(mine[0])
            if cols["input_len"][first] >= c.prefix_length:
                prefix_row, plen = first, int(c.prefix_length)
        if not len(mine):
            log.warning("closed-loop client %r produced no sessions", c.id)
        for sid in sorted({sess_names[int(x)] for x in cols["session"][mine].tolist()}, key=str.encode):
            bp = SessionBlueprint(
                session=sess_names.index(sid), sid=sid, client=cc, max_rounds=int(mt.max_rounds), unlimited=False,
                accumulate=mt.context_growth == "accumulate", think_time_us=int(mt.think_time_us),
                timeout=c.timeout, horizon=int(horizon_us), input_sampler=s_in, output_sampler=s_out,
                rng=GoRand(bp_rng.int63()), prefix_len=plen,
                tenant=code("tenant", c.tenant_id or ""), slo_class=code("slo_class", c.slo_class or ""),
                model=code("model", c.model or ""), adapter=code("adapter", c.adapter or ""),
                slo_target_us=int(c.slo_target_us or 0))
            blueprints.append(bp)
            pending_prefix.append((bp, prefix_row))

    # ---- concurrency users (seed + 10007): user seed, lengths, token draws, blueprint seed
    c_rng = GoRand(to_int64(seed + CONCURRENCY_SEED_OFFSET))
    seeds = {k: [] for k in keys}
    total_users = 0
    for c in clients:
        if c.concurrency <= 0:
            continue
        s_in = make_length_sampler(c.input_distribution.type, c.input_distribution.params,
                                   where=f"client {c.id!r} input_distribution")
        s_out = make_length_sampler(c.output_distribution.type, c.output_distribution.params,
                                    where=f"client {c.id!r} output_distribution")
        g = c.prefix_group or ""
        plen = prefix_len.get(g, 0) if g else 0
        for u in range(int(c.concurrency)):
            if max_requests > 0 and n_kept + len(seeds["arrival"]) >= max_requests:
                break
            user_seed = c_rng.int63()
            user = GoRand(user_seed)
            sid = f"concurrency_{c.id}_user_{u}"
            arrival = u * int(c.think_time_us) // int(c.concurrency) \
                if c.think_time_us > 0 and c.concurrency > 1 else 0
            li = s_in.sample(user)
            lo = s_out.sample(user)
            user.skip_intn(_syn.MAX_TOKEN_ID, li + lo)
            scode = code("session", sid)
            for k, v in (("arrival", arrival), ("input_len", li + plen), ("output_len", lo), ("prefix_len", plen),
                         ("prefix_group", code("prefix_group", g)),
                         ("deadline_us", int(_deadline_default(np.array([arrival]), c.timeout)[0])),
                         ("session", scode), ("round_index", 0), ("reason_ratio", 0.0),
                         ("streaming", bool(c.streaming)),
                         ("content_seed", splitmix64(user_seed & 0xFFFFFFFFFFFFFFFF)),
                         ("client", code("client", c.id or "")), ("slo_class", code("slo_class", c.slo_class or "")),
                         ("tenant", code("tenant", c.tenant_id or "")), ("model", code("model", c.model or "")),
                         ("adapter", code("adapter", c.adapter or "")),
                         ("slo_target_us", int(c.slo_target_us or 0))):
                seeds[k].append(v)
            bp = SessionBlueprint(
                session=scode, sid=sid, client=code("client", c.id or ""), max_rounds=0, unlimited=True,
                accumulate=False, think_time_us=int(c.think_time_us), timeout=c.timeout, horizon=int(horizon_us),
                input_sampler=s_in, output_sampler=s_out, rng=GoRand(c_rng.int63()), prefix_len=plen,
                tenant=code("tenant", c.tenant_id or ""), slo_class=code("slo_class", c.slo_class or ""),
                model=code("model", c.model or ""), adapter=code("adapter", c.adapter or ""),
                slo_target_us=int(c.slo_target_us or 0))
            blueprints.append(bp)
            pending_prefix.append((bp, ("seed", len(seeds["arrival"]) - 1)))
        total_users += int(c.concurrency)

    n_seeds = len(seeds["arrival"])
    for k in keys:
        dt = cols[k].dtype
        cols[k] = np.concatenate([cols[k], np.array(seeds[k], dtype=dt)]) if n_seeds else cols[k]
    order = np.argsort(cols["arrival"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    where_now = np.empty(len(order), np.int64)
    where_now[order] = np.arange(len(order))
    for bp, src in pending_prefix:
        if isinstance(src, tuple):
            bp.prefix_row = int(where_now[n_kept + src[1]]) if bp.prefix_len > 0 else -1
        else:
            bp.prefix_row = int(where_now[src]) if src >= 0 else -1
            if bp.prefix_row < 0:
                bp.prefix_len = 0
    n = len(order)
    budget = -1
    if max_requests > 0 and total_users > 0:
        budget = max(0, max_requests - n)

    table_cols = {
        "request_id": np.arange(n, dtype=np.int64), "arrival_us": cols["arrival"],
        "input_len": cols["input_len"], "output_len": cols["output_len"], "prefix_len": cols["prefix_len"],
        "prefix_group": cols["prefix_group"], "max_output_len": cols["output_len"].copy(),
        "deadline_us": cols["deadline_us"], "slo_class": cols["slo_class"], "tenant": cols["tenant"],
        "client": cols["client"], "model": cols["model"], "session": cols["session"],
        "round_index": cols["round_index"], "streaming": cols["streaming"], "content_seed": cols["content_seed"],
    }
    for name, dtype, _, _ in _syn.EXTRA_REQUEST_FIELDS:
        table_cols[name] = np.ascontiguousarray(cols[name], dtype) if name in cols else np.zeros(n, dtype)
    table_cols["name"] = np.zeros(n, np.int32)
    too_long = np.flatnonzero((table_cols["input_len"] > 2**31 - 1) | (table_cols["output_len"] > 2**31 - 1))
    if len(too_long):
        raise ConfigError(f"generate_requests: token lengths must be < 2^31, got input "
                          f"{int(table_cols['input_len'][too_long[0]])}")
    gseeds = np.zeros(len(names["prefix_group"]), np.uint64)
    for i, g in enumerate(names["prefix_group"]):
        if i and g:
            gseeds[i] = np.uint64(_syn.group_seed(seed, g))
    for g, i in group_alias.items():
        gseeds[i] = np.uint64(_syn.group_seed(seed, g))
    table = RequestTable(table_cols, names, gseeds)
    return table, SessionPlan(blueprints, budget)
