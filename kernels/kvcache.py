"""Single-tier KV block manager with prefix caching (BLIS ``KVCacheState``).

Per instance row ``i``: blocks ``0..total-1`` with reference counts, fill
counts (tokens held) and chained hashes; a FIFO free list (allocation pops the
head, release appends to the tail in reverse block order, so eviction is LRU by
release time); a hash -> block table with lazy deletion of reused blocks; and
per-request ordered block lists kept in "slots" (one per request that owns
blocks).  Allocation is check-then-act: a failed allocation has no side
effects.  Block ``j`` of a slot holds the request's tokens at positions
``base + j*B .. base + j*B + B - 1``.

Arrays (tuple ``kv``):
  ref int32[n_inst, nb], hsh uint64[n_inst, nb], fill int32[n_inst, nb],
  nxt int32[n_inst, nb], prv int32[n_inst, nb]  (free-list links, -1 = none),
  htk uint64[n_inst, hcap], htv int32[n_inst, hcap]  (hash table),
  sb int32[n_inst, n_slots, max_blocks], sl int32[n_inst, n_slots] (lengths),
  sbase int64[n_inst, n_slots], sfree int32[n_inst, n_slots] (free-slot stack),
  logh uint64[n_inst, LCAP], logop int8[n_inst, LCAP]  (hash-table change log that
  keeps the router's delayed cache snapshot up to date; see kernels/engine.py),
  then caches that carry no state (``kv[KV_NSTATE:]``): the block-hash memo (see below)
  mh uint64[n_inst, MEMO_E, max_blocks], mt int64[n_inst, MEMO_E, 9], and
  sh uint64[n_inst, n_slots, max_blocks]: sh[s, j] = hash of slot s's block j if that block
  is full and hashed, else 0 (kept by slot_append_nb and the allocation that fills and
  hashes a slot's block; a block's hash and fill cannot change otherwise while a slot holds
  it, and the engine's decode top-up never fills a block), so that the CPU tier's mirror
  reads a slot's block hashes consecutively;
  sv int64[n_inst, n_slots]: a per-slot change counter, bumped whenever the slot's block
  list or hash cache changes (slot_append_nb, the allocation that hashes a slot's block, a
  new or released slot), so that the mirror skips the slots that did not change since it
  last read them.
"""
import numpy as np

from .jit import njit_hot as njit
from .layout import (
    I_CLOG_N, I_CLOG_ON, I_CLOG_OVF, I_FREE_CNT, I_SLOT_OVF, I_FREE_HEAD, I_FREE_TAIL, I_HITS, I_MISSES, I_SLOT_FREE_N, I_TOTAL_BLOCKS,
    R_CSEED, R_CTXLEN, R_CTXP, R_GROUP, R_ILEN, R_PI, R_PLEN, R_SLOT,
)
from .prefix_hash import ht_del_nb, ht_get_nb, ht_put_nb, req_block_hash_nb

_ZERO = np.uint64(0)

#: number of state arrays at the front of the ``kv`` tuple; the arrays after them are caches
#: (the block-hash memo and the slots' block hashes): pure functions of the state, or, for
#: the memo, only ever used where they equal what they stand for
KV_NSTATE = 13
#: memo entries per instance row (direct mapped: request row r uses entry r % MEMO_E)
MEMO_E = 32
_MH, _MT, _SH, _SV = 13, 14, 15, 16
#: memo entry tag fields: request row, hashes held, block size, then the row's content fields
_MT_R, _MT_N, _MT_B, _MT_ILEN, _MT_PLEN, _MT_CSEED, _MT_GSEED, _MT_CTXP, _MT_CTXLEN = 0, 1, 2, 3, 4, 5, 6, 7, 8


def make_kv_arrays(n_inst, total_blocks, n_slots, max_blocks, log_capacity=4096):
    """Allocate the ``kv`` tuple for ``n_inst`` instances (call kv_init on each)."""
    htcap = 1 << int(np.ceil(np.log2(max(2 * total_blocks, 16))))
    mt = np.full((n_inst, MEMO_E, 9), -1, np.int64)
    return (np.zeros((n_inst, total_blocks), np.int32), np.zeros((n_inst, total_blocks), np.uint64),
            np.zeros((n_inst, total_blocks), np.int32), np.zeros((n_inst, total_blocks), np.int32),
            np.zeros((n_inst, total_blocks), np.int32), np.zeros((n_inst, htcap), np.uint64),
            np.zeros((n_inst, htcap), np.int32), np.zeros((n_inst, n_slots, max_blocks), np.int32),
            np.zeros((n_inst, n_slots), np.int32), np.zeros((n_inst, n_slots), np.int64),
            np.zeros((n_inst, n_slots), np.int32), np.zeros((n_inst, log_capacity), np.uint64),
            np.zeros((n_inst, log_capacity), np.int8),
            np.zeros((n_inst, MEMO_E, max(int(max_blocks), 1)), np.uint64), mt,
            np.zeros((n_inst, n_slots, max_blocks), np.uint64), np.zeros((n_inst, n_slots), np.int64))


@njit(inner=True)
def _log(kv, ins, i, h, op):
    if ins[i, I_CLOG_ON] == 0 or ins[i, I_CLOG_OVF] != 0:
        return
    n = ins[i, I_CLOG_N]
    if n >= kv[11].shape[1]:
        ins[i, I_CLOG_OVF] = 1
        return
    kv[11][i, n] = h
    kv[12][i, n] = op
    ins[i, I_CLOG_N] = n + 1


@njit(inner=True)
def kv_ht_put_nb(kv, ins, i, h, b):
    """Register hash h -> block b (and log it for the delayed router snapshot)."""
    ht_put_nb(kv[5], kv[6], i, h, b)
    _log(kv, ins, i, h, np.int8(1))


@njit(inner=True)
def kv_ht_del_nb(kv, ins, i, h):
    ht_del_nb(kv[5], kv[6], i, h)
    _log(kv, ins, i, h, np.int8(-1))


def kv_init(kv, ins, i, total_blocks):
    """Reset instance ``i``'s cache to ``total_blocks`` empty blocks, all free, in id order.

    Plain numpy: set-up code calls it from Python, and a kernel for it would only add
    to a first run's compile."""
    ref, hsh, fill, nxt, prv, htk, htv, sb, sl, sbase, sfree = kv[:11]
    i, n = int(i), int(total_blocks)
    ins[i, I_CLOG_N] = 0
    ins[i, I_CLOG_OVF] = 0
    ref[i, :n] = 0
    hsh[i, :n] = _ZERO
    fill[i, :n] = 0
    nxt[i, :n] = np.arange(1, n + 1)
    if n > 0:
        nxt[i, n - 1] = -1
    prv[i, :n] = np.arange(-1, n - 1)
    htk[i, :] = _ZERO
    kv[_MT][i, :, :] = -1
    ins[i, I_FREE_HEAD] = 0
    ins[i, I_FREE_TAIL] = n - 1
    ins[i, I_FREE_CNT] = n
    ins[i, I_TOTAL_BLOCKS] = n
    ns = sl.shape[1]
    sl[i, :] = 0
    sfree[i, :] = np.arange(ns - 1, -1, -1)
    ins[i, I_SLOT_FREE_N] = ns


