"""``blis sweep`` and ``blis plot``: strict sweep files, parallel runs, resume after an
interruption (in-process, Ctrl-C and a SIGKILLed child process), determinism, the Ray
executor (only when ray is installed) and plotting; and ``benchmarks/regression.py``,
the CI benchmark regression check."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blis import sweep as S

MODEL = "meta-llama/llama-3.1-8b-instruct"
BASE = f"""base:
  model: {MODEL}
  latency-model: roofline
  hardware: H100
  tp: 1
  num-instances: 2
  num-requests: 100
"""
SMALL = BASE + """axes:
  - grid:
      rate: [10, 40]
      routing-policy: [round-robin, least-loaded]
  - grid:
      seed: [1, 2]
"""


def write(tmp_path, text, name="sweep.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def parse(text, tmp_path=Path("/nonexistent")):
    return S.parse_sweep_text(text, tmp_path / "sweep.yaml")


def tree(out: Path):
    """Per-point files: {relative path: bytes} for requests, {id: record without timings} for points."""
    req = {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "requests").rglob("*.parquet"))}
    pts = {}
    for p in sorted((out / "points").glob("*.json")):
        rec = json.loads(p.read_text())
        for k in S.TIMING_FIELDS:
            rec.pop(k, None)
        pts[p.stem] = rec
    return req, pts


def summary(out: Path):
    import polars as pl

    return pl.read_parquet(out / "summary.parquet").drop(list(S.TIMING_FIELDS)).sort("index")


def assert_same_dataset(a: Path, b: Path):
    ra, pa_ = tree(a)
    rb, pb = tree(b)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        assert ra[k] == rb[k], f"{k}: per-request files differ"
    assert pa_ == pb
    assert summary(a).equals(summary(b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small sweep (2 rates x 2 policies x 2 seeds, 100 requests), run uninterrupted with 2 workers."""
    d = tmp_path_factory.mktemp("ref")
    sw = S.load_sweep(write(d, SMALL))
    rep = S.run_sweep(sw, out=d / "out", jobs=2, progress="never")
    assert rep.ran == 8 and rep.skipped == 0
    return sw, d / "out"


# ---------------------------------------------------------------- parsing
def test_expansion_order_types_and_ids():
    sw = parse(BASE + """axes:
  - grid:
      rate: [10, 20.5]
      routing-policy: [round-robin, least-loaded]
  - zip:
      max-num-seqs: [64, 128]
      flow-control: [false, true]
  - grid:
      seed: {range: [1, 4]}
""")
    assert len(sw.points) == 2 * 2 * 2 * 3
    assert sw.axes == ["rate", "routing-policy", "max-num-seqs", "flow-control", "seed"]
    assert sw.axis_types == {"rate": "float", "routing-policy": "string", "max-num-seqs": "int",
                             "flow-control": "bool", "seed": "int"}
    first, last = sw.points[0], sw.points[-1]
    assert first.values == {"rate": 10, "routing-policy": "round-robin", "max-num-seqs": 64,
                            "flow-control": False, "seed": 1}
    assert last.values == {"rate": 20.5, "routing-policy": "least-loaded", "max-num-seqs": 128,
                           "flow-control": True, "seed": 3}
    assert sw.points[1].values["seed"] == 2               # the last axis varies fastest
    assert "--flow-control=false" in first.argv and "--rate=10" in first.argv
    assert first.argv[0] == "run" and f"--model={MODEL}" in first.argv
    ids = [p.id for p in sw.points]
    assert len(set(ids)) == len(ids) and all(i.startswith("p") and len(i) == 13 for i in ids)


def test_point_ids_do_not_depend_on_axis_order_but_on_base():
    a = parse(BASE + "axes:\n  - grid:\n      rate: [10, 20]\n      seed: [1, 2]\n")
    b = parse(BASE + "axes:\n  - grid:\n      seed: [2, 1]\n  - grid:\n      rate: [20, 10]\n")
    assert {p.id for p in a.points} == {p.id for p in b.points}
    c = parse(BASE.replace("num-requests: 100", "num-requests: 200")
              + "axes:\n  - grid:\n      rate: [10, 20]\n      seed: [1, 2]\n")
    assert not ({p.id for p in a.points} & {p.id for p in c.points})
    assert [p.id for p in a.points] == [p.id for p in parse(BASE + "axes:\n  - grid:\n      rate: [10, 20]\n"
                                                            "      seed: [1, 2]\n").points]


