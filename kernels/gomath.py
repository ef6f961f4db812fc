"""Go-compatible float helpers used by the step-time kernels.

Both are njit kernels (arrays/scalars only, never raise) so that step-time
kernels reproduce BLIS (Go) results bit for bit:

* :func:`go_pow_nb` -- Go's ``math.Pow(x, n)`` for a non-negative integral
  exponent (repeated squaring on the frexp mantissa; differs from C ``pow`` in
  the last ulp for most inputs).
* :func:`clamp_nb` -- Go's ``clampToInt64``: NaN or values >= 2**63 give
  ``2**63 - 1``, anything else truncates toward zero.
"""
import math

import numpy as np

from .jit import njit

#: float64(math.MaxInt64) rounds up to 2**63.
_TWO_POW_63 = 9223372036854775808.0
INT64_MAX = np.int64(9223372036854775807)


@njit
def go_pow_nb(x, n):
    """``x ** n`` computed exactly as Go's ``math.Pow`` does for an integer ``n >= 0``.

    ``n`` may be passed as an integer or as an integral float.  Negative or
    fractional exponents are outside the contract (callers never pass them).
    """
    b = np.int64(n)
    if b == 0 or x == 1.0:
        return 1.0
    if b == 1:
        return x
    if x != x:
        return x
    if x == 0.0:
        return 0.0
    if math.isinf(x):
        if x > 0.0:
            return x
        # (-inf)**b: -inf for odd b, +inf for even b
        return -math.inf if (b & 1) == 1 else math.inf
    m, e = math.frexp(x)
    acc = 1.0
    acc_exp = np.int64(0)
    ee = np.int64(e)
    while b != 0:
        if ee < -4096 or ee > 4096:
            acc_exp += ee
            break
        if (b & 1) == 1:
            acc *= m
            acc_exp += ee
        m *= m
        ee <<= 1
        if m < 0.5:
            m += m
            ee -= 1
        b >>= 1
    # Go's Ldexp is correctly rounded; keep the exponent in C-int range first.
    if acc_exp < -100000:
        acc_exp = np.int64(-100000)
    elif acc_exp > 100000:
        acc_exp = np.int64(100000)
    return math.ldexp(acc, np.int32(acc_exp))


@njit
def clamp_nb(v):
    """Go ``clampToInt64``: NaN or ``v >= 2**63`` -> ``2**63-1``; else ``int64(trunc(v))``."""
    if v != v or v >= _TWO_POW_63:
        return INT64_MAX
    return np.int64(v)
