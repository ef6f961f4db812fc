"""Plain-Python twins of the step-time kernels, written straight from the spec.

Each twin reads a ModelConfig / HardwareCalib directly (not the packed params
vector), walks a batch given as a list of request dicts, and keeps Go's operand
order, so the compiled kernels (and their parameter packing) can be compared
with it exactly.  A request dict has ``pi`` (ProgressIndex), ``new``
(NumNewTokens), ``input_len`` and ``outputs`` (number of output tokens so far).
"""
import math

import numpy as np

INT64_MAX = 2 ** 63 - 1


def go_pow(x, n):
    """Go ``math.Pow(x, n)`` for an integer ``n >= 0`` (repeated squaring on the frexp mantissa)."""
    n = int(n)
    if n == 0 or x == 1.0:
        return 1.0
    if n == 1:
        return x
    if x == 0.0:
        return 0.0
    m, e = math.frexp(x)
    acc, acc_exp = 1.0, 0
    while n != 0:
        if e < -4096 or e > 4096:
            acc_exp += e
            break
        if n & 1:
            acc *= m
            acc_exp += e
        m *= m
        e *= 2
        if m < 0.5:
            m += m
            e -= 1
        n >>= 1
    return math.ldexp(acc, acc_exp)


def clamp(v):
    """Go ``clampToInt64``."""
    if math.isnan(v) or v >= 9223372036854775808.0:
        return INT64_MAX
    return int(v)


def classify(batch):
    """Split a batch into prefill ``(pi, new, input_len)`` tuples and decode ``pi`` values (BLIS rule)."""
    prefills, decodes = [], []
    for r in batch:
        if r["pi"] < r["input_len"]:
            prefills.append((r["pi"], r["new"], r["input_len"]))
        elif r["outputs"] > 0:
            decodes.append(r["pi"])
    return prefills, decodes


def batch_arrays(batch):
    """Kernel arguments ``(pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)`` for a batch."""
    prefills, decodes = classify(batch)
    pf = np.array(prefills, dtype=np.int64).reshape(-1, 3)
    dc = np.array(decodes, dtype=np.int64)
    return (
        np.ascontiguousarray(pf[:, 0]),
        np.ascontiguousarray(pf[:, 1]),
        np.ascontiguousarray(pf[:, 2]),
        len(prefills),
        dc,
        len(decodes),
        len(batch),
    )


def _layer_split(mc):
    if mc.interleave_moe_layer_step > 0 and mc.num_local_experts >= 2:
        n_moe = mc.num_layers // (mc.interleave_moe_layer_step + 1)
        return n_moe, mc.num_layers - n_moe
    if mc.num_local_experts >= 2:
        return mc.num_layers, 0
    return 0, mc.num_layers


def _ewbpp(mc):
    return mc.weight_bytes_per_param if mc.weight_bytes_per_param > 0 else mc.bytes_per_param


# ---------------------------------------------------------------------------------------
# Roofline
# ---------------------------------------------------------------------------------------


def roofline_flops(mc, seq, new_tokens):
    d = float(mc.hidden_dim)
    n_layers = float(mc.num_layers)
    h = float(mc.num_heads)
    hk = float(mc.num_kv_heads)
    if hk == 0:
        hk = h
    dh = d / h
    dff = 4.0 * d
    if mc.intermediate_dim > 0:
        dff = float(mc.intermediate_dim)
    s = float(seq)
    t = float(new_tokens)
    dkv = hk * dh
    qkv = 2 * t * (d * d + 2 * d * dkv)
    proj = 2 * t * d * d
    gemm = (qkv + proj) * n_layers
    ctx = s
    if t > 1:
        ctx = s + (t - 1) / 2.0
    attn = 4 * h * t * ctx * dh
    rope = 2 * t * d
    vector = (5 * h * t * ctx) + rope
    gemm = gemm + attn * n_layers
    sram = vector * n_layers
    n_moe, n_dense = _layer_split(mc)
    if n_moe > 0:
        fm = float(mc.moe_expert_ffn_dim) if mc.moe_expert_ffn_dim > 0 else dff
        per_layer = 2 * t * (2.0 * d * fm) * float(mc.num_experts_per_tok)
        gemm = gemm + per_layer * float(n_moe)
    if n_dense > 0:
        fd = float(mc.dense_intermediate_dim) if mc.dense_intermediate_dim > 0 else dff
        per_layer = 2 * t * (2.0 * d * fd)
        gemm = gemm + per_layer * float(n_dense)
    return gemm + sram


