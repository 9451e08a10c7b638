"""Registry of neuron classes: ``@register`` makes a `Neuron` subclass buildable by name.

Extra backends (triton, peers) live in the backend table, `perfsuite.neurons.backends`; their functions are
re-exported here. Imports go one way: registry -> base, backends, spec (base never imports the registry).
"""
from __future__ import annotations

import inspect
from dataclasses import replace

from .backends import (  # noqa: F401  (re-exported: the registry's public names)
    CORE_BACKENDS,
    available_backends,
    backend_impl,
    backend_names,
    closest,
    register_backend,
    suggest,
)
from .base import Neuron
from .spec import NeuronSpec

_NEURONS: dict[str, type[Neuron]] = {}


def constructor_params(cls: type) -> dict:
    sig = inspect.signature(cls.__init__)
    return {
        n: (None if p.default is inspect.Parameter.empty else p.default)
        for n, p in sig.parameters.items()
        if n not in ("self", "backend") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def register(cls: type[Neuron]) -> type[Neuron]:
    """Class decorator: make a `Neuron` subclass buildable by ``cls.spec.name``."""
    spec: NeuronSpec = cls.spec
    cls.spec = replace(spec, params=constructor_params(cls))
    _NEURONS[spec.name] = cls
    return cls


def backends_of(name: str) -> list[str]:
    """Backends available for neuron ``name`` on this machine (loads optional providers)."""
    _check_name(name)
    return available_backends(name)


def _check_name(name: str) -> type[Neuron]:
    if name not in _NEURONS:
        raise ValueError(f"unknown neuron {name!r}; expected one of {names()}" + suggest(name, _NEURONS))
    return _NEURONS[name]


def names() -> list[str]:
    """Registered neuron names, built-in first in registration order."""
    return list(_NEURONS)


def info(name: str) -> NeuronSpec:
    """The `NeuronSpec` of neuron ``name`` (structure, cost, parameters with defaults)."""
    return _check_name(name).spec


def neuron_class(name: str) -> type[Neuron]:
    return _check_name(name)


def build(name: str, *, backend: str = "eager", seq_len: int | None = None, **params) -> Neuron:
    """Build neuron ``name`` with ``backend``.

    ``seq_len`` is required by neurons tied to a fixed T (psn, masked_psn, psu, ipsu, rpsu) and ignored
    by the others. Unknown names, backends or parameters raise `ValueError` naming the valid choices.
    """
    cls = _check_name(name)
    spec = cls.spec
    accepted = spec.params
    unknown = [p for p in params if p not in accepted or p == "seq_len"]
    if unknown:
        valid = [p for p in accepted if p != "seq_len"]
        raise ValueError(
            f"neuron {name!r} has no parameter(s) {unknown}; valid parameters: {valid}"
            + suggest(unknown[0], valid)
        )
    if backend not in CORE_BACKENDS:
        backend_impl(name, backend)  # raises with the valid choices
    if "seq_len" in accepted:
        if seq_len is None and accepted["seq_len"] is None:
            raise ValueError(f"neuron {name!r} is tied to a fixed sequence length: pass seq_len=T (an int >= 1)")
        if seq_len is not None:
            if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
                raise ValueError(f"seq_len={seq_len!r} must be an int >= 1")
            params["seq_len"] = seq_len
    return cls(backend=backend, **params)
