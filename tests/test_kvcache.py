"""KV block manager kernels against their naive twin (tests/naive_kv.py, spec 01 §7).

The kernels run on instance row 1 of a two-row state (row 0 must never change).
After every operation the whole kernel state is compared with the twin: success
or failure, free count, free-list order (both link directions), each block's
reference count and fill, each request's block list, the hash -> block table
and the hit/miss counters.  Hashes are compared through a bijection (kernel
64-bit value <-> twin content id), so equal chained content must mean equal
kernel hashes and vice versa.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv_views import assert_memo_consistent, assert_slot_hash_cache, blocks_of, free_list
from blis.kernels import layout as Lo
from blis.kernels.kvcache import (KV_NSTATE, MEMO_E, kv_allocate_nb, kv_cached_blocks_nb, kv_init, kv_release_nb,
                                  make_kv_arrays, memo_entries)
from blis.kernels.prefix_hash import block_hash_nb, ht_del_nb, ht_get_nb, ht_put_nb

from naive_kv import NaiveKVCache, NaiveRequest, request_tokens

SETTINGS = settings(max_examples=100, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ROW = 1  # instance row under test; row 0 is a bystander that must stay untouched


# ---------------------------------------------------------------- harness
class KernelKV:
    """Kernel-side state for one test: the ``kv`` tuple (from ``make_kv_arrays``, as the
    engine builds it), ``ins``, ``rq`` and group seeds."""

    def __init__(self, total_blocks, block_size, specs, group_seeds, n_inst=2):
        nb = total_blocks
        n = len(specs)
        self.B = block_size
        self.total = nb
        n_slots = n + 1
        self.kv = make_kv_arrays(n_inst, nb, n_slots, nb + 1)
        self.ins = np.zeros((n_inst, Lo.NIF), np.int64)
        for i in range(n_inst):
            kv_init(self.kv, self.ins, i, nb)
        rq = np.zeros((Lo.NRF, n), np.int64)
        rq[Lo.R_SLOT] = -1
        for r, (g, plen, ilen, olen, cseed) in enumerate(specs):
            rq[Lo.R_GROUP, r] = g
            rq[Lo.R_PLEN, r] = plen
            rq[Lo.R_ILEN, r] = ilen
            rq[Lo.R_OLEN, r] = olen
            rq[Lo.R_CSEED, r] = np.array([cseed], np.uint64).view(np.int64)[0]
        self.rq = rq
        self.gseed = np.array(group_seeds, np.uint64)
        self.n_slots = n_slots
        self.out = np.zeros(nb + 2, np.int64)
        self.row0 = self._row_copy(0)

    def _row_copy(self, i):
        return [a[i].copy() for a in self.kv] + [self.ins[i].copy()]

    def snapshot(self):
        """Copies of the state arrays (not the block-hash memo, a cache: ``kv[KV_NSTATE:]``)."""
        return [a.copy() for a in self.kv[:KV_NSTATE]] + [self.ins.copy(), self.rq.copy()]

    def assert_unchanged_since(self, snap):
        now = self.snapshot()
        for k, (a, b) in enumerate(zip(snap, now)):
            assert np.array_equal(a, b), f"array #{k} changed"

    def assert_row0_untouched(self):
        for a, b in zip(self.row0, self._row_copy(0)):
            assert np.array_equal(a, b), "instance row 0 was modified"

    def cached(self, r):
        n = kv_cached_blocks_nb(self.kv, ROW, self.rq, self.gseed, r, self.B, self.out)
        return [int(x) for x in self.out[:n]]

    def allocate(self, r, pi, start, end, cached=()):
        """AllocateKVBlocks with the request's ProgressIndex set to ``pi`` first."""
        self.rq[Lo.R_PI, r] = pi
        c = np.zeros(len(self.out), np.int64)
        c[:len(cached)] = cached
        return bool(kv_allocate_nb(self.kv, self.ins, ROW, self.rq, self.gseed, r, start, end,
                                   c, len(cached), self.B))

    def release(self, r):
        kv_release_nb(self.kv, self.ins, ROW, self.rq, r)

    # ---- views
    def free_list(self):
        return free_list(self.kv, self.ins, ROW, self.total)

    def blocks_of(self, r):
        return blocks_of(self.kv, self.rq, ROW, r)

    def hash_table(self):
        htk, htv = self.kv[5][ROW], self.kv[6][ROW]
        m = htk != 0
        return dict(zip(htk[m].tolist(), htv[m].tolist()))


