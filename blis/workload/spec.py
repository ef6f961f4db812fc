"""Workload spec YAML (v2): strict loading, validation, expansion and ``blis run --workload-spec``.

spec/04-workload-io.md §1, §3, §4.12, §4.13.  Layers, each usable on its own:

* :func:`parse_workload_spec` / :func:`load_workload_spec` read BLIS's workload
  spec YAML into a :class:`WorkloadSpec`.  Parsing is strict, like BLIS's
  yaml.v3 decoder with ``KnownFields(true)``: an unknown key anywhere, a
  duplicate key, or a value of the wrong type is a :class:`ConfigError` naming
  the YAML path (``clients[2].arrival.procss``), its line, the value and the
  allowed keys or values.  Scalars are typed the way yaml.v3 types them
  (``version: 2`` is the string ``"2"``; ``1e6`` is a valid integer; quoted
  numbers are strings; ``yes``/``on`` are booleans only for bool keys).  A v1
  spec (version ``""`` or ``"1"``) is upgraded: version ``"2"``, client SLO
  classes ``realtime`` -> ``critical`` and ``interactive`` -> ``standard``.
  Then :func:`validate_workload_spec` applies BLIS's ``Validate`` rules in
  BLIS's order (the first failure is reported).
* :func:`expand_workload_spec` turns ``inference_perf`` (§4.13) and ``cohorts``
  (§4.12) into explicit clients, in BLIS's client order (explicit or
  inference-perf clients, then cohort members), so the generator sees the list
  BLIS generates from.
* :func:`generate_spec_requests` = expand + :func:`blis.workload.synthesis.generate_requests`,
  plus the inference-perf arrival samplers (a normalised-exponential sequence
  or a fixed-rate Poisson stream seeded with one extra draw, §4.1).
* :func:`workload_from_spec_file` is ``blis run --workload-spec`` (§1): seed,
  horizon, ``--num-requests`` and ``--timeout`` precedence and the
  bounded-generation check.
* :func:`dump_workload_spec` writes a spec back as YAML that loads to an equal spec.

The records extend those of :mod:`blis.workload.synthesis` (same names, which
the generator reads) with the keys generation does not need: cohorts,
``inference_perf``, ``servegen_data``, ``goodput_slo_targets``, ``network``,
``DistSpec.file``, and typed reasoning / multimodal blocks.

Deliberate differences from BLIS, all on malformed input: an integer key given
a non-integral number (``prefix_length: 1.5``) is an error where yaml.v3
truncates; distributions are checked for their required parameters when the
spec is validated (BLIS fails later, at generation), as are reasoning and
multimodal distributions with a type, ``multi_turn.context_growth`` (must be
``accumulate`` or empty) and per-window arrival processes; YAML explicit tags
are ignored.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError
from . import generator as _gen
from . import synthesis as _syn
from .distributions import (
    ARRIVAL_PROCESSES,
    LENGTH_TYPES,
    ArrivalSampler,
    make_arrival_sampler,
    make_length_sampler,
    normalized_exponential_sampler,
)
from .synthesis import ActiveWindow, ArrivalSpec, go_format_float

log = logging.getLogger("blis.workload")

INT64_MAX = _syn.INT64_MAX
INT64_MIN = -(1 << 63)

#: valid ``category`` values
CATEGORIES = ("", "language", "multimodal", "reasoning")
#: valid ``slo_class`` values ("" = unset)
SLO_CLASSES = ("", "critical", "standard", "sheddable", "batch", "background")
#: v1 SLO class names and their v2 replacements
V1_SLO_CLASSES = {"realtime": "critical", "interactive": "standard"}
#: valid ``prefix_sharing`` values of a cohort
PREFIX_SHARING = ("", "shared", "per_member")
#: valid ``multi_turn.context_growth`` values
CONTEXT_GROWTH = ("", "accumulate")
#: cap on a cohort's population
MAX_COHORT_POPULATION = 100_000
#: µs per hour (diurnal windows)
US_PER_HOUR = 3_600_000_000
#: weibull cv range accepted without explicit shape and scale
WEIBULL_CV_RANGE = (0.01, 10.4)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------
@dataclass
class DistSpec(_syn.DistSpec):
    """A length distribution: ``type``, ``params`` and the reserved ``file`` key (never read)."""

    file: str = ""


@dataclass
class NetworkSpec:
    """``network:`` block (parsed and copied to cohort members; nothing reads it)."""

    rtt_ms: float = 0.0
    bandwidth_mbps: float = 0.0


@dataclass
class MultiTurnSpec:
    """``reasoning.multi_turn``: rounds per session, think time (µs), context growth."""

    max_rounds: int = 0
    think_time_us: int = 0
    context_growth: str = ""
    single_session: bool = False


@dataclass
class ReasoningSpec:
    """``reasoning:`` block: reason-ratio distribution (integer percent) and optional multi-turn."""

    reason_ratio_distribution: DistSpec = field(default_factory=DistSpec)
    multi_turn: Optional[MultiTurnSpec] = None


@dataclass
class MultimodalSpec:
    """``multimodal:`` block: text length plus per-modality token and count distributions."""

    text_distribution: DistSpec = field(default_factory=DistSpec)
    image_distribution: DistSpec = field(default_factory=DistSpec)
    image_count_distribution: DistSpec = field(default_factory=DistSpec)
    audio_distribution: DistSpec = field(default_factory=DistSpec)
    audio_count_distribution: DistSpec = field(default_factory=DistSpec)
    video_distribution: DistSpec = field(default_factory=DistSpec)
    video_count_distribution: DistSpec = field(default_factory=DistSpec)


@dataclass(frozen=True)
class CustomArrival:
    """An arrival sampler that has no YAML form (inference-perf expansion, §4.13).

    ``kind`` is ``"normalized_exponential"`` (``count`` IATs summing to
    ``duration_us``, then 0 = stop) or ``"poisson"`` (fixed ``rate_per_us``,
    ignoring the normalised client rate).  The generator seeds the sampler's
    own RNG with one ``Int63()`` from the client stream before any other draw.
    """

    kind: str
    count: int = 0
    duration_us: int = 0
    rate_per_us: float = 0.0

    def make_sampler(self, rng) -> ArrivalSampler:
        """The sampler, built from ``rng`` (a :class:`blis.rng.GoRand` seeded from the client stream)."""
        if self.kind == "normalized_exponential":
            return normalized_exponential_sampler(rng, self.count, self.duration_us)
        if self.kind == "poisson":
            return make_arrival_sampler("poisson", self.rate_per_us)
        raise ConfigError(f"custom arrival: kind must be a known sampler, got {self.kind!r}; "
                          f"valid: normalized_exponential, poisson")


@dataclass
class ClientSpec(_syn.ClientSpec):
    """One client (§3.1).  ``lifecycle`` is the window list of ``lifecycle.windows``
    (None = no ``lifecycle`` key); ``custom_arrival`` is set only by inference-perf expansion."""

    input_distribution: DistSpec = field(default_factory=DistSpec)
    output_distribution: DistSpec = field(default_factory=DistSpec)
    reasoning: Optional[ReasoningSpec] = None
    multimodal: Optional[MultimodalSpec] = None
    network: Optional[NetworkSpec] = None
    custom_arrival: Optional[CustomArrival] = None


@dataclass
class DiurnalSpec:
    """Cohort ``diurnal``: 24 hourly windows, full at ``peak_hour``, 1/ratio at the trough."""

    peak_hour: int = 0
    peak_to_trough_ratio: float = 0.0


@dataclass
class SpikeSpec:
    """Cohort ``spike``: one window ``[start, start + duration)``, optional absolute ``trace_rate``."""

    start_time_us: int = 0
    duration_us: int = 0
    trace_rate: Optional[float] = None


@dataclass
class DrainSpec:
    """Cohort ``drain``: full rate until ``start_time_us``, then a 10-step ramp-down."""

    start_time_us: int = 0
    ramp_duration_us: int = 0


@dataclass
class CohortSpec:
    """A population of identical clients (§3.2), expanded into ``population`` members."""

    id: str = ""
    population: int = 0
    tenant_id: str = ""
    slo_class: str = ""
    model: str = ""
    adapter: str = ""
    arrival: ArrivalSpec = field(default_factory=ArrivalSpec)
    input_distribution: DistSpec = field(default_factory=DistSpec)
    output_distribution: DistSpec = field(default_factory=DistSpec)
    prefix_group: str = ""
    prefix_sharing: str = ""
    streaming: bool = False
    rate_fraction: float = 0.0
    diurnal: Optional[DiurnalSpec] = None
    spike: Optional[SpikeSpec] = None
    drain: Optional[DrainSpec] = None
    prefix_length: int = 0
    reasoning: Optional[ReasoningSpec] = None
    closed_loop: Optional[bool] = None
    timeout: Optional[int] = None
    slo_target_us: Optional[int] = None
    network: Optional[NetworkSpec] = None
    multimodal: Optional[MultimodalSpec] = None


@dataclass
class StageSpec:
    """An inference-perf stage: ``rate`` req/s for ``duration`` seconds."""

    rate: float = 0.0
    duration: int = 0


@dataclass
class SharedPrefixSpec:
    """inference-perf ``shared_prefix``: N system prompts x M users, fixed lengths."""

    num_unique_system_prompts: int = 0
    num_users_per_system_prompt: int = 0
    system_prompt_len: int = 0
    question_len: int = 0
    output_len: int = 0
    enable_multi_turn_chat: bool = False


@dataclass
class InferencePerfSpec:
    """``inference_perf:`` block: stages plus the shared-prefix layout."""

    stages: List[StageSpec] = field(default_factory=list)
    shared_prefix: Optional[SharedPrefixSpec] = None


@dataclass
class ServeGenDataSpec:
    """``servegen_data:`` block: a ServeGen directory loaded into cohorts at expansion (§4.14).

    ``window_duration_secs`` (<= 0 = 600) and ``drain_timeout_secs`` (< 0 = 180)
    shape the periods; ``time_window``, ``span_start`` and ``span_end`` are
    parsed but unused, as in BLIS."""

    path: str = ""
    time_window: str = ""
    span_start: int = 0
    span_end: int = 0
    window_duration_secs: int = 0
    drain_timeout_secs: int = 0


@dataclass
class SLODimTargets:
    """Goodput thresholds of one SLO class (ms; 0 = not gated)."""

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    e2e_ms: float = 0.0


@dataclass
class WorkloadSpec(_syn.WorkloadSpec):
    """A workload spec (§3): the generator's fields plus cohorts and the other sources."""

    clients: List[ClientSpec] = field(default_factory=list)
    cohorts: List[CohortSpec] = field(default_factory=list)
    servegen_data: Optional[ServeGenDataSpec] = None
    inference_perf: Optional[InferencePerfSpec] = None
    goodput_slo_targets: Dict[str, SLODimTargets] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# YAML schema: (key, kind) per struct, in BLIS's struct order.  The key is the
