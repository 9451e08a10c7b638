"""Triton LIF and PLIF (spec §1.1, §1.3): one pass over T, fused surrogate backward.

Forward, per program = a block of neurons, state V in registers in the compute dtype:

    H_t = V + (X_t − (V − V_reset))·k     (decay_input)     or   V − (V − V_reset)·k + X_t
    S_t = Θ(H_t − V_th)                    (Θ(0) = 1)
    V_t = V_reset if S_t else H_t          (hard)            or   H_t − V_th if S_t else H_t  (soft)

the same operations in the same order as `perfsuite.neurons.lif.lif_step`, so the fp64 path equals the
reference bit for bit. The only tensor saved for the backward is H ([T, N], fp32 — fp64 for fp64
input); S is recomputed from H, and V_{t−1} (needed only for PLIF's dL/dk) is the reset of H_{t−1}.

Backward, reverse time, dL/dV carried in registers (g = surrogate derivative at H_t − V_th):

    dL/dH_t   = dL/dS_t·g + dL/dV_t·dV_t/dH_t
    dV_t/dH_t = 1 − S_t + (V_reset − H_t)·g (hard) | 1 − V_th·g (soft) | without the g term if detach_reset
    dL/dX_t   = dL/dH_t·k (decay_input) or dL/dH_t;       dL/dV_{t−1} = dL/dH_t·(1 − k)
    dL/dk     = Σ_t dL/dH_t·(X_t − (V_{t−1} − V_reset))  or  Σ_t −dL/dH_t·(V_{t−1} − V_reset)

dL/dk is summed per neuron over time in registers, then over the block, one partial per program;
the host adds the partials (deterministic, no atomics) and autograd carries it through k = σ(w).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from ..neurons.lif import LIFParams
from .common import (
    as_2d,
    check_device,
    launch_config,
    load_at,
    load_tile,
    program_columns,
    store_tile,
    surrogate_grad,
    surrogate_scalars,
    tile_at,
    tile_before,
    tile_row,
    tile_row_lag,
    tile_set,
)


@triton.jit
def _params(p_ptr):
    """(k, V_th, V_reset, surrogate a, surrogate c): the parameter vector `LIFFunction.forward` builds
    (the forward kernel reads the first three; the surrogate's loads are dropped by the compiler)."""
    return tl.load(p_ptr + 0), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3), tl.load(p_ptr + 4)


