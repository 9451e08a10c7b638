"""perfsuite.runner: a full small run with every status, resume after a real kill, shards and merge.

Workers are real spawned processes, so these tests cost a few seconds each; sizes are tiny."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from perfsuite.merge import merge_runs
from perfsuite.results import STATUSES, read_rows
from perfsuite.runner import parse_shard, run_points, select_shard
from perfsuite.scenario import Limits, load_scenario, scenario_from_dict
from perfsuite.summary import summary_markdown

ROOT = Path(__file__).resolve().parents[1]
TINY_TIMING = {"warmup_ms": 1, "rep_ms": 5, "min_reps": 3, "max_reps": 10}


@pytest.fixture(autouse=True)
def _plugins_importable(monkeypatch):
    """tests.plugins.* must import in this process and in the spawned workers (they copy sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT))


def every_status_points():
    sc = scenario_from_dict({
        "name": "every_status", "device": "cpu",
        "neurons": [
            {"name": "lif", "modes": ["forward", "step"]},
            {"name": "plif", "modes": ["train"]},
            {"plugin": "tests.plugins.bad_neurons:RaisingNeuron"},
            {"plugin": "tests.plugins.bad_neurons:SleepingNeuron", "params": {"sleep_s": 120}},
            {"name": "psn", "modes": ["step", "forward"]},
        ],
        "seq_lens": [16], "batch": [2], "features": [4], "modes": ["forward"],
        "timing": TINY_TIMING, "limits": {"timeout_s": 8},
    })
    points = sc.points()
    # the last point (psn forward) gets a memory limit it cannot meet: skipped by prediction
    points[-1] = dataclasses.replace(points[-1], limits=Limits(timeout_s=8, memory_gb=1e-6))
    return points


@pytest.mark.slow
def test_full_run_writes_a_row_per_point_with_every_status(tmp_path):
    points = every_status_points()
    result = run_points(points, tmp_path, progress=False)
    rows = read_rows(tmp_path / "results.jsonl")
    assert [r["key"] for r in rows] == [p.key for p in points]  # one row per point, in order
    by = {(r["neuron"].split(":")[-1], r["mode"]): r for r in rows}
    statuses = {r["status"] for r in rows}
    assert statuses == {"ok", "error", "timeout", "unsupported", "skipped"}
    assert statuses <= set(STATUSES) and result.counts["ok"] == 3

    for key in [("lif", "forward"), ("lif", "step"), ("plif", "train")]:
        r = by[key]
        assert r["status"] == "ok" and r["reason"] is None and r["run_id"] == rows[0]["run_id"]
        t = r["time"]
        assert t["n"] == len(t["samples_ms"]) >= 3 and t["timer"] == "perf_counter"
        assert t["ci95_ms"][0] <= t["median_ms"] <= t["ci95_ms"][1] and t["cold_start_ms"] > 0
        # a tiny point's RSS growth is often 0 or below its analytic bound: then null with the reason
        assert (r["memory"] is None and "resolution" in r["memory_reason"]) or \
            r["memory"]["method"] == "cpu_peak_rss_delta"
        assert r["activity"]["firing_rate"] == pytest.approx(0.1, abs=0.08)
        assert r["agreement"]["equal_fraction"] >= 0.9
        assert r["cost"]["flops"] > 0 and r["cost"]["min_bytes"] > 0
        # NVML absent (no GPU): energy is empty with the reason, never 0
        assert r["energy"] is None and "CUDA" in r["energy_reason"]
        assert r["modelled_energy"] is None and "synapses" in r["modelled_energy_reason"]

    err = by[("RaisingNeuron", "forward")]
    assert err["status"] == "error" and "failed on purpose" in err["reason"] and "bad_neurons.py" in err["traceback"]
    assert err["time"] is None and "error" in err["time_reason"]
    to = by[("SleepingNeuron", "forward")]
    assert to["status"] == "timeout" and "timeout_s = 8" in to["reason"]
    assert to["duration_s"] < 60  # killed, not waited for
    assert by[("psn", "step")]["status"] == "unsupported" and "serial" in by[("psn", "step")]["reason"]
    sk = by[("psn", "forward")]
    assert sk["status"] == "skipped" and "predicted at least" in sk["reason"] and sk["predicted_memory_bytes"] > 0

    env = json.loads((tmp_path / "env.json").read_text())
    assert env["run_id"] == rows[0]["run_id"] and env["device"] == "cpu"
    assert env["roofline"]["copy_gbps"] > 0 and env["idle_watts"] is None and env["energy_reason"]
    summary = (tmp_path / "summary.md").read_text()
    assert "timeout 1" in summary and "skipped 1" in summary and "failed on purpose" in summary


