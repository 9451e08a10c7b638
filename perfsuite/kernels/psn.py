"""Triton backend of the PSN family (spec §2): PSN, masked PSN, sliding PSN.

PSN and masked PSN: H = W X + b is a GEMM ([T, T] × [T, N]); it runs on cuBLAS through `torch.mm`
(fp32 output for half inputs) inside `BandMixFunction`, and the spike function with its surrogate
backward are the Triton kernels of `common.FireFunction` (H is saved in fp32, S recomputed from it).
Masked PSN at λ = 1 keeps only the band j ≤ t ≤ j + k − 1 of W: forward, dL/dX and dL/dW are then
computed block by block over time on the band only (O(k·T·N + BT·T·N) instead of O(T²·N)).

Sliding PSN: a Triton causal convolution over time, O(k·T·N), any T, never a T×T matrix. Forward fuses
the spike (stores S and H); the backward is one Triton pass for dL/dH (surrogate), one anti-causal
convolution for dL/dX and one reduction kernel for dL/dW (per-program partial sums, added on the host).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from .common import FireFunction, as_2d, check_device, launch_config, tile_at, tile_in

#: time steps per block of the banded (λ = 1) masked-PSN products
BAND_BLOCK = 256


def _mm(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """a @ b accumulated and returned in ``out_dtype`` (fp32 for half operands: no rounding of H to
    bf16 before the threshold). cuBLAS does it natively; elsewhere the operands are upcast."""
    if a.dtype == out_dtype:
        return torch.mm(a, b)
    if a.is_cuda:
        try:
            return torch.mm(a, b, out_dtype=out_dtype)
        except (TypeError, RuntimeError, NotImplementedError):
            pass
    return torch.mm(a.to(out_dtype), b.to(out_dtype))


def _blocks(T: int, block: int):
    for t0 in range(0, T, block):
        yield t0, min(T, t0 + block)


class BandMixFunction(torch.autograd.Function):
    """H = W X + b [T, N] in the compute dtype; ``band`` = k keeps W's band j ≤ t ≤ j + k − 1 only
    (W must already be zero outside it), None = dense. W is in the operand dtype (input dtype)."""

    @staticmethod
    def forward(ctx, x2, w, b, band: int | None, cd: torch.dtype):
        T = x2.shape[0]
        if band is None:
            h = _mm(w, x2, cd)
        else:
            h = torch.empty((T, x2.shape[1]), dtype=cd, device=x2.device)
            for t0, t1 in _blocks(T, BAND_BLOCK):
                lo = max(0, t0 - band + 1)
                h[t0:t1] = _mm(w[t0:t1, lo:t1], x2[lo:t1], cd)
        h += b.to(cd)[:, None]
        ctx.save_for_backward(x2, w)
        ctx.band = band
        return h

    @staticmethod
    def backward(ctx, gh):
        x2, w = ctx.saved_tensors
        band, T = ctx.band, x2.shape[0]
        gho = gh.to(x2.dtype)  # operands in the input dtype (bf16 tensor cores), fp32 accumulation
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            if band is None:
                gx = _mm(w.t(), gho, gh.dtype)
            else:
                gx = torch.empty_like(gh)
                for i0, i1 in _blocks(T, BAND_BLOCK):  # column block of X: outputs t in [i0, i1 + k − 1)
                    th = min(T, i1 + band - 1)
                    gx[i0:i1] = _mm(w[i0:th, i0:i1].t(), gho[i0:th], gh.dtype)
            gx = gx.to(x2.dtype)
        if ctx.needs_input_grad[1]:
            if band is None:
                gw = _mm(gho, x2.t(), gh.dtype)
            else:
                gw = torch.zeros((T, T), dtype=gh.dtype, device=gh.device)
                for t0, t1 in _blocks(T, BAND_BLOCK):
                    lo = max(0, t0 - band + 1)
                    gw[t0:t1, lo:t1] = _mm(gho[t0:t1], x2[lo:t1].t(), gh.dtype)
            gw = gw.to(w.dtype)
        if ctx.needs_input_grad[2]:
            gb = gh.sum(1)
        return gx, gw, gb, None, None


def band_mix(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, band: int | None = None):
    """H = W X + b [T, N] in the compute dtype for x_seq [T, *batch]; W [T, T], b [T]."""
    check_device("psn", x_seq)
    x2 = as_2d(x_seq)
    return BandMixFunction.apply(x2, weight.to(x2.dtype), bias, band, compute_dtype(x_seq))


def psn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``psn``."""
    h = band_mix(x_seq, module.weight, module.bias)
    return FireFunction.apply(h, 0.0, module.surrogate, False, x_seq.dtype).view(x_seq.shape)


