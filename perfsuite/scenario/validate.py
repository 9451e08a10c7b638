"""Validating a scenario: every key against its declaration in `perfsuite.scenario.schema`, every problem at once.

Owns: `load_scenario` (a file), `scenario_from_dict` (parsed data). Scalar keys, choice lists, sweep
axes and blocks of plain keys are checked generically from their `Key`; the structured keys (neuron
entries, include/exclude rules, the workload, the extrapolation block) have their own functions here,
and neuron parameter values are checked by building the neuron (`perfsuite.scenario.neuron_check`).

May import: the standard library, `perfsuite.neurons`, `perfsuite.tasks` (extrapolation tasks are built to
check their parameters) and the rest of `perfsuite.scenario`.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from .. import neurons
from ..neurons import plugins
from ..neurons.plugins import CallTimeout, PluginError, call_with_timeout, is_plugin, load_plugin, param_defaults
from ..neurons.spec import NeuronSpec
from .errors import MISSING, Problem, Problems, ScenarioError, join
from .expand import Entry, Scenario, count_points
from .model import Limits, Timing
from .neuron_check import check_values
from .rules import as_list as _as_list
from .rules import items as _items
from .rules import rules as _rules
from .schema import (
    AXES,
    AXES_KEYS,
    EXTRAPOLATION,
    LIMITS,
    MAX_POINTS,
    MAX_RANGE_VALUES,
    MAX_TASK_INT,
    NEURON_KEYS,
    TIMING,
    TOP,
    WORKLOAD_PARAMS,
    WORKLOADS,
    Key,
    is_int,
    keyed,
)
from .yaml_load import read_yaml

_TOP, _AXES = keyed(TOP), keyed(AXES_KEYS)


class Options:
    """How to validate: ``plugins=False`` refuses plugin entries without importing them (untrusted files)."""

    def __init__(self, plugins: bool = True):
        self.plugins = plugins


def load_scenario(path: str | Path, *, plugins: bool = True) -> Scenario:
    """Read and validate a scenario file; raise `ScenarioError` listing every problem (with lines)."""
    file = str(path)
    data, lines, problems = read_yaml(Path(path), file)
    if data is None and problems:
        raise ScenarioError(file, problems)
    return scenario_from_dict(data, path=file, plugins=plugins, _lines=lines, _problems=problems)


def scenario_from_dict(data: Any, path: str = "<scenario>", *, plugins: bool = True,
                       _lines: dict | None = None, _problems: list | None = None) -> Scenario:
    """Validate an already-parsed scenario mapping (what ``yaml.safe_load`` returns)."""
    if not isinstance(data, dict):
        raise ScenarioError(path, [Problem("", data, "a mapping of scenario keys (name, neurons, seq_lens, ...)",
                                           "the file holds")])
    pr = Problems()
    pr.items.extend(_problems or [])
    opts = Options(plugins)
    pr.unknown_keys("", data, [k.name for k in TOP], "unknown top-level key")

    name = data.get("name")
    if not (isinstance(name, str) and re.fullmatch(_TOP["name"].pattern, name)):
        pr.add("name", name, _TOP["name"].expected(), MISSING if name is None else "invalid value")
    for k in ("description", "device", "seed"):
        _scalar(pr, k, _TOP[k], data.get(k, _TOP[k].default))
    description, device, seed = (data.get(k, _TOP[k].default) for k in ("description", "device", "seed"))

    axes = {a: _axis(pr, a, data[a]) if a in data else None for a in AXES}
    workload, wparams = _workload(pr, data.get("workload", _TOP["workload"].default))
    metrics = _choices_list(pr, "metrics", data.get("metrics", _TOP["metrics"].default), _TOP["metrics"])
    timing_raw = data.get("timing", {})
    timing = Timing(**_block(pr, "timing", timing_raw, TIMING, Timing()))
    if isinstance(timing_raw, dict) and is_int(timing.min_reps) and timing.max_reps < timing.min_reps:
        pr.add("timing.max_reps", timing.max_reps, f"an int >= timing.min_reps ({timing.min_reps})")
    limits = Limits(**_block(pr, "limits", data.get("limits", {}), LIMITS, Limits()))
    extrapolation = (_extrapolation(pr, data["extrapolation"], opts) if data.get("extrapolation") is not None
                     else None)

    entries: list[Entry] = []
    if "neurons" in data:
        entries = _neuron_entries(pr, "neurons", data["neurons"], opts)
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

    # fill the scenario-level axes into each entry that did not override them; check the size of the
    # sweep, then parameter values by building (only entries whose lengths and widths are known)
    full = [dataclasses.replace(e, axes={a: e.axes[a] if a in e.axes else (axes[a] if a in data else
                                                                             _AXES[a].default) for a in AXES})
            for e in entries]
    complete = [e for e in full if all(e.axes[a] is not None for a in AXES)]
    n_points = count_points(complete)
    if n_points > MAX_POINTS:
        sizes = "; ".join(f"neurons[{e.index}]: " + " x ".join(f"{len(e.axes[a])} {a}" for a in AXES)
                          for e in complete)
        pr.add("neurons", f"{n_points} points", f"at most {MAX_POINTS} points per scenario (the product of the "
               f"axes: {sizes}); split the sweep into several scenarios", "too many points:")
    else:
        for e in complete:
            check_values(pr, f"neurons[{e.index}]", e, workload, wparams)
        _check_duplicates(pr, complete)
    if pr.items:
        raise ScenarioError(path, pr.located(_lines or {}))
    return Scenario(
        name=name, path=path, description=description, device=device, seed=seed, workload=workload,
        workload_params=wparams, metrics=tuple(metrics), timing=timing, limits=limits,
        extrapolation=extrapolation, _entries=full, _include=include, _exclude=exclude,
        _threads_given=isinstance(timing_raw, dict) and "threads" in timing_raw,
    )


# ----------------------------------------------------------------------------------- generic checks
def _scalar(pr: Problems, path: str, key: Key, v: Any) -> bool:
    if key.check(v):
        return True
    what = f"unknown {key.noun}" if key.noun and isinstance(v, str) else "invalid value"
    pr.add(path, v, key.expected(), what, key.choice_list() if key.kind == "choice" else None)
    return False


def _block(pr: Problems, path: str, raw: Any, keys: tuple, default) -> dict:
    """A mapping of scalar keys: the values (defaults for absent or invalid ones); problems recorded."""
    fields = dataclasses.asdict(default)
    if not isinstance(raw, dict):
        pr.add(path, raw, f"a mapping with keys {[k.name for k in keys]}")
        return fields
    pr.unknown_keys(path, raw, [k.name for k in keys])
    for k in keys:
        if k.name in raw and _scalar(pr, join(path, k.name), k, raw[k.name]):
            v = raw[k.name]
            fields[k.name] = float(v) if k.kind == "number" and v is not None else v
    return fields


def _axis(pr: Problems, path: str, raw: Any) -> list | None:
    """Validate one sweep axis; None when invalid (its problems recorded)."""
    key = _AXES[path.rsplit(".", 1)[-1]]
    return _choices_list(pr, path, raw, key) if key.kind == "choices" else _int_list(pr, path, raw)


def _choices_list(pr: Problems, path: str, raw: Any, key: Key) -> list | None:
    items, choices = _as_list(raw), key.choice_list()
    if not items:
        pr.add(path, raw, f"a non-empty list of {key.noun}s from {choices}", "empty list")
        return None
    n0 = len(pr.items)
    for vp, v in _items(path, raw):
        if not isinstance(v, str) or v not in choices:
            pr.add(vp, v, f"one of {choices}", f"unknown {key.noun}", choices)
    _no_duplicates(pr, path, items)
    return items if len(pr.items) == n0 else None


def _int_list(pr: Problems, path: str, raw: Any) -> list | None:
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


def _int_ge(pr: Problems, path: str, v: Any, ge: int) -> int | None:
    if is_int(v) and v >= ge:
        return v
    pr.add(path, v, f"an int >= {ge}")
    return None


def _int_range(pr: Problems, path: str, raw: dict) -> list | None:
    n0 = len(pr.items)
    pr.unknown_keys(path, raw, ("start", "stop", "mul", "step"))
    start = _int_ge(pr, join(path, "start"), raw.get("start"), 1)
    stop = _int_ge(pr, join(path, "stop"), raw.get("stop"), 1)
    if ("mul" in raw) == ("step" in raw):
        pr.add(path, raw, "a range {start, stop} with exactly one of `mul` (geometric) or `step` (arithmetic)")
    elif "mul" in raw:
        _int_ge(pr, join(path, "mul"), raw["mul"], 2)
    else:
        _int_ge(pr, join(path, "step"), raw["step"], 1)
    if len(pr.items) > n0:
        return None
    if start > stop:
        pr.add(join(path, "stop"), stop, f"an int >= start ({start})")
        return None
    values, v = [], start
    while v <= stop and len(values) <= MAX_RANGE_VALUES:
        values.append(v)
        v = v * raw["mul"] if "mul" in raw else v + raw["step"]
    if len(values) > MAX_RANGE_VALUES:
        pr.add(path, raw, f"a range of at most {MAX_RANGE_VALUES} values")
        return None
    return values


def _no_duplicates(pr: Problems, path: str, items: list) -> None:
    seen = set()
    for i, v in enumerate(items):
        try:
            if v in seen:
                pr.add(f"{path}[{i}]", v, "each value once (a repeated value would repeat points)", "duplicate value")
            seen.add(v)
        except TypeError:  # unhashable: already reported as a wrong type
            pass


def _workload(pr: Problems, raw: Any) -> tuple[str, dict]:
    defaults = {t: {k.name: k.default for k in WORKLOAD_PARAMS[t]} for t in WORKLOADS}
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        pr.add("workload", raw, f"one of {list(WORKLOADS)} or a mapping {{type: layer|network, ...}}")
        return "layer", defaults["layer"]
    kind = raw.get("type", "layer")
    if not isinstance(kind, str) or kind not in WORKLOADS:
        pr.add("workload.type", kind, f"one of {list(WORKLOADS)}", "unknown workload", WORKLOADS)
        return "layer", defaults["layer"]
    allowed = keyed(WORKLOAD_PARAMS[kind])
    pr.unknown_keys("workload", raw, ("type",) + tuple(allowed), f"unknown {kind} workload key")
    params = defaults[kind]
    for k, v in raw.items():
        if k in allowed:
            _scalar(pr, f"workload.{k}", allowed[k], v)
            params[k] = v
    return kind, params


# ----------------------------------------------------------------------------------------- neurons
def _neuron_entries(pr: Problems, path: str, raw: Any, opts: Options) -> list[Entry]:
    if not isinstance(raw, list) or not raw:
        pr.add(path, raw, "a non-empty list of neuron names or mappings {name|plugin, params, ...}",
               "empty list" if raw == [] else "invalid value")
        return []
    entries = []
    for i, item in enumerate(raw):
        e = _neuron_entry(pr, f"{path}[{i}]", item, opts)
        if e is not None:
            entries.append(dataclasses.replace(e, index=i))
    return entries


def _neuron_ref(pr: Problems, path: str, ident: Any, plugin: bool, opts: Options) -> tuple[str, NeuronSpec] | None:
    """Resolve a registered name or a plugin path to (id, spec), recording a problem at ``path``."""
    if plugin and not opts.plugins:
        pr.add(path, ident, "a registered neuron: plugins are refused by --no-plugins (a plugin is code that "
                            "validation would import and run)", "plugin refused:")
        return None
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


def _neuron_entry(pr: Problems, path: str, item: Any, opts: Options) -> Entry | None:
    """One neuron entry: a name, a plugin path, or a mapping {name|plugin, params, <axis overrides>}."""
    if isinstance(item, str):
        ref = _neuron_ref(pr, path, item, is_plugin(item), opts)
        return None if ref is None else Entry(ref[0], {}, {}, ref[1], param_defaults(ref[0])[0])
    if not isinstance(item, dict):
        pr.add(path, item, "a neuron name or a mapping {name: ..., params: {...}} / {plugin: 'pkg.mod:Class', ...}")
        return None
    pr.unknown_keys(path, item, NEURON_KEYS, "unknown neuron-entry key")
    if ("name" in item) == ("plugin" in item):
        pr.add(path, item, "exactly one of `name` (a registered neuron) or `plugin` ('package.module:ClassName')")
        return None
    key = "plugin" if "plugin" in item else "name"
    ref = _neuron_ref(pr, join(path, key), item[key], key == "plugin", opts)
    axes = {}
    for a in AXES:
        if a in item:
            v = _axis(pr, join(path, a), item[a])
            if v is not None:
                axes[a] = v
    params = item.get("params")
    params = {} if params is None else params
    if not isinstance(params, dict):
        pr.add(join(path, "params"), params, "a mapping of parameter names to values")
        return None
    if ref is None:
        return None
    neuron, spec = ref
    defaults, var_kw = param_defaults(neuron)
    valid = [p for p in defaults if p != "seq_len"]
    ok = True
    for k in params:
        if k == "seq_len":
            pr.add(join(path, "params.seq_len"), k, "no seq_len here: it comes from `seq_lens` (the sweep)",
                   "parameter not allowed")
            ok = False
        elif k not in defaults and not var_kw:
            pr.add(join(path, f"params.{k}"), k, f"a parameter of {neuron}: {valid}", "unknown parameter", valid)
            ok = False
    return Entry(neuron, dict(params), axes, spec, defaults) if ok else None


def _check_duplicates(pr: Problems, entries: list[Entry]) -> None:
    """Two entries may name the same neuron (other parameters, other backends) but must not produce
    the same point twice: a repeated point would be measured twice under one key."""
    import itertools

    owner: dict[tuple, int] = {}
    for e in entries:
        params = repr(sorted(e.params.items(), key=lambda kv: str(kv[0])))
        for combo in itertools.product(*(e.axes[a] for a in AXES)):
            j = owner.setdefault((e.neuron, params) + combo, e.index)
            if j != e.index:
                shown = ", ".join(f"{a}={v!r}" for a, v in zip(AXES, combo))
                pr.add(f"neurons[{e.index}]", e.neuron, f"points not already listed by neurons[{j}] (both give {shown})",
                       "duplicate points of neuron")
                break


# ---------------------------------------------------------------------------------- extrapolation
def _extrapolation(pr: Problems, raw: Any, opts: Options) -> dict | None:
    """Validate the ``extrapolation:`` block's keys and types; keep it as a dict. Neuron names and
    parameter names are checked as at the top level, parameter values at ``train_len``."""
    keys = keyed(EXTRAPOLATION)
    if not isinstance(raw, dict):
        pr.add("extrapolation", raw, f"a mapping with keys {list(keys)}")
        return None
    pr.unknown_keys("extrapolation", raw, keys, "unknown extrapolation key")
    for k, v in raw.items():
        if k in keys and k != "neurons" and not keys[k].check(v):
            choices = keys[k].choice_list() if keys[k].kind == "choice" else None
            pr.add(f"extrapolation.{k}", v, keys[k].expected(), choices=choices)
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
        entries = _neuron_entries(pr, "extrapolation.neurons", items, opts)
        train_len = raw.get("train_len")
        if len(pr.items) == n0 and is_int(train_len) and train_len >= 1:
            for e in entries:
                axes = {"seq_lens": [train_len], "features": [_extrapolation_width(raw)]}
                check_values(pr, f"extrapolation.neurons[{e.index}]", dataclasses.replace(e, axes=axes),
                             "layer", {k.name: k.default for k in WORKLOAD_PARAMS["layer"]})
    return dict(raw)


def _extrapolation_task(pr: Problems, raw: dict) -> None:
    """The task name and its parameters, checked by building the task (cheap: a small Markov chain or
    regime model), so a typo fails validation instead of the run after its timed points."""
    from ..tasks import TASKS, make_task

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
    if not all(k in valid for k in params):
        return
    sizes = {k: v for k, v in params.items() if is_int(v) and not str(k).endswith("seed") and abs(v) > MAX_TASK_INT}
    for k, v in sizes.items():
        pr.add(f"extrapolation.task_params.{k}", v, f"an int <= {MAX_TASK_INT} (validation builds the task; "
               f"markov_lm holds vocab**3 probabilities)")
    if sizes:
        return
    try:
        call_with_timeout(lambda: make_task(task, **params), plugins.PLUGIN_TIMEOUT_S)
    except CallTimeout as exc:
        pr.add("extrapolation.task_params", params, f"parameters whose task builds in time (building it {exc})",
               "invalid task parameters")
    except Exception as exc:  # noqa: BLE001 - the task's own check (ValueError) or a value it cannot use
        pr.add("extrapolation.task_params", params, str(exc) or type(exc).__name__, "invalid task parameters")


def _extrapolation_width(raw: dict) -> int:
    """Layer width used to check extrapolation neurons' parameters (their model's ``hidden``)."""
    h = raw.get("hidden")
    return h if is_int(h) and h >= 1 else 1
