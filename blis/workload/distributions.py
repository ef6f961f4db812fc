"""Arrival (inter-arrival time) and length samplers, drawing from Go's ``math/rand``.

Each sampler is a small frozen record ``(kind, params[, values, cdf])`` that a
compiled loop can branch on (:func:`sample_iat_nb`, :func:`sample_length_nb`);
the Python methods ``sample_iat(rng)`` / ``sample(rng)`` call the same kernels on
a :class:`blis.rng.GoRand`.  Draw order and arithmetic follow BLIS
(spec/04-workload-io.md §4.3-§4.4), so with the same Go stream the samples are
identical:

* arrival: ``constant`` (no draw), ``poisson`` (ExpFloat64), ``gamma``
  (Marsaglia-Tsang; shape < 1 boosts with one Float64 first), ``weibull``
  (inverse CDF on one Float64), plus ``sequence`` (pre-drawn IATs, 0 when
  exhausted: the inference-perf normalised-exponential sampler);
* length: ``gaussian`` (clamped, rounded half away from zero; no draw when
  min == max), ``exponential``, ``pareto_lognormal``, ``lognormal``,
  ``constant`` (no draw), ``empirical`` (inverse CDF; no draw for one bin).

Go's ``math.Log`` is reproduced exactly (:func:`blis.kernels.gorand.go_log_nb`);
``math.Pow``/``math.Exp``/``math.Gamma`` use the platform libm, which can differ
from Go's in the last ulp.  Samples are truncated or rounded to integers, so a
difference shows only when a value falls within an ulp of an integer (or .5)
boundary: not observed in the reference vectors (tests/data/sampler_vectors.json).
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from ..errors import ConfigError
from ..kernels.gorand import (
    exp_float64_nb,
    float64_nb,
    go_log_nb,
    norm_float64_nb,
)
from ..kernels.jit import njit

log = logging.getLogger("blis.workload")

# ---------------------------------------------------------------------------
# Codes shared with the compiled loops
# ---------------------------------------------------------------------------
ARRIVAL_CONSTANT = 0
ARRIVAL_POISSON = 1
ARRIVAL_GAMMA = 2
ARRIVAL_WEIBULL = 3
ARRIVAL_SEQUENCE = 4

#: arrival process names accepted in specs (``sequence`` is internal)
ARRIVAL_PROCESSES = ("poisson", "gamma", "weibull", "constant")

LENGTH_GAUSSIAN = 0
LENGTH_EXPONENTIAL = 1
LENGTH_PARETO_LOGNORMAL = 2
LENGTH_LOGNORMAL = 3
LENGTH_CONSTANT = 4
LENGTH_EMPIRICAL = 5
LENGTH_SEQUENCE = 6

#: distribution type name -> (code, required params)
LENGTH_TYPES = {
    "gaussian": (LENGTH_GAUSSIAN, ("mean", "std_dev", "min", "max")),
    "exponential": (LENGTH_EXPONENTIAL, ("mean",)),
    "pareto_lognormal": (LENGTH_PARETO_LOGNORMAL, ("alpha", "xm", "mu", "sigma", "mix_weight")),
    "lognormal": (LENGTH_LOGNORMAL, ("mu", "sigma")),
    "constant": (LENGTH_CONSTANT, ("value",)),
    "empirical": (LENGTH_EMPIRICAL, ()),
}

_INT64_MIN = -9223372036854775808
_TWO63 = 9223372036854775808.0
_SMALLEST_NONZERO = 5e-324  # math.SmallestNonzeroFloat64


# ---------------------------------------------------------------------------
# Go float -> int helpers
# ---------------------------------------------------------------------------
@njit
def go_round_nb(x):
    """Go's ``math.Round``: nearest integer, halves away from zero."""
    if x != x or math.isinf(x):
        return x
    t = math.trunc(x)
    if abs(x - t) >= 0.5:
        t += math.copysign(1.0, x)
    return t


