"""The perfsuite CLI: exit codes (2 for user mistakes, never a traceback), dry-run, list, env, merge."""
import json
import re
import shlex
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
    assert all(re.search(r">= [\d.]+(e[+-]?\d+)? (B|KiB|MiB|GiB)\b", line) or "unsupported" in line for line in lines)
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


@pytest.mark.slow
def test_run_end_to_end_records_the_command_and_builds_the_report(tmp_path):
    sc = write(tmp_path, {**GOOD, "neurons": ["lif"], "modes": ["forward"],
                          "timing": {"warmup_ms": 1, "rep_ms": 2, "min_reps": 3, "max_reps": 5}})
    out = tmp_path / "run"
    r = invoke("run", sc, "--out", out, "--device", "cpu", "--no-progress", "--no-roofline")
    assert r.exit_code == 0, r.output
    env = json.loads((out / "env.json").read_text())
    # what ran, and how to run it again: as typed without --out, with the commit of the checkout
    assert env["command"] == f"perfsuite run {sc} --out {out} --device cpu --no-roofline --no-progress"
    rep = env["reproduce"]
    assert rep["command"] == f"perfsuite run {sc} --device cpu --no-roofline --no-progress"
    assert rep["commit"] == env["commit"] and "--out a new folder" in rep["note"]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["ok"]
    assert (out / "report.html").exists() and (out / "report.md").exists()
    md = (out / "report.md").read_text()
    assert f"{rep['command']} --out NEW_FOLDER" in md
    if env["commit"]:  # None outside a git checkout
        assert f"git checkout {env['commit'].removesuffix('-dirty')}" in md
    # the recorded command runs as printed, into a new folder
    again = tmp_path / "again"
    r = invoke(*shlex.split(rep["command"])[1:], "--out", again, "--no-report")
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["key"] for line in (again / "results.jsonl").read_text().splitlines()] == \
        [row["key"] for row in rows]


def test_dry_run_without_a_cuda_device_lists_the_points(tmp_path, monkeypatch):
    """Planning a GPU sweep on a CPU-only machine: the points and their lower bounds, memory unknown."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sc = write(tmp_path, {**GOOD, "device": "cuda", "modes": ["forward"], "limits": {"memory_gb": 1e-7}})
    for args in ([], ["--device", "cuda"]):
        r = invoke("run", sc, "--dry-run", *args)
        assert r.exit_code == 0, r.output
        assert "tiny: 2 timed points on cuda; device memory unknown (no CUDA device here)" in r.output
        lines = [line for line in r.output.splitlines() if line.strip()[:1].isdigit()]
        assert len(lines) == 2 and all(">= " in line for line in lines)
        # limits.memory_gb still skips: the lower bound is above 107 bytes
        assert all("skipped: predicted at least" in line for line in lines)


EXTRA_ONLY = {"name": "extra", "device": "cpu",
              "extrapolation": {"task": "markov_lm", "train_len": 8, "eval_lens": [8, 16, 32], "steps": 1,
                                "neurons": ["lif", "dsn"]}}


def test_extrapolation_rows_are_counted_by_validate_and_dry_run(tmp_path):
    sc = write(tmp_path, EXTRA_ONLY)
    plan = "0 timed points, 6 extrapolation rows (2 neurons × 3 evaluation lengths)"
    r = invoke("validate", sc)
    assert r.exit_code == 0 and f"{sc}: {plan}" in r.output
    r = invoke("run", sc, "--dry-run")
    assert r.exit_code == 0 and f"extra: {plan} on cpu" in r.output
    # the block runs in shard 1 only
    assert "extra: 0 timed points on cpu" in invoke("run", sc, "--dry-run", "--shard", "2/2").output
    assert plan in invoke("run", sc, "--dry-run", "--shard", "1/2").output
    both = write(tmp_path, {**GOOD, "extrapolation": {**EXTRA_ONLY["extrapolation"], "neurons": ["lif"]}}, "both.yaml")
    r = invoke("validate", both)
    assert "valid; 4 points" in r.output and "4 timed points, 3 extrapolation rows (1 neuron × 3 evaluation lengths)" \
        in r.output
    # a scenario without the block gets no extra line
    assert "timed point" not in invoke("validate", write(tmp_path, GOOD)).output


def fake_part(tmp_path, name, rows, **env):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "env.json").write_text(json.dumps({"device": "cpu", "torch": "2.13", "commit": "abc", **env}))
    (folder / "results.jsonl").write_text("".join(json.dumps({"key": k, "status": s}) + "\n" for k, s in rows))
    return folder


def test_merge_refuses_mixed_parts_with_exit_2_unless_forced(tmp_path):
    a = fake_part(tmp_path, "a", [("k1", "ok"), ("k2", "error")])
    b = fake_part(tmp_path, "b", [("k2", "ok")], torch="2.12")
    r = invoke("merge", tmp_path / "all", a, b)
    assert r.exit_code == 2 and "merge refused" in r.output
    assert f"{b} vs {a}: torch '2.12' != '2.13'" in r.output and f"k2 in {a}, {b}" in r.output
    assert not (tmp_path / "all").exists()
    r = invoke("merge", tmp_path / "all", a, b, "--force")
    assert r.exit_code == 0, r.output
    assert "environments differ" in r.output and f"k2 held by {a}, {b}: kept {b} (the ok row)" in r.output
    assert "merged 2 parts" in r.output
    env = json.loads((tmp_path / "all" / "env.json").read_text())
    assert [m["env"]["torch"] for m in env["merged_from"]] == ["2.13", "2.12"]
    # shards of one run merge without --force
    c = fake_part(tmp_path, "c", [("k3", "ok")])
    r = invoke("merge", tmp_path / "ac", a, c)
    assert r.exit_code == 0 and "warning" not in r.output


def test_report_of_a_forced_merge_shows_each_part_and_the_override(tmp_path):
    point = {"neuron": "lif", "backend": "eager", "mode": "forward", "precision": "fp32", "seq_len": 8, "batch": 1,
             "features": 2}
    parts = []
    for name, torch_version, status in (("a", "2.13", "error"), ("b", "2.12", "ok")):
        folder = tmp_path / name
        folder.mkdir()
        rep = {"command": f"perfsuite run sc.yaml --shard {name}", "commit": "abc123-dirty", "note": "n"}
        (folder / "env.json").write_text(json.dumps({"device": "cpu", "torch": torch_version, "commit": "abc123-dirty",
                                                     "reproduce": rep}))
        (folder / "results.jsonl").write_text(json.dumps({"key": "k", "status": status, **point}) + "\n")
        parts.append(folder)
    assert invoke("merge", tmp_path / "all", *parts, "--force").exit_code == 0
    r = invoke("report", tmp_path / "all")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "all" / "report.md").read_text()
    env_section = md.split("## Environment and how to reproduce", 1)[1].split("\n## ", 1)[0]
    for name in ("a", "b"):
        assert f"git checkout abc123\nperfsuite run sc.yaml --shard {name} --out NEW_FOLDER" in env_section
    assert "uncommitted changes to tracked files (abc123-dirty)" in env_section
    assert f"| merged_from | {parts[0]}, {parts[1]} |" in env_section
    assert "merged with --force" in env_section and "torch '2.12' != '2.13'" in env_section
