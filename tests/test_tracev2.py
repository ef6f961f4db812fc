"""TraceV2 read/write: byte-identical to BLIS, strict parsing, replay construction, round trips."""
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from blis.errors import ConfigError
from blis.requests import REQUEST_FIELDS
from blis.workload.synthesis import synthesize_distribution
from blis.workload.tracev2 import (
    EXTRA_REQUEST_FIELDS,
    RECORD_FIELDS,
    TraceV2,
    csv_columns,
    export_simulation_trace,
    header_to_yaml,
    load_tracev2,
    make_header,
    parse_header,
    read_tracev2,
    read_tracev2_parquet,
    records_from_simulation,
    tracev2_csv_text,
    tracev2_to_requests,
    write_tracev2,
    write_tracev2_parquet,
    yaml_scalar_float,
    yaml_scalar_str,
)

DATA = Path(__file__).parent / "data"
PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
if not PARITY.exists():
    PARITY = Path("/work/shared/parity")
SCENARIOS = sorted(p.name for p in PARITY.iterdir() if (p / "trace.csv").exists()) if PARITY.exists() else []
YAML_V3 = json.loads((DATA / "yaml_v3_vectors.json").read_text())

CSV_HEAD = ("request_id,client_id,tenant_id,slo_class,session_id,round_index,prefix_group,prefix_length,streaming,"
            "input_tokens,output_tokens,text_tokens,image_tokens,audio_tokens,video_tokens,reason_ratio,model,"
            "deadline_us,server_input_tokens,arrival_time_us,send_time_us,first_chunk_time_us,last_chunk_time_us,"
            "num_chunks,status,error_message,finish_reason")
HDR = "trace_version: 3\ntime_unit: microseconds\nmode: generated\nwarm_up_requests: 0\n"


def _row(**kw):
    v = dict(request_id=0, client_id="c", tenant_id="", slo_class="", session_id="", round_index=0,
             prefix_group="", prefix_length=0, streaming="false", input_tokens=10, output_tokens=5, text_tokens=0,
             image_tokens=0, audio_tokens=0, video_tokens=0, reason_ratio=0, model="", deadline_us=0,
             server_input_tokens=0, arrival_time_us=100, send_time_us=100, first_chunk_time_us=0,
             last_chunk_time_us=0, num_chunks=0, status="ok", error_message="", finish_reason="")
    v.update(kw)
    return ",".join(str(v[c]) for c in CSV_HEAD.split(","))


def _write(tmp_path, rows, head=CSV_HEAD, header=HDR):
    h, d = tmp_path / "t.yaml", tmp_path / "t.csv"
    h.write_text(header)
    d.write_text(head + "\n" + "".join(r + "\n" for r in rows))
    return h, d


# ---------------------------------------------------------------------------
# BLIS byte-identity
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_parity_trace_reexports_byte_identically(scenario, tmp_path):
    src = PARITY / scenario
    trace = read_tracev2(src / "trace.yaml", src / "trace.csv")
    write_tracev2(trace, tmp_path / "h.yaml", tmp_path / "d.csv")
    assert (tmp_path / "h.yaml").read_bytes() == (src / "trace.yaml").read_bytes()
    assert (tmp_path / "d.csv").read_bytes() == (src / "trace.csv").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "h.yaml"]  # no temporary files left


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_simulation_export_of_replayed_requests_matches_blis_run_trace(scenario):
    """§5.3: requests (from the trace) + per-request outcomes give BLIS's CSV back."""
    src = PARITY / scenario
    trace = read_tracev2(src / "trace.yaml", src / "trace.csv")
    table = tracev2_to_requests(trace, seed=1)
    r = trace.records
    rec = records_from_simulation(table, r["status"], r["first_chunk_time_us"], r["last_chunk_time_us"])
    assert tracev2_csv_text(trace.header, rec) == (src / "trace.csv").read_text()


def test_yaml_emitter_matches_yaml_v3_for_strings_floats_and_headers():
    for case in YAML_V3["strings"]:
        assert "k: " + yaml_scalar_str(case["s"]) + "\n" == case["yaml"], case["s"]
    for case in YAML_V3["floats"]:
        x = struct.unpack("<d", struct.pack("<Q", case["bits"]))[0]
        assert "k: " + yaml_scalar_float(x) + "\n" == case["yaml"], x
    for case in YAML_V3["headers"]:
        assert header_to_yaml(parse_header(case["yaml"])) == case["yaml"], case["name"]


def test_run_header_for_a_seed():
    assert header_to_yaml(make_header("generated", workload_seed=11)) == HDR + "workload_seed: 11\n"


