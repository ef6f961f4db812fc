"""Latency backends: one registry that is both the list of valid names and the factory.

:func:`build_latency` validates a model/GPU/parallelism/coefficient combination
once and returns a :class:`LatencyModel`: the kernel code and float64 parameter
vector the compiled step loop passes to :func:`blis.kernels.latency.step_time_nb`,
plus the per-request overheads (alpha terms) as plain numbers.

Built-in backends (BLIS names): ``roofline`` (analytical FLOPs/bandwidth;
beta ignored, alpha = [0, 0, 0] on the CLI) and ``trained-physics`` (roofline
basis functions with fitted beta; alpha/beta default to ``defaults.yaml``
``trained_physics_coefficients``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError
from .hardware import HardwareCalib, trained_physics_coefficients
from .kernels.latency import BACKEND_ROOFLINE, BACKEND_TRAINED_PHYSICS, step_time_nb
from .kernels.roofline import pack_roofline_params
from .kernels.trained_physics import pack_trained_physics_params
from .model_config import ModelConfig

__all__ = [
    "LatencyModel",
    "LatencyFactory",
    "LATENCY_BACKENDS",
    "MOE_COMM_BACKENDS",
    "DEFAULT_MOE_COMM_BACKEND",
    "register_latency_backend",
    "valid_latency_backend_names",
    "build_latency",
    "validate_roofline_config",
    "check_cli_parallelism",
    "go_clamp",
]

#: MoE dispatch/combine backends (vLLM names) -> True for the all-to-all volume family.
MOE_COMM_BACKENDS: Dict[str, bool] = {
    "naive": False,
    "allgather_reducescatter": False,
    "pplx": True,
    "deepep_high_throughput": True,
    "deepep_low_latency": True,
    "mori": True,
    "flashinfer_all2allv": True,
}
DEFAULT_MOE_COMM_BACKEND = "allgather_reducescatter"


def go_clamp(v: float) -> int:
    """Go ``clampToInt64`` on a Python float (NaN or >= 2**63 -> 2**63-1, else truncate;
    below -2**63 the conversion gives -2**63 on amd64, as the compiled ``clamp_nb``).
    Plain Python: loading the compiled twin costs a cache load at start-up."""
    v = float(v)
    if v != v or v >= 9223372036854775808.0:
        return 9223372036854775807
    if v < -9223372036854775808.0:
        return -9223372036854775808
    return int(v)


@dataclass(frozen=True, eq=False)
class LatencyModel:
    """A validated latency backend instance: kernel code + params, and the alpha overheads.

    ``QueueingTime(input_len) = clamp(0 + queueing_alpha0 + queueing_alpha1 * input_len)``
    (accumulated in that order); ``otpt_us`` is added per output token;
    ``post_decode_us`` once per request with at least one output token.
    """

    name: str
    code: int
    params: np.ndarray
    queueing_alpha0: float
    queueing_alpha1: float
    otpt_us: int
    post_decode_us: int

    def queueing_time_us(self, input_len: int) -> int:
        """Arrival-to-queued delay of a request with ``input_len`` input tokens."""
        t = 0.0
        t += self.queueing_alpha0
        t += self.queueing_alpha1 * float(input_len)
        return go_clamp(t)

    def step_time(
        self,
        prefills: Sequence[Tuple[int, int, int]] = (),
        decodes: Sequence[int] = (),
        n_sched: Optional[int] = None,
    ) -> int:
        """Step time (us, >= 1) of a batch given as ``(progress_index, new_tokens, input_len)``
        prefill tuples and decode progress indices, in batch order.

        ``n_sched`` (requests scheduled this step) defaults to ``len(prefills) + len(decodes)``.
        Convenience for tests and tools; the engine calls the kernel directly.
        """
        pf = np.asarray(prefills, dtype=np.int64).reshape(-1, 3)
        dc = np.asarray(decodes, dtype=np.int64).reshape(-1)
        if n_sched is None:
            n_sched = pf.shape[0] + dc.shape[0]
        return int(
            step_time_nb(
                self.code,
                self.params,
                np.ascontiguousarray(pf[:, 0]),
                np.ascontiguousarray(pf[:, 1]),
                np.ascontiguousarray(pf[:, 2]),
                pf.shape[0],
                dc,
                dc.shape[0],
                int(n_sched),
            )
        )


#: ``factory(mc, hw, *, tp, dp, alpha, beta, moe_comm_backend, enable_expert_parallel, defaults_path)``
LatencyFactory = Callable[..., LatencyModel]


def _where(name: str) -> str:
    return f"latency model {name}"


def _check_coeffs(where: str, label: str, coeffs: Sequence[float]) -> List[float]:
    out = []
    for i, c in enumerate(coeffs):
        if isinstance(c, bool) or not isinstance(c, (int, float, np.floating, np.integer)):
            raise ConfigError(f"{where}: {label}[{i}] must be a number, got {c!r}")
        c = float(c)
        if math.isnan(c) or math.isinf(c) or c < 0:
            raise ConfigError(f"{where}: {label}[{i}] must be finite and >= 0, got {c}")
        out.append(c)
    return out


def _check_alpha(where: str, alpha: Sequence[float]) -> List[float]:
    if len(alpha) < 3:
        raise ConfigError(f"{where}: alpha coefficients must have >= 3 entries, got {len(alpha)}")
    return _check_coeffs(where, "alpha", alpha)


def _check_parallelism(where: str, mc: ModelConfig, tp: int, dp: int) -> None:
    if tp <= 0:
        raise ConfigError(f"{where}: tp must be > 0, got {tp}")
    if dp < 1:
        raise ConfigError(f"{where}: dp must be >= 1, got {dp}")
    if dp > 1 and not mc.is_moe:
        raise ConfigError(
            f"{where}: dp must be 1 for a dense model (use more instances instead), got {dp} "
            f"with {mc.num_local_experts} experts"
        )


def _bad_positive(v: float) -> bool:
    return not (v > 0) or math.isinf(v)


def validate_roofline_config(mc: ModelConfig, hw: HardwareCalib) -> List[str]:
    """Every problem that makes ``mc``/``hw`` unusable for the roofline (empty list = valid)."""
    problems = []
    for label, v in (("num_heads", mc.num_heads), ("num_layers", mc.num_layers), ("hidden_dim", mc.hidden_dim)):
        if v <= 0:
            problems.append(f"{label} must be > 0, got {v}")
    for label, v in (
        ("bytes_per_param", mc.bytes_per_param),
        ("TFlopsPeak", hw.tflops_peak),
        ("BwPeakTBs", hw.bw_peak_tbs),
        ("mfuPrefill", hw.mfu_prefill),
        ("mfuDecode", hw.mfu_decode),
    ):
        if _bad_positive(v):
            problems.append(f"{label} must be a finite number > 0, got {v}")
    n, k = mc.num_local_experts, mc.num_experts_per_tok
    if n < 0:
        problems.append(f"num_local_experts must be >= 0, got {n}")
    if n > 1 and k <= 0:
        problems.append(f"num_experts_per_tok must be > 0 for an MoE model ({n} experts), got {k}")
    if n > 1 and k > n:
        problems.append(f"num_experts_per_tok must be <= num_local_experts ({n}), got {k}")
    if n == 0 and k > 0:
        problems.append(f"num_experts_per_tok must be 0 when num_local_experts is 0, got {k}")
    if mc.moe_expert_ffn_dim < 0:
        problems.append(f"moe_expert_ffn_dim must be >= 0, got {mc.moe_expert_ffn_dim}")
    if mc.shared_expert_ffn_dim < 0:
        problems.append(f"shared_expert_ffn_dim must be >= 0, got {mc.shared_expert_ffn_dim}")
    for label, v in (("MemoryGiB", hw.memory_gib), ("TFlopsFP8", hw.tflops_fp8)):
        if v != 0 and (math.isnan(v) or math.isinf(v) or v < 0):
            problems.append(f"{label} must be finite and > 0 when set, got {v}")
    wb = mc.weight_bytes_per_param
    if wb != 0 and (wb < 0 or math.isnan(wb) or math.isinf(wb)):
        problems.append(f"weight_bytes_per_param must be finite and > 0 when set, got {wb}")
    return problems


def _build_roofline(
    mc: ModelConfig,
    hw: HardwareCalib,
    *,
    tp: int,
    dp: int = 1,
    alpha: Optional[Sequence[float]] = None,
    beta: Optional[Sequence[float]] = None,
    moe_comm_backend: str = "",
    enable_expert_parallel: bool = False,
    defaults_path=None,
) -> LatencyModel:
    """Roofline backend; beta, DP, EP and the comm backend do not affect its step time."""
    where = _where("roofline")
    a = _check_alpha(where, [0.0, 0.0, 0.0] if alpha is None else list(alpha))
    _check_parallelism(where, mc, tp, dp)
    problems = validate_roofline_config(mc, hw)
    if problems:
        raise ConfigError(f"{where}: invalid roofline config: {'; '.join(problems)}")
    return LatencyModel(
        name="roofline",
        code=BACKEND_ROOFLINE,
        params=pack_roofline_params(mc, hw, tp),
        queueing_alpha0=a[0],
        queueing_alpha1=a[1],
        otpt_us=go_clamp(a[2]),
        post_decode_us=0,
    )


def _build_trained_physics(
    mc: ModelConfig,
    hw: HardwareCalib,
    *,
    tp: int,
    dp: int = 1,
    alpha: Optional[Sequence[float]] = None,
    beta: Optional[Sequence[float]] = None,
    moe_comm_backend: str = "",
    enable_expert_parallel: bool = False,
    defaults_path=None,
) -> LatencyModel:
    """Trained-physics backend; missing alpha/beta come from ``defaults.yaml``."""
    where = _where("trained-physics")
    if alpha is None or beta is None:
        d_alpha, d_beta = trained_physics_coefficients(defaults_path)
        if beta is None:
            if len(d_beta) < 7 or all(b == 0 for b in d_beta):
                raise ConfigError(
                    f"{where}: defaults.yaml trained_physics_coefficients.beta_coeffs must have >= 7 "
                    f"non-all-zero entries, got {d_beta}; give beta explicitly"
                )
            beta = d_beta
        if alpha is None:
            alpha = d_alpha
    alpha = list(alpha)
    beta = list(beta)
    a = _check_alpha(where, alpha)
    if len(beta) < 7:
        raise ConfigError(f"{where}: beta coefficients must have >= 7 entries, got {len(beta)}")
    comm = moe_comm_backend or DEFAULT_MOE_COMM_BACKEND
    if comm not in MOE_COMM_BACKENDS:
        raise ConfigError(
            f"{where}: moe comm backend must be a known vLLM all-to-all backend, got {moe_comm_backend!r}; "
            f"valid: {', '.join(MOE_COMM_BACKENDS)}"
        )
    _check_parallelism(where, mc, tp, dp)
    for label, v in (
        ("num_layers", mc.num_layers),
        ("num_heads", mc.num_heads),
        ("hidden_dim", mc.hidden_dim),
        ("intermediate_dim", mc.intermediate_dim),
    ):
        if v <= 0:
            raise ConfigError(f"{where}: {label} must be > 0, got {v}")
    if mc.num_heads % tp != 0:
        raise ConfigError(f"{where}: num_heads ({mc.num_heads}) must be divisible by tp, got tp={tp}")
    if mc.effective_kv_heads % tp != 0:
        raise ConfigError(f"{where}: num_kv_heads ({mc.effective_kv_heads}) must be divisible by tp, got tp={tp}")
    for label, v in (("TFlopsPeak", hw.tflops_peak), ("BwPeakTBs", hw.bw_peak_tbs), ("bytes_per_param", mc.bytes_per_param)):
        if _bad_positive(v):
            raise ConfigError(f"{where}: {label} must be a finite number > 0, got {v}")
    if mc.num_local_experts > 1 and mc.num_experts_per_tok <= 0:
        raise ConfigError(
            f"{where}: num_experts_per_tok must be > 0 for an MoE model ({mc.num_local_experts} experts), "
            f"got {mc.num_experts_per_tok}"
        )
    _check_coeffs(where, "beta", beta)
    return LatencyModel(
        name="trained-physics",
        code=BACKEND_TRAINED_PHYSICS,
        params=pack_trained_physics_params(mc, hw, tp, dp, beta, MOE_COMM_BACKENDS[comm]),
        queueing_alpha0=a[0],
        queueing_alpha1=0.0,
        otpt_us=go_clamp(a[2]),
        post_decode_us=go_clamp(a[1]),
    )


#: Registered latency backends: name -> factory.  The keys are the valid ``--latency-model`` names.
LATENCY_BACKENDS: Dict[str, LatencyFactory] = {
    "roofline": _build_roofline,
    "trained-physics": _build_trained_physics,
}


def valid_latency_backend_names() -> List[str]:
    """Sorted names of the registered latency backends."""
    return sorted(LATENCY_BACKENDS)


def register_latency_backend(name: str, factory: LatencyFactory) -> None:
    """Register a user latency backend under ``name``; raises :class:`ConfigError` if the name is taken.

    ``factory`` is called as ``factory(mc, hw, tp=, dp=, alpha=, beta=, moe_comm_backend=,
    enable_expert_parallel=, defaults_path=)`` and returns a :class:`LatencyModel`.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register_latency_backend: name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"register_latency_backend: factory must be callable, got {factory!r}")
    if name in LATENCY_BACKENDS:
        raise ConfigError(
            f"register_latency_backend: name must be unused, got {name!r}; "
            f"registered: {', '.join(valid_latency_backend_names())}"
        )
    LATENCY_BACKENDS[name] = factory


