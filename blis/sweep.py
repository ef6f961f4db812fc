"""``blis sweep SWEEP.yaml``: run a grid of ``blis run`` / ``blis replay`` points in
parallel and collect the results as a Parquet dataset for polars.

A sweep file::

    command: run                      # or replay (default: run)
    base:                             # any `blis run` flag, without the leading --
      model: meta-llama/llama-3.1-8b-instruct
      latency-model: roofline
      hardware: H100
      tp: 1
      num-requests: 1000
    policy_config: policies.yaml      # optional, passed as --policy-config
    workload_spec: spec.yaml          # optional, passed as --workload-spec
    axes:
      - grid:                         # cartesian product (last key varies fastest)
          rate: [10, 20, 40]
          routing-policy: [round-robin, least-loaded]
      - zip:                          # lists varied together (equal lengths)
          num-instances: [2, 4]
          max-num-seqs: [128, 256]
      - grid:
          seed: {range: [1, 4]}       # 1, 2, 3: replicates

Points are the cartesian product of the axis entries (first entry outermost).
Relative paths (policy_config, workload_spec, trace-header, ...) are resolved
against the sweep file's folder.  Parsing is strict: an unknown key, a flag
``blis run`` does not have, a value of the wrong type or a flag given twice is
one error naming its place in the file (``rates.yaml: axes[0].grid.rate[2]: ...``).

Output folder (``--out``, default: the sweep file's path without ``.yaml``)::

    summary.parquet                        one row per point: point, index, swept values,
                                           every numeric metric of the cluster summary,
                                           wall_s and cpu_s (timings)
    points/<id>.json                       one point's summary row (the resume record)
    requests/point=<id>/part-0.parquet     the point's per-request table (hive-partitioned)

A point id is ``p`` + 12 hex digits of a SHA-256 over the point's command and
its full flag set as written in the sweep file, so it does not depend on the
order of the axes, and editing ``base`` gives new ids.  Every file is written to
a temporary name and renamed; a point counts as done when its JSON exists (it is
written after its requests file), so an interrupted sweep resumes where it
stopped.  For the same sweep the per-request files are byte-for-byte the same,
and so are the JSON records apart from their timings, whatever the executor,
``--jobs`` or the order in which points finished.

Executors: ``local`` (default) runs ``--jobs`` worker processes (forked after
the parent compiled or loaded the numba kernels, and reused for every point);
``ray`` runs the same point function as Ray tasks (``--address`` to join a
cluster, else a local Ray instance) and the driver writes every file.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import itertools
import json
import logging
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from blis.errors import BlisError

log = logging.getLogger("blis.sweep")

#: bumped when the meaning of a point id changes (it is part of the hashed text)
POINT_ID_VERSION = 1
TOP_LEVEL_KEYS = ("command", "base", "policy_config", "workload_spec", "axes")
AXIS_KINDS = ("grid", "zip")
COMMANDS = ("run", "replay")
#: flags whose value is a path: relative paths are resolved against the sweep file's folder
PATH_FLAGS = ("policy-config", "workload-spec", "trace-header", "trace-data", "defaults-filepath",
              "model-config-folder", "hardware-config")
#: flags that make ``blis run`` write files or draw a bar: a sweep writes its own outputs
OUTPUT_FLAGS = ("metrics-path", "results-parquet", "trace-output", "results-path", "decision-trace",
                "progress", "help")
#: top-level keys that are the same thing as a flag in ``base``
TOP_LEVEL_FLAGS = {"policy_config": "policy-config", "workload_spec": "workload-spec"}
RESERVED_COLUMNS = ("point", "index", "wall_s", "cpu_s")
#: record fields that differ between two runs of the same point (timings)
TIMING_FIELDS = ("wall_s", "cpu_s")
SUMMARY_FILE = "summary.parquet"
POINTS_DIR = "points"
REQUESTS_DIR = "requests"
PART_FILE = "part-0.parquet"
#: requests of the warm-up run the parent makes before forking workers
WARMUP_REQUESTS = 8


class SweepError(BlisError):
    """Invalid sweep file or a point that failed."""


class PointFailed(SweepError):
    """A point's simulation failed (raised in a worker; picklable)."""

    def __init__(self, point_id: str, message: str):
        super().__init__(point_id, message)
        self.point_id = point_id
        self.message = message

    def __str__(self):
        return f"point {self.point_id}: {self.message}"


