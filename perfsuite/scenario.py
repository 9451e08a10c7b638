"""Scenario files: schema, validation and sweep expansion.

A scenario is a YAML file (read with ``yaml.safe_load``) that says what to measure: neurons (with their
parameters, or a user's own class by ``pkg.mod:Class``), backends, sequence lengths, batch sizes,
features, precisions, modes, the workload, the metrics, timing budgets, limits, a seed and
include/exclude rules. ``docs/scenarios.md`` is the reference of every key.

    >>> sc = load_scenario("scenarios/smoke.yaml")   # validates the whole file or raises ScenarioError
    >>> points = sc.points()                          # [Point, ...]: cartesian product minus exclusions

Validation reads the whole file before anything runs and collects *every* problem; a `ScenarioError`
names the file, the key path (``neurons[2].params.tau``), the bad value, what is allowed and a close
match for typos. Parameter values are checked by the neuron's own constructor: each neuron is built
once per distinct sequence length (T-bound neurons) and layer width (DSN), on the CPU for small T and
on the ``meta`` device above (no memory is allocated, so a 30 000 x 30 000 weight costs nothing).

Points the runner cannot measure by construction stay in the sweep with `Point.unsupported` set to the
reason (e.g. ``mode: step`` for a neuron without serial inference), so the runner writes an
``unsupported`` row instead of silently dropping them. Backends missing on this machine (triton
without a GPU, a peer library not installed) are *not* validation errors: the runner records those
points as ``unsupported`` when it builds them.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import itertools
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from . import neurons
from .neurons.base import Neuron
from .neurons.registry import closest, constructor_params
from .neurons.spec import NeuronSpec
from .results import point_key

PRECISIONS = ("fp32", "bf16", "fp16")
MODES = ("forward", "train", "step")
WORKLOADS = ("layer", "network")
METRICS = ("time", "memory", "energy", "activity", "agreement")
DEVICES = ("auto", "cpu", "cuda")

TOP_KEYS = ("name", "description", "neurons", "backends", "seq_lens", "batch", "features", "precisions",
            "modes", "workload", "metrics", "timing", "limits", "seed", "include", "exclude", "device",
            "extrapolation")
#: sweep axes: scenario-level lists that a neuron entry may override for itself
AXES = ("backends", "seq_lens", "batch", "features", "precisions", "modes")
NEURON_KEYS = ("name", "plugin", "params") + AXES
#: defaults of the optional axes (seq_lens and features have none: a scenario must say them)
AXIS_DEFAULTS = {"backends": ["eager"], "batch": [1], "precisions": ["fp32"], "modes": ["forward"]}
#: workload parameters and their defaults; network ``hidden``/``outputs`` default to the point's features
WORKLOAD_PARAMS = {"layer": {"target_rate": 0.1},
                   "network": {"layers": 4, "hidden": None, "outputs": None, "target_rate": 0.1}}
#: fields an include/exclude rule may test (``neurons`` = batch x features), plus a free-text reason
RULE_FIELDS = ("neuron", "backend", "seq_len", "batch", "features", "neurons", "precision", "mode",
               "workload", "device")
NUMERIC_RULE_FIELDS = ("seq_len", "batch", "features", "neurons")
#: parameter checks build neurons for real on the CPU up to this T, on the meta device above it
BUILD_CHECK_CPU_MAX_T = 2048
#: at most this many values from one range mapping (a typo such as ``mul: 1.0001`` should not hang)
MAX_RANGE_VALUES = 10_000

_PLUGIN_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_CMP_RE = re.compile(r"^\s*(<=|>=|<|>|==|!=)\s*([0-9][0-9_]*)\s*$")
_SPAN_RE = re.compile(r"^\s*([0-9][0-9_]*)\s*\.\.\s*([0-9][0-9_]*)\s*$")
_CMP_OPS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
    "!=": operator.ne}


# --------------------------------------------------------------------------------------------- contract
@dataclass(frozen=True)
class Timing:
    """Timing budgets in milliseconds, with the semantics of ``triton.testing.do_bench``."""

    warmup_ms: float = 25.0
    rep_ms: float = 100.0
    min_reps: int = 5
    max_reps: int = 1000
    #: measure the first call (compile included) separately
    cold_start: bool = True


@dataclass(frozen=True)
class Limits:
    """Per-point limits."""

    timeout_s: float = 300.0
    #: None = the device's memory
    memory_gb: float | None = None
    #: agreement vs the float64 reference only when seq_len <= this
    reference_max_len: int = 2048


@dataclass(frozen=True)
class Point:
    """One measurement: a neuron with its parameters on one backend, length, shape, precision, mode.

    ``neuron_params`` is the complete keyword set for the neuron's constructor (defaults filled in,
    ``seq_len`` excluded: it is its own field), so a row records every parameter (spec §8). Treat it
    as read-only. The input of the measured layer is ``[seq_len, batch, features]``.
    """

    scenario: str
    neuron: str
    neuron_params: Mapping
    backend: str
    seq_len: int
    batch: int
    features: int
    precision: str
    mode: str
    workload: str
    workload_params: Mapping
    metrics: tuple
    timing: Timing
    limits: Limits
    seed: int
    kind: str = "bench"
    #: resolved device, "cpu" or "cuda" (a scenario's "auto" is resolved by `Scenario.points`)
    device: str = "cpu"
    #: why this point cannot be measured by construction (the runner writes an ``unsupported`` row)
    unsupported: str | None = None

    @property
    def neurons(self) -> int:
        """N of the analytic costs: every non-time element of the layer input."""
        return self.batch * self.features

    def _identity(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "kind": self.kind, "neuron": self.neuron,
            "neuron_params": dict(self.neuron_params), "backend": self.backend, "seq_len": self.seq_len,
            "batch": self.batch, "features": self.features, "neurons": self.neurons,
            "precision": self.precision, "mode": self.mode, "workload": self.workload,
            "workload_params": dict(self.workload_params), "device": self.device, "seed": self.seed,
        }

    @property
    def key(self) -> str:
        """`perfsuite.results.point_key` of the identifying fields: equal keys = the same measurement."""
        return point_key(self._identity())

    def fields(self) -> dict[str, Any]:
        """The Row's point fields (``perfsuite.results`` schema) plus ``key``, JSON-ready."""
        out = self._identity()
        out["key"] = point_key(out)
        return out

    def __hash__(self) -> int:  # neuron_params is a dict; the key identifies a point
        return hash((self.key, self.scenario))


