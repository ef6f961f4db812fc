"""Roofline backend: Go math helpers, spec worked examples, properties and the naive twin."""
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive_latency as naive
from blis.errors import ConfigError
from blis.hardware import HardwareCalib, get_hardware_calib
from blis.kernels.gomath import clamp_nb, go_pow_nb
from blis.kernels.jit import njit
from blis.kernels.latency import BACKEND_CONSTANT, BACKEND_ROOFLINE, step_time_nb
from blis.kernels.roofline import (
    RF_NPARAMS,
    pack_roofline_params,
    roofline_dynamic_bytes_nb,
    roofline_flops_nb,
    roofline_step_time_nb,
    roofline_step_us_nb,
    roofline_weight_bytes_nb,
)
from blis.latency import (
    LATENCY_BACKENDS,
    LatencyModel,
    build_latency,
    register_latency_backend,
    valid_latency_backend_names,
)
from blis.model_config import ModelConfig, bundled_model_names, resolve_model_config

H100 = get_hardware_calib("H100")
HYP = settings(max_examples=100, derandomize=True, deadline=None)
HYP_FEW = settings(max_examples=40, derandomize=True, deadline=None)

SPEC_PREFILLS = [(512, 256, 1200)]
SPEC_DECODES = [300, 700, 1500]

# Spec reference vectors: roofline step (us) at TP 1, 2, 4 for the standard batch.
ROOFLINE_VECTORS = {
    "llama-3.1-8b-instruct": (6166, 3083, 1541),
    "llama-2-7b-hf": (6088, 3044, 1522),
    "qwen2.5-7b-instruct": (5563, 2781, 1390),
    "qwen3-14b": (11598, 5799, 2899),
    "mistral-nemo-instruct-2407": (10248, 5124, 2562),
    "codellama-34b-instruct-hf": (29336, 14668, 7334),
    "yi-34b": (29510, 14755, 7377),
    "llama-3.1-70b-instruct": (59102, 29551, 14775),
    "mixtral-8x7b-v0.1": (18898, 9449, 4724),
    "qwen3-30b-a3b": (11872, 5936, 2968),
    "deepseek-v2-lite": (6444, 3222, 1611),
    "llama-4-scout-17b-16e-instruct-fp8-dynamic": (11948, 5974, 2987),
    "glm-5.2-fp8": (155424, 77712, 38856),
}
VECTOR_CASES = [(n, tp, want) for n, row in ROOFLINE_VECTORS.items() for tp, want in zip((1, 2, 4), row)]


def model(name):
    return resolve_model_config(f"org/{name}")


def spec_batch():
    batch = [{"pi": pi, "new": new, "input_len": ln, "outputs": 0} for pi, new, ln in SPEC_PREFILLS]
    batch += [{"pi": pi, "new": 1, "input_len": 100, "outputs": 5} for pi in SPEC_DECODES]
    return batch


def kernel_us(params, batch):
    pf_pi, pf_new, _pf_len, n_pf, dc_pi, n_dc, _n = naive.batch_arrays(batch)
    return roofline_step_us_nb(params, pf_pi, pf_new, n_pf, dc_pi, n_dc)


def kernel_step(params, batch):
    return int(roofline_step_time_nb(params, *naive.batch_arrays(batch)))


# --- Go math ------------------------------------------------------------------------


def test_go_pow_special_cases():
    assert go_pow_nb(0.3, 0) == 1.0
    assert go_pow_nb(1.0, 77) == 1.0
    assert go_pow_nb(0.3, 1) == 0.3
    assert go_pow_nb(0.0, 5) == 0.0
    assert go_pow_nb(0.5, 3) == 0.125
    assert go_pow_nb(0.875, 602) > 0.0
    assert go_pow_nb(0.5, 5000) == 0.0  # underflow through the catastrophic-exponent path


def test_go_pow_differs_from_c_pow_in_the_last_ulp():
    x = (36 - 2) / 36
    assert go_pow_nb(x, 2091) == naive.go_pow(x, 2091) == 1.241327655004888e-52
    assert x ** 2091 != go_pow_nb(x, 2091)


@HYP
@given(st.integers(2, 512), st.integers(1, 16), st.integers(0, 100000))
def test_go_pow_matches_naive_twin(n, k, b):
    x = (n - min(k, n)) / n
    assert go_pow_nb(x, float(b)) == naive.go_pow(x, b)


