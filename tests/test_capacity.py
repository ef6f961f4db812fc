"""KV-cache capacity: bytes per token, weight bytes, block counts and max-model-len."""
import math
from dataclasses import replace

import pytest

from blis.capacity import (
    GIB_BYTES,
    calculate_kv_blocks,
    kv_bytes_per_token,
    model_weight_bytes,
    resolve_max_model_len,
    resolve_total_kv_blocks,
)
from blis.errors import ConfigError
from blis.hardware import HardwareCalib, get_hardware_calib
from blis.model_config import KVCapacityParams, ModelConfig, extract_kv_capacity_params, resolve_model_config

H100 = get_hardware_calib("H100")

# Spec worked values: blocks at TP 1/2/4/8 on H100, util 0.9, block 16 (None = does not fit).
KV_BLOCKS = {
    "llama-3.1-8b-instruct": (26312, 125278, 543011, 2255841),
    "llama-2-7b-hf": (6886, 31935, 136984, 566424),
    "qwen2.5-7b-instruct": (61048, 288159, 1244786, 5163441),
    "qwen3-14b": (15909, 89941, 413846, 1763547),
    "mistral-nemo-instruct-2407": (17512, 93147, 420258, 1776371),
    "codellama-34b-instruct-hf": (1193, 50822, 296614, 1373107),
    "yi-34b": (626, 40001, 235979, 1095861),
    "llama-3.1-70b-instruct": (None, 2409, 121801, 711530),
    "mixtral-8x7b-v0.1": (None, 48956, 390367, 1950553),
    "qwen3-30b-a3b": (5276, 107423, 604786, 2769330),
    "llama-4-scout-17b-16e-instruct-fp8-dynamic": (None, 27345, 249660, 1279198),
    "deepseek-v2-lite": (74312, 227391, 535491, 1151692),
    "glm-5.2-fp8": (None, None, None, None),
}

CASES = [(name, tp, want) for name, row in KV_BLOCKS.items() for tp, want in zip((1, 2, 4, 8), row)]


def bundled(name):
    mc = resolve_model_config(f"org/{name}")
    return mc, extract_kv_capacity_params(mc.hf_config)


@pytest.mark.parametrize("name,tp,want", CASES, ids=[f"{n}-tp{t}" for n, t, _ in CASES])
def test_kv_blocks_of_bundled_models_match_spec(name, tp, want):
    mc, params = bundled(name)
    if want is None:
        with pytest.raises(ConfigError, match="Minimum GPUs required per instance: [0-9]+"):
            calculate_kv_blocks(mc, H100, tp, 1, 16, 0.9, params)
    else:
        assert calculate_kv_blocks(mc, H100, tp, 1, 16, 0.9, params) == want


def test_llama_8b_worked_example_intermediates():
    mc, params = bundled("llama-3.1-8b-instruct")
    assert kv_bytes_per_token(mc, 1) == 131072.0
    assert int(kv_bytes_per_token(mc, 1) * 16) == 2097152
    weight_bytes = model_weight_bytes(mc, params)
    assert weight_bytes == 16060522496 == 8030261248 * 2
    assert weight_bytes / GIB_BYTES == pytest.approx(14.95753, abs=1e-5)


def test_deepseek_v3_like_model_needs_ten_gpus():
    mc = ModelConfig(num_layers=61, hidden_dim=7168, num_heads=128, num_kv_heads=128, vocab_size=129280,
                     bytes_per_param=1.0, intermediate_dim=18432, num_local_experts=256, num_experts_per_tok=8,
                     moe_expert_ffn_dim=2048, shared_expert_ffn_dim=2048)
    params = KVCapacityParams(True, 256, False, "silu", 2048, 2048)
    assert model_weight_bytes(mc, params) / GIB_BYTES == pytest.approx(656.51, abs=0.005)
    with pytest.raises(ConfigError, match="Minimum GPUs required per instance: 10$"):
        calculate_kv_blocks(mc, H100, 2, 1, 16, 0.9, params)
    assert calculate_kv_blocks(mc, H100, 16, 1, 16, 0.9, params) > 0