def test_no_axes_is_one_point_and_relative_paths_resolve(tmp_path):
    sw = parse(BASE + "policy_config: pol/bundle.yaml\n", tmp_path)
    assert len(sw.points) == 1 and sw.axes == []
    assert f"--policy-config={tmp_path / 'pol' / 'bundle.yaml'}" in sw.points[0].argv
    sw = parse("command: replay\nbase:\n  model: m\n  trace-header: /abs/t.yaml\n  trace-data: t.csv\n", tmp_path)
    assert sw.command == "replay"
    assert "--trace-header=/abs/t.yaml" in sw.points[0].argv
    assert f"--trace-data={tmp_path / 't.csv'}" in sw.points[0].argv


STRICT_CASES = [
    (BASE + "axis:\n  - grid: {rate: [1]}\n", "sweep.yaml: axis:", "unknown key (did you mean 'axes'?)"),
    (BASE + "  num-requestz: 5\n", "sweep.yaml: base.num-requestz:", "did you mean 'num-requests'?"),
    (BASE.replace("num-requests", "num_requests"), "sweep.yaml: base.num_requests:", "num-requests"),
    (BASE + "axes:\n  - grid:\n      rat: [1, 2]\n", "sweep.yaml: axes[0].grid.rat:", "unknown `blis run` flag"),
    (BASE + "axes:\n  - grid:\n      rate: [1, fast]\n", "sweep.yaml: axes[0].grid.rate[1]:", "must be a number"),
    (BASE + "axes:\n  - grid:\n      num-instances: [1, 2.5]\n", "sweep.yaml: axes[0].grid.num-instances:",
     "also set in base"),
    (BASE.replace("  num-instances: 2\n", "") + "axes:\n  - grid:\n      num-instances: [1, 2.5]\n",
     "sweep.yaml: axes[0].grid.num-instances[1]:", "must be an integer"),
    (BASE + "  rate: true\n", "sweep.yaml: base.rate:", "not a boolean"),
    (BASE + "  flow-control: maybe\n", "sweep.yaml: base.flow-control:", "must be a boolean"),
    (BASE + "  rate: [1, 2]\n", "sweep.yaml: base.rate:", "single number"),
    (BASE + "  rate:\n", "sweep.yaml: base.rate:", "got nothing"),
    (BASE + "  results-parquet: x.parquet\n", "sweep.yaml: base.results-parquet:", "not allowed in a sweep"),
    (BASE + "axes:\n  - zip:\n      rate: [1, 2]\n      seed: [1]\n", "sweep.yaml: axes[0].zip:",
     "same length, got rate: 2, seed: 1"),
    (BASE + "axes:\n  - grid:\n      rate: [1]\n  - grid:\n      rate: [2]\n", "sweep.yaml: axes[1].grid.rate:",
     "already varied by axes[0].grid.rate"),
    (BASE + "axes:\n  - grid:\n      rate: []\n", "sweep.yaml: axes[0].grid.rate:", "non-empty list"),
    (BASE + "axes:\n  - product:\n      rate: [1]\n", "sweep.yaml: axes[0].product:", "unknown axis kind"),
    (BASE + "axes:\n  - grid:\n      rate: [1]\n    zip:\n      seed: [1]\n", "sweep.yaml: axes[0]:",
     "exactly one key"),
    (BASE + "axes:\n  - grid:\n      seed: {range: [1]}\n", "sweep.yaml: axes[0].grid.seed.range:",
     "2 or 3 integers"),
    (BASE + "axes:\n  - grid:\n      seed: {from: 1}\n", "sweep.yaml: axes[0].grid.seed:", "{range: [start, stop]}"),
    (BASE + "axes:\n  - grid:\n      rate: [1, 1.0]\n", "sweep.yaml: axes:", "same configuration"),
    (BASE + "command: simulate\n", "sweep.yaml: command:", "valid: run, replay"),
    (BASE + "policy_config: a.yaml\n  policy-config: b.yaml\n", "sweep.yaml:", "must be valid YAML"),
    (BASE.replace("base:\n", "base:\n  policy-config: b.yaml\n") + "policy_config: a.yaml\n",
     "sweep.yaml: policy_config:", "given twice"),
    ("base: [1]\n", "sweep.yaml: base:", "must be a mapping"),
    ("- 1\n", "sweep.yaml:", "must be a mapping"),
    ("", "sweep.yaml:", "an empty file"),
    ("base: {model: m}\naxes: {rate: [1]}\n", "sweep.yaml: axes:", "must be a list"),
    ("command: replay\nbase: {model: m, rate: 3}\n", "sweep.yaml: base.rate:", "unknown `blis replay` flag"),
]