def roofline_mem(mc, seq, new_tokens, with_kv):
    """``(total_bytes, weight_bytes)`` of one call of BLIS's calculateMemoryAccessBytes."""
    d = float(mc.hidden_dim)
    n_layers = float(mc.num_layers)
    h = float(mc.num_heads)
    hk = float(mc.num_kv_heads)
    if hk == 0:
        hk = h
    dh = d / h
    s = float(seq)
    t = float(new_tokens)
    dff = 4.0 * d
    if mc.intermediate_dim > 0:
        dff = float(mc.intermediate_dim)
    dkv = hk * dh
    attn_w = d * (d + 2 * dkv) + (d * d)
    n_moe, n_dense = _layer_split(mc)
    moe_w = 0.0
    if n_moe > 0:
        fm = float(mc.moe_expert_ffn_dim) if mc.moe_expert_ffn_dim > 0 else dff
        per_layer = 2.0 * d * fm
        n = float(mc.num_local_experts)
        k = float(mc.num_experts_per_tok)
        n_eff = n * (1.0 - go_pow((n - k) / n, t))
        moe_w = per_layer * n_eff * float(n_moe)
    dense_w = 0.0
    if n_dense > 0:
        fd = float(mc.dense_intermediate_dim) if mc.dense_intermediate_dim > 0 else dff
        dense_w = (2.0 * d * fd) * float(n_dense)
    weights = ((attn_w * n_layers) + (moe_w + dense_w)) * _ewbpp(mc)
    grow = 0.0
    access = 0.0
    if with_kv:
        grow = (2 * n_layers * hk * dh * mc.bytes_per_param) * t
        access = (2 * n_layers * hk * dh * mc.bytes_per_param) * s
    act = n_layers * d * mc.bytes_per_param * t
    return weights + grow + access + act, weights


def roofline_terms(mc, hw, tp, batch):
    """Intermediate values of one roofline step: comp_s, mem_s, weight_bytes, dyn_bytes, step_us."""
    prefills, decodes = classify(batch)
    peak = hw.tflops_peak * 1e12
    if _ewbpp(mc) == 1.0 and hw.tflops_fp8 > 0:
        peak = hw.tflops_fp8 * 1e12
    bw = hw.bw_peak_tbs * 1e12
    if not prefills and not decodes:
        return {"comp_s": 0.0, "mem_s": 0.0, "weight_bytes": 0.0, "dyn_bytes": 0.0, "step_us": 0.0}
    tpf = float(tp)
    comp = 0.0
    dyn = 0.0
    for pi, new, _ in prefills:
        comp += roofline_flops(mc, pi, new) / tpf / (peak * hw.mfu_prefill)
        total, w = roofline_mem(mc, pi, new, True)
        dyn += (total - w) / tpf
    for pi in decodes:
        comp += roofline_flops(mc, pi, 1) / tpf / (peak * hw.mfu_decode)
        total, w = roofline_mem(mc, pi, 1, True)
        dyn += (total - w) / tpf
    n_tok = sum(new for _, new, _ in prefills) + len(decodes)
    _, w_all = roofline_mem(mc, 0, n_tok, False)
    wbytes = w_all / tpf
    mem_s = (wbytes + dyn) / bw
    return {
        "comp_s": comp,
        "mem_s": mem_s,
        "weight_bytes": w_all,
        "dyn_bytes": dyn,
        "step_us": max(comp, mem_s) * 1e6,
    }