def test_a_folder_with_rows_needs_resume(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"key": "x", "status": "ok"}\n')
    with pytest.raises(ValueError, match="already holds 1 rows; pass --resume"):
        run_points(every_status_points()[:1], tmp_path, progress=False)


def _scenario_file(tmp_path, **over) -> Path:
    sc = {"name": "killme", "device": "cpu", "neurons": ["lif"], "seq_lens": [8, 12, 16, 20, 24, 28],
          "batch": [2], "features": [4], "metrics": ["time"],
          "timing": {"warmup_ms": 1, "rep_ms": 150, "min_reps": 3, "max_reps": 10000}, **over}
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


@pytest.mark.slow
def test_resume_after_killing_the_run_loses_and_duplicates_nothing(tmp_path):
    path, out = _scenario_file(tmp_path), tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "perfsuite", "run", str(path), "--out", str(out), "--no-report",
                             "--no-progress", "--no-roofline"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stderr.close()
    before = results.read_text().splitlines()
    assert 2 <= len(before) < 6
    points = load_scenario(path).points()

    result = run_points(points, out, resume=True, progress=False)
    after = results.read_text().splitlines()
    assert after[:len(before)] == before  # finished rows untouched
    keys = [json.loads(line)["key"] for line in after]
    assert sorted(keys) == sorted(p.key for p in points) and len(keys) == len(set(keys))
    assert result.resumed == len(before) and result.new_rows == 6 - len(before)
    assert len({json.loads(line)["run_id"] for line in after}) == 1  # the resumed run keeps its env.json


@pytest.mark.slow
def test_shards_partition_the_sweep_and_merge_joins_them(tmp_path):
    with pytest.raises(ValueError, match="1 <= i <= n"):
        parse_shard("0/2")
    with pytest.raises(ValueError, match="'i/n'"):
        parse_shard("half")
    items = list(range(10))
    parts = [select_shard(items, (i, 3)) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == items and parts[0] == [0, 3, 6, 9]

    sc = scenario_from_dict({"name": "sh", "device": "cpu", "neurons": ["lif"], "seq_lens": [8, 16],
                             "batch": [1], "features": [2], "modes": ["forward", "step"], "metrics": ["time"],
                             "timing": TINY_TIMING})
    points = sc.points()
    for i in (1, 2):
        run_points(points, tmp_path / f"part{i}", shard=(i, 2), progress=False, roofline=False)
    shard_keys = [[r["key"] for r in read_rows(tmp_path / f"part{i}" / "results.jsonl")] for i in (1, 2)]
    assert not set(shard_keys[0]) & set(shard_keys[1])
    merged = merge_runs(tmp_path / "all", [tmp_path / "part1", tmp_path / "part2"])
    rows = read_rows(tmp_path / "all" / "results.jsonl")
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in points) == sorted(r["key"] for r in merged.rows)
    env = json.loads((tmp_path / "all" / "env.json").read_text())
    assert [m["path"] for m in env["merged_from"]] == [str(tmp_path / "part1"), str(tmp_path / "part2")]
    assert env["roofline"] is None and "turned off" in env["roofline_reason"]
    assert (tmp_path / "all" / "summary.md").exists()
    # merging a part twice keeps one row per key; merging into a folder with rows is refused
    again = merge_runs(tmp_path / "twice", [tmp_path / "part1", tmp_path / "part1"])
    assert len(again.rows) == len(shard_keys[0])
    with pytest.raises(ValueError, match="already holds results"):
        merge_runs(tmp_path / "all", [tmp_path / "part1"])


