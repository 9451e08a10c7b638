"""Extrapolation tasks: sequences generated on the fly (seeded, no downloads) whose optimal loss is known.

Each task gives ``sample(batch, seq_len, generator) -> (inputs, targets)``, ``encode(inputs)`` (model input
[T, B, D] float), ``bayes_loss(inputs, targets)`` (per-position loss of the optimal predictor on those very
sequences), ``baseline_loss()`` (a predictor that ignores the past), ``num_classes`` and ``input_dim``.
"""
from __future__ import annotations

from ..neurons.registry import suggest
from .markov import MarkovLM
from .regime import HiddenRegime

TASKS = {"markov_lm": MarkovLM, "hidden_regime": HiddenRegime}


def make_task(name: str, **params):
    """Build task ``name`` with its parameters (ValueError naming the valid choices otherwise)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {list(TASKS)}" + suggest(name, TASKS))
    cls = TASKS[name]
    valid = [f for f in cls.__dataclass_fields__]
    unknown = [p for p in params if p not in valid]
    if unknown:
        raise ValueError(f"task {name!r} has no parameter(s) {unknown}; valid parameters: {valid}"
                         + suggest(unknown[0], valid))
    return cls(**params)


__all__ = ["TASKS", "HiddenRegime", "MarkovLM", "make_task"]
