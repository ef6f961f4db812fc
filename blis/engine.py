"""Python driver of the compiled engine: builds the state arrays, runs the
kernel, grows structures on request and hands Python-policy decisions back.

A :class:`Simulation` is one run: a :class:`~blis.requests.RequestTable`, an
:class:`EngineConfig` and a latency model.  ``run()`` returns a
:class:`~blis.results.SimResults`.  All heavy work happens in
:func:`blis.kernels.engine.run_nb`; this module touches each request only when
building the arrays and when extracting results (vectorised).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from blis.kernels import layout as Lo
from blis.kernels.engine import run_nb
from blis.kernels.kvcache import kv_init, make_cpu_tier_arrays, make_kv_arrays
from blis.kernels.lru import lru_init, make_lru_arrays
from blis.batch_formation import BATCH_FORMATIONS
from blis.errors import ConfigError
from blis.requests import RequestTable
from blis.schedulers import scheduler_keys

INT64_MAX = np.iinfo(np.int64).max

#: cluster-event priorities handled by the autoscaler (the gateway handles the others)
AUTOSCALER_EVENTS = (Lo.CP_NODE_LIFECYCLE, Lo.CP_INST_LOADED, Lo.CP_SCALE_TICK, Lo.CP_SCALE_ACT)

PREEMPTION_POLICIES = {"fcfs": Lo.PREEMPT_FCFS, "": Lo.PREEMPT_FCFS, "priority": Lo.PREEMPT_PRIORITY}

#: BLIS's base SLO priority map (higher = more important); unknown/empty class -> 3
SLO_BASE_PRIORITIES = {"critical": 4, "standard": 3, "batch": -1, "sheddable": -2, "background": -3}
SLO_DEFAULT_PRIORITY = 3


def vllm_priorities(slo_names, overrides=None):
    """InvertForVLLM for every class name: ``maxPri - priority(class)`` (lower = more urgent)."""
    pri = dict(SLO_BASE_PRIORITIES)
    pri.update(overrides or {})
    max_pri = max([SLO_DEFAULT_PRIORITY] + list(pri.values()))
    return np.array([max_pri - pri.get(c, SLO_DEFAULT_PRIORITY) for c in slo_names], np.int64)


@dataclass
class EngineConfig:
    """Everything the compiled engine needs besides the workload and the latency model."""

    total_kv_blocks: int
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    long_prefill_token_threshold: int = 0
    max_model_len: int = 0
    horizon_us: int = INT64_MAX
    scheduler: str = "fcfs"
    preemption_policy: str = "fcfs"
    num_instances: int = 1
    routing: int = Lo.ROUTE_ROUND_ROBIN
    admission: int = Lo.ADMIT_ALWAYS
    admission_latency_us: int = 0
    routing_latency_us: int = 0
    snapshot_refresh_interval_us: int = 50000
    token_bucket_capacity: float = 10000.0
    token_bucket_refill_rate: float = 1000.0
    slo_priority_overrides: dict = field(default_factory=dict)
    seed: int = 42
    batch_formation: str = "vllm"
    routing_scorers: list = field(default_factory=list)  # [(name, weight)]; [] = BLIS default
    cache_signal_delay_us: int = 50000
    tier_shed_threshold: int = 0
    tier_shed_min_priority: int = 0
    gaie_qd_threshold: float = 5.0
    gaie_kv_threshold: float = 0.8
    tenant_budgets: dict = field(default_factory=dict)  # tenant -> fraction of capacity
    trace_decisions: bool = False
    kv_cpu_blocks: int = 0
    kv_transfer_bandwidth: float = 100.0  # blocks per us
    kv_transfer_base_latency_us: int = 0
    #: upper bound on input+output tokens of any request, including requests added while running
    #: (sizes per-request KV block lists); 0 = the longest request of the workload
    max_request_tokens: int = 0
    #: KV-array width per instance when instances differ (node pools); 0 = total_kv_blocks
    kv_blocks_capacity: int = 0


def _id_keys(ids: np.ndarray):
    """Keys ordering ids like BLIS's byte-wise comparison of "request_<id>" strings."""
    ids = ids.astype(np.int64)
    digits = np.ones(len(ids), np.int64)
    x = ids.copy()
    while True:
        x //= 10
        more = x > 0
        if not more.any():
            break
        digits += more
    key = ids * (10 ** (18 - digits))
    return key, digits


