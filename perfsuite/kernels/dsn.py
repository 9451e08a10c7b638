"""Triton DSN (spec §5.2, Eq. 9–12): causal depthwise conv for the decay, then the gated scan.

Input x [T, *batch, C] is seen as [T, N] (N = M·C, channel = column mod C). Forward, three passes:

1. `_gate_kernel` (grid: time tiles × neuron blocks, no recurrence): the decay logit
   z_t = bias[c] + Σ_{j<k} w[c, j]·x_{t−k+1+j} (Eq. 11, zero left pad), then in the same registers
   log a_t = −softplus(−z_t)/τ (Eq. 12 in log space), a_t = exp(log a_t) and b_t = −expm1(log a_t)·x_t;
   stores a and b in the compute dtype.
2. `kernels.scan.scan_forward`: H_t = a_t·H_{t−1} + b_t (Eq. 9), one pass over T per neuron block with
   the next time tile's loads in flight.
3. The spike function of the module itself (`DSN.fire`: Eq. 10's integer levels with the rect
   straight-through gradient, or the binary ATan/Sigmoid Heaviside at 0.5), applied to H by autograd:
   one rule, no second copy of it.

Backward of the membrane (`DSNMembraneFunction`), from dL/dH:

1. `kernels.scan.scan_backward`: G_t = dL/dH_t + a_{t+1}·G_{t+1} (= dL/db_t) and dL/da_t|_scan = G_t·H_{t−1}.
2. `_gate_bwd_kernel` (elementwise; recomputes z by the cheap conv instead of saving it):
   dL/da_t = G_t·H_{t−1} − G_t·x_t (b = (1 − a)·x), dL/dz_t = dL/da_t·a_t·σ(−z_t)/τ, and the direct
   part of dL/dx_t = G_t·(1 − a_t).
3. `_conv_bwd_kernel` (per neuron block, loop over time tiles): dL/dx_t += Σ_j w[c, j]·dL/dz_{t+k−1−j}
   (the anti-causal conv), and per column Σ_t dL/dz_t·x_{t−k+1+j} and Σ_t dL/dz_t for dL/dw and
   dL/dbias; the host sums the columns of each channel (deterministic, no atomics).

Saved for the backward: x (input dtype), a and H (compute dtype). Not fused yet (see docs/kernels.md):
the spike function reads H once more, and a, b make a round trip through memory between passes 1 and 2.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from .common import as_2d, check_device, launch_config, scalars, tl_compute_dtype
from .scan import scan_backward, scan_forward


@triton.jit
def _logit(x_ptr, w_ptr, b_ptr, t, cols, ch, cmask, T, N, K, m,
           BT: tl.constexpr, BLOCK: tl.constexpr, CD: tl.constexpr):
    """z [BT, BLOCK] = bias[ch] + Σ_j w[ch, j]·x_{t−K+1+j} (zero outside [0, T))."""
    z = tl.zeros([BT, BLOCK], CD) + tl.load(b_ptr + ch, mask=cmask, other=0.0).to(CD)[None, :]
    for j in range(K):
        src = t - (K - 1 - j)
        ms = (src >= 0)[:, None] & m
        xv = tl.load(x_ptr + src.to(tl.int64)[:, None] * N + cols[None, :], mask=ms, other=0.0).to(CD)
        z += tl.load(w_ptr + ch * K + j, mask=cmask, other=0.0).to(CD)[None, :] * xv
    return z


@triton.jit
def _log_decay(z, inv_tau):
    """log a = −softplus(−z)/τ = (min(z, 0) − log(1 + exp(−|z|)))/τ, finite for any finite z."""
    return (tl.minimum(z, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(z)))) * inv_tau


@triton.jit
def _one_minus_exp(la):
    """1 − exp(la) = −expm1(la) for la ≤ 0, without the cancellation of 1 − exp near la = 0 (a → 1,
    large τ): three Taylor terms where |la| < 1e-3 (relative error below 1e-10)."""
    return tl.where(la > -1e-3, -la * (1.0 + la * (0.5 + la * (1.0 / 6.0))), 1.0 - tl.exp(la))


@triton.jit(do_not_specialize=["T", "K"])
def _gate_kernel(x_ptr, w_ptr, bias_ptr, p_ptr, a_ptr, b_ptr, T, N, C, K,
                 BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    cmask = cols < N
    ch = cols % C
    m = (t < T)[:, None] & cmask[None, :]
    z = _logit(x_ptr, w_ptr, bias_ptr, t, cols, ch, cmask, T, N, K, m, BT, BLOCK, CD)
    la = _log_decay(z, tl.load(p_ptr + 0))
    off = t.to(tl.int64)[:, None] * N + cols[None, :]
    x = tl.load(x_ptr + off, mask=m, other=0.0).to(CD)
    tl.store(a_ptr + off, tl.exp(la).to(a_ptr.dtype.element_ty), mask=m)
    tl.store(b_ptr + off, (_one_minus_exp(la) * x).to(b_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["T", "K"])
def _gate_bwd_kernel(x_ptr, w_ptr, bias_ptr, p_ptr, g_ptr, ga_ptr, gz_ptr, gx_ptr, T, N, C, K,
                     BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    cmask = cols < N
    ch = cols % C
    m = (t < T)[:, None] & cmask[None, :]
    inv_tau = tl.load(p_ptr + 0)
    z = _logit(x_ptr, w_ptr, bias_ptr, t, cols, ch, cmask, T, N, K, m, BT, BLOCK, CD)
    la = _log_decay(z, inv_tau)
    a = tl.exp(la)
    off = t.to(tl.int64)[:, None] * N + cols[None, :]
    x = tl.load(x_ptr + off, mask=m, other=0.0).to(CD)
    g = tl.load(g_ptr + off, mask=m, other=0.0).to(CD)
    ga = tl.load(ga_ptr + off, mask=m, other=0.0).to(CD) - g * x
    sig_neg = 1.0 / (1.0 + tl.exp(z))  # σ(−z) = d log σ(z)/dz, so d log a/dz = σ(−z)/τ
    tl.store(gz_ptr + off, (ga * a * sig_neg * inv_tau).to(gz_ptr.dtype.element_ty), mask=m)
    tl.store(gx_ptr + off, (g * _one_minus_exp(la)).to(gx_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["T", "K"])
def _conv_bwd_kernel(x_ptr, w_ptr, gz_ptr, gx_ptr, gw_ptr, gb_ptr, T, N, C, K,
                     NEED_GX: tl.constexpr, NEED_GW: tl.constexpr, KP: tl.constexpr,
                     BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    """gx_t += Σ_j w[c, j]·gz_{t+K−1−j}; per column gw[col, j] = Σ_t gz_t·x_{t−K+1+j}, gb[col] = Σ_t gz_t.
    KP = next power of two ≥ K (the register width of the per-column weight-gradient accumulator)."""
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    cmask = cols < N
    ch = cols % C
    rows = tl.arange(0, BT)
    jj = tl.arange(0, KP)
    gw_acc = tl.zeros([BLOCK, KP], CD)
    gb_acc = tl.zeros([BLOCK], CD)
    for t0 in tl.range(0, T, BT):
        t = t0 + rows
        m = (t < T)[:, None] & cmask[None, :]
        off = t.to(tl.int64)[:, None] * N + cols[None, :]
        if NEED_GX:
            acc = tl.load(gx_ptr + off, mask=m, other=0.0).to(CD)
            for j in range(K):
                src = t + (K - 1 - j)
                ms = (src < T)[:, None] & m
                gzv = tl.load(gz_ptr + src.to(tl.int64)[:, None] * N + cols[None, :], mask=ms, other=0.0).to(CD)
                acc += tl.load(w_ptr + ch * K + j, mask=cmask, other=0.0).to(CD)[None, :] * gzv
            tl.store(gx_ptr + off, acc.to(gx_ptr.dtype.element_ty), mask=m)
        if NEED_GW:
            gz = tl.load(gz_ptr + off, mask=m, other=0.0).to(CD)
            gb_acc += tl.sum(gz, axis=0)
            for j in range(K):
                src = t - (K - 1 - j)
                ms = (src >= 0)[:, None] & m
                xv = tl.load(x_ptr + src.to(tl.int64)[:, None] * N + cols[None, :], mask=ms, other=0.0).to(CD)
                gw_acc += tl.where(jj[None, :] == j, tl.sum(gz * xv, axis=0)[:, None], 0.0)
    if NEED_GW:
        tl.store(gw_ptr + cols[:, None] * KP + jj[None, :], gw_acc, mask=cmask[:, None])
        tl.store(gb_ptr + cols, gb_acc, mask=cmask)


def _tile_grid(T, N, launch):
    return (triton.cdiv(T, launch.bt), triton.cdiv(N, launch.block))


def _tile_launch(x2, N, block_n, bt):
    # elementwise passes over (time tile × neuron block): wider time tiles on the GPU than the scan uses
    base = launch_config(x2, N, block_n, bt)
    return base if x2.device.type == "cpu" or bt is not None else type(base)(base.block, 32, base.num_warps)


class DSNMembraneFunction(torch.autograd.Function):
    """H [T, N] (compute dtype) of Eq. 11, 12, 9 from x [T, N], weight [C, k], bias [C]."""

    @staticmethod
    def forward(ctx, x2, weight, bias, tau: float, launch: tuple):
        T, N = x2.shape
        C, K = weight.shape
        cd = compute_dtype(x2)
        block_n, bt = launch
        tile = _tile_launch(x2, N, block_n, bt)
        w = weight.detach().to(cd).contiguous()
        bvec = bias.detach().to(cd).contiguous()
        p = scalars([1.0 / tau], x2)
        a = torch.empty((T, N), dtype=cd, device=x2.device)
        b = torch.empty_like(a)
        _gate_kernel[_tile_grid(T, N, tile)](x2, w, bvec, p, a, b, T, N, C, K, BLOCK=tile.block, BT=tile.bt,
                                             CD=tl_compute_dtype(x2), num_warps=tile.num_warps)
        h = scan_forward(a, b, block_n=block_n, bt=bt)
        ctx.save_for_backward(x2, w, bvec, p, a, h)
        ctx.launch, ctx.wdtypes = launch, (weight.dtype, bias.dtype)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        x2, w, bvec, p, a, h = ctx.saved_tensors
        T, N = x2.shape
        C, K = w.shape
        block_n, bt = ctx.launch
        need_gx = ctx.needs_input_grad[0]
        need_gw = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        g, ga, _ = scan_backward(grad_h, a, h, block_n=block_n, bt=bt)
        tile = _tile_launch(x2, N, block_n, bt)
        cdt = tl_compute_dtype(h)
        gz = torch.empty_like(h)
        gx = torch.empty_like(h)
        _gate_bwd_kernel[_tile_grid(T, N, tile)](x2, w, bvec, p, g, ga, gz, gx, T, N, C, K, BLOCK=tile.block,
                                                 BT=tile.bt, CD=cdt, num_warps=tile.num_warps)
        kp = triton.next_power_of_2(K)
        gw_col = torch.zeros((N, kp), dtype=h.dtype, device=h.device) if need_gw else gz
        gb_col = torch.zeros((N,), dtype=h.dtype, device=h.device) if need_gw else gz
        seq = launch_config(x2, N, block_n, bt)
        _conv_bwd_kernel[(triton.cdiv(N, seq.block),)](
            x2, w, gz, gx, gw_col, gb_col, T, N, C, K, NEED_GX=need_gx, NEED_GW=need_gw, KP=kp,
            BLOCK=seq.block, BT=seq.bt, CD=cdt, num_warps=seq.num_warps)
        gw = gb = None
        if need_gw:  # columns of one channel: col = m·C + c
            gw = gw_col[:, :K].reshape(N // C, C, K).sum(0).to(ctx.wdtypes[0])
            gb = gb_col.reshape(N // C, C).sum(0).to(ctx.wdtypes[1])
        return (gx.to(x2.dtype) if need_gx else None), gw, gb, None, None


def dsn_membrane(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float, *,
                 block_n: int | None = None, bt: int | None = None) -> torch.Tensor:
    """H [T, *batch, C] of DSN (Eq. 11, 12, 9) for x_seq [T, *batch, C], weight [C, k], bias [C],
    in the compute dtype (fp32 for fp32/bf16/fp16, fp64 for fp64). Differentiable in x, weight, bias.
    ``block_n``/``bt`` override the launch shape (tests, tuning)."""
    check_device("dsn", x_seq, weight, bias)
    C = weight.shape[0]
    if x_seq.dim() < 2 or x_seq.shape[-1] != C:
        raise ValueError(f"dsn (triton): x_seq must be [T, *batch, C] with C = {C} (weight rows); got "
                         f"{tuple(x_seq.shape)}")
    x2 = as_2d(x_seq)
    if x2.numel() == 0:
        return torch.zeros(x_seq.shape, dtype=compute_dtype(x_seq), device=x_seq.device)
    return DSNMembraneFunction.apply(x2, weight, bias, float(tau), (block_n, bt)).view(x_seq.shape)


def dsn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``dsn``: the Triton membrane, then the module's own spike function."""
    h = dsn_membrane(x_seq, module.weight, module.bias, module.tau)
    return module.fire(h).to(x_seq.dtype)
