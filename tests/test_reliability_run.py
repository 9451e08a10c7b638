"""Faults around a run and what survives them (#10): non-finite numbers, two writers on one folder,
unreadable lines on --resume, a killed parent, rows that are not rows, OS errors, cgroup memory limits,
and the summary's escaping and reasons.

Most tests run the real runner on a fake executor (no worker process, so they cost no torch start-up);
the NaN neuron and the killed parent use real workers."""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfsuite import results as R
from perfsuite.cli import app
from perfsuite.executors import Executor, verdict_row
from perfsuite.runner import Runner, run_points
from perfsuite.scenario import scenario_from_dict
from perfsuite.worker import make_row

ROOT = Path(__file__).resolve().parents[1]
TINY_TIMING = {"warmup_ms": 1, "rep_ms": 5, "min_reps": 3, "max_reps": 10}
SCENARIO = {"name": "faults", "device": "cpu", "neurons": ["lif"], "seq_lens": [8, 12, 16, 20], "batch": [1],
            "features": [2], "metrics": ["time"], "timing": TINY_TIMING}


@pytest.fixture(autouse=True)
def _plugins_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def points(**over):
    return scenario_from_dict({**SCENARIO, **over}).points()


class FakeExecutor(Executor):
    """Measures nothing: every point to run gets an ok row with a made-up time block (the runner's
    planning, writing, resume and summary are what these tests exercise)."""

    name = "fake"

    def __init__(self):
        self.ran = []

    def environment(self, device, roofline):
        return {"device": device, "memory_bytes": None, "idle_watts": None, "energy_reason": "fake"}

    def run(self, planned, ctx):
        for plan in planned:
            if plan.status is not None:
                yield plan.point, verdict_row(plan, ctx.run_id)
                continue
            self.ran.append(plan.point.key)
            yield plan.point, make_row(plan.point, ctx.run_id, "ok", None,
                                       {"time": {"median_ms": 1.0, "samples_ms": [1.0, 1.0, 1.0]}})


def cli_run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def scenario_file(tmp_path, **over) -> Path:
    path = tmp_path / "faults.json"  # JSON is YAML
    path.write_text(json.dumps({**SCENARIO, **over}))
    return path


# ------------------------------------------------------------------------------- 1: non-finite
def test_append_row_stores_non_finite_numbers_as_null_and_names_them(tmp_path):
    import numpy as np

    row = {"key": "k", "status": "ok", "time": {"median_ms": float("nan"), "samples_ms": [1.0, float("inf")]},
           "activity": {"firing_rate": np.float32("nan")}}
    R.append_row(tmp_path / "r.jsonl", row)
    back = R.read_rows(tmp_path / "r.jsonl")[0]
    assert back["time"] == {"median_ms": None, "samples_ms": [1.0, None]} and back["activity"]["firing_rate"] is None
    assert back["nonfinite"] == ["activity.firing_rate", "time.median_ms", "time.samples_ms.1"]


def test_a_non_finite_environment_figure_is_null_and_named(tmp_path):
    class NaNRoofline(FakeExecutor):
        def environment(self, device, roofline):
            return {**super().environment(device, roofline), "roofline": {"copy_gbps": float("nan")}}

    Runner(tmp_path, progress=False, executor=NaNRoofline()).run(points()[:1])
    env = R.load_env(tmp_path / "env.json")  # strict JSON: no NaN literal
    assert env["roofline"] == {"copy_gbps": None} and env["nonfinite"] == ["roofline.copy_gbps"]
    assert "NaN" not in (tmp_path / "env.json").read_text()


def test_make_row_turns_a_non_finite_measurement_into_an_error():
    p = points()[0]
    row = make_row(p, "r", "ok", None, {"time": {"median_ms": float("nan"), "n": 3}})
    assert row["status"] == "error" and "non-finite measurement" in row["reason"] and "time.median_ms" in row["reason"]
    assert row["time"]["median_ms"] is None and row["nonfinite"] == ["time.median_ms"]
    fine = make_row(p, "r", "ok", None, {"time": {"median_ms": 1.0, "n": 3}})
    assert fine["status"] == "ok" and "nonfinite" not in fine


