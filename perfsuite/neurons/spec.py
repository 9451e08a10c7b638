"""What a neuron declares about itself: structure (causal, serial, T-bound, integer spikes) and its
analytic cost, so that reports can compute roofline fractions without running anything.

Costs are *per layer call* for ``seq_len`` steps of ``neurons`` neurons (N = every non-time element
of the input). FLOPs count multiply and add separately (a GEMM of [T,T]x[T,N] is 2·T²·N). Bytes are the
*minimum* traffic to and from device memory of a fused implementation: read the input, write the
spikes, store what the backward needs, read/write parameters once. They are floors, not predictions of
what eager PyTorch moves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

#: bytes per element of a dtype given as a torch dtype or the scenario names fp32/bf16/fp16/fp64
_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}


def dtype_bytes(dtype: torch.dtype | str) -> int:
    if isinstance(dtype, str):
        if dtype not in _DTYPE_BYTES:
            raise ValueError(f"dtype={dtype!r} is not known; expected one of {list(_DTYPE_BYTES)}")
        return _DTYPE_BYTES[dtype]
    return torch.empty((), dtype=dtype).element_size()


CostFn = Callable[[int, int, int], float]
"""(seq_len T, neurons N, bytes per element b) -> FLOPs or bytes."""


@dataclass(frozen=True)
class Cost:
    """Analytic cost of one layer call: FLOPs and minimum bytes, forward and backward."""

    flops_forward: CostFn
    flops_backward: CostFn
    bytes_forward: CostFn
    bytes_backward: CostFn


@dataclass(frozen=True)
class NeuronSpec:
    """Structural facts and analytic cost of a neuron (spec §7)."""

    name: str
    family: str
    causal: bool
    serial_inference: bool
    fixed_length: bool
    integer_spikes: bool
    cost: Cost
    source: str
    summary: str
    #: does the neuron need a channel (feature) dimension as the last input dim
    needs_features: bool = False
    #: the parameter names that the caller may pass to build(), with their defaults
    params: dict = field(default_factory=dict)

    def flops(self, seq_len: int, neurons: int, dtype: torch.dtype | str = "fp32", train: bool = False) -> float:
        b = dtype_bytes(dtype)
        f = self.cost.flops_forward(seq_len, neurons, b)
        return f + self.cost.flops_backward(seq_len, neurons, b) if train else f

    def min_bytes(self, seq_len: int, neurons: int, dtype: torch.dtype | str = "fp32", train: bool = False) -> float:
        b = dtype_bytes(dtype)
        m = self.cost.bytes_forward(seq_len, neurons, b)
        return m + self.cost.bytes_backward(seq_len, neurons, b) if train else m

    def as_dict(self) -> dict:
        """JSON-friendly view (costs left out: they are functions)."""
        return {
            "name": self.name,
            "family": self.family,
            "causal": self.causal,
            "serial_inference": self.serial_inference,
            "fixed_length": self.fixed_length,
            "integer_spikes": self.integer_spikes,
            "needs_features": self.needs_features,
            "source": self.source,
            "summary": self.summary,
            "params": dict(self.params),
        }
