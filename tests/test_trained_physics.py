"""Trained-physics backend: spec worked examples, MoE/DP/comm cases, validation and the naive twin."""
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive_latency as naive
from blis.errors import ConfigError
from blis.hardware import HardwareCalib, get_hardware_calib, trained_physics_coefficients
from blis.kernels.latency import BACKEND_TRAINED_PHYSICS, step_time_nb
from blis.kernels.trained_physics import (
    TPH_BETA,
    TPH_NPARAMS,
    pack_trained_physics_params,
    trained_physics_step_time_nb,
    trained_physics_step_us_nb,
)
from blis.latency import MOE_COMM_BACKENDS, build_latency, check_cli_parallelism
from blis.model_config import ModelConfig, bundled_model_names, resolve_model_config

H100 = get_hardware_calib("H100")
ALPHA, BETA = trained_physics_coefficients()
HYP = settings(max_examples=100, derandomize=True, deadline=None)
HYP_FEW = settings(max_examples=40, derandomize=True, deadline=None)

SPEC_PREFILLS = [(512, 256, 1200)]
SPEC_DECODES = [300, 700, 1500]

# Spec reference vectors: trained-physics step (us) at TP 1, 2, 4 for the standard batch.
TP_VECTORS = {
    "llama-3.1-8b-instruct": (7615, 4423, 2827),
    "llama-2-7b-hf": (7738, 4485, 2858),
    "qwen2.5-7b-instruct": (6968, 4028, 2558),
    "qwen3-14b": (13496, 7509, 4516),
    "mistral-nemo-instruct-2407": (11965, 6744, 4133),
    "codellama-34b-instruct-hf": (31689, 16778, 9322),
    "yi-34b": (32378, 17323, 9796),
    "llama-3.1-70b-instruct": (64394, 33705, 18360),
    "mixtral-8x7b-v0.1": (40158, 20694, 10963),
    "qwen3-30b-a3b": (25905, 13817, 7773),
    "deepseek-v2-lite": (14434, 7735, 4385),
    "llama-4-scout-17b-16e-instruct-fp8-dynamic": (37373, 25368, 19365),
    "glm-5.2-fp8": (319556, 161213, 82041),
}
VECTOR_CASES = [(n, tp, want) for n, row in TP_VECTORS.items() for tp, want in zip((1, 2, 4), row)]


def model(name):
    return resolve_model_config(f"org/{name}")


def spec_batch():
    batch = [{"pi": pi, "new": new, "input_len": ln, "outputs": 0} for pi, new, ln in SPEC_PREFILLS]
    batch += [{"pi": pi, "new": 1, "input_len": 100, "outputs": 5} for pi in SPEC_DECODES]
    return batch


def moe_batch():
    return [{"pi": 0, "new": 600, "input_len": 600, "outputs": 0},
            {"pi": 800, "new": 1, "input_len": 10, "outputs": 3},
            {"pi": 1200, "new": 1, "input_len": 10, "outputs": 3}]


def kernel_us(params, batch):
    return trained_physics_step_us_nb(params, *naive.batch_arrays(batch))


def kernel_step(params, batch):
    return int(trained_physics_step_time_nb(params, *naive.batch_arrays(batch)))


def pack(mc, hw=H100, tp=1, dp=1, beta=BETA, comm=""):
    return pack_trained_physics_params(mc, hw, tp, dp, beta, MOE_COMM_BACKENDS[comm or "allgather_reducescatter"])


# --- spec worked examples -----------------------------------------------------------


