"""Workload spec YAML: strict loading, validation, cohort / inference-perf expansion, `run --workload-spec`.

Golden parity: the three BLIS workload specs of the parity scenarios, loaded
from their YAML, regenerate the scenarios' trace.csv request for request.
"""
import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blis.errors import ConfigError
from blis.rng import SUBSYSTEM_WORKLOAD_GEN, GoRand, derive_seed
from blis.workload import synthesis
from blis.workload.spec import (
    INT64_MAX,
    ActiveWindow,
    ArrivalSpec,
    ClientSpec,
    CohortSpec,
    CustomArrival,
    DiurnalSpec,
    DistSpec,
    DrainSpec,
    InferencePerfSpec,
    MultimodalSpec,
    MultiTurnSpec,
    NetworkSpec,
    ReasoningSpec,
    ServeGenDataSpec,
    SharedPrefixSpec,
    SLODimTargets,
    SpikeSpec,
    StageSpec,
    WorkloadSpec,
    diurnal_windows,
    drain_windows,
    dump_workload_spec,
    expand_cohorts,
    expand_inference_perf,
    expand_workload_spec,
    generate_spec_requests,
    load_workload_spec,
    parse_workload_spec,
    validate_workload_spec,
    workload_from_spec_file,
)
from blis.workload.tracev2 import read_tracev2

SPECS = Path(__file__).parent / "data" / "specs"
PARITY_SPECS = [("c2-weighted-prefix", "prefix8.yaml"), ("c3-slo-priority", "slo3.yaml"),
                ("s5-cpu-tier", "prefix4.yaml")]


# ---------------------------------------------------------------------------
# Golden parity: spec file -> generate_requests == BLIS's trace
# ---------------------------------------------------------------------------
def _assert_table_matches_trace(table, trace):
    r = trace.records
    n = len(trace)
    assert len(table) == n
    np.testing.assert_array_equal(table["arrival_us"], r["arrival_time_us"])
    np.testing.assert_array_equal(table["input_len"] - table["prefix_len"], r["input_tokens"])
    np.testing.assert_array_equal(table["output_len"], r["output_tokens"])
    np.testing.assert_array_equal(table["prefix_len"], r["prefix_length"])
    np.testing.assert_array_equal(table["deadline_us"], r["deadline_us"])
    for col, rec in (("prefix_group", "prefix_group"), ("slo_class", "slo_class"), ("tenant", "tenant_id"),
                     ("client", "client_id")):
        assert [table.label(col, i) for i in range(n)] == list(r[rec]), col


@pytest.mark.parametrize("scenario,spec_file", PARITY_SPECS)
def test_parity_spec_files_reproduce_blis_traces(parity_dir, scenario, spec_file):
    folder = parity_dir / scenario
    spec = load_workload_spec(folder / spec_file)
    horizon = spec.horizon if spec.horizon > 0 else INT64_MAX
    table = synthesis.generate_requests(spec, horizon, spec.num_requests)
    trace = read_tracev2(folder / "trace.yaml", folder / "trace.csv")
    _assert_table_matches_trace(table, trace)
    assert trace.header["workload_seed"] == spec.seed
    # the `blis run --workload-spec` entry point gives the same workload (no flags given)
    table2, horizon2 = workload_from_spec_file(folder / spec_file)
    assert horizon2 == INT64_MAX
    _assert_table_matches_trace(table2, trace)


@pytest.mark.parametrize("scenario,spec_file", PARITY_SPECS)
def test_parity_specs_survive_a_dump_and_reload(parity_dir, scenario, spec_file):
    spec = load_workload_spec(parity_dir / scenario / spec_file)
    again = parse_workload_spec(dump_workload_spec(spec))
    assert again == spec


# ---------------------------------------------------------------------------
# Parsing: yaml.v3 typing
# ---------------------------------------------------------------------------
def _client_yaml(**extra):
    d = {"id": "a", "slo_class": "standard", "rate_fraction": 1.0, "arrival": {"process": "poisson"},
         "input_distribution": {"type": "constant", "params": {"value": 5}},
         "output_distribution": {"type": "constant", "params": {"value": 5}}}
    d.update(extra)
    return d


def _spec_yaml(clients=None, **top):
    d = {"version": "2", "seed": 1, "aggregate_rate": 10.0, "num_requests": 5,
         "clients": [_client_yaml()] if clients is None else clients}
    d.update(top)
    return {k: v for k, v in d.items() if v is not None}


def _text(d):
    return yaml.safe_dump(d, sort_keys=False)


def test_scalars_are_typed_like_yaml_v3():
    text = """
version: 2            # a string key takes any scalar's text
seed: 0x10            # Go base-0 integers
num_requests: 1e3     # an integral float is a valid integer
horizon: 1_000_000
aggregate_rate: 5     # an integer is a valid float
category:             # null leaves the zero value
clients:
  - id: 007
    tenant_id: true
    slo_class: "standard"
    rate_fraction: .5
    streaming: yes    # YAML 1.1 spellings are booleans for bool keys
    closed_loop: off
    arrival: {process: gamma, cv: ~}
    input_distribution: {type: empirical, params: {10: 0.5, 20: 0.5}}
    output_distribution: {type: constant, params: {value: 3}}
"""
    s = parse_workload_spec(text)
    assert (s.version, s.seed, s.num_requests, s.horizon, s.aggregate_rate, s.category) == \
        ("2", 16, 1000, 1_000_000, 5.0, "")
    c = s.clients[0]
    assert (c.id, c.tenant_id, c.rate_fraction, c.streaming, c.closed_loop) == ("007", "true", 0.5, True, False)
    assert c.arrival.cv is None
    assert c.input_distribution.params == {"10": 0.5, "20": 0.5}
    assert isinstance(s, synthesis.WorkloadSpec) and isinstance(c, synthesis.ClientSpec)


def test_anchors_and_merge_keys_are_supported():
    text = """
version: "2"
aggregate_rate: 4
num_requests: 10
clients:
  - &base
    id: a
    slo_class: standard
    rate_fraction: 1
    arrival: {process: poisson}
    input_distribution: {type: constant, params: {value: 5}}
    output_distribution: {type: constant, params: {value: 7}}
  - <<: *base
    id: b
    rate_fraction: 3
"""
    s = parse_workload_spec(text)
    assert [c.id for c in s.clients] == ["a", "b"]
    assert s.clients[1].rate_fraction == 3.0 and s.clients[1].output_distribution.params == {"value": 7.0}


def test_every_key_of_the_reference_spec_loads():
    s = load_workload_spec(SPECS / "all_keys.yaml")
    chat, vision, thinker = s.clients
    assert s.goodput_slo_targets == {"critical": SLODimTargets(200, 20, 4000), "standard": SLODimTargets(500)}
    assert chat.network == NetworkSpec(12.5, 100.0)
    assert chat.lifecycle[1].arrival == ArrivalSpec("weibull", 1.5) and chat.lifecycle[1].trace_rate == 2.0
    assert (chat.timeout, chat.slo_target_us, chat.closed_loop) == (5_000_000, 250_000, False)
    assert vision.arrival == ArrivalSpec("weibull", None, 0.8, 90000.0)
    assert vision.multimodal.audio_distribution == DistSpec("")
    assert thinker.reasoning.multi_turn == MultiTurnSpec(4, 2_000_000, "accumulate", False)
    s2 = load_workload_spec(SPECS / "servegen.yaml")
    assert s2.servegen_data == ServeGenDataSpec("data/servegen/language", "midnight", 0, 1800, 600, 180)


