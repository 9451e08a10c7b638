"""The validated contract of a scenario: `Point` (one measurement), `Timing` and `Limits` (its budgets).

Owns the dataclasses every later layer reads (the worker, the runner, the results). Defaults come from
the schema (`perfsuite.scenario.schema`). May import: the standard library, `perfsuite.results` (the
point key) and the schema; never the validators.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..results import point_key
from .schema import DEVICES, LIMITS, TIMING, keyed

_T, _L = keyed(TIMING), keyed(LIMITS)


@dataclass(frozen=True)
class Timing:
    """Timing budgets in milliseconds, with the semantics of ``triton.testing.do_bench``."""

    warmup_ms: float = _T["warmup_ms"].default
    rep_ms: float = _T["rep_ms"].default
    min_reps: int = _T["min_reps"].default
    max_reps: int = _T["max_reps"].default
    #: measure the first call (compile included) separately
    cold_start: bool = _T["cold_start"].default
    #: torch intra-op threads while measuring (None = torch's default). A scenario that does not set
    #: ``timing.threads`` gets 1 on the CPU for layer workloads and None otherwise (`Scenario.points`)
    threads: int | None = _T["threads"].default


@dataclass(frozen=True)
class Limits:
    """Per-point limits."""

    timeout_s: float = _L["timeout_s"].default
    #: None = the device's memory
    memory_gb: float | None = _L["memory_gb"].default
    #: agreement vs the float64 reference only when seq_len <= this
    reference_max_len: int = _L["reference_max_len"].default


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


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is invalid; expected one of {list(DEVICES)}")
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
