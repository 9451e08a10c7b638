"""Profiler traces on CPU (tiny LIF layers) and the identity/summary rules on hand-made trace events."""
import json

import pytest
import torch

from perfsuite import neurons
from perfsuite import profile as prof


def _x():
    return torch.randn(8, 2, 4)


# ------------------------------------------------------------------------------------ real traces
@pytest.fixture(scope="module")
def eager_block(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    m, x = neurons.build("lif", backend="eager"), _x()
    return run, prof.profile_point(lambda: m(x), run, "lif/eager/forward/fp32/8#abc", backend="eager", steps=2)


def test_trace_is_written_in_the_tensorboard_layout_and_parses(eager_block):
    run, block = eager_block
    path = run / block["trace"]
    assert path.is_file() and path.name.endswith(".pt.trace.json")
    # traces/<point>/<worker>.<ns>.pt.trace.json: one TensorBoard run per point under the logdir
    assert path.parent.parent == run / block["tensorboard_logdir"]
    assert path.parent.name == "lif_eager_forward_fp32_8-abc"
    doc = json.loads(path.read_text())
    names = {e.get("name") for e in doc["traceEvents"]}
    assert any(n and n.startswith("aten::") for n in names)
    assert prof.load_trace(path) == doc["traceEvents"]


def test_eager_identity_and_cpu_kernel_summary(eager_block):
    _, block = eager_block
    assert block["identity"] == "ok" and "eager" in block["detail"]
    assert block["kernel_source"] == "cpu_ops" and block["steps"] == 2
    rows = block["kernels"]
    assert 0 < len(rows) <= 10
    assert all(r["self_us"] >= 0 and r["calls"] >= 1 for r in rows)
    assert [r["self_us"] for r in rows] == sorted((r["self_us"] for r in rows), reverse=True)
    assert 0.0 < sum(r["share"] for r in rows) <= 1.0 + 1e-9
    assert any(r["name"].startswith("aten::") for r in rows)


def test_compiled_identity_sees_the_compiled_region(tmp_path):
    m, x = neurons.build("lif", backend="compiled"), _x()
    block = prof.profile_point(lambda: m(x), tmp_path, "lif/compiled", backend="compiled", steps=1)
    events = prof.load_trace(tmp_path / block["trace"])
    assert any(e.get("name", "").startswith(prof.COMPILED_REGION) for e in events)
    assert block["identity"] == "ok"
    # the same trace labelled eager is caught
    identity, detail = prof.backend_identity("eager", events)
    assert identity == "mismatch" and prof.COMPILED_REGION in detail


def test_triton_on_cpu_is_unverified(tmp_path):
    if "triton" not in neurons.backends_of("lif"):
        pytest.skip("triton backend not available here")
    m, x = neurons.build("lif", backend="triton"), _x()
    block = prof.profile_point(lambda: m(x), tmp_path, "lif/triton", backend="triton", steps=1, warmup=1)
    assert block["identity"] == "unverified" and "interpreter" in block["detail"]


def test_record_trace_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="steps=0"):
        prof.record_trace(lambda: None, tmp_path, "k", steps=0)
    with pytest.raises(ValueError, match="device='tpu'"):
        prof.record_trace(lambda: None, tmp_path, "k", device="tpu")


