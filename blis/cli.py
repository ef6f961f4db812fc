"""The ``blis`` command line: ``blis run`` and ``blis replay`` with BLIS's flag
names and defaults, so a BLIS command line runs unchanged.

Errors exit with status 1 and one line on stderr naming the flag, the value and
the valid options; logs and progress go to stderr, results to stdout.  Output
files are written to a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from blis.errors import BlisError, ConfigError

log = logging.getLogger("blis")

INT64_MAX = 9223372036854775807
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
              "fatal": logging.CRITICAL, "panic": logging.CRITICAL}

PREEMPTION_POLICIES = ("fcfs", "priority")
LATENCY_MODELS = ("roofline", "trained-physics")
PRESETS_HINT = "chatbot, summarization, contentgen, multidoc"

#: routing/admission names this build simulates; the others are recognised BLIS
#: names that are rejected with a clear message instead of being run wrongly.


# ---------------------------------------------------------------- arg parsing
class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 1."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(1)


def _explicit(ns):
    """The set of flags given explicitly (subparsers use their own namespace)."""
    if not hasattr(ns, "_explicit"):
        ns._explicit = set()
    return ns._explicit


class _Track(argparse.Action):
    """Store a value and remember that the flag was given explicitly."""

    def __call__(self, parser, ns, values, option_string=None):
        setattr(ns, self.dest, values)
        _explicit(ns).add(self.dest)


class _TrackTrue(argparse.Action):
    def __init__(self, option_strings, dest, default=False, **kw):
        super().__init__(option_strings, dest, nargs="?", const="true", default=default, **kw)

    def __call__(self, parser, ns, values, option_string=None):
        v = str(values).lower()
        if v not in ("true", "false", "1", "0", "t", "f"):
            parser.error(f"{option_string} must be a boolean, got {values!r}; valid: true, false")
        setattr(ns, self.dest, v in ("true", "1", "t"))
        _explicit(ns).add(self.dest)


def _add(p, flag, typ=str, default=None, help="", alias=None):
    names = [flag] + ([alias] if alias else [])
    if typ is bool:
        p.add_argument(*names, action=_TrackTrue, default=default or False, help=help)
    else:
        p.add_argument(*names, type=typ, default=default, action=_Track, help=help)


def _int(s):
    try:
        return int(s, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {s!r}")


def _float(s):
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {s!r}")


def _sim_flags(p):
    g = p.add_argument_group("general")
    _add(g, "--seed", _int, 42, "random seed (workload generation and routing tie-breaks)")
    _add(g, "--horizon", _int, INT64_MAX, "simulation horizon in microseconds")
    _add(g, "--log", str, "warn", "log level: trace, debug, info, warn, error, fatal, panic")
    _add(g, "--defaults-filepath", str, "defaults.yaml",
         "defaults.yaml with model defaults, presets and trained coefficients (bundled copy if absent)")
    _add(g, "--model-config-folder", str, "", "folder with a HuggingFace config.json for --model")
    _add(g, "--hardware-config", str, "", "hardware_config.json with GPU peak figures (bundled if empty)")
    _add(g, "--model", str, "", "model name, e.g. meta-llama/llama-3.1-8b-instruct (required)")
    g = p.add_argument_group("engine (vLLM)")
    _add(g, "--total-kv-blocks", _int, 1000000, "KV blocks per instance (default: computed from model+GPU)")
    _add(g, "--max-num-seqs", _int, 256, "max requests in a running batch", alias="--max-num-running-reqs")
    _add(g, "--max-num-batched-tokens", _int, 2048, "token budget per step", alias="--max-num-scheduled-tokens")
    _add(g, "--block-size-in-tokens", _int, 16, "tokens per KV block")
    _add(g, "--long-prefill-token-threshold", _int, 0, "chunk prefills longer than this (0 = off)")
    _add(g, "--max-model-len", _int, 0, "max total tokens per request (default: from config.json)")
    _add(g, "--gpu-memory-utilization", _float, 0.9, "GPU memory fraction for KV capacity")
    _add(g, "--batch-formation", str, "vllm", "batch formation strategy (blis extension): vllm, vllm-no-chunked-prefill")
    g = p.add_argument_group("latency model")
    _add(g, "--latency-model", str, "trained-physics", "roofline or trained-physics")
    _add(g, "--alpha-coeffs", str, "0,0,0", "alpha coefficients (trained-physics)")
    _add(g, "--beta-coeffs", str, "0,0,0", "beta coefficients (trained-physics)")
    _add(g, "--hardware", str, "", "GPU name (default from defaults.yaml)")
    _add(g, "--tp", _int, 0, "tensor parallelism (default from defaults.yaml)")
    _add(g, "--dp", _int, 1, "data parallelism (MoE, trained-physics)")
    _add(g, "--enable-expert-parallel", bool, False, "expert parallelism (MoE, trained-physics)")
    _add(g, "--moe-comm-backend", str, "", "MoE all-to-all backend (trained-physics)")
    g = p.add_argument_group("cluster and routing")
    _add(g, "--num-instances", _int, 1, "number of instances")
    _add(g, "--admission-policy", str, "always-admit", "admission policy: always-admit, token-bucket, reject-all, tier-shed, gaie-legacy")
    _add(g, "--admission-latency", _int, 0, "admission latency (us)")
    _add(g, "--routing-latency", _int, 0, "routing latency (us)")
    _add(g, "--token-bucket-capacity", _float, 10000.0, "token bucket capacity (tokens)")
    _add(g, "--token-bucket-refill-rate", _float, 1000.0, "token bucket refill rate (tokens/s)")
    _add(g, "--routing-policy", str, "round-robin", "routing policy: round-robin, least-loaded, weighted, always-busiest")
    _add(g, "--routing-scorers", str, "", "weighted routing scorers name:w,...")
    _add(g, "--scheduler", str, "fcfs", "instance scheduler (see blis.schedulers): fcfs, priority-fcfs, sjf, ...")
    _add(g, "--preemption-policy", str, "fcfs", "preemption victim policy: fcfs, priority")
    _add(g, "--policy-config", str, "", "policy bundle YAML")
    _add(g, "--snapshot-refresh-interval", _int, 50000, "routing snapshot refresh interval (us)")
    _add(g, "--cache-signal-delay", _int, 50000, "prefix-cache signal delay (us)")
    g = p.add_argument_group("autoscaling (node pools and engine in --policy-config)")
    _add(g, "--model-autoscaler-interval-us", _float, 0.0,
         "autoscaler tick interval in us (0 = off); overrides policy-config autoscaler.interval_us")
    _add(g, "--scale-trace", str, "", "write the scale-event trace as Parquet (blis extension)")
    g = p.add_argument_group("flow control (gateway queue)")
    _add(g, "--flow-control", bool, False, "enable the gateway queue in front of the router")
    _add(g, "--saturation-detector", str, "never", "never, utilization, concurrency")
    _add(g, "--dispatch-order", str, "fifo", "fifo, priority, slo-deadline")
    _add(g, "--slo-targets", str, "", "per-class TTFT targets in us for slo-deadline (class=us,...)")
    _add(g, "--max-gateway-queue-depth", _int, 0, "max queued requests (0 = unbounded)")
    _add(g, "--queue-depth-threshold", _float, 5.0, "utilization detector: queue depth at saturation")
    _add(g, "--kv-cache-util-threshold", _float, 0.8, "utilization detector: KV utilisation at saturation")
    _add(g, "--max-concurrency", _int, 100, "concurrency detector: in-flight requests per instance at saturation")
    _add(g, "--per-band-capacity", _int, 0, "max queued requests per priority band (0 = unbounded)")
    _add(g, "--usage-limit-threshold", _float, 1.0, "lowest band's saturation ceiling, in (0, 1]")
    _add(g, "--fairness-policy", str, "global-strict", "global-strict or round-robin (per tenant)")
    _add(g, "--request-ttl", _int, 0, "drop requests queued longer than this (us, 0 = never)")
    _add(g, "--queue-shedding", bool, False, "displace sheddable requests when the queue is full")
    _add(g, "--dispatch-tick-interval", _int, 1000, "dispatch tick interval (us)")
    _add(g, "--in-flight-eviction", bool, False, "evict sheddable in-flight requests under saturation")
    g = p.add_argument_group("KV tiers")
    _add(g, "--kv-cpu-blocks", _int, 0, "CPU-tier KV blocks (0 = single tier)")
    _add(g, "--kv-offload-threshold", _float, 0.9, "deprecated, ignored")
    _add(g, "--kv-transfer-bandwidth", _float, 100.0, "CPU->GPU blocks per us")
    _add(g, "--kv-transfer-base-latency", _int, 0, "CPU->GPU transfer base latency (us)")
    g = p.add_argument_group("diagnostics")
    _add(g, "--trace-level", str, "none", "decision tracing: none, decisions")
    _add(g, "--counterfactual-k", _int, 0, "counterfactual candidates per routing record")
    _add(g, "--summarize-trace", bool, False, "print a decision-trace summary")
    _add(g, "--fitness-weights", str, "", "fitness weights key:w,...")
    _add(g, "--decision-trace", str, "", "write decision-trace tables as <prefix>.<table>.parquet (blis extension)")
    g = p.add_argument_group("blis outputs")
    _add(g, "--metrics-path", str, "", "write the metrics JSON (aggregate + per-request rows)")
    _add(g, "--results-parquet", str, "", "write per-request results as Parquet (units in column names)")
    _add(g, "--trace-output", str, "", "write the workload as TraceV2 <prefix>.yaml + <prefix>.csv")
    _add(g, "--progress", str, "auto", "progress bar on stderr: auto (when a terminal), always, never")


def _run_flags(p):
    g = p.add_argument_group("workload")
    _add(g, "--workload", str, "distribution", f"distribution or a preset ({PRESETS_HINT})")
    _add(g, "--workload-spec", str, "", "workload-spec YAML (v2)")
    _add(g, "--rate", _float, 1.0, "requests per second")
    _add(g, "--num-requests", _int, 100, "number of requests")
    _add(g, "--prompt-tokens", _int, 512, "mean prompt tokens (excluding the prefix)")
    _add(g, "--prompt-tokens-stdev", _int, 256, "prompt tokens standard deviation")
    _add(g, "--prompt-tokens-min", _int, 2, "min prompt tokens")
    _add(g, "--prompt-tokens-max", _int, 7000, "max prompt tokens")
    _add(g, "--output-tokens", _int, 512, "mean output tokens")
    _add(g, "--output-tokens-stdev", _int, 256, "output tokens standard deviation")
    _add(g, "--output-tokens-min", _int, 2, "min output tokens")
    _add(g, "--output-tokens-max", _int, 7000, "max output tokens")
    _add(g, "--prefix-tokens", _int, 0, "shared prefix tokens prepended to every prompt")
    _add(g, "--concurrency", _int, 0, "closed-loop concurrency (0 = open loop)")
    _add(g, "--think-time-ms", _int, 0, "think time between closed-loop requests (ms)")
    _add(g, "--timeout", _int, 300, "client timeout in seconds (negative disables)")


def _replay_flags(p):
    g = p.add_argument_group("trace")
    _add(g, "--trace-header", str, "", "TraceV2 header YAML (required)")
    _add(g, "--trace-data", str, "", "TraceV2 data CSV (required)")
    _add(g, "--results-path", str, "", "write per-request results JSON")
    _add(g, "--session-mode", str, "fixed", "fixed (recorded arrivals) or closed-loop (a session's next round "
         "arrives a think time after its previous round completes)")
    _add(g, "--think-time-ms", _int, 0, "closed-loop think time between rounds in ms (0 = the trace's recorded "
         "think_time_us, else its arrival gaps)")
    _add(g, "--think-time-dist", str, "", "closed-loop think time distribution, e.g. "
         "lognormal:mu=2.0,sigma=0.6,min=3s,max=30s or constant:value=500ms")


def build_parser(only: str = None) -> argparse.ArgumentParser:
    """The ``blis`` parser; ``only="run"``/``"replay"`` skips importing the other subcommands
    (their modules pull in HTTP, Arrow and plotting code a simulation does not need)."""
    p = _Parser(prog="blis", description="blis: fast, faithful LLM inference serving simulator")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="simulate a generated workload",
                         description="Simulate a workload generated from flags, a preset or a spec.")
    _sim_flags(run)
    _run_flags(run)
    rep = sub.add_parser("replay", help="simulate a TraceV2 trace",
                         description="Replay a TraceV2 trace through the simulator.")
    _sim_flags(rep)
    _replay_flags(rep)
    if only in ("run", "replay"):
        return p
    from blis import calibrate, convert, observe, plot, serve, sweep

    observe.add_subparser(sub)
    calibrate.add_subparser(sub)
    serve.add_subparser(sub)         # blis serve: simulated instances over HTTP
    convert.add_subparsers(sub)      # "convert" and "compose"
    sweep.add_subparser(sub)         # blis sweep SWEEP.yaml
    plot.add_subparser(sub)          # blis plot SUMMARY.parquet
    return p


def parse_args(argv):
    argv = list(argv)
    p = build_parser(only=argv[0] if argv else None)
    ns = p.parse_args(argv)
    _explicit(ns)
    if ns.command is None:
        p.print_help(sys.stderr)
        sys.exit(1)
    return ns


# ---------------------------------------------------------------- validation
def _choice(flag, value, valid):
    if value not in valid:
        raise ConfigError(f"{flag}: must be one of the valid names, got {value!r}; valid: {', '.join(valid)}")


def _require(cond, flag, constraint, value):
    if not cond:
        raise ConfigError(f"{flag}: must be {constraint}, got {value}")


def _floats(flag, text):
    try:
        vals = [float(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise ConfigError(f"{flag}: must be a comma-separated list of numbers, got {text!r}")
    for v in vals:
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"{flag}: every value must be finite and >= 0, got {text!r}")
    return vals


def validate_common(ns):
    if not ns.model:
        raise ConfigError("--model: LLM name not provided (required), got ''; e.g. --model meta-llama/llama-3.1-8b-instruct")
    if ns.log.lower() not in LOG_LEVELS:
        raise ConfigError(f"--log: must be a log level, got {ns.log!r}; valid: {', '.join(LOG_LEVELS)}")
    _require(ns.horizon > 0, "--horizon", "> 0 (microseconds)", ns.horizon)
    _require(ns.num_instances >= 1, "--num-instances", ">= 1", ns.num_instances)
    _require(ns.max_num_seqs >= 1, "--max-num-seqs", ">= 1", ns.max_num_seqs)
    _require(ns.max_num_batched_tokens >= 1, "--max-num-batched-tokens", ">= 1", ns.max_num_batched_tokens)
    _require(ns.block_size_in_tokens >= 1, "--block-size-in-tokens", ">= 1", ns.block_size_in_tokens)
    _require(ns.long_prefill_token_threshold >= 0, "--long-prefill-token-threshold", ">= 0",
             ns.long_prefill_token_threshold)
    _require(ns.max_model_len >= 0, "--max-model-len", ">= 0", ns.max_model_len)
    _require(ns.total_kv_blocks >= 1, "--total-kv-blocks", ">= 1", ns.total_kv_blocks)
    _require(0 < ns.gpu_memory_utilization <= 1 and math.isfinite(ns.gpu_memory_utilization),
             "--gpu-memory-utilization", "in (0, 1]", ns.gpu_memory_utilization)
    _require(ns.tp >= 0, "--tp", ">= 0", ns.tp)
    _require(ns.admission_latency >= 0, "--admission-latency", ">= 0 (us)", ns.admission_latency)
    _require(ns.routing_latency >= 0, "--routing-latency", ">= 0 (us)", ns.routing_latency)
    _require(ns.snapshot_refresh_interval >= 0, "--snapshot-refresh-interval", ">= 0 (us)",
             ns.snapshot_refresh_interval)
    for flag, v in (("--token-bucket-capacity", ns.token_bucket_capacity),
                    ("--token-bucket-refill-rate", ns.token_bucket_refill_rate)):
        _require(math.isfinite(v) and v > 0, flag, "finite and > 0", v)
    from blis.latency import valid_latency_backend_names
    _choice("--latency-model", ns.latency_model, valid_latency_backend_names())
    from blis.routing import ROUTING_POLICIES, parse_scorers
    ROUTING_POLICIES.get(ns.routing_policy)
    ns._scorers = parse_scorers(ns.routing_scorers)
    _require(ns.cache_signal_delay >= 0, "--cache-signal-delay", ">= 0 (us)", ns.cache_signal_delay)
    from blis.policies import ADMISSION_POLICIES
    ADMISSION_POLICIES.get(ns.admission_policy)
    from blis.batch_formation import BATCH_FORMATIONS
    from blis.schedulers import SCHEDULERS
    SCHEDULERS.get(ns.scheduler or "fcfs")
    BATCH_FORMATIONS.get(ns.batch_formation)
    _choice("--preemption-policy", ns.preemption_policy or "fcfs", PREEMPTION_POLICIES)
    _choice("--trace-level", ns.trace_level, ("none", "decisions"))
    _choice("--progress", ns.progress, ("auto", "always", "never"))
    _require(ns.kv_cpu_blocks >= 0, "--kv-cpu-blocks", ">= 0", ns.kv_cpu_blocks)
    apply_policy_config(ns)
    _require(math.isfinite(ns.kv_offload_threshold) and 0 <= ns.kv_offload_threshold <= 1,
             "--kv-offload-threshold", "in [0, 1]", ns.kv_offload_threshold)
    _require(ns.kv_transfer_base_latency >= 0, "--kv-transfer-base-latency", ">= 0 (us)", ns.kv_transfer_base_latency)
    if ns.kv_cpu_blocks > 0:
        _require(math.isfinite(ns.kv_transfer_bandwidth) and ns.kv_transfer_bandwidth > 0,
                 "--kv-transfer-bandwidth", "finite and > 0 (blocks/us)", ns.kv_transfer_bandwidth)
        if ns.kv_offload_threshold != 0:
            log.warning("--kv-offload-threshold is deprecated in the vLLM v1 mirror model and is ignored")
    _require(ns.counterfactual_k >= 0, "--counterfactual-k", ">= 0", ns.counterfactual_k)
    ns._fitness = parse_fitness_weights(ns.fitness_weights)
    if (ns.counterfactual_k > 0 or ns.summarize_trace or ns.decision_trace) and ns.trace_level != "decisions":
        log.warning("--counterfactual-k, --summarize-trace and --decision-trace need --trace-level decisions")
    if ns.routing_scorers and ns.routing_policy != "weighted":
        log.warning("--routing-scorers has no effect unless --routing-policy weighted")


FITNESS_KEYS = ("mean_e2e", "mean_ttft", "p50_e2e", "p50_ttft", "p99_e2e", "p99_ttft", "throughput", "tokens_per_sec")


def parse_fitness_weights(text: str) -> dict:
    """``--fitness-weights "key:w,..."``: weights finite and >= 0, keys from FITNESS_KEYS."""
    out = {}
    if not text:
        return out
    for part in text.split(","):
        kv = part.strip().split(":", 1)
        if len(kv) != 2:
            raise ConfigError(f"--fitness-weights: each entry must be key:weight, got {part.strip()!r}")
        key = kv[0].strip()
        if key not in FITNESS_KEYS:
            raise ConfigError(f"--fitness-weights: key must be a known metric, got {key!r}; valid: {', '.join(FITNESS_KEYS)}")
        try:
            w = float(kv[1])
        except ValueError:
            raise ConfigError(f"--fitness-weights: weight of {key!r} must be a number, got {kv[1].strip()!r}")
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"--fitness-weights: weight of {key!r} must be finite and >= 0, got {kv[1].strip()}")
        out[key] = w
    return out


def apply_policy_config(ns):
    """Merge ``--policy-config`` into the namespace; explicit CLI flags win (BLIS precedence)."""
    from blis.policy_config import PolicyBundle, load_policy_config

    from blis.autoscaler import AutoscalerConfig

    b = load_policy_config(ns.policy_config) if ns.policy_config else PolicyBundle()
    ex = ns._explicit
    auto = b.autoscaler if b.autoscaler is not None else AutoscalerConfig()
    if "model_autoscaler_interval_us" in ex:
        v = ns.model_autoscaler_interval_us
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"--model-autoscaler-interval-us: must be a finite number >= 0 (0 = off), got {v}")
        auto.interval_us = float(v)
    if ns.command == "replay":
        if "model_autoscaler_interval_us" in ex:
            raise ConfigError("--model-autoscaler-interval-us: not supported by blis replay; remove the flag "
                              "or use blis run")
        if auto.enabled:
            raise ConfigError(f"--policy-config: blis replay does not support the autoscaler section "
                              f"(interval_us={auto.interval_us:g}); remove it or use blis run")
        if auto.node_pools:
            raise ConfigError(f"--policy-config: blis replay does not support node_pools "
                              f"({len(auto.node_pools)} pool(s)); remove the section or use blis run")
    ns._autoscale = auto
    for flag, value in (("admission_policy", b.admission_policy), ("token_bucket_capacity", b.token_bucket_capacity),
                        ("token_bucket_refill_rate", b.token_bucket_refill_rate),
                        ("routing_policy", b.routing_policy), ("scheduler", b.scheduler),
                        ("preemption_policy", b.preemption_policy)):
        if value is not None and flag not in ex:
            setattr(ns, flag, value)
    if not ns._scorers and b.routing_scorers:
        ns._scorers = list(b.routing_scorers)
    if ns.admission_policy == "tier-shed" and b.tier_shed_min_priority is None:
        log.warning("tier-shed selected without policy-config tier_shed_min_priority: every class is admitted "
                    "(min priority 0)")
    ns._bundle = b


# ---------------------------------------------------------------- resolution
def _defaults_path(ns):
    p = Path(ns.defaults_filepath)
    if p.is_file():
        return p
    if "defaults_filepath" in ns._explicit:
        raise ConfigError(f"--defaults-filepath: file must exist, got {ns.defaults_filepath!r}")
    return None  # bundled copy


def resolve_latency(ns):
    """Model, hardware, latency model, KV blocks and max-model-len as BLIS's CLI resolves them."""
    from blis.capacity import calculate_kv_blocks, resolve_max_model_len
    from blis.hardware import model_defaults, resolve_hardware_calib
    from blis.latency import build_latency, check_cli_parallelism
    from blis.model_config import extract_kv_capacity_params, resolve_model_config

    defaults = _defaults_path(ns)
    model = ns.model.lower()
    mc = resolve_model_config(model, ns.model_config_folder or None)
    md = model_defaults(model, defaults)
    gpu = ns.hardware or md.gpu
    if not gpu:
        raise ConfigError(f"--hardware: must name a GPU (no default for model {model!r} in defaults.yaml), got ''")
    tp = ns.tp if ns.tp > 0 else (md.tensor_parallelism or 0)
    if tp <= 0:
        raise ConfigError(f"--tp: must be >= 1 (no default for model {model!r} in defaults.yaml), got {ns.tp}")
    hw = resolve_hardware_calib(gpu, ns.hardware_config or None)
    backend = ns.latency_model
    given_a = "alpha_coeffs" in ns._explicit
    given_b = "beta_coeffs" in ns._explicit
    alpha = beta = None
    if backend == "roofline" and (given_a or given_b):
        raise ConfigError("--alpha-coeffs/--beta-coeffs: must not be given with --latency-model roofline")
    if given_a != given_b and "latency_model" not in ns._explicit:
        raise ConfigError("--alpha-coeffs/--beta-coeffs: must be given together, got only one")
    if given_a:
        alpha = _floats("--alpha-coeffs", ns.alpha_coeffs)
    if given_b:
        beta = _floats("--beta-coeffs", ns.beta_coeffs)
    check_cli_parallelism(backend, mc, ns.dp, ns.enable_expert_parallel, ns.moe_comm_backend)
    lat = build_latency(backend, mc, hw, tp, dp=ns.dp, alpha=alpha, beta=beta,
                        moe_comm_backend=ns.moe_comm_backend,
                        enable_expert_parallel=ns.enable_expert_parallel, defaults_path=defaults)
    B = ns.block_size_in_tokens
    if "total_kv_blocks" in ns._explicit:
        blocks = ns.total_kv_blocks
    else:
        blocks = ns.total_kv_blocks
        try:
            params = extract_kv_capacity_params(mc.hf_config or {})
        except ConfigError as e:
            log.warning("KV capacity auto-calculation skipped (%s); using --total-kv-blocks %d", e, blocks)
            params = None
        if params is not None and hw.memory_gib > 0:
            blocks = calculate_kv_blocks(mc, hw, tp, ns.dp, B, ns.gpu_memory_utilization, params)
    # node pools size each instance's KV cache from the pool's GPU memory (BLIS's per-instance
    # auto-calc) unless --total-kv-blocks was given; analytical backends only
    ns._kv_for_memory = None
    if "total_kv_blocks" not in ns._explicit and backend in ("roofline", "trained-physics"):
        try:
            params = extract_kv_capacity_params(mc.hf_config or {})
        except ConfigError:
            params = None
        if params is not None:
            import dataclasses
            ns._kv_for_memory = lambda gib: calculate_kv_blocks(
                mc, dataclasses.replace(hw, memory_gib=float(gib)), tp, ns.dp, B, ns.gpu_memory_utilization, params)
    ns._tp = tp
    ns._gpu = gpu
    mml = resolve_max_model_len(mc, blocks, B, ns.max_model_len if "max_model_len" in ns._explicit else None)
    return lat, blocks, mml


