"""Triton backend of the PSU family (spec §4, R1–R6): the fixed geometric matrices as one fused O(T) pass.

Both fixed matrices of `perfsuite.neurons.psu` are geometric in the lag (A[t][j] = d^(t−j)/τ for j ≤ t,
K[t][j] = d^(t−j) for j < t; d = ``module.decay``: 1 − 1/τ, or 1/τ with ``braincog_compat``), so
multiplying by them is a first-order recurrence. Every member of the family is

    H_t = base_t − r_t,     r_t = d·(r_{t−1} + y_{t−1})  (r_0 = 0, i.e. r = K·y)

    PSU  (R4):          base = u, u_t = d·u_{t−1} + X_t/τ (= A·X),   y = V_th·σ(u)
    IPSU (R5) linear:   base = D = tril(W)·X + b,                   y = X
    IPSU (R5) prob:     base = D,                                   y = σ(D)
    RPSU (R6):          base = u,                                   y = σ(Z), Z = tril(W)·X + b

and fires S = Θ_strict(H − V_th) with the module's surrogate. `_psu_fwd_kernel` runs both recurrences
and the fire in one pass over T per block of neurons (states u, r, y in registers in the compute dtype,
next time tile's loads issued before the current tile's serial chain, as `kernels.lif`); it is
`perfsuite.neurons.psu.psu_step` per element, in the same order. The learned tril(W)·X + b of IPSU/RPSU
stays a GEMM (`kernels.psn.band_mix`: cuBLAS), whose output D / Z the kernel reads.

Backward (`_psu_bwd_kernel`), one reverse pass with the adjoints in registers (gH = dL/dS·g'(H − V_th)):

    R_t = −gH_t + d·R_{t+1}            (dL/dr_t)          Y_t = d·R_{t+1}   (dL/dy_t)
    U_t = gH_t + d·U_{t+1} [+ Y_t·V_th·σ'(u_t) for PSU]    dL/dX_t = U_t/τ   (when base = u)
    dL/dD_t = gH_t [+ Y_t·σ'(D_t)] (IPSU),  dL/dZ_t = Y_t·σ'(Z_t) (RPSU),  dL/dX_t = Y_t (IPSU linear)

Saved: H (compute dtype), plus u for PSU (σ'(u) cannot be recovered stably backwards: u_{t−1} =
(u_t − X_t/τ)/d amplifies rounding by 1/d per step); IPSU/RPSU read D / Z, already in memory. The
GEMM's own backward (torch autograd) takes dL/dD / dL/dZ to W, b and X.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from ..neurons.surrogate import Surrogate
from .common import (
    as_2d,
    check_device,
    launch_config,
    load_tile,
    program_columns,
    store_tile,
    surrogate_grad,
    surrogate_scalars,
    tile_at,
    tile_before,
    tile_row,
    tile_set,
)
from .psn import band_mix, record_matmul

#: GATE constexpr: what feeds the reset recurrence y
GATE_SIG_U, GATE_SIG_Z, GATE_X = 0, 1, 2


@triton.jit
def _sigmoid(v):
    return 1.0 / (1.0 + tl.exp(-v))


@triton.jit
def _params(p_ptr):
    """(d, τ, V_th, surrogate a, surrogate c): the parameter vector `PSUFunction.forward` builds
    (the forward kernel reads the first three; the surrogate's loads are dropped by the compiler)."""
    return tl.load(p_ptr + 0), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3), tl.load(p_ptr + 4)


