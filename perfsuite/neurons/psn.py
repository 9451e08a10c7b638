"""PSN family: PSN, masked PSN and sliding PSN (spec §2; Fang et al., NeurIPS 2023, arXiv 2304.12760,
as implemented in SpikingJelly 2.0.0 ``activation_based/neuron/psn.py``).

All three drop the reset, so the membrane potential is a linear, learnable mix of the inputs over time,
and fire with S = Θ(H) (Θ(0) = 1, surrogate ATan α=2 by default). The learnable bias is −threshold
(init −1). Weights are shared by every neuron of the layer.

    PSN:          H = W X + b                        W [T, T] dense, b [T]; not causal
    masked PSN:   H = (W ⊙ (λ·M_k + (1−λ)·J)) X + b  M_k = band of width k on/below the diagonal
    sliding PSN:  H_t = Σ_{i<k} W_i X_{t−k+1+i} + b  W [k], b scalar; any T; causal

Backends. ``reference``: the defining sums written out as Python loops in float64. ``eager``: one GEMM
(`torch.addmm` over the flattened neurons) for PSN and masked PSN; a causal `conv1d` (left pad k−1,
O(k·T) work, never a T×T matrix) for sliding PSN. ``compiled``: `torch.compile` of eager (no loop over
T, so one small graph per shape). Half inputs run the GEMM/conv in the input dtype (CPU and CUDA
kernels accumulate in fp32) and return spikes in the input dtype.

Serial inference (spec §2.2, §2.3): a queue of the last k inputs. Masked PSN only at λ = 1 and for
t < T (its weights are tied to the time index); sliding PSN for any number of steps.

The math lives in plain functions (``*_potential``, ``*_step``) that return H, so tests and other
backends can check membranes, not only spikes; the modules hold parameters and fire.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import Neuron, check_choice, check_int, check_number, check_param, compute_dtype
from .registry import register
from .spec import Cost, NeuronSpec
from .surrogate import SURROGATES, heaviside, make_surrogate

_SOURCE = "SpikingJelly 2.0.0 neuron/psn.py; Fang et al., NeurIPS 2023, arXiv 2304.12760 (spec §2)"


# ------------------------------------------------------------------------------------------ costs
# Convention (floors of a fused implementation, see spec.py):
# * FLOPs: a multiply-add is 2; the mix H = W X + b costs 2·taps per output (bias add included, as in a
#   GEMM with bias), the threshold compare 1. Backward: ATan surrogate times gS 5 per element
#   (scale, square, +1, divide, times gS), gX and gW 2·taps each per element, gb 1 per element.
# * Bytes: X, S, gS, gX at b bytes per element; parameters and their gradients are fp32 master weights
#   (max(b, 4) bytes). Forward (inference) reads X, writes S, reads W and b once. Training also stores H
#   in fp32 in the forward (counted in the backward, as the LIF costs do) and the backward reads gS,
#   H and X (for gW), reads W, writes gX, gW and gb. Recomputing H instead of storing it would save
#   8·T·N bytes at the price of a second forward GEMM; we count the store.
_SURROGATE_FLOPS = 5


def _mix_cost(taps: Callable[[int], float], n_weight: Callable[[int], float], n_bias: Callable[[int], float],
              mask_flops: Callable[[int], float] = lambda T: 0.0) -> Cost:
    """Cost of H = mix(X) + b, S = Θ(H) with ``taps(T)`` weights per output and the given parameter
    counts; ``mask_flops(T)``: extra forward FLOPs to build the masked weight (its backward is half)."""

    def pbytes(b):
        return max(b, 4)

    return Cost(
        flops_forward=lambda T, N, b: (2 * taps(T) + 1) * T * N + mask_flops(T),
        flops_backward=lambda T, N, b: (4 * taps(T) + _SURROGATE_FLOPS + 1) * T * N + mask_flops(T) / 3,
        bytes_forward=lambda T, N, b: 2 * b * T * N + pbytes(b) * (n_weight(T) + n_bias(T)),
        bytes_backward=lambda T, N, b: (3 * b + 8) * T * N + pbytes(b) * (2 * n_weight(T) + n_bias(T)),
    )


def _dense_cost(mask: bool) -> Cost:
    # masked PSN: λ·M + (1−λ) and the product with W are 3 FLOPs per weight; its backward gW ⊙ mask is 1.
    return _mix_cost(lambda T: T, lambda T: T * T, lambda T: T,
                     (lambda T: 3.0 * T * T) if mask else (lambda T: 0.0))


def _sliding_cost(k: int) -> Cost:
    # k taps per output including the zero-padded ones at t < k−1, as the conv does (the padded taps
    # are k(k−1)/2 per neuron, small against k·T for T ≫ k).
    return _mix_cost(lambda T: k, lambda T: k, lambda T: 1)


def _cost_needs_k(T, N, b):
    raise ValueError("sliding_psn: the cost depends on k; use the spec of a built module, "
                     "e.g. build('sliding_psn', k=4).spec")


# ------------------------------------------------------------------------------------------- math
def _flat(x_seq: torch.Tensor) -> torch.Tensor:
    """[T, *batch] -> [T, N] (N = every non-time element, possibly 1 for a bare [T] input)."""
    return x_seq.reshape(x_seq.shape[0], x_seq[0].numel())


def psn_potential(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """H = W X + b as one GEMM. x_seq [T, *batch], weight [T, T], bias [T] (same dtype) -> H [T, *batch]."""
    return torch.addmm(bias.unsqueeze(1), weight, _flat(x_seq)).view(x_seq.shape)


def psn_potential_reference(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """H_t = Σ_i W[t][i]·X_i + b_t, summed term by term (the oracle; slow on purpose)."""
    T = x_seq.shape[0]
    out = []
    for t in range(T):
        h = bias[t] + torch.zeros_like(x_seq[0])
        for i in range(T):
            h = h + weight[t, i] * x_seq[i]
        out.append(h)
    return torch.stack(out)


def masked_psn_band(seq_len: int, k: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """M_k [T, T]: 1 where j ≤ i ≤ j + k − 1 (the input j reaches output i within k steps), else 0."""
    ones = torch.ones(seq_len, seq_len, device=device, dtype=dtype)
    return ones.tril().triu(-(k - 1))


def masked_psn_weight(weight: torch.Tensor, band: torch.Tensor, lambda_: torch.Tensor | float) -> torch.Tensor:
    """W ⊙ (λ·M_k + (1−λ)·J); ``band`` is `masked_psn_band`. At λ = 1 only the band of W remains."""
    return weight * (lambda_ * band + (1.0 - lambda_))


def masked_psn_mask_reference(seq_len: int, k: int, lambda_: float) -> torch.Tensor:
    """λ·M_k + (1−λ)·J [T, T] in float64, element by element from the definition (the oracle)."""
    rows = [[lambda_ * (1.0 if j <= i <= j + k - 1 else 0.0) + (1.0 - lambda_) for j in range(seq_len)]
            for i in range(seq_len)]
    return torch.tensor(rows, dtype=torch.float64)


def masked_psn_lambda(epoch: int, epochs: int) -> float:
    """Progressive-mask schedule of the paper's training script: λ = min(1, 8·e/(E−1)) at the start of
    epoch e (0-based) of E (spec §2.2; `Parallel-Spiking-Neuron/sequential_cifar/train_secf10.py`)."""
    check_int("masked_psn_lambda", "epochs", epochs, ge=2)
    ok = isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch < epochs
    check_param("masked_psn_lambda", "epoch", epoch, ok, f"an int in [0, epochs={epochs})")
    return min(1.0, 8.0 * epoch / (epochs - 1))


def sliding_psn_exp_weight(k: int) -> torch.Tensor:
    """The ``exp_init`` weights (2^−(k−1), …, 1/4, 1/2, 1): the last one multiplies the current input."""
    return torch.tensor([2.0 ** -(k - 1 - i) for i in range(k)])


def sliding_psn_potential(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """H_t = Σ_{i<k} W_i X_{t−k+1+i} + b as a causal conv1d over time: O(k·T·N), no T×T matrix.

    x_seq [T, *batch], weight [k], bias [] (same dtype) -> H [T, *batch]."""
    k = weight.shape[0]
    x = _flat(x_seq).t().unsqueeze(1)                  # [N, 1, T]: conv1d wants time last
    x = F.pad(x, (k - 1, 0))                           # X_j = 0 for j < 0
    h = F.conv1d(x, weight.view(1, 1, k), bias.view(1))  # cross-correlation: W_{k−1} meets X_t
    return h.squeeze(1).t().reshape(x_seq.shape)


def sliding_psn_potential_reference(x_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """H_t = b + Σ_{i<k, t−k+1+i ≥ 0} W_i·X_{t−k+1+i}, step by step (the oracle; slow on purpose)."""
    T, k = x_seq.shape[0], weight.shape[0]
    out = []
    for t in range(T):
        h = bias + torch.zeros_like(x_seq[0])
        for i in range(k):
            j = t - k + 1 + i
            if j >= 0:
                h = h + weight[i] * x_seq[j]
        out.append(h)
    return torch.stack(out)


def _push(queue: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """Drop the oldest of the k queued inputs [k, *batch] and append ``x_t``. The queue takes the wider
    of its dtype and the input's compute dtype, so a float64 input is never rounded to a float32 state."""
    if x_t.shape != queue.shape[1:]:
        raise ValueError(f"x_t has shape {tuple(x_t.shape)} but the state was made for batch shape "
                         f"{tuple(queue.shape[1:])}; call init_state with the input's batch shape")
    cd = torch.promote_types(queue.dtype, compute_dtype(x_t))
    return torch.cat([queue[1:].to(cd), x_t.to(cd).unsqueeze(0)])


