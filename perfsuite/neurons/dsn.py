"""DSN, the dynamic-decay spiking neuron (Huang et al., arXiv 2602.01133; spec §5).

No reset: an input-dependent decay from a causal depthwise convolution replaces it. Per channel c of the
last input dim (C = ``features`` channels), for t = 1..T:

    (Eq. 11)  α'_t = Σ_{j<k} w[c, j]·X_{t−k+1+j} + bias[c]     causal depthwise conv, left zero pad k−1,
                                                               w[:, k−1] on the current input
    (Eq. 12)  α_t  = sigmoid(α'_t)^(1/τ)          computed as log α_t = −softplus(−α'_t)/τ
    (Eq. 9)   H_t  = α_t·H_{t−1} + (1 − α_t)·X_t,  H_0 = 0
    (Eq. 10)  S_t  = round(clamp(H_t, 0, levels))   integer spikes, half-to-even, rect STE on [0, levels]

``spikes="binary"`` is Eq. 10 with levels = 1, i.e. S_t = 1[H_t > 0.5] (spec §5.3); it may use the rect
STE of Eq. 10 or an ATan/Sigmoid surrogate centred at 0.5. Since H_t is a convex combination of 0 and
past inputs, ``min(0, min X) ≤ H_t ≤ max(0, max X)`` (spec §5.2).

Backends: ``reference`` is the plain float64 loop of Eq. 11, 12, 9 (σ^{1/τ}, no log space);
``eager`` is `torch.nn.functional.conv1d` + the chunked log-space scan of `perfsuite.neurons.scan`
(stable at T = 30 000 in fp32); ``compiled`` is ``torch.compile`` of eager: the scan has no loop over T
(a recursion of depth ⌈log_32 T⌉ over static shapes), so the graph stays small at any T. Serial
inference keeps H_{t−1} and the last k−1 inputs per channel.

Parameters: ``weight`` [C, k] and ``bias`` [C], both initialised as PyTorch's
``Conv1d(C, C, k, groups=C)`` default, U(−1/√k, 1/√k) (spec §5.3 recommendation [U]). τ = 0.25 is the
value of a secondary source, not verified against the paper (spec §5.3).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .base import Neuron, check_choice, check_int, check_number, check_param, compute_dtype
from .registry import register
from .scan import linear_scan
from .spec import Cost, NeuronSpec
from .surrogate import heaviside, make_surrogate, multi_level

#: default number of integer spike levels N (spec §5.2, Eq. 10: N = 4)
DEFAULT_LEVELS = 4


# ------------------------------------------------------------------ the math, as functions
def decay_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Eq. 11: causal depthwise conv over time. x [T, *batch, C], weight [C, k], bias [C] -> α' [T, *batch, C]."""
    T, C, k = x.shape[0], x.shape[-1], weight.shape[1]
    xs = x.reshape(T, -1, C).permute(1, 2, 0)  # [M, C, T]: conv1d wants time last
    out = F.conv1d(F.pad(xs, (k - 1, 0)), weight[:, None, :].to(x.dtype), bias.to(x.dtype), groups=C)
    return out.permute(2, 0, 1).reshape(x.shape)


