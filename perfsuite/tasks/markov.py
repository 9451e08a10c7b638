"""`markov_lm`: next-token prediction on a stationary random order-2 Markov chain.

The chain over a vocabulary of V tokens has transition probabilities P[a, b, :] = p(x_{t+1} | x_{t-1}=a,
x_t=b), drawn once from a symmetric Dirichlet(concentration) with a fixed seed. Sequences start from the
stationary distribution of the pair chain, so every position has the same marginal law.

Optimum: predicting x_{t+1} from x_{≤t}, the best possible expected log loss is
* at t = 0 (only x_0 seen): H(X_1 | X_0);
* at t ≥ 1: the entropy rate H(X_{t+1} | X_{t-1}, X_t) = Σ_{a,b} π(a,b) H(P[a,b,:]).
`optimal_loss(T)` averages these over the T predicted positions. The marginal-frequency baseline (a
predictor that ignores the past) has loss H(π_1), the entropy of the one-token marginal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0·log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis)


@dataclass
class MarkovLM:
    vocab: int = 8
    concentration: float = 0.3
    seed: int = 0

    name = "markov_lm"
    kind = "tokens"

    def __post_init__(self):
        if not (isinstance(self.vocab, int) and self.vocab >= 2):
            raise ValueError(f"markov_lm: vocab={self.vocab!r} is invalid; expected an int >= 2")
        if not self.concentration > 0:
            raise ValueError(f"markov_lm: concentration={self.concentration!r} is invalid; expected a number > 0")
        rng = np.random.default_rng(self.seed)
        V = self.vocab
        self.P = rng.dirichlet(np.full(V, float(self.concentration)), size=(V, V))  # [a, b, c]
        # pair chain (a, b) -> (b, c) with prob P[a, b, c]; stationary π by power iteration
        pi = np.full((V, V), 1.0 / V**2)
        for _ in range(10_000):
            new = np.einsum("ab,abc->bc", pi, self.P)
            if np.abs(new - pi).max() < 1e-15:
                pi = new
                break
            pi = new
        self.pair_stationary = pi / pi.sum()
        self.marginal = self.pair_stationary.sum(axis=0)  # law of x_t

    @property
    def num_classes(self) -> int:
        return self.vocab

    @property
    def input_dim(self) -> int:
        return self.vocab

    # ------------------------------------------------------------------ optimum
    @property
    def entropy_rate(self) -> float:
        return float((self.pair_stationary * _entropy(self.P)).sum())

    def first_step_loss(self) -> float:
        """H(X_1 | X_0) under the stationary law."""
        cond = self.pair_stationary / self.marginal[:, None]  # p(x1=b | x0=a) with pair π(a, b)
        return float((self.marginal * _entropy(cond)).sum())

    def optimal_loss(self, seq_len: int, positions: slice | None = None) -> float:
        """Best achievable mean log loss (nats) over the predicted positions ``positions`` of [0, T)."""
        per_pos = np.full(seq_len, self.entropy_rate)
        per_pos[0] = self.first_step_loss()
        return float(per_pos[positions or slice(None)].mean())

    def baseline_loss(self) -> float:
        """Loss of the marginal-frequency predictor (ignores the past)."""
        return float(_entropy(self.marginal))

    # ----------------------------------------------------------------- sampling
    def sample(self, batch: int, seq_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs [T, B] long, targets [T, B] long)``: targets[t] = token t+1 (T+1 tokens drawn)."""
        V = self.vocab
        g = generator
        P = torch.as_tensor(self.P, dtype=torch.float64).reshape(V * V, V)
        pair = torch.multinomial(torch.as_tensor(self.pair_stationary.reshape(-1)), batch, replacement=True,
                                 generator=g)
        tokens = [pair // V, pair % V]
        for _ in range(seq_len - 1):
            nxt = torch.multinomial(P[tokens[-2] * V + tokens[-1]], 1, generator=g).squeeze(1)
            tokens.append(nxt)
        seq = torch.stack(tokens)  # [T+1, B]
        return seq[:-1], seq[1:]

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """One-hot inputs [T, B, V] float32."""
        return torch.nn.functional.one_hot(inputs, self.vocab).float()

    def bayes_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-position log loss [T, B] of the exact Bayes predictor on these very sequences."""
        P = torch.as_tensor(self.P, dtype=torch.float64)
        pi = torch.as_tensor(self.pair_stationary, dtype=torch.float64)
        cond0 = pi / pi.sum(dim=1, keepdim=True)
        loss = torch.empty(inputs.shape, dtype=torch.float64)
        loss[0] = -torch.log(cond0[inputs[0], targets[0]])
        if inputs.shape[0] > 1:
            loss[1:] = -torch.log(P[inputs[:-1], inputs[1:], targets[1:]])
        return loss
