"""Tests backing docs/kv-and-hardware.md: the "adding a quantization format" recipe and the GPU table.

Quantization: blis/model_config.py resolves the stored-weight width in three tiers,
``quantization_config`` -> model-name patterns -> ``torch_dtype``.  There is no
registry for formats (the doc's recipe is an edit of ``parse_quantization_config``);
these tests pin each tier and its precedence, show that an unknown ``quant_method``
with ``bits`` already works, and exercise the documented edit path with a toy format
(installed by wrapping ``parse_quantization_config``, which is what the edit amounts to),
following it through to KV capacity and the roofline.

GPU table: BLIS's ``hardware_config.json`` is byte-identical to BLIS's; the extra GPUs
of ``hardware_extra.json`` cite a source for every figure, reuse the documented MFU
values, and are reachable through ``resolve_hardware_calib`` (an explicit
``--hardware-config`` file still replaces everything, as in BLIS).
"""
import copy
import hashlib
import json

import pytest

import blis.model_config as model_config
from blis.capacity import calculate_kv_blocks
from blis.errors import ConfigError
from blis.hardware import (
    HardwareCalib,
    default_extra_hardware_path,
    default_hardware_config_path,
    extra_hardware_sources,
    get_hardware_calib,
    known_hardware,
    load_extra_hardware_configs,
    load_hardware_configs,
    resolve_hardware_calib,
)
from blis.latency import build_latency
from blis.model_config import (
    apply_weight_precision_fallback,
    bundled_model_config_root,
    extract_kv_capacity_params,
    load_hf_config,
    model_config_from_hf,
    parse_quantization_config,
    resolve_model_config,
)

LLAMA = "meta-llama/llama-3.1-8b-instruct"


def _llama_hf(**overrides):
    hf = copy.deepcopy(load_hf_config(bundled_model_config_root() / "llama-3.1-8b-instruct" / "config.json"))
    hf.update(overrides)
    return hf


def _weight_width(hf, name=LLAMA):
    """The effective stored-weight width the CLI path would use (all three tiers)."""
    mc = apply_weight_precision_fallback(model_config_from_hf(hf, name=name), name)
    return mc.effective_weight_bytes_per_param


# ---------------------------------------------------------------- quantization: the three tiers
@pytest.mark.parametrize("qc,width", [
    ({"quant_method": "acme-q", "bits": 3}, 3 / 8),        # unknown method, bits present: bits win
    ({"quant_method": "acme-q", "bits": "6"}, 6 / 8),      # bits as a decimal string
    ({"quant_method": "gptq", "bits": 4}, 0.5),
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, 0.5),
    ({"quant_method": "fp8"}, 1.0),
    ({"quant_method": "FP8", "activation_scheme": "dynamic"}, 1.0),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"group_1": {"weights": {"num_bits": 8}}, "group_0": {"weights": {"num_bits": 4}}}}, 0.5),
])
def test_tier1_quantization_config(qc, width):
    assert parse_quantization_config(qc) == width
    assert model_config_from_hf(_llama_hf(quantization_config=qc)).weight_bytes_per_param == width


@pytest.mark.parametrize("qc", [
    {"quant_method": "acme-q"},                 # unknown method, no bits
    {"quant_method": "acme-q", "bits": 0},
    {"quant_method": "acme-q", "bits": "four"},
    {"quant_method": "compressed-tensors", "config_groups": {}},
    {},
])
def test_unrecognised_quantization_config_falls_through(qc):
    assert parse_quantization_config(qc) == 0.0
    hf = _llama_hf(quantization_config=qc)
    assert model_config_from_hf(hf).weight_bytes_per_param == 0.0
    assert _weight_width(hf, "acme/llama-w4a16") == 0.5        # tier 2: the model name
    assert _weight_width(hf, "acme/llama-FP8-dynamic") == 1.0
    assert _weight_width(hf, "acme/llama") == 2.0              # tier 3: torch_dtype bfloat16


@pytest.mark.parametrize("dtype,width", [("float32", 4.0), ("float16", 2.0), ("bfloat16", 2.0), ("fp8", 1.0)])
def test_tier3_torch_dtype(dtype, width):
    assert _weight_width(_llama_hf(torch_dtype=dtype), "acme/plain") == width


def test_tiers_take_precedence_in_order():
    both = _llama_hf(quantization_config={"quant_method": "acme-q", "bits": 8}, torch_dtype="float32")
    assert _weight_width(both, "acme/llama-w4a16") == 1.0      # quantization_config beats the name
    named = _llama_hf(torch_dtype="float32")
    assert _weight_width(named, "acme/llama-w4a16") == 0.5     # the name beats torch_dtype
    # the bundled FP8 model: compressed-tensors config
    mc = resolve_model_config("redhatai/llama-4-scout-17b-16e-instruct-fp8-dynamic")
    assert mc.weight_bytes_per_param == 1.0