# ---------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class Point:
    """One configuration of the sweep."""

    id: str
    index: int                      # position in the expansion order
    values: Dict[str, Any]          # swept flag -> value, as written in the sweep file
    argv: Tuple[str, ...]           # the full ``blis`` argument list (paths resolved)


@dataclass
class Sweep:
    """A parsed sweep file: its points and the swept columns."""

    path: Path
    command: str
    base: Dict[str, Any]
    axes: List[str]                                    # swept flag names, in order of appearance
    points: List[Point] = field(default_factory=list)
    axis_types: Dict[str, str] = field(default_factory=dict)   # flag -> bool | int | float | string

    def default_out(self) -> Path:
        return self.path.with_suffix("") if self.path.suffix in (".yaml", ".yml") else \
            self.path.with_name(self.path.name + ".out")


def _where(file: str, ypath: str) -> str:
    return f"{file}: {ypath}" if ypath else file


def _fail(file: str, ypath: str, msg: str):
    raise SweepError(f"{_where(file, ypath)}: {msg}")


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def flag_actions(command: str) -> Dict[str, argparse.Action]:
    """``blis <command>``'s flags, by name without ``--`` (aliases included)."""
    from blis import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for action in sub.choices[command]._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:]] = action
    return out


def _fmt_value(v: Any) -> str:
    """A sweep-file scalar as a command-line value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _check_value(file, ypath, flag, action, value):
    """A flag value must be a scalar that ``blis`` accepts for that flag."""
    from blis import cli

    if value is None:
        _fail(file, ypath, f"value of {flag} must be a single number, string or boolean, got nothing")
    if isinstance(value, (list, dict)):
        _fail(file, ypath, f"value of {flag} must be a single number, string or boolean, got "
                           f"{type(value).__name__} {value!r}")
    if not isinstance(value, (bool, int, float, str)):
        _fail(file, ypath, f"value of {flag} must be a number, string or boolean, got {type(value).__name__} "
                           f"{value!r}")
    if isinstance(action, cli._TrackTrue):
        if not (isinstance(value, bool) or str(value).lower() in ("true", "false", "1", "0", "t", "f")):
            _fail(file, ypath, f"{flag} must be a boolean, got {value!r}; valid: true, false")
        return
    if isinstance(value, bool):
        _fail(file, ypath, f"{flag} takes a value, not a boolean, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        _fail(file, ypath, f"{flag} must be finite, got {value!r}")
    typ = action.type
    if callable(typ) and typ is not str:
        try:
            typ(_fmt_value(value))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            _fail(file, ypath, f"{flag} {e}")


def _column_type(values: Sequence[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    return "string"


def _expand_range(file, ypath, spec):
    """``{range: [start, stop(, step)]}`` -> list of ints."""
    if set(spec) != {"range"}:
        bad = sorted(set(spec) - {"range"})
        _fail(file, ypath, f"a mapping value must be {{range: [start, stop]}}, got key {bad[0]!r}")
    r = spec["range"]
    if (not isinstance(r, list) or len(r) not in (2, 3)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)):
        _fail(file, ypath + ".range", f"must be a list of 2 or 3 integers [start, stop, step], got {r!r}")
    if len(r) == 3 and r[2] == 0:
        _fail(file, ypath + ".range", f"step must not be 0, got {r!r}")
    vals = list(range(*r))
    if not vals:
        _fail(file, ypath + ".range", f"must contain at least one value, got {r!r}")
    return vals


def _resolve_path(root: Path, value: Any) -> str:
    p = Path(str(value)).expanduser()
    return str(p if p.is_absolute() else (root / p))


def point_id(command: str, flags: Dict[str, Any]) -> str:
    """``p`` + 12 hex digits of SHA-256 over the command and the flags (as written, sorted by name)."""
    def canon(v):  # 10 and 10.0 are the same rate
        return str(int(v)) if isinstance(v, float) and v.is_integer() else _fmt_value(v)

    text = json.dumps({"v": POINT_ID_VERSION, "command": command,
                       "flags": {k: canon(flags[k]) for k in sorted(flags)}},
                      sort_keys=True, separators=(",", ":"))
    return "p" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def parse_sweep_text(text: str, path: os.PathLike = "sweep.yaml") -> Sweep:
    """Parse a sweep file's text (``path`` names it in errors and roots relative paths)."""
    import yaml

    path = Path(path)
    file = path.name
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SweepError(f"{file}: must be valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        _fail(file, "", f"must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}, got "
                        f"{type(doc).__name__ if doc is not None else 'an empty file'}")
    for k in doc:
        if k not in TOP_LEVEL_KEYS:
            _fail(file, str(k), f"unknown key{_suggest(str(k), TOP_LEVEL_KEYS)}; valid: {', '.join(TOP_LEVEL_KEYS)}")

    base_raw = doc.get("base")
    if not isinstance(base_raw, dict):
        _fail(file, "base", "must be a mapping of `blis run` flag names to values (required), got "
                            f"{'nothing' if base_raw is None else type(base_raw).__name__}")
    command = doc.get("command")
    if "command" in base_raw:
        if command is not None and base_raw["command"] != command:
            _fail(file, "base.command", f"must match the top-level command {command!r}, got {base_raw['command']!r}")
        command = base_raw["command"]
    command = "run" if command is None else command
    if command not in COMMANDS:
        _fail(file, "command", f"must be one of the valid commands, got {command!r}; valid: {', '.join(COMMANDS)}")
    actions = flag_actions(command)
    valid_flags = sorted(k for k in actions if k not in OUTPUT_FLAGS)

    def check_flag(ypath, name):
        if not isinstance(name, str):
            _fail(file, ypath, f"flag name must be a string, got {name!r}")
        if name in OUTPUT_FLAGS:
            _fail(file, ypath, f"{name} is not allowed in a sweep: the sweep writes summary.parquet and "
                               "requests/ itself")
        if name not in actions:
            hint = _suggest(name, valid_flags) or (
                f" (did you mean {name.replace('_', '-')!r}?)" if name.replace("_", "-") in actions else "")
            _fail(file, ypath, f"unknown `blis {command}` flag{hint}; see `blis {command} --help` for the flags")

    base: Dict[str, Any] = {}
    for k, v in base_raw.items():
        if k == "command":
            continue
        ypath = f"base.{k}"
        check_flag(ypath, k)
        _check_value(file, ypath, k, actions[k], v)
        base[k] = v
    for key, flag in TOP_LEVEL_FLAGS.items():
        if key in doc:
            v = doc[key]
            if not isinstance(v, str) or not v:
                _fail(file, key, f"must be a path (string), got {v!r}")
            if flag not in actions:
                _fail(file, key, f"is not a flag of `blis {command}`")
            if flag in base:
                _fail(file, key, f"is given twice: here and as base.{flag}; keep one")
            base[flag] = v

    axes_raw = doc.get("axes", [])
    if axes_raw is None:
        axes_raw = []
    if not isinstance(axes_raw, list):
        _fail(file, "axes", f"must be a list of {{grid: ...}} or {{zip: ...}} entries, got {type(axes_raw).__name__}")
    seen_at: Dict[str, str] = {}
    entries: List[List[Dict[str, Any]]] = []        # per axis entry: list of assignments
    axes: List[str] = []
    axis_values: Dict[str, List[Any]] = {}
    for i, entry in enumerate(axes_raw):
        ep = f"axes[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            _fail(file, ep, f"must be a mapping with exactly one key, grid or zip, got {entry!r}")
        kind, body = next(iter(entry.items()))
        if kind not in AXIS_KINDS:
            _fail(file, f"{ep}.{kind}", f"unknown axis kind{_suggest(str(kind), AXIS_KINDS)}; valid: grid, zip")
        ep = f"{ep}.{kind}"
        if not isinstance(body, dict) or not body:
            _fail(file, ep, f"must be a non-empty mapping of flag names to lists of values, got {body!r}")
        lists: Dict[str, List[Any]] = {}
        for name, vals in body.items():
            vp = f"{ep}.{name}"
            check_flag(vp, name)
            if name in base:
                _fail(file, vp, f"{name} is also set in base; remove it from base (an axis varies it)")
            if name in seen_at:
                _fail(file, vp, f"{name} is already varied by {seen_at[name]}; vary each flag in one axis entry")
            seen_at[name] = vp
            if isinstance(vals, dict):
                vals = _expand_range(file, vp, vals)
            if not isinstance(vals, list) or not vals:
                _fail(file, vp, f"must be a non-empty list of values, got {vals!r}")
            for j, v in enumerate(vals):
                _check_value(file, f"{vp}[{j}]", name, actions[name], v)
            if name in RESERVED_COLUMNS:
                _fail(file, vp, f"{name} is a reserved summary column; valid flags do not use it")
            lists[name] = vals
            axes.append(name)
            axis_values[name] = vals
        if kind == "zip":
            lengths = {n: len(v) for n, v in lists.items()}
            if len(set(lengths.values())) != 1:
                _fail(file, ep, "lists must all have the same length, got "
                                + ", ".join(f"{n}: {k}" for n, k in lengths.items()))
            names = list(lists)
            entries.append([dict(zip(names, combo)) for combo in zip(*lists.values())])
        else:
            names = list(lists)
            entries.append([dict(zip(names, combo)) for combo in itertools.product(*lists.values())])

    root = path.resolve().parent
    sweep = Sweep(path=path, command=command, base=base, axes=axes,
                  axis_types={a: _column_type(axis_values[a]) for a in axes})
    seen_ids: Dict[str, int] = {}
    for index, combo in enumerate(itertools.product(*entries)):
        values: Dict[str, Any] = {}
        for part in combo:
            values.update(part)
        flags = {**base, **values}
        pid = point_id(command, flags)
        if pid in seen_ids:
            _fail(file, "axes", f"points {seen_ids[pid]} and {index} are the same configuration "
                                f"({', '.join(f'{k}={_fmt_value(v)}' for k, v in values.items())}); "
                                "remove the duplicate value")
        seen_ids[pid] = index
        argv = [command]
        for k, v in flags.items():
            s = _resolve_path(root, v) if k in PATH_FLAGS else _fmt_value(v)
            argv.append(f"--{k}={s}")
        sweep.points.append(Point(id=pid, index=index, values=values, argv=tuple(argv)))
    return sweep


