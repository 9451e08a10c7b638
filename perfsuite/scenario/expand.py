"""A validated scenario and its expansion into points.

Owns: `Scenario` (built by `perfsuite.scenario.validate`), the validated neuron `Entry` and include/
exclude `Rule`, the cartesian product of the sweep axes minus the rules, each point's complete
parameters, and `count_points` (the size of the product, known before anything is expanded).

May import: the standard library, `perfsuite.neurons.spec` and the scenario's schema and model.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from ..neurons.spec import NeuronSpec
from .model import Limits, Point, Timing, resolve_device
from .schema import AXES, RULE_FIELDS


@dataclass(frozen=True)
class Entry:
    """A validated neuron entry: its name or plugin path, given params and its axes."""

    neuron: str
    params: dict
    axes: dict
    spec: NeuronSpec
    defaults: dict
    #: position in the file's list, for error paths (invalid entries are left out of the lists)
    index: int = -1


@dataclass(frozen=True)
class Rule:
    tests: dict  # field -> predicate(value) -> bool
    reason: str | None


def count_points(entries: list[Entry]) -> int:
    """Points of the sweep before rules: per entry, the product of its axes' lengths."""
    return sum(math.prod(len(e.axes[a]) for a in AXES) for e in entries)


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
    #: whether the file set ``timing.threads`` (else the default depends on the device and workload)
    _threads_given: bool = field(default=False, repr=False)

    @property
    def plugins(self) -> list[str]:
        """Plugin paths the scenario's neuron entries name (a scenario with plugins is code)."""
        return list(dict.fromkeys(e.neuron for e in self._entries if ":" in e.neuron))

    def points(self, device: str | None = None) -> list[Point]:
        """The sweep: cartesian product minus exclusions, in a stable order (neuron entries in file
        order, then backend, mode, precision, seq_len, batch, features, each in file order).

        ``device`` overrides the scenario's (e.g. the CLI's ``--device``); ``auto`` is resolved here."""
        return [p for p, reason in self._expand(device) if reason is None]

    def excluded(self, device: str | None = None) -> list[tuple[Point, str]]:
        """Points left out by include/exclude rules, each with the reason (for ``run --dry-run``)."""
        return [(p, reason) for p, reason in self._expand(device) if reason is not None]

    def timing_on(self, device: str) -> Timing:
        """The timing of points on ``device``: ``threads`` defaults to 1 on the CPU for layer workloads
        (a stable, comparable number on a shared machine) and to torch's own default otherwise."""
        if self._threads_given:
            return self.timing
        threads = 1 if device == "cpu" and self.workload == "layer" else None
        return dataclasses.replace(self.timing, threads=threads)

    def _expand(self, device: str | None) -> list[tuple[Point, str | None]]:
        dev = resolve_device(device if device is not None else self.device)
        timing = self.timing_on(dev)
        out = []
        for e in self._entries:
            ax = e.axes
            for backend, mode, precision, seq_len, batch, features in itertools.product(
                    ax["backends"], ax["modes"], ax["precisions"], ax["seq_lens"], ax["batch"], ax["features"]):
                wparams = workload_params_for(self.workload, self.workload_params, features)
                params = point_params(e, features, wparams, self.workload)
                p = Point(
                    scenario=self.name, neuron=e.neuron, neuron_params=params, backend=backend,
                    seq_len=seq_len, batch=batch, features=features, precision=precision, mode=mode,
                    workload=self.workload, workload_params=wparams, metrics=self.metrics,
                    timing=timing, limits=self.limits, seed=self.seed, device=dev,
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


def _rule_matches(rule: Rule, values: dict) -> bool:
    return all(test(values[f]) for f, test in rule.tests.items())


def _unsupported(e: Entry, mode: str) -> str | None:
    if mode == "step" and not e.spec.serial_inference:
        return (f"{e.neuron} has no serial inference (spec §7): mode 'step' needs init_state/step; "
                f"measure it with mode 'forward'")
    return None


def workload_params_for(workload: str, given: dict, features: int) -> dict:
    """Complete workload parameters of a point: network widths default to the point's features."""
    wp = dict(given)
    if workload == "network":
        if wp.get("hidden") is None:
            wp["hidden"] = features
        if wp.get("outputs") is None:
            wp["outputs"] = wp["hidden"]
    return wp


def point_params(e: Entry, features: int, wparams: dict, workload: str) -> dict:
    """Constructor parameters of a point: the neuron's defaults, the given ones, and, for neurons with
    a channel dimension (DSN), ``features`` = the width of the neuron layer it sits in (the point's
    features for a single layer, ``hidden`` in a network)."""
    params = {k: v for k, v in e.defaults.items() if k != "seq_len"}
    params.update(e.params)
    if e.spec.needs_features:
        params["features"] = wparams["hidden"] if workload == "network" else features
    return params
