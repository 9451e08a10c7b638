"""Triton backend of SPSN (spec §3): the two linear recurrences as Triton scans, then the module's sampler.

    I_t = α·I_{t−1} + X_t,     U_t = β·U_{t−1} + (1 − β)·I_t

are two constant-decay scans (`kernels.scan.gated_scan`), O(T·N) and exact in causality at any T
(the eager backend's FFT costs O(T log T) per neuron and pads to 2T). Each scan has its own Triton
backward (the adjoint scan). Spikes are `perfsuite.neurons.spsn.spsn_fire` on uniforms drawn by the
module's own `draw_uniforms` — the same call, shape and order as its eager path — so a module seeded like
another fires the same spikes on the same input, whatever the backend (up to p within rounding of its
uniform). The sampler is torch elementwise code under autograd, not fused into the scan yet
(docs/kernels.md): one rule for the spike, no second copy of it.
"""
from __future__ import annotations

import torch

from ..neurons.spsn import spsn_fire
from .common import as_2d, check_device
from .scan import gated_scan


def spsn_membrane(x_seq: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """U [T, *batch] in the compute dtype (fp32 for fp32/bf16/fp16, fp64 for fp64) of x_seq [T, *batch]."""
    check_device("spsn", x_seq)
    x2 = as_2d(x_seq)
    i = gated_scan(alpha, x2)
    return gated_scan(beta, (1.0 - beta) * i).view(x_seq.shape)


def spsn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``spsn``."""
    uniforms = module.draw_uniforms(x_seq.shape, x_seq.device)
    u_mem = spsn_membrane(x_seq, module.alpha, module.beta)
    return spsn_fire(u_mem, uniforms, module.sampling).to(x_seq.dtype)