@triton.jit(do_not_specialize=["T"])
def _psu_fwd_kernel(x_ptr, z_ptr, out_ptr, h_ptr, u_ptr, p_ptr, T, N,
                    INTEG: tl.constexpr, GATE: tl.constexpr, SPIKES: tl.constexpr,
                    STORE_H: tl.constexpr, STORE_U: tl.constexpr,
                    BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    d, tau, v_th, _, _ = _params(p_ptr)
    u = tl.zeros([BLOCK], CD)
    q = tl.zeros([BLOCK], CD)  # r_{t−1} + y_{t−1}: r_t = d·q

    off, m = tile_at(0, rows, cols, cmask, N, T)
    n_x = load_tile(x_ptr, off, m, INTEG or GATE == 2)
    n_z = load_tile(z_ptr, off, m, (not INTEG) or GATE == 1)
    for t0 in tl.range(0, T, BT):
        if INTEG or GATE == 2:
            c_x = n_x.to(CD)
        if (not INTEG) or GATE == 1:
            c_z = n_z.to(CD)
        # issue the next tile's loads before the serial chain of this one
        off, m = tile_at(t0 + BT, rows, cols, cmask, N, T)
        n_x = load_tile(x_ptr, off, m, INTEG or GATE == 2)
        n_z = load_tile(z_ptr, off, m, (not INTEG) or GATE == 1)
        o_tile = tl.zeros([BT, BLOCK], CD)
        h_tile = tl.zeros([BT, BLOCK], CD)
        u_tile = tl.zeros([BT, BLOCK], CD)
        for i in tl.static_range(BT):
            if INTEG:
                u = d * u + tile_row(c_x, rows, i) / tau
                base = u
            else:
                base = tile_row(c_z, rows, i)
            r = d * q
            h = base - r
            if GATE == 0:
                y = v_th * _sigmoid(u)
            elif GATE == 1:
                y = _sigmoid(tile_row(c_z, rows, i))
            else:
                y = tile_row(c_x, rows, i)
            q = r + y
            if SPIKES:
                o_tile = tile_set(o_tile, rows, i, tl.where(h - v_th > 0, 1.0, 0.0).to(CD))
            else:
                o_tile = tile_set(o_tile, rows, i, h)
            if STORE_H:
                h_tile = tile_set(h_tile, rows, i, h)
            if STORE_U:
                u_tile = tile_set(u_tile, rows, i, u)
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(out_ptr, off, m, o_tile, True)
        store_tile(h_ptr, off, m, h_tile, STORE_H)
        store_tile(u_ptr, off, m, u_tile, STORE_U)


@triton.jit(do_not_specialize=["T", "N"])  # N: scalar loads, see kernels.tiles.Tile
def _psu_bwd_kernel(go_ptr, h_ptr, u_ptr, z_ptr, gx_ptr, gz_ptr, p_ptr, T, N,
                    INTEG: tl.constexpr, GATE: tl.constexpr, SPIKES: tl.constexpr, SG: tl.constexpr,
                    NEED_GX: tl.constexpr, NEED_GZ: tl.constexpr,
                    BLOCK: tl.constexpr, BT: tl.constexpr, CD: tl.constexpr):
    pid, cols, cmask = program_columns(N, BLOCK)
    rows = tl.arange(0, BT)
    d, tau, v_th, sg_a, sg_c = _params(p_ptr)
    r_next = tl.zeros([BLOCK], CD)  # dL/dr_{t+1}
    u_next = tl.zeros([BLOCK], CD)  # dL/du_{t+1}

    n_tiles = tl.cdiv(T, BT)
    off, m = tile_at((n_tiles - 1) * BT, rows, cols, cmask, N, T)
    n_go = tl.load(go_ptr + off, mask=m, other=0.0)
    n_h = load_tile(h_ptr, off, m, SPIKES)
    n_u = load_tile(u_ptr, off, m, INTEG and GATE == 0)
    n_z = load_tile(z_ptr, off, m, GATE == 1)
    for c in tl.range(0, n_tiles):
        t0 = (n_tiles - 1 - c) * BT
        c_go = n_go.to(CD)
        if SPIKES:
            c_h = n_h.to(CD)
        if INTEG and GATE == 0:
            c_u = n_u.to(CD)
        if GATE == 1:
            c_z = n_z.to(CD)
        # prefetch the tile before this one (earlier in time); none before t = 0
        off, m = tile_before(t0 - BT, rows, cols, cmask, N)
        n_go = tl.load(go_ptr + off, mask=m, other=0.0)
        n_h = load_tile(h_ptr, off, m, SPIKES)
        n_u = load_tile(u_ptr, off, m, INTEG and GATE == 0)
        n_z = load_tile(z_ptr, off, m, GATE == 1)
        gx_tile = tl.zeros([BT, BLOCK], CD)
        gz_tile = tl.zeros([BT, BLOCK], CD)
        for jj in tl.static_range(BT):
            i = BT - 1 - jj
            # rows past T were loaded as 0: gH = 0 there, so every adjoint stays 0 until t = T − 1
            if SPIKES:
                gh = tile_row(c_go, rows, i) * surrogate_grad(tile_row(c_h, rows, i) - v_th, sg_a, sg_c, SG)
            else:
                gh = tile_row(c_go, rows, i)
            gy = d * r_next
            r_next = d * r_next - gh
            if GATE == 1:
                sz = _sigmoid(tile_row(c_z, rows, i))
                gz_gate = gy * sz * (1.0 - sz)
            if INTEG:
                gu = gh + d * u_next
                if GATE == 0:
                    su = _sigmoid(tile_row(c_u, rows, i))
                    gu += gy * v_th * su * (1.0 - su)
                u_next = gu
                gx_tile = tile_set(gx_tile, rows, i, gu / tau)
                if GATE == 1:
                    gz_tile = tile_set(gz_tile, rows, i, gz_gate)
            else:
                if GATE == 1:
                    gz_tile = tile_set(gz_tile, rows, i, gh + gz_gate)
                else:
                    gz_tile = tile_set(gz_tile, rows, i, gh)
                    gx_tile = tile_set(gx_tile, rows, i, gy)
        off, m = tile_at(t0, rows, cols, cmask, N, T)
        store_tile(gx_ptr, off, m, gx_tile, NEED_GX)
        store_tile(gz_ptr, off, m, gz_tile, NEED_GZ)


@dataclass(frozen=True)
class _Cfg:
    integ: bool                  # base = u = A·X (PSU, RPSU), else base = D (IPSU)
    gate: int                    # GATE_SIG_U, GATE_SIG_Z or GATE_X
    d: float
    tau: float
    v_threshold: float
    surrogate: Surrogate
    spikes: bool                 # False: return H (compute dtype) instead of S
    block_n: int | None
    bt: int | None

    @property
    def uses_x(self) -> bool:
        return self.integ or self.gate == GATE_X

    @property
    def uses_z(self) -> bool:
        return (not self.integ) or self.gate == GATE_SIG_Z


class PSUFunction(torch.autograd.Function):
    """One member of the PSU family on x [T, N] (input dtype) and z [T, N] (GEMM output, compute dtype;
    None for PSU): S in x's dtype (or H in the compute dtype), fused forward and backward above."""

    @staticmethod
    def forward(ctx, x2, z2, cfg: _Cfg):
        T, N = x2.shape
        cd = compute_dtype(x2)
        launch = launch_config(x2, N, cfg.block_n, cfg.bt, "psu_fwd")
        sg_id, p = surrogate_scalars([cfg.d, cfg.tau, cfg.v_threshold], cfg.surrogate, x2)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        out = torch.empty((T, N), dtype=x2.dtype if cfg.spikes else cd, device=x2.device)
        store_h = need_grad and cfg.spikes
        store_u = need_grad and cfg.gate == GATE_SIG_U
        h = torch.empty((T, N), dtype=cd, device=x2.device) if store_h else out
        u = torch.empty((T, N), dtype=cd, device=x2.device) if store_u else out
        _psu_fwd_kernel[launch.grid(N)](
            x2, z2 if z2 is not None else x2, out, h, u, p, T, N, INTEG=cfg.integ, GATE=cfg.gate,
            SPIKES=cfg.spikes, STORE_H=store_h, STORE_U=store_u, **launch.meta(x2))
        if need_grad:
            ctx.save_for_backward(h, u, z2 if cfg.gate == GATE_SIG_Z else None, p)
            ctx.cfg, ctx.sg_id, ctx.xdtype = cfg, sg_id, x2.dtype
            ctx.launch = launch_config(x2, N, cfg.block_n, cfg.bt, "psu_bwd")
        return out

    @staticmethod
    def backward(ctx, grad_out):
        h, u, z2, p = ctx.saved_tensors
        cfg, launch = ctx.cfg, ctx.launch
        T, N = grad_out.shape
        need_gx = ctx.needs_input_grad[0] and cfg.uses_x
        need_gz = ctx.needs_input_grad[1] and cfg.uses_z
        go = grad_out.contiguous()
        gx = torch.empty((T, N), dtype=ctx.xdtype, device=go.device) if need_gx else go
        gz = torch.empty((T, N), dtype=h.dtype, device=go.device) if need_gz else go
        _psu_bwd_kernel[launch.grid(N)](
            go, h, u, z2 if z2 is not None else go, gx, gz, p, T, N, INTEG=cfg.integ, GATE=cfg.gate,
            SPIKES=cfg.spikes, SG=ctx.sg_id, NEED_GX=need_gx, NEED_GZ=need_gz, **launch.meta(h))
        return (gx if need_gx else None), (gz if need_gz else None), None


def _cfg(module, *, spikes: bool, block_n=None, bt=None) -> _Cfg:
    name = module.spec.name
    if name == "psu":
        integ, gate = True, GATE_SIG_U
    elif name == "rpsu":
        integ, gate = True, GATE_SIG_Z
    else:  # ipsu
        integ, gate = False, GATE_X if module.variant == "linear" else GATE_SIG_Z
    return _Cfg(integ, gate, float(module.decay), float(module.tau), float(module.v_threshold),
                module.surrogate, spikes, block_n, bt)


def psu_family(module, x_seq: torch.Tensor, *, spikes: bool = True, block_n: int | None = None,
               bt: int | None = None) -> torch.Tensor:
    """Spikes [T, *batch] in x_seq's dtype of a PSU/IPSU/RPSU ``module`` on x_seq [T, *batch] (or, with
    ``spikes=False``, its potential H in the compute dtype). Differentiable in x and the module's
    weight/bias. ``block_n``/``bt`` override the launch shape (tests, tuning)."""
    check_device(module.spec.name, x_seq)
    cfg = _cfg(module, spikes=spikes, block_n=block_n, bt=bt)
    x2 = as_2d(x_seq)
    if cfg.uses_z:
        record_matmul(module, x_seq)
    z2 = band_mix(x_seq, torch.tril(module.weight), module.bias) if cfg.uses_z else None  # R3 mask each call
    out = PSUFunction.apply(x2, z2, cfg)
    return out.view(x_seq.shape)


def psu_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry of ``psu``, ``ipsu`` (both variants) and ``rpsu``."""
    return psu_family(module, x_seq)


ipsu_backend = rpsu_backend = psu_backend
