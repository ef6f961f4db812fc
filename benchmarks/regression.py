"""Benchmark regression check for CI: fail only on a real slowdown (>= 2x).

Reads pytest-benchmark JSON (``--benchmark-json``) and compares it with
``benchmarks/baseline.json``.  Two things make raw wall times useless on a shared,
noisy 2-core machine, and the method removes both:

1. **Other processes.** A benchmark that shares the cores with a busy neighbour
   takes twice the wall time, in bursts of seconds that no calibration taken at
   another moment can follow (measured here: 2x swings between two runs of the
   same code).  So the regression run times **CPU seconds**, not wall seconds:

       python -m pytest benchmarks/ --benchmark-only \
           --benchmark-timer=benchmarks.regression.cpu_clock --benchmark-json=bench.json

   :func:`cpu_clock` is this process's CPU time plus that of its reaped children,
   so benchmarks that run child processes (``blis`` as a subprocess, the sweep's
   worker pool) are measured too.  Waiting for the CPU costs no CPU time.

2. **A different machine** (a faster CPU, another cache size).  Every benchmark is
   divided by a calibration timed in the same run, a fixed workload shaped like the
   simulator's (a numba binary-heap event loop over int64/float64 arrays plus a numpy
   sort; ``test_bench_sweep.py::test_calibration``, which runs first):

       score = min CPU time of the benchmark / min CPU time of the calibration

   Minima over rounds, because noise only adds time.

A benchmark fails when ``score / baseline score >= --threshold`` (default 2.0).
Several JSON files may be given (e.g. a rerun of a failing job): each benchmark then
takes its best score over them, so a slowdown must show in every run to fail.
What CPU time does not see: a loss of parallelism (a sweep that stops using both
cores); the sweep benchmark's wall time and requests/s are in its extra_info.

Exit status: 0 no slowdown, 1 a slowdown of at least the threshold, 2 bad input
(no calibration in the JSON, another timer than the baseline's, no benchmark in
common with the baseline, unreadable file).  Benchmarks present on one side only
are listed and never fail the check (smoke and ``BLIS_BENCH_FULL=1`` runs have
different parameter ids).

    python -m pytest benchmarks/ --benchmark-only --benchmark-timer=benchmarks.regression.cpu_clock \
        --benchmark-json=bench.json
    python benchmarks/regression.py bench.json                     # check
    python benchmarks/regression.py bench.json --update            # refresh the baseline
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
DEFAULT_BASELINE = HERE / "baseline.json"
CALIBRATION = "test_bench_sweep.py::test_calibration"
DEFAULT_THRESHOLD = 2.0
#: what a baseline's "method" says; a baseline with another method is refused
METHOD = "min-cpu-time-over-calibration-v3"
#: the pytest-benchmark timer of a regression run
CPU_TIMER = "benchmarks.regression.cpu_clock"


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


def cpu_clock() -> float:
    """CPU seconds of this process plus its reaped children (a pytest-benchmark timer:
    ``--benchmark-timer=benchmarks.regression.cpu_clock``)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


# ---------------------------------------------------------------- reading results
def bench_key(fullname: str) -> str:
    """``file.py::test[param]`` without the folder (pytest's rootdir may differ)."""
    return fullname.replace("\\", "/").rsplit("/", 1)[-1]


