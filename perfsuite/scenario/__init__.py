"""Scenario files: the schema declared once, safe reading, validation and sweep expansion.

A scenario is a YAML file that says what to measure: neurons (with their parameters, or a user's own
class by ``pkg.mod:Class``), backends, sequence lengths, batch sizes, features, precisions, modes, the
workload, the metrics, timing budgets, limits, a seed and include/exclude rules. ``docs/scenarios.md``
holds the key reference, generated from the schema like ``scenario.schema.json``.

    >>> sc = load_scenario("scenarios/smoke.yaml")   # validates the whole file or raises ScenarioError
    >>> points = sc.points()                          # [Point, ...]: cartesian product minus exclusions

Validation reads the whole file before anything runs and collects *every* problem; a `ScenarioError`
names the file, the line, the key path (``neurons[2].params.tau``), the bad value, what is allowed and
a close match for typos.

Modules (each imports only those above it in this list, the standard library, yaml, torch and
`perfsuite.neurons`, `perfsuite.results` (the point key), `perfsuite.tasks`, `perfsuite.text`; nothing here
imports the worker, runner, analysis or cli):

* ``schema``: every key with its type, bounds, default, choices and help;
* ``errors``: `Problem`, `ScenarioError`;
* ``model``: `Point`, `Timing`, `Limits` (what later layers read);
* ``expand``: `Scenario` and its points;
* ``yaml_load``: bounded, strict YAML reading;
* ``rules``: include/exclude rules;
* ``neuron_check``: parameter values checked by building the neuron, bounded in memory and time;
* ``validate``: `load_scenario`, `scenario_from_dict`;
* ``reference``: the JSON Schema and the Markdown key reference.

Points the runner cannot measure by construction stay in the sweep with `Point.unsupported` set to the
reason (e.g. ``mode: step`` for a neuron without serial inference). Backends missing on this machine
(triton without a GPU, a peer library not installed) are *not* validation errors: ``perfsuite validate``
and ``run`` list them up front (grouped by reason) and the runner records those points as ``unsupported``.
"""
from ..neurons.plugins import PluginError, build_neuron, build_point, is_plugin, load_plugin, neuron_spec
from .errors import MISSING, Problem, ScenarioError
from .expand import Scenario
from .model import Limits, Point, Timing, resolve_device
from .schema import AXES, DEVICES, MAX_POINTS, MAX_RANGE_VALUES, METRICS, MODES, PRECISIONS, RULE_FIELDS, TOP_KEYS, WORKLOADS
from .validate import load_scenario, scenario_from_dict

__all__ = [
    "AXES", "DEVICES", "Limits", "MAX_POINTS", "MAX_RANGE_VALUES", "METRICS", "MISSING", "MODES", "PRECISIONS",
    "PluginError", "Point", "Problem", "RULE_FIELDS", "Scenario", "ScenarioError", "TOP_KEYS", "Timing",
    "WORKLOADS", "build_neuron", "build_point", "is_plugin", "load_plugin", "load_scenario", "neuron_spec",
    "resolve_device", "scenario_from_dict",
]