def test_v1_specs_are_upgraded_with_renamed_slo_classes():
    s = load_workload_spec(SPECS / "v1_upgrade.yaml")
    assert s.version == "2"
    assert [c.slo_class for c in s.clients] == ["critical", "standard"]
    # v2 specs keep their names (and an old name is then invalid)
    text = _text(_spec_yaml([_client_yaml(slo_class="realtime")]))
    with pytest.raises(ConfigError, match=r"clients\[0\]\.slo_class .* got 'realtime'"):
        parse_workload_spec(text)
    # BLIS upgrades client classes only, never cohort classes
    d = _spec_yaml([_client_yaml(slo_class="interactive")], version="1",
                   cohorts=[{"id": "k", "population": 1, "slo_class": "realtime", "rate_fraction": 1,
                             "arrival": {"process": "poisson"},
                             "input_distribution": {"type": "constant", "params": {"value": 1}},
                             "output_distribution": {"type": "constant", "params": {"value": 1}}}])
    with pytest.raises(ConfigError, match=r"cohorts\[0\]\.slo_class .* got 'realtime'"):
        parse_workload_spec(_text(d))


# ---------------------------------------------------------------------------
# Error paths: every message names the path, the value and what is allowed
# ---------------------------------------------------------------------------
BASE = _text(_spec_yaml())

# (name, yaml text, [substrings the message must contain])
PARSE_ERRORS = [
    ("unknown top-level key", BASE + "bogus: 1\n",
     ["bogus (line", "got 'bogus' (value '1')", "valid: version, seed, category, clients, cohorts"]),
    ("unknown arrival key", BASE.replace("process: poisson", "procss: poisson"),
     ["clients[0].arrival.procss (line", "got 'procss' (value 'poisson')", "valid: process, cv, shape, scale"]),
    ("unknown distribution key", BASE.replace("type: constant", "kind: constant", 1),
     ["clients[0].input_distribution.kind", "got 'kind'", "valid: type, params, file"]),
    ("unknown client key", BASE + "  think_time_ms: 5\n",
     ["clients[0].think_time_ms", "got 'think_time_ms' (value '5')", "valid: id, tenant_id, slo_class"]),
    ("unknown window key", BASE + "  lifecycle: {windows: [{start: 0, end_us: 5}]}\n",
     ["clients[0].lifecycle.windows[0].start", "got 'start'", "valid: start_us, end_us, trace_rate, arrival"]),
    ("unknown lifecycle key", BASE + "  lifecycle: {window: []}\n",
     ["clients[0].lifecycle.window", "got 'window'", "valid: windows"]),
    ("unknown multi_turn key", BASE + "  reasoning: {multi_turn: {rounds: 2}}\n",
     ["clients[0].reasoning.multi_turn.rounds", "valid: max_rounds, think_time_us, context_growth"]),
    ("unknown multimodal key", BASE + "  multimodal: {image: {type: constant}}\n",
     ["clients[0].multimodal.image", "valid: text_distribution, image_distribution"]),
    ("unknown network key", BASE + "  network: {rtt: 1}\n",
     ["clients[0].network.rtt", "valid: rtt_ms, bandwidth_mbps"]),
    ("cohorts take no lifecycle", BASE + "cohorts: [{id: k, lifecycle: {windows: []}}]\n",
     ["cohorts[0].lifecycle", "got 'lifecycle'", "valid: id, population", "diurnal, spike, drain"]),
    ("cohorts take no concurrency", BASE + "cohorts: [{id: k, concurrency: 2}]\n",
     ["cohorts[0].concurrency", "got 'concurrency' (value '2')", "valid: id, population"]),
    ("unknown diurnal key", BASE + "cohorts: [{id: k, diurnal: {peak: 3}}]\n",
     ["cohorts[0].diurnal.peak", "valid: peak_hour, peak_to_trough_ratio"]),
    ("unknown spike key", BASE + "cohorts: [{id: k, spike: {rate: 3}}]\n",
     ["cohorts[0].spike.rate", "valid: start_time_us, duration_us, trace_rate"]),
    ("unknown drain key", BASE + "cohorts: [{id: k, drain: {ramp: 3}}]\n",
     ["cohorts[0].drain.ramp", "valid: start_time_us, ramp_duration_us"]),
    ("unknown stage key", "inference_perf: {stages: [{rate: 1, duration_s: 5}]}\n",
     ["inference_perf.stages[0].duration_s", "valid: rate, duration"]),
    ("unknown shared_prefix key", "inference_perf: {shared_prefix: {users: 5}}\n",
     ["inference_perf.shared_prefix.users", "valid: num_unique_system_prompts, num_users_per_system_prompt"]),
    ("unknown servegen key", "servegen_data: {dir: x}\n",
     ["servegen_data.dir", "got 'dir' (value 'x')", "valid: path, time_window, span_start"]),
    ("unknown goodput key", BASE + "goodput_slo_targets: {critical: {p99_ms: 5}}\n",
     ["goodput_slo_targets.critical.p99_ms", "valid: ttft_ms, itl_ms, e2e_ms"]),
    ("string for a float", BASE.replace("rate_fraction: 1.0", "rate_fraction: abc"),
     ["clients[0].rate_fraction (line", "must be a number", "got 'abc'"]),
    ("quoted number for an integer", BASE.replace("seed: 1", "seed: '42'"),
     ["seed (line 2)", "must be an integer", "got the quoted string '42'"]),
    ("non-integral integer", BASE + "  prefix_length: 1.5\n",
     ["clients[0].prefix_length", "must be an integer", "got 1.5"]),
    ("integer overflow", BASE.replace("seed: 1", "seed: 9223372036854775808"),
     ["seed", "int64 range", "got 9223372036854775808"]),
    ("bad boolean", BASE + "  streaming: maybe\n",
     ["clients[0].streaming", "must be a boolean", "got 'maybe'", "valid: true, false"]),
    ("mapping for a string", BASE.replace("id: a", "id: {x: 1}"),
     ["clients[0].id", "must be a string", "got a mapping"]),
    ("scalar for a struct", BASE.replace("arrival:\n    process: poisson", "arrival: poisson"),
     ["clients[0].arrival", "must be a mapping", "got 'poisson'", "valid: process, cv, shape, scale"]),
    ("scalar for a list", "clients: none\n", ["clients (line 1)", "must be a list", "got 'none'"]),
    ("bad parameter value", BASE.replace("value: 5", "value: high", 1),
     ["clients[0].input_distribution.params.value", "must be a number", "got 'high'"]),
    ("non-string key", BASE + "? [a, b]\n: 1\n",
     ["document", "must be a mapping with string keys", "got a key that is a sequence"]),
    ("bad merge source", "clients: [{<<: 5}]\n",
     ["clients[0]", "must be a mapping or a list of mappings (merge key <<)", "got '5'"]),
    ("params not a mapping", BASE.replace("params:\n      value: 5", "params: [5]", 1),
     ["clients[0].input_distribution.params", "must be a mapping of parameter names to numbers", "got a sequence"]),
    ("goodput targets not a mapping", "goodput_slo_targets: [critical]\n",
     ["goodput_slo_targets (line 1)", "must be a mapping", "got a sequence"]),
    ("lifecycle not a mapping", BASE + "  lifecycle: [{start_us: 0}]\n",
     ["clients[0].lifecycle", "must be a mapping", "got a sequence", "valid: windows"]),
    ("duplicate key", BASE + "  id: b\n",
     ["clients[0].id", "defined once (first defined at line", "got a second 'id'"]),
    ("non-mapping document", "- 1\n- 2\n", ["document (line 1)", "must be a YAML mapping", "got a sequence",
                                           "valid: version, seed"]),
    ("empty document", "# nothing\n", ["document must be a YAML mapping", "got an empty document", "valid:"]),
    ("YAML syntax", "a: [1, 2\n", ["document must be valid YAML", "syntax error at line"]),
]


