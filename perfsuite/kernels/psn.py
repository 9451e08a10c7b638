"""Triton backend of the PSN family (spec §2): PSN, masked PSN, sliding PSN.

PSN and masked PSN: one Triton GEMM H = W X + b ([T, T] × [T, N], blocked [BM, BN] × BK steps of time,
accumulated in the compute dtype) with the spike S = Θ(H) (Θ(0) = 1) in its epilogue: X is read, S is
written in the input dtype, and H (compute dtype) is written only when autograd will need it. The
backward is two Triton GEMMs that form dL/dH = dL/dS · g'(H) in their prologue, tile by tile, from the
dL/dS and H tiles they load (dL/dH never goes to memory): dL/dX = Wᵀ·dL/dH, and dL/dW = dL/dH·Xᵀ whose
diagonal blocks also sum dL/db = Σ_n dL/dH. Masked PSN at λ = 1 keeps only the band j ≤ t ≤ j + k − 1 of
W, so every product walks only the blocks that meet the band: O(k·T·N) instead of O(T²·N).

cuBLAS stays for the plain GEMM `band_mix` (IPSU/RPSU's learned tril(W)·X + b, `kernels/psu.py`): its
output feeds the PSU scan kernel, not a spike, so there is no epilogue to fuse.

Sliding PSN: a Triton causal convolution over time, O(k·T·N), any T, never a T×T matrix. Forward fuses
the spike (stores S and H); the backward is one Triton pass for dL/dH (surrogate), one anti-causal
convolution for dL/dX and one reduction kernel for dL/dW (per-program partial sums, added on the host).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from .common import (
    as_2d,
    check_device,
    device_name,
    dtype_name,
    launch_config,
    scalars,
    surrogate_args,
    surrogate_grad,
    tile_at,
    tile_in,
    tl_compute_dtype,
)
from .tiles import GemmTile, gemm_tile

# --------------------------------------------------------------------------- PSN, masked PSN
#: interpreter blocking (CPU tests): few programs, each a numpy step; tests shrink it to cover edges
CPU_TILES = GemmTile(bm=16, bn=64, bk=16, num_warps=1, num_stages=1, dw_programs=1)


def _tiles(x: torch.Tensor, kernel: str) -> GemmTile:
    """Blocking of PSN GEMM ``kernel`` (mix_fire, mix_grad_x, mix_grad_w) for input ``x``: the
    interpreter's on CPU; on a GPU `kernels.tiles.gemm_tile` for the operand class (half, tf32, ieee
    fp32) and the arch, e.g. smaller dL/dW blocks where shared memory is short."""
    if x.device.type == "cpu":
        return CPU_TILES
    dot = _dot_args(x)
    operands = "half" if dot["DOT"] in (tl.float16, tl.bfloat16) else dot["PREC"]
    return gemm_tile(kernel, operands, torch.cuda.get_device_capability(x.device)[0], dtype_name(x), device_name(x))


def _dot_args(x: torch.Tensor) -> dict:
    """DOT (operand dtype of tl.dot) and PREC (its fp32 input precision) for input ``x``.

    Half operands go to tl.dot as they are (tensor cores, fp32 accumulation), except bf16 under the
    interpreter, whose bf16 tl.dot is wrong (kernel_anchors §7): there they are upcast to fp32. fp32 uses
    TF32 only where torch's own matmuls would (`torch.backends.cuda.matmul.allow_tf32`), so the fused
    GEMM rounds like the cuBLAS one it replaces; fp64 (the exact tests) runs tl.dot in fp64 ("ieee": no
    TF32 rounding). Half operands keep tl.dot's default precision argument (it applies to fp32 only)."""
    dot = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}.get(x.dtype, tl_compute_dtype(x))
    if dot == tl.bfloat16 and x.device.type == "cpu":
        dot = tl.float32
    prec = "tf32"
    if x.dtype == torch.float64 or (x.dtype == torch.float32 and not (
            x.device.type != "cpu" and torch.backends.cuda.matmul.allow_tf32)):
        prec = "ieee"
    return {"DOT": dot, "PREC": prec, "CD": tl_compute_dtype(x)}


