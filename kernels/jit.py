"""One set of jit flags for the whole package (njit: nopython, cached, nogil)."""
import numba

JIT_FLAGS = dict(cache=True, nogil=True)


def njit(*args, **kwargs):
    """``numba.njit`` with the package's shared flags (``cache=True``)."""
    flags = dict(JIT_FLAGS)
    flags.update(kwargs)
    if args and callable(args[0]):
        return numba.njit(**flags)(args[0])
    return numba.njit(*args, **flags)