def make_pair(total_blocks, B, specs, group_seeds):
    """A kernel state and its naive twin over the same requests."""
    k = KernelKV(total_blocks, B, specs, group_seeds)
    nv = NaiveKVCache(total_blocks, B)
    reqs = []
    for r, (g, plen, ilen, olen, cseed) in enumerate(specs):
        inp, out = request_tokens(plen, ilen, olen, group_seeds[g], cseed)
        reqs.append(NaiveRequest(r, inp, out))
    return k, nv, reqs


def assert_kv_conservation(k):
    """INV-4 on the kernel state: used + free == total, FreeBlockCnt == free-list length,
    each block's refcount == number of request block lists holding it."""
    ref = k.kv[0][ROW]
    free = k.free_list()
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == len(free)
    used = k.total - int(k.ins[ROW, Lo.I_FREE_CNT])
    assert used + len(free) == k.total
    assert int(np.count_nonzero(ref > 0)) == used
    assert all(ref[b] == 0 for b in free)
    holders = np.zeros(k.total, np.int64)
    owners = 0
    for r in range(k.rq.shape[1]):
        ids = k.blocks_of(r)
        if ids is not None:
            owners += 1
            assert ids, f"request {r} has a slot but no blocks"
            assert len(set(ids)) == len(ids), f"request {r} holds a block twice: {ids}"
            for b in ids:
                holders[b] += 1
    assert np.array_equal(holders, ref.astype(np.int64))
    assert int(k.ins[ROW, Lo.I_SLOT_FREE_N]) == k.n_slots - owners


def assert_same_state(k, nv, reqs, bij):
    """Kernel state == twin state (hashes through the bijection ``bij`` = (n2k, k2n))."""
    n2k, k2n = bij
    ref, hsh, fill = k.kv[0][ROW], k.kv[1][ROW], k.kv[2][ROW]
    assert k.free_list() == nv.free
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == nv.free_block_cnt == len(nv.free)
    assert int(k.ins[ROW, Lo.I_HITS]) == nv.cache_hits
    assert int(k.ins[ROW, Lo.I_MISSES]) == nv.cache_misses
    for blk in nv.blocks:
        b = blk.id
        assert int(ref[b]) == blk.ref_count, f"block {b} refcount"
        assert (ref[b] > 0) == blk.in_use, f"block {b} in-use flag"
        assert int(fill[b]) == len(blk.tokens), f"block {b} fill"
        kh = int(hsh[b])
        if blk.hash is None:
            assert kh == 0, f"block {b} hashed in the kernel but not in the twin"
        else:
            assert kh != 0, f"block {b} hashed in the twin but not in the kernel"
            assert n2k.setdefault(blk.hash, kh) == kh, f"block {b}: same content, different hash"
            assert k2n.setdefault(kh, blk.hash) == blk.hash, f"block {b}: same hash, different content"
    for h, b in nv.hash_to_block.items():  # twin sanity: every key names its block's hash
        assert nv.blocks[b].hash == h
    assert k.hash_table() == {n2k[h]: b for h, b in nv.hash_to_block.items()}
    for req in reqs:
        assert k.blocks_of(req.id) == nv.request_map.get(req.id), f"request {req.id} blocks"
    assert_kv_conservation(k)
    assert_memo_consistent(k.kv, k.rq, k.gseed, ROW)
    assert_slot_hash_cache(k.kv, ROW, k.B)
    k.assert_row0_untouched()