@njit
def go_int_nb(x):
    """Go's ``int64(x)`` on amd64: truncation; NaN and out-of-range give MinInt64."""
    if x != x or x >= _TWO63 or x < -_TWO63:
        return np.int64(_INT64_MIN)
    return np.int64(x)


def go_int(x: float) -> int:
    """Python twin of :func:`go_int_nb`."""
    if x != x or x >= _TWO63 or x < -_TWO63:
        return _INT64_MIN
    return int(x)


# ---------------------------------------------------------------------------
# Arrival samplers
# ---------------------------------------------------------------------------
@njit
def gamma_draw_nb(state, shape, scale):
    """A Gamma(shape, scale) variate, Marsaglia-Tsang as BLIS draws it."""
    boost = 1.0
    if shape < 1.0:
        u = float64_nb(state)
        boost = u ** (1.0 / shape)
        shape = shape + 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = 0.0
        v = 0.0
        while True:
            x = norm_float64_nb(state)
            v = 1.0 + c * x
            if v > 0.0:
                break
        v = v * v * v
        u = float64_nb(state)
        if u < 1.0 - 0.0331 * (x * x) * (x * x):
            return d * v * scale * boost
        if go_log_nb(u) < 0.5 * x * x + d * (1.0 - v + go_log_nb(v)):
            return d * v * scale * boost


@njit
def sample_iat_nb(state, kind, params, seq, cursor):
    """Next inter-arrival time (µs, >= 1; 0 only when a ``sequence`` is exhausted).

    ``params``: constant ``[iat]``; poisson ``[rate_per_us]``; gamma and weibull
    ``[shape, scale_us]``.  ``seq``/``cursor`` (int64 arrays) serve ``sequence``.
    """
    if kind == ARRIVAL_CONSTANT:
        return np.int64(params[0])
    if kind == ARRIVAL_SEQUENCE:
        i = cursor[0]
        if i >= seq.shape[0]:
            return np.int64(0)
        cursor[0] = i + 1
        return seq[i]
    if kind == ARRIVAL_POISSON:
        v = go_int_nb(exp_float64_nb(state) / params[0])
    elif kind == ARRIVAL_GAMMA:
        g = gamma_draw_nb(state, params[0], params[1])
        v = go_int_nb(g)
    else:  # weibull
        u = float64_nb(state)
        if u == 0.0:
            u = _SMALLEST_NONZERO
        v = go_int_nb(params[1] * (-go_log_nb(u)) ** (1.0 / params[0]))
    if v < 1:
        return np.int64(1)
    return v


def _weibull_cv(k: float) -> float:
    g1 = math.gamma(1.0 + 1.0 / k)
    return math.sqrt(math.gamma(1.0 + 2.0 / k) / (g1 * g1) - 1.0)


def weibull_shape_from_cv(cv: float) -> float:
    """Weibull shape k whose CV is ``cv``: bisection on [0.1, 100] as BLIS does it."""
    lo, hi = 0.1, 100.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        c = _weibull_cv(mid)
        if abs(c - cv) < 0.001:
            return mid
        if c > cv:
            lo = mid
        else:
            hi = mid
    k = (lo + hi) / 2.0
    log.warning("weibull shape: bisection did not converge for CV=%.3f after 100 iterations; using k=%.3f", cv, k)
    return k


_EMPTY_I64 = np.zeros(0, np.int64)
_EMPTY_F64 = np.zeros(0, np.float64)


@dataclass(frozen=True)
class ArrivalSampler:
    """An inter-arrival-time sampler: ``kind`` (ARRIVAL_*) plus float params."""

    kind: int
    params: np.ndarray
    seq: np.ndarray = field(default_factory=lambda: _EMPTY_I64)

    def sample_iat(self, rng, cursor: Optional[np.ndarray] = None) -> int:
        """Draw one IAT from ``rng`` (a :class:`blis.rng.GoRand`)."""
        if cursor is None:
            cursor = np.zeros(1, np.int64)
        return int(sample_iat_nb(rng.state, self.kind, self.params, self.seq, cursor))


