"""LIF and PLIF against the spec's worked examples (§1.4) and the float64 reference."""
import pytest
import torch
from neuron_checks import assert_grads_match, assert_serial_matches, assert_spikes_match

from perfsuite import neurons

X = torch.tensor([2.5, 0.5, 1.75, 1.25])
ORACLE = [  # (params, H, S) from spec §1.4, tau=2, v_th=1
    (dict(reset="hard"), [1, 0, 1, 0]),
    (dict(reset="soft"), [1, 0, 1, 0]),
    (dict(reset="hard", decay_input=False), [1, 0, 1, 1]),
    (dict(reset="soft", decay_input=False), [1, 1, 1, 1]),
]
BACKENDS = ["reference", "eager", "compiled"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("params,spikes", ORACLE)
def test_lif_worked_examples(backend, params, spikes):
    m = neurons.build("lif", backend=backend, tau=2.0, **params)
    assert m(X[:, None]).squeeze(1).tolist() == spikes


@pytest.mark.parametrize("backend", BACKENDS)
def test_plif_worked_example(backend):
    m = neurons.build("plif", backend=backend, init_tau=3.0)
    assert m.w.item() == pytest.approx(-0.693147, abs=1e-6)
    assert m(X[:, None]).squeeze(1).tolist() == [0, 0, 1, 0]


def test_lif_membrane_trace_hard_reset():
    """H_3 = 1.0 exactly fires (Θ(0) = 1): the V trace of spec §1.4, hard reset."""
    from perfsuite.neurons.lif import lif_step

    m = neurons.build("lif")
    v = m.init_state((1,))
    vs = []
    for t in range(4):
        _, v = lif_step(X[t:t + 1], v, 0.5, m.params())
        vs.append(v.item())
    assert vs == [0.0, 0.25, 0.0, 0.625]


SHAPES = [(1, 3), (7, 5), (13, 2, 3), (64, 33)]


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_eager_and_compiled_match_reference(name, shape, reset):
    x = torch.randn(shape) * 1.5 + 0.5
    for backend in ["eager", "compiled"]:
        assert_spikes_match(name, x, backend, reset=reset, min_equal=0.99)


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("params", [dict(reset="hard"), dict(reset="soft", decay_input=False),
                                    dict(reset="hard", detach_reset=True, surrogate="atan"),
                                    dict(reset="soft", v_reset=0.0, surrogate="rect")])
def test_gradients_match_reference(name, params):
    x = torch.randn(9, 4, dtype=torch.float64) + 0.5
    assert_grads_match(name, x, **params)
    assert_grads_match(name, x, backend="compiled", **params)


@pytest.mark.parametrize("name", ["lif", "plif"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_forward_equals_loop_of_step(name, reset):
    assert_serial_matches(name, torch.randn(11, 2, 3) + 0.5, reset=reset)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_keep_dtype(dtype):
    x = (torch.randn(20, 8) + 0.5).to(dtype)
    s = neurons.build("lif")(x)
    assert s.dtype == dtype and set(s.unique().tolist()) <= {0.0, 1.0}


def test_long_sequence_compiled_bounded():
    """T = 1 000 in the compiled backend: chunked, so it reuses one small compiled graph."""
    x = torch.randn(1000, 4) + 0.5
    assert_spikes_match("lif", x, "compiled", min_equal=0.999)


@pytest.mark.parametrize("params,needle", [
    (dict(tau=1.0), "tau=1.0"), (dict(tau="2"), "tau='2'"), (dict(reset="medium"), "['hard', 'soft']"),
    (dict(surrogate="relu"), "surrogate='relu'"), (dict(surrogate_alpha=-1.0), "surrogate_alpha=-1.0"),
    (dict(taux=2.0), "valid parameters"), (dict(decay_input="yes"), "decay_input='yes'"),
])
def test_invalid_parameters(params, needle):
    with pytest.raises(ValueError, match=None) as e:
        neurons.build("lif", **params)
    assert needle in str(e.value)


def test_unknown_neuron_and_backend():
    with pytest.raises(ValueError, match="did you mean 'plif'"):
        neurons.build("plf")
    with pytest.raises(ValueError, match="no backend 'eagre'.*did you mean 'eager'"):
        neurons.build("lif", backend="eagre")
    # a backend other neurons have (SpikingJelly's) is not suggested for a neuron that lacks it
    with pytest.raises(ValueError, match="spikingjelly") as e:
        neurons.build("dsn", features=3, backend="spikingjelly")
    assert "did you mean" not in str(e.value)


def test_bad_input_dtype():
    with pytest.raises(ValueError, match="dtype torch.int64"):
        neurons.build("lif")(torch.ones(3, 2, dtype=torch.long))
