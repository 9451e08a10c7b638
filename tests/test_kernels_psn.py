"""Triton backend of PSN, masked PSN and sliding PSN against the float64 reference (interpreter, tiny
shapes). fp64 inputs compute in fp64, so spikes must be equal and gradients equal to rounding."""
import pytest
import torch

pytest.importorskip("triton")

from neuron_checks import assert_grads_match, assert_spikes_match, build_pair

from perfsuite import neurons
from perfsuite.kernels import psn as kpsn

SHAPES = [(1, 3), (3, 5), (11, 2, 17)]


def test_registered():
    for name in ("psn", "masked_psn", "sliding_psn"):
        assert "triton" in neurons.backends_of(name)


def test_worked_examples():
    """spec §2.4: sliding PSN k=3 exp_init with H_0 = 0 exactly (Θ(0) = 1)."""
    m = neurons.build("sliding_psn", backend="triton", k=3)
    x = torch.tensor([1.0, 0.0, 2.0, -1.0, 0.5])[:, None]
    assert m(x).squeeze(1).tolist() == [1, 0, 1, 0, 0]
    m = neurons.build("masked_psn", backend="triton", seq_len=4, k=2, lambda_=1.0)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[.3, 0, 0, 0], [.2, .5, 0, 0], [.1, .2, .4, .3], [0, .1, .3, .6]]))
    assert m(torch.tensor([2.5, 0.5, 1.75, 1.25])[:, None]).squeeze(1).tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize("shape", SHAPES)
def test_psn(shape):
    x = torch.randn(shape, dtype=torch.float64)
    assert_spikes_match("psn", x, "triton", seq_len=shape[0])
    assert_grads_match("psn", x, seq_len=shape[0], backend="triton")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 3])
def test_masked_psn(shape, lam, k, monkeypatch):
    """λ = 1 takes the banded path; a 4-step band block makes T = 11 span several blocks."""
    monkeypatch.setattr(kpsn, "BAND_BLOCK", 4)
    k = min(k, shape[0])
    x = torch.randn(shape, dtype=torch.float64)
    assert_spikes_match("masked_psn", x, "triton", seq_len=shape[0], k=k, lambda_=lam)
    assert_grads_match("masked_psn", x, seq_len=shape[0], backend="triton", k=k, lambda_=lam)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k,exp_init", [(1, True), (3, False), (8, True)])
def test_sliding_psn(shape, k, exp_init):
    x = torch.randn(shape, dtype=torch.float64)
    assert_spikes_match("sliding_psn", x, "triton", k=k, exp_init=exp_init)
    assert_grads_match("sliding_psn", x, backend="triton", k=k, exp_init=exp_init, surrogate="sigmoid")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name,params", [("psn", dict(seq_len=8)), ("masked_psn", dict(seq_len=8, k=3)),
                                         ("sliding_psn", dict(k=4))])
def test_lower_precision(name, params, dtype):
    """fp32 accumulation: spikes equal the reference on the same (rounded) inputs except near-ties;
    gradients within a tolerance of the input dtype."""
    x = torch.randn(8, 24).to(dtype)
    params = dict(params)
    seq_len = params.pop("seq_len", None)
    s = assert_spikes_match(name, x, "triton", seq_len=seq_len, min_equal=0.98, **params)
    assert s.dtype == dtype
    mod, ref = build_pair(name, "triton", seq_len, **params)
    xa, xb = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    s, r = mod(xa), ref(xb)
    g = torch.randn(x.shape)
    (s * g.to(dtype)).sum().backward()
    (r * g.double()).sum().backward()
    agree = (s.double() == r).all(dim=0)  # a flipped spike changes nothing in the grads here (no reset)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(xa.grad.double()[:, agree], xb.grad[:, agree], rtol=tol, atol=tol)
    torch.testing.assert_close(mod.weight.grad.double(), ref.weight.grad.double(), rtol=tol, atol=tol * 10)


@pytest.mark.gpu
@pytest.mark.parametrize("T", [1024, 30000])
def test_gpu_sliding_psn_long(T):
    """CUDA, T up to 30 000 (no T×T matrix): Triton vs eager conv1d in fp32, bf16 within tolerance."""
    for dtype, min_equal in ((torch.float32, 0.9999), (torch.bfloat16, 0.99)):
        x = torch.randn(T, 4096, device="cuda").to(dtype)
        mod, ref = build_pair("sliding_psn", "triton", k=32, exp_init=False)
        ref.backend = "eager"
        mod, ref = mod.cuda(), ref.cuda()
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        sa, sb = mod(xa), ref(xb)
        assert (sa == sb).float().mean().item() >= min_equal
        sa.float().sum().backward()
        sb.float().sum().backward()
        torch.testing.assert_close(mod.weight.grad, ref.weight.grad, rtol=2e-2, atol=1e-2)


@pytest.mark.gpu
def test_gpu_masked_psn_band_matches_dense():
    """CUDA, T = 2 048 > BAND_BLOCK: the banded λ = 1 path equals the dense masked GEMM."""
    x = torch.randn(2048, 1024, device="cuda")
    mod, ref = build_pair("masked_psn", "triton", seq_len=2048, k=32)
    ref.backend = "eager"
    mod, ref = mod.cuda(), ref.cuda()
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa, sb = mod(xa), ref(xb)
    assert (sa == sb).float().mean().item() >= 0.9999
    sa.sum().backward()
    sb.sum().backward()
    torch.testing.assert_close(mod.weight.grad, ref.weight.grad, rtol=1e-3, atol=1e-3)