def load_sweep(path: os.PathLike) -> Sweep:
    """Parse a sweep file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SweepError(f"{path}: sweep file must be readable ({e.strerror})") from None
    return parse_sweep_text(text, path)


class _OnceFilter(logging.Filter):
    """Let each distinct log message through once."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def validate_points(sweep: Sweep, points: Optional[Sequence[Point]] = None) -> None:
    """Check every point's command line as ``blis`` does before simulating (cheap: no
    workload, no kernels); raises :class:`SweepError` naming the first bad point.  Points
    that differ only in ``seed`` (already type-checked) are checked once.  Each distinct
    warning is logged once."""
    from blis import cli

    parser = cli.build_parser()
    blis_log = logging.getLogger("blis")
    once = _OnceFilter()
    blis_log.addFilter(once)
    seen = set()
    try:
        for p in (sweep.points if points is None else points):
            key = tuple(a for a in p.argv if not a.startswith("--seed="))
            if key in seen:
                continue
            seen.add(key)
            try:
                ns = parser.parse_args(list(p.argv))
            except SystemExit:
                raise SweepError(f"{sweep.path.name}: point {p.index} ({describe(p)}): blis rejected the "
                                 "command line (message above)") from None
            cli._explicit(ns)
            try:
                cli.validate_common(ns)
            except BlisError as e:
                raise SweepError(f"{sweep.path.name}: point {p.index} ({describe(p)}): {e}") from None
    finally:
        blis_log.removeFilter(once)


