"""Triton backend of the PSU family (spec §4, R1–R6): the fixed geometric matrices as O(T) scans.

Both fixed matrices of `perfsuite.neurons.psu` are geometric in the lag, so multiplying by them is a
first-order recurrence with the constant decay d (``module.decay``: 1 − 1/τ, or 1/τ with
``braincog_compat``), run by the Triton scan `kernels.scan.gated_scan` in its constant-decay mode:

    (A·Y)_t = (1/τ)·P_t,   (K·Y)_t = d·P_{t−1} (0 at t = 0),   where P_t = d·P_{t−1} + Y_t, P_{−1} = 0

O(T·N) work instead of the 2·T²·N of a T×T GEMM, and no T×T matrix in memory. Then

* PSU  (R4): U = A·X, H = U − V_th·K·σ(U)                     (two scans)
* IPSU (R5): D = tril(W)·X + b; "linear" H = D − K·X, "prob" H = D − K·σ(D)   (one GEMM + one scan)
* RPSU (R6): Z = tril(W)·X + b; H = A·X − K·σ(Z)              (one GEMM + two scans)

and S = Θ_strict(H − V_th) with the ATan(α = 2) surrogate by the Triton `common.FireFunction`. The
learned masked matrix is a GEMM (`kernels.psn.band_mix`: cuBLAS, fp32 output for half inputs). Each
scan has its own Triton backward (the adjoint scan); σ, the one-step shift and the sums between them are
torch elementwise ops under autograd — not fused yet (docs/kernels.md).
"""
from __future__ import annotations

import torch

from .common import FireFunction, as_2d, check_device
from .psn import band_mix
from .scan import gated_scan


def geometric_a(y2: torch.Tensor, d: float, tau: float) -> torch.Tensor:
    """A·Y [T, N]: A[t][j] = (1/τ)·d^(t−j) for j ≤ t (compute dtype)."""
    return gated_scan(d, y2) / tau


def geometric_k(y2: torch.Tensor, d: float) -> torch.Tensor:
    """K·Y [T, N]: K[t][j] = d^(t−j) for j < t (compute dtype; row 0 is 0)."""
    p = gated_scan(d, y2)
    return d * torch.cat([torch.zeros_like(p[:1]), p[:-1]])


def _fire(module, h: torch.Tensor, x_seq: torch.Tensor) -> torch.Tensor:
    return FireFunction.apply(h, module.v_threshold, module.surrogate, True, x_seq.dtype).view(x_seq.shape)


def _learned(module, x_seq: torch.Tensor) -> torch.Tensor:
    """tril(W)·X + b [T, N] in the compute dtype (causal mask R3 applied in every forward)."""
    return band_mix(x_seq, torch.tril(module.weight), module.bias)


def psu_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``psu``."""
    check_device("psu", x_seq)
    d = module.decay
    u = geometric_a(as_2d(x_seq), d, module.tau)
    h = u - module.v_threshold * geometric_k(torch.sigmoid(u), d)
    return _fire(module, h, x_seq)


def ipsu_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``ipsu`` (both variants)."""
    dmem = _learned(module, x_seq)
    y = as_2d(x_seq).to(dmem.dtype) if module.variant == "linear" else torch.sigmoid(dmem)
    return _fire(module, dmem - geometric_k(y, module.decay), x_seq)


def rpsu_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``rpsu``."""
    z = _learned(module, x_seq)
    h = geometric_a(as_2d(x_seq), module.decay, module.tau) - geometric_k(torch.sigmoid(z), module.decay)
    return _fire(module, h, x_seq)
