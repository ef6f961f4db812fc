"""blis convert (preset, inference-perf, servegen) and blis compose: the YAML BLIS writes."""
import textwrap

import numpy as np
import pytest

from blis import convert
from blis.workload import spec as S
from blis.workload import synthesis as syn

CHATBOT_YAML = textwrap.dedent('''\
    version: "2"
    seed: 0
    category: language
    clients:
        - id: preset-chatbot
          tenant_id: ""
          slo_class: ""
          rate_fraction: 1
          arrival:
              process: constant
          input_distribution:
              type: gaussian
              params:
                  max: 800
                  mean: 256
                  min: 2
                  std_dev: 100
          output_distribution:
              type: gaussian
              params:
                  max: 1024
                  mean: 256
                  min: 1
                  std_dev: 100
          streaming: false
    aggregate_rate: 2.5
    num_requests: 40
    ''')


def _cli(capsys, *argv):
    rc = convert.main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---------------------------------------------------------------------------
# convert preset
# ---------------------------------------------------------------------------
def test_convert_preset_writes_blis_yaml(capsys):
    rc, out, err = _cli(capsys, "convert", "preset", "--name", "chatbot", "--rate", "2.5", "--num-requests", "40")
    assert rc == 0, err
    assert out == CHATBOT_YAML


def test_converted_preset_generates_the_same_requests_as_the_preset(capsys):
    rc, out, _ = _cli(capsys, "convert", "preset", "--name", "summarization", "--rate", "3", "--num-requests", "50")
    assert rc == 0
    spec = S.parse_workload_spec(out)          # valid, strict
    spec.seed = 42
    got = S.generate_spec_requests(spec)
    want = syn.synthesize_preset("summarization", rate=3, num_requests=50, seed=42, timeout_s=-1)
    for col in ("arrival_us", "input_len", "output_len", "prefix_len"):
        assert np.array_equal(got[col], want[col]), col
    assert got.names["client"][1:] == ["preset-summarization"]


def test_convert_preset_with_prefix_tokens(tmp_path, capsys):
    d = tmp_path / "defaults.yaml"
    d.write_text("workloads:\n  pre:\n    prefix_tokens: 64\n    prompt_tokens: 100\n    prompt_tokens_stdev: 10\n"
                 "    prompt_tokens_min: 10\n    prompt_tokens_max: 200\n    output_tokens: 50\n"
                 "    output_tokens_stdev: 5\n    output_tokens_min: 1\n    output_tokens_max: 100\n")
    rc, out, err = _cli(capsys, "convert", "preset", "--name", "pre", "--defaults-filepath", str(d))
    assert rc == 0, err
    assert "      prefix_group: shared\n      prefix_length: 64\n      streaming: false\n" in out
    assert out.endswith("aggregate_rate: 1\nnum_requests: 100\n")


@pytest.mark.parametrize("args,needle", [
    (["--name", "chatbot", "--rate", "0"], "--rate must be a finite value > 0"),
    (["--name", "chatbot", "--rate", "nan"], "--rate must be a finite value > 0"),
    (["--name", "chatbot", "--num-requests", "0"], "--num-requests must be > 0"),
    (["--name", "nope"], "Unknown preset 'nope'"),
    ([], "--name is required"),
])
def test_convert_preset_errors(capsys, args, needle):
    rc, out, err = _cli(capsys, "convert", "preset", *args)
    assert rc == 1 and out == "" and needle in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# convert inference-perf
# ---------------------------------------------------------------------------
def _ip_file(tmp_path, stages, multi_turn=False, n=2, m=3):
    st = "".join(f"    - rate: {r}\n      duration: {d}\n" for r, d in stages)
    p = tmp_path / "ip.yaml"
    p.write_text(f"version: \"2\"\nseed: 7\ninference_perf:\n  stages:\n{st}  shared_prefix:\n"
                 f"    num_unique_system_prompts: {n}\n    num_users_per_system_prompt: {m}\n"
                 f"    system_prompt_len: 100\n    question_len: 40\n    output_len: 20\n"
                 f"    enable_multi_turn_chat: {'true' if multi_turn else 'false'}\n")
    return p