@triton.jit
def _dot(a, b, acc, DOT: tl.constexpr, PREC: tl.constexpr):
    """acc + a·b with the operands converted to DOT."""
    return tl.dot(a.to(DOT), b.to(DOT), acc, input_precision=PREC)


@triton.jit
def _grad_h(gs_ptr, h_ptr, off, m, a, c, SG: tl.constexpr, CD: tl.constexpr):
    """The dL/dH tile gS·g'(H) (threshold 0: the bias is −threshold) at ``off``; 0 where masked."""
    gs = tl.load(gs_ptr + off, mask=m, other=0.0).to(CD)
    h = tl.load(h_ptr + off, mask=m, other=0.0)
    return gs * surrogate_grad(h, a, c, SG)


@triton.jit(do_not_specialize=["T", "band"])
def _mix_fire_kernel(w_ptr, x_ptr, b_ptr, s_ptr, h_ptr, T, N, band,
                     BANDED: tl.constexpr, STORE_H: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr, CD: tl.constexpr):
    """S = Θ(W X + b) for one [BM, BN] block (time rows, neuron columns) of x [T, N], w [T, T], b [T];
    H too when STORE_H. BANDED: W is zero outside j ≤ t ≤ j + band − 1, so the reduction starts at the
    BK step holding t0 − band + 1 and ends at the block's last row (W is also zero above the diagonal).
    Grid: (neuron blocks, time blocks) — the neuron axis is the one that can exceed 65 535 blocks."""
    t0 = tl.program_id(1) * BM
    rows = tl.arange(0, BM)
    cols = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    cmask = cols < N
    ks = tl.arange(0, BK)
    lo = 0
    hi = T
    if BANDED:
        lo = tl.maximum(t0 - band + 1, 0) // BK * BK
        hi = tl.minimum(t0 + BM, T)
    acc = tl.zeros([BM, BN], CD)
    for k0 in range(lo, hi, BK):
        kk = k0 + ks
        w_off, w_m = tile_at(t0, rows, kk, kk < T, T, T)    # W[t0 + rows, kk]
        x_off, x_m = tile_at(k0, ks, cols, cmask, N, T)     # X[kk, cols]
        acc = _dot(tl.load(w_ptr + w_off, mask=w_m, other=0.0), tl.load(x_ptr + x_off, mask=x_m, other=0.0),
                   acc, DOT, PREC)
    acc += tl.load(b_ptr + t0 + rows, mask=t0 + rows < T, other=0.0).to(CD)[:, None]
    off, m = tile_at(t0, rows, cols, cmask, N, T)
    # via fp32: the interpreter mis-sizes a direct bool -> bf16 conversion
    tl.store(s_ptr + off, (acc >= 0).to(tl.float32).to(s_ptr.dtype.element_ty), mask=m)
    if STORE_H:
        tl.store(h_ptr + off, acc, mask=m)


