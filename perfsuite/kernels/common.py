"""Pieces every perfsuite Triton kernel shares: the [T, N] view of an input, the compute dtype, the
surrogate derivatives as device functions, and the launch checks.

Layout: a neuron input ``x_seq`` [T, *batch] is seen as a contiguous [T, N] matrix (N = every non-time
element), neurons innermost, so one time step of a layer is one coalesced row. Every kernel keeps its
state and accumulates in the *compute dtype*: fp32 for fp32/bf16/fp16 inputs and fp64 for fp64 inputs
(`perfsuite.neurons.base.compute_dtype`), so the fp64 path equals the float64 reference to rounding and
the gradient tests can be tight.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..neurons.base import compute_dtype
from ..neurons.surrogate import Surrogate
from .tiles import stream_tile

#: Triton kernels run on CUDA tensors, or on CPU tensors under the Triton interpreter (tests)
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

#: surrogate name -> the constexpr id the kernels branch on
SURROGATE_ID = {"atan": 0, "sigmoid": 1, "rect": 2}

_TL_DTYPE = {torch.float32: tl.float32, torch.float64: tl.float64}


def usable() -> str | None:
    """None when kernels can run here, else why not (no CUDA device and no interpreter)."""
    if INTERPRET or torch.cuda.is_available():
        return None
    return "no CUDA device and TRITON_INTERPRET is not set (Triton kernels need one of them)"


def check_device(name: str, *tensors: torch.Tensor) -> None:
    """Raise a clear error when a tensor lives where Triton cannot run on it."""
    for t in tensors:
        if t.device.type in ("cuda", "meta") and not INTERPRET:  # meta: shapes only (kernels_static)
            continue
        if t.device.type == "cpu" and INTERPRET:
            continue
        raise ValueError(
            f"{name} (triton backend): got a tensor on {t.device}; expected a CUDA tensor"
            + (" (TRITON_INTERPRET=1 runs kernels on CPU tensors only)" if INTERPRET else
               " (or set TRITON_INTERPRET=1 before importing perfsuite.kernels to run on CPU)")
        )


def as_2d(x: torch.Tensor) -> torch.Tensor:
    """[T, *batch] -> contiguous [T, N] (a view when ``x`` is already contiguous)."""
    return x.reshape(x.shape[0], -1).contiguous()


def tl_compute_dtype(x: torch.Tensor):
    """Triton dtype of the state/accumulators for input ``x`` (fp32, or fp64 for fp64 inputs)."""
    return _TL_DTYPE[compute_dtype(x)]


@dataclass(frozen=True)
class Launch:
    """How a [T, N] neuron kernel is cut: ``block`` neurons per program, ``bt`` time steps per
    register tile (loaded one tile ahead of the recurrence), ``num_warps`` per program."""

    block: int
    bt: int
    num_warps: int

    def grid(self, n: int) -> tuple[int]:
        """One program per block of ``n`` neurons."""
        return (triton.cdiv(n, self.block),)

    def meta(self, like: torch.Tensor) -> dict:
        """The launch keywords every [T, N] kernel takes: BLOCK, BT, CD (the compute dtype of
        ``like``) and num_warps."""
        return {"BLOCK": self.block, "BT": self.bt, "CD": tl_compute_dtype(like), "num_warps": self.num_warps}


def _pow2(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1 or value & (value - 1):
        raise ValueError(f"{name}={value!r} is invalid; expected a power of two >= 1")
    return value


def device_name(x: torch.Tensor) -> str | None:
    """The CUDA device's name for the tuned-tile table (None off CUDA or when it cannot be read)."""
    try:
        return torch.cuda.get_device_name(x.device)
    except (RuntimeError, AssertionError, ValueError):
        return None


_DTYPE_NAME = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}


def dtype_name(x: torch.Tensor) -> str:
    return _DTYPE_NAME.get(x.dtype, str(x.dtype))


