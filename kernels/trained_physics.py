"""Trained-physics step time: roofline basis functions weighted by fitted beta coefficients.

Kernel contract (batch arguments as in :mod:`blis.kernels.latency`):
``trained_physics_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)``
returns an int64 >= 1; the empty batch (``n_sched == 0``) returns 1.
``params`` is built by :func:`pack_trained_physics_params`; ``TPH_*`` index it.

Mirrors BLIS's ``trained_physics_model.go`` operation by operation: prefill
and decode compute/KV terms, weight loading (routed experts charged as
``N / (TP*DP)`` whole experts), TP all-reduce, the DP=1 MoE reduction, the
DP>1 MoE dispatch (all-gather or all-to-all volume), and per-layer,
per-request, per-step and per-interleaved-MoE-layer overheads.
"""
import numpy as np

from .gomath import clamp_nb
from .jit import njit

# --- params layout -------------------------------------------------------------------
TPH_L = 0  # layers
TPH_D = 1  # hidden dim
TPH_DKV = 2  # float(kv_heads * (hidden // heads))
TPH_DH = 3  # float(hidden // heads)
TPH_TP = 4  # tensor parallelism
TPH_HP = 5  # heads per GPU: float(heads) / tp
TPH_DP = 6  # data parallelism (>= 1)
TPH_TPDP = 7  # tp * dp
TPH_KEFF = 8  # max(1, experts per token)
TPH_N = 9  # routed experts
TPH_GROUP = 10  # MoE group: tp*dp for MoE, tp for dense
TPH_NMOE = 11  # MoE layers
TPH_NDENSE = 12  # dense layers
TPH_FFM = 13  # MoE expert FFN dim
TPH_FFD = 14  # dense FFN dim
TPH_SHARED = 15  # shared-expert FFN dim (0 = none)
TPH_WB = 16  # effective weight bytes per param
TPH_AB = 17  # activation bytes per param (BytesPerParam)
TPH_FLOPS_US = 18  # FLOP per microsecond (FP8 peak for 1-byte weights on FP8 GPUs)
TPH_BW_US = 19  # HBM bytes per microsecond
TPH_IS_MOE = 20  # 1.0 for MoE models
TPH_INTERLEAVED = 21  # 1.0 when MoE layers are interleaved with dense ones
TPH_ALL2ALL = 22  # 1.0 for the all-to-all comm family, 0.0 for all-gather
TPH_PREFILL_SPLIT = 23  # 1.0 when >= 9 betas were given
TPH_DECODE_SPLIT = 24  # 1.0 when >= 10 betas were given
TPH_TP_FACTOR = 25  # float(tp-1) / float(tp)
TPH_BETA = 26  # 11 beta slots start here
TPH_NBETA = 11
TPH_NPARAMS = TPH_BETA + TPH_NBETA

#: KV-cache terms always assume 2-byte elements.
KV_ELEMENT_BYTES = 2.0


