"""The backend table: which function runs neuron N on backend B, for backends other than the core three.

A backend other than reference/eager/compiled registers a function ``fn(module, x_seq) -> spikes`` with
``register_backend(neuron, backend, fn)``. Backends that live in optional packages are found through
*providers*: modules imported on first use (so `import perfsuite` never imports triton or spikingjelly).

This module sits below both `perfsuite.neurons.base` (whose ``Neuron.forward`` dispatches through
`backend_impl`) and `perfsuite.neurons.registry` (the catalogue of neuron classes), and imports neither:
the arrows go base -> backends and registry -> base, backends, never back.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
from typing import Callable

#: backends every built-in neuron has; others (triton, peers) come from the table below
CORE_BACKENDS = ("reference", "eager", "compiled")

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


def available_backends(name: str) -> list[str]:
    """Backends available for neuron ``name`` on this machine (loads optional providers); the name is
    not checked here (`perfsuite.neurons.registry.backends_of` does)."""
    for b in _PROVIDERS:
        _load_provider(b)
    return list(CORE_BACKENDS) + sorted(b for (n, b) in _BACKENDS if n == name)


def backend_impl(name: str, backend: str) -> Callable:
    """The function registered for (``name``, ``backend``); `ValueError` naming the available backends."""
    _load_provider(backend)
    fn = _BACKENDS.get((name, backend))
    if fn is None:
        if backend in _PROVIDER_ERRORS:
            raise ValueError(_PROVIDER_ERRORS[backend])
        available = available_backends(name)
        raise ValueError(f"neuron {name!r} has no backend {backend!r}; available: {available}"
                         + suggest(backend, available))
    return fn
