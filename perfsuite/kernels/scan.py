"""Triton gated linear recurrence ``H_t = a_t·H_{t−1} + b_t`` over time, for [T, N] layouts.

The Triton counterpart of `perfsuite.neurons.scan.linear_scan` (which works on ``log a``); the SPSN
kernel builds on it (DSN and the PSU family fuse their recurrences into their own kernels). Inputs are
the decays ``a`` and the inputs ``b`` themselves ([T, N], any float dtype), ``H_0`` = 0 or a given
``h0`` [N]; H is returned in the compute dtype (fp32 for fp32/bf16/fp16 inputs, fp64 for fp64 inputs).

Forward, per program = a block of neurons, H in registers: the same one-pass design as `kernels.lif`
— time is cut into register tiles of BT steps, and the next tile's loads are issued before the current
tile's serial chain, so DRAM latency overlaps the recurrence (kernel_anchors §2, §4.4). T is a runtime
argument (``do_not_specialize``): one compilation serves every sequence length.

Backward, the adjoint recurrence run in reverse time (Martin & Cundy, arXiv 1709.04057 §2.2):

    G_t = dL/dH_t + a_{t+1}·G_{t+1}   (G_{T+1} = 0)
    dL/db_t = G_t,    dL/da_t = G_t·H_{t−1},    dL/dh0 = a_1·G_1

Only ``a`` and ``H`` are saved; H_{t−1} comes from the same saved H (the previous tile row, or the
prefetched earlier tile at a tile edge).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from .common import (
    as_2d,
    check_device,
    launch_config,
    load_tile,
    program_columns,
    store_tile,
    tile_at,
    tile_before,
    tile_row,
    tile_row_lag,
    tile_set,
)


@triton.jit(do_not_specialize=["T"])
def _scan_fwd_kernel(a_ptr, b_ptr, h0_ptr, h_ptr, T, N, HAS_H0: tl.constexpr, A_CONST: tl.constexpr,
                     BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    if HAS_H0:
        h = tl.load(h0_ptr + cols, mask=cmask, other=0.0).to(CD)
    else:
        h = tl.zeros([BLOCK], CD)

    off, m = tile_at(0, rows, cols, cmask, N, T)
    if A_CONST:  # one decay for every step and neuron (PSU, SPSN): nothing to stream
        a_const = tl.load(a_ptr).to(CD)
        n_a = tl.zeros([BT, BLOCK], CD) + a_const
    else:
        n_a = tl.load(a_ptr + off, mask=m, other=0.0)
    n_b = tl.load(b_ptr + off, mask=m, other=0.0)
    for t0 in tl.range(0, T, BT):
        c_a = n_a.to(CD)
        c_b = n_b.to(CD)
        # issue the next tile's loads before the serial chain of this one
        off, m = tile_at(t0 + BT, rows, cols, cmask, N, T)
        if not A_CONST:
            n_a = tl.load(a_ptr + off, mask=m, other=0.0)
        n_b = tl.load(b_ptr + off, mask=m, other=0.0)
        h_tile = tl.zeros([BT, BLOCK], CD)
        for i in tl.static_range(BT):
            if A_CONST:
                h = a_const * h + tile_row(c_b, rows, i)
            else:
                h = tile_row(c_a, rows, i) * h + tile_row(c_b, rows, i)
            h_tile = tile_set(h_tile, rows, i, h)
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(h_ptr, off, m, h_tile, True)


@triton.jit(do_not_specialize=["T"])
def _scan_bwd_kernel(gh_ptr, a_ptr, h_ptr, h0_ptr, gb_ptr, ga_ptr, gh0_ptr, T, N,
                     HAS_H0: tl.constexpr, NEED_GA: tl.constexpr, A_CONST: tl.constexpr,
                     BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    g = tl.zeros([BLOCK], CD)        # G_{t+1}
    a_next = tl.zeros([BLOCK], CD)   # a_{t+1} (0 past the end: G_{T+1} = 0 anyway)
    if HAS_H0:
        h_init = tl.load(h0_ptr + cols, mask=cmask, other=0.0).to(CD)
    else:
        h_init = tl.zeros([BLOCK], CD)

    n_tiles = tl.cdiv(T, BT)
    off, m = tile_at((n_tiles - 1) * BT, rows, cols, cmask, N, T)
    n_g = tl.load(gh_ptr + off, mask=m, other=0.0)
    if A_CONST:
        a_const = tl.load(a_ptr).to(CD)
        n_a = tl.zeros([BT, BLOCK], CD) + a_const
    else:
        n_a = tl.load(a_ptr + off, mask=m, other=0.0)
    n_h = load_tile(h_ptr, off, m, NEED_GA)
    for c in tl.range(0, n_tiles):
        t0 = (n_tiles - 1 - c) * BT
        c_g = n_g.to(CD)
        c_a = n_a.to(CD)
        if NEED_GA:
            c_h = n_h.to(CD)
        # prefetch the tile before this one (earlier in time); none before t = 0
        off, m = tile_before(t0 - BT, rows, cols, cmask, N)
        n_g = tl.load(gh_ptr + off, mask=m, other=0.0)
        if not A_CONST:
            n_a = tl.load(a_ptr + off, mask=m, other=0.0)
        n_h = load_tile(h_ptr, off, m, NEED_GA)
        if NEED_GA:
            p_h = n_h.to(CD)
        gb_tile = tl.zeros([BT, BLOCK], CD)
        ga_tile = tl.zeros([BT, BLOCK], CD)
        for j in tl.static_range(BT):
            i = BT - 1 - j
            t = t0 + i
            valid = t < T
            # rows past T were loaded as 0, so G stays 0 there and a_next is only taken from valid rows
            g = tile_row(c_g, rows, i) + a_next * g
            a_next = tl.where(valid, tile_row(c_a, rows, i), a_next)
            gb_tile = tile_set(gb_tile, rows, i, g)
            if NEED_GA:
                hp = tl.where(t > 0, tile_row_lag(c_h, p_h, rows, i, 1, BT), h_init)
                ga_tile = tile_set(ga_tile, rows, i, g * hp)
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(gb_ptr, off, m, gb_tile, True)
        store_tile(ga_ptr, off, m, ga_tile, NEED_GA)
    if HAS_H0:
        tl.store(gh0_ptr + cols, (a_next * g).to(gh0_ptr.dtype.element_ty), mask=cmask)


def scan_forward(a2: torch.Tensor, b2: torch.Tensor, h0: torch.Tensor | None = None, *,
                 block_n: int | None = None, bt: int | None = None) -> torch.Tensor:
    """H [T, N] (compute dtype) of the recurrence on contiguous ``a2`` [T, N] (or a 0-dim tensor: one
    decay for all), ``b2`` [T, N]; no autograd."""
    T, N = b2.shape
    launch = launch_config(b2, N, block_n, bt, "scan_fwd")
    h = torch.empty((T, N), dtype=compute_dtype(b2), device=b2.device)
    _scan_fwd_kernel[launch.grid(N)](
        a2, b2, h0 if h0 is not None else h, h, T, N, HAS_H0=h0 is not None, A_CONST=a2.dim() == 0,
        **launch.meta(b2))
    return h


def scan_backward(grad_h: torch.Tensor, a2: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None = None, *,
                  need_ga: bool = True, block_n: int | None = None, bt: int | None = None):
    """(dL/db, dL/da or None, dL/dh0 or None), each in the compute dtype of ``h``, from dL/dH [T, N],
    the decays ``a2`` ([T, N], or 0-dim: then no dL/da) and the forward's H [T, N]."""
    need_ga = need_ga and a2.dim() > 0
    T, N = h.shape
    launch = launch_config(h, N, block_n, bt, "scan_bwd")
    gh = grad_h.contiguous()
    gb = torch.empty_like(h)
    ga = torch.empty_like(h) if need_ga else gb
    gh0 = torch.empty((N,), dtype=h.dtype, device=h.device) if h0 is not None else gb
    _scan_bwd_kernel[launch.grid(N)](
        gh, a2, h, h0 if h0 is not None else h, gb, ga, gh0, T, N, HAS_H0=h0 is not None, NEED_GA=need_ga,
        A_CONST=a2.dim() == 0, **launch.meta(h))
    return gb, (ga if need_ga else None), (gh0 if h0 is not None else None)