# ---------------------------------------------------------------- quantization: the documented edit path
TOY_BITS = 4.25  # e.g. an MX-style 4-bit format with one shared 8-bit scale per 32 weights


def _with_toy_format(original):
    """What the recipe's edit of parse_quantization_config adds: one more branch."""

    def parse(qc):
        method = qc.get("quant_method")
        if isinstance(method, str) and method.lower() == "toy-mx4" and "bits" not in qc:
            return TOY_BITS / 8
        return original(qc)

    return parse


@pytest.fixture
def toy_format(monkeypatch):
    monkeypatch.setattr(model_config, "parse_quantization_config",
                        _with_toy_format(model_config.parse_quantization_config))


def test_new_format_is_detected_through_every_entry_point(toy_format, tmp_path):
    qc = {"quant_method": "toy-mx4", "group_size": 32}
    hf = _llama_hf(quantization_config=qc)
    assert model_config_from_hf(hf).weight_bytes_per_param == TOY_BITS / 8
    (tmp_path / "config.json").write_text(json.dumps(hf))
    mc = resolve_model_config("acme/llama-toy", tmp_path)
    assert mc.weight_bytes_per_param == TOY_BITS / 8
    # explicit bits still win, other formats are unaffected
    assert model_config.parse_quantization_config({"quant_method": "toy-mx4", "bits": 8}) == 1.0
    assert model_config.parse_quantization_config({"quant_method": "fp8"}) == 1.0


def test_without_the_edit_the_toy_format_falls_back_to_bf16(tmp_path):
    hf = _llama_hf(quantization_config={"quant_method": "toy-mx4"})
    (tmp_path / "config.json").write_text(json.dumps(hf))
    assert resolve_model_config("acme/llama-toy", tmp_path).effective_weight_bytes_per_param == 2.0


def test_new_format_reaches_kv_capacity_and_the_roofline(toy_format):
    h100 = get_hardware_calib("H100")
    bf16 = model_config_from_hf(_llama_hf(), name=LLAMA)
    toy = model_config_from_hf(_llama_hf(quantization_config={"quant_method": "toy-mx4"}), name=LLAMA)
    params = extract_kv_capacity_params(_llama_hf())
    blocks_bf16 = calculate_kv_blocks(bf16, h100, 1, 1, 16, 0.9, params)
    blocks_toy = calculate_kv_blocks(toy, h100, 1, 1, 16, 0.9, params)
    assert blocks_toy > blocks_bf16, "smaller weights leave more memory for the KV cache"
    lat_bf16 = build_latency("roofline", bf16, h100, 1)
    lat_toy = build_latency("roofline", toy, h100, 1)
    # a small decode batch is weight-bandwidth bound: fewer weight bytes, shorter step
    assert lat_toy.step_time(decodes=[600] * 4) < lat_bf16.step_time(decodes=[600] * 4)


# ---------------------------------------------------------------- the GPU table
BLIS_HW_SHA256 = "22e4c3ad34be1b62a62f04b6319fda28422dbf000ef8dda1acfdbf806de2b278"  # BLIS's hardware_config.json
HOPPER = ("H200", "H100-PCIe")
AMPERE = ("A100-PCIe", "A10")
ADA = ("L4",)
NO_CALIBRATED_RELATIVE = ("B200", "MI300X")


def test_blis_table_is_byte_identical_to_blis():
    assert hashlib.sha256(default_hardware_config_path().read_bytes()).hexdigest() == BLIS_HW_SHA256
    assert sorted(load_hardware_configs()) == ["A100-80", "A100-SXM", "H100", "L40S"]


def test_extra_gpus_are_complete_and_cite_every_figure():
    extra = load_extra_hardware_configs()
    assert set(HOPPER + AMPERE + ADA + NO_CALIBRATED_RELATIVE) == set(extra)
    assert not set(extra) & set(load_hardware_configs()), "an extra GPU must not shadow a BLIS name"
    sources = extra_hardware_sources()
    for gpu, hw in extra.items():
        assert hw.tflops_peak > 0 and hw.bw_peak_tbs > 0 and hw.memory_gib > 0, gpu
        assert 0 < hw.mfu_prefill < 1 and 0 < hw.mfu_decode < 1, gpu
        if gpu in AMPERE:
            assert hw.tflops_fp8 == 0, f"{gpu}: Ampere has no FP8 tensor cores"
        else:
            assert hw.tflops_fp8 >= 2 * hw.tflops_peak * 0.99, f"{gpu}: FP8 dense is 2x BF16 dense"
        for field in ("TFlopsPeak", "TFlopsFP8", "BwPeakTBs", "MemoryGiB", "mfu"):
            assert sources[gpu].get(field, "").strip(), f"{gpu}: no source for {field}"
    raw = json.loads(default_extra_hardware_path().read_text())
    assert "_comment" in raw