def roofline_step_us(mc, hw, tp, batch):
    """Unclamped roofline step time in microseconds."""
    return roofline_terms(mc, hw, tp, batch)["step_us"]


def roofline_step_time(mc, hw, tp, batch):
    """Roofline StepTime (>= 1)."""
    return max(1, clamp(roofline_step_us(mc, hw, tp, batch)))


# ---------------------------------------------------------------------------------------
# Trained physics
# ---------------------------------------------------------------------------------------

ALL2ALL_BACKENDS = {"pplx", "deepep_high_throughput", "deepep_low_latency", "mori", "flashinfer_all2allv"}


def trained_physics_terms(mc, hw, tp, batch, beta, dp=1, comm_backend=""):
    """Every basis term of one trained-physics step plus ``step_us`` (unclamped)."""
    betas = [0.0] * 11
    for i, b in enumerate(beta[:11]):
        betas[i] = float(b)
    if len(beta) < 11:
        betas[10] = betas[3]
    prefill_split = len(beta) >= 9
    decode_split = len(beta) >= 10
    is_moe = mc.num_local_experts >= 2
    hd = mc.hidden_dim // mc.num_heads
    n_kv = mc.num_kv_heads if mc.num_kv_heads != 0 else mc.num_heads
    dkv_i = n_kv * hd
    n_moe, n_dense = _layer_split(mc)
    ffm = mc.moe_expert_ffn_dim if mc.moe_expert_ffn_dim > 0 else mc.intermediate_dim
    ffd = mc.dense_intermediate_dim if mc.dense_intermediate_dim > 0 else mc.intermediate_dim
    k_eff = float(max(1, mc.num_experts_per_tok))
    dp = max(1, dp)
    group = tp * dp if is_moe else tp
    shared = mc.shared_expert_ffn_dim
    wb = _ewbpp(mc)
    ab = mc.bytes_per_param
    flops_us = hw.tflops_peak * 1e6
    if wb == 1.0 and hw.tflops_fp8 > 0:
        flops_us = hw.tflops_fp8 * 1e6
    bw_us = hw.bw_peak_tbs * 1e6
    all2all = (comm_backend or "allgather_reducescatter") in ALL2ALL_BACKENDS

    n_layers = float(mc.num_layers)
    d = float(mc.hidden_dim)
    dkv = float(dkv_i)
    dh = float(hd)
    tpf = float(tp)
    hp = float(mc.num_heads) / tpf
    dpf = float(dp)
    tpdp = tpf * dpf
    size = float(len(batch))

    t_pf = t_dc = ctx = pf_attn = 0.0
    for r in batch:
        if r["pi"] < r["input_len"]:
            ti = float(r["new"])
            si = float(r["input_len"])
            t_pf += ti
            pf_attn += 4 * hp * ti * (si + ti / 2) * dh
        elif r["outputs"] > 0:
            t_dc += 1
            ctx += float(r["pi"])

    def ffn_flops(tokens):
        f = 0.0
        if n_moe > 0:
            compute_tok = tokens * k_eff / float(group)
            f += float(n_moe) * compute_tok * 6 * d * float(ffm)
            if shared != 0:
                f += float(n_moe) * tokens * 6 * d * float(shared) / tpdp
        if n_dense > 0:
            f += float(n_dense) * tokens * 1 * 6 * d * float(ffd) / tpdp
        return f

    t_pf_c = 0.0
    if t_pf > 0:
        f_proj = n_layers * 2 * t_pf * d * (2 * d + 2 * dkv) / tpdp
        f_attn = n_layers * pf_attn / dpf
        t_pf_c = (f_proj + f_attn + ffn_flops(t_pf)) / flops_us
    t_pf_kv = 0.0
    if t_pf > 0:
        t_pf_kv = (n_layers * 2 * (dkv / tpdp) * t_pf * 2.0) / bw_us
    t_dc_c = 0.0
    if t_dc > 0:
        f_proj = n_layers * 2 * t_dc * d * (2 * d + 2 * dkv) / tpdp
        f_attn = n_layers * 4 * hp * ctx * dh / dpf
        t_dc_c = (f_proj + f_attn + ffn_flops(t_dc)) / flops_us
    t_dc_kv = 0.0
    if t_dc > 0:
        t_dc_kv = (n_layers * 2 * (dkv / tpdp) * 2.0 * (ctx + t_dc)) / bw_us

    b_attn = n_layers * d * (2 * d + 2 * dkv) * wb / tpf
    b_ffn = 0.0
    if n_moe > 0:
        expert_count = float(mc.num_local_experts) / float(group)
        b_ffn += float(n_moe) * expert_count * 3 * d * float(ffm) * wb
        if shared > 0:
            b_ffn += float(n_moe) * 3 * d * float(shared) * wb / tpf
    if n_dense > 0:
        b_ffn += float(n_dense) * 1 * 3 * d * float(ffd) * wb / tpf
    t_w = (b_attn + b_ffn) / bw_us

    t_tot = t_pf + t_dc

    def all_reduce(units):
        if tp <= 1:
            return 0.0
        return units * t_tot * d * ab * 2.0 * (float(tp - 1) / float(tp)) / bw_us

    t_attn = t_dffn = 0.0
    if tp > 1:
        t_attn = all_reduce(n_layers) / dpf
        t_dffn = all_reduce(float(n_dense)) / dpf
    t_moe_red = 0.0
    if is_moe and n_moe > 0 and dp == 1 and tp > 1:
        t_moe_red = all_reduce(float(n_moe))
    t_disp = 0.0
    if is_moe and dp > 1:
        g = float(group)
        if all2all:
            comm_tok = (t_tot / dpf) * k_eff * (g - 1) / g * 2
            basis = comm_tok * d * ab / bw_us
        else:
            basis = (t_tot / dpf) * (g - 1) / g * 2 * d * ab / bw_us
        t_disp = basis * float(n_moe)

    if prefill_split:
        pf_term = betas[0] * t_pf_c + betas[8] * t_pf_kv
    else:
        pf_term = betas[0] * max(t_pf_c, t_pf_kv)
    if decode_split:
        dc_term = betas[1] * t_dc_c + betas[9] * t_dc_kv
    else:
        dc_term = betas[1] * max(t_dc_c, t_dc_kv)
    interleaved = 1.0 if (mc.interleave_moe_layer_step > 0 and is_moe) else 0.0
    step = pf_term
    step = step + dc_term
    step = step + betas[2] * t_w
    step = step + betas[3] * (t_attn + t_dffn + t_moe_red)
    step = step + betas[10] * t_disp
    step = step + betas[4] * n_layers
    step = step + betas[5] * size
    step = step + betas[6]
    step = step + betas[7] * interleaved * float(n_moe)
    return {
        "t_pf": t_pf,
        "t_dc": t_dc,
        "ctx": ctx,
        "pf_attn": pf_attn,
        "t_pf_c": t_pf_c,
        "t_pf_kv": t_pf_kv,
        "t_dc_c": t_dc_c,
        "t_dc_kv": t_dc_kv,
        "t_w": t_w,
        "t_attn": t_attn,
        "t_dffn": t_dffn,
        "t_moe_red": t_moe_red,
        "t_disp": t_disp,
        "step_us": step,
    }


def trained_physics_step_us(mc, hw, tp, batch, beta, dp=1, comm_backend=""):
    """Unclamped trained-physics step time (us) of a non-empty batch."""
    return trained_physics_terms(mc, hw, tp, batch, beta, dp, comm_backend)["step_us"]


def trained_physics_step_time(mc, hw, tp, batch, beta, dp=1, comm_backend=""):
    """Trained-physics StepTime (1 for the empty batch, else >= 1)."""
    if not batch:
        return 1
    return max(1, clamp(trained_physics_step_us(mc, hw, tp, batch, beta, dp, comm_backend)))
