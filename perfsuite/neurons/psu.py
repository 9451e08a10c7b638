"""PSU family: PSU, IPSU and RPSU (Li et al., IJCNN 2024, arXiv 2402.00449; spec §4, R1-R7).

Built on BrainCog's soft-reset LIF (V ← V + (I_t - V)/τ; S = Θ_strict(V - V_th); V ← V - S·V_th),
unrolled as H = A·I - B·S with the spikes S estimated so that the whole sequence is computed at once.
With d the decay per step:

    A[t][j] = (1/τ)·d^(t-j)   (j ≤ t)        integration (R1)
    K[t][j] = d^(t-j)         (j < t)        reset kernel: B = V_th·K, and the code's m2 = -K

* PSU  (R4): U = A·I,  H = U - V_th·K·σ(U)
* IPSU (R5): D = (W ⊙ M)·I + b;  "linear" (BrainCog's IPSU):  H = D - K·I
                                 "prob"   (BrainCog's PPSU):  H = D - K·σ(D)
* RPSU (R6): Z = (W ⊙ M)·I + b;  H = A·I - K·σ(Z)

and every neuron fires S = Θ_strict(H - V_th) (Θ(0) = 0, as BrainCog) with the ATan(α=2) surrogate.
BrainCog learns α (one scalar per layer); perfsuite keeps it fixed at 2.

The soft-reset LIF has d = 1 - 1/τ (R1). BrainCog's `generate_matrix` uses d = 1/τ (R2), equal only at
τ = 2, the value of all its scripts; ``braincog_compat=True`` reproduces its m1/m2 exactly.

M = tril(ones) is applied to ``weight`` in every forward, so the upper triangle never matters and gets
zero gradient. Init (R7): ``weight`` kaiming-normal (fan_out, relu: std = √(2/T)), ``bias`` 0.

Backends: ``eager`` = the GEMMs above (the papers' formulation; the O(T) scan of PSU belongs to the
Triton kernels); ``compiled`` = torch.compile of eager; ``reference`` (float64) = PSU by its O(1)-state
recurrence, IPSU/RPSU by the defining formula with explicit sums over the history — the same step
functions serve serial inference (PSU: any length; IPSU/RPSU: their weights are per position, so only
t < seq_len). All three are built for one ``seq_len``, as BrainCog builds its matrices for its T.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import Neuron, check_choice, check_int, check_number, check_param, compute_dtype
from .registry import register
from .spec import Cost, NeuronSpec
from .surrogate import SURROGATES, Surrogate, heaviside, make_surrogate

#: BrainCog AtanGrad(alpha=2), with α fixed here (BrainCog learns it)
SURROGATE = make_surrogate("atan", 2.0)
IPSU_VARIANTS = ("linear", "prob")
_SOURCE = "Brain-Cog-Lab/PSU braincog/base/node/node.py"


# --------------------------------------------------------------------------- math as functions
def decay_factor(tau: float, braincog_compat: bool = False) -> float:
    """d = 1 - 1/τ (soft-reset LIF, R1), or 1/τ as BrainCog's generate_matrix (R2)."""
    return 1.0 / tau if braincog_compat else 1.0 - 1.0 / tau


def psu_matrices(seq_len: int, tau: float, d: float, *, dtype: torch.dtype = torch.float64,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, K), both [T, T]: A[t][j] = (1/τ)·d^(t-j) for j ≤ t, K[t][j] = d^(t-j) for j < t, else 0.

    Computed in float64, then cast to ``dtype``."""
    t = torch.arange(seq_len, dtype=torch.float64, device=device)
    lag = t[:, None] - t[None, :]
    powers = torch.tril(d ** lag.clamp(min=0))
    return (powers / tau).to(dtype), torch.tril(powers, diagonal=-1).to(dtype)


def fire(h: torch.Tensor, v_threshold: float, surrogate: Surrogate = SURROGATE) -> torch.Tensor:
    """S = Θ_strict(H - V_th) with ``surrogate`` (BrainCog: ATan α=2)."""
    return heaviside(h - v_threshold, surrogate, strict=True)


def psu_potential(x: torch.Tensor, a: torch.Tensor, k: torch.Tensor, v_threshold: float) -> torch.Tensor:
    """PSU H [T, N] of X [T, N]: U = A·X, H = U - V_th·K·σ(U) (two GEMMs)."""
    u = a @ x
    return u - v_threshold * (k @ torch.sigmoid(u))


def ipsu_potential(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: torch.Tensor,
                   variant: str = "linear") -> torch.Tensor:
    """IPSU H [T, N]: D = tril(W)·X + b; linear H = D - K·X, prob H = D - K·σ(D) (two GEMMs)."""
    dmem = torch.addmm(bias[:, None], torch.tril(weight), x)
    return dmem - k @ (x if variant == "linear" else torch.sigmoid(dmem))


def rpsu_potential(x: torch.Tensor, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   k: torch.Tensor) -> torch.Tensor:
    """RPSU H [T, N]: Z = tril(W)·X + b, H = A·X - K·σ(Z) (three GEMMs)."""
    z = torch.addmm(bias[:, None], torch.tril(weight), x)
    return a @ x - k @ torch.sigmoid(z)


def psu_step(x_t: torch.Tensor, u: torch.Tensor, q: torch.Tensor, tau: float, d: float, v_threshold: float):
    """One step of PSU's O(1)-state recurrence; returns (H_t, u_t, q_t).

    u_t = d·u_{t-1} + X_t/τ (= (A·X)_t), r_t = d·q_{t-1} (= V_th·(K·σ(U))_t), H_t = u_t - r_t, and
    q_t = r_t + V_th·σ(u_t) carries the estimated reset into the next step (q_{-1} = 0)."""
    u = d * u + x_t / tau
    r = d * q
    return u - r, u, r + v_threshold * torch.sigmoid(u)


def _weighted_sum(coef: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Σ_j coef[j]·values[j]: coef [J], values [J, *batch] -> [*batch] (zeros when J = 0)."""
    return torch.tensordot(coef, values, dims=1)


