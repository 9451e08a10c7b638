"""Triton DSN (perfsuite.kernels.dsn) against the spec's worked example (§5.5) and the float64 reference
(CPU: Triton interpreter, tiny shapes). fp64 inputs run the kernels in fp64, so spikes must be equal and
gradients equal to rounding; half inputs compute in fp32 and are compared within tolerances."""
import pytest
import torch

pytest.importorskip("triton")

from neuron_checks import assert_grads_match, assert_spikes_match, build_pair

from perfsuite import neurons
from perfsuite.kernels.dsn import dsn_membrane, dsn_spikes
from perfsuite.neurons.dsn import dsn_membrane_reference

X_EX = torch.tensor([3.0, 1, 4, 0, 2, 5])[:, None]
ORACLE = {  # spec §5.5, tau: (H, S)
    1.0: ([1.5, 1.188770, 1.701610, 0.457634, 1.585194, 1.747144], [2, 1, 2, 0, 2, 2]),
    0.25: ([2.8125, 1.036824, 2.676065, 0.014000, 1.989610, 2.521335], [3, 1, 3, 0, 2, 3]),
    16.0: ([0.127190, 0.178742, 0.226543, 0.208692, 0.349848, 0.363948], [0, 0, 0, 0, 0, 0]),
}
VARIANTS = [
    dict(features=3, k=3, tau=0.5),
    dict(features=3, k=1, tau=16.0, levels=2),  # decays close to 1: the expm1 branch
    dict(features=3, k=4, spikes="binary"),
    dict(features=3, k=2, spikes="binary", surrogate="atan", surrogate_alpha=3.0),
    dict(features=3, k=2, spikes="binary", surrogate="sigmoid", tau=1.0),
]


def test_triton_backend_is_registered():
    assert "triton" in neurons.backends_of("dsn")


@pytest.mark.parametrize("tau", sorted(ORACLE))
def test_worked_example(tau):
    H, S = ORACLE[tau]
    m = neurons.build("dsn", backend="triton", features=1, k=2, tau=tau)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.5, 1.0]]))
        m.bias.fill_(-3.0)
        assert m(X_EX).squeeze(1).tolist() == S
        h = dsn_membrane(X_EX, m.weight, m.bias, tau).squeeze(1)
    torch.testing.assert_close(h.double(), torch.tensor(H, dtype=torch.float64), rtol=0, atol=2e-6)


@pytest.mark.parametrize("shape", [(1, 3), (5, 3), (9, 2, 3)])
@pytest.mark.parametrize("params", [VARIANTS[0], VARIANTS[3]])
def test_fp64_spikes_equal_reference(shape, params):
    x = torch.randn(shape, dtype=torch.float64) + 0.8
    assert_spikes_match("dsn", x, "triton", **params)


@pytest.mark.parametrize("params", VARIANTS)
def test_fp64_gradients_equal_reference(params):
    x = torch.randn(7, 2, 3, dtype=torch.float64) + 0.8
    assert_grads_match("dsn", x, backend="triton", **params)


