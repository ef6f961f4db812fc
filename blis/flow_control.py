"""Flow control: BLIS's gateway queue in front of the router (``--flow-control``).

Admitted requests wait in priority bands (one per SLO priority, highest first,
never deleted once created), with one FIFO per tenant inside a band.  A
request is dispatched to the router at most once per enqueue and once per
dispatch tick, and only while the cluster's saturation (from a detector over
the routing snapshots) is below the band's usage ceiling.  Optional: per-band
capacity, a maximum depth with shedding of sheddable entries, a TTL, and
``slo-deadline`` dispatch order.

The gateway is Python logic driven by the compiled engine: the engine hands
over each admission (``NEED_ADMIT``) and each gateway event (ticks, TTLs) and
resumes afterwards; dispatches push routing events back into the engine.
In-flight eviction (``--in-flight-eviction``) is not simulated by this version.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from blis.errors import ConfigError
from blis.kernels import layout as L

DETECTORS = ("never", "utilization", "concurrency")
DISPATCH_ORDERS = ("fifo", "priority", "slo-deadline")
FAIRNESS = ("global-strict", "round-robin")
HELD = 2  # admit_fn answer: admitted into the gateway queue, dispatch decided later


@dataclass
class FlowConfig:
    detector: str = "never"
    dispatch_order: str = "fifo"
    slo_targets_us: Dict[str, int] = field(default_factory=dict)
    max_depth: int = 0
    queue_depth_threshold: float = 5.0
    kv_cache_util_threshold: float = 0.8
    max_concurrency: int = 100
    per_band_capacity: int = 0
    usage_limit: float = 1.0
    fairness: str = "global-strict"
    request_ttl_us: int = 0
    queue_shedding: bool = False
    tick_interval_us: int = 1000
    in_flight_eviction: bool = False

    def validate(self):
        for name, value, valid in (("--saturation-detector", self.detector, DETECTORS),
                                   ("--dispatch-order", self.dispatch_order, DISPATCH_ORDERS),
                                   ("--fairness-policy", self.fairness, FAIRNESS)):
            if value not in valid:
                raise ConfigError(f"{name}: must be one of the valid names, got {value!r}; valid: {', '.join(valid)}")
        if not (0 < self.usage_limit <= 1):
            raise ConfigError(f"--usage-limit-threshold: must be in (0, 1], got {self.usage_limit}")
        for name, v in (("--max-gateway-queue-depth", self.max_depth), ("--per-band-capacity", self.per_band_capacity),
                        ("--request-ttl", self.request_ttl_us), ("--dispatch-tick-interval", self.tick_interval_us)):
            if v < 0:
                raise ConfigError(f"{name}: must be >= 0, got {v}")
        if self.queue_depth_threshold <= 0 or self.kv_cache_util_threshold <= 0 or self.max_concurrency <= 0:
            raise ConfigError("saturation thresholds (--queue-depth-threshold, --kv-cache-util-threshold, "
                              "--max-concurrency) must be > 0")
        if self.in_flight_eviction:
            raise ConfigError("--in-flight-eviction: not simulated by this version yet (remove the flag)")


@dataclass
class _Entry:
    r: int
    seq: int
    enqueue_us: int
    priority: int
    tenant: str
    sheddable: bool
    deadline: float


class GatewayQueue:
    """The gateway queue and its dispatcher for one :class:`~blis.engine.Simulation`."""

    def __init__(self, cfg: FlowConfig, max_priority: int):
        cfg.validate()
        self.cfg = cfg
        self.max_priority = max_priority
        self.bands: Dict[int, Dict[str, List[_Entry]]] = {}
        self.order: List[int] = []          # band priorities, descending; never shrinks
        self.rr_cursor: Dict[int, str] = {}
        self.seq = 0
        self.depth = 0
        self.tick_pending = False
        self.enqueued_at: Dict[int, int] = {}
        self.dispatched_at: Dict[int, int] = {}
        self.where: Dict[int, _Entry] = {}
        self.shed = 0
        self.rejected = 0
        self.expired = 0
        self.shed_by_tier: Dict[str, int] = {}
        self.outcome: Dict[int, int] = {}   # request -> terminal gateway state

    # ---------------------------------------------------------------- helpers
    def _class_of(self, sim, r):
        return sim.table.names["slo_class"][int(sim.rq[L.R_SLO, r])]

    def _band(self, pri):
        if pri not in self.bands:
            self.bands[pri] = {}
            self.order = sorted(self.bands, reverse=True)
        return self.bands[pri]

    def _band_len(self, pri):
        return sum(len(f) for f in self.bands[pri].values())

    def _remove(self, e: _Entry):
        flow = self.bands[e.priority][e.tenant]
        flow.remove(e)
        if not flow:
            del self.bands[e.priority][e.tenant]
        del self.where[e.r]
        self.depth -= 1

    def saturation(self, sim) -> float:
        ins = sim.ins[sim.routable()]   # the routing snapshots: routable instances only
        n = ins.shape[0]
        if self.cfg.detector == "never":
            return 0.0
        if n == 0:
            return 1.0
        if self.cfg.detector == "utilization":
            total = 0.0
            for i in range(n):
                tot = ins[i, L.I_TOTAL_BLOCKS]
                util = ins[i, L.I_SNAP_KV_USED] / tot if tot > 0 else 0.0
                total += max(ins[i, L.I_SNAP_QD] / self.cfg.queue_depth_threshold,
                             util / self.cfg.kv_cache_util_threshold)
            return total / n
        return float(ins[:, L.I_INFLIGHT].sum()) / (n * self.cfg.max_concurrency)

    # ---------------------------------------------------------------- admission
    def admit(self, sim, r: int):
        """Flow-control admission: always "admitted"; the request waits in the queue."""
        clock = int(sim.glob[L.G_CLOCK])
        pri = int(sim.cfg_arr[L.C_MAX_PRI] - sim.rq[L.R_PRIO, r])
        tenant = sim.table.names["tenant"][int(sim.rq[L.R_TENANT, r])] or "default"
        self.seq += 1
        cls = self._class_of(sim, r)
        target = self.cfg.slo_targets_us.get(cls, 0)
        e = _Entry(r, self.seq, clock, pri, tenant, pri < 0,
                   clock + target if target > 0 else math.inf)
        band = self._band(pri)
        if self.cfg.per_band_capacity > 0 and self._band_len(pri) >= self.cfg.per_band_capacity:
            return self._reject(sim, r)
        if self.cfg.max_depth > 0 and self.depth >= self.cfg.max_depth:
            if not self.cfg.queue_shedding:
                return self._reject(sim, r)
            victim = None
            for p in self.order:
                for t in sorted(self.bands[p]):
                    for v in self.bands[p][t]:
                        if not v.sheddable:
                            continue
                        if victim is None or v.priority < victim.priority or (
                                v.priority == victim.priority and v.seq > victim.seq):
                            victim = v
            if victim is None or not (pri > victim.priority or (pri == victim.priority and e.seq < victim.seq)):
                return self._reject(sim, r)
            self._remove(victim)
            self.shed += 1
            vcls = self._class_of(sim, victim.r) or "standard"
            self.shed_by_tier[vcls] = self.shed_by_tier.get(vcls, 0) + 1
            self.outcome[victim.r] = L.ST_GW_SHED
        band.setdefault(tenant, []).append(e)
        self.where[r] = e
        self.depth += 1
        self.enqueued_at[r] = clock
        if self.cfg.request_ttl_us > 0:
            sim.push_cluster_event(clock + self.cfg.request_ttl_us, L.CP_GW_TTL, r)
        self.try_dispatch(sim, clock)
        return HELD

    def _reject(self, sim, r):
        self.rejected += 1
        self.outcome[r] = L.ST_GW_REJECTED
        return HELD  # BLIS records an admitted decision; the request simply never dispatches

    # ---------------------------------------------------------------- dispatch
    def try_dispatch(self, sim, clock):
        if self.depth == 0:
            return
        if not self.tick_pending:
            sim.push_cluster_event(clock + (self.cfg.tick_interval_us or 1000), L.CP_GW_TICK, -1)
            self.tick_pending = True
        sat = self.saturation(sim)
        nb = len(self.order)
        u = self.cfg.usage_limit
        for i, pri in enumerate(self.order):
            ceiling = 1.0 if nb == 1 else 1.0 - i * (1.0 - u) / (nb - 1)
            if sat >= ceiling:
                return
            flows = self.bands[pri]
            if not flows:
                continue
            e = self._pick(pri, flows)
            self._remove(e)
            self.dispatched_at[e.r] = clock
            sim.push_cluster_event(clock + int(sim.cfg.routing_latency_us), L.CP_ROUTING, e.r)
            return

    def _pick(self, pri, flows) -> _Entry:
        if self.cfg.dispatch_order == "slo-deadline":
            return min((e for f in flows.values() for e in f), key=lambda e: (e.deadline, e.seq))
        tenants = sorted(flows)
        if self.cfg.fairness == "round-robin":
            last = self.rr_cursor.get(pri)
            start = 0
            if last is not None:
                start = next((k for k, t in enumerate(tenants) if t > last), 0)
            t = tenants[start]
            self.rr_cursor[pri] = t
            return flows[t][0]
        return min((flows[t][0] for t in tenants), key=lambda e: e.seq)

    # ---------------------------------------------------------------- events
    def on_event(self, sim, kind: int, r: int):
        clock = int(sim.glob[L.G_CLOCK])
        if kind == L.CP_GW_TICK:
            if self.depth > 0:
                self.try_dispatch(sim, clock)
            if self.depth > 0:
                sim.push_cluster_event(clock + (self.cfg.tick_interval_us or 1000), L.CP_GW_TICK, -1)
            else:
                self.tick_pending = False
        elif kind == L.CP_GW_TTL:
            e = self.where.get(r)
            if e is not None:
                self._remove(e)
                self.expired += 1
                cls = self._class_of(sim, r) or "standard"
                self.shed_by_tier[cls] = self.shed_by_tier.get(cls, 0) + 1
                self.outcome[r] = L.ST_GW_EXPIRED

    def finalize(self, sim):
        """Mark gateway outcomes on the request states (queued-at-horizon included)."""
        for r, st in self.outcome.items():
            sim.rq[L.R_STATE, r] = st
        for r in self.where:
            sim.rq[L.R_STATE, r] = L.ST_GW_QUEUED

    def counters(self) -> dict:
        return {"gateway_queue_depth": self.depth, "gateway_queue_shed": self.shed,
                "gateway_queue_rejected": self.rejected, "gateway_evicted": 0,
                "gateway_expired": self.expired}

    def queue_delay_us(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.int64)
        for r, t in self.dispatched_at.items():
            e = self.enqueued_at.get(r, 0)
            if t > 0 and e > 0:
                out[r] = t - e
        return out
