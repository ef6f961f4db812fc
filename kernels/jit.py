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


class _Refuse:
    """Meta-path hook refusing some top-level packages (numba's optional probes)."""

    def __init__(self, *names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ImportError(f"blis: {name} is not loaded for numba's optional probes")
        return None


def _refusing(*names):
    """Context manager: ``import`` of ``names`` fails inside (unless already imported)."""
    import contextlib

    names = tuple(n for n in names if n not in sys.modules)

    @contextlib.contextmanager
    def cm():
        hook = _Refuse(*names)
        sys.meta_path.insert(0, hook)
        try:
            yield
        finally:
            sys.meta_path.remove(hook)
    return cm()


def _patch_numba_startup():
    """Keep numba's start-up work off runs that only load cached kernels.

    Two changes, both reverting to numba's own behaviour when its internals differ:

    * Loading a cached kernel (``Cache.load_overload``) normally first *refreshes* the
      target context: it imports and installs every implementation registry numba has
      (about 0.35 s), which only compiling needs; numba's compiler refreshes by itself
      before compiling.  Here a cache load initialises only the runtime (NRT) the loaded
      code links against.
    * The first refresh imports ``numba.np.arraymath``, whose ``_check_blas()`` imports
      ``scipy.linalg`` (0.3-0.6 s) only to enable ``np.dot``/``np.linalg`` in compiled
      code, which no kernel here uses: scipy is refused during that refresh (a later
      ``import scipy`` works normally; numba code of the user's own in the same process
      then lacks BLAS functions).  ``BLIS_NUMBA_BLAS=1`` keeps numba's default.

    ``numba.misc.coverage_support`` imports ``coverage`` (60 ms) when it is installed, to
    report jitted lines under a coverage run; it is refused unless coverage is already
    running (imported) in this process.
    """
    from numba.core import caching, cpu
    from numba.core.runtime import rtsys

    cache_cls = caching.Cache
    if all(hasattr(cache_cls, a) for a in ("load_overload", "_load_overload",
                                            "_guard_against_spurious_io_errors")):
        def load_overload(self, sig, target_context):
            rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        cache_cls.load_overload = load_overload

    if os.environ.get("BLIS_NUMBA_BLAS", "") in ("", "0") and hasattr(cpu.CPUContext, "load_additional_registries"):
        original = cpu.CPUContext.load_additional_registries

        def load_additional_registries(self):
            if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
                return original(self)
            with _refusing("scipy"):
                return original(self)
        cpu.CPUContext.load_additional_registries = load_additional_registries


with _refusing("coverage"):  # see _patch_numba_startup
    import numba  # noqa: E402
_patch_numba_startup()


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