@njit(inner=True)
def _unlink(nxt, prv, ins, i, b):
    p = prv[i, b]
    n = nxt[i, b]
    if p >= 0:
        nxt[i, p] = n
    else:
        ins[i, I_FREE_HEAD] = n
    if n >= 0:
        prv[i, n] = p
    else:
        ins[i, I_FREE_TAIL] = p
    nxt[i, b] = -1
    prv[i, b] = -1
    ins[i, I_FREE_CNT] -= 1


@njit(inner=True)
def _append_free(nxt, prv, ins, i, b):
    t = ins[i, I_FREE_TAIL]
    nxt[i, b] = -1
    prv[i, b] = t
    if t >= 0:
        nxt[i, t] = b
    else:
        ins[i, I_FREE_HEAD] = b
    ins[i, I_FREE_TAIL] = b
    ins[i, I_FREE_CNT] += 1


@njit(inner=True)
def slot_append_nb(kv, ins, i, s, b, B):
    """Append block b to slot s's list (B = block size, for the slot's hash cache).  The list is sized for the longest request;
    BLIS's tiered reload can commit a block twice, so a full list is flagged
    (I_SLOT_OVF, reported as an error by the driver) instead of written past."""
    sb = kv[7]
    sl = kv[8]
    n = sl[i, s]
    if n >= sb.shape[2]:
        ins[i, I_SLOT_OVF] += 1
        return
    sb[i, s, n] = b
    sl[i, s] = n + 1
    kv[_SV][i, s] += 1
    sh = kv[_SH]
    if n < sh.shape[2]:
        sh[i, s, n] = kv[1][i, b] if kv[2][i, b] == B else _ZERO


# ---------------------------------------------------------------- block-hash memo
# A request's prompt is hashed again and again: every admission attempt of the wait-queue
# head (kv_cached_blocks_nb), the CPU tier's reload scan, and the allocation that hashes
# the blocks it fills.  Each instance row keeps the chained block hashes of up to MEMO_E
# requests (request row r in entry r % MEMO_E, the one started last there): entry e holds
# h_0 .. h_{n-1} of request mt[e, R], where
# h_j = req_block_hash_nb(rq, gseed, r, h_{j-1}, j*B, B) and h_{-1} = 0.  A hash is taken
# from the memo only for a block-aligned position j*B whose ``prev`` is h_{j-1} (the same
# chain), so the result is exactly what req_block_hash_nb returns; an entry is started by
# a block-0 hash and grows by appending the next block of its chain.  The tag also holds
# the row's content fields and group seed, so a row whose content differs never matches.

def memo_entries(kv, i):
    """Row i's memo entries as (request row, block size, content tag, [h_0 .. h_{n-1}]), the
    content tag being (ILEN, PLEN, CSEED, group seed as int64, CTXP, CTXLEN) (tests, debugging)."""
    mh, mt = kv[_MH], kv[_MT]
    out = []
    for e in range(mt.shape[1]):
        r = int(mt[i, e, _MT_R])
        if r >= 0:
            tag = tuple(int(x) for x in mt[i, e, _MT_ILEN:_MT_CTXLEN + 1])
            out.append((r, int(mt[i, e, _MT_B]), tag, [int(h) for h in mh[i, e, :int(mt[i, e, _MT_N])]]))
    return out


@njit(inner=True)
def _memo_find(mt, i, rq, gseed, r, B):
    """The memo entry of request row r, or -1."""
    e = r % mt.shape[1]
    if (mt[i, e, _MT_R] == r and mt[i, e, _MT_B] == B and mt[i, e, _MT_ILEN] == rq[R_ILEN, r]
            and mt[i, e, _MT_PLEN] == rq[R_PLEN, r] and mt[i, e, _MT_CSEED] == rq[R_CSEED, r]
            and mt[i, e, _MT_GSEED] == np.int64(gseed[rq[R_GROUP, r]])
            and mt[i, e, _MT_CTXP] == rq[R_CTXP, r] and mt[i, e, _MT_CTXLEN] == rq[R_CTXLEN, r]):
        return np.int64(e)
    return np.int64(-1)


@njit(inner=True)
def _memo_new(mt, i, rq, gseed, r, B):
    """Start an (empty) entry for request row r (in its slot r % MEMO_E)."""
    e = r % mt.shape[1]
    mt[i, e, _MT_R] = r
    mt[i, e, _MT_N] = 0
    mt[i, e, _MT_B] = B
    mt[i, e, _MT_ILEN] = rq[R_ILEN, r]
    mt[i, e, _MT_PLEN] = rq[R_PLEN, r]
    mt[i, e, _MT_CSEED] = rq[R_CSEED, r]
    mt[i, e, _MT_GSEED] = np.int64(gseed[rq[R_GROUP, r]])
    mt[i, e, _MT_CTXP] = rq[R_CTXP, r]
    mt[i, e, _MT_CTXLEN] = rq[R_CTXLEN, r]
    return e


@njit(inner=True)
def _block_hash(mh, mt, i, rq, gseed, r, prev, pos0, B, e):
    """``req_block_hash_nb(rq, gseed, r, prev, pos0, B)`` through the memo (mh, mt = kv[13],
    kv[14]); ``e`` = request r's entry (-1 = none yet, -2 = not looked up yet: the lookup
    reads the request's row, so callers that may hash nothing defer it).  Returns (hash, entry)."""
    if pos0 % B == 0:
        j = pos0 // B
        if e == -2:
            e = _memo_find(mt, i, rq, gseed, r, B)
        if e < 0 and j == 0 and prev == _ZERO:
            e = _memo_new(mt, i, rq, gseed, r, B)
        if e >= 0:
            n = mt[i, e, _MT_N]
            if j == 0:
                chain = prev == _ZERO
            else:
                chain = j <= n and mh[i, e, j - 1] == prev
            if chain:
                if j < n:
                    return mh[i, e, j], e
                h = req_block_hash_nb(rq, gseed, r, prev, pos0, B)
                if j < mh.shape[2]:
                    mh[i, e, j] = h
                    mt[i, e, _MT_N] = j + 1
                return h, e
    return req_block_hash_nb(rq, gseed, r, prev, pos0, B), e


