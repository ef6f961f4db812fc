"""Decision traces (``--trace-level decisions``): admission and routing records,
counterfactual regret, and the summary BLIS prints with ``--summarize-trace``.

The engine records decisions into preallocated arrays (``Simulation.wr[6:12]``);
this module turns them into Arrow tables (one row per decision; routing
candidates as a separate long table) and computes counterfactuals vectorised.
Record types live in one registry (``TRACE_RECORDS``): a new record type is a
builder ``fn(sim, k) -> pyarrow.Table`` and one registration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

import numpy as np

from blis.kernels import layout as L
from blis.registry import Registry

ADMISSION_REASONS = {L.AR_ADMITTED: "", L.AR_REJECT_ALL: "reject-all", L.AR_TOKENS: "insufficient tokens",
                     L.AR_TIER_SHED: "tier-shed", L.AR_GAIE: "gaie-saturated",
                     L.AR_TENANT_BUDGET: "tenant-budget-shed", L.AR_PYTHON: "python-policy"}

#: record type name -> builder(sim, counterfactual_k) -> pyarrow.Table
TRACE_RECORDS: Registry[Callable] = Registry("trace record type")


@dataclass
class DecisionTrace:
    """All record tables of one run plus the routing regret per decision."""

    tables: Dict[str, object]
    regret: np.ndarray
    chosen: np.ndarray
    admitted: np.ndarray

    def summary(self, instance_names) -> dict:
        total = len(self.admitted)
        adm = int(self.admitted.sum())
        dist: Dict[str, int] = {}
        for c in self.chosen.tolist():
            name = instance_names[c]
            dist[name] = dist.get(name, 0) + 1
        n = len(self.regret)
        return {
            "total_decisions": total, "admitted": adm, "rejected": total - adm,
            "unique_targets": len(dist), "target_distribution": dict(sorted(dist.items())),
            "mean_regret": float(self.regret.sum() / n) if n else 0.0,
            "max_regret": float(self.regret.max()) if n else 0.0,
        }

    def summary_text(self, instance_names) -> str:
        s = self.summary(instance_names)
        lines = ["=== Trace Summary ===", f"Total Decisions: {s['total_decisions']}",
                 f"  Admitted: {s['admitted']}", f"  Rejected: {s['rejected']}",
                 f"Unique Targets: {s['unique_targets']}", "Target Distribution:"]
        lines += [f"  {k}: {v}" for k, v in s["target_distribution"].items()]
        lines += [f"Mean Regret: {s['mean_regret']:.6f}", f"Max Regret: {s['max_regret']:.6f}"]
        return "\n".join(lines) + "\n"


def counterfactual(scores: np.ndarray, loads: np.ndarray, chosen: np.ndarray, k: int, names=None, valid=None):
    """Per decision: candidate score = policy score when the policy scored
    (non-NaN), else -EffectiveLoad; candidates sorted by score desc, ties by
    instance ID; regret = max(0, top - chosen).  ``valid`` (decisions x instances)
    excludes instances that were not routable.  Returns (regret, top-k index
    matrix with -1 padding)."""
    n_dec, n_inst = loads.shape
    cand = np.where(np.isnan(scores), -loads.astype(np.float64), scores)
    if valid is not None:
        cand = np.where(valid, cand, -np.inf)
    if n_dec == 0:
        return np.zeros(0), np.zeros((0, max(k, 0)), np.int64)
    # stable sort on -score keeps ties in instance order (IDs instance_<i> sort the same for i < 10;
    # beyond that BLIS compares ID strings, which we reproduce with a string-order rank)
    names = names if names is not None else [f"instance_{i}" for i in range(n_inst)]
    rank = np.argsort(np.array(names[:n_inst]), kind="stable")
    inv = np.empty(n_inst, np.int64)
    inv[rank] = np.arange(n_inst)
    order = np.lexsort((np.broadcast_to(inv, cand.shape), -cand), axis=-1)
    top = cand[np.arange(n_dec), order[:, 0]]
    regret = np.maximum(0.0, top - cand[np.arange(n_dec), chosen])
    kk = min(max(k, 0), n_inst)
    top_k = order[:, :kk]
    if valid is not None:
        top_k = np.where(np.take_along_axis(valid, top_k, axis=1), top_k, -1)
    return regret, top_k


def build_trace(sim, counterfactual_k: int = 0) -> DecisionTrace:
    """Collect the engine's decision records of ``sim`` (after ``run()``)."""
    import pyarrow as pa

    g = sim.glob
    na = int(g[L.G_TR_ADM_N])
    nr = int(g[L.G_TR_RT_N])
    adm, admv, rt, rtv, ci, cf = sim.wr[6:12]
    adm, admv = adm[:na], admv[:na]
    n_created = len(sim.instance_names)
    rt, rtv, ci, cf = rt[:nr], rtv[:nr], ci[:nr, :n_created], cf[:nr, :n_created]
    rid = sim.rq[L.R_ID]
    names = np.array([f"request_{x}" for x in rid.tolist()], dtype=object)
    inst_names = list(sim.instance_names)
    valid = ci[:, :, 0] >= 0      # instances that were routable at the decision
    reasons = np.array([ADMISSION_REASONS[int(c)] for c in adm[:, 3].tolist()], dtype=object)
    tables = {"admissions": pa.table({
        "request_id": names[adm[:, 0]] if na else np.zeros(0, object),
        "clock_us": adm[:, 0 + 1], "admitted": adm[:, 2].astype(bool), "reason": reasons,
        "detail": admv})}
    loads = ci[:, :, 0] + ci[:, :, 1] + ci[:, :, 2]
    chosen = rt[:, 2]
    regret, top = counterfactual(cf[:, :, 0], loads, chosen, counterfactual_k, inst_names,
                                 None if valid.all() else valid)
    n_inst = ci.shape[1] if nr else len(inst_names)
    tables["routing"] = pa.table({
        "request_id": names[rt[:, 0]] if nr else np.zeros(0, object), "clock_us": rt[:, 1],
        "chosen_instance": np.array(inst_names, dtype=object)[chosen] if nr else np.zeros(0, object),
        "reason_value": rtv, "regret": regret})
    dec = np.repeat(np.arange(nr), n_inst)
    inst = np.tile(np.arange(n_inst), nr)
    keep = valid.reshape(-1)
    cand = pa.table({
        "decision": dec, "request_id": (names[rt[:, 0]] if nr else np.zeros(0, object)).repeat(n_inst),
        "instance": np.array(inst_names, dtype=object)[inst] if nr else np.zeros(0, object),
        "score": cf[:, :, 0].reshape(-1), "queue_depth": ci[:, :, 0].reshape(-1),
        "batch_size": ci[:, :, 1].reshape(-1), "in_flight_requests": ci[:, :, 2].reshape(-1),
        "kv_utilization": cf[:, :, 1].reshape(-1), "free_kv_blocks": ci[:, :, 3].reshape(-1)})
    tables["candidates"] = cand if keep.all() else cand.filter(pa.array(keep))
    if counterfactual_k > 0:
        kk = top.shape[1]
        cf_tab = pa.table({
            "decision": np.repeat(np.arange(nr), kk), "rank": np.tile(np.arange(kk), nr),
            "instance": np.array(inst_names, dtype=object)[top.reshape(-1)] if nr else np.zeros(0, object)})
        ok = top.reshape(-1) >= 0
        tables["counterfactuals"] = cf_tab if ok.all() else cf_tab.filter(pa.array(ok))
    for name in TRACE_RECORDS:
        t = TRACE_RECORDS.get(name)(sim, counterfactual_k)
        if t is not None:   # a record type may not apply to this run
            tables[name] = t
    return DecisionTrace(tables=tables, regret=regret, chosen=chosen, admitted=adm[:, 2].astype(bool))


def write_trace(trace: DecisionTrace, prefix: str) -> list:
    """Write each table as ``<prefix>.<name>.parquet`` (temporary name, then rename)."""
    from blis.fileio import atomic_write_parquet

    paths = []
    for name, table in trace.tables.items():
        path = f"{prefix}.{name}.parquet"
        atomic_write_parquet(table, path)
        paths.append(path)
    return paths


def _scale_events(sim, k):
    """The autoscaler's scale events (only in runs with node pools or the autoscaler)."""
    a = getattr(sim, "autoscaler", None)
    return a.to_arrow() if a is not None else None


TRACE_RECORDS.register("scale_events", _scale_events)