# ------------------------------------------------------------------------------------------------ errors
MISSING = "missing key"

@dataclass(frozen=True)
class Problem:
    """One validation problem: where (key path), what was found, what is allowed, a close match."""

    path: str
    value: Any
    expected: str
    what: str = "invalid value"
    suggestion: str = ""

    def render(self, file: str) -> str:
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        where = self.path or "(top level)"
        found = self.what if self.what == MISSING else f"{self.what} {self.value!r}"
        return f"{file}: {where}: {found}; expected {self.expected}{hint}"


class ScenarioError(ValueError):
    """A scenario file is invalid. ``problems`` lists every problem found; ``str()`` is the message
    for the user (one line per problem). ``path``/``value``/``expected``/``suggestion`` are those of
    the first problem."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = str(file)
        self.problems = list(problems)
        super().__init__(str(self))

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def value(self) -> Any:
        return self.problems[0].value

    @property
    def expected(self) -> str:
        return self.problems[0].expected

    @property
    def suggestion(self) -> str:
        return self.problems[0].suggestion

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.file}: invalid scenario ({n} problem{'s' if n != 1 else ''})"
        return "\n".join([head] + ["  " + p.render(self.file) for p in self.problems])


class _Problems:
    """Collects problems while the whole file is checked."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, value: Any, expected: str, what: str = "invalid value", choices=None) -> None:
        sug = closest(value, choices) if choices is not None and isinstance(value, str) else ""
        self.items.append(Problem(path, value, expected, what, sug))

    def unknown_keys(self, path: str, data: Mapping, allowed, what: str = "unknown key") -> None:
        for k in data:
            if k not in allowed:
                self.add(_join(path, str(k)), k, f"one of {list(allowed)}", what, allowed)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ------------------------------------------------------------------------------------ small type checks
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_ge(pr: _Problems, path: str, v: Any, ge: int) -> int | None:
    if _is_int(v) and v >= ge:
        return v
    pr.add(path, v, f"an int >= {ge}")
    return None


def _num_gt(pr: _Problems, path: str, v: Any, gt: float, inclusive: bool = False) -> float | None:
    ok = _is_num(v) and (v >= gt if inclusive else v > gt)
    if ok:
        return float(v)
    pr.add(path, v, f"a number {'>=' if inclusive else '>'} {gt}")
    return None


# ----------------------------------------------------------------------------------------- neurons
class PluginError(ValueError):
    """A plugin path that is malformed, not importable or not a perfsuite neuron; ``reason`` says which."""

    def __init__(self, path: Any, reason: str, suggestion: str = ""):
        self.path, self.reason, self.suggestion = path, reason, suggestion
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"plugin {path!r}: {reason}{hint}")


def load_plugin(path: str) -> type[Neuron]:
    """The `Neuron` subclass named by ``pkg.mod:Class``; `PluginError` (a ValueError) says what is wrong."""
    if not isinstance(path, str) or not _PLUGIN_RE.match(path):
        raise PluginError(path, "malformed, expected 'package.module:ClassName'")
    mod_name, attr = path.split(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as exc:  # any import-time failure of user code is a validation problem
        raise PluginError(path, f"module {mod_name!r} is not importable ({type(exc).__name__}: {exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise PluginError(path, f"{mod_name} has no attribute {part!r}", closest(part, public))
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, Neuron)):
        raise PluginError(path, f"{attr} is {obj!r}, not a subclass of perfsuite.neurons.Neuron")
    if not isinstance(getattr(obj, "spec", None), NeuronSpec):
        raise PluginError(path, f"{attr} has no `spec` (a perfsuite.neurons.NeuronSpec class attribute)")
    return obj


def is_plugin(neuron: str) -> bool:
    return ":" in neuron