def masked_psn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``masked_psn``: banded products at λ = 1, dense below."""
    band = module.k if float(module.lambda_) >= 1.0 else None
    h = band_mix(x_seq, module.masked_weight(module.weight.dtype), module.bias, band)
    return FireFunction.apply(h, 0.0, module.surrogate, False, x_seq.dtype).view(x_seq.shape)


# --------------------------------------------------------------------------- sliding PSN
@triton.jit(do_not_specialize=["T", "K"])
def _causal_conv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, s_ptr, T, N, K,
                        ANTI: tl.constexpr, FIRE: tl.constexpr,
                        BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    """out_t = Σ_{i<K} W_i·x_{t−K+1+i} (+ b; and S = Θ(out) when FIRE), x_j = 0 outside [0, T).

    ANTI: the adjoint, out_t = Σ_i W_i·x_{t+K−1−i} (dL/dX from dL/dH). Grid: (time tiles, neuron blocks);
    the K shifted tile loads of one program overlap, so after the first they come from cache."""
    t0 = tl.program_id(0) * BT
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    cmask = cols < N
    rows = tl.arange(0, BT)
    acc = tl.zeros([BT, BLOCK], CD)
    for i in range(K):
        if ANTI:
            off, m = tile_in(t0 + (K - 1 - i), rows, cols, cmask, N, T)
        else:
            off, m = tile_in(t0 - (K - 1 - i), rows, cols, cmask, N, T)
        xv = tl.load(x_ptr + off, mask=m, other=0.0).to(CD)
        acc += tl.load(w_ptr + i) * xv
    off, m = tile_at(t0, rows, cols, cmask, N, T)
    if FIRE:
        acc += tl.load(b_ptr)
        tl.store(s_ptr + off, (acc >= 0).to(tl.float32).to(s_ptr.dtype.element_ty), mask=m)
    tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["T", "K"])
def _conv_weight_grad_kernel(gh_ptr, x_ptr, part_ptr, T, N, K,
                             BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    """Per program (time tile × neuron block): partial[i] = Σ gH_t·x_{t−K+1+i} over its tile."""
    pid = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
    t0 = tl.program_id(0) * BT
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    cmask = cols < N
    rows = tl.arange(0, BT)
    t = t0 + rows
    off, m = tile_at(t0, rows, cols, cmask, N, T)
    gh = tl.load(gh_ptr + off, mask=m, other=0.0).to(CD)
    for i in range(K):
        src = t - (K - 1 - i)
        ms = (src >= 0)[:, None] & m
        xv = tl.load(x_ptr + src.to(tl.int64)[:, None] * N + cols[None, :], mask=ms, other=0.0).to(CD)
        tl.store(part_ptr + pid.to(tl.int64) * K + i, tl.sum(tl.sum(gh * xv, axis=1), axis=0))


def _conv_grid(T, N, launch):
    return (triton.cdiv(T, launch.bt), triton.cdiv(N, launch.block))


def _conv_launch(x2, N):
    # a time tile per program (no recurrence here): wider tiles on the GPU than the serial kernels use
    base = launch_config(x2, N)
    return base if x2.device.type == "cpu" else replace(base, bt=32)


class SlidingPSNFunction(torch.autograd.Function):
    """S = Θ(Σ_i W_i X_{t−k+1+i} + b) with Triton forward/backward; saves X (the input) and H."""

    @staticmethod
    def forward(ctx, x, w, b, surrogate):
        x2 = as_2d(x)
        T, N = x2.shape
        cd = compute_dtype(x2)
        launch = _conv_launch(x2, N)
        wc, bc = w.detach().to(cd).contiguous(), b.detach().to(cd).reshape(1)
        h = torch.empty((T, N), dtype=cd, device=x.device)
        s = torch.empty_like(x2)
        _causal_conv_kernel[_conv_grid(T, N, launch)](
            x2, wc, bc, h, s, T, N, wc.shape[0], ANTI=False, FIRE=True, **launch.meta(x2))
        ctx.save_for_backward(x2, wc, h)
        ctx.surrogate, ctx.launch, ctx.shape, ctx.wdtype = surrogate, launch, x.shape, w.dtype
        return s.view(x.shape)

    @staticmethod
    def backward(ctx, grad_s):
        from .common import fire_backward

        x2, wc, h = ctx.saved_tensors
        T, N = x2.shape
        launch, K = ctx.launch, wc.shape[0]
        gh = fire_backward(as_2d(grad_s), h, 0.0, ctx.surrogate)
        grid = _conv_grid(T, N, launch)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.empty_like(x2)
            _causal_conv_kernel[grid](gh, wc, wc, gx, gx, T, N, K, ANTI=True, FIRE=False, **launch.meta(h))
            gx = gx.view(ctx.shape)
        if ctx.needs_input_grad[1]:
            part = torch.empty((grid[0] * grid[1], K), dtype=h.dtype, device=h.device)
            _conv_weight_grad_kernel[grid](gh, x2, part, T, N, K, **launch.meta(h))
            gw = part.sum(0).to(ctx.wdtype)
        if ctx.needs_input_grad[2]:
            gb = gh.sum().to(ctx.wdtype)
        return gx, gw, gb, None


def sliding_psn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``sliding_psn``."""
    check_device("sliding_psn", x_seq)
    return SlidingPSNFunction.apply(x_seq, module.weight, module.bias, module.surrogate)
