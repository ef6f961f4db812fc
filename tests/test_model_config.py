"""HF config.json parsing, precision tiers, expert counts, hardware and defaults lookup."""
import json

import pytest

from blis.errors import BlisError, ConfigError
from blis.hardware import (
    HardwareCalib,
    get_hardware_calib,
    load_hardware_configs,
    model_defaults,
    trained_physics_coefficients,
)
from blis.model_config import (
    KVCapacityParams,
    ModelConfig,
    apply_rope_scaling,
    apply_weight_precision_fallback,
    bundled_model_names,
    extract_kv_capacity_params,
    infer_weight_bytes_from_model_name,
    load_hf_config,
    max_model_len_from_hf,
    model_config_from_hf,
    parse_quantization_config,
    resolve_model_config,
    resolve_num_experts,
)

# dir -> (L, d, H, KV, F, extra expected attributes)   (spec table of bundled configs)
BUNDLED = {
    "llama-3.1-8b-instruct": (32, 4096, 32, 8, 14336, dict(vocab_size=128256, bytes_per_param=2.0)),
    "llama-2-7b-hf": (32, 4096, 32, 32, 11008, dict(vocab_size=32000, bytes_per_param=2.0)),
    "llama-3.1-70b-instruct": (80, 8192, 64, 8, 28672, {}),
    "codellama-34b-instruct-hf": (48, 8192, 64, 8, 22016, dict(vocab_size=32000)),
    "yi-34b": (60, 7168, 56, 8, 20480, dict(vocab_size=64000)),
    "qwen2.5-7b-instruct": (28, 3584, 28, 4, 18944, dict(vocab_size=152064)),
    "qwen3-14b": (40, 5120, 40, 8, 17408, dict(head_dim=128)),
    "mistral-nemo-instruct-2407": (40, 5120, 32, 8, 14336, dict(head_dim=128)),
    "mixtral-8x7b-v0.1": (32, 4096, 32, 8, 14336, dict(num_local_experts=8, num_experts_per_tok=2)),
    "qwen3-30b-a3b": (
        48, 2048, 32, 4, 6144,
        dict(num_local_experts=128, num_experts_per_tok=8, moe_expert_ffn_dim=768, head_dim=128),
    ),
    "llama-4-scout-17b-16e-instruct-fp8-dynamic": (
        48, 5120, 40, 8, 8192,
        dict(num_local_experts=16, num_experts_per_tok=1, interleave_moe_layer_step=1,
             dense_intermediate_dim=16384, weight_bytes_per_param=1.0, bytes_per_param=2.0),
    ),
    "deepseek-v2-lite": (
        27, 2048, 16, 16, 10944,
        dict(num_local_experts=64, num_experts_per_tok=6, moe_expert_ffn_dim=1408, shared_expert_ffn_dim=2816,
             first_k_dense_replace=1, kv_lora_rank=512, qk_rope_head_dim=64),
    ),
    "glm-5.2-fp8": (
        78, 6144, 64, 64, 12288,
        dict(bytes_per_param=2.0, weight_bytes_per_param=1.0, num_local_experts=256, num_experts_per_tok=8,
             moe_expert_ffn_dim=2048, shared_expert_ffn_dim=2048, head_dim=192, kv_lora_rank=512,
             qk_rope_head_dim=64, first_k_dense_replace=3),
    ),
}


