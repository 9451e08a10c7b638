"""Spike functions: hard step forward, surrogate derivative backward (spec §0).

Every neuron fires through one of these functions, so a surrogate is selected by name
(`surrogate="atan"`, `"sigmoid"`, `"rect"`) and behaves identically in every backend.

* ``heaviside(x, surrogate)``: S = Θ(x) with Θ(0) = 1 (SpikingJelly), or Θ_strict(x) = 1[x > 0]
  (BrainCog, used by the PSU family) when ``strict=True``.
* ``multi_level(x, levels)``: integer spikes round(clamp(x, 0, levels)) (half-to-even), backward
  rectangular straight-through on [0, levels] (spec §0, DSN Eq. 10).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: default α per surrogate (SpikingJelly: ATan α=2, Sigmoid α=4)
DEFAULT_ALPHA = {"atan": 2.0, "sigmoid": 4.0, "rect": 1.0}
SURROGATES = tuple(DEFAULT_ALPHA)


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative g'(x) used in the backward pass of a hard step."""

    name: str = "atan"
    alpha: float = 2.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """g'(x), elementwise, in the dtype of ``x``."""
        if self.name == "atan":
            return self.alpha / (2.0 * (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2))
        if self.name == "sigmoid":
            sg = torch.sigmoid(self.alpha * x)
            return self.alpha * sg * (1.0 - sg)
        # rect: box of width 1/alpha around 0, height alpha (integral 1)
        return (x.abs() <= 0.5 / self.alpha).to(x.dtype) * self.alpha


def make_surrogate(name: str = "atan", alpha: float | None = None) -> Surrogate:
    """Validate a surrogate name/α and return the `Surrogate`."""
    if name not in DEFAULT_ALPHA:
        raise ValueError(f"surrogate={name!r} is not known; expected one of {list(SURROGATES)}")
    a = DEFAULT_ALPHA[name] if alpha is None else float(alpha)
    if not a > 0:
        raise ValueError(f"surrogate_alpha={alpha!r} must be > 0")
    return Surrogate(name, a)


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate: Surrogate, strict: bool):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_s):
        (x,) = ctx.saved_tensors
        return grad_s * ctx.surrogate.grad(x), None, None


def heaviside(x: torch.Tensor, surrogate: Surrogate, strict: bool = False) -> torch.Tensor:
    """Spikes Θ(x) (Θ(0)=1, or strict Θ(0)=0) with the surrogate gradient ``surrogate.grad(x)``."""
    return _Heaviside.apply(x, surrogate, strict)


class _MultiLevel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, levels: int):
        ctx.save_for_backward(x)
        ctx.levels = levels
        return torch.round(torch.clamp(x, 0, levels))

    @staticmethod
    def backward(ctx, grad_s):
        (x,) = ctx.saved_tensors
        inside = (x >= 0) & (x <= ctx.levels)
        return grad_s * inside.to(grad_s.dtype), None


def multi_level(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer spike counts round(clamp(x, 0, levels)) with a rectangular straight-through gradient."""
    return _MultiLevel.apply(x, levels)
