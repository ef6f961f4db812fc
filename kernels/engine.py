"""The compiled simulation core: cluster event loop + vLLM-style instances.

``run_nb`` advances the whole cluster (arrivals -> admission -> routing ->
instance events) until every event is processed, the horizon is passed, or it
needs Python: a structure must grow (``GROW``) or a Python-defined policy must
decide (``NEED_ROUTE``/``NEED_ADMIT``).  The Python driver then acts and calls
``run_nb`` again; all state lives in the arrays, so the call resumes exactly
where it stopped.  Checks that can return happen before an event mutates
anything.

Event order follows BLIS: cluster events are ordered by (time, priority, seq)
and run before any instance event at the same time; instance events are
ordered by (time, priority, seq) per instance, the instance with the earliest
event goes next (lowest index on ties).  ScheduledEvent and RequestLeftEvent
have no side effects and are not materialised; RequestLeft times still count
towards the instance's final clock.
"""
import numpy as np

from .jit import njit_hot as njit
from .gorand import intn_nb
from .kvcache import (kv_allocate_nb, kv_allocate_tiered_nb, kv_cached_blocks_nb, kv_mirror_to_cpu_nb,
                      kv_release_nb, kv_used_nb)
from .latency import step_time_nb
from .lru import lru_contains_nb, lru_record_nb
from .prefix_hash import ht_del_nb, ht_get_nb, ht_put_nb, req_block_hash_nb
from .layout import *  # noqa: F401,F403  (integer layout constants)

_KEY_SHIFT = np.int64(1) << np.int64(56)
_INT64_MAX = np.int64(9223372036854775807)


# ------------------------------------------------------------------ heaps
@njit(inner=True)
def _heap_less(ht, hk, row, a, b):
    ta = ht[row, a]
    tb = ht[row, b]
    if ta != tb:
        return ta < tb
    return hk[row, a] < hk[row, b]


@njit(inner=True)
def heap_push_nb(ht, hk, hr, lens, row, lenidx, t, key, payload):
    """Push (t, key, payload) on heap ``row``; ``lens[row, lenidx]`` is its length."""
    n = lens[row, lenidx]
    ht[row, n] = t
    hk[row, n] = key
    hr[row, n] = payload
    lens[row, lenidx] = n + 1
    while n > 0:
        p = (n - 1) >> 1
        if _heap_less(ht, hk, row, n, p):
            ht[row, n], ht[row, p] = ht[row, p], ht[row, n]
            hk[row, n], hk[row, p] = hk[row, p], hk[row, n]
            hr[row, n], hr[row, p] = hr[row, p], hr[row, n]
            n = p
        else:
            break


@njit(inner=True)
def heap_pop_nb(ht, hk, hr, lens, row, lenidx):
    """Remove the top of heap ``row`` (caller read it at index 0 first)."""
    n = lens[row, lenidx] - 1
    lens[row, lenidx] = n
    if n == 0:
        return
    ht[row, 0] = ht[row, n]
    hk[row, 0] = hk[row, n]
    hr[row, 0] = hr[row, n]
    j = 0
    while True:
        l = 2 * j + 1
        if l >= n:
            break
        m = l
        if l + 1 < n and _heap_less(ht, hk, row, l + 1, l):
            m = l + 1
        if _heap_less(ht, hk, row, m, j):
            ht[row, m], ht[row, j] = ht[row, j], ht[row, m]
            hk[row, m], hk[row, j] = hk[row, j], hk[row, m]
            hr[row, m], hr[row, j] = hr[row, j], hr[row, m]
            j = m
        else:
            break


@njit(inner=True)
def _ipush(ev, ins, i, t, prio, r):
    ht, hk, hr = ev
    ins[i, I_SEQ] += 1
    heap_push_nb(ht, hk, hr, ins, i, np.int64(I_HLEN), t, np.int64(prio) * _KEY_SHIFT + ins[i, I_SEQ], r)


# ------------------------------------------------------------ wait queue
@njit
def wq_len_nb(ins, i):
    return ins[i, I_WQT] - ins[i, I_WQH]


@njit(inner=True)
def _wq_append(wq, ins, i, r):
    t = ins[i, I_WQT]
    if t == wq.shape[1]:
        h = ins[i, I_WQH]
        n = t - h
        for k in range(n):
            wq[i, k] = wq[i, h + k]
        ins[i, I_WQH] = 0
        t = n
    wq[i, t] = r
    ins[i, I_WQT] = t + 1


@njit(inner=True)
def _wq_prepend(wq, ins, i, r):
    h = ins[i, I_WQH]
    if h == 0:
        t = ins[i, I_WQT]
        n = t - h
        shift = (wq.shape[1] - n) // 2
        if shift < 1:
            shift = 1
        for k in range(n - 1, -1, -1):
            wq[i, shift + k] = wq[i, k]
        h = shift
        ins[i, I_WQT] = shift + n
    wq[i, h - 1] = r
    ins[i, I_WQH] = h - 1


@njit(inner=True)
def _wq_remove_at(wq, ins, i, pos):
    t = ins[i, I_WQT]
    for k in range(pos, t - 1):
        wq[i, k] = wq[i, k + 1]
    ins[i, I_WQT] = t - 1


@njit(inner=True)
def _id_less(rq, a, b):
    ka = rq[R_IDKEY, a]
    kb = rq[R_IDKEY, b]
    if ka != kb:
        return ka < kb
    return rq[R_IDDIG, a] < rq[R_IDDIG, b]


@njit(inner=True)
def _sched_less(rq, a, b):
    """Strict total order of the scheduler: (key, arrival, name) ascending."""
    ka = rq[R_SCHEDKEY, a]
    kb = rq[R_SCHEDKEY, b]
    if ka != kb:
        return ka < kb
    aa = rq[R_ARRIVAL, a]
    ab = rq[R_ARRIVAL, b]
    if aa != ab:
        return aa < ab
    return _id_less(rq, a, b)


@njit(inner=True)
def _wq_reorder(wq, ins, i, rq, reorder):
    if reorder == 0:
        return
    h = ins[i, I_WQH]
    t = ins[i, I_WQT]
    # insertion sort: O(n) on the nearly sorted queue left by the previous step
    for k in range(h + 1, t):
        x = wq[i, k]
        j = k - 1
        while j >= h and _sched_less(rq, x, wq[i, j]):
            wq[i, j + 1] = wq[i, j]
            j -= 1
        wq[i, j + 1] = x


# ------------------------------------------------------------ ITL storage
@njit(inner=True)
def _itl_append(itl, glob, rq, r, v):
    vals, nxt, free = itl[0], itl[1], itl[2]
    cnt = rq[R_ITLCNT, r]
    off = cnt % ITL_CHUNK
    if off == 0:
        glob[G_ITL_FREE_N] -= 1
        c = free[glob[G_ITL_FREE_N]]
        nxt[c] = -1
        tail = rq[R_ITLTAIL, r]
        if tail >= 0:
            nxt[tail] = c
        else:
            rq[R_ITLHEAD, r] = c
        rq[R_ITLTAIL, r] = c
    vals[rq[R_ITLTAIL, r], off] = v
    rq[R_ITLCNT, r] = cnt + 1
    rq[R_ITLSUM, r] += v