@njit(inner=True)
def kv_used_nb(ins, i):
    return ins[i, I_TOTAL_BLOCKS] - ins[i, I_FREE_CNT]


@njit
def kv_cached_blocks_nb(kv, i, rq, gseed, r, B, out):
    """GetCachedBlocks over request ``r``'s full input: fills ``out`` with the ids of
    the longest cached full-block prefix and returns their count (pure query)."""
    htk = kv[5]
    htv = kv[6]
    mh = kv[_MH]
    mt = kv[_MT]
    L = rq[R_ILEN, r]
    n = L // B
    prev = _ZERO
    cnt = np.int64(0)
    e = _memo_find(mt, i, rq, gseed, r, B)
    nm = mt[i, e, _MT_N] if e >= 0 else 0
    for j in range(n):
        if j < nm:  # the chain so far is the entry's: h_j
            h = mh[i, e, j]
        else:
            h, e = _block_hash(mh, mt, i, rq, gseed, r, prev, j * B, B, e)
            nm = mt[i, e, _MT_N] if e >= 0 else 0
        b = ht_get_nb(htk, htv, i, h)
        if b < 0:
            break
        out[cnt] = b
        cnt += 1
        prev = h
    return cnt


@njit(inner=True)
def _new_slot(kv, ins, i, rq, r, base):
    sbase = kv[9]
    sfree = kv[10]
    sl = kv[8]
    ins[i, I_SLOT_FREE_N] -= 1
    s = sfree[i, ins[i, I_SLOT_FREE_N]]
    sl[i, s] = 0
    kv[_SV][i, s] += 1
    sbase[i, s] = base
    rq[R_SLOT, r] = s
    return s


@njit
def kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, B):
    """AllocateKVBlocks(req, start, end, cached): True on success; on failure nothing changes."""
    ref, hsh, fill, nxt, prv, htk, htv, sb, sl, sbase, sfree = kv[:11]
    L = rq[R_ILEN, r]
    in_prefill = rq[R_PI, r] < L
    s = rq[R_SLOT, r]
    owns = s >= 0 and sl[i, s] > 0
    free_cnt = ins[i, I_FREE_CNT]
    # ---- pre-check (no mutation before this passes)
    if in_prefill:
        npos = end - start
        eff = npos
        if owns:
            last = sb[i, s, sl[i, s] - 1]
            spare = B - fill[i, last]
            if spare > 0 and spare < B:
                eff -= min(spare, eff)
        need = (eff + B - 1) // B if eff > 0 else 0
        from_free = np.int64(0)
        for c in range(n_cached):
            if ref[i, cached[c]] == 0:
                from_free += 1
        if need + from_free > free_cnt:
            return False
    else:
        npos = 1
        if owns:
            last = sb[i, s, sl[i, s] - 1]
            if fill[i, last] == B and free_cnt == 0:
                return False
        elif free_cnt == 0:
            return False
    # ---- act
    mh = kv[_MH]
    mt = kv[_MT]
    sh = kv[_SH]
    e = np.int64(-2)  # looked up at the first hash (most calls hash nothing)
    k = np.int64(0)
    while k < npos:
        s = rq[R_SLOT, r]
        latest = np.int64(-1)
        if s >= 0:
            latest = sb[i, s, sl[i, s] - 1]
        else:
            for c in range(n_cached):
                b = cached[c]
                if ref[i, b] == 0:
                    _unlink(nxt, prv, ins, i, b)
                ref[i, b] += 1
                ins[i, I_HITS] += 1
                if c == 0:
                    s = _new_slot(kv, ins, i, rq, r, np.int64(0))
                slot_append_nb(kv, ins, i, s, b, B)
            if n_cached > 0:
                latest = sb[i, s, sl[i, s] - 1]
        if latest >= 0 and fill[i, latest] > 0 and fill[i, latest] < B:
            kk = min(B - fill[i, latest], npos - k)
            pos0 = start + k - fill[i, latest]   # position of the block's first token
            fill[i, latest] += kk
            k += kk
            if fill[i, latest] == B:
                n_ids = sl[i, s]
                prev = hsh[i, sb[i, s, n_ids - 2]] if n_ids >= 2 else _ZERO
                h, e = _block_hash(mh, mt, i, rq, gseed, r, prev, pos0, B, e)
                hsh[i, latest] = h
                kv_ht_put_nb(kv, ins, i, h, latest)
                if n_ids - 1 < sh.shape[2]:
                    sh[i, s, n_ids - 1] = h
                kv[_SV][i, s] += 1
        else:
            rem = npos - k
            if rem <= 0:
                break
            nnew = (rem + B - 1) // B
            prev = _ZERO
            if s >= 0 and sl[i, s] > 0:
                prev = hsh[i, sb[i, s, sl[i, s] - 1]]
            for _ in range(nnew):
                b = ins[i, I_FREE_HEAD]
                _unlink(nxt, prv, ins, i, b)
                if hsh[i, b] != _ZERO:
                    kv_ht_del_nb(kv, ins, i, hsh[i, b])
                    hsh[i, b] = _ZERO
                cnt = min(B, npos - k)
                fill[i, b] = cnt
                ref[i, b] = 1
                ins[i, I_MISSES] += 1
                if s < 0:
                    s = _new_slot(kv, ins, i, rq, r, start + k)
                slot_append_nb(kv, ins, i, s, b, B)
                if cnt == B and in_prefill:
                    h, e = _block_hash(mh, mt, i, rq, gseed, r, prev, start + k, B, e)
                    hsh[i, b] = h
                    kv_ht_put_nb(kv, ins, i, h, b)
                    prev = h
                    n_ids = sl[i, s] - 1
                    if n_ids < sh.shape[2] and sb[i, s, n_ids] == b:
                        sh[i, s, n_ids] = h
                    kv[_SV][i, s] += 1
                k += cnt
    return True


@njit
def kv_release_nb(kv, ins, i, rq, r):
    """ReleaseKVBlocks: drop the request's references in reverse order; blocks that
    reach zero references go to the free-list tail keeping their hash."""
    ref = kv[0]
    nxt = kv[3]
    prv = kv[4]
    sb = kv[7]
    sl = kv[8]
    sfree = kv[10]
    s = rq[R_SLOT, r]
    if s < 0:
        return
    for j in range(sl[i, s] - 1, -1, -1):
        b = sb[i, s, j]
        ref[i, b] -= 1
        if ref[i, b] == 0:
            _append_free(nxt, prv, ins, i, b)
    sl[i, s] = 0
    kv[_SV][i, s] += 1
    sfree[i, ins[i, I_SLOT_FREE_N]] = s
    ins[i, I_SLOT_FREE_N] += 1
    rq[R_SLOT, r] = -1


