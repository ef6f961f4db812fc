"""Workloads synthesised from distribution flags or presets, and the request generator.

Three layers, each usable on its own:

* :class:`DistributionParams` + :func:`validate_distribution_params` +
  :func:`distribution_spec` -- BLIS's ``--workload distribution`` flags (§2 of
  spec/04-workload-io.md): defaults, validation order and messages, and the
  synthesised one-client spec (constant arrivals, Gaussian lengths, prefix group
  ``"shared"``).
* :func:`load_presets` / :func:`load_preset` / :func:`preset_spec` -- the named
  presets of ``defaults.yaml`` (``workloads:``), synthesised the same way.
* :func:`generate_requests` -- BLIS's ``GenerateRequests`` for single-shot clients
  (§4.1, §4.2, §4.5): the ``workload-gen`` stream, prefix token draws, one client
  seed per rate client, per-client sampling in BLIS's draw order (token ids are
  consumed, not stored), stable merge by arrival, truncation, ids ``request_<i>``.
  The result is a :class:`blis.requests.RequestTable`.

:func:`synthesize_distribution` and :func:`synthesize_preset` chain them the way
``blis run`` does, including the ``--timeout`` deadline rewrite (default 300 s).

Generated workloads equal BLIS's request for request (arrival, lengths, prefix,
deadline): the golden tests replay the parity traces.  Content seeds are our
own (token ids are procedural, see :mod:`blis.requests`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError
from ..kernels.gorand import go_seed, skip_intn_nb
from ..kernels.jit import njit
from ..requests import RequestTable
from . import generator as _gen
from ..rng import GoRand, SUBSYSTEM_WORKLOAD_GEN, derive_seed, fnv1a64, splitmix64
from .distributions import (
    ARRIVAL_PROCESSES,
    ArrivalSampler,
    LengthSampler,
    make_arrival_sampler,
    make_length_sampler,
    sample_iat_nb,
    sample_length_nb,
)

INT64_MAX = 9223372036854775807
#: BLIS's ``MaxTokenID``: a token id is ``Intn(128000)``
MAX_TOKEN_ID = 128000
#: prefix length used when a client's ``prefix_length`` is 0
DEFAULT_PREFIX_LENGTH = 50
#: deadline offset for session clients without a timeout (µs)
DEFAULT_TIMEOUT_US = 300_000_000
#: ``blis run --timeout`` default (seconds)
DEFAULT_TIMEOUT_S = 300
#: prefix group of the synthesised distribution client
SHARED_PREFIX_GROUP = "shared"
#: request columns that workloads fill besides :data:`blis.requests.REQUEST_FIELDS`
#: (name, dtype, unit, doc); a trace carries them, and they round-trip through TraceV2
EXTRA_REQUEST_FIELDS = [
    ("slo_target_us", np.int64, "us", "per-request TTFT target (0 = none)"),
    ("adapter", np.int32, "", "code into names['adapter'] (LoRA adapter; 0 = base model)"),
    ("reason_ratio", np.float64, "", "reasoning share of the output"),
    ("text_tokens", np.int64, "tokens", "multimodal: text tokens"),
    ("image_tokens", np.int64, "tokens", "multimodal: image tokens"),
    ("audio_tokens", np.int64, "tokens", "multimodal: audio tokens"),
    ("video_tokens", np.int64, "tokens", "multimodal: video tokens"),
]

_GOLDEN = 0x9E3779B97F4A7C15


# ---------------------------------------------------------------------------
# Workload spec records (the subset the generator reads)
# ---------------------------------------------------------------------------
@dataclass
class ArrivalSpec:
    """``arrival:`` block of a client: process plus optional cv / fitted shape and scale (µs)."""

    process: str = ""
    cv: Optional[float] = None
    shape: Optional[float] = None
    scale: Optional[float] = None


@dataclass
class DistSpec:
    """A length distribution: ``type`` and its ``params`` (see :mod:`.distributions`)."""

    type: str = ""
    params: Dict[str, float] = field(default_factory=dict)


@dataclass
class ActiveWindow:
    """A lifecycle window ``[start_us, end_us)``; the per-window overrides select the
    time-varying path, which :func:`generate_requests` does not implement."""

    start_us: int = 0
    end_us: int = 0
    trace_rate: Optional[float] = None
    arrival: Optional[ArrivalSpec] = None
    input_distribution: Optional[DistSpec] = None
    output_distribution: Optional[DistSpec] = None


@dataclass
class ClientSpec:
    """One client of a v2 workload spec (the fields single-shot generation uses).

    ``timeout`` is in µs: ``None`` = the default rule (no deadline for
    single-shot clients), 0 = no deadline, > 0 = ``arrival + timeout``.
    """

    id: str = ""
    tenant_id: str = ""
    slo_class: str = ""
    model: str = ""
    adapter: str = ""
    rate_fraction: float = 0.0
    concurrency: int = 0
    think_time_us: int = 0
    arrival: ArrivalSpec = field(default_factory=ArrivalSpec)
    input_distribution: DistSpec = field(default_factory=DistSpec)
    output_distribution: DistSpec = field(default_factory=DistSpec)
    prefix_group: str = ""
    prefix_length: int = 0
    streaming: bool = False
    timeout: Optional[int] = None
    slo_target_us: Optional[int] = None
    lifecycle: Optional[List[ActiveWindow]] = None
    closed_loop: Optional[bool] = None
    reasoning: Any = None
    multimodal: Any = None


@dataclass
class WorkloadSpec:
    """A v2 workload spec: top-level fields plus the client list."""

    version: str = "2"
    seed: int = 0
    category: str = ""
    aggregate_rate: float = 0.0
    num_requests: int = 0
    horizon: int = 0
    clients: List[ClientSpec] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Distribution flags (§2)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DistributionParams:
    """The ``--workload distribution`` flags, with BLIS's defaults."""

    rate: float = 1.0
    num_requests: int = 100
    prompt_tokens: int = 512
    prompt_tokens_stdev: int = 256
    prompt_tokens_min: int = 2
    prompt_tokens_max: int = 7000
    output_tokens: int = 512
    output_tokens_stdev: int = 256
    output_tokens_min: int = 2
    output_tokens_max: int = 7000
    prefix_tokens: int = 0
    concurrency: int = 0
    think_time_ms: int = 0