def engine_config(ns, blocks, mml, horizon):
    from blis.engine import EngineConfig
    from blis.kernels import layout as Lo

    from blis.policies import ADMISSION_POLICIES
    from blis.routing import ROUTING_POLICIES
    routing = ROUTING_POLICIES.get(ns.routing_policy)
    admission = ADMISSION_POLICIES.get(ns.admission_policy)
    routing = routing if isinstance(routing, int) else Lo.ROUTE_ROUND_ROBIN      # Python policy: see simulate()
    admission = admission if isinstance(admission, int) else Lo.ADMIT_ALWAYS
    b = ns._bundle
    kv_cap = 0
    auto = getattr(ns, "_autoscale", None)
    if auto is not None and auto.node_pools and getattr(ns, "_kv_for_memory", None) is not None:
        kv_cap = max([blocks] + [int(ns._kv_for_memory(p.gpu_memory_gib)) for p in auto.node_pools])
    return EngineConfig(kv_blocks_capacity=kv_cap,
        total_kv_blocks=blocks, block_size=ns.block_size_in_tokens, max_num_seqs=ns.max_num_seqs,
        max_num_batched_tokens=ns.max_num_batched_tokens,
        long_prefill_token_threshold=ns.long_prefill_token_threshold, max_model_len=mml,
        horizon_us=horizon, scheduler=ns.scheduler or "fcfs",
        preemption_policy=ns.preemption_policy or "fcfs", num_instances=ns.num_instances,
        routing=routing, admission=admission, admission_latency_us=ns.admission_latency,
        routing_latency_us=ns.routing_latency, snapshot_refresh_interval_us=ns.snapshot_refresh_interval,
        token_bucket_capacity=ns.token_bucket_capacity,
        token_bucket_refill_rate=ns.token_bucket_refill_rate, seed=ns.seed,
        batch_formation=ns.batch_formation, kv_cpu_blocks=ns.kv_cpu_blocks,
        routing_scorers=ns._scorers, cache_signal_delay_us=ns.cache_signal_delay,
        tier_shed_threshold=b.tier_shed_threshold, tier_shed_min_priority=b.tier_shed_min_priority or 0,
        gaie_qd_threshold=b.gaie_qd_threshold, gaie_kv_threshold=b.gaie_kv_threshold,
        tenant_budgets=b.tenant_budgets, slo_priority_overrides=b.slo_priorities,
        trace_decisions=ns.trace_level == "decisions",
        kv_transfer_bandwidth=ns.kv_transfer_bandwidth, kv_transfer_base_latency_us=ns.kv_transfer_base_latency)