def test_load_trace_rejects_non_traces(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        prof.load_trace(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"events": []}')
    with pytest.raises(ValueError, match="traceEvents"):
        prof.load_trace(tmp_path / "b.json")


# ------------------------------------------------------------------------------ rules on events
def _op(name, ts, dur, tid=1, cat="cpu_op"):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


def _kernel(name, ts=0, dur=5):
    return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": 7}


def test_cpu_self_time_subtracts_direct_children_per_thread():
    events = [_op("outer", 0, 100), _op("a", 10, 30), _op("inner", 15, 10), _op("b", 50, 10),
              _op("other_thread", 0, 100, tid=2)]
    s = prof.kernel_summary(events)
    got = {r["name"]: r["self_us"] for r in s["rows"]}
    assert got == {"outer": 60, "a": 20, "inner": 10, "b": 10, "other_thread": 100}
    assert s["source"] == "cpu_ops" and s["total_us"] == 200
    assert prof.kernel_summary(events, top=2)["rows"][0] == {"name": "other_thread", "calls": 1,
                                                             "self_us": 100, "share": 0.5}


def test_gpu_summary_uses_device_kernels():
    events = [_op("aten::add", 0, 50), _kernel("k1", 0, 30), _kernel("k1", 40, 30), _kernel("k2", 80, 20)]
    s = prof.kernel_summary(events)
    assert s["source"] == "gpu_kernels"
    assert s["rows"] == [{"name": "k1", "calls": 2, "self_us": 60, "share": 0.75},
                         {"name": "k2", "calls": 1, "self_us": 20, "share": 0.25}]


OURS = {"_lif_fwd_kernel", "_lif_bwd_kernel"}
REGION = _op("Torch-Compiled Region: 0/0", 0, 100)


@pytest.mark.parametrize("backend,events,compile_backend,identity", [
    ("triton", [_kernel("_lif_fwd_kernel")], "inductor", "ok"),
    ("triton", [_kernel("elementwise_kernel")], "inductor", "mismatch"),
    ("triton", [_op("aten::add", 0, 5)], "inductor", "unverified"),
    ("eager", [_kernel("elementwise_kernel")], "inductor", "ok"),
    ("eager", [_kernel("triton_poi_fused_add_0")], "inductor", "mismatch"),
    ("eager", [_kernel("_lif_fwd_kernel")], "inductor", "mismatch"),
    ("reference", [_op("aten::add", 0, 5)], "inductor", "ok"),
    ("compiled", [REGION, _kernel("triton_poi_fused_mul_0")], "inductor", "ok"),
    ("compiled", [REGION, _op("## Call CompiledFxGraph fabc ##", 1, 50)], "inductor", "ok"),
    ("compiled", [REGION, _kernel("elementwise_kernel")], "inductor", "mismatch"),
    ("compiled", [REGION, _op("aten::add", 1, 5)], "aot_eager", "ok"),
    ("compiled", [_kernel("triton_poi_fused_mul_0")], "inductor", "mismatch"),
    ("compiled", [REGION, _kernel("_lif_bwd_kernel")], "inductor", "mismatch"),
    ("spikingjelly", [_kernel("anything")], "inductor", "unverified"),
])
def test_identity_rules(backend, events, compile_backend, identity):
    got, detail = prof.backend_identity(backend, events, kernel_names=OURS, compile_backend=compile_backend)
    assert got == identity, detail
    assert detail


def test_perfsuite_kernel_names_come_from_the_kernels_package():
    pytest.importorskip("triton")
    if "triton" not in neurons.backends_of("lif"):
        pytest.skip("triton backend not available here")
    names = prof.perfsuite_kernel_names()
    assert {"_lif_fwd_kernel", "_lif_bwd_kernel"} <= names
    assert prof.perfsuite_kernel_names("perfsuite.no_such_package") == frozenset()


def test_point_slug_is_file_system_safe():
    assert prof.point_slug("psn/eager/train/fp32/1024/4/256/layer#0a1b") == "psn_eager_train_fp32_1024_4_256_layer-0a1b"
    assert prof.point_slug("///") == "point"


def test_cli_profile_writes_rows_and_traces(tmp_path):
    from typer.testing import CliRunner

    from perfsuite.cli import app

    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\ndevice: cpu\nseed: 0\nneurons: [lif]\nbackends: [eager]\nseq_lens: [8]\nbatch: [1]\n"
        "features: [4]\nprecisions: [fp32]\nmodes: [forward, train]\nmetrics: [time]\n")
    out = tmp_path / "prof"
    r = CliRunner().invoke(app, ["profile", str(tmp_path / "tiny.yaml"), "--out", str(out), "--steps", "1",
                                 "--match", "/train/"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / prof.PROFILES_FILE).read_text().splitlines()]
    assert [(row["mode"], row["status"], row["profile"]["identity"]) for row in rows] == [("train", "ok", "ok")]
    assert (out / rows[0]["profile"]["trace"]).is_file()
    # user mistakes: nothing matches; the folder already holds profiles
    for args, message in [(["--match", "psn/"], "no point"), ([], "already holds")]:
        r = CliRunner().invoke(app, ["profile", str(tmp_path / "tiny.yaml"), "--out", str(out), *args])
        assert r.exit_code == 2 and message in r.output, r.output