def test_llama_8b_worked_example_terms():
    mc = model("llama-3.1-8b-instruct")
    t = naive.trained_physics_terms(mc, H100, 1, spec_batch(), BETA)
    assert (t["t_pf"], t["t_dc"], t["ctx"]) == (256.0, 3.0, 2500.0)
    assert t["pf_attn"] == 5570035712.0
    assert t["t_pf_c"] == pytest.approx(3791.4643, abs=1e-4)
    assert t["t_pf_kv"] == pytest.approx(10.0162, abs=1e-4)
    assert t["t_dc_c"] == pytest.approx(43.6449, abs=1e-4)
    assert t["t_dc_kv"] == pytest.approx(97.9323, abs=1e-4)
    assert t["t_w"] == pytest.approx(4166.7593, abs=1e-4)
    assert t["t_attn"] == t["t_dffn"] == t["t_moe_red"] == t["t_disp"] == 0.0
    assert t["step_us"] == pytest.approx(7615.5508, abs=1e-4)
    p = pack(mc)
    assert kernel_us(p, spec_batch()) == t["step_us"]
    assert kernel_step(p, spec_batch()) == 7615


def test_llama_8b_tp2_adds_all_reduce():
    mc = model("llama-3.1-8b-instruct")
    t = naive.trained_physics_terms(mc, H100, 2, spec_batch(), BETA)
    assert t["t_attn"] == pytest.approx(20.2673, abs=1e-4)
    assert t["t_dffn"] == t["t_attn"]
    assert kernel_step(pack(mc, tp=2), spec_batch()) == 4423


def test_alpha_terms_from_defaults():
    lm = build_latency("trained-physics", model("llama-3.1-8b-instruct"), H100, 1)
    assert lm.queueing_time_us(1) == lm.queueing_time_us(100000) == 15563
    assert (lm.otpt_us, lm.post_decode_us) == (45, 777)
    assert (lm.queueing_alpha0, lm.queueing_alpha1) == (15563.199579, 0.0)
    assert lm.code == BACKEND_TRAINED_PHYSICS and lm.params.shape == (TPH_NPARAMS,)
    assert lm.step_time(SPEC_PREFILLS, SPEC_DECODES) == 7615


@pytest.mark.parametrize("name,tp,want", VECTOR_CASES, ids=[f"{n}-tp{t}" for n, t, _ in VECTOR_CASES])
def test_reference_vectors(name, tp, want):
    lm = build_latency("trained-physics", model(name), H100, tp)
    assert lm.step_time(SPEC_PREFILLS, SPEC_DECODES) == want


def test_scout_fp8_interleaved_moe_terms():
    mc = model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    t = naive.trained_physics_terms(mc, H100, 2, moe_batch(), BETA)
    assert t["t_pf_c"] == pytest.approx(3796.45, abs=0.005)
    assert t["t_pf_kv"] == pytest.approx(17.61, abs=0.005)
    assert t["t_dc_c"] == pytest.approx(12.70, abs=0.005)
    assert t["t_dc_kv"] == pytest.approx(58.75, abs=0.005)
    assert t["t_w"] == pytest.approx(8563.89, abs=0.005)
    assert t["t_attn"] == pytest.approx(88.33, abs=0.005)
    assert t["t_dffn"] == pytest.approx(44.16, abs=0.005)
    assert t["t_moe_red"] == pytest.approx(44.16, abs=0.005)
    assert BETA[7] * 24 == pytest.approx(11564.67, abs=0.005)
    lm = build_latency("trained-physics", mc, H100, 2)
    assert lm.params[TPH_BETA + 7] * 24 == pytest.approx(11564.67, abs=0.005)
    assert lm.step_time([(0, 600, 600)], [800, 1200]) == 25737
    assert kernel_us(lm.params, moe_batch()) == t["step_us"]


@pytest.mark.parametrize("dp,comm,want,term,value", [
    (1, "", 21387, "t_moe_red", 47.11),
    (2, "", 11558, "t_disp", 35.33),
    (2, "naive", 11558, "t_disp", 35.33),
    (2, "deepep_low_latency", 11585, "t_disp", 70.66),
    (2, "pplx", 11585, "t_disp", 70.66),
])
def test_mixtral_dp_and_comm_backend(dp, comm, want, term, value):
    mc = model("mixtral-8x7b-v0.1")
    t = naive.trained_physics_terms(mc, H100, 2, moe_batch(), BETA, dp=dp, comm_backend=comm)
    assert t[term] == pytest.approx(value, abs=0.005)
    lm = build_latency("trained-physics", mc, H100, 2, dp=dp, moe_comm_backend=comm)
    assert lm.step_time([(0, 600, 600)], [800, 1200]) == want
    assert kernel_us(lm.params, moe_batch()) == t["step_us"]
    if dp > 1:
        assert t["t_moe_red"] == 0.0
    else:
        assert t["t_disp"] == 0.0


