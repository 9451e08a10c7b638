"""PSU, IPSU, RPSU against the spec's worked examples (§4), the float64 reference and the serial steps."""
import pytest
import torch
from neuron_checks import assert_grads_match, assert_serial_matches, assert_spikes_match

from perfsuite import neurons
from perfsuite.neurons.psu import (
    decay_factor,
    ipsu_potential,
    psu_matrices,
    psu_potential,
    psu_step,
    rpsu_potential,
)

BACKENDS = ["reference", "eager", "compiled"]
X = torch.tensor([2.5, 0.5, 1.75, 1.25])
W_LIF = torch.tensor([[.5, 0, 0, 0], [.25, .5, 0, 0], [.125, .25, .5, 0], [.0625, .125, .25, .5]], dtype=torch.float64)
M2 = torch.tensor([[0, 0, 0, 0], [-.5, 0, 0, 0], [-.25, -.5, 0, 0], [-.125, -.25, -.5, 0]], dtype=torch.float64)
# spec §4 example weight, upper triangle included: the causal mask must remove it
W_FULL = torch.tensor([[.6, .9, .9, .9], [.3, .6, .9, .9], [.1, .3, .6, .9], [0, .1, .3, .6]])
ORACLE = {  # name, params -> (H, S), spec §4, tau = 2, V_th = 0.5, b = 0
    ("psu", ()): ([1.25, 0.680675, 1.038891, 0.947463], [1, 1, 1, 1]),
    ("ipsu", ()): ([1.5, -0.2, 0.575, 0.0125], [1, 0, 1, 0]),
    ("rpsu", ()): ([1.25, 0.466213, 0.737719, 0.588860], [1, 0, 1, 1]),
}


def generate_matrix_braincog(T, tau):
    """R2 written out: m1[t][j] = (1/τ)^(t-j+1) for j ≤ t, m2[t][j] = -(1/τ)^(t-j) for j < t."""
    m1 = torch.zeros(T, T, dtype=torch.float64)
    m2 = torch.zeros(T, T, dtype=torch.float64)
    for t in range(T):
        for j in range(t + 1):
            m1[t, j] = (1 / tau) ** (t - j + 1)
            if j < t:
                m2[t, j] = -((1 / tau) ** (t - j))
    return m1, m2


def build(name, backend="eager", seq_len=4, weight=None, **params):
    m = neurons.build(name, backend=backend, seq_len=seq_len, **params)
    if weight is not None:
        with torch.no_grad():
            m.weight.copy_(weight)
    return m


def test_matrices_tau2_match_spec_and_braincog():
    a, k = psu_matrices(4, 2.0, decay_factor(2.0))
    assert torch.equal(a, W_LIF) and torch.equal(-k, M2)
    m1, m2 = generate_matrix_braincog(4, 2.0)
    assert torch.equal(a, m1) and torch.equal(-k, m2)


def test_matrices_tau3_compat_and_lif():
    """At τ = 3 BrainCog's d = 1/τ and the LIF's d = 1 - 1/τ differ; the flag picks BrainCog's."""
    m1, m2 = generate_matrix_braincog(5, 3.0)
    a, k = psu_matrices(5, 3.0, decay_factor(3.0, braincog_compat=True))
    torch.testing.assert_close(a, m1, rtol=1e-15, atol=0)
    torch.testing.assert_close(-k, m2, rtol=1e-15, atol=0)
    a, k = psu_matrices(5, 3.0, decay_factor(3.0))
    assert a[4, 1].item() == pytest.approx((1 / 3) * (2 / 3) ** 3, rel=1e-15)
    assert k[3, 0].item() == pytest.approx((2 / 3) ** 3, rel=1e-15)
    assert not torch.allclose(a, m1)


def test_psu_membrane_worked_example():
    """σ(A X), H by the GEMM form and by the O(1)-state recurrence (spec §4)."""
    a, k = psu_matrices(4, 2.0, 0.5)
    x = X.double()[:, None]
    torch.testing.assert_close(torch.sigmoid(a @ x).squeeze(1),
                               torch.tensor([0.777300, 0.705785, 0.787931, 0.782662], dtype=torch.float64),
                               rtol=0, atol=1e-6)
    h_oracle = torch.tensor(ORACLE[("psu", ())][0], dtype=torch.float64)
    torch.testing.assert_close(psu_potential(x, a, k, 0.5).squeeze(1), h_oracle, rtol=0, atol=1e-6)
    u = q = torch.zeros(1, dtype=torch.float64)
    hs = []
    for t in range(4):
        h, u, q = psu_step(x[t], u, q, 2.0, 0.5, 0.5)
        hs.append(h)
    torch.testing.assert_close(torch.cat(hs), h_oracle, rtol=0, atol=1e-6)