@pytest.mark.parametrize("name,text,parts", PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors_name_path_value_and_options(name, text, parts):
    with pytest.raises(ConfigError) as e:
        parse_workload_spec(text, "w.yaml")
    msg = str(e.value)
    assert msg.startswith("w.yaml: ")
    plain = re.sub(r" \(line \d+\)", "", msg)
    for p in parts:
        assert p in msg or p in plain, (p, msg)


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: workload spec must be a readable file, got"):
        load_workload_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"seed: 1\nclients: [{id: caf\xe9}]\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml: workload spec must be UTF-8 text, got"):
        load_workload_spec(bad)


def test_go_integer_spellings():
    for text, want in (("0o17", 15), ("0b101", 5), ("-0x10", -16), ("017", 15), ("+7", 7), ("-1_0", -10)):
        assert parse_workload_spec(f"seed: {text}\n", validate=False).seed == want, text


def test_programmatic_v1_specs_are_upgraded_at_expansion():
    c = ClientSpec(id="a", slo_class="realtime", rate_fraction=1.0, arrival=ArrivalSpec("poisson"),
                   input_distribution=DistSpec("constant", {"value": 3}),
                   output_distribution=DistSpec("constant", {"value": 3}))
    spec = WorkloadSpec(version="1", aggregate_rate=1.0, clients=[c])
    out = expand_workload_spec(spec)
    assert (out.version, out.clients[0].slo_class) == ("2", "critical")
    assert spec.clients[0].slo_class == "realtime"  # the input is not modified


def test_custom_arrival_kinds():
    with pytest.raises(ConfigError, match="kind must be a known sampler, got 'gamma'; valid: normalized_exponential"):
        CustomArrival("gamma").make_sampler(GoRand(1))


def _cohort_yaml(**extra):
    d = {"id": "k", "population": 2, "slo_class": "standard", "rate_fraction": 0.5,
         "arrival": {"process": "poisson"}, "input_distribution": {"type": "constant", "params": {"value": 5}},
         "output_distribution": {"type": "constant", "params": {"value": 5}}}
    d.update(extra)
    return d


def _ip(stages=None, **sp):
    shared = {"num_unique_system_prompts": 2, "num_users_per_system_prompt": 2, "system_prompt_len": 10,
              "question_len": 5, "output_len": 5}
    shared.update(sp)
    return {"inference_perf": {"stages": stages if stages is not None else [{"rate": 4, "duration": 10}],
                               "shared_prefix": shared}}


def _win(**kw):
    d = {"start_us": 0, "end_us": 1000}
    d.update(kw)
    return d


def _mt(**kw):
    d = {"max_rounds": 2, "think_time_us": 10, "context_growth": ""}
    d.update(kw)
    return {"multi_turn": d}