def make_arrival_sampler(
    process: str,
    rate_per_us: float,
    cv: Optional[float] = None,
    shape: Optional[float] = None,
    scale: Optional[float] = None,
) -> ArrivalSampler:
    """BLIS's ``NewArrivalSampler``: ``rate_per_us`` is floored at 1e-15.

    Raises :class:`ConfigError` for an unknown process (BLIS validates this
    before construction and falls back to Poisson defensively).
    """
    rate = float(rate_per_us)
    if not rate >= 1e-15:  # also catches NaN
        rate = 1e-15
    if process == "constant":
        iat = go_int(1.0 / rate)
        return ArrivalSampler(ARRIVAL_CONSTANT, np.array([float(max(iat, 1))]))
    if process == "poisson":
        return ArrivalSampler(ARRIVAL_POISSON, np.array([rate]))
    if process in ("gamma", "weibull"):
        if shape is not None and scale is not None:
            if shape > 0 and scale > 0:
                code = ARRIVAL_GAMMA if process == "gamma" else ARRIVAL_WEIBULL
                return ArrivalSampler(code, np.array([float(shape), float(scale)]))
            log.warning("arrival %s: explicit shape/scale must be positive (shape=%.4f, scale=%.4f); "
                        "deriving from CV instead", process, shape, scale)
        c = 1.0 if cv is None else float(cv)
        if c <= 0:
            c = 1.0
        mean = 1.0 / rate
        if process == "gamma":
            g_shape = 1.0 / (c * c)
            g_scale = mean * c * c
            if g_shape < 0.01:
                log.warning("Gamma shape %.4f (CV=%.1f) is very small; falling back to Poisson", g_shape, c)
                return ArrivalSampler(ARRIVAL_POISSON, np.array([rate]))
            return ArrivalSampler(ARRIVAL_GAMMA, np.array([g_shape, g_scale]))
        k = weibull_shape_from_cv(c)
        return ArrivalSampler(ARRIVAL_WEIBULL, np.array([k, mean / math.gamma(1.0 + 1.0 / k)]))
    raise ConfigError(f"arrival: process must be one of the known processes, got {process!r}; "
                      f"valid: {', '.join(ARRIVAL_PROCESSES)}")


@njit
def normalized_exponential_iats_nb(state, count, duration_us):
    """``count`` exponential IATs scaled to sum to ``duration_us`` (each truncated, >= 1)."""
    rate = np.float64(count) / np.float64(duration_us)
    raw = np.empty(count, np.float64)
    for i in range(count):
        raw[i] = exp_float64_nb(state) / rate
    total = 0.0
    for i in range(count):
        total += raw[i]
    factor = np.float64(duration_us) / total
    out = np.empty(count, np.int64)
    for i in range(count):
        v = go_int_nb(raw[i] * factor)
        out[i] = v if v >= 1 else 1
    return out


def normalized_exponential_sampler(rng, count: int, duration_us: int) -> ArrivalSampler:
    """The inference-perf sampler: ``count`` IATs summing to ``duration_us``, then 0."""
    if count <= 0:
        raise ConfigError(f"normalized exponential sampler: count must be > 0, got {count}")
    if duration_us <= 0:
        raise ConfigError(f"normalized exponential sampler: duration_us must be > 0, got {duration_us}")
    if count > 10_000_000:
        raise ConfigError(f"normalized exponential sampler: count must be <= 10000000, got {count}")
    if duration_us < count:
        raise ConfigError(f"normalized exponential sampler: duration_us must be >= count ({count}), got {duration_us}")
    seq = normalized_exponential_iats_nb(rng.state, int(count), int(duration_us))
    return ArrivalSampler(ARRIVAL_SEQUENCE, np.zeros(1), seq)