@triton.jit(do_not_specialize=["T", "band"])
def _mix_grad_x_kernel(w_ptr, gs_ptr, h_ptr, p_ptr, gx_ptr, T, N, band,
                       BANDED: tl.constexpr, SG: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                       BK: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr, CD: tl.constexpr):
    """dL/dX = Wᵀ·dL/dH for one [BM, BN] block (input steps j, neuron columns), dL/dH = gS·g'(H) formed
    from each loaded [BK, BN] tile. BANDED: output step t meets input j only for j ≤ t ≤ j + band − 1,
    so the reduction covers t in [j0, j0 + BM − 1 + band − 1]. Grid as `_mix_fire_kernel`."""
    j0 = tl.program_id(1) * BM
    jr = tl.arange(0, BM)
    cols = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    cmask = cols < N
    ks = tl.arange(0, BK)
    a, c = tl.load(p_ptr + 0), tl.load(p_ptr + 1)
    lo = 0
    hi = T
    if BANDED:
        lo = j0 // BK * BK
        hi = tl.minimum(j0 + BM - 1 + band, T)
    acc = tl.zeros([BM, BN], CD)
    for k0 in range(lo, hi, BK):
        w_off, w_m = tile_at(k0, ks, j0 + jr, j0 + jr < T, T, T)  # W[k0 + ks, j0 + jr] = Wᵀ[j, t]
        g_off, g_m = tile_at(k0, ks, cols, cmask, N, T)
        gh = _grad_h(gs_ptr, h_ptr, g_off, g_m, a, c, SG, CD)
        acc = _dot(tl.trans(tl.load(w_ptr + w_off, mask=w_m, other=0.0)), gh, acc, DOT, PREC)
    off, m = tile_at(j0, jr, cols, cmask, N, T)
    tl.store(gx_ptr + off, acc.to(gx_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["T", "band", "n_split"])
def _mix_grad_w_kernel(x_ptr, gs_ptr, h_ptr, p_ptr, gw_ptr, gb_ptr, T, N, band, n_split,
                       BANDED: tl.constexpr, SG: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                       DOT: tl.constexpr, PREC: tl.constexpr, CD: tl.constexpr):
    """One [BM, BM] block (t, j) of dL/dW = dL/dH·Xᵀ over the neuron columns [s·n_split, (s+1)·n_split)
    of split s (n_split a multiple of BN), written to gw[s]; the diagonal block (same t and j blocks) also
    writes dL/db[t] = Σ_n dL/dH[t, n] to gb[s]. BANDED: blocks that miss the band are skipped (gw is
    zero there). Grid: (t blocks, j blocks, splits)."""
    t0 = tl.program_id(0) * BM
    j0 = tl.program_id(1) * BM
    split = tl.program_id(2)
    diag = tl.program_id(0) == tl.program_id(1)
    rows = tl.arange(0, BM)
    bs = tl.arange(0, BN)
    a, c = tl.load(p_ptr + 0), tl.load(p_ptr + 1)
    keep = True
    if BANDED:
        keep = (j0 <= t0 + BM - 1) & (j0 + BM - 1 >= t0 - band + 1)
    if keep:
        acc = tl.zeros([BM, BM], CD)
        gb = tl.zeros([BM], CD)
        n0 = split.to(tl.int64) * n_split
        for c0 in range(n0, tl.minimum(n0 + n_split, N), BN):
            cols = c0 + bs
            cmask = cols < N
            g_off, g_m = tile_at(t0, rows, cols, cmask, N, T)
            gh = _grad_h(gs_ptr, h_ptr, g_off, g_m, a, c, SG, CD)
            x_off, x_m = tile_at(j0, rows, cols, cmask, N, T)
            acc = _dot(gh, tl.trans(tl.load(x_ptr + x_off, mask=x_m, other=0.0)), acc, DOT, PREC)
            gb += tl.sum(gh, axis=1)  # kept by the diagonal block only; a branch here would cost more
        out = split.to(tl.int64) * T * T
        off, m = tile_at(t0, rows, j0 + rows, j0 + rows < T, T, T)
        tl.store(gw_ptr + out + off, acc, mask=m)
        if diag:
            tl.store(gb_ptr + split.to(tl.int64) * T + t0 + rows, gb, mask=t0 + rows < T)


def _dw_split(T: int, N: int, tiles: GemmTile, device) -> int:
    """Neuron columns per dL/dW program (a multiple of bn): split-K only when the T×T blocks alone
    would leave the device idle (short T, many neurons)."""
    want = tiles.dw_programs
    if want is None:
        want = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    blocks = triton.cdiv(T, tiles.bm) ** 2
    splits = max(1, min(triton.cdiv(N, tiles.bn), triton.cdiv(want, blocks)))
    return triton.cdiv(triton.cdiv(N, splits), tiles.bn) * tiles.bn


class MixFireFunction(torch.autograd.Function):
    """S = Θ(W X + b) [T, N] fused (see the module docstring); ``band`` = k when W is zero outside its
    band of width k (masked PSN at λ = 1), None = dense. ``store_h``: keep H for the backward."""

    @staticmethod
    def forward(ctx, x2, w, b, band: int | None, surrogate, store_h: bool):
        T, N = x2.shape
        tiles, dot = _tiles(x2, "mix_fire"), _dot_args(x2)
        w, b = w.contiguous(), b.contiguous()
        s = torch.empty_like(x2)
        h = torch.empty((T, N), dtype=compute_dtype(x2), device=x2.device) if store_h else s
        grid = (triton.cdiv(N, tiles.bn), triton.cdiv(T, tiles.bm))
        _mix_fire_kernel[grid](w, x2, b, s, h, T, N, band or 0, BANDED=band is not None, STORE_H=store_h,
                               BM=tiles.bm, BN=tiles.bn, BK=tiles.bk, num_warps=tiles.num_warps,
                               num_stages=tiles.num_stages, **dot)
        if store_h:
            ctx.save_for_backward(x2, w, h)
        ctx.band, ctx.surrogate, ctx.b_dtype = band, surrogate, b.dtype
        return s

    @staticmethod
    def backward(ctx, grad_s):
        x2, w, h = ctx.saved_tensors
        T, N = x2.shape
        band, gs = ctx.band, grad_s.contiguous()
        dot = _dot_args(x2)
        sg_id, a, c = surrogate_args(ctx.surrogate)
        p = scalars([a, c], x2)

        def common(tiles):
            return dict(BANDED=band is not None, SG=sg_id, BM=tiles.bm, BN=tiles.bn, num_warps=tiles.num_warps,
                        num_stages=tiles.num_stages, **dot)

        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            tiles = _tiles(x2, "mix_grad_x")
            gx = torch.empty_like(x2)
            grid = (triton.cdiv(N, tiles.bn), triton.cdiv(T, tiles.bm))
            _mix_grad_x_kernel[grid](w, gs, h, p, gx, T, N, band or 0, BK=tiles.bk, **common(tiles))
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            tiles = _tiles(x2, "mix_grad_w")
            n_split = _dw_split(T, N, tiles, x2.device)
            splits = triton.cdiv(N, n_split)
            alloc = torch.zeros if band is not None else torch.empty  # skipped blocks stay zero
            part_w = alloc((splits, T, T), dtype=h.dtype, device=h.device)
            part_b = torch.empty((splits, T), dtype=h.dtype, device=h.device)
            grid = (triton.cdiv(T, tiles.bm), triton.cdiv(T, tiles.bm), splits)
            _mix_grad_w_kernel[grid](x2, gs, h, p, part_w, part_b, T, N, band or 0, n_split, **common(tiles))
            gw = part_w.sum(0).to(w.dtype) if ctx.needs_input_grad[1] else None
            gb = part_b.sum(0).to(ctx.b_dtype) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None


def mix_fire(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, surrogate,
             band: int | None = None) -> torch.Tensor:
    """S = Θ(W X + b) [T, *batch] in x_seq's dtype, differentiable in x, W [T, T] and b [T] (any float
    dtype; the GEMM runs with x_seq's operands). ``band`` = k: W is zero outside j ≤ t ≤ j + k − 1."""
    check_device("psn", x_seq)
    x2 = as_2d(x_seq)
    store_h = torch.is_grad_enabled() and any(t.requires_grad for t in (x_seq, weight, bias))
    return MixFireFunction.apply(x2, weight, bias, band, surrogate, store_h).view(x_seq.shape)


def record_matmul(module, x_seq: torch.Tensor) -> None:
    """Record on ``module`` what its GEMMs ran with, for the result row (the runner stores a module's
    ``peer_info`` in the row's ``peer`` field): fp32 inputs use TF32 exactly when
    ``torch.backends.cuda.matmul.allow_tf32`` is set (as cuBLAS), so the flag is part of the result."""
    allow = bool(torch.backends.cuda.matmul.allow_tf32)
    if x_seq.dtype in (torch.float16, torch.bfloat16):
        precision = "half (tensor cores)"
    elif x_seq.dtype == torch.float32 and allow and x_seq.device.type != "cpu":
        precision = "tf32 (tensor cores)"
    else:
        precision = "ieee"
    module.peer_info = {"library": "perfsuite", "implementation": "triton", "allow_tf32": allow,
                        "matmul_precision": precision}


def psn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``psn``."""
    record_matmul(module, x_seq)
    return mix_fire(x_seq, module.weight, module.bias, module.surrogate)


def masked_psn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``masked_psn``: banded products at λ = 1, dense below."""
    record_matmul(module, x_seq)
    band = module.k if float(module.lambda_) >= 1.0 else None
    return mix_fire(x_seq, module.masked_weight(module.weight.dtype), module.bias, module.surrogate, band)


# --------------------------------------------------------------------------- plain GEMM (IPSU, RPSU)
def _mm(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """a @ b accumulated and returned in ``out_dtype`` (fp32 for half operands: no rounding of H to
    bf16 before it is used). cuBLAS does it natively; elsewhere the operands are upcast."""
    if a.dtype == out_dtype:
        return torch.mm(a, b)
    if a.is_cuda:
        try:
            return torch.mm(a, b, out_dtype=out_dtype)
        except (TypeError, RuntimeError, NotImplementedError):
            pass
    return torch.mm(a.to(out_dtype), b.to(out_dtype))


class BandMixFunction(torch.autograd.Function):
    """H = W X + b [T, N] in the compute dtype on cuBLAS; W in the operand dtype (input dtype)."""

    @staticmethod
    def forward(ctx, x2, w, b, cd: torch.dtype):
        h = _mm(w, x2, cd)
        h += b.to(cd)[:, None]
        ctx.save_for_backward(x2, w)
        return h

    @staticmethod
    def backward(ctx, gh):
        x2, w = ctx.saved_tensors
        gho = gh.to(x2.dtype)  # operands in the input dtype (bf16 tensor cores), fp32 accumulation
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm(w.t(), gho, gh.dtype).to(x2.dtype)
        if ctx.needs_input_grad[1]:
            gw = _mm(gho, x2.t(), gh.dtype).to(w.dtype)
        if ctx.needs_input_grad[2]:
            gb = gh.sum(1)
        return gx, gw, gb, None


def band_mix(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """H = W X + b [T, N] in the compute dtype for x_seq [T, *batch]; W [T, T], b [T]. IPSU/RPSU's
    learned mix, whose H goes to the PSU kernel (no spike to fuse): cuBLAS."""
    check_device("psn", x_seq)
    x2 = as_2d(x_seq)
    return BandMixFunction.apply(x2, weight.to(x2.dtype), bias, compute_dtype(x_seq))


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


def _conv_launch(x2, N, kernel: str):
    # a time tile per program (no recurrence here); its own tile shapes on the GPU (kernels.tiles)
    return launch_config(x2, N, kernel=kernel)


class SlidingPSNFunction(torch.autograd.Function):
    """S = Θ(Σ_i W_i X_{t−k+1+i} + b) with Triton forward/backward; saves X (the input) and H."""

    @staticmethod
    def forward(ctx, x, w, b, surrogate):
        x2 = as_2d(x)
        T, N = x2.shape
        cd = compute_dtype(x2)
        launch = _conv_launch(x2, N, "conv")
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
            wlaunch = _conv_launch(x2, N, "conv_wgrad")
            wgrid = _conv_grid(T, N, wlaunch)
            part = torch.empty((wgrid[0] * wgrid[1], K), dtype=h.dtype, device=h.device)
            _conv_weight_grad_kernel[wgrid](gh, x2, part, T, N, K, **wlaunch.meta(h))
            gw = part.sum(0).to(ctx.wdtype)
        if ctx.needs_input_grad[2]:
            gb = gh.sum().to(ctx.wdtype)
        return gx, gw, gb, None


def sliding_psn_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``sliding_psn``."""
    check_device("sliding_psn", x_seq)
    return SlidingPSNFunction.apply(x_seq, module.weight, module.bias, module.surrogate)
