"""Benchmark regression check for CI: fail only on a real slowdown (>= 2x).

Reads pytest-benchmark JSON (``--benchmark-json``) and compares it with
``benchmarks/baseline.json``.  Raw times are useless on a shared, noisy 2-core
machine (a busy neighbour doubles them), so every benchmark is scored relative to
a reference workload timed on the same machine at the same moment:

    score = min round time of the benchmark / calibration time next to it

(the calibration time being the median of a few runs of a short loop: the speed of
the machine under the load of that moment)

The calibration is a fixed workload shaped like the simulator's: a numba-compiled
binary-heap event loop over int64/float64 arrays plus a numpy sort.  A slower or
busier machine slows both, so the score stays put; a change that makes blis slower
moves only the benchmark.  Minima are used (not means) because noise only adds time.

"Next to it", in order of preference:

1. the benchmark's own ``extra_info["calibrated_score"]``: the lowest over its rounds
   of (round time / calibration timed just before that round, on as many processes as
   the benchmark runs).  The sweep benchmarks do this: a parallel sweep suffers more
   from a busy neighbour than a one-process loop.
2. ``extra_info["calibration_s"]``, added to *every* benchmark by this module used as a
   pytest plugin: the calibration timed right before and right after the test (the
   higher of the two: the benchmark may have run under either load).  Load on a shared machine changes within seconds, so a
   calibration measured once per run is not enough::

       python -m pytest benchmarks/ --benchmark-only -p benchmarks.regression --benchmark-json=bench.json

3. the ``test_bench_sweep.py::test_calibration`` benchmark of the same run (its median).
A benchmark fails when ``score / baseline score >= --threshold`` (default 2.0).
Several JSON files may be given (e.g. a rerun of a failing job): each benchmark then
takes its best score over them, so a slowdown must show in every run to fail.

Exit status: 0 no slowdown, 1 a slowdown of at least the threshold, 2 bad input
(no calibration in the JSON, no benchmark in common with the baseline, unreadable file).
Benchmarks present on one side only are listed and never fail the check (smoke and
``BLIS_BENCH_FULL=1`` runs have different parameter ids).

    python -m pytest benchmarks/ --benchmark-only -p benchmarks.regression --benchmark-json=bench.json
    python benchmarks/regression.py bench.json                     # check
    python benchmarks/regression.py bench.json --update            # refresh the baseline
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
DEFAULT_BASELINE = HERE / "baseline.json"
CALIBRATION = "test_bench_sweep.py::test_calibration"
DEFAULT_THRESHOLD = 2.0
#: what a baseline's "method" says; a baseline with another method is refused
METHOD = "min-time-over-adjacent-calibration-v2"


# ---------------------------------------------------------------- calibration workload
_KERNEL = None


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import numba
        import numpy as np

        @numba.njit(cache=False)
        def heap_events(n, seed):  # pragma: no cover - compiled
            # an event loop over a binary min-heap of (time, id), like the engine's queue
            times = np.empty(n + 1, np.int64)
            ids = np.empty(n + 1, np.int64)
            acc = np.zeros(64, np.float64)
            size = 0
            x = seed
            clock = 0
            checksum = 0.0
            for step in range(4 * n):
                if size < n and (step % 3 != 2 or size == 0):
                    x = (x * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
                    t = clock + (x >> 40) % 100000
                    i = size
                    size += 1
                    while i > 0:
                        parent = (i - 1) >> 1
                        if times[parent] <= t:
                            break
                        times[i] = times[parent]
                        ids[i] = ids[parent]
                        i = parent
                    times[i] = t
                    ids[i] = step
                else:
                    clock = times[0]
                    ev = ids[0]
                    size -= 1
                    t = times[size]
                    e = ids[size]
                    i = 0
                    while True:
                        c = 2 * i + 1
                        if c >= size:
                            break
                        if c + 1 < size and times[c + 1] < times[c]:
                            c += 1
                        if times[c] >= t:
                            break
                        times[i] = times[c]
                        ids[i] = ids[c]
                        i = c
                    times[i] = t
                    ids[i] = e
                    k = ev & 63
                    acc[k] = acc[k] * 0.5 + (clock % 977) * 1e-3
                    checksum += acc[k]
            return checksum

        _KERNEL = heap_events
    return _KERNEL


def calibration_workload(n: int = 60_000, seed: int = 12345) -> float:
    """The fixed reference workload (about 40-60 ms on a 2-core machine once compiled)."""
    import numpy as np

    total = _kernel()(n, seed)
    rng = np.random.default_rng(seed)
    a = rng.random(400_000)
    a.sort()
    return float(total + a[n % len(a)])


class Calibrator:
    """Times the calibration workload on ``procs`` processes at once (forked workers,
    compiled once), for benchmarks that run that many processes themselves."""

    def __init__(self, procs: int = 1):
        self.procs = procs
        self._pool = None
        calibration_workload()                      # compile before forking
        if procs > 1:
            import multiprocessing

            self._pool = multiprocessing.get_context("fork").Pool(procs)
            self._pool.map(calibration_workload, [60_000] * procs)

    def measure(self, repeats: int = 5) -> float:
        """Median wall time of ``repeats`` runs (all ``procs`` copies finished): the
        machine's speed under the load of the moment.  (Not the minimum: a 20-50 ms loop
        finds quiet slices on a busy machine that a benchmark's longer rounds cannot.)"""
        import statistics
        import time

        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            if self._pool is None:
                calibration_workload()
            else:
                self._pool.map(calibration_workload, [60_000] * self.procs, chunksize=1)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


