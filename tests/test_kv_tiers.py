"""The GPU+CPU KV tier (BLIS's vLLM-v1 mirror model, spec 01 §8): kernels, engine, CLI.

Kernel level (``kv_allocate_tiered_nb``, ``kv_mirror_to_cpu_nb``, ``_reload_prefix``) on
instance row 1 of a two-row state (row 0 must never change), driven the way the
engine drives it (admission with the cached prefix, prefill chunks, decode tokens,
release, MirrorToCPU after a step, the step consuming the pending transfer latency):

* block conservation across tiers after every operation (GPU used + free == total,
  reference counts == holders, CPU used <= capacity, each CPU-resident hash once,
  CPU used == mirrored - evicted, transfer latency == CPU hits x per-block cost);
* failed allocations: nothing changes except BLIS's ``cpuMissCount`` when the CPU
  tier reloaded nothing; what a reload leaves behind when the GPU allocation then
  fails is BLIS's behaviour too, and is pinned down exactly;
* reload semantics on a hand-built scenario.
* the incremental MirrorToCPU against BLIS's plain pass (same LRU order, counters and GPU
  state after every operation; also whole engine runs).

Engine level (``Simulation`` with the toy linear backend): the step after a reload
is longer by exactly ``k * (base + ceil(B / bandwidth))``; hit rate and thrashing
rate of a CPU-tier run; ``--kv-offload-threshold`` has no effect.  CLI: the flags
work and invalid values are one clear line with exit 1.
"""
import dataclasses
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv_views import assert_memo_consistent, assert_slot_hash_cache, blocks_of, free_list
from blis.cli import main
from blis.engine import EngineConfig, Simulation
from blis.kernels import layout as Lo
from blis.kernels.kvcache import (CPU_SCRATCH, CPU_TM, KV_NSTATE, _cpu_store, cpu_node_hashes, cpu_tier_order,
                                  kv_allocate_tiered_nb,
                                  kv_cached_blocks_nb, kv_cpu_touch_nb,
                                  kv_init, kv_mirror_to_cpu_nb, kv_release_nb, make_cpu_tier_arrays, make_kv_arrays)
from blis.kernels.latency import BACKEND_LINEAR
from blis.kernels.lru import LRU_FREE, LRU_HT, LRU_META, lru_init
from blis.latency import LatencyModel
from blis.requests import RequestTable

