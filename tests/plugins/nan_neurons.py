"""A plugin neuron whose output is NaN, for the runner's reliability tests (loaded from a scenario as
``tests.plugins.nan_neurons:NaNNeuron``): its firing rate is NaN, which must become an error row with
the field named, never the end of the sweep."""
from __future__ import annotations

import math

from perfsuite.neurons import Cost, Neuron, NeuronSpec

_COST = Cost(flops_forward=lambda T, N, b: T * N, flops_backward=lambda T, N, b: T * N,
             bytes_forward=lambda T, N, b: 2 * b * T * N, bytes_backward=lambda T, N, b: 2 * b * T * N)


class NaNNeuron(Neuron):
    """Returns NaN for every step (as a diverging bf16 neuron at a long T would)."""

    spec = NeuronSpec(name="test_nan", family="test", causal=True, serial_inference=False, fixed_length=False,
                      integer_spikes=False, cost=_COST, source="perfsuite tests", summary="outputs NaN")

    def forward_reference(self, x_seq):
        return x_seq * math.nan

    def forward_eager(self, x_seq):
        return x_seq * math.nan