def test_convert_inference_perf_single_stage(tmp_path, capsys):
    rc, out, err = _cli(capsys, "convert", "inference-perf", "--spec", str(_ip_file(tmp_path, [(6, 20)])))
    assert rc == 0, err
    spec = S.parse_workload_spec(out)
    assert spec.seed == 7 and spec.category == "language" and spec.aggregate_rate == 6
    assert [c.id for c in spec.clients] == [f"prompt-{p}-user-{u}" for p in range(2) for u in range(3)]
    for c in spec.clients:
        assert c.arrival.process == "poisson" and c.rate_fraction == pytest.approx(1 / 6)
        assert c.tenant_id == c.prefix_group and c.slo_class == "standard" and c.prefix_length == 100
        assert c.input_distribution.type == "constant" and c.input_distribution.params == {"value": 40.0}
        assert c.output_distribution.params == {"value": 20.0}
    first = out.split("    - id: prompt-0-user-1")[0]
    assert first == textwrap.dedent('''\
        version: "2"
        seed: 7
        category: language
        clients:
            - id: prompt-0-user-0
              tenant_id: prompt-0
              slo_class: standard
              rate_fraction: 0.16666666666666666
              arrival:
                  process: poisson
              input_distribution:
                  type: constant
                  params:
                      value: 40
              output_distribution:
                  type: constant
                  params:
                      value: 20
              prefix_group: prompt-0
              prefix_length: 100
              streaming: false
        ''')
    assert out.endswith("aggregate_rate: 6\n")


def test_convert_inference_perf_multi_stage_and_multi_turn(tmp_path, capsys):
    rc, out, err = _cli(capsys, "convert", "inference-perf", "--spec",
                        str(_ip_file(tmp_path, [(2, 10), (4, 5)], multi_turn=True, n=1, m=2)))
    assert rc == 0, err
    spec = S.parse_workload_spec(out)
    assert spec.category == "reasoning" and spec.aggregate_rate == 6
    ids = [c.id for c in spec.clients]
    assert ids == ["stage-0-prompt-0-user-0", "stage-0-prompt-0-user-1", "stage-1-prompt-0-user-0",
                   "stage-1-prompt-0-user-1"]
    assert [(c.lifecycle[0].start_us, c.lifecycle[0].end_us) for c in spec.clients] == \
        [(0, 10_000_000)] * 2 + [(10_000_000, 15_000_000)] * 2
    assert all(c.rate_fraction == 1 for c in spec.clients)
    mt = spec.clients[0].reasoning.multi_turn
    assert mt.max_rounds == 10 and mt.single_session and mt.think_time_us == 1_000_000
    assert ("      lifecycle:\n          windows:\n              - start_us: 0\n                end_us: 10000000\n"
            in out)


def test_convert_inference_perf_errors(tmp_path, capsys):
    p = tmp_path / "plain.yaml"
    p.write_text("version: \"2\"\naggregate_rate: 1\nclients: []\n")
    rc, _, err = _cli(capsys, "convert", "inference-perf", "--spec", str(p))
    assert rc == 1 and "does not contain an inference_perf section" in err
    rc, _, err = _cli(capsys, "convert", "inference-perf", "--spec", str(_ip_file(tmp_path, [(0.01, 5)])))
    assert rc == 1 and "increase rate or duration" in err


def test_convert_servegen_validates_its_flags_first(tmp_path, capsys):
    rc, out, err = _cli(capsys, "convert", "servegen", "--path", str(tmp_path), "--time", "noon")
    assert rc == 1 and out == "" and "--time must be one of" in err
    rc, out, err = _cli(capsys, "convert", "servegen", "--path", str(tmp_path))  # empty directory
    assert rc == 1 and out == "" and "no chunk-*-trace.csv files found" in err