SETTINGS = settings(max_examples=150, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ROW = 1  # instance row under test; row 0 is a bystander that must stay untouched

_LRU_HEAD, _LRU_TAIL, _LRU_USED, _LRU_FREE = 0, 1, 2, 3  # kernels/lru.py meta columns


# ---------------------------------------------------------------- kernel harness
class TieredKV:
    """Kernel state of one instance row with a CPU tier: the ``kv`` tuple (``make_kv_arrays``:
    KV_NSTATE state arrays, then caches: the block-hash memo, the slots' hashes), the CPU tier tuple (``make_cpu_tier_arrays``), ``ins``, ``rq``, group seeds.
    ``incremental=False`` keeps the CPU tier on BLIS's plain mirror pass (the reference the
    incremental pass is checked against)."""

    def __init__(self, total_blocks, block_size, specs, group_seeds, cpu_blocks, base_lat=0, bw=100.0,
                 n_inst=2, incremental=True):
        self.B = block_size
        self.total = total_blocks
        self.cap = cpu_blocks
        self.base = int(base_lat)
        self.bw = float(bw)
        n = len(specs)
        self.n_slots = n + 1
        # generous per-request block lists: BLIS can commit a block to a request twice (see
        # test_retry_after_failed_partial_commit_commits_a_block_twice), the engine sizes them tighter
        self.max_blocks = 4 * (total_blocks + 1)
        self.kv = make_kv_arrays(n_inst, total_blocks, self.n_slots, self.max_blocks)
        assert len(self.kv) == KV_NSTATE + 4
        self.cpu = make_cpu_tier_arrays(n_inst, cpu_blocks, self.n_slots, self.max_blocks)
        self.ins = np.zeros((n_inst, Lo.NIF), np.int64)
        for i in range(n_inst):
            kv_init(self.kv, self.ins, i, total_blocks)
            lru_init(self.cpu, i)
            self.cpu[CPU_TM][i, 6] = 0 if incremental else 1  # kvcache._TM_OFF
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
        self.out = np.zeros(self.max_blocks + 2, np.int64)
        self.newc = np.zeros(self.max_blocks + 2, np.int64)
        self.bt = np.zeros((n_inst, n + 1), np.int64)
        self.paid = 0  # transfer latency consumed by "steps" so far
        self.row0 = self._row_copy(0)

    @property
    def cost(self):
        """Transfer latency of one reloaded block: base + ceil(B / bandwidth)."""
        return self.base + math.ceil(self.B / self.bw)

    def _row_copy(self, i):
        return [a[i].copy() for a in self.kv] + [a[i].copy() for a in self.cpu] + [self.ins[i].copy()]

    def snapshot(self):
        """Copies of all state arrays but the caches (the block-hash memo ``kv[KV_NSTATE:]`` and
        the CPU tier's scratch array CPU_SCRATCH)."""
        cpu = [a for idx, a in enumerate(self.cpu) if idx != CPU_SCRATCH]
        return [a.copy() for a in self.kv[:KV_NSTATE]] + [a.copy() for a in cpu] + [self.ins.copy(), self.rq.copy()]

    def assert_row0_untouched(self):
        for a, b in zip(self.row0, self._row_copy(0)):
            assert np.array_equal(a, b), "instance row 0 was modified"

    # ---- operations
    def cached(self, r):
        n = kv_cached_blocks_nb(self.kv, ROW, self.rq, self.gseed, r, self.B, self.out)
        return [int(x) for x in self.out[:n]]

    def allocate(self, r, pi, start, end, cached=()):
        """AllocateKVBlocks through the tiered store, with the request's ProgressIndex set to ``pi``."""
        self.rq[Lo.R_PI, r] = pi
        c = np.zeros(len(self.out), np.int64)
        c[:len(cached)] = cached
        return bool(kv_allocate_tiered_nb(self.kv, self.cpu, self.ins, ROW, self.rq, self.gseed, r, start, end,
                                          c, len(cached), self.B, self.base, self.bw, self.newc))

    def release(self, r):
        kv_release_nb(self.kv, self.ins, ROW, self.rq, r)

    def mirror(self, batch):
        self.bt[ROW, :len(batch)] = batch
        kv_mirror_to_cpu_nb(self.kv, self.cpu, self.ins, ROW, self.rq, self.bt, len(batch), self.B, self.cap)

    def step(self):
        """A step consumes the pending transfer latency (ConsumePendingTransferLatency)."""
        lat = int(self.ins[ROW, Lo.I_PENDING_LAT])
        self.paid += lat
        self.ins[ROW, Lo.I_PENDING_LAT] = 0
        return lat

    # ---- views
    def free_list(self):
        return free_list(self.kv, self.ins, ROW, self.total)

    def blocks_of(self, r):
        return blocks_of(self.kv, self.rq, ROW, r)

    def gpu_table(self):
        htk, htv = self.kv[5][ROW], self.kv[6][ROW]
        m = htk != 0
        return dict(zip(htk[m].tolist(), htv[m].tolist()))

    def cpu_list(self):
        """CPU-resident hashes, least recent first (the exact LRU order, checking the list links)."""
        chash = cpu_node_hashes(self.cpu, ROW)
        return [int(chash[nd]) for nd in cpu_tier_order(self.cpu, ROW)]

    def cpu_table(self):
        """{hash: node} decoded from the packed CPU hash table, checking its probe invariant."""
        ht = self.cpu[LRU_HT][ROW]
        chash = cpu_node_hashes(self.cpu, ROW)
        mask = len(ht) - 1
        table = {}
        for j, e in enumerate(ht.tolist()):
            if e == 0:
                continue
            nd = (e & 0xFFFFFFFF) - 1
            h = int(chash[nd])
            assert e >> 32 == h >> 32, f"slot {j}: stored high half is not node {nd}'s"
            home = (h >> 32) & mask
            k = home
            while k != j:  # linear probing: no empty slot between a key's home and its slot
                assert ht[k] != 0, f"hash {h:#x} unreachable from its home slot {home}"
                k = (k + 1) & mask
            assert h not in table, f"hash {h:#x} stored twice"
            table[h] = nd
        return table


def assert_tier_invariants(k):
    """Conservation across both tiers (see module doc); raises AssertionError naming the broken one."""
    # GPU: INV-4 and reference counts
    ref = k.kv[0][ROW]
    free = k.free_list()
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == len(free)
    used = k.total - int(k.ins[ROW, Lo.I_FREE_CNT])
    assert used + len(free) == k.total, "GPU used + free != total"
    assert len(set(free)) == len(free)
    assert int(np.count_nonzero(ref > 0)) == used
    assert (ref >= 0).all()
    assert all(ref[b] == 0 for b in free)
    holders = np.zeros(k.total, np.int64)
    owners = 0
    for r in range(k.rq.shape[1]):
        ids = k.blocks_of(r)
        if ids is not None:
            owners += 1
            assert ids, f"request {r} has a slot but no blocks"
            for b in ids:
                holders[b] += 1
    assert np.array_equal(holders, ref.astype(np.int64)), "refcount != number of holders"
    assert int(k.ins[ROW, Lo.I_SLOT_FREE_N]) == k.n_slots - owners
    # GPU hash table: every key names a block holding that hash
    hsh = k.kv[1][ROW]
    for h, b in k.gpu_table().items():
        assert int(hsh[b]) == h, f"GPU table key {h:#x} -> block {b} whose hash is {int(hsh[b]):#x}"
    # CPU tier
    lst = k.cpu_list()
    meta = k.cpu[LRU_META][ROW]
    assert len(lst) == int(meta[_LRU_USED]) <= k.cap, "CPU used > capacity"
    assert len(set(lst)) == len(lst), "a hash is resident twice on the CPU"
    assert 0 not in lst
    table = k.cpu_table()
    assert set(table) == set(lst), "CPU hash table and LRU list disagree"
    chash = cpu_node_hashes(k.cpu, ROW)
    assert all(int(chash[nd]) == h for h, nd in table.items())
    assert int(meta[_LRU_FREE]) + int(meta[_LRU_USED]) == k.cpu[LRU_FREE].shape[1]  # capacity
    # counters
    mirrored, evicted = int(k.ins[ROW, Lo.I_CPU_MIRROR]), int(k.ins[ROW, Lo.I_CPU_EVICT])
    assert mirrored - evicted == len(lst), "CPU used != mirrored - evicted"
    assert 0 <= evicted <= mirrored
    assert k.paid + int(k.ins[ROW, Lo.I_PENDING_LAT]) == int(k.ins[ROW, Lo.I_CPU_HITS]) * k.cost, \
        "transfer latency != CPU hits x (base + ceil(B / bandwidth))"
    assert_memo_consistent(k.kv, k.rq, k.gseed, ROW)
    assert_slot_hash_cache(k.kv, ROW, k.B)
    assert_unchanged_slots_have_nothing_to_mirror(k)
    k.assert_row0_untouched()


def assert_unchanged_slots_have_nothing_to_mirror(k):
    """The incremental mirror skips a slot of the last batch whose change counter (kv[16])
    is the one it last read: then at most its last block is left, not full or not hashed."""
    tm, sm, mbt, sl, sh, sv = k.cpu[CPU_TM][ROW], k.cpu[6][ROW], k.cpu[7][ROW], k.kv[8][ROW], k.kv[15][ROW], k.kv[16][ROW]
    if int(tm[0]) != 1:
        return
    for s in mbt[:int(tm[4])]:
        s = int(s)
        length, n = int(sm[s, 0]), int(sl[s])
        if int(sm[s, 5]) == int(sv[s]) and int(sm[s, 1]) == int(sm[s, 2]) and length < n:
            assert length == n - 1 and int(sh[s, length]) == 0, f"slot {s} changed without its counter"


# ---------------------------------------------------------------- strategies
@st.composite
def tier_workloads(draw, max_blocks=10):
    B = draw(st.sampled_from([1, 2, 4]))
    nb = draw(st.integers(2, max_blocks))
    cpu = draw(st.integers(1, 8))
    n_groups = draw(st.integers(1, 2))
    group_seeds = [0] + [draw(st.integers(1, 2 ** 64 - 1)) for _ in range(n_groups)]
    pool = draw(st.lists(st.integers(1, 2 ** 64 - 1), min_size=1, max_size=3, unique=True))
    specs = []
    for _ in range(draw(st.integers(2, 6))):
        g = draw(st.integers(0, n_groups))
        ilen = draw(st.integers(1, 12))
        plen = draw(st.integers(0, ilen)) if g else 0
        olen = draw(st.integers(0, 5))
        specs.append((g, plen, ilen, olen, draw(st.sampled_from(pool))))
    base = draw(st.integers(0, 50))
    bw = draw(st.sampled_from([0.5, 1.0, 3.0, 100.0]))
    return nb, B, cpu, specs, group_seeds, base, bw


#: one operation: (kind, request, batch rotation, token-count selector)
OPS = st.tuples(st.integers(0, 5), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))


