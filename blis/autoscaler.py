"""Autoscaling: node pools, instance lifecycle and the model autoscaler
(BLIS's ``sim/cluster/autoscaler.go`` pipeline and ``infra_*.go``).

The pipeline runs on the cluster clock as Python-level cluster events (like the
flow-control gateway): a periodic **tick** (priority 8) runs

    collector -> saturation analyzer -> engine -> stabilization gate

and, when a decision passes, schedules an **actuation** (priority 9) after a
sampled scrape delay.  The actuator places new instances on node-pool GPUs
(first fit; they start *Loading* and become *Active* after a sampled loading
delay, priority -1) or marks the lexicographically smallest Active instance of
the variant *Draining*.  Draining instances are not routable, finish their work
and terminate (the compiled engine checks after each of their events); their
GPUs are then free again.

Engines live in :data:`ENGINES`; ``unlimited`` (BLIS's wired engine) and
``greedy`` (inventory-respecting) are built in, and the policy YAML chooses one
with ``autoscaler.engine``.  A new engine is one function
``optimize(results, inventory) -> [ScaleDecision]`` plus one
:func:`register_engine` call (see docs/extending.md).

Every lifecycle change is recorded as a scale event (:class:`ScaleEvent`), written
as Parquet with ``--scale-trace`` and summarised on stdout.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from blis.errors import ConfigError
from blis.kernels import layout as L
from blis.kernels.engine import _cache_refresh, _snapshot_refresh, cluster_push_nb
from blis.kernels.jit import njit_hot
from blis.registry import Registry

log = logging.getLogger("blis.autoscaler")

SUBSYSTEM_NODE_PROVISIONING = "node-provisioning"
SUBSYSTEM_INSTANCE_LOADING = "instance-loading"
SUBSYSTEM_AUTOSCALER = "autoscaler"

LIFE_NAMES = {L.LIFE_ACTIVE: "active", L.LIFE_LOADING: "loading", L.LIFE_DRAINING: "draining",
              L.LIFE_TERMINATED: "terminated"}


# ---------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class DelaySpec:
    """A delay in seconds: ``mean`` when ``stddev`` <= 0, else a normal draw clamped at 0."""
    mean: float = 0.0
    stddev: float = 0.0

    def sample_us(self, rng) -> int:
        if self.stddev <= 0:
            secs = self.mean
        else:
            secs = rng.norm_float64() * self.stddev + self.mean
            if secs < 0:
                secs = 0.0
        if math.isnan(secs) or math.isinf(secs):
            secs = 0.0
        return int(secs * 1e6)


@dataclass(frozen=True)
class NodePoolConfig:
    name: str
    gpu_type: str
    gpus_per_node: int
    gpu_memory_gib: float
    initial_nodes: int = 0
    min_nodes: int = 0
    max_nodes: int = 0
    provisioning_delay: DelaySpec = DelaySpec()
    cost_per_hour: float = 0.0


@dataclass(frozen=True)
class AnalyzerConfig:
    """V2 saturation analyzer thresholds (zero in the YAML means the default)."""
    kv_cache_threshold: float = 0.8
    scale_up_threshold: float = 0.8
    scale_down_boundary: float = 0.4
    avg_input_tokens: float = 512.0


@dataclass
class AutoscalerConfig:
    """Everything the policy YAML (``autoscaler``, ``node_pools``, ``instance_lifecycle``)
    and ``--model-autoscaler-interval-us`` configure."""
    interval_us: float = 0.0                       # 0 = autoscaler off
    scale_up_window_us: float = 0.0
    scale_down_window_us: float = 0.0
    hpa_scrape_delay: DelaySpec = DelaySpec()
    analyzer: AnalyzerConfig = AnalyzerConfig()
    engine: str = "unlimited"
    node_pools: List[NodePoolConfig] = field(default_factory=list)
    loading_delay: DelaySpec = DelaySpec()
    warm_start_initial_instances: bool = False

    @property
    def enabled(self) -> bool:
        return self.interval_us > 0

    @property
    def active(self) -> bool:
        """Whether anything here changes a run (autoscaler or node pools)."""
        return self.enabled or bool(self.node_pools)


@dataclass(frozen=True)
class VariantSpec:
    gpu_type: str
    tp: int

    def __str__(self):
        return f"{self.gpu_type}/tp{self.tp}"


@dataclass
class ReplicaMetrics:
    instance_id: str
    variant: VariantSpec
    kv_utilization: float
    queue_depth: int
    in_flight: int
    cost_per_hour: float
    total_kv_capacity_tokens: int
    kv_tokens_in_use: int


@dataclass
class ModelSignals:
    model_id: str
    replicas: List[ReplicaMetrics]
    pending_replica_count: int = 0
    pending_total_kv_capacity_tokens: int = 0


@dataclass
class VariantCapacity:
    variant: VariantSpec
    supply: float
    demand: float
    replica_count: int
    cost_per_replica: float


@dataclass
class AnalyzerResult:
    model_id: str
    total_supply: float = 0.0
    total_demand: float = 0.0
    utilization: float = 0.0
    required_capacity: float = 0.0
    spare_capacity: float = 0.0
    variant_capacities: List[VariantCapacity] = field(default_factory=list)


@dataclass(frozen=True)
class ScaleDecision:
    model_id: str
    variant: VariantSpec
    delta: int          # +N add N replicas, -N remove N; never 0


class GPUInventory:
    """Free GPU slots per variant (already net of Loading/Active/Draining instances)."""

    def __init__(self, by_variant: Optional[Dict[VariantSpec, int]] = None):
        self.by_variant = dict(by_variant or {})

    def free_slots(self, v: VariantSpec) -> int:
        return self.by_variant.get(v, 0)

    def variants(self) -> List[VariantSpec]:
        return sorted(self.by_variant, key=lambda v: (v.gpu_type, v.tp))

    def __repr__(self):
        return "GPUInventory(" + ", ".join(f"{v}={self.by_variant[v]}" for v in self.variants()) + ")"


# ---------------------------------------------------------------------------- analyzer
def _cost_key(vc: VariantCapacity):
    return vc.cost_per_replica, vc.variant.gpu_type, vc.variant.tp


def analyze(ms: ModelSignals, cfg: AnalyzerConfig) -> AnalyzerResult:
    """BLIS's V2 saturation analyzer (KV-token supply and demand per variant)."""
    res = AnalyzerResult(model_id=ms.model_id)
    if not ms.replicas:
        return res
    agg: Dict[VariantSpec, list] = {}
    for rm in ms.replicas:
        if rm.total_kv_capacity_tokens <= 0:
            log.warning("[analyzer] model %r: routable replica %r has zero KV capacity; excluded",
                        ms.model_id, rm.instance_id)
            continue
        k1 = float(rm.total_kv_capacity_tokens) * cfg.kv_cache_threshold
        demand = float(rm.kv_tokens_in_use) + float(rm.queue_depth) * cfg.avg_input_tokens
        a = agg.get(rm.variant)
        if a is None:
            a = agg[rm.variant] = [0.0, 0.0, 0, rm.cost_per_hour]
        a[0] += k1
        a[1] += demand
        a[2] += 1
    vcs = [VariantCapacity(v, a[0], a[1], a[2], a[3]) for v, a in agg.items()]
    return _finish_analysis(res, vcs, ms.pending_total_kv_capacity_tokens, cfg)