class ScanFunction(torch.autograd.Function):
    """H = scan(a, b, h0) on [T, N] with the Triton forward and adjoint backward; saves a, H (and h0)."""

    @staticmethod
    def forward(ctx, a2, b2, h0, block_n, bt):
        h = scan_forward(a2, b2, h0, block_n=block_n, bt=bt)
        ctx.save_for_backward(a2, h, h0)
        ctx.launch = (block_n, bt)
        ctx.dtypes = (a2.dtype, b2.dtype, None if h0 is None else h0.dtype)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a2, h, h0 = ctx.saved_tensors
        block_n, bt = ctx.launch
        gb, ga, gh0 = scan_backward(grad_h, a2, h, h0, need_ga=ctx.needs_input_grad[0], block_n=block_n, bt=bt)
        da, db, dh = ctx.dtypes
        return (ga.to(da) if ga is not None and ctx.needs_input_grad[0] else None,
                gb.to(db) if ctx.needs_input_grad[1] else None,
                gh0.to(dh) if gh0 is not None and ctx.needs_input_grad[2] else None, None, None)


def gated_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *,
               block_n: int | None = None, bt: int | None = None) -> torch.Tensor:
    """Solve ``H_t = a_t·H_{t−1} + b_t`` along dim 0 with Triton kernels, differentiable in a, b, h0.

    Args:
        a, b: [T, *batch] decays and inputs, same shape, floating point (any T ≥ 1). ``a`` may also be a
            Python number: one fixed decay for every step and element (PSU, SPSN), never streamed from
            memory and not differentiated.
        h0: optional [*batch] state before the first step (default 0).
        block_n, bt: launch-shape overrides (powers of two; tests and tuning).

    Returns:
        H [T, *batch] in the compute dtype (fp32 for fp32/bf16/fp16, fp64 for fp64 inputs).
    """
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        a = torch.tensor(float(a), dtype=compute_dtype(b) if isinstance(b, torch.Tensor) and
                         b.is_floating_point() else torch.float64, device=getattr(b, "device", None))
        const = True
    else:
        const = False
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"gated_scan: {name} must be a floating-point tensor [T, *batch], got "
                             f"{getattr(t, 'dtype', type(t).__name__)}")
    if (not const and a.shape != b.shape) or b.dim() < 1 or b.shape[0] < 1:
        raise ValueError(f"gated_scan: a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape "
                         "[T, *batch] with T >= 1")
    if h0 is not None and (not isinstance(h0, torch.Tensor) or h0.shape != b.shape[1:]):
        raise ValueError(f"gated_scan: h0 must be a tensor of shape {tuple(b.shape[1:])} (= b.shape[1:]), got "
                         f"{tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__}")
    check_device("gated_scan", a, b, *(() if h0 is None else (h0,)))
    shape = b.shape
    if b.numel() == 0:
        return torch.zeros(shape, dtype=compute_dtype(b), device=b.device)
    h0_2 = None if h0 is None else h0.reshape(-1).contiguous()
    return ScanFunction.apply(a if const else as_2d(a), as_2d(b), h0_2, block_n, bt).view(shape)