def _apply(op, k, phase, pi, on_fail=None):
    """Apply one operation the way the engine would; returns the allocation result (None if the
    operation was no allocation).  Kinds 0-2: advance the request (admission with its whole cached
    prefix as Phase 2 does, a prefill chunk, or a decode token); 3: release; 4: MirrorToCPU over
    the running requests (rotated); 5: a step consumes the pending transfer latency."""
    kind, a, b, c = op
    n = k.rq.shape[1]
    r = a % n
    if kind == 3:
        k.release(r)
        phase[r] = "idle"
        pi[r] = 0
        return None
    if kind == 4:
        running = [x for x in range(n) if phase[x] == "running"]
        if running:
            rot = b % len(running)
            k.mirror(running[rot:] + running[:rot])
        return None
    if kind == 5:
        assert k.step() >= 0
        return None
    L = int(k.rq[Lo.R_ILEN, r])
    N = int(k.rq[Lo.R_OLEN, r])
    if phase[r] == "idle":
        cached = k.cached(r)
        start = len(cached) * k.B
        n_new = 1 + c % (L - start) if L > start else 0
        call = (r, 0, start, start + n_new, cached)
    elif pi[r] < L:
        n_new = 1 + c % (L - pi[r])
        call = (r, pi[r], pi[r], pi[r] + n_new, ())
    elif pi[r] < L + N:
        call = (r, pi[r], pi[r], pi[r] + 1, ())
    else:
        return None
    k.rq[Lo.R_PI, r] = call[1]  # the caller's ProgressIndex, set before the snapshot
    snap = k.snapshot()
    hits0 = int(k.ins[ROW, Lo.I_CPU_HITS])
    ok = k.allocate(*call)
    if ok:
        phase[r] = "running"
        pi[r] = call[3]
    elif on_fail is not None:
        on_fail(k, snap, call, hits0)
    return ok


# ---------------------------------------------------------------- conservation
@SETTINGS
@given(tier_workloads(), st.lists(OPS, min_size=40, max_size=60))
def test_block_conservation_across_tiers_after_every_operation(workload, ops):
    nb, B, cpu, specs, gs, base, bw = workload
    k = TieredKV(nb, B, specs, gs, cpu, base, bw)
    phase = ["idle"] * len(specs)
    pi = [0] * len(specs)
    assert_tier_invariants(k)
    for op in ops:
        _apply(op, k, phase, pi)
        assert_tier_invariants(k)
    for r in range(len(specs)):
        k.release(r)
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == nb
    assert sorted(k.free_list()) == list(range(nb))
    assert int(k.ins[ROW, Lo.I_SLOT_FREE_N]) == k.n_slots
    assert_tier_invariants(k)


# ---------------------------------------------------------------- the CPU tier's LRU order
@SETTINGS
@given(st.integers(1, 9), st.lists(st.tuples(st.booleans(), st.integers(1, 14)), min_size=1, max_size=400))
def test_cpu_tier_order_is_lru_under_stores_and_touches(cap, ops):
    """The CPU tier's order (a ring of nodes with lazy deletion, compacted in place) against an
    OrderedDict: store of an absent hash (evicting the least recent entry when full) and touch
    (move to the most recent end), many times the ring's length."""
    cpu = make_cpu_tier_arrays(2, cap, 2, 2)
    ins = np.zeros((2, Lo.NIF), np.int64)
    for i in range(2):
        lru_init(cpu, i)
    row0 = [a[0].copy() for a in cpu]
    model = OrderedDict()
    for store, x in ops:
        h = (x * 0x9E3779B97F4A7C15) % 2 ** 64
        if store and h not in model:
            if len(model) == cap:
                model.popitem(last=False)
            model[h] = None
            _cpu_store(cpu, ins, ROW, np.uint64(h), cap, True)
        elif not store:
            if h in model:
                model.move_to_end(h)
            kv_cpu_touch_nb(cpu, ROW, np.uint64(h))
        hashes = cpu_node_hashes(cpu, ROW)
        assert [int(hashes[nd]) for nd in cpu_tier_order(cpu, ROW)] == list(model)
    assert int(ins[ROW, Lo.I_CPU_MIRROR]) - int(ins[ROW, Lo.I_CPU_EVICT]) == len(model)
    assert all(np.array_equal(a[0], b) for a, b in zip(cpu, row0))


# ---------------------------------------------------------------- incremental mirror == plain mirror
def _same_state(a, b):
    assert a.cpu_list() == b.cpu_list(), "CPU LRU order differs from the plain mirror pass"
    assert np.array_equal(a.ins, b.ins)
    assert np.array_equal(a.rq, b.rq)
    for idx, (x, y) in enumerate(zip(a.kv, b.kv)):
        assert np.array_equal(x, y), f"kv array #{idx} differs"


@SETTINGS
@given(tier_workloads(), st.integers(0, 48), st.lists(OPS, min_size=40, max_size=120))
def test_incremental_mirror_matches_the_plain_pass_after_every_operation(workload, extra_cpu, ops):
    """The incremental MirrorToCPU (kernels/kvcache.py) against BLIS's plain pass: identical LRU
    order, counters and GPU state after every operation, from tiny (thrashing) to roomy CPU tiers."""
    nb, B, cpu, specs, gs, base, bw = workload
    cpu += extra_cpu
    fast = TieredKV(nb, B, specs, gs, cpu, base, bw)
    ref = TieredKV(nb, B, specs, gs, cpu, base, bw, incremental=False)
    phase = ["idle"] * len(specs)
    pi = [0] * len(specs)
    phase_r = list(phase)
    pi_r = list(pi)
    for op in ops:
        _apply(op, fast, phase, pi)
        _apply(op, ref, phase_r, pi_r)
        assert phase == phase_r and pi == pi_r
        _same_state(fast, ref)
        assert int(ref.cpu[CPU_TM][ROW, 0]) == 0, "the reference must stay on the plain pass"
    assert_tier_invariants(fast)


