"""One set of jit flags for the whole package (njit: nopython, cached, nogil).

``njit`` is the default.  ``njit_hot`` is for the engine's hot loop: it also
disables numba's reference counting (``_nrt=False``), which removes atomic
incref/decref pairs on every array passed between kernels; such kernels must
not allocate arrays.
"""
import numba

JIT_FLAGS = dict(cache=True, nogil=True)
HOT_FLAGS = dict(JIT_FLAGS, _nrt=False)


def _make(flags, args, kwargs):
    f = dict(flags)
    f.update(kwargs)
    if args and callable(args[0]):
        return numba.njit(**f)(args[0])
    return numba.njit(*args, **f)


def njit(*args, **kwargs):
    """``numba.njit`` with the package's shared flags (``cache=True``)."""
    return _make(JIT_FLAGS, args, kwargs)


def njit_hot(*args, **kwargs):
    """``njit`` without reference counting, for non-allocating hot-loop kernels."""
    return _make(HOT_FLAGS, args, kwargs)