# ---------------------------------------------------------------- GPU + CPU tier
# BLIS's vLLM-v1 "mirror" model (TieredKVCache): every step, full hashed blocks of
# the running batch are mirrored into a CPU LRU set; an allocation first reloads
# the longest run of the request's next prompt blocks that are on the CPU but not
# on the GPU into free GPU blocks (as cached, unreferenced blocks at the free-list
# tail), paying base + ceil(B / bandwidth) us per block on the next step.
#
# The CPU tier is an LRU set of hashes (a block's hash stands for its content): nodes, a
# packed hash table as in kernels/lru.py (a slot holds the hash's high half and node + 1),
# but each node's record holds its hash next to its place in the order and its count, so
# that confirming a lookup, evicting and counting touch one cache line per node.

from .layout import I_CPU_EVICT, I_CPU_HITS, I_CPU_MIRROR, I_CPU_MISSES, I_PENDING_LAT  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba.core import cgutils, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from .lru import LRU_FREE, LRU_HT, LRU_META, ht_backshift_nb, make_lru_arrays  # noqa: E402

# Cheap exact mirroring.  The plain pass touches every full block of the batch every step.
# Its result is fixed by far less: after a pass the LRU order is "cold entries (in order)
# + D(batch)", D = the batch's hashes ordered by last occurrence (batch order, then block
# order).  Which entry a store evicts depends only on the cold part as long as it is not
# used up, and the order inside D matters only once an entry leaves the batch.  So in
# incremental mode the entries of the last mirrored batch ("live", count > 0 = number of
# occurrences) stay off the order; each request slot keeps the CPU nodes of the blocks it
# has contributed (its list only grows while the request holds the slot).  A pass then:
#   1. for the slots of the last batch that are gone (or re-let: per-slot tenancy counter
#      bumped by kv_allocate_tiered_nb), decrements counts in last-batch order; an entry
#      reaching 0 left the batch: it is listed at the end of the cold part, exactly where
#      the plain pass leaves it (before entries reloads touched since: the "Y" segment);
#   2. processes only the blocks added since (new requests, grown ones) in batch order:
#      cold entry -> unlisted (live), absent -> stored (evicting the cold head), live -> +1;
#   3. unlists the entries of Y that are live again.
# It runs only when stores cannot reach past the cold entries that precede D (lower bound
# checked before any change), else the order is rebuilt exactly and the plain pass runs
# (which re-enters incremental mode when no touched entry was evicted).  The exact order is
# recoverable at any time (cpu_tier_order).
#
# The order of the listed entries is a ring of node ids in LRU order (head = least recent)
# with lazy deletion: unlisting a node clears its ring cell, appending writes the next cell,
# eviction advances the head past cleared cells, and the ring is compacted in place when the
# tail reaches its end (it has 4x capacity cells, so at most every 3x capacity appends).
# Eviction and its warm-up then read consecutive cells instead of chasing list links, and
# unlisting touches no neighbour.  The Y segment is the ring suffix from a cell index.
#
# cpu tuple = lru arrays (5: hash table, free nodes, meta (head, tail unused; used, free
# count); the node hashes and list links are not used) + msb int32[n, slots, max_blocks] (nodes each slot contributed), sm int64[n, slots, 6]
# (_SM_*), mbt int32[n, slots] (slots of the last batch, in order), tm int64[n, 12] (_TM_*),
# cur int32[n, 3, slots] (scratch: the batch's, the dirty and the departed slots of a pass),
# rec int32[n, capacity, 4] (per node: _R_* fields), ring int32[n, 4 * capacity] (node ids,
# -1 = cleared cell).
# Every array but the lru ones starts at zero (lru_init initialises those).
_MSB, _SMA, _MBT, _TMA, _CUR, _REC, _RING = 5, 6, 7, 8, 9, 10, 11
#: index of the tm array in the cpu tuple (tests set ``cpu[CPU_TM][:, 6] = 1`` for the plain pass)
CPU_TM = _TMA
#: index of the mirror's scratch array (its contents carry nothing between calls)
CPU_SCRATCH = _CUR
#: slot fields: blocks contributed, tenancy they belong to, current tenancy (bumped by
#: kv_allocate_tiered_nb), stamp of the last pass that saw the slot in the batch, stamp of
#: the last pass that found it continuing (same tenancy, in the previous pass's batch), the
#: slot's change counter (kv[_SV]) when an incremental pass last read its blocks
_SM_LEN, _SM_GEN, _SM_TGEN, _SM_LAST, _SM_CONT, _SM_VER = 0, 1, 2, 3, 4, 5
#: incremental mode on, Y start cell + 1 (0 = empty), reload touches since the pass, present
#: nodes off the order, slots in mbt, incremental passes tried, incremental mode disabled
#: (tests), incremental passes that fell back to the plain pass, (8: unused), ring head
#: cell, ring tail cell (next to write), pass stamp
_TM_MODE, _TM_YMARK, _TM_YTOUCH, _TM_NUNL, _TM_MBN, _TM_PASS, _TM_OFF, _TM_FALLBACK = 0, 1, 2, 3, 4, 5, 6, 7
_TM_RH, _TM_RT, _TM_STAMP = 9, 10, 11
#: node record fields: the hash's low and high halves, ring cell + 1 (0 = not listed),
#: occurrence count in the last batch (incremental mode)
_R_LO, _R_HI, _R_POS, _R_CNT = 0, 1, 2, 3
_HI32 = np.uint64(0xFFFFFFFF00000000)
_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)


def make_cpu_tier_arrays(n_rows, capacity, n_slots, max_blocks):
    """The CPU tier tuple (call lru_init on each row; everything else starts at zero)."""
    cap = max(int(capacity), 1)
    lru = make_lru_arrays(n_rows, cap)  # (a sparser table than load 0.75 measured faster)
    return lru + (np.zeros((n_rows, n_slots, max_blocks), np.int32),
                  np.zeros((n_rows, n_slots, 6), np.int64), np.zeros((n_rows, n_slots), np.int32),
                  np.zeros((n_rows, 12), np.int64), np.zeros((n_rows, 3, n_slots), np.int32),
                  np.zeros((n_rows, cap, 4), np.int32), np.zeros((n_rows, max(4 * cap, 16)), np.int32))


def cpu_node_hashes(cpu, i):
    """uint64 array: the hash each node of row i's CPU tier holds (meaningful for resident nodes)."""
    rec = cpu[_REC][i]
    return (rec[:, _R_HI].view(np.uint32).astype(np.uint64) << np.uint64(32)) | rec[:, _R_LO].view(np.uint32)