# attribute name everywhere.
# ---------------------------------------------------------------------------
STR, INT, FLOAT, BOOL = ("str",), ("int",), ("float",), ("bool",)
OPT_INT, OPT_FLOAT, OPT_BOOL = ("opt", "int"), ("opt", "float"), ("opt", "bool")
PARAMS = ("params",)
LIFECYCLE = ("lifecycle",)


class _Struct:
    __slots__ = ("cls", "fields", "kinds")

    def __init__(self, cls, items):
        self.cls = cls
        self.fields = list(items)
        self.kinds = dict(self.fields)


S_ARRIVAL = _Struct(ArrivalSpec, [("process", STR), ("cv", OPT_FLOAT), ("shape", OPT_FLOAT),
                                  ("scale", OPT_FLOAT)])
S_DIST = _Struct(DistSpec, [("type", STR), ("params", PARAMS), ("file", STR)])
S_NETWORK = _Struct(NetworkSpec, [("rtt_ms", FLOAT), ("bandwidth_mbps", FLOAT)])
S_WINDOW = _Struct(ActiveWindow, [("start_us", INT), ("end_us", INT), ("trace_rate", OPT_FLOAT),
                                  ("arrival", ("ptr", S_ARRIVAL)), ("input_distribution", ("ptr", S_DIST)),
                                  ("output_distribution", ("ptr", S_DIST))])
S_LIFECYCLE_KEYS = ("windows",)
S_MULTIMODAL = _Struct(MultimodalSpec, [(f.name, ("struct", S_DIST)) for f in fields(MultimodalSpec)])
S_MULTITURN = _Struct(MultiTurnSpec, [("max_rounds", INT), ("think_time_us", INT), ("context_growth", STR),
                                      ("single_session", BOOL)])
S_REASONING = _Struct(ReasoningSpec, [("reason_ratio_distribution", ("struct", S_DIST)),
                                      ("multi_turn", ("ptr", S_MULTITURN))])
S_CLIENT = _Struct(ClientSpec, [
    ("id", STR), ("tenant_id", STR), ("slo_class", STR), ("model", STR), ("adapter", STR),
    ("rate_fraction", FLOAT), ("concurrency", INT), ("think_time_us", INT), ("arrival", ("struct", S_ARRIVAL)),
    ("input_distribution", ("struct", S_DIST)), ("output_distribution", ("struct", S_DIST)),
    ("prefix_group", STR), ("prefix_length", INT), ("streaming", BOOL), ("network", ("ptr", S_NETWORK)),
    ("lifecycle", LIFECYCLE), ("multimodal", ("ptr", S_MULTIMODAL)), ("reasoning", ("ptr", S_REASONING)),
    ("timeout", OPT_INT), ("slo_target_us", OPT_INT), ("closed_loop", OPT_BOOL),
])
S_DIURNAL = _Struct(DiurnalSpec, [("peak_hour", INT), ("peak_to_trough_ratio", FLOAT)])
S_SPIKE = _Struct(SpikeSpec, [("start_time_us", INT), ("duration_us", INT), ("trace_rate", OPT_FLOAT)])
S_DRAIN = _Struct(DrainSpec, [("start_time_us", INT), ("ramp_duration_us", INT)])
S_COHORT = _Struct(CohortSpec, [
    ("id", STR), ("population", INT), ("tenant_id", STR), ("slo_class", STR), ("model", STR), ("adapter", STR),
    ("arrival", ("struct", S_ARRIVAL)), ("input_distribution", ("struct", S_DIST)),
    ("output_distribution", ("struct", S_DIST)), ("prefix_group", STR), ("prefix_sharing", STR),
    ("streaming", BOOL), ("rate_fraction", FLOAT), ("diurnal", ("ptr", S_DIURNAL)), ("spike", ("ptr", S_SPIKE)),
    ("drain", ("ptr", S_DRAIN)), ("prefix_length", INT), ("reasoning", ("ptr", S_REASONING)),
    ("closed_loop", OPT_BOOL), ("timeout", OPT_INT), ("slo_target_us", OPT_INT), ("network", ("ptr", S_NETWORK)),
    ("multimodal", ("ptr", S_MULTIMODAL)),
])
S_STAGE = _Struct(StageSpec, [("rate", FLOAT), ("duration", INT)])
S_SHARED_PREFIX = _Struct(SharedPrefixSpec, [
    ("num_unique_system_prompts", INT), ("num_users_per_system_prompt", INT), ("system_prompt_len", INT),
    ("question_len", INT), ("output_len", INT), ("enable_multi_turn_chat", BOOL)])
S_INFERENCE_PERF = _Struct(InferencePerfSpec, [("stages", ("list", S_STAGE)),
                                               ("shared_prefix", ("ptr", S_SHARED_PREFIX))])
S_SERVEGEN = _Struct(ServeGenDataSpec, [("path", STR), ("time_window", STR), ("span_start", INT), ("span_end", INT),
                                        ("window_duration_secs", INT), ("drain_timeout_secs", INT)])