# ---------------------------------------------------------------- workloads
def build_run_workload(ns):
    from blis.workload import synthesis as syn

    if ns.concurrency < 0:
        raise ConfigError(f"--concurrency: must be >= 0, got {ns.concurrency}")
    if ns.think_time_ms < 0:
        raise ConfigError(f"--think-time-ms: must be >= 0, got {ns.think_time_ms}")
    if ns.concurrency > 0 and "rate" in ns._explicit:
        raise ConfigError("--concurrency and --rate are mutually exclusive; use one or the other")
    if ns.workload_spec:
        from blis.workload.spec import workload_from_spec_file
        if ns.concurrency > 0:
            raise ConfigError("--concurrency: cannot be used with --workload-spec; define concurrency in the spec "
                              "file (clients[].concurrency) instead")
        ex = ns._explicit
        if "timeout" in ex and ns.timeout == 0:
            raise ConfigError("--timeout: must be positive (seconds) or negative to disable, got 0")
        table, horizon, spec = workload_from_spec_file(
            ns.workload_spec, seed=ns.seed if "seed" in ex else None,
            horizon_us=ns.horizon if "horizon" in ex else None,
            num_requests=ns.num_requests if "num_requests" in ex else None,
            timeout_s=ns.timeout if "timeout" in ex else None, with_spec=True)
        ns._workload_seed = int(spec.seed)
        return table, horizon
    if ns.timeout == 0:
        raise ConfigError("--timeout: must be positive (seconds) or negative to disable, got 0")
    horizon = ns.horizon
    if ns.concurrency > 0:  # closed-loop virtual users (BLIS: takes precedence over --workload)
        if ns.num_requests < 0:
            raise ConfigError(f"--num-requests must be >= 0, got {ns.num_requests}")
        if ns.prefix_tokens < 0:
            raise ConfigError(f"--prefix-tokens must be >= 0, got {ns.prefix_tokens}")
        params = syn.DistributionParams(
            num_requests=ns.num_requests if "num_requests" in ns._explicit else 0,
            prompt_tokens=ns.prompt_tokens,
            prompt_tokens_stdev=ns.prompt_tokens_stdev, prompt_tokens_min=ns.prompt_tokens_min,
            prompt_tokens_max=ns.prompt_tokens_max, output_tokens=ns.output_tokens,
            output_tokens_stdev=ns.output_tokens_stdev, output_tokens_min=ns.output_tokens_min,
            output_tokens_max=ns.output_tokens_max, prefix_tokens=ns.prefix_tokens,
            concurrency=ns.concurrency, think_time_ms=ns.think_time_ms)
        table = syn.synthesize_distribution(params, seed=ns.seed, horizon_us=horizon, timeout_s=ns.timeout)
        return table, horizon
    if ns.workload == "distribution":
        params = syn.DistributionParams(
            rate=ns.rate, num_requests=ns.num_requests, prompt_tokens=ns.prompt_tokens,
            prompt_tokens_stdev=ns.prompt_tokens_stdev, prompt_tokens_min=ns.prompt_tokens_min,
            prompt_tokens_max=ns.prompt_tokens_max, output_tokens=ns.output_tokens,
            output_tokens_stdev=ns.output_tokens_stdev, output_tokens_min=ns.output_tokens_min,
            output_tokens_max=ns.output_tokens_max, prefix_tokens=ns.prefix_tokens,
            concurrency=ns.concurrency, think_time_ms=ns.think_time_ms)
        table = syn.synthesize_distribution(params, seed=ns.seed, horizon_us=horizon, timeout_s=ns.timeout,
                                            rate_explicit="rate" in ns._explicit)
    else:
        presets = syn.load_presets(_defaults_path(ns))
        if ns.workload not in presets:
            raise ConfigError(f"--workload: Undefined workload {ns.workload!r}, must be distribution or a preset; "
                              f"valid: distribution, {', '.join(sorted(presets))} (or --workload-spec)")
        table = syn.synthesize_preset(ns.workload, rate=ns.rate, num_requests=ns.num_requests, seed=ns.seed,
                                      horizon_us=horizon, timeout_s=ns.timeout,
                                      defaults_path=_defaults_path(ns))
    return table, horizon