def cpu_tier_order(cpu, i):
    """Node ids of row i's CPU-resident entries, least recent first (the exact LRU order)."""
    meta, msb, sm, mbt, tm, rec, ring = (cpu[LRU_META], cpu[_MSB], cpu[_SMA], cpu[_MBT], cpu[_TMA],
                                         cpu[_REC], cpu[_RING])
    rh, rt = int(tm[i, _TM_RH]), int(tm[i, _TM_RT])
    assert 0 <= rh <= rt <= ring.shape[1]
    listed, cells = [], []
    for x in range(rh, rt):
        nd = int(ring[i, x])
        if nd >= 0:
            assert int(rec[i, nd, _R_POS]) == x + 1, f"ring cell {x} names node {nd}, whose cell is elsewhere"
            listed.append(nd)
            cells.append(x)
    assert len(set(listed)) == len(listed), "a node is listed twice"
    n_pos = int(np.count_nonzero(rec[i, :, _R_POS]))
    assert n_pos == len(listed), "a node claims a ring cell outside head..tail"
    if tm[i, _TM_MODE] == 0:
        assert len(listed) == int(meta[i, 2]), "plain mode: a resident entry is not listed"
        return listed
    ym = int(tm[i, _TM_YMARK]) - 1
    cut = sum(1 for x in cells if x < ym) if ym >= 0 else len(listed)
    on_list = set(listed)
    live, seen = [], set()
    for k in range(int(tm[i, _TM_MBN]) - 1, -1, -1):
        s = int(mbt[i, k])
        for j in range(int(sm[i, s, _SM_LEN]) - 1, -1, -1):
            x = int(msb[i, s, j])
            assert rec[i, x, _R_CNT] > 0
            if x not in on_list and x not in seen:
                seen.add(x)
                live.append(x)
    return listed[:cut] + live[::-1] + listed[cut:]



@intrinsic
def _prefetch(typingctx, arr, i, j):
    """Prefetch the cache line of arr[i, j] (2-d ``arr``; a hint: it cannot fault and has no
    effect on results)."""
    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[k], sig.args[k], types.intp) for k in (1, 2)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, i, j), codegen


# ---- the hash table (ht = cpu[LRU_HT]; linear probing from the slot the high half names,
# backward-shift deletion, as kernels/lru.py) and the nodes

@njit(inner=True)
def _ct_find(ht, rec, i, h):
    """Node holding hash h, or -1."""
    mask = ht.shape[1] - 1
    tag = h & _HI32
    lo = np.int32(h)
    j = np.int64((h >> _S32) & np.uint64(mask))
    while True:
        e = ht[i, j]
        if e == _ZERO:
            return np.int64(-1)
        if (e & _HI32) == tag:
            nd = np.int64(e & _LO32) - 1
            if rec[i, nd, _R_LO] == lo:
                return nd
        j = (j + 1) & mask


@njit(inner=True)
def _ct_new(ht, rec, free, meta, i, h):
    """Register absent hash h on a free node (not listed); returns the node."""
    meta[i, 3] -= 1
    nd = np.int64(free[i, meta[i, 3]])
    rec[i, nd, _R_LO] = np.int32(h)
    rec[i, nd, _R_HI] = np.int32(h >> _S32)
    mask = ht.shape[1] - 1
    j = np.int64((h >> _S32) & np.uint64(mask))
    while ht[i, j] != _ZERO:
        j = (j + 1) & mask
    ht[i, j] = (h & _HI32) | np.uint64(nd + 1)
    meta[i, 2] += 1
    return nd


@njit(inner=True)
def _ct_drop(ht, rec, free, meta, i, nd):
    """Delete node nd's hash (backward shift) and free the node (already unlisted)."""
    mask = ht.shape[1] - 1
    key = np.uint64(nd + 1)
    j = np.int64(np.uint64(np.uint32(rec[i, nd, _R_HI])) & np.uint64(mask))
    while (ht[i, j] & _LO32) != key:
        j = (j + 1) & mask
    ht_backshift_nb(ht, i, j)
    meta[i, 2] -= 1
    free[i, meta[i, 3]] = nd
    meta[i, 3] += 1


# ---- the ring (listed entries in LRU order); ring, rec, tm = cpu[_RING], cpu[_REC], cpu[_TMA]

@njit(inner=True)
def _ring_unlist(ring, rec, i, nd):
    """Take listed node nd off the order."""
    ring[i, rec[i, nd, _R_POS] - 1] = -1
    rec[i, nd, _R_POS] = 0


@njit(inner=True)
def _ring_compact(ring, rec, tm, i):
    """Move the listed entries to cells 0.. in order (the Y mark follows its segment)."""
    ym = tm[i, _TM_YMARK] - 1
    nym = np.int64(-1)
    k = np.int64(0)
    for x in range(tm[i, _TM_RH], tm[i, _TM_RT]):
        if x == ym:
            nym = k
        nd = ring[i, x]
        if nd >= 0:
            ring[i, k] = nd
            rec[i, nd, _R_POS] = k + 1
            k += 1
    if ym >= 0:
        tm[i, _TM_YMARK] = (nym if nym >= 0 else k) + 1
    tm[i, _TM_RH] = 0
    tm[i, _TM_RT] = k


@njit(inner=True)
def _y_span(tm, i):
    """Cells from the Y mark to the tail (0 without a Y segment)."""
    return tm[i, _TM_RT] - (tm[i, _TM_YMARK] - 1) if tm[i, _TM_YMARK] > 0 else np.int64(0)


@njit(inner=True)
def _ring_reserve(ring, rec, tm, i, n):
    """Make room for n appends without a compaction in between (for callers that keep a cell
    index across appends; n may overstate: after a compaction at most capacity entries are
    listed, and a pass lists at most 2x capacity more)."""
    if tm[i, _TM_RT] + n > ring.shape[1]:
        _ring_compact(ring, rec, tm, i)


@njit(inner=True)
def _ring_append(ring, rec, tm, i, nd):
    """List node nd as the most recent entry."""
    t = tm[i, _TM_RT]
    if t >= ring.shape[1]:
        _ring_compact(ring, rec, tm, i)
        t = tm[i, _TM_RT]
    ring[i, t] = nd
    rec[i, nd, _R_POS] = t + 1
    tm[i, _TM_RT] = t + 1


@njit(inner=True)
def _ring_pop_head(ring, rec, tm, i):
    """Unlist and return the least recent listed node (-1 if none)."""
    x = tm[i, _TM_RH]
    t = tm[i, _TM_RT]
    while x < t and ring[i, x] < 0:
        x += 1
    if x >= t:
        tm[i, _TM_RH] = x
        return np.int64(-1)
    v = np.int64(ring[i, x])
    ring[i, x] = -1
    tm[i, _TM_RH] = x + 1
    rec[i, v, _R_POS] = 0
    return v