@pytest.mark.parametrize("T,M,C,k,block_n,bt", [(1, 3, 5, 3, 8, 4), (6, 5, 3, 4, 4, 4), (11, 3, 7, 2, 16, 2)])
def test_several_programs_and_tiles(T, M, C, k, block_n, bt):
    """N = M·C not a multiple of the block, k > T, T not a multiple of the tile: membrane and
    gradients of x, weight and bias equal the float64 loop (weights summed over the batch columns)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, M, C, dtype=torch.float64, generator=g) + 0.5
    w = torch.randn(C, k, dtype=torch.float64, generator=g)
    b = torch.randn(C, dtype=torch.float64, generator=g)
    ins = [t.clone().requires_grad_(True) for t in (x, w, b)]
    ref = [t.clone().requires_grad_(True) for t in (x, w, b)]
    h = dsn_membrane(*ins, 0.5, block_n=block_n, bt=bt)
    r = dsn_membrane_reference(*ref, 0.5)
    torch.testing.assert_close(h, r, rtol=1e-10, atol=1e-12)
    go = torch.randn(h.shape, dtype=torch.float64, generator=g)
    (h * go).sum().backward()
    (r * go).sum().backward()
    for name, p, q in zip(("x", "weight", "bias"), ins, ref):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=lambda m, name=name: f"grad {name}: {m}")


FIRE_MODES = [
    dict(spikes="integer", levels=4),
    dict(spikes="binary"),                                           # levels 1, rect straight-through
    dict(spikes="binary", surrogate="atan", surrogate_alpha=2.5),
    dict(spikes="binary", surrogate="sigmoid"),
]
FUSED_SHAPES = [  # (T, M, C, k, block_n, bt): T = 1; k > T; k − 1 > bt (tile widened); T % bt != 0
    (1, 3, 5, 3, 8, 4), (3, 2, 3, 5, 4, 2), (9, 1, 5, 6, 4, 2), (13, 5, 3, 2, 16, 4),
]


@pytest.mark.parametrize("fire", FIRE_MODES)
@pytest.mark.parametrize("T,M,C,k,block_n,bt", FUSED_SHAPES)
def test_fused_spikes_and_gradients_equal_reference(fire, T, M, C, k, block_n, bt):
    """The fused forward (conv, decay, scan, fire in one pass) gives the spikes of the module's own rule
    on the float64 loop, and the fused backward the gradients of x, weight and bias through it (odd
    N = M·C, several programs, time tiles cut in the middle of the conv window)."""
    g = torch.Generator().manual_seed(5)
    ref = neurons.build("dsn", backend="reference", features=C, k=k, tau=0.5, **fire).double()
    with torch.no_grad():
        ref.weight.copy_(torch.randn(C, k, dtype=torch.float64, generator=g))
        ref.bias.copy_(torch.randn(C, dtype=torch.float64, generator=g))
    x = torch.rand(T, M, C, dtype=torch.float64, generator=g) * 6.0 - 1.0
    ins = [t.detach().clone().requires_grad_(True) for t in (x, ref.weight, ref.bias)]
    s = dsn_spikes(*ins, ref.tau, levels=ref.levels, surrogate=ref.surrogate, block_n=block_n, bt=bt)
    xr = x.clone().requires_grad_(True)
    r = ref(xr)
    assert s.dtype == torch.float64 and torch.equal(s, r)
    if fire["spikes"] == "integer":
        assert r.max() > 1  # the levels above 1 are exercised
    go = torch.randn(s.shape, dtype=torch.float64, generator=g)
    (s * go).sum().backward()
    (r * go).sum().backward()
    for name, p, q in zip(("x", "weight", "bias"), ins, (xr, ref.weight, ref.bias)):
        assert q.grad.abs().sum() > 0, f"grad {name} is zero: the case tests nothing"
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=lambda m, name=name: f"grad {name}: {m}")


def test_round_half_to_even_like_torch():
    """Eq. 10's rounding in the kernel: ties go to the even level, as torch.round. k = 1, w = 0 and
    bias −800 give log a = −800/τ, so a = 0 and H_t = X_t exactly."""
    x = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5, 2.4999, 2.5001], dtype=torch.float64)[:, None]
    w = torch.zeros(1, 1, dtype=torch.float64)
    b = torch.full((1,), -800.0, dtype=torch.float64)  # log a = −800/τ: a = 0, 1 − a = 1, H_t = X_t
    for t in range(x.shape[0]):
        s = dsn_spikes(x[t:t + 1], w, b, 1.0, levels=4)
        assert s.item() == torch.round(torch.clamp(x[t], 0, 4)).item(), f"x = {x[t].item()}"


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
def test_low_precision_inputs(dtype, tol):
    """fp32 state: the membrane matches the float64 loop on the same (rounded) inputs to fp32 rounding;
    spikes may flip only where H sits within rounding of a level boundary; gradients within ``tol``
    (they are returned in the input dtype)."""
    x = (torch.randn(12, 4, 3) + 0.8).to(dtype)
    mod, ref = build_pair("dsn", "triton", features=3, k=3)
    h = dsn_membrane(x, mod.weight, mod.bias, mod.tau)
    assert h.dtype == torch.float32
    r = dsn_membrane_reference(x.double(), ref.weight, ref.bias, ref.tau)
    torch.testing.assert_close(h.double(), r, rtol=1e-5, atol=1e-5)
    s = assert_spikes_match("dsn", x, "triton", min_equal=0.99, features=3, k=3)
    assert s.dtype == dtype
    xa, xb = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    go = torch.randn(x.shape)
    (mod(xa) * go).sum().backward()
    (ref(xb) * go.double()).sum().backward()
    assert xa.grad.dtype == dtype
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(mod.weight.grad.double(), ref.weight.grad.double(), rtol=tol, atol=tol * 10)
    torch.testing.assert_close(mod.bias.grad.double(), ref.bias.grad.double(), rtol=tol, atol=tol * 10)


def test_input_only_and_parameter_only_gradients():
    """Backward with only x (frozen parameters) or only the parameters requiring grad."""
    mod, ref = build_pair("dsn", "triton", features=3, k=2)
    mod, ref = mod.double(), ref.double()
    x = torch.randn(5, 3, dtype=torch.float64) + 0.8
    for p in mod.parameters():
        p.requires_grad_(False)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    mod(xa).sum().backward()
    ref(xb).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for p in mod.parameters():
        p.requires_grad_(True)
    mod(x).sum().backward()
    torch.testing.assert_close(mod.weight.grad, ref.weight.grad)


def test_bad_channel_count_is_rejected():
    w, b = torch.zeros(3, 2), torch.zeros(3)
    with pytest.raises(ValueError, match="C = 3"):
        dsn_membrane(torch.randn(4, 5), w, b, 0.25)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("T", [1000, 30000])
def test_gpu_long_sequences_match_eager(T, dtype, tol):
    """CUDA: 8 × 512 channels up to T = 30 000 against the eager conv + chunked log-space scan."""
    x = (torch.randn(T, 8, 512, device="cuda") + 0.8).to(dtype)
    mod, ref = build_pair("dsn", "triton", features=512, k=4)
    ref.backend = "eager"
    mod, ref = mod.cuda(), ref.cuda()
    ha = dsn_membrane(x, mod.weight, mod.bias, mod.tau)
    hb = ref.membrane(x)
    torch.testing.assert_close(ha, hb.float(), rtol=1e-4, atol=1e-4)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa, sb = mod(xa), ref(xb)
    assert (sa == sb).float().mean().item() >= 0.999
    g = torch.randn_like(sa)
    (sa * g).sum().backward()
    (sb * g).sum().backward()
    torch.testing.assert_close(xa.grad.float(), xb.grad.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(mod.weight.grad, ref.weight.grad, rtol=tol, atol=tol * T / 100)
