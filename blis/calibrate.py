"""``blis calibrate``: compare observed (real) latencies with simulated ones.

spec/04-workload-io.md §8.  Inputs: a TraceV2 trace from ``blis observe``
(``--trace-header``/``--trace-data``), the ``blis replay --results-path`` JSON
of the same trace (``--sim-results``; or ``blis serve --results-path``, paired by
``x-request-id``) and optionally the ``--record-itl`` chunk
times (``--itl-data``).  Output: BLIS's calibration report JSON (``--report``)
and, with ``--plot PNG``, a figure of the observed and simulated TTFT, E2E and
ITL distributions.

Pairing (BLIS's rules): trace rows with ``request_id`` below the warm-up count
are excluded; a row without a simulated result of the same id is unmatched; a
matched row counts as a token mismatch when its input tokens
(``server_input_tokens`` when > 0, else ``input_tokens``) or output tokens
differ from the simulated ones; real TTFT/E2E = first/last chunk time minus
send time, and a negative one makes the pair unmatched (after it was counted
as matched, as BLIS does); simulated TTFT = ``ttft_us`` + RTT + upload delay,
E2E = ``e2e_us`` + RTT + upload + download delay (4 bytes per token at
``--network-bandwidth-mbps``).  ITL (with ``--itl-data``): real = mean of the
non-negative consecutive chunk deltas, simulated = (E2E − TTFT) / (output − 1).

Per metric: mean, median, p50/p90/p95/p99 (linear interpolation), their errors
(sim − real) and relative errors, MAPE over pairs with real ≠ 0, Pearson r
(n ≥ 3), the bias direction and a quality verdict (excellent: MAPE < 0.10 and
r > 0.95; good: < 0.20 and > 0.85; fair: < 0.35 and > 0.70; else poor).

Also: per-class goodput comparison when SLO targets are configured (``--slo-*``
or the trace header), the KV hit-rate comparison (``--sim-metrics`` with a
``cache_hit_rate`` and an observed hit rate in the header) and the TTFT
tolerance verdict.  Not supported: ``--adapter-reference`` (the Digital-Twin
adapter comparison).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from blis.errors import BlisError, ConfigError

log = logging.getLogger("blis.calibrate")

#: shortcomings of the comparison, listed in every report
KNOWN_LIMITATIONS = [
    "The simulator steps whole batches while real servers schedule continuously at iteration level; "
    "TTFT predictions can drift systematically under heavy load.",
    "Prefix token ids are synthetic in the simulator, so its prefix-cache hit rates can differ from the "
    "real server's, most of all once blocks get evicted.",
    "Speculative decoding on the real server changes how tokens are produced; the simulator decodes one "
    "token per step.",
    "Token mismatches use the server-reported prompt_tokens when present; on prefix-cached observe traces "
    "small differences (up to one KV block) come from block-granular accounting and are expected.",
]

METRIC_NAMES = ("ttft", "e2e", "itl")


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def load_sim_results(path) -> List[Dict[str, Any]]:
    """The ``replay --results-path`` JSON array (``request_id``, ``ttft_us``, ``e2e_us``, tokens, ...)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--sim-results {str(path)!r}: cannot be read ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"--sim-results {str(path)!r}: invalid JSON ({e})") from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ConfigError(f"--sim-results {str(path)!r}: must be a JSON array of results, got {type(data).__name__}")
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ConfigError(f"--sim-results {str(path)!r}: item {i} must be an object, got {row!r}")
        try:
            out.append({
                "request_id": int(row.get("request_id", 0)),
                "ttft_us": float(row.get("ttft_us", 0.0)),
                "e2e_us": float(row.get("e2e_us", 0.0)),
                "input_tokens": int(row.get("input_tokens", 0)),
                "output_tokens": int(row.get("output_tokens", 0)),
                "slo_class": str(row.get("slo_class", "") or ""),
                "model": str(row.get("model", "") or ""),
                "itl_mean_us": float(row.get("itl_mean_us", 0.0) or 0.0),
            })
            if row.get("x_request_id"):
                out[-1]["x_request_id"] = str(row["x_request_id"])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--sim-results {str(path)!r}: item {i} has a bad value ({e})") from None
    return out


