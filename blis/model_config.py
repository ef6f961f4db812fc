"""Model architecture from a HuggingFace ``config.json`` (BLIS's ``ModelConfig``).

Parsing follows BLIS exactly: a ``text_config`` object is pivoted over the top
level, integers are read only from JSON numbers (truncated toward zero), the
compute precision comes from ``torch_dtype`` (else ``dtype``), and the weight
precision is resolved in three tiers (``quantization_config``, then the model
name, then the compute precision).  :func:`resolve_model_config` is the CLI
entry point: bundled ``blis/data/model_configs/<name>/config.json`` or an
explicit folder; there is no network fallback.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from .errors import ConfigError

__all__ = [
    "ModelConfig",
    "KVCapacityParams",
    "MOE_MIN_EXPERTS",
    "DTYPE_BYTES",
    "load_hf_config",
    "model_config_from_hf",
    "parse_quantization_config",
    "infer_weight_bytes_from_model_name",
    "apply_weight_precision_fallback",
    "resolve_num_experts",
    "extract_kv_capacity_params",
    "apply_rope_scaling",
    "max_model_len_from_hf",
    "bundled_model_config_root",
    "bundled_model_names",
    "resolve_model_config",
]

#: A model is MoE when it has at least this many routed experts (1 expert = dense).
MOE_MIN_EXPERTS = 2

#: Bytes per parameter of each recognised ``torch_dtype`` / ``dtype`` string.
DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "uint8": 1,
    "fp8": 1,
    "int4": 1,
    "nf4": 1,
}

#: Expert-count keys, tried in this order (first value >= 2 wins).
EXPERT_COUNT_KEYS = (
    "num_experts",
    "moe_num_experts",
    "n_routed_experts",
    "num_local_experts",
    "num_routed_experts",
)

_BITS_PER_BYTE = 8.0
_ATOI_RE = re.compile(r"^[+-]?[0-9]+$")
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
# Weight-precision hints in model names: "...quantized.w4a16", "-FP8-dynamic".
_WXAY_RE = re.compile(r"(?:^|[._/-])w([0-9]+)a[0-9]+(?:$|[._-])", re.IGNORECASE)
_FP8_NAME_RE = re.compile(r"(?:^|[._/-])fp8(?:$|[._-])", re.IGNORECASE)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture parameters the latency and capacity models read (BLIS ``sim.ModelConfig``).

    Integer fields are 0 when absent.  ``bytes_per_param`` is the compute / KV /
    activation width; ``weight_bytes_per_param`` (0 = unset) the stored-weight
    width.  ``hf_config`` keeps the pivoted raw JSON object for the capacity
    and max-model-len helpers; it takes no part in equality or hashing.
    """

    num_layers: int = 0
    hidden_dim: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    vocab_size: int = 0
    bytes_per_param: float = 0.0
    intermediate_dim: int = 0
    num_local_experts: int = 0
    num_experts_per_tok: int = 0
    moe_expert_ffn_dim: int = 0
    shared_expert_ffn_dim: int = 0
    interleave_moe_layer_step: int = 0
    dense_intermediate_dim: int = 0
    hidden_act: str = ""
    weight_bytes_per_param: float = 0.0
    head_dim: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    first_k_dense_replace: int = 0
    name: str = ""
    hf_config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_moe(self) -> bool:
        """True when the model has >= 2 routed experts."""
        return self.num_local_experts >= MOE_MIN_EXPERTS

    @property
    def is_mla(self) -> bool:
        """True for multi-head latent attention (a positive ``kv_lora_rank``)."""
        return self.kv_lora_rank > 0

    @property
    def effective_head_dim(self) -> int:
        """``head_dim`` if set, else ``hidden_dim // num_heads`` (0 when num_heads is 0); capacity only."""
        if self.head_dim > 0:
            return self.head_dim
        if self.num_heads == 0:
            return 0
        return _go_div(self.hidden_dim, self.num_heads)

    @property
    def effective_weight_bytes_per_param(self) -> float:
        """Stored-weight width: ``weight_bytes_per_param`` if > 0, else ``bytes_per_param``."""
        if self.weight_bytes_per_param > 0:
            return self.weight_bytes_per_param
        return self.bytes_per_param

    @property
    def effective_kv_heads(self) -> int:
        """``num_kv_heads``, or ``num_heads`` when it is 0."""
        return self.num_kv_heads if self.num_kv_heads != 0 else self.num_heads

    def moe_dense_layer_split(self) -> Tuple[int, int]:
        """``(n_moe_layers, n_dense_layers)`` as both step-time backends split the layers."""
        if self.interleave_moe_layer_step > 0 and self.is_moe:
            n_moe = _go_div(self.num_layers, self.interleave_moe_layer_step + 1)
            return n_moe, self.num_layers - n_moe
        if self.is_moe:
            return self.num_layers, 0
        return 0, self.num_layers


