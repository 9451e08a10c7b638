"""The harness on a real GPU: CUDA-event timing, allocator peaks, NVML energy, a tiny ci_gpu-like run and
every neuron's Triton backend at T = 4096, N = 4096 in bf16.

All but the last helper's CPU check are marked ``gpu`` (skipped without CUDA by tests/conftest.py); a GPU
session runs them with ``pytest -m gpu`` (scripts/gpu_session.sh, step tests).
"""
from __future__ import annotations

import json

import pytest
import torch

from perfsuite import neurons
from perfsuite.measure import NvmlEnergy, PeakMemory, bench
from perfsuite.measure.energy import MIN_WINDOW_S
from perfsuite.results import ENV_FILE, RESULTS_FILE, read_rows

#: parameters each neuron needs to be built at a given length and width (k as in long_seq.yaml)
BUILD_PARAMS = {"masked_psn": {"k": 32}, "sliding_psn": {"k": 32}, "spsn": {"seed": 11}}


def triton_vs_eager(name: str, T: int, N: int, device: str, dtype: torch.dtype) -> tuple[float, float]:
    """Spikes of the triton and eager backends of ``name`` on the same [T, N] input and parameters:
    (fraction of equal spikes, firing rate of the triton spikes divided by the neuron's top level)."""
    info = neurons.info(name)
    params = dict(BUILD_PARAMS.get(name, {}))
    if info.needs_features:
        params["features"] = N
    seq_len = T if info.fixed_length else None
    torch.manual_seed(1)
    mod = neurons.build(name, backend="triton", seq_len=seq_len, **params)
    ref = neurons.build(name, backend="eager", seq_len=seq_len, **params)
    ref.load_state_dict(mod.state_dict())  # same weights; SPSN: same sampler seed
    mod, ref = mod.to(device), ref.to(device)
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(T, N, generator=gen) * 1.5 + 0.8).to(device=device, dtype=dtype)
    with torch.no_grad():
        s, r = mod(x), ref(x)
    assert s.shape == x.shape and s.dtype == dtype, f"{name}: triton spikes {tuple(s.shape)} {s.dtype}"
    levels = float(getattr(mod, "levels", 1) or 1) if info.integer_spikes else 1.0
    return (s == r).float().mean().item(), s.float().mean().item() / levels


def test_triton_vs_eager_helper_on_cpu():
    """The helper the GPU test uses, at tiny sizes in the Triton interpreter (fp32): exact agreement for
    a deterministic and a stochastic neuron, and a firing rate strictly inside (0, 1)."""
    for name in ("lif", "spsn"):
        equal, rate = triton_vs_eager(name, 16, 8, "cpu", torch.float32)
        assert equal == 1.0, f"{name}: {equal:.4f} of spikes equal"
        assert 0.0 < rate < 1.0, f"{name}: firing rate {rate}"


@pytest.mark.gpu
@pytest.mark.parametrize("name", neurons.names())
def test_triton_bf16_long_matches_eager(name):
    """Every neuron's Triton backend at T = 4096, N = 4096, bf16 input, against eager on the same input
    (both accumulate the state in fp32; spikes may differ only where the state sits at the threshold)."""
    equal, rate = triton_vs_eager(name, 4096, 4096, "cuda", torch.bfloat16)
    assert equal >= 0.99, f"{name}: only {equal:.4f} of spikes equal eager's"
    assert 0.0 < rate < 1.0, f"{name}: firing rate {rate} (a silent or saturated layer checks nothing)"


@pytest.mark.gpu
def test_cuda_event_timing_gives_positive_samples():
    a = torch.randn(1024, 1024, device="cuda")
    t = bench(lambda: a @ a, "cuda", warmup_ms=5, rep_ms=20, min_reps=5, max_reps=50)
    assert t["timer"] == "cuda_event"
    assert t["n"] == len(t["samples_ms"]) >= 5
    assert all(s > 0 for s in t["samples_ms"])
    assert t["ci95_ms"][0] <= t["median_ms"] <= t["ci95_ms"][1]


@pytest.mark.gpu
def test_cuda_peak_memory_of_a_known_allocation():
    size = 256 * 2 ** 20
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    with PeakMemory("cuda") as pm:
        x = torch.empty(size, dtype=torch.uint8, device="cuda")
        x.fill_(1)
        del x
    block, reason = pm.result()
    assert reason is None and block["method"] == "cuda_allocator"
    grown = block["peak_allocated_bytes"] - base
    assert abs(grown - size) <= 0.02 * size, f"peak grew by {grown} B for a {size} B allocation"
    assert block["peak_reserved_bytes"] >= block["peak_allocated_bytes"]


@pytest.mark.gpu
def test_nvml_energy_of_a_busy_kernel():
    meter = NvmlEnergy("cuda")
    if not meter.available:
        pytest.skip(f"NVML energy counter not available: {meter.reason}")
    idle = meter.idle_watts()
    assert idle > 0
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    res = meter.measure(lambda: a @ a, idle, neuron_steps=1e6)
    assert res["window_s"] >= MIN_WINDOW_S and res["calls"] >= 1
    assert res["joules_per_call"] > 0, f"a busy matmul added no energy over idle: {res}"
    assert res["joules_per_gneuron_step"] == pytest.approx(res["joules_per_call"] / 1e6 * 1e9)


@pytest.mark.gpu
def test_tiny_ci_gpu_like_run_fills_memory_and_energy(tmp_path):
    from perfsuite.runner import run_points
    from perfsuite.scenario import load_scenario

    path = tmp_path / "tiny_ci.yaml"
    path.write_text(
        "name: tiny_ci\ndevice: cuda\nneurons: [lif, dsn]\nbackends: [eager, triton]\nseq_lens: [256]\n"
        "batch: [2]\nfeatures: [64]\nmodes: [forward, train]\nmetrics: [time, memory, energy, activity]\n"
        "timing: {warmup_ms: 5, rep_ms: 20, min_reps: 3, max_reps: 50}\nlimits: {timeout_s: 120}\n")
    out = tmp_path / "run"
    result = run_points(load_scenario(path).points("cuda"), out, progress=False, roofline=False, device="cuda",
                        scenario="tiny_ci")
    rows = read_rows(out / RESULTS_FILE)
    assert len(rows) == 8 and len(result.rows) == 8
    env = json.loads((out / ENV_FILE).read_text())
    assert env["gpu"]["name"]
    for r in rows:
        assert r["status"] == "ok", (r["key"], r["reason"])
        assert r["time"]["timer"] == "cuda_event"
        assert r["memory"]["method"] == "cuda_allocator" and r["memory"]["peak_allocated_bytes"] > 0
        if r["energy"] is None:
            assert r["energy_reason"], f"{r['key']}: energy missing without a reason"
        else:
            assert r["energy"]["calls"] >= 1 and r["energy"]["idle_watts"] > 0