def test_incremental_mirror_is_used_and_survives_departures_and_reload_touches():
    # hand-driven: a prefix shared by two requests, one leaves, a reload touches a cold entry
    specs = [PREFIX, SAME_PREFIX, FILLER, HOLDER]
    ks = [TieredKV(10, B4, specs, [0, 0xC0FFEE], cpu_blocks=12, incremental=inc) for inc in (True, False)]

    def both(fn):
        out = [fn(k) for k in ks]
        assert out[0] == out[1]
        _same_state(*ks)
        return out[0]

    assert both(lambda k: k.allocate(0, 0, 0, 20))
    both(lambda k: k.mirror([0]))
    assert int(ks[0].cpu[CPU_TM][ROW, 0]) == 1, "incremental mode entered after a clean pass"
    assert both(lambda k: k.allocate(1, 0, 16, 20, k.cached(1)))
    both(lambda k: k.mirror([0, 1]))
    assert both(lambda k: k.allocate(1, 20, 20, 21))
    both(lambda k: k.mirror([1, 0]))
    both(lambda k: k.release(0))
    both(lambda k: k.mirror([1]))
    assert int(ks[0].cpu[CPU_TM][ROW, 0]) == 1
    both(lambda k: k.release(1))
    assert both(lambda k: k.allocate(2, 0, 0, 24))
    both(lambda k: k.mirror([2]))
    assert both(lambda k: k.allocate(3, 0, 0, 16))
    both(lambda k: k.mirror([2, 3]))
    both(lambda k: k.release(2))
    assert both(lambda k: k.allocate(0, 0, 16, 20, k.cached(0))) is not None
    both(lambda k: k.mirror([3, 0]))
    assert int(ks[0].ins[ROW, Lo.I_CPU_EVICT]) > 0
    assert int(ks[0].cpu[CPU_TM][ROW, 5]) > 0, "incremental passes ran"
    for k in ks:
        assert_tier_invariants(k)


@pytest.mark.parametrize("gpu_blocks,cpu_blocks", [(24, 16), (24, 400), (40, 60), (64, 1000)])
def test_engine_incremental_mirror_matches_the_plain_pass(gpu_blocks, cpu_blocks):
    t = _reuse_workload()
    cfg = EngineConfig(total_kv_blocks=gpu_blocks, block_size=16, max_num_seqs=8, kv_cpu_blocks=cpu_blocks,
                       kv_transfer_bandwidth=4.0, kv_transfer_base_latency_us=5)
    fast = Simulation(t, cfg, _linear())
    ref = Simulation(t, cfg, _linear())
    ref.cpu[CPU_TM][:, 6] = 1  # kvcache._TM_OFF: plain pass only
    rf, rr = fast.run(), ref.run()
    for name in rr.cols:
        assert np.array_equal(rf.cols[name], rr.cols[name]), name
    assert np.array_equal(fast.ins, ref.ins)
    assert rf.instances[0] == rr.instances[0]
    assert int(fast.cpu[CPU_TM][0, 5]) > 0, "incremental passes ran"


# ---------------------------------------------------------------- failed allocations
def _check_failed_allocation(k, snap, call, hits0):
    """A failed tiered allocation.

    Nothing reloaded from the CPU: every array (kv tuple, CPU LRU tuple, ins, rq) is unchanged
    except BLIS's cpuMissCount (+1).  Something reloaded (BLIS keeps the reload -- "any space
    freed by the reload still helps" -- and, on its partial-hit path, the blocks it committed to
    the request before the GPU allocation failed): exactly those effects and nothing else.
    """
    r = call[0]
    now = k.snapshot()
    ins0, ins1 = snap[-2], now[-2]
    reloaded = int(k.ins[ROW, Lo.I_CPU_HITS]) - hits0
    if reloaded == 0:
        for idx, (a, b) in enumerate(zip(snap, now)):
            if idx == len(snap) - 2:  # ins: only the CPU-miss counter moved
                exp = a.copy()
                exp[ROW, Lo.I_CPU_MISSES] += 1
                assert np.array_equal(exp, b), "failed allocation changed ins beyond cpuMissCount"
            else:
                assert np.array_equal(a, b), f"failed allocation changed array #{idx}"
        return
    # ---- the reload path (BLIS semantics)
    assert reloaded > 0
    changed = np.flatnonzero(ins0[ROW] != ins1[ROW]).tolist()
    allowed = {Lo.I_CPU_HITS, Lo.I_PENDING_LAT, Lo.I_FREE_HEAD, Lo.I_FREE_TAIL, Lo.I_FREE_CNT, Lo.I_HITS,
               Lo.I_SLOT_FREE_N, Lo.I_CLOG_N}
    assert set(changed) <= allowed, f"reload-then-fail changed ins fields {set(changed) - allowed}"
    assert ins1[ROW, Lo.I_CPU_MISSES] == ins0[ROW, Lo.I_CPU_MISSES], "cpuMissCount counts only no-reload failures"
    assert ins1[ROW, Lo.I_MISSES] == ins0[ROW, Lo.I_MISSES], "no fresh GPU block may be taken"
    assert ins1[ROW, Lo.I_PENDING_LAT] - ins0[ROW, Lo.I_PENDING_LAT] == reloaded * k.cost
    # committed blocks: appended to the request's list, +1 reference each, one GPU hit each
    rq0 = snap[-1]
    s0 = int(rq0[Lo.R_SLOT, r])
    before = [] if s0 < 0 else [int(x) for x in snap[7][ROW, s0, :int(snap[8][ROW, s0])]]
    after = k.blocks_of(r) or []
    assert after[:len(before)] == before, "blocks the request held were changed"
    committed = after[len(before):]
    assert ins1[ROW, Lo.I_HITS] - ins0[ROW, Lo.I_HITS] == len(committed)
    dref = k.kv[0][ROW].astype(np.int64) - snap[0][ROW].astype(np.int64)
    exp = np.zeros_like(dref)
    for b in committed:
        exp[b] += 1
    assert np.array_equal(dref, exp), "reference counts changed beyond the committed blocks"
    # other requests' rows and every other row are untouched
    for x in range(k.rq.shape[1]):
        if x != r:
            assert np.array_equal(rq0[:, x], k.rq[:, x])
    for idx in range(len(snap)):
        assert np.array_equal(snap[idx][0], now[idx][0]), f"row 0 of array #{idx} changed"
    # only reloaded blocks change content: each holds a full block registered under its new hash.
    # (BLIS quirk: popping a block that carries a stale duplicate hash deletes that key even when it
    # now names a block reloaded earlier in the same pass, so such a reload is unregistered.)
    hsh0, hsh1 = snap[1][ROW], k.kv[1][ROW]
    retagged = np.flatnonzero(hsh0 != hsh1).tolist()
    assert len(retagged) <= reloaded
    refilled = np.flatnonzero(snap[2][ROW] != k.kv[2][ROW]).tolist()
    assert set(refilled) <= set(retagged), "a block that was not reloaded changed its fill"
    table = k.gpu_table()
    for b in retagged:
        assert table.get(int(hsh1[b]), b) == b and int(k.kv[2][ROW, b]) == k.B