class MaskedPSNState(NamedTuple):
    """Serial state of masked PSN: the last k inputs [k, *batch] (oldest first) and the next time index."""

    queue: torch.Tensor
    t: int


def masked_psn_step(x_t: torch.Tensor, state: MaskedPSNState, weight: torch.Tensor, bias: torch.Tensor
                    ) -> tuple[torch.Tensor, MaskedPSNState]:
    """One step at λ = 1: H_t = Σ_{j=max(0,t−k+1)}^{t} W[t][j]·X_j + b_t (the band of W ⊙ M_k is W's band).

    Returns (H_t [*batch], next state). Raises past the last time step: W has no row for t ≥ T."""
    queue, t = state
    T, k = weight.shape[0], queue.shape[0]
    if t >= T:
        raise ValueError(f"masked_psn: step t={t} is past seq_len={T}; its weights are tied to the time "
                         f"index, so serial inference covers t < {T} only (init_state starts a new sequence)")
    queue = _push(queue, x_t)
    n = min(t + 1, k)  # inputs that exist so far, at most k
    w = weight[t, t + 1 - n:t + 1].to(queue.dtype)
    h = torch.tensordot(w, queue[k - n:], dims=1) + bias[t].to(queue.dtype)
    return h, MaskedPSNState(queue, t + 1)