def _powers(d: float, t: int, *, include_now: bool, like: torch.Tensor) -> torch.Tensor:
    """[d^t, d^(t-1), ..., d^1] (and d^0 when ``include_now``): the row t of K (or of τ·A), float64 first."""
    lags = torch.arange(t, -1 if include_now else 0, -1, dtype=torch.float64, device=like.device)
    return (d ** lags).to(like.dtype)


# --------------------------------------------------------------------------- serial state
@dataclass
class PSUState:
    """PSU serial state: u (membrane of the integration), q (estimated reset carried forward)."""

    u: torch.Tensor
    q: torch.Tensor


@dataclass
class HistoryState:
    """IPSU/RPSU serial state: the step index, the compute dtype, every past input and past σ(D) / σ(Z)."""

    t: int
    dtype: torch.dtype
    inputs: list = field(default_factory=list)
    gates: list = field(default_factory=list)


# --------------------------------------------------------------------------- cost
def _cost(gemms_fwd: int, gemms_bwd: int, elem_fwd: int, elem_bwd: int, matrices: int, saved: int,
          learnable: bool) -> Cost:
    """Cost convention: a [T,T]x[T,N] GEMM is 2·T²·N FLOPs, elementwise work one FLOP per arithmetic op
    (an exp counts one). Forward bytes: read X, write S (b per element each) and read each learned T×T
    matrix once (b per entry; ``matrices`` counts them): the fixed A and K are geometric, so a fused
    implementation runs them as O(T) recurrences and reads no T×T matrix for them (kernels/psu.py).
    Backward bytes: read gS, write gX, read the learned matrices once more; ``saved`` fp32
    tensors of [T, N] written in the forward and read in the backward (8 bytes per element each); with
    learnable weights also read X again (for gW) and write gW, gb (b per entry)."""
    def bytes_bwd(T, N, b):
        extra = (b * T * N + b * (T * T + T)) if learnable else 0
        return (2 * b + 8 * saved) * T * N + matrices * b * T * T + extra

    return Cost(
        flops_forward=lambda T, N, b: gemms_fwd * 2 * T * T * N + elem_fwd * T * N,
        flops_backward=lambda T, N, b: gemms_bwd * 2 * T * T * N + elem_bwd * T * N,
        bytes_forward=lambda T, N, b: 2 * b * T * N + matrices * b * T * T,
        bytes_backward=bytes_bwd,
    )


# PSU: fwd A·X, K·σ(U); σ (3), scale+subtract (2), threshold compare (2); bwd Kᵀ·gH, Aᵀ·gU; surrogate (6),
# σ' (3), combine (2); saves U and H.
_PSU_COST = _cost(2, 2, 7, 11, matrices=0, saved=2, learnable=False)
# IPSU (either variant as coded: two GEMMs forward); bwd gX through both GEMMs + gW = gH·Xᵀ; "prob" adds σ.
_IPSU_COST = _cost(2, 3, 6, 12, matrices=1, saved=2, learnable=True)
# RPSU: fwd A·X, tril(W)·X, K·σ(Z); bwd Aᵀ·gH, Kᵀ·gH, tril(W)ᵀ·gZ, gW = gZ·Xᵀ; saves Z and H.
_RPSU_COST = _cost(3, 4, 7, 12, matrices=1, saved=2, learnable=True)


