"""Triton LIF/PLIF kernels against the float64 reference (CPU: Triton interpreter, tiny shapes).

fp64 inputs run the kernels in fp64 (same operation order as the reference), so spikes must be equal
and gradients equal to rounding. fp32/bf16/fp16 inputs compute in fp32: spikes may flip where H sits
within rounding of V_th, so they are compared on most elements, and gradients with tolerances.
"""
import pytest
import torch

pytest.importorskip("triton")

from neuron_checks import assert_grads_match, assert_spikes_match, build_pair

from perfsuite import neurons
from perfsuite.kernels.lif import lif

X = torch.tensor([2.5, 0.5, 1.75, 1.25])[:, None]
ORACLE = [  # spec §1.4, tau=2, v_th=1
    (dict(reset="hard"), [1, 0, 1, 0]),
    (dict(reset="soft"), [1, 0, 1, 0]),
    (dict(reset="hard", decay_input=False), [1, 0, 1, 1]),
    (dict(reset="soft", decay_input=False), [1, 1, 1, 1]),
]
VARIANTS = [
    dict(reset="hard"),
    dict(reset="soft", decay_input=False),
    dict(reset="hard", detach_reset=True, surrogate="atan"),
    dict(reset="soft", detach_reset=True, surrogate="rect", surrogate_alpha=0.5),
    dict(reset="hard", decay_input=False, v_reset=-0.3, v_threshold=0.7, surrogate="atan", surrogate_alpha=3.0),
    dict(reset="soft", v_threshold=0.3),
]


def test_triton_backend_is_registered():
    assert "triton" in neurons.backends_of("lif") and "triton" in neurons.backends_of("plif")


@pytest.mark.parametrize("params,spikes", ORACLE)
def test_lif_worked_examples(params, spikes):
    m = neurons.build("lif", backend="triton", tau=2.0, **params)
    assert m(X).squeeze(1).tolist() == spikes


def test_plif_worked_example():
    assert neurons.build("plif", backend="triton", init_tau=3.0)(X).squeeze(1).tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("shape", [(1, 3), (3, 5), (13, 2, 17)])
@pytest.mark.parametrize("params", [VARIANTS[1], VARIANTS[4]])
def test_fp64_spikes_equal_reference(name, shape, params):
    x = torch.randn(shape, dtype=torch.float64) * 1.5 + 0.5
    assert_spikes_match(name, x, "triton", **params)


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("params", VARIANTS)
def test_fp64_gradients_equal_reference(name, params):
    x = torch.randn(9, 2, 3, dtype=torch.float64) + 0.5
    assert_grads_match(name, x, backend="triton", **params)


def _grads_vs_reference(name, x, block_n=None, bt=None, **params):
    """(kernel grads, reference grads) of x and the module parameters for a forced launch shape."""
    mod, ref = build_pair(name, "eager", **params)
    mod, ref = mod.double(), ref.double()
    g = torch.randn(x.shape, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    xb = x.double().clone().requires_grad_(True)
    s = lif(xa, mod.charge_factor(torch.float64), mod.params(), block_n=block_n, bt=bt)
    (s * g).sum().backward()
    (ref(xb) * g).sum().backward()
    return [xa.grad] + [p.grad for p in mod.parameters()], [xb.grad] + [p.grad for p in ref.parameters()], s, ref(xb)


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("T,N,block_n,bt", [(1, 7, 4, 4), (3, 37, 16, 2), (11, 50, 16, 4), (16, 64, 32, 8)])
def test_several_programs_and_tiles(name, T, N, block_n, bt):
    """N not a multiple of the block, T below / not a multiple of the tile: same spikes, same grads
    (PLIF's dL/dw is summed over per-program partials)."""
    x = torch.randn(T, N, dtype=torch.float64) + 0.5
    ours, theirs, s, r = _grads_vs_reference(name, x, block_n=block_n, bt=bt, reset="soft", surrogate="atan")
    assert torch.equal(s, r.detach())
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_fp32_matches_reference(name, reset):
    x = torch.randn(16, 40) * 1.5 + 0.5
    assert_spikes_match(name, x, "triton", reset=reset, min_equal=0.99)
    mod, ref = build_pair(name, "triton", reset=reset, surrogate="atan")
    g = torch.randn(x.shape)
    xa, xb = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    (mod(xa) * g).sum().backward()
    (ref(xb) * g.double()).sum().backward()
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=1e-3, atol=1e-4)
    if name == "plif":
        torch.testing.assert_close(mod.w.grad.double(), ref.w.grad.double(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["lif", "plif"])
def test_half_inputs(name, dtype):
    """Half inputs: fp32 state, output in the input dtype; compared with the reference run on the
    same (rounded) inputs, so only threshold ties from fp32 vs fp64 state can differ."""
    x = (torch.randn(12, 24) + 0.5).to(dtype)
    s = assert_spikes_match(name, x, "triton", reset="hard", min_equal=0.99)
    assert s.dtype == dtype
    mod, ref = build_pair(name, "triton", reset="hard")
    xa, xb = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    mod(xa).sum().backward()
    ref(xb).sum().backward()
    assert xa.grad.dtype == dtype
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=2e-2, atol=2e-2)


def test_no_grad_forward_and_inputs_that_need_no_grad():
    """Inference (no tensor needs grad) skips the H store and must give the same spikes."""
    x = torch.randn(7, 9, dtype=torch.float64) + 0.5
    mod, _ = build_pair("plif", "triton")
    mod = mod.double()
    with torch.no_grad():
        a = mod(x)
    b = mod(x.clone().requires_grad_(True))
    assert torch.equal(a, b.detach())


def test_non_contiguous_input():
    x = (torch.randn(6, 8, dtype=torch.float64) + 0.5).t()  # [8, 6] non-contiguous
    assert_spikes_match("lif", x, "triton", reset="soft")


def test_bad_launch_shape_is_rejected():
    with pytest.raises(ValueError, match="block_n=3"):
        lif(torch.randn(2, 4), 0.5, neurons.build("lif").params(), block_n=3)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,min_equal,tol", [(torch.float32, 0.9999, 1e-4), (torch.bfloat16, 0.999, 3e-2)])
@pytest.mark.parametrize("T", [1000, 30000])
def test_gpu_long_sequences_match_eager(T, dtype, min_equal, tol):
    """CUDA: N = 4 096 neurons up to T = 30 000 against the eager loop (fp32 state in both)."""
    x = (torch.randn(T, 4096, device="cuda") * 1.5 + 0.5).to(dtype)
    for name in ("lif", "plif"):
        mod, ref = build_pair(name, "triton", reset="hard", surrogate="atan")
        ref.backend = "eager"
        mod, ref = mod.cuda(), ref.cuda()
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        sa, sb = mod(xa), ref(xb)
        assert (sa == sb).float().mean().item() >= min_equal
        g = torch.randn_like(sa)
        (sa * g).sum().backward()
        (sb * g).sum().backward()
        # spikes that differ change the gradient path; compare where the spike trains agree
        agree = (sa == sb).all(dim=0)
        torch.testing.assert_close(xa.grad[:, agree].float(), xb.grad[:, agree].float(), rtol=tol, atol=tol)
