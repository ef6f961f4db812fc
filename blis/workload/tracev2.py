"""TraceV2: BLIS's workload/result trace (header YAML + data CSV), plus Parquet.

* :func:`read_tracev2` parses a header (strict: unknown keys, duplicate keys and
  ill-typed values are errors) and a data CSV (optional columns found by header
  name, fixed columns by position, Go's row checks) into a :class:`TraceV2`:
  the header as a normalised dict and the records as numpy columns.
* :func:`tracev2_to_requests` / :func:`load_tracev2` build the
  :class:`blis.requests.RequestTable` that ``blis replay`` (fixed session mode)
  injects: arrival = ``send_time_us`` if > 0 else ``arrival_time_us``; input =
  the group prefix + ``server_input_tokens`` (when > 0 and no prefix group) or
  ``input_tokens``; name ``request_<request_id>``.
* :func:`write_tracev2` writes header + CSV exactly as BLIS does (yaml.v3 layout,
  BLIS's column order and optional-column rules, Go ``encoding/csv`` quoting),
  through a temporary file renamed into place.
* :func:`records_from_simulation` is BLIS's ``RequestsToTraceRecords`` (§5.3).
* :func:`write_tracev2_parquet` / :func:`read_tracev2_parquet` store the same
  records as Parquet (header YAML in the schema metadata, units per field).

Differences from BLIS, all on malformed input: CSV quoting errors are those of
Python's ``csv`` module (Go rejects a bare ``"`` inside an unquoted field, we
keep it); when rows of one prefix group carry different prefix lengths, the
table's ``prefix_len`` is the length actually prepended (the group's first
positive length), where BLIS keeps each row's own value.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError
from ..requests import RequestTable
from .synthesis import EXTRA_REQUEST_FIELDS, _GOLDEN, _mix64, go_format_float, group_seed

PathLike = Union[str, os.PathLike]

# ---------------------------------------------------------------------------
# Record schema
# ---------------------------------------------------------------------------
#: every trace record field: (name, dtype, unit, doc); export order with all optional columns present
RECORD_FIELDS: List[Tuple[str, Any, str, str]] = [
    ("request_id", np.int64, "", "row id (run/replay: index in export order)"),
    ("client_id", object, "", "client that generated the request"),
    ("tenant_id", object, "", "tenant"),
    ("slo_class", object, "", "SLO class"),
    ("vllm_priority", np.int64, "", "priority sent to vLLM (observe only; optional column)"),
    ("session_id", object, "", "session id (multi-turn)"),
    ("round_index", np.int64, "", "round within the session"),
    ("prefix_group", object, "", "shared-prefix group"),
    ("prefix_length", np.int64, "tokens", "shared prefix length"),
    ("streaming", np.bool_, "", "streaming request"),
    ("input_tokens", np.int64, "tokens", "input tokens excluding the prefix"),
    ("output_tokens", np.int64, "tokens", "output tokens"),
    ("text_tokens", np.int64, "tokens", "multimodal: text tokens"),
    ("image_tokens", np.int64, "tokens", "multimodal: image tokens"),
    ("audio_tokens", np.int64, "tokens", "multimodal: audio tokens"),
    ("video_tokens", np.int64, "tokens", "multimodal: video tokens"),
    ("reason_ratio", np.float64, "", "reasoning share of the output, in [0, 1]"),
    ("model", object, "", "model name (empty = default model)"),
    ("deadline_us", np.int64, "us", "absolute deadline (0 = none)"),
    ("slo_target_us", np.int64, "us", "per-request TTFT target (0 = none; optional column)"),
    ("server_input_tokens", np.int64, "tokens", "server-reported prompt tokens (0 = not recorded)"),
    ("arrival_time_us", np.int64, "us", "scheduled arrival time"),
    ("send_time_us", np.int64, "us", "send time (replay injects here when > 0)"),
    ("first_chunk_time_us", np.int64, "us", "first chunk / token time (0 = none)"),
    ("last_chunk_time_us", np.int64, "us", "last chunk / token time (0 = none)"),
    ("num_chunks", np.int64, "", "streamed chunks received"),
    ("status", object, "", "ok, error, timeout or incomplete"),
    ("error_message", object, "", "error text"),
    ("finish_reason", object, "", "server finish_reason"),
    ("x_request_id", object, "", "x-request-id header (real mode; optional column)"),
    ("adapter", object, "", "LoRA adapter id (optional column)"),
    ("think_time_us", np.int64, "us", "recorded think time before this round (optional column)"),
]
RECORD_DTYPES = {name: dtype for name, dtype, _, _ in RECORD_FIELDS}
STRING_FIELDS = tuple(name for name, dtype, _, _ in RECORD_FIELDS if dtype is object)

#: the CSV columns that are always written, in order
BASE_COLUMNS = (
    "request_id", "client_id", "tenant_id", "slo_class", "session_id", "round_index",
    "prefix_group", "prefix_length", "streaming", "input_tokens", "output_tokens",
    "text_tokens", "image_tokens", "audio_tokens", "video_tokens", "reason_ratio",
    "model", "deadline_us", "server_input_tokens",
    "arrival_time_us", "send_time_us", "first_chunk_time_us", "last_chunk_time_us",
    "num_chunks", "status", "error_message", "finish_reason",
)
TRAILING_OPTIONAL = ("x_request_id", "adapter", "think_time_us")

STATUS_OK = "ok"
STATUS_TIMEOUT = "timeout"
STATUS_INCOMPLETE = "incomplete"
STATUS_ERROR = "error"
#: status codes accepted by :func:`records_from_simulation` (index = code)
STATUS_NAMES = (STATUS_OK, STATUS_TIMEOUT, STATUS_INCOMPLETE, STATUS_ERROR)

# ---------------------------------------------------------------------------
# Header schema (yaml.v3 struct order; third item = omitempty)
# ---------------------------------------------------------------------------
_SERVER = (
    ("type", "str", True), ("model", "str", True), ("tensor_parallel", "int", True),
    ("max_num_seqs", "int", True), ("block_size", "int", True),
    ("gpu_memory_utilization", "float", True), ("max_model_len", "int", True),
)
_NETWORK = (("measured_rtt_ms", "float", True),)
_SLO_DIMS = (("ttft_ms", "float", True), ("itl_ms", "float", True), ("e2e_ms", "float", True))
_KV_TIER = (
    ("type", "str", False), ("root_dir", "str", False), ("n_read_threads", "int", False),
    ("n_write_threads", "int", False), ("locality", "str", True), ("enable_kv_events", "bool", False),
    ("direct_io", "bool", False), ("device_class", "str", True), ("read_bandwidth", "float", False),
    ("write_bandwidth", "float", False), ("base_latency", "float", False),
    ("saturation_queue_depth", "int", False), ("single_transfer_fraction", "float", False),
    ("latency_jitter_stddev", "float", False),
)
_KV_OFFLOAD = (
    ("cpu_bytes_to_use", "int", False), ("per_block_bytes", "int", False), ("block_size", "int", False),
    ("blocks_per_chunk", "int", False), ("tokens_per_hash", "int", False), ("eviction_policy", "str", False),
    ("offload_prompt_only", "bool", False), ("self_describing_kv_events", "bool", False),
    ("secondary_tiers", ("list", _KV_TIER), True),
)
_OBSERVED = (
    ("source", "str", False), ("hit_rate", "float", False), ("block_hits", "int", False),
    ("block_queries", "int", False), ("read_time_total", "float", True), ("write_time_total", "float", True),
    ("vllm_commit", "str", True),
)
HEADER_SCHEMA = (
    ("trace_version", "int", False), ("time_unit", "str", False), ("created_at", "str", True),
    ("mode", "str", False), ("warm_up_requests", "int", False), ("workload_seed", "optint", True),
    ("workload_spec", "str", True), ("session_context_growth", "str", True),
    ("server", ("struct", _SERVER), True), ("network", ("struct", _NETWORK), True),
    ("goodput_slo_targets", ("map", _SLO_DIMS), True), ("kv_offload", ("struct", _KV_OFFLOAD), True),
    ("observed_kv_metrics", ("struct", _OBSERVED), True),
)

_ZERO = {"int": 0, "float": 0.0, "str": "", "bool": False, "optint": None}


def _defaults(schema) -> Dict[str, Any]:
    out = {}
    for key, typ, _ in schema:
        if isinstance(typ, tuple):
            out[key] = [] if typ[0] == "list" else None
        else:
            out[key] = _ZERO[typ]
    return out


def make_header(mode: str = "generated", *, trace_version: int = 3, time_unit: str = "microseconds",
                workload_seed: Optional[int] = None, **fields_) -> Dict[str, Any]:
    """A normalised header dict (every schema key present) with the given values.

    ``blis run`` writes ``make_header("generated", workload_seed=seed)`` (plus
    ``goodput_slo_targets`` / ``kv_offload`` when configured); replay uses mode
    ``"replayed"`` and copies ``observed_kv_metrics`` through.
    """
    h = _defaults(HEADER_SCHEMA)
    h.update(trace_version=trace_version, time_unit=time_unit, mode=mode, workload_seed=workload_seed)
    for k, v in fields_.items():
        if k not in h:
            raise ConfigError(f"trace header: unknown key {k!r}; valid: {', '.join(h)}")
        h[k] = v
    return _normalise_header(h)


def _normalise_struct(schema, value, where):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {value!r}")
    out = _defaults(schema)
    known = {k for k, _, _ in schema}
    for k, v in value.items():
        if k not in known:
            raise ConfigError(f"{where}: unknown key {k!r}; valid: {', '.join(sorted(known))}")
        out[k] = v
    for key, typ, _ in schema:
        v = out[key]
        if isinstance(typ, tuple):
            kind, sub = typ
            if kind == "struct":
                out[key] = _normalise_struct(sub, v, f"{where}.{key}")
            elif kind == "map":
                out[key] = None if v is None else {str(mk): _normalise_struct(sub, mv or {}, f"{where}.{key}.{mk}")
                                                   for mk, mv in v.items()}
            else:
                out[key] = [_normalise_struct(sub, item or {}, f"{where}.{key}[{i}]") for i, item in enumerate(v or [])]
    return out


def _normalise_header(h):
    return _normalise_struct(HEADER_SCHEMA, h, "trace header")


# ---------------------------------------------------------------------------
# TraceV2 container
# ---------------------------------------------------------------------------
@dataclass
class TraceV2:
    """A TraceV2 trace: ``header`` (normalised dict) and ``records`` (name -> numpy column)."""

    header: Dict[str, Any]
    records: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.header = _normalise_header(self.header)
        n = None
        for name, dtype, _, _ in RECORD_FIELDS:
            col = self.records.get(name)
            if col is not None:
                n = len(col)
                break
        n = n or 0
        for name, dtype, _, _ in RECORD_FIELDS:
            col = self.records.get(name)
            if col is None:
                self.records[name] = (np.full(n, "", dtype=object) if dtype is object else np.zeros(n, dtype))
            else:
                if dtype is object:
                    arr = np.empty(len(col), dtype=object)
                    arr[:] = list(col)
                    self.records[name] = arr
                else:
                    self.records[name] = np.asarray(col, dtype=dtype)
                if len(self.records[name]) != n:
                    raise ConfigError(f"trace records: column {name} has {len(col)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.records["request_id"])


# ---------------------------------------------------------------------------
# Go formatting helpers
# ---------------------------------------------------------------------------
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
            "\u2028\u2029\u202f\u205f\u3000"


def go_trim_space(s: str) -> str:
    """Go's ``strings.TrimSpace`` (Unicode White_Space only)."""
    return s.strip(_GO_SPACE)