def test_ipsu_rpsu_membrane_worked_example():
    w = W_FULL.double()
    b = torch.zeros(4, dtype=torch.float64)
    a, k = psu_matrices(4, 2.0, 0.5)
    x = X.double()[:, None]
    h_ipsu = ipsu_potential(x, w, b, k, "linear").squeeze(1)
    h_rpsu = rpsu_potential(x, a, w, b, k).squeeze(1)
    torch.testing.assert_close(h_ipsu, torch.tensor(ORACLE[("ipsu", ())][0], dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(h_rpsu, torch.tensor(ORACLE[("rpsu", ())][0], dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS + ["serial"])
@pytest.mark.parametrize("name", ["psu", "ipsu", "rpsu"])
def test_worked_example_spikes(name, backend):
    m = build(name, "eager" if backend == "serial" else backend, weight=None if name == "psu" else W_FULL)
    run = m.forward_serial if backend == "serial" else m
    s = run(X[:, None]).squeeze(1)
    assert s.tolist() == ORACLE[(name, ())][1]


def test_ipsu_prob_worked_example():
    """PPSU by hand from the spec's W: D = tril(W)·X, H_t = D_t - Σ_{j<t} 0.5^(t-j)·σ(D_j)."""
    d = torch.tril(W_FULL.double()) @ X.double()
    sig = torch.sigmoid(d)
    h = torch.stack([d[t] - sum(0.5 ** (t - j) * sig[j] for j in range(t)) for t in range(4)])
    for backend in BACKENDS:
        s = build("ipsu", backend, weight=W_FULL, variant="prob")(X[:, None]).squeeze(1)
        assert s.tolist() == (h > 0.5).double().tolist()
    assert (h - 0.5).abs().min() > 1e-3  # no value on the threshold: the check is exact


def test_strict_threshold():
    """Θ_strict: H exactly at V_th does not fire (BrainCog x > 0). PSU T = 1: H_0 = X_0/τ."""
    for backend in BACKENDS:
        s = build("psu", backend, seq_len=1, v_threshold=0.5)(torch.tensor([[1.0, 1.0 + 2e-6]]))
        assert s.tolist() == [[0.0, 1.0]]


CASES = [("psu", {}), ("psu", dict(tau=3.0)), ("psu", dict(tau=3.0, braincog_compat=True)),
         ("ipsu", {}), ("ipsu", dict(variant="prob", tau=4.0)), ("rpsu", {}), ("rpsu", dict(tau=1.5))]
SHAPES = [(1, 3), (7, 5), (13, 2, 3), (32, 33)]


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_eager_matches_reference(name, params, shape):
    x = torch.randn(shape) + 0.5
    assert_spikes_match(name, x, "eager", seq_len=shape[0], min_equal=0.998, **params)


@pytest.mark.parametrize("name,params", [("psu", {}), ("ipsu", dict(variant="prob")), ("rpsu", {})])
@pytest.mark.parametrize("shape", [(1, 3), (13, 2, 3)])
def test_compiled_matches_reference(name, params, shape):
    torch._dynamo.reset()  # one code object serves every instance: keep below dynamo's recompile limit
    x = torch.randn(shape) + 0.5
    assert_spikes_match(name, x, "compiled", seq_len=shape[0], min_equal=0.998, **params)


@pytest.mark.parametrize("name,params", CASES)
def test_gradients_match_reference(name, params):
    x = torch.randn(9, 4, dtype=torch.float64) + 0.5
    assert_grads_match(name, x, seq_len=9, **params)


@pytest.mark.parametrize("name", ["psu", "ipsu", "rpsu"])
def test_compiled_gradients_match_reference(name):
    torch._dynamo.reset()
    x = torch.randn(6, 5, dtype=torch.float64) + 0.5
    assert_grads_match(name, x, seq_len=6, backend="compiled")


@pytest.mark.parametrize("backend", ["eager", "reference"])
@pytest.mark.parametrize("name", ["ipsu", "rpsu"])
def test_upper_triangle_has_no_effect_and_no_gradient(name, backend):
    x = torch.randn(6, 3) + 0.5
    m = build(name, backend, seq_len=6)
    s = m(x)
    (s * torch.randn(6, 3)).sum().backward()
    assert torch.count_nonzero(m.weight.grad.triu(1)) == 0
    assert torch.count_nonzero(m.weight.grad.tril()) > 0
    with torch.no_grad():
        m.weight.add_(torch.triu(torch.full((6, 6), 5.0), diagonal=1))
    assert torch.equal(m(x), s)


@pytest.mark.parametrize("name,params", CASES)
def test_forward_equals_loop_of_step(name, params):
    x = torch.randn(11, 2, 3) + 0.5
    assert_serial_matches(name, x, seq_len=11, **params)


def test_psu_steps_beyond_seq_len():
    """PSU's recurrence has no T limit: 12 steps of a psu built for 4 equal a psu built for 12."""
    x = torch.randn(12, 5) + 0.5
    m = build("psu", seq_len=4)
    state = m.init_state((5,))
    out = []
    for t in range(12):
        s, state = m.step(x[t], state)
        out.append(s)
    assert torch.equal(torch.stack(out), build("psu", seq_len=12)(x))


@pytest.mark.parametrize("name", ["ipsu", "rpsu"])
def test_history_step_limited_to_seq_len(name):
    m = build(name, seq_len=3)
    state = m.init_state((2,))
    for _t in range(3):
        _, state = m.step(torch.ones(2), state)
    with pytest.raises(ValueError, match="limited to seq_len=3"):
        m.step(torch.ones(2), state)


def test_init_r7():
    m = build("rpsu", seq_len=64)
    assert torch.count_nonzero(m.bias) == 0
    assert m.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.05)
    assert m.weight.mean().abs().item() < 0.01


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["psu", "ipsu", "rpsu"])
def test_half_inputs_keep_dtype(name, dtype):
    x = (torch.randn(8, 16) + 0.5).to(dtype)
    s = build(name, seq_len=8)(x)
    assert s.dtype == dtype and set(s.unique().tolist()) <= {0.0, 1.0}


def test_specs_and_costs():
    for name, gemms in (("psu", 2), ("ipsu", 2), ("rpsu", 3)):
        spec = neurons.info(name)
        assert spec.causal and spec.serial_inference and spec.fixed_length and not spec.integer_spikes
        # the GEMMs dominate at large T: forward FLOPs ≈ gemms·2·T²·N
        assert spec.flops(256, 1000) == pytest.approx(gemms * 2 * 256 ** 2 * 1000, rel=0.02)
        assert spec.flops(256, 1000, train=True) > 2 * spec.flops(256, 1000)
        # bytes: X in, S out, the learned T×T matrix once (the fixed geometric ones need no memory)
        assert spec.min_bytes(16, 100, "fp32") == 2 * 4 * 16 * 100 + (0 if name == "psu" else 1) * 4 * 256
    assert neurons.info("ipsu").params["variant"] == "linear"


@pytest.mark.parametrize("name,params,needle", [
    ("psu", dict(tau=1.0), "tau=1.0"), ("psu", dict(tau=0.5), "tau=0.5"),
    ("psu", dict(tau=0.0, braincog_compat=True), "tau=0.0"), ("psu", dict(braincog_compat="yes"), "braincog_compat='yes'"),
    ("psu", dict(v_threshold="1"), "v_threshold='1'"), ("ipsu", dict(variant="gauss"), "variant='gauss'"),
    ("ipsu", dict(tau=-2.0), "tau=-2.0"), ("rpsu", dict(tau=1.0), "d = 1 - 1/tau"),
    ("rpsu", dict(variant="linear"), "valid parameters"),
])
def test_invalid_parameters(name, params, needle):
    with pytest.raises(ValueError) as e:
        neurons.build(name, seq_len=4, **params)
    assert needle in str(e.value)


def test_compat_accepts_tau_below_one():
    s = neurons.build("psu", seq_len=4, tau=0.5, braincog_compat=True)(X[:, None])
    assert s.shape == (4, 1)


@pytest.mark.parametrize("name", ["psu", "ipsu", "rpsu"])
def test_seq_len_required_and_checked(name):
    with pytest.raises(ValueError, match="seq_len"):
        neurons.build(name)
    with pytest.raises(ValueError, match="seq_len=0"):
        neurons.build(name, seq_len=0)
    with pytest.raises(ValueError, match="seq_len=4"):
        neurons.build(name, seq_len=4)(torch.randn(5, 2))


@pytest.mark.parametrize("name", ["psu", "ipsu", "rpsu"])
@pytest.mark.parametrize("backend", ["eager", "triton"])
def test_surrogate_is_selectable(name, backend):
    """surrogate="sigmoid" changes the backward only; gradients still match the float64 reference."""
    x = torch.randn(5, 3, dtype=torch.float64)
    assert_grads_match(name, x, seq_len=5, backend=backend, surrogate="sigmoid", surrogate_alpha=3.0)
    m_atan = build(name, seq_len=5)
    m_sig = build(name, seq_len=5, surrogate="sigmoid")
    m_sig.load_state_dict(m_atan.state_dict())
    grads = []
    for m in (m_atan, m_sig):
        xx = x.float().clone().requires_grad_(True)
        m(xx).sum().backward()
        grads.append(xx.grad)
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="surrogate='relu'"):
        build(name, seq_len=5, surrogate="relu")
