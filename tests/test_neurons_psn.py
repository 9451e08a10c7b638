"""PSN, masked PSN and sliding PSN against the spec's worked examples (§2.4) and the float64 reference."""
import math

import pytest
import torch
from neuron_checks import assert_grads_match, assert_serial_matches, assert_spikes_match

from perfsuite import neurons
from perfsuite.neurons.psn import (
    MaskedPSNState,
    masked_psn_band,
    masked_psn_lambda,
    masked_psn_mask_reference,
    masked_psn_step,
    masked_psn_weight,
    psn_potential,
    psn_potential_reference,
    sliding_psn_exp_weight,
    sliding_psn_potential,
    sliding_psn_potential_reference,
    sliding_psn_step,
)

BACKENDS = ["reference", "eager", "compiled"]

# spec §2.4: X, W, b = −1
# kept as lists so each dtype is built from the decimal values, not from a rounded fp32 copy
XL, WL = [2.5, 0.5, 1.75, 1.25], [[.3, 0, 0, 0], [.2, .5, 0, 0], [.1, .2, .4, .3], [0, .1, .3, .6]]
X, W, B = torch.tensor(XL), torch.tensor(WL), -torch.ones(4)
PSN_H, PSN_S = [-0.25, -0.25, 0.425, 0.325], [0, 0, 1, 1]
MASKED = {  # λ: (masked W, H, S)
    0.5: ([[.3, 0, 0, 0], [.2, .5, 0, 0], [.05, .2, .4, .15], [0, .05, .3, .6]], [-0.25, -0.25, 0.1125, 0.3],
          [0, 0, 1, 1]),
    1.0: ([[.3, 0, 0, 0], [.2, .5, 0, 0], [0, .2, .4, 0], [0, 0, .3, .6]], [-0.25, -0.25, -0.2, 0.275],
          [0, 0, 0, 1]),
}
# sliding PSN, k = 3, exp_init, b = −1, T = 5; H_0 = 0 exactly tests Θ(0) = 1
SX = torch.tensor([1.0, 0.0, 2.0, -1.0, 0.5])
SG = [[1, 0, 0, 0, 0], [.5, 1, 0, 0, 0], [.25, .5, 1, 0, 0], [0, .25, .5, 1, 0], [0, 0, .25, .5, 1]]
SH, SS = [0.0, -0.5, 1.25, -1.0, -0.5], [1, 0, 1, 0, 0]


def close(a, b, dtype):
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=dtype), **tol)


def with_weight(m, w):
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(w))
    return m


