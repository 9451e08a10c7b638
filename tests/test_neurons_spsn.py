"""SPSN against the spec's worked example (§3), the float64 recurrence and its sampling semantics."""
import math

import pytest
import torch
from neuron_checks import assert_grads_match, assert_spikes_match

from perfsuite import neurons
from perfsuite.neurons.spsn import (
    spsn_coefficients,
    spsn_fire,
    spsn_forward,
    spsn_potential,
    spsn_potential_serial,
    spsn_step,
)

BACKENDS = ["reference", "eager", "compiled"]
SAMPLINGS = ["bernoulli", "gumbel"]
ALPHA, BETA = spsn_coefficients(0.02, 0.02, 0.001)  # spec §3 defaults: α = β = exp(-0.05)
X = torch.tensor([2.0, 0.0, 1.0, 3.0])
U_ORACLE = torch.tensor([0.097541, 0.185568, 0.313547, 0.574914], dtype=torch.float64)
P_ORACLE = torch.tensor([0.524366, 0.546259, 0.577751, 0.639896], dtype=torch.float64)


def uniforms_of(seed, shape):
    """The uniforms a neuron built with ``seed`` draws on its first call (CPU)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def test_coefficients():
    assert ALPHA == BETA == pytest.approx(0.951229, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_potential_worked_example(dtype):
    x = X.to(dtype)[:, None]
    for fn in (spsn_potential, spsn_potential_serial):
        u = fn(x, ALPHA, BETA).squeeze(1).double()
        torch.testing.assert_close(u, U_ORACLE, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.sigmoid(u), P_ORACLE, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_worked_example_spikes_every_backend(backend, sampling):
    """With the neuron's uniforms known, the spikes are fixed: 1[u < sigmoid(U)] for "bernoulli",
    1[u < sigmoid(2U)] for "gumbel" (logits (U, -U)), with U from the spec's oracle."""
    x = X[:, None].expand(4, 256).contiguous()
    u = uniforms_of(7, x.shape).double()
    q = torch.sigmoid((1.0 if sampling == "bernoulli" else 2.0) * U_ORACLE)[:, None]
    assert (u - q).abs().min() > 1e-5  # no uniform within the oracle's rounding: the check is exact
    m = neurons.build("spsn", backend=backend, sampling=sampling, seed=7)
    s = m(x)
    assert s.dtype == x.dtype
    assert torch.equal(s, (u < q).float())


