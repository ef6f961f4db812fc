"""Procedural token ids and chained block hashes (64-bit).

BLIS hashes each full KV block with SHA-256 over the previous block's hash and
the block's token ids.  We keep the same *chaining* semantics -- a block's hash
identifies the whole prefix up to and including it, the first block chains onto
the empty hash, partial blocks are never hashed -- but use a 64-bit mixing hash,
which is ~100x cheaper and has a negligible collision probability (2^-64 per
pair).  Cache decisions are therefore identical to BLIS's for any workload.

Token ids are procedural: token ``p`` of a request is a pure function of the
seed of the segment that holds it (the prefix group's shared seed for
``p < prefix_len``, the request's content seed for the rest of the input, and a
salted content seed for output tokens).  Hash value 0 means "no hash".

Context parents (closed-loop sessions): a request whose ``R_CTXP`` row is >= 0
starts with its parent's first ``R_CTXLEN`` tokens (the parent's input, then the
output it actually produced); positions at or past ``R_CTXLEN`` follow the
request's own segments.  Parents chain (round r -> r-1 -> ... -> 0), so
:func:`req_token_nb` walks up while the position lies inside the context span.
A full block inside the span has the parent's block hash (chained hashes of
identical token prefixes are identical), so :func:`req_block_hash_nb` hashes
it as the parent's block; only the block straddling the span end mixes sources.
"""
import numpy as np

from .jit import njit_hot as njit
from .layout import R_CSEED, R_CTXLEN, R_CTXP, R_GROUP, R_ILEN, R_PLEN

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CHAIN_SALT = np.uint64(0x243F6A8885A308D3)
OUTPUT_SALT = np.uint64(0x5851F42D4C957F2D)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@njit
def mix64_nb(x):
    """splitmix64 finalizer: a bijective 64-bit mixer."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(inner=True)
def segment_token_nb(seed, pos):
    """Token id at absolute position ``pos`` of the segment seeded ``seed``."""
    return mix64_nb(seed + (np.uint64(pos) + _ONE) * _GOLDEN)


@njit
def request_token_nb(pos, prefix_len, input_len, group_seed, content_seed):
    """Token id at position ``pos`` of a request's input+output sequence."""
    if pos < prefix_len:
        return segment_token_nb(group_seed, pos)
    if pos < input_len:
        return segment_token_nb(content_seed, pos)
    return segment_token_nb(content_seed ^ OUTPUT_SALT, pos)


@njit
def block_hash_nb(prev, pos0, n, prefix_len, input_len, group_seed, content_seed):
    """Chained hash of the ``n`` tokens starting at ``pos0`` onto ``prev`` (0 = none)."""
    h = mix64_nb(prev ^ _CHAIN_SALT)
    for p in range(pos0, pos0 + n):
        h = mix64_nb(h ^ request_token_nb(p, prefix_len, input_len, group_seed, content_seed))
    if h == _ZERO:
        h = _ONE
    return h


@njit
def req_token_nb(rq, gseed, r, pos):
    """Token id at position ``pos`` of request row ``r``, following context parents."""
    while rq[R_CTXP, r] >= 0 and pos < rq[R_CTXLEN, r]:
        r = rq[R_CTXP, r]
    return request_token_nb(pos, rq[R_PLEN, r], rq[R_ILEN, r], gseed[rq[R_GROUP, r]], np.uint64(rq[R_CSEED, r]))


@njit
def req_block_hash_nb(rq, gseed, r, prev, pos0, n):
    """:func:`block_hash_nb` of request row ``r``'s ``n`` tokens from ``pos0``, following context parents."""
    while rq[R_CTXP, r] >= 0 and pos0 + n <= rq[R_CTXLEN, r]:
        r = rq[R_CTXP, r]
    if rq[R_CTXP, r] < 0 or pos0 >= rq[R_CTXLEN, r]:
        return block_hash_nb(prev, pos0, n, rq[R_PLEN, r], rq[R_ILEN, r], gseed[rq[R_GROUP, r]],
                             np.uint64(rq[R_CSEED, r]))
    h = mix64_nb(prev ^ _CHAIN_SALT)
    for p in range(pos0, pos0 + n):
        h = mix64_nb(h ^ req_token_nb(rq, gseed, r, p))
    if h == _ZERO:
        h = _ONE
    return h


# ---------------------------------------------------------------- hash table
# Open addressing with linear probing and backward-shift deletion, one table per
# instance row: keys uint64 (0 = empty slot), values int32.  Capacity is a power
# of two and at least twice the number of live keys (one key per KV block).


@njit
def ht_get_nb(keys, vals, row, h):
    mask = keys.shape[1] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        k = keys[row, j]
        if k == h:
            return np.int64(vals[row, j])
        if k == _ZERO:
            return np.int64(-1)
        j = (j + 1) & mask


@njit
def ht_put_nb(keys, vals, row, h, v):
    mask = keys.shape[1] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        k = keys[row, j]
        if k == h or k == _ZERO:
            keys[row, j] = h
            vals[row, j] = v
            return
        j = (j + 1) & mask


@njit
def ht_del_nb(keys, vals, row, h):
    mask = keys.shape[1] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        k = keys[row, j]
        if k == _ZERO:
            return
        if k == h:
            break
        j = (j + 1) & mask
    keys[row, j] = _ZERO
    k = j
    while True:
        k = (k + 1) & mask
        kk = keys[row, k]
        if kk == _ZERO:
            return
        ideal = np.int64(kk & np.uint64(mask))
        # keep kk where it is if its ideal slot lies cyclically in (j, k]
        if j <= k:
            if j < ideal and ideal <= k:
                continue
        else:
            if ideal <= k or ideal > j:
                continue
        keys[row, j] = kk
        vals[row, j] = vals[row, k]
        keys[row, k] = _ZERO
        j = k