@pytest.mark.parametrize("text, where, what", STRICT_CASES, ids=[f"{i}-{c[2][:24]}" for i, c in enumerate(STRICT_CASES)])
def test_strict_errors_name_the_yaml_path(text, where, what):
    with pytest.raises(S.SweepError) as e:
        parse(text)
    msg = str(e.value)
    assert msg.startswith(where), msg
    assert what in msg, msg
    assert "\n" not in msg


def test_invalid_value_found_before_running(tmp_path):
    sw = S.load_sweep(write(tmp_path, BASE + "axes:\n  - grid:\n      routing-policy: [round-robin, fastest]\n"))
    with pytest.raises(S.SweepError, match=r"point 1 \(routing-policy=fastest\).*fastest.*valid:"):
        S.run_sweep(sw, out=tmp_path / "out", jobs=2, progress="never")
    assert not list((tmp_path / "out" / "points").glob("*.json"))


def test_missing_sweep_file(tmp_path):
    with pytest.raises(S.SweepError, match="must be readable"):
        S.load_sweep(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- running
def test_small_sweep_summary_and_requests_dataset(reference):
    import polars as pl

    sw, out = reference
    s = pl.read_parquet(out / "summary.parquet")
    assert s.height == 8
    assert s.columns[:5] == ["point", "index", "rate", "routing-policy", "seed"]
    assert s["index"].to_list() == list(range(8))
    assert s["point"].to_list() == [p.id for p in sw.points]
    assert s.schema["rate"] == pl.Int64 and s.schema["routing-policy"] == pl.String
    for col in ("completed_requests", "ttft_p99_ms", "e2e_mean_ms", "responses_per_sec", "events",
                "cache_hit_rate", "wall_s", "cpu_s"):
        assert col in s.columns, col
    assert "instance_id" not in s.columns
    assert s["completed_requests"].to_list() == [100] * 8
    assert (s["wall_s"] > 0).all()
    # seeds are replicates: the same configuration gives different workloads
    assert s.filter(pl.col("seed") == 1)["ttft_p99_ms"].to_list() != s.filter(pl.col("seed") == 2)["ttft_p99_ms"].to_list()
    req = pl.scan_parquet(out / "requests" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert req.height == 800 and req.schema["point"] == pl.String
    assert "ttft_us" in req.columns
    joined = req.join(s.select("point", "rate", "routing-policy", "seed"), on="point")
    assert joined.height == 800
    # the dataset agrees with the summary: completed requests per point
    per = joined.group_by("point").agg((pl.col("state") == "completed").sum().alias("done"))
    assert per["done"].to_list() == [100] * 8
    meta = json.loads(__import__("pyarrow.parquet", fromlist=["x"]).read_schema(out / "summary.parquet")
                      .metadata[b"blis.sweep"])
    assert meta["axes"] == ["rate", "routing-policy", "seed"]


def test_point_matches_a_single_blis_run(reference):
    """A point's record and requests are exactly what ``blis run`` with its flags gives."""
    import pyarrow.parquet as pq

    from blis.cli import simulate_argv

    sw, out = reference
    p = sw.points[5]
    res = simulate_argv(list(p.argv))
    rec = json.loads((out / "points" / f"{p.id}.json").read_text())
    assert rec["metrics"]["ttft_p99_ms"] == res.metrics_output()["ttft_p99_ms"]
    assert rec["values"] == p.values and rec["argv"] == list(p.argv)
    assert pq.read_table(out / "requests" / f"point={p.id}" / "part-0.parquet").equals(res.to_arrow())


def test_serial_run_is_byte_identical(reference, tmp_path):
    sw, out = reference
    S.run_sweep(sw, out=tmp_path / "serial", jobs=1, progress="never")
    assert_same_dataset(out, tmp_path / "serial")


def test_interrupted_sweep_resumes_to_the_same_dataset(reference, tmp_path, monkeypatch):
    sw, out = reference
    real = S._safe_run_point
    calls = []

    def flaky(pid, argv):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(pid)
        return real(pid, argv)

    monkeypatch.setattr(S, "_safe_run_point", flaky)
    with pytest.raises(KeyboardInterrupt):
        S.run_sweep(sw, out=tmp_path / "o", jobs=1, progress="never")
    assert len(list((tmp_path / "o" / "points").glob("*.json"))) == 3
    assert not (tmp_path / "o" / "summary.parquet").exists()
    monkeypatch.setattr(S, "_safe_run_point", real)
    rep = S.run_sweep(sw, out=tmp_path / "o", jobs=2, progress="never")
    assert (rep.skipped, rep.ran) == (3, 5)
    assert_same_dataset(out, tmp_path / "o")


def test_resume_skips_finished_points_and_redoes_torn_ones(reference, tmp_path):
    import shutil

    sw, out = reference
    o = tmp_path / "o"
    shutil.copytree(out, o)
    (o / "summary.parquet").unlink()
    keep = sw.points[0].id
    mtime = (o / "points" / f"{keep}.json").stat().st_mtime_ns
    # a point killed between its two files, and one killed while writing its requests file
    (o / "points" / f"{sw.points[1].id}.json").unlink()
    torn = o / "requests" / f"point={sw.points[2].id}"
    (o / "points" / f"{sw.points[2].id}.json").unlink()
    (torn / "part-0.parquet").unlink()
    (torn / ".part-0.parquet.tmp-123").write_bytes(b"PAR1 half")
    rep = S.run_sweep(sw, out=o, jobs=1, progress="never")
    assert (rep.skipped, rep.ran) == (6, 2)
    assert (o / "points" / f"{keep}.json").stat().st_mtime_ns == mtime
    assert not list(o.rglob(".*.tmp-*"))
    assert_same_dataset(out, o)
    rep = S.run_sweep(sw, out=o, jobs=2, progress="never")
    assert (rep.skipped, rep.ran) == (8, 0)


def test_killed_child_process_resumes_to_the_same_dataset(tmp_path):
    """``blis sweep`` in a child process, SIGKILLed (with its workers) mid-way, then rerun."""
    text = BASE.replace("num-requests: 100", "num-requests: 300") + """axes:
  - grid:
      rate: [10, 40]
      routing-policy: [round-robin, least-loaded]
  - grid:
      seed: {range: [1, 9]}
"""
    y = write(tmp_path, text)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "blis.sweep", str(y), "--out", str(out), "--jobs", "2", "--progress", "never"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "points").glob("*.json"))) >= 3:
                break
            time.sleep(0.01)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        proc.stderr.close()
    done = len(list((out / "points").glob("*.json")))
    print("points saved before the kill:", done)
    assert 3 <= done, "the sweep must have saved some points before the kill"
    if done < 32:
        assert not (out / "summary.parquet").exists()
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    S.run_sweep(S.load_sweep(y), out=tmp_path / "whole", jobs=1, progress="never")
    assert_same_dataset(tmp_path / "whole", out)


