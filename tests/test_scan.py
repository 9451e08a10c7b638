"""The shared linear-recurrence scan against a float64 sequential loop: values, gradients, long T."""
import pytest
import torch

from perfsuite.neurons.scan import linear_scan, linear_scan_reference


def _inputs(shape, dtype=torch.float64, strength=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_a = -torch.rand(shape, generator=g, dtype=torch.float64) * strength
    b = torch.randn(shape, generator=g, dtype=torch.float64)
    return log_a.to(dtype), b.to(dtype)


def _loop(log_a, b, h0=None):
    """Independent float64 loop written here (not the module's own reference) for the core check."""
    h = torch.zeros(b.shape[1:], dtype=torch.float64) if h0 is None else h0.double()
    out = []
    for t in range(b.shape[0]):
        h = torch.exp(log_a[t].double()) * h + b[t].double()
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("T", [1, 2, 31, 32, 33, 100, 1000])
@pytest.mark.parametrize("chunk", [2, 5, 32])
@pytest.mark.parametrize("with_h0", [False, True])
def test_values_match_sequential_loop(T, chunk, with_h0):
    log_a, b = _inputs((T, 3, 2))
    h0 = torch.randn(3, 2, dtype=torch.float64) if with_h0 else None
    torch.testing.assert_close(linear_scan(log_a, b, h0, chunk=chunk), _loop(log_a, b, h0), rtol=1e-12, atol=1e-12)


def test_reference_is_the_same_loop():
    log_a, b = _inputs((17, 4))
    h0 = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(linear_scan_reference(log_a, b, h0), _loop(log_a, b, h0), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(7,), (40, 3), (130, 2, 2)])