def go_format_float(x: float) -> str:
    """Go's ``%v`` / ``strconv.FormatFloat(x, 'g', -1, 64)`` of a float64."""
    x = float(x)
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    r = repr(x)  # shortest round-trip digits
    mant, _, exp = r.partition("e")
    neg = mant.startswith("-")
    mant = mant.lstrip("-")
    intpart, _, frac = mant.partition(".")
    digits = (intpart + frac).lstrip("0")
    # decimal exponent of the first significant digit
    if intpart.strip("0"):
        dexp = len(intpart.lstrip("0")) - 1
    else:
        dexp = -(len(frac) - len(frac.lstrip("0"))) - 1
    if exp:
        dexp += int(exp)
    digits = digits.rstrip("0") or "0"
    if dexp < -4 or dexp >= 6:  # shortest %g switches to exponent form at 1e-5 and 1e6
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = f"{'-' if dexp < 0 else '+'}{abs(dexp):02d}"
        s = f"{m}e{e}"
    elif dexp < 0:
        s = "0." + "0" * (-dexp - 1) + digits
    elif len(digits) <= dexp + 1:
        s = digits + "0" * (dexp + 1 - len(digits))
    else:
        s = digits[: dexp + 1] + "." + digits[dexp + 1:]
    return ("-" if neg else "") + s


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return int(value)


def validate_distribution_params(p: DistributionParams, rate_explicit: bool = False) -> None:
    """Check the distribution flags in BLIS's order; raise :class:`ConfigError` on the first failure.

    ``rate_explicit``: whether ``--rate`` was given on the command line (it is
    an error together with ``--concurrency``).
    """
    for f in fields(p):
        if f.name != "rate":
            _check_int(f"--{f.name.replace('_', '-')}", getattr(p, f.name))
    if p.num_requests < 0:
        raise ConfigError(f"--num-requests must be >= 0, got {p.num_requests}")
    if p.prefix_tokens < 0:
        raise ConfigError(f"--prefix-tokens must be >= 0, got {p.prefix_tokens}")
    if p.concurrency < 0:
        raise ConfigError(f"--concurrency must be >= 0, got {p.concurrency}")
    if p.think_time_ms < 0:
        raise ConfigError(f"--think-time-ms must be >= 0, got {p.think_time_ms}")
    if p.concurrency > 0 and rate_explicit:
        raise ConfigError("--concurrency and --rate are mutually exclusive; use one or the other")
    if p.concurrency == 0:
        rate = p.rate
        if not isinstance(rate, (int, float, np.floating, np.integer)) or isinstance(rate, bool) \
                or not (rate > 0) or math.isinf(rate):
            shown = go_format_float(rate) if isinstance(rate, (int, float)) else repr(rate)
            raise ConfigError(f"--rate must be a finite value > 0, got {shown}")
    msg = _token_bounds_error(p)
    if msg:
        raise ConfigError(msg)


def _token_bounds_error(p: DistributionParams) -> str:
    checks = [
        (p.prompt_tokens_min < 1, f"--prompt-tokens-min must be >= 1, got {p.prompt_tokens_min}"),
        (p.prompt_tokens_max < 1, f"--prompt-tokens-max must be >= 1, got {p.prompt_tokens_max}"),
        (p.output_tokens_min < 1, f"--output-tokens-min must be >= 1, got {p.output_tokens_min}"),
        (p.output_tokens_max < 1, f"--output-tokens-max must be >= 1, got {p.output_tokens_max}"),
        (p.prompt_tokens_stdev < 0, f"--prompt-tokens-stdev must be >= 0, got {p.prompt_tokens_stdev}"),
        (p.output_tokens_stdev < 0, f"--output-tokens-stdev must be >= 0, got {p.output_tokens_stdev}"),
        (p.prompt_tokens_min > p.prompt_tokens_max,
         f"--prompt-tokens-min ({p.prompt_tokens_min}) must be <= --prompt-tokens-max ({p.prompt_tokens_max})"),
        (p.output_tokens_min > p.output_tokens_max,
         f"--output-tokens-min ({p.output_tokens_min}) must be <= --output-tokens-max ({p.output_tokens_max})"),
        (p.prompt_tokens > p.prompt_tokens_max or p.prompt_tokens < p.prompt_tokens_min
         or p.prompt_tokens_stdev > p.prompt_tokens_max
         or (p.prompt_tokens_stdev != 0 and p.prompt_tokens_stdev < p.prompt_tokens_min),
         "prompt-tokens and prompt-tokens-stdev should be in range [prompt-tokens-min, prompt-tokens-max]"),
        (p.output_tokens > p.output_tokens_max or p.output_tokens < p.output_tokens_min
         or p.output_tokens_stdev > p.output_tokens_max
         or (p.output_tokens_stdev != 0 and p.output_tokens_stdev < p.output_tokens_min),
         "output-tokens and output-tokens-stdev should be in range [output-tokens-min, output-tokens-max]"),
    ]
    for bad, msg in checks:
        if bad:
            return msg
    return ""