@dataclass(frozen=True)
class KVCapacityParams:
    """Config facts only the KV-capacity estimate needs (BLIS ``KVCapacityParams``)."""

    is_moe: bool = False
    num_local_experts: int = 0
    tie_word_embeddings: bool = False
    hidden_act: str = ""
    moe_expert_ffn_dim: int = 0
    shared_expert_ffn_dim: int = 0


def _go_div(a: int, b: int) -> int:
    """Go integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _get_int(hf: Mapping[str, Any], key: str, default: int = 0) -> int:
    """An integer field: JSON numbers only (not bools/strings), truncated toward zero."""
    v = hf.get(key)
    if not _is_number(v):
        return default
    if isinstance(v, float) and not math.isfinite(v):
        return default
    return int(v)


def _get_str(hf: Mapping[str, Any], key: str, default: str = "") -> str:
    v = hf.get(key)
    return v if isinstance(v, str) else default


def _reject_nonstandard_constant(token: str):
    raise ValueError(f"invalid JSON constant {token}")


def _parse_json_object(text: str, where: str) -> Dict[str, Any]:
    try:
        obj = json.loads(text, parse_constant=_reject_nonstandard_constant)
    except ValueError as exc:
        raise ConfigError(f"{where}: config must be valid JSON, got error {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: config must be a JSON object, got {type(obj).__name__}")
    return obj


def _pivot_text_config(obj: Dict[str, Any]) -> Dict[str, Any]:
    text = obj.get("text_config")
    if isinstance(text, dict):
        obj = dict(obj)
        obj.update(text)
    return obj


def load_hf_config(path: "os.PathLike[str] | str") -> Dict[str, Any]:
    """Read a HuggingFace ``config.json`` into a dict, pivoting ``text_config`` over the top level."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"load_hf_config: config file must be readable, got {p} ({exc.strerror})") from None
    return _pivot_text_config(_parse_json_object(text, f"load_hf_config({p})"))


def parse_quantization_config(qc: Mapping[str, Any]) -> float:
    """Weight bytes/param from a ``quantization_config`` object; 0.0 when nothing is recognised.

    ``bits`` (number or decimal string) wins, then ``quant_method == fp8``, then the
    first (sorted) ``compressed-tensors`` config group with ``weights.num_bits > 0``.
    """
    quant_method = qc.get("quant_method")
    quant_method = quant_method if isinstance(quant_method, str) else ""
    bits = 0
    raw_bits = qc.get("bits")
    if _is_number(raw_bits):
        if not (isinstance(raw_bits, float) and not math.isfinite(raw_bits)):
            bits = int(raw_bits)
    elif isinstance(raw_bits, str) and _ATOI_RE.match(raw_bits):
        parsed = int(raw_bits)
        if _INT64_MIN <= parsed <= _INT64_MAX:
            bits = parsed
    if bits > 0:
        return bits / _BITS_PER_BYTE
    method = quant_method.lower()
    if method == "fp8":
        return 1.0
    if method == "compressed-tensors":
        groups = qc.get("config_groups")
        if isinstance(groups, dict):
            # Go sorts keys byte-wise; sorting UTF-8 encodings reproduces that order.
            for key in sorted(groups, key=lambda k: k.encode("utf-8")):
                group = groups[key]
                if not isinstance(group, dict):
                    continue
                weights = group.get("weights")
                if not isinstance(weights, dict):
                    continue
                nb = weights.get("num_bits")
                if _is_number(nb) and nb > 0:
                    return float(nb) / _BITS_PER_BYTE
    return 0.0


def resolve_num_experts(hf: Mapping[str, Any]) -> int:
    """Total routed-expert count: first of :data:`EXPERT_COUNT_KEYS` whose value is >= 2, else 0."""
    for key in EXPERT_COUNT_KEYS:
        v = _get_int(hf, key)
        if v >= MOE_MIN_EXPERTS:
            return v
    return 0