def neuron_spec(neuron: str) -> NeuronSpec:
    """Spec of a registered neuron name or a plugin path."""
    return load_plugin(neuron).spec if is_plugin(neuron) else neurons.info(neuron)


def _param_defaults(neuron: str) -> tuple[dict[str, Any], bool]:
    """(constructor parameters with defaults, accepts **kwargs) of a name or plugin path."""
    if not is_plugin(neuron):
        return dict(neurons.info(neuron).params), False
    cls = load_plugin(neuron)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    return constructor_params(cls), var_kw


def build_neuron(neuron: str, *, backend: str = "eager", seq_len: int | None = None,
                 params: Mapping | None = None) -> Neuron:
    """Build a registered neuron (through `perfsuite.neurons.build`) or a plugin class.

    A plugin is given ``seq_len`` only when its constructor takes one (as `neurons.build` does)."""
    params = dict(params or {})
    if not is_plugin(neuron):
        return neurons.build(neuron, backend=backend, seq_len=seq_len, **params)
    cls = load_plugin(neuron)
    if "seq_len" in constructor_params(cls):
        params["seq_len"] = seq_len
    return cls(backend=backend, **params)


def build_point(point: Point) -> Neuron:
    """The neuron module a point measures (on the CPU, float32; the runner moves and casts it)."""
    return build_neuron(point.neuron, backend=point.backend, seq_len=point.seq_len,
                        params=point.neuron_params)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is invalid; expected one of {list(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------------------------------- scenario
@dataclass(frozen=True)
class _Entry:
    """A validated neuron entry: its name or plugin path, given params and its axes."""

    neuron: str
    params: dict
    axes: dict
    spec: NeuronSpec
    defaults: dict
    #: position in the file's list, for error paths (invalid entries are left out of the lists)
    index: int = -1


@dataclass(frozen=True)
class _Rule:
    tests: dict  # field -> predicate(value) -> bool
    reason: str | None


@dataclass
class Scenario:
    """A validated scenario. Build it with `load_scenario` (a file) or `scenario_from_dict`."""

    name: str
    path: str
    description: str
    device: str
    seed: int
    workload: str
    workload_params: dict
    metrics: tuple
    timing: Timing
    limits: Limits
    #: the validated ``extrapolation:`` block, or None
    extrapolation: dict | None
    _entries: list = field(default_factory=list, repr=False)
    _include: list = field(default_factory=list, repr=False)
    _exclude: list = field(default_factory=list, repr=False)

    def points(self, device: str | None = None) -> list[Point]:
        """The sweep: cartesian product minus exclusions, in a stable order (neuron entries in file
        order, then backend, mode, precision, seq_len, batch, features, each in file order).

        ``device`` overrides the scenario's (e.g. the CLI's ``--device``); ``auto`` is resolved here."""
        return [p for p, reason in self._expand(device) if reason is None]

    def excluded(self, device: str | None = None) -> list[tuple[Point, str]]:
        """Points left out by include/exclude rules, each with the reason (for ``run --dry-run``)."""
        return [(p, reason) for p, reason in self._expand(device) if reason is not None]

    def _expand(self, device: str | None) -> list[tuple[Point, str | None]]:
        dev = resolve_device(device if device is not None else self.device)
        out = []
        for e in self._entries:
            ax = e.axes
            for backend, mode, precision, seq_len, batch, features in itertools.product(
                    ax["backends"], ax["modes"], ax["precisions"], ax["seq_lens"], ax["batch"], ax["features"]):
                wparams = _workload_params_for(self.workload, self.workload_params, features)
                params = _point_params(e, features, wparams, self.workload)
                p = Point(
                    scenario=self.name, neuron=e.neuron, neuron_params=params, backend=backend,
                    seq_len=seq_len, batch=batch, features=features, precision=precision, mode=mode,
                    workload=self.workload, workload_params=wparams, metrics=self.metrics,
                    timing=self.timing, limits=self.limits, seed=self.seed, device=dev,
                    unsupported=_unsupported(e, mode),
                )
                out.append((p, self._rule_reason(p)))
        return out

    def _rule_reason(self, p: Point) -> str | None:
        values = {f: getattr(p, f) for f in RULE_FIELDS}
        for rule in self._exclude:
            if _rule_matches(rule, values):
                return "excluded" + (f": {rule.reason}" if rule.reason else " by a rule")
        if self._include and not any(_rule_matches(r, values) for r in self._include):
            return "not matched by any include rule"
        return None


def _rule_matches(rule: _Rule, values: dict) -> bool:
    return all(test(values[f]) for f, test in rule.tests.items())


def _unsupported(e: _Entry, mode: str) -> str | None:
    if mode == "step" and not e.spec.serial_inference:
        return (f"{e.neuron} has no serial inference (spec §7): mode 'step' needs init_state/step; "
                f"measure it with mode 'forward'")
    return None


def _workload_params_for(workload: str, given: dict, features: int) -> dict:
    """Complete workload parameters of a point: network widths default to the point's features."""
    wp = dict(given)
    if workload == "network":
        if wp.get("hidden") is None:
            wp["hidden"] = features
        if wp.get("outputs") is None:
            wp["outputs"] = wp["hidden"]
    return wp


def _point_params(e: _Entry, features: int, wparams: dict, workload: str) -> dict:
    """Constructor parameters of a point: the neuron's defaults, the given ones, and, for neurons with
    a channel dimension (DSN), ``features`` = the width of the neuron layer it sits in (the point's
    features for a single layer, ``hidden`` in a network)."""
    params = {k: v for k, v in e.defaults.items() if k != "seq_len"}
    params.update(e.params)
    if e.spec.needs_features:
        params["features"] = wparams["hidden"] if workload == "network" else features
    return params


# --------------------------------------------------------------------------------------- validation
def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise `ScenarioError` listing every problem."""
    p = Path(path)
    file = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(file, [Problem("", file, "an existing scenario file (.yaml)", "file not found")]) from None
    except OSError as exc:
        raise ScenarioError(file, [Problem("", file, f"a readable file ({exc})", "cannot read")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(file, [Problem(where, problem, "valid YAML", "YAML syntax error:")]) from None
    return scenario_from_dict(data, path=file)


def scenario_from_dict(data: Any, path: str = "<scenario>") -> Scenario:
    """Validate an already-parsed scenario mapping (what ``yaml.safe_load`` returns)."""
    pr = _Problems()
    if not isinstance(data, dict):
        raise ScenarioError(path, [Problem("", data, "a mapping of scenario keys (name, neurons, seq_lens, ...)",
                                           "the file holds")])
    pr.unknown_keys("", data, TOP_KEYS, "unknown top-level key")

    name = data.get("name")
    if not (isinstance(name, str) and _NAME_RE.match(name)):
        pr.add("name", name, "a non-empty name of letters, digits, '_', '-', '.' (it names the run folder)",
               MISSING if name is None else "invalid value")
    description = data.get("description", "")
    if not isinstance(description, str):
        pr.add("description", description, "a string")
    device = data.get("device", "auto")
    if device not in DEVICES:
        pr.add("device", device, f"one of {list(DEVICES)}", choices=DEVICES)
    seed = data.get("seed", 0)
    if not (_is_int(seed) and seed >= 0):
        pr.add("seed", seed, "an int >= 0")

    axes = {a: _axis(pr, a, data[a]) if a in data else None for a in AXES}
    workload, wparams = _workload(pr, data.get("workload", "layer"))
    metrics = _choices_list(pr, "metrics", data.get("metrics", list(METRICS)), METRICS, "metric")
    timing = _timing(pr, data.get("timing", {}))
    limits = _limits(pr, data.get("limits", {}))
    extrapolation = _extrapolation(pr, data["extrapolation"]) if data.get("extrapolation") is not None else None

    entries: list[_Entry] = []
    if "neurons" in data:
        entries = _neuron_entries(pr, "neurons", data["neurons"])
    elif extrapolation is None:
        pr.add("neurons", None, "a list of neurons (or an `extrapolation:` block for a scenario without "
                                "timed points)", MISSING)
    if "neurons" in data:
        for a in ("seq_lens", "features"):
            if a not in data and not (entries and all(a in e.axes for e in entries)):
                pr.add(a, None, f"a list of positive ints (needed by every timed scenario; a neuron entry "
                                f"may also give its own `{a}`)", MISSING)
    known_neurons = [e.neuron for e in entries]
    include = _rules(pr, "include", data.get("include", []), known_neurons)
    exclude = _rules(pr, "exclude", data.get("exclude", []), known_neurons)

    # fill the scenario-level axes into each entry that did not override them, then check parameter
    # values by building (only entries whose lengths and widths are known: others already have problems)
    full_entries = []
    for e in entries:
        ax = {a: e.axes[a] if a in e.axes else (axes[a] if a in data else AXIS_DEFAULTS.get(a)) for a in AXES}
        e = dataclasses.replace(e, axes=ax)
        full_entries.append(e)
        if ax["seq_lens"] is not None and ax["features"] is not None:
            _check_values(pr, f"neurons[{e.index}]", e, workload, wparams)
    _check_duplicates(pr, full_entries)
    if pr.items:
        raise ScenarioError(path, pr.items)

    return Scenario(
        name=name, path=path, description=description, device=device, seed=seed, workload=workload,
        workload_params=wparams, metrics=tuple(metrics), timing=timing, limits=limits,
        extrapolation=extrapolation, _entries=full_entries, _include=include, _exclude=exclude,
    )


def _as_list(v: Any) -> list:
    """A scalar stands for a one-element list (``precisions: fp32``)."""
    return v if isinstance(v, list) else [v]


def _items(path: str, raw: Any) -> list[tuple[str, Any]]:
    """(key path, value) of each element: ``seq_lens[2]`` in a list, ``seq_lens`` for a scalar."""
    if isinstance(raw, list):
        return [(f"{path}[{i}]", v) for i, v in enumerate(raw)]
    return [(path, raw)]


def _axis(pr: _Problems, path: str, raw: Any) -> list | None:
    """Validate one sweep axis; None when invalid (its problems recorded)."""
    name = path.rsplit(".", 1)[-1]
    if name == "backends":
        return _choices_list(pr, path, raw, neurons.backend_names(), "backend")
    if name == "precisions":
        return _choices_list(pr, path, raw, PRECISIONS, "precision")
    if name == "modes":
        return _choices_list(pr, path, raw, MODES, "mode")
    return _int_list(pr, path, raw)


def _choices_list(pr: _Problems, path: str, raw: Any, choices, what: str) -> list | None:
    items = _as_list(raw)
    if not items:
        pr.add(path, raw, f"a non-empty list of {what}s from {list(choices)}", "empty list")
        return None
    n0 = len(pr.items)
    for vp, v in _items(path, raw):
        if v not in choices:
            pr.add(vp, v, f"one of {list(choices)}", f"unknown {what}", choices)
    _no_duplicates(pr, path, items)
    return items if len(pr.items) == n0 else None


def _int_list(pr: _Problems, path: str, raw: Any) -> list | None:
    """Positive ints, or a range mapping {start, stop, mul | step} (stop inclusive)."""
    if isinstance(raw, dict):
        return _int_range(pr, path, raw)
    items = _as_list(raw)
    if not items:
        pr.add(path, raw, "a non-empty list of ints >= 1", "empty list")
        return None
    n0 = len(pr.items)
    for vp, v in _items(path, raw):
        _int_ge(pr, vp, v, 1)
    _no_duplicates(pr, path, items)
    return items if len(pr.items) == n0 else None


def _int_range(pr: _Problems, path: str, raw: dict) -> list | None:
    n0 = len(pr.items)
    pr.unknown_keys(path, raw, ("start", "stop", "mul", "step"))
    start = _int_ge(pr, _join(path, "start"), raw.get("start"), 1)
    stop = _int_ge(pr, _join(path, "stop"), raw.get("stop"), 1)
    if ("mul" in raw) == ("step" in raw):
        pr.add(path, raw, "a range {start, stop} with exactly one of `mul` (geometric) or `step` (arithmetic)")
    elif "mul" in raw:
        _int_ge(pr, _join(path, "mul"), raw["mul"], 2)
    else:
        _int_ge(pr, _join(path, "step"), raw["step"], 1)
    if len(pr.items) > n0:
        return None
    if start > stop:
        pr.add(_join(path, "stop"), stop, f"an int >= start ({start})")
        return None
    values, v = [], start
    while v <= stop and len(values) <= MAX_RANGE_VALUES:
        values.append(v)
        v = v * raw["mul"] if "mul" in raw else v + raw["step"]
    if len(values) > MAX_RANGE_VALUES:
        pr.add(path, raw, f"a range of at most {MAX_RANGE_VALUES} values")
        return None
    return values


def _no_duplicates(pr: _Problems, path: str, items: list) -> None:
    seen = set()
    for i, v in enumerate(items):
        try:
            if v in seen:
                pr.add(f"{path}[{i}]", v, "each value once (a repeated value would repeat points)", "duplicate value")
            seen.add(v)
        except TypeError:  # unhashable: already reported as a wrong type
            pass


def _workload(pr: _Problems, raw: Any) -> tuple[str, dict]:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        pr.add("workload", raw, f"one of {list(WORKLOADS)} or a mapping {{type: layer|network, ...}}")
        return "layer", dict(WORKLOAD_PARAMS["layer"])
    kind = raw.get("type", "layer")
    if kind not in WORKLOADS:
        pr.add("workload.type", kind, f"one of {list(WORKLOADS)}", "unknown workload", WORKLOADS)
        return "layer", dict(WORKLOAD_PARAMS["layer"])
    allowed = WORKLOAD_PARAMS[kind]
    pr.unknown_keys("workload", raw, ("type",) + tuple(allowed), f"unknown {kind} workload key")
    params = dict(allowed)
    for k, v in raw.items():
        if k == "type" or k not in allowed:
            continue
        if k == "target_rate":
            if not (_is_num(v) and 0 < v < 1):
                pr.add("workload.target_rate", v, "a firing rate strictly between 0 and 1 (e.g. 0.1)")
        elif k in ("hidden", "outputs") and v is None:
            pass  # = the point's features
        else:
            _int_ge(pr, f"workload.{k}", v, 1)
        params[k] = v
    return kind, params


def _timing(pr: _Problems, raw: Any) -> Timing:
    if not isinstance(raw, dict):
        pr.add("timing", raw, f"a mapping with keys {[f.name for f in dataclasses.fields(Timing)]}")
        return Timing()
    pr.unknown_keys("timing", raw, [f.name for f in dataclasses.fields(Timing)])
    d = Timing()
    warmup = raw.get("warmup_ms", d.warmup_ms)
    rep = raw.get("rep_ms", d.rep_ms)
    min_reps = raw.get("min_reps", d.min_reps)
    max_reps = raw.get("max_reps", d.max_reps)
    cold = raw.get("cold_start", d.cold_start)
    ok = [_num_gt(pr, "timing.warmup_ms", warmup, 0, inclusive=True) is not None,
          _num_gt(pr, "timing.rep_ms", rep, 0) is not None,
          _int_ge(pr, "timing.min_reps", min_reps, 1) is not None,
          _int_ge(pr, "timing.max_reps", max_reps, 1) is not None]
    if not isinstance(cold, bool):
        pr.add("timing.cold_start", cold, "true or false")
        ok.append(False)
    if _is_int(min_reps) and _is_int(max_reps) and 1 <= min_reps and max_reps < min_reps:
        pr.add("timing.max_reps", max_reps, f"an int >= timing.min_reps ({min_reps})")
        ok.append(False)
    return Timing(float(warmup), float(rep), min_reps, max_reps, cold) if all(ok) else d


def _limits(pr: _Problems, raw: Any) -> Limits:
    if not isinstance(raw, dict):
        pr.add("limits", raw, f"a mapping with keys {[f.name for f in dataclasses.fields(Limits)]}")
        return Limits()
    pr.unknown_keys("limits", raw, [f.name for f in dataclasses.fields(Limits)])
    d = Limits()
    timeout = raw.get("timeout_s", d.timeout_s)
    mem = raw.get("memory_gb", d.memory_gb)
    ref = raw.get("reference_max_len", d.reference_max_len)
    ok = [_num_gt(pr, "limits.timeout_s", timeout, 0) is not None,
          _int_ge(pr, "limits.reference_max_len", ref, 0) is not None]
    if mem is not None:
        ok.append(_num_gt(pr, "limits.memory_gb", mem, 0) is not None)
    return Limits(float(timeout), None if mem is None else float(mem), ref) if all(ok) else d


def _neuron_entries(pr: _Problems, path: str, raw: Any) -> list[_Entry]:
    if not isinstance(raw, list) or not raw:
        pr.add(path, raw, "a non-empty list of neuron names or mappings {name|plugin, params, ...}",
               "empty list" if raw == [] else "invalid value")
        return []
    entries = []
    for i, item in enumerate(raw):
        e = _neuron_entry(pr, f"{path}[{i}]", item)
        if e is not None:
            entries.append(dataclasses.replace(e, index=i))
    return entries


def _neuron_ref(pr: _Problems, path: str, ident: Any, plugin: bool) -> tuple[str, NeuronSpec] | None:
    """Resolve a registered name or a plugin path to (id, spec), recording a problem at ``path``."""
    if plugin:
        try:
            return ident, load_plugin(ident).spec
        except PluginError as exc:
            pr.items.append(Problem(path, ident, f"an importable perfsuite Neuron subclass "
                                    f"'package.module:ClassName' ({exc.reason})", "bad plugin", exc.suggestion))
            return None
    if not isinstance(ident, str) or ident not in neurons.names():
        pr.add(path, ident, f"a registered neuron, one of {neurons.names()} (or a plugin 'package.module:ClassName')",
               "unknown neuron", neurons.names())
        return None
    return ident, neurons.info(ident)


def _neuron_entry(pr: _Problems, path: str, item: Any) -> _Entry | None:
    """One neuron entry: a name, a plugin path, or a mapping {name|plugin, params, <axis overrides>}."""
    if isinstance(item, str):
        ref = _neuron_ref(pr, path, item, is_plugin(item))
        return None if ref is None else _Entry(ref[0], {}, {}, ref[1], _param_defaults(ref[0])[0])
    if not isinstance(item, dict):
        pr.add(path, item, "a neuron name or a mapping {name: ..., params: {...}} / {plugin: 'pkg.mod:Class', ...}")
        return None
    pr.unknown_keys(path, item, NEURON_KEYS, "unknown neuron-entry key")
    if ("name" in item) == ("plugin" in item):
        pr.add(path, item, "exactly one of `name` (a registered neuron) or `plugin` ('package.module:ClassName')")
        return None
    key = "plugin" if "plugin" in item else "name"
    ref = _neuron_ref(pr, _join(path, key), item[key], key == "plugin")
    axes = {}
    for a in AXES:
        if a in item:
            v = _axis(pr, _join(path, a), item[a])
            if v is not None:
                axes[a] = v
    params = item.get("params")
    params = {} if params is None else params
    if not isinstance(params, dict):
        pr.add(_join(path, "params"), params, "a mapping of parameter names to values")
        return None
    if ref is None:
        return None
    neuron, spec = ref
    defaults, var_kw = _param_defaults(neuron)
    valid = [p for p in defaults if p != "seq_len"]
    ok = True
    for k in params:
        if k == "seq_len":
            pr.add(_join(path, "params.seq_len"), k, "no seq_len here: it comes from `seq_lens` (the sweep)",
                   "parameter not allowed")
            ok = False
        elif k not in defaults and not var_kw:
            pr.add(_join(path, f"params.{k}"), k, f"a parameter of {neuron}: {valid}",
                   "unknown parameter", valid)
            ok = False
    return _Entry(neuron, dict(params), axes, spec, defaults) if ok else None


def _check_values(pr: _Problems, path: str, e: _Entry, workload: str, wparams: dict) -> None:
    """Build the neuron once per distinct (seq_len, layer width) on the meta device: parameter values
    are checked by the neuron's own constructor (its ValueError names the parameter and what it expects)."""
    lens = e.axes["seq_lens"] if e.spec.fixed_length else [min(e.axes["seq_lens"])]
    widths = e.axes["features"] if e.spec.needs_features else [e.axes["features"][0]]
    if e.spec.needs_features and "features" in e.params:
        pr.add(_join(path, "params.features"), e.params["features"],
               "no `features` here: it is filled from the sweep's `features` (the layer width)",
               "parameter not allowed")
        return
    for T, F in itertools.product(lens, widths):
        wp = _workload_params_for(workload, wparams, F)
        params = _point_params(e, F, wp, workload)
        err = _build_error(e.neuron, T, params)
        if err is not None:
            bad = [k for k in e.params if re.search(rf"\b{re.escape(k)}=", err)]
            where = _join(path, f"params.{bad[0]}") if len(bad) == 1 else _join(path, "params")
            value = e.params[bad[0]] if len(bad) == 1 else dict(e.params)
            at = f" at seq_len={T}" if e.spec.fixed_length else ""
            pr.add(where, value, f"a value the neuron accepts{at}: {err}", "rejected by the neuron:")
            return


def _build_error(neuron: str, seq_len: int, params: dict) -> str | None:
    """The ValueError (or TypeError: a missing argument) message of building the neuron, else None.

    Up to ``BUILD_CHECK_CPU_MAX_T`` the neuron is really built on the CPU (a 2048 x 2048 weight is
    16 MB); above, on the ``meta`` device, which allocates nothing (some meta ops import
    torch._dynamo, seconds on a small CPU, hence not always meta). Other exceptions are not
    validation problems: a plugin may fail at run time, and the runner records that as an error row."""
    device = "cpu" if seq_len <= BUILD_CHECK_CPU_MAX_T else "meta"
    try:
        with torch.device(device):
            build_neuron(neuron, backend="reference", seq_len=seq_len, params=params)
    except (ValueError, TypeError) as exc:
        return str(exc)
    except Exception:
        return None
    return None


def _check_duplicates(pr: _Problems, entries: list[_Entry]) -> None:
    """Two entries may name the same neuron (other parameters, other backends) but must not produce
    the same point twice: a repeated point would be measured twice under one key."""
    owner: dict[tuple, int] = {}
    for e in entries:
        if any(e.axes[a] is None for a in AXES):
            continue
        params = repr(sorted(e.params.items()))
        for combo in itertools.product(*(e.axes[a] for a in AXES)):
            j = owner.setdefault((e.neuron, params) + combo, e.index)
            if j != e.index:
                shown = ", ".join(f"{a}={v!r}" for a, v in zip(AXES, combo))
                pr.add(f"neurons[{e.index}]", e.neuron, f"points not already listed by neurons[{j}] (both give {shown})",
                       "duplicate points of neuron")
                break


def _rules(pr: _Problems, path: str, raw: Any, known_neurons: list[str]) -> list[_Rule]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        pr.add(path, raw, "a list of rules, each a mapping of point fields to a value or list of values")
        return []
    rules = []
    for i, r in enumerate(raw):
        rp = f"{path}[{i}]"
        if not isinstance(r, dict) or not r:
            pr.add(rp, r, f"a non-empty mapping of point fields ({list(RULE_FIELDS)}) to a value or list")
            continue
        n0 = len(pr.items)
        pr.unknown_keys(rp, r, RULE_FIELDS + ("reason",), "unknown rule field")
        tests = {}
        for f, v in r.items():
            if f == "reason":
                if not isinstance(v, str):
                    pr.add(f"{rp}.reason", v, "a string saying why")
                continue
            if f in RULE_FIELDS:
                test = _rule_test(pr, f"{rp}.{f}", f, v, known_neurons)
                if test is not None:
                    tests[f] = test
        if len(pr.items) == n0:
            rules.append(_Rule(tests, r.get("reason")))
    return rules


def _rule_test(pr: _Problems, path: str, f: str, raw: Any, known_neurons: list[str]):
    """A predicate for one rule field: any listed value matches; numeric fields also take ranges."""
    items = _as_list(raw)
    if not items:
        pr.add(path, raw, "a value or a non-empty list of values", "empty list")
        return None
    choices = {"neuron": neurons.names() + known_neurons, "backend": neurons.backend_names(),
               "precision": PRECISIONS, "mode": MODES, "workload": WORKLOADS, "device": DEVICES[1:]}.get(f)
    preds = []
    for vp, v in _items(path, raw):
        if f in NUMERIC_RULE_FIELDS:
            pred = _numeric_pred(v)
            if pred is None:
                pr.add(vp, v, "an int >= 1, a comparison such as '>16000' or '<=2048', or a span '1000..8000'")
                return None
            preds.append(pred)
        else:
            if v not in choices:
                pr.add(vp, v, f"one of {list(dict.fromkeys(choices))}", f"unknown {f}", choices)
                return None
            preds.append(lambda x, v=v: x == v)
    return lambda x: any(p(x) for p in preds)


def _numeric_pred(v: Any):
    if _is_int(v) and v >= 1:
        return lambda x: x == v
    if isinstance(v, str):
        m = _CMP_RE.match(v)
        if m:
            op, n = _CMP_OPS[m.group(1)], int(m.group(2).replace("_", ""))
            return lambda x: op(x, n)
        m = _SPAN_RE.match(v)
        if m:
            lo, hi = int(m.group(1).replace("_", "")), int(m.group(2).replace("_", ""))
            if lo <= hi:
                return lambda x: lo <= x <= hi
    return None


# ---------------------------------------------------------------------------------- extrapolation
#: key -> (type check, what is expected): the fields of `perfsuite.extrapolation.ExtrapolationConfig`,
#: which gives each a default (so none is required here). ``neurons`` is checked like the top-level
#: list, restricted to registered names with ``params`` (the extrapolation runner builds by name).
_EXTRAPOLATION_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (lambda v: isinstance(v, str) and bool(v), "a task name (a non-empty string)"),
    "task_params": (lambda v: isinstance(v, dict), "a mapping of task parameters"),
    "train_len": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "eval_lens": (lambda v: isinstance(v, list) and bool(v) and all(_is_int(x) and x >= 1 for x in v),
                  "a non-empty list of ints >= 1"),
    "steps": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "batch": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "eval_batch": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "hidden": (lambda v: _is_int(v) and v >= 1, "an int >= 1 (model width)"),
    "layers": (lambda v: _is_int(v) and v >= 1, "an int >= 1 (model depth)"),
    "lr": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "precision": (lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"),
    "backend": (lambda v: v in neurons.backend_names(), "a backend name (perfsuite list backends)"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "serial_check_len": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "neurons": (lambda v: True, ""),
}


def _extrapolation(pr: _Problems, raw: Any) -> dict | None:
    """Validate the ``extrapolation:`` block's keys and types; keep it as a dict. Neuron names and
    parameter names are checked as at the top level, parameter values at ``train_len``."""
    if not isinstance(raw, dict):
        pr.add("extrapolation", raw, f"a mapping with keys {list(_EXTRAPOLATION_KEYS)}")
        return None
    pr.unknown_keys("extrapolation", raw, _EXTRAPOLATION_KEYS, "unknown extrapolation key")
    for k, v in raw.items():
        if k in _EXTRAPOLATION_KEYS and k != "neurons":
            check, expected = _EXTRAPOLATION_KEYS[k]
            if not check(v):
                choices = PRECISIONS if k == "precision" else neurons.backend_names() if k == "backend" else None
                pr.add(f"extrapolation.{k}", v, expected, choices=choices)
    _extrapolation_task(pr, raw)
    if "neurons" in raw:
        n0 = len(pr.items)
        items = raw["neurons"]
        for j, item in enumerate(items if isinstance(items, list) else []):
            ip = f"extrapolation.neurons[{j}]"
            if isinstance(item, dict):
                pr.unknown_keys(ip, {k: v for k, v in item.items() if k in NEURON_KEYS}, ("name", "params"),
                                "not supported in an extrapolation neuron entry:")
            elif isinstance(item, str) and is_plugin(item):
                pr.add(ip, item, "a registered neuron name (plugins are not supported by extrapolation runs)",
                       "plugin not supported:")
        if len(pr.items) > n0:
            return dict(raw)
        entries = _neuron_entries(pr, "extrapolation.neurons", items)
        train_len = raw.get("train_len")
        if len(pr.items) == n0 and _is_int(train_len) and train_len >= 1:
            for e in entries:
                axes = {"seq_lens": [train_len], "features": [_extrapolation_width(raw)]}
                _check_values(pr, f"extrapolation.neurons[{e.index}]", dataclasses.replace(e, axes=axes),
                              "layer", dict(WORKLOAD_PARAMS["layer"]))
    return dict(raw)


def _extrapolation_task(pr: _Problems, raw: dict) -> None:
    """The task name and its parameters, checked by building the task (cheap: a small Markov chain or
    regime model), so a typo fails validation instead of the run after its timed points."""
    from .tasks import TASKS, make_task

    task, params = raw.get("task", "markov_lm"), raw.get("task_params", {})
    if not isinstance(task, str) or task not in TASKS:
        pr.add("extrapolation.task", task, f"one of {list(TASKS)}", "unknown task", list(TASKS))
        return
    if not isinstance(params, dict):
        return  # reported by the key check above
    valid = list(TASKS[task].__dataclass_fields__)
    for k in params:
        if k not in valid:
            pr.add(f"extrapolation.task_params.{k}", k, f"a parameter of task {task!r}: {valid}",
                   "unknown task parameter", valid)
    if all(k in valid for k in params):
        try:
            make_task(task, **params)
        except (ValueError, TypeError) as exc:
            pr.add("extrapolation.task_params", params, str(exc), "invalid task parameters")


def _extrapolation_width(raw: dict) -> int:
    """Layer width used to check extrapolation neurons' parameters (their model's ``hidden``)."""
    h = raw.get("hidden")
    return h if _is_int(h) and h >= 1 else 1
