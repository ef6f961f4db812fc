"""Instance schedulers: the order in which a wait queue is considered each step.

BLIS's schedulers all sort the wait queue by a *static* per-request key (SLO
priority, prompt length ...), then by arrival time, then by request name.  A
scheduler here is therefore a function computing that key once per request
(vectorised over the workload); the compiled engine re-sorts the queue by
``(key, arrival, name)`` every step with an insertion sort (O(n) on the nearly
sorted queue).  ``fcfs`` has no key: the queue keeps enqueue order, with
preempted requests at the front.

Adding a scheduler is one function and one registration::

    from blis.schedulers import register_scheduler
    register_scheduler("longest-first", lambda table, priority: -table["input_len"].astype("int64"))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from blis.registry import Registry

#: key(table, vllm_priority) -> int64 array (lower sorts first)
KeyFn = Callable[[object, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Scheduler:
    """``key`` is None for FCFS (no reordering)."""

    name: str
    key: Optional[KeyFn]
    doc: str = ""


SCHEDULERS: Registry[Scheduler] = Registry("scheduler", "--scheduler")


def register_scheduler(name: str, key: Optional[KeyFn], doc: str = "", aliases=()) -> Scheduler:
    """Register a scheduler ordering the wait queue by ``key`` (then arrival, then name)."""
    return SCHEDULERS.register(name, Scheduler(name, key, doc), aliases=aliases)


def scheduler_keys(name: str, table, priority: np.ndarray):
    """(reorders, int64 key per request) for scheduler ``name``."""
    s = SCHEDULERS.get(name)
    if s.key is None:
        return False, np.zeros(len(table), np.int64)
    key = np.asarray(s.key(table, priority))
    if key.shape != (len(table),):
        raise ValueError(f"scheduler {name!r}: key must return one value per request, got shape {key.shape}")
    if not np.issubdtype(key.dtype, np.integer):
        raise ValueError(f"scheduler {name!r}: key must be integer-valued, got dtype {key.dtype}")
    return True, key.astype(np.int64)


register_scheduler("fcfs", None, "first come, first served: enqueue order, preempted requests first",
                   aliases=("",))
register_scheduler("priority-fcfs", lambda t, prio: prio,
                   "SLO priority (critical first), then arrival, then name")
register_scheduler("sjf", lambda t, prio: t["input_len"].astype(np.int64),
                   "shortest prompt first, then arrival, then name")
register_scheduler("reverse-priority", lambda t, prio: -prio,
                   "least urgent SLO class first (for testing)")