C = _client_yaml
K = _cohort_yaml
# (name, spec dict, [substrings]): each is the first failure BLIS's rules report
VALIDATION_ERRORS = [
    # sources and inference_perf
    ("clients with inference_perf", dict(_spec_yaml(), **_ip()),
     ["inference_perf must not be combined with clients", "got clients, inference_perf",
      "valid: exactly one of clients, servegen_data, inference_perf"]),
    ("clients with servegen_data", _spec_yaml(servegen_data={"path": "x"}),
     ["servegen_data must not be combined with clients", "got clients, servegen_data", "valid: exactly one"]),
    ("no stages", {"inference_perf": {"stages": [], "shared_prefix": {}}},
     ["inference_perf.stages must be a non-empty list", "got []"]),
    ("stage duration", _ip([{"rate": 1, "duration": 0}]), ["inference_perf.stages[0].duration must be > 0", "got 0"]),
    ("stage rate", _ip([{"rate": 1, "duration": 1}, {"rate": -2, "duration": 1}]),
     ["inference_perf.stages[1].rate must be a finite number > 0", "got -2"]),
    ("stage rate NaN", _ip([{"rate": math.nan, "duration": 1}]), ["inference_perf.stages[0].rate", "got NaN"]),
    ("no shared_prefix", {"inference_perf": {"stages": [{"rate": 1, "duration": 1}]}},
     ["inference_perf.shared_prefix must be set", "got none", "valid: num_unique_system_prompts"]),
    ("system prompts", _ip(num_unique_system_prompts=0),
     ["inference_perf.shared_prefix.num_unique_system_prompts must be > 0", "got 0"]),
    ("users", _ip(num_users_per_system_prompt=-1),
     ["inference_perf.shared_prefix.num_users_per_system_prompt must be > 0", "got -1"]),
    ("system prompt length", _ip(system_prompt_len=-1), ["shared_prefix.system_prompt_len must be >= 0", "got -1"]),
    ("question length", _ip(question_len=-2), ["shared_prefix.question_len must be >= 0", "got -2"]),
    ("output length", _ip(output_len=-3), ["shared_prefix.output_len must be >= 0", "got -3"]),
    ("stage gives no request", _ip([{"rate": 0.5, "duration": 1}]),
     ["inference_perf.stages[0] rate x duration must give >= 1 request", "got 0.5 x 1 = 0"]),
    ("client gets no request", _ip([{"rate": 1, "duration": 3}]),
     ["inference_perf client prompt-1-user-1 must get >= 1 request", "got 0"]),
    ("too many requests per client", _ip([{"rate": 2e7, "duration": 1}], num_unique_system_prompts=1,
                                         num_users_per_system_prompt=1),
     ["requests per client must be <= 10000000", "got 20000000"]),
    ("duration shorter than count", _ip([{"rate": 2e6, "duration": 1}], num_unique_system_prompts=1,
                                        num_users_per_system_prompt=1),
     ["inference_perf.stages[0].duration in µs must be >= the requests per client (2000000)", "got 1000000"]),
    ("too many clients", _ip([{"rate": 1e7, "duration": 1}], num_unique_system_prompts=1001,
                             num_users_per_system_prompt=1000),
     ["client count (N x M) must be <= 1000000", "got 1001000"]),
    ("multi-turn stage leaves a session without rounds",
     _ip([{"rate": 1, "duration": 3}], enable_multi_turn_chat=True),
     ["clients[3].reasoning.multi_turn.max_rounds must be >= 1", "got 0"]),
    # top level
    ("category", _spec_yaml(category="chat"),
     ["category (line", "must be a known category", "got 'chat'", "valid: language, multimodal, reasoning"]),
    ("absolute mode without windows", _spec_yaml(aggregate_rate=0),
     ["clients[0].lifecycle", "absolute rate mode", "got none"]),
    ("absolute mode window without trace_rate",
     _spec_yaml([C(lifecycle={"windows": [_win(trace_rate=1), _win()]})], aggregate_rate=0),
     ["clients[0].lifecycle.windows[1].trace_rate must be set when aggregate_rate is 0", "got none"]),
    ("absolute mode diurnal cohort",
     _spec_yaml([], aggregate_rate=0, cohorts=[K(diurnal={"peak_hour": 1, "peak_to_trough_ratio": 2})]),
     ["cohorts[0].diurnal must be absent when aggregate_rate is 0", "use a spike with trace_rate",
      "got a diurnal pattern"]),
    ("absolute mode drain cohort",
     _spec_yaml([], aggregate_rate=0, cohorts=[K(drain={"start_time_us": 1, "ramp_duration_us": 10})]),
     ["cohorts[0].drain must be absent", "got a drain pattern"]),
    ("absolute mode cohort without spike", _spec_yaml([], aggregate_rate=0, cohorts=[K()]),
     ["cohorts[0].spike must be a spike with trace_rate", "got none"]),
    ("absolute mode spike without rate",
     _spec_yaml([], aggregate_rate=0, cohorts=[K(spike={"start_time_us": 0, "duration_us": 5})]),
     ["cohorts[0].spike.trace_rate must be set", "got none"]),
    ("absolute mode spike rate",
     _spec_yaml([], aggregate_rate=0, cohorts=[K(spike={"start_time_us": 0, "duration_us": 5, "trace_rate": 0})]),
     ["cohorts[0].spike.trace_rate", "must be a finite number > 0", "got 0"]),
    ("aggregate_rate", _spec_yaml(aggregate_rate=-3.5),
     ["aggregate_rate (line", "must be a finite number > 0", "got -3.5"]),
    ("aggregate_rate infinite", _spec_yaml(aggregate_rate=math.inf), ["aggregate_rate", "got +Inf"]),
    ("no workload source", _spec_yaml([]),
     ["clients (line", "must be non-empty", "got no workload source", "valid: clients, cohorts, servegen_data"]),
    # clients
    ("slo_class", _spec_yaml([C(slo_class="gold")]),
     ["clients[0].slo_class (line", "got 'gold'", "valid: critical, standard, sheddable, batch, background"]),
    ("concurrency", _spec_yaml([C(concurrency=-1, rate_fraction=0)]),
     ["clients[0].concurrency must be >= 0", "got -1"]),
    ("think time", _spec_yaml([C(think_time_us=-5)]), ["clients[0].think_time_us", ">= 0", "got -5"]),
    ("concurrency with rate", _spec_yaml([C(concurrency=2)]),
     ["clients[0].rate_fraction", "must be 0 when concurrency > 0", "got 1"]),
    ("rate_fraction", _spec_yaml([C(rate_fraction=0)]),
     ["clients[0].rate_fraction (line", "must be a finite number > 0", "got 0"]),
    ("arrival process", _spec_yaml([C(arrival={"process": "bursty"})]),
     ["clients[0].arrival.process", "got 'bursty'", "valid: poisson, gamma, weibull, constant"]),
    ("weibull cv", _spec_yaml([C(arrival={"process": "weibull", "cv": 12})]),
     ["clients[0].arrival.cv", "must be in [0.01, 10.4]", "got 12"]),
    ("cv", _spec_yaml([C(arrival={"process": "gamma", "cv": 0})]),
     ["clients[0].arrival.cv", "must be a finite number > 0", "got 0"]),
    ("shape", _spec_yaml([C(arrival={"process": "gamma", "shape": -1, "scale": 5})]),
     ["clients[0].arrival.shape", "must be a finite number > 0", "got -1"]),
    ("scale", _spec_yaml([C(arrival={"process": "weibull", "shape": 1, "scale": math.inf})]),
     ["clients[0].arrival.scale", "got +Inf"]),
    ("prefix_length", _spec_yaml([C(prefix_length=-1)]), ["clients[0].prefix_length", "must be >= 0", "got -1"]),
    ("distribution type", _spec_yaml([C(output_distribution={"type": "zipf"})]),
     ["clients[0].output_distribution.type", "got 'zipf'",
      "valid: gaussian, exponential, pareto_lognormal, lognormal, constant, empirical"]),
    ("missing distribution", _spec_yaml([{k: v for k, v in C().items() if k != "input_distribution"}]),
     ["clients[0].input_distribution.type", "got ''", "valid: gaussian"]),
    ("distribution param", _spec_yaml([C(input_distribution={"type": "exponential", "params": {"mean": math.nan}})]),
     ["clients[0].input_distribution.params.mean", "must be a finite number", "got NaN"]),
    ("required param", _spec_yaml([C(input_distribution={"type": "gaussian", "params": {"mean": 3}})]),
     ["clients[0].input_distribution.params.std_dev", "must be set for a gaussian distribution", "got none",
      "valid: params mean, std_dev, min, max"]),
    ("min above max", _spec_yaml([C(input_distribution={"type": "exponential",
                                                        "params": {"mean": 3, "min": 9, "max": 4}})]),
     ["clients[0].input_distribution (line", "min must be <= max", "got min=9, max=4"]),
    ("empirical bins", _spec_yaml([C(input_distribution={"type": "empirical", "params": {"many": 1}})]),
     ["clients[0].input_distribution", "bin key must be an integer", "got 'many'"]),
    ("timeout", _spec_yaml([C(timeout=-1)]), ["clients[0].timeout", "must be >= 0", "got -1"]),
    ("slo target", _spec_yaml([C(slo_target_us=-2)]), ["clients[0].slo_target_us", "must be >= 0", "got -2"]),
    ("max rounds", _spec_yaml([C(reasoning=_mt(max_rounds=0))]),
     ["clients[0].reasoning.multi_turn.max_rounds must be >= 1", "got 0"]),
    ("empty lifecycle", _spec_yaml([C(lifecycle={"windows": []})]),
     ["clients[0].lifecycle.windows", "must be a non-empty list of windows", "got []"]),
    ("window start", _spec_yaml([C(lifecycle={"windows": [_win(start_us=-1)]})]),
     ["clients[0].lifecycle.windows[0].start_us", "must be >= 0", "got -1"]),
    ("window end", _spec_yaml([C(lifecycle={"windows": [_win(), _win(start_us=50, end_us=50)]})]),
     ["clients[0].lifecycle.windows[1].end_us", "must be > start_us (50)", "got 50"]),
    ("window distribution", _spec_yaml([C(lifecycle={"windows": [_win(input_distribution={"type": "normal"})]})]),
     ["clients[0].lifecycle.windows[0].input_distribution.type", "got 'normal'", "valid: gaussian"]),
    ("window output distribution",
     _spec_yaml([C(lifecycle={"windows": [_win(output_distribution={"type": "constant"})]})]),
     ["clients[0].lifecycle.windows[0].output_distribution.params.value", "got none", "valid: params value"]),
    ("window arrival", _spec_yaml([C(lifecycle={"windows": [_win(arrival={"process": "uniform"})]})]),
     ["clients[0].lifecycle.windows[0].arrival.process", "got 'uniform'", "valid: poisson, gamma"]),
    ("context growth", _spec_yaml([C(reasoning=_mt(context_growth="append"))]),
     ["clients[0].reasoning.multi_turn.context_growth", "got 'append'", "valid: accumulate"]),
    ("multi-turn think time", _spec_yaml([C(reasoning=_mt(think_time_us=-1))]),
     ["clients[0].reasoning.multi_turn.think_time_us", "must be >= 0", "got -1"]),
    ("reason ratio distribution", _spec_yaml([C(reasoning={"reason_ratio_distribution": {"type": "beta"}})]),
     ["clients[0].reasoning.reason_ratio_distribution.type", "got 'beta'", "valid: gaussian"]),
    ("multimodal distribution", _spec_yaml([C(multimodal={"image_count_distribution": {"type": "poisson"}})]),
     ["clients[0].multimodal.image_count_distribution.type", "got 'poisson'", "valid: gaussian"]),
    ("concurrency with multi-turn",
     _spec_yaml([C(concurrency=2, rate_fraction=0), C(id="b", reasoning=_mt())]),
     ["clients[0].concurrency", "cannot be mixed", "got 2 with multi-turn clients[1]"]),
    # cohorts
    ("population", _spec_yaml(cohorts=[K(population=0)]), ["cohorts[0].population (line", "must be > 0", "got 0"]),
    ("population cap", _spec_yaml(cohorts=[K(population=100001)]),
     ["cohorts[0].population", "must be <= 100000", "got 100001"]),
    ("cohort rate_fraction", _spec_yaml(cohorts=[K(rate_fraction=-1)]),
     ["cohorts[0].rate_fraction", "must be a finite number > 0", "got -1"]),
    ("cohort slo_class", _spec_yaml(cohorts=[K(slo_class="urgent")]),
     ["cohorts[0].slo_class", "got 'urgent'", "valid: critical"]),
    ("cohort arrival", _spec_yaml(cohorts=[K(arrival={})]),
     ["cohorts[0].arrival.process", "got ''", "valid: poisson, gamma, weibull, constant"]),
    ("cohort weibull cv", _spec_yaml(cohorts=[K(arrival={"process": "weibull", "cv": 0.001})]),
     ["cohorts[0].arrival.cv", "in [0.01, 10.4]", "got 0.001"]),
    ("cohort distribution", _spec_yaml(cohorts=[K(output_distribution={"type": "uniform"})]),
     ["cohorts[0].output_distribution.type", "got 'uniform'", "valid: gaussian"]),
    ("diurnal ratio", _spec_yaml(cohorts=[K(diurnal={"peak_hour": 3, "peak_to_trough_ratio": 0.5})]),
     ["cohorts[0].diurnal.peak_to_trough_ratio", "must be a finite number >= 1", "got 0.5"]),
    ("diurnal hour", _spec_yaml(cohorts=[K(diurnal={"peak_hour": 24, "peak_to_trough_ratio": 2})]),
     ["cohorts[0].diurnal.peak_hour", "must be in 0..23", "got 24"]),
    ("spike start", _spec_yaml(cohorts=[K(spike={"start_time_us": -1, "duration_us": 5})]),
     ["cohorts[0].spike.start_time_us", "must be >= 0", "got -1"]),
    ("spike duration", _spec_yaml(cohorts=[K(spike={"start_time_us": 0, "duration_us": 0})]),
     ["cohorts[0].spike.duration_us", "must be > 0", "got 0"]),
    ("drain start", _spec_yaml(cohorts=[K(drain={"start_time_us": -5, "ramp_duration_us": 10})]),
     ["cohorts[0].drain.start_time_us", "must be >= 0", "got -5"]),
    ("drain ramp", _spec_yaml(cohorts=[K(drain={"start_time_us": 5, "ramp_duration_us": 0})]),
     ["cohorts[0].drain.ramp_duration_us", "must be > 0", "got 0"]),
    ("cohort prefix length", _spec_yaml(cohorts=[K(prefix_length=-4)]),
     ["cohorts[0].prefix_length", "must be >= 0", "got -4"]),
    ("prefix sharing", _spec_yaml(cohorts=[K(prefix_sharing="private")]),
     ["cohorts[0].prefix_sharing", "got 'private'", "valid: shared, per_member"]),
    ("per-member sharing without a group", _spec_yaml(cohorts=[K(prefix_sharing="per_member")]),
     ["cohorts[0].prefix_group", "must be set when prefix_sharing is per_member", "got ''"]),
    ("cohort timeout", _spec_yaml(cohorts=[K(timeout=-1)]), ["cohorts[0].timeout", "must be >= 0", "got -1"]),
    ("cohort slo target", _spec_yaml(cohorts=[K(slo_target_us=-1)]),
     ["cohorts[0].slo_target_us", "must be >= 0", "got -1"]),
    ("cohort max rounds", _spec_yaml(cohorts=[K(reasoning=_mt(max_rounds=-1))]),
     ["cohorts[0].reasoning.multi_turn.max_rounds", "must be >= 1", "got -1"]),
    ("cohort multimodal", _spec_yaml(cohorts=[K(multimodal={"text_distribution": {"type": "pareto"}})]),
     ["cohorts[0].multimodal.text_distribution.type", "got 'pareto'", "valid: gaussian"]),
    # all-or-nothing slo_class
    ("mixed slo_class", _spec_yaml([C(), C(id="b", slo_class="")], cohorts=[K(slo_class="")]),
     ["clients[1].slo_class", "must be set on every client and cohort or on none",
      "got 1 set (clients[0]) and 2 empty (clients[1], cohorts[0])", "valid: all set, or all empty"]),
]


