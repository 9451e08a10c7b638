"""`perfsuite profile` as a user meets it: --match on whole key segments, a progress bar on a terminal,
and no libkineto chatter in the output (#14 items 6 and 7)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfsuite import profile as prof

ROOT = Path(__file__).resolve().parents[1]
TINY = ("name: tiny\ndevice: cpu\nseed: 0\nbackends: [eager]\nseq_lens: [8]\nbatch: [1]\nfeatures: [4]\n"
        "precisions: [fp32]\nmodes: [forward]\nmetrics: [time]\nneurons: [lif, psn, spsn, "
        "{name: masked_psn, params: {k: 2}}, {name: sliding_psn, params: {k: 2}}]\n")


def _key(neuron, backend="eager", mode="forward", precision="fp32"):
    return f"{neuron}/{backend}/{mode}/{precision}/8/1/4/layer#0123456789"


# ------------------------------------------------------------------------------------------ --match
@pytest.mark.parametrize("pattern", ["psn", "psn/", "/psn/", "psn/eager", "psn/*/forward", "psn/eager/forward/fp32"])
def test_match_selects_psn_and_not_its_relatives(pattern):
    assert prof.point_matches(pattern, _key("psn"))
    for other in ("masked_psn", "sliding_psn", "spsn"):
        assert not prof.point_matches(pattern, _key(other)), (pattern, other)


@pytest.mark.parametrize("pattern,selected", [
    ("*psn", {"psn", "masked_psn", "sliding_psn", "spsn"}),
    ("*_psn", {"masked_psn", "sliding_psn"}),
    ("s?sn", {"spsn"}),
    ("train", {"lif"}),
    ("/train/", {"lif"}),
    ("eager/train", {"lif"}),
    ("train/eager", set()),  # segments in the key's order only
    ("bf16", {"spsn"}),
    ("8/1", {"lif", "psn", "masked_psn", "sliding_psn", "spsn"}),  # T then B
    ("layer", {"lif", "psn", "masked_psn", "sliding_psn", "spsn"}),  # the #hash is not part of the last segment
    ("ps", set()),  # no substring matching
    ("0123456789", set()),
])
def test_match_segments_and_wildcards(pattern, selected):
    keys = {"lif": _key("lif", mode="train"), "psn": _key("psn"), "masked_psn": _key("masked_psn"),
            "sliding_psn": _key("sliding_psn"), "spsn": _key("spsn", precision="bf16")}
    assert {n for n, k in keys.items() if prof.point_matches(pattern, k)} == selected


@pytest.mark.parametrize("pattern", ["", "/", "//", "psn//eager"])
def test_match_rejects_empty_segments(pattern):
    with pytest.raises(ValueError, match="--match .* is invalid; expected key segments"):
        prof.point_matches(pattern, _key("psn"))


def _cli(args, tmp_path):
    from typer.testing import CliRunner

    from perfsuite.cli import app

    (tmp_path / "tiny.yaml").write_text(TINY)
    return CliRunner().invoke(app, ["profile", str(tmp_path / "tiny.yaml"), *args])


def test_cli_match_psn_profiles_psn_only(tmp_path):
    out = tmp_path / "prof"
    r = _cli(["--out", str(out), "--steps", "1", "--match", "psn/"], tmp_path)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / prof.PROFILES_FILE).read_text().splitlines()]
    assert [row["neuron"] for row in rows] == ["psn"]
    # no terminal under the test runner: no progress bar drawn
    assert "points" not in r.output.split("┏")[0]


@pytest.mark.parametrize("pattern,message", [("psn//x", "is invalid"), ("nothing", "no point of")])
def test_cli_match_user_mistakes_exit_2(tmp_path, pattern, message):
    r = _cli(["--out", str(tmp_path / "p"), "--match", pattern], tmp_path)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "p").exists()


def test_cli_progress_bar_on_a_terminal_and_not_with_no_progress(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from perfsuite.cli import common

    for flag, drawn in ((None, True), ("--no-progress", False)):
        buf = io.StringIO()
        monkeypatch.setattr(common, "err", Console(file=buf, force_terminal=True, width=120))
        out = tmp_path / f"p{drawn}"
        r = _cli(["--out", str(out), "--steps", "1", "--match", "lif"] + [flag] * bool(flag), tmp_path)
        assert r.exit_code == 0, r.output
        assert ("1/1" in buf.getvalue()) is drawn, buf.getvalue()


# ------------------------------------------------------------------------------------------ chatter
def test_quiet_profiler_drops_kineto_lines_and_keeps_the_rest(capfd):
    with prof.quiet_profiler():
        os.write(2, b"USDT:2026-12-01 12:16:54 9478:9478 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"RuntimeError: a real problem\n")
        os.write(2, b"UserWarning: USDT in a line that is not kineto's is kept\n")
        os.write(2, b"USDT:2026-12-01 12:16:54 9478:9478 SyncActivityProfilerHandler.cpp:59] profiler_stop\n")
        os.write(1, b"stdout is untouched\n")
    cap = capfd.readouterr()
    assert cap.err == "RuntimeError: a real problem\nUserWarning: USDT in a line that is not kineto's is kept\n"
    assert cap.out == "stdout is untouched\n"


def test_quiet_profiler_restores_stderr_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError, match="boom"):
        with prof.quiet_profiler():
            os.write(2, b"kept before the error\n")
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "kept before the error\nafter\n"


def test_profile_command_output_holds_no_usdt_line(tmp_path):
    """The real command in a fresh process (libkineto writes to file descriptor 2, which the in-process
    CLI runner does not see)."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "perfsuite", "profile", str(tmp_path / "tiny.yaml"), "--out",
                        str(tmp_path / "p"), "--steps", "1", "--match", "lif"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "lif/eager/forward" in r.stdout
    assert "USDT" not in r.stdout + r.stderr, r.stderr