@SETTINGS
@given(tier_workloads(max_blocks=4), st.lists(OPS, min_size=40, max_size=60))
def test_failed_tiered_allocation_changes_nothing_but_blis_counters(workload, ops):
    nb, B, cpu, specs, gs, base, bw = workload
    k = TieredKV(nb, B, specs, gs, cpu, base, bw)
    phase = ["idle"] * len(specs)
    pi = [0] * len(specs)
    for op in ops:
        _apply(op, k, phase, pi, on_fail=_check_failed_allocation)
        assert_tier_invariants(k)


def test_failed_allocation_with_an_empty_cpu_tier_is_side_effect_free():
    # the GPU is full; nothing is on the CPU: only cpuMissCount moves
    k = TieredKV(2, 4, [(0, 0, 8, 2, 1), (0, 0, 8, 2, 2)], [0], cpu_blocks=4)
    assert k.allocate(0, 0, 0, 8)
    snap = k.snapshot()
    assert not k.allocate(1, 0, 0, 8)
    now = k.snapshot()
    for idx, (a, b) in enumerate(zip(snap, now)):
        if idx == len(snap) - 2:
            assert (a != b).sum() == 1 and b[ROW, Lo.I_CPU_MISSES] == a[ROW, Lo.I_CPU_MISSES] + 1
        else:
            assert np.array_equal(a, b)


# ---------------------------------------------------------------- reload semantics (hand-built)
B4 = 4
PREFIX = (1, 16, 20, 2, 11)     # group 1: 16-token shared prefix (4 blocks) + 4 own tokens
FILLER = (0, 0, 24, 0, 22)      # 6 blocks of unrelated content
SAME_PREFIX = (1, 16, 20, 2, 33)  # same prefix, other own tokens
HOLDER = (0, 0, 16, 0, 999)     # unrelated request that can pin 4 GPU blocks


def _evicted_prefix_state(base_lat=7, bw=3.0, cpu_blocks=16):
    """R0 (prefix P) runs a step (P mirrored), finishes; R1 fills the whole GPU, evicting P;
    R1 finishes.  P is now on the CPU only."""
    k = TieredKV(6, B4, [PREFIX, FILLER, SAME_PREFIX, HOLDER], [0, 0xC0FFEE], cpu_blocks, base_lat, bw)
    assert k.allocate(0, 0, 0, 20)
    k.mirror([0])
    k.release(0)
    assert k.allocate(1, 0, 0, 24, k.cached(1))
    k.mirror([1])
    k.release(1)
    assert k.cached(2) == [], "the prefix must have left the GPU"
    return k


def test_prefix_evicted_from_gpu_is_reloaded_from_cpu_with_transfer_latency():
    k = _evicted_prefix_state(base_lat=7, bw=3.0)
    assert int(k.ins[ROW, Lo.I_CPU_MIRROR]) == 5 + 6  # R0: 4 prefix + 1 own full block; R1: 6
    hits0, misses0 = int(k.ins[ROW, Lo.I_HITS]), int(k.ins[ROW, Lo.I_MISSES])
    assert k.allocate(2, 0, 0, 20, k.cached(2))
    # the 4 prefix blocks came back from the CPU (R2's own 5th block is not on the CPU)
    assert int(k.ins[ROW, Lo.I_CPU_HITS]) == 4
    assert int(k.ins[ROW, Lo.I_PENDING_LAT]) == 4 * (7 + math.ceil(4 / 3.0))  # base + ceil(B/bw) per block
    assert int(k.ins[ROW, Lo.I_HITS]) - hits0 == 4, "reloaded blocks are claimed as GPU cache hits"
    assert int(k.ins[ROW, Lo.I_MISSES]) - misses0 == 1, "only the request's own block is fresh"
    assert int(k.ins[ROW, Lo.I_CPU_MISSES]) == 0
    blocks = k.blocks_of(2)
    assert len(blocks) == 5
    hsh = k.kv[1][ROW]
    # R2's first four blocks carry exactly the hashes R0 computed for the shared prefix
    r0 = TieredKV(6, B4, [PREFIX], [0, 0xC0FFEE], 4)
    assert r0.allocate(0, 0, 0, 20)
    assert [int(hsh[b]) for b in blocks[:4]] == [int(r0.kv[1][ROW, b]) for b in r0.blocks_of(0)[:4]]
    assert k.step() == 4 * 9 and int(k.ins[ROW, Lo.I_PENDING_LAT]) == 0
    assert_tier_invariants(k)


def test_no_reload_when_the_cpu_tier_lost_the_prefix():
    # CPU capacity 6: R1's six blocks push R0's five out of the LRU -> nothing to reload
    k = _evicted_prefix_state(cpu_blocks=6)
    assert int(k.ins[ROW, Lo.I_CPU_EVICT]) == 5
    assert k.allocate(2, 0, 0, 20, k.cached(2))
    assert int(k.ins[ROW, Lo.I_CPU_HITS]) == 0 and int(k.ins[ROW, Lo.I_PENDING_LAT]) == 0
    assert int(k.ins[ROW, Lo.I_MISSES]) == 5 + 6 + 5
    assert_tier_invariants(k)