# ---------------------------------------------------------------------------
# Strict header parsing
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    (HDR + "extra_key: 1\n", "unknown key 'extra_key'; valid: trace_version"),
    (HDR + "server:\n    type: vllm\n    gpu: h100\n", "server: unknown key 'gpu'"),
    (HDR + "mode: real\n", "mapping key 'mode' already defined"),
    ("trace_version: three\n", "trace_version: must be an integer, got 'three'"),
    ("trace_version: '3'\n", "trace_version: must be an integer, got the string '3'"),
    ("network:\n    measured_rtt_ms: fast\n", "network.measured_rtt_ms: must be a number, got 'fast'"),
    ("kv_offload:\n    offload_prompt_only: maybe\n", "offload_prompt_only: must be a bool"),
    ("goodput_slo_targets:\n    std:\n        p99_ms: 3\n", "goodput_slo_targets.std: unknown key 'p99_ms'"),
    ("trace_version: [1]\n", "must be a scalar"),
])
def test_header_is_parsed_strictly(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_header(text)


def test_header_values_keep_go_types():
    h = parse_header("trace_version: 3\ncreated_at: 2025-01-02T03:04:05Z\nworkload_seed: -7\n"
                     "server:\n    gpu_memory_utilization: 0.9\n    tensor_parallel: 0x2\nnetwork:\n")
    assert h["created_at"] == "2025-01-02T03:04:05Z" and h["workload_seed"] == -7
    assert h["server"]["gpu_memory_utilization"] == 0.9 and h["server"]["tensor_parallel"] == 2
    assert h["network"] is None and h["kv_offload"] is None and h["time_unit"] == ""


# ---------------------------------------------------------------------------
# CSV row checks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fields,message", [
    (dict(input_tokens=-1), "row 2: input_tokens must be >= 0, got -1"),
    (dict(output_tokens="x"), "row 2: output_tokens must be an integer, got 'x'"),
    (dict(reason_ratio=1.5), "row 2: reason_ratio must be in [0, 1], got '1.5'"),
    (dict(reason_ratio="NaN"), "row 2: reason_ratio must be in [0, 1], got 'NaN'"),
    (dict(streaming="yes"), "row 2: streaming must be a bool (true or false), got 'yes'"),
    (dict(deadline_us=50), "row 2: deadline_us must not precede arrival_time_us, got deadline_us=50"),
    (dict(prefix_length=-4, input_tokens=-1), "row 2: prefix_length must be >= 0, got -4"),
    (dict(num_chunks=" 1"), "row 2: num_chunks must be an integer, got ' 1'"),
    (dict(request_id="99999999999999999999"), "row 2: request_id must be an integer"),
])
def test_bad_rows_fail_naming_row_field_and_value(tmp_path, fields, message):
    h, d = _write(tmp_path, [_row(), _row(**fields), _row(input_tokens=-9)])
    with pytest.raises(ConfigError) as e:
        read_tracev2(h, d)
    assert message in str(e.value).replace("[", "[")


def test_short_row_is_rejected_but_extra_columns_are_allowed(tmp_path):
    h, d = _write(tmp_path, [_row(), _row() + ",extra,more"])
    assert len(read_tracev2(h, d)) == 2
    h, d = _write(tmp_path, [_row(), _row().rsplit(",", 1)[0]])
    with pytest.raises(ConfigError, match="row 2: CSV row has 26 columns, expected at least 27"):
        read_tracev2(h, d)


def test_signed_ints_hex_floats_and_trimmed_text_are_read_like_go(tmp_path):
    h, d = _write(tmp_path, [_row(request_id="+7", round_index=-1, reason_ratio="0x1p-2",
                                  error_message='" boom "', finish_reason="stop ", streaming="T")])
    r = read_tracev2(h, d).records
    assert r["request_id"][0] == 7 and r["round_index"][0] == -1 and r["reason_ratio"][0] == 0.25
    assert r["error_message"][0] == "boom" and r["finish_reason"][0] == "stop" and r["streaming"][0]


