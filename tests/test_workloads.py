"""perfsuite.workloads: calibrated drive, network blocks, modes, reference agreement, predictions."""
import dataclasses

import pytest
import torch

from perfsuite import neurons
from perfsuite.errors import classify_exception
from perfsuite.scenario import scenario_from_dict
from perfsuite.workloads import Workload, analytic_cost, block_widths, predicted_memory_bytes, unsupported_reason


def make_point(neuron="lif", workload="layer", **over):
    """One point from a minimal scenario (so points carry the scenario's defaults and filled params)."""
    wl = over.pop("workload_params", {})
    sc = {"name": "t", "device": "cpu", "neurons": [neuron], "seq_lens": [over.pop("seq_len", 32)],
          "batch": [over.pop("batch", 4)], "features": [over.pop("features", 16)],
          "workload": {"type": workload, **wl}, **over}
    (p,) = scenario_from_dict(sc).points()
    return p


@pytest.mark.parametrize("target", [0.1, 0.3])
def test_layer_drive_is_calibrated_to_the_target_rate(target):
    wl = Workload(make_point("lif", workload_params={"target_rate": target}, seq_len=64), "cpu")
    a = wl.activity(wl.spikes())
    assert a["target_rate"] == target and a["input_scale"] > 0
    assert a["firing_rate"] == pytest.approx(target, abs=0.03)
    assert wl.x.std().item() == pytest.approx(a["input_scale"], rel=0.15)  # x = scale * N(0, 1)


def test_network_blocks_all_fire_near_the_target_and_widths_follow_the_params():
    p = make_point("plif", workload="network", features=12,
                   workload_params={"layers": 3, "hidden": 16, "outputs": 6})
    assert block_widths(p) == ([12, 16, 16], [16, 16, 6])
    wl = Workload(p, "cpu")
    spikes = wl.spikes()
    assert [s.shape[-1] for s in spikes] == [16, 16, 6]
    a = wl.activity(spikes)
    assert len(a["per_layer"]) == 3 and len(a["layer_gains"]) == len(a["layer_bias_shifts"]) == 3
    for rate in a["per_layer"]:
        assert 0.03 <= rate <= 0.25  # every block active, not only the first
    macs, sops = wl.synaptic_ops(spikes)
    assert macs == 32 * 4 * 12 * 16
    assert sops == pytest.approx(spikes[0].sum().item() * 16 + spikes[1].sum().item() * 6)


def test_a_neuron_firing_above_target_at_zero_input_gets_a_negative_offset():
    """SPSN fires with probability sigmoid(0) = 1/2 at zero input: no scale of a zero-mean drive reaches
    10 %, a negative mean does; its random spikes still agree with the reference (same random state)."""
    from perfsuite.measure import agreement

    wl = Workload(make_point("spsn", seq_len=64, batch=4, features=16), "cpu")
    spikes = wl.spikes()
    a = wl.activity(spikes)
    assert a["input_offset"] < 0 and a["input_scale"] == 1.0
    assert a["firing_rate"] == pytest.approx(0.1, abs=0.04)
    assert agreement(spikes, wl.reference_spikes())["equal_fraction"] >= 0.99


def test_train_call_computes_input_and_parameter_gradients():
    wl = Workload(make_point("plif", modes=["train"]), "cpu")
    wl.call()()
    assert wl.model.w.grad is not None and torch.isfinite(wl.model.w.grad)
    net = Workload(make_point("lif", workload="network", modes=["train"], workload_params={"layers": 2}), "cpu")
    net.call()()
    assert all(lin.weight.grad is not None for lin in net.model.linears)


def test_step_mode_runs_the_serial_path_and_matches_forward():
    p = make_point("lif", modes=["step"])
    wl = Workload(p, "cpu")
    serial = wl.call()()
    fwd = Workload(dataclasses.replace(p, mode="forward"), "cpu")
    torch.testing.assert_close(serial[0], fwd.spikes()[0], rtol=0, atol=0)


@pytest.mark.parametrize("workload", ["layer", "network"])
def test_fp32_eager_agrees_with_float64_reference(workload):
    from perfsuite.measure import agreement

    wl = Workload(make_point("lif", workload=workload, workload_params={"layers": 2} if workload == "network" else {}),
                  "cpu")
    ag = agreement(wl.spikes(), wl.reference_spikes())
    # LIF in fp32 vs fp64 on a Gaussian drive: a threshold crossing within rounding is very rare
    assert ag["equal_fraction"] >= 0.99 and ag["reference_seq_len"] == 32


def test_bf16_point_runs_and_reports_its_agreement():
    from perfsuite.measure import agreement

    wl = Workload(make_point("psn", precisions=["bf16"]), "cpu")
    assert wl.x.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in wl.model.parameters())
    ag = agreement(wl.spikes(), wl.reference_spikes())
    assert 0.5 <= ag["equal_fraction"] <= 1.0


def test_unsupported_reasons():
    assert unsupported_reason(make_point("lif"), "cpu") is None
    step_psn = make_point("psn", modes=["step"])
    assert "serial inference" in unsupported_reason(step_psn, "cpu")
    step_compiled = make_point("lif", modes=["step"], backends=["compiled"])
    assert "step" in unsupported_reason(step_compiled, "cpu")
    tri = make_point("lif", backends=["triton"])
    assert "triton" in unsupported_reason(tri, "cpu")
    ref_bf16 = make_point("lif", backends=["reference"], precisions=["bf16"])
    assert "float64" in unsupported_reason(ref_bf16, "cpu")


def test_predicted_memory_is_a_lower_bound_covering_parameters_and_activations():
    p = make_point("psn", seq_len=1000, batch=2, features=8, modes=["train"])
    params = 1000 * 1000 + 1000  # PSN: T x T weight + T bias (spec §7)
    spec = neurons.build("psn", seq_len=1000).spec
    expected = params * 4 * 2 + 1000 * 16 * 4 + spec.min_bytes(1000, 16, "fp32", train=True)
    assert predicted_memory_bytes(p) == expected
    # a 30 000-step PSN is predicted from the meta device: nothing allocated, > 3.6 GB of weights
    big = make_point("psn", seq_len=30000, batch=1, features=1)
    assert predicted_memory_bytes(big) >= 30000 ** 2 * 4


def test_analytic_cost_of_a_network_adds_the_linear_layers():
    layer = make_point("lif", seq_len=10, batch=2, features=3)
    spec = neurons.info("lif")
    assert analytic_cost(layer) == {"flops": spec.flops(10, 6), "min_bytes": spec.min_bytes(10, 6)}
    net = make_point("lif", workload="network", seq_len=10, batch=2, features=3,
                     workload_params={"layers": 2, "hidden": 5})
    gemm = 2 * 10 * 2 * (3 * 5 + 5 * 5)
    assert analytic_cost(net)["flops"] == 2 * spec.flops(10, 10) + gemm


def test_exceptions_are_classified():
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert classify_exception(oom)[0] == "oom"
    half = RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')
    status, reason = classify_exception(half)
    assert status == "unsupported" and "Half" in reason
    assert classify_exception(ValueError("bad")) == ("error", "ValueError: bad")
