"""A bounded LRU set of 64-bit hashes per instance row (kernels).

Used for the router-side prefix-affinity index; the CPU KV tier (hash -> block
content stands for the block) uses its hash table, free-node stack and counters with
its own node records and order (kernels/kvcache.py).  Tuple ``lru`` (index constants
``LRU_*``):
  node hash uint64[n, cap];
  node record int32[n, cap, 4] = (prv, nxt, aux, unused): the list links (head =
  least recent, -1 = none; a node that is not on the list has prv = nxt = -1) and
  one int32 the caller may use per node, in one 16-byte record so that a node costs
  one cache line;
  hash table uint64[n, hcap]; free-node stack int32[n, cap];
  meta int64[n, 4] = (head, tail, used, free count).

The hash table is open addressing with linear probing and backward-shift deletion
(no tombstones, no rehash), power-of-two capacity at least twice the node count.
A slot packs the high 32 bits of the hash with node + 1 (0 = empty slot); the
probe starts at the slot named by the high 32 bits, so a probe compares slots
without touching the nodes and a deletion finds every key's home slot from the
slot alone.  A slot whose high half matches is confirmed against the node's full
hash, so lookups are exact.
"""
import numpy as np

from .jit import njit_hot as njit

LRU_HASH, LRU_NODE, LRU_HT, LRU_FREE, LRU_META = 0, 1, 2, 3, 4
#: node record fields
NODE_PRV, NODE_NXT, NODE_AUX = 0, 1, 2

_HEAD = 0
_TAIL = 1
_USED = 2
_FREE = 3

_ZERO = np.uint64(0)
_HI = np.uint64(0xFFFFFFFF00000000)
_LO = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def make_lru_arrays(n_rows, capacity):
    cap = max(int(capacity), 1)
    hcap = 1 << int(np.ceil(np.log2(max(2 * cap, 16))))
    node = np.full((n_rows, cap, 4), -1, np.int32)
    node[:, :, NODE_AUX:] = 0
    return (np.zeros((n_rows, cap), np.uint64), node, np.zeros((n_rows, hcap), np.uint64),
            np.zeros((n_rows, cap), np.int32), np.zeros((n_rows, 4), np.int64))


def lru_table(lru, i):
    """{hash: node} of row i (for tests and debugging)."""
    ht = lru[LRU_HT][i]
    e = ht[ht != 0]
    nodes = (e & np.uint64(0xFFFFFFFF)).astype(np.int64) - 1
    return dict(zip(lru[LRU_HASH][i][nodes].tolist(), nodes.tolist()))


def lru_init(lru, i):
    """Reset row ``i``: no entries, every node free (plain numpy, called from Python)."""
    node = lru[LRU_NODE]
    free = lru[LRU_FREE]
    meta = lru[LRU_META]
    i = int(i)
    cap = free.shape[1]
    lru[LRU_HT][i, :] = _ZERO
    free[i, :] = np.arange(cap - 1, -1, -1)
    node[i, :, NODE_PRV] = -1
    node[i, :, NODE_NXT] = -1
    node[i, :, NODE_AUX] = 0
    meta[i, _HEAD] = -1
    meta[i, _TAIL] = -1
    meta[i, _USED] = 0
    meta[i, _FREE] = cap


# ---- hash table (private: keys are node hashes, see the module doc)

@njit(inner=True)
def _ht_slot(lru, i, h):
    """Slot of hash h, or -1 if absent."""
    chash = lru[LRU_HASH]
    ht = lru[LRU_HT]
    mask = ht.shape[1] - 1
    tag = h & _HI
    j = np.int64((h >> _S32) & np.uint64(mask))
    while True:
        e = ht[i, j]
        if e == _ZERO:
            return np.int64(-1)
        if (e & _HI) == tag and chash[i, np.int64(e & _LO) - 1] == h:
            return j
        j = (j + 1) & mask


@njit(inner=True)
def _ht_insert(lru, i, h, nd):
    """Add absent hash h -> node nd (chash[nd] must already be h)."""
    ht = lru[LRU_HT]
    mask = ht.shape[1] - 1
    j = np.int64((h >> _S32) & np.uint64(mask))
    while ht[i, j] != _ZERO:
        j = (j + 1) & mask
    ht[i, j] = (h & _HI) | np.uint64(nd + 1)


