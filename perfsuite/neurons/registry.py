"""Registry of neuron classes and of extra backends (triton, peers).

Neuron classes register with ``@register``; a backend other than reference/eager/compiled registers a
function ``fn(module, x_seq) -> spikes`` with ``register_backend(neuron, backend, fn)``. Backends that
live in optional packages are found through *providers*: modules imported on first use (so `import
perfsuite` never imports triton or spikingjelly).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from dataclasses import replace
from typing import Callable

from .base import CORE_BACKENDS, Neuron
from .spec import NeuronSpec

_NEURONS: dict[str, type[Neuron]] = {}
_BACKENDS: dict[tuple[str, str], Callable] = {}
#: backend name -> (module that registers it when imported, the library it needs, the install hint shown
#: when that library is missing)
_PROVIDERS: dict[str, tuple[str, str, str]] = {
    "triton": ("perfsuite.kernels", "triton", "pip install 'perfsuite[triton]'"),
    "spikingjelly": ("perfsuite.peers.spikingjelly", "spikingjelly", "pip install 'perfsuite[peers]'"),
}
_PROVIDER_ERRORS: dict[str, str] = {}


def closest(value, choices) -> str:
    """The choice closest to ``value`` (difflib), '' when none is close."""
    match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return match[0] if match else ""


def suggest(value: str, choices) -> str:
    """' (did you mean X?)' for a close match, else ''."""
    match = closest(value, choices)
    return f" (did you mean {match!r}?)" if match else ""


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


def register_backend(neuron: str, backend: str, fn: Callable) -> None:
    """Add backend ``backend`` for neuron ``neuron``: ``fn(module, x_seq) -> spikes``."""
    _BACKENDS[(neuron, backend)] = fn


def _load_provider(backend: str) -> None:
    if backend not in _PROVIDERS or backend in _PROVIDER_ERRORS:
        return
    module, library, hint = _PROVIDERS[backend]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        # the install hint only when the library itself is missing (not e.g. triton without a GPU)
        missing = importlib.util.find_spec(library) is None
        _PROVIDER_ERRORS[backend] = f"backend {backend!r} is not available: {exc}" + (f"; {hint}" if missing else "")


def backend_names() -> list[str]:
    """Every backend name perfsuite knows (available or not on this machine)."""
    extra = {b for (_, b) in _BACKENDS} | set(_PROVIDERS)
    return list(CORE_BACKENDS) + sorted(extra)


def backends_of(name: str) -> list[str]:
    """Backends available for neuron ``name`` on this machine (loads optional providers)."""
    _check_name(name)
    for b in _PROVIDERS:
        _load_provider(b)
    return list(CORE_BACKENDS) + sorted(b for (n, b) in _BACKENDS if n == name)


def backend_impl(name: str, backend: str) -> Callable:
    _load_provider(backend)
    fn = _BACKENDS.get((name, backend))
    if fn is None:
        if backend in _PROVIDER_ERRORS:
            raise ValueError(_PROVIDER_ERRORS[backend])
        available = backends_of(name)
        raise ValueError(f"neuron {name!r} has no backend {backend!r}; available: {available}"
                         + suggest(backend, available))
    return fn


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