@njit(inner=True)
def _ring_relist_y(ring, rec, tm, i, end):
    """Move the Y segment's entries in cells ym .. end-1 to the tail (after what was appended
    since ``end``), keeping their order; the Y mark follows them."""
    ym = tm[i, _TM_YMARK] - 1
    if ym < 0 or tm[i, _TM_RT] == end:
        return
    tm[i, _TM_YMARK] = tm[i, _TM_RT] + 1
    for x in range(ym, end):
        nd = ring[i, x]
        if nd >= 0:
            _ring_unlist(ring, rec, i, nd)
            _ring_append(ring, rec, tm, i, nd)


# ---- CPU tier operations

@njit
def kv_cpu_touch_nb(cpu, i, h):
    """CPU-tier touch(h) of a reload: h becomes the most recent entry (no-op if absent)."""
    nd = _ct_find(cpu[LRU_HT], cpu[_REC], i, h)
    if nd >= 0:
        _cpu_touch_node(cpu[_RING], cpu[_REC], cpu[_TMA], i, nd)


@njit(inner=True)
def _cpu_touch_node(ring, rec, tm, i, nd):
    """touch of the entry on node nd."""
    if tm[i, _TM_MODE] == 0:
        _ring_unlist(ring, rec, i, nd)
        _ring_append(ring, rec, tm, i, nd)
        return
    if rec[i, nd, _R_POS] > 0:
        _ring_unlist(ring, rec, i, nd)
    else:
        tm[i, _TM_NUNL] -= 1
    _ring_append(ring, rec, tm, i, nd)
    if tm[i, _TM_YMARK] == 0:
        tm[i, _TM_YMARK] = rec[i, nd, _R_POS]
    tm[i, _TM_YTOUCH] += 1


@njit(inline="always")
def _cpu_store(cpu, ins, i, h, capacity, listed):
    """store(h) of an absent hash; returns its node and the node evicted for it (or -1)."""
    ring = cpu[_RING]
    rec = cpu[_REC]
    tm = cpu[_TMA]
    ht = cpu[LRU_HT]
    free = cpu[LRU_FREE]
    meta = cpu[LRU_META]
    v = np.int64(-1)
    if meta[i, 2] >= capacity:
        v = _ring_pop_head(ring, rec, tm, i)
        if v >= 0:
            _ct_drop(ht, rec, free, meta, i, v)
            ins[i, I_CPU_EVICT] += 1
    nd = _ct_new(ht, rec, free, meta, i, h)
    if listed:
        _ring_append(ring, rec, tm, i, nd)
    ins[i, I_CPU_MIRROR] += 1
    return nd, v


@njit(inner=True, inline="always")  # into kv_mirror_to_cpu_nb: no call passing the kv and CPU tuples
def _mirror_incremental(kv, cpu, ins, i, rq, bt, blen, B, capacity):
    """One MirrorToCPU pass in incremental mode; False (nothing changed but the batch slots'
    pass stamps and tenancies, which the plain pass then sets alike) if it cannot be exact.

    The pass is memory bound (the CPU tier's arrays exceed the L2 cache), so before any
    change it prefetches the CPU hash-table home slots of the new blocks' hashes (read from
    the slots' hash cache, kv[_SH]) and the records and home slots of the entries its stores
    may evict.  (Prefetching the nodes the new blocks' home slots name, and the departed
    slots' nodes, measured slower: those loops stall on their own loads.)"""
    sl = kv[8]
    sh = kv[_SH]
    sv = kv[_SV]
    msb = cpu[_MSB]
    sm = cpu[_SMA]
    mbt = cpu[_MBT]
    tm = cpu[_TMA]
    cur = cpu[_CUR]
    rec = cpu[_REC]
    ring = cpu[_RING]
    ht = cpu[LRU_HT]
    hmask = np.uint64(ht.shape[1] - 1)
    tm[i, _TM_PASS] += 1
    tm[i, _TM_STAMP] += 1
    ps = tm[i, _TM_STAMP]
    # the batch's slots (cur[0]); which continue (same tenancy, in the last pass's batch);
    # the "dirty" ones (cur[1]): new tenancies and slots with blocks since their last pass
    wmax = min(msb.shape[2], sh.shape[2])
    nbt = 0
    ndirty = 0
    for k in range(blen):
        s = rq[R_SLOT, bt[i, k]]
        if s < 0:
            continue
        cur[i, 0, nbt] = s
        nbt += 1
        n = sl[i, s]
        if n > wmax:
            return False  # a list longer than the per-slot arrays (grown between runs)
        if sm[i, s, _SM_LAST] == ps - 1 and sm[i, s, _SM_GEN] == sm[i, s, _SM_TGEN]:
            sm[i, s, _SM_CONT] = ps
            # blocks not contributed yet, and the slot changed since a pass last read them
            # (unchanged: the same partial last block, whose hash cache entry is still 0)
            if sm[i, s, _SM_LEN] < n and sv[i, s] != sm[i, s, _SM_VER]:
                cur[i, 1, ndirty] = s
                ndirty += 1
        else:
            sm[i, s, _SM_GEN] = sm[i, s, _SM_TGEN]
            cur[i, 1, ndirty] = s
            ndirty += 1
        sm[i, s, _SM_LAST] = ps
    # the new work: count it, check it, prefetch the blocks' hash-table home slots
    work = np.int64(0)
    for k in range(ndirty):
        s = cur[i, 1, k]
        n = sl[i, s]
        for j in range(sm[i, s, _SM_LEN] if sm[i, s, _SM_CONT] == ps else 0, n):
            h = sh[i, s, j]
            if h == _ZERO:  # not full and hashed
                if j < n - 1:
                    return False  # a block that is not full before the list end
                break
            work += 1
            _prefetch(ht, i, np.int64((h >> _S32) & hmask))
    meta = cpu[LRU_META]
    used = meta[i, 2]
    if used + work > capacity and used - tm[i, _TM_NUNL] - tm[i, _TM_YTOUCH] <= work:
        return False  # evictions could reach entries of the last batch
    # the departed slots (cur[2]) of the last batch
    mbn = tm[i, _TM_MBN]
    ndep = 0
    dep = np.int64(0)
    for k in range(mbn):
        s = mbt[i, k]
        if sm[i, s, _SM_CONT] != ps:
            cur[i, 2, ndep] = s
            ndep += 1
            dep += sm[i, s, _SM_LEN]
    # the entries the stores may evict (at most work - free room, from the head): their
    # records (the stores' new nodes) and hash-table home slots
    nev = min(used + work - capacity, work)
    x = tm[i, _TM_RH]
    t = tm[i, _TM_RT]
    while nev > 0 and x < t:
        v = ring[i, x]
        if v >= 0:
            _prefetch(ht, i, np.int64(np.uint64(np.uint32(rec[i, v, _R_HI])) & hmask))
            nev -= 1
        x += 1
    # 1. entries of departed slots, in last-batch order (listed before the Y segment)
    if dep > 0:
        _ring_reserve(ring, rec, tm, i, min(dep, capacity) + _y_span(tm, i))
        end = tm[i, _TM_RT]
        for k in range(ndep):
            s = cur[i, 2, k]
            for j in range(sm[i, s, _SM_LEN]):
                nd = msb[i, s, j]
                c = rec[i, nd, _R_CNT] - 1
                rec[i, nd, _R_CNT] = c
                if c == 0 and rec[i, nd, _R_POS] == 0:
                    _ring_append(ring, rec, tm, i, nd)
                    tm[i, _TM_NUNL] -= 1
        _ring_relist_y(ring, rec, tm, i, end)
    # 2. new blocks, in batch order then block order
    for k in range(ndirty):
        s = cur[i, 1, k]
        m = sm[i, s, _SM_LEN] if sm[i, s, _SM_CONT] == ps else np.int64(0)
        for j in range(m, sl[i, s]):
            h = sh[i, s, j]
            if h == _ZERO:
                break
            nd = _ct_find(ht, rec, i, h)
            if nd < 0:
                nd, v = _cpu_store(cpu, ins, i, h, capacity, False)
                tm[i, _TM_NUNL] += 1
            elif rec[i, nd, _R_CNT] == 0:
                _ring_unlist(ring, rec, i, nd)
                tm[i, _TM_NUNL] += 1
            rec[i, nd, _R_CNT] += 1
            msb[i, s, m] = nd
            m += 1
        sm[i, s, _SM_LEN] = m
        sm[i, s, _SM_VER] = sv[i, s]
    for k in range(nbt):
        mbt[i, k] = cur[i, 0, k]
    # 3. entries reloads touched since the last pass that are in the batch again
    ym = tm[i, _TM_YMARK] - 1
    if ym >= 0:
        for x in range(ym, tm[i, _TM_RT]):
            nd = ring[i, x]
            if nd >= 0 and rec[i, nd, _R_CNT] > 0:
                _ring_unlist(ring, rec, i, nd)
                tm[i, _TM_NUNL] += 1
    tm[i, _TM_YMARK] = 0
    tm[i, _TM_YTOUCH] = 0
    tm[i, _TM_MBN] = nbt
    return True