def build_replay_workload(ns):
    from blis.workload.sessions import horizon_from_max_arrival, parse_think_time_dist, tracev2_session_workload
    from blis.workload.tracev2 import read_tracev2, tracev2_to_requests

    for flag, v in (("--trace-header", ns.trace_header), ("--trace-data", ns.trace_data)):
        if not v:
            raise ConfigError(f"{flag}: required, got ''")
        if not Path(v).is_file():
            raise ConfigError(f"{flag}: file must exist, got {v!r}")
    trace = read_tracev2(ns.trace_header, ns.trace_data)
    closed = validate_session_flags(ns)
    explicit = "horizon" in ns._explicit
    if closed:
        think = None
        if "think_time_dist" in ns._explicit:
            think = parse_think_time_dist(ns.think_time_dist)
        elif ns.think_time_ms > 0:
            think = parse_think_time_dist(f"constant:value={ns.think_time_ms}ms", "--think-time-ms")
        # follow-ups stop at the horizon: --horizon, else twice the latest recorded arrival of round 0 and
        # the session-less records
        r = trace.records
        first = (r["session_id"] == "") | (r["round_index"] == 0)
        latest = int(r["arrival_time_us"][first].max()) if first.any() else 0
        table = tracev2_session_workload(trace, ns.seed, think,
                                         ns.horizon if explicit else horizon_from_max_arrival(latest))
    else:
        table = tracev2_to_requests(trace, ns.seed)
    arr = table["arrival_us"]
    horizon = ns.horizon if explicit else horizon_from_max_arrival(int(arr.max()) if len(arr) else 0)
    return table, horizon


