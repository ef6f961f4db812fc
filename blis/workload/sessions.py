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
import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..kernels import layout as Lo
from ..kernels.gorand import skip_intn_nb
from ..requests import FIELD_DEFAULTS, RequestTable
from ..rng import GoRand, SUBSYSTEM_WORKLOAD_GEN, derive_seed, splitmix64, to_int64
from . import generator as _gen
from . import synthesis as _syn
from .distributions import (LENGTH_CONSTANT, LENGTH_LOGNORMAL, LengthSampler, go_int, make_length_sampler,
                            sample_length_nb, sequence_sampler)

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
def needs_sessions(clients: Sequence) -> bool:
    """True when the expanded client list has closed-loop multi-turn or concurrency clients."""
    return any(c.concurrency > 0 or (_gen.is_closed_loop(c) and _gen.is_multi_turn(c)) for c in clients)


def generate_session_workload(spec, horizon_us: int, max_requests: int, generate=None):
    """BLIS's ``GenerateWorkload`` for a validated, expanded spec with closed-loop sessions or concurrency
    clients: ``(RequestTable, SessionPlan)``.

    Every client is first generated exactly as an open-loop workload
    (``generate(spec, horizon_us, max_requests)``, by default
    :func:`blis.workload.synthesis.generate_requests`: all rounds of every
    session, BLIS's draws and ``num_requests`` truncation); closed-loop
    multi-turn sessions then keep round 0 and get a blueprint each, and
    concurrency clients add one seed request per user.
    """
    clients = list(spec.clients)
    seed = int(spec.seed)
    generate = generate or _syn.generate_requests
    full = generate(spec, int(horizon_us), int(max_requests))
    client_names = full.names["client"]
    closed = [c for c in clients if _gen.is_closed_loop(c) and _gen.is_multi_turn(c)]
    ccodes = np.array([client_names.index(c.id or "") for c in closed if (c.id or "") in client_names], np.int32)
    first_rounds = (full["session"] != 0) & (full["round_index"] == 0)
    drop = np.isin(full["client"], ccodes) & (full["session"] != 0) & (full["round_index"] != 0)
    keep_rows = np.flatnonzero(~drop)

    # ---- blueprints of closed-loop multi-turn clients (seed + 7919, one Int63 per session in sorted id order)
    bp_rng = GoRand(to_int64(seed + BLUEPRINT_SEED_OFFSET))
    t = full.take(keep_rows)
    cols = t.cols
    sess_names = t.names["session"]
    blueprints: List[SessionBlueprint] = []
    pending_prefix = []   # (blueprint, row in t) resolved after the final sort
    for c in closed:
        mt = c.reasoning.multi_turn
        cc = t.code("client", c.id or "")
        mine = np.flatnonzero((cols["client"] == cc) & first_rounds[keep_rows])
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
                tenant=t.code("tenant", c.tenant_id or ""), slo_class=t.code("slo_class", c.slo_class or ""),
                model=t.code("model", c.model or ""), adapter=t.code("adapter", c.adapter or ""),
                slo_target_us=int(c.slo_target_us or 0))
            blueprints.append(bp)
            pending_prefix.append((bp, prefix_row))

    # ---- concurrency users (seed + 10007): user seed, lengths, token draws, blueprint seed
    n_kept = len(t)
    prefix_len = _syn.draw_prefixes(clients, GoRand(derive_seed(seed, SUBSYSTEM_WORKLOAD_GEN)))
    c_rng = GoRand(to_int64(seed + CONCURRENCY_SEED_OFFSET))
    seeds: Dict[str, list] = {k: [] for k in ("arrival_us", "input_len", "output_len", "prefix_len", "prefix_group",
                                              "deadline_us", "session", "streaming", "content_seed", "client",
                                              "slo_class", "tenant", "model", "adapter", "slo_target_us")}
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
            if max_requests > 0 and n_kept + len(seeds["arrival_us"]) >= max_requests:
                break
            user_seed = c_rng.int63()
            user = GoRand(user_seed)
            sid = f"concurrency_{c.id}_user_{u}"
            arrival = u * int(c.think_time_us) // int(c.concurrency) \
                if c.think_time_us > 0 and c.concurrency > 1 else 0
            li = s_in.sample(user)
            lo = s_out.sample(user)
            user.skip_intn(_syn.MAX_TOKEN_ID, li + lo)
            scode = t.code("session", sid)
            row = dict(arrival_us=arrival, input_len=li + plen, output_len=lo, prefix_len=plen,
                       prefix_group=t.code("prefix_group", g),
                       deadline_us=int(_gen.deadlines(np.array([arrival], np.int64), c.timeout, True)[0]),
                       session=scode, streaming=bool(c.streaming),
                       content_seed=splitmix64(user_seed & 0xFFFFFFFFFFFFFFFF),
                       client=t.code("client", c.id or ""), slo_class=t.code("slo_class", c.slo_class or ""),
                       tenant=t.code("tenant", c.tenant_id or ""), model=t.code("model", c.model or ""),
                       adapter=t.code("adapter", c.adapter or ""), slo_target_us=int(c.slo_target_us or 0))
            for k, v in row.items():
                seeds[k].append(v)
            bp = SessionBlueprint(
                session=scode, sid=sid, client=row["client"], max_rounds=0, unlimited=True,
                accumulate=False, think_time_us=int(c.think_time_us), timeout=c.timeout, horizon=int(horizon_us),
                input_sampler=s_in, output_sampler=s_out, rng=GoRand(c_rng.int63()), prefix_len=plen,
                tenant=row["tenant"], slo_class=row["slo_class"], model=row["model"], adapter=row["adapter"],
                slo_target_us=row["slo_target_us"])
            blueprints.append(bp)
            pending_prefix.append((bp, n_kept + len(seeds["arrival_us"]) - 1 if plen > 0 else -1))
        total_users += int(c.concurrency)

    n_seeds = len(seeds["arrival_us"])
    if n_seeds:
        cols = {k: np.concatenate([v, np.array(seeds[k], v.dtype) if k in seeds else
                                   np.full(n_seeds, FIELD_DEFAULTS.get(k, 0), v.dtype)])
                for k, v in t.cols.items()}
        gseeds = np.zeros(len(t.names["prefix_group"]), np.uint64)
        gseeds[:len(t.group_seeds)] = t.group_seeds
        for i in range(len(t.group_seeds), len(gseeds)):
            gseeds[i] = np.uint64(_syn.group_seed(seed, t.names["prefix_group"][i]))
        cols["max_output_len"] = cols["output_len"].copy()
        t = RequestTable(cols, t.names, gseeds)
    order = np.argsort(t["arrival_us"], kind="stable")
    t = t.take(order)
    n = len(t)
    t.cols["request_id"] = np.arange(n, dtype=np.int64)
    where_now = np.empty(n, np.int64)
    where_now[order] = np.arange(n)
    for bp, src in pending_prefix:
        bp.prefix_row = int(where_now[src]) if src >= 0 else -1
        if bp.prefix_row < 0:
            bp.prefix_len = 0
    budget = -1
    if max_requests > 0 and total_users > 0:
        budget = max(0, max_requests - n)
    return t, SessionPlan(blueprints, budget)


