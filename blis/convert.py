"""``blis convert`` and ``blis compose``: workload specs from other formats, and merged specs.

spec/04-workload-io.md §13.  Every subcommand validates the spec it produced
(an invalid one is an error) and writes it to stdout as YAML laid out the way
BLIS's yaml.v3 ``Marshal`` writes a ``WorkloadSpec``: keys in struct order,
4-space indentation, BLIS's ``omitempty`` rules (``tenant_id``, ``slo_class``
and ``streaming`` of a client are always written), floats in Go's shortest
``%g`` form, map keys sorted.

* ``blis convert preset --name <p> [--rate 1.0] [--num-requests 100]
  [--defaults-filepath defaults.yaml]``: the preset as a one-client spec
  (client ``preset-<name>``, constant arrivals, Gaussian lengths, prefix
  group ``shared`` when the preset has prefix tokens).
* ``blis convert inference-perf --spec <file>``: the file's ``inference_perf``
  block expanded into its clients (seed kept).  The inference-perf arrival
  samplers have no YAML form, so the clients say ``poisson`` with their rate
  fractions, as BLIS writes them.
* ``blis compose --from a.yaml --from b.yaml ...``: clients concatenated,
  ``aggregate_rate`` summed, each client's ``rate_fraction`` scaled by its
  spec's share of the total rate (plain concatenation when the total is 0);
  category from the first spec; cohorts, seed, ``num_requests`` and
  ``horizon`` are not carried over.
* ``blis convert servegen --path <dir> [--window-duration-seconds 600]
  [--drain-timeout-seconds 180] [--time midnight|morning|afternoon]``: the
  ServeGen directory's cohorts (:mod:`blis.workload.servegen`), seed 42,
  ``aggregate_rate`` 0; ``--time`` keeps one period's cohorts (language data only).

Each also accepts ``--output PATH`` (blis extension) to write the YAML to a
file (atomically) instead of stdout.
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from blis.errors import BlisError, ConfigError

log = logging.getLogger("blis.convert")


# ---------------------------------------------------------------------------
# yaml.v3-style emitter over an ordered node tree
# ---------------------------------------------------------------------------
class _Map(list):
    """An ordered mapping node: a list of (key, node)."""


class _Seq(list):
    """A sequence node."""


class _Raw(str):
    """A scalar already in its YAML text form."""


def _s(v: str) -> _Raw:
    from blis.workload.tracev2 import yaml_scalar_str

    return _Raw(yaml_scalar_str(str(v)))


def _f(v: float) -> _Raw:
    from blis.workload.tracev2 import yaml_scalar_float

    return _Raw(yaml_scalar_float(float(v)))


def _i(v: int) -> _Raw:
    return _Raw(str(int(v)))


def _b(v: bool) -> _Raw:
    return _Raw("true" if v else "false")


def _emit_map(m: _Map, indent: int, out: List[str], first_prefix: Optional[str] = None) -> None:
    pad = " " * indent
    for n, (k, v) in enumerate(m):
        lead = first_prefix if (n == 0 and first_prefix is not None) else pad
        if isinstance(v, _Map):
            if not v:
                out.append(f"{lead}{k}: {{}}")
            else:
                out.append(f"{lead}{k}:")
                _emit_map(v, indent + 4, out)
        elif isinstance(v, _Seq):
            if not v:
                out.append(f"{lead}{k}: []")
            else:
                out.append(f"{lead}{k}:")
                for item in v:
                    _emit_item(item, indent + 4, out)
        else:
            out.append(f"{lead}{k}: {v}")


def _emit_item(item, indent: int, out: List[str]) -> None:
    prefix = " " * indent + "- "
    if isinstance(item, _Map):
        if not item:
            out.append(prefix + "{}")
        else:
            _emit_map(item, indent + 2, out, first_prefix=prefix)
    elif isinstance(item, _Seq):
        if not item:
            out.append(prefix + "[]")
        else:
            first = len(out)
            for sub in item:
                _emit_item(sub, indent + 2, out)
            out[first] = prefix + out[first].lstrip()
    else:
        out.append(prefix + str(item))


def emit_yaml(node: _Map) -> str:
    out: List[str] = []
    _emit_map(node, 0, out)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# WorkloadSpec -> node tree (BLIS's struct order and omitempty rules)
# ---------------------------------------------------------------------------
def _yaml_v3_less(a: str, b: str) -> bool:
    """yaml.v3's map-key order for two string keys: runs of digits compare as numbers
    (``"50" < "100"``), letters sort after digits, otherwise by code point."""
    digits = False
    for i in range(min(len(a), len(b))):
        x, y = a[i], b[i]
        if x == y:
            digits = x.isdigit()
            continue
        xl, yl = x.isalpha(), y.isalpha()
        if xl and yl:
            return x < y
        if xl or yl:
            return xl if digits else yl
        an = bn = 0
        if x == "0" or y == "0":
            j = i - 1
            while j >= 0 and a[j].isdigit():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdigit():
            an = an * 10 + (ord(a[ai]) - 48)
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdigit():
            bn = bn * 10 + (ord(b[bi]) - 48)
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return x < y
    return len(a) < len(b)


def yaml_v3_sorted(keys) -> List[str]:
    """String map keys in the order yaml.v3's ``Marshal`` writes them."""
    import functools

    return sorted((str(k) for k in keys),
                  key=functools.cmp_to_key(lambda a, b: -1 if _yaml_v3_less(a, b) else (1 if _yaml_v3_less(b, a)
                                                                                        else 0)))