class Simulation:
    """One simulation run over a workload (see module doc)."""

    def __init__(self, table: RequestTable, cfg: EngineConfig, latency,
                 route_fn: Optional[Callable] = None, admit_fn: Optional[Callable] = None,
                 gateway=None, autoscaler=None):
        self.table = table
        self.cfg = cfg
        self.latency = latency
        self.route_fn = route_fn
        self.gateway = gateway
        if gateway is not None:
            admit_fn = self._gateway_admit
        self.admit_fn = admit_fn
        #: callables ``hook(sim, rows)`` run when requests reach a terminal state at an instance
        #: (completed, timed out, dropped); see :meth:`add_finish_hook`
        self.finish_hooks = []
        #: the autoscaler / node-pool manager (blis.autoscaler.Autoscaler) or None
        self.autoscaler = autoscaler
        #: instance IDs in list order (BLIS: instance_<i>, then autoscale-<model>-<seq>)
        self.instance_names = [f"instance_{i}" for i in range(int(cfg.num_instances))]
        self._build()
        if autoscaler is not None:
            autoscaler.attach(self)
        if getattr(table, "sessions", None) is not None:  # closed-loop sessions drive follow-up rounds
            from blis.workload.sessions import SessionManager
            self.sessions = SessionManager(table.sessions)
            self.sessions.attach(self)

    def add_finish_hook(self, hook: Callable) -> None:
        """Call ``hook(sim, rows)`` with the row indices of requests that reach a terminal state at an
        instance (completed, length-capped, timed out, dropped unservable), in the order the engine
        finishes them, at the clock of that event (``sim.clock``).  The hook may call
        :meth:`add_requests` (closed-loop sessions)."""
        self.finish_hooks.append(hook)
        self.cfg_arr[Lo.C_FIN_HOOK] = 1

    @property
    def clock(self) -> int:
        return int(self.glob[Lo.G_CLOCK])

    # ------------------------------------------------------------ build
    def _build(self):
        t, c = self.table, self.cfg
        if c.total_kv_blocks < 1 or c.block_size < 1 or c.max_num_seqs < 1 or c.num_instances < 1:
            raise ConfigError("EngineConfig: total_kv_blocks, block_size, max_num_seqs and num_instances must be >= 1, "
                              f"got {c.total_kv_blocks}, {c.block_size}, {c.max_num_seqs}, {c.num_instances}")
        if c.max_model_len > 0 and -(-c.max_model_len // c.block_size) > c.total_kv_blocks:
            raise ConfigError(f"EngineConfig: max_model_len must fit the KV cache (ceil({c.max_model_len}/"
                              f"{c.block_size}) <= {c.total_kv_blocks} blocks), got {c.max_model_len}")
        n = len(t)
        ni = int(c.num_instances)
        B = int(c.block_size)
        rq = np.zeros((Lo.NRF, n), np.int64)
        reorder = self._fill_rq(rq, t)
        self.rq = rq
        self.n_requests = n          # rows of rq in use (add_requests appends past the table)
        self._added = []             # RequestTables appended while running
        self.gseed = np.ascontiguousarray(t.group_seeds, np.uint64)
        self.arrival_order = np.arange(n, dtype=np.int64)  # the table is sorted by arrival

        ins = np.zeros((ni, Lo.NIF), np.int64)
        self.ins = ins
        hcap = 64
        self.ev = (np.zeros((ni, hcap), np.int64), np.zeros((ni, hcap), np.int64),
                   np.zeros((ni, hcap), np.int64))
        self.wq = np.zeros((ni, 64), np.int64)
        max_seqs = int(c.max_num_seqs)
        self.bt = np.zeros((ni, max_seqs + 1), np.int64)

        nb = int(c.total_kv_blocks)
        nb_arr = max(nb, int(c.kv_blocks_capacity))
        max_len = int((t["input_len"].astype(np.int64) + t["output_len"]).max()) if n else 1
        max_len = max(max_len, int(c.max_request_tokens))
        self.max_request_tokens = max_len
        if c.max_model_len > 0:
            max_len = min(max_len, int(c.max_model_len))
        # twice the longest request: BLIS's tiered reload may commit a block twice
        max_blocks = 2 * (min(nb_arr, -(-max(max_len, 1) // B) + 1) + 1)
        n_slots = max_seqs + 1
        self.kv = make_kv_arrays(ni, nb_arr, n_slots, max_blocks)
        for i in range(ni):
            kv_init(self.kv, ins, i, nb)

        tier = int(c.kv_cpu_blocks) > 0
        self.cpu = make_cpu_tier_arrays(ni, max(int(c.kv_cpu_blocks), 1), n_slots if tier else 1,
                                        max_blocks if tier else 1)
        for i in range(ni):
            lru_init(self.cpu, i)

        from blis.routing import DEFAULT_SCORERS, PREFIX_AFFINITY_CAPACITY, normalized
        scorers = list(c.routing_scorers) or list(DEFAULT_SCORERS)
        codes, weights = normalized(scorers)
        weighted = c.routing == Lo.ROUTE_WEIGHTED
        tenants = t.names["tenant"]
        budgets = np.full(len(tenants), -1.0, np.float64)
        for name, frac in (c.tenant_budgets or {}).items():
            if name in tenants:
                budgets[tenants.index(name)] = float(frac)
        tcap = 256 if c.trace_decisions else 1
        self.wr = (np.array(codes if weighted else [], np.int64), np.array(weights if weighted else [], np.float64),
                   np.zeros_like(self.kv[5]) if weighted else np.zeros((ni, 2), np.uint64),
                   np.zeros_like(self.kv[6]) if weighted else np.zeros((ni, 2), np.int32),
                   np.zeros(len(tenants), np.int64), budgets,
                   np.zeros((tcap, 4), np.int64), np.zeros(tcap, np.float64),
                   np.zeros((tcap, 3), np.int64), np.zeros(tcap, np.float64),
                   np.zeros((tcap, ni, 4), np.int64), np.zeros((tcap, ni, 2), np.float64),
                   np.zeros(ni + 3, np.int64),
                   np.arange(ni, dtype=np.int64), np.arange(ni, dtype=np.int64))  # routable list + inverse
        use_pa = weighted and Lo.SC_PREFIX_AFFINITY in codes
        self.pa = make_lru_arrays(ni, PREFIX_AFFINITY_CAPACITY if use_pa else 1)
        for i in range(ni):
            lru_init(self.pa, i)
            ins[i, Lo.I_CLOG_ON] = 1 if (weighted and (Lo.SC_PRECISE_PREFIX in codes or Lo.SC_NO_HIT_LRU in codes)
                                        and c.cache_signal_delay_us > 0) else 0
        self.hsc = (np.zeros(max_blocks + 1, np.uint64), np.zeros(ni, np.float64), np.zeros(ni, np.float64))
        self._engine_prepared = False  # blis.precompile consulted before the first run_nb call

        nchunks = max(4 * (max_seqs + 2) * ni, 256)
        self.itl = (np.zeros((nchunks, Lo.ITL_CHUNK), np.int64), np.full(nchunks, -1, np.int64),
                    np.arange(nchunks - 1, -1, -1, dtype=np.int64),
                    np.zeros((ni, 1024), np.int64), np.zeros((ni, 1024), np.int64))
        ccap = 64
        self.cev = (np.zeros((1, ccap), np.int64), np.zeros((1, ccap), np.int64),
                    np.zeros((1, ccap), np.int64))
        glob = np.zeros(Lo.NG, np.int64)
        glob[Lo.G_CSEQ] = n  # arrivals take seq ids 1..n (pushed first, as BLIS does)
        glob[Lo.G_DECISION] = -1
        glob[Lo.G_BUDGET] = -1
        glob[Lo.G_STOP_AT] = INT64_MAX
        glob[Lo.G_ITL_FREE_N] = nchunks
        glob[Lo.G_TB_TOKENS_BITS] = np.array([c.token_bucket_capacity], np.float64).view(np.int64)[0]
        glob[Lo.G_NROUTABLE] = ni
        self.glob = glob

        cfg = np.zeros(Lo.NCFG, np.int64)
        cfg[Lo.C_BLOCK] = B
        cfg[Lo.C_MAX_SEQS] = max_seqs
        cfg[Lo.C_BUDGET] = c.max_num_batched_tokens
        cfg[Lo.C_THRESHOLD] = c.long_prefill_token_threshold
        cfg[Lo.C_MML] = c.max_model_len
        cfg[Lo.C_HORIZON] = c.horizon_us
        cfg[Lo.C_SCHED] = 1 if reorder else 0
        cfg[Lo.C_PREEMPT] = PREEMPTION_POLICIES[c.preemption_policy]
        cfg[Lo.C_BACKEND] = self.latency.code
        cfg[Lo.C_OTPT] = self.latency.otpt_us
        cfg[Lo.C_POST] = self.latency.post_decode_us
        cfg[Lo.C_NINST] = ni
        cfg[Lo.C_ROUTING] = Lo.ROUTE_PYTHON if self.route_fn is not None else c.routing
        cfg[Lo.C_ADMISSION] = Lo.ADMIT_PYTHON if self.admit_fn is not None else c.admission
        cfg[Lo.C_ADMIT_LAT] = c.admission_latency_us
        cfg[Lo.C_ROUTE_LAT] = c.routing_latency_us
        cfg[Lo.C_SNAP_INTERVAL] = c.snapshot_refresh_interval_us
        cfg[Lo.C_NREQ] = n
        bf = BATCH_FORMATIONS.get(c.batch_formation)
        cfg[Lo.C_BF_NO_CHUNK] = 1 if bf.no_chunked_prefill else 0
        cfg[Lo.C_BF_MAX_ADMIT] = bf.max_admissions_per_step
        cfg[Lo.C_CPU_BLOCKS] = max(int(c.kv_cpu_blocks), 0)
        cfg[Lo.C_XFER_BASE] = int(c.kv_transfer_base_latency_us)
        cfg[Lo.C_CACHE_DELAY] = int(c.cache_signal_delay_us)
        cfg[Lo.C_PA_CAP] = PREFIX_AFFINITY_CAPACITY
        max_pri = int(max([3] + list({**SLO_BASE_PRIORITIES, **(c.slo_priority_overrides or {})}.values())))
        cfg[Lo.C_MAX_PRI] = max_pri
        cfg[Lo.C_TS_THRESHOLD] = int(c.tier_shed_threshold)
        cfg[Lo.C_TS_MIN_PRI] = int(c.tier_shed_min_priority)
        cfg[Lo.C_TENANT_CAP] = max(ni * max_seqs, 1) if c.tenant_budgets else 0
        cfg[Lo.C_TRACE] = 1 if c.trace_decisions else 0
        self.cfg_arr = cfg
        cfgf = np.zeros(Lo.NCFGF, np.float64)
        cfgf[Lo.CF_ALPHA0] = self.latency.queueing_alpha0
        cfgf[Lo.CF_ALPHA1] = self.latency.queueing_alpha1
        cfgf[Lo.CF_TB_CAP] = c.token_bucket_capacity
        cfgf[Lo.CF_TB_RATE] = c.token_bucket_refill_rate
        cfgf[Lo.CF_XFER_BW] = c.kv_transfer_bandwidth
        cfgf[Lo.CF_GAIE_QD] = c.gaie_qd_threshold
        cfgf[Lo.CF_GAIE_KV] = c.gaie_kv_threshold
        self.cfgf = cfgf
        self.lat = np.ascontiguousarray(self.latency.params, np.float64)
        self.scratch = (np.zeros(3, np.int64), np.zeros(max_blocks + 1, np.int64),
                        np.zeros(max_seqs + 2, np.int64), np.zeros(max_seqs + 2, np.int64),
                        np.zeros(max_seqs + 2, np.int64), np.zeros(max_seqs + 2, np.int64),
                        np.zeros(max_seqs + 2, np.int64), np.zeros(ni + 1, np.int64),
                        np.zeros(max_blocks + 1, np.int64), np.zeros(max_seqs + 8, np.int64))
        from blis.rng import PartitionedRNG
        self.router_rng = PartitionedRNG(int(c.seed)).for_subsystem("router").state

    def _fill_rq(self, rq, t):
        """Fill request rows ``rq[:, :len(t)]`` from table ``t``; returns the scheduler's reorder flag."""
        c = self.cfg
        rq[Lo.R_ARRIVAL] = t["arrival_us"]
        rq[Lo.R_ILEN] = t["input_len"]
        rq[Lo.R_OLEN] = t["output_len"]
        rq[Lo.R_PLEN] = t["prefix_len"]
        rq[Lo.R_GROUP] = t["prefix_group"]
        rq[Lo.R_MAXOUT] = t["max_output_len"]
        rq[Lo.R_DEADLINE] = t["deadline_us"]
        prio = vllm_priorities(t.names["slo_class"], c.slo_priority_overrides)
        rq[Lo.R_PRIO] = prio[t["slo_class"]]
        reorder, rq[Lo.R_SCHEDKEY] = scheduler_keys(c.scheduler, t, rq[Lo.R_PRIO])
        rq[Lo.R_ID] = t["request_id"]
        rq[Lo.R_IDKEY], rq[Lo.R_IDDIG] = _id_keys(t["request_id"])
        rq[Lo.R_CSEED] = t["content_seed"].view(np.int64)
        rq[Lo.R_SLO] = t["slo_class"]
        rq[Lo.R_TENANT] = t["tenant"]
        rq[Lo.R_CTXP] = t["context_parent"]
        rq[Lo.R_CTXLEN] = t["context_len"]
        rq[Lo.R_DONE_TICK] = -1
        for f in (Lo.R_FIRST, Lo.R_ITLHEAD, Lo.R_ITLTAIL, Lo.R_SCHED, Lo.R_E2E, Lo.R_INST, Lo.R_SLOT):
            rq[f] = -1
        return reorder

    # ------------------------------------------------------------ requests added while running
    def add_requests(self, rows: RequestTable) -> np.ndarray:
        """Append requests that arrive while the simulation runs (session follow-ups, live traffic).

        ``rows`` must use this simulation's dictionary codes (build categorical codes with
        ``sim.table.code(column, name)``) and prefix groups the table already knows; every
        arrival must be >= the current clock.  Each request enters through the cluster
        event queue as an arrival (then admission and routing, as a workload request),
        with the next event sequence number, as BLIS pushes closed-loop follow-ups.
        Returns the new requests' row indices.
        """
        k = len(rows)
        if k == 0:
            return np.zeros(0, np.int64)
        arr = rows["arrival_us"].astype(np.int64)
        now = int(self.glob[Lo.G_CLOCK])
        if int(arr.min()) < now:
            raise ValueError(f"add_requests: arrival_us must be >= the current clock {now}, got {int(arr.min())}")
        if len(self.table.group_seeds) < len(self.table.names["prefix_group"]) or \
                int(rows["prefix_group"].max()) >= len(self.table.group_seeds):
            raise ValueError("add_requests: prefix_group codes must be groups the workload already has")
        longest = int((rows["input_len"].astype(np.int64) + rows["output_len"]).max())
        if longest > self.max_request_tokens and not (0 < self.cfg.max_model_len <= self.max_request_tokens):
            self._grow_request_tokens(longest)
        lo = self.n_requests
        cp = rows["context_parent"]
        if int(cp.max()) >= lo:
            raise ValueError(f"add_requests: context_parent must be a row already in the simulation (< {lo}), "
                             f"got {int(cp.max())}")
        need = lo + k
        if need > self.rq.shape[1]:
            cap = max(need, 2 * self.rq.shape[1], 64)
            grown = np.zeros((Lo.NRF, cap), np.int64)
            grown[:, :lo] = self.rq[:, :lo]
            self.rq = grown
        block = np.zeros((Lo.NRF, k), np.int64)
        reorder = self._fill_rq(block, rows)
        if reorder != bool(self.cfg_arr[Lo.C_SCHED]):  # pragma: no cover - same scheduler both times
            raise RuntimeError("add_requests: scheduler reorder flag changed")
        self.rq[:, lo:need] = block
        self.n_requests = need
        self._added.append(rows)
        idx = np.arange(lo, need, dtype=np.int64)
        for r, ta in zip(idx.tolist(), arr.tolist()):
            self.push_cluster_event(ta, Lo.CP_ARRIVAL, r)
        return idx

    def _grow_request_tokens(self, longest: int) -> None:
        """Widen the per-request KV block lists so a request of ``longest`` tokens fits (between kernel calls)."""
        c = self.cfg
        B = int(c.block_size)
        max_len = max(int(longest), 2 * self.max_request_tokens)
        self.max_request_tokens = max_len
        if c.max_model_len > 0:
            max_len = min(max_len, int(c.max_model_len))
        max_blocks = 2 * (min(int(c.total_kv_blocks), -(-max(max_len, 1) // B) + 1) + 1)
        old = self.kv[7]
        if max_blocks <= old.shape[2]:
            return
        sb = np.zeros(old.shape[:2] + (max_blocks,), old.dtype)
        sb[:, :, :old.shape[2]] = old
        self.kv = self.kv[:7] + (sb,) + self.kv[8:]
        sc = list(self.scratch)
        for k in (1, 8):
            sc[k] = np.zeros(max_blocks + 1, sc[k].dtype)
        self.scratch = tuple(sc)
        self.hsc = (np.zeros(max_blocks + 1, self.hsc[0].dtype),) + self.hsc[1:]

    def _finalize_requests(self):
        """Trim the request rows to those in use and fold added requests into ``self.table``."""
        if self.n_requests != self.rq.shape[1]:
            self.rq = np.ascontiguousarray(self.rq[:, :self.n_requests])
        if self._added:
            t = self.table
            cols = {name: np.concatenate([t.cols[name]] + [a.cols[name] for a in self._added])
                    for name in t.cols}
            self.table = RequestTable(cols, t.names, t.group_seeds)
            self._added = []

    # ------------------------------------------------------------ growth
    @staticmethod
    def _grow_cols(a, new_cols, fill=0):
        out = np.full((a.shape[0], new_cols) + a.shape[2:], fill, a.dtype)
        out[:, :a.shape[1]] = a
        return out

    def _grow(self, what):
        if what & Lo.GROW_HEAP:
            cap = self.ev[0].shape[1] * 2
            self.ev = tuple(self._grow_cols(a, cap) for a in self.ev)
        if what & Lo.GROW_CHEAP:
            cap = self.cev[0].shape[1] * 2
            self.cev = tuple(self._grow_cols(a, cap) for a in self.cev)
        if what & Lo.GROW_TRACE:
            w = list(self.wr)
            for k in range(6, 12):
                a = w[k]
                b = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
                b[:a.shape[0]] = a
                w[k] = b
            self.wr = tuple(w)
        if what & Lo.GROW_WQ:
            self.wq = self._grow_cols(self.wq, self.wq.shape[1] * 2)
        if what & Lo.GROW_ITL:
            vals, nxt, free, hk, hc = self.itl
            old = vals.shape[0]
            new = old * 2
            vals2 = np.zeros((new, Lo.ITL_CHUNK), np.int64)
            vals2[:old] = vals
            nxt2 = np.full(new, -1, np.int64)
            nxt2[:old] = nxt
            nfree = int(self.glob[Lo.G_ITL_FREE_N])
            free2 = np.zeros(new, np.int64)
            free2[:nfree] = free[:nfree]
            free2[nfree:nfree + (new - old)] = np.arange(new - 1, old - 1, -1)
            self.glob[Lo.G_ITL_FREE_N] = nfree + (new - old)
            self.itl = (vals2, nxt2, free2, hk, hc)
        if what & Lo.GROW_ITLH:
            vals, nxt, free, hk, hc = self.itl
            cap = hk.shape[1] * 2
            hk2 = np.zeros((hk.shape[0], cap), np.int64)
            hc2 = np.zeros((hk.shape[0], cap), np.int64)
            for i in range(hk.shape[0]):
                keys = hk[i][hk[i] != 0]
                counts = hc[i][hk[i] != 0]
                for k, cnt in zip(keys.tolist(), counts.tolist()):
                    j = k & (cap - 1)
                    while hk2[i, j] != 0:
                        j = (j + 1) & (cap - 1)
                    hk2[i, j] = k
                    hc2[i, j] = cnt
            self.itl = (vals, nxt, free, hk2, hc2)

    # ------------------------------------------------------------ run
    def run(self, progress=None, events_per_update: int = 200_000):
        """Run to completion (or the horizon) and return the results.

        ``progress``, if given, is called as ``progress(requests_finished)`` every
        ``events_per_update`` events (the engine pauses briefly to report).
        """
        self._drive(progress, events_per_update)
        return self.finish()

    def advance_to(self, t: int) -> None:
        """Process every event at or before time ``t`` and stop (for live, wall-clock driven runs).

        Later calls continue from there; ``add_requests`` may inject arrivals at times >= the
        clock between calls.  ``finish()`` builds the results.
        """
        self.glob[Lo.G_STOP_AT] = min(int(t), INT64_MAX)
        try:
            self._drive(None, 0)
        finally:
            self.glob[Lo.G_STOP_AT] = INT64_MAX

    def next_event_time(self) -> int:
        """Time of the earliest pending event (INT64_MAX if none)."""
        t = INT64_MAX
        if self.glob[Lo.G_ARR_CURSOR] < len(self.arrival_order):
            t = int(self.rq[Lo.R_ARRIVAL, self.arrival_order[self.glob[Lo.G_ARR_CURSOR]]])
        if self.glob[Lo.G_CHLEN] > 0:
            t = min(t, int(self.cev[0][0, 0]))
        for i in range(self.ins.shape[0]):
            if self.ins[i, Lo.I_HLEN] > 0:
                t = min(t, int(self.ev[0][i, 0]))
        return t

    def finish(self):
        """Checks and the :class:`~blis.results.SimResults` of the run so far."""
        if int(self.ins[:, Lo.I_SLOT_OVF].sum()) > 0:
            raise RuntimeError("engine: a request's KV block list exceeded its capacity "
                               f"({self.kv[7].shape[2]} blocks); results would be wrong -- please report this run")
        if self.gateway is not None:
            self.gateway.finalize(self)
        if self.autoscaler is not None:
            self.autoscaler.finalize(self)
        self._trim_instances()
        self._finalize_requests()
        from blis.results import SimResults
        return SimResults.from_simulation(self)

    def variant(self) -> tuple:
        """``(cpu_tier, policies)``: which optional parts of ``run_nb`` this run compiles
        in (see ``run_nb``).  ``cpu_tier``: the CPU KV tier (``kv_cpu_blocks > 0``);
        ``policies``: weighted routing, the decision trace, tenant budgets or a built-in
        admission policy other than always-admit.  A plain run takes ``(False, False)``,
        the *basic* variant, which compiles in about half the time; each part is
        compiled in only where it is used, so a CPU-tier run does not pay for the
        routing scorers and admission policies, nor a weighted-routing run for the tier."""
        c = self.cfg_arr
        policies = bool(c[Lo.C_ROUTING] == Lo.ROUTE_WEIGHTED or c[Lo.C_TRACE] != 0
                        or c[Lo.C_TENANT_CAP] > 0 or c[Lo.C_ADMISSION] not in (Lo.ADMIT_ALWAYS, Lo.ADMIT_PYTHON))
        return bool(c[Lo.C_CPU_BLOCKS] > 0), policies

    def full_variant(self) -> bool:
        """True when this run compiles in any optional part of ``run_nb`` (see :meth:`variant`)."""
        return any(self.variant())

    def _drive(self, progress, events_per_update):
        if progress is not None:
            self.glob[Lo.G_BUDGET] = events_per_update
        finish_helper = None
        if not self._engine_prepared:
            self._engine_prepared = True
            from blis.precompile import prepare_engine
            finish_helper = prepare_engine(self.run_args())
        try:
            self._drive_loop(progress, events_per_update)
        finally:
            if finish_helper is not None:
                finish_helper()

    def run_args(self) -> tuple:
        """The arguments of the next ``run_nb`` call (this run's compiled variant)."""
        tier, policies = self.variant()
        return (self.rq, self.gseed, self.arrival_order, self.ins, self.ev, self.wq,
                self.bt, self.kv, self.cpu if tier else None, self.itl, self.cev, self.glob,
                self.cfg_arr, self.cfgf, self.lat, self.scratch, self.router_rng, self.wr,
                self.pa if policies else None, self.hsc if policies else None)

    def _drive_loop(self, progress, events_per_update):
        while True:
            status = run_nb(*self.run_args())
            if status == Lo.DONE:
                break
            if status == Lo.PAUSE:
                progress(self.finished_count())
                self.glob[Lo.G_BUDGET] = events_per_update
                continue
            if status == Lo.GROW:
                self._grow(int(self.glob[Lo.G_GROW]))
                self.glob[Lo.G_GROW] = 0
            elif status == Lo.NEED_ROUTE:
                target = int(self.route_fn(self, int(self.glob[Lo.G_PENDING_REQ])))
                self.glob[Lo.G_DECISION] = target if target >= 0 else -2   # -2: rejected at routing
            elif status == Lo.NEED_ADMIT:
                ok = self.admit_fn(self, int(self.glob[Lo.G_PENDING_REQ]))
                self.glob[Lo.G_DECISION] = 2 if ok == 2 else (1 if ok else 0)
            elif status == Lo.NEED_EVENT:
                kind = int(self.glob[Lo.G_PENDING_KIND])
                handler = self.autoscaler if kind in AUTOSCALER_EVENTS else self.gateway
                handler.on_event(self, kind, int(self.glob[Lo.G_PENDING_REQ]))
                self.glob[Lo.G_DECISION] = 1
            elif status == Lo.NEED_FIN:
                done = self.scratch[9][:int(self.glob[Lo.G_FIN_N])].copy()
                self.glob[Lo.G_FIN_N] = 0
                for hook in self.finish_hooks:
                    hook(self, done)
            else:  # pragma: no cover - defensive
                raise RuntimeError(f"engine returned unknown status {status}")

    # ------------------------------------------------------------ instances (autoscaling)
    @property
    def num_instances(self) -> int:
        """Instances created so far (live or not)."""
        return int(self.cfg_arr[Lo.C_NINST])

    def routable(self) -> np.ndarray:
        """Indices of the routable (Active) instances in list order - what routing sees."""
        return self.wr[13][:int(self.glob[Lo.G_NROUTABLE])].copy()

    def set_lifecycle(self, i: int, state: int) -> None:
        """Change instance i's lifecycle state (LIFE_*) and rebuild the routable list."""
        self.ins[i, Lo.I_LIFE] = state
        self.refresh_routable()

    def refresh_routable(self) -> None:
        n = self.num_instances
        life = self.ins[:n, Lo.I_LIFE]
        idx = np.flatnonzero(life == Lo.LIFE_ACTIVE)
        rl, rpos = self.wr[13], self.wr[14]
        rl[:len(idx)] = idx
        rpos[:] = -1
        rpos[idx] = np.arange(len(idx))
        self.glob[Lo.G_NROUTABLE] = len(idx)

    def _instance_capacity(self) -> int:
        return self.ins.shape[0]

    def reserve_instances(self, cap: int) -> None:
        """Grow every per-instance array to hold ``cap`` instances (new rows unused)."""
        old = self._instance_capacity()
        if cap <= old:
            return

        def rows(a, axis=0):
            shape = list(a.shape)
            shape[axis] = cap
            b = np.zeros(shape, a.dtype)
            sl = [slice(None)] * a.ndim
            sl[axis] = slice(0, a.shape[axis])
            b[tuple(sl)] = a
            return b

        self.ins = rows(self.ins)
        self.ev = tuple(rows(a) for a in self.ev)
        self.wq = rows(self.wq)
        self.bt = rows(self.bt)
        self.kv = tuple(rows(a) for a in self.kv)
        self.cpu = tuple(rows(a) for a in self.cpu)
        self.pa = tuple(rows(a) for a in self.pa)
        vals, nxt, free, hk, hc = self.itl
        self.itl = (vals, nxt, free, rows(hk), rows(hc))
        w = list(self.wr)
        w[2], w[3] = rows(w[2]), rows(w[3])
        w[10], w[11] = rows(w[10], 1), rows(w[11], 1)
        st = np.zeros(cap + 3, np.int64)
        st[:len(w[12])] = w[12]
        w[12] = st
        w[13] = rows(w[13])
        rpos = np.full(cap, -1, np.int64)
        rpos[:old] = w[14]
        w[14] = rpos
        self.wr = tuple(w)
        self.hsc = (self.hsc[0], rows(self.hsc[1]), rows(self.hsc[2]))
        sc = list(self.scratch)
        sc[7] = np.zeros(cap + 1, np.int64)
        self.scratch = tuple(sc)

    def add_instance(self, name: str, total_kv_blocks: int, state: int) -> int:
        """Append a new instance (empty caches, ``total_kv_blocks`` KV blocks) in lifecycle
        ``state``; returns its index.  Called between kernel calls (autoscaler actuation)."""
        from blis.kernels.kvcache import kv_init
        from blis.kernels.lru import lru_init
        i = self.num_instances
        if i >= self._instance_capacity():
            self.reserve_instances(max(2 * self._instance_capacity(), i + 1))
        if total_kv_blocks > self.kv[0].shape[1]:
            raise ConfigError(f"instance {name}: {total_kv_blocks} KV blocks exceed the preallocated "
                              f"{self.kv[0].shape[1]}")
        self.ins[i, :] = 0
        kv_init(self.kv, self.ins, np.int64(i), np.int64(total_kv_blocks))
        lru_init(self.cpu, np.int64(i))
        lru_init(self.pa, np.int64(i))
        self.ins[i, Lo.I_CLOG_ON] = self.ins[0, Lo.I_CLOG_ON] if i > 0 else 0
        self.ins[i, Lo.I_LIFE] = state
        self.cfg_arr[Lo.C_NINST] = i + 1
        self.instance_names.append(name)
        self.refresh_routable()
        return i

    def _trim_instances(self) -> None:
        """Drop preallocated instance rows that were never used (before extracting results)."""
        n = self.num_instances
        if self.ins.shape[0] > n:
            self.ins = self.ins[:n]
            vals, nxt, free, hk, hc = self.itl
            self.itl = (vals, nxt, free, hk[:n], hc[:n])

    # ------------------------------------------------------------ Python-side hooks
    def push_cluster_event(self, t: int, prio: int, r: int) -> None:
        """Schedule a cluster event (routing, gateway tick/TTL) from Python between kernel calls."""
        from blis.kernels.engine import cluster_push_nb
        if self.glob[Lo.G_CHLEN] + 2 > self.cev[0].shape[1]:
            self._grow(Lo.GROW_CHEAP)
        cluster_push_nb(self.cev, self.glob, np.int64(t), np.int64(prio), np.int64(r))

    def _gateway_admit(self, sim, r):
        """Tenant budgets wrap the gateway (as in BLIS), then the gateway holds the request."""
        if self.cfg.tenant_budgets:
            t = int(self.rq[Lo.R_TENANT, r])
            budget = self.wr[5][t]
            pri = int(self.cfg_arr[Lo.C_MAX_PRI] - self.rq[Lo.R_PRIO, r])
            if t > 0 and budget >= 0 and pri < 0 and self.wr[4][t] > budget * self.cfg_arr[Lo.C_TENANT_CAP]:
                return False
        return self.gateway.admit(self, r)

    # ------------------------------------------------------------ helpers
    def finished_count(self) -> int:
        """Requests in a terminal state (completed, timed out, dropped, rejected)."""
        ins = self.ins
        return int(ins[:, Lo.I_COMPLETED].sum() + ins[:, Lo.I_TIMED_OUT].sum()
                   + ins[:, Lo.I_DROPPED].sum() + self.glob[Lo.G_REJECTED]
                   + self.glob[Lo.G_ROUTE_REJECTED])

    def itl_histogram(self, i):
        """(values_us, counts) of instance i's committed ITL samples, sorted by value."""
        hk, hc = self.itl[3][i], self.itl[4][i]
        m = (hk != 0) & (hc > 0)
        keys = hk[m] - 1
        order = np.argsort(keys, kind="stable")
        return keys[order], hc[m][order]
