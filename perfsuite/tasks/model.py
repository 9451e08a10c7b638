"""The one small spiking model every neuron is trained in for extrapolation:
input projection → (neuron → Linear) × layers → readout, time-first [T, B, D] → logits [T, B, K].

Neurons tied to a fixed T are built for the training length; `SpikingModel.forward` evaluates a longer
sequence with the model's *length policy* (see `length_policy`).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import neurons


def length_policy(cell: neurons.Neuron) -> tuple[str, str]:
    """How a neuron is evaluated at a length other than its training length: (policy, why).

    * ``native``: the neuron takes any T (LIF, PLIF, sliding PSN, SPSN, DSN);
    * ``rebuild``: tied to T but has no T-sized learned weights (PSU): rebuilt for the new length;
    * ``window``: T-sized learned weights (masked PSN, IPSU, RPSU): the sequence is cut into windows of
      the training length, the neuron state is reset at each window start, the last window is zero-padded
      at its end (causal neurons: padding after a step cannot change that step's output);
    * ``unsupported``: not causal (PSN): its output at t sees inputs after t, i.e. the targets.
    """
    spec, neuron = cell.spec, cell.spec.name
    if not spec.causal:
        return "unsupported", f"{neuron} is not causal: its output at t uses inputs after t (the targets)"
    if not spec.fixed_length:
        return "native", ""
    if not any(True for _ in cell.parameters()):
        return "rebuild", f"{neuron} is rebuilt for each evaluation length (no T-sized learned weights)"
    return "window", f"{neuron} has T-sized learned weights: windows of the training length, state reset"


class SpikingModel(nn.Module):
    def __init__(self, neuron: str, neuron_params: dict, *, input_dim: int, hidden: int, layers: int,
                 num_classes: int, train_len: int, backend: str = "eager"):
        super().__init__()
        self.neuron, self.neuron_params, self.backend = neuron, dict(neuron_params), backend
        self.train_len, self.hidden = train_len, hidden
        self.inp = nn.Linear(input_dim, hidden)
        self.cells = nn.ModuleList(self._build(train_len) for _ in range(layers))
        self.policy, self.policy_reason = length_policy(self.cells[0])
        self.mixes = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.readout = nn.Linear(hidden, num_classes)

    def _build(self, seq_len: int) -> neurons.Neuron:
        params = dict(self.neuron_params)
        if "features" in neurons.info(self.neuron).params:
            params["features"] = self.hidden
        return neurons.build(self.neuron, backend=self.backend, seq_len=seq_len, **params)

    def _layers(self, h: torch.Tensor, cells, serial: bool = False) -> torch.Tensor:
        for i, cell in enumerate(cells):
            h = cell.forward_serial(h) if serial else cell(h)
            if i < len(self.mixes):
                h = self.mixes[i](h.to(self.mixes[i].weight.dtype))
        return self.readout(h.to(self.readout.weight.dtype))

    def forward(self, x: torch.Tensor, serial: bool = False) -> torch.Tensor:
        """Logits [T, B, K] for inputs [T, B, D] of any length, following the length policy."""
        T = x.shape[0]
        h = self.inp(x)
        if self.policy == "native" or T == self.train_len:
            return self._layers(h, self.cells, serial)
        if self.policy == "rebuild":
            cells = [self._build(T).to(h.device) for _ in self.cells]
            for new, old in zip(cells, self.cells):
                new.load_state_dict(old.state_dict())
            return self._layers(h, cells, serial)
        if self.policy == "window":
            L = self.train_len
            pad = (-T) % L
            hp = torch.cat([h, h.new_zeros((pad,) + tuple(h.shape[1:]))]) if pad else h
            outs = [self._layers(hp[s:s + L], self.cells, serial) for s in range(0, T + pad, L)]
            return torch.cat(outs)[:T]
        raise ValueError(self.policy_reason)
