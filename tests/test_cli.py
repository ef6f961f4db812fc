"""The command line: bad input gets one clear line and a non-zero exit, never a
traceback or a half-written file; good input produces the documented outputs."""
import json
import subprocess
import sys

import polars as pl
import pytest

from blis.cli import main

BASE = ["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline",
        "--hardware", "H100", "--tp", "1", "--num-requests", "30", "--rate", "5"]


def _err(capsys):
    return capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--routing-policy", "bogus"],
     "--routing-policy: must be a registered routing policy, got 'bogus'; valid: always-busiest, least-loaded, round-robin, weighted"),
    (BASE + ["--routing-policy", "weighted", "--routing-scorers", "queue-depth:1,magic:2"],
     "--routing-scorers: scorer must be a known name, got 'magic'; valid: active-requests"),
    (BASE + ["--routing-policy", "weighted", "--routing-scorers", "queue-depth:0"],
     "--routing-scorers: weight of 'queue-depth' must be finite and > 0, got 0"),
    (BASE + ["--scheduler", "nope"], "--scheduler: must be a registered scheduler, got 'nope'; valid: fcfs, priority-fcfs"),
    (BASE + ["--latency-model", "blackbox"], "--latency-model: must be one of the valid names, got 'blackbox'; valid: roofline, trained-physics"),
    (BASE + ["--hardware", "H900"], "H900"),
    (["run", "--model", "acme/unknown-model"], "acme/unknown-model"),
    (["run"], "--model"),
    (BASE + ["--workload", "chatbott"], "Undefined workload 'chatbott'"),
    (BASE + ["--prompt-tokens-min", "0"], "prompt-tokens-min"),
    (BASE + ["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization: must be in (0, 1], got 1.5"),
    (BASE + ["--batch-formation", "x"], "--batch-formation: must be a registered batch formation, got 'x'"),
    (BASE + ["--timeout", "0"], "--timeout"),
    (["replay", "--model", "meta-llama/llama-3.1-8b-instruct", "--trace-header", "/nonexistent.yaml",
      "--trace-data", "/nonexistent.csv"], "--trace-header: file must exist"),
])
def test_bad_input_is_one_clear_line_and_exit_1(argv, needle, capsys):
    assert main(argv) == 1
    err = _err(capsys)
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unparseable_flag_value_exits_1_with_the_flag_name():
    p = subprocess.run([sys.executable, "-m", "blis.cli", "run", "--model", "x/y", "--rate", "fast"],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "--rate" in p.stderr and "Traceback" not in p.stderr


def test_unsupported_feature_is_refused_not_simulated_wrongly(tmp_path, capsys):
    # blis replay does not simulate the autoscaler or node pools (as in BLIS): one clear error
    cfg = tmp_path / "p.yaml"
    cfg.write_text("autoscaler:\n  interval_us: 1000000\n")
    replay = ["replay", "--model", "meta-llama/llama-3.1-8b-instruct", "--trace-header", str(tmp_path / "h.yaml"),
              "--trace-data", str(tmp_path / "d.csv")]
    assert main(replay + ["--policy-config", str(cfg)]) == 1
    assert "autoscaler" in _err(capsys)
    assert main(replay + ["--model-autoscaler-interval-us", "5"]) == 1
    assert "--model-autoscaler-interval-us" in _err(capsys)
    cfg.write_text("node_pools:\n  - {name: a, gpu_type: H100, gpus_per_node: 1, gpu_memory_gib: 80}\n")
    assert main(replay + ["--policy-config", str(cfg)]) == 1
    assert "node_pools" in _err(capsys)


def test_missing_policy_config_file_is_a_clear_error(capsys):
    assert main(BASE + ["--policy-config", "/nonexistent/p.yaml"]) == 1
    assert "--policy-config: file must be readable, got '/nonexistent/p.yaml'" in _err(capsys)


def test_failed_run_leaves_no_output_file(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(BASE + ["--hardware", "H900", "--metrics-path", str(out)]) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_run_writes_metrics_parquet_and_trace(tmp_path, capsys):
    argv = BASE + ["--metrics-path", str(tmp_path / "m.json"), "--results-parquet", str(tmp_path / "r.parquet"),
                   "--trace-output", str(tmp_path / "t")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("=== Simulation Metrics ===\n{\n  \"instance_id\": \"cluster\"")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["completed_requests"] == 30 and len(m["requests"]) == 30
    df = pl.read_parquet(tmp_path / "r.parquet")
    assert df.height == 30
    assert {"ttft_us", "e2e_us", "scheduling_delay_us", "itl_mean_us", "state", "decode_time_us"} <= set(df.columns)
    assert (df["state"] == "completed").all()
    assert (df["ttft_us"] <= df["e2e_us"]).all()
    assert (tmp_path / "t.yaml").exists() and (tmp_path / "t.csv").read_text().count("\n") == 31
    # no temporary files are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "r.parquet", "t.csv", "t.yaml"]


def test_same_seed_gives_byte_identical_outputs(tmp_path, capsys):
    outs = []
    for k in range(2):
        assert main(BASE + ["--seed", "7", "--metrics-path", str(tmp_path / f"m{k}.json")]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    assert (tmp_path / "m0.json").read_bytes() == (tmp_path / "m1.json").read_bytes()


def test_different_seed_changes_the_workload(capsys):
    main(BASE + ["--seed", "1"])
    a = capsys.readouterr().out
    main(BASE + ["--seed", "2"])
    b = capsys.readouterr().out
    assert a != b


def test_presets_run(capsys):
    assert main(["run", "--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "roofline",
                 "--workload", "chatbot", "--num-requests", "20", "--rate", "2"]) == 0
    assert '"completed_requests": 20' in capsys.readouterr().out


def test_progress_bar_never_pollutes_stdout(capsys):
    assert main(BASE + ["--progress", "always"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("=== Simulation Metrics ===")
    assert "req" in cap.err  # tqdm wrote to stderr


def test_console_script_help_lists_blis_flags():
    p = subprocess.run([sys.executable, "-m", "blis.cli", "run", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for flag in ("--max-num-batched-tokens", "--long-prefill-token-threshold", "--total-kv-blocks",
                 "--preemption-policy", "--results-parquet"):
        assert flag in p.stdout