def test_ctrl_c_saves_running_points_and_exits_130(tmp_path):
    """SIGINT to ``blis sweep`` (the parent only, as a terminal's Ctrl-C reaches it; workers
    ignore it): exit status 130, the points that were running are saved, a rerun completes."""
    text = BASE.replace("num-requests: 100", "num-requests: 300") + """axes:
  - grid:
      rate: [10, 40]
      routing-policy: [round-robin, least-loaded]
  - grid:
      seed: {range: [1, 9]}
"""
    y = write(tmp_path, text)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "blis.sweep", str(y), "--out", str(out), "--jobs", "2", "--progress", "never"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "points").glob("*.json"))) >= 2:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done = len(list((out / "points").glob("*.json")))
    print("points saved at SIGINT:", done, "exit status:", proc.returncode)
    if done < 32:       # not already finished when the signal came
        assert proc.returncode == 130, err
        assert b"interrupted; finished points are saved" in err
        assert not (out / "summary.parquet").exists()
    assert not list(out.rglob(".*.tmp-*"))
    rep = S.run_sweep(S.load_sweep(y), out=out, jobs=2, progress="never")
    assert rep.skipped == done and rep.ran == 32 - done


def test_failing_point_stops_the_sweep_and_keeps_finished_points(tmp_path):
    text = BASE.replace(f"  model: {MODEL}\n", "") + f"""axes:
  - grid:
      model: [{MODEL}, no-such-org/no-such-model]
  - grid:
      seed: [1, 2, 3]
"""
    sw = S.load_sweep(write(tmp_path, text))
    with pytest.raises(S.SweepError, match="no-such-model"):
        S.run_sweep(sw, out=tmp_path / "o", jobs=2, progress="never")
    assert not (tmp_path / "o" / "summary.parquet").exists()
    with pytest.raises(S.SweepError, match="no-such-model"):
        S.run_sweep(sw, out=tmp_path / "o", jobs=1, progress="never")
    assert len(list((tmp_path / "o" / "points").glob("*.json"))) == 3


