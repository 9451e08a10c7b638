"""Neurons by name or by plugin path: loading a user's class (``package.module:ClassName``), its spec and
constructor parameters, and building either kind.

Owns: `PluginError`, `load_plugin`, `is_plugin`, `neuron_spec`, `param_defaults`, `build_neuron`,
`build_point`, and `call_with_timeout` (a plugin's import and constructor run user code: validation gives
them a time bound, and a ``sys.exit`` inside them becomes a `PluginError` instead of ending perfsuite).

May import: the rest of `perfsuite.neurons` and the standard library; never `perfsuite.scenario` or any
module above it (the scenario package, the worker and the workloads call into this one).

A scenario that names a plugin is code: loading it imports and runs that module.
"""
from __future__ import annotations

import importlib
import inspect
import re
import threading
from typing import Any, Callable, Mapping

from . import registry
from .base import Neuron
from .registry import closest, constructor_params
from .spec import NeuronSpec

_PLUGIN_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
#: seconds a plugin's import (or one constructor call during validation) may take
PLUGIN_TIMEOUT_S = 60.0


class PluginError(ValueError):
    """A plugin path that is malformed, not importable or not a perfsuite neuron; ``reason`` says which."""

    def __init__(self, path: Any, reason: str, suggestion: str = ""):
        self.path, self.reason, self.suggestion = path, reason, suggestion
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"plugin {path!r}: {reason}{hint}")


class CallTimeout(Exception):
    """`call_with_timeout`: the call did not finish in time (it goes on in a daemon thread)."""


class CallExit(Exception):
    """`call_with_timeout`: the call raised SystemExit or KeyboardInterrupt (user code calling sys.exit)."""


def call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> Any:
    """``fn()`` in a daemon thread, waited for at most ``timeout_s`` seconds.

    Returns its value or re-raises its exception; a ``SystemExit`` or ``KeyboardInterrupt`` raised by
    ``fn`` (user code calling ``sys.exit`` at import) comes back as a `CallExit` naming it. Past the
    time bound, raises `CallTimeout` (the thread cannot be stopped; being a daemon, it does not keep
    the process alive)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except (SystemExit, KeyboardInterrupt) as exc:
            box["error"] = CallExit(f"{type(exc).__name__}({exc.args[0] if exc.args else ''!r}) raised")
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller as is
            box["error"] = exc

    t = threading.Thread(target=target, name="perfsuite-plugin", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise CallTimeout(f"did not finish within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def is_plugin(neuron: str) -> bool:
    """A plugin path (``pkg.mod:Class``) rather than a registered name."""
    return isinstance(neuron, str) and ":" in neuron


def load_plugin(path: str) -> type[Neuron]:
    """The `Neuron` subclass named by ``pkg.mod:Class``; `PluginError` (a ValueError) says what is wrong.

    The import runs in a time-bounded thread (`PLUGIN_TIMEOUT_S`): a module that hangs, or that calls
    ``sys.exit``, is a `PluginError` naming the plugin."""
    if not isinstance(path, str) or not _PLUGIN_RE.fullmatch(path):
        raise PluginError(path, "malformed, expected 'package.module:ClassName'")
    mod_name, attr = path.split(":")
    try:
        obj: Any = call_with_timeout(lambda: importlib.import_module(mod_name), PLUGIN_TIMEOUT_S)
    except CallTimeout as exc:
        raise PluginError(path, f"importing module {mod_name!r} {exc}") from None
    except CallExit as exc:
        raise PluginError(path, f"importing module {mod_name!r}: {exc}") from None
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


def neuron_spec(neuron: str) -> NeuronSpec:
    """Spec of a registered neuron name or a plugin path."""
    return load_plugin(neuron).spec if is_plugin(neuron) else registry.info(neuron)


def param_defaults(neuron: str) -> tuple[dict[str, Any], bool]:
    """(constructor parameters with defaults, accepts **kwargs) of a name or plugin path."""
    if not is_plugin(neuron):
        return dict(registry.info(neuron).params), False
    cls = load_plugin(neuron)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    return constructor_params(cls), var_kw


def build_neuron(neuron: str, *, backend: str = "eager", seq_len: int | None = None,
                 params: Mapping | None = None) -> Neuron:
    """Build a registered neuron (through `perfsuite.neurons.build`) or a plugin class.

    A plugin is given ``seq_len`` only when its constructor takes one (as `neurons.build` does)."""
    params = dict(params or {})
    if not is_plugin(neuron):
        return registry.build(neuron, backend=backend, seq_len=seq_len, **params)
    cls = load_plugin(neuron)
    if "seq_len" in constructor_params(cls):
        params["seq_len"] = seq_len
    return cls(backend=backend, **params)


def build_point(point) -> Neuron:
    """The neuron module a point measures (on the CPU, float32; the runner moves and casts it)."""
    return build_neuron(point.neuron, backend=point.backend, seq_len=point.seq_len, params=point.neuron_params)