@njit(inner=True)
def _itlh_slot(hk, row, key):
    mask = hk.shape[1] - 1
    j = key & mask
    while True:
        k = hk[row, j]
        if k == key or k == 0:
            return j
        j = (j + 1) & mask


@njit(inner=True)
def _itlh_reserve(itl, ins, i, v):
    """Make sure ITL value ``v`` has a key in instance i's histogram table."""
    hk = itl[3]
    hc = itl[4]
    key = v + 1
    j = _itlh_slot(hk, i, key)
    if hk[i, j] == 0:
        hk[i, j] = key
        hc[i, j] = 0
        ins[i, I_ITLH_N] += 1


@njit(inner=True)
def _itl_release(itl, glob, rq, r, commit, ins, i):
    """Free request r's ITL chunks; with ``commit`` count its values in the
    instance histogram first (every value was reserved when its step ran)."""
    vals, nxt, free, hk, hc = itl
    c = rq[R_ITLHEAD, r]
    left = rq[R_ITLCNT, r]
    while c >= 0:
        if commit:
            m = ITL_CHUNK if left > ITL_CHUNK else left
            for k in range(m):
                j = _itlh_slot(hk, i, vals[c, k] + 1)
                hc[i, j] += 1
            left -= m
        nc = nxt[c]
        free[glob[G_ITL_FREE_N]] = c
        glob[G_ITL_FREE_N] += 1
        c = nc
    rq[R_ITLHEAD, r] = -1
    rq[R_ITLTAIL, r] = -1
    rq[R_ITLCNT, r] = 0
    rq[R_ITLSUM, r] = 0


# ------------------------------------------------------------ instance logic
@njit(inner=True)
def _fin(glob, scratch, cfg, rq, r, tick):
    """Note that request r reached a terminal state at ``tick`` (tenant in-flight accounting, finish hooks)."""
    rq[R_DONE_TICK, r] = tick
    if cfg[C_TENANT_CAP] > 0 or cfg[C_FIN_HOOK] != 0:
        scratch[9][glob[G_FIN_N]] = r
        glob[G_FIN_N] += 1


@njit(inner=True, inline="always")
def _alloc(kv, cpu, ins, i, rq, gseed, r, start, end, cached, n_cached, cfg, cfgf, newc):
    """AllocateKVBlocks through the configured KV store (single tier or GPU+CPU).

    ``cpu is None`` (the basic variant, see run_nb) compiles the single tier only.  Inlined
    (numba IR) into its callers: a call passes the kv and CPU tuples as some 260 stack
    words, and in the tiered variant LLVM does not inline it, so every allocation paid an
    extra call level; now the common case calls kv_allocate_nb directly, as the
    single-tier variant does."""
    if cpu is not None:
        if cfg[C_CPU_BLOCKS] > 0:
            return kv_allocate_tiered_nb(kv, cpu, ins, i, rq, gseed, r, start, end, cached, n_cached,
                                         cfg[C_BLOCK], cfg[C_XFER_BASE], cfgf[CF_XFER_BW], newc)
    return kv_allocate_nb(kv, ins, i, rq, gseed, r, start, end, cached, n_cached, cfg[C_BLOCK])


@njit(inner=True)
def _enqueue(rq, ins, ev, wq, cfg, i, r, now):
    """EnqueueRequest: guards, drops, past-due, queue append, timeout event."""
    if rq[R_STATE, r] == ST_TIMED_OUT:
        return
    L = rq[R_ILEN, r]
    mml = cfg[C_MML]
    if rq[R_MAXOUT, r] == 0 and mml > 0 and L < mml:
        rq[R_MAXOUT, r] = mml - L
    mo = rq[R_MAXOUT, r]
    drop = mo < 0
    if not drop and mml > 0:
        if L >= mml:
            drop = True
        elif mo > 0 and L + mo > mml:
            drop = True
    B = cfg[C_BLOCK]
    if not drop and (L + B - 1) // B > ins[i, I_TOTAL_BLOCKS]:
        drop = True
    if drop:
        rq[R_STATE, r] = ST_DROPPED
        ins[i, I_DROPPED] += 1
        ins[i, I_INFLIGHT] -= 1
        return
    ins[i, I_IN_TOKENS] += L
    dl = rq[R_DEADLINE, r]
    if dl > 0 and dl <= now:
        rq[R_STATE, r] = ST_TIMED_OUT
        ins[i, I_TIMED_OUT] += 1
        ins[i, I_INFLIGHT] -= 1
        return
    rq[R_STATE, r] = ST_QUEUED
    _wq_append(wq, ins, i, r)
    if dl > 0 and dl <= cfg[C_HORIZON]:
        _ipush(ev, ins, i, dl, np.int64(EP_TIMEOUT), r)


@njit(inner=True)
def _preempt_victim(rq, bt, blen, code, i):
    v = blen - 1
    if code == PREEMPT_PRIORITY:
        for k in range(blen - 2, -1, -1):
            c = bt[i, k]
            pv = rq[R_PRIO, bt[i, v]]
            pc = rq[R_PRIO, c]
            if pc > pv or (pc == pv and rq[R_ARRIVAL, c] > rq[R_ARRIVAL, bt[i, v]]):
                v = k
    return v


@njit(inner=True)
def _preempt_for_tokens(rq, ins, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, i, r, n, req_index, fb, newc):
    """Allocate n tokens for running request r, evicting victims as needed.
    ``fb`` = [budget, preempted_happened, n_preempted]. Returns (ok, adjustment)."""
    adj = np.int64(0)
    B = cfg[C_BLOCK]
    while True:
        pi = rq[R_PI, r]
        if _alloc(kv, cpu, ins, i, rq, gseed, r, pi, pi + n, bt[i], np.int64(0), cfg, cfgf, newc):
            return True, adj
        blen = ins[i, I_BLEN]
        if blen == 0:
            return False, adj
        fb[1] = 1
        vi = _preempt_victim(rq, bt, blen, cfg[C_PREEMPT], i)
        v = bt[i, vi]
        for k in range(vi, blen - 1):
            bt[i, k] = bt[i, k + 1]
        ins[i, I_BLEN] = blen - 1
        if vi < req_index - adj:
            adj += 1
        fb[2] += 1
        if rq[R_NNEW, v] > 0:
            fb[0] += rq[R_NNEW, v]
            rq[R_NNEW, v] = 0
        rq[R_STATE, v] = ST_QUEUED
        rq[R_PI, v] = 0
        _itl_release(itl, glob, rq, v, np.int64(0), ins, i)
        rq[R_TTFTSET, v] = 0
        kv_release_nb(kv, ins, i, rq, v)
        rq[R_COMPUTED, v] = 0
        _wq_prepend(wq, ins, i, v)
        if v == r:
            return False, adj