def describe(p: Point) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in p.values.items()) or "base"


# ---------------------------------------------------------------- one point
def numeric_metrics(res) -> Dict[str, Any]:
    """Every numeric field of the cluster summary, plus a few counters of the run."""
    out: Dict[str, Any] = {}
    for k, v in res.metrics_output().items():
        if isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, (int, float)):
            out[k] = v
    out["rejected_requests"] = int(res.rejected)
    out["routing_rejected_requests"] = int(res.routing_rejected)
    out["cache_hit_rate"] = float(res.cache_hit_rate())
    out["events"] = int(sum(i.events for i in res.instances))
    return out


def run_point(point_id: str, argv: Sequence[str]) -> Tuple[str, Dict[str, Any], bytes, Dict[str, float]]:
    """Simulate one point: (id, numeric metrics, per-request table as Parquet bytes, timing).

    timing: ``wall_s`` (the simulation, wall clock) and ``cpu_s`` (this process's CPU time
    for the whole point, which other load on the machine barely changes).

    Runs in a worker (local process or Ray task); the caller writes the files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from blis.cli import simulate_argv

    c0 = time.process_time()
    t0 = time.perf_counter()
    try:
        res = simulate_argv(list(argv))
    except SystemExit as e:
        raise PointFailed(point_id, f"blis rejected the command line (exit {e.code})") from None
    wall = time.perf_counter() - t0
    metrics = numeric_metrics(res)
    buf = pa.BufferOutputStream()
    pq.write_table(res.to_arrow(), buf)
    data = buf.getvalue().to_pybytes()
    return point_id, metrics, data, {"wall_s": wall, "cpu_s": time.process_time() - c0}


def _safe_run_point(point_id: str, argv: Sequence[str]):
    """:func:`run_point` whose errors come back as :class:`PointFailed` (with the traceback
    of unexpected ones: exception types from a worker may not unpickle in the parent)."""
    try:
        return run_point(point_id, argv)
    except PointFailed:
        raise
    except BlisError as e:
        raise PointFailed(point_id, str(e)) from None
    except Exception as e:  # noqa: BLE001 - report, never lose the traceback
        raise PointFailed(point_id, f"internal error: {type(e).__name__}: {e}\n{traceback.format_exc()}") from None


def _worker_init():
    logging.getLogger("blis").setLevel(logging.ERROR)
    # workers already use every core: a point needing a kernel the warm-up did not
    # compile compiles it in the worker, without a helper process (blis/precompile.py)
    os.environ["BLIS_PARALLEL_COMPILE"] = "0"


def _local_worker_init():
    """Forked workers: quiet logs, and Ctrl-C goes to the parent only, which stops
    handing out points and saves the ones that are running."""
    import signal

    _worker_init()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------- files
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from blis.fileio import atomic_write

    atomic_write(path, data)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n").encode("utf-8")


class Store:
    """The output folder of a sweep."""

    def __init__(self, out: os.PathLike):
        self.out = Path(out)

    def point_json(self, pid: str) -> Path:
        return self.out / POINTS_DIR / f"{pid}.json"

    def requests_file(self, pid: str) -> Path:
        return self.out / REQUESTS_DIR / f"point={pid}" / PART_FILE

    def is_done(self, pid: str) -> bool:
        return self.point_json(pid).is_file() and self.requests_file(pid).is_file()

    def prepare(self) -> None:
        (self.out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
        (self.out / REQUESTS_DIR).mkdir(parents=True, exist_ok=True)
        # temporary files left by a killed run
        for d in (self.out, self.out / POINTS_DIR, *(self.out / REQUESTS_DIR).glob("point=*")):
            for f in d.glob(".*.tmp-*"):
                try:
                    f.unlink()
                except OSError:
                    pass

    def stored_ids(self) -> List[str]:
        ids = {p.stem for p in (self.out / POINTS_DIR).glob("*.json")}
        ids |= {p.name[len("point="):] for p in (self.out / REQUESTS_DIR).glob("point=*")}
        return sorted(ids)

    def save(self, sweep: Sweep, point: Point, metrics: Dict[str, Any], parquet: bytes,
             timing: Dict[str, float]) -> None:
        """Requests file first, then the JSON record that marks the point done."""
        rf = self.requests_file(point.id)
        rf.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(rf, parquet)
        record = {"point": point.id, "command": sweep.command, "values": point.values,
                  "argv": list(point.argv), "metrics": metrics,
                  "wall_s": timing["wall_s"], "cpu_s": timing["cpu_s"]}
        _atomic_write_bytes(self.point_json(point.id), _json_bytes(record))

    def load(self, pid: str) -> Dict[str, Any]:
        with open(self.point_json(pid), encoding="utf-8") as f:
            return json.load(f)

    def prune(self, keep: Iterable[str]) -> List[str]:
        import shutil

        keep = set(keep)
        gone = [pid for pid in self.stored_ids() if pid not in keep]
        for pid in gone:
            try:
                self.point_json(pid).unlink()
            except FileNotFoundError:
                pass
            shutil.rmtree(self.requests_file(pid).parent, ignore_errors=True)
        return gone


_ARROW_TYPES = {"bool": "bool_", "int": "int64", "float": "float64", "string": "string"}


def build_summary(sweep: Sweep, store: Store):
    """The summary table (pyarrow) from the points' JSON records, in expansion order."""
    import pyarrow as pa

    records = [store.load(p.id) for p in sweep.points]
    metric_names: List[str] = []
    metric_kind: Dict[str, str] = {}
    for r in records:
        for k, v in r["metrics"].items():
            if k not in metric_kind:
                metric_names.append(k)
                metric_kind[k] = "int"
            if isinstance(v, float):
                metric_kind[k] = "float"
    for k in metric_names:
        if k in sweep.axes or k in RESERVED_COLUMNS:
            raise SweepError(f"summary: metric {k!r} collides with a column of the same name")
    cols: Dict[str, Any] = {
        "point": pa.array([p.id for p in sweep.points], pa.string()),
        "index": pa.array([p.index for p in sweep.points], pa.int64()),
    }
    for a in sweep.axes:
        t = sweep.axis_types[a]
        vals = [p.values[a] for p in sweep.points]
        if t == "float":
            vals = [float(v) for v in vals]
        elif t == "string":
            vals = [_fmt_value(v) for v in vals]
        cols[a] = pa.array(vals, getattr(pa, _ARROW_TYPES[t])())
    for k in metric_names:
        typ = pa.float64() if metric_kind[k] == "float" else pa.int64()
        vals = [r["metrics"].get(k) for r in records]
        if metric_kind[k] == "float":
            vals = [None if v is None else float(v) for v in vals]
        cols[k] = pa.array(vals, typ)
    cols["wall_s"] = pa.array([float(r["wall_s"]) for r in records], pa.float64())
    cols["cpu_s"] = pa.array([float(r.get("cpu_s", "nan")) for r in records], pa.float64())
    meta = {"blis.sweep": json.dumps({"command": sweep.command, "axes": sweep.axes,
                                      "axis_types": sweep.axis_types, "version": POINT_ID_VERSION})}
    return pa.table(cols).replace_schema_metadata(meta)


