"""Step-level benchmarks: the compiled engine on a small workload, per simulated step.

The workload, latency model and engine configuration are resolved exactly as
``blis run`` resolves them for the reference scenario (llama-3.1-8b-instruct,
roofline, H100, TP 1) and built once; each round times ``Simulation.run()``
on a freshly built :class:`blis.engine.Simulation` (building the state arrays
is not timed).  One warm-up round loads the kernels first.

    python -m pytest benchmarks/test_step.py --benchmark-only
"""
import pytest

from blis import cli
from blis.engine import Simulation
from blis.kernels import layout as Lo

from .harness import FULL, median_seconds, reference_argv

pytestmark = pytest.mark.benchmark(group="step")

#: requests per run: small by default, the reference size with BLIS_BENCH_FULL=1
STEP_REQUESTS = 20_000 if FULL else 2_000
ROUNDS = 5


def engine_inputs(num_requests, rate):
    """(workload table, EngineConfig, LatencyModel) for the reference scenario at ``rate`` req/s."""
    ns = cli.parse_args(reference_argv(num_requests, rate))
    cli.validate_common(ns)
    table, horizon = cli.build_run_workload(ns)
    lat, blocks, mml = cli.resolve_latency(ns)
    return table, cli.engine_config(ns, blocks, mml, horizon), lat


@pytest.mark.parametrize("rate", [12, 40], ids=["stable-12rps", "saturated-40rps"])
def test_engine_us_per_step(benchmark, rate):
    """``Simulation.run()`` over 2,000 requests (20,000 with BLIS_BENCH_FULL=1).

    At 12 req/s the instance is at stable load (batches of a few dozen requests);
    at 40 req/s it is saturated (the queue grows, batches approach 256).
    extra_info: ``us_per_step`` (median run time / simulated steps), ``steps``,
    ``requests_per_s``.
    """
    table, cfg, lat = engine_inputs(STEP_REQUESTS, rate)
    sims = []

    def fresh():
        sims.append(Simulation(table, cfg, lat))
        return (sims[-1],), {}

    res = benchmark.pedantic(Simulation.run, setup=fresh, rounds=ROUNDS, warmup_rounds=1)
    sim = sims[-1]
    steps = int(sim.ins[:, Lo.I_STEP_COUNT].sum())
    assert steps > 0
    assert sim.finished_count() == STEP_REQUESTS, "every request must finish"
    benchmark.extra_info["steps"] = steps
    benchmark.extra_info["num_requests"] = STEP_REQUESTS
    med = median_seconds(benchmark)
    if med is not None:
        benchmark.extra_info["us_per_step"] = med / steps * 1e6
        benchmark.extra_info["requests_per_s"] = STEP_REQUESTS / med
    assert res is not None
