"""Seeds and random streams, compatible with BLIS's Go ``math/rand`` streams.

* :class:`GoRand` -- a Python handle on one Go ``rand.New(rand.NewSource(seed))``
  generator (the compiled kernels live in :mod:`blis.kernels.gorand`; hot loops
  call those directly on ``GoRand.state``).
* :func:`derive_seed` / :class:`PartitionedRNG` -- BLIS's named sub-streams: the
  derived seed is ``seed XOR int64(FNV-1a-64(name))``, except the legacy name
  ``"workload"`` which uses the master seed unchanged.
* :func:`splitmix64` -- a cheap 64-bit mixer used to derive per-request content
  seeds (not part of BLIS; our token ids are procedural).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from .kernels import gorand as _g

#: subsystem names BLIS uses
SUBSYSTEM_WORKLOAD = "workload"  # legacy: master seed unchanged
SUBSYSTEM_WORKLOAD_GEN = "workload-gen"
SUBSYSTEM_ROUTER = "router"
SUBSYSTEM_KV_OFFLOAD = "kv-offload"

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_M64 = (1 << 64) - 1


def to_int64(x: int) -> int:
    """Reinterpret the low 64 bits of ``x`` as a signed int64 (Go's ``int64(uint64)``)."""
    x &= _M64
    return x - (1 << 64) if x >= (1 << 63) else x


def fnv1a64(data: str | bytes) -> int:
    """FNV-1a 64-bit hash of ``data`` (UTF-8 for str), as an unsigned int."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = _FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * _FNV_PRIME) & _M64
    return h


def derive_seed(seed: int, name: str) -> int:
    """Seed of BLIS's ``PartitionedRNG(seed).ForSubsystem(name)`` as a signed int64."""
    seed = to_int64(int(seed))
    if name == SUBSYSTEM_WORKLOAD:
        return seed
    return to_int64(seed ^ fnv1a64(name))


def splitmix64(x: int) -> int:
    """SplitMix64 finaliser of ``x`` (unsigned 64-bit in, unsigned 64-bit out)."""
    z = (int(x) + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class GoRand:
    """One Go ``math/rand`` (v1) generator, bit-exact: ``GoRand(seed)`` is
    ``rand.New(rand.NewSource(seed))``.

    ``state`` is the kernel state array; pass it to :mod:`blis.kernels.gorand`
    kernels (or to compiled loops) to draw without Python overhead.
    """

    __slots__ = ("state", "seed")

    def __init__(self, seed: int):
        self.seed = to_int64(int(seed))
        self.state = _g.go_seed(self.seed)

    def copy(self) -> "GoRand":
        other = GoRand.__new__(GoRand)
        other.seed = self.seed
        other.state = self.state.copy()
        return other

    def int63(self) -> int:
        return int(_g.int63_nb(self.state))

    def uint64(self) -> int:
        return int(_g.uint64_nb(self.state))

    def uint32(self) -> int:
        return int(_g.uint32_nb(self.state))

    def int31(self) -> int:
        return int(_g.int31_nb(self.state))

    def int31n(self, n: int) -> int:
        if not 0 < n <= 2147483647:
            raise ValueError(f"GoRand.int31n: n must be in [1, 2^31-1], got {n}")
        return int(_g.int31n_nb(self.state, n))

    def int63n(self, n: int) -> int:
        if not 0 < n <= 9223372036854775807:
            raise ValueError(f"GoRand.int63n: n must be in [1, 2^63-1], got {n}")
        return int(_g.int63n_nb(self.state, n))

    def intn(self, n: int) -> int:
        if not 0 < n <= 9223372036854775807:
            raise ValueError(f"GoRand.intn: n must be in [1, 2^63-1], got {n}")
        return int(_g.intn_nb(self.state, n))

    def float64(self) -> float:
        return float(_g.float64_nb(self.state))

    def norm_float64(self) -> float:
        return float(_g.norm_float64_nb(self.state))

    def exp_float64(self) -> float:
        return float(_g.exp_float64_nb(self.state))

    def perm(self, n: int) -> np.ndarray:
        return _g.perm_nb(self.state, n)

    def shuffle(self, arr: np.ndarray) -> None:
        """``Rand.Shuffle`` applied in place to a 1-D numpy array."""
        _g.shuffle_nb(self.state, arr)

    def skip_intn(self, n: int, k: int) -> None:
        """Consume ``k`` draws of ``Intn(n)`` (``n <= 2^31-1``) without returning them."""
        if not 0 < n <= 2147483647:
            raise ValueError(f"GoRand.skip_intn: n must be in [1, 2^31-1], got {n}")
        _g.skip_intn_nb(self.state, n, k)

    def intn_array(self, n: int, k: int) -> np.ndarray:
        """``k`` draws of ``Intn(n)`` as an int64 array (e.g. BLIS token ids)."""
        out = np.empty(int(k), np.int64)
        _g.fill_intn_nb(self.state, n, out)
        return out


class PartitionedRNG:
    """BLIS's ``PartitionedRNG``: one cached :class:`GoRand` per subsystem name."""

    def __init__(self, seed: int):
        self.seed = to_int64(int(seed))
        self._streams: Dict[str, GoRand] = {}

    def for_subsystem(self, name: str) -> GoRand:
        rng = self._streams.get(name)
        if rng is None:
            rng = GoRand(derive_seed(self.seed, name))
            self._streams[name] = rng
        return rng


def instance_subsystem(index: int) -> str:
    """Subsystem name of instance ``index`` (``instance_<index>``)."""
    return f"instance_{index}"