def _dist(d) -> _Map:
    m = _Map([("type", _s(d.type))])
    if d.params:
        m.append(("params", _Map((str(k), _f(d.params[k])) for k in yaml_v3_sorted(d.params))))
    if getattr(d, "file", ""):
        m.append(("file", _s(d.file)))
    return m


def _arrival(a) -> _Map:
    m = _Map([("process", _s(a.process))])
    for key in ("cv", "shape", "scale"):
        v = getattr(a, key, None)
        if v is not None:
            m.append((key, _f(v)))
    return m


def _network(n) -> _Map:
    m = _Map([("rtt_ms", _f(n.rtt_ms))])
    if n.bandwidth_mbps:
        m.append(("bandwidth_mbps", _f(n.bandwidth_mbps)))
    return m


def _window(w) -> _Map:
    m = _Map([("start_us", _i(w.start_us)), ("end_us", _i(w.end_us))])
    if w.trace_rate is not None:
        m.append(("trace_rate", _f(w.trace_rate)))
    if w.arrival is not None:
        m.append(("arrival", _arrival(w.arrival)))
    if w.input_distribution is not None:
        m.append(("input_distribution", _dist(w.input_distribution)))
    if w.output_distribution is not None:
        m.append(("output_distribution", _dist(w.output_distribution)))
    return m


def _multimodal(mm) -> _Map:
    keys = ("text_distribution", "image_distribution", "image_count_distribution", "audio_distribution",
            "audio_count_distribution", "video_distribution", "video_count_distribution")
    return _Map((k, _dist(getattr(mm, k))) for k in keys)


def _reasoning(r) -> _Map:
    m = _Map([("reason_ratio_distribution", _dist(r.reason_ratio_distribution))])
    mt = r.multi_turn
    if mt is not None:
        t = _Map([("max_rounds", _i(mt.max_rounds)), ("think_time_us", _i(mt.think_time_us)),
                  ("context_growth", _s(mt.context_growth))])
        if mt.single_session:
            t.append(("single_session", _b(True)))
        m.append(("multi_turn", t))
    return m