def build_latency(
    name: str,
    mc: ModelConfig,
    hw: HardwareCalib,
    tp: int,
    dp: int = 1,
    alpha: Optional[Sequence[float]] = None,
    beta: Optional[Sequence[float]] = None,
    moe_comm_backend: str = "",
    enable_expert_parallel: bool = False,
    defaults_path=None,
) -> LatencyModel:
    """Validate and build latency backend ``name`` (``""`` means ``roofline``, as in BLIS).

    Raises :class:`ConfigError` for an unknown name (listing the valid ones) or
    any invalid model, hardware, parallelism or coefficient value.
    """
    key = name or "roofline"
    factory = LATENCY_BACKENDS.get(key)
    if factory is None:
        raise ConfigError(
            f"latency model: backend must be a registered latency backend, got {name!r}; "
            f"valid: {', '.join(valid_latency_backend_names())}"
        )
    return factory(
        mc,
        hw,
        tp=tp,
        dp=dp,
        alpha=alpha,
        beta=beta,
        moe_comm_backend=moe_comm_backend,
        enable_expert_parallel=enable_expert_parallel,
        defaults_path=defaults_path,
    )


def check_cli_parallelism(
    backend: str, mc: ModelConfig, dp: int, enable_expert_parallel: bool, moe_comm_backend: str
) -> None:
    """The CLI's DP/EP/comm-backend rules (fatal errors in BLIS), for the whole-run backend.

    ``--dp > 1`` and ``--enable-expert-parallel`` need ``trained-physics`` and an MoE
    model; ``--moe-comm-backend`` must be a known name and needs ``trained-physics``.
    """
    where = "latency flags"
    if dp < 1:
        raise ConfigError(f"{where}: --dp must be >= 1, got {dp}")
    if (dp > 1 or enable_expert_parallel) and backend != "trained-physics":
        raise ConfigError(
            f"{where}: --latency-model must be trained-physics for --dp > 1 or --enable-expert-parallel, "
            f"got {backend!r} (dp={dp}, enable-expert-parallel={enable_expert_parallel})"
        )
    if dp > 1 and not mc.is_moe:
        raise ConfigError(f"{where}: --dp must be 1 for a dense model (use --num-instances), got {dp}")
    if enable_expert_parallel and not mc.is_moe:
        raise ConfigError(f"{where}: --enable-expert-parallel must be used with an MoE model, got a dense model")
    if moe_comm_backend:
        if moe_comm_backend not in MOE_COMM_BACKENDS:
            raise ConfigError(
                f"{where}: --moe-comm-backend must be a known vLLM all-to-all backend, got {moe_comm_backend!r}; "
                f"valid: {', '.join(MOE_COMM_BACKENDS)}"
            )
        if backend != "trained-physics":
            raise ConfigError(
                f"{where}: --latency-model must be trained-physics for --moe-comm-backend, got {backend!r}"
            )