# ---------------------------------------------------------------------------
# Closed-loop trace replay (blis replay --session-mode closed-loop)
# ---------------------------------------------------------------------------
THINK_TIME_DIST_TYPES = ("lognormal", "constant")


def _think_params(text: str, flag: str) -> Dict[str, str]:
    """BLIS's ``parseKVParams``: ``k=v,k=v`` (blank items skipped, duplicate keys refused)."""
    out: Dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"{flag}: parameter {item!r} must be key=value")
        key, value = item.split("=", 1)
        if key in out:
            raise ConfigError(f"{flag}: parameter {key!r} must be given once, got it twice")
        out[key] = value
    return out


def _time_us(text: str, flag: str, what: str) -> int:
    """BLIS's ``parseTimeToMicros``: suffix ``us``, ``ms`` or ``s``; a bare number is milliseconds."""
    from .servegen import go_parse_float

    for suffix, scale in (("us", 1), ("ms", 1_000), ("s", 1_000_000)):
        if text.endswith(suffix):
            number = text[:-len(suffix)]
            break
    else:
        number, scale = text, 1_000
    v = go_parse_float(number)
    if v is None or v != v or v < 0 or math.isinf(v):
        raise ConfigError(f"{flag}: {what} must be a non-negative time such as 500ms, 3s or 250us "
                          f"(a bare number is milliseconds), got {text!r}")
    return go_int(v * scale)