@njit(inner=True)
def _materialize(cpu, i):
    """Leave incremental mode: list the last batch's entries where the plain pass has them
    (before the Y segment, by last occurrence)."""
    msb = cpu[_MSB]
    sm = cpu[_SMA]
    mbt = cpu[_MBT]
    tm = cpu[_TMA]
    rec = cpu[_REC]
    mbn = tm[i, _TM_MBN]
    tot = np.int64(0)
    for k in range(mbn):
        tot += sm[i, mbt[i, k], _SM_LEN]
    ring = cpu[_RING]
    _ring_reserve(ring, rec, tm, i, min(tot, rec.shape[1]) + _y_span(tm, i))
    end = tm[i, _TM_RT]
    for k in range(mbn):  # an entry is listed at its last occurrence (its count reaches 0)
        s = mbt[i, k]
        for j in range(sm[i, s, _SM_LEN]):
            nd = msb[i, s, j]
            c = rec[i, nd, _R_CNT] - 1
            rec[i, nd, _R_CNT] = c
            if c == 0 and rec[i, nd, _R_POS] == 0:
                _ring_append(ring, rec, tm, i, nd)
    _ring_relist_y(ring, rec, tm, i, end)
    tm[i, _TM_MODE] = 0
    tm[i, _TM_YMARK] = 0
    tm[i, _TM_YTOUCH] = 0
    tm[i, _TM_NUNL] = 0
    tm[i, _TM_MBN] = 0


@njit(inner=True)
def _mirror_plain(kv, cpu, ins, i, rq, bt, blen, B, capacity):
    """The plain pass over a fully listed LRU; records what incremental mode needs and enters
    it if every entry the pass touched is still resident, in last-occurrence order at the end."""
    hsh = kv[1]
    fill = kv[2]
    sb = kv[7]
    sl = kv[8]
    msb = cpu[_MSB]
    sm = cpu[_SMA]
    mbt = cpu[_MBT]
    tm = cpu[_TMA]
    rec = cpu[_REC]
    ring = cpu[_RING]
    ht = cpu[LRU_HT]
    ok = tm[i, _TM_OFF] == 0
    ps = tm[i, _TM_STAMP]
    nbt = 0
    for k in range(blen):
        s = rq[R_SLOT, bt[i, k]]
        if s < 0:
            continue
        m = np.int64(0)
        prefix = True
        n = sl[i, s]
        for j in range(n):
            b = sb[i, s, j]
            h = hsh[i, b]
            if h == _ZERO or fill[i, b] < B:
                prefix = False
                continue
            nd = _ct_find(ht, rec, i, h)
            if nd >= 0:
                _ring_unlist(ring, rec, i, nd)
                _ring_append(ring, rec, tm, i, nd)
            else:
                nd, v = _cpu_store(cpu, ins, i, h, capacity, True)
                if v >= 0 and rec[i, v, _R_CNT] > 0:
                    ok = False  # an entry touched by this pass was evicted by it
            if prefix and m < msb.shape[2]:
                rec[i, nd, _R_CNT] += 1
                msb[i, s, m] = nd
                m += 1
            else:
                ok = False  # (or a list longer than the per-slot arrays, grown between runs)
        sm[i, s, _SM_LEN] = m
        sm[i, s, _SM_GEN] = sm[i, s, _SM_TGEN]
        sm[i, s, _SM_LAST] = ps
        mbt[i, nbt] = s
        nbt += 1
    for k in range(nbt):
        s = mbt[i, k]
        for j in range(sm[i, s, _SM_LEN]):
            nd = msb[i, s, j]
            if not ok:
                rec[i, nd, _R_CNT] = 0
            elif rec[i, nd, _R_POS] > 0:
                _ring_unlist(ring, rec, i, nd)
                tm[i, _TM_NUNL] += 1
    if ok:
        tm[i, _TM_MODE] = 1
        tm[i, _TM_YMARK] = 0
        tm[i, _TM_YTOUCH] = 0
        tm[i, _TM_MBN] = nbt