def test_comm_backend_and_expert_parallel_do_not_matter_at_dp1():
    mc = model("mixtral-8x7b-v0.1")
    base = build_latency("trained-physics", mc, H100, 2)
    for comm in MOE_COMM_BACKENDS:
        other = build_latency("trained-physics", mc, H100, 2, moe_comm_backend=comm, enable_expert_parallel=True)
        assert other.step_time([(0, 600, 600)], [800, 1200]) == base.step_time([(0, 600, 600)], [800, 1200])


def test_prefill_attention_uses_input_length_not_progress():
    mc = model("llama-3.1-8b-instruct")
    p = pack(mc)
    short = [{"pi": 512, "new": 256, "input_len": 800, "outputs": 0}]
    long = [{"pi": 512, "new": 256, "input_len": 8000, "outputs": 0}]
    moved = [{"pi": 0, "new": 256, "input_len": 800, "outputs": 0}]
    assert kernel_us(p, long) > kernel_us(p, short)
    assert kernel_us(p, moved) == kernel_us(p, short)


# --- beta layout --------------------------------------------------------------------


def test_beta_slots_and_split_flags():
    mc = model("llama-3.1-8b-instruct")
    seven = pack(mc, beta=BETA[:7])
    assert list(seven[TPH_BETA:]) == BETA[:7] + [0.0, 0.0, 0.0, BETA[3]]
    assert seven[23] == 0.0 and seven[24] == 0.0
    nine = pack(mc, beta=BETA[:9])
    assert nine[23] == 1.0 and nine[24] == 0.0
    ten = pack(mc, beta=BETA[:10])
    assert ten[23] == 1.0 and ten[24] == 1.0 and ten[TPH_BETA + 10] == BETA[3]
    twelve = pack(mc, beta=BETA + [99.0])
    assert list(twelve[TPH_BETA:]) == BETA


@pytest.mark.parametrize("n_beta", [7, 8, 9, 10, 11])
def test_kernel_matches_twin_for_every_beta_count(n_beta):
    for name in ("llama-3.1-8b-instruct", "llama-4-scout-17b-16e-instruct-fp8-dynamic"):
        mc = model(name)
        beta = BETA[:n_beta]
        p = pack(mc, tp=2, beta=beta)
        assert kernel_us(p, spec_batch()) == naive.trained_physics_step_us(mc, H100, 2, spec_batch(), beta)


def test_max_combination_without_split():
    mc = model("llama-3.1-8b-instruct")
    beta = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    t = naive.trained_physics_terms(mc, H100, 1, spec_batch(), beta)
    assert t["step_us"] == max(t["t_pf_c"], t["t_pf_kv"]) + max(t["t_dc_c"], t["t_dc_kv"])
    assert kernel_us(pack(mc, beta=beta), spec_batch()) == t["step_us"]


# --- properties ---------------------------------------------------------------------


def test_empty_batch_is_one_microsecond_and_idle_requests_cost_overheads():
    mc = model("llama-3.1-8b-instruct")
    p = pack(mc)
    assert kernel_step(p, []) == 1
    lm = build_latency("trained-physics", mc, H100, 1)
    assert lm.step_time() == 1
    idle = [{"pi": 10, "new": 1, "input_len": 10, "outputs": 0}]
    t = naive.trained_physics_terms(mc, H100, 1, idle, BETA)
    assert t["t_pf"] == t["t_dc"] == 0.0
    assert kernel_step(p, idle) == naive.trained_physics_step_time(mc, H100, 1, idle, BETA) > 5000
    assert lm.step_time(n_sched=1) == kernel_step(p, idle)


