"""Plain-Python twin of the single-tier KV block manager, written from spec 01 §7.

Dicts and lists only: blocks carry ``ref_count``, ``in_use``, ``hash`` and an
explicit ``tokens`` list; the free list is a Python list (head = index 0);
``request_map`` and ``hash_to_block`` are dicts.  A block hash is an interned
integer standing for ``(previous hash, tuple(tokens))``: two hashes are equal
exactly when the chained contents are equal, which is the only property the
cache relies on (the compiled kernels use a 64-bit mixing hash instead of
SHA-256).  ``None`` plays the role of the spec's empty hash ``""``.

Token ids come from the kernels' own procedural token function, so a naive
request and a kernel request with the same seeds hold the same content.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from blis.kernels.prefix_hash import request_token_nb


def request_tokens(prefix_len, input_len, output_len, group_seed, content_seed):
    """(input ids, output ids) of a request, from the kernels' procedural token function."""
    gs = np.uint64(group_seed)
    cs = np.uint64(content_seed)
    ids = [int(request_token_nb(p, prefix_len, input_len, gs, cs))
           for p in range(input_len + output_len)]
    return ids[:input_len], ids[input_len:]


@dataclass
class NaiveRequest:
    """The request fields the KV manager reads: id, token lists and ProgressIndex."""

    id: int
    input: List[int]
    output: List[int]
    pi: int = 0


@dataclass
class NaiveBlock:
    id: int
    ref_count: int = 0
    in_use: bool = False
    hash: Optional[int] = None
    tokens: List[int] = field(default_factory=list)


class NaiveKVCache:
    """Spec §7 ``KVCacheState``: FIFO free list, prefix hits on first allocation only,
    lazy deletion of reused blocks' hashes, reverse-order release."""

    def __init__(self, total_blocks: int, block_size: int):
        self.total_blocks = total_blocks
        self.block_size = block_size
        self.blocks = [NaiveBlock(b) for b in range(total_blocks)]
        self.free: List[int] = list(range(total_blocks))
        self.free_block_cnt = total_blocks
        self.request_map: Dict[int, List[int]] = {}
        self.hash_to_block: Dict[int, int] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        self._interned: Dict[tuple, int] = {}

    # ------------------------------------------------------------ hashing
    def hash_block(self, prev: Optional[int], tokens) -> int:
        """HashBlock(prev, tokens): an id equal for equal chained content."""
        key = (prev, tuple(tokens))
        h = self._interned.get(key)
        if h is None:
            h = len(self._interned) + 1
            self._interned[key] = h
        return h

    def _lookup_hash(self, prev, tokens):
        """HashBlock without interning new content (content never seen has no block)."""
        return self._interned.get((prev, tuple(tokens)))

    # ------------------------------------------------------------ queries
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_block_cnt

    def cache_hit_rate(self) -> float:
        t = self.cache_hits + self.cache_misses
        return self.cache_hits / t if t else 0.0

    def get_cached_blocks(self, tokens) -> List[int]:
        """Ids of the longest cached full-block prefix of ``tokens`` (pure)."""
        B = self.block_size
        prev = None
        out = []
        for i in range(len(tokens) // B):
            h = self._lookup_hash(prev, tokens[i * B:(i + 1) * B])
            if h is None or h not in self.hash_to_block:
                break
            out.append(self.hash_to_block[h])
            prev = h
        return out

    # ------------------------------------------------------------ free list
    def _pop_free_head(self) -> NaiveBlock:
        b = self.free.pop(0)
        self.free_block_cnt -= 1
        return self.blocks[b]

    def _unlink_free(self, b: int) -> None:
        self.free.remove(b)
        self.free_block_cnt -= 1

    def _append_free(self, b: int) -> None:
        self.free.append(b)
        self.free_block_cnt += 1

    # ------------------------------------------------------------ allocate / release
    def allocate(self, req: NaiveRequest, start: int, end: int, cached: List[int]) -> bool:
        """AllocateKVBlocks(req, start, end, cached): check-then-act (spec §7.5)."""
        B = self.block_size
        in_prefill = req.pi < len(req.input)
        owned = self.request_map.get(req.id)
        if in_prefill:
            new = req.input[start:end]
            eff = len(new)
            if owned:
                spare = B - len(self.blocks[owned[-1]].tokens)
                if 0 < spare < B:
                    eff -= min(spare, eff)
            need = -(-eff // B) if eff > 0 else 0
            from_free = sum(1 for b in cached if not self.blocks[b].in_use)
            if need + from_free > self.free_block_cnt:
                return False
        else:
            new = [req.output[start - len(req.input)]]
            if owned:
                if len(self.blocks[owned[-1]].tokens) == B and self.free_block_cnt == 0:
                    return False
            elif self.free_block_cnt == 0:
                return False
        i = 0
        while i < len(new):
            if req.id in self.request_map:
                ids = self.request_map[req.id]
                latest = self.blocks[ids[-1]]
            else:
                for b in cached:
                    blk = self.blocks[b]
                    blk.ref_count += 1
                    if not blk.in_use:
                        blk.in_use = True
                        self._unlink_free(b)
                    self.cache_hits += 1
                    self.request_map.setdefault(req.id, []).append(b)
                ids = self.request_map.get(req.id, [])
                latest = self.blocks[ids[-1]] if cached else None
            if latest is not None and 0 < len(latest.tokens) < B:
                k = min(B - len(latest.tokens), len(new) - i)
                latest.tokens = latest.tokens + list(new[i:i + k])
                i += k
                if len(latest.tokens) == B:
                    prev = self.blocks[ids[-2]].hash if len(ids) >= 2 else None
                    latest.hash = self.hash_block(prev, latest.tokens)
                    self.hash_to_block[latest.hash] = latest.id
            else:
                rem = len(new) - i
                if rem <= 0:
                    break
                owned = self.request_map.get(req.id)
                prev = self.blocks[owned[-1]].hash if owned else None
                for _ in range(-(-rem // B)):
                    b = self._pop_free_head()
                    b.tokens = []
                    if b.hash is not None:
                        self.hash_to_block.pop(b.hash, None)
                        b.hash = None
                    b.tokens = list(new[i:min(i + B, len(new))])
                    b.ref_count = 1
                    b.in_use = True
                    self.cache_misses += 1
                    if len(b.tokens) == B and in_prefill:
                        b.hash = self.hash_block(prev, b.tokens)
                        self.hash_to_block[b.hash] = b.id
                        prev = b.hash
                    self.request_map.setdefault(req.id, []).append(b.id)
                    i = min(i + B, len(new))
        return True

    def release(self, req: NaiveRequest) -> None:
        """ReleaseKVBlocks(req): reverse order; blocks reaching 0 refs go to the free tail."""
        for b in reversed(self.request_map.pop(req.id, [])):
            blk = self.blocks[b]
            blk.ref_count -= 1
            if blk.ref_count == 0:
                blk.in_use = False
                self._append_free(b)