def test_mla_kv_bytes_are_latent_and_not_divided_by_tp():
    mc, _ = bundled("deepseek-v2-lite")
    assert kv_bytes_per_token(mc, 1) == 27 * (512 + 64) * 2.0
    assert kv_bytes_per_token(mc, 4) == kv_bytes_per_token(mc, 1)


def test_explicit_head_dim_is_used_for_capacity():
    mc, _ = bundled("mistral-nemo-instruct-2407")
    assert kv_bytes_per_token(mc, 1) == 40 * 2.0 * 128 * 8 * 2.0


def test_fewer_kv_heads_than_tp_is_accepted_but_indivisible_is_not():
    mc = ModelConfig(num_layers=2, hidden_dim=64, num_heads=8, num_kv_heads=2, bytes_per_param=2.0)
    assert kv_bytes_per_token(mc, 4) == 2 * 2.0 * 8 * 2 * 2.0 / 4
    mc6 = replace(mc, num_kv_heads=6)
    with pytest.raises(ConfigError, match="divisible by tp"):
        kv_bytes_per_token(mc6, 4)


@pytest.mark.parametrize("change,tp,pattern", [
    (dict(), 0, "tp must be > 0"),
    (dict(num_layers=0), 1, "num_layers"),
    (dict(num_heads=0), 1, "num_attention_heads"),
    (dict(hidden_dim=0), 1, "hidden_dim"),
    (dict(bytes_per_param=0.0), 1, "bytes_per_param"),
    (dict(bytes_per_param=math.inf), 1, "bytes_per_param"),
    (dict(hidden_dim=65), 1, "divisible"),
    (dict(num_kv_heads=-1), 1, "num_kv_heads"),
    (dict(kv_lora_rank=4, qk_rope_head_dim=-4), 1, "kv_lora_rank"),
])
def test_kv_bytes_per_token_validation(change, tp, pattern):
    mc = replace(ModelConfig(num_layers=2, hidden_dim=64, num_heads=8, num_kv_heads=8, bytes_per_param=2.0), **change)
    with pytest.raises(ConfigError, match=pattern):
        kv_bytes_per_token(mc, tp)


def test_weight_bytes_moe_dense_prefix_and_tied_embeddings():
    base = ModelConfig(num_layers=4, hidden_dim=8, num_heads=2, num_kv_heads=1, vocab_size=10, intermediate_dim=16,
                       bytes_per_param=2.0, first_k_dense_replace=1, dense_intermediate_dim=32)
    params = KVCapacityParams(True, 4, True, "silu", 6, 5)
    h, kvd = 8, 1 * 4
    attn = h * (h + 2 * kvd) + h * h
    moe = 3 * h * 6 * 4 + 3 * h * 5 + 4 * h
    prefix = 3 * h * 32
    total = 10 * h + 4 * (attn + 2 * h) + (1 * prefix + 3 * moe) + 0 + h
    assert model_weight_bytes(base, params) == total * 2
    dense = KVCapacityParams(False, 0, False, "silu", 0, 0)
    total_dense = 10 * h + 4 * (attn + 2 * h) + 4 * 3 * h * 16 + 10 * h + h
    assert model_weight_bytes(base, dense) == total_dense * 2
    # first_k_dense_replace beyond the layer count makes every layer dense (prefix dim)
    all_dense = replace(base, first_k_dense_replace=99)
    assert model_weight_bytes(all_dense, params) == (10 * h + 4 * (attn + 2 * h) + 4 * prefix + h) * 2


def test_moe_dp_multiplies_blocks_dense_does_not():
    mc, params = bundled("mixtral-8x7b-v0.1")
    one = calculate_kv_blocks(mc, H100, 2, 1, 16, 0.9, params)
    assert calculate_kv_blocks(mc, H100, 2, 3, 16, 0.9, params) == 3 * one
    dense, dparams = bundled("llama-3.1-8b-instruct")
    assert calculate_kv_blocks(dense, H100, 1, 2, 16, 0.9, dparams) == 26312


