"""The scenario schema is declared once (#15): the shipped JSON Schema and the docs' key reference are
generated from it and in sync, every shipped scenario satisfies the JSON Schema, and the validator, the
dataclasses and the JSON Schema agree on keys, defaults and bounds."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from perfsuite import cli
from perfsuite.scenario import Limits, ScenarioError, Timing, scenario_from_dict
from perfsuite.scenario import schema as sch
from perfsuite.scenario.reference import DOC_BEGIN, DOC_END, json_schema, json_schema_text, markdown_reference

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
SCHEMA_FILE = ROOT / "scenario.schema.json"
SCHEMA_LINE = "# yaml-language-server: $schema=../scenario.schema.json"
BASE = {"name": "t", "neurons": ["lif"], "seq_lens": [8], "features": [4]}


def test_shipped_json_schema_is_the_generated_one():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), \
        "scenario.schema.json is stale: run python3 scripts/gen_scenario_docs.py"


def test_docs_key_reference_is_the_generated_one():
    doc = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    assert doc.count(DOC_BEGIN) == 1 and doc.count(DOC_END) == 1
    section = DOC_BEGIN + doc.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0] + DOC_END + "\n"
    assert section == markdown_reference(), "docs/scenarios.md is stale: run python3 scripts/gen_scenario_docs.py"
    for title, keys in sch.BLOCKS:  # every declared key is documented, in its block
        assert f"### {title}" in section
        for k in keys:
            assert f"| `{k.name}` |" in section


def test_gen_script_check_mode_agrees():
    proc = subprocess.run([sys.executable, "scripts/gen_scenario_docs.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_cli_schema_prints_the_schema_and_the_reference():
    result = CliRunner().invoke(cli.app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.output) == json_schema()
    assert json.loads(result.output)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    result = CliRunner().invoke(cli.app, ["schema", "--markdown"])
    assert result.exit_code == 0 and result.output == markdown_reference()


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenario_names_the_schema_first(path):
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE


def _validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not a perfsuite dependency")
    jsonschema.Draft202012Validator.check_schema(json_schema())
    return jsonschema.Draft202012Validator(json_schema())


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenario_satisfies_the_json_schema(path):
    errors = [e.message for e in _validator().iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
    assert errors == []


# (change to BASE) that both the JSON Schema and `perfsuite validate` refuse
BOTH_REFUSE = [
    {"nuerons": ["lif"]}, {"backends": ["tritn"]}, {"seq_lens": [0]}, {"seq_lens": [8, 8]},
    {"features": {"start": 4, "stop": 8}}, {"precisions": "fp33"}, {"timing": {"warmup_ms": -1}},
    {"timing": {"threads": 0}}, {"timing": {"rep_mss": 1}}, {"limits": {"timeout_s": 0}}, {"seed": -1},
    {"seed": 2 ** 63}, {"name": "has space"}, {"device": "gpu"}, {"workload": {"type": "layer", "layers": 2}},
    {"workload": {"type": "network", "target_rate": 1.0}}, {"neurons": [{"name": "lif", "plugin": "a.b:C"}]},
    {"neurons": [{"name": "lfi"}]}, {"neurons": []}, {"exclude": [{"seq_len": ">abc"}]},
    {"exclude": [{"backend": "nope"}]}, {"include": [{}]}, {"metrics": ["time", "enrgy"]},
    {"extrapolation": {"train_len": 0}}, {"extrapolation": {"eval_len": [4]}},
    {"neurons": [{"name": "lif", "params": {"tua": 2.0}}]}, {"neurons": [{"name": "dsn", "params": {"features": 4}}]},
    {"neurons": [{"name": "psn", "params": {"seq_len": 8}}]},
]
# (change to BASE) that both accept
BOTH_ACCEPT = [
    {}, {"precisions": "bf16"}, {"features": {"start": 4, "stop": 16, "mul": 2}}, {"timing": {"threads": None}},
    {"timing": {"threads": 4, "cold_start": False}}, {"limits": {"memory_gb": None}}, {"workload": "network"},
    {"workload": {"type": "network", "hidden": None, "layers": 2}}, {"exclude": {"seq_len": "8..16"}},
    {"include": [{"neuron": ["lif"], "neurons": ">=4", "reason": "why"}]},
    {"neurons": ["lif", {"name": "plif", "params": {"init_tau": 3.0}, "backends": "reference"}]},
    {"neurons": [{"name": "dsn", "params": {"k": 2}}, {"name": "masked_psn", "params": {"k": 4}}]},
]


@pytest.mark.parametrize("change", BOTH_REFUSE, ids=[str(c)[:40] for c in BOTH_REFUSE])
def test_json_schema_and_validator_both_refuse(change):
    data = {**BASE, **change}
    assert list(_validator().iter_errors(data)), "the JSON Schema accepts it"
    with pytest.raises(ScenarioError):
        scenario_from_dict(data)


@pytest.mark.parametrize("change", BOTH_ACCEPT, ids=[str(c)[:40] for c in BOTH_ACCEPT])
def test_json_schema_and_validator_both_accept(change):
    data = {**BASE, **change}
    assert [e.message for e in _validator().iter_errors(data)] == []
    scenario_from_dict(data)


def test_one_declaration_drives_keys_and_defaults():
    """The dataclasses take their fields and defaults from the schema; the validator knows no other keys."""
    assert [f.name for f in dataclasses.fields(Timing)] == [k.name for k in sch.TIMING]
    assert [f.name for f in dataclasses.fields(Limits)] == [k.name for k in sch.LIMITS]
    assert dataclasses.asdict(Timing()) == {k.name: k.default for k in sch.TIMING}
    assert dataclasses.asdict(Limits()) == {k.name: k.default for k in sch.LIMITS}
    assert set(json_schema()["properties"]) == set(sch.TOP_KEYS)
    assert set(json_schema()["properties"]["timing"]["properties"]) == {k.name for k in sch.TIMING}
    # an unknown top-level key is refused with the declared keys as the choices
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({**BASE, "bogus": 1})
    assert info.value.problems[0].expected == f"one of {list(sch.TOP_KEYS)}"


def test_expected_texts_follow_the_declared_bounds():
    keys = sch.keyed(sch.TIMING)
    assert keys["threads"].expected() == "an int >= 1 or null"
    assert keys["rep_ms"].expected() == "a number > 0" and keys["warmup_ms"].expected() == "a number >= 0"
    assert sch.keyed(sch.LIMITS)["memory_gb"].expected() == "a number > 0 or null"
    assert keys["threads"].check(None) and keys["threads"].check(2) and not keys["threads"].check(True)