def _finish_analysis(res: AnalyzerResult, vcs: List[VariantCapacity], pending_kv_tokens: int,
                     cfg: AnalyzerConfig) -> AnalyzerResult:
    """The analyzer after aggregation: ``vcs`` per variant in first-appearance order."""
    if len(vcs) > 1:
        vcs.sort(key=_cost_key)
    res.variant_capacities = vcs
    replicas = 0
    for vc in vcs:
        res.total_supply += vc.supply
        res.total_demand += vc.demand
        replicas += vc.replica_count
    if res.total_supply > 0:
        res.utilization = res.total_demand / res.total_supply
    pending = 0.0
    if pending_kv_tokens > 0:
        pending = float(pending_kv_tokens) * cfg.kv_cache_threshold
    required = res.total_demand / cfg.scale_up_threshold - (res.total_supply + pending)
    if required > 0:
        res.required_capacity = required
        return res
    if replicas <= 1:
        return res
    spare = res.total_supply - res.total_demand / cfg.scale_down_boundary
    if spare <= 0:
        return res
    max_per = 0.0
    for vc in vcs:
        if vc.replica_count > 0:
            max_per = max(max_per, vc.supply / float(vc.replica_count))
    if res.total_supply - max_per > res.total_demand / cfg.scale_down_boundary:
        res.spare_capacity = spare
    return res


# ---------------------------------------------------------------------------- engine helpers
def per_replica_capacity_for_scale_up(vcs: Sequence[VariantCapacity]) -> float:
    for vc in vcs:
        if vc.replica_count > 0 and vc.supply > 0:
            return vc.supply / float(vc.replica_count)
    return 0.0


def scale_up_n(required_capacity: float, vcs: Sequence[VariantCapacity]) -> int:
    """Replicas needed for ``required_capacity``: ceil(required / per-replica capacity of
    the first active variant in ``vcs``), at least 1; 1 when that capacity is unknown.
    Pass only the chosen variant (``vcs[0:1]``) so its own capacity is used."""
    prc = per_replica_capacity_for_scale_up(vcs)
    if prc <= 0:
        return 1
    return max(1, int(math.ceil(required_capacity / prc)))


def scale_down_n(spare_capacity: float, vc: VariantCapacity) -> int:
    """Replicas removable from ``vc`` given ``spare_capacity``: floor(spare / per-replica
    supply) clamped to [1, replica_count]; 0 without replicas, 1 without supply."""
    if vc.replica_count <= 0:
        return 0
    if vc.supply <= 0:
        return 1
    prc = vc.supply / float(vc.replica_count)
    if prc <= 0:
        return 1
    return min(max(1, int(math.floor(spare_capacity / prc))), vc.replica_count)


def sorted_by_asc_cost(vcs: Sequence[VariantCapacity]) -> List[VariantCapacity]:
    """A sorted copy: cost ascending, then GPU type, then TP (deterministic)."""
    return sorted(vcs, key=_cost_key) if len(vcs) > 1 else list(vcs)


def sorted_by_desc_cost(vcs: Sequence[VariantCapacity]) -> List[VariantCapacity]:
    """A sorted copy: cost descending, then GPU type ascending, then TP ascending."""
    if len(vcs) < 2:
        return list(vcs)
    return sorted(vcs, key=lambda vc: (-vc.cost_per_replica, vc.variant.gpu_type, vc.variant.tp))


def _scale_down_decision(r: AnalyzerResult) -> Optional[ScaleDecision]:
    for vc in sorted_by_desc_cost(r.variant_capacities):
        if vc.replica_count > 0:
            return ScaleDecision(r.model_id, vc.variant, -scale_down_n(r.spare_capacity, vc))
    return None


# ---------------------------------------------------------------------------- engines
#: engine name -> optimize(results: [AnalyzerResult], inventory: GPUInventory) -> [ScaleDecision]
ENGINES: Registry[Callable] = Registry("autoscaler engine", "autoscaler.engine")


def register_engine(name: str, optimize: Callable[[List[AnalyzerResult], GPUInventory], List[ScaleDecision]]):
    """Register an autoscaler engine under ``name`` (selectable with ``autoscaler.engine``).

    ``optimize(results, inventory)`` gets one :class:`AnalyzerResult` per model (sorted by
    model) and the current :class:`GPUInventory`, and returns at most one
    :class:`ScaleDecision` per model (delta > 0 adds replicas, < 0 removes them)."""
    return ENGINES.register(name, optimize)


