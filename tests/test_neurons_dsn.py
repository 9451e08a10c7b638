"""DSN against the spec's worked example (§5.5), the float64 reference, the serial step, and long T."""
import math

import pytest
import torch
from neuron_checks import assert_grads_match, assert_serial_matches, assert_spikes_match

from perfsuite import neurons
from perfsuite.neurons.dsn import decay_logits, integer_to_binary, log_decay

BACKENDS = ["reference", "eager", "compiled"]

# spec §5.5: C = 1, k = 2, w = [0.5, 1.0] (w[1] on the current input), bias −3, N = 4
X_EX = torch.tensor([3.0, 1, 4, 0, 2, 5])[:, None]
ORACLE = {  # tau: (alpha, H, S)
    1.0: ([0.5, 0.377541, 0.817574, 0.268941, 0.268941, 0.952574],
          [1.5, 1.188770, 1.701610, 0.457634, 1.585194, 1.747144], [2, 1, 2, 0, 2, 2]),
    0.25: ([0.0625, 0.020317, 0.446796, 0.005232, 0.005232, 0.823370],
           [2.8125, 1.036824, 2.676065, 0.014000, 1.989610, 2.521335], [3, 1, 3, 0, 2, 3]),
    16.0: ([0.957603, 0.940936, 0.987491, 0.921199, 0.921199, 0.996968],
           [0.127190, 0.178742, 0.226543, 0.208692, 0.349848, 0.363948], [0, 0, 0, 0, 0, 0]),
}


def _example(backend, tau):
    m = neurons.build("dsn", backend=backend, features=1, k=2, tau=tau)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.5, 1.0]]))
        m.bias.fill_(-3.0)
    return m


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tau", sorted(ORACLE))
def test_worked_example(backend, tau):
    alpha, H, S = ORACLE[tau]
    m = _example(backend, tau)
    with torch.no_grad():
        assert m(X_EX).squeeze(1).tolist() == S
        torch.testing.assert_close(m.membrane(X_EX).squeeze(1).double(), torch.tensor(H, dtype=torch.float64),
                                   rtol=0, atol=2e-6)
        a = log_decay(decay_logits(X_EX, m.weight, m.bias), tau).exp().squeeze(1)
        torch.testing.assert_close(a.double(), torch.tensor(alpha, dtype=torch.float64), rtol=0, atol=2e-6)
        assert m.forward_serial(X_EX).squeeze(1).tolist() == S


def test_worked_example_exact_first_step():
    """H_1 = 1.5 exactly (α_1 = σ(0) = 0.5, τ = 1) rounds half-to-even to 2."""
    m = _example("eager", 1.0)
    with torch.no_grad():
        assert m.membrane(X_EX)[0, 0].item() == 1.5
        assert m(X_EX)[0, 0].item() == 2.0


def test_rounding_row():
    """spec §5.5: clip(round([0.5, 1.5, 2.5, 4.7, −0.3]), 0, 4) = [0, 2, 2, 4, 0] (half-to-even)."""
    m = neurons.build("dsn", features=1)
    assert m.fire(torch.tensor([0.5, 1.5, 2.5, 4.7, -0.3])).tolist() == [0, 2, 2, 4, 0]


PARAMS = [
    dict(),
    dict(k=1, tau=1.0),
    dict(k=3, tau=16.0, levels=2),
    dict(spikes="binary", surrogate="atan"),
    dict(spikes="binary", surrogate="rect", tau=1.0),
]
SHAPES = [(1, 3), (7, 5), (13, 2, 3), (50, 2, 4)]