def _gaussian(mean, std, lo, hi) -> DistSpec:
    return DistSpec("gaussian", {"mean": float(mean), "std_dev": float(std), "min": float(lo), "max": float(hi)})


def distribution_spec(p: DistributionParams, seed: int = 42, client_id: str = "distribution") -> WorkloadSpec:
    """BLIS's ``SynthesizeFromDistribution``: a one-client v2 spec (no validation)."""
    client = ClientSpec(
        id=client_id,
        arrival=ArrivalSpec(process="constant"),
        input_distribution=_gaussian(p.prompt_tokens, p.prompt_tokens_stdev, p.prompt_tokens_min, p.prompt_tokens_max),
        output_distribution=_gaussian(p.output_tokens, p.output_tokens_stdev, p.output_tokens_min, p.output_tokens_max),
    )
    aggregate = 0.0
    if p.concurrency > 0:
        client.concurrency = int(p.concurrency)
        client.think_time_us = int(p.think_time_ms) * 1000
    else:
        client.rate_fraction = 1.0
        aggregate = float(p.rate)
    if p.prefix_tokens > 0:
        client.prefix_group = SHARED_PREFIX_GROUP
        client.prefix_length = int(p.prefix_tokens)
    return WorkloadSpec(version="2", seed=int(seed), category="language", aggregate_rate=aggregate,
                        num_requests=int(p.num_requests), clients=[client])


# ---------------------------------------------------------------------------
# Presets (defaults.yaml `workloads:`)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """One ``workloads.<name>`` entry of defaults.yaml (absent keys read as 0)."""

    prefix_tokens: int = 0
    prompt_tokens: int = 0
    prompt_tokens_stdev: int = 0
    prompt_tokens_min: int = 0
    prompt_tokens_max: int = 0
    output_tokens: int = 0
    output_tokens_stdev: int = 0
    output_tokens_min: int = 0
    output_tokens_max: int = 0


PRESET_KEYS = tuple(f.name for f in fields(Preset))


def _default_defaults_path() -> Path:
    return Path(str(resources.files("blis.data").joinpath("defaults.yaml")))


