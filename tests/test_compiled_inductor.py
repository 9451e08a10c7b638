"""The `compiled` backend with Inductor itself (the rest of the suite compiles with aot_eager, which
captures the same graphs without code generation, because Inductor's C++ builds cost tens of seconds
per graph on a 2-core CPU). One neuron per formulation: LIF (chunked loop), PSN (GEMM), DSN (conv + scan)."""
import pytest
import torch
from neuron_checks import assert_grads_match, assert_spikes_match

import perfsuite.neurons.base as base


@pytest.fixture(autouse=True)
def _inductor(monkeypatch):
    monkeypatch.setattr(base, "COMPILE_BACKEND", "inductor")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("name,params", [("lif", {}), ("psn", {"seq_len": 20}), ("dsn", {"features": 3})])
def test_inductor_forward_matches_reference(name, params):
    seq_len = params.pop("seq_len", None)
    x = torch.randn(20, 2, 3) + 0.5
    assert_spikes_match(name, x, "compiled", seq_len=seq_len, min_equal=0.99, **params)


@pytest.mark.slow
def test_inductor_lif_gradients_match_reference():
    assert_grads_match("lif", torch.randn(17, 3, dtype=torch.float64) + 0.5, backend="compiled", surrogate="atan")
