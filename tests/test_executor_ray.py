"""perfsuite.executors.ray on a local Ray instance with two declared (fake) GPUs, on the CPU.

Each Ray run starts a local instance and its slots (a Ray actor plus a spawned worker each), so these
tests cost seconds; one sweep (module fixture) serves several checks. Skipped when ray is not
installed (`pip install 'perfsuite[ray]'`), except the checks that need no Ray at all."""
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from perfsuite.cli import app
from perfsuite.executors import ray as rayexec
from perfsuite.results import read_rows
from perfsuite.runner import run_points
from perfsuite.scenario import load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(not rayexec.ray_installed(),
                               reason="ray is not installed (pip install 'perfsuite[ray]'); the Ray executor "
                                      "tests need a local Ray instance")
TINY_TIMING = {"warmup_ms": 1, "rep_ms": 5, "min_reps": 3, "max_reps": 10}


def _env() -> dict:
    """Environment of a CLI subprocess (and of the Ray workers it starts): this checkout and tests.plugins."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def plugins_importable():
    """tests.plugins.* must import here, in Ray's workers and in the spawned point workers; Ray's workers
    take the environment of the process that starts the local instance."""
    old_path, old_env = list(sys.path), os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]
    yield
    sys.path[:] = old_path
    if old_env is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old_env


def _ray_executor():
    return rayexec.RayExecutor(rayexec.RayOptions(address="local", num_gpus=2))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, plugins_importable):
    """Two sleeping points (seconds each), one whose worker kills itself, one ordinary point."""
    sc = scenario_from_dict({
        "name": "ray_sweep", "device": "cpu",
        "neurons": [{"plugin": "tests.plugins.bad_neurons:SleepingNeuron", "params": {"sleep_s": 0.25}},
                    {"plugin": "tests.plugins.bad_neurons:SelfKillingNeuron"}, "lif"],
        "backends": ["eager"], "seq_lens": [16], "batch": [2, 3], "features": [4], "modes": ["forward"],
        "metrics": ["time"], "timing": TINY_TIMING, "limits": {"timeout_s": 60},
    })
    points = sc.points()
    out = tmp_path_factory.mktemp("ray_sweep")
    statuses: list[str] = []

    class Recording(rayexec.RayExecutor):
        """Keeps every progress line the executor reports (the runner draws them beside the bar)."""

        def run(self, planned, ctx):
            yield from super().run(planned, dataclasses.replace(ctx, status=statuses.append))

    t0 = time.monotonic()
    result = run_points(points, out, progress=False, roofline=False,
                        executor=Recording(rayexec.RayOptions(address="local", num_gpus=2)))
    return {"points": points, "rows": read_rows(out / "results.jsonl"), "result": result, "out": out,
            "wall_s": time.monotonic() - t0, "statuses": statuses}


def _interval(row: dict) -> tuple[float, float]:
    start = datetime.fromisoformat(row["started_at"]).timestamp()
    return start, start + row["duration_s"]


@needs_ray
def test_two_points_run_at_once_on_different_gpus(sweep):
    sleeping = [r for r in sweep["rows"] if r["neuron"].endswith("SleepingNeuron")]
    assert len(sleeping) == 2 and all(r["status"] == "ok" for r in sleeping), sleeping
    # Ray set CUDA_VISIBLE_DEVICES of each slot: the two points held different (declared) GPUs
    assert {r["gpu_index"] for r in sleeping} == {"0", "1"}
    (a0, a1), (b0, b1) = sorted(_interval(r) for r in sleeping)
    assert min(r["duration_s"] for r in sleeping) > 2  # long enough for an overlap to be seen at 1 s resolution
    assert b0 < a1 - 1.0, f"the two points did not overlap: {(a0, a1)} then {(b0, b1)}"


@needs_ray
def test_progress_says_what_runs_where(sweep):
    import platform

    host = re.escape(platform.node())
    both = rf"^\d+ done, 2 running, \d+ queued \| {host}/gpu[01]: [^;]+; {host}/gpu[01]: [^;]+$"
    assert any(re.match(both, line) for line in sweep["statuses"]), sweep["statuses"][:5]
    assert re.match(r"^0 done, 2 running, 4 queued \| ", sweep["statuses"][0]), sweep["statuses"][0]


@needs_ray
def test_a_worker_killed_mid_point_is_an_error_row_and_the_sweep_completes(sweep):
    rows = sweep["rows"]
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in sweep["points"])  # no point lost
    killed = [r for r in rows if r["neuron"].endswith("SelfKillingNeuron")]
    assert len(killed) == 2
    for r in killed:
        assert r["status"] == "error" and "SIGKILL" in r["reason"], r["reason"]
        assert r["executor"] == "ray" and r.get("requeued") is None  # a crash is not re-run
    assert {r["status"] for r in rows if r["neuron"] == "lif"} == {"ok"}


@needs_ray
def test_rows_and_env_record_the_executor_node_and_cluster(sweep):
    import platform

    for r in sweep["rows"]:
        assert r["executor"] == "ray" and r["node"] == platform.node()
        assert r["gpu_index"] in ("0", "1")
        assert r["gpu_uuid"] is None and r["gpu_uuid_reason"]  # declared GPUs have no UUID: null with why
    env = json.loads((sweep["out"] / "env.json").read_text())
    cl = env["cluster"]
    assert env["executor"] == "ray" and cl["slots"] == 2 and len(cl["nodes"]) == 1
    assert cl["nodes"][0]["gpus"] == 2 and cl["gpus_per_point"] == 1 and "share the cores" in cl["reservation"]
    assert env["run_id"] == sweep["rows"][0]["run_id"]


def _trimmed_smoke(tmp_path) -> Path:
    """scenarios/smoke.yaml with two neurons and one backend per mode kept (same rules and budgets)."""
    sc = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    sc["neurons"] = ["lif", "psn"]
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


@needs_ray
def test_row_keys_and_statuses_equal_the_local_executors(tmp_path, plugins_importable):
    """...and the extrapolation block (a tiny one) runs as one task per neuron with the same rows."""
    points = load_scenario(_trimmed_smoke(tmp_path)).points()
    block = dict(task="markov_lm", task_params={"vocab": 4}, train_len=16, eval_lens=[16, 32], steps=2,
                 batch=4, eval_batch=4, hidden=8, layers=1, neurons=["lif", "psn"])
    kw = dict(progress=False, roofline=False, extrapolation=block, scenario="smoke")
    local = run_points(points, tmp_path / "local", **kw)
    ray_run = run_points(points, tmp_path / "ray", executor=_ray_executor(), **kw)
    by_local = {r["key"]: r["status"] for r in local.rows}
    by_ray = {r["key"]: r["status"] for r in ray_run.rows}
    assert len(by_ray) == len(ray_run.rows) == len(points) + 4
    assert by_ray == by_local
    assert {"ok", "unsupported"} <= set(by_ray.values())  # psn step: no serial inference
    assert sum(r.get("kind") == "extrapolation" for r in ray_run.rows) == 4
    assert {r["executor"] for r in local.rows} == {"local"} and {r["executor"] for r in ray_run.rows} == {"ray"}
    assert len(list((tmp_path / "ray" / "weights").glob("*.pt"))) == 2  # one trained model per neuron


def _start_and_kill(args: list[str], results: Path, rows: int, sig: int, tmp_path) -> tuple[int, str]:
    """Start the CLI, send ``sig`` once ``results`` holds ``rows`` lines; (exit code, stderr)."""
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= rows:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


@needs_ray
def test_resume_after_killing_the_driver_completes_without_duplicates(tmp_path):
    """SIGKILL (no clean-up at all), then a resume stopped by SIGTERM (a clean stop: exit 130, rows
    kept), then a resume that finishes: every key once, finished rows untouched."""
    sc = {"name": "killme", "device": "cpu", "neurons": ["lif"], "seq_lens": [8, 12, 16, 20, 24, 28, 32, 36],
          "batch": [2], "features": [4], "metrics": ["time"],
          "timing": {"warmup_ms": 1, "rep_ms": 400, "min_reps": 3, "max_reps": 1000}}
    path, out = tmp_path / "killme.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(sc))
    args = [sys.executable, "-m", "perfsuite", "run", str(path), "--out", str(out), "--no-report", "--no-progress",
            "--no-roofline", "--executor", "ray", "--address", "local", "--num-gpus", "2"]
    results = out / "results.jsonl"
    _start_and_kill(args, results, 2, signal.SIGKILL, tmp_path)
    before = results.read_text().splitlines()
    assert 2 <= len(before) < 8

    code, err = _start_and_kill(args + ["--resume"], results, len(before) + 1, signal.SIGTERM, tmp_path)
    assert code == 130 and "interrupted: finished rows are kept" in err, (code, err[-2000:])
    middle = results.read_text().splitlines()
    assert middle[:len(before)] == before and len(before) < len(middle) < 8

    done = subprocess.run(args + ["--resume"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    after = results.read_text().splitlines()
    assert after[:len(middle)] == middle  # finished rows untouched
    keys = [json.loads(line)["key"] for line in after]
    assert sorted(keys) == sorted(p.key for p in load_scenario(path).points()) and len(keys) == len(set(keys))
    assert len({json.loads(line)["run_id"] for line in after}) == 1  # the resumed runs keep the env.json


@needs_ray
def test_a_point_whose_node_dies_is_requeued_once_and_says_so(tmp_path, plugins_importable):
    """Two one-CPU nodes (CPU points: one slot per node, all its CPUs); the node running a point is
    removed mid-point: that point runs again on the other node and its row names the dead node."""
    import threading

    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        sc = scenario_from_dict({
            "name": "node_death", "device": "cpu",
            "neurons": [{"plugin": "tests.plugins.bad_neurons:SleepingNeuron", "params": {"sleep_s": 0.25}}],
            "backends": ["eager"], "seq_lens": [16], "batch": [1, 2, 3], "features": [4], "modes": ["forward"],
            "metrics": ["time"], "timing": {"warmup_ms": 1, "rep_ms": 1, "min_reps": 3, "max_reps": 3},
            "limits": {"timeout_s": 120},
        })
        executor = rayexec.RayExecutor(rayexec.RayOptions(address=cluster.address))
        removed = []

        def remove_the_busy_node():
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                if any(s.label and s.node_id == doomed.node_id for s in executor._slots):
                    time.sleep(1.0)  # well inside the point (seconds of sleeping calls)
                    cluster.remove_node(doomed)
                    removed.append(True)
                    return
                time.sleep(0.05)

        threading.Thread(target=remove_the_busy_node, daemon=True).start()
        result = run_points(sc.points(), tmp_path, progress=False, roofline=False, executor=executor)
    finally:
        cluster.shutdown()
    assert removed, "the node was never seen running a point"
    rows = result.rows
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in sc.points())
    assert all(r["status"] == "ok" for r in rows), [(r["status"], r["reason"]) for r in rows]
    requeued = [r for r in rows if r.get("requeued")]
    assert len(requeued) == 1 and "died while running it" in requeued[0]["requeued"]
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["cluster"]["slots"] == 2 and env["cluster"]["reservation"] == "all CPUs of a node per point"


# ----------------------------------------------------------------------- no Ray needed
def _smoke_args(tmp_path, *extra: str) -> list[str]:
    return ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--out", str(tmp_path / "r"), "--no-report", *extra]


def test_executor_ray_without_ray_installed_exits_2_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(rayexec, "ray_installed", lambda: False)
    res = CliRunner().invoke(app, _smoke_args(tmp_path, "--executor", "ray"))
    assert res.exit_code == 2 and "pip install 'perfsuite[ray]'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r" / "results.jsonl").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--address", "local"], "--address: Ray options, they apply only with --executor ray"),
    (["--executor", "ray", "--num-gpus", "2"], "--num-gpus declares the GPUs of a local Ray instance"),
    (["--executor", "ray", "--address", "cluster9"], "--address 'cluster9' is invalid"),
    (["--executor", "ray", "--gpus-per-point", "0"], "--gpus-per-point 0 is invalid"),
])
def test_bad_ray_options_exit_2_naming_the_option(tmp_path, extra, expected):
    res = CliRunner().invoke(app, _smoke_args(tmp_path, *extra))
    assert res.exit_code == 2 and expected in res.output, res.output


def test_the_cli_starts_without_importing_ray_and_the_executor_imports_nothing_above_it():
    code = "import sys, perfsuite.cli, perfsuite.runner; assert 'ray' not in sys.modules, 'ray imported at start-up'"
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), timeout=120)
    import ast

    above = {"runner", "compare", "report", "analysis", "cli"}
    tree = ast.parse((ROOT / "perfsuite" / "executors" / "ray.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            names = {n.split(".")[0] for n in [node.module or ""] + [a.name for a in node.names]}
            assert not names & above, f"executors/ray.py imports {names & above} (line {node.lineno})"


def test_a_cluster_of_mixed_gpu_models_is_refused_unless_allowed():
    node = lambda host, *models: {"hostname": host, "gpu_models": list(models)}  # noqa: E731
    same = {"nodes": [node("a", "NVIDIA H100 80GB HBM3"), node("b", "NVIDIA H100 80GB HBM3"), node("c")]}
    rayexec.check_gpu_models(same, allow_mixed=False)
    mixed = {"nodes": [node("a", "NVIDIA H100 80GB HBM3"), node("b", "NVIDIA A100-SXM4-80GB")]}
    with pytest.raises(ValueError, match=r"mixes GPU models .*b: NVIDIA A100.*--allow-mixed"):
        rayexec.check_gpu_models(mixed, allow_mixed=False)
    rayexec.check_gpu_models(mixed, allow_mixed=True)
