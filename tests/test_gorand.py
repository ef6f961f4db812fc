"""Go math/rand port: bit-exact against vectors produced by Go itself (tests/data/gen_reference_vectors.go)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from blis.kernels import gorand as g
from blis.kernels.jit import njit
from blis.rng import GoRand, PartitionedRNG, derive_seed, fnv1a64, splitmix64, to_int64

DATA = Path(__file__).parent / "data"
VECTORS = json.loads((DATA / "gorand_vectors.json").read_text())
INT31N_ORDER = [1, 2, 3, 10, 1 << 30, 128000, 2**31 - 1, (1 << 30) + 1]
INT63N_ORDER = [1, 5, 1 << 40, 1000000000000000003, 2**63 - 1, (1 << 62) + 1]


def test_int63_stream_for_seed_1_matches_go():
    r = GoRand(1)
    assert [r.int63() for _ in range(4)] == [
        5577006791947779410, 8674665223082153551, 6129484611666145821, 4037200794235010051]


@pytest.mark.parametrize("v", VECTORS["seeds"], ids=lambda v: str(v["seed"]))
def test_every_draw_kind_matches_go(v):
    s = g.go_seed_nb(v["seed"])
    assert [g.int63_nb(s) for _ in range(8)] == v["int63"]
    s = g.go_seed_nb(v["seed"])
    assert [str(g.uint64_nb(s)) for _ in range(5)] == v["uint64"]
    assert [g.int31_nb(s) for _ in range(5)] == v["int31"]
    for n in INT31N_ORDER:  # the generator's draw order (JSON sorts the keys)
        assert [g.int31n_nb(s, n) for _ in range(6)] == v["int31n"][str(n)], n
    assert [g.intn_nb(s, 128000) for _ in range(20)] == v["intn_128000"]
    for n in INT63N_ORDER:
        assert [g.int63n_nb(s, n) for _ in range(6)] == v["int63n"][str(n)], n
    assert [g.float64_nb(s) for _ in range(10)] == v["float64"]
    assert [g.norm_float64_nb(s) for _ in range(20)] == v["norm_float64"]
    assert [g.exp_float64_nb(s) for _ in range(20)] == v["exp_float64"]
    assert g.perm_nb(s, 10).tolist() == v["perm_10"]
    a = np.arange(12)
    g.shuffle_nb(s, a)
    assert a.tolist() == v["shuffle_12"]
    assert [str(g.intn_nb(s, (1 << 40) + 7)), str(g.intn_nb(s, 7))] == v["mixed"]


@njit
def _fnv_of_draws(state, n, kind):
    h = np.uint64(14695981039346656037)
    buf = np.empty(1, np.float64)
    bits = buf.view(np.uint64)
    for _ in range(n):
        buf[0] = g.norm_float64_nb(state) if kind == 0 else g.exp_float64_nb(state)
        b = bits[0]
        for k in range(8):
            h ^= (b >> np.uint64(8 * k)) & np.uint64(0xFF)
            h *= np.uint64(1099511628211)
    return h


def test_long_streams_match_go_including_ziggurat_tails():
    """1M token draws, then 2M normal and 2M exponential variates: every bit as in Go
    (the tails go through math.Log, ported from Go rather than taken from libm)."""
    b = VECTORS["bulk"]
    s = g.go_seed_nb(b["seed"])
    g.skip_intn_nb(s, 128000, b["skip_intn_128000"])
    assert [g.int63_nb(s) for _ in range(3)] == b["int63_after_skip"]
    assert str(_fnv_of_draws(s, b["norm_count"], 0)) == b["norm_bits_fnv"]
    assert str(_fnv_of_draws(s, b["exp_count"], 1)) == b["exp_bits_fnv"]
    assert [g.int63_nb(s) for _ in range(3)] == b["int63_after_all"]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(-(2**63), 2**63 - 1),
       n=st.one_of(st.sampled_from([1, 2, 3, 128000, 2**30, 2**31 - 1, 2**30 + 1, 1500000000]),
                   st.integers(1, 2**31 - 1)),
       k=st.integers(0, 3000))
def test_skip_intn_equals_k_intn_calls(seed, n, k):
    fast = g.go_seed_nb(seed)
    naive = fast.copy()
    g.skip_intn_nb(fast, n, k)
    for _ in range(k):
        g.intn_nb(naive, n)
    assert np.array_equal(fast, naive)


def test_fill_intn_draws_the_same_values_as_intn():
    a, b = GoRand(9), GoRand(9)
    assert a.intn_array(128000, 50).tolist() == [b.intn(128000) for _ in range(50)]


def test_go_log_matches_libm_within_one_ulp():
    xs = np.concatenate([np.linspace(1e-300, 1.0, 1001)[1:], np.logspace(-300, 300, 601)])
    for x in xs:
        ours, ref = g.go_log_nb(x), math.log(x)
        assert abs(ours - ref) <= math.ulp(ref), x
    assert g.go_log_nb(0.0) == -math.inf
    assert math.isnan(g.go_log_nb(-1.0))
    assert g.go_log_nb(math.inf) == math.inf


def test_seed_is_reduced_modulo_2_31_minus_1_like_go():
    same = [(0, 89482311), (5, 5 + 2147483647), (-1, 2147483646)]
    for a, b in same:
        assert GoRand(a).int63() == GoRand(b).int63(), (a, b)


def test_fnv1a64_and_derived_seeds_match_blis():
    b = VECTORS["bulk"]
    for name, want in zip(b["fnv_names"], b["fnv_values"]):
        assert to_int64(fnv1a64(name)) == want
    assert derive_seed(42, "workload-gen") == 7079132663427089781
    assert derive_seed(42, "router") == -6855704586828941970
    assert derive_seed(42, "kv-offload") == 5706539092703791838
    assert derive_seed(42, "workload") == 42


def test_partitioned_rng_caches_one_stream_per_name():
    p = PartitionedRNG(42)
    r = p.for_subsystem("router")
    assert p.for_subsystem("router") is r
    first = r.int63()
    assert GoRand(-6855704586828941970).int63() == first
    assert p.for_subsystem("workload").seed == 42


def test_copy_is_an_independent_stream():
    a = GoRand(3)
    a.int63()
    b = a.copy()
    assert [a.int63() for _ in range(5)] == [b.int63() for _ in range(5)]
    a.int63()
    assert a.int63() != b.int63()


def test_bounded_draws_reject_out_of_range_n():
    r = GoRand(1)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="n must be"):
            r.intn(bad)
    with pytest.raises(ValueError, match="n must be"):
        r.int31n(2**31)
    with pytest.raises(ValueError, match="n must be"):
        r.skip_intn(2**31, 5)


def test_splitmix64_is_the_reference_finaliser():
    # first outputs of the reference SplitMix64 generator seeded with 0
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, -(2**31 - 1),
                                                                  89482311, 2**63 - 1, -2**63])))
def test_numpy_seeding_is_the_kernels(seed):
    """``go_seed`` (numpy, what Python callers use) builds exactly ``go_seed_nb``'s state."""
    assert np.array_equal(g.go_seed(seed), g.go_seed_nb(seed))