def test_time_only_and_batch_shapes(shape):
    log_a, b = _inputs(shape)
    h = linear_scan(log_a, b, chunk=4)
    assert h.shape == b.shape
    torch.testing.assert_close(h, _loop(log_a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T,chunk", [(1, 4), (45, 4), (130, 4), (97, 32)])
def test_gradients_match_autograd_of_loop(T, chunk):
    """d/d(log_a, b, h0) of sum(H·g): the adjoint-scan backward equals autograd through the loop."""
    log_a, b = _inputs((T, 3))
    h0 = torch.randn(3, dtype=torch.float64)
    g = torch.randn(T, 3, dtype=torch.float64)
    grads = []
    for fn in (lambda la, bb, hh: linear_scan(la, bb, hh, chunk=chunk), _loop):
        xs = [t.clone().requires_grad_(True) for t in (log_a, b, h0)]
        (fn(*xs) * g).sum().backward()
        grads.append([x.grad for x in xs])
    for name, a, r in zip(("log_a", "b", "h0"), *grads):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"grad {name}: {m}")


def test_gradcheck_small():
    log_a, b = _inputs((11, 2))
    h0 = torch.randn(2, dtype=torch.float64)
    xs = [t.clone().requires_grad_(True) for t in (log_a, b, h0)]
    assert torch.autograd.gradcheck(lambda la, bb, hh: linear_scan(la, bb, hh, chunk=3), xs)


def test_long_sequence_fp32_strong_and_weak_decay():
    """T = 30 000 in fp32 with decays from a ≈ e^-60 (reset-like) to a ≈ 1 - 1e-4 (integrator-like):
    finite, no spurious underflow, equal to the float64 loop."""
    T = 30_000
    g = torch.Generator().manual_seed(3)
    log_a = torch.stack([
        torch.full((T,), -60.0),                         # every step forgets everything: H_t = b_t
        torch.full((T,), -1e-4),                         # near-perfect integrator
        -torch.rand(T, generator=g) * 8.0,               # mixed strong decay
        -torch.nn.functional.softplus(-3 * torch.randn(T, generator=g)) / 0.25,  # DSN's τ = 0.25 decay
    ], dim=1).float()
    b = torch.rand(T, 4, generator=g).float() + 0.5
    h = linear_scan(log_a, b)
    assert h.dtype == torch.float32 and torch.isfinite(h).all()
    ref = _loop(log_a, b)
    torch.testing.assert_close(h.double(), ref, rtol=2e-5, atol=1e-5)
    torch.testing.assert_close(h[:, 0], b[:, 0], rtol=0, atol=0)
    assert h[-1, 1].item() > 5000  # integrated, not underflowed: (1 - e^{-3}) / 1e-4 ≈ 9 500 for b ≈ 1


def test_closed_form_geometric_sum():
    """Constant a, b = 1: H_t = (1 − a^t) / (1 − a) — an analytic check at T = 30 000 in fp32."""
    T, log_a = 30_000, -1e-3
    h = linear_scan(torch.full((T, 1), log_a), torch.ones(T, 1))
    t = torch.arange(1, T + 1, dtype=torch.float64)
    expected = -torch.expm1(t * log_a) / -torch.expm1(torch.tensor(log_a, dtype=torch.float64))
    torch.testing.assert_close(h[:, 0].double(), expected, rtol=1e-5, atol=0)


def test_initial_state_decays():
    """b = 0: H_t = h0·exp(Σ_{j≤t} log a_j)."""
    log_a, _ = _inputs((300, 2), strength=0.05)
    h0 = torch.tensor([2.0, -3.0], dtype=torch.float64)
    h = linear_scan(log_a, torch.zeros_like(log_a), h0)
    torch.testing.assert_close(h, h0 * log_a.cumsum(0).exp(), rtol=1e-12, atol=1e-14)


def test_long_sequence_gradients_finite_fp32():
    T = 30_000
    log_a, b = _inputs((T, 2), dtype=torch.float32, strength=6.0)
    log_a.requires_grad_(True)
    b.requires_grad_(True)
    linear_scan(log_a, b).sum().backward()
    assert torch.isfinite(log_a.grad).all() and torch.isfinite(b.grad).all()
    # d(sum H)/d b_t = 1 + a_{t+1} + a_{t+1}a_{t+2} + ... ≥ 1
    assert (b.grad >= 1 - 1e-6).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_fp32(dtype):
    log_a, b = _inputs((500, 3), dtype=dtype)
    h = linear_scan(log_a, b)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.double(), _loop(log_a, b), rtol=1e-5, atol=1e-5)


def test_compiles_and_matches_eager():
    from perfsuite.neurons.base import compile_fn

    log_a, b = _inputs((300, 3), dtype=torch.float32)
    la, bb = log_a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    h = compile_fn(linear_scan)(la, bb)
    torch.testing.assert_close(h, linear_scan(log_a, b), rtol=1e-6, atol=1e-6)
    h.sum().backward()
    la2, bb2 = log_a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    linear_scan(la2, bb2).sum().backward()
    torch.testing.assert_close(la.grad, la2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bb.grad, bb2.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(log_a=torch.zeros(4, 2), b=torch.zeros(4, 3)), "same shape"),
    (dict(log_a=torch.zeros(4, 2), b=torch.zeros(4, 2, dtype=torch.float64)), "same dtype"),
    (dict(log_a=torch.zeros(4, 2, dtype=torch.long), b=torch.zeros(4, 2)), "log_a must be a floating-point"),
    (dict(log_a=torch.zeros(0, 2), b=torch.zeros(0, 2)), "T >= 1"),
    (dict(log_a=torch.zeros(4, 2), b=torch.zeros(4, 2), h0=torch.zeros(3)), "h0 must be a tensor of shape (2,)"),
    (dict(log_a=torch.zeros(4, 2), b=torch.zeros(4, 2), chunk=1), "chunk=1"),
    (dict(log_a=torch.zeros(4, 2), b=torch.zeros(4, 2), chunk=True), "chunk=True"),
])
def test_invalid_arguments(kwargs, needle):
    with pytest.raises(ValueError) as e:
        linear_scan(**kwargs)
    assert needle in str(e.value)
