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
  keeps the router's delayed cache snapshot up to date; see kernels/engine.py)
"""
import numpy as np

from .jit import njit_hot as njit
from .layout import (
    I_CLOG_N, I_CLOG_ON, I_CLOG_OVF, I_FREE_CNT, I_SLOT_OVF, I_FREE_HEAD, I_FREE_TAIL, I_HITS, I_MISSES, I_SLOT_FREE_N, I_TOTAL_BLOCKS,
    R_ILEN, R_PI, R_SLOT,
)
from .prefix_hash import ht_del_nb, ht_get_nb, ht_put_nb, req_block_hash_nb

_ZERO = np.uint64(0)


def make_kv_arrays(n_inst, total_blocks, n_slots, max_blocks, log_capacity=4096):
    """Allocate the ``kv`` tuple for ``n_inst`` instances (call kv_init_nb on each)."""
    htcap = 1 << int(np.ceil(np.log2(max(2 * total_blocks, 16))))
    return (np.zeros((n_inst, total_blocks), np.int32), np.zeros((n_inst, total_blocks), np.uint64),
            np.zeros((n_inst, total_blocks), np.int32), np.zeros((n_inst, total_blocks), np.int32),
            np.zeros((n_inst, total_blocks), np.int32), np.zeros((n_inst, htcap), np.uint64),
            np.zeros((n_inst, htcap), np.int32), np.zeros((n_inst, n_slots, max_blocks), np.int32),
            np.zeros((n_inst, n_slots), np.int32), np.zeros((n_inst, n_slots), np.int64),
            np.zeros((n_inst, n_slots), np.int32), np.zeros((n_inst, log_capacity), np.uint64),
            np.zeros((n_inst, log_capacity), np.int8))


@njit
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


@njit
def kv_ht_put_nb(kv, ins, i, h, b):
    """Register hash h -> block b (and log it for the delayed router snapshot)."""
    ht_put_nb(kv[5], kv[6], i, h, b)
    _log(kv, ins, i, h, np.int8(1))


@njit
def kv_ht_del_nb(kv, ins, i, h):
    ht_del_nb(kv[5], kv[6], i, h)
    _log(kv, ins, i, h, np.int8(-1))


@njit
def kv_init_nb(kv, ins, i, total_blocks):
    """Reset instance ``i``'s cache to ``total_blocks`` empty blocks, all free, in id order."""
    ref, hsh, fill, nxt, prv, htk, htv, sb, sl, sbase, sfree = kv[:11]
    ins[i, I_CLOG_N] = 0
    ins[i, I_CLOG_OVF] = 0
    for b in range(total_blocks):
        ref[i, b] = 0
        hsh[i, b] = _ZERO
        fill[i, b] = 0
        nxt[i, b] = b + 1 if b + 1 < total_blocks else -1
        prv[i, b] = b - 1
    htk[i, :] = _ZERO
    ins[i, I_FREE_HEAD] = 0
    ins[i, I_FREE_TAIL] = total_blocks - 1
    ins[i, I_FREE_CNT] = total_blocks
    ins[i, I_TOTAL_BLOCKS] = total_blocks
    ns = sl.shape[1]
    for s in range(ns):
        sl[i, s] = 0
        sfree[i, s] = ns - 1 - s
    ins[i, I_SLOT_FREE_N] = ns


@njit
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


@njit
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