def validate_session_flags(ns) -> bool:
    """``blis replay`` session flags (BLIS's order of checks); True for closed-loop replay."""
    _choice("--session-mode", ns.session_mode, ("fixed", "closed-loop"))
    closed = ns.session_mode == "closed-loop"
    if ns.think_time_ms < 0:
        raise ConfigError(f"--think-time-ms: must be >= 0, got {ns.think_time_ms}")
    if ns.think_time_ms > 0 and not closed:
        raise ConfigError(f"--think-time-ms: requires --session-mode closed-loop, got --session-mode "
                          f"{ns.session_mode}")
    if ns.think_time_dist != "" and not closed:
        raise ConfigError(f"--think-time-dist: requires --session-mode closed-loop, got --session-mode "
                          f"{ns.session_mode}")
    if "think_time_ms" in ns._explicit and "think_time_dist" in ns._explicit:
        raise ConfigError("--think-time-ms and --think-time-dist are mutually exclusive; give one of them")
    return closed


# ---------------------------------------------------------------- outputs
def atomic_write_text(path, text):
    """Write an output file atomically; the folder must exist."""
    from blis.fileio import atomic_write

    path = Path(path)
    if path.parent and not path.parent.exists():
        raise ConfigError(f"output path: folder must exist, got {str(path.parent)!r}")
    atomic_write(path, text)