# ---------------------------------------------------------------- reading results
def bench_key(fullname: str) -> str:
    """``file.py::test[param]`` without the folder (pytest's rootdir may differ)."""
    return fullname.replace("\\", "/").rsplit("/", 1)[-1]


def load_run(path: Path) -> Dict[str, dict]:
    """{key: {"min": s, "median": s, "rounds": n, "calibrated_score": x or None,
    "calibration_s": s or None}} from one pytest-benchmark JSON file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(_die(f"{path}: must be a readable pytest-benchmark JSON file ({e})"))
    out = {}
    for b in doc.get("benchmarks", []):
        st = b.get("stats") or {}
        if st.get("min") is None:
            continue
        info = b.get("extra_info") or {}
        own, cal = info.get("calibrated_score"), info.get("calibration_s")
        out[bench_key(b.get("fullname") or b["name"])] = {
            "min": float(st["min"]), "median": float(st.get("median", st["min"])),
            "rounds": int(st.get("rounds", 0)), "calibrated_score": float(own) if own else None,
            "calibration_s": float(cal) if cal else None}
    return out


def _die(msg: str) -> int:
    sys.stderr.write(f"regression: error: {msg}\n")
    return 2


def score_of(v: dict, cal: dict) -> Tuple[float, str]:
    """(score, how): own calibrated score, adjacent calibration, or the run's calibration."""
    if v["calibrated_score"]:
        return v["calibrated_score"], "own"
    if v["calibration_s"]:
        return v["min"] / v["calibration_s"], "adjacent"
    return v["min"] / cal["median"], "run"