SHAPES = [(1, 3), (7, 5), (13, 2, 3), (64, 33)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_eager_matches_reference(shape, sampling):
    x = torch.randn(shape) * 2
    assert_spikes_match("spsn", x, "eager", min_equal=0.999, sampling=sampling, seed=11)


@pytest.mark.parametrize("shape", [(1, 3), (13, 2, 3)])
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_compiled_matches_reference(shape, sampling):
    x = torch.randn(shape) * 2
    assert_spikes_match("spsn", x, "compiled", min_equal=0.999, sampling=sampling, seed=11)


def test_long_sequence_potential_fft_equals_recurrence():
    """T = 4096: the FFT form equals the float64 recurrence (no wrap-around of the circular product)."""
    x = torch.randn(4096, 3, dtype=torch.float64)
    ref = spsn_potential_serial(x, ALPHA, BETA)
    torch.testing.assert_close(spsn_potential(x, ALPHA, BETA), ref, rtol=0, atol=1e-10)
    # fp32 FFT: error relative to the potential's scale
    err = (spsn_potential(x.float(), ALPHA, BETA).double() - ref).abs().max()
    assert err < 1e-5 * ref.abs().max()


def test_long_sequence_spikes_match_reference():
    x = torch.randn(4096, 2) * 2
    assert_spikes_match("spsn", x, "eager", min_equal=0.999, seed=3)


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_gradients_match_reference(sampling):
    """Same seed ⇒ same uniforms in both modules; float64 eager (FFT) grads = autograd of the recurrence."""
    x = torch.randn(9, 4, dtype=torch.float64)
    assert_grads_match("spsn", x, sampling=sampling, seed=3)
    assert_grads_match("spsn", x, backend="compiled", sampling=sampling, seed=3)


def test_bernoulli_gradient_is_p_through_the_sigmoid():
    """T = 1: U = (1-β)·X, so d S/d X = (1-β)·p·p(1-p) with p = sigmoid(U) (∂S/∂p := p)."""
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[None].requires_grad_(True)
    neurons.build("spsn", seed=0).double()(x).sum().backward()
    p = torch.sigmoid((1 - BETA) * x.detach())
    torch.testing.assert_close(x.grad, (1 - BETA) * p * p * (1 - p))


def test_gumbel_gradient_is_straight_through_soft_sample():
    """T = 1: d S/d X = (1-β)·2·σ'(z), z = 2U - logit(u): the temperature-1 soft sample's gradient."""
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[None].requires_grad_(True)
    s = neurons.build("spsn", sampling="gumbel", seed=5).double()(x)
    s.sum().backward()
    u = uniforms_of(5, x.shape).double()
    z = 2 * (1 - BETA) * x.detach() - torch.log(u / (1 - u))
    assert torch.equal(s.detach(), (z > 0).double())
    torch.testing.assert_close(x.grad, 2 * (1 - BETA) * torch.sigmoid(z) * (1 - torch.sigmoid(z)))


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_forward_equals_loop_of_step_same_uniforms(sampling):
    """The functional step with the same uniforms reproduces the parallel forward."""
    x = torch.randn(17, 2, 3, dtype=torch.float64) * 2
    uniforms = uniforms_of(1, x.shape)
    par = spsn_forward(x, uniforms, ALPHA, BETA, sampling)
    i = u = torch.zeros(2, 3, dtype=torch.float64)
    steps = []
    for t in range(x.shape[0]):
        i, u = spsn_step(x[t], i, u, ALPHA, BETA)
        steps.append(spsn_fire(u, uniforms[t], sampling))
    assert torch.equal(torch.stack(steps), par)


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_module_forward_equals_forward_serial(sampling):
    """Two modules with one seed: forward and the loop of step draw the same uniforms on CPU (the
    generator's stream is consumed in order, so T draws of [*batch] equal one draw of [T, *batch])."""
    x = torch.randn(23, 4, 3) * 2
    par = neurons.build("spsn", sampling=sampling, seed=9)(x)
    ser = neurons.build("spsn", sampling=sampling, seed=9).forward_serial(x)
    assert (par == ser).float().mean() >= 0.999


@pytest.mark.parametrize("sampling,scale", [("bernoulli", 1.0), ("gumbel", 2.0)])
def test_firing_statistics(sampling, scale):
    """Constant drive at T = 1 (U = (1-β)·X): the firing rate is sigmoid(scale·U) within 5 standard errors."""
    n = 20000
    for u_target in (-1.0, 0.5):
        x = torch.full((1, n), u_target / (1 - BETA))
        rate = neurons.build("spsn", sampling=sampling, seed=21)(x).mean().item()
        p = 1 / (1 + math.exp(-scale * u_target))
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n), (u_target, rate, p)


def test_seeds_and_streams():
    x = torch.randn(8, 64)
    a, b = neurons.build("spsn", seed=1), neurons.build("spsn", seed=1)
    first = a(x)
    assert torch.equal(first, b(x))
    assert not torch.equal(first, a(x))  # the stream moves on
    a.reseed()
    assert torch.equal(first, a(x))  # and restarts
    assert not torch.equal(first, neurons.build("spsn", seed=2)(x))
    g = torch.Generator().manual_seed(1)
    assert torch.equal(first, neurons.build("spsn", seed=g)(x))
    torch.manual_seed(4)
    glob = neurons.build("spsn")(x)
    torch.manual_seed(4)
    assert torch.equal(glob, neurons.build("spsn")(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_keep_dtype(dtype):
    x = (torch.randn(20, 8) * 2).to(dtype)
    s = neurons.build("spsn", seed=0)(x)
    assert s.dtype == dtype and set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(s.float(), neurons.build("spsn", seed=0)(x.float()))


def test_spec():
    spec = neurons.info("spsn")
    assert spec.causal and spec.serial_inference and not spec.fixed_length and not spec.integer_spikes
    assert spec.params["sampling"] == "bernoulli" and spec.params["seed"] is None
    # O(N·T log T): doubling T a bit more than doubles the FLOPs, far from the 4× of a T² method
    ratio = spec.flops(8192, 100) / spec.flops(4096, 100)
    assert 2.0 < ratio < 2.3
    assert spec.min_bytes(64, 10, "bf16") == 2 * 2 * 64 * 10


@pytest.mark.parametrize("params,needle", [
    (dict(sampling="gauss"), "sampling='gauss'"), (dict(tau_mem=0.0), "tau_mem=0.0"),
    (dict(tau_syn=-1.0), "tau_syn=-1.0"), (dict(dt=0), "dt=0"), (dict(seed=-1), "seed=-1"),
    (dict(seed="1"), "seed='1'"), (dict(tau=2.0), "valid parameters"),
])
def test_invalid_parameters(params, needle):
    with pytest.raises(ValueError) as e:
        neurons.build("spsn", **params)
    assert needle in str(e.value)
