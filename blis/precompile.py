"""First-run compile on two cores: half of the engine compiles in a helper process.

The engine kernel (:func:`blis.kernels.engine.run_nb`) is compiled by numba on the first
run and cached on disk.  numba compiles one function at a time, in one thread.  When a
simulation is about to call ``run_nb`` and numba's cache lacks it for this run's argument
types, :func:`prepare_engine` starts ``python -m blis.precompile`` on the types of the
step kernel (``_step``: batch formation, KV allocation, the latency model -- about half
of the engine), which compiles it and writes numba's cache, while this process compiles
the rest of the engine.  When this process's compile reaches ``_step`` it waits for the
helper and loads the helper's result from the cache.  Before anything else this process
compiles the step-time kernel ``_step`` calls (:func:`compile_step_time`); the helper
reaches that call only after batch formation and loads it from the cache.

Nothing here changes what is computed: the helper compiles the same function for the
same types that this process would, and if it fails or is disabled this process
compiles ``_step`` itself, as numba always does.  ``BLIS_PARALLEL_COMPILE=0`` disables
the helper and ``=1`` forces it; by default it starts only when a CPU is idle, never on a
single CPU or when the cache already holds the kernel.  The cache lookups use numba's cache index (``Dispatcher._cache``); if those
internals change, no helper is started.
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

log = logging.getLogger(__name__)

#: seconds this process waits for the helper before compiling ``_step`` itself
HELPER_TIMEOUT_S = 900.0


def _others_running() -> float:
    """Processes running or runnable right now besides this one (``/proc/loadavg``; the
    one-minute load average elsewhere)."""
    try:
        with open("/proc/loadavg") as f:
            return max(int(f.read().split()[3].split("/")[0]) - 1, 0)
    except (OSError, ValueError, IndexError):
        try:
            return max(os.getloadavg()[0] - 1.0, 0.0)
        except OSError:
            return 0.0


def enabled() -> bool:
    """Whether to start a helper: ``BLIS_PARALLEL_COMPILE=1`` always, ``=0`` never;
    by default only when this process may use more than one CPU and one of them is idle
    (on a busy machine the helper only adds its own start-up and duplicated small
    kernels: measured 50.6 s against 39.8 s serially with one core taken)."""
    v = os.environ.get("BLIS_PARALLEL_COMPILE", "")
    if v == "0":
        return False
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    if n <= 1:
        return False
    return v == "1" or _others_running() <= n - 2


def is_cached(dispatcher, argtypes) -> bool:
    """True when ``dispatcher`` already has, in memory or in numba's disk cache, a
    compiled version for ``argtypes``.  Unknown numba internals count as cached (so no
    helper is started)."""
    argtypes = tuple(argtypes)
    try:
        if argtypes in dispatcher.overloads:
            return True
        cache = dispatcher._cache
        index = cache._cache_file._load_index()
        return cache._index_key(argtypes, dispatcher.targetctx.codegen()) in index
    except Exception:  # pragma: no cover - numba internals moved
        return True


def step_argtypes(run_argtypes) -> Optional[tuple]:
    """Numba types of ``_step``'s arguments as ``run_nb`` passes them (by parameter name;
    the instance index and the clock are int64), or None if a name has no counterpart."""
    import inspect

    from numba import types

    from blis.kernels import engine as E

    run_names = list(inspect.signature(E.run_nb.py_func).parameters)
    if len(run_names) != len(run_argtypes):
        return None
    by_name = dict(zip(run_names, run_argtypes))
    out = []
    for name in inspect.signature(E._step.py_func).parameters:
        if name in by_name:
            out.append(by_name[name])
        elif name in ("i", "now"):
            out.append(types.int64)
        else:
            return None
    return tuple(out)


def step_time_dispatcher():
    """The dispatcher ``_step`` calls for the step time (the inner twin of
    :func:`blis.kernels.latency.step_time_nb`, see kernels/jit.py)."""
    import numba

    from blis.kernels import engine as E

    return numba.typeof(E.step_time_nb).dispatcher


def step_time_argtypes(run_argtypes) -> Optional[tuple]:
    """Numba types of the step-time call in ``_step`` (backend code from ``cfg``, the
    ``lat`` vector, the batch vectors ``scratch[3..6]``, int64 counts), or None."""
    import inspect

    from numba import types

    from blis.kernels import engine as E

    run_names = list(inspect.signature(E.run_nb.py_func).parameters)
    if len(run_names) != len(run_argtypes):
        return None
    by_name = dict(zip(run_names, run_argtypes))
    try:
        cfg, lat, scratch = by_name["cfg"], by_name["lat"], by_name["scratch"]
        pf_pi, pf_new, pf_len, dc_pi = (scratch.types[k] for k in (3, 4, 5, 6))
        return (cfg.dtype, lat, pf_pi, pf_new, pf_len, types.int64, dc_pi, types.int64, types.int64)
    except (KeyError, AttributeError, IndexError):
        return None


def compile_step_time(run_argtypes) -> None:
    """Compile the step-time kernel (the latency model, about a quarter of ``_step``)
    in this process while the helper compiles the rest of ``_step``: the helper reaches
    that call only after batch formation and then loads this process's result from the
    cache, and this process has less left to compile after ``_step`` arrives."""
    try:
        sig = step_time_argtypes(run_argtypes)
        d = step_time_dispatcher()
        if sig is not None and not is_cached(d, sig):
            d.compile(sig)
    except Exception as e:  # pragma: no cover - never let the optimisation break a run
        log.debug("step-time precompile skipped: %s", e)


class Helper:
    """A running ``python -m blis.precompile`` compiling ``_step`` for one signature:
    the pickled ``argtypes``, or (``cli_argv``) the one of the simulation a ``blis run`` /
    ``blis replay`` command line builds."""

    def __init__(self, argtypes=None, cli_argv: Optional[Sequence[str]] = None):
        fd, self.path = tempfile.mkstemp(prefix="blis-precompile-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(tuple(argtypes) if cli_argv is None else list(cli_argv), f)
        self.t0 = time.perf_counter()
        mode = "--types" if cli_argv is None else "--argv"
        self.proc = subprocess.Popen([sys.executable, "-m", "blis.precompile", mode, self.path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.ok: Optional[bool] = None

    def wait(self, timeout: float = HELPER_TIMEOUT_S) -> bool:
        """Wait for the helper; True if it compiled and cached the kernel."""
        if self.ok is None:
            try:
                _, err = self.proc.communicate(timeout=timeout)
                self.ok = self.proc.returncode == 0
                if not self.ok:
                    log.debug("precompile helper failed (%s): %s", self.proc.returncode,
                              err.decode(errors="replace")[-2000:])
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
                self.ok = False
            finally:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            log.debug("precompile helper done in %.1f s (ok=%s)", time.perf_counter() - self.t0, self.ok)
        return self.ok


def _wait_then_compile(dispatcher, helper: Helper):
    """Make ``dispatcher``'s next compile wait for ``helper`` first (then numba finds the
    helper's result in its cache).  Returns a function undoing this."""
    original = dispatcher.compile  # bound method of the class

    def compile(sig):
        undo()
        helper.wait()
        return original(sig)

    def undo():
        if dispatcher.__dict__.get("compile") is compile:
            del dispatcher.compile

    dispatcher.compile = compile
    return undo