@njit
def kv_mirror_to_cpu_nb(kv, cpu, ins, i, rq, bt, blen, B, capacity):
    """MirrorToCPU(batch): every full, hashed block owned by the batch goes to (or is
    touched on) the CPU tier, in batch order then block order (exactly; see above)."""
    if cpu[_TMA][i, _TM_MODE] == 1:
        if _mirror_incremental(kv, cpu, ins, i, rq, bt, blen, B, capacity):
            return
        cpu[_TMA][i, _TM_FALLBACK] += 1
        _materialize(cpu, i)
    else:
        cpu[_TMA][i, _TM_STAMP] += 1
    _mirror_plain(kv, cpu, ins, i, rq, bt, blen, B, capacity)


@njit(inline="always")  # into _allocate_tiered
def _reload_prefix(kv, cpu, ins, i, rq, gseed, r, start_block, prev, B, base_lat, bw):
    """The reload scan from prompt block ``start_block`` (``prev`` = the hash before it).
    Returns whether it reloaded a block."""
    ref, hsh, fill, nxt, prv, htk, htv, sb, sl, sbase, sfree = kv[:11]
    mh = kv[_MH]
    mt = kv[_MT]
    e = _memo_find(mt, i, rq, gseed, r, B)
    L = rq[R_ILEN, r]
    n = L // B
    max_reloads = ins[i, I_FREE_CNT]
    reloaded = False
    count = np.int64(0)
    ht = cpu[LRU_HT]
    for j in range(start_block, n):
        h, e = _block_hash(mh, mt, i, rq, gseed, r, prev, j * B, B, e)
        if ht_get_nb(htk, htv, i, h) >= 0:
            prev = h
            continue
        nd = _ct_find(ht, cpu[_REC], i, h)
        if nd < 0 or count >= max_reloads:
            return reloaded
        b = ins[i, I_FREE_HEAD]
        if b < 0:
            return reloaded
        _unlink(nxt, prv, ins, i, b)
        if hsh[i, b] != _ZERO:
            kv_ht_del_nb(kv, ins, i, hsh[i, b])
        fill[i, b] = B
        hsh[i, b] = h
        ref[i, b] = 0
        kv_ht_put_nb(kv, ins, i, h, b)
        _append_free(nxt, prv, ins, i, b)
        ins[i, I_PENDING_LAT] += base_lat + np.int64(np.ceil(np.float64(B) / bw))
        _cpu_touch_node(cpu[_RING], cpu[_REC], cpu[_TMA], i, nd)
        ins[i, I_CPU_HITS] += 1
        reloaded = True
        count += 1
        prev = h
    return reloaded


@njit(inner=True)
def _commit_cached(kv, ins, i, rq, r, blocks, lo, hi, B):
    ref = kv[0]
    nxt = kv[3]
    prv = kv[4]
    for c in range(lo, hi):
        b = blocks[c]
        if ref[i, b] == 0:
            _unlink(nxt, prv, ins, i, b)
        ref[i, b] += 1
        ins[i, I_HITS] += 1
        s = rq[R_SLOT, r]
        if s < 0:
            s = _new_slot(kv, ins, i, rq, r, np.int64(0))
        slot_append_nb(kv, ins, i, s, b, B)


@njit(inline="always")  # the common case is then the caller's direct kv_allocate_nb call
def kv_allocate_tiered_nb(kv, cpu, ins, i, rq, gseed, r, start, end, cached, n_cached, B,
                          base_lat, bw, newc):
    """TieredKVCache.AllocateKVBlocks: reload from the CPU tier first, then allocate on the GPU.

    ``cached[:n_cached]`` must be what :func:`kv_cached_blocks_nb` returns for request ``r``
    in the current state (as for :func:`kv_allocate_nb`): the reload scan continues the
    hash chain from the last of them."""
    s0 = rq[R_SLOT, r]
    owned = kv[8][i, s0] if s0 >= 0 else 0
    # the scan covers prompt blocks max(n_cached, owned) .. L//B - 1 and reloads nothing
    # without a free GPU block: skip it (decode steps, a full GPU) without touching the hash
    # chain; this common case is a plain GPU allocation
    if max(n_cached, owned) < rq[R_ILEN, r] // B and ins[i, I_FREE_CNT] > 0:
        ok = _allocate_tiered(kv, cpu, ins, i, rq, gseed, r, start, end, cached, n_cached, B, base_lat, bw, newc)
    else:
        ok = kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, B)
        if not ok:
            ins[i, I_CPU_MISSES] += 1
    if s0 < 0 and rq[R_SLOT, r] >= 0:
        cpu[_SMA][i, rq[R_SLOT, r], _SM_TGEN] += 1  # a new tenancy of the slot (incremental mirror)
    return ok


@njit(inner=True)
def _allocate_tiered(kv, cpu, ins, i, rq, gseed, r, start, end, cached, n_cached, B, base_lat, bw, newc):
    """kv_allocate_tiered_nb when the reload scan runs."""
    hsh = kv[1]
    sb = kv[7]
    sl = kv[8]
    s = rq[R_SLOT, r]
    owned = sl[i, s] if s >= 0 else 0
    k0 = n_cached
    prev = hsh[i, cached[n_cached - 1]] if n_cached > 0 else _ZERO
    if owned > k0:
        k0 = owned
        prev = hsh[i, sb[i, s, owned - 1]]
    reloaded = _reload_prefix(kv, cpu, ins, i, rq, gseed, r, k0, prev, B, base_lat, bw)
    if reloaded:
        nc = kv_cached_blocks_nb(kv, i, rq, gseed, r, B, newc)
        new_start = nc * B
        if new_start > start:
            exists = rq[R_SLOT, r] >= 0
            if new_start >= end:
                end_block = min((end + B - 1) // B, nc)
                if exists:
                    sblk = (start + B - 1) // B
                    if sblk < end_block:
                        _commit_cached(kv, ins, i, rq, r, newc, sblk, end_block, B)
                else:
                    _commit_cached(kv, ins, i, rq, r, newc, np.int64(0), end_block, B)
                return True
            nsb = new_start // B
            if exists:
                sblk = (start + B - 1) // B
                if sblk < nsb:
                    _commit_cached(kv, ins, i, rq, r, newc, sblk, nsb, B)
            else:
                _commit_cached(kv, ins, i, rq, r, newc, np.int64(0), nsb, B)
            return kv_allocate_nb(kv, ins, i, rq, gseed, r, new_start, end, newc, nc, B)
        return kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, B)
    ok = kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, B)
    if not ok:
        ins[i, I_CPU_MISSES] += 1
    return ok
