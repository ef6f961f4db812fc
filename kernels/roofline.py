"""Roofline step time: per-request FLOPs and HBM bytes combined as max(compute, memory).

Kernel contract (see :mod:`blis.kernels.latency` for the batch arguments):
``roofline_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)``
returns an int64 >= 1.  ``params`` is the float64 vector built by
:func:`pack_roofline_params`; the ``RF_*`` constants index it.

The arithmetic mirrors BLIS's ``roofline.go`` operation by operation (same
operand order, Go's ``math.Pow`` for the MoE expert-coverage term), so results
match BLIS to the microsecond.  The MLP counts 2 weight matrices (a calibration
choice), TP divides every term, and there is no communication term.
"""
import numpy as np

from .gomath import clamp_nb, go_pow_nb
from .jit import njit

# --- params layout -------------------------------------------------------------------
RF_D = 0  # hidden dim d
RF_L = 1  # number of layers L
RF_H = 2  # attention heads H
RF_HK = 3  # KV heads (H when the config gives 0)
RF_DH = 4  # d / H (float division; never the config's head_dim)
RF_DKV = 5  # HK * DH
RF_FM = 6  # MoE expert FFN dim (moe_intermediate_size, else F)
RF_FD = 7  # dense-layer FFN dim (intermediate_size_mlp, else F)
RF_K = 8  # experts per token
RF_N = 9  # routed experts (0 for dense)
RF_NMOE = 10  # number of MoE layers
RF_NDENSE = 11  # number of dense layers
RF_BPP = 12  # compute / KV / activation bytes per param
RF_WB = 13  # effective weight bytes per param
RF_PEAK = 14  # FLOP/s used (TFlopsFP8*1e12 for 1-byte weights on FP8 GPUs, else TFlopsPeak*1e12)
RF_BW = 15  # HBM bytes/s (BwPeakTBs*1e12)
RF_TP = 16  # tensor parallelism
RF_MFU_PREFILL = 17  # MFU applied to prefill compute
RF_MFU_DECODE = 18  # MFU applied to decode compute
RF_NPARAMS = 19

#: MLP weight matrices counted by the roofline (up + down).
MLP_MATRICES = 2.0


def pack_roofline_params(mc, hw, tp):
    """The roofline ``params`` vector for model ``mc``, GPU ``hw`` and tensor parallelism ``tp``.

    ``mc`` / ``hw`` are :class:`blis.model_config.ModelConfig` /
    :class:`blis.hardware.HardwareCalib` (read by attribute); validate them first.
    """
    p = np.zeros(RF_NPARAMS, dtype=np.float64)
    d = float(mc.hidden_dim)
    h = float(mc.num_heads)
    hk = float(mc.num_kv_heads)
    if hk == 0:
        hk = h
    dh = d / h
    ff = float(mc.intermediate_dim) if mc.intermediate_dim > 0 else 4.0 * d
    n_moe, n_dense = mc.moe_dense_layer_split()
    wb = mc.effective_weight_bytes_per_param
    peak = hw.tflops_peak * 1e12
    if wb == 1.0 and hw.tflops_fp8 > 0:
        peak = hw.tflops_fp8 * 1e12
    p[RF_D] = d
    p[RF_L] = float(mc.num_layers)
    p[RF_H] = h
    p[RF_HK] = hk
    p[RF_DH] = dh
    p[RF_DKV] = hk * dh
    p[RF_FM] = float(mc.moe_expert_ffn_dim) if mc.moe_expert_ffn_dim > 0 else ff
    p[RF_FD] = float(mc.dense_intermediate_dim) if mc.dense_intermediate_dim > 0 else ff
    p[RF_K] = float(mc.num_experts_per_tok)
    p[RF_N] = float(mc.num_local_experts)
    p[RF_NMOE] = float(n_moe)
    p[RF_NDENSE] = float(n_dense)
    p[RF_BPP] = float(mc.bytes_per_param)
    p[RF_WB] = float(wb)
    p[RF_PEAK] = peak
    p[RF_BW] = hw.bw_peak_tbs * 1e12
    p[RF_TP] = float(tp)
    p[RF_MFU_PREFILL] = float(hw.mfu_prefill)
    p[RF_MFU_DECODE] = float(hw.mfu_decode)
    return p


