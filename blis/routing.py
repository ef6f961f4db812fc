"""Routing policies and weighted-routing scorers (names, codes, parsing).

Built-in policies run compiled (``kernels/engine.py``); each is an integer code.
Weighted routing combines scorers, each a compiled kernel branch selected by
code, with weights normalised to sum to 1.  Names and semantics are BLIS's.
"""
from __future__ import annotations

import math
from typing import List, Tuple

from blis.errors import ConfigError
from blis.kernels import layout as L
from blis.registry import Registry

ROUTING_POLICIES: Registry[int] = Registry("routing policy", "--routing-policy")
ROUTING_POLICIES.register("round-robin", L.ROUTE_ROUND_ROBIN, aliases=("",))
ROUTING_POLICIES.register("least-loaded", L.ROUTE_LEAST_LOADED)
ROUTING_POLICIES.register("weighted", L.ROUTE_WEIGHTED)
ROUTING_POLICIES.register("always-busiest", L.ROUTE_ALWAYS_BUSIEST)

SCORERS: Registry[int] = Registry("scorer", "--routing-scorers")
for _name, _code in (("precise-prefix-cache", L.SC_PRECISE_PREFIX), ("queue-depth", L.SC_QUEUE_DEPTH),
                     ("kv-utilization", L.SC_KV_UTIL), ("load-balance", L.SC_LOAD_BALANCE),
                     ("active-requests", L.SC_ACTIVE_REQUESTS), ("running-requests", L.SC_RUNNING_REQUESTS),
                     ("load-aware", L.SC_LOAD_AWARE), ("vllm-dp", L.SC_VLLM_DP),
                     ("prefix-affinity", L.SC_PREFIX_AFFINITY), ("lora-affinity", L.SC_LORA_AFFINITY),
                     ("no-hit-lru", L.SC_NO_HIT_LRU)):
    SCORERS.register(_name, _code)

#: BLIS's default weighted profile
DEFAULT_SCORERS: List[Tuple[str, float]] = [("precise-prefix-cache", 2.0), ("queue-depth", 1.0),
                                             ("kv-utilization", 1.0)]
#: router-side prefix-affinity index capacity (blocks per instance), as BLIS
PREFIX_AFFINITY_CAPACITY = 10_000


def parse_scorers(text: str) -> List[Tuple[str, float]]:
    """``--routing-scorers "name:w,name:w"`` with BLIS's validation; "" -> []."""
    if text == "":
        return []
    out, seen = [], set()
    for part in text.split(","):
        kv = part.strip().split(":", 1)
        if len(kv) != 2:
            raise ConfigError(f"--routing-scorers: each entry must be name:weight, got {part.strip()!r}")
        name = kv[0].strip()
        if name not in SCORERS:
            raise ConfigError(f"--routing-scorers: scorer must be a known name, got {name!r}; "
                              f"valid: {', '.join(SCORERS.names())}")
        if name in seen:
            raise ConfigError(f"--routing-scorers: scorer {name!r} must appear at most once")
        seen.add(name)
        try:
            w = float(kv[1].strip())
        except ValueError:
            raise ConfigError(f"--routing-scorers: weight of {name!r} must be a number, got {kv[1].strip()!r}")
        if not (w > 0) or math.isinf(w):
            raise ConfigError(f"--routing-scorers: weight of {name!r} must be finite and > 0, got {kv[1].strip()}")
        out.append((name, w))
    return out


def normalized(scorers: List[Tuple[str, float]]):
    """(kernel codes, weights / sum) in configuration order; Python scorers get code -1."""
    total = 0.0
    for _, w in scorers:
        total += w
    codes = [SCORERS.get(n) for n, _ in scorers]
    return [c if isinstance(c, int) else -1 for c in codes], [w / total for _, w in scorers]
