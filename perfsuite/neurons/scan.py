"""The gated linear recurrence ``H_t = a_t·H_{t−1} + b_t`` over time, in parallel and stable at any T.

Many parallel neurons reduce to this first-order recurrence with a decay ``0 < a_t ≤ 1`` per element:
DSN's membrane (spec §5.2, ``a = α_t``, ``b = (1 − α_t)·X_t``), the no-reset LIF (``a = 1 − 1/τ``),
SPSN's synaptic/membrane filters. This module solves it for ``[T, *batch]`` tensors without a Python
loop over T, and is the one place in perfsuite that does (PSU, SPSN and the Triton kernels may reuse it).

    >>> from perfsuite.neurons.scan import linear_scan
    >>> H = linear_scan(log_a, b)            # log_a, b: [T, *batch], log_a <= 0; H: [T, *batch]
    >>> H = linear_scan(log_a, b, h0=h0)     # h0: [*batch], the state before t = 1

Method (spec §5.2 "Numerics"; project's implementation [U]). The matrix form
``H_t = P_t Σ_i b_i / P_i`` with ``P_t = Π a_j`` divides by a product that underflows after a few hundred
steps, so it is never used. Instead, time is cut into chunks of ``chunk`` steps (default 32):

1. inside a chunk, with ``L_t`` the *within-chunk* cumulative sum of ``log a``,
   ``H_t = Σ_{i ≤ t} exp(L_t − L_i)·b_i`` — a causal-masked [C, C] product per chunk and element whose
   exponents are all ≤ 0, so nothing overflows and an underflow to 0 only drops a term that is truly
   negligible;
2. the chunk ends then obey the same recurrence one level up: the state leaving chunk j is
   ``G_j = exp(L_end,j)·G_{j−1} + H_end,j`` (decay = the chunk's total ``log a``, input = the chunk's
   zero-initialised end value), solved by calling the same function on the [T/C, *batch] chunk ends;
3. each step adds the carried-in state: ``H_t += exp(L_t)·G_{j−1}``.

Python recursion depth is ⌈log_C T⌉ (3 levels for T = 30 000 at C = 32), work O(T·C) per element. The
graph is therefore small and static for a given shape, so ``torch.compile`` traces it in bounded time.

Memory: step 1 briefly materialises a [T, C, *batch] tensor (C times the input) in the forward pass; it
is freed at once. For the backward, a custom autograd function keeps only ``log_a`` and ``H``
([T, *batch] each) and computes the gradients with one more scan run backwards in time:

    G_t = ∂ℓ/∂H_t + a_{t+1}·G_{t+1}        (the adjoint recurrence, the same scan on reversed time)
    ∂ℓ/∂b_t = G_t,    ∂ℓ/∂log a_t = G_t·a_t·H_{t−1}

Dtypes: fp16/bf16 inputs are accumulated and returned in fp32 (perfsuite's rule: fp32 state whatever
the input dtype); fp32 and fp64 stay as they are.

Precision note: ``L_t − L_i`` is a difference of within-chunk cumulative sums, so its absolute error is
about ``eps·|L|`` with ``|L| ≤ C·max|log a|``; smaller chunks are more exact when decays are extreme.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .base import compute_dtype

#: steps per chunk: 32 keeps the [T, C, *batch] forward transient modest; spec §5.2 suggests 32–128
DEFAULT_CHUNK = 32


def _scan_2d(log_a: torch.Tensor, b: torch.Tensor, chunk: int) -> torch.Tensor:
    """Zero-initialised scan of ``log_a``, ``b``: [T, M] -> H [T, M] (no autograd bookkeeping needed)."""
    T, M = b.shape
    C = min(chunk, T)
    n = -(-T // C)  # number of chunks
    pad = n * C - T
    if pad:  # log a = 0, b = 0 after the end: does not change any step before it
        log_a = torch.cat([log_a, log_a.new_zeros(pad, M)])
        b = torch.cat([b, b.new_zeros(pad, M)])
    L = log_a.reshape(n, C, M).cumsum(1)  # [n, C, M] within-chunk cumulative log a
    bb = b.reshape(n, C, M)
    # w[j, t, i] = exp(L_t − L_i) for i ≤ t, else 0; exponents are ≤ 0 where kept
    causal = torch.ones(C, C, dtype=torch.bool, device=b.device).tril_()
    w = (L[:, :, None, :] - L[:, None, :, :]).masked_fill_(~causal[None, :, :, None], float("-inf")).exp_()
    h = w.mul_(bb[:, None, :, :]).sum(2)  # [n, C, M], each chunk started from 0
    del w
    if n > 1:
        ends = _scan_2d(L[:, -1], h[:, -1], chunk)  # [n, M] true state at the end of each chunk
        carry_in = torch.cat([ends.new_zeros(1, M), ends[:-1]])  # state entering each chunk
        h = h + L.exp() * carry_in[:, None, :]
    return h.reshape(n * C, M)[:T]


class _LinearScan(torch.autograd.Function):
    """Zero-initialised scan on [T, M] with the adjoint-scan backward (saves only log_a and H)."""

    @staticmethod
    def forward(ctx, log_a, b, chunk: int):
        h = _scan_2d(log_a, b, chunk)
        ctx.save_for_backward(log_a, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h):
        log_a, h = ctx.saved_tensors
        # G_t = grad_h_t + a_{t+1} G_{t+1}: the forward scan on reversed time, decay shifted by one step
        log_a_next = torch.cat([log_a[1:], log_a.new_zeros(1, log_a.shape[1])])
        G = _scan_2d(log_a_next.flip(0), grad_h.flip(0), ctx.chunk).flip(0)
        h_prev = torch.cat([h.new_zeros(1, h.shape[1]), h[:-1]])
        return G * log_a.exp() * h_prev, G, None


def _check(log_a, b, h0, chunk) -> None:
    for name, t in (("log_a", log_a), ("b", b)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"linear_scan: {name} must be a floating-point tensor [T, *batch], got "
                             f"{getattr(t, 'dtype', type(t).__name__)}")
    if log_a.shape != b.shape or log_a.dim() < 1 or log_a.shape[0] < 1:
        raise ValueError(f"linear_scan: log_a {tuple(log_a.shape)} and b {tuple(b.shape)} must have the same "
                         "shape [T, *batch] with T >= 1")
    if log_a.dtype != b.dtype:
        raise ValueError(f"linear_scan: log_a ({log_a.dtype}) and b ({b.dtype}) must have the same dtype")
    if h0 is not None and (not isinstance(h0, torch.Tensor) or h0.shape != b.shape[1:]):
        raise ValueError(f"linear_scan: h0 must be a tensor of shape {tuple(b.shape[1:])} (= b.shape[1:]), "
                         f"got {tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 2:
        raise ValueError(f"linear_scan: chunk={chunk!r} is invalid; expected an int >= 2 "
                         "(chunks of 1 step would never shorten the sequence)")


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *,
                chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Solve ``H_t = exp(log_a_t)·H_{t−1} + b_t`` for t = 1..T along dim 0, ``H_0 = h0`` (default 0).

    Args:
        log_a: [T, *batch] log of the decay; must be finite and ≤ 0 (decays in (0, 1]) — not checked,
            because checking would force a device sync on every call.
        b: [T, *batch] input term, same shape and dtype as ``log_a``.
        h0: optional [*batch] initial state.
        chunk: steps per chunk (see the module docstring); any value gives the same result.

    Returns:
        H: [T, *batch] in fp32 for fp16/bf16 inputs, else in the input dtype. Differentiable with
        respect to ``log_a``, ``b`` and ``h0`` (first order).
    """
    _check(log_a, b, h0, chunk)
    cd = compute_dtype(b)
    shape = b.shape
    la = log_a.to(cd).reshape(shape[0], -1)
    bb = b.to(cd).reshape(shape[0], -1)
    if h0 is not None:  # H_1 = a_1·h0 + b_1: fold the initial state into the first input
        bb = torch.cat([bb[:1] + la[:1].exp() * h0.to(cd).reshape(1, -1), bb[1:]])
    if bb.shape[1] == 0:
        return bb.reshape(shape)
    return _LinearScan.apply(la, bb, chunk).reshape(shape)


def linear_scan_reference(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The meaning of `linear_scan`: a plain float64 loop over T (slow on purpose; the tests' oracle).

    [T, *batch] -> [T, *batch] float64, differentiable by autograd."""
    a = log_a.double().exp()
    b = b.double()
    h = b.new_zeros(b.shape[1:]) if h0 is None else h0.double()
    out = []
    for t in range(b.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)