def go_format_float_f(x: float) -> str:
    """Go's ``strconv.FormatFloat(x, 'f', -1, 64)``: shortest digits, positional."""
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return np.format_float_positional(float(x), unique=True, trim="-")


def _csv_field(s: str) -> str:
    """Go ``encoding/csv`` quoting of one field."""
    if s == "":
        return s
    if s == "\\." or "," in s or '"' in s or "\r" in s or "\n" in s or s[0] in _GO_SPACE:
        return '"' + s.replace('"', '""') + '"'
    return s


# ---------------------------------------------------------------------------
# YAML (yaml.v3-compatible emitter for the header)
# ---------------------------------------------------------------------------
_YAML_MAP_WORDS = {"true", "True", "TRUE", "false", "False", "FALSE", "", "~", "null", "Null", "NULL",
                   ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                   "-.inf", "-.Inf", "-.INF"}
_OLD_BOOLS = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
                        r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?"
                        r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::?[0-9]{2})?))?)?$")
_GO_INT_BASE0 = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")


def _go_parse_int_base0(s: str) -> Optional[int]:
    """``strconv.ParseInt(s, 0, 64)`` (or ParseUint) result, None when it fails."""
    if not _GO_INT_BASE0.match(s):
        return None
    sign = -1 if s[0] == "-" else 1
    body = s.lstrip("+-")
    low = body.lower()
    if low.startswith("0x"):
        v = int(body[2:], 16)
    elif low.startswith("0o"):
        v = int(body[2:], 8)
    elif low.startswith("0b"):
        v = int(body[2:], 2)
    elif len(body) > 1 and body[0] == "0":
        v = int(body[1:], 8)
    else:
        v = int(body)
    v *= sign
    if -(1 << 63) <= v < (1 << 64):
        return v
    return None


