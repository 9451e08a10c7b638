"""SPSN: the stochastic parallelizable spiking neuron (Yarga & Wood, IJCNN 2023, arXiv 2306.12666; spec §3).

A current-based LIF without reset, then a stochastic spike (NECOTIS definition):

    I_t = α·I_{t-1} + X_t                 α = exp(-dt/τ_syn)
    U_t = β·U_{t-1} + (1-β)·I_t           β = exp(-dt/τ_mem)
    p_t = sigmoid(U_t)                    (no threshold offset)
    S_t ~ Bernoulli(p_t)                  backward: ∂S/∂p := p  ("bernoulli", the paper's SB mode)

or, with ``sampling="gumbel"`` (the paper's GS mode), a hard Gumbel-softmax over the logits (U, -U) at
temperature 1 with a straight-through gradient. The difference of two independent Gumbel(0, 1) draws is
Logistic(0, 1), so that choice is "fire iff 2U - logit(u) > 0" for one uniform u, and fires with
probability sigmoid(2U), not sigmoid(U) — exactly what the NECOTIS code does with two Gumbel draws.

Backends: ``eager`` is the parallel form U = X ⊛ (l ∗ k), l[n] = αⁿ, k[n] = (1-β)βⁿ, by FFT with zero
padding to 2T (O(N·T log T), exactly causal; fp32 FFT for half inputs); ``reference`` is the float64
two-state recurrence; ``compiled`` compiles the parallel function. Serial inference runs the same
recurrence with O(1) state (I, U).

Randomness: every backend fires with ``spsn_fire(U, uniforms)`` on fp32 uniforms of the output shape,
drawn once per call from the neuron's own `torch.Generator` (seeded by ``seed``) or from the global RNG
when ``seed`` is None. Two modules built with the same seed therefore give the same spikes on the same
input, whatever the backend, except where p lies within fp32 rounding of its uniform.
"""
from __future__ import annotations

import math

import torch

from .base import Neuron, check_choice, check_number, check_param, compile_fn, compute_dtype
from .registry import register
from .spec import Cost, NeuronSpec

SAMPLINGS = ("bernoulli", "gumbel")


# --------------------------------------------------------------------------- math as functions
def spsn_coefficients(tau_mem: float, tau_syn: float, dt: float) -> tuple[float, float]:
    """(α, β) = (exp(-dt/τ_syn), exp(-dt/τ_mem))."""
    return math.exp(-dt / tau_syn), math.exp(-dt / tau_mem)


def spsn_kernel_spectrum(seq_len: int, alpha: float, beta: float, *, dtype: torch.dtype = torch.float32,
                         device=None) -> torch.Tensor:
    """rfft(h, 2T) of the causal kernel h = (l ∗ k)[:T], l[n] = αⁿ, k[n] = (1-β)βⁿ; shape [T + 1], complex.

    h is cut to its first T taps before it meets X: a product of three spectra of length 2T (X, l, k)
    is a circular convolution of length 2T, which would wrap the tail of the length-(3T-2) product
    X ∗ l ∗ k back onto the first T-2 outputs. (The NECOTIS code multiplies rfft(X)·rfft(l)·rfft(k)
    directly and has that error; at T = 4 with the default τ it moves U_0 from 0.0975 to 0.36.)"""
    n = torch.arange(seq_len, dtype=torch.float64, device=device)
    # powers in float64 then cast: α^n for long T stays accurate to the last bit of `dtype`
    l_ = (n * math.log(alpha)).exp().to(dtype)
    k_ = ((n * math.log(beta)).exp() * (1.0 - beta)).to(dtype)
    h = torch.fft.irfft(torch.fft.rfft(l_, n=2 * seq_len) * torch.fft.rfft(k_, n=2 * seq_len), n=2 * seq_len)
    return torch.fft.rfft(h[:seq_len], n=2 * seq_len)