#: the helper :func:`start_early` launched for this process's command line, if any
_early: Optional[Helper] = None


def engine_cache_is_fresh() -> bool:
    """True when numba's cache holds no version of the engine kernel for this code and
    this CPU at all (a fresh install, an upgrade or a new machine)."""
    try:
        from blis.kernels import engine as E

        d = E.run_nb
        cache = d._cache
        want = cache._index_key((), d.targetctx.codegen())[1:]
        index = cache._cache_file._load_index()
        return not any(tuple(k[1:]) == want for k in index)
    except Exception:  # pragma: no cover - numba internals moved
        return False


def start_early(cli_argv: Sequence[str]) -> None:
    """At the start of ``blis run`` / ``blis replay`` on a fresh cache: start the helper
    now, so that it compiles while this process generates the workload (the helper
    builds the same simulation on a one-request workload to learn the engine's types)."""
    global _early
    if _early is not None or not enabled() or not engine_cache_is_fresh():
        return
    try:
        _early = Helper(cli_argv=cli_argv)
    except Exception as e:  # pragma: no cover
        log.debug("precompile helper not started: %s", e)
        return
    run_types = _run_types_of_cli(cli_argv)
    if run_types is not None:
        compile_step_time(run_types)


def prepare_engine(run_args: Sequence) -> Optional[callable]:
    """Before a first ``run_nb(*run_args)`` call: if it will compile, have ``_step``
    compiled by a helper (the early one, or one started now) and return a function to
    call after ``run_nb`` returns (it reaps the helper); otherwise None."""
    global _early
    early, _early = _early, None
    # an early helper is used whatever enabled() says now: the helper itself keeps the
    # other CPU busy, which would make the idle-CPU test refuse it
    if early is None and not enabled():
        return None
    try:
        import numba

        from blis.kernels import engine as E

        run_types = tuple(numba.typeof(a) for a in run_args)
        if is_cached(E.run_nb, run_types):
            helper = None
        elif early is not None:
            helper = early
        else:
            sig = step_argtypes(run_types)
            helper = None if sig is None or is_cached(E._step, sig) else Helper(sig)
            if helper is not None:
                compile_step_time(run_types)
    except Exception as e:  # pragma: no cover - never let the optimisation break a run
        log.debug("precompile helper not started: %s", e)
        helper = None
    if helper is None:
        if early is not None:
            early.wait()
        return None
    undo = _wait_then_compile(E._step, helper)

    def finish():
        undo()
        helper.wait()
    return finish