@njit(inner=True)
def _form_batch(rq, ins, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, i, now, scratch, newly):
    """vLLM FormBatch. Returns the number of newly scheduled requests (in ``newly``)."""
    B = cfg[C_BLOCK]
    thr = cfg[C_THRESHOLD]
    mml = cfg[C_MML]
    kv_fill = kv[2]
    kv_sb = kv[7]
    kv_sl = kv[8]
    newc = scratch[8]
    fb = scratch[0]
    fb[0] = cfg[C_BUDGET]
    fb[1] = 0
    fb[2] = 0
    for k in range(ins[i, I_BLEN]):
        rq[R_NNEW, bt[i, k]] = 0
    # Phase 1: continuing requests in batch order
    k = np.int64(0)
    while k < ins[i, I_BLEN]:
        if fb[0] <= 0:
            break
        r = bt[i, k]
        L = rq[R_ILEN, r]
        pi = rq[R_PI, r]
        n = L - pi
        if n > 0:
            if 0 < thr and thr < n:
                n = thr
            n = min(n, fb[0])
            if mml > 0:
                n = min(n, max(mml - 1 - pi, 0))
            ok, adj = _preempt_for_tokens(rq, ins, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, i, r, n, k, fb, newc)
            k -= adj
            if not ok:
                break
            fb[0] -= n
            rq[R_NNEW, r] = n
            rq[R_COMPUTED, r] += n
        if pi >= L and rq[R_OLEN, r] > 0:
            d = 1
            if mml > 0 and pi + 1 > mml - 1:
                d = 0
            if d > 0:
                # fast path: the token tops up the last owned block without filling it
                # (no allocation, no hashing); identical to AllocateKVBlocks' top-up branch
                s = rq[R_SLOT, r]
                fast = False
                if s >= 0:
                    n_ids = kv_sl[i, s]
                    if n_ids > 0:
                        last = kv_sb[i, s, n_ids - 1]
                        f = kv_fill[i, last]
                        if f > 0 and f < B - 1:
                            kv_fill[i, last] = f + 1
                            fast = True
                if not fast:
                    ok, adj = _preempt_for_tokens(rq, ins, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, i, r,
                                                  np.int64(1), k, fb, newc)
                    k -= adj
                    if not ok:
                        break
                fb[0] -= 1
                rq[R_NNEW, r] = 1
                rq[R_COMPUTED, r] += 1
        k += 1
    # Phase 2: admit from the wait queue head
    n_new = np.int64(0)
    cached = scratch[1]
    max_admit = cfg[C_BF_MAX_ADMIT]
    while (ins[i, I_BLEN] < cfg[C_MAX_SEQS] and wq_len_nb(ins, i) > 0 and fb[0] > 0
           and fb[1] == 0 and (max_admit == 0 or n_new < max_admit)):
        nx = wq[i, ins[i, I_WQH]]
        nc = kv_cached_blocks_nb(kv, i, rq, gseed, nx, B, cached)
        start = nc * B
        n = rq[R_ILEN, nx] - start
        if cfg[C_BF_NO_CHUNK] != 0:
            # chunked prefill disabled: the whole (uncached) prompt must fit this step
            if mml > 0:
                n = min(n, max(mml - 1 - start, 0))
            if n > fb[0]:
                break
        else:
            if 0 < thr and thr < n:
                n = thr
            n = min(n, fb[0])
            if mml > 0:
                n = min(n, max(mml - 1 - start, 0))
        if not _alloc(kv, cpu, ins, i, rq, gseed, nx, start, start + n, cached, nc, cfg, cfgf, newc):
            break
        ins[i, I_WQH] += 1
        bt[i, ins[i, I_BLEN]] = nx
        ins[i, I_BLEN] += 1
        rq[R_SCHEDSTEP, nx] = ins[i, I_STEP_COUNT]
        newly[n_new] = nx
        n_new += 1
        fb[0] -= n
        rq[R_STATE, nx] = ST_RUNNING
        rq[R_NNEW, nx] = n
        rq[R_COMPUTED, nx] = n + start
    return n_new


@njit(inner=True)
def _record_completion(rq, ins, itl, glob, cfg, i, r):
    ins[i, I_COMPLETED] += 1
    L = rq[R_ILEN, r]
    N = rq[R_OLEN, r]
    dec = rq[R_PI, r] - L
    if dec < N:
        dec += 1
    if dec > 0:
        ins[i, I_OUT_TOKENS] += dec
    rq[R_OUTDONE, r] = dec if dec > 0 else 0
    post = cfg[C_POST] if N > 0 else 0
    rq[R_E2E, r] = rq[R_FIRST, r] + rq[R_ITLSUM, r] + post
    if N == 0:
        rq[R_ITLMEAN_DIV, r] = 0
    else:
        d = (rq[R_ITLCNT, r] if rq[R_CAPPED, r] else N) - 1
        rq[R_ITLMEAN_DIV, r] = d if d > 1 else 1
    ins[i, I_INFLIGHT] -= 1
    # ITL values move into the histogram; the per-request sum is kept for itl_ms
    s = rq[R_ITLSUM, r]
    _itl_release(itl, glob, rq, r, np.int64(1), ins, i)
    rq[R_ITLSUM, r] = s


