"""Workload generation: 1,000,000 requests from a multi-client v2 spec.

The issue's target is under 2 s for the full million (the generator is
compiled: no per-request Python objects, and plain clients are generated in
time slices so no client runs past the final truncation).  The floor is
BLIS's token-id draws, which must be consumed to keep its RNG stream: about
1,000 ``Intn`` draws per request here (~1.8 ns each), so ~2 s on a quiet
core; ``extra_info`` records the time (``seconds``) rather than failing on it.  The spec mixes four
clients (Gaussian, exponential, lognormal and empirical lengths; poisson,
gamma, weibull and constant arrivals; two prefix groups), so every length and
arrival kernel is on the path.  ``extra_info``: ``requests_per_s``.

    python -m pytest benchmarks/test_bench_workload.py --benchmark-only
"""
import time

import pytest

from blis.workload.spec import generate_spec_requests, parse_workload_spec

from .harness import median_seconds

pytestmark = pytest.mark.benchmark(group="workload")

REQUESTS = 1_000_000
TARGET_S = 2.0

SPEC = """
version: "2"
seed: 7
aggregate_rate: 5000
clients:
  - id: chat
    slo_class: critical
    rate_fraction: 0.4
    arrival: {process: poisson}
    input_distribution: {type: gaussian, params: {mean: 512, std_dev: 256, min: 2, max: 7000}}
    output_distribution: {type: gaussian, params: {mean: 256, std_dev: 128, min: 2, max: 4000}}
    prefix_group: system
    prefix_length: 128
  - id: batch
    slo_class: batch
    rate_fraction: 0.3
    arrival: {process: gamma, cv: 2.0}
    input_distribution: {type: exponential, params: {mean: 900, min: 10, max: 8000}}
    output_distribution: {type: lognormal, params: {mu: 5.0, sigma: 0.8, min: 1, max: 4096}}
  - id: rag
    slo_class: standard
    rate_fraction: 0.2
    arrival: {process: weibull, cv: 0.7}
    input_distribution: {type: empirical, params: {"1024": 0.5, "2048": 0.3, "4096": 0.2}}
    output_distribution: {type: constant, params: {value: 128}}
    prefix_group: docs
  - id: probe
    slo_class: sheddable
    rate_fraction: 0.1
    arrival: {process: constant}
    input_distribution: {type: constant, params: {value: 64}}
    output_distribution: {type: constant, params: {value: 8}}
"""


def _generate():
    return generate_spec_requests(parse_workload_spec(SPEC), max_requests=REQUESTS)


def test_workload_generation_one_million_multi_client(benchmark):
    generate_spec_requests(parse_workload_spec(SPEC), max_requests=1000)  # compile outside the timing
    t0 = time.perf_counter()
    table = benchmark.pedantic(_generate, rounds=3, warmup_rounds=0)
    assert len(table) == REQUESTS
    assert len(set(table.names["client"])) == 5  # "" + four clients
    med = median_seconds(benchmark)
    if med is None:  # --benchmark-disable: one timed call instead
        med = time.perf_counter() - t0
    benchmark.extra_info["requests_per_s"] = REQUESTS / med
    benchmark.extra_info["seconds"] = med
    benchmark.extra_info["target_s"] = TARGET_S
    benchmark.extra_info["tokens_per_request"] = float((table["input_len"] + table["output_len"]).mean())