S_SLO_TARGETS = _Struct(SLODimTargets, [("ttft_ms", FLOAT), ("itl_ms", FLOAT), ("e2e_ms", FLOAT)])
S_SPEC = _Struct(WorkloadSpec, [
    ("version", STR), ("seed", INT), ("category", STR), ("clients", ("list", S_CLIENT)),
    ("cohorts", ("list", S_COHORT)), ("aggregate_rate", FLOAT), ("horizon", INT), ("num_requests", INT),
    ("servegen_data", ("ptr", S_SERVEGEN)), ("inference_perf", ("ptr", S_INFERENCE_PERF)),
    ("goodput_slo_targets", ("map", S_SLO_TARGETS)),
])


# ---------------------------------------------------------------------------
# Scalars, typed as yaml.v3 types them
# ---------------------------------------------------------------------------
_NULL_WORDS = frozenset(["", "~", "null", "Null", "NULL"])
_TRUE_WORDS = frozenset(["true", "True", "TRUE"])
_FALSE_WORDS = frozenset(["false", "False", "FALSE"])
#: extra spellings a bool key accepts (yaml.v3's YAML 1.1 compatibility)
_BOOL_COMPAT = {**{w: True for w in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")},
                **{w: False for w in ("n", "N", "no", "No", "NO", "off", "Off", "OFF")}}
_SPECIAL_FLOATS = {**{w: math.nan for w in (".nan", ".NaN", ".NAN")},
                   **{w: math.inf for w in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
                   **{w: -math.inf for w in ("-.inf", "-.Inf", "-.INF")}}
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")


def _go_parse_int(s: str) -> Optional[int]:
    """``strconv.ParseInt(s, 0, 64)``, falling back to ``ParseUint``; None when both fail."""
    if not _GO_INT.match(s):
        return None
    neg = s[0] == "-"
    body = s.lstrip("+-")
    low = body.lower()
    if low.startswith("0x"):
        v = int(body[2:], 16)
    elif low.startswith("0o"):
        v = int(body[2:], 8)
    elif low.startswith("0b"):
        v = int(body[2:], 2)
    elif len(body) > 1:
        v = int(body, 8) if body[0] == "0" else int(body)
    else:
        v = int(body)
    if neg:
        v = -v
    if INT64_MIN <= v <= INT64_MAX or (not neg and v < (1 << 64)):
        return v
    return None


def _resolve(node) -> Tuple[str, Any]:
    """``(kind, value)`` of a scalar node: kind is null, bool, int, float or str."""
    s = node.value
    if node.style:  # quoted or block scalar: always a string (plain is None, or "" with libyaml)
        return "str", s
    if s in _NULL_WORDS:
        return "null", None
    if s in _TRUE_WORDS:
        return "bool", True
    if s in _FALSE_WORDS:
        return "bool", False
    if s in _SPECIAL_FLOATS:
        return "float", _SPECIAL_FLOATS[s]
    c = s[0]
    if c in "+-0123456789" or c == ".":
        plain = s.replace("_", "") if c != "." else s
        if c != ".":
            iv = _go_parse_int(plain)
            if iv is not None:
                return "int", iv
        if _YAML_FLOAT.match(plain):
            v = float(plain)
            if not math.isinf(v):  # Go's ParseFloat fails on overflow: the scalar stays a string
                return "float", v
    return "str", s


def _is_null(node) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode) and not node.style and node.value in _NULL_WORDS


def _show(v) -> str:
    """A value as it appears in messages."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_format_float(v)
    if isinstance(v, str):
        return repr(v)
    if v is None:
        return "null"
    return str(v)


def _node_text(node) -> str:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a sequence"


# ---------------------------------------------------------------------------
# Strict parser
# ---------------------------------------------------------------------------
class _Parser:
    def __init__(self, where: str):
        self.where = where
        self.lines: Dict[str, int] = {}

    def fail(self, path: str, node, constraint: str, got: str, valid: Optional[str] = None):
        line = node.start_mark.line + 1 if node is not None else None
        at = f" (line {line})" if line else ""
        msg = f"{self.where}: {path or 'document'}{at} must be {constraint}, got {got}"
        if valid:
            msg += f"; valid: {valid}"
        raise ConfigError(msg)

    # mapping pairs, with merge keys (<<) and duplicate-key detection
    def pairs(self, node, path: str) -> List[Tuple[str, Any, Any]]:
        import yaml

        explicit: Dict[str, Tuple[Any, Any]] = {}
        merged: Dict[str, Tuple[Any, Any]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.fail(path, knode, "a mapping with string keys", f"a key that is {_node_text(knode)}")
            key = knode.value
            if key == "<<" and not knode.style:
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        self.fail(path, src, "a mapping or a list of mappings (merge key <<)", _node_text(src))
                    for k, kn, vn in self.pairs(src, path):
                        merged.setdefault(k, (kn, vn))
                continue
            if key in explicit:
                first = explicit[key][0].start_mark.line + 1
                self.fail(f"{path}.{key}" if path else key, knode,
                          f"defined once (first defined at line {first})", f"a second {key!r}")
            explicit[key] = (knode, vnode)
        out = [(k, kn, vn) for k, (kn, vn) in merged.items() if k not in explicit]
        out += [(k, kn, vn) for k, (kn, vn) in explicit.items()]
        return out

    def struct(self, node, S: _Struct, path: str, top: bool = False):
        import yaml

        obj = S.cls()
        if top:
            obj.version = ""  # Go's zero value: an absent version means v1
        if node is None or _is_null(node):
            return obj
        if not isinstance(node, yaml.MappingNode):
            self.fail(path, node, "a mapping", _node_text(node), ", ".join(k for k, _ in S.fields))
        for key, knode, vnode in self.pairs(node, path):
            sub = f"{path}.{key}" if path else key
            kind = S.kinds.get(key)
            if kind is None:
                where = path or "the top level"
                value = _node_text(vnode)
                self.fail(sub, knode, f"a known key of {where}", f"{key!r} (value {value})",
                          ", ".join(k for k, _ in S.fields))
            self.lines[sub] = vnode.start_mark.line + 1
            setattr(obj, key, self.value(vnode, kind, sub))
        return obj

    def value(self, node, kind, path: str):
        import yaml

        tag = kind[0]
        if tag in ("str", "int", "float", "bool"):
            v = self.scalar(node, tag, path)
            if v is None:  # null leaves the Go zero value
                return {"str": "", "int": 0, "float": 0.0, "bool": False}[tag]
            return v
        if tag == "opt":
            return self.scalar(node, kind[1], path)
        if tag == "struct":
            return self.struct(node, kind[1], path)
        if tag == "ptr":
            return None if _is_null(node) else self.struct(node, kind[1], path)
        if tag == "list":
            if _is_null(node):
                return []
            if not isinstance(node, yaml.SequenceNode):
                self.fail(path, node, "a list", _node_text(node))
            out = []
            for i, item in enumerate(node.value):
                p = f"{path}[{i}]"
                self.lines[p] = item.start_mark.line + 1
                out.append(self.struct(item, kind[1], p))
            return out
        if tag == "params":
            if _is_null(node):
                return {}
            if not isinstance(node, yaml.MappingNode):
                self.fail(path, node, "a mapping of parameter names to numbers", _node_text(node))
            out = {}
            for key, _, vnode in self.pairs(node, path):
                sub = f"{path}.{key}"
                self.lines[sub] = vnode.start_mark.line + 1
                v = self.scalar(vnode, "float", sub)
                out[key] = 0.0 if v is None else v
            return out
        if tag == "map":
            if _is_null(node):
                return {}
            if not isinstance(node, yaml.MappingNode):
                self.fail(path, node, "a mapping", _node_text(node))
            out = {}
            for key, _, vnode in self.pairs(node, path):
                sub = f"{path}.{key}"
                self.lines[sub] = vnode.start_mark.line + 1
                out[key] = self.struct(vnode, kind[1], sub)
            return out
        if tag == "lifecycle":
            if _is_null(node):
                return None
            if not isinstance(node, yaml.MappingNode):
                self.fail(path, node, "a mapping", _node_text(node), "windows")
            windows: List[ActiveWindow] = []
            for key, knode, vnode in self.pairs(node, path):
                sub = f"{path}.{key}"
                if key != "windows":
                    self.fail(sub, knode, f"a known key of {path}", f"{key!r} (value {_node_text(vnode)})",
                              "windows")
                self.lines[sub] = vnode.start_mark.line + 1
                windows = self.value(vnode, ("list", S_WINDOW), sub)
            return windows
        raise AssertionError(kind)

    def scalar(self, node, typ: str, path: str):
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            want = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}[typ]
            self.fail(path, node, want, _node_text(node))
        kind, v = _resolve(node)
        if kind == "null":
            return None
        if typ == "str":
            return node.value
        shown = f"the quoted string {node.value!r}" if node.style else repr(node.value)
        if typ == "bool":
            if kind == "bool":
                return v
            if kind == "str" and v in _BOOL_COMPAT:
                return _BOOL_COMPAT[v]
            self.fail(path, node, "a boolean", shown, "true, false")
        if typ == "float":
            if kind in ("int", "float"):
                return float(v)
            self.fail(path, node, "a number", shown)
        # int
        if kind == "int":
            if not INT64_MIN <= v <= INT64_MAX:
                self.fail(path, node, "an integer in the int64 range", node.value)
            return int(v)
        if kind == "float":
            if math.isfinite(v) and v == math.floor(v) and -(2.0 ** 63) <= v < 2.0 ** 63:
                return int(v)
            self.fail(path, node, "an integer", node.value)
        self.fail(path, node, "an integer", shown)


def _upgrade_v1(spec: WorkloadSpec) -> None:
    """BLIS's ``UpgradeV1ToV2``: version "" or "1" becomes "2" and v1 client SLO classes are renamed."""
    if spec.version in ("", "1"):
        spec.version = "2"
        for c in spec.clients:
            new = V1_SLO_CLASSES.get(c.slo_class)
            if new is not None:
                log.warning("deprecated SLO class %r auto-mapped to %r; update your spec to use v2 tier names",
                            c.slo_class, new)
                c.slo_class = new


def parse_workload_spec(text: str, where: str = "workload spec", *, validate: bool = True) -> WorkloadSpec:
    """Parse workload-spec YAML ``text`` strictly, upgrade v1, and (by default) validate.

    ``where`` prefixes every error message (usually the file name).  The
    returned spec is the file's content (cohorts and ``inference_perf`` are not
    expanded; see :func:`expand_workload_spec`).
    """
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"{where}: document must be valid YAML, got a syntax error{at}: {problem}") from None
    if root is None:
        raise ConfigError(f"{where}: document must be a YAML mapping, got an empty document; "
                          f"valid: {', '.join(k for k, _ in S_SPEC.fields)}")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{where}: document (line {root.start_mark.line + 1}) must be a YAML mapping, "
                          f"got {_node_text(root)}; valid: {', '.join(k for k, _ in S_SPEC.fields)}")
    parser = _Parser(where)
    spec = parser.struct(root, S_SPEC, "", top=True)
    _upgrade_v1(spec)
    spec._yaml_lines = parser.lines  # not a field: equality ignores it
    spec._yaml_where = where
    if validate:
        validate_workload_spec(spec, where)
    return spec