def log_decay(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 12 in log space: log α = log σ(α')/τ = −softplus(−α')/τ (finite for any finite α')."""
    return -F.softplus(-logits) / tau


def dsn_membrane(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 11, 12, 9 in parallel: x [T, *batch, C] -> H [T, *batch, C], fp32 for half inputs."""
    x = x.to(compute_dtype(x))
    log_a = log_decay(decay_logits(x, weight, bias), tau)
    # 1 − α = −expm1(log α): exact when α is close to 1 (large τ), where 1 − exp(·) would cancel
    return linear_scan(log_a, -torch.expm1(log_a) * x)


def dsn_membrane_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float) -> torch.Tensor:
    """The defining float64 loop of Eq. 11, 12, 9 (slow on purpose). x [T, *batch, C] -> H float64."""
    x, w, b = x.double(), weight.double(), bias.double()
    k = w.shape[1]
    h = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        logit = b.clone()
        for j in range(k):
            src = t - (k - 1) + j  # w[:, k-1] multiplies the current input; earlier than t=0 is zero pad
            if src >= 0:
                logit = logit + w[:, j] * x[src]
        alpha = torch.sigmoid(logit) ** (1.0 / tau)
        h = alpha * h + (1.0 - alpha) * x[t]
        out.append(h)
    return torch.stack(out)


def integer_to_binary(spikes: torch.Tensor, levels: int) -> torch.Tensor:
    """Emit integer spikes as ``levels`` binary sub-steps: [T, *batch] -> [T, levels, *batch].

    s_{t,n} = 1[n ≤ S_t] for n = 1..levels, so Σ_n s_{t,n} = S_t and downstream synapses only accumulate
    (spec §5.2). Which sub-steps fire is not specified by the sources: this choice is the project's [U].
    """
    check_int("integer_to_binary", "levels", levels)
    if not isinstance(spikes, torch.Tensor) or spikes.dim() < 1:
        raise ValueError("integer_to_binary: spikes must be a tensor [T, *batch]")
    bad = (spikes != spikes.round()) | (spikes < 0) | (spikes > levels)
    if bool(bad.any()):
        raise ValueError(f"integer_to_binary: spikes must be integers in [0, {levels}] (levels={levels}); "
                         f"got e.g. {spikes[bad].flatten()[0].item()!r}")
    n = torch.arange(1, levels + 1, device=spikes.device, dtype=spikes.dtype)
    return (spikes.unsqueeze(1) >= n.reshape((1, levels) + (1,) * (spikes.dim() - 1))).to(spikes.dtype)


# ------------------------------------------------------------------ analytic cost
def dsn_cost(k: int) -> Cost:
    """Analytic cost for kernel size k (N = every non-time element = batch·C).

    FLOPs per element, forward: conv 2k (k multiply-adds incl. bias), log α 3 (exp, log1p, scale),
    α = exp 1, (1 − α)·X 2, scan a·H + b 2, fire 2 (clamp, round) = 2k + 10. Backward: fire mask 1, adjoint
    scan 2, ∂log α = G·α·H_{t−1} 2, ∂X through b 2 and ∂α through b 1, softplus' 3, conv ∂X and ∂w 4k
    = 4k + 11. The chunked scan does O(chunk) more work per element; these count the recurrence itself.

    Bytes (fused floor): forward reads X and writes S (2b). Training also stores fp32 H in the forward
    (4), and the backward reads gS, X (to recompute α' by the cheap conv) and H (4), and writes gX:
    3b + 8. Parameters (C·(k+1)) are negligible and left out.
    """
    return Cost(
        flops_forward=lambda T, N, b: (2 * k + 10) * T * N,
        flops_backward=lambda T, N, b: (4 * k + 11) * T * N,
        bytes_forward=lambda T, N, b: 2 * b * T * N,
        bytes_backward=lambda T, N, b: (3 * b + 8) * T * N,
    )


# ------------------------------------------------------------------ the module
@register
class DSN(Neuron):
    """Dynamic-decay spiking neuron: conv-gated linear membrane, integer (or binary) spikes, no reset.

    Input ``x_seq`` is [T, *batch, C] with C = ``features``; output spikes alike. ``levels`` defaults to 4
    for ``spikes="integer"`` and must be 1 (or left out) for ``spikes="binary"``. ``surrogate`` is
    ``"rect"`` (Eq. 10's straight-through on [0, levels]) or, for binary spikes only, ``"atan"`` /
    ``"sigmoid"`` centred at the 0.5 threshold (``surrogate_alpha`` sets their α).
    `info("dsn")` costs are for k = 4; a built module's ``.spec`` carries the costs of its own k.
    """

    spec = NeuronSpec(
        name="dsn", family="dsn", causal=True, serial_inference=True, fixed_length=False,
        integer_spikes=True, cost=dsn_cost(4), needs_features=True,
        source="Huang et al., arXiv 2602.01133 (2026), Eq. 9-12 as in spec §5.2",
        summary="dynamic decay from a causal conv, linear membrane by log-space scan, integer spikes",
    )

    def __init__(self, *, backend="eager", features=None, k=4, tau=0.25, levels=None, spikes="integer",
                 surrogate="rect", surrogate_alpha=None):
        super().__init__(backend=backend)
        self.features = check_int("dsn", "features", features)
        self.k = check_int("dsn", "k", k)
        self.tau = check_number("dsn", "tau", tau, gt=0.0)
        check_choice("dsn", "spikes", spikes, ("integer", "binary"))
        self.spikes = spikes
        if spikes == "integer":
            self.levels = DEFAULT_LEVELS if levels is None else check_int("dsn", "levels", levels)
            check_param("dsn", "surrogate", surrogate, surrogate == "rect",
                        "'rect' for integer spikes (atan/sigmoid need spikes='binary')")
        else:
            check_param("dsn", "levels", levels, levels is None or (levels == 1 and not isinstance(levels, bool)),
                        "1 or left out for spikes='binary'")
            self.levels = 1
            check_choice("dsn", "surrogate", surrogate, ("rect", "atan", "sigmoid"))
        check_param("dsn", "surrogate_alpha", surrogate_alpha, surrogate_alpha is None or surrogate != "rect",
                    "None with surrogate='rect' (the straight-through gradient has no α)")
        self.surrogate_name = surrogate
        self.surrogate = None if surrogate == "rect" else make_surrogate(surrogate, surrogate_alpha)
        self.spec = replace(type(self).spec, cost=dsn_cost(self.k), integer_spikes=self.levels > 1)
        C = self.features
        bound = 1.0 / math.sqrt(self.k)  # Conv1d(C, C, k, groups=C) default: fan_in = k
        self.weight = nn.Parameter(torch.empty(C, self.k).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(C).uniform_(-bound, bound))

    # ------------------------------------------------------------- checks
    def check_input(self, x_seq: torch.Tensor) -> None:
        super().check_input(x_seq)
        if x_seq.dim() < 2 or x_seq.shape[-1] != self.features:
            raise ValueError("dsn: the last dim of x_seq is the channel dim and must equal features="
                             f"{self.features}; got x_seq of shape {tuple(x_seq.shape)} (expected [T, *batch, "
                             f"{self.features}])")

    # ------------------------------------------------------------- spikes
    def fire(self, h: torch.Tensor) -> torch.Tensor:
        """Eq. 10 on the membrane h (any shape): integer levels, or binary at threshold 0.5."""
        if self.surrogate is None:
            return multi_level(h, self.levels)
        # binary with ATan/Sigmoid: round(clamp(h, 0, 1)) = 1[h > 0.5] (round(0.5) = 0, half-to-even)
        return heaviside(h - 0.5, self.surrogate, strict=True)

    def membrane(self, x_seq: torch.Tensor) -> torch.Tensor:
        """H [T, *batch, C]: the float64 loop for the reference backend, else the parallel scan (fp32 for
        half inputs, else the input dtype)."""
        self.check_input(x_seq)
        if self.backend == "reference":
            return dsn_membrane_reference(x_seq, self.weight, self.bias, self.tau)
        return dsn_membrane(x_seq, self.weight, self.bias, self.tau)

    def forward_reference(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.fire(dsn_membrane_reference(x_seq, self.weight, self.bias, self.tau))

    def forward_eager(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.fire(dsn_membrane(x_seq, self.weight, self.bias, self.tau)).to(x_seq.dtype)

    # ------------------------------------------------------------- serial inference
    def init_state(self, batch_shape, *, device=None, dtype=torch.float32):
        """(H_{t−1} [*batch], last k−1 inputs [k−1, *batch]); ``batch_shape`` ends with C."""
        batch_shape = tuple(batch_shape)
        return (torch.zeros(batch_shape, device=device, dtype=dtype),
                torch.zeros((self.k - 1,) + batch_shape, device=device, dtype=dtype))

    def step(self, x_t, state):
        h, buf = state
        cd = torch.promote_types(compute_dtype(x_t), h.dtype)
        x = x_t.to(cd)
        window = torch.cat([buf.to(cd), x[None]])  # [k, *batch, C], oldest first: matches w[:, 0..k-1]
        logit = (window * self.weight.to(cd).T.reshape((self.k,) + (1,) * (x.dim() - 1) + (-1,))).sum(0)
        log_a = log_decay(logit + self.bias.to(cd), self.tau)
        h = log_a.exp() * h.to(cd) - torch.expm1(log_a) * x
        return self.fire(h).to(x_t.dtype), (h, window[1:])

    def extra_repr(self) -> str:
        return (f"features={self.features}, k={self.k}, tau={self.tau}, levels={self.levels}, "
                f"spikes={self.spikes!r}, surrogate={self.surrogate_name!r}, " + super().extra_repr())