def test_stale_points_need_prune(reference, tmp_path):
    import shutil

    sw, out = reference
    o = tmp_path / "o"
    shutil.copytree(out, o)
    fewer = S.parse_sweep_text(SMALL.replace("seed: [1, 2]", "seed: [1]"), sw.path)
    with pytest.raises(S.SweepError, match=r"holds 4 point\(s\) that are not in this sweep.*--prune"):
        S.run_sweep(fewer, out=o, jobs=1, progress="never")
    rep = S.run_sweep(fewer, out=o, jobs=1, progress="never", prune=True)
    assert (rep.skipped, rep.ran) == (4, 0)
    assert len(list((o / "points").glob("*.json"))) == 4
    assert len(list((o / "requests").glob("point=*"))) == 4


def test_replay_sweep(tmp_path):
    """A replay sweep over a trace written by ``blis run`` (the parent runs its first point itself)."""
    from blis import cli

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["run", "--model", MODEL, "--latency-model", "roofline", "--hardware", "H100", "--tp", "1",
                         "--num-requests", "60", "--rate", "20", "--trace-output", str(tmp_path / "t")]) == 0
    y = write(tmp_path, f"""command: replay
base:
  model: {MODEL}
  latency-model: roofline
  hardware: H100
  tp: 1
  trace-header: t.yaml
  trace-data: t.csv
axes:
  - grid:
      num-instances: [1, 2]
      routing-policy: [round-robin, least-loaded]
""")
    rep = S.run_sweep(S.load_sweep(y), out=tmp_path / "o", jobs=2, progress="never")
    assert rep.ran == 4
    import polars as pl

    s = pl.read_parquet(tmp_path / "o" / "summary.parquet")
    assert s["injected_requests"].to_list() == [60] * 4
    sw = S.load_sweep(y)
    for i in (0, 3):
        assert s["ttft_p99_ms"][i] == cli.simulate_argv(list(sw.points[i].argv)).metrics_output()["ttft_p99_ms"]


