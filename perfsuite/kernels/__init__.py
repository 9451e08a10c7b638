"""perfsuite's Triton backend: one kernel module per neuron family, each with its own autograd Function.

Importing this package registers backend ``"triton"`` for every neuron it has a kernel for
(`perfsuite.neurons.register_backend`). It raises ImportError when triton is missing, or when kernels
could not run here (no CUDA device and no ``TRITON_INTERPRET=1``), so the registry reports the backend
as unavailable with the reason instead of failing inside a measurement.

``TRITON_INTERPRET=1`` must be set before this package is imported (Triton reads it when the kernels
are decorated); tests/conftest.py does that on machines without CUDA.
"""
from __future__ import annotations

import triton  # noqa: F401  (ImportError here = backend unavailable)

from .common import usable

_why = usable()
if _why is not None:
    raise ImportError(_why)

from ..neurons import register_backend  # noqa: E402
from . import dsn, lif, psn, psu, spsn  # noqa: E402

_BACKENDS = {
    "lif": lif.lif_backend,
    "plif": lif.lif_backend,
    "psn": psn.psn_backend,
    "masked_psn": psn.masked_psn_backend,
    "sliding_psn": psn.sliding_psn_backend,
    "dsn": dsn.dsn_backend,
    "psu": psu.psu_backend,
    "ipsu": psu.ipsu_backend,
    "rpsu": psu.rpsu_backend,
    "spsn": spsn.spsn_backend,
}

for _name, _fn in _BACKENDS.items():
    register_backend(_name, "triton", _fn)


def neurons() -> list[str]:
    """Neurons that have a Triton kernel."""
    return sorted(_BACKENDS)