def _run_types(cli_argv) -> tuple:
    """``run_nb``'s argument types for the simulation ``blis <cli_argv>`` builds, from a
    one-request stand-in workload (the types do not depend on the workload)."""
    import numpy as np

    from blis.cli import build_simulation, parse_args, validate_common
    from blis.requests import RequestTable

    logging.disable(logging.CRITICAL)  # the command's warnings are the parent's to print
    try:
        ns = parse_args(list(cli_argv))
        validate_common(ns)
        table = RequestTable.empty(1)
        table.cols["input_len"][:] = 1
        table.cols["output_len"][:] = 1
        sim = build_simulation(ns, table, np.iinfo(np.int64).max)
    finally:
        logging.disable(logging.NOTSET)
    import numba

    return tuple(numba.typeof(a) for a in sim.run_args())


def _run_types_of_cli(cli_argv) -> Optional[tuple]:
    """:func:`_run_types`, or None if the command line does not build (the command
    itself will report that)."""
    try:
        return _run_types(cli_argv)
    except (Exception, SystemExit) as e:  # argparse exits; bad values raise ConfigError
        log.debug("run types of %s not known: %r", cli_argv, e)
        return None


def _types_of_cli(cli_argv) -> Optional[tuple]:
    """``_step``'s argument types for the simulation ``blis <cli_argv>`` builds."""
    return step_argtypes(_run_types(cli_argv))


def main(argv=None) -> int:
    """``python -m blis.precompile --types TYPES.pkl`` compiles ``_step`` for the pickled
    argument types; ``--argv ARGV.pkl`` for the simulation that command line builds."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("--types", "--argv"):
        print("usage: python -m blis.precompile --types TYPES.pkl | --argv ARGV.pkl", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        payload = pickle.load(f)
    sig = tuple(payload) if argv[0] == "--types" else _types_of_cli(payload)
    if sig is None:
        return 1
    from blis.kernels import engine as E
    if not is_cached(E._step, sig):
        E._step.compile(sig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