def write_config(tmp_path, obj, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_bundled_model_names_are_the_thirteen_spec_models():
    assert bundled_model_names() == sorted(BUNDLED)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_config_parses_to_spec_values(name):
    n_layers, hidden, heads, kv, ffn, extra = BUNDLED[name]
    mc = resolve_model_config(f"some-org/{name}")
    assert (mc.num_layers, mc.hidden_dim, mc.num_heads, mc.num_kv_heads, mc.intermediate_dim) == (
        n_layers, hidden, heads, kv, ffn)
    for attr, want in extra.items():
        assert getattr(mc, attr) == want, attr
    assert mc.bytes_per_param > 0
    assert mc.name == f"some-org/{name}"


def test_model_name_is_lower_cased_before_lookup():
    mc = resolve_model_config("Meta-Llama/Llama-3.1-8B-Instruct")
    assert mc.num_layers == 32 and mc.name == "meta-llama/llama-3.1-8b-instruct"


def test_unknown_model_lists_bundled_names():
    with pytest.raises(ConfigError) as exc:
        resolve_model_config("acme/not-a-model")
    msg = str(exc.value)
    assert "not-a-model" in msg and "valid: " in msg
    assert ", ".join(sorted(BUNDLED)) in msg
    assert isinstance(exc.value, BlisError)


def test_path_traversal_in_model_name_is_rejected():
    with pytest.raises(ConfigError):
        resolve_model_config("org/../../etc")


def test_explicit_model_config_folder_wins(tmp_path):
    write_config(tmp_path, {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
                            "torch_dtype": "float32"})
    mc = resolve_model_config("meta-llama/llama-3.1-8b-instruct", model_config_folder=tmp_path)
    assert mc.num_layers == 3 and mc.bytes_per_param == 4.0
    mc2 = resolve_model_config("x/y", model_config_folder=tmp_path / "config.json")
    assert mc2.hidden_dim == 64


def test_missing_or_invalid_config_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_hf_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        load_hf_config(bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ConfigError):
        load_hf_config(arr)


# --- reading rules ------------------------------------------------------------------


def test_text_config_keys_overwrite_top_level(tmp_path):
    path = write_config(tmp_path, {"hidden_size": 1, "num_hidden_layers": 2,
                                   "text_config": {"hidden_size": 512, "num_attention_heads": 8}})
    hf = load_hf_config(path)
    mc = model_config_from_hf(hf)
    assert mc.hidden_dim == 512 and mc.num_layers == 2 and mc.num_heads == 8


def test_integers_only_from_json_numbers_truncated_toward_zero():
    hf = {"num_hidden_layers": 31.9, "hidden_size": "4096", "num_attention_heads": True,
          "vocab_size": None, "intermediate_size": -7.5}
    mc = model_config_from_hf(hf)
    assert mc.num_layers == 31
    assert mc.hidden_dim == 0
    assert mc.num_heads == 0
    assert mc.vocab_size == 0
    assert mc.intermediate_dim == -7


def test_kv_heads_fallback_chain_and_mha_default():
    assert model_config_from_hf({"num_attention_heads": 32, "num_kv_heads": 4}).num_kv_heads == 4
    assert model_config_from_hf({"num_attention_heads": 32, "multi_query_group_num": 2}).num_kv_heads == 2
    assert model_config_from_hf({"num_attention_heads": 32, "num_key_value_heads": 0,
                                 "num_kv_heads": 8}).num_kv_heads == 8
    assert model_config_from_hf({"num_attention_heads": 32}).num_kv_heads == 32


def test_intermediate_dim_falls_back_to_ffn_hidden_size():
    assert model_config_from_hf({"ffn_hidden_size": 1234}).intermediate_dim == 1234
    assert model_config_from_hf({"intermediate_size": 0, "ffn_hidden_size": 99}).intermediate_dim == 99


@pytest.mark.parametrize("key", ["head_dim", "kv_lora_rank", "qk_rope_head_dim", "first_k_dense_replace"])
def test_negative_shape_field_is_a_parse_error(key):
    with pytest.raises(ConfigError, match=key):
        model_config_from_hf({key: -1})


def test_derived_predicates():
    mc = ModelConfig(num_layers=48, hidden_dim=5120, num_heads=40, num_local_experts=16,
                     interleave_moe_layer_step=1, bytes_per_param=2.0)
    assert mc.is_moe and not mc.is_mla
    assert mc.effective_head_dim == 128
    assert mc.effective_weight_bytes_per_param == 2.0
    assert mc.moe_dense_layer_split() == (24, 24)
    assert ModelConfig(num_local_experts=1).is_moe is False
    assert ModelConfig(hidden_dim=10, num_heads=0).effective_head_dim == 0
    assert ModelConfig(kv_lora_rank=1).is_mla
    assert ModelConfig(num_layers=10, num_local_experts=8).moe_dense_layer_split() == (10, 0)
    assert ModelConfig(num_layers=10).moe_dense_layer_split() == (0, 10)
    assert ModelConfig(num_layers=10, num_local_experts=8, interleave_moe_layer_step=2).moe_dense_layer_split() == (3, 7)


def test_hf_config_is_not_part_of_equality():
    a = model_config_from_hf({"hidden_size": 8, "foo": 1})
    b = model_config_from_hf({"hidden_size": 8, "foo": 2})
    assert a == b and hash(a) == hash(b)


# --- precision ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype,want", [("float32", 4.0), ("float16", 2.0), ("bfloat16", 2.0), ("int8", 1.0),
                                        ("uint8", 1.0), ("fp8", 1.0), ("int4", 1.0), ("nf4", 1.0)])