# ---------------------------------------------------------------- strategies
@st.composite
def kv_workloads(draw, max_blocks=10):
    B = draw(st.sampled_from([1, 2, 3, 4]))
    nb = draw(st.integers(1, max_blocks))
    n_groups = draw(st.integers(0, 2))
    group_seeds = [0] + [draw(st.integers(1, 2 ** 64 - 1)) for _ in range(n_groups)]
    # a small content pool: identical requests (full-prompt hits) happen often
    pool = draw(st.lists(st.integers(0, 2 ** 64 - 1), min_size=1, max_size=3, unique=True))
    specs = []
    for _ in range(draw(st.integers(1, 5))):
        g = draw(st.integers(0, n_groups))
        ilen = draw(st.integers(1, 12))
        plen = draw(st.integers(0, ilen)) if g else 0
        olen = draw(st.integers(0, 5))
        specs.append((g, plen, ilen, olen, draw(st.sampled_from(pool))))
    return nb, B, specs, group_seeds


#: one operation: (kind code, request, claimed-prefix selector, token-count selector)
OPS = st.tuples(st.integers(0, 4), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))


def _step(op, k, nv, reqs, phase):
    """Apply one operation to both caches; return the allocation result (None if the
    operation was not an allocation).  Kinds 0-2: advance the request (admit with its
    cached prefix, prefill chunk or decode token, as the engine would); 3: release;
    4: cached-prefix query (must be pure)."""
    kind, a, b, c = op
    r = a % len(reqs)
    req = reqs[r]
    L, N = len(req.input), len(req.output)
    if kind == 4:
        snap = k.snapshot()
        assert k.cached(r) == nv.get_cached_blocks(req.input)
        k.assert_unchanged_since(snap)
        return None
    if kind == 3:
        k.release(r)
        nv.release(req)
        phase[r] = "idle"
        req.pi = 0
        return None
    k.rq[Lo.R_PI, r] = 0 if phase[r] == "idle" else req.pi  # the caller's PI, before the snapshot
    snap = k.snapshot()
    if phase[r] == "idle":  # Phase-2 style admission: claim the cached prefix
        cached = nv.get_cached_blocks(req.input)
        assert k.cached(r) == cached
        m = len(cached) if b % 2 == 0 else (b // 2) % (len(cached) + 1)  # mostly the full prefix
        cached = cached[:m]
        start = m * nv.block_size
        n_new = c % (L - start + 1)
        req.pi = 0
        ok = k.allocate(r, 0, start, start + n_new, cached)
        assert ok == nv.allocate(req, start, start + n_new, cached)
        if ok:
            phase[r] = "running"
            req.pi = start + n_new
    elif req.pi < L:  # Phase-1 prefill chunk
        n_new = c % (L - req.pi + 1)
        ok = k.allocate(r, req.pi, req.pi, req.pi + n_new)
        assert ok == nv.allocate(req, req.pi, req.pi + n_new, [])
        if ok:
            req.pi += n_new
    elif req.pi < L + N:  # decode token (the last one is the completion's final slot)
        ok = k.allocate(r, req.pi, req.pi, req.pi + 1)
        assert ok == nv.allocate(req, req.pi, req.pi + 1, [])
        if ok:
            req.pi += 1
    else:
        return None
    if not ok:
        k.assert_unchanged_since(snap)
    return ok


# ---------------------------------------------------------------- twin comparison
@SETTINGS
@given(kv_workloads(), st.lists(OPS, min_size=30, max_size=40))
def test_kv_kernels_match_naive_twin_on_random_operation_sequences(workload, ops):
    nb, B, specs, group_seeds = workload
    k, nv, reqs = make_pair(nb, B, specs, group_seeds)
    bij = ({}, {})
    phase = ["idle"] * len(reqs)
    assert_same_state(k, nv, reqs, bij)
    for op in ops:
        _step(op, k, nv, reqs, phase)
        assert_same_state(k, nv, reqs, bij)


@SETTINGS
@given(kv_workloads(), st.lists(OPS, min_size=30, max_size=40))
def test_hash_table_change_log_replays_to_the_live_table(workload, ops):
    # with logging on, replaying the (hash, +1/-1) log onto an empty set gives the table's keys
    nb, B, specs, group_seeds = workload
    k, nv, reqs = make_pair(nb, B, specs, group_seeds)
    k.ins[ROW, Lo.I_CLOG_ON] = 1
    phase = ["idle"] * len(reqs)
    for op in ops:
        _step(op, k, nv, reqs, phase)
        assert k.ins[ROW, Lo.I_CLOG_OVF] == 0
        n = int(k.ins[ROW, Lo.I_CLOG_N])
        keys = set()
        for h, o in zip(k.kv[11][ROW, :n].tolist(), k.kv[12][ROW, :n].tolist()):
            if o > 0:
                keys.add(h)
            else:
                keys.discard(h)
        assert keys == set(k.hash_table())


@SETTINGS
@given(kv_workloads(), st.lists(OPS, min_size=40, max_size=50))
def test_kv_block_conservation_holds_after_every_operation(workload, ops):
    nb, B, specs, group_seeds = workload
    k, nv, reqs = make_pair(nb, B, specs, group_seeds)
    phase = ["idle"] * len(reqs)
    for op in ops:
        _step(op, k, nv, reqs, phase)
        assert_kv_conservation(k)
    for r in range(len(reqs)):
        k.release(r)
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == nb
    assert sorted(k.free_list()) == list(range(nb))
    assert int(k.ins[ROW, Lo.I_SLOT_FREE_N]) == k.n_slots


@SETTINGS
@given(kv_workloads(max_blocks=3), st.lists(OPS, min_size=40, max_size=50))
def test_failed_allocation_leaves_every_array_untouched(workload, ops):
    nb, B, specs, group_seeds = workload
    k, nv, reqs = make_pair(nb, B, specs, group_seeds)
    phase = ["idle"] * len(reqs)
    for op in ops:
        _step(op, k, nv, reqs, phase)  # on a failed allocation _step compares full snapshots


# ---------------------------------------------------------------- named scenarios
def test_failed_prefill_allocation_with_free_cached_prefix_has_no_side_effects():
    # B=4, 3 blocks; R0 fills blocks 0,1 with hashed prefix content then releases them;
    # R1 shares that prefix (cached blocks 0,1 are on the free list) and needs 2 more
    # blocks: 2 (claimed from free) + 2 (fresh) > 3 free -> fail without claiming.
    gs = [0, 12345]
    specs = [(1, 8, 8, 0, 1), (1, 8, 16, 0, 2)]
    k, nv, reqs = make_pair(3, 4, specs, gs)
    assert k.allocate(0, 0, 0, 8) and nv.allocate(reqs[0], 0, 8, [])
    k.release(0)
    nv.release(reqs[0])
    cached = k.cached(1)
    assert cached == [0, 1] == nv.get_cached_blocks(reqs[1].input)
    snap = k.snapshot()
    assert not k.allocate(1, 0, 8, 16, cached)
    assert not nv.allocate(reqs[1], 8, 16, cached)
    k.assert_unchanged_since(snap)
    assert int(k.ins[ROW, Lo.I_HITS]) == 0
    assert k.free_list() == [2, 1, 0]


def test_failed_decode_allocation_on_full_last_block_has_no_side_effects():
    k, nv, reqs = make_pair(2, 4, [(0, 0, 8, 3, 7)], [0])
    assert k.allocate(0, 0, 0, 8)
    k.rq[Lo.R_PI, 0] = 8
    snap = k.snapshot()
    assert not k.allocate(0, 8, 8, 9)  # last block full, no free block
    k.assert_unchanged_since(snap)


def test_decode_top_up_of_partial_block_needs_no_free_block():
    k, nv, reqs = make_pair(2, 4, [(0, 0, 6, 3, 7)], [0])
    assert k.allocate(0, 0, 0, 6)
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == 0
    assert k.allocate(0, 6, 6, 7)  # tops up block 1 (2 -> 3 tokens)
    assert k.allocate(0, 7, 7, 8)  # fills block 1 -> hashed
    assert int(k.kv[2][ROW, 1]) == 4 and int(k.kv[1][ROW, 1]) != 0
    assert not k.allocate(0, 8, 8, 9)


def test_worked_kv_example_of_spec_7_7():
    # B = 4, 6 blocks. R1: t0..t9 (L=10), o0,o1,o2 (N=3). R2 shares t0..t7 (prefix group).
    B = 4
    gs = [0, 0xC0FFEE]
    specs = [(1, 8, 10, 3, 111), (1, 8, 11, 2, 222)]
    k, nv, reqs = make_pair(6, B, specs, gs)
    bij = ({}, {})
    hsh, fill = k.kv[1][ROW], k.kv[2][ROW]
    u = np.uint64
    P, L, g, cs = 8, 10, u(gs[1]), u(111)

    # admission: no cache; n = 10 -> blocks 0,1,2; [t0..t3] h0, [t4..t7] h1, [t8,t9] unhashed
    assert k.cached(0) == [] == nv.get_cached_blocks(reqs[0].input)
    assert k.allocate(0, 0, 0, 10) and nv.allocate(reqs[0], 0, 10, [])
    reqs[0].pi = 10
    assert_same_state(k, nv, reqs, bij)
    assert k.blocks_of(0) == [0, 1, 2]
    assert int(k.ins[ROW, Lo.I_MISSES]) == 3
    assert k.free_list() == [3, 4, 5]
    h0 = block_hash_nb(u(0), 0, B, P, L, g, cs)
    h1 = block_hash_nb(u(h0), 4, B, P, L, g, cs)  # prev must be uint64, as in the kernels
    assert (hsh[0], hsh[1], hsh[2]) == (h0, h1, 0)
    assert list(fill[:3]) == [4, 4, 2]

    # decode o0 (PI=10) tops up block 2; o1 (PI=11) fills it -> h2 = H(h1, [t8,t9,o0,o1])
    assert k.allocate(0, 10, 10, 11) and nv.allocate(reqs[0], 10, 11, [])
    reqs[0].pi = 11
    assert_same_state(k, nv, reqs, bij)
    assert fill[2] == 3 and hsh[2] == 0
    assert k.allocate(0, 11, 11, 12) and nv.allocate(reqs[0], 11, 12, [])
    reqs[0].pi = 12
    assert_same_state(k, nv, reqs, bij)
    assert hsh[2] == block_hash_nb(u(h1), 8, B, P, L, g, cs)
    assert int(k.ins[ROW, Lo.I_MISSES]) == 3

    # completion: final token o2 -> pop block 3 ([o2], unhashed); misses = 4
    assert k.allocate(0, 12, 12, 13) and nv.allocate(reqs[0], 12, 13, [])
    assert_same_state(k, nv, reqs, bij)
    assert k.blocks_of(0) == [0, 1, 2, 3]
    assert fill[3] == 1 and hsh[3] == 0
    assert int(k.ins[ROW, Lo.I_MISSES]) == 4
    # release order 3,2,1,0 -> free list [4,5,3,2,1,0]
    k.release(0)
    nv.release(reqs[0])
    assert_same_state(k, nv, reqs, bij)
    assert k.free_list() == [4, 5, 3, 2, 1, 0]
    assert k.hash_table() == {int(h0): 0, int(h1): 1, int(hsh[2]): 2}

    # R2 (t0..t7 + other tokens): GetCachedBlocks -> [0,1]; admission claims them
    cached = k.cached(1)
    assert cached == [0, 1] == nv.get_cached_blocks(reqs[1].input)
    assert k.allocate(1, 0, 8, 11, cached) and nv.allocate(reqs[1], 8, 11, cached)
    assert_same_state(k, nv, reqs, bij)
    assert int(k.ins[ROW, Lo.I_HITS]) == 2
    assert k.blocks_of(1) == [0, 1, 4]  # claimed 0,1 left the free list; block 4 popped
    assert k.free_list() == [5, 3, 2]
    assert int(k.ins[ROW, Lo.I_MISSES]) == 5


def test_fully_cached_block_aligned_prompt_claims_nothing_and_decodes_into_fresh_block():
    # spec §7.5 edge: n = 0 -> cached blocks not claimed, no hits; first decode pops a new block
    B = 4
    specs = [(0, 0, 8, 2, 5), (0, 0, 8, 2, 5)]  # identical content
    k, nv, reqs = make_pair(4, B, specs, [0])
    bij = ({}, {})
    assert k.allocate(0, 0, 0, 8) and nv.allocate(reqs[0], 0, 8, [])
    reqs[0].pi = 8
    cached = k.cached(1)
    assert cached == [0, 1]
    assert k.allocate(1, 0, 8, 8, cached) and nv.allocate(reqs[1], 8, 8, cached)
    assert k.blocks_of(1) is None and int(k.ins[ROW, Lo.I_HITS]) == 0
    reqs[1].pi = 8
    assert k.allocate(1, 8, 8, 9) and nv.allocate(reqs[1], 8, 9, [])
    assert k.blocks_of(1) == [2]
    assert_same_state(k, nv, reqs, bij)


def test_reused_block_deletes_its_old_hash_key_lazily():
    # R0 fills block 0 (hashed), releases; R1 (different content) pops block 0 -> the old
    # key disappears from the table and block 0 gets R1's hash.
    k, nv, reqs = make_pair(1, 2, [(0, 0, 2, 0, 1), (0, 0, 2, 0, 2)], [0])
    bij = ({}, {})
    assert k.allocate(0, 0, 0, 2) and nv.allocate(reqs[0], 0, 2, [])
    old = int(k.kv[1][ROW, 0])
    k.release(0)
    nv.release(reqs[0])
    assert k.hash_table() == {old: 0}  # still findable on the free list
    assert k.allocate(1, 0, 0, 2) and nv.allocate(reqs[1], 0, 2, [])
    new = int(k.kv[1][ROW, 0])
    assert new != old and k.hash_table() == {new: 0}
    assert_same_state(k, nv, reqs, bij)


def test_cached_blocks_query_is_pure():
    k, nv, reqs = make_pair(4, 2, [(1, 4, 6, 1, 9), (1, 4, 5, 1, 8)], [0, 77])
    assert k.allocate(0, 0, 0, 6)
    snap = k.snapshot()
    assert k.cached(1) == [0, 1]
    k.assert_unchanged_since(snap)


def test_block_hash_memo_holds_each_requests_chain_and_ignores_changed_rows():
    # MEMO_E + 2 requests over one shared 8-token prefix (B=4): two share memo entries
    specs = [(1, 8, 12, 1, 100 + r) for r in range(MEMO_E + 2)]
    k, nv, reqs = make_pair(16, 4, specs, [0, 4242])
    assert k.allocate(0, 0, 0, 12)  # hashes request 0's 3 blocks (memo entry started at block 0)
    assert nv.allocate(reqs[0], 0, 12, [])
    ent = {r: hashes for r, _, _, hashes in memo_entries(k.kv, ROW)}
    assert ent == {0: [int(k.kv[1][ROW, b]) for b in k.blocks_of(0)]}
    for r in range(1, len(specs)):  # admission queries: the shared prefix is cached
        assert k.cached(r) == k.blocks_of(0)[:2] == nv.get_cached_blocks(reqs[r].input)
        assert_memo_consistent(k.kv, k.rq, k.gseed, ROW)
    assert len(memo_entries(k.kv, ROW)) == MEMO_E
    assert 0 not in {e[0] for e in memo_entries(k.kv, ROW)}  # request MEMO_E took its entry
    assert k.cached(0) == k.blocks_of(0)
    assert_memo_consistent(k.kv, k.rq, k.gseed, ROW)
    # a row whose content changed never uses its old entry: the query follows the new content
    r = len(specs) - 1
    k.rq[Lo.R_PLEN, r] = 0
    assert k.cached(r) == []
    k.rq[Lo.R_PLEN, r] = 8
    assert k.cached(r) == k.blocks_of(0)[:2]
    assert_memo_consistent(k.kv, k.rq, k.gseed, ROW)


# ---------------------------------------------------------------- hash table
HT_CAP = 16


def _ht_probe_invariant(keys, row):
    """Linear probing invariant: no empty slot between a key's ideal slot and its slot."""
    cap = keys.shape[1]
    for j in range(cap):
        kk = int(keys[row, j])
        if kk == 0:
            continue
        p = kk & (cap - 1)
        while p != j:
            assert keys[row, p] != 0, f"gap at slot {p} before key in slot {j}"
            p = (p + 1) & (cap - 1)


@st.composite
def colliding_keys(draw):
    # low bits concentrated around the end of the table: long clusters that wrap around
    lo = draw(st.sampled_from([HT_CAP - 3, HT_CAP - 2, HT_CAP - 1, 0, 1, 5]))
    hi = draw(st.integers(1, 2 ** 59))
    return (hi << 4) | lo


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["put", "put", "del"]), colliding_keys(),
                          st.integers(0, 2 ** 31 - 1)), min_size=1, max_size=80))