@HYP
@given(st.floats(0.0, 1.0, allow_nan=False), st.integers(0, 3000))
def test_go_pow_matches_twin_on_any_unit_base(x, b):
    assert go_pow_nb(x, b) == naive.go_pow(x, b)


def test_clamp_semantics():
    assert clamp_nb(math.nan) == 2 ** 63 - 1
    assert clamp_nb(9223372036854775808.0) == 2 ** 63 - 1
    assert clamp_nb(math.inf) == 2 ** 63 - 1
    assert clamp_nb(9223372036854774784.0) == 9223372036854774784
    assert clamp_nb(6166.9999) == 6166
    assert clamp_nb(0.5) == 0
    assert clamp_nb(-0.5) == 0


@HYP
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e19, 1e19)))
def test_python_go_clamp_matches_the_compiled_clamp(v):
    from blis.latency import go_clamp
    assert go_clamp(v) == int(clamp_nb(v))


# --- spec worked examples -----------------------------------------------------------


def test_llama_8b_worked_example_intermediates():
    mc = model("llama-3.1-8b-instruct")
    p = pack_roofline_params(mc, H100, 1)
    assert roofline_flops_nb(p, 512.0, 256.0) == 2698077667328.0
    assert roofline_flops_nb(p, 512.0, 256.0) / 1.0 / (989.5e12 * 0.45) == pytest.approx(0.0060593513, abs=1e-10)
    assert roofline_dynamic_bytes_nb(p, 512.0, 256.0) == 167772160.0
    decode_flops = [roofline_flops_nb(p, float(s), 1.0) for s in SPEC_DECODES]
    assert decode_flops == [10359631872.0, 10571395072.0, 10994921472.0]
    assert [roofline_dynamic_bytes_nb(p, float(s), 1.0) for s in SPEC_DECODES] == [39714816.0, 92143616.0, 197001216.0]
    assert roofline_weight_bytes_nb(p, 259.0) == 10200547328.0
    terms = naive.roofline_terms(mc, H100, 1, spec_batch())
    assert terms["comp_s"] == pytest.approx(0.0061669004322, abs=1e-13)
    assert terms["mem_s"] == pytest.approx(0.0031931878, abs=1e-10)
    assert terms["dyn_bytes"] == 496631808.0
    assert kernel_us(p, spec_batch()) == terms["step_us"]


def test_llama_8b_worked_example_step_times():
    mc = model("llama-3.1-8b-instruct")
    tp1 = build_latency("roofline", mc, H100, 1)
    assert tp1.step_time(SPEC_PREFILLS, SPEC_DECODES) == 6166
    assert build_latency("roofline", mc, H100, 2).step_time(SPEC_PREFILLS, SPEC_DECODES) == 3083
    assert tp1.step_time([], SPEC_DECODES) == 3143
    assert tp1.step_time([(0, 2048, 2048)], []) == 49409


@pytest.mark.parametrize("name,tp,want", VECTOR_CASES, ids=[f"{n}-tp{t}" for n, t, _ in VECTOR_CASES])
def test_reference_vectors(name, tp, want):
    lm = build_latency("roofline", model(name), H100, tp)
    assert lm.step_time(SPEC_PREFILLS, SPEC_DECODES) == want


def test_scout_fp8_moe_uses_fp8_peak_and_expert_coverage():
    mc = model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    p = pack_roofline_params(mc, H100, 2)
    assert p[14] == 1979.0e12  # FP8 peak for 1-byte weights
    assert roofline_weight_bytes_nb(p, 602.0) == 39258685440.0
    batch = [{"pi": 0, "new": 600, "input_len": 600, "outputs": 0},
             {"pi": 800, "new": 1, "input_len": 10, "outputs": 3},
             {"pi": 1200, "new": 1, "input_len": 10, "outputs": 3}]
    terms = naive.roofline_terms(mc, H100, 2, batch)
    assert terms["comp_s"] * 1e3 == pytest.approx(6.2364, abs=1e-4)
    assert terms["mem_s"] * 1e3 == pytest.approx(5.9800, abs=1e-4)
    assert kernel_step(p, batch) == 6236


def test_bf16_model_on_gpu_without_fp8_uses_dense_peak():
    mc = model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    a100 = get_hardware_calib("A100-SXM")
    assert pack_roofline_params(mc, a100, 1)[14] == 312e12
    assert pack_roofline_params(model("llama-3.1-8b-instruct"), H100, 1)[14] == 989.5e12


