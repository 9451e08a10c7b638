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


def _require_triton_backend():
    """Triton installed: the backend must load (conftest sets TRITON_INTERPRET on CPU), so a broken kernels
    package fails here instead of turning into a skip."""
    pytest.importorskip("triton")
    try:
        neurons.backend_impl("lif", "triton")
    except ValueError as exc:
        pytest.fail(f"triton is installed but the triton backend does not load: {exc}")


def test_triton_on_cpu_is_unverified(tmp_path):
    _require_triton_backend()
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
    _require_triton_backend()
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


# ------------------------------------------------------------------------ perfsuite run --profile
TINY_RUN = {"name": "tiny_profile", "device": "cpu", "seed": 0, "neurons": ["lif"], "backends": ["eager", "compiled"],
            "seq_lens": [8], "batch": [1], "features": [4], "precisions": ["fp32"], "modes": ["forward"],
            "metrics": ["time"], "timing": {"warmup_ms": 1, "rep_ms": 5, "min_reps": 3, "max_reps": 5}}


@pytest.mark.slow
def test_run_profile_puts_a_profile_block_in_each_row_and_the_report_shows_it(tmp_path):
    """A real run with --profile (spawned worker, eager + compiled with the test's aot_eager backend)."""
    import yaml
    from typer.testing import CliRunner

    from perfsuite.cli import app
    from perfsuite.results import load_run

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RUN))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", str(tmp_path / "tiny.yaml"), "--out", str(out), "--profile", "--no-progress",
                                 "--no-roofline"])
    assert r.exit_code == 0, r.output
    env, rows = load_run(out)
    assert env["command"].endswith("--profile")
    assert [(row["backend"], row["status"]) for row in rows] == [("eager", "ok"), ("compiled", "ok")]
    for row in rows:
        blk = row["profile"]
        assert row["time"]["n"] >= 3  # the timing is there beside the profile
        assert blk["identity"] == "ok", blk["detail"]
        trace = out / blk["trace"]
        assert trace.is_file() and trace.parent.name == prof.point_slug(row["key"])
        assert blk["kernels"] and blk["kernel_source"] == "cpu_ops" and blk["steps"] == prof.DEFAULT_STEPS
        # the block is what the trace on disk says (the report can recompute it without the worker)
        events = prof.load_trace(trace)
        assert [k["name"] for k in blk["kernels"]] == [k["name"] for k in prof.kernel_summary(events)["rows"]]
    by = {row["backend"]: row["profile"] for row in rows}
    assert "compiled region ran" in by["compiled"]["detail"]
    assert any(k["name"].startswith(prof.COMPILED_REGION) for k in by["compiled"]["kernels"])
    assert not any(k["name"].startswith(prof.COMPILED_REGION) for k in by["eager"]["kernels"])
    md = (out / "report.md").read_text()
    section = md.split("## Kernels and backend identity", 1)[1].split("\n## ", 1)[0]
    assert "2 profiled point(s): identity ok 2, mismatch 0, unverified 0." in section
    for backend in ("eager", "compiled"):
        assert f"| lif | {backend} | forward | fp32 · layer · B=1 F=4 | 8 | run --profile | ok |" in section
        assert by[backend]["trace"] in section
    assert 'id="kernels"' in (out / "report.html").read_text()


@pytest.mark.slow
def test_profiling_failure_keeps_the_timing_row(tmp_path):
    """A real run whose traces cannot be written (``traces`` is a file): rows stay ok with their times,
    ``profile`` is null and ``profile_reason`` says why."""
    from perfsuite.results import read_rows
    from perfsuite.runner import run_points
    from perfsuite.scenario import scenario_from_dict

    points = scenario_from_dict({**TINY_RUN, "backends": ["eager"]}).points()
    (tmp_path / prof.TRACE_DIR).write_text("not a folder")
    result = run_points(points, tmp_path, progress=False, roofline=False, profile=True)
    rows = read_rows(tmp_path / "results.jsonl")
    assert result.counts["ok"] == len(rows) == 1
    row = rows[0]
    assert row["status"] == "ok" and row["time"]["median_ms"] > 0
    assert row["profile"] is None
    assert row["profile_reason"].startswith("profiling failed (error): ") and "traces" in row["profile_reason"]


