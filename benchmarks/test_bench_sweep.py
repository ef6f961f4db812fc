"""Sweep benchmarks (group ``sweep``) and the calibration loop the regression check divides by.

* ``test_calibration`` (group ``calibration``): a fixed numba/numpy workload
  (``benchmarks/regression.py``), timed in the same run as every other benchmark so
  ``benchmarks/regression.py`` can compare times across machines.  This file sorts
  first in ``benchmarks/``, so it runs before the others.
* ``test_sweep_point``: one sweep point (1,000 requests, the whole point as a
  worker runs it: simulation, summary, per-request Parquet bytes).  extra_info:
  ``requests_per_s`` and the ratio to BLIS (~440 req/s, 350-530 on this machine
  per ``harness.py``; 260-530 quoted elsewhere: both ends recorded).
* ``test_sweep``: a whole ``blis sweep`` (rates x routing policies x instance
  counts x seeds, 1,000 requests per point) with the default jobs (all cores): 20
  points by default, 1,000 points with ``BLIS_BENCH_FULL=1`` (target: < 5 minutes on
  2 cores).  extra_info: wall seconds (``sweep_wall_s``, whatever the pytest-benchmark
  timer), the points' CPU seconds, requests per wall second, and the time the same
  requests would take BLIS in one process.

    python -m pytest benchmarks/test_bench_sweep.py --benchmark-only
    BLIS_BENCH_FULL=1 python -m pytest benchmarks/test_bench_sweep.py --benchmark-only -k "test_sweep["
"""
import os
import shutil
import statistics

import pytest

from blis import sweep as S

from .harness import BLIS_REQ_PER_S, FULL, REFERENCE_MODEL, median_seconds
from .regression import calibration_workload

#: BLIS's one-instance throughput on this machine, both ends of the figures quoted for it
BLIS_RANGE = (260.0, 530.0)
POINT_REQUESTS = 1000

BASE = f"""base:
  model: {REFERENCE_MODEL}
  latency-model: roofline
  hardware: H100
  tp: 1
  num-requests: {POINT_REQUESTS}
"""
#: 5 rates x 4 policies x 5 instance counts x 10 seeds = 1,000 points
FULL_AXES = """axes:
  - grid:
      rate: [10, 20, 40, 80, 160]
      routing-policy: [round-robin, least-loaded, weighted, always-busiest]
      num-instances: [1, 2, 4, 8, 16]
  - grid:
      seed: {range: [1, 11]}
"""
#: 5 rates x 2 policies x 2 instance counts x 1 seed = 20 points
SMOKE_AXES = """axes:
  - grid:
      rate: [10, 20, 40, 80, 160]
      routing-policy: [round-robin, least-loaded]
      num-instances: [1, 4]
  - grid:
      seed: [1]
"""
SWEEP_POINTS = 1000 if FULL else 20


def blis_estimate(requests: int, wall_s: float) -> dict:
    """How long BLIS would take for ``requests`` in one process, and the speed-up."""
    lo, hi = BLIS_RANGE
    est = {"blis_single_process_s": requests / BLIS_REQ_PER_S,
           "blis_single_process_s_range": [requests / hi, requests / lo]}
    if wall_s:
        est["speedup_vs_blis"] = est["blis_single_process_s"] / wall_s
        est["speedup_vs_blis_range"] = [requests / hi / wall_s, requests / lo / wall_s]
    return est


@pytest.mark.benchmark(group="calibration")
def test_calibration(benchmark):
    """The reference loop every benchmark's time is divided by (benchmarks/regression.py)."""
    out = benchmark.pedantic(calibration_workload, rounds=15, warmup_rounds=1)
    assert out > 0
    benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    benchmark.extra_info["cpus"] = os.cpu_count()


POINTS = {
    # BLIS's reference scenario (one instance, 12 req/s) at 1,000 requests
    "1inst-rr-12rps": ["--num-instances=1", "--routing-policy=round-robin", "--rate=12"],
    # a typical point of the sweep
    "4inst-ll-40rps": ["--num-instances=4", "--routing-policy=least-loaded", "--rate=40"],
}


@pytest.mark.benchmark(group="sweep")
@pytest.mark.parametrize("name", list(POINTS))
def test_sweep_point(benchmark, name):
    """One point as a worker runs it (``blis.sweep.run_point``), kernels warm."""
    argv = ["run", f"--model={REFERENCE_MODEL}", "--latency-model=roofline", "--hardware=H100", "--tp=1",
            f"--num-requests={POINT_REQUESTS}", "--seed=1", *POINTS[name]]
    pid, metrics, data, timing = benchmark.pedantic(S.run_point, args=("p", argv), rounds=5, warmup_rounds=1)
    assert metrics["completed_requests"] == POINT_REQUESTS and data[:4] == b"PAR1"
    benchmark.extra_info.update(num_requests=POINT_REQUESTS, events=metrics["events"], cpu_s=timing["cpu_s"])
    med = median_seconds(benchmark)
    if med is not None:
        rate = POINT_REQUESTS / med
        lo, hi = BLIS_RANGE
        benchmark.extra_info.update(requests_per_s=rate, ratio_to_blis=rate / BLIS_REQ_PER_S,
                                    ratio_to_blis_range=[rate / hi, rate / lo])


@pytest.mark.benchmark(group="sweep")
@pytest.mark.parametrize("points", [SWEEP_POINTS], ids=lambda n: f"points-{n}")
def test_sweep(benchmark, tmp_path, points):
    """A whole sweep (all cores, default executor), from parsed sweep file to summary.parquet."""
    import polars as pl

    sw = S.parse_sweep_text(BASE + (FULL_AXES if FULL else SMOKE_AXES), tmp_path / "bench.yaml")
    assert len(sw.points) == points
    S.run_point("warm", list(sw.points[0].argv) + ["--num-requests=8"])  # load the kernels
    outs = []

    def fresh():
        out = tmp_path / f"out{len(outs)}"
        shutil.rmtree(out, ignore_errors=True)
        outs.append(out)
        return (sw,), {"out": out, "progress": "never"}

    rounds, warmup = (1, 0) if FULL else (3, 1)
    reports = []

    def run(sweep, **kw):
        reports.append(S.run_sweep(sweep, **kw))

    benchmark.pedantic(run, setup=fresh, rounds=rounds, warmup_rounds=warmup)
    rep = reports[-1]
    assert (rep.ran, rep.skipped) == (points, 0)
    s = pl.read_parquet(rep.summary)
    assert s.height == points and (s["injected_requests"] == POINT_REQUESTS).all()
    requests = points * POINT_REQUESTS
    wall = statistics.median(r.wall_s for r in reports)
    benchmark.extra_info.update(
        points=points, requests=requests, jobs=S.default_jobs(), sweep_wall_s=wall,
        under_5_min=wall < 300, points_cpu_s=float(s["cpu_s"].sum()), points_wall_s=float(s["wall_s"].sum()),
        events=int(s["events"].sum()), requests_per_s=requests / wall,
        requests_per_cpu_s=requests / float(s["cpu_s"].sum()),
        loadavg_1min=os.getloadavg()[0], **blis_estimate(requests, wall))