def _yaml_resolves_non_str(s: str) -> bool:
    """Would yaml.v3 read the plain scalar ``s`` as something other than a string?"""
    if s in _YAML_MAP_WORDS:
        return True
    if not s:
        return True
    c = s[0]
    if c == ".":
        return bool(re.match(r"^\.[0-9]+([eE][-+]?[0-9]+)?$", s))
    if c in "+-0123456789":
        if _TIMESTAMP.match(s):
            return True
        plain = s.replace("_", "")
        if _go_parse_int_base0(plain) is not None:
            return True
        if _YAML_FLOAT.match(plain):
            return True
        for pre, base in (("0b", 2), ("-0b", 2), ("0o", 8), ("-0o", 8)):
            if plain.startswith(pre) and plain[len(pre):] and re.match(r"^[0-9a-fA-F]+$", plain[len(pre):]):
                try:
                    int(plain[len(pre):], base)
                    return True
                except ValueError:
                    pass
    return False


def _yaml_printable(ch: str) -> bool:
    o = ord(ch)
    return (o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF))


_BREAKS = "\r\n\x85\u2028\u2029"


def _yaml_plain_single_allowed(s: str) -> Tuple[bool, bool]:
    """libyaml's analysis of a scalar: (block plain allowed, single-quoted allowed)."""
    block_ind = flow_ind = False
    special = tabs = line_breaks = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = False
    previous_space = previous_break = False
    if s[:3] in ("---", "..."):
        block_ind = flow_ind = True
    preceded_ws = True
    n = len(s)
    for i, ch in enumerate(s):
        followed_ws = i + 1 >= n or s[i + 1] in " \t" or s[i + 1] in _BREAKS
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif ch in "?:":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif ch == "-" and followed_ws:
                flow_ind = block_ind = True
        else:
            if ch in ",?[]{}":
                flow_ind = True
            elif ch == ":":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif ch == "#" and preceded_ws:
                flow_ind = block_ind = True
        if ch == "\t":
            tabs = True
        elif not _yaml_printable(ch):
            special = True
        if ch == " ":
            if i == 0:
                leading_space = True
            if i == n - 1:
                trailing_space = True
            if previous_break:
                break_space = True
            previous_space, previous_break = True, False
        elif ch in _BREAKS:
            line_breaks = True
            if i == 0:
                leading_break = True
            if i == n - 1:
                trailing_break = True
            if previous_space:
                space_break = True
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_ws = ch in " \t" or ch in _BREAKS or ch == "\0"
    plain = single = True
    if leading_space or leading_break or trailing_space or trailing_break:
        plain = False
    if break_space:
        plain = single = False
    if space_break or tabs or special:
        plain = single = False
    if line_breaks:
        plain = False
    if block_ind:
        plain = False
    return plain, single


_DQ_ESCAPES = {"\0": "0", "\x07": "a", "\b": "b", "\t": "t", "\n": "n", "\x0b": "v", "\f": "f", "\r": "r",
               "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N", "\xa0": "_", "\u2028": "L", "\u2029": "P"}


