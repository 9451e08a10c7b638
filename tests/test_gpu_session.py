"""What of the GPU session can be checked on the CPU: scripts/goals.py against synthetic rows, the session
script's syntax, its step bookkeeping and packing on fake runs, and the scenarios it runs."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfsuite.cli import app
from perfsuite.scenario import load_scenario
from tests.synthetic_runs import make_run, time_ms

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"
_spec = importlib.util.spec_from_file_location("goals", ROOT / "scripts" / "goals.py")
goals = importlib.util.module_from_spec(_spec)
sys.modules["goals"] = goals  # dataclasses look their module up there
_spec.loader.exec_module(goals)

N = goals.GOAL_NEURONS
#: synthetic backend factors chosen so each goal lands clearly on one side of its threshold
FACTORS = {"triton": 0.1, "spikingjelly": 1.0, "compiled": 0.2, "eager": 1.5}
GOAL_RUN = dict(neurons=("lif", "dsn", "psn", "sliding_psn"), backends=("eager", "compiled", "triton", "spikingjelly"),
                seq_lens=(1024, 4096, 16384), batch=8, features=4096, noise=0.0, backend_factor=FACTORS)


def by_goal(result):
    out = {}
    for g in result:
        out.setdefault(g.goal, []).append(g)
    return out


def test_goals_from_synthetic_rows(tmp_path):
    run = make_run(tmp_path / "run", **GOAL_RUN)
    rows, copy = goals.load_rows([run])
    g = by_goal(goals.evaluate(rows, copy))
    lif_sj = g["LIF train >= 2x SpikingJelly's LIF"][0]
    assert lif_sj.value == pytest.approx(FACTORS["spikingjelly"] / FACTORS["triton"], rel=1e-6)
    assert lif_sj.verdict == "met"
    for sliding in g["sliding PSN >= 100x SpikingJelly's"]:  # forward and train, 10x < 100x
        assert sliding.value == pytest.approx(FACTORS["spikingjelly"] / FACTORS["triton"], rel=1e-6)
        assert sliding.verdict == "not met"
    # DSN vs PSN: the fastest contender of each (triton here), from the synthetic time model
    dsn_psn = g["DSN train >= 30x PSN (DSN paper: 25.6x, spec §5.4)"][0]
    want = time_ms("psn", "triton", "train", 16384) / time_ms("dsn", "triton", "train", 16384)
    assert dsn_psn.value == pytest.approx(want, rel=1e-6)
    assert dsn_psn.verdict == ("met" if want >= 30 else "not met")
    # bandwidth: the analytic min bytes of the row over its time, as a fraction of env's copy bandwidth
    row = next(r for r in rows if (r["neuron"], r["backend"], r["mode"], r["seq_len"]) == ("lif", "triton", "train", 16384))
    frac = row["cost"]["min_bytes"] / (row["time"]["median_ms"] * 1e-3) / 1e9 / copy[row["run_id"]]
    lif_bw = g["LIF train at >= 80 % of copy bandwidth"][0]
    assert lif_bw.value == pytest.approx(frac) and lif_bw.verdict == ("met" if frac >= 0.8 else "not met")
    tc = g["Triton at least as fast as compiled, every neuron"][0]
    assert tc.value == pytest.approx(FACTORS["compiled"] / FACTORS["triton"], rel=1e-6) and tc.verdict == "met"
    assert "dsn, lif, psn, sliding_psn" in tc.condition


def test_goals_ignore_failed_rows_other_sizes_and_say_not_measured(tmp_path):
    # SpikingJelly failed everywhere; a second run at another N has every backend: neither may count
    fails = {(n, "spikingjelly", m, T): ("unsupported", "spikingjelly not installed")
             for n in ("lif", "sliding_psn") for m in ("forward", "train") for T in (1024, 4096, 16384)}
    a = make_run(tmp_path / "a", failures=fails, **GOAL_RUN)
    b = make_run(tmp_path / "b", **{**GOAL_RUN, "features": 256})
    rows, copy = goals.load_rows([a, b])
    assert rows and all(r["neurons"] == N and r["status"] == "ok" for r in rows)
    g = by_goal(goals.evaluate(rows, copy))
    assert g["LIF train >= 2x SpikingJelly's LIF"][0].verdict == "not measured"
    assert all(x.verdict == "not measured" for x in g["sliding PSN >= 100x SpikingJelly's"])
    assert g["Triton at least as fast as compiled, every neuron"][0].verdict == "met"


def test_goals_bandwidth_not_measured_without_roofline(tmp_path):
    from tests.synthetic_runs import default_env

    run = make_run(tmp_path / "run", env=default_env("run", roofline=False), **GOAL_RUN)
    g = by_goal(goals.evaluate(*goals.load_rows([run])))
    bw = g["LIF train at >= 80 % of copy bandwidth"][0]
    assert bw.verdict == "not measured" and "copy bandwidth" in bw.measured


def test_goals_cli_writes_markdown_and_json_and_refuses_a_missing_run(tmp_path, capsys):
    run = make_run(tmp_path / "run", **GOAL_RUN)
    md, js = tmp_path / "goals.md", tmp_path / "goals.json"
    assert goals.main([str(run), "--markdown", str(md), "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    text = md.read_text()
    assert len(doc) == text.count("| **")  # one table line per goal
    assert {d["verdict"] for d in doc} <= {"met", "not met", "not measured"}
    assert goals.main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_session_script_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.parametrize("name", ["long_seq_quick", "extrapolation_quick"])
def test_session_scenarios_validate(name):
    result = CliRunner().invoke(app, ["validate", str(ROOT / "scenarios" / f"{name}.yaml")])
    assert result.exit_code == 0, result.output


def test_long_seq_quick_holds_every_goal_point():
    pts = load_scenario(ROOT / "scenarios" / "long_seq_quick.yaml").points("cuda")
    have = {(p.neuron, p.backend, p.mode, p.seq_len) for p in pts}
    assert all(p.batch * p.features == N for p in pts)
    need = [("lif", "triton", "train", 16384), ("lif", "spikingjelly", "train", 4096), ("dsn", "triton", "train", 16384),
            ("psn", "triton", "train", 16384), ("sliding_psn", "spikingjelly", "forward", 16384)]
    need += [(n, b, "train", 4096) for n in ("lif", "dsn", "psn", "sliding_psn") for b in ("triton", "compiled")]
    assert not [k for k in need if k not in have]


def _session(tmp_path, steps: str, budget: int = 525, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "BASELINES": str(tmp_path / "baselines"),
           "GPU_SESSION_SLUG": "fake-gpu", "GPU_SESSION_STEPS": steps, "GPU_SESSION_BUDGET_S": str(budget),
           **extra_env}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def _steps(tmp_path) -> dict[str, str]:
    lines = (tmp_path / "baselines" / "fake-gpu" / "session" / "steps.tsv").read_text().splitlines()[1:]
    return {ln.split("\t")[0]: ln.split("\t")[3] for ln in lines}


def test_session_noise_step_goals_and_pack_on_fake_runs(tmp_path):
    base = tmp_path / "baselines" / "fake-gpu"
    small = dict(neurons=("lif",), backends=("eager", "triton"), seq_lens=(1024, 4096), batch=4, features=256)
    make_run(base, seed=1, **small)
    make_run(base / "aa_run2", seed=2, **small)
    make_run(base / "long_seq_quick", **GOAL_RUN)
    p = _session(tmp_path, "noise")
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "out"
    assert sorted(f.name for f in out.iterdir()) == ["SUMMARY.md", "gpu_session.log", "gpu_session.tar.gz"]
    assert _steps(tmp_path) == {"noise": "ok"}
    # two A/A runs make a provisional floor only: never the noise_floor.json that scripts/gpu_ci.sh gates with
    floor = json.loads((base / "noise_floor_provisional.json").read_text())
    assert floor["points"] and floor["n_runs"] == 2 and len(floor["run_envs"]) == 2
    assert not (base / "noise_floor.json").exists()
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        names = set(tar.getnames())
    for member in ("results.jsonl", "noise_floor_provisional.json", "aa_run2/results.jsonl", "long_seq_quick/results.jsonl",
                   "session/goals.md", "session/goals.json", "session/steps.tsv", "session/gpu_session.log"):
        assert f"fake-gpu/{member}" in names, member
    summary = (out / "SUMMARY.md").read_text()
    assert "`noise_floor_provisional.json`" in summary and "provisional" in summary
    assert "| noise |" in summary and "| LIF train >= 2x SpikingJelly's LIF |" in summary
    assert summary.count("| **") == len(json.loads((base / "session" / "goals.json").read_text()))
    assert "=== noise: ok" in (out / "gpu_session.log").read_text()


def test_session_goes_on_after_a_failed_step_and_skips_steps_without_time(tmp_path):
    base = tmp_path / "baselines" / "fake-gpu"
    make_run(base, neurons=("lif",), backends=("eager",), seq_lens=(1024,))  # no A/A partner: noise fails
    p = _session(tmp_path, "noise")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _steps(tmp_path)["noise"].startswith("failed (exit")
    summary = (tmp_path / "out" / "SUMMARY.md").read_text()
    assert "no long_seq_quick rows: the goals were not checked" in summary
    assert (tmp_path / "out" / "gpu_session.tar.gz").exists()
    # a budget below the packing reserve leaves no time for any step
    p = _session(tmp_path, "noise extrap", budget=10)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _steps(tmp_path) == {"noise": "skipped: no time left", "extrap": "skipped: no time left"}


#: stands in for python in the kstatic step: the capability snippet (read from stdin) prints FAKE_ARCH's
#: answer, `-m perfsuite kernels` records its arguments and writes a small report; the rest is real python
FAKE_KSTATIC_PY = """#!/usr/bin/env bash
if [[ "$1" == "-" ]]; then cat > /dev/null; echo "$FAKE_ARCH"; exit 0; fi
if [[ "$1 $2 $3" == "-m perfsuite kernels" ]]; then
  echo "$@" > "$FAKE_ARGS"
  while [[ $# -gt 0 ]]; do
    case $1 in --json) echo '{{"format": "perfsuite-kernels/1", "rows": []}}' > "$2"; shift ;;
               --markdown) echo '# Static kernel report' > "$2"; shift ;; esac
    shift
  done
  exit 0
