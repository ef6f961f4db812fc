"""Pluggable cluster policies written in Python: routing policies, admission
policies and weighted-routing scorers (stateless or stateful).

Built-in policies are compiled; they are registered under BLIS's names with an
integer code.  A Python policy is one function and one registration, and is
selectable by name exactly like a built-in one (``--routing-policy``,
``--admission-policy``, ``--routing-scorers``)::

    from blis.policies import register_routing_policy
    register_routing_policy("emptiest-queue", lambda view, r: int(view.queue_depth.argmin()))

The engine pauses at each decision of a Python policy and resumes after it (a
few microseconds per decision).  Functions receive a :class:`RouterView`: the
routing snapshots BLIS's policies see (with the same staleness rules) plus the
request's columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from blis.kernels import layout as L
from blis.registry import Registry
from blis.routing import ROUTING_POLICIES, SCORERS

ADMISSION_POLICIES: Registry[object] = Registry("admission policy", "--admission-policy")
for _n, _c in (("always-admit", L.ADMIT_ALWAYS), ("token-bucket", L.ADMIT_TOKEN_BUCKET),
               ("reject-all", L.ADMIT_REJECT_ALL), ("tier-shed", L.ADMIT_TIER_SHED),
               ("gaie-legacy", L.ADMIT_GAIE_LEGACY)):
    ADMISSION_POLICIES.register(_n, _c, aliases=("",) if _n == "always-admit" else ())


class RouterView:
    """What a Python policy sees for request ``r``: per-instance snapshot arrays
    (``queue_depth``, ``batch_size``, ``in_flight``, ``kv_utilization``,
    ``free_kv_blocks``, ``effective_load``) and request fields.

    The arrays cover the *routable* instances only (all of them unless node pools or
    the autoscaler are configured); ``instances`` maps a view position to the
    instance index, and a policy answers with a view position."""

    def __init__(self, sim, r: int):
        self.instances = sim.routable()
        ins = sim.ins[self.instances]
        self.sim = sim
        self.r = r
        self.clock_us = int(sim.glob[L.G_CLOCK])
        self.num_instances = ins.shape[0]
        self.queue_depth = ins[:, L.I_SNAP_QD].copy()
        self.batch_size = ins[:, L.I_SNAP_BS].copy()
        self.in_flight = ins[:, L.I_INFLIGHT].copy()
        total = ins[:, L.I_TOTAL_BLOCKS].astype(np.float64)
        used = ins[:, L.I_SNAP_KV_USED].astype(np.float64)
        self.kv_utilization = np.divide(used, total, out=np.zeros_like(used), where=total > 0)
        self.free_kv_blocks = ins[:, L.I_TOTAL_BLOCKS] - ins[:, L.I_SNAP_KV_USED]
        self.effective_load = self.queue_depth + self.batch_size + self.in_flight
        rq = sim.rq
        self.input_len = int(rq[L.R_ILEN, r])
        self.arrival_us = int(rq[L.R_ARRIVAL, r])
        self.slo_class = sim.table.names["slo_class"][int(rq[L.R_SLO, r])]
        self.tenant = sim.table.names["tenant"][int(rq[L.R_TENANT, r])]
        self.request_id = int(rq[L.R_ID, r])

    def block_hashes(self) -> np.ndarray:
        """Chained hashes of the request's full input blocks (same hashes as the KV caches)."""
        from blis.kernels.engine import request_hashes_nb
        out = self.sim.hsc[0]
        n = request_hashes_nb(self.sim.rq, self.sim.gseed, self.r, int(self.sim.cfg.block_size), out)
        return out[:n].copy()


@dataclass(frozen=True)
class PythonRouting:
    route: Callable[[RouterView, int], int]


@dataclass(frozen=True)
class PythonAdmission:
    admit: Callable[[RouterView, int], bool]