@njit(inner=True)
def ht_backshift_nb(ht, i, j):
    """Empty slot ``j`` of row ``i`` of a linear-probing table whose entries keep their
    hash's high 32 bits (home slot ``(e >> 32) & mask``), shifting the rest of the probe
    cluster back so lookups stay valid without tombstones (backward-shift deletion).
    Used by this LRU's hash table and the CPU tier's node table (kernels/kvcache.py)."""
    mask = ht.shape[1] - 1
    ht[i, j] = _ZERO
    k = j
    while True:
        k = (k + 1) & mask
        e = ht[i, k]
        if e == _ZERO:
            return
        ideal = np.int64((e >> _S32) & np.uint64(mask))
        # keep e where it is if its home slot lies cyclically in (j, k]
        if j <= k:
            if j < ideal and ideal <= k:
                continue
        else:
            if ideal <= k or ideal > j:
                continue
        ht[i, j] = e
        ht[i, k] = _ZERO
        j = k


@njit(inner=True)
def _ht_remove(lru, i, h):
    """Delete hash h (backward-shift deletion; no-op if absent)."""
    j = _ht_slot(lru, i, h)
    if j >= 0:
        ht_backshift_nb(lru[LRU_HT], i, j)


@njit(inner=True)
def lru_find_nb(lru, i, h):
    """Node holding hash h, or -1."""
    j = _ht_slot(lru, i, h)
    if j < 0:
        return np.int64(-1)
    return np.int64(lru[LRU_HT][i, j] & _LO) - 1


# ---- list

@njit(inner=True)
def _unlink(lru, i, nd):
    node = lru[LRU_NODE]
    meta = lru[LRU_META]
    p = node[i, nd, NODE_PRV]
    n = node[i, nd, NODE_NXT]
    if p >= 0:
        node[i, p, NODE_NXT] = n
    else:
        meta[i, _HEAD] = n
    if n >= 0:
        node[i, n, NODE_PRV] = p
    else:
        meta[i, _TAIL] = p
    node[i, nd, NODE_PRV] = -1
    node[i, nd, NODE_NXT] = -1


@njit(inner=True)
def _append(lru, i, nd):
    node = lru[LRU_NODE]
    meta = lru[LRU_META]
    t = meta[i, _TAIL]
    node[i, nd, NODE_NXT] = -1
    node[i, nd, NODE_PRV] = t
    if t >= 0:
        node[i, t, NODE_NXT] = nd
    else:
        meta[i, _HEAD] = nd
    meta[i, _TAIL] = nd


@njit(inner=True)
def lru_contains_nb(lru, i, h):
    return _ht_slot(lru, i, h) >= 0


@njit(inner=True)
def lru_touch_nb(lru, i, h):
    """Move h to the most-recent end (no-op if absent)."""
    nd = lru_find_nb(lru, i, h)
    if nd < 0:
        return
    _unlink(lru, i, nd)
    _append(lru, i, nd)


@njit(inner=True)
def _store_absent(lru, i, h, capacity):
    evicted = False
    meta = lru[LRU_META]
    if meta[i, _USED] >= capacity:
        evicted = lru_evict_head_nb(lru, i) >= 0
    nd = lru_new_node_nb(lru, i, h)
    _append(lru, i, nd)
    return evicted


@njit(inner=True)
def lru_store_nb(lru, i, h, capacity):
    """Insert h as most recent, evicting the least recent entry when ``capacity`` is
    reached; a present h is left where it is.  Returns True if an entry was evicted."""
    if _ht_slot(lru, i, h) >= 0:
        return False
    return _store_absent(lru, i, h, capacity)


@njit
def lru_record_nb(lru, i, h, capacity):
    """Touch h if present, else store it.  Returns True if an entry was evicted."""
    nd = lru_find_nb(lru, i, h)
    if nd >= 0:
        _unlink(lru, i, nd)
        _append(lru, i, nd)
        return False
    return _store_absent(lru, i, h, capacity)


@njit(inner=True)
def lru_evict_head_nb(lru, i):
    """Drop the least recent listed entry; returns its node (-1 if the list is empty)."""
    free = lru[LRU_FREE]
    meta = lru[LRU_META]
    v = meta[i, _HEAD]
    if v < 0:
        return v
    _unlink(lru, i, v)
    _ht_remove(lru, i, lru[LRU_HASH][i, v])
    meta[i, _USED] -= 1
    free[i, meta[i, _FREE]] = v
    meta[i, _FREE] += 1
    return v


@njit(inner=True)
def lru_new_node_nb(lru, i, h):
    """Register absent hash h on a free node, not linked; returns the node."""
    free = lru[LRU_FREE]
    meta = lru[LRU_META]
    meta[i, _FREE] -= 1
    nd = free[i, meta[i, _FREE]]
    lru[LRU_HASH][i, nd] = h
    _ht_insert(lru, i, h, nd)
    meta[i, _USED] += 1
    return nd