def write_summary(sweep: Sweep, store: Store) -> Path:
    import pyarrow.parquet as pq

    table = build_summary(sweep, store)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path = store.out / SUMMARY_FILE
    _atomic_write_bytes(path, buf.getvalue())
    return path


# ---------------------------------------------------------------- executors
Task = Tuple[str, Tuple[str, ...]]
#: callback(point id, metrics, parquet bytes, timing) for each finished point
OnDone = Callable[[str, Dict[str, Any], bytes, Dict[str, float]], None]


def _warmup_argv(sweep: Sweep, first: Point) -> Optional[List[str]]:
    """A tiny run of the first pending point (loads or compiles the kernels), or None for
    replay sweeps (the parent then runs the first point itself)."""
    if sweep.command != "run":
        return None
    return list(first.argv) + [f"--num-requests={WARMUP_REQUESTS}"]


def run_serial(tasks: Sequence[Task], on_done: OnDone) -> None:
    lg = logging.getLogger("blis")
    old = lg.level
    _worker_init()
    try:
        for pid, argv in tasks:
            on_done(*_safe_run_point(pid, argv))
    finally:
        lg.setLevel(old)


def run_local(tasks: Sequence[Task], on_done: OnDone, jobs: int) -> None:
    """``jobs`` forked worker processes, reused for every point; the first error cancels
    the points not started yet (those running are finished and saved) and is re-raised."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    ctx = multiprocessing.get_context(method)
    error: Optional[BaseException] = None
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_local_worker_init) as ex:
        pending = {ex.submit(_safe_run_point, pid, argv) for pid, argv in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    if f.cancelled():
                        continue
                    exc = f.exception()
                    if exc is not None:
                        if error is None:
                            error = exc
                            for g in pending:
                                g.cancel()
                        continue
                    on_done(*f.result())
        except BaseException:
            # interrupted: hand out nothing more, save what is running, then stop
            for g in pending:
                g.cancel()
            for g in pending:
                if not g.cancelled():
                    try:
                        on_done(*g.result())
                    except Exception:  # noqa: BLE001 - the interruption is what we report
                        pass
            raise
    if isinstance(error, BrokenProcessPool):
        raise SweepError("a worker process died (killed, or out of memory?); finished points are saved, "
                         "rerun the same command to resume") from None
    if error is not None:
        raise error


def run_ray(tasks: Sequence[Task], on_done: OnDone, jobs: Optional[int], address: Optional[str]) -> None:
    """The same point function as Ray tasks (one CPU each); the driver writes every file."""
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray: the ray package must be installed (pip install 'ray>=2.9'), "
                         "got ImportError") from None
    started = False
    if not ray.is_initialized():
        kw: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=jobs, **kw)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_point)
        refs = [remote.remote(pid, argv) for pid, argv in tasks]
        error = None
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            try:
                on_done(*ray.get(done[0]))
            except ray.exceptions.RayTaskError as e:
                if error is None:
                    error = e
                    for r in refs:
                        ray.cancel(r)
            except ray.exceptions.TaskCancelledError:
                continue
        if error is not None:
            cause = getattr(error, "cause", None)
            if isinstance(cause, PointFailed):
                raise PointFailed(cause.point_id, cause.message) from None
            raise SweepError(f"ray task failed: {cause if cause is not None else error}") from None
    finally:
        if started:
            ray.shutdown()


def _ray_point(point_id, argv):
    _worker_init()
    return _safe_run_point(point_id, argv)


# ---------------------------------------------------------------- driver
@dataclass
class SweepReport:
    out: Path
    total: int
    skipped: int
    ran: int
    wall_s: float
    summary: Optional[Path]


def run_sweep(sweep: Sweep, out: Optional[os.PathLike] = None, jobs: Optional[int] = None,
              executor: str = "local", address: Optional[str] = None, progress: str = "auto",
              prune: bool = False, validate: bool = True) -> SweepReport:
    """Run every point of ``sweep`` not already in ``out``; write summary.parquet when all are done."""
    if executor not in ("local", "ray"):
        raise SweepError(f"--executor: must be one of the valid executors, got {executor!r}; valid: local, ray")
    jobs = jobs if jobs is not None else default_jobs()
    if jobs < 1:
        raise SweepError(f"--jobs: must be >= 1, got {jobs}")
    store = Store(out if out is not None else sweep.default_out())
    t0 = time.perf_counter()
    if store.out.exists() and not store.out.is_dir():
        raise SweepError(f"--out: must be a folder, got file {str(store.out)!r}")
    store.prepare()
    ids = {p.id for p in sweep.points}
    stale = [pid for pid in store.stored_ids() if pid not in ids]
    if stale:
        if not prune:
            raise SweepError(f"--out {store.out}: holds {len(stale)} point(s) that are not in this sweep "
                             f"(e.g. {stale[0]}; the sweep file changed?); rerun with --prune to delete them "
                             "or choose another --out")
        store.prune(ids)
    todo = [p for p in sweep.points if not store.is_done(p.id)]
    skipped = len(sweep.points) - len(todo)
    if validate and todo:
        validate_points(sweep, todo)
    by_id = {p.id: p for p in sweep.points}
    _progress_bar(progress, 0, 0, check_only=True)
    bar = None
    ran = 0

    def start_bar():
        nonlocal bar
        bar = _progress_bar(progress, len(sweep.points), skipped + ran)

    def on_done(pid, metrics, parquet, timing):
        nonlocal ran
        store.save(sweep, by_id[pid], metrics, parquet, timing)
        ran += 1
        if bar is not None:
            bar.update(1)

    try:
        if todo:
            tasks: List[Task] = [(p.id, p.argv) for p in todo]
            warm = _warmup_argv(sweep, todo[0])
            if executor == "local" and jobs > 1 and len(tasks) > 1:
                # load or compile the kernels once, before forking the workers
                if warm is not None:
                    try:
                        from blis.cli import simulate_argv
                        simulate_argv(warm)
                    except BlisError as e:
                        raise PointFailed(todo[0].id, str(e)) from None
                else:
                    run_serial(tasks[:1], on_done)
                    tasks = tasks[1:]
                start_bar()
                run_local(tasks, on_done, min(jobs, len(tasks)))
            elif executor == "local":
                start_bar()
                run_serial(tasks, on_done)
            else:
                start_bar()
                run_ray(tasks, on_done, jobs, address)
    except PointFailed as e:
        p = by_id.get(e.point_id)
        where = f"point {p.index} ({describe(p)}, id {p.id})" if p is not None else f"point {e.point_id}"
        raise SweepError(f"{sweep.path.name}: {where}: {e.message}; finished points are saved") from None
    finally:
        if bar is not None:
            bar.close()
    summary = write_summary(sweep, store)
    return SweepReport(out=store.out, total=len(sweep.points), skipped=skipped, ran=ran,
                       wall_s=time.perf_counter() - t0, summary=summary)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _progress_bar(mode: str, total: int, initial: int, check_only: bool = False):
    if mode not in ("auto", "always", "never"):
        raise SweepError(f"--progress: must be one of the valid modes, got {mode!r}; valid: auto, always, never")
    if check_only:
        return None
    want = mode == "always" or (mode == "auto" and sys.stderr.isatty())
    if not want:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="point", file=sys.stderr, dynamic_ncols=True,
                desc="sweep", smoothing=0.1)


# ---------------------------------------------------------------- command line
DESCRIPTION = ("Run every point of a sweep file (base flags x grid/zip axes) in parallel; write "
               "summary.parquet (one row per point) and requests/point=<id>/part-0.parquet. "
               "An interrupted sweep resumes: finished points are skipped.")


def _configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="the sweep file")
    p.add_argument("--out", default=None, help="output folder (default: the sweep file's path without .yaml)")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help=f"points run in parallel (default: all cores, {default_jobs()} here)")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local worker processes (default) or Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address (--executor ray; default: a local Ray)")
    p.add_argument("--progress", default="auto", choices=("auto", "always", "never"),
                   help="progress bar with ETA on stderr: auto (when a terminal), always, never")
    p.add_argument("--prune", action="store_true",
                   help="delete points in --out that are not in this sweep (after the sweep file changed)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points (id, done or not, values) without running them")
    return p


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Add ``sweep`` to ``blis``'s subcommands; dispatch with :func:`run`."""
    p = subparsers.add_parser("sweep", help="run a parameter sweep from a YAML file", description=DESCRIPTION)
    _configure_parser(p)
    p.set_defaults(_run=run)
    return p