# ---------------------------------------------------------------------------
# compose
# ---------------------------------------------------------------------------
def _spec_file(tmp_path, name, rate, clients, extra=""):
    body = "".join(
        f"  - id: {cid}\n    rate_fraction: {frac}\n    arrival:\n      process: poisson\n"
        f"    input_distribution:\n      type: constant\n      params:\n        value: 10\n"
        f"    output_distribution:\n      type: constant\n      params:\n        value: 5\n"
        for cid, frac in clients)
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"version: \"2\"\nseed: 9\ncategory: {name}\naggregate_rate: {rate}\nnum_requests: 10\n{extra}"
                 f"clients:\n{body}")
    return p


def test_compose_scales_rate_fractions_by_each_specs_share(tmp_path, capsys):
    a = _spec_file(tmp_path, "language", 10, [("a1", 0.5), ("a2", 0.5)])
    b = _spec_file(tmp_path, "reasoning", 5, [("b1", 1.0)])
    rc, out, err = _cli(capsys, "compose", "--from", str(a), "--from", str(b))
    assert rc == 0, err
    spec = S.parse_workload_spec(out)
    assert spec.aggregate_rate == 15 and spec.category == "language"
    assert spec.seed == 0 and spec.num_requests == 0 and spec.horizon == 0   # not carried over
    assert [c.id for c in spec.clients] == ["a1", "a2", "b1"]
    assert [c.rate_fraction for c in spec.clients] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    # absolute per-client rates are preserved: 5, 5, 5 req/s
    assert [spec.aggregate_rate * c.rate_fraction for c in spec.clients] == pytest.approx([5, 5, 5])


def test_compose_of_zero_rate_specs_concatenates(tmp_path):
    a = S.WorkloadSpec(version="2", category="language", aggregate_rate=0.0,
                       clients=[S.ClientSpec(id="x", concurrency=2, rate_fraction=0.0)])
    b = S.WorkloadSpec(version="2", category="language", aggregate_rate=0.0,
                       clients=[S.ClientSpec(id="y", concurrency=3, rate_fraction=0.0)])
    m = convert.compose_specs([a, b])
    assert [c.id for c in m.clients] == ["x", "y"] and m.aggregate_rate == 0
    assert a.clients[0].rate_fraction == 0.0                      # inputs untouched
    with pytest.raises(Exception, match="non-negative"):
        convert.compose_specs([S.WorkloadSpec(aggregate_rate=-1.0)])


def test_compose_errors(tmp_path, capsys):
    rc, _, err = _cli(capsys, "compose")
    assert rc == 1 and "at least one --from" in err
    rc, _, err = _cli(capsys, "compose", "--from", str(tmp_path / "missing.yaml"))
    assert rc == 1 and "missing.yaml" in err


def test_output_file_option(tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    rc, stdout, _ = _cli(capsys, "convert", "preset", "--name", "chatbot", "--rate", "2.5", "--num-requests", "40",
                         "--output", str(out))
    assert rc == 0 and stdout == "" and out.read_text() == CHATBOT_YAML


def test_yaml_emitter_quotes_like_yaml_v3():
    spec = S.WorkloadSpec(version="2", seed=3, category="language", aggregate_rate=1e6, clients=[
        S.ClientSpec(id="yes", tenant_id="a: b", slo_class="", rate_fraction=1.0,
                     arrival=S.ArrivalSpec("gamma", cv=2.5), timeout=0, closed_loop=False,
                     input_distribution=S.DistSpec("constant", {"value": 1.0}),
                     output_distribution=S.DistSpec("constant", {"value": 1.0}))])
    y = convert.spec_yaml(spec)
    assert '    - id: "yes"\n      tenant_id: \'a: b\'\n' in y
    assert "          cv: 2.5\n" in y
    assert "      timeout: 0\n      closed_loop: false\n" in y
    assert y.endswith("aggregate_rate: 1e+06\n")