def test_cli_main(tmp_path, capsys):
    y = write(tmp_path, BASE + "axes:\n  - grid:\n      seed: [1, 2]\n")
    assert S.main([str(y), "--jobs", "2", "--progress", "never"]) == 0
    err = capsys.readouterr().err
    assert "2 points (2 run, 0 already done)" in err
    assert (tmp_path / "sweep" / "summary.parquet").is_file()       # default --out: next to the YAML
    assert S.main([str(y), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[2:] == ["done", "seed=1"] and lines[-1].startswith("2 points")
    bad = write(tmp_path, BASE + "  ratee: 3\n", "bad.yaml")
    assert S.main([str(bad)]) == 1
    assert capsys.readouterr().err == ("blis sweep: error: bad.yaml: base.ratee: unknown `blis run` flag "
                                       "(did you mean 'rate'?); see `blis run --help` for the flags\n")


def test_add_subparser_wires_into_an_argparse_cli(tmp_path):
    import argparse

    from blis import plot as P

    p = argparse.ArgumentParser(prog="blis")
    sub = p.add_subparsers(dest="command")
    S.add_subparser(sub)
    P.add_subparser(sub)
    ns = p.parse_args(["sweep", "x.yaml", "--jobs", "3", "--executor", "ray"])
    assert ns._run is S.run and ns.jobs == 3 and ns.executor == "ray"
    ns = p.parse_args(["plot", "s.parquet", "--x", "rate", "--y", "ttft_p99_ms", "--out", "a.png"])
    assert ns._run is P.run


def test_blis_sweep_and_plot_through_blis_cli_main(tmp_path, monkeypatch, capsys):
    """``blis sweep`` / ``blis plot`` via ``blis.cli.main`` (wired here if cli.py does not yet)."""
    import argparse

    from blis import cli
    from blis import plot as P

    original = cli.build_parser

    def wired(only=None):
        p = original(only)
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "sweep" not in sub.choices:
            S.add_subparser(sub)
        if "plot" not in sub.choices:
            P.add_subparser(sub)
        return p

    monkeypatch.setattr(cli, "build_parser", wired)
    y = write(tmp_path, BASE + "axes:\n  - grid:\n      seed: [1, 2]\n")
    assert cli.main(["sweep", str(y), "--jobs", "2", "--progress", "never"]) == 0
    assert "2 points (2 run, 0 already done)" in capsys.readouterr().err
    assert cli.main(["sweep", str(tmp_path / "none.yaml")]) == 1
    assert "blis sweep: error:" in capsys.readouterr().err
    if __import__("importlib").util.find_spec("matplotlib") is not None:
        png = tmp_path / "p.png"
        assert cli.main(["plot", str(tmp_path / "sweep" / "summary.parquet"), "--x", "seed",
                         "--y", "ttft_p99_ms", "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------- plot
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_png(reference, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from blis import plot as P

    _, out = reference
    png = tmp_path / "ttft.png"
    assert P.main([str(out / "summary.parquet"), "--x", "rate", "--y", "ttft_p90_ms,ttft_p99_ms",
                   "--by", "routing-policy", "--out", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800 and height > 300                  # two subplots side by side
    thr = tmp_path / "thr.png"
    P.plot_summary(out / "summary.parquet", "routing-policy", ["responses_per_sec"], thr, by=["rate"],
                   facet="seed", where=["rate=10,40"])
    assert thr.read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*tmp*"))


def test_plot_notes_aggregated_axes_and_errors(reference, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from blis import plot as P

    _, out = reference
    s = out / "summary.parquet"
    assert P.main([str(s), "--x", "rate", "--y", "ttft_p99_ms", "--out", str(tmp_path / "a.png")]) == 0
    assert "routing-policy varies within each line" in capsys.readouterr().err
    assert P.main([str(s), "--x", "rate", "--y", "ttft_p99", "--out", str(tmp_path / "b.png")]) == 1
    assert "did you mean 'ttft_p99_ms'?" in capsys.readouterr().err
    with pytest.raises(P.PlotError, match="selects no rows"):
        P.plot_summary(s, "rate", ["ttft_p99_ms"], tmp_path / "c.png", where=["rate=11"])
    with pytest.raises(P.PlotError, match="must be numeric"):
        P.plot_summary(s, "rate", ["routing-policy"], tmp_path / "c.png")
    with pytest.raises(P.PlotError, match="must end in one of"):
        P.plot_summary(s, "rate", ["ttft_p99_ms"], tmp_path / "c.jpeg")
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------- ray
def test_ray_executor_gives_the_same_dataset(reference, tmp_path):
    """``--executor ray`` on a local Ray instance (2 CPUs): identical summary and per-point files."""
    ray = pytest.importorskip("ray")
    sw, out = reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rep = S.run_sweep(sw, out=tmp_path / "ray", executor="ray", progress="never")
    finally:
        ray.shutdown()
    assert rep.ran == 8
    assert_same_dataset(out, tmp_path / "ray")


# ---------------------------------------------------------------- benchmark regression check
def _regression():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "regression.py"
    spec = importlib.util.spec_from_file_location("blis_bench_regression", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CPU = "benchmarks.regression.cpu_clock"


def _bench_json(path, cal_s, times, timer=CPU):
    def bench(fullname, t, rounds):
        return {"fullname": fullname, "name": fullname.rsplit("::", 1)[-1], "options": {"timer": timer},
                "stats": {"min": t, "median": t * 1.2, "rounds": rounds}, "extra_info": {}}

    benches = [bench("benchmarks/test_bench_sweep.py::test_calibration", cal_s, 15)]
    benches += [bench(f"benchmarks/{name}", t, 5) for name, t in times.items()]
    path.write_text(json.dumps({"benchmarks": benches}))
    return path


def test_regression_check_fails_only_on_a_calibrated_2x_slowdown(tmp_path, capsys):
    R = _regression()
    base = tmp_path / "baseline.json"
    times = {"test_step.py::test_a[x]": 0.5, "test_kernels.py::test_b": 0.002}
    assert R.main([str(_bench_json(tmp_path / "0.json", 0.05, times)), "--baseline", str(base), "--update"]) == 0
    doc = json.loads(base.read_text())
    assert doc["benchmarks"]["test_step.py::test_a[x]"]["score"] == pytest.approx(10.0)
    assert doc["timer"] == "cpu_clock" and doc["threshold"] == 2.0
    # a 3x slower machine: calibration and benchmarks alike -> ok
    slow_machine = {k: v * 3 for k, v in times.items()}
    assert R.main([str(_bench_json(tmp_path / "1.json", 0.15, slow_machine)), "--baseline", str(base)]) == 0
    # one benchmark 1.9x slower: ok; 2.1x: a slowdown
    assert R.main([str(_bench_json(tmp_path / "2.json", 0.05, {**times, "test_step.py::test_a[x]": 0.95})),
                   "--baseline", str(base)]) == 0
    capsys.readouterr()
    bad = _bench_json(tmp_path / "3.json", 0.05, {**times, "test_step.py::test_a[x]": 1.05})
    assert R.main([str(bad), "--baseline", str(base)]) == 1
    assert "SLOWDOWN" in capsys.readouterr().out
    # a rerun that is fine: the best score over the two runs is used
    assert R.main([str(bad), str(tmp_path / "0.json"), "--baseline", str(base)]) == 0
    # new and missing benchmarks never fail
    assert R.main([str(_bench_json(tmp_path / "5.json", 0.05, {"test_kernels.py::test_b": 0.002,
                                                                "test_new.py::t": 9.0})),
                   "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "new (no baseline)" in out and "not run" in out


def test_regression_check_bad_input_is_exit_2(tmp_path, capsys):
    R = _regression()
    base = tmp_path / "baseline.json"
    R.main([str(_bench_json(tmp_path / "0.json", 0.05, {"test_step.py::a": 1.0})), "--baseline", str(base),
            "--update"])
    nocal = tmp_path / "nocal.json"
    nocal.write_text(json.dumps({"benchmarks": [{"fullname": "benchmarks/test_step.py::a", "name": "a",
                                                 "options": {"timer": CPU}, "stats": {"min": 1.0}}]}))
    assert R.main([str(nocal), "--baseline", str(base)]) == 2
    assert "calibration" in capsys.readouterr().err
    other = _bench_json(tmp_path / "o.json", 0.05, {"test_x.py::b": 1.0})
    assert R.main([str(other), "--baseline", str(base)]) == 2
    assert R.main([str(other), "--baseline", str(tmp_path / "missing.json")]) == 2
    wall = _bench_json(tmp_path / "w.json", 0.05, {"test_step.py::a": 1.0}, timer="time.perf_counter")
    capsys.readouterr()
    assert R.main([str(wall), "--baseline", str(base)]) == 2
    assert "--benchmark-timer=benchmarks.regression.cpu_clock" in capsys.readouterr().err


def test_cpu_clock_counts_children():
    R = _regression()
    t0 = R.cpu_clock()
    subprocess.run([sys.executable, "-c", "x = sum(i * i for i in range(3_000_000))"], check=True)
    assert R.cpu_clock() - t0 > 0.05


def test_checked_in_baseline_is_valid():
    R = _regression()
    doc = json.loads(R.DEFAULT_BASELINE.read_text())
    assert doc["method"] == R.METHOD and doc["threshold"] == 2.0
    assert any(k.startswith("test_bench_sweep.py::test_sweep") for k in doc["benchmarks"])
    assert all(v["score"] > 0 for v in doc["benchmarks"].values())