def load_itl(path) -> Dict[int, List[Tuple[int, int]]]:
    """Chunk times by request: ``{request_id: [(chunk_index, timestamp_us), ...]}`` in file order.

    Reads BLIS's CSV (``request_id,chunk_index,timestamp_us``; negative values are
    errors) or a Parquet file with the same columns.
    """
    path = Path(path)
    rows: List[Tuple[int, int, int]] = []
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        rows = list(zip(t.column("request_id").to_pylist(), t.column("chunk_index").to_pylist(),
                        t.column("timestamp_us").to_pylist()))
    else:
        import csv

        try:
            f = open(path, newline="", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--itl-data {str(path)!r}: cannot be read ({e.strerror})") from None
        with f:
            reader = csv.reader(f)
            if next(reader, None) is None:
                raise ConfigError(f"--itl-data {str(path)!r}: missing CSV header row")
            for n, row in enumerate(reader, start=2):
                if len(row) < 3:
                    raise ConfigError(f"--itl-data {str(path)!r}: row {n} has {len(row)} columns, expected 3")
                try:
                    rows.append((int(row[0]), int(row[1]), int(row[2])))
                except ValueError:
                    raise ConfigError(f"--itl-data {str(path)!r}: row {n} must hold integers, got {row[:3]}") from None
    out: Dict[int, List[Tuple[int, int]]] = {}
    for n, (rid, idx, ts) in enumerate(rows, start=2):
        if rid < 0 or idx < 0 or ts < 0:
            raise ConfigError(f"--itl-data {str(path)!r}: row {n} has a negative value "
                              f"(request_id={rid}, chunk_index={idx}, timestamp_us={ts})")
        out.setdefault(int(rid), []).append((int(idx), int(ts)))
    return out


def network_delay_us(bandwidth_mbps: float, tokens: int) -> float:
    """Transfer time (µs) of ``tokens`` token ids (4 bytes each) at ``bandwidth_mbps``; 0 when <= 0."""
    if bandwidth_mbps <= 0:
        return 0.0
    return float(tokens * 4) * 8 / (bandwidth_mbps * 1e6) * 1e6


# ---------------------------------------------------------------------------
# Pairing
# ---------------------------------------------------------------------------
@dataclass
class Pairs:
    """Matched real-vs-simulated latency vectors (µs) and the pairing counters."""

    ttft_real: List[float] = field(default_factory=list)
    ttft_sim: List[float] = field(default_factory=list)
    e2e_real: List[float] = field(default_factory=list)
    e2e_sim: List[float] = field(default_factory=list)
    itl_real: List[float] = field(default_factory=list)
    itl_sim: List[float] = field(default_factory=list)
    pair_ids: List[int] = field(default_factory=list)
    by_slo: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    by_model: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    token_mismatches: int = 0
    excluded_warmup: int = 0
    matched: int = 0
    unmatched_real: int = 0
    unmatched_sim: int = 0
    itl_dropped: int = 0


def _breakdown(d: Dict[str, Dict[str, List[float]]], key: str, rt, st, re_, se) -> None:
    b = d.setdefault(key, {"ttft_real": [], "ttft_sim": [], "e2e_real": [], "e2e_sim": []})
    b["ttft_real"].append(rt)
    b["ttft_sim"].append(st)
    b["e2e_real"].append(re_)
    b["e2e_sim"].append(se)


def prepare_pairs(trace, sim_results: Sequence[Dict[str, Any]], warmup: int = 0, rtt_us: int = 0,
                  bandwidth_mbps: float = 0.0, itl: Optional[Dict[int, List[Tuple[int, int]]]] = None) -> Pairs:
    """Match trace rows with simulated results by request id (BLIS's ``PrepareCalibrationPairs[WithITL]``)."""
    sim_by_id: Dict[int, Dict[str, Any]] = {}
    for sr in sim_results:
        sim_by_id[int(sr["request_id"])] = sr
    p = Pairs()
    r = trace.records
    ids = r["request_id"].tolist()
    inp, sit, out = r["input_tokens"].tolist(), r["server_input_tokens"].tolist(), r["output_tokens"].tolist()
    send, first, last = r["send_time_us"].tolist(), r["first_chunk_time_us"].tolist(), r["last_chunk_time_us"].tolist()
    matched_ids = set()
    for i, rid in enumerate(ids):
        if rid < warmup:
            p.excluded_warmup += 1
            continue
        sr = sim_by_id.get(rid)
        if sr is None:
            p.unmatched_real += 1
            continue
        matched_ids.add(rid)
        p.matched += 1
        real_in = sit[i] if sit[i] > 0 else inp[i]
        if real_in != sr["input_tokens"] or out[i] != sr["output_tokens"]:
            p.token_mismatches += 1
        rt = float(first[i] - send[i])
        re_ = float(last[i] - send[i])
        if rt < 0 or re_ < 0:
            p.unmatched_real += 1
            continue
        up = network_delay_us(bandwidth_mbps, sr["input_tokens"])
        down = network_delay_us(bandwidth_mbps, sr["output_tokens"])
        st = sr["ttft_us"] + float(rtt_us) + up
        se = sr["e2e_us"] + float(rtt_us) + up + down
        p.ttft_real.append(rt)
        p.ttft_sim.append(st)
        p.e2e_real.append(re_)
        p.e2e_sim.append(se)
        p.pair_ids.append(rid)
        if sr.get("slo_class"):
            _breakdown(p.by_slo, sr["slo_class"], rt, st, re_, se)
        if sr.get("model"):
            _breakdown(p.by_model, sr["model"], rt, st, re_, se)
    p.unmatched_sim = sum(1 for sr in sim_results if int(sr["request_id"]) not in matched_ids)
    if itl:
        for rid in ids:
            if rid < warmup or rid not in sim_by_id:
                continue
            chunks = itl.get(rid)
            if not chunks or len(chunks) < 2:
                continue
            ts = [t for _, t in sorted(chunks, key=lambda c: c[0])]
            deltas = [b - a for a, b in zip(ts, ts[1:]) if b - a >= 0]
            if not deltas:
                log.warning("calibrate: request %d ITL dropped (all %d deltas negative, likely clock skew)",
                            rid, len(ts) - 1)
                p.itl_dropped += 1
                continue
            sr = sim_by_id[rid]
            sim_itl = (sr["e2e_us"] - sr["ttft_us"]) / float(sr["output_tokens"] - 1) if sr["output_tokens"] > 1 else 0.0
            p.itl_real.append(float(sum(deltas)) / len(deltas))
            p.itl_sim.append(sim_itl)
    return p


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------
def percentile_sorted(sorted_vals: Sequence[float], pct: float) -> float:
    """Linear interpolation at rank ``pct/100·(n−1)`` of ascending values (0 when empty)."""
    n = len(sorted_vals)
    if n == 0:
        return 0.0
    if n == 1:
        return float(sorted_vals[0])
    rank = pct / 100.0 * (n - 1)
    lo, hi = int(math.floor(rank)), int(math.ceil(rank))
    if lo == hi:
        return float(sorted_vals[lo])
    return float(sorted_vals[lo]) + (rank - lo) * (float(sorted_vals[hi]) - float(sorted_vals[lo]))


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation from the raw sums (0 when the denominator is 0)."""
    n = float(len(x))
    sx = sy = sxy = sx2 = sy2 = 0.0
    for a, b in zip(x, y):
        sx += a
        sy += b
        sxy += a * b
        sx2 += a * a
        sy2 += b * b
    num = n * sxy - sx * sy
    prod = (n * sx2 - sx * sx) * (n * sy2 - sy * sy)
    den = math.sqrt(prod) if prod >= 0 else float("nan")
    if den == 0 or not math.isfinite(den):
        return 0.0
    return num / den


def quality_rating(mape: float, r: float) -> str:
    if mape < 0.10 and r > 0.95:
        return "excellent"
    if mape < 0.20 and r > 0.85:
        return "good"
    if mape < 0.35 and r > 0.70:
        return "fair"
    return "poor"


def mape(real: Sequence[float], sim: Sequence[float]) -> float:
    """Mean |real − sim| / real over pairs with a finite, nonzero real value (a fraction; 0 when none)."""
    s, n = 0.0, 0
    for a, b in zip(real, sim):
        if a == 0 or not math.isfinite(a):
            continue
        e = abs(a - b) / a
        if not math.isfinite(e):
            continue
        s += e
        n += 1
    return s / n if n else 0.0


def compare_metric(real: Sequence[float], sim: Sequence[float]) -> Dict[str, Any]:
    """One metric's comparison (BLIS's ``MetricComparison``: workload_level, request_level, count)."""
    if not real or not sim:
        raise ConfigError("calibrate: empty latency vectors")
    if len(real) != len(sim):
        raise ConfigError(f"calibrate: mismatched vector lengths real={len(real)} sim={len(sim)}")
    n = len(real)
    rs, ss = 0.0, 0.0
    for a, b in zip(real, sim):
        rs += a
        ss += b
    rsort, ssort = sorted(real), sorted(sim)
    wl: Dict[str, float] = {}
    vals = {"mean": (rs / n, ss / n)}
    for p in (50, 90, 95, 99):
        vals[f"p{p}"] = (percentile_sorted(rsort, p), percentile_sorted(ssort, p))
    vals["median"] = vals["p50"]
    for key in ("mean", "median", "p50", "p90", "p95", "p99"):
        rv, sv = vals[key]
        err = sv - rv
        wl[f"real_{key}"] = rv
        wl[f"sim_{key}"] = sv
        wl[f"{key}_error"] = err
        wl[f"{key}_percent_error"] = abs(err) / rv if rv > 0 else 0.0
    m_sum, m_n, bias = 0.0, 0, 0.0
    for a, b in zip(real, sim):
        if a == 0:
            continue
        m_sum += abs(a - b) / a
        m_n += 1
        bias += b - a
    m = m_sum / m_n if m_n else 0.0
    direction = ""
    if m_n:
        direction = "over-predict" if bias > 0 else ("under-predict" if bias < 0 else "neutral")
    r = pearson_r(real, sim) if n >= 3 else 0.0
    return {
        "workload_level": wl,
        "request_level": {"mape": m, "pearson_r": r, "bias_direction": direction, "quality": quality_rating(m, r)},
        "count": n,
    }


# ---------------------------------------------------------------------------
# Goodput (per SLO class)
# ---------------------------------------------------------------------------
_DUR_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DUR_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def _duration_ms(text: str) -> float:
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_MS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def parse_slo_flag(flag: str, text: str) -> Optional[Dict[str, float]]:
    """``critical=100ms,standard=500ms`` -> ``{class: ms}`` (None for an empty flag)."""
    s = (text or "").strip()
    if not s:
        return None
    out: Dict[str, float] = {}
    for pair in s.split(","):
        pair = pair.strip()
        if not pair:
            raise ConfigError(f"{flag}: empty pair in {s!r} (expected key=duration)")
        if "=" not in pair:
            raise ConfigError(f"{flag}: invalid pair {pair!r} (expected key=duration)")
        key, _, dur = pair.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"{flag}: empty class key in pair {pair!r}")
        try:
            ms = _duration_ms(dur)
        except ValueError:
            raise ConfigError(f"{flag}: unparseable duration in pair {pair!r}; e.g. 100ms, 2s") from None
        if ms <= 0:
            raise ConfigError(f"{flag}: non-positive duration in pair {pair!r}")
        out[key] = ms
    return out


def merge_goodput_targets(cli_ttft=None, cli_itl=None, cli_e2e=None, header=None, spec=None
                          ) -> Dict[str, Dict[str, float]]:
    """Per-class ``{ttft_ms, itl_ms, e2e_ms}``; each dimension CLI > trace header > spec."""
    classes = set()
    for src in (cli_ttft, cli_itl, cli_e2e, header, spec):
        classes.update((src or {}).keys())
    out: Dict[str, Dict[str, float]] = {}
    for cls in sorted(classes):
        t = {"ttft_ms": 0.0, "itl_ms": 0.0, "e2e_ms": 0.0}
        if spec and cls in spec:
            t.update({k: float(spec[cls].get(k, 0.0) or 0.0) for k in t})
        if header and cls in header:
            for k in t:
                v = float(header[cls].get(k, 0.0) or 0.0)
                if v > 0:
                    t[k] = v
        for k, src in (("ttft_ms", cli_ttft), ("itl_ms", cli_itl), ("e2e_ms", cli_e2e)):
            if src and cls in src:
                t[k] = float(src[cls])
        if t["ttft_ms"] == 0 and t["itl_ms"] == 0 and t["e2e_ms"] == 0:
            continue
        out[cls] = t
    return out


def goodput_comparison(trace, sim_by_id: Dict[int, Dict[str, Any]], matched: set,
                       itl: Dict[int, List[Tuple[int, int]]], targets: Dict[str, Dict[str, float]],
                       runtime_s: float) -> Optional[Dict[str, Any]]:
    """Observed vs simulated SLO attainment and goodput per class (BLIS's ``ComputeGoodputComparison``)."""
    if not targets:
        return None
    acc = {c: dict(count=0, rg=0, sg=0, rtm=0, rtn=0, rim=0, rin=0, rem=0, ren=0, stm=0, stn=0, sim_=0,
                   sin=0, sem=0, sen=0) for c in targets}
    itl_missing = False

    def itl_mean_ms(rid):
        chunks = itl.get(rid) if itl else None
        if not chunks or len(chunks) < 2:
            return None
        ts = [t for _, t in sorted(chunks, key=lambda c: c[0])]
        d = [b - a for a, b in zip(ts, ts[1:]) if b - a > 0]
        if not d:
            return None
        return (sum(d) / len(d)) / 1000.0

    def attain(a, keys, t, ttft, e2e, itl_ms):
        """Count one request against the class targets (TTFT, then E2E, then ITL; a miss
        stops the later checks).  ``keys`` name the counters; returns True when the ITL
        target could not be checked for lack of an ITL."""
        tn, tm, en, em, i_n, i_m, goodkey = keys
        good = ttft > 0 and e2e > 0 and e2e >= ttft
        missing = False
        for target, value, nk, mk in (("ttft_ms", ttft, tn, tm), ("e2e_ms", e2e, en, em),
                                      ("itl_ms", None, i_n, i_m)):
            if t[target] <= 0 or not good:
                continue
            if target == "itl_ms":
                value = itl_ms()
                if value is None:
                    missing = True
                    good = False
                    continue
            a[nk] += 1
            if value <= t[target]:
                a[mk] += 1
            else:
                good = False
        if good:
            a[goodkey] += 1
        return missing

    r = trace.records
    for i in range(len(trace)):
        status = r["status"][i]
        if status not in ("ok", "error", "timeout"):
            continue
        rid = int(r["request_id"][i])
        if rid not in matched:
            continue
        cls = r["slo_class"][i] or "default"
        if cls not in targets:
            continue
        a = acc[cls]
        a["count"] += 1
        t = targets[cls]
        if status == "ok":
            rt = (int(r["first_chunk_time_us"][i]) - int(r["send_time_us"][i])) / 1000.0
            re_ = (int(r["last_chunk_time_us"][i]) - int(r["send_time_us"][i])) / 1000.0
            if attain(a, ("rtn", "rtm", "ren", "rem", "rin", "rim", "rg"), t, rt, re_,
                      lambda: itl_mean_ms(rid)):
                itl_missing = True
        sr = sim_by_id.get(rid)
        if sr is not None:
            si = sr.get("itl_mean_us", 0.0) / 1000.0
            if attain(a, ("stn", "stm", "sen", "sem", "sin", "sim_", "sg"), t, sr["ttft_us"] / 1000.0,
                      sr["e2e_us"] / 1000.0, lambda: si if si > 0 else None):
                itl_missing = True

    ratio = lambda n, d: n / d if d else 0.0  # noqa: E731
    per = {}
    for cls in sorted(targets):
        a, t = acc[cls], targets[cls]
        e: Dict[str, Any] = {"count": a["count"], "real_slo_attainment": ratio(a["rg"], a["count"]),
                             "sim_slo_attainment": ratio(a["sg"], a["count"]),
                             "real_goodput_rps": a["rg"] / runtime_s if runtime_s > 0 else 0.0,
                             "sim_goodput_rps": a["sg"] / runtime_s if runtime_s > 0 else 0.0}
        rd, sd = {}, {}
        for dim, key, (rm, rn, sm, sn) in (("e2e", "e2e_ms", ("rem", "ren", "sem", "sen")),
                                           ("itl", "itl_ms", ("rim", "rin", "sim_", "sin")),
                                           ("ttft", "ttft_ms", ("rtm", "rtn", "stm", "stn"))):
            if t[key] > 0:
                rd[dim] = ratio(a[rm], a[rn])
                sd[dim] = ratio(a[sm], a[sn])
        if rd:
            e["real_attainment_by_dim"] = rd
        if sd:
            e["sim_attainment_by_dim"] = sd
        per[cls] = e
    # Go marshals SLODimTargets without json tags: field names, every field written
    tg = {cls: {"TTFTMs": targets[cls]["ttft_ms"], "ITLMs": targets[cls]["itl_ms"], "E2EMs": targets[cls]["e2e_ms"]}
          for cls in sorted(targets)}
    out: Dict[str, Any] = {"targets": tg, "per_class": per}
    if itl_missing:
        out["skipped_itl"] = True
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
@dataclass
class CalibrationOptions:
    warmup_requests: int = -1          # -1: from the trace header
    network_rtt_us: int = -1           # -1: from the header's network.measured_rtt_ms
    network_bandwidth_mbps: float = 0.0
    hit_rate_tolerance_pp: float = 5.0
    ttft_mape_threshold: float = 0.15
    slo_ttft: str = ""
    slo_itl: str = ""
    slo_e2e: str = ""
    sim_metrics: str = ""


def build_report(pairs: Pairs) -> Dict[str, Any]:
    """The report's trace_info, metrics, config_match and known_limitations (BLIS's ``BuildCalibrationReport``)."""
    info: Dict[str, Any] = {
        "num_requests": pairs.matched + pairs.excluded_warmup + pairs.unmatched_real,
        "warm_up_excluded": pairs.excluded_warmup,
        "matched_pairs": pairs.matched,
        "token_mismatches": pairs.token_mismatches,
    }
    if pairs.itl_dropped:
        info["itl_dropped"] = pairs.itl_dropped
    metrics: Dict[str, Any] = {}
    if pairs.ttft_real:
        metrics["ttft"] = compare_metric(pairs.ttft_real, pairs.ttft_sim)
    if pairs.e2e_real:
        metrics["e2e"] = compare_metric(pairs.e2e_real, pairs.e2e_sim)
    if pairs.itl_real:
        metrics["itl"] = compare_metric(pairs.itl_real, pairs.itl_sim)
    return {"trace_info": info, "metrics": {k: metrics[k] for k in sorted(metrics)}, "config_match": {},
            "known_limitations": list(KNOWN_LIMITATIONS)}


def _sim_cache_hit_rate(path: str) -> Optional[float]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"read --sim-metrics {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"parse --sim-metrics {path}: {e}") from None
    v = doc.get("cache_hit_rate") if isinstance(doc, dict) else None
    return None if v is None else float(v)


def align_by_x_request_id(trace, sim_results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Re-key simulated results by the trace's ``request_id`` through the ``x-request-id`` header
    when every result carries one (``blis serve --results-path``: the server numbers requests in
    its own arrival order) and the trace has the column; results whose id is not in the trace get
    negative ids (unmatched).  Otherwise the results are returned unchanged."""
    if not sim_results or not all(sr.get("x_request_id") for sr in sim_results):
        return list(sim_results)
    r = trace.records
    if "x_request_id" not in r:
        return list(sim_results)
    by_xid = {str(x): int(i) for x, i in zip(r["x_request_id"].tolist(), r["request_id"].tolist()) if x}
    out = []
    for k, sr in enumerate(sim_results):
        row = dict(sr)
        row["request_id"] = by_xid.get(sr["x_request_id"], -1 - k)
        out.append(row)
    return out


def calibrate(trace, sim_results: Sequence[Dict[str, Any]], opts: Optional[CalibrationOptions] = None,
              itl: Optional[Dict[int, List[Tuple[int, int]]]] = None) -> Tuple[Dict[str, Any], Pairs]:
    """The full calibration report for a trace and its simulated results (``blis calibrate``)."""
    opts = opts or CalibrationOptions()
    if not sim_results:
        raise ConfigError("No sim results found - cannot calibrate with empty data")
    warmup = opts.warmup_requests
    if warmup == -1:
        warmup = int(trace.header.get("warm_up_requests") or 0)
    if opts.network_rtt_us != -1 and opts.network_rtt_us < 0:
        raise ConfigError(f"--network-rtt-us must be >= 0 (or omit to use trace header), got {opts.network_rtt_us}")
    if opts.network_rtt_us == -1:
        net = trace.header.get("network") or {}
        ms = float(net.get("measured_rtt_ms") or 0.0)
        rtt = int(ms * 1000) if ms > 0 else 0
    else:
        rtt = int(opts.network_rtt_us)
    bw = float(opts.network_bandwidth_mbps)
    if not math.isfinite(bw):
        raise ConfigError(f"--network-bandwidth-mbps must be a finite number, got {bw}")
    for flag, v in (("--hit-rate-tolerance-pp", opts.hit_rate_tolerance_pp),
                    ("--ttft-mape-threshold", opts.ttft_mape_threshold)):
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"{flag} must be a finite number >= 0, got {v}")
    sim_results = align_by_x_request_id(trace, sim_results)
    pairs = prepare_pairs(trace, sim_results, warmup, rtt, bw, itl)
    if pairs.matched == 0:
        raise ConfigError("No matching request IDs found between trace and sim results - check that both files "
                          "use the same request ID numbering")
    if not pairs.ttft_real:
        raise ConfigError("No valid latency pairs after filtering - all matched requests may have corrupt timing "
                          "data (negative latencies)")
    report = build_report(pairs)

    targets = merge_goodput_targets(parse_slo_flag("--slo-ttft", opts.slo_ttft),
                                    parse_slo_flag("--slo-itl", opts.slo_itl),
                                    parse_slo_flag("--slo-e2e", opts.slo_e2e),
                                    trace.header.get("goodput_slo_targets") or None)
    if targets:
        sim_by_id = {int(s["request_id"]): s for s in sim_results}
        r = trace.records
        matched = {int(x) for x in r["request_id"].tolist() if x >= warmup and int(x) in sim_by_id}
        first_send, last_chunk = -1, 0
        for i, rid in enumerate(r["request_id"].tolist()):
            if rid not in matched:
                continue
            s = int(r["send_time_us"][i])
            if first_send == -1 or s < first_send:
                first_send = s
            last_chunk = max(last_chunk, int(r["last_chunk_time_us"][i]))
        runtime = (last_chunk - first_send) / 1e6 if first_send >= 0 and last_chunk > first_send else 0.0
        report["goodput"] = goodput_comparison(trace, sim_by_id, matched, itl or {}, targets, runtime)
        if report["goodput"].get("skipped_itl"):
            log.warning("calibrate goodput: ITL gating skipped - ITL data missing on the real or simulated side")

    obs = trace.header.get("observed_kv_metrics")
    if obs:
        if not opts.sim_metrics:
            log.warning("calibrate: the trace header has an observed KV hit rate but --sim-metrics was not given; "
                        "skipping the hit-rate comparison")
        else:
            sim_hr = _sim_cache_hit_rate(opts.sim_metrics)
            if sim_hr is None:
                log.warning("calibrate: --sim-metrics %s has no cache_hit_rate; skipping the hit-rate comparison",
                            opts.sim_metrics)
            else:
                real = float(obs.get("hit_rate") or 0.0)
                err = abs(sim_hr - real) * 100
                report["hit_rate"] = {"real_hit_rate": real, "sim_hit_rate": sim_hr, "abs_error_pp": err,
                                      "tolerance_pp": opts.hit_rate_tolerance_pp,
                                      "within": err <= opts.hit_rate_tolerance_pp + 1e-9,
                                      "source": str(obs.get("source") or "")}
    if "ttft" in report["metrics"]:
        m = report["metrics"]["ttft"]["request_level"]["mape"]
        report["ttft_tolerance"] = {"mape": m, "threshold": opts.ttft_mape_threshold,
                                    "within": m <= opts.ttft_mape_threshold}
    return report, pairs


def report_json(report: Dict[str, Any]) -> str:
    """The report as BLIS writes it (Go ``json.MarshalIndent``, two-space indent, no trailing newline)."""
    from blis.gojson import marshal_indent

    return marshal_indent(report)


def log_summary(report: Dict[str, Any], pairs: Pairs) -> None:
    log.info("matched pairs: %d (warm-up excluded: %d, unmatched real: %d, unmatched sim: %d)",
             pairs.matched, pairs.excluded_warmup, pairs.unmatched_real, pairs.unmatched_sim)
    for name in METRIC_NAMES:
        m = report["metrics"].get(name)
        if m is None:
            continue
        wl, rl = m["workload_level"], m["request_level"]
        log.info("%s: real mean=%.0fus sim mean=%.0fus error=%+.0fus (%.1f%%); MAPE=%.1f%% r=%.3f bias=%s quality=%s",
                 name.upper(), wl["real_mean"], wl["sim_mean"], wl["mean_error"], wl["mean_percent_error"] * 100,
                 rl["mape"] * 100, rl["pearson_r"], rl["bias_direction"], rl["quality"])
    for label, d in (("SLO", pairs.by_slo), ("model", pairs.by_model)):
        for key in sorted(d):
            b = d[key]
            log.info("  %s=%s: n=%d TTFT-MAPE=%.1f%% E2E-MAPE=%.1f%%", label, key, len(b["ttft_real"]),
                     mape(b["ttft_real"], b["ttft_sim"]) * 100, mape(b["e2e_real"], b["e2e_sim"]) * 100)
    tv = report.get("ttft_tolerance")
    if tv:
        fn = log.info if tv["within"] else log.warning
        fn("TTFT MAPE=%.1f%% (threshold %.1f%%) [%s]", tv["mape"] * 100, tv["threshold"] * 100,
           "WITHIN" if tv["within"] else "EXCEEDS")


# ---------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------
def plot_distributions(pairs: Pairs, path, title: str = "") -> None:
    """A PNG with observed vs simulated TTFT, E2E and ITL: empirical CDFs (top) and per-request scatter (bottom)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs the matplotlib package (pip install matplotlib)") from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = [("TTFT", pairs.ttft_real, pairs.ttft_sim), ("E2E", pairs.e2e_real, pairs.e2e_sim)]
    if pairs.itl_real:
        panels.append(("ITL", pairs.itl_real, pairs.itl_sim))
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 8.4), squeeze=False)
    for j, (name, real, sim) in enumerate(panels):
        real_ms = np.sort(np.asarray(real, float)) / 1000.0
        sim_ms = np.sort(np.asarray(sim, float)) / 1000.0
        ax = axes[0][j]
        for vals, lab, color in ((real_ms, "observed", "tab:blue"), (sim_ms, "simulated", "tab:orange")):
            if len(vals):
                ax.step(vals, np.arange(1, len(vals) + 1) / len(vals), where="post", label=lab, color=color)
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{name} distribution (n={len(real)})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax = axes[1][j]
        rv = np.asarray(real, float) / 1000.0
        sv = np.asarray(sim, float) / 1000.0
        ax.scatter(rv, sv, s=10, alpha=0.6, color="tab:purple")
        if len(rv):
            lo = float(min(rv.min(), sv.min()))
            hi = float(max(rv.max(), sv.max()))
            ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="sim = observed")
            ax.legend(loc="upper left")
        ax.set_xlabel(f"observed {name} (ms)")
        ax.set_ylabel(f"simulated {name} (ms)")
        ax.set_title(f"{name}: MAPE {mape(real, sim) * 100:.1f}%")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace-header", default="", help="TraceV2 header YAML from blis observe (required)")
    p.add_argument("--trace-data", default="", help="TraceV2 data CSV from blis observe (required)")
    p.add_argument("--sim-results", default="", help="blis replay --results-path JSON (required)")
    p.add_argument("--report", default="", help="output calibration report JSON (required)")
    p.add_argument("--warmup-requests", type=int, default=-1,
                   help="requests to exclude by id (default -1: the trace header's warm_up_requests)")
    p.add_argument("--network-rtt-us", type=int, default=-1,
                   help="RTT added to simulated latencies, us (default -1: header network.measured_rtt_ms)")
    p.add_argument("--network-bandwidth-mbps", type=float, default=0.0,
                   help="bandwidth for upload/download delays (0 = none)")
    p.add_argument("--itl-data", default="", help="chunk-time CSV from blis observe --record-itl (adds ITL)")
    p.add_argument("--slo-ttft", default="", help="per-class TTFT goodput targets, e.g. critical=100ms")
    p.add_argument("--slo-itl", default="", help="per-class mean ITL goodput targets")
    p.add_argument("--slo-e2e", default="", help="per-class E2E goodput targets")
    p.add_argument("--sim-metrics", default="", help="replay --metrics-path JSON (its cache_hit_rate)")
    p.add_argument("--hit-rate-tolerance-pp", type=float, default=5.0, help="KV hit-rate tolerance (pp)")
    p.add_argument("--ttft-mape-threshold", type=float, default=0.15, help="TTFT MAPE threshold (fraction)")
    p.add_argument("--plot", default="", help="write a PNG of observed vs simulated TTFT/E2E/ITL (blis extension)")
    p.add_argument("--adapter-reference", default="", help=argparse.SUPPRESS)
    p.add_argument("--sim-metrics-blind", default="", help=argparse.SUPPRESS)
    p.add_argument("--adapter-mape-threshold", type=float, default=0.20, help=argparse.SUPPRESS)
    p.add_argument("--log", default="info", help="log level: debug, info, warn, error")


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``calibrate`` on a ``blis`` subparsers object; ``ns._run(ns)`` runs it."""
    p = subparsers.add_parser("calibrate", help="compare observed and simulated latencies",
                              description="Compare a TraceV2 trace from blis observe with blis replay results.")
    add_arguments(p)
    p.set_defaults(_run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blis calibrate",
                                description="Compare a TraceV2 trace from blis observe with blis replay results.")
    add_arguments(p)
    return p


def run(ns) -> int:
    """Run a parsed ``blis calibrate`` command line; returns the exit status."""
    from blis.workload.tracev2 import read_tracev2

    level = {"debug": logging.DEBUG, "trace": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
             "warning": logging.WARNING, "error": logging.ERROR}.get(str(ns.log).lower(), logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="level=%(levelname)s msg=%(message)s", level=level)
    log.setLevel(level)
    try:
        if ns.adapter_reference:
            raise ConfigError("--adapter-reference: the adapter-reference comparison is not supported by this "
                              "version yet")
        for flag, v in (("--trace-header", ns.trace_header), ("--trace-data", ns.trace_data),
                        ("--sim-results", ns.sim_results), ("--report", ns.report)):
            if not v:
                raise ConfigError(f"{flag} is required")
        trace = read_tracev2(ns.trace_header, ns.trace_data)
        sims = load_sim_results(ns.sim_results)
        itl = load_itl(ns.itl_data) if ns.itl_data else None
        opts = CalibrationOptions(
            warmup_requests=ns.warmup_requests, network_rtt_us=ns.network_rtt_us,
            network_bandwidth_mbps=ns.network_bandwidth_mbps, hit_rate_tolerance_pp=ns.hit_rate_tolerance_pp,
            ttft_mape_threshold=ns.ttft_mape_threshold, slo_ttft=ns.slo_ttft, slo_itl=ns.slo_itl,
            slo_e2e=ns.slo_e2e, sim_metrics=ns.sim_metrics)
        report, pairs = calibrate(trace, sims, opts, itl)
        from blis.workload.tracev2 import _atomic_write

        out = Path(ns.report)
        if out.parent and not out.parent.exists():
            raise ConfigError(f"--report: folder must exist, got {str(out.parent)!r}")
        _atomic_write(out, report_json(report))
        log.info("calibration report written to %s", ns.report)
        log_summary(report, pairs)
        if ns.plot:
            plot_distributions(pairs, ns.plot, title=f"observed vs simulated ({Path(ns.trace_data).name})")
            log.info("plot written to %s", ns.plot)
    except BlisError as e:
        sys.stderr.write(f"blis calibrate: error: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"blis calibrate: error: {e}\n")
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``blis calibrate`` as a stand-alone entry point (argv without the ``calibrate`` word)."""
    return run(build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
