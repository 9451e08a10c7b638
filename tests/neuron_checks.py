"""Checks shared by every neuron's tests: backends vs the float64 reference, gradients vs autograd of
the reference, forward vs the loop of step. Each neuron test file calls these with its own parameters."""
from __future__ import annotations

import torch

from perfsuite import neurons


def build_pair(name, backend, seq_len=None, **params):
    """A module for ``backend`` and a reference module sharing the same parameter values."""
    torch.manual_seed(1)
    mod = neurons.build(name, backend=backend, seq_len=seq_len, **params)
    ref = neurons.build(name, backend="reference", seq_len=seq_len, **params)
    ref.load_state_dict(mod.state_dict())
    return mod, ref


def assert_spikes_match(name, x, backend, seq_len=None, min_equal=1.0, **params):
    """Spikes of ``backend`` on ``x`` equal the reference's on at least ``min_equal`` of the elements
    (1.0 = exactly; lower for fp32 paths where H may sit within rounding of the threshold)."""
    mod, ref = build_pair(name, backend, seq_len, **params)
    with torch.no_grad():
        s = mod(x)
        r = ref(x.double())
    assert s.shape == x.shape and s.dtype == x.dtype
    equal = (s.double() == r).double().mean().item()
    assert equal >= min_equal, f"{name}/{backend}: only {equal:.4f} of spikes equal the reference"
    return s


def assert_grads_match(name, x, seq_len=None, backend="eager", rtol=1e-6, atol=1e-8, **params):
    """float64: d(sum(s·g))/dx and d/dparams of ``backend`` equal autograd through the reference."""
    mod, ref = build_pair(name, backend, seq_len, **params)
    mod, ref = mod.double(), ref.double()
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for m in (mod, ref):
        xx = x.double().clone().requires_grad_(True)
        (m(xx) * g).sum().backward()
        grads.append([xx.grad] + [p.grad for p in m.parameters()])
    for (n, _), a, b in zip([("x", None)] + list(mod.named_parameters()), grads[0], grads[1]):
        assert (a is None) == (b is None), f"{name}: gradient of {n} present in only one backend"
        if a is not None:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=n: f"{name}/{backend} grad {n}: {m}")


def assert_serial_matches(name, x, seq_len=None, **params):
    """forward (eager, float64) equals the loop of step."""
    mod = neurons.build(name, backend="eager", seq_len=seq_len, **params).double()
    with torch.no_grad():
        torch.testing.assert_close(mod.forward_serial(x.double()), mod(x.double()), rtol=0, atol=0)