class _FakeWorker:
    """Stands in for the worker process: answers a profile request with ``answer`` or raises it."""

    def __init__(self, answer):
        self.answer, self.requests = answer, []
        self.proc = self  # LocalExecutor._get_worker asks proc.is_alive()

    def is_alive(self):
        return True

    def call(self, request, timeout):
        self.requests.append((request[0], timeout))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def kill(self):
        pass


@pytest.mark.parametrize("answer,reason,dropped", [
    ({"profile": {"identity": "ok"}}, None, False),
    ({"profile": None, "profile_reason": "profiling failed (error): X"}, "profiling failed (error): X", True),
    ("died", "profiling failed: the worker process died from signal SIGKILL", True),
    ("timeout", "profiling exceeded limits.timeout_s = 8 s; the worker was killed", True),
])
def test_runner_profile_step_never_loses_the_row(tmp_path, answer, reason, dropped):
    from perfsuite.executors import LocalExecutor
    from perfsuite.scenario import scenario_from_dict
    from perfsuite.worker import WorkerDied, WorkerTimeout

    point = scenario_from_dict({**TINY_RUN, "backends": ["eager"], "limits": {"timeout_s": 8}}).points()[0]
    if answer == "died":
        answer = WorkerDied("the worker process died from signal SIGKILL")
    elif answer == "timeout":
        answer = WorkerTimeout("no answer within 8 s")
    runner = LocalExecutor()
    runner._worker = worker = _FakeWorker(answer)
    row = {"status": "ok", "time": {"median_ms": 1.0}}
    assert runner._profile(point, row, tmp_path) is False
    assert worker.requests == [("profile", 8)]
    assert row["time"] == {"median_ms": 1.0}
    assert row.get("profile_reason") == reason and (row["profile"] is None) == (reason is not None)
    assert (runner._worker is None) == dropped  # a failed profile replaces the worker
    # a point that did not run is not profiled, and the row says so
    skipped = {"status": "skipped"}
    assert runner._profile(point, skipped, tmp_path) is False
    assert skipped == {"status": "skipped", "profile": None, "profile_reason": "not profiled: point status skipped"}


def test_ctrl_c_while_profiling_still_writes_the_row(tmp_path):
    from perfsuite.executors import LocalExecutor
    from perfsuite.scenario import scenario_from_dict

    point = scenario_from_dict({**TINY_RUN, "backends": ["eager"]}).points()[0]
    runner = LocalExecutor()
    runner._worker = _FakeWorker(KeyboardInterrupt())
    row = {"status": "ok"}
    assert runner._profile(point, row, tmp_path) is True
    assert row["profile"] is None and "interrupted" in row["profile_reason"]


def test_perfsuite_profile_and_run_profile_share_profile_workload(tmp_path, monkeypatch):
    """Both commands trace a point through profile_workload (one path): profile_points calls it, and so
    does the runner's worker hook."""
    from perfsuite.scenario import scenario_from_dict

    point = scenario_from_dict({**TINY_RUN, "backends": ["eager"]}).points()[0]
    seen = []

    def fake(p, run_dir, **options):
        seen.append((p.key, options))
        return {"identity": "ok"}

    monkeypatch.setattr(prof, "profile_workload", fake)
    assert prof.profile_after_timing(point, tmp_path) == {"profile": {"identity": "ok"}}
    rows = prof.profile_points([point], tmp_path, steps=2)
    assert rows[0]["profile"] == {"identity": "ok"}
    assert seen == [(point.key, {}), (point.key, {"steps": 2, "warmup": prof.DEFAULT_WARMUP, "top": prof.DEFAULT_TOP})]