def model_config_from_hf(hf: Mapping[str, Any], name: str = "") -> ModelConfig:
    """Build a :class:`ModelConfig` from a pivoted HF config dict (no model-name precision fallback).

    Raises :class:`ConfigError` when ``head_dim``, ``kv_lora_rank``,
    ``qk_rope_head_dim`` or ``first_k_dense_replace`` is negative.
    """

    def first_nonzero(*keys: str) -> int:
        for k in keys:
            v = _get_int(hf, k)
            if v != 0:
                return v
        return 0

    num_heads = _get_int(hf, "num_attention_heads")
    num_kv_heads = first_nonzero("num_key_value_heads", "num_kv_heads", "multi_query_group_num")
    if num_kv_heads == 0:
        num_kv_heads = num_heads

    bytes_per_param = 0
    torch_dtype = hf.get("torch_dtype")
    if isinstance(torch_dtype, str):
        bytes_per_param = DTYPE_BYTES.get(torch_dtype, 0)
    else:
        dtype = hf.get("dtype")
        if isinstance(dtype, str):
            bytes_per_param = DTYPE_BYTES.get(dtype, 0)

    intermediate_dim = first_nonzero("intermediate_size", "ffn_hidden_size")
    moe_ffn = _get_int(hf, "moe_intermediate_size")
    shared = _get_int(hf, "shared_expert_intermediate_size")
    if shared <= 0:
        shared = 0
        n_shared = _get_int(hf, "n_shared_experts")
        if n_shared > 0:
            shared = n_shared * (moe_ffn if moe_ffn != 0 else intermediate_dim)

    weight_bpp = 0.0
    qc = hf.get("quantization_config")
    if isinstance(qc, dict):
        weight_bpp = parse_quantization_config(qc)

    shape = {k: _get_int(hf, k) for k in ("head_dim", "kv_lora_rank", "qk_rope_head_dim", "first_k_dense_replace")}
    for key, val in shape.items():
        if val < 0:
            raise ConfigError(f"model config {name or '<hf>'}: {key} must be >= 0, got {val}")

    return ModelConfig(
        num_layers=_get_int(hf, "num_hidden_layers"),
        hidden_dim=_get_int(hf, "hidden_size"),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        vocab_size=_get_int(hf, "vocab_size"),
        bytes_per_param=float(bytes_per_param),
        intermediate_dim=intermediate_dim,
        num_local_experts=resolve_num_experts(hf),
        num_experts_per_tok=_get_int(hf, "num_experts_per_tok"),
        moe_expert_ffn_dim=moe_ffn,
        shared_expert_ffn_dim=shared,
        interleave_moe_layer_step=_get_int(hf, "interleave_moe_layer_step"),
        dense_intermediate_dim=_get_int(hf, "intermediate_size_mlp"),
        hidden_act=_get_str(hf, "hidden_act"),
        weight_bytes_per_param=weight_bpp,
        head_dim=shape["head_dim"],
        kv_lora_rank=shape["kv_lora_rank"],
        qk_rope_head_dim=shape["qk_rope_head_dim"],
        first_k_dense_replace=shape["first_k_dense_replace"],
        name=name,
        hf_config=hf,
    )


def infer_weight_bytes_from_model_name(name: str) -> float:
    """Weight bytes/param hinted by a model name (``w4a16`` -> 0.5, ``fp8`` -> 1.0); 0.0 if none."""
    m = _WXAY_RE.search(name)
    if m:
        bits = int(m.group(1))
        if 0 < bits <= _INT64_MAX:
            return bits / _BITS_PER_BYTE
    if _FP8_NAME_RE.search(name):
        return 1.0
    return 0.0


def apply_weight_precision_fallback(mc: ModelConfig, model_name: str) -> ModelConfig:
    """Second precision tier (CLI path): fill an unset weight width from the model name."""
    if mc.weight_bytes_per_param != 0:
        return mc
    wb = infer_weight_bytes_from_model_name(model_name)
    if wb == 0:
        return mc
    return replace(mc, weight_bytes_per_param=wb)


def extract_kv_capacity_params(hf: Mapping[str, Any]) -> KVCapacityParams:
    """The KV-capacity facts of a pivoted HF config.

    Raises :class:`ConfigError` when the config looks MoE (``n_shared_experts`` or
    ``num_experts_per_tok`` > 0) but has no total expert count.
    """
    hidden_act = _get_str(hf, "hidden_act")
    tie = hf.get("tie_word_embeddings")
    tie = tie if isinstance(tie, bool) else False
    n_experts = resolve_num_experts(hf)
    if n_experts >= MOE_MIN_EXPERTS:
        moe_ffn = _get_int(hf, "moe_intermediate_size")
        shared = _get_int(hf, "shared_expert_intermediate_size")
        if shared <= 0:
            shared = 0
            n_shared = _get_int(hf, "n_shared_experts")
            if n_shared > 0:
                shared = n_shared * (moe_ffn if moe_ffn != 0 else _get_int(hf, "intermediate_size"))
        return KVCapacityParams(True, n_experts, tie, hidden_act, moe_ffn, shared)
    for key in ("n_shared_experts", "num_experts_per_tok"):
        v = _get_int(hf, key)
        if v > 0:
            raise ConfigError(
                f"kv capacity params: {' / '.join(EXPERT_COUNT_KEYS)} must give the expert count of an MoE "
                f"model ({key}={v}), got none; set total KV blocks explicitly"
            )
    return KVCapacityParams(False, 0, tie, hidden_act, 0, 0)


