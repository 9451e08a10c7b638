"""Hostile and broken scenario files (issue #10 items 7, 8, 11, 13; #14 items 3, 5): each gives exit 2 with
a located one-line problem, in bounded time and memory, never a traceback; plugins are code and can be
refused; `timing.threads` reaches the points."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from perfsuite import cli
from perfsuite.neurons import plugins
from perfsuite.scenario import MAX_POINTS, ScenarioError, load_scenario
from perfsuite.scenario.yaml_load import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

ROOT = Path(__file__).resolve().parents[1]
BASE = "name: t\nneurons: [lif]\nseq_lens: [8]\nfeatures: [4]\n"


def validate(*args, timeout_s: float = 30.0):
    """`perfsuite validate ARGS` in this process: (exit code, output); asserts no traceback and a time bound."""
    t0 = time.monotonic()
    result = CliRunner().invoke(cli.app, ["validate", *map(str, args)])
    took = time.monotonic() - t0
    assert took < timeout_s, f"validate took {took:.1f} s"
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def write(tmp_path: Path, text: str | bytes, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def problem_lines(text: str, file: Path) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith(str(file)) and "invalid scenario" not in ln]


# ------------------------------------------------------------------------------ #10 item 8: no tracebacks
BILLION_LAUGHS = "name: t\n" + "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}" if i else '"lol"'] * 10) + "]\n"
    for i in range(9))

ITEM8 = [
    ("deep_lists", "name: t\nneurons: " + "[" * 600 + "]" * 600 + "\n", "nesting deeper than"),
    ("deep_maps", "name: t\nneurons: " + "{a: " * 600 + "1" + "}" * 600 + "\n", "nesting deeper than"),
    ("bad_float_tag", BASE.replace("[8]", "[!!float abc]"), "'abc' is not a valid float"),
    ("bad_int_tag", BASE.replace("[8]", "[!!int xyz]"), "is not a valid int"),
    ("bad_timestamp_tag", BASE + "description: !!timestamp 2020-99-99x\n", "YAML"),
    ("huge_number", BASE.replace("[8]", "[" + "9" * 5000 + "]"), "a number of 5000 digits"),
    ("seed_2_64", BASE + f"seed: {2 ** 64}\n", "an int >= 0 and < 2**63"),
    ("name_newline", BASE.replace("name: t", 'name: "smoke\\n"'), "a non-empty name of letters"),
    ("duplicate_key", BASE + "seq_lens: [16]\n", "first given on line 3"),
    ("alias_bomb", BILLION_LAUGHS, f"more than {MAX_NODES} values once aliases are expanded"),
]


@pytest.mark.parametrize("name,text,expected", ITEM8, ids=[c[0] for c in ITEM8])
def test_hostile_yaml_is_a_located_problem(tmp_path, name, text, expected):
    file = write(tmp_path, text)
    code, out = validate(file)
    assert code == 2 and expected in out, out
    lines = problem_lines(out, file)
    assert lines and all(ln.startswith(str(file)) for ln in lines)


def test_duplicate_key_names_both_lines(tmp_path):
    file = write(tmp_path, BASE + "batch: [1]\nseq_lens: [16]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(file)
    (p,) = [p for p in info.value.problems if p.path == "seq_lens"]
    assert p.line == 6 and "duplicate key (line 6)" in p.what and "first given on line 3" in p.expected


def test_non_utf8_and_oversized_files(tmp_path):
    file = write(tmp_path, b"name: t\nneurons: [lif\xff\xfe]\n")
    code, out = validate(file)
    assert code == 2 and "not UTF-8" in out and "line 2" in out
    big = write(tmp_path, "# " + "x" * MAX_FILE_BYTES + "\n" + BASE, "big.yaml")
    code, out = validate(big)
    assert code == 2 and "file too large" in out


def test_seed_bound_is_what_torch_accepts(tmp_path):
    from perfsuite.scenario.schema import MAX_SEED

    torch.Generator().manual_seed(MAX_SEED + 2_000_000)  # the largest seed plus the runs' offsets
    assert load_scenario(write(tmp_path, BASE + f"seed: {MAX_SEED}\n")).seed == MAX_SEED
    code, out = validate(write(tmp_path, BASE + f"seed: {MAX_SEED + 1}\n"))
    assert code == 2 and "seed" in out


def test_depth_limit_allows_ordinary_nesting(tmp_path):
    nested = BASE + "description: " + "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3) + "\n"
    code, out = validate(write(tmp_path, nested))
    assert code == 2 and "description: invalid value" in out  # read fine, rejected by the schema (not a string)


def test_problems_carry_their_line(tmp_path):
    file = write(tmp_path, "name: t\nneurons:\n  - lif\n  - {name: lif, params: {tua: 1}}\nseq_lens: [8]\n"
                           "features: [4]\nprecisions: [fp33]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(file)
    lines = {p.path: p.line for p in info.value.problems}
    assert lines["neurons[1].params.tua"] == 4 and lines["precisions[0]"] == 7
    assert f"{file}:7: precisions[0]: unknown precision 'fp33'" in str(info.value)


# ------------------------------------------------------------------- #10 item 7: bounded time and memory
def test_points_are_capped_with_the_product_named(tmp_path):
    text = BASE.replace("seq_lens: [8]", "seq_lens: {start: 1, stop: 10000, step: 1}") + \
        "batch: {start: 1, stop: 10000, step: 1}\n"
    code, out = validate(write(tmp_path, text))
    assert code == 2 and "100000000 points" in out and f"at most {MAX_POINTS} points" in out
    assert "neurons[0]: 1 backends x 10000 seq_lens x 10000 batch" in out


@pytest.mark.parametrize("text", [
    "name: t\nneurons: [dsn]\nseq_lens: [8]\nfeatures: [1000000000]\n",
    "name: t\nneurons: [dsn]\nseq_lens: [8]\nfeatures: [4]\nworkload: {type: network, hidden: 1000000000}\n",
    "name: t\nneurons: [psn]\nseq_lens: [1000000]\nfeatures: [4]\n",
], ids=["features_1e9", "hidden_1e9", "psn_T_1e6"])
def test_huge_sizes_are_checked_without_allocating(tmp_path, text):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out = validate(write(tmp_path, text))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert code == 0, out
    assert (after - before) * 1024 < 1e9  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("param", ["k: 1000000000000", "k: 1000000000"])
def test_huge_integer_parameters_are_refused_before_building(tmp_path, param):
    text = f"name: t\nneurons: [{{name: sliding_psn, params: {{{param}}}}}]\nseq_lens: [8]\nfeatures: [4]\n"
    code, out = validate(write(tmp_path, text), timeout_s=10)
    assert code == 2 and "neurons[0].params.k" in out and "an int of magnitude <= 1048576" in out


# ------------------------------------------------------------------- #10 item 11: plugins in bounded time
SLOW_IMPORT = "import time\ntime.sleep(5)\n"
EXIT_IMPORT = "import sys\nsys.exit(7)\n"
HANGING_CTOR = '''
import time
from dataclasses import replace
from perfsuite.neurons.lif import LIF


class Hang(LIF):
    spec = replace(LIF.spec, name="hang")

    def __init__(self, *, backend="eager", tau=2.0, hang=False):
        if hang:
            time.sleep(5)
        super().__init__(backend=backend, tau=tau)
'''


@pytest.mark.parametrize("source,expected", [(SLOW_IMPORT, "did not finish within 0.5 s"),
                                             (EXIT_IMPORT, "SystemExit(7) raised")], ids=["hangs", "sys_exit"])
def test_plugin_import_is_time_bounded_and_cannot_exit(tmp_path, monkeypatch, source, expected):
    mod = f"user_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{mod}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "PLUGIN_TIMEOUT_S", 0.5)
    file = write(tmp_path, BASE.replace("[lif]", f'["{mod}:Neuron"]'))
    code, out = validate(file, timeout_s=4)
    assert code == 2 and f"bad plugin '{mod}:Neuron'" in out and expected in out, out


def test_hanging_plugin_constructor_is_time_bounded(tmp_path, monkeypatch):
    mod = f"user_hang_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent(HANGING_CTOR))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "PLUGIN_TIMEOUT_S", 0.5)
    file = write(tmp_path, BASE.replace("[lif]", f'[{{plugin: "{mod}:Hang", params: {{hang: true}}}}]'))
    code, out = validate(file, timeout_s=4)
    assert code == 2 and "neurons[0].params: rejected by the neuron: {'hang': True}" in out, out
    assert f"building {mod}:Hang did not finish within 0.5 s" in out


# ------------------------------------------------------------------------- #10 item 13: plugins are code
def test_no_plugins_refuses_plugin_entries_without_importing(tmp_path, monkeypatch):
    mod = f"user_marker_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "imported"
    (tmp_path / f"{mod}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    file = write(tmp_path, BASE.replace("[lif]", f'[lif, "{mod}:X", {{plugin: "{mod}:Y"}}]'))
    code, out = validate("--no-plugins", file)
    assert code == 2 and not marker.exists()
    assert f"neurons[1]: plugin refused: '{mod}:X'" in out and f"neurons[2].plugin: plugin refused: '{mod}:Y'" in out
    result = CliRunner().invoke(cli.app, ["run", "--no-plugins", "--dry-run", str(file)])
    assert result.exit_code == 2 and "plugin refused" in result.output and not marker.exists()


def test_valid_plugin_scenario_is_named_as_code(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    file = write(tmp_path, BASE.replace("[lif]", '["tests.plugins.bad_neurons:RaisingNeuron"]'))
    code, out = validate(file)
    assert code == 0 and "runs plugin code: tests.plugins.bad_neurons:RaisingNeuron" in out


def test_python_m_does_not_import_from_the_current_folder(tmp_path):
    marker = tmp_path / "evil_ran"
    (tmp_path / "evilmod_cwd.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    file = write(tmp_path, BASE.replace("[lif]", '["evilmod_cwd:X"]'))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "perfsuite", "validate", file.name], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not importable" in proc.stderr, proc.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------- #14 items 3 and 5: many files
def test_validate_takes_many_files_and_lists_every_problem(tmp_path):
    good = write(tmp_path, BASE, "good.yaml")
    bad1 = write(tmp_path, BASE.replace("[lif]", "[lfi]"), "bad1.yaml")
    bad2 = write(tmp_path, BASE + "seed: -1\n", "bad2.yaml")
    code, out = validate(good, bad1, bad2)
    assert code == 2
    assert f"{good}: valid" in out and f"{bad1}:2: neurons[0]: unknown neuron 'lfi'" in out
    assert f"{bad2}:5: seed: invalid value -1" in out and "1 of 3 files valid; 2 invalid" in out
    code, out = validate(good, good)
    assert code == 0 and "2 of 2 files valid" in out


def test_shipped_scenarios_validate_together():
    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    code, out = validate(*files, timeout_s=120)
    assert code == 0 and f"{len(files)} of {len(files)} files valid" in out, out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_validate_says_up_front_what_is_unsupported_here(tmp_path):
    text = BASE.replace("[lif]", "[lif, psn]") + "backends: [eager, triton]\nmodes: [forward, step]\ndevice: cpu\n"
    code, out = validate(write(tmp_path, text))
    assert code == 0
    assert "of 8 points unsupported here" in out
    assert "triton" in out and "psn has no serial inference" in out
    code, out = validate(write(tmp_path, BASE + "device: cuda\n"))
    assert code == 0 and "1 of 1 points are for device cuda" in out


# --------------------------------------------------------------------------------- timing.threads
def test_timing_threads_default_and_override(tmp_path):
    sc = load_scenario(write(tmp_path, BASE))
    assert sc.points(device="cpu")[0].timing.threads == 1
    assert sc.points(device="cuda")[0].timing.threads is None
    net = load_scenario(write(tmp_path, BASE + "workload: network\n"))
    assert net.points(device="cpu")[0].timing.threads is None
    assert load_scenario(write(tmp_path, BASE + "timing: {threads: 3}\n")).points(device="cuda")[0].timing.threads == 3
    assert load_scenario(write(tmp_path, BASE + "timing: {threads: null}\n")).points(device="cpu")[0].timing.threads \
        is None
    code, out = validate(write(tmp_path, BASE + "timing: {threads: 0}\n"))
    assert code == 2 and "timing.threads: invalid value 0; expected an int >= 1 or null" in out
    # the key does not change a point's identity: rows stay comparable across thread settings
    a = load_scenario(write(tmp_path, BASE + "timing: {threads: 2}\n")).points(device="cpu")[0]
    assert a.key == sc.points(device="cpu")[0].key


def test_yaml_load_reports_bad_yaml_in_memory():
    from perfsuite.scenario.yaml_load import parse_yaml

    data, lines, problems = parse_yaml("a: 1\nb: {c: 2}\n")
    assert data == {"a": 1, "b": {"c": 2}} and lines == {"a": 1, "b": 2, "b.c": 2} and problems == []
    data, _, problems = parse_yaml(yaml.safe_dump({"x": [1, 2]}) + "x: 3\n")
    assert problems and problems[0].path == "x"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_says_up_front_what_is_unsupported_here(tmp_path):
    text = BASE + "backends: [triton]\ndevice: cpu\nmetrics: [time]\n"
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.app, ["run", str(write(tmp_path, text)), "--out", str(out), "--no-report",
                                          "--no-progress", "--no-roofline"])
    assert result.exit_code == 0, result.output
    head = result.output.split("note: ", 1)[1]
    assert head.startswith("1 of 1 points unsupported here") and "triton" in head.splitlines()[1]


@pytest.mark.parametrize("params,expected", [("{vocab: 100000}", "task_params.vocab: invalid value 100000; expected an "
                                              "int <= 256"),
                                             ("{vocab: 4, concentration: .nan}", "invalid task parameters")],
                         ids=["vocab_1e5", "nan"])
def test_extrapolation_task_parameters_are_bounded(tmp_path, params, expected):
    text = f"name: t\nextrapolation: {{task: markov_lm, task_params: {params}, train_len: 8, eval_lens: [8]}}\n"
    code, out = validate(write(tmp_path, text), timeout_s=20)
    assert code == 2 and expected in out, out


def test_python_m_in_a_checkout_keeps_the_checkout_importable(tmp_path, monkeypatch):
    """`python -m perfsuite` run in place from a checkout: the folder perfsuite came from stays on sys.path
    (its workers import perfsuite from it); any other current folder is dropped."""
    from perfsuite import __main__ as entry

    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    monkeypatch.chdir(tmp_path)
    entry._strip_cwd()
    assert sys.path[0] != ""
    sys.path.insert(0, str(ROOT))
    monkeypatch.chdir(ROOT)
    entry._strip_cwd()
    assert sys.path[0] == str(ROOT)
