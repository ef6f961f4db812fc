"""Start-up: the engine's compiled variants, the two-process first compile, warm loads.

* ``run_nb`` compiles the CPU tier (argument ``cpu``) and the policies (weighted
  routing, built-in admission policies, decision trace: arguments ``pa``, ``hsc``) in
  only when a run uses them; a plain run takes the *basic* variant (numba prunes both)
  and must give identical results in the *full* one, and a CPU-tier run without those
  policies must give identical results in its own variant and in the full one.
* On a cold cache a helper process compiles ``_step`` (blis/precompile.py); the types it
  compiles must be exactly those ``run_nb``'s compile asks for, else the work is wasted.
* A warm run loads cached kernels without numba's implementation registries.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from blis import precompile
from blis.engine import EngineConfig, Simulation
from blis.kernels import engine as E
from blis.kernels import layout as Lo

from test_engine_invariants import RANDOM_CASES, random_table, simulate, toy

MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct"]


def _run(case, seed, force_full):
    cfg = dict(RANDOM_CASES[case])
    deadlines = cfg.pop("deadlines", False)
    mml = cfg.get("max_model_len", 0)
    table = random_table(seed, n=40, deadline_frac=0.4 if deadlines else 0.0,
                         max_output_frac=0.3 if mml else 0.0)
    lat = toy(500.0, 2.0, 10.0, otpt_us=30, post_decode_us=7)
    cfg.setdefault("total_kv_blocks", 1000)
    cfg.setdefault("horizon_us", 10**12)
    sim = Simulation(table, EngineConfig(**cfg), lat)
    if force_full:
        sim.variant = lambda: (True, True)
    return sim, sim.run()


@pytest.mark.parametrize("case", ["least-loaded-3-instances-tight", "sjf-chunked-prefill",
                                  "round-robin-3-instances-deadlines", "block-1-tiny"])
def test_basic_variant_gives_the_full_variants_results(case):
    sim_b, basic = _run(case, 5, False)
    sim_f, full = _run(case, 5, True)
    assert not sim_b.full_variant()
    assert sim_b.run_args()[8] is None and sim_f.run_args()[8] is not None  # cpu tuple
    for k in basic.cols:
        assert np.array_equal(basic.cols[k], full.cols[k]), k
    assert basic.instances == full.instances
    assert basic.stdout_text() == full.stdout_text()


@pytest.mark.parametrize("gpu_blocks,cpu_blocks", [(24, 16), (40, 60), (64, 1000)])
def test_cpu_tier_variant_gives_the_full_variants_results(gpu_blocks, cpu_blocks):
    # a CPU-tier run without weighted routing, admission policies or trace compiles the
    # tier only; forced into the full variant it must compute the same thing
    from test_kv_tiers import _linear, _reuse_workload

    t = _reuse_workload()
    cfg = EngineConfig(total_kv_blocks=gpu_blocks, block_size=16, max_num_seqs=8, kv_cpu_blocks=cpu_blocks,
                       kv_transfer_bandwidth=4.0, kv_transfer_base_latency_us=5)
    sim_t, sim_f = Simulation(t, cfg, _linear()), Simulation(t, cfg, _linear())
    sim_f.variant = lambda: (True, True)
    assert sim_t.variant() == (True, False)
    args = sim_t.run_args()
    assert args[8] is sim_t.cpu and args[18] is None and args[19] is None
    assert sim_f.run_args()[19] is not None
    tier, full = sim_t.run(), sim_f.run()
    assert tier.instances[0].cpu_mirrored > 0  # the tier is exercised
    if gpu_blocks < 64:
        assert tier.instances[0].cpu_hits > 0
    for k in tier.cols:
        assert np.array_equal(tier.cols[k], full.cols[k]), k
    assert np.array_equal(sim_t.ins, sim_f.ins)
    assert tier.instances == full.instances
    assert tier.stdout_text() == full.stdout_text()


@pytest.mark.parametrize("cfg, variant", [
    (dict(), (False, False)),
    (dict(num_instances=3, routing=Lo.ROUTE_LEAST_LOADED), (False, False)),
    (dict(kv_cpu_blocks=64), (True, False)),
    (dict(num_instances=2, routing=Lo.ROUTE_WEIGHTED), (False, True)),
    (dict(trace_decisions=True), (False, True)),
    (dict(admission=Lo.ADMIT_TOKEN_BUCKET), (False, True)),
    (dict(kv_cpu_blocks=64, num_instances=2, routing=Lo.ROUTE_WEIGHTED), (True, True)),
])
def test_runs_compile_in_the_tier_and_the_policies_only_when_they_use_them(cfg, variant):
    table = random_table(1, n=4)
    sim = Simulation(table, EngineConfig(total_kv_blocks=200, **cfg), toy())
    assert sim.variant() == variant
    assert sim.full_variant() is any(variant)
    args = sim.run_args()
    assert (args[8] is None) is (not variant[0])  # CPU tier
    assert (args[18] is None) is (not variant[1]) and (args[19] is None) is (not variant[1])  # LRU, scorers
    sim.run()  # and it runs in that variant


@pytest.mark.parametrize("cfg", [dict(), dict(kv_cpu_blocks=64)])
def test_the_helpers_step_types_are_the_ones_run_nb_compiles(cfg):
    # after a run (compiled here or loaded), numba's cache holds _step for exactly the
    # types run_nb's compile asked for: the helper must compute the same ones
    sim, _ = simulate(random_table(2, n=6), toy(), **cfg)
    sig = precompile.step_argtypes(tuple(numba.typeof(a) for a in sim.run_args()))
    assert sig is not None and len(sig) == E._step.py_func.__code__.co_argcount
    assert precompile.is_cached(E._step, sig)
    assert precompile.is_cached(E.run_nb, tuple(numba.typeof(a) for a in sim.run_args()))
    assert not precompile.is_cached(E._step, sig[:-1] + (numba.types.int32,))
    # and the step-time kernel the main process compiles first (compile_step_time)
    # for exactly the types _step's compile asked for
    st = precompile.step_time_argtypes(tuple(numba.typeof(a) for a in sim.run_args()))
    assert st is not None and len(st) == E.step_time_nb.py_func.__code__.co_argcount
    assert precompile.is_cached(precompile.step_time_dispatcher(), st)
    assert not precompile.is_cached(precompile.step_time_dispatcher(), st[:-1] + (numba.types.int32,))


def test_the_early_helper_derives_the_command_lines_types():
    from blis.cli import build_run_workload, build_simulation, parse_args, validate_common

    argv = ["run", *MODEL, "--num-requests", "3", "--rate", "8", "--kv-cpu-blocks", "100"]
    ns = parse_args(argv)
    validate_common(ns)
    table, horizon = build_run_workload(ns)
    sim = build_simulation(ns, table, horizon)
    want = precompile.step_argtypes(tuple(numba.typeof(a) for a in sim.run_args()))
    assert precompile._types_of_cli(argv) == want


def test_helper_is_off_when_disabled_busy_or_cached(monkeypatch):
    monkeypatch.setenv("BLIS_PARALLEL_COMPILE", "0")
    assert not precompile.enabled()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("BLIS_PARALLEL_COMPILE", "")
    monkeypatch.setattr(precompile, "_others_running", lambda: 1)
    assert not precompile.enabled()  # the other CPU is busy
    monkeypatch.setattr(precompile, "_others_running", lambda: 0)
    assert precompile.enabled()
    monkeypatch.setenv("BLIS_PARALLEL_COMPILE", "1")
    monkeypatch.setattr(precompile, "_others_running", lambda: 5)
    assert precompile.enabled()  # forced
    monkeypatch.delenv("BLIS_PARALLEL_COMPILE")
    sim, _ = simulate(random_table(3, n=4), toy())
    # cached now: no helper, nothing to reap
    assert precompile.prepare_engine(sim.run_args()) is None


def test_an_early_helper_is_used_even_when_its_own_work_makes_the_cpu_busy(monkeypatch):
    # the idle-CPU test runs when the helper starts; once it runs, the other CPU is busy
    # and the same test at prepare time must not make this process compile _step itself
    class FakeHelper:
        waits = 0

        def wait(self, timeout=None):
            FakeHelper.waits += 1
            return True

    monkeypatch.setenv("BLIS_PARALLEL_COMPILE", "")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(precompile, "_others_running", lambda: 1)
    assert not precompile.enabled()
    sim, _ = simulate(random_table(3, n=4), toy())
    monkeypatch.setattr(precompile, "is_cached", lambda d, t: False)  # as on a fresh cache
    monkeypatch.setattr(precompile, "_early", FakeHelper())
    finish = precompile.prepare_engine(sim.run_args())
    assert finish is not None and "compile" in E._step.__dict__  # _step's compile waits for it
    finish()
    assert FakeHelper.waits == 1 and "compile" not in E._step.__dict__ and precompile._early is None


def _blis(args, env_extra, cwd):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-m", "blis.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


def test_cold_first_run_compiles_step_in_a_helper_and_matches_a_warm_run(tmp_path):
    # a fresh numba cache: the helper compiles _step, this process loads it from the cache
    args = ["run", *MODEL, "--num-requests", "30", "--rate", "8", "--log", "debug"]
    cold = _blis(args, {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "BLIS_PARALLEL_COMPILE": "1",
                        "TMPDIR": str(tmp_path)}, tmp_path)
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert "precompile helper done" in cold.stderr and "ok=True" in cold.stderr, cold.stderr[-3000:]
    warm = _blis(args, {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}, tmp_path)
    assert warm.returncode == 0
    assert "precompile helper" not in warm.stderr  # cached: no helper
    assert cold.stdout == warm.stdout
    assert not list(tmp_path.glob("blis-precompile-*"))


def test_a_warm_run_loads_kernels_without_numbas_implementation_registries(tmp_path):
    # numba's registries (numba.np.arraymath among them) are needed to compile, not to
    # load cached code; blis.kernels.jit keeps cache loads from importing them
    code = ("import sys; from blis.cli import simulate_argv; "
            "r = simulate_argv(['run', '--model', 'meta-llama/llama-3.1-8b-instruct', '--num-requests', '5', "
            "'--rate', '8']); print(r.stdout_text()); print('arraymath' , 'numba.np.arraymath' in sys.modules)")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
            for _ in range(2)]
    for o in outs:
        assert o.returncode == 0, o.stderr[-2000:]
    assert outs[1].stdout.strip().endswith("arraymath False")
    assert outs[0].stdout.split("arraymath")[0] == outs[1].stdout.split("arraymath")[0]
