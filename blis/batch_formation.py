"""Batch formation strategies: how a step's batch is formed from the running
batch and the wait queue (token budget, chunked prefill, preemption).

The strategy runs inside the compiled engine, so a strategy is a compiled
kernel variant selected by an integer code plus integer parameters:

* ``vllm`` -- vLLM V1 continuous batching as BLIS models it: running requests
  first (single pass, preempting from the tail on KV shortage), then
  admissions from the queue head while the token budget, ``--max-num-seqs``
  and the KV cache allow; prefills are chunked by the budget and
  ``--long-prefill-token-threshold``.
* ``vllm-no-chunked-prefill`` -- as ``vllm`` but a waiting request is only
  admitted when its whole uncached prompt fits in the remaining budget
  (vLLM with chunked prefill disabled); the threshold is ignored.

A variant expressible with the existing parameters is one registration
(``register_batch_formation``); a new algorithm is a kernel in
``kernels/engine.py`` plus a branch on ``C_BF_*`` -- see docs/extending.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from blis.registry import Registry


@dataclass(frozen=True)
class BatchFormation:
    name: str
    no_chunked_prefill: bool = False
    max_admissions_per_step: int = 0  # 0 = unlimited
    doc: str = ""


BATCH_FORMATIONS: Registry[BatchFormation] = Registry("batch formation", "--batch-formation")


def register_batch_formation(name: str, *, no_chunked_prefill: bool = False,
                             max_admissions_per_step: int = 0, doc: str = "") -> BatchFormation:
    """Register a batch formation variant of the compiled vLLM kernel."""
    if max_admissions_per_step < 0:
        raise ValueError(f"batch formation {name!r}: max_admissions_per_step must be >= 0, "
                         f"got {max_admissions_per_step}")
    return BATCH_FORMATIONS.register(
        name, BatchFormation(name, bool(no_chunked_prefill), int(max_admissions_per_step), doc))


register_batch_formation("vllm", doc="vLLM continuous batching with chunked prefill (BLIS's model)")
register_batch_formation("vllm-no-chunked-prefill", no_chunked_prefill=True,
                         doc="vLLM with chunked prefill disabled: whole prompts only")