# ---------------------------------------------------------------------------
# Length samplers
# ---------------------------------------------------------------------------
@njit
def _clamp_len_nb(result, lo, hi):
    if lo > 0 and result < lo:
        result = lo
    if hi > 0 and result > hi:
        result = hi
    if result < 1:
        return np.int64(1)
    return result


@njit
def sample_length_nb(state, kind, params, values, cdf):
    """One token count from the sampler ``(kind, params, values, cdf)``.

    ``params``: gaussian ``[mean, std, min, max]`` (min/max already truncated);
    exponential ``[mean, min, max]``; pareto_lognormal ``[alpha, xm, mu, sigma,
    mix_weight]``; lognormal ``[mu, sigma, min, max]``; constant ``[value]``;
    empirical uses ``values``/``cdf``; sequence cycles through ``values`` with
    the cursor kept in ``params[0]`` (float64, exact below 2^53).
    """
    if kind == LENGTH_GAUSSIAN:
        lo = params[2]
        hi = params[3]
        if lo == hi:
            return np.int64(lo)
        val = norm_float64_nb(state) * params[1] + params[0]
        clamped = min(hi, max(lo, val))
        r = go_int_nb(go_round_nb(clamped))
        return r if r >= 1 else np.int64(1)
    if kind == LENGTH_EXPONENTIAL:
        r = go_int_nb(go_round_nb(exp_float64_nb(state) * params[0]))
        return _clamp_len_nb(r, np.int64(params[1]), np.int64(params[2]))
    if kind == LENGTH_PARETO_LOGNORMAL:
        if float64_nb(state) < params[4]:
            u = float64_nb(state)
            if u == 0.0:
                u = _SMALLEST_NONZERO
            val = params[1] / (u ** (1.0 / params[0]))
        else:
            z = norm_float64_nb(state)
            val = math.exp(params[2] + params[3] * z)
        if math.isinf(val) or val != val:
            return np.int64(1)
        r = go_int_nb(go_round_nb(val))
        return r if r >= 1 else np.int64(1)
    if kind == LENGTH_LOGNORMAL:
        z = norm_float64_nb(state)
        val = math.exp(params[0] + params[1] * z)
        lo = np.int64(params[2])
        if math.isinf(val) or val != val:
            return lo if lo > 0 else np.int64(1)
        r = go_int_nb(go_round_nb(val))
        return _clamp_len_nb(r, lo, np.int64(params[3]))
    if kind == LENGTH_CONSTANT:
        v = np.int64(params[0])
        return v if v >= 1 else np.int64(1)
    if kind == LENGTH_EMPIRICAL:
        n = values.shape[0]
        if n == 0:
            return np.int64(1)
        if n == 1:
            return values[0]
        u = float64_nb(state)
        # first index with cdf >= u (Go's sort.SearchFloat64s)
        lo_i = 0
        hi_i = n
        while lo_i < hi_i:
            mid = (lo_i + hi_i) // 2
            if cdf[mid] < u:
                lo_i = mid + 1
            else:
                hi_i = mid
        if lo_i >= n:
            lo_i = n - 1
        return values[lo_i]
    # sequence
    n = values.shape[0]
    if n == 0:
        return np.int64(1)
    i = np.int64(params[0])
    params[0] = i + 1
    return values[i % n]


@dataclass(frozen=True)
class LengthSampler:
    """A token-length sampler: ``kind`` (LENGTH_*), float params, empirical bins."""

    kind: int
    params: np.ndarray
    values: np.ndarray = field(default_factory=lambda: _EMPTY_I64)
    cdf: np.ndarray = field(default_factory=lambda: _EMPTY_F64)

    @property
    def draws_randomness(self) -> bool:
        """False for samplers that never touch the RNG (constant, min == max, one bin, sequence)."""
        if self.kind in (LENGTH_CONSTANT, LENGTH_SEQUENCE):
            return False
        if self.kind == LENGTH_GAUSSIAN:
            return self.params[2] != self.params[3]
        if self.kind == LENGTH_EMPIRICAL:
            return len(self.values) > 1
        return True

    def sample(self, rng) -> int:
        """Draw one length from ``rng`` (a :class:`blis.rng.GoRand`)."""
        return int(sample_length_nb(rng.state, self.kind, self.params, self.values, self.cdf))