# --- properties ---------------------------------------------------------------------


def test_empty_batch_and_no_work_batch_take_one_microsecond():
    p = pack_roofline_params(model("llama-3.1-8b-instruct"), H100, 1)
    assert kernel_step(p, []) == 1
    assert kernel_step(p, [{"pi": 50, "new": 1, "input_len": 50, "outputs": 0}]) == 1


def test_decode_ignores_num_new_tokens():
    p = pack_roofline_params(model("llama-3.1-8b-instruct"), H100, 1)
    one = [{"pi": 700, "new": 1, "input_len": 10, "outputs": 2}]
    many = [{"pi": 700, "new": 9, "input_len": 10, "outputs": 2}]
    assert kernel_us(p, one) == kernel_us(p, many)


def double_hw(hw):
    return HardwareCalib(hw.tflops_peak * 2, hw.tflops_fp8 * 2, hw.bw_peak_tbs * 2, hw.mfu_prefill, hw.mfu_decode,
                         hw.memory_gib)


@pytest.mark.parametrize("name", ["llama-3.1-8b-instruct", "mixtral-8x7b-v0.1",
                                  "llama-4-scout-17b-16e-instruct-fp8-dynamic"])
def test_doubling_flops_and_bandwidth_halves_compute_and_memory_bound_steps(name):
    mc = model(name)
    slow = pack_roofline_params(mc, H100, 1)
    fast = pack_roofline_params(mc, double_hw(H100), 1)
    compute_bound = [{"pi": 0, "new": 4096, "input_len": 4096, "outputs": 0}]
    memory_bound = [{"pi": 3000 + 50 * i, "new": 1, "input_len": 10, "outputs": 1} for i in range(8)]
    for batch, bound in ((compute_bound, "comp_s"), (memory_bound, "mem_s")):
        terms = naive.roofline_terms(mc, H100, 1, batch)
        assert max(terms["comp_s"], terms["mem_s"]) == terms[bound]
        assert kernel_us(fast, batch) == kernel_us(slow, batch) / 2
        assert kernel_step(fast, batch) == kernel_step(slow, batch) // 2


def test_tp_divides_every_term():
    mc = model("qwen3-14b")
    us1 = kernel_us(pack_roofline_params(mc, H100, 1), spec_batch())
    us4 = kernel_us(pack_roofline_params(mc, H100, 4), spec_batch())
    assert us4 == pytest.approx(us1 / 4, rel=1e-12)


