"""Simulation results: per-request columns, per-instance counters, and the
BLIS-compatible summaries built from them (MetricsOutput JSON, stdout blocks,
``--metrics-path`` and ``--results-path`` files) plus the Parquet table.

Per-request columns are numpy arrays aligned with the workload's rows; units are
in the names.  Every summary is derived from these arrays, never recomputed
from Python objects.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from blis import stats
from blis.gojson import marshal_indent
from blis.kernels import layout as Lo
from blis.registry import Registry

STATE_NAMES = {Lo.ST_PENDING: "pending", Lo.ST_QUEUED: "queued", Lo.ST_RUNNING: "running",
               Lo.ST_COMPLETED: "completed", Lo.ST_TIMED_OUT: "timed_out",
               Lo.ST_DROPPED: "dropped_unservable", Lo.ST_REJECTED: "rejected",
               Lo.ST_ROUTE_REJECTED: "routing_rejected", Lo.ST_GW_REJECTED: "gateway_rejected",
               Lo.ST_GW_SHED: "gateway_shed", Lo.ST_GW_EXPIRED: "gateway_expired",
               Lo.ST_GW_QUEUED: "gateway_queued"}

#: per-request output columns: (name, dtype, unit, doc)
RESULT_FIELDS = [
    ("request_id", np.int64, "", "numeric id (name request_<id>)"),
    ("arrival_us", np.int64, "us", "arrival time"),
    ("input_tokens", np.int32, "tokens", "input length including the shared prefix"),
    ("output_tokens", np.int32, "tokens", "oracle output length"),
    ("state", np.int8, "", "0 pending,1 queued,2 running,3 completed,4 timed_out,5 dropped,6 rejected,7 routing_rejected"),
    ("instance", np.int32, "", "instance index that handled the request (-1 none)"),
    ("ttft_us", np.int64, "us", "time to first token (-1 if no first token)"),
    ("e2e_us", np.int64, "us", "end-to-end latency (-1 unless completed)"),
    ("scheduling_delay_us", np.int64, "us", "arrival to (last) admission into a batch (-1 if never)"),
    ("itl_sum_us", np.int64, "us", "sum of inter-token latencies of the final attempt"),
    ("itl_mean_us", np.float64, "us", "itl_sum / max(output_tokens - 1, 1) (BLIS TPOT convention)"),
    ("output_tokens_done", np.int32, "tokens", "output tokens counted at completion"),
    ("length_capped", np.bool_, "", "completed at the max-model-len boundary"),
]


@dataclass(frozen=True)
class RequestMetric:
    """A derived per-request column: ``compute(results) -> array`` aligned with the rows."""

    name: str
    compute: Callable[["SimResults"], np.ndarray]
    dtype: object
    unit: str
    doc: str


#: derived per-request metric fields, added to the Parquet/Arrow output
REQUEST_METRICS: Registry[RequestMetric] = Registry("request metric")


def register_request_metric(name: str, compute, dtype=np.float64, unit: str = "", doc: str = "") -> RequestMetric:
    """Add a per-request output column computed from the result columns (vectorised)."""
    base = {f[0] for f in RESULT_FIELDS}
    if name in base:
        raise ValueError(f"request metric {name!r}: clashes with a built-in result column")
    return REQUEST_METRICS.register(name, RequestMetric(name, compute, dtype, unit, doc))


def _decode_time_us(res):
    c = res.cols
    done = c["state"] == Lo.ST_COMPLETED
    return np.where(done, c["e2e_us"] - c["ttft_us"], -1).astype(np.int64)


register_request_metric("decode_time_us", _decode_time_us, np.int64, "us",
                        "E2E minus TTFT for completed requests (-1 otherwise)")


@dataclass
class InstanceCounters:
    completed: int
    still_queued: int
    still_running: int
    dropped: int
    timed_out: int
    length_capped: int
    preemptions: int
    alloc_failures: int
    input_tokens: int
    output_tokens: int
    sim_ended_us: int
    cache_hits: int
    cache_misses: int
    total_blocks: int
    peak_used_blocks: int
    wq_sample_sum: int
    wq_samples: int
    injected: int
    events: int
    cpu_misses: int = 0
    cpu_hits: int = 0
    cpu_evictions: int = 0
    cpu_mirrored: int = 0

    @property
    def cache_hit_rate(self) -> float:
        """GPU hits / (GPU hits + GPU misses + CPU-tier misses), 0 if nothing was allocated."""
        t = self.cache_hits + self.cache_misses + self.cpu_misses
        return self.cache_hits / t if t > 0 else 0.0

    @property
    def kv_thrashing_rate(self) -> float:
        """CPU-tier evictions / blocks mirrored to the CPU (0 without a CPU tier)."""
        return self.cpu_evictions / self.cpu_mirrored if self.cpu_mirrored > 0 else 0.0


@dataclass
class SimResults:
    cols: Dict[str, np.ndarray]
    instances: List[InstanceCounters]
    itl_hists: list
    names: dict
    request_table: object = None
    rejected: int = 0
    routing_rejected: int = 0
    scheduler: str = "fcfs"
    extra: dict = field(default_factory=dict)
    #: instance IDs in list order (None = instance_<i>); configured --num-instances
    instance_names: Optional[List[str]] = None
    configured_instances: int = 0

    # ------------------------------------------------------------ build
    @classmethod
    def from_simulation(cls, sim) -> "SimResults":
        rq, ins, c = sim.rq, sim.ins, sim.cfg
        horizon = int(sim.cfg_arr[Lo.C_HORIZON])
        state = rq[Lo.R_STATE].astype(np.int8)
        olen = rq[Lo.R_OLEN]
        div = rq[Lo.R_ITLMEAN_DIV]
        itl_mean = np.zeros(len(state), np.float64)
        done = (state == Lo.ST_COMPLETED) & (div > 0)
        itl_mean[done] = rq[Lo.R_ITLSUM][done].astype(np.float64) / div[done].astype(np.float64)
        cols = {
            "request_id": rq[Lo.R_ID].copy(),
            "arrival_us": rq[Lo.R_ARRIVAL].copy(),
            "input_tokens": rq[Lo.R_ILEN].astype(np.int32),
            "output_tokens": olen.astype(np.int32),
            "state": state,
            "instance": rq[Lo.R_INST].astype(np.int32),
            "ttft_us": rq[Lo.R_FIRST].copy(),
            "e2e_us": rq[Lo.R_E2E].copy(),
            "scheduling_delay_us": rq[Lo.R_SCHED].copy(),
            "itl_sum_us": rq[Lo.R_ITLSUM].copy(),
            "itl_mean_us": itl_mean,
            "output_tokens_done": rq[Lo.R_OUTDONE].astype(np.int32),
            "length_capped": rq[Lo.R_CAPPED].astype(bool),
        }
        insts = []
        for i in range(ins.shape[0]):
            clock = max(int(ins[i, Lo.I_CLOCK]), int(ins[i, Lo.I_LEFT_MAX]))
            insts.append(InstanceCounters(
                completed=int(ins[i, Lo.I_COMPLETED]),
                still_queued=int(ins[i, Lo.I_WQT] - ins[i, Lo.I_WQH]),
                still_running=int(ins[i, Lo.I_BLEN]),
                dropped=int(ins[i, Lo.I_DROPPED]),
                timed_out=int(ins[i, Lo.I_TIMED_OUT]),
                length_capped=int(ins[i, Lo.I_CAPPED]),
                preemptions=int(ins[i, Lo.I_PREEMPT]),
                alloc_failures=int(ins[i, Lo.I_ALLOC_FAIL]),
                input_tokens=int(ins[i, Lo.I_IN_TOKENS]),
                output_tokens=int(ins[i, Lo.I_OUT_TOKENS]),
                sim_ended_us=min(clock, horizon),
                cache_hits=int(ins[i, Lo.I_HITS]),
                cache_misses=int(ins[i, Lo.I_MISSES]),
                total_blocks=int(ins[i, Lo.I_TOTAL_BLOCKS]),
                peak_used_blocks=int(ins[i, Lo.I_PEAK_USED]),
                wq_sample_sum=int(ins[i, Lo.I_WQ_SAMPLE_SUM]),
                wq_samples=int(ins[i, Lo.I_WQ_SAMPLES]),
                injected=int(ins[i, Lo.I_INJECTED]),
                events=int(ins[i, Lo.I_EVENTS]),
                cpu_misses=int(ins[i, Lo.I_CPU_MISSES]),
                cpu_hits=int(ins[i, Lo.I_CPU_HITS]),
                cpu_evictions=int(ins[i, Lo.I_CPU_EVICT]),
                cpu_mirrored=int(ins[i, Lo.I_CPU_MIRROR]),
            ))
        hists = [sim.itl_histogram(i) for i in range(ins.shape[0])]
        t = sim.table
        cols["slo_class"] = t["slo_class"].copy()
        cols["tenant"] = t["tenant"].copy()
        cols["model"] = t["model"].copy()
        cols["session"] = t["session"].copy()
        cols["round_index"] = t["round_index"].copy()
        cols["prefix_len"] = t["prefix_len"].copy()
        if "name" in t.cols:  # closed-loop follow-ups: code into names["name"] (0 = request_<id>)
            cols["name"] = t["name"].copy()
        gw = sim.gateway
        extra = {}
        if gw is not None:
            extra["gateway"] = gw.counters()
            extra["gateway_shed_by_tier"] = dict(gw.shed_by_tier)
            cols["gateway_queue_delay_us"] = gw.queue_delay_us(len(t))
        if getattr(sim, "autoscaler", None) is not None:
            extra["autoscaler"] = sim.autoscaler.usage()
        return cls(cols=cols, instances=insts, itl_hists=hists, names=t.names, request_table=t,
                   rejected=int(sim.glob[Lo.G_REJECTED]),
                   routing_rejected=int(sim.glob[Lo.G_ROUTE_REJECTED]),
                   scheduler=c.scheduler, extra=extra, instance_names=list(sim.instance_names),
                   configured_instances=int(c.num_instances))

    # ------------------------------------------------------------ selections
    def _mask(self, instance=None):
        inst = self.cols["instance"]
        if instance is None:
            return inst >= 0
        return inst == instance

    @property
    def num_instances(self) -> int:
        return len(self.instances)

    def instance_name(self, i: int) -> str:
        return self.instance_names[i] if self.instance_names else f"instance_{i}"

    # ------------------------------------------------------------ MetricsOutput
    def metrics_output(self, instance=None) -> dict:
        """BLIS MetricsOutput (stdout block) for one instance or the cluster (None)."""
        insts = self.instances if instance is None else [self.instances[instance]]
        s = lambda f: sum(getattr(x, f) for x in insts)  # noqa: E731
        completed = s("completed")
        still_q = s("still_queued")
        still_r = s("still_running")
        dropped = s("dropped")
        timed_out = s("timed_out")
        sim_end = max(x.sim_ended_us for x in insts) if insts else 0
        dur = float(sim_end) / float(1e6)
        out_tokens = s("output_tokens")
        o = {
            "instance_id": "cluster" if instance is None else self.instance_name(instance),
            "completed_requests": completed,
            "still_queued": still_q,
            "still_running": still_r,
            "injected_requests": completed + still_q + still_r + dropped + timed_out,
            "total_input_tokens": s("input_tokens"),
            "total_output_tokens": out_tokens,
            "vllm_estimated_duration_s": dur,
            "responses_per_sec": 0.0,
            "tokens_per_sec": 0.0,
        }
        if completed > 0 and dur > 0:
            o["responses_per_sec"] = float(completed) / dur
            o["tokens_per_sec"] = float(out_tokens) / dur
        lat = {k: 0.0 for k in ("e2e_mean_ms", "e2e_p90_ms", "e2e_p95_ms", "e2e_p99_ms",
                                "ttft_mean_ms", "ttft_p90_ms", "ttft_p95_ms", "ttft_p99_ms",
                                "itl_mean_ms", "itl_p90_ms", "itl_p95_ms", "itl_p99_ms",
                                "scheduling_delay_p99_ms")}
        if completed > 0:
            m = self._mask(instance)
            st = self.cols["state"]
            e2e = np.sort(self.cols["e2e_us"][m & (st == Lo.ST_COMPLETED)].astype(np.float64))
            ttft = np.sort(self.cols["ttft_us"][m & (self.cols["ttft_us"] >= 0)].astype(np.float64))
            sd = np.sort(self.cols["scheduling_delay_us"][m & (self.cols["scheduling_delay_us"] >= 0)]
                         .astype(np.float64))
            hv, hc = (self.itl_hists[instance] if instance is not None
                      else stats.merge_hists(self.itl_hists))
            lat["e2e_mean_ms"] = stats.mean_ms(e2e)
            lat["ttft_mean_ms"] = stats.mean_ms(ttft)
            lat["itl_mean_ms"] = stats.hist_mean_ms(hv, hc)
            for p in (90, 95, 99):
                lat[f"e2e_p{p}_ms"] = stats.percentile_ms(e2e, p)
                lat[f"ttft_p{p}_ms"] = stats.percentile_ms(ttft, p)
                lat[f"itl_p{p}_ms"] = stats.hist_percentile_ms(hv, hc, p)
            lat["scheduling_delay_p99_ms"] = stats.percentile_ms(sd, 99)
        o.update(lat)
        af = s("alloc_failures")
        if af:
            o["kv_allocation_failures"] = af
        o["preemption_count"] = s("preemptions")
        o["dropped_unservable"] = dropped
        o["length_capped_requests"] = s("length_capped")
        o["timed_out_requests"] = timed_out
        return o

    def cache_hit_rate(self) -> float:
        """Mean over instances of each instance's cumulative hit rate."""
        if not self.instances:
            return 0.0
        return sum(x.cache_hit_rate for x in self.instances) / len(self.instances)

    def kv_thrashing_rate(self) -> float:
        """Mean over instances of each instance's thrashing rate."""
        if not self.instances:
            return 0.0
        return sum(x.kv_thrashing_rate for x in self.instances) / len(self.instances)

    # ------------------------------------------------------------ per-request rows
    def request_rows(self) -> List[dict]:
        """``requests`` array of the --metrics-path file (registered, non-dropped
        requests; sorted by arrival, ties by request name)."""
        c = self.cols
        st = c["state"]
        keep = (c["instance"] >= 0) & (st != Lo.ST_DROPPED)
        idx = np.flatnonzero(keep)
        all_names = self.request_names()
        names = all_names[idx]
        order = np.lexsort((names, c["arrival_us"][idx]))
        idx = idx[order]
        slo = self.names.get("slo_class", [""])
        ten = self.names.get("tenant", [""])
        mod = self.names.get("model", [""])
        ses = self.names.get("session", [""])
        rows = []
        arr = c["arrival_us"].tolist()
        rid = c["request_id"].tolist()
        ilen = c["input_tokens"].tolist()
        olen = c["output_tokens"].tolist()
        ttft = c["ttft_us"].tolist()
        e2e = c["e2e_us"].tolist()
        itlm = c["itl_mean_us"].tolist()
        sd = c["scheduling_delay_us"].tolist()
        inst = c["instance"].tolist()
        capped = c["length_capped"].tolist()
        sc = c["slo_class"].tolist()
        tn = c["tenant"].tolist()
        md = c["model"].tolist()
        ss = c["session"].tolist()
        ri = c["round_index"].tolist()
        gwd = c["gateway_queue_delay_us"].tolist() if "gateway_queue_delay_us" in c else None
        for k in idx.tolist():
            row = {
                "arrived_at": float(arr[k]) / 1e6,
                "requestID": all_names[k],
                "num_prefill_tokens": ilen[k],
                "num_decode_tokens": olen[k],
                "ttft_ms": (float(ttft[k]) if ttft[k] >= 0 else 0.0) / 1e3,
                "itl_ms": itlm[k] / 1e3,
                "e2e_ms": (float(e2e[k]) if e2e[k] >= 0 else 0.0) / 1e3,
                "scheduling_delay_ms": float(sd[k] if sd[k] >= 0 else 0) / 1e3,
            }
            if slo[sc[k]]:
                row["slo_class"] = slo[sc[k]]
            if ten[tn[k]]:
                row["tenant_id"] = ten[tn[k]]
            row["handled_by"] = self.instance_name(int(inst[k]))
            if mod[md[k]]:
                row["model"] = mod[md[k]]
            if capped[k]:
                row["length_capped"] = True
            if gwd is not None and gwd[k] > 0:
                row["gateway_queue_delay_ms"] = gwd[k] / 1000
            if ses[ss[k]]:
                row["session_id"] = ses[ss[k]]
            row["round_index"] = ri[k]
            rows.append(row)
        return rows

    def request_names(self) -> np.ndarray:
        """Every request's name: ``request_<id>``, or BLIS's ``session_<sid>_round_<n>_<k>`` for follow-ups."""
        c = self.cols
        out = np.array([f"request_{x}" for x in c["request_id"].tolist()], dtype=object)
        if "name" in c:
            labels = self.names.get("name", [""])
            for k in np.flatnonzero(c["name"] != 0).tolist():
                out[k] = labels[int(c["name"][k])]
        return out

    def session_text(self) -> str:
        """The ``=== Session Metrics ===`` block (empty without session requests)."""
        c = self.cols
        ses = c["session"]
        keep = (c["instance"] >= 0) & (c["state"] != Lo.ST_DROPPED) & (ses != 0)
        idx = np.flatnonzero(keep)
        if not len(idx):
            return ""
        ttft = c["ttft_us"]
        rnd = c["round_index"]
        done = c["state"] == Lo.ST_COMPLETED
        comp = c["arrival_us"].astype(np.float64) + c["e2e_us"]
        cold, warm = [], []
        r0_arrival, max_comp = {}, {}
        for k in idx.tolist():
            s = int(ses[k])
            if ttft[k] >= 0:
                (cold if rnd[k] == 0 else warm).append(float(ttft[k]) / 1000.0)
            max_comp.setdefault(s, 0.0)
            if rnd[k] == 0:
                r0_arrival[s] = float(c["arrival_us"][k]) / 1e6 * 1000.0
            if done[k]:
                max_comp[s] = max(max_comp[s], comp[k] / 1000.0)
        durations = [max_comp[s] - r0_arrival[s] for s in max_comp if s in r0_arrival
                     and max_comp[s] - r0_arrival[s] > 0]
        lines = ["=== Session Metrics ===", f"  Sessions: {len(max_comp)}"]
        for label, vals in (("TTFT cold (round 0):", cold), ("TTFT warm (round≥1):", warm),
                            ("Session duration:   ", durations)):
            if vals:
                v = sorted(vals)
                mean = 0.0
                for x in v:
                    mean += x
                mean /= len(v)
                lines.append(f"  {label} mean={mean:.2f} p50={_go_pct(v, 50):.2f} p95={_go_pct(v, 95):.2f} "
                             f"p99={_go_pct(v, 99):.2f} ms (n={len(v)})")
        return "\n".join(lines) + "\n"

    def metrics_file(self) -> dict:
        """The --metrics-path document: cluster MetricsOutput + cache_hit_rate + requests."""
        o = self.metrics_output(None)
        out = {}
        for k, v in o.items():
            out[k] = v
            if k == "preemption_count":
                out["cache_hit_rate"] = self.cache_hit_rate()
        out["requests"] = self.request_rows()
        if "autoscaler" in self.extra:   # blis extension, only with node pools / the autoscaler
            out["autoscaler"] = self.extra["autoscaler"]
        return out

    def results_rows(self) -> List[dict]:
        """``replay --results-path``: requests with a TTFT and an E2E, sorted by id."""
        c = self.cols
        m = (c["ttft_us"] >= 0) & (c["e2e_us"] > 0) & (c["state"] == Lo.ST_COMPLETED)
        if "name" in c:  # follow-ups have no numeric request_<N> id
            m &= c["name"] == 0
        idx = np.flatnonzero(m)
        idx = idx[np.argsort(c["request_id"][idx], kind="stable")]
        slo = self.names.get("slo_class", [""])
        mod = self.names.get("model", [""])
        rows = []
        for k in idx.tolist():
            row = {
                "request_id": int(c["request_id"][k]),
                "ttft_us": float(c["ttft_us"][k]),
                "e2e_us": float(c["e2e_us"][k]),
                "input_tokens": int(c["input_tokens"][k]),
                "output_tokens": int(c["output_tokens"][k]),
            }
            s = slo[int(c["slo_class"][k])]
            if s:
                row["slo_class"] = s
            mname = mod[int(c["model"][k])]
            if mname:
                row["model"] = mname
            if c["output_tokens"][k] > 0:
                row["itl_mean_us"] = float(c["itl_mean_us"][k])
            rows.append(row)
        return rows

    # ------------------------------------------------------------ anomalies
    def priority_inversions(self) -> int:
        """Pairs (earlier i, later j) in the same instance and class with E2E_i > 2*E2E_j
        (only counted under the priority-fcfs scheduler, as BLIS does)."""
        if self.scheduler != "priority-fcfs":
            return 0
        c = self.cols
        done = c["state"] == Lo.ST_COMPLETED
        total = 0
        for i in range(self.num_instances):
            for cls in np.unique(c["slo_class"][done & (c["instance"] == i)]):
                m = done & (c["instance"] == i) & (c["slo_class"] == cls)
                idx = np.flatnonzero(m)
                idx = idx[np.argsort(c["arrival_us"][idx], kind="stable")]
                e = c["e2e_us"][idx].astype(np.float64)
                # count pairs i<j with e[i] > 2 e[j]: for each j, earlier elements > 2e[j]
                total += _count_inversions(e)
        return total

    def hol_blocking_events(self) -> int:
        if self.num_instances < 2:
            return 0
        means = [x.wq_sample_sum / x.wq_samples if x.wq_samples > 0 else 0.0 for x in self.instances]
        avg = sum(means) / len(means)
        if avg <= 0:
            return 0
        return sum(1 for m in means if m > 2 * avg)

    # ------------------------------------------------------------ fitness
    FITNESS_KEYS = ("mean_e2e", "mean_ttft", "p50_e2e", "p50_ttft", "p99_e2e", "p99_ttft", "throughput",
                    "tokens_per_sec")

    def fitness(self, weights: dict) -> dict:
        """BLIS's fitness evaluation: weighted sum of normalised components (not re-normalised)."""
        c = self.cols
        done = c["state"] == Lo.ST_COMPLETED
        sim_end = max((x.sim_ended_us for x in self.instances), default=0)
        dur = sim_end / 1e6
        completed = int(done.sum())
        out_tok = sum(x.output_tokens for x in self.instances)
        rps = completed / dur if dur > 0 else 0.0
        tps = out_tok / dur if dur > 0 else 0.0

        def dist(col):
            v = np.sort(c[col][done].astype(np.float64))
            if len(v) == 0:
                return 0.0, 0.0, 0.0
            total = 0.0
            for x in v.tolist():
                total += x
            return total / len(v), stats.percentile_ms(v, 50) * 1000, stats.percentile_ms(v, 99) * 1000

        ttft = dist("ttft_us")
        e2e = dist("e2e_us")
        raw = {"throughput": rps / (rps + 100.0), "tokens_per_sec": tps / (tps + 10000.0),
               "mean_ttft": ttft[0], "p50_ttft": ttft[1], "p99_ttft": ttft[2],
               "mean_e2e": e2e[0], "p50_e2e": e2e[1], "p99_e2e": e2e[2]}
        comps = {}
        for k in weights:
            v = raw[k]
            comps[k] = v if k in ("throughput", "tokens_per_sec") else 1.0 / (1.0 + v / 1000.0)
        score = 0.0
        for k, w in weights.items():
            score += w * comps[k]
        return {"score": score, "components": comps}

    def fitness_text(self, weights: dict) -> str:
        f = self.fitness(weights)
        lines = ["=== Fitness Evaluation ===", f"Score: {f['score']:.6f}"]
        lines += [f"  {k}: {f['components'][k]:.6f}" for k in sorted(f["components"])]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ stdout
    def stdout_text(self, fitness_weights: dict = None) -> str:
        """Everything ``blis run``/``replay`` prints on stdout, in BLIS's order."""
        parts = []
        if (self.configured_instances or self.num_instances) > 1:
            for i in range(self.num_instances):
                parts.append("=== Simulation Metrics ===\n" + marshal_indent(self.metrics_output(i)) + "\n")
        parts.append("=== Simulation Metrics ===\n" + marshal_indent(self.metrics_output(None)) + "\n")
        if fitness_weights:
            parts.append(self.fitness_text(fitness_weights))
        dropped = sum(x.dropped for x in self.instances)
        timed_out = sum(x.timed_out for x in self.instances)
        capped = sum(x.length_capped for x in self.instances)
        inv = self.priority_inversions()
        hol = self.hol_blocking_events()
        gw = self.extra.get("gateway", {})
        if (inv or hol or self.rejected or self.routing_rejected or dropped or timed_out or capped
                or any(gw.values())):
            lines = ["=== Anomaly Counters ===",
                     f"Priority Inversions: {inv}",
                     f"HOL Blocking Events: {hol}",
                     f"Rejected Requests (Admission): {self.rejected}"]
            for tier, n in sorted(self.shed_by_tier().items()):
                lines.append(f"  Shed ({tier}): {n}")
            lines += [f"Rejected Requests (Routing): {self.routing_rejected}",
                      f"Dropped Unservable: {dropped}",
                      f"Timed Out Requests: {timed_out}",
                      f"Length-Capped Requests: {capped}"]
            for key, label in (("gateway_queue_depth", "Gateway Queue Depth (horizon)"),
                               ("gateway_queue_shed", "Gateway Queue Shed"),
                               ("gateway_queue_rejected", "Gateway Queue Rejected"),
                               ("gateway_evicted", "Gateway Evicted (in-flight)"),
                               ("gateway_expired", "Gateway Expired (TTL)")):
                if gw.get(key, 0) > 0:
                    lines.append(f"{label}: {gw[key]}")
            parts.append("\n".join(lines) + "\n")
        completed = sum(x.completed for x in self.instances)
        pre = sum(x.preemptions for x in self.instances)
        prate = pre / completed if completed > 0 else 0.0
        chr_ = self.cache_hit_rate()
        thr = self.kv_thrashing_rate()
        if prate != 0 or chr_ != 0 or thr != 0:
            parts.append("=== KV Cache Metrics ===\n"
                         f"Preemption Rate: {prate:.4f}\nCache Hit Rate: {chr_:.4f}\n"
                         f"KV Thrashing Rate: {thr:.4f}\n")
        parts.append(self._per_slo_text())
        parts.append(self._per_model_text())
        parts.append(self._per_tenant_text())
        parts.append(self.session_text())
        return "".join(parts)

    def shed_by_tier(self) -> dict:
        c = self.cols
        m = c["state"] == Lo.ST_REJECTED
        out = {}
        slo = self.names.get("slo_class", [""])
        for code in c["slo_class"][m].tolist():
            tier = slo[code] or "standard"
            out[tier] = out.get(tier, 0) + 1
        for tier, n in self.extra.get("gateway_shed_by_tier", {}).items():
            out[tier] = out.get(tier, 0) + n
        return out

    def _per_slo_text(self) -> str:
        c = self.cols
        slo = self.names.get("slo_class", [""])
        done = c["state"] == Lo.ST_COMPLETED
        classes = sorted({(slo[k] or "default") for k in c["slo_class"][c["instance"] >= 0].tolist()})
        if len(classes) < 2:
            return ""
        lines = ["=== Per-SLO Metrics ==="]
        names = np.array([(s or "default") for s in slo], dtype=object)
        cls_of = names[c["slo_class"]]
        for cl in classes:
            m = done & (cls_of == cl)
            if not m.any():
                continue
            lines.append(f"  {cl}:")
            for label, col in (("TTFT: ", "ttft_us"), ("ITL:  ", "itl_mean_us"), ("E2E:  ", "e2e_us")):
                v = np.sort(c[col][m].astype(np.float64))
                total = 0.0
                for x in v.tolist():
                    total += x
                mean = total / len(v)
                p99 = stats.percentile_ms(v, 99) * 1000
                lines.append(f"    {label}mean={mean:.2f} p99={p99:.2f} (n={len(v)})")
        return "\n".join(lines) + "\n"

    def _per_model_text(self) -> str:
        """Per-model TTFT/E2E percentiles (raw us) and throughput, for requests carrying a model."""
        c = self.cols
        models = self.names.get("model", [""])
        reg = (c["instance"] >= 0) & (c["state"] != Lo.ST_DROPPED)
        has_ttft = reg & (c["ttft_us"] >= 0)
        done = reg & (c["state"] == Lo.ST_COMPLETED) & (c["e2e_us"] > 0)
        codes = sorted({int(m) for m in c["model"][has_ttft | done].tolist() if models[int(m)]},
                       key=lambda m: models[m])
        if not codes:
            return ""
        sim_end = max((x.sim_ended_us for x in self.instances), default=0)
        lines = ["=== Per-Model Metrics ==="]
        for m in codes:
            tt = np.sort(c["ttft_us"][has_ttft & (c["model"] == m)].astype(np.float64))
            ee = np.sort(c["e2e_us"][done & (c["model"] == m)].astype(np.float64))
            n = len(ee)
            dur = sim_end / 1e6
            rps = n / dur if sim_end > 0 and n > 0 else 0.0
            tok = int(c["output_tokens"][done & (c["model"] == m)].sum())
            tps = tok / dur if sim_end > 0 and n > 0 and tok > 0 else 0.0
            p = lambda v, q: stats.percentile_ms(v, q) * 1000 if len(v) else 0.0  # noqa: E731
            lines.append(f"  {models[m]}:")
            lines.append(f"    TTFT: p50={p(tt, 50):.2f} p99={p(tt, 99):.2f} (n={len(tt)})")
            lines.append(f"    E2E:  p50={p(ee, 50):.2f} p99={p(ee, 99):.2f} (n={n})")
            lines.append(f"    Throughput: {rps:.2f} req/s, {tps:.2f} tok/s")
        return "\n".join(lines) + "\n"

    def _per_tenant_text(self) -> str:
        c = self.cols
        ten = self.names.get("tenant", [""])
        done = c["state"] == Lo.ST_COMPLETED
        per = {}
        for code, tok in zip(c["tenant"][done].tolist(), c["output_tokens"][done].tolist()):
            name = ten[code]
            if not name:
                continue
            r, t = per.get(name, (0, 0))
            per[name] = (r + 1, t + tok)
        if not per:
            return ""
        lines = ["=== Per-Tenant Metrics ==="]
        for name in sorted(per):
            lines.append(f"  {name}: requests={per[name][0]}, tokens={per[name][1]}")
        xs = [float(per[k][1]) for k in sorted(per)]
        sq = sum(x * x for x in xs)
        jain = 1.0 if sq == 0 else (sum(xs) ** 2) / (len(xs) * sq)
        lines.append(f"  Jain Fairness Index: {jain:.4f}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ Arrow
    def to_arrow(self):
        """Per-request results as a pyarrow Table (units in column names)."""
        import pyarrow as pa
        c = self.cols
        cols = {name: c[name] for name, *_ in RESULT_FIELDS}
        cols["state"] = np.array([STATE_NAMES[int(s)] for s in range(len(STATE_NAMES))], dtype=object)[c["state"]]
        for cat in ("slo_class", "tenant", "model", "session"):
            names = np.array(self.names.get(cat, [""]), dtype=object)
            cols[cat] = names[c[cat]]
        cols["round_index"] = c["round_index"]
        cols["prefix_tokens"] = c["prefix_len"]
        for name in REQUEST_METRICS:
            m = REQUEST_METRICS.get(name)
            v = np.asarray(m.compute(self))
            if v.shape != (len(c["request_id"]),):
                raise ValueError(f"request metric {name!r}: must return one value per request, got {v.shape}")
            cols[name] = v.astype(m.dtype)
        return pa.table(cols)

    def summary_json(self) -> str:
        return marshal_indent(self.metrics_output(None))


def _go_pct(sorted_vals, p):
    """BLIS's cluster ``percentile``: linear interpolation at rank p/100·(n−1), raw values."""
    n = len(sorted_vals)
    if n == 1:
        return sorted_vals[0]
    rank = p / 100.0 * (n - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    if lo == hi:
        return sorted_vals[lo]
    return sorted_vals[lo] + (rank - lo) * (sorted_vals[hi] - sorted_vals[lo])


def _count_inversions(e: np.ndarray) -> int:
    """Number of pairs i < j with e[i] > 2*e[j]."""
    n = len(e)
    if n < 2:
        return 0
    total = 0
    seen = []
    import bisect
    for x in e.tolist():
        # earlier values strictly greater than 2x
        k = bisect.bisect_right(seen, 2 * x)
        total += len(seen) - k
        bisect.insort(seen, x)
    return total