def load_workload_spec(path: Union[str, os.PathLike], *, validate: bool = True) -> WorkloadSpec:
    """Read and parse the workload spec file ``path`` (see :func:`parse_workload_spec`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: workload spec must be a readable file, got {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: workload spec must be UTF-8 text, got {e.reason}") from None
    return parse_workload_spec(text, str(p), validate=validate)


# ---------------------------------------------------------------------------
# Validation (BLIS's Validate, first failure wins)
# ---------------------------------------------------------------------------
class _Validator:
    def __init__(self, spec, where: Optional[str]):
        self.where = where or getattr(spec, "_yaml_where", None) or "workload spec"
        self.lines: Dict[str, int] = getattr(spec, "_yaml_lines", None) or {}

    def line(self, path: str) -> Optional[int]:
        p = path
        while p:
            if p in self.lines:
                return self.lines[p]
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return None

    def fail(self, path: str, constraint: str, got, valid: Optional[str] = None, raw: bool = False):
        ln = self.line(path)
        at = f" (line {ln})" if ln else ""
        msg = f"{self.where}: {path}{at} must be {constraint}, got {got if raw else _show(got)}"
        if valid:
            msg += f"; valid: {valid}"
        raise ConfigError(msg)

    def finite_positive(self, path: str, v: float):
        if not math.isfinite(v) or v <= 0:
            self.fail(path, "a finite number > 0", v)

    def dist(self, path: str, d, required: bool = True):
        t = d.type
        if not t and not required:
            return
        if t not in LENGTH_TYPES:
            self.fail(f"{path}.type", "a known distribution type", t, ", ".join(LENGTH_TYPES))
        for name, v in d.params.items():
            if not math.isfinite(v):
                self.fail(f"{path}.params.{name}", "a finite number", v)
        required = LENGTH_TYPES[t][1]
        for name in required:
            if name not in d.params:
                self.fail(f"{path}.params.{name}", f"set for a {t} distribution", "none", raw=True,
                          valid=f"params {', '.join(required)}")
        try:
            make_length_sampler(t, d.params, where=path)
        except ConfigError as e:  # min > max, or unusable empirical bins
            ln = self.line(path)
            text = str(e)
            if text.startswith(path + ":"):
                text = text[len(path) + 1:].strip()
            raise ConfigError(f"{self.where}: {path}{f' (line {ln})' if ln else ''}: {text}") from None

    def arrival(self, path: str, a, check_process: bool, check_cv: bool):
        if check_process:
            if a.process not in ARRIVAL_PROCESSES:
                self.fail(f"{path}.process", "a known arrival process", a.process, ", ".join(ARRIVAL_PROCESSES))
            if a.process == "weibull" and a.cv is not None:
                explicit = a.shape is not None and a.scale is not None and a.shape > 0 and a.scale > 0
                lo, hi = WEIBULL_CV_RANGE
                if not explicit and (a.cv < lo or a.cv > hi):
                    self.fail(f"{path}.cv", f"in [{lo}, {hi}] for a weibull process without explicit "
                              f"shape and scale", a.cv)
        if check_cv and a.cv is not None:
            self.finite_positive(f"{path}.cv", a.cv)
        if a.shape is not None:
            self.finite_positive(f"{path}.shape", a.shape)
        if a.scale is not None:
            self.finite_positive(f"{path}.scale", a.scale)

    def slo(self, path: str, v: str):
        if v not in SLO_CLASSES:
            self.fail(path, "a known SLO class", v, "critical, standard, sheddable, batch, background, or empty")

    def common_tail(self, p: str, c):
        """timeout, slo_target_us and multi-turn rounds (shared by clients and cohorts)."""
        if c.timeout is not None and c.timeout < 0:
            self.fail(f"{p}.timeout", ">= 0 (µs; 0 = no deadline)", c.timeout)
        if c.slo_target_us is not None and c.slo_target_us < 0:
            self.fail(f"{p}.slo_target_us", ">= 0 (µs; 0 = no target)", c.slo_target_us)
        r = c.reasoning
        if r is not None and r.multi_turn is not None and r.multi_turn.max_rounds < 1:
            self.fail(f"{p}.reasoning.multi_turn.max_rounds", ">= 1", r.multi_turn.max_rounds)

    def extras(self, p: str, c):
        """Checks BLIS defers to generation: reasoning and multimodal distributions, context growth."""
        r = c.reasoning
        if r is not None:
            self.dist(f"{p}.reasoning.reason_ratio_distribution", r.reason_ratio_distribution, required=False)
            if r.multi_turn is not None and r.multi_turn.context_growth not in CONTEXT_GROWTH:
                self.fail(f"{p}.reasoning.multi_turn.context_growth", "accumulate or empty",
                          r.multi_turn.context_growth, "accumulate, \"\"")
            if r.multi_turn is not None and r.multi_turn.think_time_us < 0:
                self.fail(f"{p}.reasoning.multi_turn.think_time_us", ">= 0", r.multi_turn.think_time_us)
        m = c.multimodal
        if m is not None:
            for f in fields(MultimodalSpec):
                self.dist(f"{p}.multimodal.{f.name}", getattr(m, f.name), required=False)

    def client(self, i: int, c):
        p = f"clients[{i}]"
        self.slo(f"{p}.slo_class", c.slo_class)
        if c.concurrency < 0:
            self.fail(f"{p}.concurrency", ">= 0", c.concurrency)
        if c.think_time_us < 0:
            self.fail(f"{p}.think_time_us", ">= 0", c.think_time_us)
        if c.concurrency > 0 and c.rate_fraction > 0:
            self.fail(f"{p}.rate_fraction", "0 when concurrency > 0 (concurrency and rate_fraction are "
                      "mutually exclusive)", c.rate_fraction)
        if c.concurrency == 0:
            self.finite_positive(f"{p}.rate_fraction", c.rate_fraction)
        custom = getattr(c, "custom_arrival", None) is not None
        self.arrival(f"{p}.arrival", c.arrival, check_process=c.concurrency == 0 and not custom,
                     check_cv=c.concurrency == 0)
        if c.prefix_length < 0:
            self.fail(f"{p}.prefix_length", ">= 0 (0 = the default of 50 tokens)", c.prefix_length)
        self.dist(f"{p}.input_distribution", c.input_distribution)
        self.dist(f"{p}.output_distribution", c.output_distribution)
        self.common_tail(p, c)
        if c.lifecycle is not None:
            if len(c.lifecycle) == 0:
                self.fail(f"{p}.lifecycle.windows", "a non-empty list of windows", "[]", raw=True)
            for j, w in enumerate(c.lifecycle):
                wp = f"{p}.lifecycle.windows[{j}]"
                if w.start_us < 0:
                    self.fail(f"{wp}.start_us", ">= 0", w.start_us)
                if w.end_us <= w.start_us:
                    self.fail(f"{wp}.end_us", f"> start_us ({w.start_us})", w.end_us)
                if w.input_distribution is not None:
                    self.dist(f"{wp}.input_distribution", w.input_distribution)
                if w.output_distribution is not None:
                    self.dist(f"{wp}.output_distribution", w.output_distribution)
                if w.arrival is not None:
                    if w.arrival.process and w.arrival.process not in ARRIVAL_PROCESSES:
                        self.fail(f"{wp}.arrival.process", "a known arrival process or empty (poisson)",
                                  w.arrival.process, ", ".join(ARRIVAL_PROCESSES))
        self.extras(p, c)

    def cohort(self, i: int, c: CohortSpec):
        p = f"cohorts[{i}]"
        if c.population <= 0:
            self.fail(f"{p}.population", "> 0", c.population)
        if c.population > MAX_COHORT_POPULATION:
            self.fail(f"{p}.population", f"<= {MAX_COHORT_POPULATION}", c.population)
        self.finite_positive(f"{p}.rate_fraction", c.rate_fraction)
        self.slo(f"{p}.slo_class", c.slo_class)
        self.arrival(f"{p}.arrival", c.arrival, check_process=True, check_cv=True)
        self.dist(f"{p}.input_distribution", c.input_distribution)
        self.dist(f"{p}.output_distribution", c.output_distribution)
        if c.diurnal is not None:
            r = c.diurnal.peak_to_trough_ratio
            if not math.isfinite(r) or r < 1.0:
                self.fail(f"{p}.diurnal.peak_to_trough_ratio", "a finite number >= 1", r)
            if not 0 <= c.diurnal.peak_hour <= 23:
                self.fail(f"{p}.diurnal.peak_hour", "in 0..23", c.diurnal.peak_hour)
        if c.spike is not None:
            if c.spike.start_time_us < 0:
                self.fail(f"{p}.spike.start_time_us", ">= 0", c.spike.start_time_us)
            if c.spike.duration_us <= 0:
                self.fail(f"{p}.spike.duration_us", "> 0", c.spike.duration_us)
        if c.drain is not None:
            if c.drain.start_time_us < 0:
                self.fail(f"{p}.drain.start_time_us", ">= 0", c.drain.start_time_us)
            if c.drain.ramp_duration_us <= 0:
                self.fail(f"{p}.drain.ramp_duration_us", "> 0", c.drain.ramp_duration_us)
        if c.prefix_length < 0:
            self.fail(f"{p}.prefix_length", ">= 0 (0 = the default of 50 tokens)", c.prefix_length)
        if c.prefix_sharing not in PREFIX_SHARING:
            self.fail(f"{p}.prefix_sharing", "shared or per_member", c.prefix_sharing,
                      "shared, per_member (or empty = shared)")
        if c.prefix_sharing == "per_member" and not c.prefix_group:
            self.fail(f"{p}.prefix_group", "set when prefix_sharing is per_member", c.prefix_group)
        self.common_tail(p, c)
        self.extras(p, c)

    def run(self, spec: WorkloadSpec):
        if spec.category not in CATEGORIES:
            self.fail("category", "a known category", spec.category, "language, multimodal, reasoning (or empty)")
        has_rate = any(c.concurrency == 0 for c in spec.clients) or bool(spec.cohorts)
        if has_rate:
            if spec.aggregate_rate == 0:  # absolute rate mode: every window carries its own rate
                for i, c in enumerate(spec.clients):
                    if c.concurrency != 0:
                        continue
                    if not c.lifecycle:
                        self.fail(f"clients[{i}].lifecycle", "a list of windows with trace_rate when "
                                  "aggregate_rate is 0 (absolute rate mode)", "none", raw=True)
                    for j, w in enumerate(c.lifecycle):
                        if w.trace_rate is None:
                            self.fail(f"clients[{i}].lifecycle.windows[{j}].trace_rate",
                                      "set when aggregate_rate is 0 (absolute rate mode)", "none", raw=True)
                for i, k in enumerate(spec.cohorts):
                    p = f"cohorts[{i}]"
                    if k.diurnal is not None:
                        self.fail(f"{p}.diurnal", "absent when aggregate_rate is 0 (absolute rate mode; use a "
                                  "spike with trace_rate)", "a diurnal pattern", raw=True)
                    if k.drain is not None:
                        self.fail(f"{p}.drain", "absent when aggregate_rate is 0 (absolute rate mode; use a "
                                  "spike with trace_rate)", "a drain pattern", raw=True)
                    if k.spike is None:
                        self.fail(f"{p}.spike", "a spike with trace_rate when aggregate_rate is 0 (absolute "
                                  "rate mode)", "none", raw=True)
                    if k.spike.trace_rate is None:
                        self.fail(f"{p}.spike.trace_rate", "set when aggregate_rate is 0 (absolute rate mode)",
                                  "none", raw=True)
                    self.finite_positive(f"{p}.spike.trace_rate", k.spike.trace_rate)
            else:
                self.finite_positive("aggregate_rate", spec.aggregate_rate)
        if not spec.clients and spec.servegen_data is None and not spec.cohorts:
            self.fail("clients", "non-empty (or cohorts or servegen_data given)", "no workload source", raw=True,
                      valid="clients, cohorts, servegen_data, inference_perf")
        for i, c in enumerate(spec.clients):
            self.client(i, c)
        conc = [i for i, c in enumerate(spec.clients) if c.concurrency > 0]
        multi = [f"clients[{i}]" for i, c in enumerate(spec.clients)
                 if c.reasoning is not None and c.reasoning.multi_turn is not None]
        multi += [f"cohorts[{i}]" for i, c in enumerate(spec.cohorts)
                  if c.reasoning is not None and c.reasoning.multi_turn is not None]
        if conc and multi:
            self.fail(f"clients[{conc[0]}].concurrency", "0 when the spec has multi-turn clients (concurrency and "
                      "multi-turn clients cannot be mixed)", f"{spec.clients[conc[0]].concurrency} with multi-turn "
                      f"{multi[0]}", raw=True)
        for i, c in enumerate(spec.cohorts):
            self.cohort(i, c)
        explicit, empty = [], []
        if spec.inference_perf is None and spec.servegen_data is None:
            for i, c in enumerate(spec.clients):
                (explicit if c.slo_class else empty).append(f"clients[{i}]")
        for i, c in enumerate(spec.cohorts):
            (explicit if c.slo_class else empty).append(f"cohorts[{i}]")
        if explicit and empty:
            self.fail(f"{empty[0]}.slo_class", "set on every client and cohort or on none",
                      f"{len(explicit)} set ({', '.join(explicit[:3])}) and {len(empty)} empty "
                      f"({', '.join(empty[:3])})", raw=True, valid="all set, or all empty")


def _check_sources(spec: WorkloadSpec, where: str) -> None:
    names = []
    if spec.clients:
        names.append("clients")
    if spec.servegen_data is not None:
        names.append("servegen_data")
    if spec.inference_perf is not None:
        names.append("inference_perf")
    if len(names) > 1:
        raise ConfigError(f"{where}: {names[1]} must not be combined with {names[0]} (workload sources are "
                          f"mutually exclusive), got {', '.join(names)}; valid: exactly one of clients, "
                          f"servegen_data, inference_perf (cohorts may accompany clients)")


def _where(spec, where: Optional[str]) -> str:
    return where or getattr(spec, "_yaml_where", None) or "workload spec"


def _with_inference_perf(spec: WorkloadSpec, where: str, warn: bool = False) -> WorkloadSpec:
    """A copy of ``spec`` with ``inference_perf`` expanded into clients (BLIS keeps the marker set)."""
    if spec.inference_perf is None or spec.clients:
        return spec
    clients, category, aggregate = expand_inference_perf(spec.inference_perf, _where(spec, where))
    if warn and spec.aggregate_rate > 0 and spec.aggregate_rate != aggregate:
        log.warning("overriding aggregate_rate %.2f with sum of stage rates %.2f", spec.aggregate_rate, aggregate)
    out = replace(spec, clients=clients, category=spec.category or category, aggregate_rate=aggregate)
    return _carry(spec, out, where)


def _carry(src, dst, where: Optional[str] = None):
    """Copy the parser's line map and file name from ``src`` to ``dst`` (a modified copy)."""
    dst._yaml_lines = getattr(src, "_yaml_lines", {})
    dst._yaml_where = _where(src, where)
    return dst


