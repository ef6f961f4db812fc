"""Shared pieces of the benchmarks and of ``scripts/bench_report.py``.

* The reference scenario -- BLIS's own benchmark command line (one instance,
  llama-3.1-8b-instruct, roofline, H100, TP 1, rate 12, distribution workload)
  -- and BLIS's published figure for it on this machine.
* Running ``blis run`` in-process (stdout captured, as the CLI writes it) and in
  a child process (wall time including interpreter start-up, plus that child's
  own peak RSS from ``os.wait4``; ``RUSAGE_CHILDREN`` would instead report the
  maximum over every child reaped so far).
* Benchmark sizes: small by default (the smoke run stays well under a minute),
  larger with ``BLIS_BENCH_FULL=1``.

Run as a module it measures in-process throughput in a fresh interpreter and
prints one JSON object (``scripts/bench_report.py`` uses this, so the report's
own process never imports or compiles the kernels)::

    python -m benchmarks.harness inprocess --num-requests 20000 --repeats 3
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: ``BLIS_BENCH_FULL=1`` selects the large sizes (minutes instead of seconds).
FULL = os.environ.get("BLIS_BENCH_FULL", "").strip() not in ("", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent

REFERENCE_MODEL = "meta-llama/llama-3.1-8b-instruct"
REFERENCE_NUM_REQUESTS = 20_000
#: BLIS (Go) on this machine, one instance, the reference scenario: ~350-530 requests per wall second.
BLIS_REQ_PER_S = 440.0
BLIS_REQ_PER_S_RANGE = (350.0, 530.0)
#: requests in the "tiny" run whose peak RSS is the fixed baseline (interpreter, libraries,
#: compiled kernels, KV arrays sized by the model and GPU) and whose wall time is the start-up.
BASELINE_NUM_REQUESTS = 100
#: memory target: bytes of peak RSS per simulated request beyond the baseline
TARGET_BYTES_PER_REQUEST = 2048


def reference_argv(num_requests: int = REFERENCE_NUM_REQUESTS, rate: float = 12) -> List[str]:
    """``blis`` arguments of the reference scenario with ``num_requests`` requests (at ``rate`` req/s)."""
    return ["run", "--model", REFERENCE_MODEL, "--latency-model", "roofline", "--hardware", "H100",
            "--tp", "1", "--rate", f"{rate:g}", "--num-requests", str(int(num_requests))]


def blis_comparison(req_per_s: float) -> Dict[str, object]:
    """Throughput next to BLIS's figure: the ratio to the midpoint and to both ends of its range."""
    lo, hi = BLIS_REQ_PER_S_RANGE
    return {
        "blis_req_per_s": BLIS_REQ_PER_S,
        "blis_req_per_s_range": [lo, hi],
        "ratio_to_blis": req_per_s / BLIS_REQ_PER_S,
        "ratio_to_blis_range": [req_per_s / hi, req_per_s / lo],
    }


_COMPLETED = re.compile(r'"completed_requests":\s*(\d+)')


def completed_requests(stdout_text: str) -> int:
    """``completed_requests`` of the first (cluster) metrics block ``blis run`` printed."""
    m = _COMPLETED.search(stdout_text)
    if m is None:
        raise ValueError("blis output: must contain a metrics block with completed_requests, got "
                         f"{stdout_text[:200]!r}")
    return int(m.group(1))


# ---------------------------------------------------------------- in-process
def run_inprocess(argv: Sequence[str]) -> str:
    """Run ``blis.cli.main(argv)`` with stdout captured; return the text it printed."""
    from blis.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(argv))
    if rc != 0:
        raise RuntimeError(f"blis {' '.join(argv)}: exited with status {rc}")
    return buf.getvalue()


def inprocess_throughput(num_requests: int, repeats: int) -> Dict[str, object]:
    """One warm-up run (loads or compiles the kernels), then ``repeats`` timed in-process runs
    (wall and process CPU time)."""
    argv = reference_argv(num_requests)
    run_inprocess(argv)
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run_inprocess(argv)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        done = completed_requests(out)
        if done != num_requests:
            raise RuntimeError(f"in-process run: completed_requests must be {num_requests}, got {done}")
    med = statistics.median(walls)
    cpu = statistics.median(cpus)
    return {"num_requests": num_requests, "wall_s": walls, "median_s": med,
            "req_per_s": num_requests / med, "cpu_s": cpus, "median_cpu_s": cpu,
            "req_per_cpu_s": num_requests / cpu}


