"""Kernel benchmarks: single compiled kernels on fixed, seeded inputs.

Each benchmark drives the kernel from a small compiled loop (``*_driver_nb``)
so the figure is the kernel's own cost, not Python's call overhead; each
records a per-unit figure in ``extra_info`` (ns per step, per token, per draw...).
Every kernel is called once before timing, so compilation is never timed.

    python -m pytest benchmarks/test_kernels.py --benchmark-only
    BLIS_BENCH_FULL=1 python -m pytest benchmarks/test_kernels.py --benchmark-only   # larger sizes
"""
import numpy as np
import pytest

from blis.hardware import get_hardware_calib
from blis.kernels import gorand
from blis.kernels import layout as Lo
from blis.kernels.jit import njit
from blis.kernels.kvcache import (
    kv_allocate_nb, kv_cached_blocks_nb, kv_init, kv_release_nb, make_kv_arrays,
)
from blis.kernels.latency import step_time_nb
from blis.kernels.prefix_hash import block_hash_nb
from blis.latency import build_latency
from blis.model_config import resolve_model_config
from blis.rng import GoRand
from blis.workload.synthesis import DistributionParams, synthesize_distribution

from .harness import FULL, REFERENCE_MODEL, median_seconds

pytestmark = pytest.mark.benchmark(group="kernel")

SEED = 20240611
BATCH = 256            # requests in the step-time batch (vLLM's default max-num-seqs)
TOKEN_BUDGET = 2048    # vLLM's default max-num-batched-tokens
STEP_REPS = 1000       # step-time calls per benchmark round
BLOCK = 16             # tokens per KV block
PROMPT_TOKENS = 2048   # prefix-hash prompt length
HASH_REPS = 100        # prompts hashed per benchmark round
RNG_DRAWS = 10_000_000 if FULL else 1_000_000
WORKLOAD_REQUESTS = 1_000_000 if FULL else 100_000


def _per_unit(benchmark, units, key, scale):
    """Record ``median time / units * scale`` as ``extra_info[key]`` (skipped when timing is off)."""
    med = median_seconds(benchmark)
    if med is not None:
        benchmark.extra_info[key] = med / units * scale


