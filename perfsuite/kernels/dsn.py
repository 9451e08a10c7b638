"""Triton DSN (spec §5.2, Eq. 9–12): one fused pass forward, one reverse-time pass backward.

Input x [T, *batch, C] is seen as [T, N] (N = M·C, channel = column mod C: the batch columns of one
channel share its weight row and bias). Per program = a block of neurons, H in registers in the
compute dtype, time cut into [BT, BLOCK] register tiles with the next tile's loads issued before the
current tile's serial chain (the `kernels.lif` design, kernel_anchors §4.4).

Forward (`_dsn_fwd_kernel`), for each step t of the tile:

    z_t   = bias[c] + Σ_{j<k} w[c, j]·x_{t−k+1+j}     (Eq. 11; x_{t−lag} from the current tile or the
                                                      previous one, kept in registers: k − 1 ≤ BT)
    log a = −softplus(−z_t)/τ                         (Eq. 12 in log space)
    H_t   = a·H_{t−1} + (−expm1(log a))·x_t           (Eq. 9)
    S_t   = round(clamp(H_t, 0, levels))  |  1[H_t > 0.5]  |  H_t itself   (FIRE = 1 | 2 | 0)

X is read once and S written once; training also stores H (compute dtype), the only [T, N] tensor the
backward needs besides X and dL/dS.

Backward (`_dsn_bwd_kernel`), reverse time, carrying G_{t+1} = dL/dH_{t+1} and a_{t+1}; z_t and a_t are
recomputed from the x tile and the prefetched earlier one (cheaper than storing them):

    G_t        = dL/dS_t·S'(H_t) + a_{t+1}·G_{t+1}
    dL/dz_t    = G_t·(H_{t−1} − x_t)·a_t·σ(−z_t)/τ     (d log a/dz = σ(−z)/τ)
    dL/dx_t    = G_t·(1 − a_t) + Σ_{lag<k} w[c, k−1−lag]·dL/dz_{t+lag}
    dL/dw[c,j] = Σ_t dL/dz_t·x_{t−k+1+j},   dL/dbias[c] = Σ_t dL/dz_t

with S' = the rect straight-through 1[0 ≤ H ≤ levels] (FIRE 1, Eq. 10), the module's surrogate at
H − 0.5 (FIRE 2), or 1 (FIRE 0, dL/dH given). The later dL/dz_{t+lag} come from the current tile's
already computed rows or the later tile's (registers). Weight and bias gradients are summed over time
per column in registers and written once per column ([N, k], T-independent); the host adds the columns
of each channel (deterministic, no atomics).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from ..neurons.surrogate import Surrogate
from .common import (
    as_2d,
    check_device,
    launch_config,
    load_at,
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

#: FIRE constexpr: what the forward writes
MEMBRANE, LEVELS, BINARY = 0, 1, 2


@triton.jit
def _log_decay(z, inv_tau):
    """log a = −softplus(−z)/τ = (min(z, 0) − log(1 + exp(−|z|)))/τ, finite for any finite z."""
    return (tl.minimum(z, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(z)))) * inv_tau


@triton.jit
def _one_minus_exp(la):
    """1 − exp(la) = −expm1(la) for la ≤ 0, without the cancellation of 1 − exp near la = 0 (a → 1,
    large τ): three Taylor terms where |la| < 1e-3 (relative error below 1e-10)."""
    return tl.where(la > -1e-3, -la * (1.0 + la * (0.5 + la * (1.0 / 6.0))), 1.0 - tl.exp(la))


@triton.jit
def _logit(cur, prev, rows, wl, krows, bias, i: tl.constexpr, K: tl.constexpr, BT: tl.constexpr):
    """z = bias + Σ_j w[c, j]·x_{t−K+1+j} for row i, summed in j order as the float64 reference."""
    z = bias
    for j in tl.static_range(K):
        z += tile_row(wl, krows, j) * tile_row_lag(cur, prev, rows, i, K - 1 - j, BT)
    return z


@triton.jit
def _round_half_even(v):
    """round(v) with ties to even, as torch.round (v ≥ 0 here)."""
    f = tl.floor(v)
    r = v - f
    odd = (f - 2.0 * tl.floor(0.5 * f)) == 1.0
    return f + tl.where((r > 0.5) | ((r == 0.5) & odd), 1.0, 0.0)


@triton.jit
def _conv_params(w_ptr, bias_ptr, cols, cmask, C, K: tl.constexpr, KP: tl.constexpr, CD: tl.constexpr):
    """Each column's channel ch = col mod C, its weights as a [KP, BLOCK] tile (row j = w[ch, j], rows
    ≥ K are 0) with their row indices, and its bias [BLOCK]."""
    ch = cols % C
    krows = tl.arange(0, KP)
    wl = tl.load(w_ptr + ch[None, :] * K + krows[:, None], mask=(krows < K)[:, None] & cmask[None, :], other=0.0)
    bias = tl.load(bias_ptr + ch, mask=cmask, other=0.0).to(CD)
    return wl.to(CD), krows, bias


@triton.jit
def _params(p_ptr):
    """(1/τ, levels, surrogate a, surrogate c): the parameter vector `DSNFunction.forward` builds (the
    forward kernel reads the first two; the surrogate's loads are dropped by the compiler)."""
    return tl.load(p_ptr + 0), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3)