# ------------------------------------------------------------------------------ worked examples
@pytest.mark.parametrize("backend", BACKENDS)
def test_psn_worked_example(backend):
    m = with_weight(neurons.build("psn", backend=backend, seq_len=4), W)
    assert m.bias.tolist() == [-1.0] * 4
    assert m(X[:, None]).squeeze(1).tolist() == PSN_S


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psn_worked_example_potential(dtype):
    x, w, b = torch.tensor(XL, dtype=dtype)[:, None], torch.tensor(WL, dtype=dtype), B.to(dtype)
    close(psn_potential(x, w, b).squeeze(1), PSN_H, dtype)
    close(psn_potential_reference(x, w, b).squeeze(1), PSN_H, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_masked_psn_worked_example(backend, lam):
    m = with_weight(neurons.build("masked_psn", backend=backend, seq_len=4, k=2, lambda_=lam), W)
    assert m(X[:, None]).squeeze(1).tolist() == MASKED[lam][2]


@pytest.mark.parametrize("lam", [0.5, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_psn_worked_example_weight_and_potential(lam, dtype):
    wm, h, _ = MASKED[lam]
    w = torch.tensor(WL, dtype=dtype)
    close(masked_psn_weight(w, masked_psn_band(4, 2, dtype=dtype), lam), wm, dtype)
    close(w * masked_psn_mask_reference(4, 2, lam).to(dtype), wm, dtype)
    x = torch.tensor(XL, dtype=dtype)[:, None]
    close(psn_potential(x, masked_psn_weight(w, masked_psn_band(4, 2, dtype=dtype), lam), B.to(dtype)).squeeze(1),
          h, dtype)
    close(psn_potential_reference(x, torch.tensor(wm, dtype=dtype), B.to(dtype)).squeeze(1), h, dtype)


def test_masked_psn_step_queue_gives_the_same_potential():
    """λ = 1: the single-step queue of the last k inputs gives the H of spec §2.4, and the module's
    serial loop the same spikes."""
    state = MaskedPSNState(torch.zeros(2, 1, dtype=torch.float64), 0)
    hs = []
    for t in range(4):
        h, state = masked_psn_step(torch.tensor(XL[t:t + 1], dtype=torch.float64), state,
                                   torch.tensor(WL, dtype=torch.float64), B.double())
        hs.append(h.item())
    close(torch.tensor(hs, dtype=torch.float64), MASKED[1.0][1], torch.float64)
    assert state.t == 4 and state.queue.squeeze(1).tolist() == [1.75, 1.25]
    m = with_weight(neurons.build("masked_psn", seq_len=4, k=2), W)
    assert m.forward_serial(X[:, None]).squeeze(1).tolist() == MASKED[1.0][2]


def test_masked_psn_lambda_schedule():
    got = [masked_psn_lambda(e, 256) for e in (0, 16, 31, 32, 100)]
    assert got == pytest.approx([0.0, 0.502, 0.9725, 1.0, 1.0], abs=5e-4)
    assert masked_psn_lambda(255, 256) == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_sliding_psn_worked_example(backend):
    m = neurons.build("sliding_psn", backend=backend, k=3)
    assert m.weight.tolist() == [0.25, 0.5, 1.0] and m.bias.item() == -1.0
    assert m(SX).tolist() == SS
    assert m(SX[:, None]).squeeze(1).tolist() == SS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sliding_psn_worked_example_potential(dtype):
    """conv = step-by-step reference = serial queue (all exact: dyadic numbers), and the conv's response
    to unit impulses is the banded Toeplitz G of spec §2.4 (it never builds G)."""
    w, b, x = sliding_psn_exp_weight(3).to(dtype), torch.tensor(-1.0, dtype=dtype), SX.to(dtype)
    assert sliding_psn_potential(x, w, b).tolist() == SH
    assert sliding_psn_potential_reference(x, w, b).tolist() == SH
    q, hs = torch.zeros(3, dtype=dtype), []
    for t in range(5):
        h, q = sliding_psn_step(x[t], q, w, b)
        hs.append(h.item())
    assert hs == SH
    impulses = torch.eye(5, dtype=dtype)  # column j = unit input at time j
    assert (sliding_psn_potential(impulses, w, b) - b).tolist() == SG


# ------------------------------------------------------------------------------- random inputs
def _x(shape, dtype=torch.float32):
    return torch.randn(shape, dtype=dtype) * 0.8 + 0.3


SHAPES = [(1, 3), (7, 5), (13, 2, 3), (9,)]


@pytest.mark.parametrize("shape", SHAPES)
def test_psn_eager_and_compiled_match_reference(shape):
    x = _x(shape)
    for backend in ["eager", "compiled"]:
        assert_spikes_match("psn", x, backend, seq_len=shape[0], min_equal=0.99)


@pytest.mark.parametrize("shape,k,lam", [((1, 3), 1, 1.0), ((7, 5), 3, 0.0), ((13, 2, 3), 4, 0.3),
                                         ((9,), 9, 1.0)])
def test_masked_psn_eager_and_compiled_match_reference(shape, k, lam):
    x = _x(shape)
    for backend in ["eager", "compiled"]:
        assert_spikes_match("masked_psn", x, backend, seq_len=shape[0], k=k, lambda_=lam, min_equal=0.99)


@pytest.mark.parametrize("shape,k", [((1, 3), 1), ((7, 5), 3), ((13, 2, 3), 4), ((3, 2), 5), ((2000, 3), 5)])
def test_sliding_psn_eager_and_compiled_match_reference(shape, k):
    """Any T, including k > T and T = 2000."""
    x = _x(shape)
    for backend in ["eager", "compiled"]:
        assert_spikes_match("sliding_psn", x, backend, k=k, exp_init=False, min_equal=0.99)


@pytest.mark.parametrize("shape,k", [((13, 2, 3), 4), ((2000, 3), 5)])
def test_sliding_psn_potential_matches_reference(shape, k):
    x = _x(shape, torch.float64)
    w, b = torch.randn(k, dtype=torch.float64), torch.tensor(-0.7, dtype=torch.float64)
    torch.testing.assert_close(sliding_psn_potential(x, w, b), sliding_psn_potential_reference(x, w, b),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3), (13, 2, 3)])
def test_psn_potential_matches_reference(shape):
    x = _x(shape, torch.float64)
    T = shape[0]
    w, b = torch.randn(T, T, dtype=torch.float64), torch.randn(T, dtype=torch.float64)
    torch.testing.assert_close(psn_potential(x, w, b), psn_potential_reference(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,params", [("psn", dict(seq_len=12)), ("masked_psn", dict(seq_len=12, k=3)),
                                         ("sliding_psn", dict(k=4))])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_keep_dtype_and_agree_away_from_threshold(name, params, dtype):
    """GEMM/conv in the input dtype: spikes come back in that dtype and equal the float64 reference
    wherever the reference H is farther from the threshold than the half-precision rounding of H."""
    x = _x((12, 40)).to(dtype)
    m = neurons.build(name, **params)
    with torch.no_grad():
        s = m(x)
    assert s.dtype == dtype and s.shape == x.shape
    xd = x.double()
    if name == "sliding_psn":
        h = sliding_psn_potential_reference(xd, m.weight.double(), m.bias.double())
    else:
        w = m.masked_weight(torch.float64) if name == "masked_psn" else m.weight.double()
        h = psn_potential_reference(xd, w, m.bias.double())
    margin = 4 * torch.finfo(dtype).eps * (1 + h.abs())  # |H| ≲ 3 here: a few ulps of H's magnitude
    away = h.abs() > margin
    assert away.float().mean() > 0.9
    assert torch.equal(s.double()[away], (h >= 0).double()[away])


# ----------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name,params", [
    ("psn", dict(seq_len=6)),
    ("psn", dict(seq_len=1, surrogate="sigmoid")),
    ("masked_psn", dict(seq_len=6, k=2, lambda_=0.5)),
    ("masked_psn", dict(seq_len=6, k=3, lambda_=1.0, surrogate="rect", surrogate_alpha=0.5)),
    ("sliding_psn", dict(k=3)),
    ("sliding_psn", dict(k=8, exp_init=False, surrogate="sigmoid")),
])
def test_gradients_match_reference(name, params):
    """float64: gradients of x, weight and bias of eager (and compiled) equal autograd of the reference."""
    T = params.get("seq_len", 7)
    x = torch.randn(T, 2, 3, dtype=torch.float64) * 0.8 + 0.5
    assert_grads_match(name, x, **params)
    assert_grads_match(name, x, backend="compiled", **params)