def spsn_potential(x_seq: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Membrane U [T, *batch] of input X [T, *batch] by FFT causal convolution (zero padding to 2T).

    Computed in fp32 for half inputs (torch's FFT has no bf16, and fp16 FFT loses the tail of the
    kernel), else in the input dtype; returned in that compute dtype."""
    x = x_seq.to(compute_dtype(x_seq))
    T = x.shape[0]
    spec = spsn_kernel_spectrum(T, alpha, beta, dtype=x.dtype, device=x.device)
    spec = spec.reshape((T + 1,) + (1,) * (x.dim() - 1))
    return torch.fft.irfft(torch.fft.rfft(x, n=2 * T, dim=0) * spec, n=2 * T, dim=0)[:T]


def spsn_step(x_t: torch.Tensor, i: torch.Tensor, u: torch.Tensor, alpha: float, beta: float):
    """One step of the two-state recurrence: returns (I_t, U_t) from X_t and (I_{t-1}, U_{t-1})."""
    i = alpha * i + x_t
    u = beta * u + (1.0 - beta) * i
    return i, u


def spsn_potential_serial(x_seq: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Membrane U [T, *batch] by the serial recurrence (the oracle of `spsn_potential`), in x's dtype."""
    i = torch.zeros_like(x_seq[0])
    u = torch.zeros_like(x_seq[0])
    out = []
    for t in range(x_seq.shape[0]):
        i, u = spsn_step(x_seq[t], i, u, alpha, beta)
        out.append(u)
    return torch.stack(out)


class _BernoulliStraightThrough(torch.autograd.Function):
    """S = 1[u < p] (a Bernoulli(p) draw given the uniform u); backward ∂S/∂p := p (NECOTIS Eq. 19)."""

    @staticmethod
    def forward(ctx, p, uniforms):
        ctx.save_for_backward(p)
        return (uniforms < p).to(p.dtype)

    @staticmethod
    def backward(ctx, grad_s):
        (p,) = ctx.saved_tensors
        return grad_s * p, None


def spsn_fire(u_mem: torch.Tensor, uniforms: torch.Tensor, sampling: str = "bernoulli") -> torch.Tensor:
    """Spikes from membrane ``u_mem`` and uniforms in [0, 1) of the same shape (cast to U's dtype).

    ``bernoulli``: S = 1[u < sigmoid(U)], gradient ∂S/∂p = p then through the sigmoid.
    ``gumbel``: S = 1[z > 0] with z = 2U - logit(u) (= (U + g0) - (-U + g1), g0 - g1 ~ Logistic), the
    forward value exactly 0/1 and the gradient that of sigmoid(z), the temperature-1 soft sample."""
    uniforms = uniforms.to(u_mem.dtype)
    if sampling == "bernoulli":
        return _BernoulliStraightThrough.apply(torch.sigmoid(u_mem), uniforms)
    z = 2.0 * u_mem - (torch.log(uniforms) - torch.log1p(-uniforms))
    soft = torch.sigmoid(z)
    # soft - soft.detach() is exactly 0 in the forward, so the spikes stay exactly 0/1
    return (z > 0).to(soft.dtype) + (soft - soft.detach())


def spsn_forward(x_seq: torch.Tensor, uniforms: torch.Tensor, alpha: float, beta: float,
                 sampling: str) -> torch.Tensor:
    """Parallel SPSN: spikes [T, *batch] in x's dtype (FFT potential, then `spsn_fire`)."""
    return spsn_fire(spsn_potential(x_seq, alpha, beta), uniforms, sampling).to(x_seq.dtype)


# --------------------------------------------------------------------------- cost
def _rfft_flops(n: int) -> float:
    """Real FFT of length n: 2.5·n·log2(n), half the usual 5·n·log2(n) of a complex FFT."""
    return 2.5 * n * math.log2(n)


def _conv_flops(T: int) -> float:
    """Per neuron: rfft of the padded input, spectral product (T+1 complex multiplies, 6 FLOPs each), irfft.
    The kernel's own spectrum (three FFTs of length 2T) is computed once per call for all neurons and is
    left out."""
    return 2 * _rfft_flops(2 * T) + 6 * (T + 1)


#: forward: FFT convolution + sigmoid (exp, add, divide) + compare; backward: grad·p, sigmoid', and the
#: transposed convolution (one more FFT pair). Bytes as LIF: read X, write S; training stores fp32 p
#: (written in the forward, read in the backward: 8 bytes), reads gS, writes gX. Uniforms are assumed
#: generated in-kernel (Philox), so they add no traffic; "gumbel" adds a few elementwise ops not counted.
_SPSN_COST = Cost(
    flops_forward=lambda T, N, b: N * (_conv_flops(T) + 4 * T),
    flops_backward=lambda T, N, b: N * (_conv_flops(T) + 4 * T),
    bytes_forward=lambda T, N, b: 2 * b * T * N,
    bytes_backward=lambda T, N, b: (2 * b + 8) * T * N,
)


# --------------------------------------------------------------------------- module
@register
class SPSN(Neuron):
    """Stochastic parallelizable spiking neuron: no-reset current LIF, sigmoid, sampled spike.

    ``seed``: an int (the neuron owns a `torch.Generator` per device seeded with it), a
    `torch.Generator` (used as given; uniforms are drawn on its device), or None (global RNG)."""

    spec = NeuronSpec(
        name="spsn", family="spsn", causal=True, serial_inference=True, fixed_length=False,
        integer_spikes=False, cost=_SPSN_COST,
        source="NECOTIS/Stochastic-Parallelizable-Spiking-Neuron-SPSN neurons/spsn.py (spec §3)",
        summary="stochastic no-reset LIF, sigmoid-Bernoulli or Gumbel spikes, FFT-parallel",
    )

    def __init__(self, *, backend="eager", tau_mem=0.02, tau_syn=0.02, dt=0.001, sampling="bernoulli",
                 seed=None):
        super().__init__(backend=backend)
        self.tau_mem = check_number("spsn", "tau_mem", tau_mem, gt=0.0)
        self.tau_syn = check_number("spsn", "tau_syn", tau_syn, gt=0.0)
        self.dt = check_number("spsn", "dt", dt, gt=0.0)
        check_choice("spsn", "sampling", sampling, SAMPLINGS)
        ok_seed = seed is None or isinstance(seed, torch.Generator) or (
            isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0)
        check_param("spsn", "seed", seed, ok_seed, "None, an int >= 0 or a torch.Generator")
        self.sampling = sampling
        self.seed = seed
        self.alpha, self.beta = spsn_coefficients(self.tau_mem, self.tau_syn, self.dt)
        self._generators: dict[str, torch.Generator] = {}

    # ------------------------------------------------------------ randomness
    def reseed(self, seed=None) -> None:
        """Restart the random stream (``seed`` None keeps the current seed)."""
        if seed is not None:
            self.seed = seed
        self._generators.clear()

    def draw_uniforms(self, shape, device) -> torch.Tensor:
        """fp32 uniforms in [0, 1) of ``shape`` on ``device`` from this neuron's stream."""
        if self.seed is None:
            return torch.rand(shape, device=device, dtype=torch.float32)
        if isinstance(self.seed, torch.Generator):
            g = self.seed
            return torch.rand(shape, generator=g, device=g.device, dtype=torch.float32).to(device)
        key = str(torch.device(device))
        g = self._generators.get(key)
        if g is None:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            self._generators[key] = g
        return torch.rand(shape, generator=g, device=device, dtype=torch.float32)

    # --------------------------------------------------------------- backends
    def forward_reference(self, x_seq):
        u_mem = spsn_potential_serial(x_seq, self.alpha, self.beta)
        return spsn_fire(u_mem, self.draw_uniforms(x_seq.shape, x_seq.device), self.sampling)

    def forward_eager(self, x_seq):
        uniforms = self.draw_uniforms(x_seq.shape, x_seq.device)
        return spsn_forward(x_seq, uniforms, self.alpha, self.beta, self.sampling)

    def forward_compiled(self, x_seq):
        # the uniforms are drawn outside the graph: a Generator object cannot be a graph input, and
        # drawing them here keeps the random stream identical to the eager backend's
        if self._compiled_fn is None:
            self._compiled_fn = compile_fn(spsn_forward)
        uniforms = self.draw_uniforms(x_seq.shape, x_seq.device)
        return self._compiled_fn(x_seq, uniforms, self.alpha, self.beta, self.sampling)

    # ------------------------------------------------------- serial inference
    def init_state(self, batch_shape, *, device=None, dtype=torch.float32):
        """(I, U), both zeros of ``batch_shape``."""
        zeros = torch.zeros(tuple(batch_shape), device=device, dtype=dtype)
        return zeros, zeros.clone()

    def step(self, x_t, state):
        i, u = spsn_step(x_t.to(state[0].dtype), state[0], state[1], self.alpha, self.beta)
        s = spsn_fire(u, self.draw_uniforms(x_t.shape, x_t.device), self.sampling)
        return s.to(x_t.dtype), (i, u)

    def extra_repr(self):
        return (f"tau_mem={self.tau_mem}, tau_syn={self.tau_syn}, dt={self.dt}, "
                f"sampling={self.sampling!r}, " + super().extra_repr())
