"""CPU-tier cost as interleaved pairs: ``python scripts/kv_tier_pairs.py [PAIRS]``.

For each GPU cache size of benchmarks/test_bench_kv_tiers.py (2,000 blocks: the
thrashing stress scenario; 4,000 and 8,000: sized for the load), runs the same
20,000-request workload without and with the CPU tier, alternately, ``PAIRS`` times
(default 5), and prints each pair's CPU-time ratio and their median.  Pairing keeps
slow phases of a shared host from landing on one side only, which the benchmark
(all single-tier rounds first) cannot avoid.
"""
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BLIS_BENCH_FULL", "1")

from benchmarks.test_bench_kv_tiers import CPU_BLOCKS, GPU_SIZES, NUM_REQUESTS, engine_inputs, kv_tier_argv  # noqa: E402
from blis.engine import Simulation  # noqa: E402


def main(pairs: int = 5) -> None:
    for gpu, name in GPU_SIZES:
        single = engine_inputs(kv_tier_argv(NUM_REQUESTS, 0, gpu))
        tier = engine_inputs(kv_tier_argv(NUM_REQUESTS, CPU_BLOCKS, gpu))
        Simulation(*single).run()  # warm-up: compile or load both engine variants
        Simulation(*tier).run()
        ratios = []
        for _ in range(pairs):
            cpu = []
            for inputs in (single, tier):
                sim = Simulation(*inputs)
                t0 = time.process_time()
                sim.run()
                cpu.append(time.process_time() - t0)
            ratios.append(cpu[1] / cpu[0])
        print(f"{name}: {NUM_REQUESTS} requests, CPU tier / single tier per pair "
              f"{[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