def double_hw(hw):
    return HardwareCalib(hw.tflops_peak * 2, hw.tflops_fp8 * 2, hw.bw_peak_tbs * 2, hw.mfu_prefill, hw.mfu_decode,
                         hw.memory_gib)


@pytest.mark.parametrize("name", ["llama-3.1-8b-instruct", "mixtral-8x7b-v0.1",
                                  "llama-4-scout-17b-16e-instruct-fp8-dynamic"])
def test_doubling_flops_and_bandwidth_halves_hardware_terms(name):
    mc = model(name)
    compute_bound = [{"pi": 0, "new": 4096, "input_len": 4096, "outputs": 0}]
    memory_bound = [{"pi": 3000 + 50 * i, "new": 1, "input_len": 10, "outputs": 1} for i in range(8)]
    physics_only = [BETA[0], BETA[1], BETA[2], BETA[3], 0.0, 0.0, 0.0, 0.0, BETA[8], BETA[9], BETA[10]]
    for batch in (compute_bound, memory_bound):
        slow = pack(mc, tp=2, beta=physics_only)
        fast = pack(mc, hw=double_hw(H100), tp=2, beta=physics_only)
        assert kernel_us(fast, batch) == kernel_us(slow, batch) / 2
        assert kernel_step(fast, batch) == kernel_step(slow, batch) // 2
        # With the fitted overheads only the hardware-dependent part halves.
        n_moe = mc.moe_dense_layer_split()[0]
        overhead = (BETA[4] * mc.num_layers + BETA[5] * len(batch) + BETA[6]
                    + BETA[7] * (1.0 if mc.interleave_moe_layer_step > 0 else 0.0) * n_moe)
        full_slow = kernel_us(pack(mc, tp=2), batch)
        full_fast = kernel_us(pack(mc, hw=double_hw(H100), tp=2), batch)
        assert full_fast - overhead == pytest.approx((full_slow - overhead) / 2, rel=1e-9)


