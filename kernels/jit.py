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


def _import_numba():
    """``import numba`` without its optional probes and without error-message colouring.

    With colorama installed, numba builds every typing error through colorama's terminal
    wrappers even under its default ``no_color`` scheme; overload resolution creates
    thousands of such errors while compiling (a failed template is an error), about 2-3
    CPU-s of a cold compile here.  Unless the user chose a colour scheme,
    ``NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING`` is set while numba imports (it is read
    once, at import) and restored afterwards.
    """
    key = "NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING"
    saved = os.environ.get(key)
    if saved is None and "NUMBA_COLOR_SCHEME" not in os.environ:
        os.environ[key] = "1"
    try:
        with _refusing("coverage"):  # see _patch_numba_startup
            import numba
    finally:
        if saved is None:
            os.environ.pop(key, None)
    return numba


def _drop_llvm_lock_events():
    """Remove numba's callbacks on llvmlite's lock.

    numba announces every call into LLVM (tens of thousands per cold compile) as a
    ``numba:llvm_lock`` event, which each compiling dispatcher up the call chain times
    for its ``get_metadata()`` report; about 1 CPU-s of a cold compile here.  Only that
    report's LLVM-lock time is lost.
    """
    try:
        import llvmlite.binding as ll
        cbs = ll.ffi.lib._lock._cblist
    except AttributeError:
        return
    cbs[:] = [cb for cb in cbs if "_initialize_llvm_lock_event" not in getattr(cb[0], "__qualname__", "")]


numba = _import_numba()
_patch_numba_startup()
_drop_llvm_lock_events()

#: Python functions of ``@njit(inner=True)`` kernels (see ``_patch_numba_inner``).
_INNER = set()


def _stub_module(full, own, name):
    """The module emitted as machine code for an inner kernel's library.

    It keeps the library's environment globals (numba sets them when the library loads)
    and, for each of the library's own functions, a Python entry point that raises
    ``RuntimeError``: the code itself exists only inside the kernels that call it.
    """
    import llvmlite.binding as ll
    from numba.core.itanium_mangler import prepend_namespace

    msg = (f"blis: {name} is compiled only into the kernels that call it (njit inner=True); "
           "call it from compiled code, or set BLIS_NUMBA_INNER=0 to compile it standalone").encode() + b"\0"
    text = "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "\\%02X" % c for c in msg)
    lines = [f'target triple = "{full.triple}"', f'target datalayout = "{full.data_layout}"',
             "@PyExc_RuntimeError = external global i8",  # resolved to the object itself, as numba's uses
             f'@.blis.inner.msg = private unnamed_addr constant [{len(msg)} x i8] c"{text}"',
             "declare void @PyErr_SetString(ptr, ptr)"]
    lines += [str(gv) for gv in full.global_variables
              if gv.name.startswith("_ZN08NumbaEnv") and not gv.is_declaration]
    entries = sorted({prepend_namespace(f, ns="cpython") for f in own
                      if f.startswith("_ZN") and not f.startswith("_ZN7cpython")})
    for fn in entries:
        lines.append(f'define ptr @"{fn}"(ptr %closure, ptr %args, ptr %kws) {{\n'
                     "  call void @PyErr_SetString(ptr @PyExc_RuntimeError, ptr @.blis.inner.msg)\n"
                     "  ret ptr null\n}")
    stub = ll.parse_assembly("\n".join(lines) + "\n")
    stub.name = full.name
    stub.verify()
    return stub


