"""LIF and PLIF: the serial charge-fire-reset baseline (spec §1.1, §1.3).

    charge (decay_input):   H_t = V_{t-1} + (X_t - (V_{t-1} - V_reset)) * k
    charge (not decay):     H_t = V_{t-1} - (V_{t-1} - V_reset) * k + X_t
    fire:                   S_t = Θ(H_t - V_th)          (Θ(0) = 1)
    hard reset:             V_t = S_t * V_reset + (1 - S_t) * H_t
    soft reset:             V_t = H_t - S_t * V_th       (V_reset taken as 0 in the charge)

with k = 1/τ (LIF) or k = sigmoid(w) (PLIF, one learnable scalar per layer). The reset makes V_t depend
on S_{t-1}, so every backend loops over T; the eager path is that loop in PyTorch ops.

Compiled backend: compiling the whole loop would unroll T steps into one graph (30 000 steps never
finish compiling). Instead `torch.compile` compiles one *chunk* of ``COMPILE_CHUNK`` steps (a fixed,
small graph, compiled once per batch shape and dtype) and a Python loop runs the chunks; the input is
zero-padded to a multiple of the chunk and the padded outputs, which lie after the end, are dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Neuron, check_choice, check_number, compile_fn, compute_dtype
from .registry import register
from .spec import Cost, NeuronSpec
from .surrogate import SURROGATES, Surrogate, heaviside, make_surrogate

#: time steps per compiled graph in the `compiled` backend
COMPILE_CHUNK = 16


@dataclass(frozen=True)
class LIFParams:
    v_threshold: float
    v_reset: float  # 0.0 when soft
    soft_reset: bool
    decay_input: bool
    detach_reset: bool
    surrogate: Surrogate


def lif_step(x_t: torch.Tensor, v: torch.Tensor, k, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: ``(S_t, V_t)`` from input ``x_t`` and membrane ``v`` (after the previous reset).

    ``k`` is 1/τ (a float) or σ(w) (a 0-dim tensor, PLIF)."""
    if p.decay_input:
        h = v + (x_t - (v - p.v_reset)) * k
    else:
        h = v - (v - p.v_reset) * k + x_t
    s = heaviside(h - p.v_threshold, p.surrogate)
    s_r = s.detach() if p.detach_reset else s
    if p.soft_reset:
        v = h - s_r * p.v_threshold
    else:
        v = s_r * p.v_reset + (1.0 - s_r) * h
    return s, v


