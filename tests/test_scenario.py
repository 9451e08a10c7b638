"""Scenario files: every kind of bad input gives a located, explained error; expansion and keys are
stable; every shipped scenario validates."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from perfsuite import neurons
from perfsuite.results import point_key
from perfsuite.scenario import (
    Limits,
    ScenarioError,
    Timing,
    build_point,
    load_scenario,
)

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
BASE = {"name": "t", "neurons": ["lif"], "seq_lens": [8], "features": [4]}


def write(tmp_path, data, name="s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


def scenario(tmp_path, **changes):
    return load_scenario(write(tmp_path, {**BASE, **changes}))


def problems_of(path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


# ------------------------------------------------------------------------------------- bad inputs
# (changes to BASE, key path, bad value, a fragment of what is expected, close-match suggestion or None)
BAD = [
    ({"nuerons": ["lif"]}, "nuerons", "nuerons", "one of ['name'", "neurons"),
    ({"neurons": ["lfi"]}, "neurons[0]", "lfi", "a registered neuron", "lif"),
    ({"neurons": [{"name": "pliff"}]}, "neurons[0].name", "pliff", "a registered neuron", "plif"),
    ({"neurons": [{"name": "lif", "params": {"tua": 2.0}}]}, "neurons[0].params.tua", "tua",
     "a parameter of lif", "tau"),
    ({"neurons": [{"name": "lif", "params": {"tau": 0.5}}]}, "neurons[0].params.tau", 0.5, "a number > 1.0", None),
    ({"neurons": [{"name": "lif", "params": {"reset": "sfot"}}]}, "neurons[0].params.reset", "sfot",
     "one of ['hard', 'soft']", None),
    ({"backends": ["eager", "tritn"]}, "backends[1]", "tritn", "one of ['reference', 'eager', 'compiled'", "triton"),
    ({"precisions": ["fp33"]}, "precisions[0]", "fp33", "one of ['fp32', 'bf16', 'fp16']", "fp32"),
    ({"modes": ["forward", "stp"]}, "modes[1]", "stp", "one of ['forward', 'train', 'step']", "step"),
    ({"metrics": ["time", "enrgy"]}, "metrics[1]", "enrgy", "'activity', 'agreement'", "energy"),
    ({"seq_lens": [8, 0]}, "seq_lens[1]", 0, "an int >= 1", None),
    ({"batch": [-2]}, "batch[0]", -2, "an int >= 1", None),
    ({"features": "four"}, "features", "four", "an int >= 1", None),
    ({"features": [4.5]}, "features[0]", 4.5, "an int >= 1", None),
    ({"backends": []}, "backends", [], "a non-empty list of backends", None),
    ({"neurons": []}, "neurons", [], "a non-empty list of neuron names", None),
    ({"neurons": [{"plugin": "no_colon_here"}]}, "neurons[0].plugin", "no_colon_here", "malformed", None),
    ({"neurons": [{"plugin": "no_such_pkg_x.mod:Cls"}]}, "neurons[0].plugin", "no_such_pkg_x.mod:Cls",
     "not importable", None),
    ({"neurons": ["perfsuite.neurons.lif:LIFF"]}, "neurons[0]", "perfsuite.neurons.lif:LIFF",
     "has no attribute 'LIFF'", "LIF"),
    ({"neurons": [{"plugin": "perfsuite.results:point_key"}]}, "neurons[0].plugin", "perfsuite.results:point_key",
     "not a subclass of perfsuite.neurons.Neuron", None),
    ({"include": [{"nueron": "lif"}]}, "include[0].nueron", "nueron", "one of ['neuron', 'backend'", "neuron"),
    ({"exclude": [{"seq_len": ">abc"}]}, "exclude[0].seq_len", ">abc", "a comparison such as '>16000'", None),
    ({"exclude": [{"backend": "trtion"}]}, "exclude[0].backend", "trtion", "one of ['reference'", "triton"),
    ({"exclude": [{"neuron": ["lif", "psnn"]}]}, "exclude[0].neuron[1]", "psnn", "one of ['lif'", "psn"),
    ({"timing": {"warmup_ms": -1}}, "timing.warmup_ms", -1, "a number >= 0", None),
    ({"timing": {"min_reps": 10, "max_reps": 5}}, "timing.max_reps", 5, "an int >= timing.min_reps (10)", None),
    ({"timing": {"rep_mss": 50}}, "timing.rep_mss", "rep_mss", "one of ['warmup_ms', 'rep_ms'", "rep_ms"),
    ({"timing": {"cold_start": "yes"}}, "timing.cold_start", "yes", "true or false", None),
    ({"limits": {"refernce_max_len": 3}}, "limits.refernce_max_len", "refernce_max_len", "'reference_max_len'",
     "reference_max_len"),
    ({"limits": {"timeout_s": 0}}, "limits.timeout_s", 0, "a number > 0", None),
    ({"device": "gpu"}, "device", "gpu", "one of ['auto', 'cpu', 'cuda']", None),
    ({"workload": "netwrk"}, "workload.type", "netwrk", "one of ['layer', 'network']", "network"),
    ({"workload": {"type": "layer", "target_rate": 1.5}}, "workload.target_rate", 1.5, "strictly between 0 and 1", None),
    ({"workload": {"type": "network", "layres": 4}}, "workload.layres", "layres", "'layers'", "layers"),
    ({"seed": -1}, "seed", -1, "an int >= 0", None),
    ({"name": "my scenario!"}, "name", "my scenario!", "letters, digits", None),
    ({"seq_lens": {"start": 8, "stop": 64, "mul": 2, "step": 8}}, "seq_lens", None,
     "exactly one of `mul` (geometric) or `step`", None),
    ({"seq_lens": {"start": 64, "stop": 8, "mul": 2}}, "seq_lens.stop", 8, "an int >= start (64)", None),
    ({"seq_lens": [8, 16, 8]}, "seq_lens[2]", 8, "each value once", None),
    ({"neurons": ["lif", "lif"]}, "neurons[1]", "lif", "points not already listed by neurons[0]", None),
    ({"neurons": [{"name": "lif", "params": {"tau": 3.0}, "backendz": ["eager"]}]}, "neurons[0].backendz",
     "backendz", "one of ['name', 'plugin', 'params'", "backends"),
    ({"neurons": [{"name": "masked_psn", "params": {"k": 16}}]}, "neurons[0].params.k", 16, "at seq_len=8", None),
    ({"neurons": [{"name": "psn", "params": {"seq_len": 8}}]}, "neurons[0].params.seq_len", "seq_len",
     "it comes from `seq_lens`", None),
    ({"neurons": [{"name": "dsn", "params": {"features": 4}}]}, "neurons[0].params.features", 4,
     "it is filled from the sweep's `features`", None),
    ({"extrapolation": {"task": "markov_lm", "train_len": -1, "eval_lens": [64]}}, "extrapolation.train_len", -1,
     "an int >= 1", None),
    ({"extrapolation": {"task": "markov_lm", "train_len": 32, "eval_len": [64]}}, "extrapolation.eval_len",
     "eval_len", "'eval_lens'", "eval_lens"),
    ({"extrapolation": {"task": "markov_lm", "train_len": 32, "eval_lens": [64], "precision": "fp8"}},
     "extrapolation.precision", "fp8", "one of ['fp32', 'bf16', 'fp16']", None),
    ({"extrapolation": {"backend": "eagre"}}, "extrapolation.backend", "eagre", "a backend name", "eager"),
    ({"extrapolation": {"neurons": ["perfsuite.neurons.lif:LIF"]}}, "extrapolation.neurons[0]",
     "perfsuite.neurons.lif:LIF", "a registered neuron name (plugins are not supported", None),
    ({"extrapolation": {"neurons": [{"name": "lif", "seq_lens": [8]}]}}, "extrapolation.neurons[0].seq_lens",
     "seq_lens", "one of ['name', 'params']", None),
    ({"extrapolation": {"neurons": [{"name": "lif", "params": {"tua": 2.0}}]}},
     "extrapolation.neurons[0].params.tua", "tua", "a parameter of lif", "tau"),
    ({"extrapolation": {"task": "markov_lmm"}}, "extrapolation.task", "markov_lmm", "one of ['markov_lm'", "markov_lm"),
    ({"extrapolation": {"task": "markov_lm", "task_params": {"vocabb": 3}}}, "extrapolation.task_params.vocabb",
     "vocabb", "a parameter of task 'markov_lm'", "vocab"),
    ({"extrapolation": {"task": "hidden_regime", "task_params": {"regimes": 1}}}, "extrapolation.task_params",
     None, "regimes=1 is invalid", None),
    # an invalid entry before a valid one must not shift the index of the later entry's problem
    ({"neurons": [{"name": "plif", "params": {"taux": 1}}, {"name": "masked_psn", "params": {"k": 16}}]},
     "neurons[1].params.k", 16, "at seq_len=8", None),
]


@pytest.mark.parametrize("changes,path,value,expected,suggestion", BAD,
                         ids=[b[1] + "=" + str(b[2])[:20] for b in BAD])
def test_bad_input_is_located_and_explained(tmp_path, changes, path, value, expected, suggestion):
    file = write(tmp_path, {**BASE, **changes})
    err = problems_of(file)
    hits = [p for p in err.problems if p.path == path]
    assert hits, f"no problem at {path!r}; got {[p.path for p in err.problems]}"
    prob = hits[0]
    if value is not None:
        assert prob.value == value
    assert expected in prob.expected, prob.expected
    line = prob.render(str(file))
    assert str(file) in line and path in line and expected in line
    assert line in str(err)
    if value is not None:
        assert repr(value) in line
    if suggestion is not None:
        assert prob.suggestion == suggestion
        assert f"(did you mean {suggestion!r}?)" in line


def test_every_problem_is_reported_not_only_the_first(tmp_path):
    file = write(tmp_path, {**BASE, "neurons": ["lif", {"name": "lif", "params": {"tua": 1}}],
                            "precisions": ["fp64"], "seq_lens": [0], "lmits": {}})
    err = problems_of(file)
    paths = {p.path for p in err.problems}
    assert {"neurons[1].params.tua", "precisions[0]", "seq_lens[0]", "lmits"} <= paths
    msg = str(err)
    assert msg.startswith(f"{file}: invalid scenario ({len(err.problems)} problems)")
    assert len(msg.splitlines()) == len(err.problems) + 1
    # the first problem's parts are also on the exception itself
    assert (err.file, err.path, err.value) == (str(file), err.problems[0].path, err.problems[0].value)


def test_missing_required_keys(tmp_path):
    err = problems_of(write(tmp_path, {"neurons": ["lif"]}))
    msg = str(err)
    for key in ("name", "seq_lens", "features"):
        assert f": {key}: missing key; expected" in msg
    err = problems_of(write(tmp_path, {"name": "x"}))
    assert "neurons: missing key; expected a list of neurons" in str(err)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    file = write(tmp_path, "name: t\nneurons: [lif\nseq_lens: [8]\n")
    err = problems_of(file)
    assert str(file) in str(err) and "YAML syntax error" in str(err) and "line " in err.path


def test_not_a_mapping_and_missing_file(tmp_path):
    err = problems_of(write(tmp_path, "- lif\n- psn\n"))
    assert "a mapping of scenario keys" in str(err) and "['lif', 'psn']" in str(err)
    missing = tmp_path / "nope.yaml"
    err = problems_of(missing)
    assert f"{missing}: (top level): file not found" in str(err)


def test_wrong_types_of_blocks(tmp_path):
    err = problems_of(write(tmp_path, {**BASE, "timing": [25], "limits": "big", "include": "lif",
                                       "neurons": ["lif", 3]}))
    got = {p.path: p for p in err.problems}
    assert "a mapping with keys ['warmup_ms'" in got["timing"].expected
    assert "a mapping with keys ['timeout_s'" in got["limits"].expected
    assert "a list of rules" in got["include"].expected
    assert got["neurons[1]"].value == 3


# ---------------------------------------------------------------------------------------- expansion
def test_expansion_is_the_cartesian_product_in_a_stable_order(tmp_path):
    sc = scenario(tmp_path, neurons=["lif", "plif"], backends=["reference", "eager"], seq_lens=[8, 16],
                  batch=[1, 2], features=[4], modes=["forward", "train"], precisions=["fp32", "bf16"])
    pts = sc.points()
    assert len(pts) == 2 * 2 * 2 * 2 * 1 * 2 * 2
    combos = [(p.neuron, p.backend, p.mode, p.precision, p.seq_len, p.batch) for p in pts]
    assert len(set(combos)) == len(combos)
    assert combos[:3] == [("lif", "reference", "forward", "fp32", 8, 1), ("lif", "reference", "forward", "fp32", 8, 2),
                          ("lif", "reference", "forward", "fp32", 16, 1)]
    keys = [p.key for p in pts]
    assert len(set(keys)) == len(keys)
    again = [p.key for p in load_scenario(tmp_path / "s.yaml").points()]
    assert keys == again


def test_keys_are_stable_across_processes():
    """The key is a hash of the point's fields, not of Python object ids or hash seeds."""
    here = [p.key for p in load_scenario(ROOT / "scenarios" / "smoke.yaml").points(device="cpu")]
    code = ("import json; from perfsuite.scenario import load_scenario; "
            "print(json.dumps([p.key for p in load_scenario('scenarios/smoke.yaml').points(device='cpu')]))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_point_fields_follow_the_row_schema(tmp_path):
    sc = scenario(tmp_path, neurons=[{"name": "lif", "params": {"tau": 3.0}}], batch=[3], features=[5], device="cpu")
    (p,) = sc.points()
    f = p.fields()
    json.dumps(f, allow_nan=False)  # JSON-ready
    for k in ("scenario", "kind", "neuron", "neuron_params", "backend", "seq_len", "batch", "features", "neurons",
              "precision", "mode", "workload", "device", "key"):
        assert k in f
    assert f["neurons"] == p.neurons == 15
    assert f["key"] == p.key == point_key({k: v for k, v in f.items() if k != "key"})
    assert p.key.startswith("lif/eager/forward/fp32/8/3/5/layer#")
    # every constructor parameter is recorded (defaults filled in), the given one wins
    assert p.neuron_params == {**neurons.info("lif").params, "tau": 3.0}
    assert p.timing == Timing() and p.limits == Limits() and p.metrics == ("time", "memory", "energy", "activity",
                                                                             "agreement")
    assert pickle.loads(pickle.dumps(p)) == p  # runners send points to worker processes
    assert hash(p) == hash(pickle.loads(pickle.dumps(p)))


def test_distinct_parameters_give_distinct_keys(tmp_path):
    sc = scenario(tmp_path, neurons=[{"name": "lif", "params": {"tau": 2.0}}, {"name": "lif", "params": {"tau": 4.0}}])
    a, b = sc.points()
    assert a.key != b.key and a.key.split("#")[0] == b.key.split("#")[0]


def test_exclude_and_include_rules(tmp_path):
    sc = scenario(tmp_path, neurons=["lif", "psn"], seq_lens=[8, 16, 32], backends=["reference", "eager"],
                  exclude=[{"neuron": "psn", "seq_len": ">8", "reason": "too big"}, {"backend": "reference",
                                                                                      "seq_len": [16, 32]}])
    got = {(p.neuron, p.backend, p.seq_len) for p in sc.points()}
    assert got == {("lif", "reference", 8), ("lif", "eager", 8), ("lif", "eager", 16), ("lif", "eager", 32),
                   ("psn", "reference", 8), ("psn", "eager", 8)}
    reasons = {(p.neuron, p.backend, p.seq_len): r for p, r in sc.excluded()}
    assert reasons[("psn", "eager", 16)] == "excluded: too big"
    assert reasons[("lif", "reference", 16)] == "excluded by a rule"
    assert len(reasons) + len(got) == 2 * 3 * 2

    sc = scenario(tmp_path, neurons=["lif", "psn"], seq_lens=[8, 16, 32], include=[{"neuron": "lif"},
                                                                                   {"seq_len": "16..32"}])
    assert {(p.neuron, p.seq_len) for p in sc.points()} == {("lif", 8), ("lif", 16), ("lif", 32), ("psn", 16),
                                                             ("psn", 32)}
    assert {r for _, r in sc.excluded()} == {"not matched by any include rule"}


@pytest.mark.parametrize("rule,kept", [(">=16", [8]), ("<16", [16, 32]), ("!=16", [16]), ("==32", [8, 16]),
                                       ("8..16", [32]), ([8, 32], [16])])
def test_numeric_rule_forms(tmp_path, rule, kept):
    sc = scenario(tmp_path, seq_lens=[8, 16, 32], exclude=[{"seq_len": rule}])
    assert [p.seq_len for p in sc.points()] == kept


def test_rule_on_total_neurons(tmp_path):
    sc = scenario(tmp_path, batch=[1, 4], features=[4, 16], exclude=[{"neurons": ">16"}])
    assert sorted(p.neurons for p in sc.points()) == [4, 16, 16]


def test_per_neuron_axis_overrides_and_ranges(tmp_path):
    sc = scenario(tmp_path, neurons=["lif", {"name": "psn", "backends": ["compiled"], "seq_lens": [4]}],
                  seq_lens={"start": 8, "stop": 64, "mul": 2}, precisions="fp32")
    pts = sc.points()
    assert [p.seq_len for p in pts if p.neuron == "lif"] == [8, 16, 32, 64]
    assert [(p.backend, p.seq_len) for p in pts if p.neuron == "psn"] == [("compiled", 4)]
    sc = scenario(tmp_path, seq_lens={"start": 1000, "stop": 3500, "step": 1000})
    assert [p.seq_len for p in sc.points()] == [1000, 2000, 3000]


def test_step_mode_without_serial_inference_is_kept_and_flagged(tmp_path):
    sc = scenario(tmp_path, neurons=["lif", "psn"], modes=["forward", "step"])
    flags = {(p.neuron, p.mode): p.unsupported for p in sc.points()}
    assert flags[("lif", "step")] is None and flags[("psn", "forward")] is None
    assert "psn has no serial inference" in flags[("psn", "step")]


def test_fixed_length_neurons_are_checked_at_every_length(tmp_path):
    """masked PSN needs k <= T: fine at T = 16 and 32, rejected at T = 8 with that T in the message."""
    ok = scenario(tmp_path, neurons=[{"name": "masked_psn", "params": {"k": 16}}], seq_lens=[16, 32])
    assert [p.seq_len for p in ok.points()] == [16, 32]
    err = problems_of(write(tmp_path, {**BASE, "neurons": [{"name": "masked_psn", "params": {"k": 16}}],
                                       "seq_lens": [32, 8]}))
    assert "at seq_len=8" in err.problems[0].expected


def test_large_lengths_are_validated_without_allocating(tmp_path):
    """A 30 000 x 30 000 PSN weight is 3.6 GB: validation builds it on the meta device instead."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sc = scenario(tmp_path, neurons=["psn"], seq_lens=[30000])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert [p.seq_len for p in sc.points()] == [30000]
    assert (after - before) * 1024 < 1e9  # ru_maxrss is in KiB on Linux


def test_dsn_features_follow_the_layer_width(tmp_path):
    sc = scenario(tmp_path, neurons=["dsn"], features=[4, 6])
    assert [(p.features, p.neuron_params["features"]) for p in sc.points()] == [(4, 4), (6, 6)]
    sc = scenario(tmp_path, neurons=["dsn"], features=[7], workload={"type": "network", "hidden": 5, "outputs": 3})
    (p,) = sc.points()
    assert p.neuron_params["features"] == 5
    assert p.workload_params == {"layers": 4, "hidden": 5, "outputs": 3, "target_rate": 0.1}


def test_workload_defaults(tmp_path):
    (p,) = scenario(tmp_path).points()
    assert (p.workload, p.workload_params) == ("layer", {"target_rate": 0.1})
    (p,) = scenario(tmp_path, workload="network", features=[6]).points()
    assert p.workload_params == {"layers": 4, "hidden": 6, "outputs": 6, "target_rate": 0.1}


def test_device_resolution(tmp_path):
    import torch

    sc = scenario(tmp_path)
    (p,) = sc.points()
    assert p.device == ("cuda" if torch.cuda.is_available() else "cpu")
    (c,) = sc.points(device="cuda")
    (q,) = scenario(tmp_path, device="cpu").points()
    assert c.device == "cuda" and q.device == "cpu" and c.key != q.key
    with pytest.raises(ValueError, match="device='tpu' is invalid"):
        sc.points(device="tpu")


def test_extrapolation_block_is_kept(tmp_path):
    block = {"task": "markov_lm", "train_len": 32, "eval_lens": [32, 64, 128], "steps": 10, "lr": 1e-3,
             "weight_decay": 0.0, "precision": "fp32", "backend": "eager", "serial_check_len": 16, "hidden": 8,
             "neurons": ["lif", {"name": "masked_psn", "params": {"k": 4}}, "dsn"]}
    sc = load_scenario(write(tmp_path, {"name": "extra", "extrapolation": block}))
    assert sc.extrapolation == block and sc.points() == [] and sc.name == "extra"
    err = problems_of(write(tmp_path, {"name": "extra", "extrapolation": {**block, "neurons": [
        {"name": "masked_psn", "params": {"k": 64}}]}}))
    assert err.problems[0].path == "extrapolation.neurons[0].params.k" and "at seq_len=32" in err.problems[0].expected
    assert scenario(tmp_path).extrapolation is None
    # the block is what the extrapolation runner's config takes
    from perfsuite import extrapolation

    cfg = extrapolation.ExtrapolationConfig.from_block(sc.extrapolation)
    assert (cfg.train_len, cfg.eval_lens, cfg.hidden) == (32, [32, 64, 128], 8)


# ------------------------------------------------------------------------------------------ plugins
PLUGIN = '''
from dataclasses import replace
from perfsuite.neurons.lif import LIF


class HalfLIF(LIF):
    """A user's neuron: LIF without serial inference, registered nowhere."""
    spec = replace(LIF.spec, name="half_lif", serial_inference=False)
'''


def test_plugin_neuron(tmp_path, monkeypatch):
    (tmp_path / "user_neurons_for_scenario_test.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = "user_neurons_for_scenario_test:HalfLIF"
    sc = scenario(tmp_path, neurons=[{"plugin": path, "params": {"tau": 4.0}}, path], modes=["forward", "step"],
                  exclude=[{"neuron": path, "mode": "forward", "reason": "rules match plugin paths too"}])
    pts = sc.points()
    assert {p.neuron for p in pts} == {path} and "half_lif" not in neurons.names()
    assert all("no serial inference" in p.unsupported for p in pts)
    assert pts[0].neuron_params["tau"] == 4.0
    m = build_point(pts[0])
    assert type(m).__name__ == "HalfLIF" and m.tau == 4.0
    err = problems_of(write(tmp_path, {**BASE, "neurons": [{"plugin": path, "params": {"taux": 1}}]}))
    assert err.problems[0].path == "neurons[0].params.taux" and err.problems[0].suggestion == "tau"
    err = problems_of(write(tmp_path, {**BASE, "neurons": [{"plugin": path, "params": {"tau": -1}}]}))
    assert err.problems[0].path == "neurons[0].params.tau" and "a number > 1.0" in err.problems[0].expected


# ---------------------------------------------------------------------------------- shipped scenarios
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenario_validates(path):
    sc = load_scenario(path)
    assert sc.name == path.stem
    pts = sc.points(device="cuda")
    assert pts or sc.extrapolation is not None
    keys = [p.key for p in pts]
    assert len(set(keys)) == len(keys)


def test_shipped_scenarios_exist():
    assert {p.stem for p in SCENARIOS} >= {"smoke", "long_seq", "paper_psn", "paper_psu", "paper_dsn", "ci_gpu"}


def test_smoke_covers_every_neuron_tiny_on_cpu():
    sc = load_scenario(ROOT / "scenarios" / "smoke.yaml")
    pts = sc.points()
    assert sc.device == "cpu" and {p.device for p in pts} == {"cpu"}
    assert {p.neuron for p in pts} == set(neurons.names())
    assert {p.mode for p in pts} == {"forward", "train", "step"}
    assert max(p.seq_len * p.neurons for p in pts) <= 64 * 64 and len(pts) <= 80
    for p in pts:  # every point builds (the scenario and the neuron library agree)
        build_point(p)


def test_long_seq_reaches_30k_and_leaves_out_only_with_reasons():
    sc = load_scenario(ROOT / "scenarios" / "long_seq.yaml")
    pts = sc.points(device="cuda")
    assert max(p.seq_len for p in pts) == 30000
    assert {p.neuron for p in pts if p.seq_len == 30000} >= {"lif", "sliding_psn", "dsn"}
    assert {p.backend for p in pts} == {"reference", "eager", "compiled", "triton", "spikingjelly"}
    assert {p.precision for p in pts} == {"fp32", "bf16"} and {p.mode for p in pts} == {"forward", "train"}
    assert all(r.startswith("excluded: ") for _, r in sc.excluded(device="cuda"))
    assert not any(p.neuron == "psn" and p.seq_len == 30000 for p in pts)


# --------------------------------------------------------------------------------------------- CLI
def cli_validate(path):
    """`perfsuite validate PATH` in this process (typer's test runner): (exit code, stdout + stderr)."""
    from typer.testing import CliRunner

    from perfsuite import cli

    result = CliRunner().invoke(cli.app, ["validate", str(path)])
    return result.exit_code, result.output, result.exception


@pytest.mark.parametrize("changes,path,value,expected,suggestion", BAD,
                         ids=[b[1] + "=" + str(b[2])[:20] for b in BAD])
def test_bad_input_through_cli_exits_2(tmp_path, changes, path, value, expected, suggestion):
    file = write(tmp_path, {**BASE, **changes})
    code, text, exc = cli_validate(file)
    assert code == 2, text
    assert isinstance(exc, SystemExit) and "Traceback" not in text  # a message, not a crash
    assert str(file) in text and f": {path}: " in text and expected in text
    if value is not None:
        assert repr(value) in text
    if suggestion is not None:
        assert f"(did you mean {suggestion!r}?)" in text


def test_cli_validate_accepts_a_shipped_scenario():
    code, text, _ = cli_validate(ROOT / "scenarios" / "smoke.yaml")
    assert code == 0 and "valid" in text, text
