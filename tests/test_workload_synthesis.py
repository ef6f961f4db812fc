"""Distribution/preset synthesis and the request generator, against BLIS's own outputs."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from blis.errors import ConfigError
from blis.requests import REQUEST_FIELDS
from blis.rng import GoRand
from blis.workload.distributions import (
    go_round_nb,
    make_arrival_sampler,
    make_length_sampler,
    normalized_exponential_sampler,
)
from blis.workload.synthesis import (
    ArrivalSpec,
    ClientSpec,
    DistributionParams,
    DistSpec,
    WorkloadSpec,
    distribution_spec,
    generate_requests,
    go_format_float,
    load_preset,
    load_presets,
    preset_params,
    synthesize_distribution,
    synthesize_preset,
)

DATA = Path(__file__).parent / "data"
PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
if not PARITY.exists():
    PARITY = Path("/work/shared/parity")

DISTRIBUTION_SCENARIOS = ["s1-basic", "s2-preemption", "s3-chunked-prefill", "s4-trained-physics", "s6-moe-tp2",
                          "c1-round-robin", "c4-token-bucket"]
SPEC_SCENARIOS = [("c2-weighted-prefix", "prefix8.yaml"), ("c3-slo-priority", "slo3.yaml"),
                  ("s5-cpu-tier", "prefix4.yaml")]


def _needs_parity():
    if not PARITY.exists():
        pytest.skip("parity fixtures (shared/parity) not available")


def _flags(workload_args):
    kv, seed = {}, 42
    for k, v in zip(workload_args[::2], workload_args[1::2]):
        k = k.lstrip("-").replace("-", "_")
        if k == "seed":
            seed = int(v)
        else:
            kv[k] = float(v) if k == "rate" else int(v)
    return kv, seed


def _trace_rows(scenario):
    with open(PARITY / scenario / "trace.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_requests(table, rows):
    assert len(table) == len(rows)
    col = lambda k: np.array([int(r[k]) for r in rows], np.int64)  # noqa: E731
    np.testing.assert_array_equal(table["arrival_us"], col("arrival_time_us"))
    np.testing.assert_array_equal(table["input_len"] - table["prefix_len"], col("input_tokens"))
    np.testing.assert_array_equal(table["output_len"], col("output_tokens"))
    np.testing.assert_array_equal(table["prefix_len"], col("prefix_length"))
    np.testing.assert_array_equal(table["deadline_us"], col("deadline_us"))
    assert [table.label("client", i) for i in range(len(table))] == [r["client_id"] for r in rows]
    assert [table.label("prefix_group", i) for i in range(len(table))] == [r["prefix_group"] for r in rows]


# ---------------------------------------------------------------------------
# Golden parity
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", DISTRIBUTION_SCENARIOS)
def test_distribution_flags_reproduce_blis_trace_exactly(scenario):
    _needs_parity()
    sc = json.loads((PARITY / scenario / "scenario.json").read_text())
    flags, seed = _flags(sc["workload"])
    table = synthesize_distribution(seed=seed, **flags)
    _assert_same_requests(table, _trace_rows(scenario))
    table.validate()


def _spec_from_yaml(d):
    clients = []
    for c in d.get("clients", []):
        a = c.get("arrival", {})
        clients.append(ClientSpec(
            id=c.get("id", ""), tenant_id=c.get("tenant_id", ""), slo_class=c.get("slo_class", ""),
            rate_fraction=c.get("rate_fraction", 0.0),
            arrival=ArrivalSpec(a.get("process", ""), a.get("cv"), a.get("shape"), a.get("scale")),
            input_distribution=DistSpec(c["input_distribution"]["type"], c["input_distribution"].get("params", {})),
            output_distribution=DistSpec(c["output_distribution"]["type"], c["output_distribution"].get("params", {})),
            prefix_group=c.get("prefix_group", ""), prefix_length=c.get("prefix_length", 0)))
    return WorkloadSpec(seed=d.get("seed", 0), aggregate_rate=d.get("aggregate_rate", 0.0),
                        num_requests=d.get("num_requests", 0), clients=clients)


@pytest.mark.parametrize("scenario,spec_file", SPEC_SCENARIOS)
def test_multi_client_spec_reproduces_blis_trace_exactly(scenario, spec_file):
    """Poisson and gamma clients, several prefix groups, stable merge by arrival."""
    _needs_parity()
    spec = _spec_from_yaml(yaml.safe_load((PARITY / scenario / spec_file).read_text()))
    table = generate_requests(spec)
    rows = _trace_rows(scenario)
    _assert_same_requests(table, rows)
    assert [table.label("slo_class", i) for i in range(len(table))] == [r["slo_class"] for r in rows]
    assert [table.label("tenant", i) for i in range(len(table))] == [r["tenant_id"] for r in rows]


SAMPLER_CASES = json.loads((DATA / "sampler_vectors.json").read_text())


@pytest.mark.parametrize("case", SAMPLER_CASES["cases"], ids=lambda c: c["name"])
def test_samplers_match_go_reference_draws(case):
    r = GoRand(case["seed"])
    n = SAMPLER_CASES["n"]
    if case["kind"] == "arrival":
        p = case["params"]
        s = make_arrival_sampler(case["type"], case["rate_per_us"], cv=p.get("cv"), shape=p.get("shape"),
                                 scale=p.get("scale"))
        values = [s.sample_iat(r) for _ in range(n)]
    else:
        s = make_length_sampler(case["type"], case["params"])
        values = [s.sample(r) for _ in range(n)]
    assert values == case["values"]
    assert r.int63() == case["int63_after"]  # same number of draws as Go


# ---------------------------------------------------------------------------
# Flags, presets, validation
# ---------------------------------------------------------------------------
def test_constant_arrivals_start_at_one_interval_and_truncate_the_rate():
    assert synthesize_distribution(rate=1, num_requests=3)["arrival_us"].tolist() == [1_000_000, 2_000_000, 3_000_000]
    assert synthesize_distribution(rate=10, num_requests=2)["arrival_us"].tolist() == [99_999, 199_998]


def test_default_flags_and_spec_shape():
    p = DistributionParams()
    assert (p.rate, p.num_requests, p.prompt_tokens, p.prompt_tokens_stdev, p.prompt_tokens_min,
            p.prompt_tokens_max, p.prefix_tokens) == (1.0, 100, 512, 256, 2, 7000, 0)
    spec = distribution_spec(DistributionParams(prefix_tokens=64, rate=5), seed=7)
    (c,) = spec.clients
    assert (spec.version, spec.category, spec.aggregate_rate, spec.seed) == ("2", "language", 5.0, 7)
    assert (c.id, c.arrival.process, c.rate_fraction, c.prefix_group, c.prefix_length) == \
        ("distribution", "constant", 1.0, "shared", 64)
    assert c.input_distribution.params == {"mean": 512.0, "std_dev": 256.0, "min": 2.0, "max": 7000.0}
    conc = distribution_spec(DistributionParams(concurrency=4, think_time_ms=250))
    assert (conc.aggregate_rate, conc.clients[0].rate_fraction, conc.clients[0].concurrency,
            conc.clients[0].think_time_us) == (0.0, 0.0, 4, 250_000)


@pytest.mark.parametrize("flags,message", [
    (dict(num_requests=-1, prefix_tokens=-1), "--num-requests must be >= 0, got -1"),
    (dict(prefix_tokens=-2, concurrency=-1), "--prefix-tokens must be >= 0, got -2"),
    (dict(concurrency=-1, think_time_ms=-1), "--concurrency must be >= 0, got -1"),
    (dict(think_time_ms=-5, rate=0), "--think-time-ms must be >= 0, got -5"),
    (dict(rate=0, prompt_tokens_min=0), "--rate must be a finite value > 0, got 0"),
    (dict(rate=float("inf")), "--rate must be a finite value > 0, got +Inf"),
    (dict(rate=float("nan")), "--rate must be a finite value > 0, got NaN"),
    (dict(prompt_tokens_min=0, output_tokens_min=0), "--prompt-tokens-min must be >= 1, got 0"),
    (dict(output_tokens_max=0), "--output-tokens-max must be >= 1, got 0"),
    (dict(output_tokens_stdev=-1), "--output-tokens-stdev must be >= 0, got -1"),
    (dict(prompt_tokens_min=10, prompt_tokens_max=5), "--prompt-tokens-min (10) must be <= --prompt-tokens-max (5)"),
    (dict(prompt_tokens=8000), "prompt-tokens and prompt-tokens-stdev should be in range "
                               "[prompt-tokens-min, prompt-tokens-max]"),
    (dict(output_tokens_stdev=1, output_tokens_min=2), "output-tokens and output-tokens-stdev should be in range "
                                                       "[output-tokens-min, output-tokens-max]"),
])
def test_flag_validation_reports_blis_message_for_the_first_failure(flags, message):
    with pytest.raises(ConfigError) as e:
        synthesize_distribution(**flags)
    assert str(e.value) == message


def test_concurrency_with_explicit_rate_is_rejected():
    with pytest.raises(ConfigError, match="--concurrency and --rate are mutually exclusive"):
        synthesize_distribution(concurrency=2, rate_explicit=True)


def test_zero_stdev_gives_constant_lengths_without_draws():
    t = synthesize_distribution(rate=5, num_requests=20, prompt_tokens=100, prompt_tokens_stdev=0,
                                output_tokens=30, output_tokens_stdev=0)
    # stdev 0 still draws NormFloat64 (min != max) but every value is the mean
    assert set(t["input_len"].tolist()) == {100} and set(t["output_len"].tolist()) == {30}
    s = make_length_sampler("gaussian", {"mean": 5, "std_dev": 3, "min": 7, "max": 7})
    r = GoRand(1)
    assert s.sample(r) == 7 and not s.draws_randomness
    assert r.int63() == GoRand(1).int63()


def test_timeout_sets_deadlines_and_can_be_disabled():
    t = synthesize_distribution(rate=2, num_requests=5)
    np.testing.assert_array_equal(t["deadline_us"], t["arrival_us"] + 300_000_000)
    t = synthesize_distribution(rate=2, num_requests=5, timeout_s=7)
    np.testing.assert_array_equal(t["deadline_us"], t["arrival_us"] + 7_000_000)
    assert not synthesize_distribution(rate=2, num_requests=5, timeout_s=-1)["deadline_us"].any()
    with pytest.raises(ConfigError, match="--timeout must be positive"):
        synthesize_distribution(rate=2, num_requests=5, timeout_s=0)


def test_unbounded_generation_is_rejected_and_horizon_bounds_it():
    with pytest.raises(ConfigError, match="Workload requires either num_requests or --horizon"):
        synthesize_distribution(num_requests=0)
    t = synthesize_distribution(num_requests=0, rate=4, horizon_us=2_000_000)
    assert t["arrival_us"].tolist() == [250_000 * k for k in range(1, 8)]  # strictly before the horizon


def test_presets_load_from_packaged_defaults():
    presets = load_presets()
    assert set(presets) >= {"chatbot", "summarization", "contentgen", "multidoc"}
    assert presets["chatbot"].prompt_tokens == 256 and presets["chatbot"].output_tokens_min == 1
    assert presets["multidoc"].prefix_tokens == 0 and presets["multidoc"].prompt_tokens == 10240
    assert (presets["summarization"].prompt_tokens, presets["summarization"].prompt_tokens_stdev) == (4096, 500)


def test_preset_workload_equals_the_same_distribution_flags():
    a = synthesize_preset("chatbot", rate=3, num_requests=50, seed=9)
    b = synthesize_distribution(preset_params(load_preset("chatbot"), rate=3, num_requests=50), seed=9)
    for name, *_ in REQUEST_FIELDS:
        np.testing.assert_array_equal(a[name], b[name])


def test_unknown_preset_fails_with_blis_message():
    with pytest.raises(ConfigError) as e:
        load_preset("nope")
    assert str(e.value) == ('Undefined workload \'nope\'. Use one among (chatbot, summarization, contentgen, '
                            'multidoc) or --workload-spec')


def test_preset_file_is_parsed_strictly(tmp_path):
    f = tmp_path / "defaults.yaml"
    f.write_text("workloads:\n  mine:\n    prompt_tokens: 10\n    prompt_tokns: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'prompt_tokns'.*valid: prefix_tokens"):
        load_presets(f)
    f.write_text("workloads:\n  mine:\n    prompt_tokens: 10.5\n")
    with pytest.raises(ConfigError, match="prompt_tokens must be an integer, got 10.5"):
        load_presets(f)


# ---------------------------------------------------------------------------
# Generator behaviour
# ---------------------------------------------------------------------------
def _two_clients(**kw):
    base = dict(arrival=ArrivalSpec("constant"), input_distribution=DistSpec("constant", {"value": 10}),
                output_distribution=DistSpec("constant", {"value": 5}))
    base.update(kw)
    return [ClientSpec(id="a", rate_fraction=1, **base), ClientSpec(id="b", rate_fraction=1, **base)]


def test_arrival_ties_keep_client_order():
    t = generate_requests(WorkloadSpec(seed=1, aggregate_rate=2, num_requests=6, clients=_two_clients()))
    assert [t.label("client", i) for i in range(6)] == ["a", "b"] * 3
    assert t["arrival_us"].tolist() == [1_000_000] * 2 + [2_000_000] * 2 + [3_000_000] * 2
    assert t["request_id"].tolist() == list(range(6))


def test_short_per_client_cap_gives_blis_output():
    spec = WorkloadSpec(seed=5, aggregate_rate=50, num_requests=700, clients=[
        ClientSpec(id="a", rate_fraction=0.7, arrival=ArrivalSpec("gamma", cv=2.0),
                   input_distribution=DistSpec("exponential", {"mean": 300}),
                   output_distribution=DistSpec("lognormal", {"mu": 5, "sigma": 1}), prefix_group="g"),
        ClientSpec(id="b", rate_fraction=0.3, arrival=ArrivalSpec("weibull", cv=0.5),
                   input_distribution=DistSpec("empirical", {"10": 0.5, "20": 0.5}),
                   output_distribution=DistSpec("pareto_lognormal", {"alpha": 1.5, "xm": 10, "mu": 3, "sigma": 1,
                                                                     "mix_weight": 0.4})),
    ])
    ours, blis = generate_requests(spec), generate_requests(spec, blis_client_cap=True)
    for name, *_ in REQUEST_FIELDS:
        np.testing.assert_array_equal(ours[name], blis[name])
    assert (ours["prefix_len"][ours["prefix_group"] > 0] == 50).all()  # default prefix length


def test_lifecycle_windows_keep_only_in_window_arrivals():
    wins = [(0, 3_000_000), (6_000_000, 8_000_000)]
    c = ClientSpec(id="w", rate_fraction=1, arrival=ArrivalSpec("poisson"), lifecycle=wins,
                   input_distribution=DistSpec("constant", {"value": 3}),
                   output_distribution=DistSpec("constant", {"value": 3}))
    t = generate_requests(WorkloadSpec(seed=3, aggregate_rate=20, clients=[c]), horizon_us=20_000_000)
    a = t["arrival_us"]
    assert len(a) > 0
    assert (((a >= 0) & (a < 3_000_000)) | ((a >= 6_000_000) & (a < 8_000_000))).all()


def test_same_seed_same_table_and_content_seeds_are_unique():
    a = synthesize_distribution(seed=3, rate=20, num_requests=500, prefix_tokens=32)
    b = synthesize_distribution(seed=3, rate=20, num_requests=500, prefix_tokens=32)
    c = synthesize_distribution(seed=4, rate=20, num_requests=500, prefix_tokens=32)
    for name, *_ in REQUEST_FIELDS:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["input_len"], c["input_len"])
    assert len(np.unique(a["content_seed"])) == len(a)
    assert a.names["prefix_group"] == ["", "shared"] and a.group_seeds[1] != 0


def test_timeout_field_of_a_client_sets_deadlines():
    clients = _two_clients()
    clients[0].timeout = 1_000
    clients[1].timeout = 0
    t = generate_requests(WorkloadSpec(seed=1, aggregate_rate=2, num_requests=4, clients=clients))
    is_a = np.array([t.label("client", i) == "a" for i in range(4)])
    np.testing.assert_array_equal(t["deadline_us"][is_a], t["arrival_us"][is_a] + 1_000)
    assert not t["deadline_us"][~is_a].any()


def test_unsupported_clients_and_bad_distributions_raise_config_errors():
    c = ClientSpec(id="r", rate_fraction=1, arrival=ArrivalSpec("poisson"), prefix_length=-1,
                   input_distribution=DistSpec("constant", {"value": 1}),
                   output_distribution=DistSpec("constant", {"value": 1}))
    with pytest.raises(ConfigError, match="client 'r': prefix_length must be >= 0, got -1"):
        generate_requests(WorkloadSpec(aggregate_rate=1, num_requests=1, clients=[c]))
    with pytest.raises(ConfigError, match="type must be a known distribution, got 'zipf'; valid: gaussian"):
        make_length_sampler("zipf", {})
    with pytest.raises(ConfigError, match="requires parameter 'std_dev'"):
        make_length_sampler("gaussian", {"mean": 1, "min": 1, "max": 2})
    with pytest.raises(ConfigError, match="min must be <= max, got min=9, max=3"):
        make_length_sampler("lognormal", {"mu": 1, "sigma": 1, "min": 9, "max": 3})
    with pytest.raises(ConfigError, match="process must be one of the known processes, got 'bursty'"):
        make_arrival_sampler("bursty", 1e-6)
    with pytest.raises(ConfigError, match="max_requests must be >= 0"):
        generate_requests(WorkloadSpec(), max_requests=-1)


def test_zero_horizon_gives_no_requests():
    assert len(generate_requests(distribution_spec(DistributionParams()), horizon_us=0)) == 0


def test_normalized_exponential_iats_sum_close_to_duration_then_stop():
    s = normalized_exponential_sampler(GoRand(2), 50, 10_000_000)
    r = GoRand(0)
    iats = [s.sample_iat(r, cursor) for cursor in [np.zeros(1, np.int64)] for _ in range(51)]
    assert iats[-1] == 0 and all(v >= 1 for v in iats[:-1])
    assert 10_000_000 - 50 <= sum(iats) <= 10_000_000


def test_go_round_and_float_formatting():
    assert [go_round_nb(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999)] == [1, 2, 3, -1, -3, 2]
    cases = {1.0: "1", 0.5: "0.5", 1e6: "1e+06", 123456.0: "123456", 1e-5: "1e-05", 1e-4: "0.0001",
             float("inf"): "+Inf", 99999.99999999999: "99999.99999999999", 2.5e-7: "2.5e-07"}
    for x, s in cases.items():
        assert go_format_float(x) == s