def test_a_neuron_that_outputs_nan_never_ends_the_sweep(tmp_path):
    sc = scenario_from_dict({"name": "nan", "device": "cpu", "seq_lens": [8], "batch": [1], "features": [4],
                             "neurons": [{"plugin": "tests.plugins.nan_neurons:NaNNeuron"}, "lif"],
                             "metrics": ["time", "activity"], "timing": TINY_TIMING})
    pts = sc.points()
    result = run_points(pts, tmp_path, progress=False, roofline=False)
    rows = R.read_rows(tmp_path / "results.jsonl")
    assert [r["key"] for r in rows] == [p.key for p in pts]  # every point has its row, in order
    nan, lif = rows
    assert nan["status"] == "error" and "non-finite measurement" in nan["reason"]
    assert "activity.firing_rate" in nan["nonfinite"] and nan["activity"]["firing_rate"] is None
    assert lif["status"] == "ok" and lif["activity"]["firing_rate"] >= 0
    assert "non-finite" in (tmp_path / "summary.md").read_text()
    again = run_points(pts, tmp_path, resume=True, progress=False, roofline=False)
    assert again.resumed == 2 and again.new_rows == 0 and result.counts["error"] == 1


# --------------------------------------------------------------------------------- 2: the lock
def test_a_second_writer_of_a_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from perfsuite.results import lock_run_dir; "
         "f = lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(R.RunDirLocked, match=f"{out} is in use by another perfsuite process .pid {holder.pid}."):
            Runner(out, progress=False, executor=FakeExecutor()).run(points())
        r = cli_run("run", scenario_file(tmp_path), "--out", out, "--no-report", "--no-progress")
        assert r.exit_code == 2 and f"pid {holder.pid}" in r.output and len(r.output.strip().splitlines()) == 1
        r = cli_run("merge", out, tmp_path / "missing-part")
        assert r.exit_code == 2 and f"pid {holder.pid}" in r.output
        assert not (out / "results.jsonl").exists()
    finally:
        holder.kill()
        holder.wait(10)
    # the lock dies with its holder: the folder is usable again
    Runner(out, progress=False, executor=FakeExecutor()).run(points())
    assert len(R.read_rows(out / "results.jsonl")) == 4


# ------------------------------------------------------------------------ 3: resume salvages
def test_resume_moves_unreadable_lines_aside_and_writes_a_clean_file(tmp_path):
    pts = points()
    Runner(tmp_path, progress=False, executor=FakeExecutor()).run(pts[:2])
    results = tmp_path / "results.jsonl"
    good = results.read_text().splitlines()
    # garbage that ends in a newline, JSON that is no row, a row without keys, and a torn tail
    results.write_text("\n".join([good[0], "garbage{", "123", "null", "[1, 2]", "{}", good[1], '{"key": "x", "sta']))
    ex = FakeExecutor()
    result = Runner(tmp_path, resume=True, progress=False, executor=ex).run(pts)
    assert ex.ran == [p.key for p in pts[2:]] and result.resumed == 2 and result.new_rows == 2
    lines = results.read_text().splitlines()
    assert lines[:2] == good and [json.loads(x)["key"] for x in lines] == [p.key for p in pts]
    rejected = (tmp_path / "results.rejected.jsonl").read_text().splitlines()
    assert rejected == ["garbage{", "123", "null", "[1, 2]", "{}", '{"key": "x", "sta']
    assert len(result.warnings) == 6 and "line 2 is not valid JSON" in result.warnings[0]
    assert "line 3 holds int" in result.warnings[1] and "moved to" in result.warnings[0]
    assert not list(tmp_path.glob("*.tmp"))
    # every reader agrees with the repaired file
    assert len(R.load_run(tmp_path)[1]) == 4


def test_salvage_completes_a_last_row_that_lost_only_its_newline(tmp_path):
    f = tmp_path / "results.jsonl"
    f.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "status": "ok"}')
    rows, warnings = R.salvage_rows(f)
    assert [r["key"] for r in rows] == ["a", "b"] and warnings == []
    assert f.read_text() == '{"key": "a", "status": "ok"}\n{"key": "b", "status": "ok"}\n'
    assert R.salvage_rows(f) == (rows, []) and not (tmp_path / "results.rejected.jsonl").exists()


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to resume in .*empty"):
        Runner(tmp_path / "empty", resume=True, progress=False, executor=FakeExecutor()).run(points())
    assert not (tmp_path / "empty").exists()
    r = cli_run("run", scenario_file(tmp_path), "--out", tmp_path / "new", "--resume", "--no-report")
    assert r.exit_code == 2 and "nothing to resume in" in r.output