def test_summary_markdown_lists_not_ok_rows():
    rows = [{"key": "a#1", "neuron": "lif", "status": "ok", "time": {"median_ms": 1.0, "ci95_ms": [0.9, 1.1]}},
            {"key": "b#2", "neuron": "psn", "status": "oom", "reason": "CUDA out of memory"}]
    md = summary_markdown(rows)
    assert "ok 1, oom 1 (total 2)" in md and "`b#2`: **oom**: CUDA out of memory" in md and "0.9–1.1" in md


# ------------------------------------------------------------------------------- merge checks
ENV = {"device": "cuda", "gpu": {"name": "GPU A"}, "torch": "2.13", "triton": "3.9", "compile_backend": "inductor",
       "commit": "abc123", "hostname": "h1"}


def row(key, status="ok", median=1.0):
    return {"key": key, "status": status, "time": {"median_ms": median} if status == "ok" else None,
            "reason": None if status == "ok" else "synthetic failure"}


def part(tmp_path, name, rows, **env_changes) -> Path:
    """A run folder written directly (no worker): env.json with ``env_changes`` and ``rows``."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "env.json").write_text(json.dumps({**ENV, "run_id": name, **env_changes}))
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize("change,field", [({"torch": "2.12"}, "torch"), ({"gpu": {"name": "GPU B"}}, "gpu"),
                                          ({"commit": "def456"}, "commit"),
                                          ({"compile_backend": "aot_eager"}, "compile_backend")])
def test_merge_refuses_parts_from_different_environments(tmp_path, change, field):
    a = part(tmp_path, "a", [row("k1")])
    b = part(tmp_path, "b", [row("k2")], **change)
    with pytest.raises(ValueError, match="different environments") as exc:
        merge_runs(tmp_path / "all", [a, b])
    assert f"{b} vs {a}: {field}" in str(exc.value) and "--force" in str(exc.value)
    assert not (tmp_path / "all" / "results.jsonl").exists()


def test_merge_compares_the_cpu_model_of_cpu_runs_only(tmp_path):
    cpu = {"device": "cpu", "gpu": None}
    a = part(tmp_path, "a", [row("k1")], cpu_model="CPU X", **cpu)
    b = part(tmp_path, "b", [row("k2")], cpu_model="CPU Y", **cpu)
    with pytest.raises(ValueError, match=f"{b} vs {a}: cpu 'CPU Y' != 'CPU X'"):
        merge_runs(tmp_path / "all", [a, b])
    # GPU runs on hosts with different CPUs are the same measuring device
    c = part(tmp_path, "c", [row("k1")], cpu_model="CPU X")
    d = part(tmp_path, "d", [row("k2")], cpu_model="CPU Y")
    assert len(merge_runs(tmp_path / "gpu", [c, d]).rows) == 2


def test_merge_force_records_every_part_env_and_the_differences(tmp_path):
    a = part(tmp_path, "a", [row("k1")])
    b = part(tmp_path, "b", [row("k2")], torch="2.12", hostname="h2")
    merged = merge_runs(tmp_path / "all", [a, b], force=True)
    assert sorted(r["key"] for r in merged.rows) == ["k1", "k2"]
    env = json.loads((tmp_path / "all" / "env.json").read_text())
    assert [m["env"]["torch"] for m in env["merged_from"]] == ["2.13", "2.12"]
    assert [m["hostname"] for m in env["merged_from"]] == ["h1", "h2"]
    assert env["merge_forced"] == {"env_differences": [f"{b} vs {a}: torch '2.12' != '2.13'"], "duplicates": []}


def test_merge_refuses_a_key_with_different_rows_and_force_says_who_won(tmp_path):
    a = part(tmp_path, "a", [row("k1"), row("k2", "error"), row("k3", median=1.0)])
    b = part(tmp_path, "b", [row("k1", "oom"), row("k2"), row("k3", median=2.0)])
    with pytest.raises(ValueError, match="3 key.s. hold different rows") as exc:
        merge_runs(tmp_path / "all", [a, b])
    assert f"k1 in {a}, {b}" in str(exc.value)
    merged = merge_runs(tmp_path / "all", [a, b], force=True)
    # the documented rule: an ok row wins over one that is not ok, in either order; else the last part's
    got = {r["key"]: r for r in merged.rows}
    assert got["k1"] == row("k1") and got["k2"] == row("k2") and got["k3"] == row("k3", median=2.0)
    env = json.loads((tmp_path / "all" / "env.json").read_text())
    dups = {d["key"]: d for d in env["merge_forced"]["duplicates"]}
    assert dups["k1"]["winner"] == str(a) and dups["k1"]["rule"] == "the ok row"
    assert dups["k1"]["statuses"] == ["ok", "oom"] and dups["k1"]["parts"] == [str(a), str(b)]
    assert dups["k2"]["winner"] == str(b) and dups["k2"]["rule"] == "the ok row"
    assert dups["k3"]["winner"] == str(b) and dups["k3"]["rule"] == "the last part's"
    assert env["merge_forced"]["env_differences"] == []


def test_merge_of_rows_not_ok_in_every_part_keeps_the_last(tmp_path):
    a = part(tmp_path, "a", [row("k1", "error")])
    b = part(tmp_path, "b", [row("k1", "timeout")])
    merged = merge_runs(tmp_path / "all", [a, b], force=True)
    assert [r["status"] for r in merged.rows] == ["timeout"]


# ------------------------------------------------------------------------------------ progress
def test_progress_bar_only_when_there_are_points(tmp_path, monkeypatch):
    """An extrapolation-only scenario (or a resume with nothing left) draws no empty 0/0 bar."""
    from rich.console import Console

    from perfsuite.executors import LocalExecutor
    from perfsuite.results import RunResult
    from perfsuite.runner import Runner

    # the executor's run is replaced (no worker, no planning): only the loop and its bar run
    point = SimpleNamespace(neuron="lif", backend="eager", mode="forward", seq_len=8)
    monkeypatch.setattr(LocalExecutor, "run", lambda self, planned, ctx: ((p.point, row("k1")) for p in planned))
    monkeypatch.setattr("perfsuite.runner.plan_point", lambda p, device_bytes: SimpleNamespace(point=p))
    for todo, drawn in (([], False), ([point], True)):
        console = Console(record=True, width=120, force_terminal=False)
        runner = Runner(tmp_path / f"r{len(todo)}", progress=True, console=console)
        (tmp_path / f"r{len(todo)}").mkdir()
        runner._loop(todo, {"run_id": "x"}, tmp_path / f"r{len(todo)}" / "results.jsonl", RunResult(tmp_path))
        text = console.export_text()
        assert ("1/1" in text) is drawn, text
        assert "0/0" not in text


def test_env_records_the_thread_counts_the_points_ask_for(tmp_path):
    """#11 item 2: `timing.threads` (1 by default on the CPU for layer workloads) is recorded in env.json, and
    each row's load block says what the point asked for and what torch ran with."""
    for name, timing, want in (("default", TINY_TIMING, [1]), ("two", {**TINY_TIMING, "threads": 2}, [2])):
        sc = scenario_from_dict({"name": name, "device": "cpu", "neurons": ["lif"], "seq_lens": [8], "batch": [1],
                                 "features": [2], "modes": ["forward"], "metrics": ["time"], "timing": timing})
        out = tmp_path / name
        run_points(sc.points(), out, progress=False, roofline=False)
        env = json.loads((out / "env.json").read_text())
        assert env["timing_threads"] == want
        (row,) = read_rows(out / "results.jsonl")
        assert row["status"] == "ok" and row["load"]["threads_requested"] == want[0]
        assert row["load"]["torch_threads"] == want[0]