def load_run(path: Path) -> Tuple[Dict[str, dict], str]:
    """({key: {"min": s, "median": s, "rounds": n}}, timer name) from one pytest-benchmark JSON file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(_die(f"{path}: must be a readable pytest-benchmark JSON file ({e})"))
    out, timers = {}, set()
    for b in doc.get("benchmarks", []):
        st = b.get("stats") or {}
        if st.get("min") is None:
            continue
        # pytest-benchmark records the timer function's name ("cpu_clock", "perf_counter")
        timers.add(str((b.get("options") or {}).get("timer", "unknown")).rsplit(".", 1)[-1])
        out[bench_key(b.get("fullname") or b["name"])] = {
            "min": float(st["min"]), "median": float(st.get("median", st["min"])),
            "rounds": int(st.get("rounds", 0))}
    if len(timers) > 1:
        raise SystemExit(_die(f"{path}: benchmarks must share one timer, got {', '.join(sorted(timers))}"))
    return out, (timers.pop() if timers else "unknown")


def _die(msg: str) -> int:
    sys.stderr.write(f"regression: error: {msg}\n")
    return 2


def scores(runs: Sequence[Dict[str, dict]]) -> Dict[str, float]:
    """Best (lowest) calibrated score of each benchmark over the runs."""
    best: Dict[str, float] = {}
    for i, run in enumerate(runs):
        cal = run.get(CALIBRATION)
        if cal is None or cal["min"] <= 0:
            raise ValueError(f"run {i + 1}: must contain the calibration benchmark {CALIBRATION} "
                             "(run benchmarks/test_bench_sweep.py with --benchmark-only)")
        for k, v in run.items():
            best[k] = min(best.get(k, float("inf")), v["min"] / cal["min"])
    return best


def compare(current: Dict[str, float], baseline: Dict[str, dict], threshold: float):
    """Rows (key, base score, score, slowdown, status) and whether any failed."""
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
        rows.append((k, base, current[k], slow, status))
    return rows, failed


def _fmt(v: Optional[float], spec: str) -> str:
    if v is None:
        return "-".rjust(int(spec.split(".")[0] or 0))
    return format(v, spec)


def write_baseline(path: Path, runs: Sequence[Dict[str, dict]], current: Dict[str, float],
                   threshold: float, timer: str) -> None:
    doc = {
        "method": METHOD,
        "about": "score = benchmark min CPU time / calibration min CPU time in the same run "
                 "(see benchmarks/regression.py and docs/sweeps.md)",
        "timer": timer,
        "calibration": CALIBRATION,
        "threshold": threshold,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "calibration_min_s": min(r[CALIBRATION]["min"] for r in runs),
        "benchmarks": {k: {"score": round(s, 6),
                           "min_s": round(min(r[k]["min"] for r in runs if k in r), 6)}
                       for k, s in sorted(current.items()) if k != CALIBRATION},
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/regression.py",
                                description="Fail (exit 1) when a benchmark is >= THRESHOLD x slower than "
                                            "the baseline, in CPU time relative to a calibration loop "
                                            "timed in the same run.")
    p.add_argument("results", nargs="+", type=Path, help="pytest-benchmark JSON file(s) (--benchmark-json)")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help=f"default {DEFAULT_BASELINE}")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"slowdown factor that fails (default: the baseline's, else {DEFAULT_THRESHOLD:g})")
    p.add_argument("--update", action="store_true", help="write the baseline from these results instead")
    ns = p.parse_args(argv)
    loaded = [load_run(r) for r in ns.results]
    runs = [r for r, _ in loaded]
    timers = {t for _, t in loaded}
    if len(timers) > 1:
        return _die(f"the JSON files must use one timer, got {', '.join(sorted(timers))}")
    timer = timers.pop()
    if timer != CPU_TIMER.rsplit(".", 1)[-1]:
        sys.stderr.write(f"regression: warning: the run timed with {timer}, not {CPU_TIMER}: wall times swing "
                         f"2x on a shared machine; run pytest with --benchmark-timer={CPU_TIMER}\n")
    try:
        current = scores(runs)
    except ValueError as e:
        return _die(str(e))
    if ns.update:
        write_baseline(ns.baseline, runs, current, ns.threshold or DEFAULT_THRESHOLD, timer)
        sys.stdout.write(f"regression: wrote {ns.baseline} ({len(current) - 1} benchmarks)\n")
        return 0
    try:
        base = json.loads(ns.baseline.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return _die(f"{ns.baseline}: must be a readable baseline JSON ({e}); create it with --update")
    if base.get("method") != METHOD:
        return _die(f"{ns.baseline}: method must be {METHOD!r}, got {base.get('method')!r}; refresh it with --update")
    if base.get("timer") != timer:
        hint = CPU_TIMER if base.get("timer") == CPU_TIMER.rsplit(".", 1)[-1] else base.get("timer")
        return _die(f"the run's timer must be the baseline's {base.get('timer')!r}, got {timer!r} "
                    f"(pytest ... --benchmark-timer={hint})")
    threshold = ns.threshold or float(base.get("threshold", DEFAULT_THRESHOLD))
    if threshold <= 1:
        return _die(f"--threshold: must be > 1, got {threshold:g}")
    rows, failed = compare(current, base.get("benchmarks", {}), threshold)
    if not any(r[3] is not None for r in rows):
        return _die("no benchmark in common with the baseline (wrong JSON file, or the benchmarks were renamed: "
                    "refresh the baseline with --update)")
    cal = min(r[CALIBRATION]["min"] for r in runs)
    sys.stdout.write(f"calibration {cal * 1e3:.2f} ms (baseline {base.get('calibration_min_s', 0) * 1e3:.2f} ms), "
                     f"timer {timer}; fail at >= {threshold:g}x\n")
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


if __name__ == "__main__":
    sys.exit(main())