def test_hash_table_matches_dict_under_random_inserts_and_deletes(ops):
    keys = np.zeros((2, HT_CAP), np.uint64)
    vals = np.zeros((2, HT_CAP), np.int32)
    keys[0] = np.arange(1, HT_CAP + 1, dtype=np.uint64)  # bystander row
    ref = {}
    seen = set()
    for op, key, v in ops:
        seen.add(key)
        h = np.uint64(key)
        if op == "put":
            if key not in ref and len(ref) >= HT_CAP - 1:
                continue  # keep one empty slot: probing terminates
            ht_put_nb(keys, vals, 1, h, v)
            ref[key] = v
        else:
            ht_del_nb(keys, vals, 1, h)
            ref.pop(key, None)
        live = keys[1][keys[1] != 0]
        assert sorted(int(x) for x in live) == sorted(ref)
        for kk in seen:
            assert int(ht_get_nb(keys, vals, 1, np.uint64(kk))) == ref.get(kk, -1)
        _ht_probe_invariant(keys, 1)
    assert np.array_equal(keys[0], np.arange(1, HT_CAP + 1, dtype=np.uint64))


def test_hash_table_backward_shift_deletion_across_wrap_around():
    cap = 8
    keys = np.zeros((1, cap), np.uint64)
    vals = np.zeros((1, cap), np.int32)
    a, b, c, d = (np.uint64((x << 3) | 7) for x in (1, 2, 3, 4))  # all ideal slot 7
    e = np.uint64((5 << 3) | 0)                                   # ideal slot 0
    for v, k in enumerate((a, b, c, e, d)):
        ht_put_nb(keys, vals, 0, k, v)
    # layout: 7:a 0:b 1:c 2:e 3:d
    assert [int(keys[0, j]) for j in (7, 0, 1, 2, 3)] == [int(a), int(b), int(c), int(e), int(d)]
    ht_del_nb(keys, vals, 0, a)
    # b moves back to 7 (wrapping), c to 0; e (ideal 0) then moves to 1, d to 2
    assert [int(keys[0, j]) for j in (7, 0, 1, 2)] == [int(b), int(c), int(e), int(d)]
    assert keys[0, 3] == 0
    assert [int(ht_get_nb(keys, vals, 0, k)) for k in (a, b, c, d, e)] == [-1, 1, 2, 4, 3]
    ht_del_nb(keys, vals, 0, e)  # e at 1: d (ideal 7, at 2) moves back to 1
    assert [int(keys[0, j]) for j in (7, 0, 1)] == [int(b), int(c), int(d)]
    assert keys[0, 2] == 0
    ht_del_nb(keys, vals, 0, np.uint64(999 << 3))  # absent key: no-op
    assert [int(ht_get_nb(keys, vals, 0, k)) for k in (b, c, d)] == [1, 2, 4]


