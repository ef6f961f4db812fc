"""Read-only views of the KV kernels' arrays, shared by the KV test harnesses."""
import numpy as np

from blis.kernels import layout as Lo
from blis.kernels.kvcache import memo_entries
from blis.kernels.prefix_hash import req_block_hash_nb


def free_list(kv, ins, row, total):
    """The free list head to tail, checking that the back links agree."""
    nxt, prv = kv[3], kv[4]
    out = []
    b = int(ins[row, Lo.I_FREE_HEAD])
    while b >= 0:
        out.append(b)
        assert len(out) <= total, "free list has a cycle"
        b = int(nxt[row, b])
    back = []
    b = int(ins[row, Lo.I_FREE_TAIL])
    while b >= 0:
        back.append(b)
        assert len(back) <= total, "free list (backward) has a cycle"
        b = int(prv[row, b])
    assert back[::-1] == out, "prev links disagree with next links"
    return out


def blocks_of(kv, rq, row, r):
    """Request r's ordered block ids, or None when it owns no blocks."""
    s = int(rq[Lo.R_SLOT, r])
    if s < 0:
        return None
    return [int(x) for x in kv[7][row, s, :int(kv[8][row, s])]]


def assert_memo_consistent(kv, rq, gseed, row):
    """The block-hash memo invariant: at most one entry per request row, and an entry whose
    content tag is the row's current content holds the row's chained block hashes
    h_0 .. h_{n-1} exactly (h_j = req_block_hash_nb(h_{j-1}, j*B), h_{-1} = 0)."""
    entries = memo_entries(kv, row)
    rows = [e[0] for e in entries]
    assert len(rows) == len(set(rows)), f"a request has two memo entries: {rows}"
    for r, B, tag, hashes in entries:
        assert len(hashes) <= kv[13].shape[2]
        if r >= rq.shape[1]:
            continue
        now = (int(rq[Lo.R_ILEN, r]), int(rq[Lo.R_PLEN, r]), int(rq[Lo.R_CSEED, r]),
               int(np.uint64(gseed[rq[Lo.R_GROUP, r]]).view(np.int64)), int(rq[Lo.R_CTXP, r]), int(rq[Lo.R_CTXLEN, r]))
        if now != tag:
            continue  # never matches: the memo is not used for this row
        prev = np.uint64(0)
        for j, h in enumerate(hashes):
            want = np.uint64(req_block_hash_nb(rq, gseed, r, prev, j * B, B))
            assert int(want) == h, f"memo entry of request {r}: block {j} hash differs"
            prev = want


def assert_slot_hash_cache(kv, row, B):
    """The slots' hash cache (kv[15]): entry j of each held slot is the hash of the slot's
    block j if that block is full and hashed, else 0."""
    sb, sl, hsh, fill, sh = kv[7], kv[8], kv[1], kv[2], kv[15]
    for s in range(sl.shape[1]):
        for j in range(min(int(sl[row, s]), sh.shape[2])):
            b = int(sb[row, s, j])
            want = int(hsh[row, b]) if int(fill[row, b]) == B else 0
            assert int(sh[row, s, j]) == want, f"slot {s} block {j} (block {b}): cached hash differs"
