"""The neuron library: every neuron of the PSN, PSU and DSN papers and the serial LIF baseline.

    >>> from perfsuite import neurons
    >>> neurons.names()
    >>> lif = neurons.build("lif", backend="eager", tau=2.0)
    >>> spikes = lif(x_seq)          # x_seq: [T, *batch]

See ``shared/spec/neurons.md`` (the project's neuron specification) for the math of each neuron.
"""
import importlib

from .backends import CORE_BACKENDS
from .base import Neuron
from .registry import (
    backend_impl,
    backend_names,
    backends_of,
    build,
    info,
    names,
    neuron_class,
    register,
    register_backend,
)
from .spec import Cost, NeuronSpec, dtype_bytes
from .surrogate import Surrogate, heaviside, make_surrogate, multi_level

# built-in families register themselves on import; names() lists them in this order
for _family in ("lif", "psn", "spsn", "psu", "dsn"):
    importlib.import_module(f"{__name__}.{_family}")

__all__ = [
    "CORE_BACKENDS", "Cost", "Neuron", "NeuronSpec", "Surrogate", "backend_impl", "backend_names",
    "backends_of", "build", "dtype_bytes", "heaviside", "info", "make_surrogate", "multi_level", "names",
    "neuron_class", "register", "register_backend",
]