def launch_config(x: torch.Tensor, n: int, block_n: int | None = None, bt: int | None = None,
                  kernel: str = "lif_fwd") -> Launch:
    """Launch shape of streaming ``kernel`` (a `kernels.tiles.STREAM_DEFAULTS` key) for input ``x`` with
    ``n`` neurons; ``block_n``/``bt`` override (tests, tuning).

    GPU: the kernel's statically checked `kernels.tiles.Tile` (or the tuned winner for this GPU): each
    thread holds one 16-byte vector of neurons and the tile's BT time steps of them, so the time axis
    stays in registers and the next tile's loads (BT steps × the whole layer) are in flight while the
    current tile runs the recurrence — the serial chain would otherwise wait one DRAM round trip per
    step (kernel_anchors §4.4). Interpreter (CPU tests): one wide program, short tiles, so T not a
    multiple of BT is exercised."""
    if x.device.type == "cpu":
        block = _pow2("block_n", block_n) if block_n is not None else min(1024, triton.next_power_of_2(max(n, 1)))
        return Launch(block, _pow2("bt", bt) if bt is not None else 4, 1)
    size = x.element_size()
    tile = stream_tile(kernel, size, dtype_name(x), device_name(x))
    block = _pow2("block_n", block_n) if block_n is not None else tile.block(size)
    return Launch(block, _pow2("bt", bt) if bt is not None else tile.bt,
                  max(1, min(tile.num_warps, block // (32 * tile.vec(size)))))


@triton.jit
def program_columns(N, BLOCK: tl.constexpr):
    """(program id, its [BLOCK] neuron columns, mask of the columns < N) of a [T, N] kernel."""
    pid = tl.program_id(0).to(tl.int64)
    cols = pid * BLOCK + tl.arange(0, BLOCK)
    return pid, cols, cols < N


@triton.jit
def _tile_offsets(t0, rows, cols, N):
    t = t0 + rows
    return t, t.to(tl.int64)[:, None] * N + cols[None, :]


@triton.jit
def tile_at(t0, rows, cols, cmask, N, T):
    """(offsets, mask) of the [BT, BLOCK] tile of time steps t0 + rows and columns ``cols`` of a
    contiguous [T, N] matrix, for tiles at t0 ≥ 0: steps ≥ T and columns ≥ N are masked (loads read 0).

    Three variants, so that each site checks only the bound it can cross (no extra compares in the
    compiled kernels): `tile_at` (forward walk, stores, the last tile of a reverse walk),
    `tile_before` (a reverse walk's prefetch at t0 − BT), `tile_in` (shifted reads that can cross both)."""
    t, off = _tile_offsets(t0, rows, cols, N)
    return off, (t < T)[:, None] & cmask[None, :]


@triton.jit
def tile_before(t0, rows, cols, cmask, N):
    """(offsets, mask) as `tile_at` for a tile that ends before T (a reverse-time walk prefetching the
    tile at t0 − BT): steps < 0 (before the first tile) and columns ≥ N are masked."""
    t, off = _tile_offsets(t0, rows, cols, N)
    return off, (t >= 0)[:, None] & cmask[None, :]


@triton.jit
def tile_in(t0, rows, cols, cmask, N, T):
    """(offsets, mask) as `tile_at` for a tile that may reach outside 0 ≤ t < T on either side."""
    t, off = _tile_offsets(t0, rows, cols, N)
    return off, ((t >= 0) & (t < T))[:, None] & cmask[None, :]


@triton.jit
def load_tile(ptr, off, m, USE: tl.constexpr):
    """The tile of ``ptr`` at (off, m) from `tile_at`/`tile_before` (masked elements read 0) when
    ``USE``; otherwise no load is issued and the mask stands in for the tile, so a kernel variant that
    does not stream ``ptr`` keeps one line per prefetch (the stand-in must never be read)."""
    if USE:
        v = tl.load(ptr + off, mask=m, other=0.0)
    else:
        v = m
    return v


@triton.jit
def load_at(ptr, t0, rows, cols, cmask, N, T):
    """The tile of ``ptr`` at time steps t0 + rows (`tile_at`; masked elements read 0): a forward walk's
    first load and its prefetch of the next tile, where one input is streamed."""
    off, m = tile_at(t0, rows, cols, cmask, N, T)
    return tl.load(ptr + off, mask=m, other=0.0)


@triton.jit
def store_tile(ptr, off, m, tile, USE: tl.constexpr):
    """Store ``tile`` at (off, m) from `tile_at`, cast to ``ptr``'s element type, when ``USE``; the
    counterpart of `load_tile` for the scan kernels' optional outputs (h, u, gradients)."""
    if USE:
        tl.store(ptr + off, tile.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def tile_row(tile, rows, i: tl.constexpr):
    """Row ``i`` (a compile-time index) of a [BT, BLOCK] register tile, as a [BLOCK] vector.

    Triton cannot index registers dynamically; with ``i`` constant and the BT axis held per thread
    the compare-select-sum folds to a register move when compiled. Under the interpreter it is
    numpy work over the tile (exact: every other row contributes a zero)."""
    return tl.sum(tl.where(rows[:, None] == i, tile, 0.0), axis=0)


@triton.jit
def tile_set(tile, rows, i: tl.constexpr, value):
    """``tile`` with row ``i`` replaced by the [BLOCK] vector ``value`` (see `tile_row`)."""
    return tl.where(rows[:, None] == i, value[None, :], tile)


@triton.jit
def tile_row_lag(cur, prev, rows, i: tl.constexpr, lag: tl.constexpr, BT: tl.constexpr):
    """Row i − lag of the time axis, counted from the current tile ``cur`` (i ≥ lag) or reaching
    back into the previous tile ``prev`` (lag ≤ BT): x_{t0+i−lag}, or H_{t−1} at lag 1."""
    if i >= lag:
        v = tile_row(cur, rows, i - lag)
    else:
        v = tile_row(prev, rows, BT + i - lag)
    return v


def surrogate_args(s: Surrogate) -> tuple[int, float, float]:
    """(constexpr id, a, c) of a `perfsuite.neurons.surrogate.Surrogate` for `surrogate_grad`.

    The constants are folded here in Python floats, exactly as `Surrogate.grad` folds them, and then
    travel to the kernel in the compute dtype: Triton would round float literals to fp32, which would
    cost the fp64 path its agreement with the reference."""
    a = float(s.alpha)
    c = {"atan": math.pi / 2.0 * a, "sigmoid": a, "rect": 0.5 / a}[s.name]
    return SURROGATE_ID[s.name], a, c


def scalars(values, like: torch.Tensor) -> torch.Tensor:
    """Scalar parameters as a 1-D tensor in the compute dtype of ``like`` on its device (see
    `surrogate_args` for why they are not passed as kernel float arguments)."""
    return torch.tensor([float(v) for v in values], dtype=compute_dtype(like), device=like.device)


def surrogate_scalars(values, surrogate: Surrogate | None, like: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(constexpr id, parameter vector) of a kernel with a surrogate backward: ``values`` followed by
    the surrogate's (a, c) from `surrogate_args`, as `scalars` of ``like``. ``surrogate`` None (a
    kernel variant that never calls `surrogate_grad`): id 0 and (a, c) = (0, 0) keep the layout."""
    sg_id, a, c = surrogate_args(surrogate) if surrogate is not None else (0, 0.0, 0.0)
    return sg_id, scalars([*values, a, c], like)


@triton.jit
def surrogate_grad(x, a, c, KIND: tl.constexpr):
    """g'(x) of `perfsuite.neurons.surrogate.Surrogate.grad`, in the dtype of ``x``; ``a``, ``c``
    from `surrogate_args`.

    KIND 0 = atan a/(2(1+(c·x)²)), c = π/2·α; 1 = sigmoid a·σ(cx)(1−σ(cx)), c = α;
    2 = rect a·1[|x| ≤ c], c = 1/(2α)."""
    if KIND == 0:
        u = c * x
        g = a / (2.0 * (1.0 + u * u))
    elif KIND == 1:
        sg = 1.0 / (1.0 + tl.exp(-(c * x)))
        g = a * sg * (1.0 - sg)
    else:
        g = tl.where(tl.abs(x) <= c, a, 0.0 * a)
    return g


# ------------------------------------------------------------------- fire epilogue (elementwise)
@triton.jit
def _fire_bwd_kernel(gs_ptr, h_ptr, gh_ptr, p_ptr, n, SG: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    z = tl.load(h_ptr + offs, mask=m, other=0.0) - tl.load(p_ptr + 0)
    g = surrogate_grad(z, tl.load(p_ptr + 1), tl.load(p_ptr + 2), SG)
    gs = tl.load(gs_ptr + offs, mask=m, other=0.0).to(z.dtype)
    tl.store(gh_ptr + offs, (gs * g).to(gh_ptr.dtype.element_ty), mask=m)


def _elementwise_block(n: int, device) -> int:
    return min(1 << 16, triton.next_power_of_2(max(n, 1))) if device.type == "cpu" else 1024


def fire_backward(grad_s: torch.Tensor, h: torch.Tensor, threshold: float, surrogate: Surrogate) -> torch.Tensor:
    """dL/dH = dL/dS · g'(H − threshold), in the dtype of ``h`` (the compute dtype)."""
    gs = grad_s.contiguous()
    gh = torch.empty_like(h)
    n = h.numel()
    block = _elementwise_block(n, h.device)
    sg_id, p = surrogate_scalars([threshold], surrogate, h)
    _fire_bwd_kernel[(triton.cdiv(n, block),)](gs, h, gh, p, n, SG=sg_id, BLOCK=block)
    return gh