def _client(c) -> _Map:
    if getattr(c, "custom_arrival", None) is not None:
        # inference-perf samplers have no YAML form: BLIS writes the poisson fallback
        arrival = copy.copy(c.arrival)
        arrival.process = "poisson"
    else:
        arrival = c.arrival
    m = _Map([("id", _s(c.id)), ("tenant_id", _s(c.tenant_id)), ("slo_class", _s(c.slo_class))])
    if c.model:
        m.append(("model", _s(c.model)))
    if c.adapter:
        m.append(("adapter", _s(c.adapter)))
    m.append(("rate_fraction", _f(c.rate_fraction)))
    if c.concurrency:
        m.append(("concurrency", _i(c.concurrency)))
    if c.think_time_us:
        m.append(("think_time_us", _i(c.think_time_us)))
    m.append(("arrival", _arrival(arrival)))
    m.append(("input_distribution", _dist(c.input_distribution)))
    m.append(("output_distribution", _dist(c.output_distribution)))
    if c.prefix_group:
        m.append(("prefix_group", _s(c.prefix_group)))
    if c.prefix_length:
        m.append(("prefix_length", _i(c.prefix_length)))
    m.append(("streaming", _b(c.streaming)))
    if getattr(c, "network", None) is not None:
        m.append(("network", _network(c.network)))
    if c.lifecycle is not None:
        m.append(("lifecycle", _Map([("windows", _Seq(_window(w) for w in c.lifecycle))])))
    if getattr(c, "multimodal", None) is not None:
        m.append(("multimodal", _multimodal(c.multimodal)))
    if getattr(c, "reasoning", None) is not None:
        m.append(("reasoning", _reasoning(c.reasoning)))
    if c.timeout is not None:
        m.append(("timeout", _i(c.timeout)))
    if c.slo_target_us is not None:
        m.append(("slo_target_us", _i(c.slo_target_us)))
    if c.closed_loop is not None:
        m.append(("closed_loop", _b(c.closed_loop)))
    return m


def _cohort(k) -> _Map:
    m = _Map([("id", _s(k.id)), ("population", _i(k.population))])
    for key in ("tenant_id", "slo_class", "model", "adapter"):
        if getattr(k, key):
            m.append((key, _s(getattr(k, key))))
    m.append(("arrival", _arrival(k.arrival)))
    m.append(("input_distribution", _dist(k.input_distribution)))
    m.append(("output_distribution", _dist(k.output_distribution)))
    if k.prefix_group:
        m.append(("prefix_group", _s(k.prefix_group)))
    if k.prefix_sharing:
        m.append(("prefix_sharing", _s(k.prefix_sharing)))
    if k.streaming:
        m.append(("streaming", _b(True)))
    m.append(("rate_fraction", _f(k.rate_fraction)))
    if k.diurnal is not None:
        m.append(("diurnal", _Map([("peak_hour", _i(k.diurnal.peak_hour)),
                                   ("peak_to_trough_ratio", _f(k.diurnal.peak_to_trough_ratio))])))
    if k.spike is not None:
        sp = _Map([("start_time_us", _i(k.spike.start_time_us)), ("duration_us", _i(k.spike.duration_us))])
        if k.spike.trace_rate is not None:
            sp.append(("trace_rate", _f(k.spike.trace_rate)))
        m.append(("spike", sp))
    if k.drain is not None:
        m.append(("drain", _Map([("start_time_us", _i(k.drain.start_time_us)),
                                 ("ramp_duration_us", _i(k.drain.ramp_duration_us))])))
    if k.prefix_length:
        m.append(("prefix_length", _i(k.prefix_length)))
    if k.reasoning is not None:
        m.append(("reasoning", _reasoning(k.reasoning)))
    if k.closed_loop is not None:
        m.append(("closed_loop", _b(k.closed_loop)))
    if k.timeout is not None:
        m.append(("timeout", _i(k.timeout)))
    if k.slo_target_us is not None:
        m.append(("slo_target_us", _i(k.slo_target_us)))
    if k.network is not None:
        m.append(("network", _network(k.network)))
    if k.multimodal is not None:
        m.append(("multimodal", _multimodal(k.multimodal)))
    return m