def parse_think_time_dist(text: str, flag: str = "--think-time-dist") -> LengthSampler:
    """BLIS's ``ParseThinkTimeDist``: a think-time sampler in µs from ``type:key=value,...``.

    ``lognormal:mu=M,sigma=S[,min=T][,max=T]`` -- ``ln(seconds)`` is normal(M, S)
    (sigma > 0), clamped to [min, max]; ``constant:value=T``.  Times take the
    suffix ``s``, ``ms`` or ``us``; a bare number is milliseconds.
    """
    from .servegen import go_parse_float

    if ":" not in text:
        raise ConfigError(f"{flag}: must have the form type:key=value,... (types: "
                          f"{', '.join(THINK_TIME_DIST_TYPES)}), got {text!r}")
    kind, rest = text.split(":", 1)
    params = _think_params(rest, flag)
    if kind == "lognormal":
        vals = {}
        for key in ("mu", "sigma"):
            if key not in params:
                raise ConfigError(f"{flag}: lognormal requires parameter {key!r} (required: mu, sigma), got {text!r}")
            v = go_parse_float(params[key])
            if v is None:
                raise ConfigError(f"{flag}: lognormal {key} must be a number, got {params[key]!r}")
            if v != v or math.isinf(v) or (key == "sigma" and v <= 0):
                need = "a finite positive number" if key == "sigma" else "a finite number"
                raise ConfigError(f"{flag}: lognormal {key} must be {need}, got {params[key]!r}")
            vals[key] = v
        lo = _time_us(params["min"], flag, "lognormal min") if "min" in params else 0
        hi = _time_us(params["max"], flag, "lognormal max") if "max" in params else 0
        if lo > 0 and hi > 0 and lo > hi:
            raise ConfigError(f"{flag}: lognormal min must be <= max, got min={lo} µs, max={hi} µs")
        # mu and sigma describe ln(seconds); the sampler draws microseconds
        return LengthSampler(LENGTH_LOGNORMAL, np.array([vals["mu"] + math.log(1e6), vals["sigma"],
                                                         float(lo), float(hi)]))
    if kind == "constant":
        if "value" not in params:
            raise ConfigError(f"{flag}: constant requires parameter 'value' (required: value), got {text!r}")
        return LengthSampler(LENGTH_CONSTANT, np.array([float(_time_us(params["value"], flag, "constant value"))]))
    raise ConfigError(f"{flag}: type must be one of {', '.join(THINK_TIME_DIST_TYPES)}, got {kind!r}")


def horizon_from_max_arrival(max_arrival: int) -> int:
    """BLIS's replay horizon rule: twice the latest arrival (10 minutes when it is <= 0, INT64_MAX on overflow)."""
    if max_arrival > INT64_MAX // 2:
        return int(INT64_MAX)
    if max_arrival <= 0:
        return 600_000_000
    return 2 * int(max_arrival)