request = st.one_of(
    st.builds(lambda pi, new, extra: {"pi": pi, "new": new, "input_len": pi + new + extra, "outputs": 0},
              st.integers(0, 8000), st.integers(1, 2048), st.integers(0, 64)),
    st.builds(lambda pi, outs: {"pi": pi, "new": 1, "input_len": max(1, pi // 2), "outputs": outs},
              st.integers(1, 16000), st.integers(1, 50)),
    st.builds(lambda pi: {"pi": pi, "new": 1, "input_len": pi, "outputs": 0}, st.integers(0, 100)),
)
batches = st.lists(request, min_size=0, max_size=24)
bundled_names = st.sampled_from(sorted(bundled_model_names()))


@HYP
@given(bundled_names, st.sampled_from([1, 2, 4, 8]), batches)
def test_kernel_matches_naive_twin_on_bundled_models(name, tp, batch):
    mc = model(name)
    p = pack_roofline_params(mc, H100, tp)
    assert kernel_us(p, batch) == naive.roofline_step_us(mc, H100, tp, batch)
    assert kernel_step(p, batch) == naive.roofline_step_time(mc, H100, tp, batch)


@st.composite
def synthetic_models(draw):
    heads = draw(st.integers(1, 64))
    hidden = draw(st.one_of(st.integers(1, 64).map(lambda h: h * heads), st.integers(16, 9000)))
    n_experts = draw(st.sampled_from([0, 0, 2, 8, 16, 60, 128, 256]))
    k = draw(st.integers(1, min(8, n_experts))) if n_experts else 0
    return ModelConfig(
        num_layers=draw(st.integers(1, 96)),
        hidden_dim=hidden,
        num_heads=heads,
        num_kv_heads=draw(st.integers(0, heads)),
        bytes_per_param=draw(st.sampled_from([1.0, 2.0, 4.0])),
        intermediate_dim=draw(st.sampled_from([0, 1000, 14336, 28672])),
        num_local_experts=n_experts,
        num_experts_per_tok=k,
        moe_expert_ffn_dim=draw(st.sampled_from([0, 768, 2048])),
        shared_expert_ffn_dim=draw(st.sampled_from([0, 2816])),
        interleave_moe_layer_step=draw(st.sampled_from([0, 0, 1, 3])),
        dense_intermediate_dim=draw(st.sampled_from([0, 16384])),
        weight_bytes_per_param=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
    )


hardware = st.builds(
    HardwareCalib,
    st.floats(10.0, 3000.0),
    st.sampled_from([0.0, 1979.0, 4500.0]),
    st.floats(0.1, 10.0),
    st.floats(0.05, 1.0),
    st.floats(0.05, 1.0),
    st.just(80.0),
)


@HYP
@given(synthetic_models(), hardware, st.integers(1, 16), batches)
def test_kernel_matches_naive_twin_on_synthetic_models(mc, hw, tp, batch):
    p = pack_roofline_params(mc, hw, tp)
    assert kernel_us(p, batch) == naive.roofline_step_us(mc, hw, tp, batch)
    assert kernel_step(p, batch) == naive.roofline_step_time(mc, hw, tp, batch)


@HYP
@given(synthetic_models(), st.integers(0, 20000), st.integers(1, 4096), st.integers(0, 5000))
def test_per_request_terms_match_twin_exactly(mc, seq, new_tokens, n_tok):
    p = pack_roofline_params(mc, H100, 1)
    assert roofline_flops_nb(p, float(seq), float(new_tokens)) == naive.roofline_flops(mc, seq, new_tokens)
    total, weights = naive.roofline_mem(mc, seq, new_tokens, True)
    assert roofline_dynamic_bytes_nb(p, float(seq), float(new_tokens)) == total - weights
    assert roofline_weight_bytes_nb(p, float(n_tok)) == naive.roofline_mem(mc, 0, n_tok, False)[1]


@HYP_FEW
@given(bundled_names, batches.filter(lambda b: any(r["pi"] < r["input_len"] for r in b)), st.data())
def test_step_time_is_monotonic_in_tokens_and_batch_size(name, batch, data):
    p = pack_roofline_params(model(name), H100, 2)
    base = kernel_step(p, batch)
    i = data.draw(st.sampled_from([j for j, r in enumerate(batch) if r["pi"] < r["input_len"]]))
    grown = [dict(r) for r in batch]
    grown[i]["new"] += data.draw(st.integers(1, 512))
    grown[i]["input_len"] += grown[i]["new"]
    assert kernel_step(p, grown) >= base
    extra = data.draw(request)
    assert kernel_step(p, batch + [extra]) >= base
    assert kernel_step(p, batch) >= 1


# --- dispatch and the latency registry ----------------------------------------------


@njit
def _sum_of_steps(code, params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched, reps):
    total = 0
    for _ in range(reps):
        total += step_time_nb(code, params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
    return total


def test_step_time_dispatch_is_callable_from_nopython_code():
    lm = build_latency("roofline", model("llama-3.1-8b-instruct"), H100, 1)
    args = naive.batch_arrays(spec_batch())
    assert _sum_of_steps(lm.code, lm.params, *args, 3) == 3 * 6166
    assert int(step_time_nb(BACKEND_ROOFLINE, lm.params, *args)) == 6166
    constant = np.array([10.0, 1.0, 2.0])
    assert int(step_time_nb(BACKEND_CONSTANT, constant, *args)) == 10 + 256 + 6
    assert int(step_time_nb(99, lm.params, *args)) == 1


def test_roofline_alpha_terms():
    mc = model("llama-3.1-8b-instruct")
    cli = build_latency("roofline", mc, H100, 1)
    assert (cli.queueing_time_us(5000), cli.otpt_us, cli.post_decode_us) == (0, 0, 0)
    lm = build_latency("roofline", mc, H100, 1, alpha=[100.5, 0.25, 45.9], beta=[1.0, 2.0])
    assert lm.queueing_time_us(1000) == 350
    assert (lm.queueing_alpha0, lm.queueing_alpha1) == (100.5, 0.25)
    assert (lm.otpt_us, lm.post_decode_us) == (45, 0)
    assert np.array_equal(lm.params, cli.params)  # beta is ignored
    assert isinstance(lm, LatencyModel) and lm.name == "roofline" and lm.code == BACKEND_ROOFLINE
    assert lm.params.dtype == np.float64 and lm.params.shape == (RF_NPARAMS,)


def test_empty_backend_name_means_roofline():
    assert build_latency("", model("llama-3.1-8b-instruct"), H100, 1).name == "roofline"


def test_unknown_backend_lists_valid_names():
    for removed in ("blackbox", "crossmodel", "trained-roofline", "nope"):
        with pytest.raises(ConfigError, match="valid: roofline, trained-physics$"):
            build_latency(removed, model("llama-3.1-8b-instruct"), H100, 1)
    assert valid_latency_backend_names() == ["roofline", "trained-physics"]


@pytest.mark.parametrize("alpha,pattern", [
    ([1.0, 2.0], ">= 3 entries"),
    ([1.0, -2.0, 3.0], r"alpha\[1\] must be finite and >= 0"),
    ([1.0, 2.0, math.nan], r"alpha\[2\]"),
    ([math.inf, 2.0, 3.0], r"alpha\[0\]"),
])
def test_roofline_rejects_bad_alpha(alpha, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_latency("roofline", model("llama-3.1-8b-instruct"), H100, 1, alpha=alpha)


def test_roofline_validation_collects_every_problem():
    bad_model = ModelConfig(num_layers=0, hidden_dim=0, num_heads=0, bytes_per_param=0.0, num_local_experts=8,
                            num_experts_per_tok=0, moe_expert_ffn_dim=-1, shared_expert_ffn_dim=-1,
                            weight_bytes_per_param=-1.0)
    bad_hw = HardwareCalib(0.0, -1.0, math.nan, 0.0, math.inf, -5.0)
    with pytest.raises(ConfigError) as exc:
        build_latency("roofline", bad_model, bad_hw, 1)
    msg = str(exc.value)
    for field in ("num_heads", "num_layers", "hidden_dim", "bytes_per_param", "TFlopsPeak", "BwPeakTBs",
                  "mfuPrefill", "mfuDecode", "num_experts_per_tok", "moe_expert_ffn_dim", "shared_expert_ffn_dim",
                  "MemoryGiB", "TFlopsFP8", "weight_bytes_per_param"):
        assert field in msg, field


@pytest.mark.parametrize("change,pattern", [
    (dict(num_local_experts=-1), "num_local_experts must be >= 0"),
    (dict(num_local_experts=4, num_experts_per_tok=5), "must be <= num_local_experts"),
    (dict(num_local_experts=0, num_experts_per_tok=2), "must be 0 when num_local_experts is 0"),
])
def test_roofline_moe_consistency(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_latency("roofline", replace(model("llama-3.1-8b-instruct"), **change), H100, 1)


def test_roofline_parallelism_validation():
    mc = model("llama-3.1-8b-instruct")
    with pytest.raises(ConfigError, match="tp must be > 0"):
        build_latency("roofline", mc, H100, 0)
    with pytest.raises(ConfigError, match="dense model"):
        build_latency("roofline", mc, H100, 1, dp=2)
    moe = model("mixtral-8x7b-v0.1")
    assert np.array_equal(build_latency("roofline", moe, H100, 2, dp=2).params,
                          build_latency("roofline", moe, H100, 2).params)


def test_register_latency_backend_rejects_duplicates_and_builds_user_backends():
    def constant_factory(mc, hw, *, tp, dp, alpha, beta, moe_comm_backend, enable_expert_parallel, defaults_path):
        return LatencyModel("test-constant", BACKEND_CONSTANT, np.array([7.0, 0.0, 0.0]), 0.0, 0.0, 0, 0)

    with pytest.raises(ConfigError, match="must be unused"):
        register_latency_backend("roofline", constant_factory)
    register_latency_backend("test-constant", constant_factory)
    try:
        lm = build_latency("test-constant", model("llama-3.1-8b-instruct"), H100, 1)
        assert lm.step_time(SPEC_PREFILLS, SPEC_DECODES) == 7
        with pytest.raises(ConfigError):
            register_latency_backend("test-constant", constant_factory)
    finally:
        del LATENCY_BACKENDS["test-constant"]