def unlimited_engine(results: List[AnalyzerResult], inventory: GPUInventory) -> List[ScaleDecision]:
    """BLIS's UnlimitedEngine: scale up the cheapest variant by the exact replica count,
    scale down the most expensive active variant; the inventory is ignored."""
    out = []
    for r in results:
        if r.required_capacity > 0:
            vcs = sorted_by_asc_cost(r.variant_capacities)
            if vcs:
                out.append(ScaleDecision(r.model_id, vcs[0].variant, scale_up_n(r.required_capacity, vcs[0:1])))
            continue
        if r.spare_capacity > 0:
            d = _scale_down_decision(r)
            if d is not None:
                out.append(d)
    return out


def greedy_engine(results: List[AnalyzerResult], inventory: GPUInventory) -> List[ScaleDecision]:
    """BLIS's GreedyEngine: like ``unlimited`` but scale-up takes the cheapest variant whose
    free GPU slots cover ``n x TP`` (n computed per variant); no decision if none fits."""
    out = []
    for r in results:
        if r.required_capacity > 0:
            for vc in sorted_by_asc_cost(r.variant_capacities):
                n = scale_up_n(r.required_capacity, [vc])
                if inventory.free_slots(vc.variant) >= max(1, n * vc.variant.tp):
                    out.append(ScaleDecision(r.model_id, vc.variant, n))
                    break
            continue
        if r.spare_capacity > 0:
            d = _scale_down_decision(r)
            if d is not None:
                out.append(d)
    return out


register_engine("unlimited", unlimited_engine)
register_engine("greedy", greedy_engine)


# ---------------------------------------------------------------------------- nodes and placement
class _Node:
    __slots__ = ("id", "pool", "gpu_type", "gpus")

    def __init__(self, node_id, pool, gpu_type, n):
        self.id = node_id
        self.pool = pool
        self.gpu_type = gpu_type
        self.gpus: List[Optional[str]] = [None] * n   # instance holding each GPU (None = free)


