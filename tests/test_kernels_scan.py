"""Triton gated linear scan (perfsuite.kernels.scan) against the float64 loop
`perfsuite.neurons.scan.linear_scan_reference` and autograd through it (CPU: Triton interpreter)."""
import pytest
import torch

pytest.importorskip("triton")

from perfsuite.kernels.scan import gated_scan
from perfsuite.neurons.scan import linear_scan_reference


def _inputs(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64) * 0.9 + 0.05  # decays in (0, 1)
    b = torch.randn(shape, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


def _check(shape, h0=False, block_n=None, bt=None, rtol=1e-10, atol=1e-12):
    a, b = _inputs(shape)
    h0t = torch.randn(shape[1:], dtype=torch.float64) if h0 else None
    ins = [t.clone().requires_grad_(True) for t in (a, b) + ((h0t,) if h0 else ())]
    ref_ins = [t.clone().requires_grad_(True) for t in (a, b) + ((h0t,) if h0 else ())]
    h = gated_scan(ins[0], ins[1], ins[2] if h0 else None, block_n=block_n, bt=bt)
    r = linear_scan_reference(ref_ins[0].log(), ref_ins[1], ref_ins[2] if h0 else None)
    assert h.shape == r.shape and h.dtype == torch.float64
    torch.testing.assert_close(h, r, rtol=rtol, atol=atol)
    g = torch.randn(shape, dtype=torch.float64)
    (h * g).sum().backward()
    (r * g).sum().backward()
    for name, x, y in zip(("a", "b", "h0"), ins, ref_ins):
        torch.testing.assert_close(x.grad, y.grad, rtol=rtol, atol=atol, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("shape,block_n,bt", [
    ((1, 5), None, None),        # T = 1
    ((7, 3), None, 4),           # T not a multiple of the tile
    ((8, 33), 16, 4),            # several programs, N not a multiple of the block, T a multiple of BT
    ((13, 2, 9), 8, 2),          # batch shape, last tile partial
])
def test_fp64_forward_and_grads_equal_reference(shape, block_n, bt):
    _check(shape, block_n=block_n, bt=bt)


@pytest.mark.parametrize("bt", [2, 4])
def test_initial_state(bt):
    _check((9, 6), h0=True, bt=bt)


@pytest.mark.parametrize("shape,bt", [((1, 4), None), ((10, 3, 5), 4)])
def test_constant_decay(shape, bt):
    """A Python-number decay (PSU, SPSN): same result and dL/db as the float64 loop with that decay."""
    _, b = _inputs(shape)
    b1, b2 = b.clone().requires_grad_(True), b.clone().requires_grad_(True)
    h = gated_scan(0.6, b1, bt=bt)
    r = linear_scan_reference(torch.full(shape, 0.6, dtype=torch.float64).log(), b2)
    torch.testing.assert_close(h, r, rtol=1e-12, atol=1e-12)
    g = torch.randn(shape, dtype=torch.float64)
    (h * g).sum().backward()
    (r * g).sum().backward()
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-12, atol=1e-12)


def test_worked_example():
    """H_1 = 1, H_2 = 0.5·1 + 2 = 2.5, H_3 = 0.25·2.5 − 1 = −0.375 (by hand)."""
    a = torch.tensor([0.3, 0.5, 0.25])[:, None]
    b = torch.tensor([1.0, 2.0, -1.0])[:, None]
    assert gated_scan(a, b).squeeze(1).tolist() == [1.0, 2.5, -0.375]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-5), (torch.float16, 1e-5)])
def test_low_precision_inputs_accumulate_in_fp32(dtype, tol):
    """Half inputs: H in fp32, compared with the float64 loop on the same (rounded) inputs."""
    a, b = _inputs((11, 20), dtype)
    a.requires_grad_(True)
    b.requires_grad_(True)
    h = gated_scan(a, b)
    assert h.dtype == torch.float32
    ad, bd = a.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    r = linear_scan_reference(ad.log(), bd)
    torch.testing.assert_close(h.double(), r, rtol=tol, atol=tol)
    h.sum().backward()
    r.sum().backward()
    assert a.grad.dtype == dtype and b.grad.dtype == dtype
    # gradients are rounded to the input dtype on the way out
    gtol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(a.grad.double(), ad.grad, rtol=gtol, atol=gtol)
    torch.testing.assert_close(b.grad.double(), bd.grad, rtol=gtol, atol=gtol)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        gated_scan(torch.rand(3, 4), torch.rand(3, 5))
    with pytest.raises(ValueError, match="h0 must be a tensor of shape"):
        gated_scan(torch.rand(3, 4), torch.rand(3, 4), torch.rand(5))
    with pytest.raises(ValueError, match="floating-point"):
        gated_scan(torch.ones(3, 4, dtype=torch.int64), torch.rand(3, 4))


@pytest.mark.gpu
@pytest.mark.parametrize("T", [1000, 30000])
def test_gpu_long_sequences_match_chunked_scan(T):
    """CUDA: 4 096 channels up to T = 30 000 against the eager chunked log-space scan (fp32)."""
    from perfsuite.neurons.scan import linear_scan

    a = torch.rand(T, 4096, device="cuda") * 0.2 + 0.79
    b = torch.randn(T, 4096, device="cuda")
    a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    a2, b2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    h, r = gated_scan(a1, b1), linear_scan(a2.log(), b2)
    torch.testing.assert_close(h, r, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(h)
    (h * g).sum().backward()
    (r * g).sum().backward()
    torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-3, atol=1e-3)