def validate_workload_spec(spec: WorkloadSpec, where: Optional[str] = None) -> None:
    """BLIS's spec checks in its order: mutually exclusive sources, inference-perf expansion, ``Validate``.

    Raises :class:`ConfigError` for the first failure, naming the YAML path (and
    its line when the spec came from :func:`parse_workload_spec`).
    ``servegen_data`` files are not read here.
    """
    where = _where(spec, where)
    _check_sources(spec, where)
    work = _with_inference_perf(spec, where)
    _Validator(work, where).run(work)


# ---------------------------------------------------------------------------
# inference_perf expansion (§4.13)
# ---------------------------------------------------------------------------
def _go_int(x: float) -> int:
    """Go's ``int(x)`` for finite float64 values (truncation toward zero)."""
    return int(x) if math.isfinite(x) else INT64_MIN


def _distribute(total: int, n: int) -> List[int]:
    base, rem = divmod(total, n)
    return [base + (1 if i < rem else 0) for i in range(n)]


def _ip_reasoning(rate: float, sessions: int, rounds: int) -> ReasoningSpec:
    return ReasoningSpec(
        reason_ratio_distribution=DistSpec("constant", {"value": 0.0}),
        multi_turn=MultiTurnSpec(max_rounds=rounds, think_time_us=_go_int(sessions / rate * 1e6),
                                 context_growth="", single_session=True))