@njit(inner=True)
def _step(rq, ins, ev, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, lat, i, now, scratch):
    if ins[i, I_BLEN] == 0 and wq_len_nb(ins, i) == 0:
        ins[i, I_STEP_PENDING] = 0
        return
    B = cfg[C_BLOCK]
    otpt = cfg[C_OTPT]
    ins[i, I_STEP_COUNT] += 1
    _wq_reorder(wq, ins, i, rq, cfg[C_SCHED])
    newly = scratch[2]
    n_new = _form_batch(rq, ins, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, i, now, scratch, newly)
    ins[i, I_PREEMPT] += scratch[0][2]
    for k in range(n_new):
        r = newly[k]
        rq[R_SCHED, r] = now - rq[R_ARRIVAL, r]
    ins[i, I_WQ_SAMPLE_SUM] += wq_len_nb(ins, i)
    ins[i, I_WQ_SAMPLES] += 1
    # ---- execute
    pf_pi = scratch[3]
    pf_new = scratch[4]
    pf_len = scratch[5]
    dc_pi = scratch[6]
    n_pf = np.int64(0)
    n_dc = np.int64(0)
    n_sched = np.int64(0)
    blen = ins[i, I_BLEN]
    for k in range(blen):
        r = bt[i, k]
        nn = rq[R_NNEW, r]
        if nn <= 0:
            continue
        n_sched += 1
        L = rq[R_ILEN, r]
        if rq[R_PI, r] < L:
            pf_pi[n_pf] = rq[R_PI, r]
            pf_new[n_pf] = nn
            pf_len[n_pf] = L
            n_pf += 1
        elif rq[R_OLEN, r] > 0:
            dc_pi[n_dc] = rq[R_PI, r]
            n_dc += 1
    adv = step_time_nb(cfg[C_BACKEND], lat, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
    adv += ins[i, I_PENDING_LAT]  # CPU->GPU reloads of the previous phase are paid by this step
    ins[i, I_PENDING_LAT] = 0
    if adv < 1:
        adv = 1
    itl_v = adv + otpt
    if n_dc > 0:
        _itlh_reserve(itl, ins, i, itl_v)
    for k in range(blen):
        r = bt[i, k]
        L = rq[R_ILEN, r]
        if rq[R_PI, r] < L:
            rq[R_PI, r] = rq[R_COMPUTED, r]
        elif rq[R_NNEW, r] > 0:
            rq[R_PI, r] += 1
            _itl_append(itl, glob, rq, r, itl_v)
        if rq[R_PI, r] == L and rq[R_TTFTSET, r] == 0:
            rq[R_TTFTSET, r] = 1
            rq[R_FIRST, r] = now + adv + otpt - rq[R_ARRIVAL, r]
    used = kv_used_nb(ins, i)
    if used > ins[i, I_PEAK_USED]:
        ins[i, I_PEAK_USED] = used
    if cpu is not None:
        if cfg[C_CPU_BLOCKS] > 0:
            kv_mirror_to_cpu_nb(kv, cpu, ins, i, rq, bt, blen, B, cfg[C_CPU_BLOCKS])
    # ---- completions
    mml = cfg[C_MML]
    t_left = now + adv
    nrem = np.int64(0)
    for k in range(blen):
        r = bt[i, k]
        L = rq[R_ILEN, r]
        N = rq[R_OLEN, r]
        pi = rq[R_PI, r]
        if pi >= L + max(N, 1) - 1:
            rq[R_STATE, r] = ST_COMPLETED
            if N > 0 and pi < L + N:
                if not _alloc(kv, cpu, ins, i, rq, gseed, r, pi, pi + 1, newly, np.int64(0), cfg, cfgf,
                              scratch[8]):
                    ins[i, I_ALLOC_FAIL] += 1
            kv_release_nb(kv, ins, i, rq, r)
            rq[R_FINSTEP, r] = ins[i, I_STEP_COUNT]
            if t_left <= cfg[C_HORIZON] and t_left > ins[i, I_LEFT_MAX]:
                ins[i, I_LEFT_MAX] = t_left
            _record_completion(rq, ins, itl, glob, cfg, i, r)
            _fin(glob, scratch, cfg, rq, r, t_left)
        elif mml > 0 and pi >= mml - 1:
            ins[i, I_CAPPED] += 1
            rq[R_CAPPED, r] = 1
            rq[R_STATE, r] = ST_COMPLETED
            kv_release_nb(kv, ins, i, rq, r)
            rq[R_FINSTEP, r] = ins[i, I_STEP_COUNT]
            if t_left <= cfg[C_HORIZON] and t_left > ins[i, I_LEFT_MAX]:
                ins[i, I_LEFT_MAX] = t_left
            _record_completion(rq, ins, itl, glob, cfg, i, r)
            _fin(glob, scratch, cfg, rq, r, t_left)
        else:
            bt[i, nrem] = r
            nrem += 1
    ins[i, I_BLEN] = nrem
    # ---- next step
    if nrem > 0 or wq_len_nb(ins, i) > 0:
        _ipush(ev, ins, i, t_left, np.int64(EP_STEP), np.int64(-1))
        ins[i, I_STEP_PENDING] = 1
    else:
        ins[i, I_STEP_PENDING] = 0


@njit(inner=True)
def _timeout(rq, ins, ev, wq, bt, kv, itl, glob, i, r, t):
    st = rq[R_STATE, r]
    if st == ST_COMPLETED or st == ST_TIMED_OUT:
        return
    was_running = st == ST_RUNNING
    rq[R_STATE, r] = ST_TIMED_OUT
    ins[i, I_TIMED_OUT] += 1
    ins[i, I_INFLIGHT] -= 1
    kv_release_nb(kv, ins, i, rq, r)
    rq[R_COMPUTED, r] = 0
    _itl_release(itl, glob, rq, r, np.int64(0), ins, i)
    if was_running:
        blen = ins[i, I_BLEN]
        m = 0
        for k in range(blen):
            x = bt[i, k]
            if x != r:
                bt[i, m] = x
                m += 1
        ins[i, I_BLEN] = m
    else:
        h = ins[i, I_WQH]
        for k in range(h, ins[i, I_WQT]):
            if wq[i, k] == r:
                _wq_remove_at(wq, ins, i, k)
                break
    if ins[i, I_BLEN] == 0 and ins[i, I_STEP_PENDING] == 0 and wq_len_nb(ins, i) > 0:
        _ipush(ev, ins, i, t, np.int64(EP_STEP), np.int64(-1))
        ins[i, I_STEP_PENDING] = 1



@njit
def cancel_request_nb(rq, ins, ev, wq, bt, kv, itl, glob, r, t):
    """Abort request r at time t (its client went away): as a deadline timeout, it leaves the
    wait queue or the running batch and releases its KV blocks (state ST_TIMED_OUT).  Returns 1
    if r was queued or running at an instance, else 0 (nothing changed).  Callers make room for
    one more instance event first (a step may be scheduled)."""
    i = rq[R_INST, r]
    st = rq[R_STATE, r]
    if i < 0 or (st != ST_QUEUED and st != ST_RUNNING):
        return 0
    _timeout(rq, ins, ev, wq, bt, kv, itl, glob, i, r, t)
    return 1

@njit(inner=True)
def _instance_event(rq, ins, ev, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, lat, i, scratch):
    ht, hk, hr = ev
    t = ht[i, 0]
    prio = hk[i, 0] // _KEY_SHIFT
    r = hr[i, 0]
    heap_pop_nb(ht, hk, hr, ins, i, np.int64(I_HLEN))
    ins[i, I_EVENTS] += 1
    if prio == EP_TIMEOUT and rq[R_STATE, r] == ST_COMPLETED:
        return  # lazily cancelled: the clock does not move
    ins[i, I_CLOCK] = t
    glob[G_CLOCK] = t
    if prio == EP_ARRIVAL:
        qt = np.int64(0.0 + cfgf[CF_ALPHA0] + cfgf[CF_ALPHA1] * rq[R_ILEN, r])
        _ipush(ev, ins, i, t + qt, np.int64(EP_QUEUED), r)
    elif prio == EP_QUEUED:
        _enqueue(rq, ins, ev, wq, cfg, i, r, t)
        st = rq[R_STATE, r]
        if st == ST_DROPPED or st == ST_TIMED_OUT:
            _fin(glob, scratch, cfg, rq, r, t)
        if ins[i, I_STEP_PENDING] == 0 and wq_len_nb(ins, i) > 0:
            _ipush(ev, ins, i, t, np.int64(EP_STEP), np.int64(-1))
            ins[i, I_STEP_PENDING] = 1
    elif prio == EP_STEP:
        _step(rq, ins, ev, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, lat, i, t, scratch)
    elif prio == EP_TIMEOUT:
        was = rq[R_STATE, r]
        _timeout(rq, ins, ev, wq, bt, kv, itl, glob, i, r, t)
        if was != ST_TIMED_OUT and rq[R_STATE, r] == ST_TIMED_OUT:
            _fin(glob, scratch, cfg, rq, r, t)


# ------------------------------------------------------------ cluster logic
@njit
def _snapshot_refresh(ins, i, now, interval):
    """Lazy periodic refresh of instance i's routing snapshot fields."""
    if interval <= 0 or now - ins[i, I_SNAP_T_QD] >= interval:
        ins[i, I_SNAP_QD] = wq_len_nb(ins, i)
        ins[i, I_SNAP_T_QD] = now
    if interval <= 0 or now - ins[i, I_SNAP_T_BS] >= interval:
        ins[i, I_SNAP_BS] = ins[i, I_BLEN]
        ins[i, I_SNAP_T_BS] = now
    if interval <= 0 or now - ins[i, I_SNAP_T_KV] >= interval:
        ins[i, I_SNAP_KV_USED] = kv_used_nb(ins, i)
        ins[i, I_SNAP_T_KV] = now
    if interval <= 0 or now - ins[i, I_SNAP_T_PRE] >= interval:
        ins[i, I_SNAP_PRE] = ins[i, I_PREEMPT]
        ins[i, I_SNAP_T_PRE] = now


@njit(inner=True)
def _route_builtin(rq, ins, glob, cfg, r, now, router_rng, tied, rl, n):
    """Built-in policies over the ``n`` routable instances ``rl[:n]`` (snapshot order);
    returns an instance index, or -1 when nothing is routable."""
    if n <= 0:
        return np.int64(-1)
    code = cfg[C_ROUTING]
    if code == ROUTE_ROUND_ROBIN:
        target = rl[glob[G_RR] % n]
        glob[G_RR] += 1
        return target
    if code == ROUTE_ALWAYS_BUSIEST:
        best = rl[0]
        best_load = np.int64(-1)
        for p in range(n):
            i = rl[p]
            load = ins[i, I_SNAP_QD] + ins[i, I_SNAP_BS] + ins[i, I_INFLIGHT]
            if load > best_load:
                best_load = load
                best = i
        return best
    # least-loaded: min EffectiveLoad (QueueDepth + BatchSize + InFlight); ties are
    # broken with one Intn draw from the router stream (Go math/rand), as BLIS does
    best_load = _INT64_MAX
    n_tied = np.int64(0)
    for p in range(n):
        i = rl[p]
        load = ins[i, I_SNAP_QD] + ins[i, I_SNAP_BS] + ins[i, I_INFLIGHT]
        if load < best_load:
            best_load = load
            n_tied = np.int64(0)
        if load == best_load:
            tied[n_tied] = i
            n_tied += 1
    if n_tied > 1:
        return tied[intn_nb(router_rng, n_tied)]
    return tied[0]


@njit
def _cache_refresh(kv, ins, wr, n_inst, now, cfg, glob):
    """Re-take every instance's delayed cache snapshot if --cache-signal-delay has
    elapsed (replaying the hash-table change log, or copying the table after an
    overflow), as BLIS does on each RouterState build."""
    delay = cfg[C_CACHE_DELAY]
    if delay <= 0 or now - glob[G_CACHE_LAST] < delay:
        return
    snk = wr[2]
    snv = wr[3]
    for i in range(n_inst):
        if ins[i, I_CLOG_ON] == 0:
            continue
        if ins[i, I_CLOG_OVF] != 0:
            for k in range(snk.shape[1]):
                snk[i, k] = kv[5][i, k]
                snv[i, k] = kv[6][i, k]
        else:
            for k in range(ins[i, I_CLOG_N]):
                h = kv[11][i, k]
                if kv[12][i, k] > 0:
                    ht_put_nb(snk, snv, i, h, np.int32(0))
                else:
                    ht_del_nb(snk, snv, i, h)
        ins[i, I_CLOG_N] = 0
        ins[i, I_CLOG_OVF] = 0
    glob[G_CACHE_LAST] = now


@njit
def request_hashes_nb(rq, gseed, r, B, out):
    """Chained hashes of the full blocks of request r's input; returns their count."""
    L = rq[R_ILEN, r]
    prev = np.uint64(0)
    n = L // B
    for j in range(n):
        prev = req_block_hash_nb(rq, gseed, r, prev, j * B, B)
        out[j] = prev
    return n


@njit
def scorer_scores_nb(code, ins, kv, wr, pa, cfg, n, hashes, nh, tied, sc, r):
    """Per-instance score of one built-in scorer (code SC_*) into ``sc[:n]`` (unclamped),
    over the ``n`` routable instances ``wr[13][:n]`` (position p scores instance wr[13][p])."""
    rl = wr[13]
    if code == SC_PRECISE_PREFIX:
        keys = wr[2] if cfg[C_CACHE_DELAY] > 0 else kv[5]
        vals = wr[3] if cfg[C_CACHE_DELAY] > 0 else kv[6]
        lo = _INT64_MAX
        hi = np.int64(0)
        for p in range(n):
            i = rl[p]
            c = np.int64(0)
            while c < nh and ht_get_nb(keys, vals, i, hashes[c]) >= 0:
                c += 1
            tied[p] = c
            lo = min(lo, c)
            hi = max(hi, c)
        for p in range(n):
            sc[p] = 1.0 if hi == lo else np.float64(tied[p] - lo) / np.float64(hi - lo)
    elif code == SC_QUEUE_DEPTH or code == SC_RUNNING_REQUESTS or code == SC_VLLM_DP:
        lo = _INT64_MAX
        hi = np.int64(0)
        for p in range(n):
            i = rl[p]
            if code == SC_QUEUE_DEPTH:
                v = ins[i, I_SNAP_QD]
            elif code == SC_RUNNING_REQUESTS:
                v = ins[i, I_SNAP_BS]
            else:
                v = ins[i, I_SNAP_QD] * 4 + ins[i, I_SNAP_BS]
            tied[p] = v
            lo = min(lo, v)
            hi = max(hi, v)
        for p in range(n):
            sc[p] = 1.0 if hi == lo else np.float64(hi - tied[p]) / np.float64(hi - lo)
    elif code == SC_KV_UTIL:
        for p in range(n):
            i = rl[p]
            tot = ins[i, I_TOTAL_BLOCKS]
            util = np.float64(ins[i, I_SNAP_KV_USED]) / np.float64(tot) if tot > 0 else 0.0
            sc[p] = 1.0 - util
    elif code == SC_LOAD_BALANCE:
        for p in range(n):
            i = rl[p]
            load = ins[i, I_SNAP_QD] + ins[i, I_SNAP_BS] + ins[i, I_INFLIGHT]
            sc[p] = 1.0 / (1.0 + np.float64(load))
    elif code == SC_ACTIVE_REQUESTS:
        m = np.int64(0)
        for p in range(n):
            m = max(m, ins[rl[p], I_INFLIGHT])
        for p in range(n):
            f = ins[rl[p], I_INFLIGHT]
            sc[p] = 1.0 if (f == 0 or m == 0) else np.float64(m - f) / np.float64(m)
    elif code == SC_LOAD_AWARE:
        for p in range(n):
            qd = ins[rl[p], I_SNAP_QD]
            if qd == 0:
                sc[p] = 0.5
            else:
                c = min(qd, 128)
                sc[p] = 0.5 * (1.0 - np.float64(c) / np.float64(128))
    elif code == SC_PREFIX_AFFINITY:
        for p in range(n):
            if nh == 0:
                sc[p] = 0.0
                continue
            c = np.int64(0)
            while c < nh and lru_contains_nb(pa, rl[p], hashes[c]):
                c += 1
            sc[p] = np.float64(c) / np.float64(nh)
    elif code == SC_NO_HIT_LRU:
        # state (wr[12]): [0] list length; [1] warm flag; [2] last scored request;
        # [3:3+length] instance indices, most recent first
        st = wr[12]
        rpos = wr[14]
        keys = wr[2] if cfg[C_CACHE_DELAY] > 0 else kv[5]
        vals = wr[3] if cfg[C_CACHE_DELAY] > 0 else kv[6]
        st[2] = r
        warm = False
        for p in range(n):
            if nh > 0 and ht_get_nb(keys, vals, rl[p], hashes[0]) >= 0:
                warm = True
                break
        if warm:
            st[1] = 1
            for p in range(n):
                sc[p] = 0.5
        else:
            st[1] = 0
            if n == 1:
                sc[0] = 1.0
            elif n > 1:
                # forget instances that are no longer routable (BLIS prunes its LRU list)
                used = np.int64(0)
                for j in range(st[0]):
                    if rpos[st[3 + j]] >= 0:
                        st[3 + used] = st[3 + j]
                        used += 1
                st[0] = used
                rank = np.int64(0)
                for p in range(n):          # never-used instances first, in snapshot order
                    i = rl[p]
                    seen = False
                    for j in range(used):
                        if st[3 + j] == i:
                            seen = True
                            break
                    if not seen:
                        sc[p] = 1.0 - np.float64(rank) / np.float64(n - 1)
                        rank += 1
                for j in range(used - 1, -1, -1):   # then least- to most-recently used
                    sc[rpos[st[3 + j]]] = 1.0 - np.float64(rank) / np.float64(n - 1)
                    rank += 1
    elif code == SC_LORA_AFFINITY:
        for p in range(n):
            sc[p] = 1.0  # requests carry no adapter: every instance scores 1
    else:
        for p in range(n):
            sc[p] = 0.0


@njit(inner=True)
def _route_weighted(rq, ins, kv, wr, pa, cfg, n, r, hashes, nh, tied, router_rng, total, sc):
    """BLIS's weighted scoring: clamp each scorer to [0,1], add score x normalised
    weight per instance (scorer order), pick the maximum; exact ties -> Intn.
    Works over the ``n`` routable instances ``wr[13][:n]`` and returns the chosen
    *position* in that list (-1 when n == 0); ``total`` holds the per-position scores."""
    if n <= 0:
        return np.int64(-1)
    codes = wr[0]
    weights = wr[1]
    for i in range(n):
        total[i] = 0.0
    for k in range(codes.shape[0]):
        scorer_scores_nb(codes[k], ins, kv, wr, pa, cfg, n, hashes, nh, tied, sc, r)
        w = weights[k]
        for i in range(n):
            v = sc[i]
            if v < 0.0:
                v = 0.0
            if v > 1.0:
                v = 1.0
            total[i] += v * w
    best = -1.0
    for i in range(n):
        if total[i] > best:
            best = total[i]
    nt = np.int64(0)
    for i in range(n):
        if total[i] == best:
            tied[nt] = i
            nt += 1
    pos = tied[0]
    if nt > 1:
        pos = tied[intn_nb(router_rng, nt)]
    target = wr[13][pos]
    # observers: the prefix-affinity index records the request's blocks on the target;
    # no-hit-lru moves the target to the front after a cold request
    for k in range(codes.shape[0]):
        if codes[k] == SC_PREFIX_AFFINITY:
            for c in range(nh):
                lru_record_nb(pa, target, hashes[c], cfg[C_PA_CAP])
        elif codes[k] == SC_NO_HIT_LRU:
            no_hit_lru_observe_nb(wr[12], n, r, target)
    return pos


@njit
def no_hit_lru_observe_nb(st, n, r, target):
    """Move instance ``target`` to the front of the no-hit-lru list after a cold request
    (state layout: see scorer_scores_nb)."""
    if st[1] != 0 or st[2] != r:
        return
    used = st[0]
    pos = used
    for j in range(used):
        if st[3 + j] == target:
            pos = j
            break
    if pos == used:
        st[0] = used + 1
    for j in range(pos, 0, -1):
        st[3 + j] = st[3 + j - 1]
    st[3] = target


@njit(inner=True)
def _admit_builtin(rq, ins, glob, cfg, cfgf, wr, r, now, n_inst):
    """Built-in admission policies over the ``n_inst`` routable instances ``wr[13]``.
    Returns (admitted, reason code, detail value)."""
    rl = wr[13]
    code = cfg[C_ADMISSION]
    cls_pri = cfg[C_MAX_PRI] - rq[R_PRIO, r]  # SLO priority, higher = more important
    if cfg[C_TENANT_CAP] > 0:
        t = rq[R_TENANT, r]
        budget = wr[5][t]
        if t > 0 and budget >= 0.0 and cls_pri < 0:
            if np.float64(wr[4][t]) > budget * np.float64(cfg[C_TENANT_CAP]):
                return False, AR_TENANT_BUDGET, 0.0
    if code == ADMIT_ALWAYS:
        return True, AR_ADMITTED, 0.0
    if code == ADMIT_REJECT_ALL:
        return False, AR_REJECT_ALL, 0.0
    if code == ADMIT_TIER_SHED:
        max_load = np.int64(0)
        for p in range(n_inst):
            i = rl[p]
            load = ins[i, I_SNAP_QD] + ins[i, I_SNAP_BS] + ins[i, I_INFLIGHT]
            if load > max_load:
                max_load = load
        if max_load <= cfg[C_TS_THRESHOLD]:
            return True, AR_ADMITTED, 0.0
        if cls_pri < cfg[C_TS_MIN_PRI]:
            return False, AR_TIER_SHED, np.float64(max_load)
        return True, AR_ADMITTED, 0.0
    if code == ADMIT_GAIE_LEGACY:
        if cls_pri >= 0:
            return True, AR_ADMITTED, 0.0
        sat = 1.0
        if n_inst > 0:
            total = 0.0
            for p in range(n_inst):
                i = rl[p]
                tot = ins[i, I_TOTAL_BLOCKS]
                util = np.float64(ins[i, I_SNAP_KV_USED]) / np.float64(tot) if tot > 0 else 0.0
                q = np.float64(ins[i, I_SNAP_QD]) / cfgf[CF_GAIE_QD]
                k = util / cfgf[CF_GAIE_KV]
                total += max(q, k)
            sat = total / np.float64(n_inst)
        if sat >= 1.0:
            return False, AR_GAIE, sat
        return True, AR_ADMITTED, 0.0
    # token bucket: refill continuously, cost = input tokens
    tokens = glob[G_TB_TOKENS_BITS:G_TB_TOKENS_BITS + 1].view(np.float64)
    elapsed = now - glob[G_TB_LAST]
    if elapsed > 0:
        tokens[0] = min(cfgf[CF_TB_CAP], tokens[0] + cfgf[CF_TB_RATE] * elapsed / 1e6)
        glob[G_TB_LAST] = now
    cost = np.float64(rq[R_ILEN, r])
    if tokens[0] >= cost:
        tokens[0] -= cost
        return True, AR_ADMITTED, 0.0
    return False, AR_TOKENS, 0.0


@njit(inner=True)
def _trace_admission(wr, glob, r, t, ok, reason, val):
    k = glob[G_TR_ADM_N]
    a = wr[6]
    a[k, 0] = r
    a[k, 1] = t
    a[k, 2] = 1 if ok else 0
    a[k, 3] = reason
    wr[7][k] = val
    glob[G_TR_ADM_N] = k + 1


@njit(inner=True)
def _trace_routing(wr, ins, glob, r, t, target, n_inst, scores, has_scores, val):
    """One routing record; candidates are instance-indexed (``scores`` per routable
    position); instances that were not routable get queue depth -1."""
    k = glob[G_TR_RT_N]
    ri = wr[8]
    ri[k, 0] = r
    ri[k, 1] = t
    ri[k, 2] = target
    wr[9][k] = val
    ci = wr[10]
    cf = wr[11]
    rpos = wr[14]
    for i in range(n_inst):
        p = rpos[i]
        if p < 0:
            ci[k, i, 0] = -1
            ci[k, i, 1] = 0
            ci[k, i, 2] = 0
            ci[k, i, 3] = 0
            cf[k, i, 0] = np.nan
            cf[k, i, 1] = 0.0
            continue
        ci[k, i, 0] = ins[i, I_SNAP_QD]
        ci[k, i, 1] = ins[i, I_SNAP_BS]
        ci[k, i, 2] = ins[i, I_INFLIGHT]
        tot = ins[i, I_TOTAL_BLOCKS]
        ci[k, i, 3] = tot - ins[i, I_SNAP_KV_USED]
        cf[k, i, 0] = scores[p] if has_scores else np.nan
        cf[k, i, 1] = np.float64(ins[i, I_SNAP_KV_USED]) / np.float64(tot) if tot > 0 else 0.0
    glob[G_TR_RT_N] = k + 1


@njit(inner=True)
def _cpush(cev, glob, t, prio, r):
    ct, ck, cr = cev
    glob[G_CSEQ] += 1
    heap_push_nb(ct, ck, cr, glob[None, :], np.int64(0), np.int64(G_CHLEN), t, np.int64(prio) * _KEY_SHIFT + glob[G_CSEQ], r)


@njit
def cluster_push_nb(cev, glob, t, prio, r):
    """Push a cluster event from Python (between kernel calls; capacity checked by the caller)."""
    _cpush(cev, glob, t, prio, r)


@njit
def run_nb(rq, gseed, arrival_order, ins, ev, wq, bt, kv, cpu, itl, cev, glob, cfg, cfgf, lat, scratch,
           router_rng, wr, pa, hsc):
    """Advance the simulation; returns DONE, GROW or NEED_* (see module doc).

    Compiled variants: ``cpu`` None prunes the CPU KV tier (``if cpu is not None``);
    ``pa`` and ``hsc`` None (always together) prune the weighted-routing scorers, the
    built-in admission policies and tenant budgets, and the decision trace (``if hsc is
    not None``).  numba prunes those branches before type inference, so a plain run
    (all three None: the *basic* variant) compiles about half the code, and a run
    compiles in only the parts it uses (``Simulation.variant``).  Every variant gives
    identical results for a run that does not use the parts it adds.
    """
    n_inst = cfg[C_NINST]
    n_req = arrival_order.shape[0]
    horizon = cfg[C_HORIZON]
    if glob[G_STOP_AT] < horizon:
        horizon = glob[G_STOP_AT]  # live stepping: stop early without changing horizon semantics
    max_seqs = cfg[C_MAX_SEQS]
    ht, hk, hr = ev
    ct, ck, cr = cev
    g2 = glob[None, :]
    while True:
        if glob[G_BUDGET] == 0:
            return PAUSE
        glob[G_BUDGET] -= 1
        # ---- earliest cluster event: arrival cursor vs cluster heap
        tc = _INT64_MAX
        kc = _INT64_MAX
        from_arrivals = False
        cur = glob[G_ARR_CURSOR]
        if cur < n_req:
            a = arrival_order[cur]
            tc = rq[R_ARRIVAL, a]
            kc = np.int64(CP_ARRIVAL) * _KEY_SHIFT + (cur + 1)
            from_arrivals = True
        if glob[G_CHLEN] > 0:
            t2 = ct[0, 0]
            k2 = ck[0, 0]
            if t2 < tc or (t2 == tc and k2 < kc):
                tc = t2
                kc = k2
                from_arrivals = False
        # ---- earliest instance event (lowest index on ties)
        ti = _INT64_MAX
        bi = np.int64(-1)
        for i in range(n_inst):
            if ins[i, I_HLEN] > 0 and ht[i, 0] < ti:
                ti = ht[i, 0]
                bi = i
        if bi < 0 and tc == _INT64_MAX:
            return DONE
        if tc <= ti:
            if tc > horizon:
                return DONE
            prio = kc // _KEY_SHIFT
            if from_arrivals:
                if glob[G_CHLEN] + 2 > ct.shape[1]:
                    glob[G_GROW] = GROW_CHEAP
                    return GROW
                r = arrival_order[cur]
                glob[G_ARR_CURSOR] = cur + 1
                glob[G_CLOCK] = tc
                _cpush(cev, glob, tc + cfg[C_ADMIT_LAT], np.int64(CP_ADMISSION), r)
                # the arrival consumed seq (cur+1) implicitly: arrivals are pushed first in BLIS
                continue
            r = cr[0, 0]
            if prio == CP_ARRIVAL:
                # an arrival injected while running (session follow-up, live request): same path
                if glob[G_CHLEN] + 2 > ct.shape[1]:
                    glob[G_GROW] = GROW_CHEAP
                    return GROW
                heap_pop_nb(ct, ck, cr, g2, np.int64(0), np.int64(G_CHLEN))
                glob[G_CLOCK] = tc
                _cpush(cev, glob, tc + cfg[C_ADMIT_LAT], np.int64(CP_ADMISSION), r)
                continue
            if hsc is not None:
                if cfg[C_TRACE] != 0 and (glob[G_TR_ADM_N] >= wr[6].shape[0] or glob[G_TR_RT_N] >= wr[8].shape[0]):
                    glob[G_GROW] = GROW_TRACE
                    return GROW
            if prio == CP_ADMISSION:
                if glob[G_CHLEN] + 2 > ct.shape[1]:
                    glob[G_GROW] = GROW_CHEAP
                    return GROW
                _cache_refresh(kv, ins, wr, n_inst, tc, cfg, glob)
                n_rt = glob[G_NROUTABLE]
                for pp in range(n_rt):  # building the RouterState refreshes due snapshots
                    _snapshot_refresh(ins, wr[13][pp], tc, cfg[C_SNAP_INTERVAL])
                if cfg[C_ADMISSION] == ADMIT_PYTHON:
                    if glob[G_DECISION] < 0:
                        glob[G_PENDING_REQ] = r
                        glob[G_CLOCK] = tc
                        return NEED_ADMIT
                    held = glob[G_DECISION] == 2   # admitted into the Python gateway queue
                    admitted = glob[G_DECISION] > 0
                    glob[G_DECISION] = -1
                    reason = np.int64(AR_ADMITTED) if admitted else np.int64(AR_PYTHON)
                    aval = 0.0
                elif hsc is not None:
                    admitted, reason, aval = _admit_builtin(rq, ins, glob, cfg, cfgf, wr, r, tc, n_rt)
                    held = False
                else:  # basic variant: always-admit without tenant budgets
                    admitted = True
                    reason = np.int64(AR_ADMITTED)
                    aval = 0.0
                    held = False
                heap_pop_nb(ct, ck, cr, g2, np.int64(0), np.int64(G_CHLEN))
                glob[G_CLOCK] = tc
                if hsc is not None:
                    if cfg[C_TRACE] != 0:
                        _trace_admission(wr, glob, r, tc, admitted, reason, aval)
                if held:
                    pass  # the gateway queue decides when to dispatch (pushes the routing event)
                elif admitted:
                    _cpush(cev, glob, tc + cfg[C_ROUTE_LAT], np.int64(CP_ROUTING), r)
                else:
                    rq[R_STATE, r] = ST_REJECTED
                    glob[G_REJECTED] += 1
                continue
            if prio != CP_ROUTING:
                # a Python-level cluster event (gateway ticks, TTLs, evictions): hand it over
                if glob[G_DECISION] < 0:
                    glob[G_PENDING_REQ] = r
                    glob[G_PENDING_KIND] = prio
                    glob[G_CLOCK] = tc
                    return NEED_EVENT
                glob[G_DECISION] = -1
                heap_pop_nb(ct, ck, cr, g2, np.int64(0), np.int64(G_CHLEN))
                glob[G_CLOCK] = tc
                continue
            # routing
            _cache_refresh(kv, ins, wr, n_inst, tc, cfg, glob)
            n_rt = glob[G_NROUTABLE]
            for pp in range(n_rt):
                _snapshot_refresh(ins, wr[13][pp], tc, cfg[C_SNAP_INTERVAL])
            rpos_t = np.int64(-1)
            if cfg[C_ROUTING] == ROUTE_PYTHON:
                if glob[G_DECISION] == -1:
                    glob[G_PENDING_REQ] = r
                    glob[G_CLOCK] = tc
                    return NEED_ROUTE
                target = glob[G_DECISION]   # -2 = the Python policy rejected the request
                if target < 0:
                    target = np.int64(-1)
                glob[G_DECISION] = -1
            else:
                target = np.int64(-1)
                builtin = True
                if hsc is not None:
                    if cfg[C_ROUTING] == ROUTE_WEIGHTED:
                        nh = request_hashes_nb(rq, gseed, r, cfg[C_BLOCK], hsc[0])
                        rpos_t = _route_weighted(rq, ins, kv, wr, pa, cfg, n_rt, r, hsc[0], nh, scratch[7],
                                                 router_rng, hsc[1], hsc[2])
                        if rpos_t >= 0:
                            target = wr[13][rpos_t]
                        builtin = False
                if builtin:
                    target = _route_builtin(rq, ins, glob, cfg, r, tc, router_rng, scratch[7], wr[13], n_rt)
            if target >= 0 and ins[target, I_HLEN] + 1 > ht.shape[1]:
                glob[G_GROW] = GROW_HEAP
                return GROW
            heap_pop_nb(ct, ck, cr, g2, np.int64(0), np.int64(G_CHLEN))
            glob[G_CLOCK] = tc
            if target < 0:
                rq[R_STATE, r] = ST_ROUTE_REJECTED
                glob[G_ROUTE_REJECTED] += 1
                continue
            if hsc is not None:
                if cfg[C_TRACE] != 0:
                    code = cfg[C_ROUTING]
                    if code == ROUTE_WEIGHTED:
                        rval = hsc[1][rpos_t]
                    elif code == ROUTE_ROUND_ROBIN:
                        rval = np.float64(glob[G_RR] - 1)
                    else:
                        rval = np.float64(ins[target, I_SNAP_QD] + ins[target, I_SNAP_BS] + ins[target, I_INFLIGHT])
                    _trace_routing(wr, ins, glob, r, tc, target, n_inst, hsc[1], code == ROUTE_WEIGHTED, rval)
            rq[R_INST, r] = target
            rq[R_ROUTED_AT, r] = tc
            if cfg[C_TENANT_CAP] > 0 and rq[R_TENANT, r] > 0:
                wr[4][rq[R_TENANT, r]] += 1
            ins[target, I_INFLIGHT] += 1
            ins[target, I_INJECTED] += 1
            _ipush(ev, ins, target, tc, np.int64(EP_ARRIVAL), r)
            continue
        if ti > horizon:
            return DONE
        # ---- capacity checks before touching instance bi
        grow = 0
        if ins[bi, I_HLEN] + 4 > ht.shape[1]:
            grow |= GROW_HEAP
        if wq.shape[1] - wq_len_nb(ins, bi) < max_seqs + 4:
            grow |= GROW_WQ
        if glob[G_ITL_FREE_N] < max_seqs + 2:
            grow |= GROW_ITL
        if 2 * (ins[bi, I_ITLH_N] + 2) > itl[3].shape[1]:
            grow |= GROW_ITLH
        if grow != 0:
            glob[G_GROW] = grow
            return GROW
        _instance_event(rq, ins, ev, wq, bt, kv, cpu, itl, glob, gseed, cfg, cfgf, lat, bi, scratch)
        if ins[bi, I_LIFE] == LIFE_DRAINING and wq_len_nb(ins, bi) == 0 and ins[bi, I_BLEN] == 0:
            # a draining instance with nothing queued or running terminates (BLIS checks
            # after each of its events); Python releases its GPUs
            ins[bi, I_LIFE] = LIFE_TERMINATED
            ins[bi, I_LIFE_T] = ins[bi, I_CLOCK]
        if glob[G_FIN_N] > 0:
            if cfg[C_TENANT_CAP] > 0:
                fin = scratch[9]
                for k in range(glob[G_FIN_N]):
                    t = rq[R_TENANT, fin[k]]
                    if t > 0 and rq[R_INST, fin[k]] >= 0:
                        wr[4][t] -= 1
            if cfg[C_FIN_HOOK] != 0:
                return NEED_FIN  # Python reads scratch[9][:G_FIN_N] and resets G_FIN_N
            glob[G_FIN_N] = 0