@pytest.mark.parametrize("name,doc,parts", VALIDATION_ERRORS, ids=[c[0] for c in VALIDATION_ERRORS])
def test_validation_errors_name_path_value_and_options(name, doc, parts):
    text = _text(doc)
    spec = parse_workload_spec(text, "w.yaml", validate=False)  # parsing itself succeeds
    with pytest.raises(ConfigError) as e:
        validate_workload_spec(spec)
    msg = str(e.value)
    assert msg.startswith("w.yaml: ")
    plain = re.sub(r" \(line \d+\)", "", msg)
    for p in parts:
        assert p in msg or p in plain, (p, msg)
    with pytest.raises(ConfigError) as e2:  # the loader validates by default
        parse_workload_spec(text, "w.yaml")
    assert str(e2.value) == msg


def test_validation_accepts_what_blis_accepts():
    ok = [
        _spec_yaml([C(arrival={"process": "weibull", "cv": 50, "shape": 2, "scale": 10})]),  # explicit fit
        _spec_yaml([C(concurrency=3, rate_fraction=0, think_time_us=1000)], aggregate_rate=0),  # no rate needed
        _spec_yaml([C(lifecycle={"windows": [_win(trace_rate=-1)]})], aggregate_rate=0),  # rate unchecked
        _spec_yaml([], aggregate_rate=0, cohorts=[K(spike={"start_time_us": 0, "duration_us": 9,
                                                          "trace_rate": 2})]),
        _spec_yaml([C(slo_class=""), C(id="b", slo_class="")]),
        _spec_yaml([], servegen_data={"path": "x"}),
        _spec_yaml(category="reasoning", version="7"),  # any version string is kept
    ]
    for d in ok:
        parse_workload_spec(_text(d))


