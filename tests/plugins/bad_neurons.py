"""Plugin neurons that misbehave on purpose, for the runner's tests (loaded from a scenario as
``tests.plugins.bad_neurons:RaisingNeuron``, ``SleepingNeuron``, ``SelfKillingNeuron``)."""
from __future__ import annotations

import time

from perfsuite.neurons import Cost, Neuron, NeuronSpec

_COST = Cost(flops_forward=lambda T, N, b: T * N, flops_backward=lambda T, N, b: T * N,
             bytes_forward=lambda T, N, b: 2 * b * T * N, bytes_backward=lambda T, N, b: 2 * b * T * N)


def _spec(name: str, summary: str) -> NeuronSpec:
    return NeuronSpec(name=name, family="test", causal=True, serial_inference=False, fixed_length=False,
                      integer_spikes=False, cost=_COST, source="perfsuite tests", summary=summary)


class RaisingNeuron(Neuron):
    """Raises in every eager call (calibration included): the runner must write an ``error`` row."""

    spec = _spec("test_raising", "raises when called")

    def forward_reference(self, x_seq):
        return (x_seq >= 1.0).to(x_seq.dtype)

    def forward_eager(self, x_seq):
        raise RuntimeError("plugin neuron failed on purpose")


class SleepingNeuron(Neuron):
    """Sleeps ``sleep_s`` in every eager call: passes any short timeout."""

    spec = _spec("test_sleeping", "sleeps past its timeout")

    def __init__(self, *, backend="eager", sleep_s=60.0):
        super().__init__(backend=backend)
        self.sleep_s = float(sleep_s)

    def forward_reference(self, x_seq):
        return (x_seq >= 1.0).to(x_seq.dtype)

    def forward_eager(self, x_seq):
        time.sleep(self.sleep_s)
        return self.forward_reference(x_seq)


class SelfKillingNeuron(Neuron):
    """Kills its own process (SIGKILL) in its first eager call: a worker that dies mid-point, as the
    out-of-memory killer or a segfault would end it."""

    spec = _spec("test_self_killing", "kills its worker process")

    def forward_reference(self, x_seq):
        return (x_seq >= 1.0).to(x_seq.dtype)

    def forward_eager(self, x_seq):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
