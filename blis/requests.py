"""The request table: a workload as struct-of-arrays numpy columns.

Every workload source (distribution flags, presets, workload-spec YAML, TraceV2
traces) produces a :class:`RequestTable`.  Requests never become Python objects:
the simulator reads these columns directly.  String-valued metadata (SLO class,
tenant, prefix group, client, model, session) is dictionary-encoded: the column
holds an int32 code into the table's ``names[column]`` list (code 0 is always the
empty string "").

Token ids are *procedural*: a request's input is ``prefix_len`` tokens of its
prefix group's shared content followed by ``input_len - prefix_len`` tokens of
its own content (seeded by ``content_seed``); output tokens likewise.  A
request with a ``context_parent`` row (closed-loop session follow-ups) instead
starts with that row's first ``context_len`` tokens (its input, then its
output), so a multi-turn conversation's growing context hits the KV prefix cache.  This is
equivalent to BLIS's random token ids for every cache decision (two random
16-token blocks never collide) while costing no memory per token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

#: (name, dtype, unit, doc) -- drives allocation, validation and the Arrow schema.
REQUEST_FIELDS = [
    ("request_id", np.int64, "", "numeric id; the request's name is request_<id>"),
    ("arrival_us", np.int64, "us", "arrival time"),
    ("input_len", np.int32, "tokens", "input length including the shared prefix"),
    ("output_len", np.int32, "tokens", "oracle output length (tokens the request will produce)"),
    ("prefix_len", np.int32, "tokens", "length of the shared prefix at the start of the input"),
    ("prefix_group", np.int32, "", "code into names['prefix_group'] (0 = none)"),
    ("max_output_len", np.int32, "tokens", "client max_tokens budget (0 = none; auto-filled at enqueue)"),
    ("deadline_us", np.int64, "us", "absolute client deadline (0 = none)"),
    ("slo_class", np.int32, "", "code into names['slo_class']"),
    ("tenant", np.int32, "", "code into names['tenant']"),
    ("client", np.int32, "", "code into names['client']"),
    ("model", np.int32, "", "code into names['model']"),
    ("session", np.int32, "", "code into names['session']"),
    ("round_index", np.int32, "", "round within a session"),
    ("streaming", np.bool_, "", "streaming flag (metadata only)"),
    ("content_seed", np.uint64, "", "seed of the request's own (non-prefix) token content"),
    # closed-loop sessions: a follow-up's input starts with its context parent's tokens
    ("context_parent", np.int64, "", "row whose first context_len tokens (input, then output) "
                                     "start this request's input (-1 = none)"),
    ("context_len", np.int64, "tokens", "tokens taken from the context parent"),
]

#: columns whose default (when absent) is not 0
FIELD_DEFAULTS = {"context_parent": -1}

CATEGORICAL = ("prefix_group", "slo_class", "tenant", "client", "model", "session")


@dataclass
class RequestTable:
    """A workload: one row per request, sorted by ``arrival_us`` (stable)."""

    cols: Dict[str, np.ndarray]
    names: Dict[str, List[str]] = field(default_factory=dict)
    #: seed of each prefix group's shared content (index = prefix_group code)
    group_seeds: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint64))
    #: closed-loop session plan (:class:`blis.workload.sessions.SessionPlan`) or None: the
    #: simulation generates the sessions' follow-up rounds as their requests finish
    sessions: object = None
    #: the rows in the order their source listed them (BLIS's request slice, which trace export
    #: follows) when that differs from arrival order; None = table order
    list_order: object = None

    def __post_init__(self):
        for cat in CATEGORICAL:
            self.names.setdefault(cat, [""])
            if not self.names[cat] or self.names[cat][0] != "":
                raise ValueError(f"RequestTable: names[{cat!r}][0] must be the empty string")
        n = len(self)
        for name, dtype, _, _ in REQUEST_FIELDS:
            col = self.cols.get(name)
            if col is None:
                self.cols[name] = np.full(n, FIELD_DEFAULTS.get(name, 0), dtype)
            else:
                self.cols[name] = np.ascontiguousarray(col, dtype=dtype)
                if len(self.cols[name]) != n:
                    raise ValueError(f"RequestTable: column {name} has length {len(col)}, expected {n}")
        if len(self.group_seeds) < len(self.names["prefix_group"]):
            raise ValueError("RequestTable: group_seeds must cover every prefix group")

    def __len__(self) -> int:
        c = self.cols.get("arrival_us")
        return 0 if c is None else len(c)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    @classmethod
    def empty(cls, n: int) -> "RequestTable":
        return cls({name: np.full(n, FIELD_DEFAULTS.get(name, 0), dtype) for name, dtype, _, _ in REQUEST_FIELDS})

    def take(self, rows) -> "RequestTable":
        """The table of ``rows`` (old row indices, in their new order): every column,
        the name lists, the group seeds and the session plan are kept, and
        ``context_parent`` is renumbered to the new rows.  A child whose parent is
        not taken keeps only its own content (parent -1, context 0); a parent must
        come before its child in ``rows``."""
        rows = np.asarray(rows, np.int64)
        cols = {k: v[rows] for k, v in self.cols.items()}
        parent = cols["context_parent"]
        if np.any(parent >= 0):
            new_of = np.full(len(self), -1, np.int64)
            new_of[rows] = np.arange(len(rows), dtype=np.int64)
            mapped = np.where(parent >= 0, new_of[np.maximum(parent, 0)], -1)
            if np.any(mapped >= np.arange(len(rows))):
                raise ValueError("RequestTable.take: a context parent must come before its child")
            cols["context_len"] = np.where(mapped >= 0, cols["context_len"], 0)
            cols["context_parent"] = mapped
        t = RequestTable(cols, {k: list(v) for k, v in self.names.items()}, self.group_seeds.copy())
        t.sessions = self.sessions
        return t

    def code(self, column: str, value: str) -> int:
        """Dictionary code of ``value`` in ``column``, adding it if new."""
        names = self.names[column]
        try:
            return names.index(value)
        except ValueError:
            names.append(value)
            return len(names) - 1

    def label(self, column: str, i: int) -> str:
        return self.names[column][int(self.cols[column][i])]

    def validate(self) -> None:
        """Check the invariants the simulator relies on; raise ValueError naming the field."""
        c = self.cols
        if len(self) == 0:
            return
        if np.any(np.diff(c["arrival_us"]) < 0):
            raise ValueError("workload: arrival_us must be non-decreasing")
        for f in ("input_len", "output_len", "prefix_len", "max_output_len"):
            bad = np.flatnonzero(c[f] < 0)
            if len(bad):
                raise ValueError(f"workload: {f} must be >= 0, got {int(c[f][bad[0]])} (row {int(bad[0])})")
        bad = np.flatnonzero(c["prefix_len"] > c["input_len"])
        if len(bad):
            raise ValueError(f"workload: prefix_len must be <= input_len (row {int(bad[0])})")
        parent = c["context_parent"]
        bad = np.flatnonzero((parent >= np.arange(len(self))) | (parent < -1))
        if len(bad):
            raise ValueError(f"workload: context_parent must be -1 or an earlier row, got {int(parent[bad[0]])} "
                             f"(row {int(bad[0])})")
        has = parent >= 0
        span = np.where(has, c["input_len"][np.maximum(parent, 0)].astype(np.int64)
                        + c["output_len"][np.maximum(parent, 0)], 0)
        bad = np.flatnonzero((c["context_len"] < 0) | (c["context_len"] > np.minimum(span, c["input_len"]))
                             | (~has & (c["context_len"] != 0)))
        if len(bad):
            raise ValueError(f"workload: context_len must be within the parent's tokens and the input, got "
                             f"{int(c['context_len'][bad[0]])} (row {int(bad[0])})")
        if len(np.unique(c["request_id"])) != len(self):
            raise ValueError("workload: request_id values must be unique")
