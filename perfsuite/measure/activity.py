"""Spike statistics of one call (firing rates) and spike agreement with the float64 reference.

Spikes are ``[T, B, N]`` per layer. A *neuron* is one (batch element, feature) pair: it is silent when
it never fires in the T steps and saturated when it fires at every step (at the top level for
integer-spike neurons). For integer-spike neurons (DSN: counts in 0..levels) the firing rate is the
mean count divided by ``levels``, so it stays in [0, 1] and is comparable with binary neurons.
"""
from __future__ import annotations

from typing import Sequence

import torch


def layer_rate(spikes: torch.Tensor, levels: int = 1) -> float:
    """Mean firing rate of one layer's spikes [T, *batch] (counts divided by ``levels``)."""
    return spikes.double().mean().item() / levels


def activity(layers: Sequence[torch.Tensor], levels: int = 1) -> dict:
    """Firing-rate block for the spikes of each layer, each [T, *batch]: mean rate (over every element of
    every layer), per-layer rates, and the fractions of silent and saturated neurons."""
    if not layers:
        raise ValueError("activity: no layers given; expected a list of spike tensors [T, *batch]")
    total = count = silent = saturated = 0.0
    per_layer = []
    for s in layers:
        s = s.detach().double()
        per_layer.append(s.mean().item() / levels)
        total += s.sum().item() / levels
        count += s.numel()
        per_neuron = s.reshape(s.shape[0], -1)
        silent += (per_neuron.sum(0) == 0).sum().item()
        saturated += (per_neuron >= levels).all(0).sum().item()
    neurons = sum(s[0].numel() for s in layers)
    return {"firing_rate": total / count, "per_layer": per_layer, "silent_fraction": silent / neurons,
            "saturated_fraction": saturated / neurons}


def spike_count(layers: Sequence[torch.Tensor]) -> float:
    """Total spikes (sum of counts) over the layers: what drives synaptic operations."""
    return float(sum(s.detach().double().sum().item() for s in layers))


def agreement(layers: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> dict:
    """Spikes of a backend vs the float64 reference on the same input and weights.

    ``equal_fraction`` over every element of every layer; ``first_divergent_step`` is the first time
    step at which any layer differs (None when all spikes are equal)."""
    if len(layers) != len(reference):
        raise ValueError(f"agreement: {len(layers)} layers vs {len(reference)} reference layers")
    equal = count = 0
    first = None
    for s, r in zip(layers, reference):
        if s.shape != r.shape:
            raise ValueError(f"agreement: spikes {tuple(s.shape)} vs reference {tuple(r.shape)}")
        same = s.detach().double() == r.detach().double()
        equal += same.sum().item()
        count += same.numel()
        bad_steps = (~same.reshape(same.shape[0], -1).all(1)).nonzero()
        if bad_steps.numel():
            t = int(bad_steps[0, 0])
            first = t if first is None else min(first, t)
    return {"equal_fraction": equal / count, "first_divergent_step": first,
            "reference_seq_len": int(layers[0].shape[0])}
