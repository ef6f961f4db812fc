"""One set of jit flags for the whole package (njit: nopython, cached, nogil).

``njit`` is the default.  ``njit_hot`` is for the engine's hot loop: it also
disables numba's reference counting (``_nrt=False``), which removes atomic
incref/decref pairs on every array passed between kernels; such kernels must
not allocate arrays.
"""
import hashlib
import os
import sys
from pathlib import Path

import numba


class _NoScipy:
    """Meta-path hook refusing ``scipy`` while numba loads its array-math registry."""

    def find_spec(self, name, path=None, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("blis: scipy is not loaded for numba's BLAS check (no kernel uses BLAS)")
        return None


def _load_numba_array_math():
    """Import ``numba.np.arraymath`` now, without its BLAS probe importing scipy.

    numba's first compile or cache load imports ``numba.np.arraymath``, whose
    ``_check_blas()`` imports ``scipy.linalg`` (about 0.3-0.6 s) only to enable
    ``np.dot``/``np.linalg`` in compiled code, which no kernel here uses.  The hook is
    removed right after, so later ``import scipy`` works normally; numba code of the
    user's own in the same process then lacks BLAS functions.  ``BLIS_NUMBA_BLAS=1``
    keeps numba's default.
    """
    if os.environ.get("BLIS_NUMBA_BLAS", "") not in ("", "0") or "scipy.linalg" in sys.modules \
            or "numba.np.arraymath" in sys.modules:
        return
    hook = _NoScipy()
    sys.meta_path.insert(0, hook)
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        sys.meta_path.remove(hook)


_load_numba_array_math()


def _source_keyed_cache_dir():
    """A numba cache directory keyed by the contents of every compiled source file.

    numba checks only the stamp of the file a function is defined in, so after an
    upgrade that changes ``kvcache.py`` but not ``engine.py`` it would load a stale
    ``run_nb`` built against the old callees.  Keying the directory by a hash of all
    compiled sources makes any change start a fresh cache.  ``NUMBA_CACHE_DIR`` wins
    when set.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    here = Path(__file__).resolve().parent
    pkg = here.parent / "blis" if (here.parent / "blis" / "engine.py").is_file() else here.parent
    h = hashlib.sha1(numba.__version__.encode())
    for f in sorted(here.glob("*.py")) + sorted(p for p in pkg.rglob("*.py") if here not in p.parents):
        data = f.read_bytes()
        if f.parent == here or b"njit" in data:  # every file that defines compiled code
            h.update(str(f.relative_to(f.parent.parent)).encode())
            h.update(data)
    return here / "__pycache__" / f"numba-{h.hexdigest()[:16]}"


_dir = _source_keyed_cache_dir()
if _dir is not None:
    try:
        _dir.mkdir(parents=True, exist_ok=True)
        numba.config.CACHE_DIR = str(_dir)
    except OSError:  # read-only install: numba falls back to its own user-wide cache
        pass

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