def spec_node(spec) -> _Map:
    """A :class:`blis.workload.spec.WorkloadSpec` as an ordered node tree (BLIS's ``WorkloadSpec`` marshalling)."""
    m = _Map([("version", _s(spec.version)), ("seed", _i(spec.seed)), ("category", _s(spec.category)),
              ("clients", _Seq(_client(c) for c in spec.clients))])
    cohorts = getattr(spec, "cohorts", None) or []
    if cohorts:
        m.append(("cohorts", _Seq(_cohort(k) for k in cohorts)))
    m.append(("aggregate_rate", _f(spec.aggregate_rate)))
    if spec.horizon:
        m.append(("horizon", _i(spec.horizon)))
    if spec.num_requests:
        m.append(("num_requests", _i(spec.num_requests)))
    sg = getattr(spec, "servegen_data", None)
    if sg is not None:
        s = _Map()
        for key in ("path", "time_window"):
            if getattr(sg, key):
                s.append((key, _s(getattr(sg, key))))
        for key in ("span_start", "span_end", "window_duration_secs", "drain_timeout_secs"):
            if getattr(sg, key):
                s.append((key, _i(getattr(sg, key))))
        m.append(("servegen_data", s))
    ip = getattr(spec, "inference_perf", None)
    if ip is not None:
        node = _Map([("stages", _Seq(_Map([("rate", _f(st.rate)), ("duration", _i(st.duration))])
                                     for st in ip.stages))])
        sp = ip.shared_prefix
        if sp is None:
            node.append(("shared_prefix", _Raw("null")))
        else:
            node.append(("shared_prefix", _Map([
                ("num_unique_system_prompts", _i(sp.num_unique_system_prompts)),
                ("num_users_per_system_prompt", _i(sp.num_users_per_system_prompt)),
                ("system_prompt_len", _i(sp.system_prompt_len)), ("question_len", _i(sp.question_len)),
                ("output_len", _i(sp.output_len)), ("enable_multi_turn_chat", _b(sp.enable_multi_turn_chat))])))
        m.append(("inference_perf", node))
    targets = getattr(spec, "goodput_slo_targets", None) or {}
    if targets:
        g = _Map()
        for cls in yaml_v3_sorted(targets):
            t = targets[cls]
            tm = _Map()
            for key in ("ttft_ms", "itl_ms", "e2e_ms"):
                if getattr(t, key):
                    tm.append((key, _f(getattr(t, key))))
            g.append((_s(cls), tm))
        m.append(("goodput_slo_targets", g))
    return m


def spec_yaml(spec) -> str:
    """``spec`` as the YAML BLIS's ``yaml.Marshal`` writes."""
    return emit_yaml(spec_node(spec))


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------
def convert_preset(name: str, rate: float = 1.0, num_requests: int = 100, defaults_path=None):
    """BLIS's ``ConvertPreset``: the preset as a one-client v2 spec (seed 0, client ``preset-<name>``)."""
    from blis.workload import spec as S
    from blis.workload import synthesis as syn

    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"--rate must be a finite value > 0, got {rate}")
    if num_requests <= 0:
        raise ConfigError(f"--num-requests must be > 0, got {num_requests}")
    presets = syn.load_presets(defaults_path)
    if name not in presets:
        raise ConfigError(f"Unknown preset {name!r}. Check defaults.yaml for available workloads; "
                          f"valid: {', '.join(sorted(presets))}")
    p = presets[name]

    def gauss(mean, std, lo, hi):
        return S.DistSpec("gaussian", {"mean": float(mean), "std_dev": float(std), "min": float(lo),
                                       "max": float(hi)})

    client = S.ClientSpec(
        id=f"preset-{name}", rate_fraction=1.0, arrival=S.ArrivalSpec(process="constant"),
        input_distribution=gauss(p.prompt_tokens, p.prompt_tokens_stdev, p.prompt_tokens_min, p.prompt_tokens_max),
        output_distribution=gauss(p.output_tokens, p.output_tokens_stdev, p.output_tokens_min, p.output_tokens_max),
        prefix_length=int(p.prefix_tokens), prefix_group="shared" if p.prefix_tokens > 0 else "")
    return S.WorkloadSpec(version="2", seed=0, category="language", aggregate_rate=float(rate),
                          num_requests=int(num_requests), clients=[client])


def convert_inference_perf(path):
    """BLIS's ``ConvertInferencePerf``: the file's ``inference_perf`` block expanded into clients."""
    from blis.workload import spec as S

    if not path:
        raise ConfigError("--spec: inference-perf spec path must not be empty")
    spec = S.load_workload_spec(path, validate=False)
    if spec.inference_perf is None:
        raise ConfigError(f"file {path} does not contain an inference_perf section")
    clients, category, aggregate = S.expand_inference_perf(spec.inference_perf, str(path))
    return S.WorkloadSpec(version="2", seed=int(spec.seed), category=category, aggregate_rate=float(aggregate),
                          clients=clients)