def test_line_numbers_point_at_the_offending_value():
    text = BASE.replace("rate_fraction: 1.0", "rate_fraction: 0.0")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "rate_fraction" in ln)
    with pytest.raises(ConfigError, match=rf"clients\[0\]\.rate_fraction \(line {line}\)"):
        parse_workload_spec(text)


# ---------------------------------------------------------------------------
# Cohort expansion (§4.12)
# ---------------------------------------------------------------------------
def test_cohort_members_and_windows():
    k = CohortSpec(id="c", population=3, rate_fraction=0.6, prefix_group="g", prefix_sharing="per_member",
                   arrival=ArrivalSpec("poisson"), timeout=7, streaming=True,
                   spike=SpikeSpec(10, 20, 9.0), drain=DrainSpec(0, 25))
    members = expand_cohorts([k])
    assert [m.id for m in members] == ["c-0", "c-1", "c-2"]
    assert [m.prefix_group for m in members] == ["g-0", "g-1", "g-2"]
    assert all(m.rate_fraction == 0.6 / 3 and m.timeout == 7 and m.streaming for m in members)
    w = members[0].lifecycle
    assert (w[0].start_us, w[0].end_us, w[0].trace_rate) == (10, 30, 3.0)
    # drain from 0: no pre-drain window, 10 segments of 2 µs active 2*(10-i)/10 µs (at least 1)
    assert [(x.start_us, x.end_us) for x in w[1:]] == [(2 * i, 2 * i + max(1, int(2 * (10 - i) / 10)))
                                                       for i in range(10)]
    shared = expand_cohorts([replace_cohort(k, prefix_sharing="shared")])
    assert {m.prefix_group for m in shared} == {"g"}
    assert expand_cohorts([replace_cohort(k, population=0)]) == []


def replace_cohort(k, **kw):
    k2 = copy.copy(k)
    for a, v in kw.items():
        setattr(k2, a, v)
    return k2