def write_parquet(table, path):
    from blis.fileio import atomic_write_parquet

    atomic_write_parquet(table, path)


def _trace_export(ns, table, res, mode):
    import numpy as np

    from blis.kernels import layout as Lo
    from blis.workload.tracev2 import export_simulation_trace, make_header

    st = res.cols["state"]
    status = np.where(st == Lo.ST_COMPLETED, "ok", np.where(st == Lo.ST_TIMED_OUT, "timeout", "incomplete"))
    ttft = res.cols["ttft_us"]
    has = ttft >= 0
    arrival = res.cols["arrival_us"]
    first = np.where(has, arrival + ttft, 0)
    last = np.where(has, arrival + ttft + res.cols["itl_sum_us"], 0)
    seed = getattr(ns, "_workload_seed", ns.seed)
    header = make_header(mode, workload_seed=seed) if mode == "generated" else make_header(mode)
    full = res.request_table
    if full is not None and len(full) > len(table):
        if mode == "generated":  # run exports every fresh arrival, session follow-ups included, in clock order
            order = np.argsort(res.cols["arrival_us"], kind="stable")
            from blis.requests import RequestTable
            table = RequestTable({k: v[order] for k, v in full.cols.items()}, full.names, full.group_seeds)
            status, first, last = status[order], first[order], last[order]
        else:  # replay exports only the initially injected requests
            k = len(table)
            status, first, last = status[:k], first[:k], last[:k]
    order = getattr(table, "list_order", None)
    if mode != "generated" and order is not None:  # BLIS exports its request list, in list order
        table = table.take(order)
        status, first, last = status[order], first[order], last[order]
    export_simulation_trace(table, status.astype(object), first, last, ns.trace_output, header=header)