# ---------------------------------------------------------------- child process
@dataclass(frozen=True)
class ChildRun:
    """One finished child process: wall time, CPU time (user + system), its own peak RSS,
    exit status and output.  CPU time is the figure to compare on a busy machine."""

    wall_s: float
    cpu_s: float
    max_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


def blis_command() -> List[str]:
    """The ``blis`` console script of this interpreter (not a pyenv/venv shim), else ``-m blis.cli``."""
    exe = Path(sys.executable).with_name("blis")
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "blis.cli"]


def child_env(numba_cache_dir: Optional[os.PathLike] = None) -> Dict[str, str]:
    """This process's environment, with ``NUMBA_CACHE_DIR`` set when given."""
    env = dict(os.environ)
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache_dir)
    return env


def run_child(cmd: Sequence[str], env: Optional[Dict[str, str]] = None,
              cwd: Optional[os.PathLike] = None) -> ChildRun:
    """Run ``cmd`` to completion; the wall time includes interpreter start-up.

    Peak RSS comes from ``os.wait4`` (this child only, in bytes).  Output goes to
    temporary files, so a chatty child can never block on a full pipe.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    rss_unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss) * rss_unit,
                    proc.returncode, stdout, stderr)


def run_blis_child(num_requests: int, numba_cache_dir: Optional[os.PathLike] = None) -> ChildRun:
    """The reference scenario with ``num_requests`` requests as a ``blis`` child process.

    Raises if the command fails or does not complete every request.
    """
    argv = reference_argv(num_requests)
    run = run_child(blis_command() + argv, env=child_env(numba_cache_dir))
    if run.returncode != 0:
        raise RuntimeError(f"blis {' '.join(argv)}: exited with status {run.returncode}: "
                           f"{run.stderr.strip()[-500:]}")
    done = completed_requests(run.stdout)
    if done != num_requests:
        raise RuntimeError(f"blis {' '.join(argv)}: completed_requests must be {num_requests}, got {done}")
    return run


def run_harness_child(args: Sequence[str], numba_cache_dir: Optional[os.PathLike] = None) -> dict:
    """``python -m benchmarks.harness <args>`` in a fresh interpreter; its JSON result."""
    run = run_child([sys.executable, "-m", "benchmarks.harness", *args],
                    env=child_env(numba_cache_dir), cwd=REPO_ROOT)
    if run.returncode != 0:
        raise RuntimeError(f"benchmarks.harness {' '.join(args)}: exited with status {run.returncode}: "
                           f"{run.stderr.strip()[-500:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def numba_cache_signature(cache_dir: Optional[os.PathLike] = None):
    """Names, sizes and mtimes of the numba cache files (they change whenever numba compiles
    and saves a kernel).  ``cache_dir`` is a ``NUMBA_CACHE_DIR``; None means the package's
    own ``__pycache__`` folders (numba's default), or ``$NUMBA_CACHE_DIR`` if this process has one."""
    if cache_dir is None and os.environ.get("NUMBA_CACHE_DIR"):
        cache_dir = os.environ["NUMBA_CACHE_DIR"]
    if cache_dir is not None:
        roots = [Path(cache_dir)]
    else:
        import blis
        import blis.kernels

        roots = [Path(blis.__file__).parent, Path(blis.kernels.__file__).parent]
    files = {p for root in roots for pat in ("*.nbi", "*.nbc") for p in root.rglob(pat) if p.is_file()}
    out = []
    for p in sorted(files):
        try:
            st = p.stat()
        except FileNotFoundError:  # replaced while we looked
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


# ---------------------------------------------------------------- pytest-benchmark helpers
def median_seconds(benchmark) -> Optional[float]:
    """Median round time of a finished benchmark, or None when timing is disabled (smoke mode)."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return None
    return float(stats.stats.median)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.harness",
                                description="benchmark helpers run in a fresh interpreter")
    sub = p.add_subparsers(dest="command", required=True)
    ip = sub.add_parser("inprocess", help="in-process throughput of the reference scenario (JSON)")
    ip.add_argument("--num-requests", type=int, default=REFERENCE_NUM_REQUESTS)
    ip.add_argument("--repeats", type=int, default=3)
    ns = p.parse_args(argv)
    if ns.repeats < 1:
        p.error(f"--repeats must be >= 1, got {ns.repeats}")
    result = inprocess_throughput(ns.num_requests, ns.repeats)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