def run(ns: argparse.Namespace) -> int:
    """Run a parsed ``blis sweep`` command line; the exit status."""
    try:
        sweep = load_sweep(ns.sweep_file)
        if ns.dry_run:
            store = Store(ns.out if ns.out else sweep.default_out())
            for p in sweep.points:
                mark = "done" if store.is_done(p.id) else "todo"
                sys.stdout.write(f"{p.index}\t{p.id}\t{mark}\t{describe(p)}\n")
            sys.stdout.write(f"{len(sweep.points)} points -> {store.out}\n")
            return 0
        rep = run_sweep(sweep, out=ns.out, jobs=ns.jobs, executor=ns.executor, address=ns.address,
                        progress=ns.progress, prune=ns.prune)
    except BlisError as e:
        sys.stderr.write(f"blis sweep: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("blis sweep: interrupted; finished points are saved, rerun the same command to resume\n")
        return 130
    except Exception as e:  # never a traceback for the user
        sys.stderr.write(f"blis sweep: internal error: {type(e).__name__}: {e}\n"
                         "finished points are saved; please report this with the sweep file\n")
        return 70
    sys.stderr.write(f"blis sweep: {rep.total} points ({rep.ran} run, {rep.skipped} already done) in "
                     f"{rep.wall_s:.1f} s -> {rep.summary}\n")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``blis sweep ...`` without the ``sweep`` word (``python -m blis.sweep``)."""
    from blis.cli import _Parser

    p = _configure_parser(_Parser(prog="blis sweep", description=DESCRIPTION))
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(stream=sys.stderr, format="level=%(levelname)s msg=%(message)s", level=logging.WARNING)
    return run(ns)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
