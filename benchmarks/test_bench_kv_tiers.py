"""Cost of the GPU+CPU KV tier: the same run with and without ``--kv-cpu-blocks``.

Scenario: llama-3.1-8b-instruct, roofline, H100, TP 1, 12 req/s, the distribution
workload with a 256-token shared prefix, a 20,000-block CPU tier, and three GPU
cache sizes::

    blis run --model meta-llama/llama-3.1-8b-instruct --latency-model roofline \\
        --hardware H100 --tp 1 --rate 12 --num-requests 20000 --prefix-tokens 256 \\
        --total-kv-blocks {2000,4000,8000} [--kv-cpu-blocks 20000]

* ``gpu2000`` (stress): the GPU cache is too small for the load, so the CPU tier
  thrashes (thrashing rate ~1) and prefix blocks leave the GPU and come back from
  the CPU.  The two runs do not simulate the same thing: with the CPU tier there
  are about 11x more preemptions and ~700,000 reloaded blocks.
* ``gpu4000`` and ``gpu8000`` (the tier used as intended): the GPU cache holds the
  running batch (no preemptions), every full block is mirrored to the CPU tier and
  evicted from it later; the ratio is the price of the mirror itself.

Inputs are resolved exactly as ``blis run`` resolves them and built once; each
round times ``Simulation.run()`` on a fresh :class:`blis.engine.Simulation`
(building the state arrays is not timed), after one warm-up round.

Sizes: 2,000 requests by default (the smoke run, ``--benchmark-disable``, stays
well under a minute); ``BLIS_BENCH_FULL=1`` runs the 20,000-request scenario.

extra_info of each CPU-tier run: ``ratio_to_single_tier`` (median CPU-tier run time
/ median single-tier run time of the same GPU size; target < 1.5), ``target_ratio``,
``meets_target``, the hit rates of both runs, CPU hits, thrashing rate, preemptions,
steps.  When timing is disabled (smoke mode) the ratio comes from one
``time.perf_counter`` measurement of each run.

    python -m pytest benchmarks/test_bench_kv_tiers.py --benchmark-only \\
        --benchmark-timer=benchmarks.regression.cpu_clock
"""
import os
import time

import pytest

from blis import cli
from blis.engine import Simulation
from blis.kernels import layout as Lo

pytestmark = pytest.mark.benchmark(group="simulation")

FULL = os.environ.get("BLIS_BENCH_FULL", "").strip() not in ("", "0")
NUM_REQUESTS = 20_000 if FULL else 2_000
GPU_BLOCKS = 2_000  # the stress scenario
#: (GPU blocks, id): the stress scenario, then the GPU cache sized for the load
GPU_SIZES = ((2_000, "gpu2000-stress"), (4_000, "gpu4000"), (8_000, "gpu8000"))
CPU_BLOCKS = 20_000
TARGET_RATIO = 1.5
ROUNDS = 3

#: median seconds per (GPU blocks, tier), filled by the parametrized runs (single tier runs first)
_MEDIANS = {}


def kv_tier_argv(num_requests=NUM_REQUESTS, cpu_blocks=0, gpu_blocks=GPU_BLOCKS):
    return ["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline",
            "--hardware", "H100", "--tp", "1", "--rate", "12", "--num-requests", str(num_requests),
            "--prefix-tokens", "256", "--total-kv-blocks", str(gpu_blocks), "--kv-cpu-blocks", str(cpu_blocks)]


def engine_inputs(argv):
    """(workload table, EngineConfig, LatencyModel) as ``blis run`` resolves them."""
    ns = cli.parse_args(argv)
    cli.validate_common(ns)
    table, horizon = cli.build_run_workload(ns)
    lat, blocks, mml = cli.resolve_latency(ns)
    return table, cli.engine_config(ns, blocks, mml, horizon), lat


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else float(stats.stats.median)


def _timed_once(table, cfg, lat):
    sim = Simulation(table, cfg, lat)
    t0 = time.perf_counter()
    sim.run()
    return time.perf_counter() - t0


@pytest.mark.parametrize("gpu_blocks", [g for g, _ in GPU_SIZES], ids=[n for _, n in GPU_SIZES])
@pytest.mark.parametrize("tier", ["single", "cpu"], ids=["single-tier", "cpu-tier"])
def test_kv_tier_run(benchmark, tier, gpu_blocks):
    cpu_blocks = CPU_BLOCKS if tier == "cpu" else 0
    argv = kv_tier_argv(NUM_REQUESTS, cpu_blocks, gpu_blocks)
    table, cfg, lat = engine_inputs(argv)
    assert cfg.total_kv_blocks == gpu_blocks and cfg.kv_cpu_blocks == cpu_blocks
    sims = []

    def fresh():
        sims.append(Simulation(table, cfg, lat))
        return (sims[-1],), {}

    res = benchmark.pedantic(Simulation.run, setup=fresh, rounds=ROUNDS, warmup_rounds=1)
    sim = sims[-1]
    assert sim.finished_count() == NUM_REQUESTS, "every request must finish"
    assert int(sim.ins[0, Lo.I_FREE_CNT]) == gpu_blocks, "every GPU block must be free at the end"
    inst = res.instances[0]
    info = benchmark.extra_info
    info["command"] = "blis " + " ".join(argv)
    info["num_requests"] = NUM_REQUESTS
    info["scenario"] = dict(GPU_SIZES)[gpu_blocks]
    info["steps"] = int(sim.ins[0, Lo.I_STEP_COUNT])
    info["cache_hit_rate"] = res.cache_hit_rate()
    info["preemptions"] = inst.preemptions
    med = _median(benchmark)
    if med is not None:
        _MEDIANS[gpu_blocks, tier] = med
        info["requests_per_s"] = NUM_REQUESTS / med
    if tier == "single":
        return
    assert inst.cpu_mirrored > 0 and inst.cpu_evictions > 0, "the scenario must fill the CPU tier"
    if gpu_blocks == GPU_BLOCKS:
        assert inst.cpu_hits > 0, "the stress scenario must exercise CPU -> GPU reloads"
    info["cpu_hits"] = inst.cpu_hits
    info["cpu_misses"] = inst.cpu_misses
    info["kv_thrashing_rate"] = res.kv_thrashing_rate()
    info["cpu_mirrored"] = inst.cpu_mirrored
    info["cpu_evictions"] = inst.cpu_evictions
    single_argv = kv_tier_argv(NUM_REQUESTS, 0, gpu_blocks)
    if med is not None and (gpu_blocks, "single") in _MEDIANS:
        ratio = med / _MEDIANS[gpu_blocks, "single"]
        info["ratio_source"] = "pytest-benchmark medians"
    else:  # smoke mode, or the single-tier run was deselected: one timed run of each
        s_table, s_cfg, s_lat = engine_inputs(single_argv)
        ratio = _timed_once(table, cfg, lat) / _timed_once(s_table, s_cfg, s_lat)
        info["ratio_source"] = "one perf_counter run each"
    info["ratio_to_single_tier"] = ratio
    info["target_ratio"] = TARGET_RATIO
    info["meets_target"] = ratio < TARGET_RATIO
