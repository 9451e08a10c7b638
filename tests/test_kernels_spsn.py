"""Triton SPSN (perfsuite.kernels.spsn) against the float64 two-state recurrence and the module's own
sampler (CPU: Triton interpreter, tiny shapes). Modules built with the same seed draw the same uniforms,
so spikes must be equal in fp64 and gradients equal to rounding."""
import pytest
import torch

pytest.importorskip("triton")

from neuron_checks import assert_grads_match, assert_spikes_match, build_pair

from perfsuite import neurons
from perfsuite.kernels.spsn import spsn_membrane
from perfsuite.neurons.spsn import spsn_potential_serial

VARIANTS = [
    dict(seed=3),
    dict(seed=4, sampling="gumbel"),
    dict(seed=5, tau_mem=0.005, tau_syn=0.03, dt=0.002),
]


def test_triton_backend_is_registered():
    assert "triton" in neurons.backends_of("spsn")


@pytest.mark.parametrize("shape", [(1, 4), (9, 5), (12, 2, 3)])
@pytest.mark.parametrize("ab", [(0.95, 0.9), (0.3, 0.7)])
def test_membrane_equals_serial_recurrence(shape, ab):
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(spsn_membrane(x, *ab), spsn_potential_serial(x, *ab), rtol=1e-12, atol=1e-12)


def test_membrane_by_hand():
    """α = β = 0.5, X = [1, 2]: I = [1, 2.5], U = [0.5, 0.25 + 1.25] = [0.5, 1.5]."""
    x = torch.tensor([[1.0], [2.0]])
    assert spsn_membrane(x, 0.5, 0.5).squeeze(1).tolist() == [0.5, 1.5]


@pytest.mark.parametrize("params", VARIANTS)
@pytest.mark.parametrize("shape", [(1, 3), (11, 2, 5)])
def test_fp64_spikes_equal_reference(params, shape):
    x = torch.randn(shape, dtype=torch.float64) * 20
    s = assert_spikes_match("spsn", x, "triton", **params)
    assert 0 < s.mean().item() < 1 or shape[0] == 1  # the test input reaches both outcomes


@pytest.mark.parametrize("params", VARIANTS)
def test_fp64_gradients_equal_reference(params):
    x = torch.randn(8, 2, 3, dtype=torch.float64) * 20
    assert_grads_match("spsn", x, backend="triton", **params)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
def test_low_precision_inputs(dtype, tol):
    x = (torch.randn(10, 16) * 20).to(dtype)
    s = assert_spikes_match("spsn", x, "triton", min_equal=0.99, seed=7)
    assert s.dtype == dtype
    mod, ref = build_pair("spsn", "triton", seed=7)
    xa, xb = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    (mod(xa)).sum().backward()
    (ref(xb)).sum().backward()
    assert xa.grad.dtype == dtype
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("T", [1000, 30000])
def test_gpu_long_sequences_match_eager(T):
    """CUDA: 4 096 neurons up to T = 30 000, fp32, against the eager FFT path with the same seed."""
    x = torch.randn(T, 4096, device="cuda") * 20
    mod, ref = build_pair("spsn", "triton", seed=11)
    ref.backend = "eager"
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa, sb = mod(xa), ref(xb)
    assert (sa == sb).float().mean().item() >= 0.999
    sa.sum().backward()
    sb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-3, atol=1e-3)
