"""Aggregation helpers with BLIS's exact arithmetic (results in milliseconds).

``mean_ms`` sums float64 values left to right over the ascending-sorted list;
``percentile_ms`` interpolates linearly at rank ``p/100*(n-1)``.  Both also
accept a histogram ``(sorted values, counts)`` for ITL samples, which we keep
as counts rather than as one entry per token.
"""
from __future__ import annotations

import math

import numpy as np


def mean_ms(sorted_values) -> float:
    """Mean of ascending-sorted values (us) in ms: ``(sum / n) / 1000``."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    s = 0.0
    for x in np.asarray(sorted_values, np.float64).tolist():
        s += x
    return (s / n) / 1000


def percentile_ms(sorted_values, p: float) -> float:
    """BLIS ``CalculatePercentile`` over ascending-sorted values (us), result in ms."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = p / 100.0 * float(n - 1)
    lo = int(math.floor(rank))
    hi = int(math.ceil(rank))
    xl = sorted_values[lo]
    if lo == hi:
        return float(xl) / 1000
    xh = sorted_values[hi]
    return float(xl) / 1000 + float(xh - xl) * (rank - float(lo)) / 1000


def hist_count(counts) -> int:
    return int(np.sum(counts))


def hist_mean_ms(values, counts) -> float:
    """Mean of integer samples given as a histogram.  The float64 running sum of
    integers is exact below 2**53, so this equals the per-sample sum."""
    n = hist_count(counts)
    if n == 0:
        return 0.0
    total = int(np.dot(np.asarray(values, np.int64).astype(object), np.asarray(counts, np.int64).astype(object)))
    if total >= 2 ** 53:  # pragma: no cover - sums this large would need per-sample order
        raise OverflowError("ITL sum exceeds exact float range")
    return (float(total) / n) / 1000


def hist_percentile_ms(values, counts, p: float) -> float:
    """``percentile_ms`` over the expanded histogram without expanding it."""
    values = np.asarray(values, np.int64)
    cum = np.cumsum(np.asarray(counts, np.int64))
    n = int(cum[-1]) if len(cum) else 0
    if n == 0:
        return 0.0

    def at(k):
        return int(values[int(np.searchsorted(cum, k, side="right"))])

    rank = p / 100.0 * float(n - 1)
    lo = int(math.floor(rank))
    hi = int(math.ceil(rank))
    xl = at(lo)
    if lo == hi:
        return float(xl) / 1000
    xh = at(hi)
    return float(xl) / 1000 + float(xh - xl) * (rank - float(lo)) / 1000


def merge_hists(hists):
    """Merge several (values, counts) histograms into one sorted histogram."""
    if not hists:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    v = np.concatenate([h[0] for h in hists])
    c = np.concatenate([h[1] for h in hists])
    if len(v) == 0:
        return v.astype(np.int64), c.astype(np.int64)
    uniq, inv = np.unique(v, return_inverse=True)
    out = np.zeros(len(uniq), np.int64)
    np.add.at(out, inv, c)
    return uniq, out