def validate_inference_perf(ip: InferencePerfSpec, where: str = "workload spec") -> None:
    """BLIS's ``validateInferencePerfSpec`` (§4.13); the first failure raises :class:`ConfigError`."""
    def fail(path, constraint, got, valid=None):
        msg = f"{where}: inference_perf.{path} must be {constraint}, got {got}"
        raise ConfigError(msg + (f"; valid: {valid}" if valid else ""))

    if not ip.stages:
        fail("stages", "a non-empty list of {rate, duration}", "[]")
    for i, st in enumerate(ip.stages):
        if st.duration <= 0:
            fail(f"stages[{i}].duration", "> 0 (seconds)", st.duration)
        if not math.isfinite(st.rate) or st.rate <= 0:
            fail(f"stages[{i}].rate", "a finite number > 0 (requests/s)", go_format_float(st.rate))
    sp = ip.shared_prefix
    if sp is None:
        fail("shared_prefix", "set", "none", valid=", ".join(k for k, _ in S_SHARED_PREFIX.fields))
    for name in ("num_unique_system_prompts", "num_users_per_system_prompt"):
        if getattr(sp, name) <= 0:
            fail(f"shared_prefix.{name}", "> 0", getattr(sp, name))
    for name in ("system_prompt_len", "question_len", "output_len"):
        if getattr(sp, name) < 0:
            fail(f"shared_prefix.{name}", ">= 0", getattr(sp, name))


def expand_inference_perf(ip: InferencePerfSpec, where: str = "workload spec"
                          ) -> Tuple[List[ClientSpec], str, float]:
    """BLIS's ``ExpandInferencePerfSpec``: ``(clients, category, aggregate_rate)``.

    One stage: N*M clients ``prompt-<p>-user-<u>`` sharing the stage's request
    total evenly; single-request clients draw from a normalised-exponential
    sequence, multi-turn clients are one Poisson-started session each.  Several
    stages: N*M clients per stage ``stage-<s>-prompt-<p>-user-<u>``, each active
    in its stage's window at a fixed Poisson rate of ``rate / (N*M)``.
    """
    validate_inference_perf(ip, where)
    sp = ip.shared_prefix
    n = sp.num_unique_system_prompts * sp.num_users_per_system_prompt
    multi_turn = sp.enable_multi_turn_chat
    category = "reasoning" if multi_turn else "language"

    def client(cid, group, frac, **kw):
        return ClientSpec(id=cid, tenant_id=group, slo_class="standard", rate_fraction=frac,
                          input_distribution=DistSpec("constant", {"value": float(sp.question_len)}),
                          output_distribution=DistSpec("constant", {"value": float(sp.output_len)}),
                          prefix_group=group, prefix_length=sp.system_prompt_len, **kw)

    def stage_total(s, st):
        total = _go_int(st.rate * st.duration)
        if total < 1:
            raise ConfigError(f"{where}: inference_perf.stages[{s}] rate x duration must give >= 1 request, got "
                              f"{go_format_float(st.rate)} x {st.duration} = {total}; increase rate or duration")
        return total

    clients: List[ClientSpec] = []
    if len(ip.stages) == 1:
        st = ip.stages[0]
        aggregate = float(st.rate)
        frac = 1.0 / n
        total = stage_total(0, st)
        if not multi_turn and n > 1_000_000:
            raise ConfigError(f"{where}: inference_perf.shared_prefix client count (N x M) must be <= 1000000, "
                              f"got {n}")
        counts = _distribute(total, n)
        duration_us = st.duration * 1_000_000
        k = 0
        for p in range(sp.num_unique_system_prompts):
            group = f"prompt-{p}"
            for u in range(sp.num_users_per_system_prompt):
                cid = f"prompt-{p}-user-{u}"
                count = counts[k]
                k += 1
                if multi_turn:
                    clients.append(client(cid, group, frac, arrival=ArrivalSpec("poisson"),
                                          reasoning=_ip_reasoning(st.rate, n, count)))
                    continue
                if count <= 0:
                    raise ConfigError(f"{where}: inference_perf client {cid} must get >= 1 request, got 0 "
                                      f"(rate x duration = {sum(counts)} < {n} clients); increase rate or duration")
                if count > 10_000_000:
                    raise ConfigError(f"{where}: inference_perf requests per client must be <= 10000000, "
                                      f"got {count}; reduce rate or duration, or add clients")
                if duration_us < count:
                    raise ConfigError(f"{where}: inference_perf.stages[0].duration in µs must be >= the requests "
                                      f"per client ({count}), got {duration_us}")
                clients.append(client(cid, group, frac, arrival=ArrivalSpec("inference_perf"),
                                      custom_arrival=CustomArrival("normalized_exponential", count=count,
                                                                   duration_us=duration_us)))
        return clients, category, aggregate

    aggregate = 0.0
    for st in ip.stages:
        aggregate += st.rate
    offset = 0
    for s, st in enumerate(ip.stages):
        window = ActiveWindow(start_us=offset, end_us=offset + st.duration * 1_000_000)
        offset = window.end_us
        custom = CustomArrival("poisson", rate_per_us=st.rate / float(n) / 1e6)
        counts = _distribute(stage_total(s, st), n) if multi_turn else None
        k = 0
        for p in range(sp.num_unique_system_prompts):
            group = f"prompt-{p}"
            for u in range(sp.num_users_per_system_prompt):
                extra = {}
                if multi_turn:
                    extra["reasoning"] = _ip_reasoning(st.rate, n, counts[k])
                k += 1
                clients.append(client(f"stage-{s}-prompt-{p}-user-{u}", group, 1.0,
                                      arrival=ArrivalSpec("inference_perf"), custom_arrival=custom,
                                      lifecycle=[copy.copy(window)], **extra))
    return clients, category, aggregate