@dataclass(frozen=True)
class PythonScorer:
    """``score(view, r) -> per-instance array`` (clamped to [0, 1]); optional
    ``observe(view, r, target)`` called after each decision (stateful scorers)."""

    score: Callable[[RouterView, int], np.ndarray]
    observe: Optional[Callable[[RouterView, int, int], None]] = None


def register_routing_policy(name: str, route: Callable[[RouterView, int], int]):
    """``route(view, r) -> instance index`` (or -1 to reject the request)."""
    return ROUTING_POLICIES.register(name, PythonRouting(route))


def register_admission_policy(name: str, admit: Callable[[RouterView, int], bool]):
    """``admit(view, r) -> bool``."""
    return ADMISSION_POLICIES.register(name, PythonAdmission(admit))


def register_scorer(name: str, score, observe=None):
    """Register a weighted-routing scorer (stateful if ``observe`` is given)."""
    return SCORERS.register(name, PythonScorer(score, observe))


def make_route_fn(policy, scorers, sim_cfg):
    """The Simulation ``route_fn`` for a Python policy or a weighted policy with
    Python scorers, or None when the compiled engine routes by itself."""
    if isinstance(policy, PythonRouting):
        def route_python(sim, r):
            view = RouterView(sim, r)
            if view.num_instances == 0:
                return -1   # nothing routable: a routing rejection (the policy is not asked)
            pos = int(policy.route(view, r))
            if pos < 0:
                return -1
            if pos >= view.num_instances:
                raise ValueError(f"routing policy must return a view position in [0, {view.num_instances}) "
                                 f"or -1, got {pos}")
            return int(view.instances[pos])
        return route_python
    if policy != L.ROUTE_WEIGHTED or not any(isinstance(SCORERS.get(n), PythonScorer) for n, _ in scorers):
        return None
    total_w = sum(w for _, w in scorers)
    impls = [(SCORERS.get(n), w / total_w) for n, w in scorers]

    def route(sim, r):
        from blis.kernels.engine import request_hashes_nb, scorer_scores_nb
        from blis.kernels.gorand import intn_nb
        from blis.kernels.lru import lru_record_nb

        view = RouterView(sim, r)
        n = view.num_instances
        if n == 0:
            return -1
        hashes = sim.hsc[0]
        nh = request_hashes_nb(sim.rq, sim.gseed, r, int(sim.cfg.block_size), hashes)
        total = np.zeros(n)
        sc = np.zeros(n)
        tied = np.zeros(n + 1, np.int64)
        for impl, w in impls:
            if isinstance(impl, PythonScorer):
                s = np.asarray(impl.score(view, r), np.float64)
                if s.shape != (n,) or not np.isfinite(s).all():
                    raise ValueError(f"scorer must return {n} finite scores, got {s!r}")
            else:
                scorer_scores_nb(np.int64(impl), sim.ins, sim.kv, sim.wr, sim.pa, sim.cfg_arr, np.int64(n),
                                 hashes, np.int64(nh), tied, sc, np.int64(r))
                s = sc
            total += np.clip(s, 0.0, 1.0) * w
        best = total.max()
        ties = np.flatnonzero(total == best)
        pos = int(ties[0]) if len(ties) == 1 else int(ties[intn_nb(sim.router_rng, np.int64(len(ties)))])
        target = int(view.instances[pos])
        for impl, _ in impls:
            if isinstance(impl, PythonScorer) and impl.observe is not None:
                impl.observe(view, r, pos)
            elif impl == L.SC_PREFIX_AFFINITY:
                for c in range(nh):
                    lru_record_nb(sim.pa, np.int64(target), hashes[c], np.int64(sim.cfg_arr[L.C_PA_CAP]))
            elif impl == L.SC_NO_HIT_LRU:
                from blis.kernels.engine import no_hit_lru_observe_nb
                no_hit_lru_observe_nb(sim.wr[12], np.int64(n), np.int64(r), np.int64(target))
        return target

    return route


def make_admit_fn(policy):
    if isinstance(policy, PythonAdmission):
        return lambda sim, r: bool(policy.admit(RouterView(sim, r), r))
    return None