def test_diurnal_and_drain_windows_follow_blis_formulas():
    w = diurnal_windows(DiurnalSpec(peak_hour=2, peak_to_trough_ratio=4.0))
    assert len(w) == 24
    assert (w[2].start_us, w[2].end_us) == (2 * 3_600_000_000, 3 * 3_600_000_000)  # full peak hour
    assert w[14].end_us - w[14].start_us == 900_000_000  # trough: 1/R of the hour
    for h, x in enumerate(w):
        m = (1 + math.cos(2 * math.pi * (h - 2) / 24)) / 2 * (1 - 1 / 4) + 1 / 4
        assert x.start_us == h * 3_600_000_000 and x.end_us - x.start_us == int(3.6e9 * m)
    d = drain_windows(DrainSpec(start_time_us=5_000_000, ramp_duration_us=10_000_000))
    assert (d[0].start_us, d[0].end_us) == (0, 5_000_000)
    assert [(x.start_us, x.end_us - x.start_us) for x in d[1:]] == \
        [(5_000_000 + i * 1_000_000, 1_000_000 * (10 - i) // 10) for i in range(10)]


def test_cohort_spec_generates_like_its_explicit_clients():
    spec = load_workload_spec(SPECS / "cohorts.yaml")
    expanded = expand_workload_spec(spec)
    assert [c.id for c in expanded.clients] == ["steady"] + [f"office-{j}" for j in range(4)] + \
        [f"batchers-{j}" for j in range(3)]
    assert expanded.cohorts == [] and len(expanded.clients[1].lifecycle) == 24
    assert expanded.clients[5].lifecycle[0].end_us == 5_000_000
    table = generate_spec_requests(spec)
    assert len(table) == spec.num_requests
    # the expansion written out as explicit clients generates the same workload
    explicit = parse_workload_spec(dump_workload_spec(expanded))
    assert explicit.cohorts == []
    same = synthesis.generate_requests(explicit, INT64_MAX, spec.num_requests)
    for col in ("arrival_us", "input_len", "output_len", "prefix_len", "deadline_us", "streaming"):
        np.testing.assert_array_equal(table[col], same[col])
    _, _, timed = workload_from_spec_file(SPECS / "cohorts.yaml", timeout_s=1, with_spec=True)
    assert [k.timeout for k in timed.cohorts] == [1_000_000, 1_000_000]
    groups = {table.label("prefix_group", i) for i in range(len(table))}
    assert groups <= {"", "repo-0", "repo-1", "repo-2", "repo-3", "shared-sys"} and "shared-sys" in groups
    office = np.array([table.label("client", i).startswith("office") for i in range(len(table))])
    np.testing.assert_array_equal(table["deadline_us"][office], table["arrival_us"][office] + 10_000_000)


# ---------------------------------------------------------------------------
# inference_perf expansion (§4.13)
# ---------------------------------------------------------------------------
def _workload_stream(seed, groups_prefix_len):
    rng = GoRand(derive_seed(seed, SUBSYSTEM_WORKLOAD_GEN))
    for plen in groups_prefix_len:
        rng.skip_intn(128000, plen)
    return rng


def test_single_stage_inference_perf_matches_a_direct_derivation():
    spec = load_workload_spec(SPECS / "inference_perf_single.yaml")
    clients, category, aggregate = expand_inference_perf(spec.inference_perf)
    assert (category, aggregate) == ("language", 5.0)
    assert [c.id for c in clients] == [f"prompt-{p}-user-{u}" for p in range(2) for u in range(3)]
    assert all(c.tenant_id == c.prefix_group == c.id[:8] and c.slo_class == "standard" for c in clients)
    assert all(c.custom_arrival == CustomArrival("normalized_exponential", count=50, duration_us=60_000_000)
               for c in clients)
    table = generate_spec_requests(spec)
    assert len(table) == 300
    labels = np.array([table.label("client", i) for i in range(len(table))])
    np.testing.assert_array_equal(table["input_len"], 30)
    np.testing.assert_array_equal(table["prefix_len"], 10)
    np.testing.assert_array_equal(table["output_len"], 5)
    # each client: one Int63 from its stream seeds the sampler, which draws 50 exponentials
    wrng = _workload_stream(7, [10, 10])
    for c in clients:
        crng = GoRand(wrng.int63())
        sub = GoRand(crng.int63())
        rate = 50 / 60_000_000
        raw = [sub.exp_float64() / rate for _ in range(50)]
        total = 0.0
        for r in raw:
            total += r
        factor = 60_000_000 / total
        want = np.cumsum([max(1, int(r * factor)) for r in raw])
        np.testing.assert_array_equal(table["arrival_us"][labels == c.id], want)


def test_multi_stage_inference_perf_matches_a_direct_derivation():
    spec = load_workload_spec(SPECS / "inference_perf_stages.yaml")
    assert spec.version == "2"
    expanded = expand_workload_spec(spec)
    assert (expanded.category, expanded.aggregate_rate) == ("language", 14.0)
    ids = [c.id for c in expanded.clients]
    assert ids == [f"stage-{s}-prompt-{p}-user-{u}" for s in range(2) for p in range(2) for u in range(2)]
    assert [(c.lifecycle[0].start_us, c.lifecycle[0].end_us) for c in expanded.clients[::4]] == \
        [(0, 20_000_000), (20_000_000, 30_000_000)]
    table = generate_spec_requests(spec)
    labels = np.array([table.label("client", i) for i in range(len(table))])
    np.testing.assert_array_equal(table["prefix_len"], 50)  # system_prompt_len 0 -> the default group length
    wrng = _workload_stream(11, [50, 50])
    for c, stage_rate in zip(expanded.clients, [4] * 4 + [10] * 4):
        crng = GoRand(wrng.int63())
        crng.int63()  # the sampler's seed draw (unused by the Poisson factory)
        rate = stage_rate / 4 / 1e6
        start, end = c.lifecycle[0].start_us, c.lifecycle[0].end_us
        t, want = 0, []
        while True:
            t += max(1, int(crng.exp_float64() / rate))
            if not start <= t < end:
                if t >= end:
                    break
                continue
            want.append(t)
            crng.skip_intn(128000, 64 + 16)
        np.testing.assert_array_equal(table["arrival_us"][labels == c.id], want)
    assert len(table) == sum(1 for _ in labels)


def test_multi_turn_inference_perf_maps_to_single_session_reasoning():
    ip = InferencePerfSpec([StageSpec(2.0, 30)], SharedPrefixSpec(1, 4, 8, 16, 32, True))
    clients, category, aggregate = expand_inference_perf(ip)
    assert (category, aggregate) == ("reasoning", 2.0)
    assert [c.reasoning.multi_turn.max_rounds for c in clients] == [15, 15, 15, 15]
    mt = clients[0].reasoning.multi_turn
    assert (mt.think_time_us, mt.context_growth, mt.single_session) == (2_000_000, "", True)
    assert clients[0].reasoning.reason_ratio_distribution == DistSpec("constant", {"value": 0.0})
    assert clients[0].arrival.process == "poisson" and clients[0].custom_arrival is None
    staged = expand_inference_perf(InferencePerfSpec([StageSpec(2.0, 30), StageSpec(1.0, 8)],
                                                     SharedPrefixSpec(1, 2, 0, 1, 1, True)))[0]
    assert [c.reasoning.multi_turn.max_rounds for c in staged] == [30, 30, 4, 4]
    assert all(c.custom_arrival == CustomArrival("poisson", rate_per_us=r / 2 / 1e6)
               for c, r in zip(staged, [2, 2, 1, 1]))
    spec = WorkloadSpec(inference_perf=ip, category="language")
    assert expand_workload_spec(spec).category == "language"  # an explicit category is kept
    # closed-loop single sessions: one round-0 request and one 15-round blueprint per client
    t = generate_spec_requests(spec, 10**9, 0)
    assert len(t) == 4 and (t["round_index"] == 0).all() and len(set(t["session"].tolist())) == 4
    assert [bp.max_rounds for bp in t.sessions.blueprints] == [15, 15, 15, 15]
    assert all(bp.think_time_us == 2_000_000 and not bp.accumulate for bp in t.sessions.blueprints)


# ---------------------------------------------------------------------------
# Generation semantics around the spec
# ---------------------------------------------------------------------------
def test_closed_loop_single_shot_clients_default_to_a_300s_deadline():
    d = _spec_yaml([C(closed_loop=True), C(id="b", timeout=0, closed_loop=True), C(id="c")], num_requests=60)
    table = generate_spec_requests(parse_workload_spec(_text(d)))
    who = np.array([table.label("client", i) for i in range(len(table))])
    arr, dl = table["arrival_us"], table["deadline_us"]
    np.testing.assert_array_equal(dl[who == "a"], arr[who == "a"] + 300_000_000)
    assert (dl[who != "a"] == 0).all()


def test_unsupported_sources_fail_loudly():
    with pytest.raises(ConfigError, match=r"loading ServeGen data: servegen_data.path must be a readable "
                                          r"directory, got 'data/servegen/language'"):
        generate_spec_requests(load_workload_spec(SPECS / "servegen.yaml"), 10**9)
    conc = parse_workload_spec(_text(_spec_yaml([C(), C(id="u", concurrency=2, rate_fraction=0)])))
    t = generate_spec_requests(conc, 10**7, 0)  # concurrency clients: one seed per user plus a session plan
    assert sorted(t.names["session"][s] for s in t["session"].tolist() if s) == ["concurrency_u_user_0",
                                                                                 "concurrency_u_user_1"]
    assert len(t.sessions.blueprints) == 2 and all(bp.unlimited for bp in t.sessions.blueprints)
    # closed-loop clients on the time-varying path (per-window overrides), as in BLIS: the open-loop
    # generation is filtered to round 0; clients without windows generate nothing there
    tv = generate_spec_requests(load_workload_spec(SPECS / "all_keys.yaml"))
    assert tv.sessions is not None and len(tv) > 0 and not (tv["round_index"] > 0).any()
    with pytest.raises(ConfigError, match=r"num_requests must be >= 0, got -1"):
        generate_spec_requests(conc, 10, -1)
    assert len(generate_spec_requests(conc, 0)) == 0  # no horizon: nothing, before any check


def _write(tmp_path, doc, name="w.yaml"):
    p = tmp_path / name
    p.write_text(_text(doc))
    return p


def test_run_flags_follow_blis_precedence(tmp_path):
    p = _write(tmp_path, _spec_yaml([C(arrival={"process": "poisson"})], seed=5, num_requests=40,
                                    horizon=3_000_000, aggregate_rate=20.0))
    base, h = workload_from_spec_file(p)
    assert h == 3_000_000 and 0 < len(base) <= 40 and (base["arrival_us"] < 3_000_000).all()
    assert (base["deadline_us"] == 0).all()  # --timeout not given: the spec's rules (none)
    same, _ = workload_from_spec_file(p, seed=5)
    np.testing.assert_array_equal(same["arrival_us"], base["arrival_us"])
    other, _ = workload_from_spec_file(p, seed=6)
    assert not np.array_equal(other["arrival_us"][:5], base["arrival_us"][:5])
    longer, h2 = workload_from_spec_file(p, horizon_us=10**12)
    assert h2 == 10**12 and len(longer) == 40
    fewer, _ = workload_from_spec_file(p, horizon_us=10**12, num_requests=7)
    np.testing.assert_array_equal(fewer["arrival_us"], longer["arrival_us"][:7])
    timed, _ = workload_from_spec_file(p, timeout_s=2)
    np.testing.assert_array_equal(timed["deadline_us"], timed["arrival_us"] + 2_000_000)
    off, _, spec = workload_from_spec_file(p, timeout_s=-1, seed=9, with_spec=True)
    assert (off["deadline_us"] == 0).all() and spec.seed == 9 and spec.clients[0].timeout == 0
    with pytest.raises(ConfigError, match="--timeout must be positive .* got 0"):
        workload_from_spec_file(p, timeout_s=0)
    with pytest.raises(ConfigError, match="--num-requests must be >= 0, got -2"):
        workload_from_spec_file(p, num_requests=-2)
    with pytest.raises(ConfigError, match="--horizon must be > 0, got 0"):
        workload_from_spec_file(p, horizon_us=0)


def test_unbounded_generation_is_rejected(tmp_path):
    p = _write(tmp_path, _spec_yaml(num_requests=0))
    with pytest.raises(ConfigError, match="^Workload requires either num_requests or --horizon to bound generation$"):
        workload_from_spec_file(p)
    table, h = workload_from_spec_file(p, horizon_us=2_000_000)
    assert h == 2_000_000 and len(table) > 0
    table, _ = workload_from_spec_file(p, num_requests=3)
    assert len(table) == 3


def test_invalid_specs_fail_at_generation_after_flag_checks(tmp_path):
    p = _write(tmp_path, _spec_yaml([C(rate_fraction=-1)], num_requests=0))
    with pytest.raises(ConfigError, match="bound generation"):  # BLIS checks flags first
        workload_from_spec_file(p)
    with pytest.raises(ConfigError, match=r"w\.yaml: clients\[0\]\.rate_fraction \(line \d+\) must be"):
        workload_from_spec_file(p, num_requests=5)


# ---------------------------------------------------------------------------
# dump -> load round trip
# ---------------------------------------------------------------------------
_names = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=6)
_keys = st.from_regex(r"[a-z][a-z_0-9]{0,5}", fullmatch=True) | st.integers(0, 5000).map(str)
_i64 = st.integers(-(2 ** 63), 2 ** 63 - 1)
_small = st.integers(-5, 10 ** 9)
_f = st.floats(allow_nan=False, allow_infinity=True, width=64)
_opt = st.none().__or__


def _dists():
    return st.builds(DistSpec, type=st.sampled_from(["", "gaussian", "constant", "empirical", "x"]),
                     params=st.dictionaries(_keys, _f, max_size=3), file=_names)


def _arrival():
    return st.builds(ArrivalSpec, process=st.sampled_from(["poisson", "gamma", "weibull", "", "zz"]),
                     cv=_opt(_f), shape=_opt(_f), scale=_opt(_f))


def _reasoning():
    mt = st.builds(MultiTurnSpec, max_rounds=_small, think_time_us=_small, context_growth=_names,
                   single_session=st.booleans())
    return st.builds(ReasoningSpec, reason_ratio_distribution=_dists(), multi_turn=_opt(mt))


def _multimodal():
    return st.builds(MultimodalSpec, **{k: _dists() for k in ("text_distribution", "image_distribution",
                                                                 "image_count_distribution", "video_distribution")})


_window = st.builds(ActiveWindow, start_us=_small, end_us=_small, trace_rate=_opt(_f), arrival=_opt(_arrival()),
                    input_distribution=_opt(_dists()), output_distribution=_opt(_dists()))
_common = dict(id=_names, tenant_id=_names, slo_class=st.sampled_from(["", "critical", "batch", "gold"]),
               model=_names, adapter=_names, rate_fraction=_f, arrival=_arrival(), input_distribution=_dists(),
               output_distribution=_dists(), prefix_group=_names, prefix_length=_small, streaming=st.booleans(),
               network=_opt(st.builds(NetworkSpec, _f, _f)), multimodal=_opt(_multimodal()),
               reasoning=_opt(_reasoning()), timeout=_opt(_i64), slo_target_us=_opt(_i64),
               closed_loop=_opt(st.booleans()))
_client = st.builds(ClientSpec, concurrency=_small, think_time_us=_small,
                    lifecycle=_opt(st.lists(_window, max_size=2)), **_common)
_cohort = st.builds(CohortSpec, population=_small, prefix_sharing=_names,
                    diurnal=_opt(st.builds(DiurnalSpec, _small, _f)),
                    spike=_opt(st.builds(SpikeSpec, _small, _small, _opt(_f))),
                    drain=_opt(st.builds(DrainSpec, _small, _small)), **_common)
_ip_st = st.builds(InferencePerfSpec, stages=st.lists(st.builds(StageSpec, _f, _small), max_size=2),
                   shared_prefix=_opt(st.builds(SharedPrefixSpec, _small, _small, _small, _small, _small,
                                                st.booleans())))
_specs = st.builds(
    WorkloadSpec, version=_names.filter(lambda v: v not in ("", "1")), seed=_i64, category=_names,
    aggregate_rate=_f, num_requests=_i64, horizon=_i64, clients=st.lists(_client, max_size=2),
    cohorts=st.lists(_cohort, max_size=2),
    servegen_data=_opt(st.builds(ServeGenDataSpec, _names, _names, _i64, _i64, _small, _small)),
    inference_perf=_opt(_ip_st),
    goodput_slo_targets=st.dictionaries(_names, st.builds(SLODimTargets, _f, _f, _f), max_size=2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs)
def test_dumped_specs_load_back_equal(spec):
    text = dump_workload_spec(spec)
    assert parse_workload_spec(text, validate=False) == spec


@pytest.mark.parametrize("name", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_reference_specs_round_trip(name):
    spec = load_workload_spec(SPECS / name)
    again = parse_workload_spec(dump_workload_spec(spec))
    assert again == spec


def test_expanded_inference_perf_clients_cannot_be_dumped():
    spec = expand_workload_spec(load_workload_spec(SPECS / "inference_perf_single.yaml"))
    with pytest.raises(ConfigError, match=r"clients\[0\]\.custom_arrival must be None"):
        dump_workload_spec(spec)
    # and the plain generator refuses them instead of treating them as Poisson clients
    if not getattr(synthesis, "SUPPORTS_CUSTOM_ARRIVAL", False):
        with pytest.raises(ConfigError, match="inference_perf"):
            synthesis.generate_requests(spec, 10**9, 0)
