"""KV-cache capacity: bytes per token, model weight bytes and the auto-calculated block count.

Reproduces BLIS's ``KVBytesPerToken``, ``computeModelWeightBytes`` and
``CalculateKVBlocks`` (the llm-d capacity-planner formula) and the CLI's
max-model-len resolution.  Every invalid input raises :class:`ConfigError`.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

from .errors import ConfigError
from .hardware import HardwareCalib
from .model_config import (
    MOE_MIN_EXPERTS,
    KVCapacityParams,
    ModelConfig,
    extract_kv_capacity_params,
    max_model_len_from_hf,
)

_log = logging.getLogger(__name__)

__all__ = [
    "GIB_BYTES",
    "SWIGLU_ACTIVATIONS",
    "kv_bytes_per_token",
    "model_weight_bytes",
    "calculate_kv_blocks",
    "resolve_total_kv_blocks",
    "resolve_max_model_len",
    "DEFAULT_TOTAL_KV_BLOCKS",
]

#: ``--total-kv-blocks`` flag default, kept when auto-calculation is impossible.
DEFAULT_TOTAL_KV_BLOCKS = 1_000_000

GIB_BYTES = 1 << 30
ACTIVATION_DENSE_GIB = 5.5
ACTIVATION_MOE_GIB = 8.0
NON_TORCH_TP1_GIB = 0.15
NON_TORCH_TP_MULTI_GIB = 0.6
#: Activations accepted by the 3-matrix (gated) MLP weight estimate; "" means unset.
SWIGLU_ACTIVATIONS = ("", "geglu", "silu", "situ", "swiglu")


def _bad_positive(v: float) -> bool:
    return not (v > 0) or math.isinf(v)


def kv_bytes_per_token(mc: ModelConfig, tp: int) -> float:
    """KV-cache bytes one token occupies on one GPU at tensor parallelism ``tp``.

    MLA models store one ``kv_lora_rank + qk_rope_head_dim`` latent per layer,
    replicated on every GPU; others store K and V for ``num_kv_heads`` heads,
    split over ``tp`` (fewer KV heads than ``tp`` is accepted, optimistically).
    """
    where = "kv_bytes_per_token"
    if tp <= 0:
        raise ConfigError(f"{where}: tp must be > 0, got {tp}")
    if mc.num_layers <= 0:
        raise ConfigError(f"{where}: num_layers must be > 0, got {mc.num_layers}")
    if mc.num_heads <= 0:
        raise ConfigError(f"{where}: num_attention_heads must be > 0, got {mc.num_heads}")
    if mc.hidden_dim <= 0:
        raise ConfigError(f"{where}: hidden_dim must be > 0, got {mc.hidden_dim}")
    if _bad_positive(mc.bytes_per_param):
        raise ConfigError(f"{where}: bytes_per_param must be a finite number > 0, got {mc.bytes_per_param}")
    if mc.is_mla:
        width = mc.kv_lora_rank + mc.qk_rope_head_dim
        value = float(mc.num_layers) * float(width) * mc.bytes_per_param
        if value <= 0:
            raise ConfigError(
                f"{where}: kv_lora_rank + qk_rope_head_dim must be > 0, got {mc.kv_lora_rank} + {mc.qk_rope_head_dim}"
            )
        return value
    if mc.head_dim <= 0 and mc.hidden_dim % mc.num_heads != 0:
        raise ConfigError(
            f"{where}: hidden_dim must be divisible by num_attention_heads ({mc.num_heads}), got {mc.hidden_dim}"
        )
    nkv = mc.num_kv_heads
    if nkv < 0:
        raise ConfigError(f"{where}: num_kv_heads must be >= 0, got {nkv}")
    if nkv == 0:
        nkv = mc.num_heads
    if nkv >= tp and nkv % tp != 0:
        raise ConfigError(f"{where}: num_kv_heads ({nkv}) must be divisible by tp, got tp={tp}")
    value = float(mc.num_layers) * 2.0 * float(mc.effective_head_dim) * float(nkv) * mc.bytes_per_param / float(tp)
    if value <= 0:
        raise ConfigError(f"{where}: per-token KV bytes must be > 0, got {value}")
    return value


def model_weight_bytes(mc: ModelConfig, params: KVCapacityParams) -> int:
    """Total weight bytes of one model replica (embeddings, attention, 3-matrix MLP, norms, LM head).

    MoE layers count every routed expert, the shared experts and the router; the
    first ``first_k_dense_replace`` layers of an MoE model are dense.
    """
    h = mc.hidden_dim
    vocab = mc.vocab_size
    n_layers = mc.num_layers
    inter = mc.intermediate_dim
    kv_dim = mc.effective_kv_heads * mc.effective_head_dim
    attention = h * (h + 2 * kv_dim) + h * h
    dense_mlp = 3 * h * inter
    if params.is_moe and params.num_local_experts >= MOE_MIN_EXPERTS:
        expert_ffn = params.moe_expert_ffn_dim if params.moe_expert_ffn_dim > 0 else inter
        moe_mlp = 3 * h * expert_ffn * params.num_local_experts
        if params.shared_expert_ffn_dim > 0:
            moe_mlp += 3 * h * params.shared_expert_ffn_dim
        moe_mlp += params.num_local_experts * h
        prefix_mlp = 3 * h * mc.dense_intermediate_dim if mc.dense_intermediate_dim > 0 else dense_mlp
        k_dense = min(max(mc.first_k_dense_replace, 0), n_layers)
        mlp_total = k_dense * prefix_mlp + (n_layers - k_dense) * moe_mlp
    else:
        mlp_total = n_layers * dense_mlp
    lm_head = 0 if params.tie_word_embeddings else vocab * h
    total = vocab * h + n_layers * (attention + 2 * h) + mlp_total + lm_head + h
    return int(float(total) * mc.effective_weight_bytes_per_param)


def calculate_kv_blocks(
    mc: ModelConfig,
    hw: HardwareCalib,
    tp: int,
    dp: int,
    block_size: int,
    util: float,
    params: KVCapacityParams,
    adapter_bytes: int = 0,
) -> int:
    """KV blocks that fit on one instance after weights, activations, runtime overhead and adapters.

    ``util`` is the GPU memory fraction in (0, 1]; an MoE model with ``dp > 1``
    gets ``dp`` times the per-rank blocks.  Raises :class:`ConfigError` when the
    model does not fit (the message names the minimum GPUs per instance).
    """
    where = "calculate_kv_blocks"
    if not (0 < util <= 1.0) or math.isnan(util):
        raise ConfigError(f"{where}: gpu memory utilization must be in (0, 1], got {util}")
    if adapter_bytes < 0:
        raise ConfigError(f"{where}: adapter reserved bytes must be >= 0, got {adapter_bytes}")
    if block_size <= 0:
        raise ConfigError(f"{where}: block size must be > 0, got {block_size}")
    if dp < 1:
        raise ConfigError(f"{where}: dp must be >= 1, got {dp}")
    if mc.intermediate_dim <= 0:
        raise ConfigError(f"{where}: intermediate_dim must be > 0, got {mc.intermediate_dim}")
    if mc.vocab_size <= 0:
        raise ConfigError(f"{where}: vocab_size must be > 0, got {mc.vocab_size}")
    if _bad_positive(hw.memory_gib):
        raise ConfigError(f"{where}: GPU MemoryGiB must be a finite number > 0, got {hw.memory_gib}")
    wb = mc.weight_bytes_per_param
    if wb != 0 and (wb < 0 or math.isnan(wb) or math.isinf(wb)):
        raise ConfigError(f"{where}: weight_bytes_per_param must be > 0 when set, got {wb}")
    if params.hidden_act not in SWIGLU_ACTIVATIONS:
        raise ConfigError(
            f"{where}: hidden_act must be a SwiGLU-family activation, got {params.hidden_act!r}; "
            f"valid: {', '.join(a for a in SWIGLU_ACTIVATIONS if a)}"
        )
    per_token = kv_bytes_per_token(mc, tp)
    per_block = int(per_token * float(block_size))
    if per_block <= 0:
        raise ConfigError(f"{where}: per-block KV bytes must be > 0, got {per_block} (per token {per_token}, block {block_size})")

    avail_gib = hw.memory_gib * util * float(tp)
    weight_bytes = model_weight_bytes(mc, params)
    weights_gib = float(weight_bytes) / float(GIB_BYTES)
    act_gib = ACTIVATION_MOE_GIB if params.is_moe else ACTIVATION_DENSE_GIB
    non_torch_gib = (NON_TORCH_TP1_GIB if tp == 1 else NON_TORCH_TP_MULTI_GIB) * float(tp)
    adapter_gib = float(adapter_bytes) / float(GIB_BYTES)
    overhead_gib = weights_gib + act_gib + non_torch_gib + adapter_gib
    if overhead_gib >= avail_gib:
        per_gpu = hw.memory_gib * util
        per_gpu_capacity = per_gpu - NON_TORCH_TP_MULTI_GIB
        if per_gpu_capacity <= 0:
            raise ConfigError(
                f"{where}: per-GPU capacity must be > 0 GiB after {NON_TORCH_TP_MULTI_GIB} GiB non-torch overhead, "
                f"got {per_gpu:.2f} - {NON_TORCH_TP_MULTI_GIB} = {per_gpu_capacity:.2f} GiB; cannot fit the model with any TP"
            )
        min_gpus = int(math.ceil((weights_gib + act_gib + adapter_gib) / per_gpu_capacity))
        raise ConfigError(
            f"{where}: model overhead must fit in GPU memory, got {overhead_gib:.2f} GiB "
            f"({weights_gib:.2f} weights + {act_gib:.2f} activation + {non_torch_gib:.2f} non-torch + "
            f"{adapter_gib:.2f} lora-adapter-reservation) > {avail_gib:.2f} GiB available "
            f"({hw.memory_gib:.1f} GiB x {util * 100:.0f}% util x {tp} GPUs). "
            f"Minimum GPUs required per instance: {min_gpus}"
        )
    alloc_gib = avail_gib - overhead_gib
    alloc_bytes = int(alloc_gib * float(GIB_BYTES))
    blocks = alloc_bytes // per_block
    if blocks <= 0:
        raise ConfigError(f"{where}: KV blocks must be > 0, got {blocks} (allocatable {alloc_gib:.2f} GiB, per block {per_block} B)")
    if params.is_moe and dp > 1:
        blocks *= dp
    return blocks


def resolve_total_kv_blocks(
    mc: ModelConfig,
    hw: HardwareCalib,
    tp: int,
    dp: int = 1,
    block_size: int = 16,
    util: float = 0.9,
    total_kv_blocks: Optional[int] = None,
    adapter_bytes: int = 0,
    default_blocks: int = DEFAULT_TOTAL_KV_BLOCKS,
) -> int:
    """KV blocks per instance as the CLI resolves them.

    An explicit ``total_kv_blocks`` wins.  Otherwise, when the config's capacity
    facts cannot be extracted or the GPU has no ``MemoryGiB``, ``default_blocks``
    is kept (with a warning); else :func:`calculate_kv_blocks` decides and its
    errors propagate (they are fatal on the CLI).
    """
    if total_kv_blocks is not None:
        return int(total_kv_blocks)
    try:
        params = extract_kv_capacity_params(mc.hf_config)
    except ConfigError as exc:
        _log.warning("could not extract KV capacity params (%s); using total-kv-blocks=%d", exc, default_blocks)
        return default_blocks
    if not hw.memory_gib > 0:
        _log.warning("GPU MemoryGiB not available in the hardware config; using total-kv-blocks=%d", default_blocks)
        return default_blocks
    return calculate_kv_blocks(mc, hw, tp, dp, block_size, util, params, adapter_bytes)


def resolve_max_model_len(
    mc: ModelConfig,
    total_kv_blocks: int,
    block_size: int,
    max_model_len: Optional[int] = None,
) -> int:
    """Max model length as the CLI resolves it; 0 means unlimited.

    ``max_model_len`` (the explicit flag, None when not given) wins over the
    config's ``max_position_embeddings`` (rope-scaled); a positive result is
    capped at ``total_kv_blocks * block_size`` when its blocks exceed the cache.
    """
    if max_model_len is None:
        max_len = max_model_len_from_hf(mc.hf_config) if mc.hf_config else 0
    else:
        max_len = int(max_model_len)
    if max_len > 0 and block_size > 0:
        blocks_needed = -(-max_len // block_size)
        if blocks_needed > total_kv_blocks:
            max_len = total_kv_blocks * block_size
    return max_len