# ------------------------------------------------------------------- 4: the worker dies with its parent
def test_a_killed_parent_takes_its_busy_worker_with_it(tmp_path):
    parent = textwrap.dedent("""
        import sys, time
        from perfsuite.scenario import scenario_from_dict
        from perfsuite.worker import Worker

        if __name__ == "__main__":
            sc = scenario_from_dict({"name": "busy", "device": "cpu", "seq_lens": [8], "batch": [1], "features": [2],
                                     "neurons": [{"plugin": "tests.plugins.bad_neurons:SleepingNeuron",
                                                  "params": {"sleep_s": 120}}], "metrics": ["time"]})
            w = Worker()
            w._conn.send(("point", sc.points()[0], {}))  # busy for two minutes
            print(w.proc.pid, flush=True)
            time.sleep(300)
        """)
    script = tmp_path / "parent.py"
    script.write_text(parent)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        worker_pid = int(proc.stdout.readline())
        time.sleep(1.0)  # the point is running
        assert _alive(worker_pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker_pid), "the worker outlived its killed parent"
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


# -------------------------------------------------------------------- 5: lines that are not rows
@pytest.mark.parametrize("line,why", [("123", "holds int"), ("null", "holds NoneType"), ("[1, 2]", "holds list"),
                                      ("{}", "without 'key', 'status'"), ('{"key": "k", "status": "fine"}', "status='fine'")])
def test_every_reader_names_the_file_and_line_of_a_line_that_is_no_row(tmp_path, line, why):
    run = tmp_path / "run"
    run.mkdir()
    (run / "env.json").write_text("{}")
    (run / "results.jsonl").write_text('{"key": "a", "status": "ok"}\n' + line + "\n")
    with pytest.raises(R.BadRunFile, match=f"results.jsonl: line 2 .*{re.escape(why)}"):
        R.load_run(run)
    for args in (["report", run, "--out", tmp_path / "rep"], ["compare", run, run], ["merge", tmp_path / "m", run]):
        r = cli_run(*args)
        assert r.exit_code == 2 and "results.jsonl: line 2" in r.output, (args, r.output)


def test_an_env_json_that_is_no_object_is_named(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text('{"key": "a", "status": "ok"}\n')
    (run / "env.json").write_text("[1, 2]")
    for args in (["report", run, "--out", tmp_path / "rep"], ["compare", run, run], ["merge", tmp_path / "m", run]):
        r = cli_run(*args)
        assert r.exit_code == 2 and "env.json: holds list, expected a JSON object" in r.output, (args, r.output)
    with pytest.raises(R.BadRunFile, match="env.json: holds list"):
        Runner(run, resume=True, progress=False, executor=FakeExecutor()).run(points())


# ---------------------------------------------------------------------------------- 9: OS errors
def test_a_full_disk_keeps_the_rows_written_and_resume_finishes(tmp_path, monkeypatch):
    import perfsuite.runner as runner_mod

    real, written = R.append_row, []

    def append_until_full(path, row):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(row["key"])
        real(path, row)

    monkeypatch.setattr(runner_mod, "append_row", append_until_full)
    pts = points()
    with pytest.raises(OSError) as exc:
        Runner(tmp_path / "run", progress=False, executor=FakeExecutor()).run(pts)
    assert exc.value.errno == errno.ENOSPC
    assert [r["key"] for r in R.read_rows(tmp_path / "run" / "results.jsonl")] == written == [p.key for p in pts[:2]]
    monkeypatch.setattr(runner_mod, "append_row", real)  # space freed
    result = Runner(tmp_path / "run", resume=True, progress=False, executor=FakeExecutor()).run(pts)
    assert result.resumed == 2 and sorted(r["key"] for r in result.rows) == sorted(p.key for p in pts)

    # through the CLI: one line, exit 2, the way to finish
    written.clear()
    monkeypatch.setattr(runner_mod, "append_row", append_until_full)
    monkeypatch.setattr(runner_mod, "LocalExecutor", FakeExecutor)
    r = cli_run("run", scenario_file(tmp_path), "--out", tmp_path / "cli", "--no-report", "--no-progress")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "No space left on device" in r.output and "rows written so far are kept" in r.output and "--resume" in r.output
    assert len(R.read_rows(tmp_path / "cli" / "results.jsonl")) == 2


def test_read_only_and_too_long_out_folders_exit_2(tmp_path, monkeypatch):
    import perfsuite.runner as runner_mod

    r = cli_run("run", scenario_file(tmp_path), "--out", tmp_path / ("x" * 300), "--no-report", "--no-progress")
    assert r.exit_code == 2 and "name too long" in r.output.lower() and len(r.output.strip().splitlines()) == 1

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(runner_mod, "LocalExecutor", FakeExecutor)
    monkeypatch.setattr(Path, "mkdir", read_only)
    r = cli_run("run", scenario_file(tmp_path), "--out", tmp_path / "ro", "--no-report", "--no-progress")
    assert r.exit_code == 2 and "Read-only file system" in r.output and "writable --out" in r.output


# ------------------------------------------------------------------------- 10: cgroup memory
def _fake_host(tmp_path, available_kib: int) -> Path:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_kib} kB\n")
    return meminfo