def compose_specs(specs: Sequence[Any]):
    """BLIS's ``ComposeSpecs``: merge client lists, sum the rates and rescale the rate fractions."""
    from blis.workload import spec as S

    if not specs:
        raise ConfigError("at least one --from spec is required")
    total = 0.0
    for s in specs:
        total += float(s.aggregate_rate)
    if not math.isfinite(total):
        raise ConfigError(f"compose: total aggregate rate must be finite, got {total}")
    merged = S.WorkloadSpec(version="2", seed=0, category=specs[0].category, aggregate_rate=total)
    clients = []
    if total == 0:
        for s in specs:
            clients.extend(copy.deepcopy(c) for c in s.clients)
    else:
        if total < 0:
            raise ConfigError(f"compose: total aggregate rate must be non-negative, got {total}")
        for s in specs:
            w = float(s.aggregate_rate) / total
            for c in s.clients:
                c = copy.deepcopy(c)
                c.rate_fraction *= w
                clients.append(c)
    merged.clients = clients
    return merged


def validated_yaml(spec) -> str:
    """Validate ``spec`` as BLIS does before writing it, then its YAML."""
    from blis.workload.spec import validate_workload_spec

    try:
        validate_workload_spec(spec, "generated spec")
    except ConfigError as e:
        raise ConfigError(f"generated spec is invalid: {e}") from None
    return spec_yaml(spec)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _write(ns, text: str) -> None:
    out = getattr(ns, "output", "")
    if out:
        from blis.workload.tracev2 import _atomic_write

        p = Path(out)
        if p.parent and not p.parent.exists():
            raise ConfigError(f"--output: folder must exist, got {str(p.parent)!r}")
        _atomic_write(p, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _defaults(path: str):
    return path if path and Path(path).is_file() else None


def _run_guarded(cmd: str, fn, ns) -> int:
    try:
        _write(ns, fn(ns))
    except BlisError as e:
        sys.stderr.write(f"blis {cmd}: error: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"blis {cmd}: error: {e}\n")
        return 1
    return 0


def _preset(ns) -> str:
    if not ns.name:
        raise ConfigError("--name is required (a preset of defaults.yaml, e.g. chatbot)")
    return validated_yaml(convert_preset(ns.name, ns.rate, ns.num_requests, _defaults(ns.defaults_filepath)))


def _inference_perf(ns) -> str:
    if not ns.spec:
        raise ConfigError("--spec is required (a YAML file with an inference_perf section)")
    return validated_yaml(convert_inference_perf(ns.spec))


def convert_servegen(path: str, window_duration_secs: int = 600, drain_timeout_secs: int = 180,
                     time_filter: str = ""):
    """BLIS's ``ConvertServeGen`` (+ ``--time``): the directory's cohorts in a v2 spec (seed 42,
    aggregate_rate 0).  ``time_filter`` keeps the cohorts ``<period>-*`` (language data only)."""
    from blis.workload import spec as S
    from blis.workload.servegen import load_servegen_cohorts

    if not path:
        raise ConfigError("--path: ServeGen path must not be empty")
    sg = S.ServeGenDataSpec(path=str(path), window_duration_secs=int(window_duration_secs),
                            drain_timeout_secs=int(drain_timeout_secs))
    try:
        cohorts, category = load_servegen_cohorts(sg, 42)
    except ConfigError as e:
        raise ConfigError(f"ServeGen conversion failed: loading ServeGen data from {path}: {e}") from None
    spec = S.WorkloadSpec(version="2", seed=42, category=category, aggregate_rate=0.0, cohorts=cohorts)
    if category == "reasoning" and time_filter:
        raise ConfigError(f"--time must be empty for reasoning workloads (reasoning data has no periods), got "
                          f"{time_filter!r}")
    if time_filter:
        spec.cohorts = [k for k in cohorts if k.id.startswith(time_filter + "-")]
        if not spec.cohorts:
            raise ConfigError(f"--time {time_filter}: no cohorts found for that period; generated cohorts: "
                              f"{', '.join(k.id for k in cohorts)}")
    return spec


def _servegen(ns) -> str:
    if ns.window_duration_seconds <= 0:
        raise ConfigError(f"--window-duration-seconds must be > 0, got {ns.window_duration_seconds}")
    if ns.drain_timeout_seconds < 0:
        raise ConfigError(f"--drain-timeout-seconds must be >= 0, got {ns.drain_timeout_seconds}")
    if ns.time and ns.time not in ("midnight", "morning", "afternoon"):
        raise ConfigError(f"--time must be one of: midnight, morning, afternoon (got {ns.time!r})")
    if not ns.path:
        raise ConfigError("--path is required (a ServeGen data directory)")
    return validated_yaml(convert_servegen(ns.path, ns.window_duration_seconds, ns.drain_timeout_seconds, ns.time))


def _compose(ns) -> str:
    from blis.workload.spec import load_workload_spec

    if not ns.sources:
        raise ConfigError("at least one --from flag is required")
    specs = []
    for p in ns.sources:
        try:
            specs.append(load_workload_spec(p, validate=False))
        except ConfigError as e:
            raise ConfigError(f"failed to load spec {p}: {e}") from None
    return validated_yaml(compose_specs(specs))


def run_convert(ns) -> int:
    fn = getattr(ns, "_convert", None)
    if fn is None:
        sys.stderr.write("blis convert: error: a subcommand is required; valid: preset, inference-perf, servegen\n")
        return 1
    return _run_guarded("convert " + ns._convert_name, fn, ns)


def run_compose(ns) -> int:
    return _run_guarded("compose", _compose, ns)


def _convert_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="convert_command", parser_class=type(p))
    pp = sub.add_parser("preset", help="a named workload preset as a v2 spec")
    pp.add_argument("--name", default="", help="preset name, e.g. chatbot (required)")
    pp.add_argument("--rate", type=float, default=1.0, help="request rate (req/s)")
    pp.add_argument("--num-requests", type=int, default=100, help="number of requests")
    pp.add_argument("--defaults-filepath", default="defaults.yaml", help="defaults.yaml (bundled copy if absent)")
    pp.add_argument("--output", default="", help="write to this file instead of stdout")
    pp.set_defaults(_convert=_preset, _convert_name="preset")
    pi = sub.add_parser("inference-perf", help="an inference-perf spec as a v2 spec")
    pi.add_argument("--spec", default="", help="YAML file with an inference_perf section (required)")
    pi.add_argument("--output", default="", help="write to this file instead of stdout")
    pi.set_defaults(_convert=_inference_perf, _convert_name="inference-perf")
    ps = sub.add_parser("servegen", help="a ServeGen data directory as a v2 spec (cohorts)")
    ps.add_argument("--path", default="", help="ServeGen data directory")
    ps.add_argument("--window-duration-seconds", type=int, default=600)
    ps.add_argument("--drain-timeout-seconds", type=int, default=180)
    ps.add_argument("--time", default="", help="midnight, morning or afternoon")
    ps.add_argument("--output", default="", help="write to this file instead of stdout")
    ps.set_defaults(_convert=_servegen, _convert_name="servegen")


def _compose_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="sources", action="append", default=[], help="a v2 spec YAML (repeatable)")
    p.add_argument("--output", default="", help="write to this file instead of stdout")


def add_subparsers(subparsers) -> None:
    """Register ``convert`` and ``compose`` on a ``blis`` subparsers object; ``ns._run(ns)`` runs them."""
    c = subparsers.add_parser("convert", help="convert presets / inference-perf specs / ServeGen data to v2 workload specs",
                              description="Convert external workload formats to a v2 workload spec (stdout).")
    _convert_args(c)
    c.set_defaults(_run=run_convert)
    m = subparsers.add_parser("compose", help="merge v2 workload specs",
                              description="Merge v2 workload specs' clients into one spec (stdout).")
    _compose_args(m)
    m.set_defaults(_run=run_compose)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry point: ``argv`` starts with ``convert`` or ``compose``."""
    p = argparse.ArgumentParser(prog="blis")
    sub = p.add_subparsers(dest="command")
    add_subparsers(sub)
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(ns, "_run", None) is None:
        p.print_help(sys.stderr)
        return 1
    return ns._run(ns)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
