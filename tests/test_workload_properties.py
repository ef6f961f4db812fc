"""Issue 4's property checks: TraceV2 round trip of generated workloads, client bounds, arrival statistics."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from blis.requests import REQUEST_FIELDS
from blis.workload.spec import (
    ArrivalSpec, ClientSpec, DistSpec, MultimodalSpec, MultiTurnSpec, ReasoningSpec, WorkloadSpec,
)
from blis.workload.synthesis import EXTRA_REQUEST_FIELDS, generate_requests
from blis.workload.tracev2 import load_tracev2, make_header, records_from_simulation, write_tracev2

_bounds = st.tuples(st.integers(1, 400), st.integers(0, 600)).map(lambda t: (t[0], t[0] + t[1]))


@st.composite
def _client(draw, i):
    lo, hi = draw(_bounds)
    olo, ohi = draw(_bounds)
    kind = draw(st.sampled_from(["gaussian", "exponential", "lognormal"]))
    mean = draw(st.floats(1, 1000))
    if kind == "gaussian":
        d = DistSpec("gaussian", {"mean": mean, "std_dev": draw(st.floats(0, 500)), "min": lo, "max": hi})
    elif kind == "exponential":
        d = DistSpec("exponential", {"mean": mean, "min": lo, "max": hi})
    else:
        d = DistSpec("lognormal", {"mu": draw(st.floats(0, 8)), "sigma": draw(st.floats(0, 2)), "min": lo, "max": hi})
    out = DistSpec("gaussian", {"mean": mean, "std_dev": 50, "min": olo, "max": ohi})
    extra = {}
    flavour = draw(st.sampled_from(["plain", "prefix", "session", "multimodal"]))
    if flavour == "prefix":
        extra = dict(prefix_group=f"g{i % 2}", prefix_length=draw(st.integers(0, 64)))
    elif flavour == "session":
        extra = dict(closed_loop=False, reasoning=ReasoningSpec(
            DistSpec("constant", {"value": draw(st.integers(0, 100))}),
            MultiTurnSpec(draw(st.integers(1, 4)), draw(st.integers(0, 10**6)), "")))
    elif flavour == "multimodal":
        extra = dict(multimodal=MultimodalSpec(text_distribution=d,
                                               image_distribution=DistSpec("constant", {"value": 64}),
                                               image_count_distribution=DistSpec("constant", {"value": 2})))
    proc = draw(st.sampled_from(["poisson", "gamma", "weibull", "constant"]))
    return ClientSpec(id=f"c{i}", slo_class="standard", rate_fraction=draw(st.floats(0.1, 1)),
                      arrival=ArrivalSpec(proc, cv=1.5 if proc in ("gamma", "weibull") else None),
                      input_distribution=d, output_distribution=out, timeout=draw(st.sampled_from([None, 0, 5000])),
                      **extra), flavour, (lo, hi), (olo, ohi)


@st.composite
def _specs(draw):
    n = draw(st.integers(1, 4))
    clients = [draw(_client(i)) for i in range(n)]
    spec = WorkloadSpec(seed=draw(st.integers(0, 2**40)), aggregate_rate=draw(st.floats(1, 50)),
                        num_requests=draw(st.integers(1, 150)), clients=[c[0] for c in clients])
    return spec, clients


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_specs())
def test_generated_requests_respect_their_clients_bounds(case):
    spec, clients = case
    t = generate_requests(spec, 10**12)
    who = np.array([t.label("client", i) for i in range(len(t))])
    for c, flavour, (lo, hi), (olo, ohi) in clients:
        m = who == c.id
        own = t["input_len"][m] - t["prefix_len"][m]
        out = t["output_len"][m]
        assert ((out >= olo) & (out <= ohi)).all()
        if flavour == "multimodal":
            np.testing.assert_array_equal(own, t["text_tokens"][m] + 128)
            own = t["text_tokens"][m]
        # sessions here do not accumulate, so every round's input is a fresh draw too
        assert ((own >= lo) & (own <= hi)).all(), (c.id, own.min(), own.max(), lo, hi)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_specs())
def test_a_tracev2_export_loads_back_to_the_identical_table(tmp_path, case):
    spec, _ = case
    t = generate_requests(spec, 10**12)
    if len(t) == 0:
        return
    rec = records_from_simulation(t, np.array(["ok"] * len(t)), np.zeros(len(t), np.int64),
                                  np.zeros(len(t), np.int64))
    write_tracev2(make_header("generated"), tmp_path / "w.yaml", tmp_path / "w.csv", records=rec)
    back = load_tracev2(tmp_path / "w.yaml", tmp_path / "w.csv", spec.seed)
    fields = [f for f, *_ in REQUEST_FIELDS if f not in ("content_seed",)]
    fields += [f for f, *_ in EXTRA_REQUEST_FIELDS]
    for name in fields:
        if name in ("prefix_group", "slo_class", "tenant", "client", "model", "session", "adapter"):
            assert [back.label(name, i) for i in range(len(back))] == [t.label(name, i) for i in range(len(t))], name
        else:
            np.testing.assert_array_equal(back[name], t[name], err_msg=name)


@pytest.mark.parametrize("process,cv", [("poisson", 1.0), ("gamma", 2.0), ("gamma", 0.5), ("weibull", 0.5),
                                        ("weibull", 1.8), ("constant", 0.0)])
def test_arrival_processes_hit_rate_and_cv_over_100k_draws(process, cv):
    rate = 20.0  # req/s: mean IAT 50,000 µs, so µs truncation is negligible
    c = ClientSpec(id="a", rate_fraction=1.0, arrival=ArrivalSpec(process, cv=cv if process != "poisson" else None),
                   input_distribution=DistSpec("constant", {"value": 1}),
                   output_distribution=DistSpec("constant", {"value": 1}))
    t = generate_requests(WorkloadSpec(seed=99, aggregate_rate=rate, num_requests=100_000, clients=[c]))
    iat = np.diff(np.concatenate([[0], t["arrival_us"]])).astype(float)
    assert len(iat) == 100_000
    assert abs(1e6 / iat.mean() - rate) / rate < 0.02
    got_cv = iat.std() / iat.mean()
    assert abs(got_cv - cv) < (0.06 * cv if cv else 1e-9), (process, got_cv)