def _progress_fn(ns, total):
    want = ns.progress == "always" or (ns.progress == "auto" and sys.stderr.isatty())
    if not want or total == 0:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True, desc="simulating")

    def update(done):
        bar.update(max(0, done - bar.n))

    return update, bar


def build_simulation(ns, table, horizon):
    """The :class:`~blis.engine.Simulation` a validated command line describes."""
    from blis.engine import Simulation
    from blis.policies import ADMISSION_POLICIES, make_admit_fn, make_route_fn
    from blis.routing import DEFAULT_SCORERS, ROUTING_POLICIES

    lat, blocks, mml = resolve_latency(ns)
    cfg = engine_config(ns, blocks, mml, horizon)
    route_fn = make_route_fn(ROUTING_POLICIES.get(ns.routing_policy), ns._scorers or DEFAULT_SCORERS, cfg)
    admit_fn = make_admit_fn(ADMISSION_POLICIES.get(ns.admission_policy))
    gateway = build_gateway(ns, cfg)
    autoscaler = build_autoscaler(ns, cfg)
    return Simulation(table, cfg, lat, route_fn=route_fn, admit_fn=admit_fn, gateway=gateway,
                      autoscaler=autoscaler)


def build_autoscaler(ns, cfg):
    """The node-pool / autoscaler manager when the policy config or the flag asks for one."""
    auto = getattr(ns, "_autoscale", None)
    if auto is None or not auto.active:
        if getattr(ns, "scale_trace", ""):
            log.warning("--scale-trace has no effect without an autoscaler or node pools")
        return None
    from blis.autoscaler import Autoscaler
    if auto.enabled and not ns.model:
        log.warning("autoscaler: --model is empty; snapshots without a model are ignored (no scaling)")
    return Autoscaler(auto, model=ns.model, gpu=ns._gpu, tp=ns._tp, seed=ns.seed,
                      kv_blocks_for_memory=ns._kv_for_memory if auto.node_pools else None)


def simulate_argv(argv):
    """Run a ``blis run ...`` / ``blis replay ...`` argument list in-process and return
    its :class:`~blis.results.SimResults` without printing or writing files (for sweeps
    and notebooks).  Raises :class:`~blis.errors.BlisError` on invalid input."""
    ns = parse_args(list(argv))
    validate_common(ns)
    if ns.command == "run":
        table, horizon = build_run_workload(ns)
    else:
        table, horizon = build_replay_workload(ns)
    return build_simulation(ns, table, horizon).run()