def pack_trained_physics_params(mc, hw, tp, dp, beta, all2all):
    """The trained-physics ``params`` vector (inputs already validated).

    ``beta`` is the user's beta list (7..11+ entries; copied into 11 slots,
    slot 10 defaults to slot 3 when fewer than 11 are given); ``all2all``
    selects the all-to-all MoE dispatch family.
    """
    p = np.zeros(TPH_NPARAMS, dtype=np.float64)
    n_heads = mc.num_heads
    hd = mc.hidden_dim // n_heads
    n_kv = mc.num_kv_heads if mc.num_kv_heads != 0 else n_heads
    n_moe, n_dense = mc.moe_dense_layer_split()
    dp = max(1, int(dp))
    group = tp * dp if mc.is_moe else tp
    wb = mc.effective_weight_bytes_per_param
    flops_us = hw.tflops_peak * 1e6
    if wb == 1.0 and hw.tflops_fp8 > 0:
        flops_us = hw.tflops_fp8 * 1e6
    tpf = float(tp)
    p[TPH_L] = float(mc.num_layers)
    p[TPH_D] = float(mc.hidden_dim)
    p[TPH_DKV] = float(n_kv * hd)
    p[TPH_DH] = float(hd)
    p[TPH_TP] = tpf
    p[TPH_HP] = float(n_heads) / tpf
    p[TPH_DP] = float(dp)
    p[TPH_TPDP] = tpf * float(dp)
    p[TPH_KEFF] = float(max(1, mc.num_experts_per_tok))
    p[TPH_N] = float(mc.num_local_experts)
    p[TPH_GROUP] = float(group)
    p[TPH_NMOE] = float(n_moe)
    p[TPH_NDENSE] = float(n_dense)
    p[TPH_FFM] = float(mc.moe_expert_ffn_dim if mc.moe_expert_ffn_dim > 0 else mc.intermediate_dim)
    p[TPH_FFD] = float(mc.dense_intermediate_dim if mc.dense_intermediate_dim > 0 else mc.intermediate_dim)
    p[TPH_SHARED] = float(mc.shared_expert_ffn_dim)
    p[TPH_WB] = float(wb)
    p[TPH_AB] = float(mc.bytes_per_param)
    p[TPH_FLOPS_US] = flops_us
    p[TPH_BW_US] = hw.bw_peak_tbs * 1e6
    p[TPH_IS_MOE] = 1.0 if mc.is_moe else 0.0
    p[TPH_INTERLEAVED] = 1.0 if (mc.interleave_moe_layer_step > 0 and mc.is_moe) else 0.0
    p[TPH_ALL2ALL] = 1.0 if all2all else 0.0
    p[TPH_PREFILL_SPLIT] = 1.0 if len(beta) >= 9 else 0.0
    p[TPH_DECODE_SPLIT] = 1.0 if len(beta) >= 10 else 0.0
    p[TPH_TP_FACTOR] = float(tp - 1) / float(tp)
    slots = [0.0] * TPH_NBETA
    for i, b in enumerate(list(beta)[:TPH_NBETA]):
        slots[i] = float(b)
    if len(beta) < TPH_NBETA:
        slots[10] = slots[3]
    p[TPH_BETA:TPH_BETA + TPH_NBETA] = slots
    return p


@njit(inner=True)
def _ffn_flops_nb(p, tokens, d, tpdp):
    """MoE (routed + shared) and dense FFN FLOPs for a token population."""
    ffn = 0.0
    n_moe = p[TPH_NMOE]
    if n_moe > 0:
        compute_tok = tokens * p[TPH_KEFF] / p[TPH_GROUP]
        ffn += n_moe * compute_tok * 6 * d * p[TPH_FFM]
        shared = p[TPH_SHARED]
        if shared != 0:
            ffn += n_moe * tokens * 6 * d * shared / tpdp
    n_dense = p[TPH_NDENSE]
    if n_dense > 0:
        ffn += n_dense * tokens * 1 * 6 * d * p[TPH_FFD] / tpdp
    return ffn


@njit(inner=True)
def _all_reduce_us_nb(p, units, tokens):
    """Ring all-reduce basis over the TP group (0 when TP == 1)."""
    if p[TPH_TP] <= 1:
        return 0.0
    return units * tokens * p[TPH_D] * p[TPH_AB] * 2.0 * p[TPH_TP_FACTOR] / p[TPH_BW_US]


