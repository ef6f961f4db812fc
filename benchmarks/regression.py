"""Benchmark regression check for CI: fail only on a real slowdown (>= 2x).

Reads pytest-benchmark JSON (``--benchmark-json``) and compares it with
``benchmarks/baseline.json``.  Raw times are useless on a shared, noisy 2-core
machine (a busy neighbour doubles them), so every benchmark is scored relative to
a reference measured in the same run:

    score = min round time of the benchmark / min round time of the calibration

The calibration (``test_bench_sweep.py::test_calibration``, run first) is a fixed
workload shaped like the simulator's: a numba-compiled binary-heap event loop over
int64/float64 arrays plus a numpy sort.  A slower or busier machine slows both, so
the score stays put; a change that makes blis slower moves only the benchmark.
The minimum over rounds (not the mean) is used because noise only ever adds time.
A benchmark fails when ``score / baseline score >= --threshold`` (default 2.0).
Several JSON files may be given (e.g. a rerun of a failing job): each benchmark then
takes its best score over them, so a slowdown must show in every run to fail.

Exit status: 0 no slowdown, 1 a slowdown of at least the threshold, 2 bad input
(no calibration in the JSON, no benchmark in common with the baseline, unreadable file).
Benchmarks present on one side only are listed and never fail the check (smoke and
``BLIS_BENCH_FULL=1`` runs have different parameter ids).

    python -m pytest benchmarks/ --benchmark-only --benchmark-json=bench.json
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
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_BASELINE = HERE / "baseline.json"
CALIBRATION = "test_bench_sweep.py::test_calibration"
DEFAULT_THRESHOLD = 2.0
#: what a baseline's "method" says; a baseline with another method is refused
METHOD = "min-time-over-calibration-v1"


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
    """The fixed reference workload (about 30-60 ms on a 2-core machine once compiled)."""
    import numpy as np

    total = _kernel()(n, seed)
    rng = np.random.default_rng(seed)
    a = rng.random(400_000)
    a.sort()
    return float(total + a[n % len(a)])


# ---------------------------------------------------------------- reading results
def bench_key(fullname: str) -> str:
    """``file.py::test[param]`` without the folder (pytest's rootdir may differ)."""
    return fullname.replace("\\", "/").rsplit("/", 1)[-1]


def load_run(path: Path) -> Dict[str, dict]:
    """{key: {"min": s, "median": s, "rounds": n}} from one pytest-benchmark JSON file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(_die(f"{path}: must be a readable pytest-benchmark JSON file ({e})"))
    out = {}
    for b in doc.get("benchmarks", []):
        st = b.get("stats") or {}
        if st.get("min") is None:
            continue
        out[bench_key(b.get("fullname") or b["name"])] = {
            "min": float(st["min"]), "median": float(st.get("median", st["min"])),
            "rounds": int(st.get("rounds", 0))}
    return out


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
            s = v["min"] / cal["min"]
            best[k] = min(best.get(k, s), s)
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
    return "-" if v is None else format(v, spec)


def write_baseline(path: Path, runs: Sequence[Dict[str, dict]], current: Dict[str, float],
                   threshold: float) -> None:
    cal = min(r[CALIBRATION]["min"] for r in runs)
    doc = {
        "method": METHOD,
        "about": "score = benchmark min time / calibration min time, measured in the same run; "
                 "see benchmarks/regression.py and docs/sweeps.md",
        "calibration": CALIBRATION,
        "threshold": threshold,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "calibration_min_s": cal,
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
                                            "the baseline, relative to a calibration loop timed in the same run.")
    p.add_argument("results", nargs="+", type=Path, help="pytest-benchmark JSON file(s) (--benchmark-json)")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help=f"default {DEFAULT_BASELINE}")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"slowdown factor that fails (default: the baseline's, else {DEFAULT_THRESHOLD:g})")
    p.add_argument("--update", action="store_true", help="write the baseline from these results instead")
    ns = p.parse_args(argv)
    runs = [load_run(r) for r in ns.results]
    try:
        current = scores(runs)
    except ValueError as e:
        return _die(str(e))
    if ns.update:
        write_baseline(ns.baseline, runs, current, ns.threshold or DEFAULT_THRESHOLD)
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
    rows, failed = compare(current, base.get("benchmarks", {}), threshold)
    if not any(r[3] is not None for r in rows):
        return _die("no benchmark in common with the baseline (wrong JSON file, or the benchmarks were renamed: "
                    "refresh the baseline with --update)")
    cal = min(r[CALIBRATION]["min"] for r in runs)
    sys.stdout.write(f"calibration min {cal * 1e3:.2f} ms (baseline {base.get('calibration_min_s', 0) * 1e3:.2f} ms); "
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


if __name__ == "__main__":
    sys.exit(main())
