"""Triton backend of PSN, masked PSN and sliding PSN against the float64 reference (interpreter, tiny
shapes). fp64 inputs compute in fp64, so spikes must be equal and gradients equal to rounding."""
import pytest
import torch

pytest.importorskip("triton")

from neuron_checks import assert_grads_match, assert_spikes_match, build_pair

from perfsuite import neurons
from perfsuite.kernels import psn as kpsn
from perfsuite.kernels.tiles import GemmTile
from perfsuite.neurons.psn import masked_psn_band, psn_potential_reference
from perfsuite.neurons.surrogate import heaviside, make_surrogate

SHAPES = [(1, 3), (3, 5), (11, 2, 17)]
#: [4, 32] blocks and 4-step reductions: T = 11 spans three time blocks (the last one partial), N = 34
#: two neuron blocks, and dL/dW is split over the neurons (split-K) into two programs per block
TINY = GemmTile(bm=4, bn=32, bk=4, num_warps=1, num_stages=1, dw_programs=18)


@pytest.fixture
def tiny_tiles(monkeypatch):
    monkeypatch.setattr(kpsn, "CPU_TILES", TINY)


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
def test_psn(shape, tiny_tiles):
    x = torch.randn(shape, dtype=torch.float64)
    assert_spikes_match("psn", x, "triton", seq_len=shape[0])
    assert_grads_match("psn", x, seq_len=shape[0], backend="triton")


@pytest.mark.parametrize("shape,k", [(SHAPES[0], 1), (SHAPES[1], 1), (SHAPES[1], 3), (SHAPES[2], 1), (SHAPES[2], 3),
                                     (SHAPES[2], 11)])
@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_masked_psn(shape, k, lam, tiny_tiles):
    """λ = 1 takes the banded path (k = 1: the diagonal, k = T: the whole lower triangle), λ = 0.5 the
    dense one."""
    x = torch.randn(shape, dtype=torch.float64)
    assert_spikes_match("masked_psn", x, "triton", seq_len=shape[0], k=k, lambda_=lam)
    assert_grads_match("masked_psn", x, seq_len=shape[0], backend="triton", k=k, lambda_=lam)


@pytest.mark.parametrize("tiles", [TINY, GemmTile(bm=1, bn=8, bk=1, num_warps=1, num_stages=1, dw_programs=1)],
                         ids=["tiny", "unit"])
@pytest.mark.parametrize("k", [1, 3])
def test_band_skips_far_blocks(k, tiles, monkeypatch):
    """The banded products read W only up to bm + bk + k − 3 steps below the diagonal (with 1-step
    tiles: the band itself): W is NaN beyond, and S, dL/dX, dL/db and dL/dW on the band still equal
    the reference built from W's band alone."""
    monkeypatch.setattr(kpsn, "CPU_TILES", tiles)
    T, N = 16, 5
    sur = make_surrogate("atan", None)
    w = torch.randn(T, T, dtype=torch.float64) * masked_psn_band(T, k, dtype=torch.float64)
    lag = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    poisoned = w.masked_fill(lag >= k + tiles.bm + tiles.bk - 2, float("nan"))
    assert poisoned.isnan().any()
    x = torch.randn(T, N, dtype=torch.float64)
    g = torch.randn(T, N, dtype=torch.float64)
    b = torch.randn(T, dtype=torch.float64)
    grads = []
    for fn, wi in ((lambda x, w, b: kpsn.mix_fire(x, w, b, sur, band=k), poisoned),
                   (lambda x, w, b: heaviside(psn_potential_reference(x, w, b), sur), w)):
        xi, wi, bi = (t.clone().requires_grad_(True) for t in (x, wi, b))
        s = fn(xi, wi, bi)
        (s * g).sum().backward()
        grads.append((s.detach(), xi.grad, bi.grad, wi.grad * masked_psn_band(T, k, dtype=torch.float64)))
    for name, a, r in zip(("S", "dX", "db", "dW on the band"), *grads):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_h_stored_only_for_training(monkeypatch):
    """Inference writes S only; H (for the surrogate backward) is written when a gradient is needed."""
    seen = []
    real = kpsn._mix_fire_kernel

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                seen.append(kw["STORE_H"])
                return real[grid](*args, **kw)
            return launch

    monkeypatch.setattr(kpsn, "_mix_fire_kernel", Spy())
    m = neurons.build("psn", backend="triton", seq_len=5)
    x = torch.randn(5, 3)
    with torch.no_grad():
        m(x)
    m.requires_grad_(False)
    m(x)
    m.requires_grad_(True)
    m(x).sum().backward()
    assert seen == [False, False, True]
    assert m.weight.grad is not None


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
@pytest.mark.parametrize("name,params", [("psn", {}), ("masked_psn", dict(k=32)), ("masked_psn", dict(k=32, lambda_=0.5))])
@pytest.mark.parametrize("T", [1000, 2048])
def test_gpu_psn_fused_matches_eager(name, params, T):
    """CUDA: the fused GEMM + fire (T not a multiple of the blocks, and a multiple) against eager (cuBLAS
    addmm + heaviside) in fp32; bf16 spikes on the same inputs within the rounding of eager's bf16 H."""
    for dtype, min_equal, tol in ((torch.float32, 0.9999, 1e-3), (torch.bfloat16, 0.99, 5e-2)):
        x = torch.randn(T, 1024, device="cuda").to(dtype)
        mod, ref = build_pair(name, "triton", seq_len=T, **params)
        ref.backend = "eager"
        mod, ref = mod.cuda(), ref.cuda()
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        sa, sb = mod(xa), ref(xb)
        assert sa.dtype == dtype
        assert (sa == sb).float().mean().item() >= min_equal
        g = torch.randn(x.shape, device="cuda").to(dtype)
        (sa * g).float().sum().backward()
        (sb * g).float().sum().backward()
        if dtype == torch.float32:
            torch.testing.assert_close(xa.grad, xb.grad, rtol=tol, atol=tol)
            torch.testing.assert_close(mod.weight.grad, ref.weight.grad, rtol=tol, atol=tol)
            torch.testing.assert_close(mod.bias.grad, ref.bias.grad, rtol=tol, atol=tol)


def test_matmul_precision_recorded_on_the_module(monkeypatch):
    """PSN's fused GEMMs follow torch.backends.cuda.matmul.allow_tf32 for fp32 (as cuBLAS); the module
    records the flag and the precision for the result row (peer_info, stored by the runner)."""
    m = neurons.build("psn", backend="triton", seq_len=3)
    m(torch.randn(3, 4))
    assert m.peer_info == {"library": "perfsuite", "implementation": "triton", "allow_tf32": False,
                           "matmul_precision": "ieee"}
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    m(torch.randn(3, 4))
    # the interpreter's fp32 tl.dot stays IEEE whatever the flag (only a CUDA device has TF32)
    assert m.peer_info["allow_tf32"] is True and m.peer_info["matmul_precision"] == "ieee"
    m(torch.randn(3, 4).to(torch.bfloat16))
    assert m.peer_info["matmul_precision"] == "half (tensor cores)"
