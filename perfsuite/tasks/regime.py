"""`hidden_regime`: infer a slowly switching hidden regime from noisy spikes (long memory).

A hidden regime z_t ∈ {0..K-1} follows a Markov chain that stays with probability 1 − 1/mean_duration and
otherwise jumps to one of the other regimes uniformly, so regime durations are geometric with mean
``mean_duration`` steps. Each step emits D Bernoulli spikes with regime-specific rates R[z_t, :]. The task
is to output p(z_t | x_{≤t}) at every step.

Optimum: the forward (Bayes) filter computes the exact posterior p(z_t | x_{≤t}); its log loss on the same
sequences is the lowest any causal predictor can reach in expectation (`bayes_loss`). Evidence accumulates
over many steps (a single step says little when the rates are close), so a model must integrate over
hundreds of steps to approach the optimum — a long-memory test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class HiddenRegime:
    regimes: int = 2
    channels: int = 8
    mean_duration: float = 200.0
    rate_low: float = 0.1
    rate_high: float = 0.3
    seed: int = 0

    name = "hidden_regime"
    kind = "spikes"

    def __post_init__(self):
        if not (isinstance(self.regimes, int) and self.regimes >= 2):
            raise ValueError(f"hidden_regime: regimes={self.regimes!r} is invalid; expected an int >= 2")
        if not (isinstance(self.channels, int) and self.channels >= 1):
            raise ValueError(f"hidden_regime: channels={self.channels!r} is invalid; expected an int >= 1")
        if not self.mean_duration > 1:
            raise ValueError(f"hidden_regime: mean_duration={self.mean_duration!r} is invalid; expected > 1")
        if not 0 < self.rate_low < self.rate_high < 1:
            raise ValueError("hidden_regime: expected 0 < rate_low < rate_high < 1, got "
                             f"rate_low={self.rate_low!r}, rate_high={self.rate_high!r}")
        K, D = self.regimes, self.channels
        rng = np.random.default_rng(self.seed)
        # each regime raises a different random half of the channels
        self.rates = np.full((K, D), self.rate_low)
        for k in range(K):
            self.rates[k, rng.permutation(D)[: max(1, D // 2)]] = self.rate_high
        stay = 1.0 - 1.0 / self.mean_duration
        self.transition = np.full((K, K), (1.0 - stay) / (K - 1))
        np.fill_diagonal(self.transition, stay)

    @property
    def num_classes(self) -> int:
        return self.regimes

    @property
    def input_dim(self) -> int:
        return self.channels

    def baseline_loss(self) -> float:
        """Loss of the prior (stationary, uniform) predictor that ignores the input: log K."""
        return float(np.log(self.regimes))

    def sample(self, batch: int, seq_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spikes [T, B, D] float32, regimes [T, B] long)``."""
        K = self.regimes
        g = generator
        trans = torch.as_tensor(self.transition)
        z = torch.randint(0, K, (batch,), generator=g)
        zs = [z]
        for _ in range(seq_len - 1):
            z = torch.multinomial(trans[z], 1, generator=g).squeeze(1)
            zs.append(z)
        regimes = torch.stack(zs)  # [T, B]
        rates = torch.as_tensor(self.rates, dtype=torch.float32)[regimes]  # [T, B, D]
        spikes = (torch.rand(rates.shape, generator=g) < rates).float()
        return spikes, regimes

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float()

    def posterior(self, inputs: torch.Tensor) -> torch.Tensor:
        """Bayes filter p(z_t | x_{≤t}): [T, B, K] float64 (normalised each step, so no underflow)."""
        x = inputs.to(torch.float64)
        R = torch.as_tensor(self.rates)
        A = torch.as_tensor(self.transition)
        # log-likelihood of each step's spikes under each regime: [T, B, K]
        loglik = x @ torch.log(R).T + (1 - x) @ torch.log1p(-R).T
        belief = torch.full((x.shape[1], self.regimes), 1.0 / self.regimes, dtype=torch.float64)
        out = []
        for t in range(x.shape[0]):
            prior = belief if t == 0 else belief @ A
            post = prior * torch.exp(loglik[t] - loglik[t].max(dim=1, keepdim=True).values)
            belief = post / post.sum(dim=1, keepdim=True)
            out.append(belief)
        return torch.stack(out)

    def bayes_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-position log loss [T, B] of the Bayes filter on these very sequences."""
        post = self.posterior(inputs)
        return -torch.log(post.gather(2, targets.unsqueeze(2)).squeeze(2).clamp_min(1e-300))
