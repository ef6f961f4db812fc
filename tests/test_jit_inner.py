"""``@njit(inner=True)``: kernels compiled only as IR for the kernels that call them.

kernels/jit.py patches numba so an inner kernel's library skips LLVM's module passes and
emits a stub instead of machine code (its callers link, optimise and emit its IR, as
they always did).  What must hold, checked on a toy module in fresh processes:

* callers compute the same results as with ordinary kernels (``BLIS_NUMBA_INNER=0``);
* a Python-level call of an inner kernel raises ``RuntimeError`` naming it, never
  crashes;
* the on-disk cache round-trips: a cached caller loads, and a *new* caller links an
  inner kernel loaded from the cache (what the start-up helper relies on);
* a public kernel called from compiled code is compiled there as its inner twin
  (``<name>_inner``), while Python calls compile and run the kernel itself.
"""
import json
import os
import subprocess
import sys

import pytest

TOY = '''
import numpy as np
from blis.kernels.jit import njit


@njit(inner=True)
def _leaf(a, i):
    return a[i] * 2 + 1


@njit(inner=True)
def _mid(a):
    s = 0
    for i in range(a.shape[0]):
        s += _leaf(a, i)
    return s


@njit
def root(a):
    return _mid(a) + 1


@njit
def root2(a, k):
    return _mid(a) * k


@njit
def pub(a):
    return a.sum() + 5


@njit
def root3(a):
    return pub(a) * 2
'''

DRIVER = '''
import json, sys
import numba
import numpy as np
sys.path.insert(0, sys.argv[1])
import toyinner as t
a = np.arange(10, dtype=np.int64)
out = {"root": int(t.root(a))}
if "root2" in sys.argv[2:]:
    out["root2"] = int(t.root2(a, 3))
if "pub" in sys.argv[2:]:
    out["root3"] = int(t.root3(a))
    out["pub"] = int(t.pub(a))
    out["pub_type"] = str(numba.typeof(t.pub))
try:
    out["mid"] = int(t._mid(a))
except RuntimeError as e:
    out["mid_error"] = str(e)
out["hits"] = {n: sum(getattr(t, n).stats.cache_hits.values()) for n in ("root", "root2", "_mid", "_leaf", "pub")}
out["compiled"] = {n: len(getattr(t, n).signatures) for n in ("root", "root2", "_mid", "_leaf", "pub")}
print(json.dumps(out))
'''


@pytest.fixture()
def toy(tmp_path):
    (tmp_path / "toyinner.py").write_text(TOY)
    (tmp_path / "driver.py").write_text(DRIVER)
    return tmp_path


def _drive(toy, cache, *extra, inner=True):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("BLIS_NUMBA_INNER", None)
    if not inner:
        env["BLIS_NUMBA_INNER"] = "0"
    p = subprocess.run([sys.executable, str(toy / "driver.py"), str(toy), *extra], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_inner_kernels_link_into_callers_and_refuse_python_calls(toy, tmp_path):
    expected = sum(2 * i + 1 for i in range(10))  # 100
    cache = tmp_path / "cache"

    first = _drive(toy, cache)
    assert first["root"] == expected + 1
    assert "mid" not in first
    assert "_mid" in first["mid_error"] and "inner=True" in first["mid_error"]
    assert first["hits"]["root"] == 0

    # warm: the caller comes from the cache and still computes the same
    second = _drive(toy, cache)
    assert second["root"] == expected + 1 and second["hits"]["root"] >= 1
    assert "_mid" in second["mid_error"]

    # a caller compiled now links the inner kernel's IR loaded from the cache
    third = _drive(toy, cache, "root2")
    assert third["root2"] == 3 * expected
    assert third["hits"]["root2"] == 0 and third["hits"]["_mid"] >= 1


def test_public_kernels_called_from_compiled_code_use_an_inner_twin(toy, tmp_path):
    out = _drive(toy, tmp_path / "cache", "pub")
    assert out["root3"] == 2 * (45 + 5) and out["pub"] == 45 + 5
    assert "pub_inner" in out["pub_type"]      # compiled callers see the twin
    assert out["compiled"]["pub"] == 1         # the Python call compiled the kernel itself
    warm = _drive(toy, tmp_path / "cache", "pub")
    assert (warm["root3"], warm["pub"]) == (out["root3"], out["pub"]) and warm["hits"]["pub"] >= 1


def test_inner_disabled_compiles_ordinary_kernels(toy, tmp_path):
    plain = _drive(toy, tmp_path / "plain-cache", "root2", "pub", inner=False)
    assert plain["mid"] == 100 and plain["root"] == 101 and plain["root2"] == 300
    assert "pub_inner" not in plain["pub_type"]
    inner = _drive(toy, tmp_path / "inner-cache", "root2", "pub")
    for k in ("root", "root2", "root3", "pub"):
        assert inner[k] == plain[k], k


def test_inner_is_only_a_compile_option():
    # the decorator keeps the function a normal numba dispatcher for compiled callers
    from blis.kernels import engine as E
    from blis.kernels import jit

    assert E._step.py_func in jit._INNER and E.run_nb.py_func not in jit._INNER
    assert jit.INNER_ENABLED
