"""Read-only views of the KV kernels' arrays, shared by the KV test harnesses."""
from blis.kernels import layout as Lo


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