def test_optional_columns_are_found_by_name_and_shift_positions(tmp_path):
    head = CSV_HEAD.replace("slo_class,", "slo_class,vllm_priority,").replace(
        "deadline_us,", "deadline_us,slo_target_us,") + ",x_request_id,adapter,think_time_us"
    base = _row(slo_class="critical", deadline_us=900).split(",")
    base.insert(4, "3")
    base.insert(19, "2500")
    row = ",".join(base + ["uuid-1", "lora-a", " 40 "])
    h, d = _write(tmp_path, [row], head=head, header=HDR.replace("generated", "real"))
    t = read_tracev2(h, d)
    r = t.records
    assert (r["vllm_priority"][0], r["slo_target_us"][0], r["deadline_us"][0], r["arrival_time_us"][0]) == \
        (3, 2500, 900, 100)
    assert (r["x_request_id"][0], r["adapter"][0], r["think_time_us"][0]) == ("uuid-1", "lora-a", 40)
    assert csv_columns(t.header, r) == head.split(",")
    write_tracev2(t, tmp_path / "o.yaml", tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text() == head + "\n" + row.replace(" 40 ", "40") + "\n"


def test_x_request_id_is_dropped_outside_real_mode():
    t = TraceV2(make_header("replayed"), {"request_id": [0], "x_request_id": ["u"], "slo_class": ["critical"]})
    cols = csv_columns(t.header, t.records)
    assert "x_request_id" not in cols and "vllm_priority" not in cols


def test_go_csv_quoting(tmp_path):
    t = TraceV2(make_header(), {"request_id": [0, 1], "client_id": ['a,b', ' lead'],
                                "error_message": ['say "hi"', "line\nbreak"], "status": ["ok", "error"]})
    text = tracev2_csv_text(t.header, t.records)
    assert '"a,b"' in text and '" lead"' in text and '"say ""hi"""' in text and '"line\nbreak"' in text
    write_tracev2(t, tmp_path / "q.yaml", tmp_path / "q.csv")
    back = read_tracev2(tmp_path / "q.yaml", tmp_path / "q.csv")
    assert back.records["client_id"].tolist() == ["a,b", " lead"]
    assert back.records["error_message"].tolist() == ['say "hi"', "line\nbreak"]


# ---------------------------------------------------------------------------
# Replay construction (fixed mode)
# ---------------------------------------------------------------------------
def test_replay_requests_follow_blis_rules(tmp_path):
    rows = [
        _row(request_id=5, prefix_group="sys", prefix_length=0, input_tokens=10, arrival_time_us=300,
             send_time_us=0, deadline_us=900),
        _row(request_id=6, prefix_group="sys", prefix_length=32, input_tokens=20, server_input_tokens=99,
             arrival_time_us=100, send_time_us=200),
        _row(request_id=7, input_tokens=30, server_input_tokens=44, arrival_time_us=200, send_time_us=0,
             slo_class="batch", model="m"),
    ]
    h, d = _write(tmp_path, rows)
    t = load_tracev2(h, d, seed=3)
    # sorted by injection time (send_time if > 0), file order on ties
    assert t["request_id"].tolist() == [6, 7, 5]
    assert t["arrival_us"].tolist() == [200, 200, 300]
    # group prefix length comes from the first row with length > 0, and applies to every row of the group;
    # server_input_tokens replaces input_tokens only outside prefix groups
    assert t["input_len"].tolist() == [20 + 32, 44, 10 + 32]
    assert t["prefix_len"].tolist() == [32, 0, 32]
    assert t["deadline_us"].tolist() == [0, 0, 900]
    assert t.label("slo_class", 1) == "batch" and t.label("model", 1) == "m"
    assert t["max_output_len"].tolist() == t["output_len"].tolist()
    assert len(set(t["content_seed"].tolist())) == 3 and t.group_seeds[t["prefix_group"][0]] != 0
    t.validate()


def test_empty_trace_cannot_be_replayed(tmp_path):
    h, d = _write(tmp_path, [])
    assert len(read_tracev2(h, d)) == 0
    with pytest.raises(ConfigError, match="empty trace"):
        load_tracev2(h, d)


def test_generated_workload_exports_and_reloads_to_the_same_table(tmp_path):
    table = synthesize_distribution(seed=5, rate=30, num_requests=300, prefix_tokens=16)
    n = len(table)
    first = table["arrival_us"] + 1000
    trace = export_simulation_trace(table, np.zeros(n, np.int8), first, first + 5000, tmp_path / "run",
                                    header=make_header("generated", workload_seed=5))
    assert (tmp_path / "run.yaml").read_text() == HDR + "workload_seed: 5\n"
    again = load_tracev2(tmp_path / "run.yaml", tmp_path / "run.csv", seed=5)
    for name, *_ in REQUEST_FIELDS:
        if name != "content_seed":
            np.testing.assert_array_equal(again[name], table[name], err_msg=name)
    assert set(trace.records["status"].tolist()) == {"ok"}


# ---------------------------------------------------------------------------
# Properties and Parquet
# ---------------------------------------------------------------------------
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
_name = st.sampled_from(["", "a", "b c", "x,y", 'q"'])


@st.composite
def traces(draw):
    n = draw(st.integers(0, 12))
    nonneg = st.integers(0, 2**40)

    def col(strategy):
        return [draw(strategy) for _ in range(n)]

    arrival = col(st.integers(1, 2**40))
    rec = {
        "request_id": list(range(n)),
        "client_id": col(_name), "tenant_id": col(_name), "slo_class": col(_name), "session_id": col(_name),
        "vllm_priority": col(st.integers(0, 7)), "round_index": col(st.integers(0, 50)),
        "prefix_group": col(st.sampled_from(["", "g1", "g2"])), "prefix_length": col(st.integers(0, 99)),
        "streaming": col(st.booleans()), "input_tokens": col(st.integers(0, 10**6)),
        "output_tokens": col(st.integers(0, 10**6)), "text_tokens": col(nonneg), "image_tokens": col(nonneg),
        "audio_tokens": col(nonneg), "video_tokens": col(nonneg),  # int64 in the table
        "reason_ratio": col(st.floats(0, 1)), "model": col(_name),
        "deadline_us": [a + draw(st.integers(0, 10**9)) if draw(st.booleans()) else 0 for a in arrival],
        "slo_target_us": col(st.integers(0, 10**7)), "server_input_tokens": col(st.integers(0, 10**6)),
        "arrival_time_us": arrival, "send_time_us": [a if draw(st.booleans()) else 0 for a in arrival],
        "first_chunk_time_us": col(st.integers(0, 2**50)), "last_chunk_time_us": col(st.integers(0, 2**50)),
        "num_chunks": col(st.integers(0, 9)), "status": col(st.sampled_from(["ok", "error", "timeout"])),
        "error_message": [s.strip(" \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                                  "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000") for s in col(_text)],
        "finish_reason": col(st.sampled_from(["", "stop", "length"])),
        "x_request_id": col(st.sampled_from(["", "u-1", "u-2"])), "adapter": col(st.sampled_from(["", "lora"])),
        "think_time_us": col(st.integers(0, 10**6)),
    }
    mode = draw(st.sampled_from(["generated", "real", "replayed"]))
    if mode != "real":
        rec["x_request_id"] = [""] * n
        rec["vllm_priority"] = [0] * n if draw(st.booleans()) else rec["vllm_priority"]
    elif not any(rec["vllm_priority"]) and not any(rec["slo_class"]):
        pass
    return TraceV2(make_header(mode, workload_seed=draw(st.none() | st.integers(-5, 5))), rec)


def _same_records(a, b):
    for name, *_ in RECORD_FIELDS:
        assert a.records[name].tolist() == b.records[name].tolist(), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=traces())
def test_write_then_read_gives_identical_records(tmp_path, trace):
    # vllm_priority is written only when it carries information; a real-mode zero column reads back as zeros
    write_tracev2(trace, tmp_path / "p.yaml", tmp_path / "p.csv")
    back = read_tracev2(tmp_path / "p.yaml", tmp_path / "p.csv")
    assert back.header == trace.header
    _same_records(back, trace)
    write_tracev2_parquet(trace, tmp_path / "p.parquet")
    pq = read_tracev2_parquet(tmp_path / "p.parquet")
    assert pq.header == trace.header
    _same_records(pq, trace)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=traces(), seed=st.integers(0, 2**32))
def test_export_then_load_gives_identical_table(tmp_path, trace, seed):
    if len(trace) == 0:
        return
    table = tracev2_to_requests(trace, seed)
    r = trace.records
    rec = records_from_simulation(table, np.array(["ok"] * len(table)), r["first_chunk_time_us"],
                                  r["last_chunk_time_us"])
    write_tracev2(trace.header, tmp_path / "e.yaml", tmp_path / "e.csv", records=rec)
    again = load_tracev2(tmp_path / "e.yaml", tmp_path / "e.csv", seed)
    fields = [f for f, *_ in REQUEST_FIELDS if f not in ("request_id", "content_seed")]
    fields += [f for f, *_ in EXTRA_REQUEST_FIELDS if f != "adapter"]
    for name in fields:
        np.testing.assert_array_equal(again[name], table[name], err_msg=name)
    assert [again.label("adapter", i) for i in range(len(again))] == \
        [table.label("adapter", i) for i in range(len(table))]
    # the export numbers requests in table order, and content seeds follow the export's rows
    assert again["request_id"].tolist() == list(range(len(table)))
    again2 = load_tracev2(tmp_path / "e.yaml", tmp_path / "e.csv", seed)
    np.testing.assert_array_equal(again2["content_seed"], again["content_seed"])


def test_parquet_carries_units_and_header(tmp_path):
    import pyarrow.parquet as pq

    src = PARITY / SCENARIOS[0] if SCENARIOS else None
    if src is None:
        pytest.skip("parity fixtures not available")
    trace = read_tracev2(src / "trace.yaml", src / "trace.csv")
    write_tracev2_parquet(trace, tmp_path / "t.parquet")
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert schema.field("arrival_time_us").metadata[b"unit"] == b"us"
    assert schema.field("input_tokens").metadata[b"unit"] == b"tokens"
    back = read_tracev2_parquet(tmp_path / "t.parquet")
    assert back.header == trace.header
    _same_records(back, trace)