# ---------------------------------------------------------------------------
# Cohort expansion (§4.12)
# ---------------------------------------------------------------------------
def diurnal_windows(d: DiurnalSpec) -> List[ActiveWindow]:
    """24 hourly windows; hour h is active for ``trunc(3.6e9 * m(h))`` µs (at least 1)."""
    r = float(d.peak_to_trough_ratio)
    out = []
    for h in range(24):
        angle = 2.0 * math.pi * float(h - d.peak_hour) / 24.0
        m = (1.0 + math.cos(angle)) / 2.0 * (1.0 - 1.0 / r) + 1.0 / r
        dur = _go_int(float(US_PER_HOUR) * m)
        dur = max(1, min(dur, US_PER_HOUR))
        out.append(ActiveWindow(start_us=h * US_PER_HOUR, end_us=h * US_PER_HOUR + dur))
    return out


def spike_window(s: SpikeSpec, population: int = 1) -> ActiveWindow:
    """``[start, start + duration)``, carrying ``trace_rate / population`` when set."""
    rate = None if s.trace_rate is None else s.trace_rate / float(population)
    return ActiveWindow(start_us=s.start_time_us, end_us=s.start_time_us + s.duration_us, trace_rate=rate)


def drain_windows(d: DrainSpec) -> List[ActiveWindow]:
    """``[0, start)`` (when start > 0), then 10 segments active ``seg*(10-i)/10`` µs each."""
    seg = max(1, d.ramp_duration_us // 10)
    out = []
    if d.start_time_us > 0:
        out.append(ActiveWindow(start_us=0, end_us=d.start_time_us))
    for i in range(10):
        start = d.start_time_us + i * seg
        active = max(1, _go_int(float(seg) * (float(10 - i) / 10.0)))
        out.append(ActiveWindow(start_us=start, end_us=start + active))
    return out


def expand_cohorts(cohorts: List[CohortSpec]) -> List[ClientSpec]:
    """BLIS's ``ExpandCohorts``: member j of cohort ``id`` is client ``<id>-<j>``.

    Members share the cohort's reasoning / multimodal / network / arrival
    objects (read-only), get ``rate_fraction / population`` each, the group
    ``<group>-<j>`` under ``per_member`` sharing, and lifecycle windows built
    from diurnal, spike and drain in that order.
    """
    out: List[ClientSpec] = []
    for k in cohorts:
        if k.population <= 0:
            continue
        frac = k.rate_fraction / float(k.population)
        base: List[ActiveWindow] = []
        if k.diurnal is not None:
            base += diurnal_windows(k.diurnal)
        if k.spike is not None:
            base.append(spike_window(k.spike, k.population))
        if k.drain is not None:
            base += drain_windows(k.drain)
        for j in range(k.population):
            group = k.prefix_group
            if k.prefix_sharing == "per_member" and k.prefix_group:
                group = f"{k.prefix_group}-{j}"
            out.append(ClientSpec(
                id=f"{k.id}-{j}", tenant_id=k.tenant_id, slo_class=k.slo_class, model=k.model, adapter=k.adapter,
                rate_fraction=frac, arrival=k.arrival, input_distribution=k.input_distribution,
                output_distribution=k.output_distribution, prefix_group=group, streaming=k.streaming,
                prefix_length=k.prefix_length, reasoning=k.reasoning, closed_loop=k.closed_loop, timeout=k.timeout,
                slo_target_us=k.slo_target_us, network=k.network, multimodal=k.multimodal,
                lifecycle=[copy.copy(w) for w in base] if base else None))
    return out


def expand_workload_spec(spec: WorkloadSpec, where: Optional[str] = None, *, validate: bool = True) -> WorkloadSpec:
    """The client list BLIS generates from: a new spec whose ``clients`` are the
    explicit (or inference-perf) clients followed by every cohort member, with
    ``cohorts``, ``inference_perf`` and ``servegen_data`` cleared.

    Runs the checks of :func:`validate_workload_spec` first (``validate=False``
    skips ``Validate`` but not the source and inference-perf checks).
    ``servegen_data`` is loaded into cohorts (:mod:`blis.workload.servegen`, §4.14)
    with ``aggregate_rate`` 0 (absolute rate mode), as BLIS does.
    """
    where = _where(spec, where)
    _check_sources(spec, where)
    work = _with_inference_perf(spec, where, warn=True)
    if work.servegen_data is not None and not work.clients and not work.cohorts:
        from .servegen import load_servegen_cohorts

        try:
            cohorts, category = load_servegen_cohorts(work.servegen_data, int(work.seed))
        except ConfigError as e:
            raise ConfigError(f"{where}: loading ServeGen data: {e}") from None
        work = _carry(work, replace(work, cohorts=cohorts, aggregate_rate=0.0,
                                    category=category or work.category))
    clients = [copy.copy(c) for c in work.clients]
    for c in clients:  # BLIS upgrades again after expansion (a no-op for v2 specs)
        if work.version in ("", "1") and c.slo_class in V1_SLO_CLASSES:
            c.slo_class = V1_SLO_CLASSES[c.slo_class]
    work = _carry(work, replace(work, version="2" if work.version in ("", "1") else work.version, clients=clients))
    if validate:
        _Validator(work, where).run(work)
    members = expand_cohorts(work.cohorts)
    return replace(work, clients=work.clients + members, cohorts=[], inference_perf=None, servegen_data=None)


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------
def _generate_custom(spec: WorkloadSpec, horizon_us: int, max_requests: int):
    """:func:`generate_requests` for a client list with inference-perf samplers.

    Same stream layout as the generator (prefix draws, one seed per client with
    a rate > 0), but a client with ``custom_arrival`` first draws one
    ``Int63()`` from its stream to seed its sampler's RNG, as BLIS does.
    """
    from ..kernels.gorand import go_seed, int63_nb
    from ..rng import GoRand, SUBSYSTEM_WORKLOAD_GEN, derive_seed

    clients = spec.clients
    seed = int(spec.seed)
    if horizon_us <= 0:
        return _syn._build_table([], seed, [], [])
    _syn._check_supported(clients)
    rng = GoRand(derive_seed(seed, SUBSYSTEM_WORKLOAD_GEN))
    rates = _syn.normalize_rates(clients, float(spec.aggregate_rate))
    prefix_len: Dict[str, int] = {}
    for c in clients:
        if c.prefix_group and c.prefix_group not in prefix_len:
            prefix_len[c.prefix_group] = c.prefix_length if c.prefix_length > 0 else _syn.DEFAULT_PREFIX_LENGTH
            rng.skip_intn(_syn.MAX_TOKEN_ID, prefix_len[c.prefix_group])
    cap = max_requests if max_requests > 0 else 0
    parts = []
    for idx, c in enumerate(clients):
        if rates[idx] <= 0:
            continue
        client_seed = rng.int63()
        state = go_seed(client_seed)
        where = f"client {c.id!r}"
        if c.custom_arrival is not None:
            a = c.custom_arrival.make_sampler(GoRand(int(int63_nb(state))))
        else:
            a = make_arrival_sampler(c.arrival.process, rates[idx], cv=c.arrival.cv, shape=c.arrival.shape,
                                     scale=c.arrival.scale)
        s_in = make_length_sampler(c.input_distribution.type, c.input_distribution.params,
                                   where=f"{where} input_distribution")
        s_out = make_length_sampler(c.output_distribution.type, c.output_distribution.params,
                                    where=f"{where} output_distribution")
        parts.append(_syn.generate_client_part(idx, c, client_seed, state, a, s_in, s_out, rates[idx], horizon_us,
                                               max_requests, cap, prefix_len))
    return _syn.build_table(parts, seed, clients, prefix_len, max_requests)


def _check_generatable(spec: WorkloadSpec, where: str) -> None:
    """Nothing left to refuse here: concurrency and closed-loop multi-turn clients go to
    :mod:`blis.workload.sessions` (see :func:`generate_spec_requests`)."""


def generate_spec_requests(spec: WorkloadSpec, horizon_us: int = INT64_MAX, max_requests: Optional[int] = None,
                           where: Optional[str] = None):
    """Expand ``spec`` (cohorts, inference_perf), validate it and generate its requests as BLIS does.

    ``max_requests`` defaults to ``spec.num_requests`` (0 = no cap).
    Closed-loop multi-turn and concurrency clients yield their first rounds and a
    ``table.sessions`` plan; the simulation generates the follow-ups.
    """
    where = _where(spec, where)
    if max_requests is None:
        max_requests = int(spec.num_requests)
    if max_requests < 0:
        raise ConfigError(f"{where}: num_requests must be >= 0, got {max_requests}")
    if horizon_us <= 0:  # BLIS returns no requests before expanding or validating
        return _syn.generate_requests(WorkloadSpec(seed=spec.seed), horizon_us, max_requests)
    expanded = expand_workload_spec(spec, where)
    _check_generatable(expanded, where)
    # single-shot closed-loop clients default to a 300 s deadline, like session clients
    clients = []
    for c in expanded.clients:
        if c.closed_loop and c.timeout is None:
            c = replace(c, timeout=_syn.DEFAULT_TIMEOUT_US)
        clients.append(c)
    expanded = replace(expanded, clients=clients)
    from . import sessions as _sessions
    generate = _syn.generate_requests
    if any(c.custom_arrival is not None for c in clients) and not getattr(_syn, "SUPPORTS_CUSTOM_ARRIVAL", False):
        generate = _generate_custom
    if _sessions.needs_sessions(clients):  # closed loop: round 0 / seeds now, follow-ups while simulating
        table, plan = _sessions.generate_session_workload(expanded, int(horizon_us), int(max_requests), generate)
        table.sessions = plan
        return table
    return generate(expanded, int(horizon_us), int(max_requests))


def workload_from_spec_file(path: Union[str, os.PathLike], *, seed: Optional[int] = None,
                            horizon_us: Optional[int] = None, num_requests: Optional[int] = None,
                            timeout_s: Optional[int] = None, with_spec: bool = False):
    """``blis run --workload-spec <path>`` (spec/04 §1): ``(RequestTable, horizon_us)``.

    Pass each flag only when it was given explicitly on the command line
    (``None`` = not given):

    * ``seed``: overrides ``spec.seed``;
    * ``horizon_us``: the horizon; otherwise ``spec.horizon`` when > 0, else
      unbounded (``INT64_MAX``);
    * ``num_requests``: overrides ``spec.num_requests``;
    * ``timeout_s``: 0 is an error; > 0 sets every deadline to arrival +
      timeout, < 0 removes every deadline.  Not given: the spec's own
      per-client ``timeout`` rules apply.

    Generation must be bounded by ``num_requests`` or a horizon.  With
    ``with_spec=True`` the result is ``(table, horizon_us, spec)``, the spec as
    loaded with the seed override applied (its ``seed`` is the trace header's
    ``workload_seed``; ``goodput_slo_targets`` feed goodput).
    """
    spec = load_workload_spec(path, validate=False)
    where = _where(spec, None)
    if seed is not None:
        spec.seed = _syn._check_int("--seed", seed)
    if horizon_us is not None:
        horizon = _syn._check_int("--horizon", horizon_us)
    else:
        horizon = spec.horizon if spec.horizon > 0 else INT64_MAX
    if timeout_s is not None:
        timeout_s = _syn._check_int("--timeout", timeout_s)
        if timeout_s == 0:
            raise ConfigError("--timeout must be positive (seconds) or negative to disable, got 0")
        us = timeout_s * 1_000_000 if timeout_s > 0 else 0
        for c in spec.clients:
            c.timeout = us
        for k in spec.cohorts:
            k.timeout = us
    max_requests = spec.num_requests
    if num_requests is not None:
        max_requests = _syn._check_int("--num-requests", num_requests)
        if max_requests < 0:
            raise ConfigError(f"--num-requests must be >= 0, got {max_requests}")
    if max_requests <= 0 and horizon == INT64_MAX:
        raise ConfigError("Workload requires either num_requests or --horizon to bound generation")
    if horizon <= 0:
        raise ConfigError(f"--horizon must be > 0, got {horizon}")
    if max_requests < 0:
        raise ConfigError(f"{where}: num_requests must be >= 0, got {max_requests}")
    table = generate_spec_requests(spec, horizon, max_requests, where)
    if timeout_s is not None:
        _syn.apply_timeout(table, timeout_s)
    if with_spec:
        return table, horizon, spec
    return table, horizon


# ---------------------------------------------------------------------------
# Dumping
# ---------------------------------------------------------------------------
def _plain(obj, S: _Struct, path: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    default = S.cls()
    if getattr(obj, "custom_arrival", None) is not None:
        raise ConfigError(f"dump_workload_spec: {path}.custom_arrival must be None (an inference-perf sampler "
                          f"has no YAML form; dump the unexpanded spec), got {obj.custom_arrival!r}")
    for key, kind in S.fields:
        v = getattr(obj, key)
        tag = kind[0]
        sub = f"{path}.{key}" if path else key
        if v is None:
            continue
        if tag in ("str", "int", "float", "bool"):
            if v != getattr(default, key) or (S is S_SPEC and key == "version"):
                out[key] = {"str": str, "int": int, "float": float, "bool": bool}[tag](v)
        elif tag == "opt":
            out[key] = {"int": int, "float": float, "bool": bool}[kind[1]](v)
        elif tag == "struct":
            d = _plain(v, kind[1], sub)
            if d:
                out[key] = d
        elif tag == "ptr":
            out[key] = _plain(v, kind[1], sub)
        elif tag == "list":
            if v:
                out[key] = [_plain(x, kind[1], f"{sub}[{i}]") for i, x in enumerate(v)]
        elif tag == "params":
            if v:
                out[key] = {str(k): float(x) for k, x in v.items()}
        elif tag == "map":
            if v:
                out[key] = {str(k): _plain(x, kind[1], f"{sub}.{k}") for k, x in v.items()}
        elif tag == "lifecycle":
            out[key] = {"windows": [_plain(w, S_WINDOW, f"{sub}.windows[{i}]") for i, w in enumerate(v)]}
    return out


def dump_workload_spec(spec: WorkloadSpec) -> str:
    """``spec`` as workload-spec YAML (keys in BLIS's order, defaults omitted).

    ``parse_workload_spec(dump_workload_spec(s), validate=False) == s`` for any
    unexpanded spec ``s`` (v1 specs come back upgraded).
    """
    import yaml

    return yaml.safe_dump(_plain(spec, S_SPEC, ""), sort_keys=False, allow_unicode=True, width=1 << 30)