@triton.jit(do_not_specialize=["T", "N"])  # N: scalar loads, see kernels.tiles.Tile
def _dsn_fwd_kernel(x_ptr, w_ptr, bias_ptr, p_ptr, out_ptr, h_ptr, T, N, C,
                    K: tl.constexpr, KP: tl.constexpr, FIRE: tl.constexpr, STORE_H: tl.constexpr,
                    BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    inv_tau, levels, _, _ = _params(p_ptr)
    wl, krows, bias = _conv_params(w_ptr, bias_ptr, cols, cmask, C, K, KP, CD)
    h = tl.zeros([BLOCK], CD)
    prev = tl.zeros([BT, BLOCK], CD)  # the tile before t = 0: the conv's zero left pad

    nxt = load_at(x_ptr, 0, rows, cols, cmask, N, T)
    for t0 in tl.range(0, T, BT):
        cur = nxt.to(CD)
        nxt = load_at(x_ptr, t0 + BT, rows, cols, cmask, N, T)  # issued before the serial chain of this tile
        o_tile = tl.zeros([BT, BLOCK], CD)
        h_tile = tl.zeros([BT, BLOCK], CD)
        for i in tl.static_range(BT):
            z = _logit(cur, prev, rows, wl, krows, bias, i, K, BT)
            la = _log_decay(z, inv_tau)
            h = tl.exp(la) * h + _one_minus_exp(la) * tile_row(cur, rows, i)
            if FIRE == 0:
                o = h
            elif FIRE == 1:
                o = _round_half_even(tl.minimum(tl.maximum(h, 0.0), levels))
            else:
                o = tl.where(h - 0.5 > 0, 1.0, 0.0).to(CD)
            o_tile = tile_set(o_tile, rows, i, o)
            if STORE_H:
                h_tile = tile_set(h_tile, rows, i, h)
        prev = cur
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(out_ptr, off, m, o_tile, True)
        store_tile(h_ptr, off, m, h_tile, STORE_H)


@triton.jit(do_not_specialize=["T", "N"])  # N: scalar loads, see kernels.tiles.Tile
def _dsn_bwd_kernel(gs_ptr, x_ptr, h_ptr, w_ptr, bias_ptr, p_ptr, gx_ptr, gw_ptr, gb_ptr, T, N, C,
                    K: tl.constexpr, KP: tl.constexpr, FIRE: tl.constexpr, SG: tl.constexpr,
                    NEED_GX: tl.constexpr, NEED_GW: tl.constexpr,
                    BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    inv_tau, levels, sg_a, sg_c = _params(p_ptr)
    wl, krows, bias = _conv_params(w_ptr, bias_ptr, cols, cmask, C, K, KP, CD)
    g = tl.zeros([BLOCK], CD)                 # G_{t+1}
    a_next = tl.zeros([BLOCK], CD)            # a_{t+1} (0 past the end: G_{T+1} = 0 anyway)
    gz_later = tl.zeros([BT, BLOCK], CD)      # dL/dz of the later tile (the conv's future taps)
    gw_acc = tl.zeros([KP, BLOCK], CD)
    gb_acc = tl.zeros([BLOCK], CD)

    n_tiles = tl.cdiv(T, BT)
    off, m = tile_at((n_tiles - 1) * BT, rows, cols, cmask, N, T)
    n_gs = tl.load(gs_ptr + off, mask=m, other=0.0)
    n_x = tl.load(x_ptr + off, mask=m, other=0.0)
    n_h = tl.load(h_ptr + off, mask=m, other=0.0)
    for c in tl.range(0, n_tiles):
        t0 = (n_tiles - 1 - c) * BT
        c_gs = n_gs.to(CD)
        c_x = n_x.to(CD)
        c_h = n_h.to(CD)
        # prefetch the tile before this one (earlier in time; zeros before t = 0 = the conv's pad)
        off, m = tile_before(t0 - BT, rows, cols, cmask, N)
        n_gs = tl.load(gs_ptr + off, mask=m, other=0.0)
        n_x = tl.load(x_ptr + off, mask=m, other=0.0)
        n_h = tl.load(h_ptr + off, mask=m, other=0.0)
        p_x = n_x.to(CD)
        p_h = n_h.to(CD)
        gz_tile = tl.zeros([BT, BLOCK], CD)
        gx_tile = tl.zeros([BT, BLOCK], CD)
        for jj in tl.static_range(BT):
            i = BT - 1 - jj
            t = t0 + i
            valid = (t < T) & cmask
            h = tile_row(c_h, rows, i)
            x = tile_row(c_x, rows, i)
            hp = tl.where(t > 0, tile_row_lag(c_h, p_h, rows, i, 1, BT), 0.0)
            z = _logit(c_x, p_x, rows, wl, krows, bias, i, K, BT)
            la = _log_decay(z, inv_tau)
            a = tl.exp(la)
            gs = tile_row(c_gs, rows, i)
            if FIRE == 0:
                gdir = gs
            elif FIRE == 1:
                gdir = tl.where((h >= 0) & (h <= levels), gs, 0.0)
            else:
                gdir = gs * surrogate_grad(h - 0.5, sg_a, sg_c, SG)
            g = gdir + a_next * g
            sig_neg = 1.0 / (1.0 + tl.exp(z))
            gz = tl.where(valid, g * (hp - x) * a * sig_neg * inv_tau, 0.0)
            gz_tile = tile_set(gz_tile, rows, i, gz)
            if NEED_GX:
                gx = g * _one_minus_exp(la) + tile_row(wl, krows, K - 1) * gz
                for lag in tl.static_range(1, K):
                    if i + lag < BT:
                        gzl = tile_row(gz_tile, rows, i + lag)
                    else:
                        gzl = tile_row(gz_later, rows, i + lag - BT)
                    gx += tile_row(wl, krows, K - 1 - lag) * gzl
                gx_tile = tile_set(gx_tile, rows, i, gx)
            if NEED_GW:
                gb_acc += gz
                for j in tl.static_range(K):
                    gw_acc += tl.where(krows[:, None] == j, (gz * tile_row_lag(c_x, p_x, rows, i, K - 1 - j, BT))[None, :], 0.0)
            a_next = tl.where(t < T, a, a_next)
        gz_later = gz_tile
        if NEED_GX:
            off, m = tile_at(t0, rows, cols, cmask, N, T)
            store_tile(gx_ptr, off, m, gx_tile, True)
    if NEED_GW:
        tl.store(gw_ptr + cols[None, :] * KP + krows[:, None], gw_acc, mask=cmask[None, :])
        tl.store(gb_ptr + cols, gb_acc, mask=cmask)


@dataclass(frozen=True)
class _Cfg:
    tau: float
    fire: int                    # MEMBRANE, LEVELS or BINARY
    levels: int
    surrogate: Surrogate | None  # BINARY only
    block_n: int | None
    bt: int | None


def _launch(x2, N, K, cfg: _Cfg, kernel: str):
    launch = launch_config(x2, N, cfg.block_n, cfg.bt, kernel)
    # the conv's k − 1 past inputs must fit in the previous register tile: BT ≥ k − 1
    return replace(launch, bt=max(launch.bt, triton.next_power_of_2(max(K - 1, 1))))


class DSNFunction(torch.autograd.Function):
    """DSN on x [T, N] with weight [C, k], bias [C]: spikes in x's dtype (FIRE 1, 2) or H in the compute
    dtype (FIRE 0), with the fused Triton forward and backward above."""

    @staticmethod
    def forward(ctx, x2, weight, bias, cfg: _Cfg):
        T, N = x2.shape
        C, K = weight.shape
        cd = compute_dtype(x2)
        launch = _launch(x2, N, K, cfg, "dsn_fwd")
        sg_id, p = surrogate_scalars([1.0 / cfg.tau, cfg.levels], cfg.surrogate, x2)
        w = weight.detach().to(cd).contiguous()
        bvec = bias.detach().to(cd).contiguous()
        need_grad = any(ctx.needs_input_grad[:3])
        out = torch.empty((T, N), dtype=cd if cfg.fire == MEMBRANE else x2.dtype, device=x2.device)
        store_h = need_grad and cfg.fire != MEMBRANE
        h = torch.empty((T, N), dtype=cd, device=x2.device) if store_h else out
        kp = triton.next_power_of_2(K)
        _dsn_fwd_kernel[launch.grid(N)](
            x2, w, bvec, p, out, h, T, N, C, K=K, KP=kp, FIRE=cfg.fire, STORE_H=store_h, **launch.meta(x2))
        if need_grad:
            ctx.save_for_backward(x2, w, bvec, p, h)
            ctx.cfg, ctx.sg_id = cfg, sg_id
            ctx.launch = _launch(x2, N, K, cfg, "dsn_bwd")
            ctx.wdtypes = (weight.dtype, bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x2, w, bvec, p, h = ctx.saved_tensors
        T, N = x2.shape
        C, K = w.shape
        launch = ctx.launch
        need_gx = ctx.needs_input_grad[0]
        need_gw = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        kp = triton.next_power_of_2(K)
        gs = grad_out.contiguous()
        gx = torch.empty((T, N), dtype=x2.dtype, device=x2.device) if need_gx else h
        gw_col = torch.empty((N, kp), dtype=h.dtype, device=h.device) if need_gw else h
        gb_col = torch.empty((N,), dtype=h.dtype, device=h.device) if need_gw else h
        _dsn_bwd_kernel[launch.grid(N)](
            gs, x2, h, w, bvec, p, gx, gw_col, gb_col, T, N, C, K=K, KP=kp, FIRE=ctx.cfg.fire, SG=ctx.sg_id,
            NEED_GX=need_gx, NEED_GW=need_gw, **launch.meta(h))
        gw = gb = None
        if need_gw:  # columns of one channel: col = m·C + c
            gw = gw_col[:, :K].reshape(N // C, C, K).sum(0).to(ctx.wdtypes[0])
            gb = gb_col.reshape(N // C, C).sum(0).to(ctx.wdtypes[1])
        return (gx if need_gx else None), gw, gb, None


def _run(x_seq, weight, bias, cfg: _Cfg, out_dtype):
    check_device("dsn", x_seq, weight, bias)
    C = weight.shape[0]
    if x_seq.dim() < 2 or x_seq.shape[-1] != C:
        raise ValueError(f"dsn (triton): x_seq must be [T, *batch, C] with C = {C} (weight rows); got "
                         f"{tuple(x_seq.shape)}")
    x2 = as_2d(x_seq)
    if x2.numel() == 0:
        return torch.zeros(x_seq.shape, dtype=out_dtype, device=x_seq.device)
    return DSNFunction.apply(x2, weight, bias, cfg).view(x_seq.shape)


def dsn_membrane(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float, *,
                 block_n: int | None = None, bt: int | None = None) -> torch.Tensor:
    """H [T, *batch, C] of DSN (Eq. 11, 12, 9) for x_seq [T, *batch, C], weight [C, k], bias [C],
    in the compute dtype (fp32 for fp32/bf16/fp16, fp64 for fp64). Differentiable in x, weight, bias.
    The fused kernel with the membrane as its output; ``block_n``/``bt`` override the launch shape."""
    return _run(x_seq, weight, bias, _Cfg(float(tau), MEMBRANE, 0, None, block_n, bt), compute_dtype(x_seq))


def dsn_spikes(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float, *, levels: int = 4,
               surrogate: Surrogate | None = None, block_n: int | None = None, bt: int | None = None) -> torch.Tensor:
    """Spikes [T, *batch, C] of DSN in x_seq's dtype, one fused pass: Eq. 10's integer levels
    round(clamp(H, 0, levels)) with the rect straight-through gradient when ``surrogate`` is None, else
    binary 1[H > 0.5] with ``surrogate``'s gradient at H − 0.5 (as `perfsuite.neurons.dsn.DSN.fire`)."""
    fire = LEVELS if surrogate is None else BINARY
    return _run(x_seq, weight, bias, _Cfg(float(tau), fire, int(levels), surrogate, block_n, bt), x_seq.dtype)


def dsn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``dsn``: the module's parameters and spike rule, one fused kernel."""
    return dsn_spikes(x_seq, module.weight, module.bias, module.tau, levels=module.levels,
                      surrogate=module.surrogate)