# --------------------------------------------------------------------------- modules
class _PSUBase(Neuron):
    """Shared module code: hyper-parameters, the fixed matrices, the eager/reference/serial plumbing."""

    def _init_common(self, seq_len, tau, v_threshold, braincog_compat, surrogate, surrogate_alpha):
        name = self.spec.name
        check_choice(name, "surrogate", surrogate, SURROGATES)
        self.surrogate = make_surrogate(surrogate, surrogate_alpha)
        self.seq_len = check_int(name, "seq_len", seq_len)
        check_choice(name, "braincog_compat", braincog_compat, (True, False))
        if braincog_compat:
            self.tau = check_number(name, "tau", tau, gt=0.0)
        else:
            ok = isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 1.0
            check_param(name, "tau", tau, ok,
                        "a number > 1 (the decay d = 1 - 1/tau must lie in (0, 1); "
                        "braincog_compat=True uses d = 1/tau and accepts any tau > 0)")
            self.tau = float(tau)
        self.v_threshold = check_number(name, "v_threshold", v_threshold)
        self.braincog_compat = braincog_compat
        self.decay = decay_factor(self.tau, braincog_compat)
        self._matrix_cache = None

    def _init_weights(self, seq_len):
        # BrainCog: nn.Linear(T, T) with kaiming_normal_(fan_out, relu) and bias 0 (R7)
        self.weight = nn.Parameter(torch.empty(seq_len, seq_len))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(seq_len))

    def matrices(self, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, K) for seq_len in ``dtype`` on ``device``, built once (from float64) and cached."""
        c = self._matrix_cache
        if c is None or c[0] != dtype or c[1] != device:
            a, k = psu_matrices(self.seq_len, self.tau, self.decay, dtype=dtype, device=device)
            c = self._matrix_cache = (dtype, device, a, k)
        return c[2], c[3]

    def potential(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """H [T, N] of X [T, N] by the GEMM formulation, in x's dtype."""
        raise NotImplementedError

    def forward_eager(self, x_seq):
        cd = compute_dtype(x_seq)
        x = x_seq.to(cd).reshape(x_seq.shape[0], -1)
        return fire(self.potential(x), self.v_threshold, self.surrogate).reshape(x_seq.shape).to(x_seq.dtype)

    def forward_compiled(self, x_seq):
        # fill the matrix cache outside the graph: filling it inside would change the guarded
        # attribute and cost a second compilation on the next call
        self.matrices(compute_dtype(x_seq), x_seq.device)
        return super().forward_compiled(x_seq)

    def forward_reference(self, x_seq):
        return self.forward_serial(x_seq, state_dtype=x_seq.dtype)  # the float64 serial recurrence

    def extra_repr(self):
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, braincog_compat={self.braincog_compat}, "
                + super().extra_repr())


_PSU_DOC_PARAMS = """
    ``seq_len``: T the matrices are built for; ``tau`` > 1 (any > 0 with ``braincog_compat``);
    ``v_threshold``: V_th (BrainCog scripts use 0.5); ``braincog_compat``: d = 1/τ as BrainCog's code."""


@register
class PSU(_PSUBase):
    __doc__ = "Parallel spiking unit: fixed LIF integration, reset estimated from σ(U); no learnable weights." \
        + _PSU_DOC_PARAMS

    spec = NeuronSpec(
        name="psu", family="psu", causal=True, serial_inference=True, fixed_length=True,
        integer_spikes=False, cost=_PSU_COST, source=f"{_SOURCE} PSU (spec §4 R1-R4)",
        summary="parallel spiking unit: U = A·I, H = U - B·σ(U), two fixed T×T GEMMs",
    )

    def __init__(self, *, backend="eager", seq_len=None, tau=2.0, v_threshold=0.5, braincog_compat=False,
                 surrogate="atan", surrogate_alpha=None):
        super().__init__(backend=backend, seq_len=seq_len)
        self._init_common(seq_len, tau, v_threshold, braincog_compat, surrogate, surrogate_alpha)

    def potential(self, x):
        a, k = self.matrices(x.dtype, x.device)
        return psu_potential(x, a, k, self.v_threshold)

    def init_state(self, batch_shape, *, device=None, dtype=torch.float32):
        zeros = torch.zeros(tuple(batch_shape), device=device, dtype=dtype)
        return PSUState(zeros, zeros.clone())

    def step(self, x_t, state):
        """O(1) state, no limit on the number of steps."""
        h, u, q = psu_step(x_t.to(state.u.dtype), state.u, state.q, self.tau, self.decay, self.v_threshold)
        return fire(h, self.v_threshold, self.surrogate).to(x_t.dtype), PSUState(u, q)


