"""Whole-simulation benchmarks: the reference scenario, end to end.

The reference scenario is BLIS's benchmark: one instance, llama-3.1-8b-instruct,
roofline, H100, TP 1, 20,000 requests of the distribution workload at a stable
12 req/s, i.e. the whole command including its output::

    blis run --model meta-llama/llama-3.1-8b-instruct --latency-model roofline \\
        --hardware H100 --tp 1 --rate 12 --num-requests 20000

* ``test_reference_run_inprocess``: ``blis.cli.main([...])`` with stdout captured,
  after one warm-up call so numba's one-time compile/cache load is not timed.
* ``test_reference_run_subprocess``: the ``blis`` console script as a child
  process: true end-to-end wall time including interpreter start-up and kernel
  cache loading; also the child's CPU time and peak RSS, and bytes per request
  beyond a tiny (100-request) run's RSS.  These memory figures assume the
  package's numba cache stays warm during the benchmark (a recompile inflates
  the peak: ``extra_info["numba_recompiled"]`` says whether that happened);
  ``scripts/bench_report.py`` uses a private cache and repeats such runs.

extra_info: ``requests_per_s`` (median wall time), ``ratio_to_blis`` (vs BLIS's
440 req/s, the middle of its 350-530 req/s on this machine), ``ratio_to_blis_range``
and ``cpu_s_median`` (CPU seconds per run: less disturbed by other load).
``BLIS_BENCH_FULL=1`` adds a 100,000-request size.  Memory at 1,000,000 requests
and cold start-up are measured by ``scripts/bench_report.py``.

    python -m pytest benchmarks/test_simulation.py --benchmark-only
"""
import statistics
import time

import pytest

from .harness import (
    BASELINE_NUM_REQUESTS,
    FULL,
    REFERENCE_NUM_REQUESTS,
    blis_command,
    blis_comparison,
    completed_requests,
    median_seconds,
    numba_cache_signature,
    reference_argv,
    run_blis_child,
    run_inprocess,
)

pytestmark = pytest.mark.benchmark(group="simulation")

SIZES = [REFERENCE_NUM_REQUESTS] + ([100_000] if FULL else [])
ROUNDS = 3


def _record_rate(benchmark, num_requests):
    benchmark.extra_info["num_requests"] = num_requests
    med = median_seconds(benchmark)
    if med is not None:
        rate = num_requests / med
        benchmark.extra_info["requests_per_s"] = rate
        benchmark.extra_info.update(blis_comparison(rate))


@pytest.mark.parametrize("num_requests", SIZES)
def test_reference_run_inprocess(benchmark, num_requests):
    """``blis.cli.main`` on the reference scenario, in this process (warm kernels)."""
    argv = reference_argv(num_requests)
    cpu_s = []

    def run():
        c0 = time.process_time()
        out = run_inprocess(argv)
        cpu_s.append(time.process_time() - c0)
        return out

    out = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    assert completed_requests(out) == num_requests
    benchmark.extra_info["command"] = "blis " + " ".join(argv)
    timed = cpu_s[1:] if len(cpu_s) > 1 else cpu_s  # without the warm-up round
    benchmark.extra_info["cpu_s_median"] = statistics.median(timed)
    _record_rate(benchmark, num_requests)


@pytest.mark.parametrize("num_requests", SIZES)
def test_reference_run_subprocess(benchmark, num_requests):
    """The ``blis`` console script on the reference scenario, as a child process."""
    runs = []

    def run():
        runs.append(run_blis_child(num_requests))

    signatures = []

    def setup():  # the numba cache as the first timed round starts (after the warm-up round)
        signatures.append(numba_cache_signature() if len(signatures) == 1 else None)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    baseline = run_blis_child(BASELINE_NUM_REQUESTS)
    if len(signatures) > 1:
        # True: a child recompiled (kernel sources edited meanwhile): time and RSS are inflated
        benchmark.extra_info["numba_recompiled"] = numba_cache_signature() != signatures[1]
    timed = runs[1:] if len(runs) > 1 else runs  # without the warm-up round
    peak = max(r.max_rss_bytes for r in timed)
    benchmark.extra_info["command"] = " ".join(blis_command() + reference_argv(num_requests))
    benchmark.extra_info["peak_rss_mib"] = peak / 2**20
    benchmark.extra_info["baseline_rss_mib"] = baseline.max_rss_bytes / 2**20
    benchmark.extra_info["bytes_per_request"] = (peak - baseline.max_rss_bytes) / num_requests
    benchmark.extra_info["cpu_s_median"] = statistics.median(r.cpu_s for r in timed)
    _record_rate(benchmark, num_requests)