request = st.one_of(
    st.builds(lambda pi, new, extra: {"pi": pi, "new": new, "input_len": pi + new + extra, "outputs": 0},
              st.integers(0, 8000), st.integers(1, 2048), st.integers(0, 64)),
    st.builds(lambda pi, outs: {"pi": pi, "new": 1, "input_len": max(1, pi // 2), "outputs": outs},
              st.integers(1, 16000), st.integers(1, 50)),
    st.builds(lambda pi: {"pi": pi, "new": 1, "input_len": pi, "outputs": 0}, st.integers(0, 100)),
)
batches = st.lists(request, min_size=0, max_size=24)


def valid_tps(mc):
    kv = mc.effective_kv_heads
    return [tp for tp in (1, 2, 4, 8) if mc.num_heads % tp == 0 and kv % tp == 0]


@st.composite
def bundled_setups(draw):
    mc = model(draw(st.sampled_from(sorted(bundled_model_names()))))
    tp = draw(st.sampled_from(valid_tps(mc)))
    dp = draw(st.sampled_from([1, 2, 4])) if mc.is_moe else 1
    comm = draw(st.sampled_from([""] + sorted(MOE_COMM_BACKENDS)))
    n_beta = draw(st.integers(7, 11))
    return mc, tp, dp, comm, BETA[:n_beta]


@HYP
@given(bundled_setups(), batches)
def test_kernel_matches_naive_twin_on_bundled_models(setup, batch):
    mc, tp, dp, comm, beta = setup
    p = pack(mc, tp=tp, dp=dp, beta=beta, comm=comm)
    assert kernel_step(p, batch) == naive.trained_physics_step_time(mc, H100, tp, batch, beta, dp, comm)
    if batch:
        assert kernel_us(p, batch) == naive.trained_physics_step_us(mc, H100, tp, batch, beta, dp, comm)


@st.composite
def synthetic_setups(draw):
    tp = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    heads = tp * draw(st.integers(1, 16))
    kv = tp * draw(st.integers(1, max(1, heads // tp)))
    hidden = draw(st.one_of(st.integers(8, 256).map(lambda h: h * heads), st.integers(heads, 9000)))
    n_experts = draw(st.sampled_from([0, 0, 2, 8, 16, 60, 128, 256]))
    mc = ModelConfig(
        num_layers=draw(st.integers(1, 96)),
        hidden_dim=hidden,
        num_heads=heads,
        num_kv_heads=draw(st.sampled_from([0, kv])),
        bytes_per_param=draw(st.sampled_from([1.0, 2.0, 4.0])),
        intermediate_dim=draw(st.sampled_from([1000, 14336, 28672])),
        num_local_experts=n_experts,
        num_experts_per_tok=draw(st.integers(1, min(8, n_experts))) if n_experts else draw(st.sampled_from([0, 1])),
        moe_expert_ffn_dim=draw(st.sampled_from([0, 768, 2048])),
        shared_expert_ffn_dim=draw(st.sampled_from([0, 2816])),
        interleave_moe_layer_step=draw(st.sampled_from([0, 0, 1, 3])),
        dense_intermediate_dim=draw(st.sampled_from([0, 16384])),
        weight_bytes_per_param=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
    )
    hw = HardwareCalib(draw(st.floats(10.0, 3000.0)), draw(st.sampled_from([0.0, 1979.0])),
                       draw(st.floats(0.1, 10.0)), 0.5, 0.3, 80.0)
    dp = draw(st.sampled_from([1, 2, 3, 5, 8])) if mc.is_moe else 1
    beta = draw(st.lists(st.floats(0.0, 1000.0), min_size=7, max_size=12))
    comm = draw(st.sampled_from(sorted(MOE_COMM_BACKENDS)))
    return mc, hw, tp, dp, beta, comm


@HYP
@given(synthetic_setups(), batches)
def test_kernel_matches_naive_twin_on_synthetic_models(setup, batch):
    mc, hw, tp, dp, beta, comm = setup
    p = pack(mc, hw=hw, tp=tp, dp=dp, beta=beta, comm=comm)
    assert kernel_step(p, batch) == naive.trained_physics_step_time(mc, hw, tp, batch, beta, dp, comm)
    if batch:
        assert kernel_us(p, batch) == naive.trained_physics_step_us(mc, hw, tp, batch, beta, dp, comm)


@HYP
@given(synthetic_setups(), batches.filter(bool))
def test_each_basis_term_matches_twin_exactly(setup, batch):
    # A one-hot beta makes the step equal to a single basis term, so an ulp-level
    # difference in any term (not just in the final sum) is visible.
    mc, hw, tp, dp, _beta, comm = setup
    for slot in range(11):
        beta = [0.0] * 11
        beta[slot] = 1.0
        p = pack(mc, hw=hw, tp=tp, dp=dp, beta=beta, comm=comm)
        assert kernel_us(p, batch) == naive.trained_physics_step_us(mc, hw, tp, batch, beta, dp, comm), slot


def random_setup(rng):
    """A uniformly drawn synthetic model, GPU, parallelism and batch (complements hypothesis,
    which favours small, exactly-representable values that hide operand-order slips)."""
    tp = rng.choice([1, 2, 3, 4, 6, 8])
    heads = tp * rng.randint(1, 16)
    kv = tp * rng.randint(1, heads // tp)
    n_experts = rng.choice([0, 0, 2, 8, 16, 60, 128, 256])
    mc = ModelConfig(
        num_layers=rng.randint(1, 126), hidden_dim=rng.randint(heads, 16384), num_heads=heads,
        num_kv_heads=rng.choice([0, kv]), bytes_per_param=rng.choice([1.0, 2.0, 4.0]),
        intermediate_dim=rng.randint(100, 30000), num_local_experts=n_experts,
        num_experts_per_tok=rng.randint(1, min(8, n_experts)) if n_experts else 0,
        moe_expert_ffn_dim=rng.choice([0, rng.randint(100, 4000)]),
        shared_expert_ffn_dim=rng.choice([0, rng.randint(100, 6000)]),
        interleave_moe_layer_step=rng.choice([0, 1, 2, 3]),
        dense_intermediate_dim=rng.choice([0, rng.randint(100, 30000)]),
        weight_bytes_per_param=rng.choice([0.0, 0.5, 1.0, 2.0, 0.625]),
    )
    hw = HardwareCalib(rng.uniform(10, 3000), rng.choice([0.0, rng.uniform(10, 5000)]), rng.uniform(0.1, 10),
                       0.5, 0.3, 80.0)
    dp = rng.choice([1, 2, 3, 5, 8]) if mc.is_moe else 1
    batch = []
    for _ in range(rng.randint(1, 40)):
        kind = rng.random()
        if kind < 0.4:
            pi, new = rng.randint(0, 30000), rng.randint(1, 4096)
            batch.append({"pi": pi, "new": new, "input_len": pi + new + rng.randint(0, 100), "outputs": 0})
        elif kind < 0.95:
            batch.append({"pi": rng.randint(1, 60000), "new": 1, "input_len": 1, "outputs": 1})
        else:
            batch.append({"pi": 5, "new": 1, "input_len": 5, "outputs": 0})
    return mc, hw, tp, dp, rng.choice(sorted(MOE_COMM_BACKENDS)), batch


def test_seeded_sweep_of_basis_terms_matches_twin_exactly():
    rng = random.Random(20240611)
    for _ in range(300):
        mc, hw, tp, dp, comm, batch = random_setup(rng)
        for slot in range(11):
            beta = [0.0] * 11
            beta[slot] = 1.0
            p = pack(mc, hw=hw, tp=tp, dp=dp, beta=beta, comm=comm)
            assert kernel_us(p, batch) == naive.trained_physics_step_us(mc, hw, tp, batch, beta, dp, comm), (mc, slot)
        beta = [rng.uniform(0, 500) for _ in range(rng.randint(7, 11))]
        p = pack(mc, hw=hw, tp=tp, dp=dp, beta=beta, comm=comm)
        assert kernel_step(p, batch) == naive.trained_physics_step_time(mc, hw, tp, batch, beta, dp, comm)


@HYP_FEW
@given(bundled_setups(), batches.filter(lambda b: any(r["pi"] < r["input_len"] for r in b)), st.data())
def test_step_time_is_monotonic_in_tokens_and_batch_size(setup, batch, data):
    mc, tp, dp, comm, beta = setup
    p = pack(mc, tp=tp, dp=dp, beta=beta, comm=comm)
    base = kernel_step(p, batch)
    i = data.draw(st.sampled_from([j for j, r in enumerate(batch) if r["pi"] < r["input_len"]]))
    grown = [dict(r) for r in batch]
    grown[i]["new"] += data.draw(st.integers(1, 512))
    assert kernel_step(p, grown) >= base
    assert kernel_step(p, batch + [data.draw(request)]) >= base
    assert base >= 1


def test_dispatch_reaches_trained_physics_kernel():
    lm = build_latency("trained-physics", model("llama-3.1-8b-instruct"), H100, 1)
    args = naive.batch_arrays(spec_batch())
    assert int(step_time_nb(BACKEND_TRAINED_PHYSICS, lm.params, *args)) == 7615


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(alpha=[1.0, 2.0]), "alpha coefficients must have >= 3 entries"),
    (dict(beta=[1.0] * 6), "beta coefficients must have >= 7 entries"),
    (dict(beta=[1.0] * 6 + [-1.0]), r"beta\[6\] must be finite and >= 0"),
    (dict(beta=[1.0] * 6 + [math.nan]), r"beta\[6\]"),
    (dict(alpha=[1.0, math.inf, 0.0]), r"alpha\[1\]"),
    (dict(moe_comm_backend="nccl"), "valid: naive, allgather_reducescatter, pplx, deepep_high_throughput, "
                                    "deepep_low_latency, mori, flashinfer_all2allv"),
    (dict(tp=0), "tp must be > 0"),
    (dict(tp=3), "num_heads \\(32\\) must be divisible by tp"),
    (dict(tp=16), "num_kv_heads \\(8\\) must be divisible by tp"),
    (dict(dp=0), "dp must be >= 1"),
    (dict(dp=2), "dense model"),
])
def test_construction_errors(kwargs, pattern):
    args = dict(tp=1)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=pattern):
        build_latency("trained-physics", model("llama-3.1-8b-instruct"), H100, **args)


def test_kv_heads_must_divide_tp():
    mc = replace(model("llama-3.1-8b-instruct"), num_kv_heads=2)
    with pytest.raises(ConfigError, match="num_kv_heads \\(2\\) must be divisible by tp"):
        build_latency("trained-physics", mc, H100, 4)


@pytest.mark.parametrize("change,pattern", [
    (dict(num_layers=0), "num_layers"),
    (dict(num_heads=0), "num_heads"),
    (dict(hidden_dim=0), "hidden_dim"),
    (dict(intermediate_dim=0), "intermediate_dim"),
    (dict(bytes_per_param=0.0), "bytes_per_param"),
    (dict(num_local_experts=8, num_experts_per_tok=0), "num_experts_per_tok must be > 0"),
])
def test_model_validation(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_latency("trained-physics", replace(model("llama-3.1-8b-instruct"), **change), H100, 1)


@pytest.mark.parametrize("hw", [HardwareCalib(0.0, 0.0, 3.35, 0.4, 0.3, 80.0),
                                HardwareCalib(989.5, 0.0, math.inf, 0.4, 0.3, 80.0)])
def test_hardware_validation(hw):
    with pytest.raises(ConfigError, match="must be a finite number > 0"):
        build_latency("trained-physics", model("llama-3.1-8b-instruct"), hw, 1)


def test_mfu_is_not_used():
    mc = model("llama-3.1-8b-instruct")
    other = HardwareCalib(989.5, 1979.0, 3.35, 0.0, 0.0, 80.0)
    assert np.array_equal(build_latency("trained-physics", mc, other, 1).params,
                          build_latency("trained-physics", mc, H100, 1).params)


def test_all_zero_default_beta_is_rejected(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text("trained_physics_coefficients:\n  alpha_coeffs: [1, 2, 3]\n  beta_coeffs: [0, 0, 0, 0, 0, 0, 0]\n")
    mc = model("llama-3.1-8b-instruct")
    with pytest.raises(ConfigError, match="beta_coeffs"):
        build_latency("trained-physics", mc, H100, 1, defaults_path=path)
    lm = build_latency("trained-physics", mc, H100, 1, beta=[0.0] * 6 + [5.0], defaults_path=path)
    assert (lm.queueing_time_us(10), lm.post_decode_us, lm.otpt_us) == (1, 2, 3)
    assert lm.step_time([], [100]) == 5


def test_cli_parallelism_rules():
    dense, moe = model("llama-3.1-8b-instruct"), model("mixtral-8x7b-v0.1")
    check_cli_parallelism("trained-physics", moe, 2, True, "pplx")
    check_cli_parallelism("roofline", dense, 1, False, "")
    with pytest.raises(ConfigError, match="trained-physics"):
        check_cli_parallelism("roofline", moe, 2, False, "")
    with pytest.raises(ConfigError, match="trained-physics"):
        check_cli_parallelism("roofline", moe, 1, True, "")
    with pytest.raises(ConfigError, match="dense model"):
        check_cli_parallelism("trained-physics", dense, 2, False, "")
    with pytest.raises(ConfigError, match="MoE model"):
        check_cli_parallelism("trained-physics", dense, 1, True, "")
    with pytest.raises(ConfigError, match="valid: naive"):
        check_cli_parallelism("trained-physics", moe, 2, False, "bogus")
    with pytest.raises(ConfigError, match="--moe-comm-backend"):
        check_cli_parallelism("roofline", moe, 1, False, "pplx")
    with pytest.raises(ConfigError, match="--dp must be >= 1"):
        check_cli_parallelism("trained-physics", moe, 0, False, "")