def test_gradients_reach_every_parameter():
    """The surrogate passes gradient to W and b (a check that the grad test above has non-zero grads)."""
    for m in (neurons.build("psn", seq_len=5), neurons.build("masked_psn", seq_len=5, k=2, lambda_=0.5),
              neurons.build("sliding_psn", k=3)):
        m(torch.randn(5, 4) + 1.0).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_masked_psn_lambda_one_gives_no_gradient_outside_the_band():
    m = neurons.build("masked_psn", seq_len=6, k=2)
    m(torch.randn(6, 4) + 1.0).sum().backward()
    assert torch.all(m.weight.grad[masked_psn_band(6, 2) == 0] == 0)


# ------------------------------------------------------------------------------ serial inference
@pytest.mark.parametrize("seq_len,k", [(1, 1), (7, 1), (7, 3), (7, 7)])
def test_masked_psn_forward_equals_loop_of_step(seq_len, k):
    assert_serial_matches("masked_psn", torch.randn(seq_len, 2, 3) + 0.5, seq_len=seq_len, k=k)


@pytest.mark.parametrize("T,k,exp_init", [(1, 1, True), (11, 3, False), (4, 6, False), (40, 5, True)])
def test_sliding_psn_forward_equals_loop_of_step(T, k, exp_init):
    assert_serial_matches("sliding_psn", torch.randn(T, 2, 3) + 0.5, k=k, exp_init=exp_init)


