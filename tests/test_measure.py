"""perfsuite.measure: timing statistics, memory, energy (NVML absent and the arithmetic of a window),
activity, agreement, environment and the measured roofline."""
import math
import sys
import time
import types

import numpy as np
import pytest
import torch
from scipy import stats

from perfsuite.measure import activity, agreement, bench, median_ci_ranks, modelled_energy, summarize
from perfsuite.measure import device as devmod
from perfsuite.measure import energy as energymod
from perfsuite.measure import memory as memmod
from perfsuite.measure.memory import PeakMemory, device_memory_bytes
from perfsuite.measure.timing import ci_label, median_ci_coverage
from perfsuite.summary import SUMMARY_COLUMNS, summary_cells


@pytest.mark.parametrize("n", list(range(1, 60)) + [100, 257, 1000])
def test_median_ci_ranks_are_the_tightest_with_95_percent_coverage(n):
    lo, hi = median_ci_ranks(n)
    assert hi == n - 1 - lo
    # X ~ binomial(n, 1/2) samples lie below the median; the median is below the sorted sample of
    # 0-based rank k when X <= k, so [x[lo], x[n-1-lo]] covers it with probability 1 - 2 P(X <= lo)
    coverage = 1 - 2 * stats.binom.cdf(lo, n, 0.5)
    assert coverage >= 0.95 or lo == 0  # below 6 samples even [min, max] has less than 95 %
    tighter = 1 - 2 * stats.binom.cdf(lo + 1, n, 0.5)
    assert tighter < 0.95  # one rank further in would lose the 95 %


def test_summarize_matches_numpy_and_keeps_raw_samples():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 2.5, 3.5, 1.5, 4.5]
    s = summarize(xs)
    assert s["samples_ms"] == xs  # measured order, untouched
    assert s["median_ms"] == pytest.approx(np.median(xs))
    assert s["mean_ms"] == pytest.approx(np.mean(xs))
    q1, q3 = np.percentile(xs, [25, 75])
    assert s["iqr_ms"] == pytest.approx(q3 - q1)
    lo, hi = s["ci95_ms"]
    assert lo <= s["median_ms"] <= hi
    assert (lo, hi) == (sorted(xs)[1], sorted(xs)[8])  # n = 10: ranks 2 and 9
    assert s["n"] == 10


@pytest.mark.parametrize("n", list(range(1, 40)) + [100, 1000, 1100, 3000])  # > 1023: no float overflow
def test_ci_coverage_is_the_exact_binomial_coverage_of_the_ranks(n):
    lo, _ = median_ci_ranks(n)
    assert median_ci_coverage(n) == pytest.approx(1 - 2 * stats.binom.cdf(lo, n, 0.5), abs=1e-12)
    if n < 6:  # [min, max]: the median lies outside only when every sample is on one side of it
        assert median_ci_coverage(n) == pytest.approx(1 - 2 ** (1 - n))
    else:
        assert median_ci_coverage(n) >= 0.95


def test_summarize_records_the_coverage_and_small_samples_are_labelled_min_max():
    three = summarize([3.0, 1.0, 2.0])
    assert three["ci95_ms"] == [1.0, 3.0] and three["ci_coverage"] == pytest.approx(0.75)
    assert ci_label(three) == "1–3 (n=3: min–max, 75 %)"
    ten = summarize([float(x) for x in range(1, 11)])
    assert ten["ci_coverage"] >= 0.95 and ci_label(ten) == "2–9"
    # a row written before ci_coverage existed: the coverage follows from n, or from the samples
    old = {k: v for k, v in three.items() if k != "ci_coverage"}
    assert ci_label(old) == ci_label(three)
    assert ci_label({"ci95_ms": [1.0, 3.0], "samples_ms": [1.0, 2.0, 3.0]}) == ci_label(three)
    assert ci_label({"ci95_ms": [1.0, 3.0]}) == "1–3 (coverage unknown)"
    with pytest.raises(ValueError, match="n=0"):
        median_ci_coverage(0)