def simulate(ns, table, horizon, mode):
    from blis.gojson import marshal_indent

    sim = build_simulation(ns, table, horizon)
    update, bar = _progress_fn(ns, len(table))
    t0 = time.perf_counter()
    res = sim.run(progress=update)
    if bar is not None:
        bar.update(len(table) - bar.n)
        bar.close()
    log.info("simulated %d requests in %.3f s", len(table), time.perf_counter() - t0)
    trace = None
    if ns.trace_level == "decisions":
        from blis.trace import build_trace, write_trace
        trace = build_trace(sim, ns.counterfactual_k)
    text = res.stdout_text(fitness_weights=ns._fitness if mode == "generated" else None)
    if trace is not None and ns.summarize_trace:
        text += trace.summary_text(sim.instance_names)
        if sim.autoscaler is not None:
            from blis.autoscaler import scale_trace_summary
            text += "Scale Events:\n" + "".join(f"  {k}: {v}\n"
                                                for k, v in scale_trace_summary(sim.autoscaler.events).items())
    if sim.autoscaler is not None:
        text += sim.autoscaler.summary_text()
    sys.stdout.write(text)
    sys.stdout.flush()
    if trace is not None and ns.decision_trace:
        write_trace(trace, ns.decision_trace)
    if sim.autoscaler is not None and ns.scale_trace:
        write_parquet(sim.autoscaler.to_arrow(), ns.scale_trace)
    if ns.metrics_path:
        atomic_write_text(ns.metrics_path, marshal_indent(res.metrics_file()))
    if getattr(ns, "results_path", ""):
        atomic_write_text(ns.results_path, marshal_indent(res.results_rows()))
    if ns.results_parquet:
        write_parquet(res.to_arrow(), ns.results_parquet)
    if ns.trace_output:
        _trace_export(ns, table, res, mode)
    return res


def parse_slo_targets(text):
    out = {}
    if not text:
        return out
    for part in text.split(","):
        kv = part.strip().split("=", 1)
        try:
            if len(kv) != 2:
                raise ValueError
            out[kv[0].strip()] = int(kv[1])
        except ValueError:
            raise ConfigError(f"--slo-targets: each entry must be class=microseconds, got {part.strip()!r}")
        if out[kv[0].strip()] <= 0:
            raise ConfigError(f"--slo-targets: target of {kv[0].strip()!r} must be > 0, got {kv[1].strip()}")
    return out


def build_gateway(ns, cfg):
    """The flow-control gateway queue when --flow-control is set (None otherwise)."""
    if not ns.flow_control:
        for flag in ("request_ttl", "queue_shedding", "in_flight_eviction"):
            if getattr(ns, flag):
                log.warning("--%s has no effect without --flow-control", flag.replace("_", "-"))
        return None
    from blis.flow_control import FlowConfig, GatewayQueue

    if ns.saturation_detector == "never":
        log.warning("--flow-control with --saturation-detector never dispatches without gating")
    targets = dict(getattr(ns, "_bundle", None).slo_targets if getattr(ns, "_bundle", None) else {})
    targets.update(parse_slo_targets(ns.slo_targets))
    fc = FlowConfig(detector=ns.saturation_detector, dispatch_order=ns.dispatch_order, slo_targets_us=targets,
                    max_depth=ns.max_gateway_queue_depth, queue_depth_threshold=ns.queue_depth_threshold,
                    kv_cache_util_threshold=ns.kv_cache_util_threshold, max_concurrency=ns.max_concurrency,
                    per_band_capacity=ns.per_band_capacity, usage_limit=ns.usage_limit_threshold,
                    fairness=ns.fairness_policy, request_ttl_us=ns.request_ttl, queue_shedding=ns.queue_shedding,
                    tick_interval_us=ns.dispatch_tick_interval, in_flight_eviction=ns.in_flight_eviction)
    from blis.engine import SLO_BASE_PRIORITIES
    pri = {**SLO_BASE_PRIORITIES, **(cfg.slo_priority_overrides or {})}
    return GatewayQueue(fc, max([3] + list(pri.values())))


def _start_precompile(ns):
    """On a fresh numba cache, compile half of the engine in a helper process while this
    one builds the workload (blis/precompile.py)."""
    argv = getattr(ns, "_argv", None)
    if argv:
        from blis.precompile import start_early
        start_early(argv)


def cmd_run(ns):
    validate_common(ns)
    _start_precompile(ns)
    table, horizon = build_run_workload(ns)
    simulate(ns, table, horizon, "generated")


def cmd_replay(ns):
    validate_common(ns)
    _start_precompile(ns)
    table, horizon = build_replay_workload(ns)
    simulate(ns, table, horizon, "replayed")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ns = parse_args(argv)
    ns._argv = list(argv)
    logging.basicConfig(stream=sys.stderr, format="level=%(levelname)s msg=%(message)s",
                        level=LOG_LEVELS.get(str(getattr(ns, "log", "warn")).lower(), logging.WARNING))
    try:
        if getattr(ns, "_run", None) is not None:  # observe, calibrate, convert, compose
            return ns._run(ns)
        {"run": cmd_run, "replay": cmd_replay}[ns.command](ns)
    except BlisError as e:
        sys.stderr.write(f"blis {ns.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("blis: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # never a traceback for the user
        sys.stderr.write(f"blis {ns.command}: internal error: {type(e).__name__}: {e}\n"
                         "please report this with the command line that produced it\n")
        return 70
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