def _patch_numba_inner():
    """Compile ``@njit(inner=True)`` kernels only as IR for their callers.

    numba compiles every jitted function into its own library and, when finalising it,
    links in the optimised modules of everything it calls, runs LLVM's module passes
    over the whole and emits machine code for the whole.  Along the engine's call chain
    (``run_nb`` -> ``_instance_event`` -> ``_step`` -> ``_form_batch`` -> ...) each
    level thus re-optimises and re-emits its whole subtree: about a third of a cold
    compile.  An inner kernel is one only compiled code calls.  Its library keeps
    numba's per-function optimisation and is linked into its callers as before (so the
    caller's module passes see, inline and optimise exactly the same code), but it skips
    the module-level passes and its machine code is a stub: a Python-level call raises
    ``RuntimeError``.  It has no Python or C-callable wrappers.  The cache keeps its
    linkable IR (what callers and the start-up helper in ``blis.precompile`` need).

    ``BLIS_NUMBA_INNER=0`` compiles inner kernels as ordinary ones.  If numba's
    internals differ from what this expects, nothing is patched.
    """
    if os.environ.get("BLIS_NUMBA_INNER", "") == "0":
        return False
    from numba.core import codegen, compiler
    lib_cls = getattr(codegen, "CPUCodeLibrary", None)
    needed = ("finalize", "_raise_if_finalized", "_get_module_for_linking", "_finalize_dynamic_globals",
              "_finalize_final_module", "enable_object_caching")
    if (lib_cls is None or not hasattr(compiler, "compile_extra") or not all(hasattr(lib_cls, a) for a in needed)
            or not hasattr(getattr(codegen, "CPUCodegen", None), "_check_llvm_bugs")):
        return False
    from numba.core.compiler_lock import require_global_compiler_lock
    import llvmlite.binding as ll

    try:  # the stub is written with opaque pointers (LLVM >= 15, llvmlite >= 0.44)
        ll.parse_assembly("@g = external global i8\ndefine ptr @f(ptr %a) {\n  ret ptr @g\n}\n")
    except Exception:
        return False

    compile_extra = compiler.compile_extra

    def compile_extra_inner(typingctx, targetctx, func, args, return_type, flags, locals, library=None,
                            pipeline_class=compiler.Compiler):
        if library is None and func in _INNER:
            library = targetctx.codegen().create_library(func.__qualname__)
            library.enable_object_caching()
            library._blis_inner = True
            flags.no_cpython_wrapper = True
            flags.no_cfunc_wrapper = True
        return compile_extra(typingctx, targetctx, func, args, return_type, flags, locals,
                             library=library, pipeline_class=pipeline_class)

    finalize = lib_cls.finalize

    def finalize_inner(self):
        if not getattr(self, "_blis_inner", False):
            return finalize(self)
        require_global_compiler_lock()
        self._codegen._check_llvm_bugs()
        self._raise_if_finalized()
        own = [fn.name for fn in self._final_module.functions if not fn.is_declaration]
        seen = set()
        for library in self._linking_libraries:
            if library not in seen:
                self._reload_init.update(library._reload_init)
                seen.add(library)
                self._final_module.link_in(library._get_module_for_linking(), preserve=True)
        full = self._final_module
        full.verify()
        self._finalize_dynamic_globals()
        stub = _stub_module(full, own, self.name)
        # the stub's entry points also go into the linkable module, as numba's wrappers
        # do: a library loaded from the cache learns its defined symbols from that module
        full.link_in(stub, preserve=True)
        for fn in full.functions:  # as _get_module_for_linking: callers may each link it
            if not fn.is_declaration and fn.linkage == ll.Linkage.external:
                fn.linkage = "linkonce_odr"
        self._shared_module = full
        self._final_module = stub
        self._finalize_final_module()

    compiler.compile_extra = compile_extra_inner
    lib_cls.finalize = finalize_inner
    return True


INNER_ENABLED = _patch_numba_inner()
_TWIN_CLASSES = {}


def _twin_class(cls):
    """A subclass of numba's dispatcher class ``cls`` whose compiled callers call a twin.

    A public kernel is called from Python (tests, benchmarks, the engine's set-up) and
    from other kernels.  Compiled code sees a kernel through its numba type; here that
    type names an inner twin: the same function under the qualified name
    ``<name>_inner``, compiled with ``inner=True`` (see ``_patch_numba_inner``) and
    cached under that name.  Python calls compile and run the kernel itself, as usual;
    a run compiles each kernel only in the form it uses.
    """
    twin_cls = _TWIN_CLASSES.get(cls)
    if twin_cls is None:
        def _numba_type_(self):
            twin = self.__dict__.get("_blis_twin")
            if twin is None:
                fn = self.py_func
                clone = type(fn)(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
                clone.__qualname__ = fn.__qualname__ + "_inner"
                clone.__module__ = fn.__module__
                clone.__doc__ = fn.__doc__
                _INNER.add(clone)
                twin = numba.njit(**self._blis_flags)(clone)
                self.__dict__["_blis_twin"] = twin
            return numba.core.types.Dispatcher(twin)
        twin_cls = type(cls.__name__, (cls,), {"_numba_type_": property(_numba_type_), "__module__": cls.__module__})
        _TWIN_CLASSES[cls] = twin_cls
    return twin_cls


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

#: ``no_cfunc_wrapper``: no kernel is used as a first-class function or C callback, so
#: the C-callable wrapper numba would compile for each (about 1.5 CPU-s in all) is skipped.
JIT_FLAGS = dict(cache=True, nogil=True, no_cfunc_wrapper=True)
HOT_FLAGS = dict(JIT_FLAGS, _nrt=False)


def _make(flags, args, kwargs):
    f = dict(flags)
    f.update(kwargs)
    inner = f.pop("inner", False)
    fn = args[0] if args and callable(args[0]) else None
    decorator = numba.njit(**f) if fn is not None else numba.njit(*args, **f)

    def wrap(fn):
        if inner:
            _INNER.add(fn)
        disp = decorator(fn)
        if INNER_ENABLED and not inner and isinstance(disp, numba.core.registry.CPUDispatcher):
            disp.__class__ = _twin_class(type(disp))
            disp._blis_flags = dict(f)
        return disp
    return wrap(fn) if fn is not None else wrap


def njit(*args, **kwargs):
    """``numba.njit`` with the package's shared flags (``cache=True``).

    ``inner=True`` marks a kernel that only other kernels call (never Python): it is
    compiled as IR for its callers only, see ``_patch_numba_inner``.
    """
    return _make(JIT_FLAGS, args, kwargs)


def njit_hot(*args, **kwargs):
    """``njit`` without reference counting, for non-allocating hot-loop kernels."""
    return _make(HOT_FLAGS, args, kwargs)