def _x(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 2.0 + 1.0


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("shape", SHAPES)
def test_eager_matches_reference(params, shape):
    x = _x(shape)
    assert_spikes_match("dsn", x, "eager", features=shape[-1], min_equal=0.99, **params)
    m = neurons.build("dsn", features=shape[-1], **params)
    ref = neurons.build("dsn", backend="reference", features=shape[-1], **params)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(m.membrane(x).double(), ref.membrane(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_matches_reference(shape):
    assert_spikes_match("dsn", _x(shape), "compiled", features=shape[-1], min_equal=0.99)


def test_float64_eager_is_exact_against_reference():
    """In float64 the log-space scan and the σ^{1/τ} loop agree to rounding: spikes equal everywhere."""
    x = _x((200, 3, 4)).double()
    assert_spikes_match("dsn", x, "eager", features=4, min_equal=1.0)


@pytest.mark.parametrize("params", [dict(), dict(k=1, tau=1.0), dict(spikes="binary", surrogate="atan"),
                                    dict(spikes="binary", surrogate="sigmoid", surrogate_alpha=2.0),
                                    dict(k=3, tau=16.0, levels=2)])
def test_gradients_match_reference(params):
    """∂/∂(x, weight, bias) of the eager path equals autograd through the float64 loop."""
    assert_grads_match("dsn", _x((37, 2, 3)).double() * 0.5 + 0.5, features=3, **params)


def test_compiled_gradients_match_reference():
    assert_grads_match("dsn", _x((21, 2, 3)).double() * 0.5 + 0.5, backend="compiled", features=3)


def test_gradients_reach_every_parameter():
    m = neurons.build("dsn", features=3)
    x = (_x((40, 2, 3)) * 0.5 + 1.0).requires_grad_(True)
    m(x).sum().backward()
    for g in (x.grad, m.weight.grad, m.bias.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("shape", [(1, 2), (11, 2, 3)])
def test_forward_equals_loop_of_step(params, shape):
    assert_serial_matches("dsn", _x(shape), features=shape[-1], **params)


def test_step_state_is_membrane_and_conv_buffer():
    m = neurons.build("dsn", features=3, k=4)
    h, buf = m.init_state((2, 3))
    assert h.shape == (2, 3) and buf.shape == (3, 2, 3)
    x = _x((5, 2, 3))
    state = (h, buf)
    with torch.no_grad():
        for t in range(5):
            _, state = m.step(x[t], state)
        torch.testing.assert_close(state[0], m.membrane(x)[-1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[1], x[2:])  # the last k−1 inputs, oldest first


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_long_sequence_stable_and_within_convex_bounds(dtype):
    """T = 30 000, strong decay (τ = 0.25) and weak decay (τ = 16): finite, min(0, min X) ≤ H ≤ max(0, max X)."""
    T = 30_000
    x = (_x((T, 2, 3)) * 2.0).to(dtype)
    xf = x.float()
    lo, hi = min(0.0, xf.min().item()), max(0.0, xf.max().item())
    slack = 1e-5 * max(abs(lo), abs(hi))  # fp32 rounding of a convex combination
    for tau in (0.25, 16.0):
        m = neurons.build("dsn", features=3, tau=tau)
        with torch.no_grad():
            h = m.membrane(x)
            s = m(x)
        assert h.dtype == torch.float32 and torch.isfinite(h).all()
        assert h.min().item() >= lo - slack and h.max().item() <= hi + slack
        assert s.dtype == dtype and set(s.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
        if dtype == torch.float32:
            # no fp32 drift over 30 000 steps: equal to the same scan in float64 (which equals the serial
            # float64 loop: test_float64_eager_is_exact_against_reference, tests/test_scan.py at T = 30 000)
            with torch.no_grad():
                h64 = neurons.build("dsn", features=3, tau=tau).double()
                h64.load_state_dict(m.state_dict())
                torch.testing.assert_close(h.double(), h64.membrane(x.double()), rtol=1e-4, atol=1e-4)


def test_long_sequence_gradients_finite():
    m = neurons.build("dsn", features=2)
    x = _x((30_000, 2)).requires_grad_(True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(m.weight.grad).all() and torch.isfinite(m.bias.grad).all()


@pytest.mark.slow
def test_compiled_graph_does_not_grow_with_T():
    """The compiled backend traces one small graph at T = 30 000: no loop over T is unrolled."""
    from torch._dynamo import explain

    m = neurons.build("dsn", features=2)
    counts = {}
    for T in (100, 30_000):
        torch._dynamo.reset()
        out = explain(m.forward_eager)(_x((T, 2)))
        assert out.graph_break_count == 0
        counts[T] = sum(len(g.graph.nodes) for g in out.graphs)
    # chunk 32: T = 100 needs 2 scan levels, T = 30 000 needs 3; each level adds a fixed number of nodes
    assert counts[30_000] < 3 * counts[100] < 1000
    cm = neurons.build("dsn", backend="compiled", features=2)
    cm.load_state_dict(m.state_dict())
    x = _x((30_000, 2))
    with torch.no_grad():
        assert (cm(x) == m(x)).float().mean().item() >= 0.999


def test_integer_to_binary():
    S = torch.tensor([[0.0, 2.0], [4.0, 1.0], [3.0, 0.0]])  # [T=3, N=2]
    B = integer_to_binary(S, 4)
    assert B.shape == (3, 4, 2)
    assert B[:, :, 0].tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]
    assert B[:, :, 1].tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    torch.testing.assert_close(B.sum(1), S)


def test_integer_to_binary_of_dsn_output():
    m = neurons.build("dsn", features=3)
    with torch.no_grad():
        s = m(_x((20, 2, 3)))
    b = integer_to_binary(s, m.levels)
    assert b.shape == (20, 4, 2, 3) and set(b.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(b.sum(1), s)


@pytest.mark.parametrize("spikes,levels,needle", [
    (torch.tensor([[5.0]]), 4, "integers in [0, 4]"), (torch.tensor([[1.5]]), 4, "got e.g. 1.5"),
    (torch.tensor([[-1.0]]), 4, "integers in [0, 4]"), (torch.tensor([[1.0]]), 0, "levels=0"),
])
def test_integer_to_binary_invalid(spikes, levels, needle):
    with pytest.raises(ValueError) as e:
        integer_to_binary(spikes, levels)
    assert needle in str(e.value)


def test_binary_mode_fires_above_half():
    """spikes='binary' is Eq. 10 with N = 1: S = 1[H > 0.5], the same for rect and ATan surrogates."""
    x = _x((60, 2, 3))
    outs = [neurons.build("dsn", features=3, spikes="binary", surrogate=sg) for sg in ("rect", "atan")]
    outs[1].load_state_dict(outs[0].state_dict())
    with torch.no_grad():
        h = outs[0].membrane(x)
        expected = (h > 0.5).float()
        assert outs[0].levels == 1 and not outs[0].spec.integer_spikes
        for m in outs:
            torch.testing.assert_close(m(x), expected, rtol=0, atol=0)


def test_parameters_and_init():
    torch.manual_seed(0)
    m = neurons.build("dsn", features=64, k=4)
    bound = 1 / math.sqrt(4)
    assert m.weight.shape == (64, 4) and m.bias.shape == (64,)
    for p in (m.weight, m.bias):
        assert p.abs().max().item() <= bound and p.std().item() > 0.2 * bound


def test_spec_and_costs():
    spec = neurons.info("dsn")
    assert spec.causal and spec.serial_inference and not spec.fixed_length and spec.integer_spikes
    assert spec.needs_features and spec.params["k"] == 4 and spec.params["tau"] == 0.25
    m1, m8 = neurons.build("dsn", features=2, k=1), neurons.build("dsn", features=2, k=8)
    # the conv term is 2k flops per element forward: 14 more per element from k = 1 to k = 8
    assert m8.spec.flops(10, 6) - m1.spec.flops(10, 6) == 2 * 7 * 10 * 6
    assert m1.spec.flops(20, 6, train=True) == 2 * m1.spec.flops(10, 6, train=True)
    assert m1.spec.min_bytes(10, 6, "bf16") < m1.spec.min_bytes(10, 6, "fp32")


@pytest.mark.parametrize("params,needle", [
    (dict(), "features=None"), (dict(features=0), "features=0"), (dict(features="3"), "features='3'"),
    (dict(features=3, k=0), "k=0"), (dict(features=3, tau=0.0), "tau=0.0"), (dict(features=3, tau=-1), "tau=-1"),
    (dict(features=3, spikes="float"), "['integer', 'binary']"), (dict(features=3, levels=0), "levels=0"),
    (dict(features=3, spikes="binary", levels=2), "levels=2"),
    (dict(features=3, surrogate="atan"), "spikes='binary'"),
    (dict(features=3, spikes="binary", surrogate="relu"), "surrogate='relu'"),
    (dict(features=3, surrogate_alpha=2.0), "surrogate_alpha=2.0"),
    (dict(features=3, spikes="binary", surrogate="atan", surrogate_alpha=-1.0), "surrogate_alpha=-1.0"),
    (dict(features=3, kernel=4), "valid parameters"),
])
def test_invalid_parameters(params, needle):
    with pytest.raises(ValueError) as e:
        neurons.build("dsn", **params)
    assert needle in str(e.value)


@pytest.mark.parametrize("shape", [(5, 4), (5, 2, 4), (5,)])
def test_input_must_end_with_features(shape):
    m = neurons.build("dsn", features=3)
    with pytest.raises(ValueError) as e:
        m(torch.zeros(shape))
    assert "features=3" in str(e.value) and str(tuple(shape)) in str(e.value)