class _HistoryPSU(_PSUBase):
    """IPSU/RPSU serial inference: explicit sums over all past inputs with the row t of each matrix."""

    def init_state(self, batch_shape, *, device=None, dtype=torch.float32):
        return HistoryState(0, dtype)

    def step(self, x_t, state):
        t = state.t
        if t >= self.seq_len:
            raise ValueError(
                f"{self.spec.name}: serial inference is limited to seq_len={self.seq_len} steps (its weights are "
                f"per time step); step {t} was requested. Build it with a larger seq_len."
            )
        dtype = state.dtype
        inputs = state.inputs + [x_t.to(dtype)]
        xs = torch.stack(inputs)  # [t+1, *batch]
        gates = torch.stack(state.gates) if state.gates else xs[:0]  # [t, *batch]
        # z_t = Σ_{j≤t} W[t][j]·X_j + b_t: only the causal part of row t is ever read
        z = _weighted_sum(self.weight[t, :t + 1].to(dtype), xs) + self.bias[t].to(dtype)
        h, gate = self.row(t, xs, z, gates)
        s = fire(h, self.v_threshold, self.surrogate).to(x_t.dtype)
        return s, HistoryState(t + 1, dtype, inputs, state.gates + [gate])

    def row(self, t, xs, z, gates):  # pragma: no cover - abstract
        """(H_t, the value kept for later rows) from inputs X_0..X_t, z_t and past gates."""
        raise NotImplementedError


@register
class IPSU(_HistoryPSU):
    __doc__ = "Input-aware PSU: learnable causal ``weight`` [T,T] and ``bias`` [T] replace the integration." \
        + _PSU_DOC_PARAMS + """
    ``variant``: "linear" = BrainCog's IPSU (H = D - K·I, linear in I), "prob" = its PPSU (H = D - K·σ(D))."""

    spec = NeuronSpec(
        name="ipsu", family="psu", causal=True, serial_inference=True, fixed_length=True,
        integer_spikes=False, cost=_IPSU_COST, source=f"{_SOURCE} IPSU, PPSU (spec §4 R5)",
        summary="input-aware PSU: learnable causal T×T integration, fixed reset kernel",
    )

    def __init__(self, *, backend="eager", seq_len=None, tau=2.0, v_threshold=0.5, variant="linear",
                 braincog_compat=False, surrogate="atan", surrogate_alpha=None):
        super().__init__(backend=backend, seq_len=seq_len)
        self._init_common(seq_len, tau, v_threshold, braincog_compat, surrogate, surrogate_alpha)
        check_choice("ipsu", "variant", variant, IPSU_VARIANTS)
        self.variant = variant
        self._init_weights(self.seq_len)

    def potential(self, x):
        _, k = self.matrices(x.dtype, x.device)
        return ipsu_potential(x, self.weight.to(x.dtype), self.bias.to(x.dtype), k, self.variant)

    def row(self, t, xs, z, gates):
        k_row = _powers(self.decay, t, include_now=False, like=xs)  # K[t][j], j < t
        if self.variant == "linear":
            return z - _weighted_sum(k_row, xs[:t]), z  # the gate is unused by "linear"
        return z - _weighted_sum(k_row, gates), torch.sigmoid(z)

    def extra_repr(self):
        return f"variant={self.variant!r}, " + super().extra_repr()


@register
class RPSU(_HistoryPSU):
    __doc__ = "Reset-aware PSU: fixed integration A·I, learnable causal ``weight`` and ``bias`` estimate " \
        "the spikes of the reset term." + _PSU_DOC_PARAMS

    spec = NeuronSpec(
        name="rpsu", family="psu", causal=True, serial_inference=True, fixed_length=True,
        integer_spikes=False, cost=_RPSU_COST, source=f"{_SOURCE} RPSU (spec §4 R6)",
        summary="reset-aware PSU: fixed integration, learnable causal T×T spike estimate",
    )

    def __init__(self, *, backend="eager", seq_len=None, tau=2.0, v_threshold=0.5, braincog_compat=False,
                 surrogate="atan", surrogate_alpha=None):
        super().__init__(backend=backend, seq_len=seq_len)
        self._init_common(seq_len, tau, v_threshold, braincog_compat, surrogate, surrogate_alpha)
        self._init_weights(self.seq_len)

    def potential(self, x):
        a, k = self.matrices(x.dtype, x.device)
        return rpsu_potential(x, a, self.weight.to(x.dtype), self.bias.to(x.dtype), k)

    def row(self, t, xs, z, gates):
        a_row = _powers(self.decay, t, include_now=True, like=xs) / self.tau  # A[t][j], j ≤ t
        k_row = _powers(self.decay, t, include_now=False, like=xs)
        return _weighted_sum(a_row, xs) - _weighted_sum(k_row, gates), torch.sigmoid(z)