def test_masked_psn_serial_needs_lambda_one_and_t_below_seq_len():
    m = neurons.build("masked_psn", seq_len=3, k=2, lambda_=0.9)
    with pytest.raises(ValueError, match=r"lambda_=1.*0\.9"):
        m.init_state((2,))
    m.set_lambda(1.0)
    state = m.init_state((2,))
    for _ in range(3):
        _, state = m.step(torch.ones(2), state)
    with pytest.raises(ValueError, match="t=3 is past seq_len=3"):
        m.step(torch.ones(2), state)


def test_step_rejects_a_batch_shape_other_than_the_state():
    m = neurons.build("sliding_psn", k=2)
    with pytest.raises(ValueError, match=r"shape \(3,\).*batch shape \(2,\)"):
        m.step(torch.ones(3), m.init_state((2,)))


def test_compiled_masked_psn_follows_set_lambda():
    """λ is a buffer read by the compiled graph: changing it between calls changes the output."""
    m = with_weight(neurons.build("masked_psn", backend="compiled", seq_len=4, k=2, lambda_=0.5), W)
    assert m(X[:, None]).squeeze(1).tolist() == MASKED[0.5][2]
    m.set_lambda(1.0)
    assert m(X[:, None]).squeeze(1).tolist() == MASKED[1.0][2]


# ------------------------------------------------------------------------- init, state, spec
def test_initialisation():
    torch.manual_seed(3)
    for T in (4, 50):
        m = neurons.build("psn", seq_len=T)
        assert m.weight.shape == (T, T) and m.weight.abs().max() <= 1 / math.sqrt(T)
        assert m.weight.std() > 0.25 / math.sqrt(T)  # spread over U(−1/√T, 1/√T), not a constant
        assert m.bias.tolist() == [-1.0] * T
    s = neurons.build("sliding_psn", k=16, exp_init=False)
    assert s.weight.shape == (16,) and s.weight.abs().max() <= 0.25 and s.weight.std() > 0.05
    assert s.bias.shape == () and s.bias.item() == -1.0
    assert neurons.build("sliding_psn", k=1).weight.tolist() == [1.0]
    mp = neurons.build("masked_psn", seq_len=5, k=2)
    assert set(mp.state_dict()) == {"weight", "bias", "lambda_"}  # the band is derived, not saved
    assert mp.lambda_.item() == 1.0 and not any(p is mp.lambda_ for p in mp.parameters())


def test_spec_structure():
    psn, masked, sliding = (neurons.info(n) for n in ("psn", "masked_psn", "sliding_psn"))
    assert (psn.causal, psn.serial_inference, psn.fixed_length) == (False, False, True)
    assert (masked.causal, masked.serial_inference, masked.fixed_length) == (True, True, True)
    assert (sliding.causal, sliding.serial_inference, sliding.fixed_length) == (True, True, False)
    assert not any(s.integer_spikes for s in (psn, masked, sliding))
    assert {"seq_len", "k", "lambda_"} <= set(masked.params)