def test_hash_table_put_overwrites_existing_key():
    keys = np.zeros((1, 8), np.uint64)
    vals = np.zeros((1, 8), np.int32)
    ht_put_nb(keys, vals, 0, np.uint64(17), 3)
    ht_put_nb(keys, vals, 0, np.uint64(17), 9)
    assert int(np.count_nonzero(keys)) == 1
    assert int(ht_get_nb(keys, vals, 0, np.uint64(17))) == 9


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 200), st.integers(0, 2), st.integers(1, 64))
def test_initialisers_reset_exactly_their_row(n_inst, total_blocks, row, lru_cap):
    """``kv_init`` / ``lru_init`` (numpy; set-up code calls them from Python) reset one
    row from any prior state: every block free in id order, no hashes, no slots in use,
    an empty memo; every node free, an empty list.  Other rows are untouched."""
    from blis.kernels.kvcache import _MT
    from blis.kernels.lru import LRU_FREE, LRU_HT, LRU_META, LRU_NODE, lru_init, make_lru_arrays

    row = row % n_inst
    cap = max(total_blocks, 1) + 7
    rng = np.random.default_rng(total_blocks)
    kv, ins = make_kv_arrays(n_inst, cap, 5, cap), np.zeros((n_inst, Lo.NIF), np.int64)
    for arr in kv:  # start from garbage: the initialiser must overwrite what it owns
        arr[...] = rng.integers(0, 50, size=arr.shape).astype(arr.dtype)
    ins[...] = rng.integers(0, 50, size=ins.shape)
    before = tuple(x.copy() for x in kv), ins.copy()
    kv_init(kv, ins, row, total_blocks)
    n = total_blocks
    assert free_list(kv, ins, row, n) == list(range(n))
    assert int(ins[row, Lo.I_FREE_CNT]) == n == int(ins[row, Lo.I_TOTAL_BLOCKS])
    assert not kv[0][row, :n].any() and not kv[1][row, :n].any() and not kv[2][row, :n].any()
    assert not kv[5][row].any()                       # hash table keys
    assert (kv[_MT][row] == -1).all()                 # memo table
    ns = kv[8].shape[1]
    assert not kv[8][row].any() and list(kv[10][row]) == list(range(ns - 1, -1, -1))
    assert int(ins[row, Lo.I_SLOT_FREE_N]) == ns
    assert int(ins[row, Lo.I_CLOG_N]) == 0 == int(ins[row, Lo.I_CLOG_OVF])
    for k, (x, y) in enumerate(zip(before[0], kv)):
        assert np.array_equal(np.delete(x, row, axis=0), np.delete(y, row, axis=0)), k
    assert np.array_equal(np.delete(before[1], row, axis=0), np.delete(ins, row, axis=0))

    lru = make_lru_arrays(n_inst, lru_cap)
    for arr in lru:
        arr[...] = rng.integers(0, 50, size=arr.shape).astype(arr.dtype)
    lru_init(lru, row)
    assert list(lru[LRU_FREE][row]) == list(range(lru_cap - 1, -1, -1))
    assert (lru[LRU_NODE][row, :, :2] == -1).all() and not lru[LRU_NODE][row, :, 2].any()
    assert not lru[LRU_HT][row].any()
    assert list(lru[LRU_META][row, :4]) == [-1, -1, 0, lru_cap]