def tracev2_session_workload(trace, seed: int = 42, think_sampler: Optional[LengthSampler] = None,
                             horizon_us: int = 0) -> RequestTable:
    """BLIS's ``LoadTraceV2SessionBlueprints``: the table ``blis replay --session-mode closed-loop`` injects.

    Every session's round 0 and every record without a session are injected at
    their recorded times (``send_time_us`` when > 0); ``table.sessions`` holds
    one blueprint per session (first-appearance order) whose follow-up rounds
    replay the recorded input/output lengths but arrive a think time after the
    previous round completes.  Think time: ``think_sampler`` when given (CLI),
    else the session's recorded ``think_time_us`` (rounds 1..N) when any is
    non-zero, else the gaps between recorded arrivals (clamped at 0).  The
    header's ``session_context_growth: accumulate`` makes each follow-up's input
    the previous round's input and actual output plus its recorded input.
    ``horizon_us <= 0``: no horizon for the follow-ups.  Token content (and
    the per-session RNG that lognormal think times draw from) follows BLIS's
    draws from ``seed``.
    """
    from .tracev2 import effective_input_tokens, prefix_group_lengths, tracev2_to_requests

    r = trace.records
    if len(trace) == 0:
        raise ConfigError("trace: must contain at least one record, got an empty trace")
    if horizon_us <= 0:
        horizon_us = int(INT64_MAX)
    sessions: Dict[str, List[int]] = {}
    loose: List[int] = []
    for i, sid in enumerate(r["session_id"].tolist()):
        if sid == "":
            loose.append(i)
        else:
            sessions.setdefault(sid, []).append(i)
    rounds = r["round_index"]
    for sid, rows in sessions.items():
        rows.sort(key=lambda i: int(rounds[i]))
        for k, i in enumerate(rows):
            if int(rounds[i]) != k:
                raise ConfigError(f"trace: session {sid!r} round_index values must be consecutive from 0, "
                                  f"expected {k}, got {int(rounds[i])}")
    growth = str(trace.header.get("session_context_growth", "") or "")
    if growth not in ("", "accumulate"):
        raise ConfigError(f"trace header: session_context_growth must be \"accumulate\" or empty, got {growth!r}")

    group_len = prefix_group_lengths(trace)
    effective = effective_input_tokens(trace)
    out_tokens = r["output_tokens"]
    rng = GoRand(int(seed))
    for g, plen in group_len.items():  # the shared prefix tokens, in order of first appearance
        rng.skip_intn(_syn.MAX_TOKEN_ID, plen)
    firsts = [rows[0] for rows in sessions.values()]
    table = tracev2_to_requests(trace, seed, rows=np.array(firsts + loose, np.int64))
    if not sessions:
        log.warning("--session-mode closed-loop: no session records found in trace; all requests injected "
                    "with fixed timing")
        return table
    where = table.list_order if table.list_order is not None else np.arange(len(table))
    think_recorded = r["think_time_us"]
    arrivals = r["arrival_time_us"]
    c = table.cols
    blueprints = []
    for k, (sid, rows) in enumerate(sessions.items()):
        row0 = int(where[k])
        follow = np.array(rows[1:], np.int64)
        if think_sampler is not None:
            think = think_sampler
        elif len(follow) and np.any(think_recorded[follow] != 0):
            think = sequence_sampler(np.maximum(think_recorded[follow], 0))
        elif len(follow):
            think = sequence_sampler(np.maximum(np.diff(arrivals[np.array(rows, np.int64)]), 0))
        else:
            think = None
        s_rng = GoRand(rng.int63())
        s_rng.skip_intn(_syn.MAX_TOKEN_ID, int(effective[rows[0]]))  # round 0's input and output tokens
        s_rng.skip_intn(_syn.MAX_TOKEN_ID, int(out_tokens[rows[0]]))
        plen = group_len.get(r["prefix_group"][rows[0]], 0)
        blueprints.append(SessionBlueprint(
            session=int(c["session"][row0]), sid=sid, client=int(c["client"][row0]), max_rounds=len(rows),
            unlimited=False, accumulate=growth == "accumulate", think_time_us=0, timeout=None,
            horizon=int(horizon_us), input_sampler=sequence_sampler(effective[follow]),
            output_sampler=sequence_sampler(out_tokens[follow]), rng=s_rng,
            prefix_row=row0 if plen > 0 else -1, prefix_len=plen, tenant=int(c["tenant"][row0]),
            slo_class=int(c["slo_class"][row0]), model=int(c["model"][row0]), adapter=int(c["adapter"][row0]),
            slo_target_us=int(c["slo_target_us"][row0]), think_sampler=think))
    table.sessions = SessionPlan(blueprints, -1)
    return table
