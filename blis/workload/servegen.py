"""ServeGen data directories as workload cohorts (spec/04-workload-io.md §4.14, BLIS ``servegen.go``).

A ServeGen directory holds, per chunk ``<id>``:

* ``chunk-<id>-trace.csv``: rows ``start_s, rate, cv, pattern, shape, scale_s``
  (pattern ``Gamma``, ``Weibull`` or empty; shape/scale optional), one per
  600 s window; rows that do not parse (the header) are skipped;
* ``chunk-<id>-dataset.json``: ``{"<window start s>": {"input_tokens": "{100: 0.5, ...}",
  "output_tokens": "{...}", ["reason_ratio": "{\\"0.5\\": 0.3, ...}"]}}`` with
  Python-dict PDFs as strings.

:func:`load_servegen_cohorts` turns the directory into cohorts exactly as
BLIS's ``loadServeGenData`` does:

* *language* data (no ``reason_ratio``): three periods (midnight 0 s,
  morning 28800 s, afternoon 50400 s), each ``window_duration_secs`` long and
  separated by ``drain_timeout_secs``; ``NewSource(seed).Intn(3)`` picks one
  of the period's three 600 s windows; the chunks active at that time of day
  (any day) are shuffled and dealt round-robin to the classes critical,
  standard, batch, sheddable, background; each non-empty group becomes cohort
  ``<period>-<class>`` (streaming; lognormal lengths from the weighted
  moments of ln(tokens), averaged over days and chunks; majority-vote
  gamma/weibull arrival with averaged cv, shape and scale; a spike over the
  period carrying the summed average trace rate);
* *reasoning* data: the 600 s window with the most active chunks; one cohort
  ``reasoning-<class>`` per class (open-loop one-round sessions, an empirical
  reason-ratio percentage averaged over the chunks, poisson arrivals, a spike
  over ``window_duration_secs`` with the summed rate).

``aggregate_rate`` becomes 0 (absolute rate mode).  Errors are
:class:`ConfigError` naming the file and the offending value.
"""
from __future__ import annotations

import csv
import glob
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from ..kernels.gorand import go_log_nb
from ..rng import GoRand
from .distributions import go_int

log = logging.getLogger("blis.workload")

#: ServeGen's trace window (s)
WINDOW_SEC = 600
DAY_SEC = 86400
#: SLO classes in dealing order
SLO_DEAL_ORDER = ("critical", "standard", "batch", "sheddable", "background")
#: (name, ServeGen span start s) of the language periods
PERIODS = (("midnight", 0), ("morning", 28800), ("afternoon", 50400))

_GO_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_GO_SPECIAL = re.compile(r"^[+-]?(inf|infinity|nan)$", re.IGNORECASE)
_GO_HEX = re.compile(r"^[+-]?0[xX]([0-9a-fA-F]+(\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?\d+$")


def go_parse_float(s: str) -> Optional[float]:
    """Go's ``strconv.ParseFloat(s, 64)``; ``None`` where Go returns an error (range errors included)."""
    if _GO_SPECIAL.match(s):
        return float(s.lower().replace("infinity", "inf"))
    if _GO_HEX.match(s):
        v = float.fromhex(s)
    elif _GO_FLOAT.match(s):
        v = float(s)
    else:
        return None
    return None if math.isinf(v) else v


def _go_atoi(s: str) -> Optional[int]:
    if re.match(r"^[+-]?\d+$", s) is None:
        return None
    v = int(s)
    return v if -(1 << 63) <= v < (1 << 63) else None


def _go_mod(a: int, b: int) -> int:
    """Go's ``%`` (the result has the sign of ``a``)."""
    return int(math.fmod(a, b)) if abs(a) < (1 << 53) else (abs(a) % b) * (1 if a >= 0 else -1)


