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
  cache loading; also the child's peak RSS, and bytes per request beyond a tiny
  (100-request) run's RSS.

extra_info: ``requests_per_s`` (median), ``ratio_to_blis`` (vs BLIS's 440 req/s,
the middle of its 350-530 req/s on this machine) and ``ratio_to_blis_range``.
``BLIS_BENCH_FULL=1`` adds a 100,000-request size.  Memory at 1,000,000 requests
and cold start-up are measured by ``scripts/bench_report.py``.

    python -m pytest benchmarks/test_simulation.py --benchmark-only
"""
import pytest

from .harness import (
    BASELINE_NUM_REQUESTS,
    FULL,
    REFERENCE_NUM_REQUESTS,
    blis_command,
    blis_comparison,
    completed_requests,
    median_seconds,
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
    out = benchmark.pedantic(run_inprocess, args=(argv,), rounds=ROUNDS, warmup_rounds=1)
    assert completed_requests(out) == num_requests
    benchmark.extra_info["command"] = "blis " + " ".join(argv)
    _record_rate(benchmark, num_requests)


@pytest.mark.parametrize("num_requests", SIZES)
def test_reference_run_subprocess(benchmark, num_requests):
    """The ``blis`` console script on the reference scenario, as a child process."""
    runs = []

    def run():
        runs.append(run_blis_child(num_requests))

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    baseline = run_blis_child(BASELINE_NUM_REQUESTS)
    peak = max(r.max_rss_bytes for r in runs)
    benchmark.extra_info["command"] = " ".join(blis_command() + reference_argv(num_requests))
    benchmark.extra_info["peak_rss_mib"] = peak / 2**20
    benchmark.extra_info["baseline_rss_mib"] = baseline.max_rss_bytes / 2**20
    benchmark.extra_info["bytes_per_request"] = (peak - baseline.max_rss_bytes) / num_requests
    _record_rate(benchmark, num_requests)