class Placement:
    """Nodes of the node pools (all Ready from t=0, as in BLIS) and first-fit placement."""

    def __init__(self, pools: List[NodePoolConfig]):
        self.pools = list(pools)
        self.nodes: Dict[str, List[_Node]] = {}
        for p in self.pools:
            self.nodes[p.name] = [_Node(f"{p.name}-{k}", p, p.gpu_type, p.gpus_per_node)
                                  for k in range(p.initial_nodes)]

    def place(self, inst_id: str, gpu_type: str, tp: int):
        """First fit: pools in order (matching ``gpu_type`` unless ""), nodes in order,
        lowest free GPUs.  Returns (pool, node id, GPU ids) or None."""
        tp = max(tp, 1)
        for p in self.pools:
            if gpu_type and p.gpu_type != gpu_type:
                continue
            for node in self.nodes[p.name]:
                free = [k for k, holder in enumerate(node.gpus) if holder is None]
                if len(free) < tp:
                    continue
                for k in free[:tp]:
                    node.gpus[k] = inst_id
                return p, node.id, [f"{node.id}-gpu-{k}" for k in free[:tp]]
        return None

    def release(self, inst_id: str) -> int:
        n = 0
        for nodes in self.nodes.values():
            for node in nodes:
                for k, holder in enumerate(node.gpus):
                    if holder == inst_id:
                        node.gpus[k] = None
                        n += 1
        return n

    def total_gpus(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for p in self.pools:
            for node in self.nodes[p.name]:
                out[node.gpu_type] = out.get(node.gpu_type, 0) + len(node.gpus)
        return out

    def node_count(self) -> int:
        return sum(len(v) for v in self.nodes.values())


# ---------------------------------------------------------------------------- scale events
@dataclass
class ScaleEvent:
    """One row of the scale trace."""
    time_us: int
    kind: str            # decision | suppressed | add | place-failed | loaded | drain | drain-failed | terminated
    model: str
    gpu_type: str
    tp: int
    delta: int
    reason: str
    instance: str
    free_gpus: int       # free GPUs of the variant's GPU type after the event (-1 without node pools)
    active: int          # instances per state after the event
    loading: int
    draining: int


SCALE_EVENT_FIELDS = ("time_us", "kind", "model", "gpu_type", "tp", "delta", "reason", "instance", "free_gpus",
                      "active", "loading", "draining")


@dataclass
class _Inst:
    """Python-side facts about one instance (the compiled engine holds the rest)."""
    name: str
    model: str
    gpu_type: str
    tp: int                 # TPDegree as BLIS records it (0 for instances built without node pools)
    cost_per_hour: float
    created_us: int
    gpus: int = 0           # GPUs held (0 without node pools)
    ended_us: int = -1      # termination time (-1 = alive)

    def __post_init__(self):
        self.variant = VariantSpec(self.gpu_type, max(self.tp, 1)) if self.gpu_type else None


# ---------------------------------------------------------------------------- tick kernel
_INT64_MAX = int(np.iinfo(np.int64).max)
# columns of the per-group integer aggregates filled by _tick_scan_nb
_G_COUNT, _G_FIRST, _G_PENDING, _G_PENDING_CAP, _G_FIRST_INST = 0, 1, 2, 3, 4


def _first(item):
    return item[0]


def _push(sim, t: int, prio: int, r: int) -> None:
    """``sim.push_cluster_event`` without its per-call overheads (it still handles growing)."""
    if sim.glob[L.G_CHLEN] + 2 > sim.cev[0].shape[1]:
        sim.push_cluster_event(t, prio, r)
    else:
        cluster_push_nb(sim.cev, sim.glob, t, prio, r)


@njit_hot
def _tick_scan_nb(ins, glob, cfg, rl, now, grp, gi, gf, kv_thr, avg_in, life):
    """One pass of the collector and the analyzer's aggregation over the instance arrays.

    Refreshes the routing snapshots of the routable instances (``rl``, as
    ``_refresh_snapshots`` does), counts the instances per lifecycle state into ``life``,
    and per (model, variant) group ``grp[i]`` (-1 = no model or GPU type) sums, in
    routable order exactly as :func:`analyze` does: ``gf[g] = (supply, demand)``,
    ``gi[g] = (replicas, routable position of the first replica, Loading instances with
    KV capacity, their KV tokens, the first replica)``.  Returns how many grouped
    routable replicas have no KV capacity (the caller then takes the Python path, which
    logs them)."""
    n = cfg[L.C_NINST]
    B = cfg[L.C_BLOCK]
    interval = cfg[L.C_SNAP_INTERVAL]
    for k in range(life.shape[0]):
        life[k] = 0
    for g in range(gi.shape[0]):
        gi[g, _G_COUNT] = 0
        gi[g, _G_FIRST] = -1
        gi[g, _G_PENDING] = 0
        gi[g, _G_PENDING_CAP] = 0
        gf[g, 0] = 0.0
        gf[g, 1] = 0.0
        gi[g, _G_FIRST_INST] = -1
    for i in range(n):
        st = ins[i, L.I_LIFE]
        if 0 <= st < life.shape[0]:
            life[st] += 1
        if st == L.LIFE_LOADING:
            g = grp[i]
            cap = ins[i, L.I_TOTAL_BLOCKS] * B
            if g >= 0 and cap > 0:
                gi[g, _G_PENDING] += 1
                gi[g, _G_PENDING_CAP] += cap
    zero = 0
    for p in range(glob[L.G_NROUTABLE]):
        i = rl[p]
        _snapshot_refresh(ins, i, now, interval)
        g = grp[i]
        if g < 0:
            continue
        tot = ins[i, L.I_TOTAL_BLOCKS]
        if tot <= 0:
            zero += 1
            continue
        if gi[g, _G_COUNT] == 0:
            gi[g, _G_FIRST] = p
            gi[g, _G_FIRST_INST] = i
        gi[g, _G_COUNT] += 1
        gf[g, 0] += float(tot * B) * kv_thr
        gf[g, 1] += float(ins[i, L.I_SNAP_KV_USED] * B) + float(ins[i, L.I_SNAP_QD]) * avg_in
    return zero


# ---------------------------------------------------------------------------- the pipeline
class Autoscaler:
    """Node pools + instance lifecycle + (optionally) the autoscaler pipeline for one run."""

    def __init__(self, cfg: AutoscalerConfig, *, model: str, gpu: str, tp: int, seed: int,
                 kv_blocks_for_memory: Optional[Callable[[float], int]] = None):
        from blis.rng import PartitionedRNG
        if cfg.engine not in ENGINES:
            ENGINES.get(cfg.engine)   # raises the one-line ConfigError listing valid engines
        self.cfg = cfg
        self.model = model
        self.gpu = gpu
        self.tp = max(int(tp), 1)
        self.engine = ENGINES.get(cfg.engine)
        rng = PartitionedRNG(int(seed))
        self.rng_provision = rng.for_subsystem(SUBSYSTEM_NODE_PROVISIONING)  # node provisioning is never invoked
        self.rng_loading = rng.for_subsystem(SUBSYSTEM_INSTANCE_LOADING)
        self.rng_autoscaler = rng.for_subsystem(SUBSYSTEM_AUTOSCALER)
        self.placement = Placement(cfg.node_pools) if cfg.node_pools else None
        self.kv_blocks_for_memory = kv_blocks_for_memory
        self.up_first: Dict[str, int] = {}
        self.down_first: Dict[str, int] = {}
        self.pending_actuations: Dict[int, List[ScaleDecision]] = {}
        self._next_act = 0
        self.seq = 0
        self.insts: List[_Inst] = []
        self._events: List[ScaleEvent] = []
        self._event_rows: List[tuple] = []       # recorded, not yet ScaleEvent objects (see events)
        self._vspecs: Dict[Tuple[str, int], VariantSpec] = {}
        self.ticks = 0
        self.end_us = 0
        self._by_variant: Dict[Tuple[str, int], np.ndarray] = {}
        self._tick_inv: Optional[GPUInventory] = None
        #: compute each tick's signals with the compiled scan (False: the Python collector
        #: and analyzer; both give the same results, see tests/test_autoscaler.py)
        self.fast_tick = True
        self._grp = np.full(16, -1, np.int64)     # instance -> (model, variant) group, -1 = none
        self._groups: Dict[Tuple[str, str, int], int] = {}
        self._g_model: List[str] = []
        self._g_variant: List[VariantSpec] = []
        self._gi = np.zeros((1, 5), np.int64)
        self._gf = np.zeros((1, 2), np.float64)
        self._life = np.zeros(4, np.int64)        # instances per lifecycle state at the tick's scan
        self._tick_counts: Optional[Tuple[int, int, int]] = None
        self._n_reaped = 0
        self._inv_key = None
        self._inv_cache: Optional[GPUInventory] = None
        self._total_gpus = self.placement.total_gpus() if self.placement is not None else {}

    @property
    def events(self) -> List[ScaleEvent]:
        """The scale trace so far (:class:`ScaleEvent` rows in recording order; sorted by
        time after the run).  Rows are recorded as tuples and become objects here."""
        if self._event_rows:
            self._events.extend([ScaleEvent(*row) for row in self._event_rows])
            self._event_rows.clear()
        return self._events

    # ------------------------------------------------------------ construction
    def pool_kv_blocks(self, pool: NodePoolConfig, default_blocks: int) -> int:
        if self.kv_blocks_for_memory is None:
            return default_blocks
        try:
            return int(self.kv_blocks_for_memory(pool.gpu_memory_gib))
        except ConfigError as e:
            log.warning("per-instance KV auto-calc for GPU %r failed (%s); using %d blocks",
                        pool.gpu_type, e, default_blocks)
            return default_blocks

    def max_kv_blocks(self, default_blocks: int) -> int:
        """KV-array width the simulation must allocate (the largest pool capacity)."""
        if self.placement is None:
            return default_blocks
        return max([default_blocks] + [self.pool_kv_blocks(p, default_blocks) for p in self.cfg.node_pools])

    def attach(self, sim) -> None:
        """Place the initial instances, set their lifecycle, schedule the first tick."""
        self.sim = sim
        n = sim.num_instances
        default_blocks = int(sim.cfg.total_kv_blocks)
        created = n     # rows for autoscaled instances are added on demand (Simulation.add_instance)
        for i in range(n):
            name = sim.instance_names[i]
            if self.placement is None:
                self.insts.append(_Inst(name, self.model, self.gpu, 0, 0.0, 0))
                self._index(i)
                continue
            placed = self.placement.place(name, "", self.tp)
            if placed is None:
                # BLIS keeps it pending; nothing ever places it (no node is provisioned)
                log.warning("node pools: no Ready node has %d free GPUs for %s; it is not created", self.tp, name)
                created = i
                break
            pool, node, gpus = placed
            blocks = self.pool_kv_blocks(pool, default_blocks)
            if blocks != default_blocks:
                from blis.kernels.kvcache import kv_init
                kv_init(sim.kv, sim.ins, np.int64(i), np.int64(blocks))
            self.insts.append(_Inst(name, self.model, pool.gpu_type, self.tp, pool.cost_per_hour, 0, gpus=len(gpus)))
            self._index(i)
            if self.cfg.warm_start_initial_instances:
                sim.ins[i, L.I_LIFE] = L.LIFE_ACTIVE
            else:
                sim.ins[i, L.I_LIFE] = L.LIFE_LOADING
                self._schedule_loading(i, 0)
        if created < n:
            sim.cfg_arr[L.C_NINST] = created
            del sim.instance_names[created:]
        sim.refresh_routable()
        if self.cfg.enabled:
            sim.push_cluster_event(0, L.CP_SCALE_TICK, -1)

    def _schedule_loading(self, i: int, now: int) -> None:
        delay = self.cfg.loading_delay.sample_us(self.rng_loading)
        if delay == 0:
            self.sim.ins[i, L.I_LIFE] = L.LIFE_ACTIVE
            return
        self.sim.push_cluster_event(now + delay, L.CP_INST_LOADED, i)

    # ------------------------------------------------------------ events
    def on_event(self, sim, kind: int, r: int) -> None:
        now = int(sim.glob[L.G_CLOCK])
        if kind == L.CP_SCALE_TICK:
            self.tick(sim, now)     # reaps first, like every other event
            return
        self._reap(sim)
        if kind == L.CP_SCALE_ACT:
            self.actuate(sim, now, self.pending_actuations.pop(r))
        elif kind == L.CP_INST_LOADED:
            if sim.ins[r, L.I_LIFE] == L.LIFE_LOADING:
                sim.set_lifecycle(r, L.LIFE_ACTIVE)
                inst = self.insts[r]
                self._record(now, "loaded", inst.gpu_type, inst.tp, 0, "loading delay elapsed", inst.name)

    def _reap(self, sim) -> None:
        """Release the GPUs of instances the engine terminated since the last look."""
        n = sim.num_instances
        life = sim.ins[:n, L.I_LIFE]
        if np.count_nonzero(life == L.LIFE_TERMINATED) == self._n_reaped:
            return      # terminated instances never come back: nothing new
        batch = [i for i in np.flatnonzero(life == L.LIFE_TERMINATED).tolist() if self.insts[i].ended_us < 0]
        if not batch:
            return
        self._n_reaped += len(batch)
        # terminations are found after the fact: record each with the state right after it
        # (Python-side changes always reap first, so only the batch itself differs)
        batch.sort(key=lambda i: (int(sim.ins[i, L.I_LIFE_T]), i))
        for k, i in enumerate(batch):
            inst = self.insts[i]
            inst.ended_us = int(sim.ins[i, L.I_LIFE_T])
            if self.placement is not None:
                self.placement.release(inst.name)
            later = batch[k + 1:]
            held = sum(self.insts[j].tp for j in later if self.insts[j].gpu_type == inst.gpu_type)
            self._record(inst.ended_us, "terminated", inst.gpu_type, inst.tp, 0, "drained: queue and batch empty",
                         inst.name, still_draining=len(later), held_gpus=held)

    # ------------------------------------------------------------ collector
    def _refresh_snapshots(self, sim, now: int) -> None:
        """Building the RouterState refreshes due snapshots and cache signals (as routing does;
        the same rules as the engine's ``_cache_refresh``/``_snapshot_refresh``, vectorised)."""
        delay = int(sim.cfg_arr[L.C_CACHE_DELAY])
        if delay > 0 and now - int(sim.glob[L.G_CACHE_LAST]) >= delay:
            _cache_refresh(sim.kv, sim.ins, sim.wr, np.int64(sim.num_instances), np.int64(now), sim.cfg_arr,
                           sim.glob)
        interval = np.int64(sim.cfg_arr[L.C_SNAP_INTERVAL])
        t = np.int64(now)
        for i in sim.wr[13][:int(sim.glob[L.G_NROUTABLE])]:
            _snapshot_refresh(sim.ins, i, t, interval)

    def collect(self, sim) -> List[ModelSignals]:
        ins = sim.ins
        B = int(sim.cfg_arr[L.C_BLOCK])
        by_model: Dict[str, List[ReplicaMetrics]] = {}
        idx = sim.wr[13][:int(sim.glob[L.G_NROUTABLE])]
        rows = ins[idx][:, (L.I_TOTAL_BLOCKS, L.I_SNAP_KV_USED, L.I_SNAP_QD, L.I_INFLIGHT)].tolist()
        for i, (tot, used, qd, fl) in zip(idx.tolist(), rows):
            inst = self.insts[i]
            if not inst.model or not inst.gpu_type:
                continue
            by_model.setdefault(inst.model, []).append(ReplicaMetrics(
                inst.name, inst.variant, used / tot if tot > 0 else 0.0, qd, fl, inst.cost_per_hour, tot * B, used * B))
        pending: Dict[str, List[int]] = {}
        n = sim.num_instances
        for i in np.flatnonzero(ins[:n, L.I_LIFE] == L.LIFE_LOADING).tolist():
            inst = self.insts[i]
            cap = int(ins[i, L.I_TOTAL_BLOCKS]) * B
            if not inst.model or not inst.gpu_type or cap <= 0:
                continue
            p = pending.setdefault(inst.model, [0, 0])
            p[0] += 1
            p[1] += cap
        out = []
        for m in sorted(set(by_model) | set(pending)):
            p = pending.get(m, [0, 0])
            out.append(ModelSignals(m, by_model.get(m, []), p[0], p[1]))
        return out

    def inventory(self, sim) -> GPUInventory:
        """Free GPUs per variant: GPUs of Ready nodes minus those held by Loading, Active and
        Draining instances (per GPU type); variants = each GPU type at the cluster TP plus
        every live instance's (GPU type, TP)."""
        if self.placement is None:
            return GPUInventory()
        total = self._total_gpus
        n = sim.num_instances
        alive = sim.ins[:n, L.I_LIFE] != L.LIFE_TERMINATED
        used: Dict[str, int] = {}
        seen = {VariantSpec(g, self.tp) for g, t in total.items() if t > 0}
        for (g, tp), rows in self._by_variant.items():
            k = int(alive[rows].sum())
            if k and g:
                used[g] = used.get(g, 0) + k * tp
                if tp > 0:
                    seen.add(VariantSpec(g, tp))
        return GPUInventory({v: max(0, total.get(v.gpu_type, 0) - used.get(v.gpu_type, 0)) for v in seen})

    def _index(self, i: int) -> None:
        """Remember instance i's (GPU type, TP) for the inventory."""
        inst = self.insts[i]
        rows = self._by_variant.setdefault((inst.gpu_type, inst.tp), np.zeros(0, np.int64))
        self._by_variant[(inst.gpu_type, inst.tp)] = np.append(rows, i)
        if i >= len(self._grp):
            grp = np.full(max(2 * len(self._grp), i + 1), -1, np.int64)
            grp[:len(self._grp)] = self._grp
            self._grp = grp
        g = -1
        if inst.model and inst.gpu_type:      # what the collector reports (analyzer key: model, variant)
            key = (inst.model, inst.variant.gpu_type, inst.variant.tp)
            g = self._groups.get(key, -1)
            if g < 0:
                g = self._groups[key] = len(self._g_model)
                self._g_model.append(inst.model)
                self._g_variant.append(inst.variant)
                if len(self._g_model) > self._gi.shape[0]:
                    self._gi = np.zeros((2 * self._gi.shape[0], 5), np.int64)
                    self._gf = np.zeros((self._gi.shape[0], 2), np.float64)
        self._grp[i] = g

    def _fast_signals(self, sim, now: int) -> Optional[List[AnalyzerResult]]:
        """The snapshot refresh, :meth:`collect` and :func:`analyze` in one compiled scan
        (no per-replica objects); fills ``self._life``.  Returns None, after refreshing,
        when a routable replica has no KV capacity (the Python path then logs it)."""
        cfg_arr, glob = sim.cfg_arr, sim.glob
        delay = int(cfg_arr[L.C_CACHE_DELAY])
        if delay > 0 and now - int(glob[L.G_CACHE_LAST]) >= delay:
            _cache_refresh(sim.kv, sim.ins, sim.wr, np.int64(sim.num_instances), np.int64(now), cfg_arr, glob)
        a = self.cfg.analyzer
        if _tick_scan_nb(sim.ins, glob, cfg_arr, sim.wr[13], now, self._grp, self._gi, self._gf,
                         float(a.kv_cache_threshold), float(a.avg_input_tokens), self._life):
            return None
        ng = len(self._g_model)
        gi = self._gi[:ng].tolist()
        gf = self._gf[:ng].tolist()
        if ng == 1:     # one model with one variant (every run without several pool GPU types)
            cnt, _, pend, pend_cap, i = gi[0]
            if not (cnt or pend):
                return []
            res = AnalyzerResult(self._g_model[0])
            if cnt:     # the analyzer's per-variant cost is its first replica's
                supply, demand = gf[0]
                vc = VariantCapacity(self._g_variant[0], supply, demand, cnt, self.insts[i].cost_per_hour)
                res = _finish_analysis(res, [vc], pend_cap, a)
            return [res]
        models: Dict[str, list] = {}
        for g in range(ng):
            cnt, first, pend, pend_cap, i = gi[g]
            if cnt or pend:
                m = models.get(self._g_model[g])
                if m is None:
                    m = models[self._g_model[g]] = [[], 0]
                if cnt:
                    supply, demand = gf[g]
                    m[0].append((first, VariantCapacity(self._g_variant[g], supply, demand, cnt,
                                                        self.insts[i].cost_per_hour)))
                m[1] += pend_cap
        out = []
        for model in sorted(models):
            reps, pend_cap = models[model]
            res = AnalyzerResult(model)
            if reps:
                reps.sort(key=_first)   # variants in order of first appearance, as analyze() aggregates
                res = _finish_analysis(res, [vc for _, vc in reps], pend_cap, a)
            out.append(res)
        return out

    def _cached_inventory(self, sim) -> GPUInventory:
        """A fresh copy of :meth:`inventory`, recomputed only when the instance set or the
        terminated count (all it depends on, states being monotone) changed."""
        key = (sim.num_instances, int(self._life[L.LIFE_TERMINATED]))
        if key != self._inv_key or self._inv_cache is None:
            self._inv_cache = self.inventory(sim)
            self._inv_key = key
        return GPUInventory(self._inv_cache.by_variant)

    # ------------------------------------------------------------ tick
    def tick(self, sim, now: int) -> None:
        self.ticks += 1
        results = self._fast_signals(sim, now) if self.fast_tick else None
        if results is None:
            self._reap(sim)
            self._refresh_snapshots(sim, now)
            results = [analyze(ms, self.cfg.analyzer) for ms in self.collect(sim)]
            inv = self.inventory(sim)
        else:
            if int(self._life[L.LIFE_TERMINATED]) != self._n_reaped:
                self._reap(sim)
            inv = self._cached_inventory(sim)
            life = self._life.tolist()
            self._tick_counts = (life[L.LIFE_ACTIVE], life[L.LIFE_LOADING], life[L.LIFE_DRAINING])
        self._tick_inv = inv     # the tick changes no state: its records reuse this inventory and these counts
        try:
            passed = self._gate(now, results, list(self.engine(results, inv)))
        finally:
            self._tick_inv = None
            self._tick_counts = None
        if passed:
            at = now + self.cfg.hpa_scrape_delay.sample_us(self.rng_autoscaler)
            self._next_act += 1
            self.pending_actuations[self._next_act] = passed
            _push(sim, at, L.CP_SCALE_ACT, self._next_act)
        # reschedule, except with an unbounded horizon once nothing is pending or in flight
        if int(sim.cfg_arr[L.C_HORIZON]) == _INT64_MAX and len(sim.arrival_order) <= int(sim.glob[L.G_ARR_CURSOR]) \
                and int(sim.ins[:sim.num_instances, L.I_INFLIGHT].sum()) == 0:
            return
        _push(sim, now + int(self.cfg.interval_us), L.CP_SCALE_TICK, -1)

    def _gate(self, now: int, results: List[AnalyzerResult], decisions: list) -> List[ScaleDecision]:
        """The stabilization gate: the decisions that pass (the others are recorded as suppressed)."""
        if self.up_first:
            ups = {d.model_id for d in decisions if d.delta > 0}
            for m in [m for m in self.up_first if m not in ups]:
                del self.up_first[m]
        if self.down_first:
            downs = {d.model_id for d in decisions if d.delta < 0}
            for m in [m for m in self.down_first if m not in downs]:
                del self.down_first[m]
        passed = []
        if not decisions:
            return passed
        by_model = {r.model_id: r for r in results}
        for d in decisions:
            if not isinstance(d, ScaleDecision):
                raise TypeError(f"autoscaler engine {self.cfg.engine!r} must return ScaleDecision objects, got {d!r}")
            if d.delta == 0:
                log.warning("[autoscaler] engine emitted a zero delta for model %r; skipped", d.model_id)
                continue
            timers, window = ((self.up_first, self.cfg.scale_up_window_us) if d.delta > 0
                              else (self.down_first, self.cfg.scale_down_window_us))
            r = by_model.get(d.model_id)
            why = (f"required capacity {r.required_capacity:.0f} tokens" if d.delta > 0 and r is not None
                   else f"spare capacity {r.spare_capacity:.0f} tokens" if r is not None else "engine decision")
            first = timers.get(d.model_id)
            if first is None:
                timers[d.model_id] = now
                if window > 0:
                    self._record(now, "suppressed", d.variant.gpu_type, d.variant.tp, d.delta,
                                 f"{why}; stabilization window started ({window:g} us)", "")
                    continue
                first = now
            if now - first < int(window):
                self._record(now, "suppressed", d.variant.gpu_type, d.variant.tp, d.delta,
                             f"{why}; stabilization window ({now - first} of {window:g} us)", "")
                continue
            timers.pop(d.model_id, None)
            passed.append(d)
            self._record(now, "decision", d.variant.gpu_type, d.variant.tp, d.delta,
                         f"{why} (utilization {r.utilization:.3f})" if r is not None else why, "")
        return passed

    # ------------------------------------------------------------ actuator
    def actuate(self, sim, now: int, decisions: List[ScaleDecision]) -> None:
        for d in decisions:
            if d.delta > 0:
                self._scale_up(sim, now, d)
            elif d.delta < 0:
                self._scale_down(sim, now, d)

    def _scale_up(self, sim, now: int, d: ScaleDecision) -> None:
        if self.placement is None:
            log.error("[actuator] scale-up for model %r: no node pools configured; nothing placed", d.model_id)
            self._record(now, "place-failed", d.variant.gpu_type, d.variant.tp, d.delta, "no node pools", "")
            return
        for _ in range(d.delta):
            self.seq += 1
            name = f"autoscale-{d.model_id}-{self.seq:06d}"
            placed = self.placement.place(name, d.variant.gpu_type, d.variant.tp)
            if placed is None:
                log.error("[actuator] scale-up for model %r variant %s: no Ready node has %d free GPUs",
                          d.model_id, d.variant, d.variant.tp)
                self._record(now, "place-failed", d.variant.gpu_type, d.variant.tp, 1,
                             f"no Ready node has {d.variant.tp} free {d.variant.gpu_type} GPUs", name)
                continue
            pool, node, gpus = placed
            blocks = self.pool_kv_blocks(pool, int(sim.cfg.total_kv_blocks))
            i = sim.add_instance(name, blocks, L.LIFE_LOADING)
            self.insts.append(_Inst(name, d.model_id, pool.gpu_type, d.variant.tp, pool.cost_per_hour, now,
                                    gpus=len(gpus)))
            self._index(i)
            self._record(now, "add", pool.gpu_type, d.variant.tp, 1, f"scale-up on {node} ({','.join(gpus)})", name)
            self._schedule_loading(i, now)
            if sim.ins[i, L.I_LIFE] == L.LIFE_ACTIVE:
                sim.refresh_routable()
                self._record(now, "loaded", pool.gpu_type, d.variant.tp, 0, "zero loading delay", name)

    def _scale_down(self, sim, now: int, d: ScaleDecision) -> None:
        for _ in range(-d.delta):
            best = None
            for i in range(sim.num_instances):
                inst = self.insts[i]
                if sim.ins[i, L.I_LIFE] != L.LIFE_ACTIVE or inst.model != d.model_id:
                    continue
                if inst.gpu_type == d.variant.gpu_type and max(inst.tp, 1) == d.variant.tp:
                    if best is None or inst.name < self.insts[best].name:
                        best = i
            if best is None:
                log.warning("[actuator] scale-down for model %r variant %s: no active instance", d.model_id, d.variant)
                self._record(now, "drain-failed", d.variant.gpu_type, d.variant.tp, -1, "no active instance", "")
                continue
            sim.set_lifecycle(best, L.LIFE_DRAINING)
            self._record(now, "drain", d.variant.gpu_type, d.variant.tp, -1, "scale-down", self.insts[best].name)

    # ------------------------------------------------------------ trace and summary
    def _record(self, t, kind, gpu_type, tp, delta, reason, instance, still_draining=0, held_gpus=0) -> None:
        sim = self.sim
        free = -1
        if self.placement is not None and gpu_type:
            inv = self._tick_inv if self._tick_inv is not None else self.inventory(sim)
            v = self._vspecs.get((gpu_type, tp))
            if v is None:
                v = self._vspecs[(gpu_type, tp)] = VariantSpec(gpu_type, max(int(tp), 1))
            free = inv.free_slots(v) - held_gpus
        if self._tick_counts is not None:     # inside a tick (no state changes): the scan's counts
            active, loading, draining = self._tick_counts
        else:
            life = sim.ins[:sim.num_instances, L.I_LIFE]
            active = int((life == L.LIFE_ACTIVE).sum())
            loading = int((life == L.LIFE_LOADING).sum())
            draining = int((life == L.LIFE_DRAINING).sum())
        self._event_rows.append((int(t), kind, self.model, gpu_type, int(tp), int(delta), reason, instance, free,
                                 active, loading, draining + still_draining))

    def finalize(self, sim) -> None:
        self._reap(sim)
        n = sim.num_instances
        horizon = int(sim.cfg_arr[L.C_HORIZON])
        clocks = np.maximum(sim.ins[:n, L.I_CLOCK], sim.ins[:n, L.I_LEFT_MAX])
        self.end_us = int(min(int(clocks.max()) if n else 0, horizon))
        self.events.sort(key=lambda e: e.time_us)   # stable: terminations are found lazily

    def usage(self) -> dict:
        """GPU-hours, replica-hours and cost (cost_per_hour is charged per replica, as the
        analyzer's CostPerReplica reads it) over each instance's life."""
        gpu_h = rep_h = cost = 0.0
        for inst in self.insts:
            end = inst.ended_us if inst.ended_us >= 0 else self.end_us
            hours = max(0, end - inst.created_us) / 3.6e9
            rep_h += hours
            gpu_h += hours * inst.gpus
            cost += hours * inst.cost_per_hour
        kinds: Dict[str, int] = {}
        for e in self.events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        return {"engine": self.cfg.engine if self.cfg.enabled else "", "ticks": self.ticks,
                "instances_created": len(self.insts),
                "scale_ups": sum(1 for e in self.events if e.kind == "add"),
                "scale_downs": sum(1 for e in self.events if e.kind == "drain"),
                "terminated": sum(1 for e in self.events if e.kind == "terminated"),
                "peak_active": max([e.active for e in self.events] + [self._initial_active()]),
                "gpu_hours": gpu_h, "replica_hours": rep_h, "cost": cost, "events_by_kind": dict(sorted(kinds.items()))}

    def _initial_active(self) -> int:
        return sum(1 for inst in self.insts if inst.created_us == 0)

    def summary_text(self) -> str:
        u = self.usage()
        lines = ["=== Autoscaler ==="]
        if u["engine"]:
            lines.append(f"Engine: {u['engine']} ({u['ticks']} ticks)")
        lines += [f"Instances Created: {u['instances_created']} (scale-ups {u['scale_ups']}, "
                  f"drains {u['scale_downs']}, terminated {u['terminated']})",
                  f"Peak Active Instances: {u['peak_active']}",
                  f"GPU-Hours: {u['gpu_hours']:.4f}", f"Replica-Hours: {u['replica_hours']:.4f}",
                  f"Cost: {u['cost']:.4f}"]
        return "\n".join(lines) + "\n"

    def to_arrow(self):
        import pyarrow as pa
        cols = {f: [getattr(e, f) for e in self.events] for f in SCALE_EVENT_FIELDS}
        types = {"time_us": pa.int64(), "tp": pa.int32(), "delta": pa.int32(), "free_gpus": pa.int32(),
                 "active": pa.int32(), "loading": pa.int32(), "draining": pa.int32()}
        return pa.table({f: pa.array(cols[f], type=types.get(f, pa.string())) for f in SCALE_EVENT_FIELDS})

    def instance_table(self):
        """One row per instance: name, GPU type, TP, created/ended times."""
        import pyarrow as pa
        return pa.table({"instance": [i.name for i in self.insts], "gpu_type": [i.gpu_type for i in self.insts],
                         "tp": pa.array([i.tp for i in self.insts], pa.int32()),
                         "created_us": pa.array([i.created_us for i in self.insts], pa.int64()),
                         "ended_us": pa.array([i.ended_us for i in self.insts], pa.int64())})


def scale_trace_summary(events: Sequence[ScaleEvent]) -> Dict[str, int]:
    """Count of scale events per kind (for the trace summary)."""
    out: Dict[str, int] = {}
    for e in events:
        out[e.kind] = out.get(e.kind, 0) + 1
    return dict(sorted(out.items()))


def dump_decisions(decisions: Sequence[ScaleDecision]) -> List[Tuple[str, str, int, int]]:
    """Decisions as plain tuples (model, GPU type, TP, delta) - handy in tests."""
    return [(d.model_id, d.variant.gpu_type, d.variant.tp, d.delta) for d in decisions]