def load_presets(defaults_path: Union[str, Path, None] = None) -> Dict[str, Preset]:
    """All presets of ``defaults_path`` (default: the packaged defaults.yaml), parsed strictly."""
    import yaml

    path = Path(defaults_path) if defaults_path is not None else _default_defaults_path()
    try:
        doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except OSError as e:
        raise ConfigError(f"defaults file {str(path)!r}: cannot be read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"defaults file {str(path)!r}: invalid YAML ({e})") from e
    workloads = (doc or {}).get("workloads") or {}
    if not isinstance(workloads, dict):
        raise ConfigError(f"defaults file {str(path)!r}: workloads must be a mapping, got {type(workloads).__name__}")
    out = {}
    for name, entry in workloads.items():
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"defaults file: workloads.{name} must be a mapping, got {entry!r}")
        for key, value in entry.items():
            if key not in PRESET_KEYS:
                raise ConfigError(f"defaults file: workloads.{name}: unknown key {key!r}; "
                                  f"valid: {', '.join(PRESET_KEYS)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"defaults file: workloads.{name}.{key} must be an integer, got {value!r}")
        out[str(name)] = Preset(**{k: int(v) for k, v in entry.items() if v is not None})
    return out


def load_preset(name: str, defaults_path: Union[str, Path, None] = None) -> Preset:
    """The preset ``name``; an unknown name fails with BLIS's message."""
    presets = load_presets(defaults_path)
    if name not in presets:
        raise ConfigError(f"Undefined workload {name!r}. Use one among (chatbot, summarization, contentgen, "
                          f"multidoc) or --workload-spec")
    return presets[name]


def preset_params(preset: Preset, rate: float = 1.0, num_requests: int = 100) -> DistributionParams:
    """The distribution flags equivalent to ``preset`` (BLIS's ``SynthesizeFromPreset``)."""
    return DistributionParams(
        rate=rate, num_requests=num_requests, prefix_tokens=preset.prefix_tokens,
        prompt_tokens=preset.prompt_tokens, prompt_tokens_stdev=preset.prompt_tokens_stdev,
        prompt_tokens_min=preset.prompt_tokens_min, prompt_tokens_max=preset.prompt_tokens_max,
        output_tokens=preset.output_tokens, output_tokens_stdev=preset.output_tokens_stdev,
        output_tokens_min=preset.output_tokens_min, output_tokens_max=preset.output_tokens_max,
    )


def preset_spec(preset: Preset, rate: float = 1.0, num_requests: int = 100, seed: int = 42) -> WorkloadSpec:
    """A preset synthesised into a one-client spec (client id ``distribution``)."""
    return distribution_spec(preset_params(preset, rate, num_requests), seed=seed)


# ---------------------------------------------------------------------------
# Generation (§4.1, §4.2, §4.5)
# ---------------------------------------------------------------------------
@njit
def generate_client_nb(state, cap, horizon,
                       a_kind, a_params, a_seq,
                       i_kind, i_params, i_values, i_cdf,
                       o_kind, o_params, o_values, o_cdf,
                       win_start, win_end, token_space):
    """One single-shot client's requests, drawing exactly what BLIS draws.

    Per request: IAT, input length, output length, then ``input + output`` token
    ids (``Intn(token_space)`` each, consumed without being stored).  Stops at
    ``cap`` requests (0 = no cap), a zero IAT, or ``t >= horizon``.  With
    lifecycle windows (``win_start``/``win_end`` non-empty) times outside every
    window are skipped, and generation stops past the last window's end.
    Returns ``(arrival_us, input_len, output_len)`` int64 arrays.
    """
    resume = np.zeros(4, np.int64)
    return generate_client_resume_nb(state, cap, horizon, horizon, resume, a_kind, a_params, a_seq,
                                     i_kind, i_params, i_values, i_cdf, o_kind, o_params, o_values, o_cdf,
                                     win_start, win_end, token_space)


@njit
def generate_client_resume_nb(state, cap, horizon, limit, resume,
                              a_kind, a_params, a_seq,
                              i_kind, i_params, i_values, i_cdf,
                              o_kind, o_params, o_values, o_cdf,
                              win_start, win_end, token_space):
    """:func:`generate_client_nb` in time slices: generates arrivals ``< min(limit, horizon)``
    and can be called again with a larger ``limit`` to continue the same stream.

    ``resume`` (int64[4]: clock, pending IAT or 0, requests so far, done flag)
    carries the loop state between calls; an IAT drawn but not yet used is
    kept pending, so the draws are exactly those of one uninterrupted run.
    """
    capacity = 1024
    arr = np.empty(capacity, np.int64)
    inl = np.empty(capacity, np.int64)
    outl = np.empty(capacity, np.int64)
    cursor = np.zeros(1, np.int64)
    n_win = win_start.shape[0]
    last_end = np.int64(0)
    for w in range(n_win):
        if win_end[w] > last_end:
            last_end = win_end[w]
    t = resume[0]
    pending = resume[1]
    total = resume[2]
    n = 0
    while resume[3] == 0:
        if t >= horizon or (cap > 0 and total >= cap):
            resume[3] = 1
            break
        if pending == 0:
            iat = sample_iat_nb(state, a_kind, a_params, a_seq, cursor)
            if iat == 0:
                resume[3] = 1
                break
            if iat >= horizon - t:
                resume[3] = 1
                break
        else:
            iat = pending
        if iat >= limit - t:  # belongs to a later slice
            pending = iat
            break
        pending = 0
        t += iat
        if n_win > 0:
            inside = False
            for w in range(n_win):
                if t >= win_start[w] and t < win_end[w]:
                    inside = True
                    break
            if not inside:
                if t >= last_end:
                    resume[3] = 1
                    break
                continue
        li = sample_length_nb(state, i_kind, i_params, i_values, i_cdf)
        lo = sample_length_nb(state, o_kind, o_params, o_values, o_cdf)
        skip_intn_nb(state, token_space, li + lo)
        if n == capacity:
            capacity *= 2
            arr2 = np.empty(capacity, np.int64)
            inl2 = np.empty(capacity, np.int64)
            outl2 = np.empty(capacity, np.int64)
            for k in range(n):  # element copies: a slice assignment compiles numba's shape-error path (~1 s)
                arr2[k] = arr[k]
                inl2[k] = inl[k]
                outl2[k] = outl[k]
            arr, inl, outl = arr2, inl2, outl2
        arr[n] = t
        inl[n] = li
        outl[n] = lo
        n += 1
        total += 1
    resume[0] = t
    resume[1] = pending
    resume[2] = total
    return arr[:n].copy(), inl[:n].copy(), outl[:n].copy()


def _plain(c) -> bool:
    return not _gen.is_multi_turn(c) and _get(c, "multimodal") is None


def _generate_sliced(clients, rates, workload_rng, horizon_us, max_requests, cap, prefix_len):
    """Plain single-shot clients, generated in time slices until ``max_requests`` arrivals are known.

    Every client's stream is advanced only up to a common time bound ``T``;
    once at least ``max_requests`` arrivals lie before ``T`` (or every client
    has finished), the first ``max_requests`` arrivals are final: any request
    not generated yet arrives at or after ``T``.  The output equals one
    uninterrupted run per client (same draws, same rows) without generating
    requests that the final truncation would drop."""
    todo = []
    for idx, c in enumerate(clients):
        if rates[idx] <= 0:
            continue
        client_seed = workload_rng.int63()
        state = go_seed(client_seed)
        a, s_in, s_out = _client_samplers(c, rates[idx])
        wins = _windows(c)
        todo.append(dict(idx=idx, seed=client_seed, state=state, a=a, s_in=s_in, s_out=s_out,
                         i_params=s_in.params.copy(), o_params=s_out.params.copy(),
                         ws=np.array([w[0] for w in wins], np.int64), we=np.array([w[1] for w in wins], np.int64),
                         resume=np.zeros(4, np.int64), chunks=[]))
    total_rate = sum(rates[d["idx"]] for d in todo)
    limit = int(min(float(horizon_us), max(1.0, 1.05 * max_requests / total_rate))) if total_rate > 0 else horizon_us
    while True:
        count = 0
        for d in todo:
            if d["resume"][3] == 0:
                a, s_in, s_out = d["a"], d["s_in"], d["s_out"]
                d["chunks"].append(generate_client_resume_nb(
                    d["state"], cap, horizon_us, limit, d["resume"], a.kind, a.params, a.seq,
                    s_in.kind, d["i_params"], s_in.values, s_in.cdf,
                    s_out.kind, d["o_params"], s_out.values, s_out.cdf, d["ws"], d["we"], MAX_TOKEN_ID))
            count += int(d["resume"][2])
        if count >= max_requests or all(d["resume"][3] for d in todo) or limit >= horizon_us:
            break
        limit = min(horizon_us, limit * 2)
    parts = []
    for d in todo:
        arr, inl, outl = (np.concatenate([ch[k] for ch in d["chunks"]]) for k in range(3))
        parts.append((d, arr, inl, outl))
    return parts


def _get(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _windows(client) -> List[Tuple[int, int, bool]]:
    """``(start_us, end_us, has_overrides)`` of a client's lifecycle windows."""
    lc = _get(client, "lifecycle")
    if lc is None:
        return []
    wins = _get(lc, "windows", lc) if not isinstance(lc, (list, tuple)) else lc
    out = []
    for w in wins or []:
        if isinstance(w, (tuple, list)):
            out.append((int(w[0]), int(w[1]), False))
            continue
        override = any(_get(w, k) is not None
                       for k in ("trace_rate", "arrival", "input_distribution", "output_distribution"))
        out.append((int(_get(w, "start_us", 0)), int(_get(w, "end_us", 0)), override))
    return out


def normalize_rates(clients: Sequence, aggregate_rate: float) -> List[float]:
    """Per-client rates in requests/µs (§4.2), including the lifecycle co-activity rule."""
    wins = [_windows(c) for c in clients]
    fracs = [float(_get(c, "rate_fraction", 0.0) or 0.0) for c in clients]
    if not any(wins):
        total = 0.0
        for f in fracs:
            total += f
        if total == 0:
            return [0.0] * len(clients)
        return [aggregate_rate * (f / total) / 1e6 for f in fracs]

    def overlap(a, b):
        if not a or not b:
            return True
        return any(sa < eb and sb < ea for sa, ea, _ in a for sb, eb, _ in b)

    rates = [0.0] * len(clients)
    for i, fi in enumerate(fracs):
        if fi <= 0:
            continue
        co = 0.0
        for j, fj in enumerate(fracs):
            if fj > 0 and overlap(wins[i], wins[j]):
                co += fj
        if co != 0:
            rates[i] = aggregate_rate * (fi / co) / 1e6
    return rates


def _dist_params(d) -> Tuple[str, Dict[str, float]]:
    return str(_get(d, "type", "") or ""), dict(_get(d, "params", None) or {})


def _client_samplers(client, rate: float) -> Tuple[ArrivalSampler, LengthSampler, LengthSampler]:
    cid = _get(client, "id", "")
    arrival = _get(client, "arrival") or ArrivalSpec()
    process = str(_get(arrival, "process", "") or "")
    if process not in ARRIVAL_PROCESSES:
        raise ConfigError(f"client {cid!r}: arrival.process must be a known process, got {process!r}; "
                          f"valid: {', '.join(ARRIVAL_PROCESSES)}")
    a = make_arrival_sampler(process, rate, cv=_get(arrival, "cv"), shape=_get(arrival, "shape"),
                             scale=_get(arrival, "scale"))
    t_in, p_in = _dist_params(_get(client, "input_distribution") or DistSpec())
    t_out, p_out = _dist_params(_get(client, "output_distribution") or DistSpec())
    s_in = make_length_sampler(t_in, p_in, where=f"client {cid!r} input_distribution")
    s_out = make_length_sampler(t_out, p_out, where=f"client {cid!r} output_distribution")
    return a, s_in, s_out


def _check_supported(clients: Sequence) -> None:
    for c in clients:
        cid = _get(c, "id", "")
        frac = _get(c, "rate_fraction", 0.0) or 0.0
        if not math.isfinite(frac) or frac < 0:
            raise ConfigError(f"client {cid!r}: rate_fraction must be a finite value >= 0, got {frac!r}")
        plen = _get(c, "prefix_length", 0) or 0
        if plen < 0:
            raise ConfigError(f"client {cid!r}: prefix_length must be >= 0, got {plen}")


def _deadlines(arrival: np.ndarray, timeout: Optional[int]) -> np.ndarray:
    """``computeDeadline`` for single-shot clients (no session default)."""
    if timeout is None or timeout == 0:
        return np.zeros(len(arrival), np.int64)
    return arrival + np.int64(timeout)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def content_seeds(client_seed: int, n: int) -> np.ndarray:
    """Content seeds of a client's first ``n`` requests: the SplitMix64 sequence of ``client_seed``."""
    k = np.arange(1, n + 1, dtype=np.uint64)
    base = np.uint64(int(client_seed) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return _mix64(base + k * np.uint64(_GOLDEN))


def group_seed(seed: int, group: str) -> int:
    """Content seed of a prefix group's shared tokens (depends on the workload seed and name)."""
    return splitmix64((int(seed) & 0xFFFFFFFFFFFFFFFF) ^ fnv1a64("prefix:" + group))


def generate_requests(spec, horizon_us: int = INT64_MAX, max_requests: Optional[int] = None,
                      *, blis_client_cap: bool = False) -> RequestTable:
    """BLIS's ``GenerateRequests`` for single-shot clients, as a :class:`RequestTable`.

    ``spec`` is a :class:`WorkloadSpec` or any object with the same attribute
    names.  ``max_requests`` defaults to ``spec.num_requests`` (0 = no cap).
    Clients with a zero rate (concurrency clients included) generate nothing,
    as in BLIS.  Multimodal clients draw their modality lengths (§4.5),
    multi-turn clients generate every round of their sessions open-loop
    (§4.6; closed-loop filtering is :func:`blis.workload.sessions.generate_session_workload`),
    and a spec with per-window overrides takes the time-varying path (§4.11).

    BLIS caps each client at ``2 * max_requests``; a client's requests past its
    ``max_requests``-th can never survive the final truncation (its own earlier
    requests arrive strictly before them), so by default generation stops
    there, with identical output.  ``blis_client_cap=True`` uses BLIS's cap.
    """
    if max_requests is None:
        max_requests = int(_get(spec, "num_requests", 0) or 0)
    max_requests = int(max_requests)
    horizon_us = int(horizon_us)
    if max_requests < 0:
        raise ConfigError(f"generate_requests: max_requests must be >= 0, got {max_requests}")
    clients = list(_get(spec, "clients", None) or [])
    seed = int(_get(spec, "seed", 0) or 0)
    if horizon_us <= 0:
        return build_table([], seed, [], [])
    _check_supported(clients)
    aggregate = float(_get(spec, "aggregate_rate", 0.0) or 0.0)
    if not math.isfinite(aggregate) or aggregate < 0:
        raise ConfigError(f"workload spec: aggregate_rate must be a finite value >= 0, got {aggregate!r}")

    workload_rng = GoRand(derive_seed(seed, SUBSYSTEM_WORKLOAD_GEN))
    rates = normalize_rates(clients, aggregate)
    prefix_len = draw_prefixes(clients, workload_rng)
    if _gen.has_window_overrides(clients):
        parts = _gen.generate_time_varying(clients, aggregate, horizon_us, workload_rng, prefix_len)
        return build_table(parts, seed, clients, prefix_len, max_requests)

    if max_requests > 0:
        cap = 2 * max_requests if blis_client_cap else max_requests
    else:
        cap = 0

    if max_requests > 0 and not blis_client_cap and all(_plain(c) for c in clients):
        parts = []
        for d, arr, inl, outl in _generate_sliced(clients, rates, workload_rng, horizon_us, max_requests, cap,
                                                  prefix_len):
            c = clients[d["idx"]]
            g = _get(c, "prefix_group", "") or ""
            plen = prefix_len.get(g, 0) if g else 0
            parts.append(_gen.Part(d["idx"], d["seed"], arr, inl + plen, outl, prefix_len=plen, group=g,
                                   streaming=bool(_get(c, "streaming", False)),
                                   deadline_us=_gen.deadlines(arr, _get(c, "timeout"), _gen.is_closed_loop(c)),
                                   slo_target_us=int(_get(c, "slo_target_us", 0) or 0)))
        return build_table(parts, seed, clients, prefix_len, max_requests)

    parts = []
    for idx, c in enumerate(clients):
        if rates[idx] <= 0:
            continue
        client_seed = workload_rng.int63()
        state = go_seed(client_seed)
        a, s_in, s_out = _client_samplers(c, rates[idx])
        parts.append(generate_client_part(idx, c, client_seed, state, a, s_in, s_out, rates[idx], horizon_us,
                                          max_requests, cap, prefix_len))
    return build_table(parts, seed, clients, prefix_len, max_requests)


def draw_prefixes(clients: Sequence, workload_rng) -> Dict[str, int]:
    """§4.1 (a): one prefix per group, in order of first appearance (``prefix_length`` or 50 tokens)."""
    prefix_len: Dict[str, int] = {}
    for c in clients:
        g = _get(c, "prefix_group", "") or ""
        if g and g not in prefix_len:
            plen = int(_get(c, "prefix_length", 0) or 0)
            prefix_len[g] = plen if plen > 0 else DEFAULT_PREFIX_LENGTH
            workload_rng.skip_intn(MAX_TOKEN_ID, prefix_len[g])
    return prefix_len


def generate_client_part(idx, c, client_seed, state, a, s_in, s_out, rate, horizon_us, max_requests, cap,
                         prefix_len) -> "_gen.Part":
    """One client's rows on the non-time-varying path (§4.5, §4.6): single-shot, multimodal or
    multi-turn, drawing from the client stream ``state`` after the arrival sampler ``a`` was built."""
    wins = _windows(c)
    g = _get(c, "prefix_group", "") or ""
    plen = prefix_len.get(g, 0) if g else 0
    if _gen.is_multi_turn(c):
        rcap = 2 * max_requests if max_requests > 0 else 0  # BLIS's cap: it counts rounds that are dropped
        return _gen.generate_reasoning_client(idx, c, client_seed, state, a, plen, g, rcap, horizon_us, wins)
    session_default = _gen.is_closed_loop(c)
    if _get(c, "multimodal") is not None:
        part = _gen.generate_multimodal_client(idx, c, client_seed, state, a, cap, horizon_us, wins)
    else:
        ws = np.array([w[0] for w in wins], np.int64)
        we = np.array([w[1] for w in wins], np.int64)
        arr, inl, outl = generate_client_nb(
            state, cap, horizon_us, a.kind, a.params, a.seq,
            s_in.kind, s_in.params.copy(), s_in.values, s_in.cdf,
            s_out.kind, s_out.params.copy(), s_out.values, s_out.cdf,
            ws, we, MAX_TOKEN_ID)
        part = _gen.Part(idx, client_seed, arr, inl, outl)
    part.input_len = part.input_len + plen
    part.prefix_len = plen
    part.group = g
    part.streaming = bool(_get(c, "streaming", False))
    part.deadline_us = _gen.deadlines(part.arrival, _get(c, "timeout"), session_default)
    part.slo_target_us = int(_get(c, "slo_target_us", 0) or 0)
    return part


def _build_table(parts, seed, clients, prefix_len, max_requests: int = 0) -> RequestTable:
    """:func:`build_table` for legacy ``(idx, client_seed, arrival, input_len, output_len)``
    single-shot parts (input without the prefix; no deadline rule beyond ``timeout``)."""
    out = []
    for p in parts:
        if isinstance(p, _gen.Part):
            out.append(p)
            continue
        idx, client_seed, arr, inl, outl = p
        c = clients[idx]
        g = _get(c, "prefix_group", "") or ""
        plen = prefix_len.get(g, 0) if g else 0
        out.append(_gen.Part(idx, client_seed, arr, inl + plen, outl, prefix_len=plen, group=g,
                             streaming=bool(_get(c, "streaming", False)),
                             deadline_us=_deadlines(arr, _get(c, "timeout")),
                             slo_target_us=int(_get(c, "slo_target_us", 0) or 0)))
    return build_table(out, seed, clients, prefix_len, max_requests)


def build_table(parts: Sequence["_gen.Part"], seed, clients, prefix_len, max_requests: int = 0) -> RequestTable:
    """Merge per-client parts as BLIS does: stable sort by arrival (ties keep client
    order), truncate to ``max_requests`` (0 = no cap), ids ``0..n-1``."""
    if not parts:
        t = RequestTable.empty(0)
        for name, dtype, _, _ in EXTRA_REQUEST_FIELDS:
            t.cols[name] = np.zeros(0, dtype)
        t.names["adapter"] = [""]
        return t
    arrival = np.concatenate([p.arrival for p in parts])
    order = np.argsort(arrival, kind="stable")
    if max_requests > 0 and len(order) > max_requests:
        order = order[:max_requests]
    n = len(order)

    names: Dict[str, List[str]] = {k: [""] for k in ("prefix_group", "slo_class", "tenant", "client", "model",
                                                      "session", "adapter")}

    def code(col, value):
        lst = names[col]
        if value in lst:
            return lst.index(value)
        lst.append(value)
        return len(lst) - 1

    hidden: Dict[str, int] = {}

    def group_code(part):
        """The part's prefix-group code; a hidden group is labelled "" but keeps the group's content."""
        if not part.group or not part.hide_group:
            return code("prefix_group", part.group)
        if part.group not in hidden:
            names["prefix_group"].append("")
            hidden[part.group] = len(names["prefix_group"]) - 1
        return hidden[part.group]

    session_code: Dict[str, int] = {"": 0}
    chain_parts = []
    cols_parts = {k: [] for k in ("input_len", "output_len", "prefix_len", "prefix_group", "deadline_us",
                                  "slo_class", "tenant", "client", "model", "streaming", "content_seed",
                                  "slo_target_us", "adapter", "session")}
    extra_names = sorted({k for p in parts for k in p.extras})
    extra_dtypes = {name: dtype for name, dtype, _, _ in EXTRA_REQUEST_FIELDS}
    extra_dtypes["round_index"] = np.int32
    for k in extra_names:
        cols_parts[k] = []
    for p in parts:
        c = clients[p.idx]
        m = len(p.arrival)
        cols_parts["input_len"].append(np.asarray(p.input_len, np.int64))
        cols_parts["output_len"].append(np.asarray(p.output_len, np.int64))
        cols_parts["prefix_len"].append(np.full(m, p.prefix_len, np.int64))
        cols_parts["prefix_group"].append(np.full(m, group_code(p), np.int32))
        chain_parts.append(np.full(m, bool(p.accumulate)))
        dl = p.deadline_us if p.deadline_us is not None else np.zeros(m, np.int64)
        cols_parts["deadline_us"].append(np.asarray(dl, np.int64))
        cols_parts["slo_class"].append(np.full(m, code("slo_class", _get(c, "slo_class", "") or ""), np.int32))
        cols_parts["tenant"].append(np.full(m, code("tenant", _get(c, "tenant_id", "") or ""), np.int32))
        cols_parts["client"].append(np.full(m, code("client", _get(c, "id", "") or ""), np.int32))
        cols_parts["model"].append(np.full(m, code("model", _get(c, "model", "") or ""), np.int32))
        cols_parts["adapter"].append(np.full(m, code("adapter", _get(c, "adapter", "") or ""), np.int32))
        cols_parts["streaming"].append(np.full(m, bool(p.streaming), np.bool_))
        cols_parts["slo_target_us"].append(np.full(m, int(p.slo_target_us), np.int64))
        cols_parts["content_seed"].append(content_seeds(p.client_seed, m))
        if p.session_index is not None and p.sessions:
            local = np.empty(len(p.sessions), np.int32)
            for j, sname in enumerate(p.sessions):
                k = session_code.get(sname)
                if k is None:
                    k = session_code[sname] = len(names["session"])
                    names["session"].append(sname)
                local[j] = k
            si = np.asarray(p.session_index, np.int64)
            cols_parts["session"].append(np.where(si >= 0, local[np.clip(si, 0, None)], 0).astype(np.int32))
        else:
            cols_parts["session"].append(np.zeros(m, np.int32))
        for k in extra_names:
            v = p.extras.get(k)
            cols_parts[k].append(np.zeros(m, extra_dtypes.get(k, np.int64)) if v is None
                                 else np.asarray(v, extra_dtypes.get(k, np.int64)))

    cols = {k: np.concatenate(v)[order] for k, v in cols_parts.items()}
    # only the rows that survive truncation name their sessions
    used = np.unique(cols["session"])
    if len(used) < len(names["session"]):
        remap = np.zeros(len(names["session"]), np.int32)
        kept = [0] + [int(k) for k in used if k != 0]
        remap[kept] = np.arange(len(kept), dtype=np.int32)
        names["session"] = [names["session"][k] for k in kept]
        cols["session"] = remap[cols["session"]]
    cols["arrival_us"] = arrival[order]
    cols["request_id"] = np.arange(n, dtype=np.int64)
    cols["context_parent"], cols["context_len"] = accumulate_parents(
        np.concatenate(chain_parts)[order], cols["session"], cols["input_len"], cols["output_len"])
    cols["max_output_len"] = cols["output_len"].copy()
    for name, dtype, _, _ in EXTRA_REQUEST_FIELDS:
        cols[name] = np.ascontiguousarray(cols[name], dtype) if name in cols else np.zeros(n, dtype)
    too_long = np.flatnonzero((cols["input_len"] > 2**31 - 1) | (cols["output_len"] > 2**31 - 1))
    if len(too_long):
        raise ConfigError(f"generate_requests: token lengths must be < 2^31, got input "
                          f"{int(cols['input_len'][too_long[0]])}, output {int(cols['output_len'][too_long[0]])}")
    gseeds = np.zeros(len(names["prefix_group"]), np.uint64)
    for i, g in enumerate(names["prefix_group"]):
        if i and g:
            gseeds[i] = np.uint64(group_seed(seed, g))
    for g, i in hidden.items():
        gseeds[i] = np.uint64(group_seed(seed, g))
    return RequestTable(cols, names, gseeds)


def accumulate_parents(chain, session, input_len, output_len):
    """Context parents of open-loop ``accumulate`` sessions (BLIS's shared session buffer).

    Round r's input is the prefix, every earlier round's input and output, then
    its new input, so it begins with the previous round's whole sequence.  Each
    ``chain`` row with a session takes the session's previous row (table order is
    round order) as its parent and that row's ``input + output`` as its context.
    A round BLIS dropped because it fell outside every lifecycle window is not a
    row: its tokens stay in the later inputs as content no cache has seen, which
    is what the next row's own content is, so the parent is simply the previous
    row that was kept.  Returns ``(context_parent, context_len)``.
    """
    n = len(session)
    parent = np.full(n, -1, np.int64)
    ctx = np.zeros(n, np.int64)
    rows = np.flatnonzero(np.asarray(chain, bool) & (session > 0))
    if len(rows) > 1:
        o = rows[np.argsort(session[rows], kind="stable")]
        same = session[o[1:]] == session[o[:-1]]
        child, par = o[1:][same], o[:-1][same]
        parent[child] = par
        ctx[child] = input_len[par].astype(np.int64) + output_len[par]
    return parent, ctx


def apply_timeout(table: RequestTable, timeout_s: int) -> None:
    """``blis run --timeout``: deadline = arrival + timeout (s > 0) or none (s < 0); 0 is an error."""
    timeout_s = _check_int("--timeout", timeout_s)
    if timeout_s == 0:
        raise ConfigError("--timeout must be positive (seconds) or negative to disable; got 0")
    if timeout_s > 0:
        table.cols["deadline_us"] = table["arrival_us"] + np.int64(timeout_s) * 1_000_000
    else:
        table.cols["deadline_us"] = np.zeros(len(table), np.int64)
    if getattr(table, "sessions", None) is not None:  # and every session blueprint's timeout
        table.sessions.set_timeout(timeout_s * 1_000_000 if timeout_s > 0 else 0)


def _bounded(max_requests: int, horizon_us: int) -> None:
    if max_requests <= 0 and horizon_us == INT64_MAX:
        raise ConfigError("Workload requires either num_requests or --horizon to bound generation")


def synthesize_distribution(params: Optional[DistributionParams] = None, *, seed: int = 42,
                            horizon_us: int = INT64_MAX, timeout_s: int = DEFAULT_TIMEOUT_S,
                            rate_explicit: bool = False, **flags) -> RequestTable:
    """``blis run --workload distribution``: validate the flags, synthesise, generate, apply ``--timeout``.

    Flags may be given as a :class:`DistributionParams` and/or keyword
    overrides named like its fields (``rate=8, num_requests=800, ...``).
    Concurrency mode (``concurrency > 0``) produces one seed request per virtual
    user and a ``table.sessions`` plan (BLIS's ``--concurrency``): the simulation
    sends each user's next request ``think_time`` after the previous one finishes.
    """
    p = params or DistributionParams()
    if flags:
        unknown = sorted(set(flags) - {f.name for f in fields(DistributionParams)})
        if unknown:
            raise ConfigError(f"synthesize_distribution: unknown flag {unknown[0]!r}; valid: "
                              f"{', '.join(f.name for f in fields(DistributionParams))}")
        p = replace(p, **flags)
    validate_distribution_params(p, rate_explicit=rate_explicit)
    _check_int("--timeout", timeout_s)
    if timeout_s == 0:
        raise ConfigError("--timeout must be positive (seconds) or negative to disable; got 0")
    spec = distribution_spec(p, seed=seed)
    _bounded(spec.num_requests, horizon_us)
    if p.concurrency > 0:  # closed-loop virtual users: seeds now, follow-ups while simulating
        from .sessions import generate_session_workload
        if horizon_us <= 0:
            return _build_table([], seed, [], [])
        table, plan = generate_session_workload(spec, int(horizon_us), int(spec.num_requests))
        table.sessions = plan
    else:
        table = generate_requests(spec, horizon_us, spec.num_requests)
    apply_timeout(table, timeout_s)
    return table


def synthesize_preset(name: str, *, rate: float = 1.0, num_requests: int = 100, seed: int = 42,
                      horizon_us: int = INT64_MAX, timeout_s: int = DEFAULT_TIMEOUT_S,
                      defaults_path: Union[str, Path, None] = None) -> RequestTable:
    """``blis run --workload <preset>``: rate check, preset lookup, generate, apply ``--timeout``.

    As in BLIS, the preset's token numbers are not range-checked.
    """
    num_requests = _check_int("--num-requests", num_requests)
    if num_requests < 0:
        raise ConfigError(f"--num-requests must be >= 0, got {num_requests}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (rate > 0) or math.isinf(rate):
        raise ConfigError(f"--rate must be a finite value > 0, got "
                          f"{go_format_float(rate) if isinstance(rate, (int, float)) else repr(rate)}")
    preset = load_preset(name, defaults_path)
    _check_int("--timeout", timeout_s)
    if timeout_s == 0:
        raise ConfigError("--timeout must be positive (seconds) or negative to disable; got 0")
    spec = preset_spec(preset, rate, num_requests, seed)
    _bounded(spec.num_requests, horizon_us)
    table = generate_requests(spec, horizon_us, spec.num_requests)
    apply_timeout(table, timeout_s)
    return table