def _go_div(a: int, b: int) -> int:
    """Go's integer ``/`` (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _pdf_pairs(s: str):
    """The ``key: value`` string pairs of a ServeGen dict string ``"{k: v, ...}"`` (empty pairs skipped)."""
    s = s.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError(f"expected a dict string starting with '{{' and ending with '}}', got {s[:40]!r}")
    body = s[1:-1].strip()
    if not body:
        raise ValueError("empty PDF dictionary")
    for pair in body.split(","):
        pair = pair.strip()
        if not pair:
            continue
        if ":" not in pair:
            raise ValueError(f"invalid key:value pair {pair!r}")
        k, v = (x.strip() for x in pair.split(":", 1))
        yield k, v


def parse_pdf(s: str) -> Dict[int, float]:
    """``parseServeGenPDF``: ``"{100: 0.5, 200.0: 0.3,}"`` → {100: 0.5, 200: 0.3} (keys truncated to int)."""
    pdf: Dict[int, float] = {}
    for k, v in _pdf_pairs(s):
        kf = go_parse_float(k)
        if kf is None:
            raise ValueError(f"invalid key {k!r}")
        key = go_int(kf)
        val = go_parse_float(v)
        if val is None:
            raise ValueError(f"invalid value {v!r} for key {key}")
        pdf[key] = val
    return pdf


def parse_float_pdf(s: str) -> Dict[float, float]:
    """``parseServeGenFloatPDF``: reason-ratio PDFs with (optionally quoted) keys in [0, 1]."""
    pdf: Dict[float, float] = {}
    for k, v in _pdf_pairs(s):
        key = go_parse_float(k.strip('"'))
        if key is None:
            raise ValueError(f"invalid key {k!r}")
        if key < 0.0 or key > 1.0:
            raise ValueError(f"reason_ratio key {key} outside valid range [0.0, 1.0]")
        val = go_parse_float(v)
        if val is None:
            raise ValueError(f"invalid value {v!r} for key {key}")
        if val < 0:
            raise ValueError(f"negative probability {val} for key {key}")
        pdf[key] = val
    return pdf


def _member_window_pdfs(members, sel, cohort_id):
    """``(chunk id, client, input PDFs, output PDFs)`` of each cohort member whose dataset loads and
    has a window near ``sel`` (time-of-day averaged); a dataset that fails to load is skipped with a warning."""
    for cid, client, dpath in members:
        try:
            datasets = load_dataset_windows(dpath)
        except (OSError, ValueError) as e:
            log.warning("Skipping chunk %s for cohort %s: dataset load failed: %s", cid, cohort_id, e)
            continue
        nearest = nearest_dataset(sel, datasets)
        if nearest is None:
            continue
        ins, outs = _time_of_day_avg(datasets, nearest)
        yield cid, client, ins, outs


def fit_lognormal(pdf: Dict[int, float]) -> Tuple[float, float]:
    """``fitLognormalFromPDF``: (mu, sigma) = weighted mean and std of ln(tokens) over positive tokens."""
    if not pdf:
        raise ValueError("empty PDF")
    sp = slx = slxx = 0.0
    for value in sorted(pdf):
        prob = pdf[value]
        if value <= 0:
            continue
        if prob < 0:
            raise ValueError(f"negative probability {prob} for value {value}")
        if prob == 0:
            continue
        lx = float(go_log_nb(float(value)))
        sp += prob
        slx += prob * lx
        slxx += prob * lx * lx
    if sp <= 0:
        raise ValueError("sum of probabilities is zero or negative")
    mu = slx / sp
    var = slxx / sp - mu * mu
    if var < 0:
        if var > -1e-10:
            var = 0.0
        else:
            raise ValueError(f"negative variance {var} (numerical instability)")
    return mu, math.sqrt(var)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
@dataclass
class TraceRow:
    start_s: float
    rate: float
    cv: float
    pattern: str
    shape: float
    scale_s: float


def parse_trace(path: str) -> List[TraceRow]:
    """``parseServeGenTrace``: rows with ≥ 4 fields whose first three parse as numbers.

    Every record must have the first record's field count (Go's csv reader)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.reader(f))
    except OSError as e:
        raise ConfigError(f"ServeGen trace {path}: must be readable, got {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"ServeGen trace {path}: must be CSV text, got {e}") from None
    rows: List[TraceRow] = []
    width = None
    skipped = 0
    for ln, rec in enumerate(records, 1):
        if not rec:  # blank lines are skipped by Go's reader
            continue
        if width is None:
            width = len(rec)
        elif len(rec) != width:
            raise ConfigError(f"ServeGen trace {path}: line {ln} must have {width} fields like the first record, "
                              f"got {len(rec)}")
        if len(rec) < 4:
            skipped += 1
            continue
        nums = [go_parse_float(x.strip()) for x in rec[:3]]
        if any(v is None for v in nums):
            skipped += 1
            continue
        shape = scale = 0.0
        if len(rec) >= 6:
            sh, sc = go_parse_float(rec[4].strip()), go_parse_float(rec[5].strip())
            if sh is not None and sc is not None:
                shape, scale = sh, sc
        elif len(rec) == 5:
            log.warning("parseServeGenTrace: row at t=%.0f has 5 columns (expected 4 or 6); shape/scale will be "
                        "derived from CV", nums[0])
        rows.append(TraceRow(nums[0], nums[1], nums[2], rec[3].strip(), shape, scale))
    if skipped:
        log.warning("parseServeGenTrace: %d rows in %s were skipped (short rows or parse errors)", skipped, path)
    return rows


def _read_dataset_json(path: str) -> Dict[str, Dict[str, str]]:
    """The dataset as Go's ``map[string]map[string]string`` (raises ValueError / OSError)."""
    with open(path, "rb") as f:
        data = json.loads(f.read().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"top level must be a JSON object, got {type(data).__name__}")
    out: Dict[str, Dict[str, str]] = {}
    for k, v in data.items():
        if v is None:
            out[k] = {}
            continue
        if not isinstance(v, dict):
            raise ValueError(f"window {k!r} must be a JSON object, got {type(v).__name__}")
        inner = {}
        for ik, iv in v.items():
            if iv is None:
                inner[ik] = ""
            elif not isinstance(iv, str):
                raise ValueError(f"window {k!r} field {ik!r} must be a string, got {type(iv).__name__}")
            else:
                inner[ik] = iv
        out[k] = inner
    return out


def load_dataset_windows(path: str, span_end: int = 0) -> Dict[int, Tuple[Dict[int, float], Dict[int, float]]]:
    """``loadServeGenDatasetAllWindows``: window start (s) → (input PDF, output PDF); empty windows skipped.

    Raises ValueError / OSError (callers decide whether that is fatal)."""
    raw = _read_dataset_json(path)
    out = {}
    for ts_str in sorted(raw):
        window = raw[ts_str]
        ts = _go_atoi(ts_str)
        if ts is None:
            f = go_parse_float(ts_str)
            if f is None:
                log.warning("loadServeGenDatasetAllWindows: skipping non-numeric key %r", ts_str)
                continue
            ts = go_int(f)
        if span_end > 0 and ts >= span_end:
            continue
        i_str, o_str = window.get("input_tokens", ""), window.get("output_tokens", "")
        if i_str in ("", "{}") or o_str in ("", "{}"):
            continue
        try:
            ipdf = parse_pdf(i_str)
        except ValueError as e:
            raise ValueError(f"parsing input PDF at timestamp {ts}: {e}") from None
        try:
            opdf = parse_pdf(o_str)
        except ValueError as e:
            raise ValueError(f"parsing output PDF at timestamp {ts}: {e}") from None
        out[ts] = (ipdf, opdf)
    return out


def nearest_dataset(query: int, datasets: Dict[int, object]) -> Optional[int]:
    """``findNearestDataset``: the exact key, else the largest key ≤ ``query`` (keys < 0 never match)."""
    if query in datasets:
        return query
    best = -1
    for ts in datasets:
        if best < ts <= query:
            best = ts
    return best if best >= 0 else None


def _arrival_from_row(row: TraceRow):
    from .spec import ArrivalSpec

    a = ArrivalSpec(process="poisson")
    process = row.pattern.lower()
    if not row.pattern or process not in ("gamma", "weibull"):
        return a
    a.process = process
    if row.cv > 0:
        a.cv = row.cv
    if row.shape > 0 and row.scale_s > 0:
        a.shape = row.shape
        a.scale = row.scale_s * 1e6
    return a


def _lognormal(mu: float, sigma: float):
    from .spec import DistSpec

    return DistSpec("lognormal", {"mu": mu, "sigma": sigma})


def _gaussian_fallback(mean: float, std: float):
    from .spec import DistSpec

    return DistSpec("gaussian", {"mean": mean, "std_dev": std, "min": 1.0, "max": 32768.0})


def load_chunk(chunk_id: str, trace_path: str, dataset_path: str):
    """``loadServeGenChunk``: a client with one window per active trace row (rate > 0) that has a
    dataset at or before it, or ``None`` for an inactive chunk."""
    from .spec import ActiveWindow, ClientSpec

    rows = parse_trace(trace_path)
    try:
        datasets = load_dataset_windows(dataset_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"ServeGen chunk {chunk_id}: dataset {dataset_path} must be a valid dataset JSON, got "
                          f"{getattr(e, 'strerror', None) or e}") from None
    infos = []
    for row in rows:
        if row.rate <= 0:
            continue
        key = nearest_dataset(go_int(row.start_s), datasets)
        if key is None:
            continue
        w = ActiveWindow(start_us=go_int(row.start_s * 1e6), end_us=go_int((row.start_s + WINDOW_SEC) * 1e6),
                         trace_rate=row.rate, arrival=_arrival_from_row(row))
        infos.append((w, key))
    if not infos:
        return None
    used = sorted({k for _, k in infos})

    def fit(key):
        ipdf, opdf = datasets[key]
        try:
            return _lognormal(*fit_lognormal(ipdf)), _lognormal(*fit_lognormal(opdf))
        except ValueError as e:
            raise ConfigError(f"ServeGen chunk {chunk_id}: dataset {dataset_path} window {key} must fit a "
                              f"lognormal, got {e}") from None

    if len(used) == 1:
        cin, cout = fit(used[0])
        windows = [w for w, _ in infos]
    else:
        fits = {k: fit(k) for k in used}
        windows = []
        for w, k in infos:
            w.input_distribution, w.output_distribution = fits[k]
            windows.append(w)
        cin, cout = _gaussian_fallback(512, 128), _gaussian_fallback(128, 32)
    from .spec import ArrivalSpec

    return ClientSpec(id=f"servegen-chunk-{chunk_id}", tenant_id=f"chunk-{chunk_id}", rate_fraction=1.0,
                      slo_class="standard", streaming=True, lifecycle=windows, arrival=ArrivalSpec("poisson"),
                      input_distribution=cin, output_distribution=cout)


def _chunk_files(data_dir: str) -> List[Tuple[str, str, str]]:
    traces = sorted(glob.glob(os.path.join(glob.escape(data_dir), "chunk-*-trace.csv")))
    out = []
    for t in traces:
        cid = os.path.basename(t)[len("chunk-"):-len("-trace.csv")]
        out.append((cid, t, os.path.join(data_dir, f"chunk-{cid}-dataset.json")))
    return out


def _is_reasoning(files) -> bool:
    if not files:
        return False
    cid, _, ds = files[0]
    try:
        raw = _read_dataset_json(ds)
    except (OSError, ValueError) as e:
        log.warning("Reasoning detection: failed to read %s: %s (treating as non-reasoning)", ds, e)
        return False
    return any("reason_ratio" in w for w in raw.values())


def _shuffled(rng: GoRand, items: list) -> list:
    idx = np.arange(len(items), dtype=np.int64)
    rng.shuffle(idx)
    return [items[i] for i in idx.tolist()]


def _time_of_day_avg(datasets, nearest: int):
    """Per chunk: the fits of every dataset window at ``nearest``'s time of day, ascending."""
    ins, outs = [], []
    for ts in sorted(datasets):
        if _go_mod(ts, DAY_SEC) != _go_mod(nearest, DAY_SEC):
            continue
        ipdf, opdf = datasets[ts]
        try:
            ins.append(fit_lognormal(ipdf))
        except ValueError:
            ins.append(None)
        try:
            outs.append(fit_lognormal(opdf))
        except ValueError:
            outs.append(None)
    return ins, outs


def _language_cohorts(sg, files, rng: GoRand) -> list:
    from .spec import ArrivalSpec, CohortSpec, SpikeSpec

    wdur = sg.window_duration_secs if sg.window_duration_secs > 0 else 600
    drain = sg.drain_timeout_secs if sg.drain_timeout_secs >= 0 else 180
    if not files:
        raise ConfigError(f"servegen_data.path: no chunk-*-trace.csv files found in {sg.path}")
    chunks = []
    for cid, tpath, dpath in files:
        client = load_chunk(cid, tpath, dpath)
        if client is not None:
            chunks.append((cid, client, dpath))
    if not chunks:
        raise ConfigError(f"servegen_data.path: no valid chunks found in {sg.path} (every chunk is inactive)")
    selected = [span + rng.intn(3) * WINDOW_SEC for _, span in PERIODS]

    def at(window, sel):
        return _go_mod(_go_div(window.start_us, 1_000_000), DAY_SEC) == sel

    period_chunks: Dict[int, list] = {}
    for ch in chunks:
        for p, sel in enumerate(selected):
            if any(at(w, sel) for w in ch[1].lifecycle):
                period_chunks.setdefault(p, []).append(ch)
    groups: Dict[Tuple[int, str], list] = {}
    for p in sorted(period_chunks):
        for i, ch in enumerate(_shuffled(rng, period_chunks[p])):
            groups.setdefault((p, SLO_DEAL_ORDER[i % 5]), []).append(ch)
    cohorts = []
    for key in sorted(groups):
        p, slo = key
        members = groups[key]
        name, _ = PERIODS[p]
        sel = selected[p]
        cohort_id = f"{name}-{slo}"
        s_mi = s_si = s_mo = s_so = 0.0
        dist_count = 0
        total_rate = 0.0
        for cid, client, ins, outs in _member_window_pdfs(members, sel, cohort_id):
            c_mi = c_si = c_mo = c_so = 0.0
            n_out = 0
            for fi, fo in zip(ins, outs):
                if fi is not None:
                    c_mi += fi[0]
                    c_si += fi[1]
                if fo is not None:
                    c_mo += fo[0]
                    c_so += fo[1]
                    n_out += 1
            if n_out > 0:
                n = float(n_out)
                s_mi += c_mi / n
                s_si += c_si / n
                s_mo += c_mo / n
                s_so += c_so / n
                dist_count += 1
            r_sum = 0.0
            r_n = 0
            for w in client.lifecycle:
                if at(w, sel) and w.trace_rate is not None:
                    r_sum += w.trace_rate
                    r_n += 1
            if r_n > 0:
                total_rate += r_sum / float(r_n)
        if dist_count > 0:
            n = float(dist_count)
            din, dout = _lognormal(s_mi / n, s_si / n), _lognormal(s_mo / n, s_so / n)
        else:
            din, dout = _gaussian_fallback(512, 128), _gaussian_fallback(128, 32)
        s_cv = s_shape = s_scale = 0.0
        n_arr = gamma = weibull = 0
        for _, client, _ in members:
            for w in client.lifecycle:
                if at(w, sel) and w.arrival is not None:
                    if w.arrival.cv is not None:
                        s_cv += w.arrival.cv
                    if w.arrival.shape is not None:
                        s_shape += w.arrival.shape
                    if w.arrival.scale is not None:
                        s_scale += w.arrival.scale
                    n_arr += 1
                    if w.arrival.process == "gamma":
                        gamma += 1
                    elif w.arrival.process == "weibull":
                        weibull += 1
        arrival = ArrivalSpec()
        if n_arr > 0:
            n = float(n_arr)
            arrival = ArrivalSpec("weibull" if weibull > gamma else "gamma", s_cv / n, s_shape / n, s_scale / n)
        if total_rate <= 0:
            log.warning("Skipping cohort %s: zero rate at selected window (window %d had no active chunks)",
                        cohort_id, sel)
            continue
        start_us = p * (wdur + drain) * 1_000_000
        cohorts.append(CohortSpec(
            id=cohort_id, population=len(members), slo_class=slo, streaming=True, rate_fraction=1.0,
            arrival=arrival, input_distribution=din, output_distribution=dout,
            spike=SpikeSpec(start_time_us=start_us, duration_us=wdur * 1_000_000, trace_rate=total_rate)))
    if not cohorts:
        raise ConfigError(f"servegen_data.path: no active cohorts generated from {sg.path} (all chunks filtered "
                          f"out)")
    return cohorts


def _rate_at(rows: List[TraceRow], start_s: int) -> float:
    for row in rows:
        if go_int(row.start_s) == start_s:
            return row.rate
    return 0.0


def _reasoning_cohorts(sg, files, rng: GoRand) -> list:
    from .spec import (ArrivalSpec, CohortSpec, DistSpec, MultiTurnSpec, ReasoningSpec, SpikeSpec)

    wdur = sg.window_duration_secs if sg.window_duration_secs > 0 else WINDOW_SEC
    traces: Dict[str, Optional[List[TraceRow]]] = {}
    for cid, tpath, _ in files:
        try:
            traces[cid] = parse_trace(tpath)
        except ConfigError as e:
            log.warning("Skipping trace file %s: parse failed: %s", tpath, e)
            traces[cid] = None
    coverage: Dict[int, int] = {}
    for rows in traces.values():
        for row in rows or []:
            if row.rate > 0:
                idx = go_int(row.start_s / WINDOW_SEC)
                coverage[idx] = coverage.get(idx, 0) + 1
    best, best_n = 0, 0
    for idx in range(DAY_SEC // WINDOW_SEC):
        if coverage.get(idx, 0) > best_n:
            best, best_n = idx, coverage[idx]
    if best_n == 0:
        raise ConfigError(f"servegen_data.path: every window of {sg.path} has zero coverage (all trace files failed "
                          f"to parse or all rates are 0)")
    sel = best * WINDOW_SEC
    chunks = []
    for cid, tpath, dpath in files:
        try:
            raw = _read_dataset_json(dpath)
        except (OSError, ValueError) as e:
            log.warning("Skipping chunk %s: dataset read failed: %s", cid, e)
            continue
        pdf = None
        for k in sorted(raw):
            s = raw[k].get("reason_ratio", "")
            if s and s != "{}":
                try:
                    pdf = parse_float_pdf(s)
                    break
                except ValueError:
                    continue
        if not pdf:
            log.warning("Skipping chunk %s: no valid reason_ratio found", cid)
            continue
        chunks.append((cid, pdf, dpath))
    if not chunks:
        raise ConfigError(f"servegen_data.path: no valid reasoning chunks found in {sg.path}")
    sums: Dict[int, float] = {}
    for _, pdf, _ in chunks:
        for ratio in sorted(pdf):
            pct = min(100, max(0, go_int(ratio * 100)))
            sums[pct] = sums.get(pct, 0.0) + pdf[ratio]
    n_chunks = float(len(chunks))
    ratio_dist = DistSpec("empirical", {str(k): sums[k] / n_chunks for k in sorted(sums)})
    total = 0.0
    for rows in traces.values():
        total += _rate_at(rows or [], sel)
    if total <= 0:
        raise ConfigError(f"servegen_data.path: no active chunks at the selected window {sel} s of {sg.path} "
                          f"(total rate = 0)")
    groups: Dict[str, list] = {}
    for i, ch in enumerate(_shuffled(rng, chunks)):
        groups.setdefault(SLO_DEAL_ORDER[i % 5], []).append(ch)
    cohorts = []
    for slo in sorted(SLO_DEAL_ORDER):
        members = groups.get(slo, [])
        if not members:
            continue
        cohort_id = f"reasoning-{slo}"
        rate = 0.0
        for cid, _, _ in members:
            rows = traces.get(cid)
            if rows is None:
                continue
            rate += _rate_at(rows, sel)
        if rate <= 0:
            log.warning("Skipping cohort %s: no active chunks at selected window (rate = 0)", cohort_id)
            continue
        s_mi = s_si = s_mo = s_so = 0.0
        dist_count = 0
        for cid, _, ins, outs in _member_window_pdfs(members, sel, cohort_id):
            fi_ok = [f for f in ins if f is not None]
            fo_ok = [f for f in outs if f is not None]
            if fi_ok and fo_ok:
                c_mi = c_si = c_mo = c_so = 0.0
                for f in fi_ok:
                    c_mi += f[0]
                    c_si += f[1]
                for f in fo_ok:
                    c_mo += f[0]
                    c_so += f[1]
                s_mi += c_mi / float(len(fi_ok))
                s_si += c_si / float(len(fi_ok))
                s_mo += c_mo / float(len(fo_ok))
                s_so += c_so / float(len(fo_ok))
                dist_count += 1
        if dist_count == 0:
            log.warning("Skipping cohort %s: no valid input/output distributions", cohort_id)
            continue
        n = float(dist_count)
        cohorts.append(CohortSpec(
            id=cohort_id, population=len(members), slo_class=slo, streaming=True, rate_fraction=1.0,
            closed_loop=False, arrival=ArrivalSpec("poisson"),
            input_distribution=_lognormal(s_mi / n, s_si / n), output_distribution=_lognormal(s_mo / n, s_so / n),
            spike=SpikeSpec(start_time_us=0, duration_us=wdur * 1_000_000, trace_rate=rate),
            reasoning=ReasoningSpec(reason_ratio_distribution=ratio_dist,
                                    multi_turn=MultiTurnSpec(max_rounds=1, think_time_us=0, context_growth=""))))
    if not cohorts:
        raise ConfigError(f"servegen_data.path: no cohorts generated from {sg.path} (all groups empty)")
    return cohorts


def load_servegen_cohorts(sg, seed: int) -> Tuple[list, str]:
    """BLIS's ``loadServeGenData``: ``(cohorts, category)`` for the ``servegen_data`` block ``sg``
    (category ``"reasoning"`` for reasoning data, else ``""``).  ``span_start``,
    ``span_end`` and ``time_window`` are not used, as in BLIS."""
    if not os.path.isdir(sg.path):
        raise ConfigError(f"servegen_data.path must be a readable directory, got {sg.path!r}")
    files = _chunk_files(sg.path)
    rng = GoRand(int(seed))
    if _is_reasoning(files):
        return _reasoning_cohorts(sg, files, rng), "reasoning"
    return _language_cohorts(sg, files, rng), ""