_SSCANF_INT = re.compile(r"\s*([+-]?\d+)")


def _empirical_bins(where: str, params: Mapping[str, float]):
    pdf = {}
    for key, p in params.items():
        m = _SSCANF_INT.match(str(key))
        if not m:
            raise ConfigError(f"{where}: empirical bin key must be an integer token count, got {key!r}")
        pdf[int(m.group(1))] = float(p)
    if not pdf:
        raise ConfigError(f"{where}: empirical distribution must have at least one bin, got none")
    keys = sorted(pdf)
    total = 0.0
    for k in keys:
        total += pdf[k]
    values, cdf = [], []
    cum = 0.0
    for k in keys:
        p = pdf[k]
        if p <= 0:
            continue
        cum += p / total
        values.append(k)
        cdf.append(cum)
    if cdf:
        cdf[-1] = 1.0
    return np.array(values, np.int64), np.array(cdf, np.float64)


def make_length_sampler(dist_type: str, params: Optional[Mapping[str, float]] = None,
                        where: str = "distribution") -> LengthSampler:
    """BLIS's ``NewLengthSampler`` from a ``DistSpec`` (type + params map).

    Raises :class:`ConfigError` naming ``where``, the missing parameter or the
    bad type and the valid options.
    """
    params = dict(params or {})
    spec = LENGTH_TYPES.get(dist_type)
    if spec is None:
        raise ConfigError(f"{where}: type must be a known distribution, got {dist_type!r}; "
                          f"valid: {', '.join(LENGTH_TYPES)}")
    code, required = spec
    for k in required:
        if k not in params:
            raise ConfigError(f"{where}: {dist_type} distribution requires parameter {k!r}; "
                              f"required: {', '.join(required)}")
    for k, v in params.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"{where}: parameter {k!r} must be a finite number, got {v!r}")
    P = {k: float(v) for k, v in params.items()}
    if code == LENGTH_GAUSSIAN:
        arr = [P["mean"], P["std_dev"], float(go_int(P["min"])), float(go_int(P["max"]))]
        return LengthSampler(code, np.array(arr))
    if code in (LENGTH_EXPONENTIAL, LENGTH_LOGNORMAL):
        lo = go_int(P["min"]) if "min" in P else 0
        hi = go_int(P["max"]) if "max" in P else 0
        if lo > 0 and hi > 0 and lo > hi:
            raise ConfigError(f"{where}: {dist_type} min must be <= max, got min={lo}, max={hi}")
        if code == LENGTH_EXPONENTIAL:
            return LengthSampler(code, np.array([P["mean"], float(lo), float(hi)]))
        return LengthSampler(code, np.array([P["mu"], P["sigma"], float(lo), float(hi)]))
    if code == LENGTH_PARETO_LOGNORMAL:
        return LengthSampler(code, np.array([P["alpha"], P["xm"], P["mu"], P["sigma"], P["mix_weight"]]))
    if code == LENGTH_CONSTANT:
        return LengthSampler(code, np.array([float(go_int(P["value"]))]))
    values, cdf = _empirical_bins(where, params)
    return LengthSampler(code, np.zeros(1), values, cdf)


def sequence_sampler(values) -> LengthSampler:
    """Replays ``values`` in order, wrapping around (trace replay); an empty list yields 1."""
    return LengthSampler(LENGTH_SEQUENCE, np.zeros(1), np.asarray(values, np.int64))