def test_extra_gpus_reuse_the_documented_mfu_values():
    blis = load_hardware_configs()
    extra = load_extra_hardware_configs()
    mfu = lambda hw: (hw.mfu_prefill, hw.mfu_decode)  # noqa: E731
    for gpu in HOPPER + NO_CALIBRATED_RELATIVE:
        assert mfu(extra[gpu]) == mfu(blis["H100"]), gpu
    for gpu in AMPERE:
        assert mfu(extra[gpu]) == mfu(blis["A100-SXM"]), gpu
    for gpu in ADA:
        assert mfu(extra[gpu]) == mfu(blis["L40S"]), gpu


def test_datasheet_figures():
    extra = load_extra_hardware_configs()
    assert extra["H200"] == HardwareCalib(989.5, 1979.0, 4.8, 0.45, 0.30, 141.0)
    assert extra["B200"] == HardwareCalib(2250.0, 4500.0, 7.7, 0.45, 0.30, 180.0)
    assert extra["H100-PCIe"] == HardwareCalib(756.5, 1513.0, 2.0, 0.45, 0.30, 80.0)
    assert extra["A100-PCIe"] == HardwareCalib(312.0, 0.0, 1.935, 0.38, 0.18, 80.0)
    assert extra["A10"] == HardwareCalib(125.0, 0.0, 0.6, 0.38, 0.18, 24.0)
    assert extra["L4"] == HardwareCalib(121.0, 242.5, 0.3, 0.32, 0.08, 24.0)
    assert extra["MI300X"] == HardwareCalib(1307.4, 2614.9, 5.3, 0.45, 0.30, 192.0)


def test_resolve_hardware_calib_knows_blis_and_extra_gpus():
    for gpu in load_hardware_configs():
        assert resolve_hardware_calib(gpu) == get_hardware_calib(gpu)
    assert resolve_hardware_calib("H200") == load_extra_hardware_configs()["H200"]
    assert set(known_hardware()) == set(load_hardware_configs()) | set(load_extra_hardware_configs())
    # get_hardware_calib itself is BLIS's lookup, unchanged
    with pytest.raises(ConfigError, match="valid: A100-80, A100-SXM, H100, L40S"):
        get_hardware_calib("H200")


def test_unknown_gpu_error_lists_every_known_name_on_one_line():
    with pytest.raises(ConfigError) as exc:
        resolve_hardware_calib("H900")
    msg = str(exc.value)
    assert "'H900'" in msg and "\n" not in msg
    for gpu in known_hardware():
        assert gpu in msg
    assert "valid: A100-80, A100-SXM, H100, L40S; extra (hardware_extra.json): A10, A100-PCIe, B200" in msg


def test_hardware_config_file_replaces_both_tables(tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(json.dumps({"X1": {"TFlopsPeak": 100, "BwPeakTBs": 1.0, "mfuPrefill": 0.5, "mfuDecode": 0.2,
                                       "MemoryGiB": 16}}))
    assert resolve_hardware_calib("X1", path).tflops_peak == 100.0
    assert sorted(known_hardware(path)) == ["X1"]
    for gpu in ("H200", "H100"):
        with pytest.raises(ConfigError, match="valid: X1$"):
            resolve_hardware_calib(gpu, str(path))


def test_extra_gpu_drives_capacity_and_roofline():
    mc = resolve_model_config(LLAMA)
    params = extract_kv_capacity_params(mc.hf_config)
    h100, h200, l4 = (resolve_hardware_calib(g) for g in ("H100", "H200", "L4"))
    kv = {n: calculate_kv_blocks(mc, hw, 1, 1, 16, 0.9, params) for n, hw in (("H100", h100), ("H200", h200),
                                                                              ("L4", l4))}
    assert kv["H200"] > kv["H100"] > kv["L4"] > 0
    step = {n: build_latency("roofline", mc, hw, 1).step_time(decodes=[1000] * 8)
            for n, hw in (("H100", h100), ("H200", h200))}
    assert step["H200"] < step["H100"], "decode is bandwidth bound: 4.8 TB/s beats 3.35 TB/s"


def test_cli_accepts_an_extra_gpu(capsys):
    from blis.cli import main
    argv = ["run", "--model", LLAMA, "--hardware", "H200", "--tp", "1", "--num-requests", "5", "--rate", "5"]
    assert main(argv) == 0
    assert '"completed_requests": 5' in capsys.readouterr().out


def test_cli_unknown_gpu_is_one_clear_line(capsys):
    from blis.cli import main
    assert main(["run", "--model", LLAMA, "--hardware", "H900", "--tp", "1"]) == 1
    err = capsys.readouterr().err
    assert "H900" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