def test_costs_grow_as_the_formulation():
    """Dense GEMM: FLOPs ~ 2T²N; sliding conv: FLOPs linear in T and in k, never T²."""
    psn = neurons.info("psn")
    assert psn.flops(200, 10) / psn.flops(100, 10) == pytest.approx(4, rel=0.02)
    assert psn.flops(100, 10) >= 2 * 100 ** 2 * 10
    s4, s8 = neurons.build("sliding_psn", k=4).spec, neurons.build("sliding_psn", k=8).spec
    assert s4.flops(2000, 10) == pytest.approx(2 * s4.flops(1000, 10))
    assert s8.flops(1000, 10, train=True) / s4.flops(1000, 10, train=True) == pytest.approx(2, rel=0.2)
    # bytes: at least read X, write S (fp32) and read the T×T weight
    assert psn.min_bytes(64, 1000) >= 2 * 4 * 64 * 1000 + 4 * 64 * 64
    assert psn.min_bytes(64, 1000, train=True) > psn.min_bytes(64, 1000)
    with pytest.raises(ValueError, match="depends on k"):
        neurons.info("sliding_psn").flops(10, 10)


# ------------------------------------------------------------------------------ invalid input
@pytest.mark.parametrize("name,params,needle", [
    ("psn", dict(), "pass seq_len=T"),
    ("psn", dict(seq_len=0), "seq_len=0"),
    ("masked_psn", dict(seq_len=4), "k=None"),
    ("masked_psn", dict(seq_len=4, k=0), "k=0 is invalid; expected an int in [1, seq_len=4]"),
    ("masked_psn", dict(seq_len=4, k=5), "k=5 is invalid"),
    ("masked_psn", dict(seq_len=4, k=2.0), "k=2.0"),
    ("masked_psn", dict(seq_len=4, k=True), "k=True"),
    ("masked_psn", dict(seq_len=4, k=2, lambda_=-0.1), "lambda_=-0.1"),
    ("masked_psn", dict(seq_len=4, k=2, lambda_=1.5), "lambda_=1.5 is invalid; expected a number in [0, 1]"),
    ("masked_psn", dict(seq_len=4, k=2, lambda_="1"), "lambda_='1'"),
    ("sliding_psn", dict(), "k=None"),
    ("sliding_psn", dict(k=0), "k=0"),
    ("sliding_psn", dict(k=3, exp_init="yes"), "exp_init='yes' is invalid; expected one of [True, False]"),
    ("sliding_psn", dict(k=3, surrogate="relu"), "surrogate='relu'"),
    ("sliding_psn", dict(k=3, order=3), "valid parameters"),
])
def test_invalid_parameters(name, params, needle):
    seq_len = params.pop("seq_len", None)
    with pytest.raises(ValueError) as e:
        neurons.build(name, seq_len=seq_len, **params)
    assert needle in str(e.value)


def test_invalid_set_lambda_keeps_the_old_value():
    m = neurons.build("masked_psn", seq_len=4, k=2, lambda_=0.25)
    with pytest.raises(ValueError, match="lambda_=2"):
        m.set_lambda(2)
    assert m.lambda_.item() == 0.25


@pytest.mark.parametrize("epoch,epochs,needle", [(0, 1, "epochs=1"), (256, 256, "epoch=256"), (-1, 10, "epoch=-1"),
                                                 (1.5, 10, "epoch=1.5")])
def test_invalid_lambda_schedule(epoch, epochs, needle):
    with pytest.raises(ValueError, match=needle):
        masked_psn_lambda(epoch, epochs)


@pytest.mark.parametrize("name,params", [("psn", dict(seq_len=4)), ("masked_psn", dict(seq_len=4, k=2))])
def test_wrong_sequence_length(name, params):
    with pytest.raises(ValueError, match="built for seq_len=4.*T=5"):
        neurons.build(name, **params)(torch.randn(5, 2))