@njit
def trained_physics_step_us_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched):
    """Unclamped step duration in microseconds (float) for a non-empty batch."""
    p = params
    n_layers = p[TPH_L]
    d = p[TPH_D]
    dkv = p[TPH_DKV]
    dh = p[TPH_DH]
    tp = p[TPH_TP]
    hp = p[TPH_HP]
    dpf = p[TPH_DP]
    tpdp = p[TPH_TPDP]
    flops_us = p[TPH_FLOPS_US]
    bw_us = p[TPH_BW_US]
    batch_size = float(n_sched)

    t_pf = 0.0
    pf_attn = 0.0
    for k in range(n_pf):
        ti = float(pf_new[k])
        si = float(pf_len[k])
        t_pf += ti
        pf_attn += 4 * hp * ti * (si + ti / 2) * dh
    t_dc = 0.0
    ctx = 0.0
    for k in range(n_dc):
        t_dc += 1
        ctx += float(dc_pi[k])

    t_pf_c = 0.0
    if t_pf > 0:
        f_proj = n_layers * 2 * t_pf * d * (2 * d + 2 * dkv) / tpdp
        f_attn = n_layers * pf_attn / dpf
        f_ffn = _ffn_flops_nb(p, t_pf, d, tpdp)
        t_pf_c = (f_proj + f_attn + f_ffn) / flops_us
    t_pf_kv = 0.0
    if t_pf > 0:
        t_pf_kv = n_layers * 2 * (dkv / tpdp) * t_pf * KV_ELEMENT_BYTES / bw_us
    t_dc_c = 0.0
    if t_dc > 0:
        f_proj = n_layers * 2 * t_dc * d * (2 * d + 2 * dkv) / tpdp
        f_attn = n_layers * 4 * hp * ctx * dh / dpf
        f_ffn = _ffn_flops_nb(p, t_dc, d, tpdp)
        t_dc_c = (f_proj + f_attn + f_ffn) / flops_us
    t_dc_kv = 0.0
    if t_dc > 0:
        t_dc_kv = n_layers * 2 * (dkv / tpdp) * KV_ELEMENT_BYTES * (ctx + t_dc) / bw_us

    wb = p[TPH_WB]
    b_attn = n_layers * d * (2 * d + 2 * dkv) * wb / tp
    b_ffn = 0.0
    n_moe = p[TPH_NMOE]
    n_dense = p[TPH_NDENSE]
    if n_moe > 0:
        expert_count = p[TPH_N] / p[TPH_GROUP]
        b_ffn += n_moe * expert_count * 3 * d * p[TPH_FFM] * wb
        if p[TPH_SHARED] > 0:
            b_ffn += n_moe * 3 * d * p[TPH_SHARED] * wb / tp
    if n_dense > 0:
        b_ffn += n_dense * 1 * 3 * d * p[TPH_FFD] * wb / tp
    t_w = (b_attn + b_ffn) / bw_us

    t_tot = t_pf + t_dc
    t_attn = 0.0
    t_dffn = 0.0
    if tp > 1:
        t_attn = _all_reduce_us_nb(p, n_layers, t_tot) / dpf
        t_dffn = _all_reduce_us_nb(p, n_dense, t_tot) / dpf
    is_moe = p[TPH_IS_MOE] != 0.0
    t_moe_red = 0.0
    if is_moe and n_moe > 0 and dpf == 1.0 and tp > 1:
        t_moe_red = _all_reduce_us_nb(p, n_moe, t_tot)
    t_disp = 0.0
    if is_moe and dpf > 1:
        group = p[TPH_GROUP]
        ab = p[TPH_AB]
        if p[TPH_ALL2ALL] != 0.0:
            comm_tok = (t_tot / dpf) * p[TPH_KEFF] * (group - 1) / group * 2
            basis = comm_tok * d * ab / bw_us
        else:
            basis = (t_tot / dpf) * (group - 1) / group * 2 * d * ab / bw_us
        t_disp = basis * n_moe

    b = TPH_BETA
    if p[TPH_PREFILL_SPLIT] != 0.0:
        pf_term = p[b + 0] * t_pf_c + p[b + 8] * t_pf_kv
    else:
        pf_term = p[b + 0] * max(t_pf_c, t_pf_kv)
    if p[TPH_DECODE_SPLIT] != 0.0:
        dc_term = p[b + 1] * t_dc_c + p[b + 9] * t_dc_kv
    else:
        dc_term = p[b + 1] * max(t_dc_c, t_dc_kv)
    moe_scaling = 1.0 if p[TPH_INTERLEAVED] != 0.0 else 0.0
    return (
        pf_term
        + dc_term
        + p[b + 2] * t_w
        + p[b + 3] * (t_attn + t_dffn + t_moe_red)
        + p[b + 10] * t_disp
        + p[b + 4] * n_layers
        + p[b + 5] * batch_size
        + p[b + 6]
        + p[b + 7] * moe_scaling * n_moe
    )


@njit
def trained_physics_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched):
    """Trained-physics step time in microseconds, >= 1; exactly 1 for the empty batch."""
    if n_sched == 0:
        return np.int64(1)
    v = clamp_nb(trained_physics_step_us_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched))
    if v < 1:
        return np.int64(1)
    return v