def test_reload_is_bounded_by_the_free_blocks_at_entry():
    k = _evicted_prefix_state()
    # a running request holds 4 of the 6 GPU blocks: only 2 can be reloaded
    assert k.allocate(3, 0, 0, 16)
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == 2
    ok = k.allocate(2, 0, 0, 20, k.cached(2))
    assert int(k.ins[ROW, Lo.I_CPU_HITS]) == 2
    assert int(k.ins[ROW, Lo.I_PENDING_LAT]) == 2 * k.cost
    assert not ok  # 2 reloaded blocks committed, the 3 remaining blocks do not fit
    assert k.blocks_of(2) is not None and len(k.blocks_of(2)) == 2  # BLIS: they stay committed


def test_mirror_touches_resident_blocks_and_stores_new_ones_in_batch_order():
    k = TieredKV(8, B4, [PREFIX, SAME_PREFIX], [0, 0xC0FFEE], cpu_blocks=16)
    assert k.allocate(0, 0, 0, 20)
    k.mirror([0])
    first = k.cpu_list()
    assert len(first) == 5 and int(k.ins[ROW, Lo.I_CPU_MIRROR]) == 5
    cached = k.cached(1)
    assert len(cached) == 4
    assert k.allocate(1, 0, 16, 20, cached)
    k.mirror([1, 0])
    # R1 first: its 4 prefix blocks are touched (moved to the MRU end, not re-counted) and its own
    # block is stored; then R0: the prefix touched again, then R0's own block
    after = k.cpu_list()
    assert int(k.ins[ROW, Lo.I_CPU_MIRROR]) == 6 and int(k.ins[ROW, Lo.I_CPU_EVICT]) == 0
    assert len(after) == 6
    assert after[1:] == first, "LRU order: R1's own block, then the prefix, then R0's own block"
    assert after[0] not in first
    assert after[0] == int(k.kv[1][ROW, k.blocks_of(1)[4]])
    assert_tier_invariants(k)


def test_thrashing_counters_when_the_cpu_is_too_small():
    k = TieredKV(8, B4, [FILLER, PREFIX], [0, 0xC0FFEE], cpu_blocks=2)
    assert k.allocate(0, 0, 0, 24)
    k.mirror([0])
    assert int(k.ins[ROW, Lo.I_CPU_MIRROR]) == 6 and int(k.ins[ROW, Lo.I_CPU_EVICT]) == 4
    assert len(k.cpu_list()) == 2
    assert_tier_invariants(k)


# ---------------------------------------------------------------- BLIS quirks, pinned down
def test_failed_partial_reload_leaves_blocks_committed_to_a_waiting_request():
    """BLIS (sim/kv/tiered.go, AllocateKVBlocks, "Partial improvement" branch) commits the
    reloaded prefix to the request *before* the GPU allocation of the rest; if that fails the
    request keeps them although it was not admitted.  blis reproduces this exactly."""
    k = _evicted_prefix_state()
    assert k.allocate(3, 0, 0, 16)
    free0 = int(k.ins[ROW, Lo.I_FREE_CNT])
    assert not k.allocate(2, 0, 0, 20, k.cached(2))
    held = k.blocks_of(2)
    assert len(held) == 2 and all(int(k.kv[0][ROW, b]) == 1 for b in held)
    assert int(k.ins[ROW, Lo.I_FREE_CNT]) == free0 - 2
    assert_tier_invariants(k)
    # the next attempt (as FormBatch makes it: cached prefix = its own 2 blocks) succeeds once space is free
    k.release(3)
    cached = k.cached(2)
    assert cached[:2] == held
    assert k.allocate(2, 0, len(cached) * B4, 20, cached)
    assert k.blocks_of(2)[:2] == held and len(k.blocks_of(2)) == 5
    assert_tier_invariants(k)


def test_retry_after_failed_partial_commit_commits_a_block_twice():
    """A running request whose partial-path allocation failed is retried (after preemption) with
    its unchanged ProgressIndex; BLIS's ``startBlock = ceil(start / B)`` assumes the request owns
    exactly that many blocks, so the block committed by the failed attempt is committed again.
    Reference counts stay consistent (the request holds it twice)."""
    B = 4
    specs = [(1, 20, 20, 0, 1), (0, 0, 28, 0, 2), (1, 20, 32, 4, 3), (0, 0, 8, 0, 4), (0, 0, 4, 0, 5)]
    k = TieredKV(7, B, specs, [0, 99], cpu_blocks=32)
    assert k.allocate(0, 0, 0, 20)
    k.mirror([0])
    k.release(0)
    assert k.allocate(1, 0, 0, 28)
    k.mirror([1])
    k.release(1)
    assert k.allocate(3, 0, 0, 8) and k.allocate(4, 0, 0, 4) and k.allocate(1, 0, 0, 8, k.cached(1))
    assert k.allocate(2, 0, 0, 8, k.cached(2))          # chunk 1: 2 prefix blocks reloaded, committed
    k.release(4)
    assert not k.allocate(2, 8, 8, 24)                  # chunk 2: 1 block reloaded + committed, tail fails
    assert len(k.blocks_of(2)) == 3
    k.release(3)                                        # the engine preempts a victim and retries
    assert not k.allocate(2, 8, 8, 24)
    held = k.blocks_of(2)
    assert len(held) == 6 and len(set(held)) == 5, "BLIS commits the same block twice"
    assert_tier_invariants(k)


def test_reload_can_overwrite_the_callers_cached_prefix_block():
    """BLIS's reloadPrefixFromCPU pops the GPU free-list head, which may be one of the caller's
    ``cachedBlocks`` (cached prefix blocks sitting on the free list); when nothing past ``start``
    was gained, the GPU allocation then runs with the stale list and claims the overwritten block.
    blis reproduces it: R2's second block ends up holding the *third* prefix block's hash."""
    B = 4
    specs = [(1, 12, 12, 0, 1), (0, 0, 16, 0, 2), (1, 12, 16, 0, 3)]
    k = TieredKV(6, B, specs, [0, 99], cpu_blocks=10)
    assert k.allocate(0, 0, 0, 12)
    k.mirror([0])
    k.release(0)                              # prefix p0 p1 p2 in blocks 0 1 2, free [3 4 5 2 1 0]
    truth = [int(k.kv[1][ROW, b]) for b in (0, 1, 2)]
    assert k.allocate(1, 0, 0, 16)            # takes 3 4 5 2: p2 leaves the GPU
    k.release(1)                              # free [1 0 2 5 4 3]
    cached = k.cached(2)
    assert cached == [0, 1]
    assert k.allocate(2, 0, 8, 16, cached)
    assert int(k.ins[ROW, Lo.I_CPU_HITS]) == 1  # p2 reloaded ... into block 1, the free-list head
    held = k.blocks_of(2)
    assert held[:2] == [0, 1]
    assert int(k.kv[1][ROW, 1]) == truth[2] != truth[1], "block 1 (claimed as p1) now holds p2"
    assert k.cached(2) == [0], "the prefix chain is broken after the first block"
    assert_tier_invariants(k)