def test_run_summary_does_not_call_a_three_sample_range_a_95_percent_interval():
    col = SUMMARY_COLUMNS.index("median CI ms (95 % unless marked)")
    row = {"neuron": "lif", "status": "ok", "time": summarize([1.0, 1.2, 1.1])}
    assert summary_cells(row)[col] == "1–1.2 (n=3: min–max, 75 %)"
    row["time"] = summarize([1.0 + i / 100 for i in range(20)])
    assert summary_cells(row)[col] == ci_label(row["time"]) and "min–max" not in summary_cells(row)[col]
    assert not any("95% CI" in c for c in SUMMARY_COLUMNS)


def test_summarize_rejects_no_samples():
    with pytest.raises(ValueError, match="samples_ms is empty"):
        summarize([])


def test_bench_respects_budgets_and_rep_bounds():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    t = bench(fn, "cpu", warmup_ms=4, rep_ms=20, min_reps=3, max_reps=6)
    assert 3 <= t["n"] <= 6 and len(t["samples_ms"]) == t["n"]
    assert t["timer"] == "perf_counter"
    assert min(t["samples_ms"]) >= 2.0  # each sample covers the 2 ms sleep
    assert len(calls) == 3 + t["warmup_calls"] + t["n"]  # estimate calls + warm-up + measured
    t = bench(fn, "cpu", warmup_ms=0, rep_ms=1, min_reps=5, max_reps=50, estimate_ms=2.0)
    assert t["n"] == 5  # the budget asks for 1 rep, min_reps wins


def test_cpu_peak_memory_sees_a_large_temporary_and_not_a_small_one():
    with PeakMemory("cpu") as pm:
        x = torch.ones(16 * 2 ** 20)  # 64 MiB, touched
        del x
    block, reason = pm.result()
    assert reason is None and block["method"] == "cpu_peak_rss_delta"
    assert block["peak_allocated_bytes"] >= 48 * 2 ** 20
    with PeakMemory("cpu") as pm:
        y = torch.ones(1024)
    block, reason = pm.result()  # 4 KiB: usually no growth at all, which is no measurement
    assert (block is None and "resolution" in reason) or block["peak_allocated_bytes"] < 48 * 2 ** 20
    del y
    assert device_memory_bytes("cpu") > 0


def test_cpu_peak_memory_below_the_analytic_lower_bound_is_null_with_the_reason():
    with PeakMemory("cpu", lower_bound_bytes=2 ** 40) as pm:  # 1 TiB: no 64 MiB temporary reaches it
        x = torch.ones(16 * 2 ** 20)
        del x
    block, reason = pm.result()
    assert block is None
    assert "analytic lower bound of 1099511627776 bytes" in reason and "RSS-delta" in reason
    with PeakMemory("cpu", lower_bound_bytes=2 ** 20) as pm:  # 1 MiB: the 64 MiB temporary is above it
        x = torch.ones(16 * 2 ** 20)
        del x
    block, reason = pm.result()
    assert reason is None and block["peak_allocated_bytes"] >= 48 * 2 ** 20
    with pytest.raises(ValueError, match="lower_bound_bytes=-1"):
        PeakMemory("cpu", lower_bound_bytes=-1)


def test_cpu_peak_memory_of_zero_growth_is_null_not_zero(monkeypatch):
    monkeypatch.setattr(memmod, "_status_kib", lambda field: 1000)  # VmHWM after = VmRSS before
    with PeakMemory("cpu") as pm:
        pass
    block, reason = pm.result()
    assert block is None and "did not grow" in reason and "resolution" in reason
    assert memmod.unresolved_reason(0, None) == reason
    assert memmod.unresolved_reason(4096, None) is None and memmod.unresolved_reason(4096, 4096) is None


def test_energy_is_null_with_reason_on_cpu():
    meter = energymod.NvmlEnergy("cpu")
    assert not meter.available and "CUDA" in meter.reason


