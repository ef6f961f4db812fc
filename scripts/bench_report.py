#!/usr/bin/env python
"""Measure blis's headline performance figures and print them as Markdown tables.

What it runs is fixed (only the figures vary from machine to machine and run to
run).  The scenario is BLIS's reference benchmark -- one instance,
llama-3.1-8b-instruct, roofline, H100, TP 1, distribution workload at 12 req/s::

    blis run --model meta-llama/llama-3.1-8b-instruct --latency-model roofline \\
        --hardware H100 --tp 1 --rate 12 --num-requests N

1. Start-up: N = 100 as a child process, first with an empty numba cache (a
   fresh temporary ``NUMBA_CACHE_DIR``: every kernel compiles -- *cold*), then
   ``--repeats`` times with that cache populated (*warm*, median).
2. Throughput in-process: ``python -m benchmarks.harness inprocess`` in a fresh
   interpreter -- one warm-up ``blis.cli.main`` call, then ``--repeats`` timed
   calls with 20,000 requests (median).
3. Throughput end to end: the ``blis`` console script with 20,000 requests,
   ``--repeats`` times (median wall time, interpreter start-up included).
4. Memory: each child's own peak RSS (``os.wait4``) for N = 100 (the fixed
   baseline: interpreter, libraries, kernels, KV arrays), 20,000, 100,000 and,
   with ``--full`` or ``BLIS_BENCH_FULL=1``, 1,000,000 requests.  Bytes per
   request = (RSS(N) - RSS(100)) / N; target < 2 KiB.  Since peak RSS is a
   high-water mark, a run whose simulation needs less than the start-up's
   transient peak shows ~0; the marginal figure between the two largest sizes
   is printed as well.

Throughput and start-up are reported as wall clock (the headline, as BLIS's
figure is) and as CPU time (user + system), which is far less disturbed when
other processes share the machine.

Every child uses the temporary numba cache, never the package's own cache
directory.  If a warm child recompiles (the cache changed during its run
because kernel sources were edited meanwhile) it is run again.

    python scripts/bench_report.py                # ~1-2 minutes
    python scripts/bench_report.py --full         # + the 1,000,000-request run (minutes)
    python scripts/bench_report.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.harness import (  # noqa: E402  (needs the repository root on sys.path)
    BASELINE_NUM_REQUESTS,
    BLIS_REQ_PER_S,
    BLIS_REQ_PER_S_RANGE,
    FULL,
    REFERENCE_NUM_REQUESTS,
    TARGET_BYTES_PER_REQUEST,
    blis_comparison,
    numba_cache_signature,
    run_blis_child,
    run_harness_child,
)

MEMORY_SIZES = (20_000, 100_000)
MEMORY_SIZE_FULL = 1_000_000
MAX_ATTEMPTS = 3


def log(msg: str) -> None:
    sys.stderr.write(f"bench_report: {msg}\n")
    sys.stderr.flush()


def warm_child(num_requests: int, cache_dir: Path):
    """``run_blis_child`` with a populated cache; repeated if the child had to recompile."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        before = numba_cache_signature(cache_dir)
        run = run_blis_child(num_requests, cache_dir)
        if numba_cache_signature(cache_dir) == before:
            return run
        log(f"{num_requests} requests: numba recompiled during the run (kernel sources changed?); "
            f"repeating ({attempt}/{MAX_ATTEMPTS})")
    raise RuntimeError(f"bench_report: {num_requests} requests: the numba cache kept changing over "
                       f"{MAX_ATTEMPTS} runs; run again when the kernel sources are not being edited")