def test_request_block_list_fits_the_engine_slot_capacity():
    # found by a random search over engine-like operation sequences, then shrunk
    B, nb = 1, 12
    specs = [(1, 0, 11, 1, 2), (0, 0, 9, 3, 2), (0, 0, 16, 0, 1), (0, 0, 16, 1, 1)]
    k = TieredKV(nb, B, specs, [0, 15747657008256358890], cpu_blocks=27)
    max_len = max(ilen + olen for _, _, ilen, olen, _ in specs)
    engine_capacity = 2 * (min(nb, -(-max_len // B) + 1) + 1)  # blis.engine.Simulation._build
    assert k.allocate(3, 0, 0, 7) and k.allocate(3, 7, 7, 8) and k.allocate(3, 8, 8, 10)
    assert k.allocate(3, 10, 10, 12)
    k.mirror([3])
    k.release(3)
    assert k.allocate(0, 0, 0, 8) and k.allocate(0, 8, 8, 11) and k.allocate(0, 11, 11, 12)
    assert k.allocate(1, 0, 9, 9, k.cached(1))
    assert not k.allocate(1, 9, 9, 10)
    k.release(0)                                # preempted
    assert k.allocate(1, 9, 9, 10)
    assert k.allocate(2, 0, 0, 2, k.cached(2))  # 11 blocks reloaded, 2 committed
    assert k.allocate(1, 10, 10, 11)
    assert not k.allocate(2, 2, 2, 16)          # partial commit of 8 blocks, tail fails
    k.release(1)                                # preempted; retry with the same ProgressIndex
    assert not k.allocate(2, 2, 2, 16)
    held = k.blocks_of(2)
    assert len(held) == 20 and len(set(held)) == 12  # 16-token prompt, 20 list entries
    assert len(held) <= engine_capacity


def test_tail_allocated_after_a_double_commit_is_hashed_from_its_tokens():
    B = 4
    specs = [(1, 20, 20, 0, 1), (0, 0, 28, 0, 2), (1, 20, 32, 4, 3), (0, 0, 8, 0, 4), (0, 0, 4, 0, 5)]
    k = TieredKV(7, B, specs, [0, 99], cpu_blocks=32)
    assert k.allocate(0, 0, 0, 20)
    k.mirror([0])
    k.release(0)
    assert k.allocate(1, 0, 0, 28)
    k.mirror([1])
    k.release(1)
    assert k.allocate(3, 0, 0, 8) and k.allocate(4, 0, 0, 4) and k.allocate(1, 0, 0, 8, k.cached(1))
    assert k.allocate(2, 0, 0, 8, k.cached(2))
    k.release(4)
    assert not k.allocate(2, 8, 8, 24)
    k.release(3)
    k.release(1)
    assert k.allocate(2, 8, 8, 24)                   # BLIS: commits blocks 2..4 (block 2 again) + 1 fresh
    held = k.blocks_of(2)
    assert len(held) == 7 and len(set(held)) == 6
    clean = TieredKV(12, B, specs, [0, 99], cpu_blocks=32)
    assert clean.allocate(2, 0, 0, 24)
    truth = [int(clean.kv[1][ROW, b]) for b in clean.blocks_of(2)]
    # the fresh block holds tokens 20..23 chained on block 4's hash: BLIS gives it truth[5]
    assert int(k.kv[1][ROW, held[-1]]) == truth[5]


# ---------------------------------------------------------------- engine level
def _linear(base=1000.0, per_prefill=2.0, per_decode=10.0):
    return LatencyModel("toy", BACKEND_LINEAR, np.array([base, per_prefill, per_decode]), 0.0, 0.0, 0, 0)


def _table(rows, groups=1):
    """rows: (arrival_us, prefix_group, prefix_len, input_len, output_len, content_seed)."""
    n = len(rows)
    t = RequestTable.empty(n)
    c = t.cols
    c["request_id"][:] = np.arange(n)
    for g in range(groups):
        t.code("prefix_group", f"g{g + 1}")
    t.group_seeds = np.arange(groups + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for j, name in enumerate(("arrival_us", "prefix_group", "prefix_len", "input_len", "output_len",
                              "content_seed")):
        c[name][:] = [row[j] for row in rows]
    return t


# R0 (prefix A), R1 (prefix B, fills the GPU and evicts A), R2 (prefix A again), one at a time
_SEQ = [(0, 1, 64, 80, 2, 1), (1_000_000, 2, 160, 176, 2, 2), (2_000_000, 1, 64, 80, 2, 3)]


def _seq_cfg(**kw):
    return EngineConfig(total_kv_blocks=12, block_size=16, **kw)


def test_step_after_a_reload_is_longer_by_exactly_the_transfer_latency():
    t = _table(_SEQ, groups=2)
    single = Simulation(t, _seq_cfg(), _linear())
    rs = single.run()
    base_lat, bw = 10, 3.0
    tiered = Simulation(t, _seq_cfg(kv_cpu_blocks=64, kv_transfer_bandwidth=bw,
                                    kv_transfer_base_latency_us=base_lat), _linear())
    rt = tiered.run()
    assert (rs.cols["state"] == Lo.ST_COMPLETED).all() and (rt.cols["state"] == Lo.ST_COMPLETED).all()
    per_block = base_lat + math.ceil(16 / bw)
    assert int(tiered.ins[0, Lo.I_CPU_HITS]) == 4  # A's 4 prefix blocks
    extra = 4 * per_block
    d_ttft = (rt.cols["ttft_us"] - rs.cols["ttft_us"]).tolist()
    assert d_ttft == [0, 0, extra], "only R2's admission step pays, by exactly 4 x (base + ceil(B/bw))"
    d_e2e = (rt.cols["e2e_us"] - rs.cols["e2e_us"]).tolist()
    assert d_e2e == [0, 0, extra], "the steps that follow are unchanged"
    assert int(tiered.ins[0, Lo.I_PENDING_LAT]) == 0
    # hits: R2's prefix is a GPU hit after the reload (4 of its 5 blocks + decode block fresh)
    ci, si = rt.instances[0], rs.instances[0]
    assert ci.cache_hits == si.cache_hits + 4
    assert ci.cache_misses == si.cache_misses - 4
    assert rt.cache_hit_rate() > rs.cache_hit_rate()


def _reuse_workload(n=240, groups=6, seed=7):
    """Prefix reuse under GPU pressure: 6 prefix groups of 8 blocks, Poisson-ish arrivals."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0
    for _ in range(n):
        t += int(rng.integers(2_000, 30_000))
        g = int(rng.integers(1, groups + 1))
        own = int(rng.integers(8, 64))
        rows.append((t, g, 128, 128 + own, int(rng.integers(4, 32)), int(rng.integers(1, 2 ** 63))))
    return _table(rows, groups)


@pytest.mark.parametrize("gpu_blocks", [24, 40, 64])
def test_cpu_tier_hit_rate_at_least_single_tier_under_gpu_pressure(gpu_blocks):
    t = _reuse_workload()
    cfg = EngineConfig(total_kv_blocks=gpu_blocks, block_size=16, max_num_seqs=8)
    rs = Simulation(t, cfg, _linear()).run()
    rt = Simulation(t, dataclasses.replace(cfg, kv_cpu_blocks=400, kv_transfer_bandwidth=4.0,
                                           kv_transfer_base_latency_us=5), _linear()).run()
    assert (rs.cols["state"] == Lo.ST_COMPLETED).all() and (rt.cols["state"] == Lo.ST_COMPLETED).all()
    assert rt.cache_hit_rate() >= rs.cache_hit_rate()
    assert rt.instances[0].cpu_hits > 0, "the workload must exercise reloads"
    assert 0.0 <= rt.kv_thrashing_rate() <= 1.0
    assert rs.kv_thrashing_rate() == 0.0


def test_thrashing_rate_counts_cpu_evictions_per_mirrored_block():
    t = _reuse_workload(n=120)
    cfg = EngineConfig(total_kv_blocks=24, block_size=16, max_num_seqs=8, kv_cpu_blocks=16)
    sim = Simulation(t, cfg, _linear())
    res = sim.run()
    inst = res.instances[0]
    assert inst.cpu_evictions > 0 and inst.cpu_mirrored > 0
    assert res.kv_thrashing_rate() == pytest.approx(inst.cpu_evictions / inst.cpu_mirrored)
    assert 0.0 < res.kv_thrashing_rate() <= 1.0
    assert inst.cache_hit_rate == pytest.approx(inst.cache_hits / (inst.cache_hits + inst.cache_misses
                                                                    + inst.cpu_misses))
    assert int(sim.ins[0, Lo.I_FREE_CNT]) == 24, "every GPU block is free at the end"


# ---------------------------------------------------------------- CLI
CLI = ["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--hardware", "H100", "--tp", "1",
       "--num-requests", "40", "--rate", "20", "--prefix-tokens", "128", "--prompt-tokens", "256",
       "--prompt-tokens-stdev", "64", "--output-tokens", "64", "--output-tokens-stdev", "16",
       "--total-kv-blocks", "60"]


def _metrics(capsys):
    import json
    out = capsys.readouterr().out
    start = out.index("{")
    depth = 0
    for j, ch in enumerate(out[start:], start):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return json.loads(out[start:j + 1]), out
    raise AssertionError("no metrics block")


def test_cli_cpu_tier_flags_run(capsys):
    assert main(CLI + ["--kv-cpu-blocks", "400", "--kv-transfer-bandwidth", "2.5",
                       "--kv-transfer-base-latency", "7"]) == 0
    m, out = _metrics(capsys)
    assert m["completed_requests"] == 40
    assert "Cache Hit Rate:" in out and "KV Thrashing Rate:" in out


def test_cli_offload_threshold_is_ignored(capsys):
    base = CLI + ["--kv-cpu-blocks", "400", "--kv-transfer-bandwidth", "2.5"]
    assert main(base + ["--kv-offload-threshold", "0.9"]) == 0
    a = capsys.readouterr().out
    assert main(base + ["--kv-offload-threshold", "0.1"]) == 0
    b = capsys.readouterr().out
    assert main(base + ["--kv-offload-threshold", "0"]) == 0
    c = capsys.readouterr().out
    assert a == b == c




@pytest.mark.parametrize("flags,needle", [
    (["--kv-transfer-bandwidth", "0"], "--kv-transfer-bandwidth"),
    (["--kv-transfer-bandwidth", "-1.5"], "--kv-transfer-bandwidth"),
    pytest.param(["--kv-transfer-bandwidth", "inf"], "--kv-transfer-bandwidth"),
    (["--kv-transfer-bandwidth", "nan"], "--kv-transfer-bandwidth"),
    pytest.param(["--kv-transfer-base-latency", "-1"], "--kv-transfer-base-latency"),
    (["--kv-cpu-blocks", "-5"], "--kv-cpu-blocks"),
    pytest.param(["--kv-offload-threshold", "1.5"], "--kv-offload-threshold"),
    pytest.param(["--kv-offload-threshold", "-0.1"], "--kv-offload-threshold"),
    pytest.param(["--kv-offload-threshold", "nan"], "--kv-offload-threshold"),
])
def test_cli_invalid_cpu_tier_values_exit_1_with_one_line(flags, needle, capsys):
    extra = flags if "--kv-cpu-blocks" in flags else ["--kv-cpu-blocks", "100"] + flags
    assert main(CLI + extra) == 1
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_bandwidth_is_not_checked_without_a_cpu_tier(capsys):
    assert main(CLI + ["--kv-transfer-bandwidth", "0"]) == 0


def test_cli_warns_that_the_offload_threshold_is_ignored(caplog, capsys):
    import logging
    with caplog.at_level(logging.WARNING):
        assert main(CLI + ["--kv-cpu-blocks", "100", "--kv-offload-threshold", "0.5"]) == 0
    assert "kv-offload-threshold" in caplog.text.lower() or "offloadthreshold" in caplog.text.lower()