# ---------------------------------------------------------------- step time
@njit
def step_time_driver_nb(reps, code, params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched):
    """``reps`` step-time calls; one decode's progress index is nudged and restored per call
    so the compiler cannot hoist the (pure) call out of the loop."""
    acc = np.int64(0)
    for rep in range(reps):
        j = rep % n_dc
        dc_pi[j] += 1
        acc += step_time_nb(code, params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
        dc_pi[j] -= 1
    return acc


def _batch(shape):
    """A 256-request batch: ``decode`` = 256 decodes; ``mixed`` = 4 prefill chunks of 449 tokens
    + 252 decodes (the whole 2,048-token budget).  Progress indices are seeded."""
    rng = np.random.default_rng(SEED)
    n_pf = 0 if shape == "decode" else 4
    n_dc = BATCH - n_pf
    chunk = (TOKEN_BUDGET - n_dc) // max(n_pf, 1)
    pf_len = rng.integers(1024, 4096, n_pf).astype(np.int64)
    pf_pi = (rng.integers(0, 2, n_pf) * chunk).astype(np.int64)   # first or second chunk
    pf_new = np.full(n_pf, chunk, np.int64)
    dc_pi = rng.integers(300, 1500, n_dc).astype(np.int64)
    if n_pf == 0:  # kernels take arrays even when empty
        pf_pi = pf_new = pf_len = np.zeros(1, np.int64)
    return pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, BATCH


@pytest.mark.parametrize("shape", ["decode", "mixed"])
@pytest.mark.parametrize("backend", ["roofline", "trained-physics"])
def test_step_time_256_request_batch(benchmark, backend, shape):
    """``step_time_nb`` for llama-3.1-8b-instruct on H100 (TP 1) over one 256-request batch.

    extra_info: ``ns_per_step`` (one step-time evaluation), ``step_time_us`` (the value).
    """
    lat = build_latency(backend, resolve_model_config(REFERENCE_MODEL), get_hardware_calib("H100"), tp=1)
    pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched = _batch(shape)
    args = (lat.code, lat.params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
    step_time_driver_nb(1, *args)  # compile / load outside the timing
    benchmark(step_time_driver_nb, STEP_REPS, *args)
    benchmark.extra_info["step_time_us"] = int(step_time_nb(*args))
    _per_unit(benchmark, STEP_REPS, "ns_per_step", 1e9)


# ---------------------------------------------------------------- KV cache
@njit
def kv_cycle_driver_nb(kv, ins, rq, gseed, cached, B, salt):
    """Admit every request as the engine does (prefix lookup, then allocate the whole prompt
    on instance 0), then release them all.  ``salt`` != 0 gives every request new content
    first (all misses: fresh blocks, hashing, evicting old hashes); 0 repeats the content
    (after one cycle, every full block is a prefix-cache hit).  Returns -1 if an allocation fails."""
    n = rq.shape[1]
    for r in range(n):
        rq[Lo.R_CSEED, r] += salt
        rq[Lo.R_PI, r] = 0
        nc = kv_cached_blocks_nb(kv, 0, rq, gseed, r, B, cached)
        if not kv_allocate_nb(kv, ins, 0, rq, gseed, r, nc * B, rq[Lo.R_ILEN, r], cached, nc, B):
            return -1
    for r in range(n):
        kv_release_nb(kv, ins, 0, rq, r)
    return ins[0, Lo.I_HITS]


def _kv_state(n_req, total_blocks, B):
    """One instance's KV state built as ``blis.engine.Simulation`` builds it, and ``n_req``
    requests whose prompts (257..1,039 tokens) never end on a block boundary."""
    rng = np.random.default_rng(SEED)
    ilen = rng.integers(16, 65, n_req) * B + rng.integers(1, B, n_req)
    max_blocks = int(ilen.max()) // B + 2
    kv = make_kv_arrays(1, total_blocks, n_req + 1, max_blocks)
    ins = np.zeros((1, Lo.NIF), np.int64)
    kv_init(kv, ins, 0, total_blocks)
    rq = np.zeros((Lo.NRF, n_req), np.int64)
    rq[Lo.R_ILEN] = ilen
    rq[Lo.R_OLEN] = 128
    rq[Lo.R_CSEED] = rng.integers(1, 2**62, n_req)
    rq[Lo.R_SLOT] = -1
    gseed = np.array([0x1234_5678_9ABC_DEF0], np.uint64)
    cached = np.zeros(max_blocks + 1, np.int64)
    return kv, ins, rq, gseed, cached, int(ilen.sum())


@pytest.mark.parametrize("content", ["miss", "hit"])
def test_kv_allocate_release_256_requests(benchmark, content):
    """Prefix lookup + allocate + release of 256 prompts (~650 tokens, ~10.5k blocks) in a
    32,768-block cache.  extra_info: ``ns_per_request``, ``ns_per_token``, ``blocks_per_cycle``,
    ``hit_blocks_per_cycle`` (0 for ``miss``; every full block for ``hit``)."""
    kv, ins, rq, gseed, cached, tokens = _kv_state(BATCH, 32_768, BLOCK)
    salt = 0x9E37 if content == "miss" else 0
    assert kv_cycle_driver_nb(kv, ins, rq, gseed, cached, BLOCK, salt) >= 0  # compile, fill the cache
    benchmark(kv_cycle_driver_nb, kv, ins, rq, gseed, cached, BLOCK, salt)
    assert ins[0, Lo.I_FREE_CNT] == 32_768, "every block must be free again after a cycle"
    hits_before = int(ins[0, Lo.I_HITS])
    kv_cycle_driver_nb(kv, ins, rq, gseed, cached, BLOCK, salt)
    benchmark.extra_info["blocks_per_cycle"] = int(sum(-(-int(x) // BLOCK) for x in rq[Lo.R_ILEN]))
    benchmark.extra_info["hit_blocks_per_cycle"] = int(ins[0, Lo.I_HITS]) - hits_before
    _per_unit(benchmark, BATCH, "ns_per_request", 1e9)
    _per_unit(benchmark, tokens, "ns_per_token", 1e9)


# ---------------------------------------------------------------- prefix hash
@njit
def prompt_hash_driver_nb(reps, prefix_len, input_len, group_seed, content_seed, B):
    """Chained hashes of every full block of ``reps`` prompts (new content per prompt)."""
    acc = np.uint64(0)
    for rep in range(reps):
        prev = np.uint64(0)
        cs = content_seed + np.uint64(rep)
        for j in range(input_len // B):
            prev = block_hash_nb(prev, j * B, B, prefix_len, input_len, group_seed, cs)
        acc ^= prev
    return acc


def test_prefix_hash_2048_token_prompt(benchmark):
    """``block_hash_nb`` chained over a 2,048-token prompt (128 blocks of 16; the first 512
    tokens from a shared prefix group).  extra_info: ``us_per_prompt``, ``ns_per_token``."""
    args = (HASH_REPS, 512, PROMPT_TOKENS, np.uint64(0xA5A5_5A5A_0F0F_F0F0), np.uint64(SEED), BLOCK)
    prompt_hash_driver_nb(*args)
    benchmark(prompt_hash_driver_nb, *args)
    _per_unit(benchmark, HASH_REPS, "us_per_prompt", 1e6)
    _per_unit(benchmark, HASH_REPS * PROMPT_TOKENS, "ns_per_token", 1e9)


# ---------------------------------------------------------------- Go RNG
DRAW_FLOAT64, DRAW_NORM, DRAW_EXP = 0, 1, 2


@njit
def fill_draws_driver_nb(state, kind, out):
    """Fill ``out`` with Go ``Float64`` / ``NormFloat64`` / ``ExpFloat64`` draws."""
    for i in range(out.shape[0]):
        if kind == DRAW_FLOAT64:
            out[i] = gorand.float64_nb(state)
        elif kind == DRAW_NORM:
            out[i] = gorand.norm_float64_nb(state)
        else:
            out[i] = gorand.exp_float64_nb(state)


def _draw(kind, state, out):
    if kind == "intn_fill":      # materialised token ids: Intn(128000)
        gorand.fill_intn_nb(state, 128_000, out)
    elif kind == "intn_skip":    # token-id draws consumed without storing them
        gorand.skip_intn_nb(state, 128_000, out.shape[0])
    else:
        code = {"float64": DRAW_FLOAT64, "norm_float64": DRAW_NORM, "exp_float64": DRAW_EXP}[kind]
        fill_draws_driver_nb(state, code, out)


@pytest.mark.parametrize("kind", ["intn_fill", "intn_skip", "float64", "norm_float64", "exp_float64"])
def test_gorand_bulk_draws(benchmark, kind):
    """1M (10M with BLIS_BENCH_FULL=1) draws of Go's ``math/rand`` from one seeded stream.
    extra_info: ``ns_per_draw``."""
    state = GoRand(SEED).state
    out = np.empty(RNG_DRAWS, np.int64 if kind.startswith("intn") else np.float64)
    _draw(kind, state, out[:16])
    benchmark(_draw, kind, state, out)
    _per_unit(benchmark, RNG_DRAWS, "ns_per_draw", 1e9)


# ---------------------------------------------------------------- workload generation
def test_workload_generation_distribution(benchmark):
    """``synthesize_distribution`` of 100k (1M with BLIS_BENCH_FULL=1) requests with BLIS's
    default token distributions at 12 req/s.  extra_info: ``requests_per_s``."""
    params = DistributionParams(rate=12.0, num_requests=WORKLOAD_REQUESTS)
    synthesize_distribution(DistributionParams(rate=12.0, num_requests=100), seed=42, rate_explicit=True)
    table = benchmark.pedantic(synthesize_distribution, args=(params,),
                               kwargs=dict(seed=42, rate_explicit=True), rounds=5, warmup_rounds=1)
    assert len(table) == WORKLOAD_REQUESTS
    med = median_seconds(benchmark)
    if med is not None:
        benchmark.extra_info["requests_per_s"] = WORKLOAD_REQUESTS / med