def test_energy_without_pynvml_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    meter = energymod.NvmlEnergy("cuda")
    assert not meter.available
    assert "pynvml is not installed" in meter.reason


def test_energy_with_nvml_failing_gives_the_nvml_error(monkeypatch):
    fake = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(RuntimeError("NVML Shared Library Not Found")))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = energymod.NvmlEnergy("cuda")
    assert not meter.available and "NVML Shared Library Not Found" in meter.reason


def test_energy_window_subtracts_idle_power(monkeypatch):
    """A fake counter at a constant 100 W: 40 W idle leaves 60 W x window / calls per call."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    t0 = time.perf_counter()
    meter = object.__new__(energymod.NvmlEnergy)
    meter.read_mj = lambda: int((time.perf_counter() - t0) * 100 * 1000)
    block = meter.measure(lambda: time.sleep(0.01), idle_watts=40.0, neuron_steps=1e6, min_window_s=0.2)
    assert block["window_s"] >= 0.2 and block["calls"] >= 2
    expected = 60.0 * block["window_s"] / block["calls"]
    assert block["joules_per_call"] == pytest.approx(expected, rel=0.05)
    assert block["joules_per_gneuron_step"] == pytest.approx(block["joules_per_call"] / 1e6 * 1e9)
    assert block["idle_watts"] == 40.0


def test_modelled_energy_uses_the_cited_45nm_figures():
    e = modelled_energy(macs=1e6, sops=2e6)
    assert e["joules_per_call"] == pytest.approx(1e6 * 4.6e-12 + 2e6 * 0.9e-12)
    assert "Horowitz" in e["source"] and e["macs"] == 1e6 and e["sops"] == 2e6


def test_activity_rates_silent_and_saturated():
    s = torch.tensor([[0, 1, 1], [0, 1, 0], [0, 1, 1], [0, 1, 0]], dtype=torch.float32)  # [T=4, N=3]
    a = activity([s])
    assert a["firing_rate"] == pytest.approx(6 / 12)
    assert a["per_layer"] == [pytest.approx(0.5)]
    assert a["silent_fraction"] == pytest.approx(1 / 3)
    assert a["saturated_fraction"] == pytest.approx(1 / 3)
    counts = torch.tensor([[0, 2], [1, 2]], dtype=torch.float32)  # integer spikes, levels = 2
    a = activity([counts], levels=2)
    assert a["firing_rate"] == pytest.approx(5 / 8)
    assert a["saturated_fraction"] == pytest.approx(1 / 2) and a["silent_fraction"] == 0
    two = activity([s, torch.zeros(4, 5)])  # mean over every neuron of every layer
    assert two["firing_rate"] == pytest.approx(6 / 32) and two["per_layer"][1] == 0
    with pytest.raises(ValueError, match="no layers"):
        activity([])


def test_agreement_fraction_and_first_divergent_step():
    ref = torch.zeros(5, 2, 3)
    same = agreement([ref.clone()], [ref.double()])
    assert same == {"equal_fraction": 1.0, "first_divergent_step": None, "reference_seq_len": 5}
    s = ref.clone()
    s[3, 1, 2] = 1
    s[4, 0, 0] = 1
    d = agreement([s], [ref])
    assert d["first_divergent_step"] == 3 and d["equal_fraction"] == pytest.approx(28 / 30)
    with pytest.raises(ValueError, match="spikes"):
        agreement([s], [ref[:4]])


def test_environment_and_cpu_roofline():
    env = devmod.environment("cpu")
    for key in ("torch", "python", "perfsuite", "cpu", "created_at", "commit", "triton"):
        assert key in env
    assert env["cpu"]["cores"] >= 1 and "gpu" not in env
    roof = devmod.roofline("cpu")
    assert roof["copy_gbps"] > 0 and math.isfinite(roof["copy_gbps"])
    assert roof["matmul_tflops"]["fp32"] > 0
    assert set(roof["matmul_tflops"]) == {"fp32", "bf16", "fp16"}
