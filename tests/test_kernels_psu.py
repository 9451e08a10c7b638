"""Triton PSU, IPSU, RPSU (perfsuite.kernels.psu) against the spec's worked examples (§4) and the float64
reference (CPU: Triton interpreter, tiny shapes). fp64 inputs run in fp64: spikes equal, gradients equal
to rounding; half inputs compute in fp32 and are compared within tolerances."""
import pytest
import torch

pytest.importorskip("triton")

from neuron_checks import assert_grads_match, assert_spikes_match, build_pair

from perfsuite import neurons
from perfsuite.kernels.psu import psu_family

X = torch.tensor([2.5, 0.5, 1.75, 1.25])
W_FULL = torch.tensor([[.6, .9, .9, .9], [.3, .6, .9, .9], [.1, .3, .6, .9], [0, .1, .3, .6]])
ORACLE = {"psu": [1, 1, 1, 1], "ipsu": [1, 0, 1, 0], "rpsu": [1, 0, 1, 1]}  # spec §4, tau 2, V_th 0.5
NAMES = ["psu", "ipsu", "rpsu"]
VARIANTS = [
    ("psu", dict()),
    ("psu", dict(tau=3.0, v_threshold=0.3)),
    ("psu", dict(tau=4.0, braincog_compat=True)),  # d = 1/τ, not 1 − 1/τ
    ("ipsu", dict()),
    ("ipsu", dict(variant="prob", tau=3.0)),
    ("rpsu", dict()),
    ("rpsu", dict(tau=1.5, braincog_compat=True, v_threshold=0.7)),
]


@pytest.mark.parametrize("name", NAMES)
def test_triton_backend_is_registered(name):
    assert "triton" in neurons.backends_of(name)


@pytest.mark.parametrize("name", NAMES)
def test_worked_example(name):
    m = neurons.build(name, backend="triton", seq_len=4, tau=2.0, v_threshold=0.5)
    if name != "psu":
        with torch.no_grad():
            m.weight.copy_(W_FULL)
            m.bias.zero_()
    with torch.no_grad():
        assert m(X[:, None]).squeeze(1).tolist() == ORACLE[name]


POTENTIAL_CASES = [  # (T, neurons, block_n, bt): T = 1, T not a multiple of the tile, several programs
    (1, 6, None, None), (9, 7, 2, 2), (11, 13, 4, 8),
]


@pytest.mark.parametrize("name,params", VARIANTS)
@pytest.mark.parametrize("T,n,block_n,bt", POTENTIAL_CASES)
def test_fused_potential_equals_the_matrices(name, params, T, n, block_n, bt):
    """H of the fused pass equals the T×T GEMM formulation of perfsuite.neurons.psu (psu_matrices with the
    module's d, so braincog_compat is covered), and so do dL/dX, dL/dW, dL/db of sum(H·G)."""
    torch.manual_seed(4)
    mod = neurons.build(name, backend="triton", seq_len=T, **params).double()
    x = torch.randn(T, n, dtype=torch.float64) + 0.5
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    h = psu_family(mod, xa, spikes=False, block_n=block_n, bt=bt)
    r = mod.potential(xb)
    torch.testing.assert_close(h, r, rtol=1e-12, atol=1e-12)
    go = torch.randn(T, n, dtype=torch.float64)
    (h * go).sum().backward()
    fused = [xa.grad] + [p.grad.clone() for p in mod.parameters()]
    mod.zero_grad()
    (r * go).sum().backward()
    gemm = [xb.grad] + [p.grad for p in mod.parameters()]
    for what, a, b in zip(["x", "weight", "bias"], fused, gemm):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, w=what: f"grad {w}: {m}")


@pytest.mark.parametrize("name,params", VARIANTS)
@pytest.mark.parametrize("shape", [(1, 3), (7, 2, 5)])
def test_fp64_spikes_equal_reference(name, params, shape):
    x = torch.randn(shape, dtype=torch.float64) + 0.8
    assert_spikes_match(name, x, "triton", seq_len=shape[0], **params)


@pytest.mark.parametrize("name,params", VARIANTS)
def test_fp64_gradients_equal_reference(name, params):
    x = torch.randn(6, 2, 3, dtype=torch.float64) + 0.8
    assert_grads_match(name, x, seq_len=6, backend="triton", **params)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_inputs(name, dtype, tol):
    """fp32 state for half inputs; spikes may flip only within rounding of V_th."""
    x = (torch.randn(8, 12) + 0.8).to(dtype)
    s = assert_spikes_match(name, x, "triton", seq_len=8, min_equal=0.98)
    assert s.dtype == dtype
    mod, ref = build_pair(name, "triton", seq_len=8)
    xa, xb = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    g = torch.randn(x.shape)
    sa, sb = mod(xa), ref(xb)
    (sa * g).sum().backward()
    (sb * g.double()).sum().backward()
    assert xa.grad.dtype == dtype
    # H does not depend on S here (the reset is estimated from σ), so a flipped spike leaves the gradient
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=tol, atol=tol)
    if name != "psu":
        torch.testing.assert_close(mod.weight.grad.double(), ref.weight.grad.double(), rtol=tol, atol=tol * 10)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_gpu_long_sequence_matches_eager(name):
    """CUDA: T = 4 096, 4 096 neurons, fp32: scans vs the eager T×T GEMMs (TF32 off for the reference)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    T = 4096
    x = torch.randn(T, 4096, device="cuda") + 0.8
    mod, ref = build_pair(name, "triton", seq_len=T)
    ref.backend = "eager"
    mod, ref = mod.cuda(), ref.cuda()
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa, sb = mod(xa), ref(xb)
    assert (sa == sb).float().mean().item() >= 0.999
    g = torch.randn_like(sa)
    (sa * g).sum().backward()
    (sb * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_gpu_psu_thirty_thousand_steps_match_reference():
    """CUDA: PSU at T = 30 000 (fp64, 512 neurons) against the float64 recurrence of the reference
    backend: spikes equal, dL/dX of sum(S·G) within rounding; and fp32 spikes within rounding of V_th."""
    T = 30000
    x = torch.randn(T, 512, device="cuda", dtype=torch.float64) + 0.8
    mod, ref = build_pair("psu", "triton", seq_len=T)
    mod, ref = mod.cuda().double(), ref.cuda().double()
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa, sb = mod(xa), ref(xb)
    assert torch.equal(sa, sb)
    g = torch.randn_like(sa)
    (sa * g).sum().backward()
    (sb * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-8, atol=1e-10)
    with torch.no_grad():
        s32 = mod(x.float())
    assert (s32.double() == sb).double().mean().item() >= 0.999