@njit
def roofline_flops_nb(p, s, t):
    """FLOPs of one request with ``s`` cached and ``t`` new tokens (attention + MLP + vector ops)."""
    d = p[RF_D]
    n_layers = p[RF_L]
    h = p[RF_H]
    dh = p[RF_DH]
    dkv = p[RF_DKV]
    qkv = 2 * t * (d * d + 2 * d * dkv)
    proj = 2 * t * d * d
    gemm = (qkv + proj) * n_layers
    ctx = s
    if t > 1:
        ctx = s + (t - 1) / 2.0
    attn = 4 * h * t * ctx * dh
    vector = (5 * h * t * ctx) + 2 * t * d
    gemm += attn * n_layers
    sram = vector * n_layers
    n_moe = p[RF_NMOE]
    n_dense = p[RF_NDENSE]
    if n_moe > 0:
        gemm += 2 * t * (MLP_MATRICES * d * p[RF_FM]) * p[RF_K] * n_moe
    if n_dense > 0:
        gemm += 2 * t * (MLP_MATRICES * d * p[RF_FD]) * n_dense
    return gemm + sram


@njit
def roofline_weight_bytes_nb(p, t):
    """Weight bytes one forward pass over ``t`` tokens loads (MoE: expected distinct experts)."""
    d = p[RF_D]
    dkv = p[RF_DKV]
    attn_w = d * (d + 2 * dkv) + (d * d)
    moe_w = 0.0
    n_moe = p[RF_NMOE]
    if n_moe > 0:
        n = p[RF_N]
        per_layer = MLP_MATRICES * d * p[RF_FM]
        n_eff = n * (1.0 - go_pow_nb((n - p[RF_K]) / n, t))
        moe_w = per_layer * n_eff * n_moe
    dense_w = 0.0
    n_dense = p[RF_NDENSE]
    if n_dense > 0:
        dense_w = MLP_MATRICES * d * p[RF_FD] * n_dense
    return ((attn_w * p[RF_L]) + (moe_w + dense_w)) * p[RF_WB]


@njit
def roofline_dynamic_bytes_nb(p, s, t):
    """Per-request HBM bytes excluding weights, computed as ``total - weights`` like BLIS."""
    n_layers = p[RF_L]
    bpp = p[RF_BPP]
    w = roofline_weight_bytes_nb(p, t)
    kv_per_token = 2 * n_layers * p[RF_HK] * p[RF_DH] * bpp
    grow = kv_per_token * t
    access = kv_per_token * s
    act = n_layers * p[RF_D] * bpp * t
    total = w + grow + access + act
    return total - w


@njit
def roofline_step_us_nb(params, pf_pi, pf_new, n_pf, dc_pi, n_dc):
    """Unclamped step duration in microseconds (float); 0.0 for an empty batch."""
    if n_pf == 0 and n_dc == 0:
        return 0.0
    tp = params[RF_TP]
    pf_flops_rate = params[RF_PEAK] * params[RF_MFU_PREFILL]
    dc_flops_rate = params[RF_PEAK] * params[RF_MFU_DECODE]
    comp = 0.0
    dyn = 0.0
    n_tok = np.int64(0)
    for k in range(n_pf):
        s = float(pf_pi[k])
        t = float(pf_new[k])
        comp += roofline_flops_nb(params, s, t) / tp / pf_flops_rate
        dyn += roofline_dynamic_bytes_nb(params, s, t) / tp
        n_tok += np.int64(pf_new[k])
    for k in range(n_dc):
        s = float(dc_pi[k])
        comp += roofline_flops_nb(params, s, 1.0) / tp / dc_flops_rate
        dyn += roofline_dynamic_bytes_nb(params, s, 1.0) / tp
    n_tok += n_dc
    wbytes = roofline_weight_bytes_nb(params, float(n_tok)) / tp
    mem_s = (wbytes + dyn) / params[RF_BW]
    return max(comp, mem_s) * 1e6


@njit
def roofline_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched):
    """Roofline step time in microseconds, >= 1 for every batch including the empty one."""
    v = clamp_nb(roofline_step_us_nb(params, pf_pi, pf_new, n_pf, dc_pi, n_dc))
    if v < 1:
        return np.int64(1)
    return v
