"""SpikingJelly adapters (backend "spikingjelly") against the float64 reference. Skipped when
spikingjelly is not installed (optional extra perfsuite[peers])."""
import pytest
import torch

pytest.importorskip("spikingjelly", reason="spikingjelly not installed (pip install 'perfsuite[peers]')")

from neuron_checks import assert_grads_match, assert_spikes_match

from perfsuite import neurons

CASES = [
    ("lif", None, dict(surrogate="atan")),
    ("lif", None, dict(reset="soft", decay_input=False, detach_reset=True)),
    ("lif", None, dict(reset="hard", v_reset=-0.2, v_threshold=0.8)),
    ("plif", None, dict(init_tau=3.0, reset="soft")),
    ("psn", 7, {}),
    ("masked_psn", 7, dict(k=2)),
    ("masked_psn", 7, dict(k=3, lambda_=0.4)),
    ("sliding_psn", None, dict(k=3, exp_init=False)),
]


@pytest.mark.parametrize("name,seq_len,params", CASES)
def test_matches_reference(name, seq_len, params):
    x = torch.randn(7, 2, 3, dtype=torch.float64) + 0.5
    assert_spikes_match(name, x, "spikingjelly", seq_len=seq_len, **params)
    assert_grads_match(name, x, seq_len=seq_len, backend="spikingjelly", **params)


def test_peer_info_records_the_implementation():
    m = neurons.build("lif", backend="spikingjelly")
    m(torch.randn(3, 4))
    info = m.peer_info
    assert info["library"] == "spikingjelly" and info["version"].startswith("2.")
    assert info["implementation"].startswith("torch")  # CPU: SpikingJelly's Torch reference path
    assert info["env"] == "SJ_LIF_CUDA_IMPLEMENTATION"
    p = neurons.build("sliding_psn", backend="spikingjelly", k=2)
    p(torch.randn(3, 4))
    assert p.peer_info["implementation"] == "torch"


def test_rect_surrogate_is_refused():
    with pytest.raises(ValueError, match="surrogate='rect'"):
        neurons.build("lif", backend="spikingjelly", surrogate="rect")(torch.randn(3, 2))


def test_parameters_are_shared_not_copied():
    m = neurons.build("plif", backend="spikingjelly")
    m(torch.randn(3, 2) + 1.0).sum().backward()
    assert m.w.grad is not None and m.peer_node.w is m.w
    assert [n for n, _ in m.named_parameters()] == ["w"]


@pytest.mark.gpu
def test_gpu_lif_runs_a_fused_kernel():
    """CUDA: SpikingJelly picks a fused implementation (native CUDA or Triton), not the Torch one."""
    m = neurons.build("lif", backend="spikingjelly").cuda()
    x = torch.randn(64, 4096, device="cuda") + 0.5
    s = m(x)
    assert m.peer_info["implementation"] in ("cuda", "triton")
    ref = neurons.build("lif", backend="eager").cuda()(x)
    assert (s == ref).float().mean().item() >= 0.9999


@pytest.mark.slow
def test_runner_records_which_spikingjelly_implementation_ran(tmp_path):
    from perfsuite.results import read_rows
    from perfsuite.runner import run_points
    from perfsuite.scenario import scenario_from_dict

    sc = scenario_from_dict({"name": "peer", "device": "cpu", "neurons": ["lif"], "backends": ["spikingjelly"],
                             "seq_lens": [8], "batch": [2], "features": [4], "modes": ["forward"],
                             "metrics": ["time"], "timing": {"warmup_ms": 1, "rep_ms": 2, "min_reps": 3,
                                                             "max_reps": 5}}, tmp_path / "peer.yaml")
    run_points(sc.points(), tmp_path / "run", progress=False, roofline=False)
    (row,) = read_rows(tmp_path / "run" / "results.jsonl")
    assert row["status"] == "ok", row.get("reason")
    assert row["peer"]["library"] == "spikingjelly" and row["peer"]["implementation"]