def apply_rope_scaling(max_pos: int, model_type: str, rope_scaling: Any) -> Tuple[int, bool]:
    """Scale ``max_position_embeddings`` by ``rope_scaling.factor`` as vLLM/BLIS do.

    Returns ``(value, applied)``.  Not applied for gemma3 model types, a
    non-object ``rope_scaling``, types ``su``/``longrope``/``llama3``, or a
    factor that is not a number > 1.  ``yarn`` scales
    ``original_max_position_embeddings`` when that is > 0.
    """
    if max_pos <= 0:
        return max_pos, False
    if "gemma3" in model_type:
        return max_pos, False
    if not isinstance(rope_scaling, dict):
        return max_pos, False
    rope_type = rope_scaling.get("type")
    rope_type = rope_type if isinstance(rope_type, str) else ""
    if rope_type == "":
        rt = rope_scaling.get("rope_type")
        rope_type = rt if isinstance(rt, str) else ""
    if rope_type in ("su", "longrope", "llama3"):
        return max_pos, False
    factor = rope_scaling.get("factor")
    if not _is_number(factor):
        return max_pos, False
    factor = float(factor)
    if not factor > 1.0 or math.isnan(factor) or math.isinf(factor):
        return max_pos, False
    base = max_pos
    if rope_type == "yarn":
        orig = rope_scaling.get("original_max_position_embeddings")
        if _is_number(orig) and orig > 0:
            if float(orig) >= 9223372036854775807.0:
                return max_pos, False
            base = int(orig)
    product = float(base) * factor
    if product >= 9223372036854775807.0 or product < 0:
        return max_pos, False
    return int(product), True


def max_model_len_from_hf(hf: Mapping[str, Any]) -> int:
    """Max model length derived from ``max_position_embeddings`` and rope scaling; 0 when unknown."""
    max_pos = _get_int(hf, "max_position_embeddings")
    if max_pos <= 0:
        return 0
    scaled, _ = apply_rope_scaling(max_pos, _get_str(hf, "model_type"), hf.get("rope_scaling"))
    return scaled


def bundled_model_config_root() -> Path:
    """Folder holding the bundled ``<name>/config.json`` files."""
    return Path(__file__).resolve().parent / "data" / "model_configs"


def bundled_model_names() -> List[str]:
    """Sorted names of the bundled model configs."""
    root = bundled_model_config_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def _is_hf_config(obj: Mapping[str, Any]) -> bool:
    if "num_hidden_layers" in obj or "hidden_size" in obj:
        return True
    text = obj.get("text_config")
    return isinstance(text, dict) and ("num_hidden_layers" in text or "hidden_size" in text)


def _short_name(model: str) -> str:
    parts = model.split("/", 1)
    short = parts[1] if len(parts) == 2 else model
    short = os.path.normpath(short) if short else "."
    if ".." in short or os.path.isabs(short):
        raise ConfigError(f"resolve_model_config: model must be a plain <org>/<name>, got {model!r} (path components)")
    return short


def resolve_model_config(model_name: str, model_config_folder: "os.PathLike[str] | str | None" = None) -> ModelConfig:
    """The :class:`ModelConfig` the CLI uses for ``--model`` (name lower-cased, name-based precision applied).

    ``model_config_folder`` (a folder holding ``config.json``, or the file itself)
    takes precedence; otherwise the bundled config
    ``blis/data/model_configs/<name after first "/">/config.json`` is used.
    Raises :class:`ConfigError` listing the bundled names when nothing is found.
    """
    model = model_name.lower()
    if model_config_folder is not None and str(model_config_folder) != "":
        p = Path(model_config_folder)
        path = p if p.is_file() else p / "config.json"
        hf = load_hf_config(path)
    else:
        short = _short_name(model)
        path = bundled_model_config_root() / short / "config.json"
        hf = None
        if path.is_file():
            raw = _parse_json_object(path.read_text(encoding="utf-8"), f"resolve_model_config({path})")
            if _is_hf_config(raw):
                hf = _pivot_text_config(raw)
        if hf is None:
            raise ConfigError(
                f"resolve_model_config: model must have a bundled config.json or --model-config-folder, "
                f"got {model_name!r}; valid: {', '.join(bundled_model_names())}"
            )
    mc = model_config_from_hf(hf, name=model)
    return apply_weight_precision_fallback(mc, model)