def test_adapter_reservation_reduces_blocks():
    mc, params = bundled("llama-3.1-8b-instruct")
    assert calculate_kv_blocks(mc, H100, 1, 1, 16, 0.9, params, adapter_bytes=GIB_BYTES) < 26312


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(util=0.0), "utilization"),
    (dict(util=1.01), "utilization"),
    (dict(util=math.nan), "utilization"),
    (dict(adapter_bytes=-1), "adapter"),
    (dict(block_size=0), "block size"),
    (dict(dp=0), "dp must be >= 1"),
])
def test_calculate_kv_blocks_argument_validation(kwargs, pattern):
    mc, params = bundled("llama-3.1-8b-instruct")
    args = dict(tp=1, dp=1, block_size=16, util=0.9, adapter_bytes=0)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=pattern):
        calculate_kv_blocks(mc, H100, args["tp"], args["dp"], args["block_size"], args["util"], params,
                            adapter_bytes=args["adapter_bytes"])


def test_calculate_kv_blocks_config_validation():
    mc, params = bundled("llama-3.1-8b-instruct")
    with pytest.raises(ConfigError, match="intermediate_dim"):
        calculate_kv_blocks(replace(mc, intermediate_dim=0), H100, 1, 1, 16, 0.9, params)
    with pytest.raises(ConfigError, match="vocab_size"):
        calculate_kv_blocks(replace(mc, vocab_size=0), H100, 1, 1, 16, 0.9, params)
    with pytest.raises(ConfigError, match="MemoryGiB"):
        calculate_kv_blocks(mc, HardwareCalib(989.5, 0, 3.35, 0.45, 0.3, 0.0), 1, 1, 16, 0.9, params)
    with pytest.raises(ConfigError, match="weight_bytes_per_param"):
        calculate_kv_blocks(replace(mc, weight_bytes_per_param=-0.5), H100, 1, 1, 16, 0.9, params)
    with pytest.raises(ConfigError, match="valid: geglu, silu, situ, swiglu"):
        calculate_kv_blocks(mc, H100, 1, 1, 16, 0.9, replace(params, hidden_act="gelu"))
    assert calculate_kv_blocks(mc, H100, 1, 1, 16, 0.9, replace(params, hidden_act="")) == 26312


def test_tiny_gpu_reports_no_capacity_at_any_tp():
    mc, params = bundled("llama-3.1-8b-instruct")
    tiny = HardwareCalib(989.5, 0, 3.35, 0.45, 0.3, 0.5)
    with pytest.raises(ConfigError, match="cannot fit the model with any TP"):
        calculate_kv_blocks(mc, tiny, 1, 1, 16, 0.9, params)


def test_max_model_len_from_config_capped_by_kv_capacity():
    mc, _ = bundled("llama-3.1-8b-instruct")
    assert resolve_max_model_len(mc, 26312, 16) == 131072
    assert resolve_max_model_len(mc, 1000, 16) == 16000
    assert resolve_max_model_len(mc, 1000, 16, max_model_len=2048) == 2048
    assert resolve_max_model_len(mc, 100, 16, max_model_len=2048) == 1600
    assert resolve_max_model_len(mc, 100, 16, max_model_len=1601) == 1600  # ceil(1601/16) = 101 > 100
    assert resolve_max_model_len(mc, 100, 16, max_model_len=1600) == 1600
    assert resolve_max_model_len(mc, 10, 16, max_model_len=0) == 0
    assert resolve_max_model_len(ModelConfig(), 10, 16) == 0


def test_total_kv_blocks_resolution_order():
    mc, _ = bundled("llama-3.1-8b-instruct")
    assert resolve_total_kv_blocks(mc, H100, 1) == 26312
    assert resolve_total_kv_blocks(mc, H100, 1, total_kv_blocks=500) == 500
    no_memory = HardwareCalib(989.5, 0, 3.35, 0.45, 0.3, 0.0)
    assert resolve_total_kv_blocks(mc, no_memory, 1) == 1_000_000
    moe_without_count = replace(mc, hf_config={"num_experts_per_tok": 2})
    assert resolve_total_kv_blocks(moe_without_count, H100, 1) == 1_000_000
    big, _ = bundled("llama-3.1-70b-instruct")
    with pytest.raises(ConfigError, match="Minimum GPUs required per instance"):
        resolve_total_kv_blocks(big, H100, 1)