@njit
def slot_append_nb(kv, ins, i, s, b):
    """Append block b to slot s's list.  The list is sized for the longest request;
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


@njit
def kv_used_nb(ins, i):
    return ins[i, I_TOTAL_BLOCKS] - ins[i, I_FREE_CNT]


@njit
def kv_cached_blocks_nb(kv, i, rq, gseed, r, B, out):
    """GetCachedBlocks over request ``r``'s full input: fills ``out`` with the ids of
    the longest cached full-block prefix and returns their count (pure query)."""
    htk = kv[5]
    htv = kv[6]
    L = rq[R_ILEN, r]
    n = L // B
    prev = _ZERO
    cnt = np.int64(0)
    for j in range(n):
        h = req_block_hash_nb(rq, gseed, r, prev, j * B, B)
        b = ht_get_nb(htk, htv, i, h)
        if b < 0:
            break
        out[cnt] = b
        cnt += 1
        prev = h
    return cnt


@njit
def _new_slot(kv, ins, i, rq, r, base):
    sbase = kv[9]
    sfree = kv[10]
    sl = kv[8]
    ins[i, I_SLOT_FREE_N] -= 1
    s = sfree[i, ins[i, I_SLOT_FREE_N]]
    sl[i, s] = 0
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
                slot_append_nb(kv, ins, i, s, b)
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
                h = req_block_hash_nb(rq, gseed, r, prev, pos0, B)
                hsh[i, latest] = h
                kv_ht_put_nb(kv, ins, i, h, latest)
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
                slot_append_nb(kv, ins, i, s, b)
                if cnt == B and in_prefill:
                    h = req_block_hash_nb(rq, gseed, r, prev, start + k, B)
                    hsh[i, b] = h
                    kv_ht_put_nb(kv, ins, i, h, b)
                    prev = h
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
# The CPU tier is an LRU set of hashes (kernels/lru.py): a block's hash stands
# for its content.

from .layout import I_CPU_EVICT, I_CPU_HITS, I_CPU_MIRROR, I_CPU_MISSES, I_PENDING_LAT  # noqa: E402
from .lru import lru_contains_nb, lru_store_nb, lru_touch_nb  # noqa: E402


@njit
def kv_mirror_to_cpu_nb(kv, cpu, ins, i, rq, bt, blen, B, capacity):
    """MirrorToCPU(batch): every full, hashed block owned by the batch goes to (or is
    touched on) the CPU tier, in batch order then block order."""
    hsh = kv[1]
    fill = kv[2]
    sb = kv[7]
    sl = kv[8]
    for k in range(blen):
        r = bt[i, k]
        s = rq[R_SLOT, r]
        if s < 0:
            continue
        for j in range(sl[i, s]):
            b = sb[i, s, j]
            h = hsh[i, b]
            if h == _ZERO or fill[i, b] < B:
                continue
            if lru_contains_nb(cpu, i, h):
                lru_touch_nb(cpu, i, h)
            else:
                if lru_store_nb(cpu, i, h, capacity):
                    ins[i, I_CPU_EVICT] += 1
                ins[i, I_CPU_MIRROR] += 1


@njit
def _reload_prefix(kv, cpu, ins, i, rq, gseed, r, start_block, prev, B, base_lat, bw):
    ref, hsh, fill, nxt, prv, htk, htv, sb, sl, sbase, sfree = kv[:11]
    L = rq[R_ILEN, r]
    n = L // B
    max_reloads = ins[i, I_FREE_CNT]
    reloaded = False
    count = np.int64(0)
    for j in range(start_block, n):
        h = req_block_hash_nb(rq, gseed, r, prev, j * B, B)
        if ht_get_nb(htk, htv, i, h) >= 0:
            prev = h
            continue
        if not lru_contains_nb(cpu, i, h):
            break
        if count >= max_reloads:
            break
        b = ins[i, I_FREE_HEAD]
        if b < 0:
            break
        _unlink(nxt, prv, ins, i, b)
        if hsh[i, b] != _ZERO:
            kv_ht_del_nb(kv, ins, i, hsh[i, b])
        fill[i, b] = B
        hsh[i, b] = h
        ref[i, b] = 0
        kv_ht_put_nb(kv, ins, i, h, b)
        _append_free(nxt, prv, ins, i, b)
        ins[i, I_PENDING_LAT] += base_lat + np.int64(np.ceil(np.float64(B) / bw))
        lru_touch_nb(cpu, i, h)
        ins[i, I_CPU_HITS] += 1
        reloaded = True
        count += 1
        prev = h
    return reloaded


@njit
def _commit_cached(kv, ins, i, rq, r, blocks, lo, hi):
    ref = kv[0]
    nxt = kv[3]
    prv = kv[4]
    sb = kv[7]
    sl = kv[8]
    for c in range(lo, hi):
        b = blocks[c]
        if ref[i, b] == 0:
            _unlink(nxt, prv, ins, i, b)
        ref[i, b] += 1
        ins[i, I_HITS] += 1
        s = rq[R_SLOT, r]
        if s < 0:
            s = _new_slot(kv, ins, i, rq, r, np.int64(0))
        slot_append_nb(kv, ins, i, s, b)


@njit
def kv_allocate_tiered_nb(kv, cpu, ins, i, rq, gseed, r, start, end, cached, n_cached, B,
                          base_lat, bw, newc):
    """TieredKVCache.AllocateKVBlocks: reload from the CPU tier first, then allocate on the GPU."""
    hsh = kv[1]
    sb = kv[7]
    sl = kv[8]
    k0 = n_cached
    prev = hsh[i, cached[n_cached - 1]] if n_cached > 0 else _ZERO
    s = rq[R_SLOT, r]
    owned = sl[i, s] if s >= 0 else 0
    if owned > k0:
        k0 = owned
        prev = hsh[i, sb[i, s, owned - 1]]
    if _reload_prefix(kv, cpu, ins, i, rq, gseed, r, k0, prev, B, base_lat, bw):
        nc = kv_cached_blocks_nb(kv, i, rq, gseed, r, B, newc)
        new_start = nc * B
        if new_start > start:
            exists = rq[R_SLOT, r] >= 0
            if new_start >= end:
                end_block = min((end + B - 1) // B, nc)
                if exists:
                    sblk = (start + B - 1) // B
                    if sblk < end_block:
                        _commit_cached(kv, ins, i, rq, r, newc, sblk, end_block)
                else:
                    _commit_cached(kv, ins, i, rq, r, newc, np.int64(0), end_block)
                return True
            nsb = new_start // B
            if exists:
                sblk = (start + B - 1) // B
                if sblk < nsb:
                    _commit_cached(kv, ins, i, rq, r, newc, sblk, nsb)
            else:
                _commit_cached(kv, ins, i, rq, r, newc, np.int64(0), nsb)
            return kv_allocate_nb(kv, ins, i, rq, gseed, r, new_start, end, newc, nc, B)
        return kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, B)
    ok = kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, B)
    if not ok:
        ins[i, I_CPU_MISSES] += 1
    return ok