def lif_loop(x_seq: torch.Tensor, v: torch.Tensor, k, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `lif_step` over the first axis of ``x_seq``; returns (spikes [T, *batch], final V)."""
    out = []
    for t in range(x_seq.shape[0]):
        s, v = lif_step(x_seq[t], v, k, p)
        out.append(s)
    return torch.stack(out), v


def _serial_cost(flops_fwd: float, flops_bwd: float) -> Cost:
    """Per element: forward reads X, writes S (2b); training also stores fp32 H in the forward and
    reads gS + H, writes gX in the backward (2b + 8 more) — SpikingJelly's fused-kernel layout."""
    return Cost(
        flops_forward=lambda T, N, b: flops_fwd * T * N,
        flops_backward=lambda T, N, b: flops_bwd * T * N,
        bytes_forward=lambda T, N, b: 2 * b * T * N,
        bytes_backward=lambda T, N, b: (2 * b + 8) * T * N,
    )


class _SerialLIFBase(Neuron):
    """Shared module code of LIF and PLIF; subclasses say how k (the charge factor) is made."""

    def _init_common(self, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, surrogate_alpha):
        name = self.spec.name
        check_number(name, "v_threshold", v_threshold)
        check_choice(name, "reset", reset, ("hard", "soft"))
        check_number(name, "v_reset", v_reset)
        check_choice(name, "decay_input", decay_input, (True, False))
        check_choice(name, "detach_reset", detach_reset, (True, False))
        check_choice(name, "surrogate", surrogate, SURROGATES)
        self.v_threshold = float(v_threshold)
        self.reset = reset
        self.v_reset = float(v_reset)
        self.decay_input = decay_input
        self.detach_reset = detach_reset
        self.surrogate = make_surrogate(surrogate, surrogate_alpha)

    def params(self) -> LIFParams:
        soft = self.reset == "soft"
        return LIFParams(self.v_threshold, 0.0 if soft else self.v_reset, soft, self.decay_input,
                         self.detach_reset, self.surrogate)

    def charge_factor(self, dtype: torch.dtype):  # pragma: no cover - abstract
        raise NotImplementedError

    def v_init(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full_like(like, 0.0 if self.reset == "soft" else self.v_reset)

    def forward_reference(self, x_seq: torch.Tensor) -> torch.Tensor:
        s, _ = lif_loop(x_seq, self.v_init(x_seq[0]), self.charge_factor(torch.float64), self.params())
        return s

    def forward_eager(self, x_seq: torch.Tensor) -> torch.Tensor:
        cd = compute_dtype(x_seq)
        x = x_seq.to(cd)
        s, _ = lif_loop(x, self.v_init(x[0]), self.charge_factor(cd), self.params())
        return s.to(x_seq.dtype)

    def forward_compiled(self, x_seq: torch.Tensor) -> torch.Tensor:
        if self._compiled_fn is None:
            self._compiled_fn = compile_fn(lif_loop)
        cd = compute_dtype(x_seq)
        T = x_seq.shape[0]
        pad = (-T) % COMPILE_CHUNK
        x = x_seq.to(cd)
        if pad:
            x = torch.cat([x, x.new_zeros((pad,) + tuple(x.shape[1:]))])
        v, k, p = self.v_init(x[0]), self.charge_factor(cd), self.params()
        chunks = []
        for c in range(0, T + pad, COMPILE_CHUNK):
            s, v = self._compiled_fn(x[c:c + COMPILE_CHUNK], v, k, p)
            chunks.append(s)
        return torch.cat(chunks)[:T].to(x_seq.dtype)

    def init_state(self, batch_shape, *, device=None, dtype=torch.float32):
        return torch.full(tuple(batch_shape), 0.0 if self.reset == "soft" else self.v_reset,
                          device=device, dtype=dtype)

    def step(self, x_t, state):
        s, v = lif_step(x_t.to(state.dtype), state, self.charge_factor(state.dtype), self.params())
        return s.to(x_t.dtype), v


_LIF_SOURCE = "SpikingJelly 2.0.0 LIFNode (spec §1.1)"


@register
class LIF(_SerialLIFBase):
    """Leaky integrate-and-fire with hard or soft reset; τ fixed. Serial baseline."""

    spec = NeuronSpec(
        name="lif", family="lif", causal=True, serial_inference=True, fixed_length=False,
        integer_spikes=False, cost=_serial_cost(8, 12), source=_LIF_SOURCE,
        summary="serial LIF (charge, fire, hard/soft reset), the baseline",
    )

    def __init__(self, *, backend="eager", tau=2.0, v_threshold=1.0, v_reset=0.0, reset="hard",
                 decay_input=True, detach_reset=False, surrogate="sigmoid", surrogate_alpha=None):
        super().__init__(backend=backend)
        self.tau = check_number("lif", "tau", tau, gt=1.0)
        self._init_common(v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, surrogate_alpha)

    def charge_factor(self, dtype):
        return 1.0 / self.tau

    def extra_repr(self):
        return f"tau={self.tau}, reset={self.reset!r}, " + super().extra_repr()


@register
class PLIF(_SerialLIFBase):
    """Parametric LIF: k = sigmoid(w), one learnable scalar w per layer, w0 = -ln(init_tau - 1)."""

    spec = NeuronSpec(
        name="plif", family="lif", causal=True, serial_inference=True, fixed_length=False,
        integer_spikes=False, cost=_serial_cost(8, 14), source="SpikingJelly 2.0.0 ParametricLIFNode (spec §1.3)",
        summary="serial LIF with a learnable time constant (one scalar per layer)",
    )

    def __init__(self, *, backend="eager", init_tau=2.0, v_threshold=1.0, v_reset=0.0, reset="hard",
                 decay_input=True, detach_reset=False, surrogate="sigmoid", surrogate_alpha=None):
        super().__init__(backend=backend)
        init_tau = check_number("plif", "init_tau", init_tau, gt=1.0)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self._init_common(v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, surrogate_alpha)

    def charge_factor(self, dtype):
        return torch.sigmoid(self.w.to(dtype))