def sliding_psn_step(x_t: torch.Tensor, queue: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: H_t = Σ_i W_i·q_i + b over the queue of the last k inputs (zeros before t = 0).

    Returns (H_t [*batch], next queue)."""
    queue = _push(queue, x_t)
    h = torch.tensordot(weight.to(queue.dtype), queue, dims=1) + bias.to(queue.dtype)
    return h, queue


# ---------------------------------------------------------------------------------------- modules
class _PSNBase(Neuron):
    """Surrogate set-up and firing shared by the family."""

    def _init_surrogate(self, surrogate, surrogate_alpha):
        check_choice(self.spec.name, "surrogate", surrogate, SURROGATES)
        self.surrogate = make_surrogate(surrogate, surrogate_alpha)

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        return heaviside(h, self.surrogate)

    def extra_repr(self) -> str:
        return f"surrogate={self.surrogate.name}(α={self.surrogate.alpha}), " + super().extra_repr()


def _dense_params(module: nn.Module, seq_len: int) -> None:
    """W [T, T] with kaiming_uniform_(a=√5), i.e. U(−1/√T, 1/√T) as `nn.Linear(T, T)`; b [T] = −1."""
    module.weight = nn.Parameter(torch.empty(seq_len, seq_len))
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    module.bias = nn.Parameter(torch.full((seq_len,), -1.0))


@register
class PSN(_PSNBase):
    """Parallel spiking neuron: H = W X + b with a dense learnable W [T, T]. Not causal, fixed T."""

    spec = NeuronSpec(
        name="psn", family="psn", causal=False, serial_inference=False, fixed_length=True,
        integer_spikes=False, cost=_dense_cost(mask=False), source=_SOURCE,
        summary="dense learnable T×T mix of the inputs, no reset (one GEMM); uses future inputs",
    )

    def __init__(self, *, backend="eager", seq_len=None, surrogate="atan", surrogate_alpha=None):
        super().__init__(backend=backend, seq_len=check_int("psn", "seq_len", seq_len))
        self._init_surrogate(surrogate, surrogate_alpha)
        _dense_params(self, self.seq_len)

    def forward_reference(self, x_seq):
        return self.fire(psn_potential_reference(x_seq, self.weight.to(x_seq.dtype), self.bias.to(x_seq.dtype)))

    def forward_eager(self, x_seq):
        return self.fire(psn_potential(x_seq, self.weight.to(x_seq.dtype), self.bias.to(x_seq.dtype)))


@register
class MaskedPSN(_PSNBase):
    """Masked PSN of order k: H = (W ⊙ (λ·M_k + (1−λ)·J)) X + b.

    ``lambda_`` is a buffer (not learned); change it between calls with `set_lambda` (validated), e.g.
    ``m.set_lambda(masked_psn_lambda(epoch, epochs))`` for the paper's schedule. SpikingJelly starts at
    λ = 0 for that schedule; perfsuite's default is λ = 1, the fully masked neuron used at inference.
    Causal only at λ = 1 (the spec's ``causal=True`` states that case); serial inference likewise.
    """

    spec = NeuronSpec(
        name="masked_psn", family="psn", causal=True, serial_inference=True, fixed_length=True,
        integer_spikes=False, cost=_dense_cost(mask=True), source=_SOURCE,
        summary="PSN with W masked to a band of width k (λ=1: causal, serial queue of k); "
                "causal only once λ = 1; cost counts the dense GEMM",
    )

    def __init__(self, *, backend="eager", seq_len=None, k=None, lambda_=1.0, surrogate="atan",
                 surrogate_alpha=None):
        super().__init__(backend=backend, seq_len=check_int("masked_psn", "seq_len", seq_len))
        T = self.seq_len
        ok = isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= T
        check_param("masked_psn", "k", k, ok, f"an int in [1, seq_len={T}]")
        self.k = k
        self._init_surrogate(surrogate, surrogate_alpha)
        _dense_params(self, T)
        self.register_buffer("lambda_", torch.tensor(0.0))
        self.set_lambda(lambda_)
        # derived from (T, k) alone: not saved with the weights
        self.register_buffer("band", masked_psn_band(T, k), persistent=False)

    def set_lambda(self, value: float) -> None:
        """Set the mask strength λ ∈ [0, 1] in place (compiled graphs read the buffer, no recompile)."""
        lam = check_number("masked_psn", "lambda_", value, ge=0.0)
        check_param("masked_psn", "lambda_", value, lam <= 1.0, "a number in [0, 1]")
        with torch.no_grad():
            self.lambda_.fill_(lam)

    def masked_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """W ⊙ (λ·M_k + (1−λ)·J) [T, T] in ``dtype`` (mask applied in the parameters' dtype)."""
        return masked_psn_weight(self.weight, self.band, self.lambda_).to(dtype)

    def forward_reference(self, x_seq):
        mask = masked_psn_mask_reference(self.seq_len, self.k, float(self.lambda_)).to(self.weight.device)
        w = self.weight.to(torch.float64) * mask
        return self.fire(psn_potential_reference(x_seq, w, self.bias.to(torch.float64)))

    def forward_eager(self, x_seq):
        return self.fire(psn_potential(x_seq, self.masked_weight(x_seq.dtype), self.bias.to(x_seq.dtype)))

    def init_state(self, batch_shape, *, device=None, dtype=torch.float32) -> MaskedPSNState:
        lam = float(self.lambda_)
        if lam < 1.0:
            raise ValueError(f"masked_psn: serial inference needs lambda_=1 (the fully masked, causal neuron); "
                             f"lambda_ is {lam:.6g}. Call set_lambda(1.0) first.")
        return MaskedPSNState(torch.zeros((self.k, *batch_shape), device=device, dtype=dtype), 0)

    def step(self, x_t, state: MaskedPSNState):
        h, state = masked_psn_step(x_t, state, self.weight, self.bias)
        return self.fire(h).to(x_t.dtype), state

    def extra_repr(self):
        return f"k={self.k}, lambda_={float(self.lambda_):.6g}, " + super().extra_repr()


@register
class SlidingPSN(_PSNBase):
    """Sliding PSN of order k: H_t = Σ_{i<k} W_i X_{t−k+1+i} + b, W [k] and b shared over time. Any T.

    Its cost depends on k, so the class-level spec (``info('sliding_psn')``) cannot give it; the spec of
    a built module (``module.spec``) carries the cost for that module's k.
    """

    spec = NeuronSpec(
        name="sliding_psn", family="psn", causal=True, serial_inference=True, fixed_length=False,
        integer_spikes=False, cost=Cost(_cost_needs_k, _cost_needs_k, _cost_needs_k, _cost_needs_k),
        source=_SOURCE, summary="k learnable weights shared over time, causal conv O(kT), any T",
    )

    def __init__(self, *, backend="eager", k=None, exp_init=True, surrogate="atan", surrogate_alpha=None):
        super().__init__(backend=backend)
        self.k = check_int("sliding_psn", "k", k)
        check_choice("sliding_psn", "exp_init", exp_init, (True, False))
        self._init_surrogate(surrogate, surrogate_alpha)
        self.spec = replace(type(self).spec, cost=_sliding_cost(self.k))
        if exp_init:
            self.weight = nn.Parameter(sliding_psn_exp_weight(self.k))
        else:
            # kaiming_uniform_(a=√5) on a [1, k] view: fan_in = k, so U(−1/√k, 1/√k)
            self.weight = nn.Parameter(torch.empty(self.k))
            nn.init.kaiming_uniform_(self.weight.data.view(1, self.k), a=math.sqrt(5))
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def forward_reference(self, x_seq):
        return self.fire(sliding_psn_potential_reference(x_seq, self.weight.to(x_seq.dtype),
                                                         self.bias.to(x_seq.dtype)))

    def forward_eager(self, x_seq):
        return self.fire(sliding_psn_potential(x_seq, self.weight.to(x_seq.dtype), self.bias.to(x_seq.dtype)))

    def init_state(self, batch_shape, *, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.zeros((self.k, *batch_shape), device=device, dtype=dtype)

    def step(self, x_t, state):
        h, state = sliding_psn_step(x_t, state, self.weight, self.bias)
        return self.fire(h).to(x_t.dtype), state

    def extra_repr(self):
        return f"k={self.k}, " + super().extra_repr()