def test_torch_dtype_bytes(dtype, want):
    assert model_config_from_hf({"torch_dtype": dtype}).bytes_per_param == want


def test_unknown_torch_dtype_gives_zero_and_does_not_consult_dtype():
    assert model_config_from_hf({"torch_dtype": "float8_e4m3", "dtype": "bfloat16"}).bytes_per_param == 0.0


def test_dtype_used_only_when_torch_dtype_absent_or_not_string():
    assert model_config_from_hf({"dtype": "bfloat16"}).bytes_per_param == 2.0
    assert model_config_from_hf({"torch_dtype": 5, "dtype": "float32"}).bytes_per_param == 4.0


def test_gptq_numeric_bits():
    assert parse_quantization_config({"quant_method": "gptq", "bits": 4}) == 0.5
    assert parse_quantization_config({"quant_method": "gptq", "bits": 8.9}) == 1.0


def test_awq_string_bits():
    assert parse_quantization_config({"quant_method": "awq", "bits": "4"}) == 0.5
    assert parse_quantization_config({"quant_method": "awq", "bits": "+8"}) == 1.0


@pytest.mark.parametrize("bits", [" 4", "4.0", "four", "", "0", "-4"])
def test_bits_that_are_not_a_positive_plain_integer_are_ignored(bits):
    assert parse_quantization_config({"quant_method": "awq", "bits": bits}) == 0.0


def test_fp8_quant_method_is_case_insensitive():
    assert parse_quantization_config({"quant_method": "FP8"}) == 1.0
    assert parse_quantization_config({"quant_method": "fp8", "bits": 4}) == 0.5  # bits win


def test_compressed_tensors_takes_first_sorted_group_with_weight_bits():
    qc = {
        "quant_method": "Compressed-Tensors",
        "config_groups": {
            "group_b": {"weights": {"num_bits": 4}},
            "group_a": {"weights": {"num_bits": 8}},
            "Group_z": {"weights": "not-an-object"},
            "aaa": {"targets": ["Linear"]},
            "aab": {"weights": {"num_bits": 0}},
        },
    }
    assert parse_quantization_config(qc) == 1.0
    assert parse_quantization_config({"quant_method": "compressed-tensors", "config_groups": []}) == 0.0


def test_quantization_config_reaches_model_config_only_when_object():
    assert model_config_from_hf({"quantization_config": {"bits": 4}}).weight_bytes_per_param == 0.5
    assert model_config_from_hf({"quantization_config": "gptq"}).weight_bytes_per_param == 0.0


@pytest.mark.parametrize("name,want", [
    ("redhatai/llama-3.3-70b-instruct-quantized.w4a16", 0.5),
    ("redhatai/qwen2.5-7b-instruct-quantized.w8a8", 1.0),
    ("RedHatAI/Qwen2.5-7B-Instruct-W4A16", 0.5),
    ("redhatai/llama-3.1-nemotron-70b-instruct-hf-fp8-dynamic", 1.0),
    ("org/model-FP8", 1.0),
    ("w4a16", 0.5),
    ("org/w4a16x", 0.0),
    ("org/w4a16/extra", 0.0),  # trailing delimiter class has no "/"
    ("org/fp8/extra", 0.0),
    ("org/w0a16-fp8", 1.0),  # zero weight bits fall through to the fp8 pattern
    ("meta-llama/llama-3.1-8b-instruct", 0.0),
])
def test_weight_bytes_from_model_name(name, want):
    assert infer_weight_bytes_from_model_name(name) == want