@pytest.mark.parametrize("layout,expected", [
    ({"memory.max": "1073741824\n"}, (1073741824, "memory.max")),                       # v2 at the root
    ({"job/memory.max": "2147483648\n", "memory.max": "max\n"}, (2147483648, "job/memory.max")),  # v2, own cgroup
    ({"memory.max": "max\n"}, None),                                                        # v2 unlimited
    ({"memory/job/memory.limit_in_bytes": "536870912\n"}, (536870912, "memory/job/memory.limit_in_bytes")),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),                      # v1 unlimited
    ({}, None),                                                                             # no cgroup fs
])
def test_memory_planning_uses_the_smaller_of_host_and_cgroup(tmp_path, layout, expected):
    from perfsuite.measure.memory import host_memory

    root = tmp_path / "cgroup"
    for rel, text in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    self_cgroup = tmp_path / "self_cgroup"
    self_cgroup.write_text("4:memory:/job\n0::/job\n")
    meminfo = _fake_host(tmp_path, 8 * 1024 * 1024)  # 8 GiB available
    got, source = host_memory(meminfo, root, self_cgroup)
    if expected is None:
        assert got == 8 * 1024 ** 3 and source.startswith("host MemAvailable")
    else:
        assert got == expected[0] and "cgroup memory limit" in source and f"({root / expected[1]})" in source
    # a limit above the host's available memory does not raise it
    small = _fake_host(tmp_path, 1024)
    assert host_memory(small, root, self_cgroup)[0] == 1024 * 1024


def test_the_cgroup_limit_reaches_env_json_dry_run_and_the_skip_rule(tmp_path, monkeypatch):
    from perfsuite.environment import collect_env
    from perfsuite.measure import memory
    from perfsuite.runner import plan_point

    (tmp_path / "memory.max").write_text("1048576\n")  # a 1 MiB container
    (tmp_path / "self").write_text("0::/\n")
    monkeypatch.setattr(memory, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(memory, "SELF_CGROUP", tmp_path / "self")
    assert memory.device_memory_bytes("cpu") == 1048576
    env = collect_env("cpu", roofline=False)
    assert env["memory_bytes"] == 1048576 and "cgroup memory limit" in env["memory_source"]
    big = points(features=[4096], batch=[64], seq_lens=[512])[0]
    assert plan_point(big, env["memory_bytes"]).status == "skipped"
    r = cli_run("run", scenario_file(tmp_path), "--dry-run")
    assert r.exit_code == 0 and "memory 1 MiB (cgroup memory limit" in r.output


# ------------------------------------------------------------- summary: reasons and escaping
def test_the_terminal_summary_groups_the_reasons_of_rows_not_ok():
    from rich.console import Console

    from perfsuite.summary import reason_groups, summary_table

    rows = [{"key": f"k{i}", "neuron": "dsn", "status": "unsupported", "reason": "triton needs CUDA"} for i in range(3)]
    rows += [{"key": "e", "neuron": "psn", "status": "error", "reason": "bad [/x] markup"},
             {"key": "o", "neuron": "lif", "status": "ok", "reason": None}]
    assert reason_groups(rows) == [("unsupported", "triton needs CUDA", 3), ("error", "bad [/x] markup", 1)]
    console = Console(record=True, width=200)
    console.print(summary_table(rows))
    text = console.export_text()
    assert "3 unsupported: triton needs CUDA" in text and "1 error: bad [/x] markup" in text


def test_summary_md_escapes_every_data_borne_text():
    from perfsuite.summary import summary_markdown

    evil = "<script>alert(1)</script> | ```"
    rows = [{"key": "k|<b>", "neuron": "<img src=x onerror=alert(1)>|", "status": "error", "reason": evil}]
    env = {"reproduce": {"command": "perfsuite run x.yaml ```\n# <script>", "commit": "abc", "note": "<i>n</i>"}}
    md = summary_markdown(rows, env)
    prose = md.split("````sh")[0]  # outside the fenced reproduce block no tag survives
    assert "<script>" not in prose and "<img" not in prose and "<i>" not in prose
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "&lt;script&gt;" in md
    table_row = next(line for line in md.splitlines() if "onerror" in line)
    assert table_row.count(" | ") == 12  # 13 cells: no '|' from the data splits a cell
    # the reproduce block's fence is longer than the backtick run inside it
    assert "````sh\ngit checkout abc\nperfsuite run x.yaml ```\n# <script> --out NEW_FOLDER\n````" in md