def _yaml_double_quoted(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if not _yaml_printable(ch) or o == 0xFEFF or ch in _BREAKS or ch in '"\\':
            if ch in _DQ_ESCAPES:
                out.append("\\" + _DQ_ESCAPES[ch])
            elif o <= 0xFF:
                out.append(f"\\x{o:02X}")
            elif o <= 0xFFFF:
                out.append(f"\\u{o:04X}")
            else:
                out.append(f"\\U{o:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def yaml_scalar_str(s: str) -> str:
    """How yaml.v3 ``Marshal`` writes the string ``s`` as a (single-line) mapping value."""
    can_plain = not (_yaml_resolves_non_str(s) or _BASE60.match(s) or s in _OLD_BOOLS)
    if not can_plain:
        return _yaml_double_quoted(s)
    plain, single = _yaml_plain_single_allowed(s)
    if plain:
        return s
    if single:
        return "'" + s.replace("'", "''") + "'"
    return _yaml_double_quoted(s)


def _yaml_literal(s: str, indent: int) -> List[str]:
    """A multi-line string in literal block style (yaml.v3 picks it for strings with a newline)."""
    chomp = "-" if not s.endswith("\n") else ("+" if s.endswith("\n\n") or s == "\n" else "")
    head = "|"
    if s[:1] in (" ", "\n"):
        head += "4"
    head += chomp
    pad = " " * (indent + 4)
    body = s[:-1] if s.endswith("\n") else s
    lines = [pad + ln if ln else "" for ln in body.split("\n")]
    return [head] + lines


def yaml_scalar_float(x: float) -> str:
    """yaml.v3's float64: ``FormatFloat(x, 'g', -1, 64)`` with ``.inf``/``-.inf``/``.nan``."""
    s = go_format_float(x)
    return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(s, s)


def _is_empty(typ, v) -> bool:
    if isinstance(typ, tuple):
        return v is None if typ[0] == "struct" else not v
    return v is None or v == _ZERO.get(typ)  # yaml.v3 isZero: -0.0 counts as zero too


def _emit_struct(schema, values, indent: int, out: List[str], first_prefix: Optional[str] = None) -> None:
    pad = " " * indent
    first = True
    for key, typ, omitempty in schema:
        v = values.get(key)
        if omitempty and _is_empty(typ, v):
            continue
        lead = pad
        if first and first_prefix is not None:
            lead = first_prefix
        first = False
        if isinstance(typ, tuple):
            kind, sub = typ
            if kind == "struct":
                _emit_block(f"{lead}{key}:", sub, v, indent, out)
            elif kind == "map":
                if not v:
                    out.append(f"{lead}{key}: {{}}")
                    continue
                out.append(f"{lead}{key}:")
                for mk in sorted(v):
                    _emit_block(f"{pad}    {yaml_scalar_str(str(mk))}:", sub, v[mk], indent + 4, out)
            else:  # list of structs
                if not v:
                    out.append(f"{lead}{key}: []")
                    continue
                out.append(f"{lead}{key}:")
                for item in v:
                    start = len(out)
                    _emit_struct(sub, item, indent + 6, out, first_prefix=f"{pad}    - ")
                    if len(out) == start:
                        out.append(f"{pad}    - {{}}")
            continue
        out.extend(_scalar_lines(f"{lead}{key}:", typ, v, indent))


def _emit_block(prefix: str, schema, values, indent: int, out: List[str]) -> None:
    start = len(out)
    out.append(prefix)
    _emit_struct(schema, values or {}, indent + 4, out)
    if len(out) == start + 1:
        out[start] = prefix + " {}"


def _scalar_lines(prefix: str, typ, v, indent: int) -> List[str]:
    if typ in ("int", "optint"):
        return [f"{prefix} {int(v or 0)}"]
    if typ == "float":
        return [f"{prefix} {yaml_scalar_float(float(v or 0.0))}"]
    if typ == "bool":
        return [f"{prefix} {'true' if v else 'false'}"]
    s = "" if v is None else str(v)
    if "\n" in s:
        lines = _yaml_literal(s, indent)
        return [f"{prefix} {lines[0]}"] + lines[1:]
    return [f"{prefix} {yaml_scalar_str(s)}"]


def header_to_yaml(header: Dict[str, Any]) -> str:
    """The header as yaml.v3 ``Marshal`` writes BLIS's ``TraceHeader``."""
    out: List[str] = []
    _emit_struct(HEADER_SCHEMA, _normalise_header(header), 0, out)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# YAML (strict header parsing)
# ---------------------------------------------------------------------------
class _Scalar:
    __slots__ = ("value", "plain", "line")

    def __init__(self, value, plain, line):
        self.value, self.plain, self.line = value, plain, line


def _strict_loader():
    import yaml

    class Loader(yaml.BaseLoader):
        pass

    def scalar(loader, node):
        return _Scalar(node.value, node.style is None, node.start_mark.line + 1)

    def mapping(loader, node):
        out = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            key = key.value if isinstance(key, _Scalar) else key
            if not isinstance(key, str):
                raise ConfigError(f"line {knode.start_mark.line + 1}: mapping keys must be strings, got {key!r}")
            if key in out:
                raise ConfigError(f"line {knode.start_mark.line + 1}: mapping key {key!r} already defined")
            out[key] = loader.construct_object(vnode, deep=True)
        return out

    def sequence(loader, node):
        return [loader.construct_object(n, deep=True) for n in node.value]

    Loader.add_constructor("tag:yaml.org,2002:str", scalar)
    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", sequence)
    return Loader


_NULL_WORDS = {"", "~", "null", "Null", "NULL"}


def _is_null(v) -> bool:
    return v is None or (isinstance(v, _Scalar) and v.plain and v.value in _NULL_WORDS)


def _yaml_number(v: _Scalar) -> Optional[float]:
    s = v.value
    if s in (".nan", ".NaN", ".NAN"):
        return math.nan
    if s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"):
        return math.inf
    if s in ("-.inf", "-.Inf", "-.INF"):
        return -math.inf
    plain = s.replace("_", "") if s[:1] in "+-0123456789" else s
    iv = _go_parse_int_base0(plain)
    if iv is not None:
        return iv
    if _YAML_FLOAT.match(plain) or re.match(r"^\.[0-9]+([eE][-+]?[0-9]+)?$", s):
        return float(plain)
    return None


def _convert(typ, v, where: str):
    if _is_null(v):
        if isinstance(typ, tuple):
            return [] if typ[0] == "list" else None
        return _ZERO[typ]
    if isinstance(typ, tuple):
        kind, sub = typ
        if kind == "list":
            if not isinstance(v, list):
                raise ConfigError(f"{where}: must be a sequence, got {_show(v)}")
            return [_convert_struct(sub, item, f"{where}[{i}]") for i, item in enumerate(v)]
        if kind == "map":
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: must be a mapping, got {_show(v)}")
            return {k: _convert_struct(sub, mv, f"{where}.{k}") for k, mv in v.items()}
        return _convert_struct(sub, v, where)
    if not isinstance(v, _Scalar):
        kind = "mapping" if isinstance(v, dict) else "sequence"
        raise ConfigError(f"{where}: must be a scalar ({typ}), got a {kind}")
    if typ == "str":
        return v.value
    if not v.plain:
        raise ConfigError(f"{where}: must be {'an integer' if typ in ('int', 'optint') else 'a ' + typ}, "
                          f"got the string {v.value!r}")
    if typ == "bool":
        if v.value in ("true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON"):
            return True
        if v.value in ("false", "False", "FALSE", "n", "N", "no", "No", "NO", "off", "Off", "OFF"):
            return False
        raise ConfigError(f"{where}: must be a bool (true or false), got {v.value!r}")
    num = _yaml_number(v)
    if num is None:
        want = "an integer" if typ in ("int", "optint") else "a number"
        raise ConfigError(f"{where}: must be {want}, got {v.value!r}")
    if typ == "float":
        return float(num)
    if isinstance(num, float):
        if num != num or math.isinf(num) or not (-(2.0 ** 63) <= num < 2.0 ** 63):
            raise ConfigError(f"{where}: must be an integer, got {v.value!r}")
        return int(num)
    if not -(1 << 63) <= num < (1 << 63):
        raise ConfigError(f"{where}: must be an int64, got {v.value!r}")
    return num


def _show(v) -> str:
    return repr(v.value) if isinstance(v, _Scalar) else ("a mapping" if isinstance(v, dict) else "a sequence")


def _convert_struct(schema, v, where):
    if _is_null(v):
        return _defaults(schema)
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: must be a mapping, got {_show(v)}")
    out = _defaults(schema)
    types = {k: t for k, t, _ in schema}
    for k, item in v.items():
        if k not in types:
            raise ConfigError(f"{where}: unknown key {k!r}; valid: {', '.join(types)}")
        out[k] = _convert(types[k], item, f"{where}.{k}")
    return out


def parse_header(text: str, where: str = "trace header") -> Dict[str, Any]:
    """Parse a TraceV2 header strictly (unknown or duplicate keys and bad types are errors)."""
    import yaml

    try:
        doc = yaml.load(text, Loader=_strict_loader())  # noqa: S506 -- strings-only loader
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from None
    if _is_null(doc):
        return _defaults(HEADER_SCHEMA)
    out = _convert_struct(HEADER_SCHEMA, doc, where)
    # a struct written as `key:` (null) is an absent pointer in Go
    for key, typ, _ in HEADER_SCHEMA:
        if isinstance(typ, tuple) and typ[0] == "struct" and _is_null(doc.get(key)):
            out[key] = None
    return out


# ---------------------------------------------------------------------------
# CSV reading
# ---------------------------------------------------------------------------
_INT_RE = r"^[+-]?[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_GO_BOOL_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_BOOL_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _read_csv_rows(data_path: Path) -> Tuple[List[str], List[List[str]]]:
    with open(data_path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f, strict=True)
        rows = []
        header = None
        try:
            for row in reader:
                if not row:
                    continue
                if header is None:
                    header = row
                else:
                    rows.append(row)
        except csv.Error as e:
            raise ConfigError(f"trace data {str(data_path)!r}: invalid CSV at line {reader.line_num}: {e}") from None
    if header is None:
        raise ConfigError(f"trace data {str(data_path)!r}: missing CSV header row")
    return header, rows


def _columns_from_arrow(data_path: Path, header: List[str], width: int):
    """Fast path: every row has exactly len(header) fields; returns {index: pyarrow StringArray} or None."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if len(header) < width:
        return None
    names = [f"c{i}" for i in range(len(header))]
    bad = []

    def on_invalid(row):
        bad.append(row)
        return "skip"

    try:
        data = data_path.read_bytes()
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data, ignore_empty_lines=True,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError):
        return None
    if bad:
        return None
    return {i: table.column(i).combine_chunks() for i in range(len(header))}, table.num_rows


def _col_index(header: List[str]):
    has_pri = "vllm_priority" in header
    has_slo = "slo_target_us" in header
    trailing = {name: (header.index(name) if name in header else -1) for name in TRAILING_OPTIONAL}
    # Go scans the header and keeps the last match; list.index gives the first: use the last
    for name in TRAILING_OPTIONAL:
        if name in header:
            trailing[name] = len(header) - 1 - header[::-1].index(name)
    o1 = 1 if has_pri else 0
    pos = {"request_id": 0, "client_id": 1, "tenant_id": 2, "slo_class": 3}
    if has_pri:
        pos["vllm_priority"] = 4
    for k, name in enumerate(("session_id", "round_index", "prefix_group", "prefix_length", "streaming",
                              "input_tokens", "output_tokens", "text_tokens", "image_tokens", "audio_tokens",
                              "video_tokens", "reason_ratio", "model", "deadline_us")):
        pos[name] = 4 + k + o1
    o2 = o1
    if has_slo:
        pos["slo_target_us"] = 18 + o1
        o2 += 1
    for k, name in enumerate(("server_input_tokens", "arrival_time_us", "send_time_us", "first_chunk_time_us",
                              "last_chunk_time_us", "num_chunks", "status", "error_message", "finish_reason")):
        pos[name] = 18 + k + o2
    min_cols = len(BASE_COLUMNS) + int(has_pri) + int(has_slo) + sum(1 for v in trailing.values() if v >= 0)
    return pos, trailing, min_cols


class _RowErrors:
    """Collects the first failing row of each check; reports the one Go would hit first."""

    def __init__(self, where: str):
        self.where = where
        self.best = None  # (row, order, message)

    def check(self, order: int, bad: np.ndarray, message):
        idx = np.flatnonzero(bad)
        if len(idx):
            r = int(idx[0])
            if self.best is None or (r, order) < self.best[:2]:
                self.best = (r, order, message(r))

    def raise_first(self):
        if self.best is not None:
            r, _, msg = self.best
            raise ConfigError(f"{self.where} row {r + 1}: {msg}")


def _parse_int_col(arr, name, order, errs: _RowErrors, nonneg: bool, values_for_msg):
    """Go ``strconv.Atoi``/``ParseInt(s, 10, 64)`` over a pyarrow string array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:  # common case: Arrow's strict parser accepts every value (it is stricter than Atoi: no '+')
        vals = pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
        if nonneg:
            errs.check(order + 0.5, vals < 0, lambda r: f"{name} must be >= 0, got {int(vals[r])}")
        return vals
    except pa.ArrowInvalid:
        pass
    ok = pc.match_substring_regex(arr, _INT_RE).to_numpy(zero_copy_only=False)
    cleaned = pc.if_else(pa.array(ok), pc.replace_substring_regex(arr, r"^\+", ""), pa.scalar("0"))
    try:
        vals = pc.cast(cleaned, pa.int64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # out of int64 range somewhere: per-value
        py = cleaned.to_pylist()
        vals = np.zeros(len(py), np.int64)
        for i, s in enumerate(py):
            v = int(s)
            if -(1 << 63) <= v < (1 << 63):
                vals[i] = v
            else:
                ok[i] = False
    bad_syntax = ~ok
    errs.check(order, bad_syntax, lambda r: f"{name} must be an integer, got {values_for_msg(r)!r}")
    if nonneg:
        errs.check(order + 0.5, ok & (vals < 0),
                   lambda r: f"{name} must be >= 0, got {int(vals[r])}")
    vals = vals.copy()
    vals[bad_syntax] = 0
    return vals


def _go_parse_float(s: str) -> Optional[float]:
    """``strconv.ParseFloat(s, 64)`` for the forms outside the plain decimal regex."""
    t = s
    sign = 1.0
    if t[:1] in "+-":
        sign = -1.0 if t[0] == "-" else 1.0
        t = t[1:]
    low = t.lower()
    if low in ("inf", "infinity"):
        return sign * math.inf
    if low == "nan":
        return math.nan
    if low.startswith("0x"):
        body = t[2:].replace("_", "")
        if not re.match(r"^([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+$", body):
            return None
        try:
            return sign * float.fromhex("0x" + body)
        except (ValueError, OverflowError):
            return None
    return None


def read_tracev2(header_path: PathLike, data_path: PathLike) -> TraceV2:
    """Load a TraceV2 header (strict YAML) and data CSV into a :class:`TraceV2` (BLIS's ``LoadTraceV2``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    header_path, data_path = Path(header_path), Path(data_path)
    try:
        text = header_path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"trace header {str(header_path)!r}: cannot be read ({e.strerror})") from None
    header = parse_header(text, where=f"trace header {str(header_path)!r}")
    if not data_path.exists():
        raise ConfigError(f"trace data {str(data_path)!r}: file not found")

    with open(data_path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        first = None
        for row in csv.reader(f, strict=True):
            if row:
                first = row
                break
    if first is None:
        raise ConfigError(f"trace data {str(data_path)!r}: missing CSV header row")
    pos, trailing, min_cols = _col_index(first)
    width = max(len(first), min_cols)
    where = f"trace data {str(data_path)!r}"
    errs = _RowErrors(where)

    fast = _columns_from_arrow(data_path, first, min_cols)
    if fast is not None:
        raw, n = fast
        for i in range(len(first), width):
            raw[i] = pa.array([""] * n, pa.string())
    else:
        header_row, rows = _read_csv_rows(data_path)
        n = len(rows)
        lengths = np.fromiter((len(r) for r in rows), np.int64, count=n)
        errs.check(-1, lengths < min_cols,
                   lambda r: f"CSV row has {int(lengths[r])} columns, expected at least {min_cols}")
        padded = [r[:width] + [""] * (width - len(r)) if len(r) != width else r for r in rows]
        cols_t = list(zip(*padded)) if padded else [()] * width
        raw = {i: pa.array(list(cols_t[i]) if padded else [], pa.string()) for i in range(width)}

    def raw_value(idx):
        return lambda r: raw[idx][r].as_py()

    rec: Dict[str, np.ndarray] = {}
    order = 0
    int_checks = [
        ("request_id", False), ("vllm_priority", True), ("round_index", False), ("prefix_length", True),
    ]
    for name, nonneg in int_checks:
        if name in pos:
            rec[name] = _parse_int_col(raw[pos[name]], name, order, errs, nonneg, raw_value(pos[name]))
        order += 1
    # streaming
    s_arr = raw[pos["streaming"]]
    is_true = pc.is_in(s_arr, value_set=pa.array(_GO_BOOL_TRUE)).to_numpy(zero_copy_only=False)
    is_false = pc.is_in(s_arr, value_set=pa.array(_GO_BOOL_FALSE)).to_numpy(zero_copy_only=False)
    errs.check(order, ~(is_true | is_false),
               lambda r: f"streaming must be a bool (true or false), got {raw_value(pos['streaming'])(r)!r}")
    rec["streaming"] = is_true
    order += 1
    for name in ("input_tokens", "output_tokens", "text_tokens", "image_tokens", "audio_tokens", "video_tokens"):
        rec[name] = _parse_int_col(raw[pos[name]], name, order, errs, True, raw_value(pos[name]))
        order += 1
    # reason_ratio
    rr = raw[pos["reason_ratio"]]
    ok = pc.match_substring_regex(rr, _FLOAT_RE).to_numpy(zero_copy_only=False)
    vals = pc.cast(pc.if_else(pa.array(ok), rr, pa.scalar("0")), pa.float64()).to_numpy(zero_copy_only=False).copy()
    if not ok.all():
        for i in np.flatnonzero(~ok):
            v = _go_parse_float(rr[int(i)].as_py())
            if v is not None:
                vals[i] = v
                ok[i] = True
    errs.check(order, ~ok,
               lambda r: f"reason_ratio must be a number in [0, 1], got {raw_value(pos['reason_ratio'])(r)!r}")
    with np.errstate(invalid="ignore"):
        out_of_range = ok & ~((vals >= 0) & (vals <= 1))
    errs.check(order + 0.5, out_of_range,
               lambda r: f"reason_ratio must be in [0, 1], got {raw_value(pos['reason_ratio'])(r)!r}")
    vals[~ok] = 0.0
    rec["reason_ratio"] = vals
    order += 1
    for name, nonneg in (("deadline_us", True), ("slo_target_us", True), ("server_input_tokens", True),
                         ("arrival_time_us", False), ("send_time_us", False), ("first_chunk_time_us", False),
                         ("last_chunk_time_us", False), ("num_chunks", True)):
        if name in pos:
            rec[name] = _parse_int_col(raw[pos[name]], name, order, errs, nonneg, raw_value(pos[name]))
        order += 1
    d, a = rec["deadline_us"], rec["arrival_time_us"]
    errs.check(order, (d > 0) & (a > 0) & (d < a),
               lambda r: f"deadline_us must not precede arrival_time_us, got deadline_us={int(d[r])} "
                         f"< arrival_time_us={int(a[r])}")
    order += 1
    ti = trailing["think_time_us"]
    if ti >= 0:
        t_arr = pc.utf8_trim(raw[ti], _GO_SPACE)
        t_arr = pc.if_else(pc.equal(t_arr, ""), pa.scalar("0"), t_arr)
        rec["think_time_us"] = _parse_int_col(t_arr, "think_time_us", order, errs, True, raw_value(ti))
    errs.raise_first()

    def strings(idx, trim=False):
        arr = raw[idx]
        if trim:
            arr = pc.utf8_trim(arr, _GO_SPACE)
        return arr.to_numpy(zero_copy_only=False)

    for name in ("client_id", "tenant_id", "slo_class", "session_id", "prefix_group", "model", "status"):
        rec[name] = strings(pos[name])
    rec["error_message"] = strings(pos["error_message"], trim=True)
    rec["finish_reason"] = strings(pos["finish_reason"], trim=True)
    for name in ("x_request_id", "adapter"):
        if trailing[name] >= 0:
            rec[name] = strings(trailing[name], trim=True)
    return TraceV2(header, rec)


# ---------------------------------------------------------------------------
# Trace -> RequestTable (replay, fixed session mode)
# ---------------------------------------------------------------------------
def _codes(values: np.ndarray) -> Tuple[np.ndarray, List[str]]:
    names = [""]
    index = {"": 0}
    out = np.empty(len(values), np.int32)
    for i, v in enumerate(values):
        c = index.get(v)
        if c is None:
            c = len(names)
            index[v] = c
            names.append(v)
        out[i] = c
    return out, names


def _row_content_seeds(seed: int, n: int) -> np.ndarray:
    k = np.arange(1, n + 1, dtype=np.uint64)
    base = np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5452414345563200)  # "TRACEV2"
    with np.errstate(over="ignore"):
        return _mix64(base + k * np.uint64(_GOLDEN))


def prefix_group_lengths(trace: TraceV2) -> Dict[str, int]:
    """Each prefix group's replayed prefix length: the ``prefix_length`` of its first record with one > 0."""
    group_len: Dict[str, int] = {}
    for g, p in zip(trace.records["prefix_group"], trace.records["prefix_length"]):
        if g and p > 0 and g not in group_len:
            group_len[g] = int(p)
    return group_len


def effective_input_tokens(trace: TraceV2) -> np.ndarray:
    """BLIS's ``effectiveInputTokenCount`` per record: ``server_input_tokens`` when > 0 and the
    record has no prefix group, else ``input_tokens`` (the replayed prefix comes on top)."""
    r = trace.records
    in_group = np.array([bool(g) for g in r["prefix_group"]], dtype=bool)
    return np.where((r["server_input_tokens"] > 0) & ~in_group, r["server_input_tokens"], r["input_tokens"])


def tracev2_to_requests(trace: TraceV2, seed: int = 42, rows: Optional[np.ndarray] = None) -> RequestTable:
    """The requests ``blis replay`` injects in fixed session mode (BLIS's ``LoadTraceV2Requests``).

    ``rows``: the record indices to inject, in BLIS's list order (default: every
    record, file order).  Rows are stable-sorted by injection time (BLIS pushes
    them all as arrival events, which run in time order with list order breaking
    ties); ``table.list_order`` keeps the list order for trace export.  ``seed``
    (``--seed``) only seeds the procedural token content.
    """
    n_all = len(trace)
    if n_all == 0:
        raise ConfigError("trace: must contain at least one record, got an empty trace")
    group_len = prefix_group_lengths(trace)
    effective_all = effective_input_tokens(trace)
    seeds_all = _row_content_seeds(seed, n_all)
    if rows is None:
        r, effective, content = trace.records, effective_all, seeds_all
    else:
        rows = np.asarray(rows, np.int64)
        r = {k: v[rows] for k, v in trace.records.items()}
        effective, content = effective_all[rows], seeds_all[rows]
    n = len(r["prefix_group"])
    groups = r["prefix_group"]
    actual_prefix = np.array([group_len.get(g, 0) for g in groups], dtype=np.int64) if n else np.zeros(0, np.int64)
    input_len = effective + actual_prefix
    arrival = np.where(r["send_time_us"] > 0, r["send_time_us"], r["arrival_time_us"])
    for name, col in (("input length", input_len), ("output_tokens", r["output_tokens"])):
        if len(col) and col.max() > 2**31 - 1:
            i = int(np.argmax(col))
            raise ConfigError(f"trace row {i + 1}: {name} must be < 2^31, got {int(col[i])}")

    # injection order: time, then file order; dictionary codes follow that order
    order = np.argsort(arrival, kind="stable")
    sorted_ = not np.array_equal(order, np.arange(n))

    def o(col):
        return col[order] if sorted_ else col.copy()

    names: Dict[str, List[str]] = {}
    cols: Dict[str, np.ndarray] = {}
    for col, src in (("prefix_group", "prefix_group"), ("slo_class", "slo_class"), ("tenant", "tenant_id"),
                     ("client", "client_id"), ("model", "model"), ("session", "session_id"), ("adapter", "adapter")):
        cols[col], names[col] = _codes(o(r[src]))
    cols.update(
        request_id=o(r["request_id"]),
        arrival_us=o(arrival),
        input_len=o(input_len),
        output_len=o(r["output_tokens"]),
        prefix_len=o(actual_prefix),
        max_output_len=o(r["output_tokens"]),
        deadline_us=o(r["deadline_us"]),
        round_index=o(r["round_index"]),
        streaming=o(r["streaming"]),
        content_seed=o(content),
        slo_target_us=o(r["slo_target_us"]),
        reason_ratio=o(r["reason_ratio"]),
        text_tokens=o(r["text_tokens"]),
        image_tokens=o(r["image_tokens"]),
        audio_tokens=o(r["audio_tokens"]),
        video_tokens=o(r["video_tokens"]),
    )
    extra_dtypes = {name: dtype for name, dtype, _, _ in EXTRA_REQUEST_FIELDS}
    for name, dtype in extra_dtypes.items():
        cols[name] = np.ascontiguousarray(cols[name], dtype=dtype)
    gseeds = np.zeros(len(names["prefix_group"]), np.uint64)
    for i, g in enumerate(names["prefix_group"]):
        if i:
            gseeds[i] = np.uint64(group_seed(seed, g))
    table = RequestTable(cols, names, gseeds)
    if sorted_:
        table.list_order = np.empty(n, np.int64)
        table.list_order[order] = np.arange(n, dtype=np.int64)
    return table


def load_tracev2(header_path: PathLike, data_path: PathLike, seed: int = 42) -> RequestTable:
    """Read a TraceV2 trace and build its replay :class:`RequestTable` (fixed session mode)."""
    return tracev2_to_requests(read_tracev2(header_path, data_path), seed)


# ---------------------------------------------------------------------------
# Simulation -> records (§5.3)
# ---------------------------------------------------------------------------
def _labels(table: RequestTable, column: str, n: int) -> np.ndarray:
    if column not in table.cols:
        return np.full(n, "", dtype=object)
    names = np.array(table.names.get(column, [""]), dtype=object)
    return names[table.cols[column]]


def records_from_simulation(table: RequestTable, status, first_chunk_us, last_chunk_us) -> Dict[str, np.ndarray]:
    """BLIS's ``RequestsToTraceRecords``: one record per row of ``table``, in table order.

    ``status``: per request, a name (``ok``/``timeout``/``incomplete``) or a code
    into :data:`STATUS_NAMES`.  ``first_chunk_us``/``last_chunk_us``: absolute
    first-token time (arrival + TTFT) and last-token time (arrival + TTFT +
    ΣITL), both 0 for requests that never produced a token.  ``request_id`` is
    the row index; ``input_tokens`` excludes the prefix.
    """
    n = len(table)
    c = table.cols
    status = np.asarray(status)
    if status.dtype.kind in "iu":
        status = np.array(STATUS_NAMES, dtype=object)[status]
    else:
        status = status.astype(object)
    prefix = c["prefix_len"].astype(np.int64)
    total = c["input_len"].astype(np.int64)
    inp = total - prefix
    neg = inp < 0
    inp = np.where(neg, total, inp)
    prefix = np.where(neg, 0, prefix)

    def extra(name, dtype):
        v = c.get(name)
        return np.zeros(n, dtype) if v is None else np.asarray(v, dtype)

    rec = {
        "request_id": np.arange(n, dtype=np.int64),
        "client_id": _labels(table, "client", n),
        "tenant_id": _labels(table, "tenant", n),
        "slo_class": _labels(table, "slo_class", n),
        "session_id": _labels(table, "session", n),
        "round_index": c["round_index"].astype(np.int64),
        "prefix_group": _labels(table, "prefix_group", n),
        "prefix_length": prefix,
        "streaming": c["streaming"].astype(bool),
        "input_tokens": inp,
        "output_tokens": c["output_len"].astype(np.int64),
        "text_tokens": extra("text_tokens", np.int64),
        "image_tokens": extra("image_tokens", np.int64),
        "audio_tokens": extra("audio_tokens", np.int64),
        "video_tokens": extra("video_tokens", np.int64),
        "reason_ratio": extra("reason_ratio", np.float64),
        "model": _labels(table, "model", n),
        "deadline_us": c["deadline_us"].astype(np.int64),
        "slo_target_us": extra("slo_target_us", np.int64),
        "arrival_time_us": c["arrival_us"].astype(np.int64),
        "send_time_us": c["arrival_us"].astype(np.int64),
        "first_chunk_time_us": np.asarray(first_chunk_us, np.int64),
        "last_chunk_time_us": np.asarray(last_chunk_us, np.int64),
        "status": status,
        "adapter": _labels(table, "adapter", n),
    }
    return rec


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def csv_columns(header: Dict[str, Any], records: Dict[str, np.ndarray]) -> List[str]:
    """The CSV columns BLIS writes for these records (optional-column rules of §5.2)."""
    mode = header.get("mode", "")
    r = records
    include_pri = bool(np.any(r["vllm_priority"] != 0)) or (
        mode == "real" and any(s != "" for s in r["slo_class"]))
    include_slo = bool(np.any(r["slo_target_us"] > 0))
    include_xid = mode == "real" and any(s != "" for s in r["x_request_id"])
    include_adapter = any(s != "" for s in r["adapter"])
    include_think = bool(np.any(r["think_time_us"] != 0))
    cols = []
    for i, name in enumerate(BASE_COLUMNS):
        cols.append(name)
        if i == 3 and include_pri:
            cols.append("vllm_priority")
        if name == "deadline_us" and include_slo:
            cols.append("slo_target_us")
    if include_xid:
        cols.append("x_request_id")
    if include_adapter:
        cols.append("adapter")
    if include_think:
        cols.append("think_time_us")
    return cols


def _format_column(name: str, col: np.ndarray) -> List[str]:
    dtype = RECORD_DTYPES[name]
    if dtype is object:
        return [_csv_field(str(s)) for s in col]
    if dtype is np.bool_:
        return np.where(col, "true", "false").tolist()
    if dtype is np.float64:
        cache: Dict[float, str] = {}
        out = []
        for v in col.tolist():
            s = cache.get(v)
            if s is None:
                s = cache[v] = go_format_float_f(v)
            out.append(s)
        return out
    return col.astype(np.int64).astype(str).tolist()


def _polars_column(name: str, col: np.ndarray):
    """One CSV column as a polars Utf8 Series (vectorised; Go formatting and quoting)."""
    import polars as pl

    dtype = RECORD_DTYPES[name]
    if dtype is object:
        values = col.tolist()
        uniq = set(values)
        mapping = {u: _csv_field(str(u)) for u in uniq}
        if any(mapping[u] != u for u in uniq):
            values = [mapping[v] for v in values]
        return pl.Series(name, values, dtype=pl.Utf8)
    if dtype is np.bool_:
        return pl.Series(name, col, dtype=pl.Boolean).cast(pl.Utf8)
    if dtype is np.float64:
        uniq, inv = np.unique(col, return_inverse=True)
        strs = np.array([go_format_float_f(float(u)) for u in uniq], dtype=object)
        return pl.Series(name, strs[inv.reshape(-1)].tolist(), dtype=pl.Utf8)
    return pl.Series(name, col.astype(np.int64)).cast(pl.Utf8)


def tracev2_csv_text(header: Dict[str, Any], records: Dict[str, np.ndarray]) -> str:
    """The data CSV text BLIS writes for these records."""
    trace = records if isinstance(records, TraceV2) else TraceV2(header, dict(records))
    cols = csv_columns(trace.header, trace.records)
    head = ",".join(_csv_field(c) for c in cols)
    if len(trace) == 0:
        return head + "\n"
    try:
        import polars as pl

        df = pl.DataFrame([_polars_column(name, trace.records[name]) for name in cols])
        lines = df.select(pl.concat_str(pl.all(), separator=",")).to_series().to_list()
    except (UnicodeEncodeError, ImportError, TypeError, ValueError):
        # e.g. strings that are not valid UTF-8 (read with surrogateescape): plain Python
        body = [_format_column(name, trace.records[name]) for name in cols]
        lines = [",".join(row) for row in zip(*body)]
    return head + "\n" + "\n".join(lines) + "\n"


from blis.fileio import atomic_write as _atomic_write  # noqa: E402  (kept name for callers)


def write_tracev2(trace: Union[TraceV2, Dict[str, Any]], header_path: PathLike, data_path: PathLike,
                  records: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Write ``trace`` (or a header dict plus ``records``) as BLIS does: header YAML and data CSV.

    Each file is written to a temporary name in the same folder, then renamed.
    """
    if not isinstance(trace, TraceV2):
        trace = TraceV2(trace, dict(records or {}))
    elif records is not None:
        raise ConfigError("write_tracev2: records must be None when a TraceV2 is given")
    _atomic_write(Path(header_path), header_to_yaml(trace.header))
    _atomic_write(Path(data_path), tracev2_csv_text(trace.header, trace.records))


def export_simulation_trace(table: RequestTable, status, first_chunk_us, last_chunk_us, prefix: PathLike,
                            header: Optional[Dict[str, Any]] = None) -> TraceV2:
    """``--trace-output <prefix>``: write ``<prefix>.yaml`` and ``<prefix>.csv`` for a simulated run."""
    trace = TraceV2(header or make_header("generated"),
                    records_from_simulation(table, status, first_chunk_us, last_chunk_us))
    p = str(prefix)
    write_tracev2(trace, p + ".yaml", p + ".csv")
    return trace


# ---------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------
_HEADER_META_KEY = b"blis.tracev2.header"


def _arrow_schema():
    import pyarrow as pa

    mapping = {np.int64: pa.int64(), np.float64: pa.float64(), np.bool_: pa.bool_(), object: pa.string()}
    return pa.schema([pa.field(name, mapping[dtype], nullable=False,
                               metadata={b"unit": unit.encode(), b"doc": doc.encode()})
                      for name, dtype, unit, doc in RECORD_FIELDS])


def tracev2_to_arrow(trace: TraceV2):
    """The records as a pyarrow Table (every field, units in field metadata, header YAML in schema metadata)."""
    import pyarrow as pa

    schema = _arrow_schema().with_metadata({_HEADER_META_KEY: header_to_yaml(trace.header).encode()})
    arrays = [pa.array(trace.records[f.name].tolist() if f.type == pa.string() else trace.records[f.name],
                       type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_tracev2_parquet(trace: TraceV2, path: PathLike) -> None:
    """Write the trace as one Parquet file (temporary name, then rename)."""
    from blis.fileio import atomic_write_parquet

    atomic_write_parquet(tracev2_to_arrow(trace), path)


def read_tracev2_parquet(path: PathLike) -> TraceV2:
    """Read a trace written by :func:`write_tracev2_parquet`."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    header = parse_header(meta.get(_HEADER_META_KEY, b"").decode(), where=f"parquet trace {str(path)!r}")
    rec = {}
    for name, dtype, _, _ in RECORD_FIELDS:
        if name not in table.column_names:
            continue
        col = table.column(name)
        if dtype is object:
            arr = np.empty(len(col), dtype=object)
            arr[:] = col.to_pylist()
            rec[name] = arr
        else:
            rec[name] = col.to_numpy().astype(dtype)
    return TraceV2(header, rec)
