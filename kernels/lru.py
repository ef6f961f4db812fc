"""A bounded LRU set of 64-bit hashes per instance row (kernels).

Used for the CPU KV tier (hash -> block content stands for the block) and for
the router-side prefix-affinity index.  Tuple ``lru``:
  node hash uint64[n, cap], prv/nxt int32[n, cap] (list, head = least recent),
  hash table htk uint64/htv int32 [n, hcap], free-node stack int32[n, cap],
  meta int64[n, 4] = (head, tail, used, free count).
"""
import numpy as np

from .jit import njit_hot as njit
from .prefix_hash import ht_del_nb, ht_get_nb, ht_put_nb

_HEAD = 0
_TAIL = 1
_USED = 2
_FREE = 3


def make_lru_arrays(n_rows, capacity):
    cap = max(int(capacity), 1)
    hcap = 1 << int(np.ceil(np.log2(max(2 * cap, 16))))
    return (np.zeros((n_rows, cap), np.uint64), np.full((n_rows, cap), -1, np.int32),
            np.full((n_rows, cap), -1, np.int32), np.zeros((n_rows, hcap), np.uint64),
            np.zeros((n_rows, hcap), np.int32), np.zeros((n_rows, cap), np.int32),
            np.zeros((n_rows, 4), np.int64))


@njit
def lru_init_nb(lru, i):
    free = lru[5]
    meta = lru[6]
    cap = free.shape[1]
    lru[3][i, :] = np.uint64(0)
    for k in range(cap):
        free[i, k] = cap - 1 - k
    meta[i, _HEAD] = -1
    meta[i, _TAIL] = -1
    meta[i, _USED] = 0
    meta[i, _FREE] = cap


@njit
def _unlink(lru, i, nd):
    prv = lru[1]
    nxt = lru[2]
    meta = lru[6]
    p = prv[i, nd]
    n = nxt[i, nd]
    if p >= 0:
        nxt[i, p] = n
    else:
        meta[i, _HEAD] = n
    if n >= 0:
        prv[i, n] = p
    else:
        meta[i, _TAIL] = p
    prv[i, nd] = -1
    nxt[i, nd] = -1


@njit
def _append(lru, i, nd):
    prv = lru[1]
    nxt = lru[2]
    meta = lru[6]
    t = meta[i, _TAIL]
    nxt[i, nd] = -1
    prv[i, nd] = t
    if t >= 0:
        nxt[i, t] = nd
    else:
        meta[i, _HEAD] = nd
    meta[i, _TAIL] = nd


@njit
def lru_contains_nb(lru, i, h):
    return ht_get_nb(lru[3], lru[4], i, h) >= 0


@njit
def lru_touch_nb(lru, i, h):
    """Move h to the most-recent end (no-op if absent)."""
    nd = ht_get_nb(lru[3], lru[4], i, h)
    if nd < 0:
        return
    _unlink(lru, i, nd)
    _append(lru, i, nd)


@njit
def lru_store_nb(lru, i, h, capacity):
    """Insert h as most recent, evicting the least recent entry when ``capacity`` is
    reached; a present h is left where it is.  Returns True if an entry was evicted."""
    chash, prv, nxt, htk, htv, free, meta = lru[:7]
    if ht_get_nb(htk, htv, i, h) >= 0:
        return False
    evicted = False
    if meta[i, _USED] >= capacity:
        v = meta[i, _HEAD]
        if v >= 0:
            _unlink(lru, i, v)
            ht_del_nb(htk, htv, i, chash[i, v])
            meta[i, _USED] -= 1
            free[i, meta[i, _FREE]] = v
            meta[i, _FREE] += 1
            evicted = True
    meta[i, _FREE] -= 1
    nd = free[i, meta[i, _FREE]]
    chash[i, nd] = h
    ht_put_nb(htk, htv, i, h, nd)
    _append(lru, i, nd)
    meta[i, _USED] += 1
    return evicted


@njit
def lru_record_nb(lru, i, h, capacity):
    """Touch h if present, else store it.  Returns True if an entry was evicted."""
    if ht_get_nb(lru[3], lru[4], i, h) >= 0:
        lru_touch_nb(lru, i, h)
        return False
    return lru_store_nb(lru, i, h, capacity)


# ---- node-level operations (for callers that keep some present entries off the list,
# e.g. the CPU KV tier's incremental mirror in kernels/kvcache.py)

@njit
def lru_linked_nb(lru, i, nd):
    """Is node nd on the list?"""
    return lru[1][i, nd] >= 0 or lru[6][i, _HEAD] == nd


@njit
def lru_unlink_nb(lru, i, nd):
    _unlink(lru, i, nd)


@njit
def lru_append_nb(lru, i, nd):
    _append(lru, i, nd)


@njit
def lru_insert_before_nb(lru, i, nd, at):
    """Link node nd just before node ``at`` (at < 0: at the most-recent end)."""
    if at < 0:
        _append(lru, i, nd)
        return
    prv = lru[1]
    nxt = lru[2]
    p = prv[i, at]
    prv[i, nd] = p
    nxt[i, nd] = at
    prv[i, at] = nd
    if p >= 0:
        nxt[i, p] = nd
    else:
        lru[6][i, _HEAD] = nd


@njit
def lru_evict_head_nb(lru, i):
    """Drop the least recent listed entry; returns its node (-1 if the list is empty)."""
    chash, prv, nxt, htk, htv, free, meta = lru[:7]
    v = meta[i, _HEAD]
    if v < 0:
        return v
    _unlink(lru, i, v)
    ht_del_nb(htk, htv, i, chash[i, v])
    meta[i, _USED] -= 1
    free[i, meta[i, _FREE]] = v
    meta[i, _FREE] += 1
    return v


@njit
def lru_new_node_nb(lru, i, h):
    """Register absent hash h on a free node, not linked; returns the node."""
    chash, prv, nxt, htk, htv, free, meta = lru[:7]
    meta[i, _FREE] -= 1
    nd = free[i, meta[i, _FREE]]
    chash[i, nd] = h
    ht_put_nb(htk, htv, i, h, nd)
    meta[i, _USED] += 1
    return nd