def test_name_fallback_only_fills_unset_weight_precision():
    mc = model_config_from_hf({"torch_dtype": "bfloat16"})
    assert apply_weight_precision_fallback(mc, "x/y-quantized.w4a16").weight_bytes_per_param == 0.5
    q = model_config_from_hf({"torch_dtype": "bfloat16", "quantization_config": {"bits": 8}})
    assert apply_weight_precision_fallback(q, "x/y-quantized.w4a16").weight_bytes_per_param == 1.0


def test_torch_dtype_fallback_leaves_weight_precision_unset(tmp_path):
    write_config(tmp_path, {"num_hidden_layers": 2, "hidden_size": 64, "torch_dtype": "float16"})
    mc = resolve_model_config("org/plain-model", model_config_folder=tmp_path)
    assert mc.weight_bytes_per_param == 0.0
    assert mc.effective_weight_bytes_per_param == 2.0


def test_resolve_applies_name_fallback_on_cli_path(tmp_path):
    write_config(tmp_path, {"num_hidden_layers": 2, "hidden_size": 64, "torch_dtype": "bfloat16"})
    mc = resolve_model_config("RedHatAI/Model-quantized.w4a16", model_config_folder=tmp_path)
    assert mc.weight_bytes_per_param == 0.5


# --- experts ------------------------------------------------------------------------


def test_resolve_num_experts_order_and_threshold():
    assert resolve_num_experts({"num_experts": 128, "num_local_experts": 8}) == 128
    assert resolve_num_experts({"num_experts": 1, "moe_num_experts": 16}) == 16
    assert resolve_num_experts({"n_routed_experts": 64}) == 64
    assert resolve_num_experts({"num_routed_experts": 4}) == 4
    assert resolve_num_experts({"num_local_experts": 1}) == 0
    assert resolve_num_experts({"num_experts": "8"}) == 0
    assert resolve_num_experts({}) == 0


def test_shared_expert_dim_rules():
    assert model_config_from_hf({"shared_expert_intermediate_size": 5632}).shared_expert_ffn_dim == 5632
    assert model_config_from_hf({"n_shared_experts": 2, "moe_intermediate_size": 1408}).shared_expert_ffn_dim == 2816
    assert model_config_from_hf({"n_shared_experts": 2, "ffn_hidden_size": 100}).shared_expert_ffn_dim == 200
    assert model_config_from_hf({"shared_expert_intermediate_size": 0, "n_shared_experts": 0}).shared_expert_ffn_dim == 0


def test_kv_capacity_params_of_bundled_models():
    llama = resolve_model_config("meta-llama/llama-3.1-8b-instruct")
    assert extract_kv_capacity_params(llama.hf_config) == KVCapacityParams(False, 0, False, "silu", 0, 0)
    ds = resolve_model_config("deepseek-ai/deepseek-v2-lite")
    assert extract_kv_capacity_params(ds.hf_config) == KVCapacityParams(True, 64, False, "silu", 1408, 2816)


def test_kv_capacity_params_shared_dim_uses_only_intermediate_size():
    p = extract_kv_capacity_params({"num_local_experts": 8, "n_shared_experts": 2, "ffn_hidden_size": 100})
    assert p.shared_expert_ffn_dim == 0
    p = extract_kv_capacity_params({"num_local_experts": 8, "n_shared_experts": 2, "intermediate_size": 100})
    assert p.shared_expert_ffn_dim == 200


def test_kv_capacity_params_tie_flag_must_be_bool():
    assert extract_kv_capacity_params({"tie_word_embeddings": True}).tie_word_embeddings is True
    assert extract_kv_capacity_params({"tie_word_embeddings": 1}).tie_word_embeddings is False


@pytest.mark.parametrize("key", ["n_shared_experts", "num_experts_per_tok"])
def test_kv_capacity_params_reject_moe_without_expert_count(key):
    with pytest.raises(ConfigError, match=key):
        extract_kv_capacity_params({key: 2})