fi
exec {python} "$@"
"""


@pytest.mark.parametrize("arch", ["sm_90a", "none: sm_75 has no entry in perfsuite.kernels_static.ARCHES"])
def test_session_writes_the_static_kernel_report_into_its_run_folders(tmp_path, arch):
    base = tmp_path / "baselines" / "fake-gpu"
    make_run(base, neurons=("lif",), backends=("eager",), seq_lens=(1024,))
    make_run(base / "long_seq_quick", neurons=("lif",), backends=("eager",), seq_lens=(1024,))
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_KSTATIC_PY.format(python=sys.executable))
    fake.chmod(0o755)
    p = _session(tmp_path, "kstatic", PYTHON=str(fake), FAKE_ARCH=arch, FAKE_ARGS=str(tmp_path / "args"))
    assert p.returncode == 0, p.stdout + p.stderr  # the step is never fatal
    if arch.startswith("none"):
        assert _steps(tmp_path) == {"kstatic": "failed (exit 3)"}
        assert "sm_75 has no entry" in p.stdout and not (base / "kernels_static.json").exists()
        return
    assert _steps(tmp_path) == {"kstatic": "ok"}
    args = (tmp_path / "args").read_text().split()
    assert args[args.index("--arch") + 1] == "sm_90a" and args[args.index("--json") + 1].endswith("kernels_static.json")
    for d in (base, base / "long_seq_quick", base / "session"):
        assert json.loads((d / "kernels_static.json").read_text())["format"] == "perfsuite-kernels/1"
    assert not (base / "extrapolation_quick").exists()  # no run there: nothing copied, no folder made


# ----------------------------------------------------------------------------------- scripts/gpu_ci.sh
CI_SCRIPT = ROOT / "scripts" / "gpu_ci.sh"
#: stands in for python where scripts/gpu_ci.sh needs a GPU: gpu_slug's snippet (read from stdin) prints
#: the fake GPU's slug and `perfsuite run` copies a prepared candidate run; `perfsuite compare` is real
FAKE_PY = """#!/usr/bin/env bash
if [[ "$1" == "-" ]]; then cat > /dev/null; echo fake-gpu; exit 0; fi
if [[ "$1 $2 $3" == "-m perfsuite run" ]]; then
  prev=""; for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done
  mkdir -p "$out" && cp "$FAKE_CANDIDATE"/* "$out"/ && exit 0
fi
exec {python} "$@"
"""


def _gpu_ci(tmp_path, candidate, out: str = "ci") -> subprocess.CompletedProcess:
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PY.format(python=sys.executable))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "BASELINES": str(tmp_path / "baselines"), "FAKE_CANDIDATE": str(candidate)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(["bash", str(CI_SCRIPT), str(tmp_path / out)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_gpu_ci_script_syntax():
    subprocess.run(["bash", "-n", str(CI_SCRIPT)], check=True)


def test_gpu_ci_fails_on_untestable_findings(tmp_path):
    """Three samples a point cannot show a slowdown: the CI gate exits 1 (--fail-on-untestable), not 0."""
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64,), modes=("forward",), noise=0.0, samples=3)
    make_run(tmp_path / "baselines" / "fake-gpu", seed=1, **kw)
    p = _gpu_ci(tmp_path, make_run(tmp_path / "cand", seed=1, **kw))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "**FAIL: " in (tmp_path / "ci" / "gate.md").read_text()
    doc = json.loads((tmp_path / "ci" / "gate.json").read_text())
    assert doc["counts"]["untestable"] == 1 and doc["counts"]["regression"] == 0 and doc["fail_on_untestable"]


def test_gpu_ci_gates_with_noise_floor_json_never_the_provisional_one(tmp_path):
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64, 256), modes=("forward",), noise=0.0)
    base = make_run(tmp_path / "baselines" / "fake-gpu", seed=1, **kw)
    aa = make_run(tmp_path / "aa", seed=2, **kw)
    cand = make_run(tmp_path / "cand", seed=1, **kw)
    from perfsuite.compare import write_noise_floor

    write_noise_floor(base / "noise_floor_provisional.json", [base, aa])
    p = _gpu_ci(tmp_path, cand)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "only" in p.stderr and "noise_floor_provisional.json" in p.stderr and "gating without a noise floor" in p.stderr
    assert json.loads((tmp_path / "ci" / "gate.json").read_text())["noise_floor"] is None
    write_noise_floor(base / "noise_floor.json", [base, aa])
    p = _gpu_ci(tmp_path, cand, out="ci2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "gating without a noise floor" not in p.stderr
    doc = json.loads((tmp_path / "ci2" / "gate.json").read_text())
    assert doc["noise_floor"] == str(base / "noise_floor.json")
    # that floor came from 2 runs: the gate says so
    assert any("measured from 2 A/A run(s)" in w for w in doc["warnings"])


#: for the pull-request mode: `perfsuite ab` is faked (it needs a GPU); it records its arguments and writes
#: the ab.md / ab.json a real job writes, exiting with FAKE_AB_EXIT
FAKE_AB_PY = """#!/usr/bin/env bash
if [[ "$1" == "-" ]]; then cat > /dev/null; echo fake-gpu; exit 0; fi
if [[ "$1 $2 $3" == "-m perfsuite ab" ]]; then
  echo "$@" > "$FAKE_ARGS"
  prev=""; for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done
  mkdir -p "$out" && echo "## perfsuite ab (interleaved A/B)" > "$out/ab.md" && echo '{{"exit_code": 1}}' > "$out/ab.json"
  exit "$FAKE_AB_EXIT"
fi
if [[ "$1 $2 $3" == "-m perfsuite run" ]]; then echo "stored-baseline mode" >&2; exit 7; fi
exec {python} "$@"
"""


def _gpu_ci_pr(tmp_path, base_sha: str, head_sha: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_AB_PY.format(python=sys.executable))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "BASELINES": str(tmp_path / "baselines"), "BASE_SHA": base_sha,
           "HEAD_SHA": head_sha, "ROUNDS": "12", "FAKE_ARGS": str(tmp_path / "args"), "FAKE_AB_EXIT": "1",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    return subprocess.run(["bash", str(CI_SCRIPT), str(tmp_path / "ci")], env=env, capture_output=True, text=True,
                          timeout=120)


def _git_out(*args) -> str | None:
    p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def test_gpu_ci_pull_request_runs_ab_between_base_and_head(tmp_path):
    """With BASE_SHA/HEAD_SHA and a base that has perfsuite/ab_server.py, gpu_ci.sh runs `perfsuite ab` with
    both commits and ROUNDS, passes its exit code on and publishes ab.md as gate.md."""
    head = _git_out("rev-parse", "HEAD")
    if head is None or _git_out("cat-file", "-e", f"{head}:perfsuite/ab_server.py") is None:
        pytest.skip("needs a git checkout whose HEAD commit has perfsuite/ab_server.py")
    p = _gpu_ci_pr(tmp_path, head, head)
    assert p.returncode == 1, p.stdout + p.stderr
    args = (tmp_path / "args").read_text().split()
    assert args[:4] == ["-m", "perfsuite", "ab", "scenarios/ci_gpu.yaml"]
    assert args[args.index("--baseline") + 1] == head and args[args.index("--candidate") + 1] == head
    assert args[args.index("--rounds") + 1] == "12"
    assert (tmp_path / "ci" / "gate.md").read_text().startswith("## perfsuite ab")
    assert json.loads((tmp_path / "ci" / "gate.json").read_text()) == {"exit_code": 1}
    assert "perfsuite ab" in (tmp_path / "summary.md").read_text()


def test_gpu_ci_pull_request_with_a_base_older_than_ab_falls_back_to_the_stored_baseline(tmp_path):
    roots = _git_out("rev-list", "--max-parents=0", "HEAD")
    if not roots:
        pytest.skip("needs a git checkout with history")
    root = roots.split()[0]
    assert _git_out("cat-file", "-e", f"{root}:perfsuite/ab_server.py") is None
    p = _gpu_ci_pr(tmp_path, root, "HEAD")
    assert "predates perfsuite ab" in p.stderr
    assert not (tmp_path / "args").exists()  # ab was not run
    assert p.returncode == 2 and "no baseline for GPU 'fake-gpu'" in p.stderr  # the compare mode's own check
