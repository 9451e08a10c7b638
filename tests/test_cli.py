"""The perfsuite CLI: exit codes (2 for user mistakes, never a traceback), dry-run, list, env, merge."""
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from perfsuite.cli import app

ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()


def invoke(*args):
    result = cli.invoke(app, [str(a) for a in args])
    # only a clean exit, never an exception escaping the command
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def write(tmp_path, data, name="sc.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


GOOD = {"name": "tiny", "device": "cpu", "neurons": ["lif", "psn"], "seq_lens": [8], "features": [4],
        "modes": ["forward", "step"], "metrics": ["time"]}


def test_validate_good_and_bad_files(tmp_path):
    r = invoke("validate", write(tmp_path, GOOD))
    assert r.exit_code == 0 and "valid; 4 points" in r.output
    r = invoke("validate", write(tmp_path, {**GOOD, "neurons": ["lfi"]}))
    assert r.exit_code == 2 and "neurons[0]" in r.output and "did you mean 'lif'" in r.output
    r = invoke("validate", tmp_path / "missing.yaml")
    assert r.exit_code == 2 and "file not found" in r.output


@pytest.mark.parametrize("args,message", [
    (["--shard", "0/2"], "1 <= i <= n"),
    (["--shard", "x"], "expected 'i/n'"),
    (["--resume"], "--resume needs --out"),
    (["--device", "gpu"], "gpu"),
])
def test_run_rejects_bad_options_with_exit_2(tmp_path, args, message):
    r = invoke("run", write(tmp_path, GOOD), *args)
    assert r.exit_code == 2 and message in r.output


def test_run_refuses_an_out_path_that_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = invoke("run", write(tmp_path, GOOD), "--out", afile)
    assert r.exit_code == 2 and "is a file; expected a run folder" in r.output


def test_run_refuses_a_folder_that_holds_rows(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.jsonl").write_text('{"key": "k", "status": "ok"}\n')
    r = invoke("run", write(tmp_path, GOOD), "--out", out)
    assert r.exit_code == 2 and "already holds 1 rows" in r.output


def test_dry_run_lists_points_with_predicted_memory(tmp_path):
    sc = {**GOOD, "limits": {"memory_gb": 1e-7}}  # 107 bytes
    r = invoke("run", write(tmp_path, sc), "--dry-run")
    assert r.exit_code == 0
    lines = [line for line in r.output.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 4
    assert all(">= " in line and " B" in line or "unsupported" in line for line in lines)
    assert "skipped: predicted at least" in r.output  # below every point's lower bound
    assert "unsupported: psn has no serial inference" in r.output
    assert not (tmp_path / "reports").exists()  # nothing ran


@pytest.mark.parametrize("what,expect", [("neurons", "lif"), ("backends", "eager"), ("devices", "cpu")])
def test_list(what, expect):
    r = invoke("list", what)
    assert r.exit_code == 0 and expect in r.output


def test_list_rejects_unknown_topic():
    r = invoke("list", "gpus")
    assert r.exit_code == 2


def test_env_prints_json():
    r = invoke("env", "--device", "cpu")
    assert r.exit_code == 0
    env = json.loads(r.output)
    assert env["device"] == "cpu" and env["torch"] and "roofline" not in env


def test_merge_and_report_name_missing_folders(tmp_path):
    r = invoke("merge", tmp_path / "out", tmp_path / "nope")
    assert r.exit_code == 2 and "no results.jsonl" in r.output
    r = invoke("report", tmp_path / "nope")
    assert r.exit_code == 2 and "no results.jsonl" in r.output


def test_run_end_to_end_records_the_command_and_builds_the_report(tmp_path):
    sc = write(tmp_path, {**GOOD, "neurons": ["lif"], "modes": ["forward"],
                          "timing": {"warmup_ms": 1, "rep_ms": 2, "min_reps": 3, "max_reps": 5}})
    out = tmp_path / "run"
    r = invoke("run", sc, "--out", out, "--no-progress", "--no-roofline")
    assert r.exit_code == 0, r.output
    env = json.loads((out / "env.json").read_text())
    assert env["command"] == f"perfsuite run {sc} --out {out}"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["ok"]
    assert (out / "report.html").exists() and (out / "report.md").exists()
    assert env["command"] in (out / "report.md").read_text()