# --- max model len ------------------------------------------------------------------


@pytest.mark.parametrize("model_type,rope,want", [
    ("llama", None, (4096, False)),
    ("llama", {"type": "linear", "factor": 2.0}, (8192, True)),
    ("llama", {"rope_type": "dynamic", "factor": 4}, (16384, True)),
    ("llama", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}, (4096, True)),
    ("llama", {"type": "yarn", "factor": 4.0}, (16384, True)),
    ("llama", {"rope_type": "llama3", "factor": 8.0}, (4096, False)),
    ("llama", {"type": "su", "factor": 8.0}, (4096, False)),
    ("llama", {"type": "longrope", "factor": 8.0}, (4096, False)),
    ("llama", {"type": "linear", "factor": 1.0}, (4096, False)),
    ("llama", {"type": "linear", "factor": "2"}, (4096, False)),
    ("llama", [2.0], (4096, False)),
    ("gemma3_text", {"type": "linear", "factor": 8.0}, (4096, False)),
    ("llama", {"type": "mrope", "factor": 1.5}, (6144, True)),
])
def test_rope_scaling_rules(model_type, rope, want):
    assert apply_rope_scaling(4096, model_type, rope) == want


def test_max_model_len_of_bundled_configs():
    assert max_model_len_from_hf(resolve_model_config("x/llama-3.1-8b-instruct").hf_config) == 131072
    assert max_model_len_from_hf(resolve_model_config("x/deepseek-v2-lite").hf_config) == 163840
    assert max_model_len_from_hf({}) == 0


# --- hardware and defaults ----------------------------------------------------------


def test_bundled_hardware_entries():
    table = load_hardware_configs()
    assert sorted(table) == ["A100-80", "A100-SXM", "H100", "L40S"]
    assert table["H100"] == HardwareCalib(989.5, 1979.0, 3.35, 0.45, 0.30, 80.0)
    assert table["L40S"] == HardwareCalib(362.05, 1466.0, 0.864, 0.32, 0.08, 48.0)
    assert table["A100-80"] == table["A100-SXM"]


def test_unknown_gpu_lists_sorted_names():
    with pytest.raises(ConfigError, match="valid: A100-80, A100-SXM, H100, L40S"):
        get_hardware_calib("H200")
    with pytest.raises(ConfigError):
        get_hardware_calib("h100")  # exact names


def test_hardware_config_file_keys_are_case_insensitive(tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(json.dumps({"X1": {"_comment": "hi", "tflopspeak": 100, "BWPEAKTBS": 2.0, "MfuPrefill": 0.5,
                                       "extra": "ignored"}}))
    calib = get_hardware_calib("X1", path)
    assert calib == HardwareCalib(tflops_peak=100.0, bw_peak_tbs=2.0, mfu_prefill=0.5)
    path.write_text(json.dumps({"X1": {"TFlopsPeak": "fast"}}))
    with pytest.raises(ConfigError, match="TFlopsPeak must be a number"):
        get_hardware_calib("X1", str(path))


def test_model_defaults_from_defaults_yaml():
    d = model_defaults("Meta-Llama/Llama-3.1-8B-Instruct")
    assert (d.gpu, d.tensor_parallelism, d.hf_repo) == ("H100", 1, "meta-llama/Llama-3.1-8B-Instruct")
    assert model_defaults("codellama/codellama-34b-instruct-hf").tensor_parallelism == 2
    assert model_defaults("openai/gpt-oss-20b").hf_repo == ""
    missing = model_defaults("acme/unknown")
    assert (missing.gpu, missing.tensor_parallelism, missing.hf_repo) == ("", 0, "")


def test_trained_physics_coefficients_from_defaults_yaml():
    alpha, beta = trained_physics_coefficients()
    assert alpha == [15563.199579, 777.3455, 45.907545]
    assert beta == [0.152128, 0.0, 1.36252915, 0.752037, 32.09546717, 4.41684444, 126.024825, 481.8613888,
                    0.0, 1.94710771, 0.752037]