def measure(repeats: int, full: bool) -> dict:
    """Run steps 1-4 of the module doc in a private numba cache; return the raw figures."""
    cache_dir = Path(tempfile.mkdtemp(prefix="blis-bench-numba-"))
    try:
        log(f"cold start-up: {BASELINE_NUM_REQUESTS} requests, empty numba cache {cache_dir}")
        cold = run_blis_child(BASELINE_NUM_REQUESTS, cache_dir)
        log(f"warm start-up: {BASELINE_NUM_REQUESTS} requests x {repeats}")
        warm = [warm_child(BASELINE_NUM_REQUESTS, cache_dir) for _ in range(repeats)]

        log(f"in-process throughput: {REFERENCE_NUM_REQUESTS} requests, warm-up + {repeats} runs")
        inproc = run_harness_child(["inprocess", "--num-requests", str(REFERENCE_NUM_REQUESTS),
                                    "--repeats", str(repeats)], cache_dir)

        log(f"end-to-end throughput: {REFERENCE_NUM_REQUESTS} requests x {repeats} (child processes)")
        e2e = [warm_child(REFERENCE_NUM_REQUESTS, cache_dir) for _ in range(repeats)]

        memory = {BASELINE_NUM_REQUESTS: statistics.median(r.max_rss_bytes for r in warm),
                  REFERENCE_NUM_REQUESTS: statistics.median(r.max_rss_bytes for r in e2e)}
        for n in MEMORY_SIZES + ((MEMORY_SIZE_FULL,) if full else ()):
            if n not in memory:
                log(f"memory: {n} requests (child process)")
                run = warm_child(n, cache_dir)
                memory[n] = run.max_rss_bytes
                log(f"  {n} requests: {run.wall_s:.1f} s, peak RSS {run.max_rss_bytes / 2**20:.1f} MiB")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    e2e_median = statistics.median(r.wall_s for r in e2e)
    e2e_rate = REFERENCE_NUM_REQUESTS / e2e_median
    e2e_cpu = statistics.median(r.cpu_s for r in e2e)
    base = memory[BASELINE_NUM_REQUESTS]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "blis_reference_req_per_s": BLIS_REQ_PER_S,
        "blis_reference_req_per_s_range": list(BLIS_REQ_PER_S_RANGE),
        "startup": {"num_requests": BASELINE_NUM_REQUESTS, "cold_s": cold.wall_s, "cold_cpu_s": cold.cpu_s,
                    "cold_peak_rss_bytes": cold.max_rss_bytes,
                    "warm_s": statistics.median(r.wall_s for r in warm),
                    "warm_cpu_s": statistics.median(r.cpu_s for r in warm),
                    "warm_runs_s": [r.wall_s for r in warm]},
        "throughput_inprocess": dict(inproc, **blis_comparison(inproc["req_per_s"])),
        "throughput_end_to_end": dict({"num_requests": REFERENCE_NUM_REQUESTS,
                                       "wall_s": [r.wall_s for r in e2e], "median_s": e2e_median,
                                       "req_per_s": e2e_rate, "cpu_s": [r.cpu_s for r in e2e],
                                       "median_cpu_s": e2e_cpu,
                                       "req_per_cpu_s": REFERENCE_NUM_REQUESTS / e2e_cpu},
                                      **blis_comparison(e2e_rate)),
        "memory": {str(n): {"peak_rss_bytes": rss, "beyond_baseline_bytes": rss - base,
                            "bytes_per_request": (rss - base) / n if n != BASELINE_NUM_REQUESTS else None}
                   for n, rss in sorted(memory.items())},
    }


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def _speed(t: dict) -> str:
    lo, hi = t["ratio_to_blis_range"]
    return (f"{t['req_per_s']:,.0f} req/s | {t['ratio_to_blis']:.1f}x ({lo:.1f}-{hi:.1f}x) "
            f"| {t['req_per_cpu_s']:,.0f} req/CPU-s")


def markdown(r: dict) -> str:
    lo, hi = r["blis_reference_req_per_s_range"]
    n = r["throughput_inprocess"]["num_requests"]
    s = r["startup"]
    rows = [
        "| Measure | Wall clock | vs BLIS | CPU time |",
        "|---|---:|---:|---:|",
        f"| Throughput, in-process ({n:,} requests, warm kernels) | {_speed(r['throughput_inprocess'])} |",
        f"| Throughput, end to end (`blis` process, start-up included) | {_speed(r['throughput_end_to_end'])} |",
        f"| Start-up, cold (empty numba cache, {s['num_requests']} requests) | {s['cold_s']:.1f} s | "
        f"| {s['cold_cpu_s']:.1f} s |",
        f"| Start-up, warm (cached kernels, {s['num_requests']} requests) | {s['warm_s']:.2f} s | "
        f"| {s['warm_cpu_s']:.2f} s |",
        "",
        "| Requests | Peak RSS | Beyond baseline | Bytes/request |",
        "|---:|---:|---:|---:|",
    ]
    mem = r["memory"]
    sizes = sorted(int(k) for k in mem)
    for k in sizes:
        m = mem[str(k)]
        if m["bytes_per_request"] is None:
            rows.append(f"| {k:,} (baseline) | {_mib(m['peak_rss_bytes'])} | - | - |")
        else:
            rows.append(f"| {k:,} | {_mib(m['peak_rss_bytes'])} | {_mib(m['beyond_baseline_bytes'])} "
                        f"| {m['bytes_per_request']:,.0f} B |")
    notes = [f"BLIS: {r['blis_reference_req_per_s']:.0f} req/s (range {lo:.0f}-{hi:.0f}) for one instance "
             f"on the same machine; ratios are to {r['blis_reference_req_per_s']:.0f}, "
             f"in parentheses to {hi:.0f} and {lo:.0f}.  Wall-clock figures suffer when other work "
             "shares the machine; CPU time (user + system) much less so."]
    if len(sizes) >= 3:
        a, b = sizes[-2], sizes[-1]
        slope = (mem[str(b)]["peak_rss_bytes"] - mem[str(a)]["peak_rss_bytes"]) / (b - a)
        r["memory_marginal_bytes_per_request"] = {"from": a, "to": b, "bytes_per_request": slope}
        notes.append(f"Marginal memory {a:,} -> {b:,} requests: {slope:,.0f} B/request "
                     f"(target < {TARGET_BYTES_PER_REQUEST:,} B).")
    mc = r["machine"]
    notes.append(f"Machine: {mc['cpus']} CPUs, Python {mc['python']}, {mc['platform']}.")
    return "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", default=FULL,
                   help=f"add the {MEMORY_SIZE_FULL:,}-request memory run (also BLIS_BENCH_FULL=1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per throughput / warm start-up figure")
    p.add_argument("--json", default="", help="also write the raw figures to this JSON file")
    ns = p.parse_args(argv)
    if ns.repeats < 1:
        p.error(f"--repeats must be >= 1, got {ns.repeats}")
    result = measure(ns.repeats, ns.full)
    sys.stdout.write(markdown(result))
    if ns.json:
        Path(ns.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