def scores(runs: Sequence[Dict[str, dict]], how: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """Best (lowest) calibrated score of each benchmark over the runs (``how`` collects
    which calibration each used)."""
    best: Dict[str, float] = {}
    for i, run in enumerate(runs):
        cal = run.get(CALIBRATION)
        if cal is None or cal["median"] <= 0:
            raise ValueError(f"run {i + 1}: must contain the calibration benchmark {CALIBRATION} "
                             "(run benchmarks/test_bench_sweep.py with --benchmark-only)")
        for k, v in run.items():
            s, h = score_of(v, cal)
            if s < best.get(k, float("inf")):
                best[k] = s
                if how is not None:
                    how[k] = h
    return best


def compare(current: Dict[str, float], baseline: Dict[str, dict], threshold: float,
            how: Optional[Dict[str, str]] = None):
    """Rows (key, base score, score, slowdown, status) and whether any failed."""
    how = how or {}
    rows, failed = [], False
    for k in sorted(set(current) | set(baseline)):
        if k == CALIBRATION:
            continue
        if k not in baseline:
            rows.append((k, None, current[k], None, "new (no baseline)"))
            continue
        base = float(baseline[k]["score"])
        if k not in current:
            rows.append((k, base, None, None, "not run"))
            continue
        slow = current[k] / base
        status = "ok"
        if slow >= threshold:
            status, failed = f"SLOWDOWN >= {threshold:g}x", True
        elif slow <= 1 / threshold:
            status = "faster (refresh the baseline?)"
        bhow = baseline[k].get("calibration")
        if bhow and how.get(k) and bhow != how[k]:
            status += f" (calibration {how[k]}, baseline {bhow}: run with -p benchmarks.regression)"
        rows.append((k, base, current[k], slow, status))
    return rows, failed


def _fmt(v: Optional[float], spec: str) -> str:
    if v is None:
        width = int(spec.split(".")[0] or 0)
        return "-".rjust(width)
    return format(v, spec)


def write_baseline(path: Path, runs: Sequence[Dict[str, dict]], current: Dict[str, float],
                   threshold: float, how: Dict[str, str]) -> None:
    cal = min(r[CALIBRATION]["median"] for r in runs)
    doc = {
        "method": METHOD,
        "about": "score = benchmark min time / calibration time measured next to it in the same run "
                 "(see benchmarks/regression.py and docs/sweeps.md)",
        "calibration": CALIBRATION,
        "threshold": threshold,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "calibration_s": cal,
        "benchmarks": {k: {"score": round(s, 6), "calibration": how.get(k, "run"),
                           "min_s": round(min(r[k]["min"] for r in runs if k in r), 6)}
                       for k, s in sorted(current.items()) if k != CALIBRATION},
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/regression.py",
                                description="Fail (exit 1) when a benchmark is >= THRESHOLD x slower than "
                                            "the baseline, relative to a calibration loop timed in the same run.")
    p.add_argument("results", nargs="+", type=Path, help="pytest-benchmark JSON file(s) (--benchmark-json)")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help=f"default {DEFAULT_BASELINE}")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"slowdown factor that fails (default: the baseline's, else {DEFAULT_THRESHOLD:g})")
    p.add_argument("--update", action="store_true", help="write the baseline from these results instead")
    ns = p.parse_args(argv)
    runs = [load_run(r) for r in ns.results]
    how: Dict[str, str] = {}
    try:
        current = scores(runs, how)
    except ValueError as e:
        return _die(str(e))
    if ns.update:
        write_baseline(ns.baseline, runs, current, ns.threshold or DEFAULT_THRESHOLD, how)
        sys.stdout.write(f"regression: wrote {ns.baseline} ({len(current) - 1} benchmarks)\n")
        return 0
    try:
        base = json.loads(ns.baseline.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return _die(f"{ns.baseline}: must be a readable baseline JSON ({e}); create it with --update")
    if base.get("method") != METHOD:
        return _die(f"{ns.baseline}: method must be {METHOD!r}, got {base.get('method')!r}; refresh it with --update")
    threshold = ns.threshold or float(base.get("threshold", DEFAULT_THRESHOLD))
    if threshold <= 1:
        return _die(f"--threshold: must be > 1, got {threshold:g}")
    rows, failed = compare(current, base.get("benchmarks", {}), threshold, how)
    if not any(r[3] is not None for r in rows):
        return _die("no benchmark in common with the baseline (wrong JSON file, or the benchmarks were renamed: "
                    "refresh the baseline with --update)")
    cal = min(r[CALIBRATION]["median"] for r in runs)
    sys.stdout.write(f"calibration {cal * 1e3:.2f} ms (baseline {base.get('calibration_s', 0) * 1e3:.2f} ms); "
                     f"fail at >= {threshold:g}x\n")
    w = max(len(r[0]) for r in rows)
    sys.stdout.write(f"{'benchmark':<{w}}  {'baseline':>9}  {'now':>9}  {'ratio':>6}  status\n")
    for k, b, c, s, status in rows:
        sys.stdout.write(f"{k:<{w}}  {_fmt(b, '9.4g')}  {_fmt(c, '9.4g')}  {_fmt(s, '6.2f')}  {status}\n")
    if failed:
        sys.stdout.write("regression: FAILED: slowdown of at least "
                         f"{threshold:g}x against {ns.baseline.name}\n")
        return 1
    sys.stdout.write("regression: ok\n")
    return 0


# ---------------------------------------------------------------- pytest plugin
try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - the check itself needs no pytest
    _pytest = None

_PLUGIN_CAL: Optional["Calibrator"] = None

if _pytest is not None:
    @_pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        """With ``-p benchmarks.regression``: time the calibration right before and after
        each benchmark test and store the lower as ``extra_info["calibration_s"]``."""
        global _PLUGIN_CAL
        bm = getattr(item, "funcargs", {}).get("benchmark")
        if bm is None or getattr(bm, "disabled", True):
            return (yield)
        if _PLUGIN_CAL is None:
            _PLUGIN_CAL = Calibrator(1)
        before = _PLUGIN_CAL.measure(5)
        try:
            return (yield)
        finally:
            # the busier of the two moments: the benchmark may have run under either load
            bm.extra_info["calibration_s"] = max(before, _PLUGIN_CAL.measure(5))


if __name__ == "__main__":
    sys.exit(main())