@triton.jit(do_not_specialize=["T"])
def _lif_fwd_kernel(x_ptr, s_ptr, h_ptr, p_ptr, T, N,
                    DECAY_INPUT: tl.constexpr, SOFT: tl.constexpr, STORE_H: tl.constexpr,
                    BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    k, v_th, v_reset, _, _ = _params(p_ptr)
    v = tl.zeros([BLOCK], CD) + v_reset

    nxt = load_at(x_ptr, 0, rows, cols, cmask, N, T)
    for t0 in tl.range(0, T, BT):
        cur = nxt.to(CD)
        nxt = load_at(x_ptr, t0 + BT, rows, cols, cmask, N, T)  # issued before the serial chain of this tile
        s_tile = tl.zeros([BT, BLOCK], CD)
        h_tile = tl.zeros([BT, BLOCK], CD)
        for i in tl.static_range(BT):
            x = tile_row(cur, rows, i)
            if DECAY_INPUT:
                h = v + (x - (v - v_reset)) * k
            else:
                h = v - (v - v_reset) * k + x
            spike = (h - v_th) >= 0
            if SOFT:
                v = tl.where(spike, h - v_th, h)
            else:
                v = tl.where(spike, v_reset, h)
            s_tile = tile_set(s_tile, rows, i, spike.to(CD))
            if STORE_H:
                h_tile = tile_set(h_tile, rows, i, h)
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(s_ptr, off, m, s_tile, True)
        store_tile(h_ptr, off, m, h_tile, STORE_H)


@triton.jit(do_not_specialize=["T"])
def _lif_bwd_kernel(gs_ptr, h_ptr, x_ptr, gx_ptr, gk_ptr, p_ptr, T, N,
                    DECAY_INPUT: tl.constexpr, SOFT: tl.constexpr, DETACH: tl.constexpr,
                    SG: tl.constexpr, NEED_GK: tl.constexpr,
                    BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    k, v_th, v_reset, sg_a, sg_c = _params(p_ptr)
    gv = tl.zeros([BLOCK], CD)       # dL/dV_t from the steps after t
    gk_acc = tl.zeros([BLOCK], CD)   # per-neuron dL/dk

    n_tiles = tl.cdiv(T, BT)
    off, m = tile_at((n_tiles - 1) * BT, rows, cols, cmask, N, T)
    n_gs = tl.load(gs_ptr + off, mask=m, other=0.0)
    n_h = tl.load(h_ptr + off, mask=m, other=0.0)
    n_x = load_tile(x_ptr, off, m, NEED_GK and DECAY_INPUT)
    for c in tl.range(0, n_tiles):
        t0 = (n_tiles - 1 - c) * BT
        c_gs = n_gs.to(CD)
        c_h = n_h.to(CD)
        if NEED_GK and DECAY_INPUT:
            c_x = n_x.to(CD)
        # prefetch the tile before this one (earlier in time); none before t = 0
        off, m = tile_before(t0 - BT, rows, cols, cmask, N)
        n_gs = tl.load(gs_ptr + off, mask=m, other=0.0)
        n_h = tl.load(h_ptr + off, mask=m, other=0.0)
        n_x = load_tile(x_ptr, off, m, NEED_GK and DECAY_INPUT)
        if NEED_GK:
            p_h = n_h.to(CD)
        gx_tile = tl.zeros([BT, BLOCK], CD)
        for j in tl.static_range(BT):
            i = BT - 1 - j
            t = t0 + i
            valid = t < T
            h = tile_row(c_h, rows, i)
            gs = tile_row(c_gs, rows, i)
            z = h - v_th
            g = surrogate_grad(z, sg_a, sg_c, SG)
            if SOFT:
                if DETACH:
                    dvdh = tl.full([BLOCK], 1.0, CD)
                else:
                    dvdh = 1.0 - v_th * g
            else:
                not_fired = tl.where(z >= 0, 0.0, 1.0).to(CD)
                if DETACH:
                    dvdh = not_fired
                else:
                    dvdh = not_fired + (v_reset - h) * g
            gh = gs * g + gv * dvdh
            if DECAY_INPUT:
                gx_tile = tile_set(gx_tile, rows, i, gh * k)
            else:
                gx_tile = tile_set(gx_tile, rows, i, gh)
            if NEED_GK:
                # V_{t-1} = reset(H_{t-1}); V_init = V_reset (0 for soft reset) at t = 0
                hp = tile_row_lag(c_h, p_h, rows, i, 1, BT)
                if SOFT:
                    vp = tl.where(hp - v_th >= 0, hp - v_th, hp)
                else:
                    vp = tl.where(hp - v_th >= 0, v_reset, hp)
                vp = tl.where(t > 0, vp, v_reset)
                if DECAY_INPUT:
                    dhdk = tile_row(c_x, rows, i) - (vp - v_reset)
                else:
                    dhdk = -(vp - v_reset)
                gk_acc += tl.where(valid & cmask, gh * dhdk, 0.0)
            gv = tl.where(valid, gh * (1.0 - k), gv)
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(gx_ptr, off, m, gx_tile, True)
    if NEED_GK:
        tl.store(gk_ptr + pid, tl.sum(gk_acc, axis=0))


@dataclass(frozen=True)
class _Cfg:
    p: LIFParams
    block_n: int | None
    bt: int | None


class LIFFunction(torch.autograd.Function):
    """S = LIF(X; k) with the Triton forward/backward above. ``k`` is a 0-dim tensor (1/τ, or σ(w)
    for PLIF: its gradient is returned when it requires grad)."""

    @staticmethod
    def forward(ctx, x, k, cfg: _Cfg):
        p = cfg.p
        x2 = as_2d(x)
        T, N = x2.shape
        cd = compute_dtype(x)
        launch = launch_config(x2, N, cfg.block_n, cfg.bt, "lif_fwd")
        sg_id, rest = surrogate_scalars([p.v_threshold, p.v_reset], p.surrogate, x2)
        params = torch.cat([k.detach().reshape(1).to(cd), rest])
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        s = torch.empty_like(x2)
        h = torch.empty((T, N), dtype=cd, device=x.device) if need_grad else s
        _lif_fwd_kernel[launch.grid(N)](x2, s, h, params, T, N, DECAY_INPUT=p.decay_input, SOFT=p.soft_reset,
                                        STORE_H=need_grad, **launch.meta(x2))
        if need_grad:
            need_gk = ctx.needs_input_grad[1]
            ctx.save_for_backward(h, params, x2 if need_gk and p.decay_input else h)
            ctx.cfg, ctx.sg_id, ctx.shape = cfg, sg_id, x.shape
            ctx.launch = launch_config(x2, N, cfg.block_n, cfg.bt, "lif_bwd")
        return s.view(x.shape)

    @staticmethod
    def backward(ctx, grad_s):
        h, params, x2 = ctx.saved_tensors
        p, launch = ctx.cfg.p, ctx.launch
        T, N = h.shape
        need_gk = ctx.needs_input_grad[1]
        gs = as_2d(grad_s)
        gx = torch.empty((T, N), dtype=grad_s.dtype, device=h.device)
        grid = launch.grid(N)
        gk_part = torch.zeros(grid[0] if need_gk else 1, dtype=h.dtype, device=h.device)
        _lif_bwd_kernel[grid](gs, h, x2, gx, gk_part, params, T, N, DECAY_INPUT=p.decay_input,
                              SOFT=p.soft_reset, DETACH=p.detach_reset, SG=ctx.sg_id, NEED_GK=need_gk,
                              **launch.meta(h))
        gk = gk_part.sum().reshape(()) if need_gk else None
        return gx.view(ctx.shape), gk, None


def lif(x_seq: torch.Tensor, k, p: LIFParams, *, block_n: int | None = None, bt: int | None = None):
    """Spikes [T, *batch] of LIF/PLIF on ``x_seq`` [T, *batch] (fp32/bf16/fp16/fp64, any T ≥ 1).

    ``k`` is 1/τ (a float) or σ(w) (a tensor; its gradient flows back to w). ``block_n``/``bt``
    override the launch shape (tests; tuning on a GPU)."""
    check_device("lif", x_seq)
    cd = compute_dtype(x_seq)
    k = k.to(cd) if isinstance(k, torch.Tensor) else torch.tensor(float(k), dtype=cd, device=x_seq.device)
    return LIFFunction.apply(x_seq, k, _Cfg(p, block_n, bt))


def lif_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry for ``lif`` and ``plif``: reads the module's parameters."""
    return lif(x_seq, module.charge_factor(compute_dtype(x_seq)), module.params())
