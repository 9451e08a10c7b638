"""Load awareness (#11 items 2 and 3): the per-point ``load`` block, the rule that flags a point as measured
under load, the thread count a point runs with, and the roofline's best-of-repeats with its reliability."""
import dataclasses
import math

import pytest

from perfsuite.measure import device as devmod
from perfsuite.measure import load
from perfsuite.scenario import scenario_from_dict


def test_cpu_snapshot_and_block_record_load_steal_and_threads():
    before, after = load.sample("cpu"), load.sample("cpu")
    blk = load.block(before, after)
    assert blk["cores"] >= 1 and len(blk["loadavg_before"]) == 3
    assert isinstance(blk["torch_threads"], int) and blk["torch_threads"] >= 1
    # steal is a share or unavailable with a reason: never a silent zero for "could not read"
    assert (blk["steal"] is not None and 0 <= blk["steal"] <= 1) or blk["steal_reason"]
    assert blk["flags"] == load.load_flags(blk)


def test_steal_is_the_share_of_stolen_jiffies_between_two_samples(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n")
    assert load.cpu_times(str(stat)) == (1000, 40)
    blk = load.block({"cpu_times": [1000, 40], "cores": 2}, {"cpu_times": [2000, 140], "cores": 2})
    assert blk["steal"] == pytest.approx(0.1)
    assert blk["flags"] == ["CPU steal 10% > 5%"]
    stat.write_text("intr 1 2 3\n")
    assert "no aggregate 'cpu' line" in load.cpu_times(str(stat))
    assert "unreadable" in load.cpu_times(str(tmp_path / "absent"))
    blk = load.block({"cpu_times_reason": "no /proc"}, {"cpu_times_reason": "no /proc"})
    assert blk["steal"] is None and blk["steal_reason"] == "no /proc"


def test_nvml_absent_is_recorded_with_its_reason_never_zero(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *a, **kw):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    g = load.gpu_clocks(0)
    assert "pynvml" in g["nvml_reason"] and "sm_clock_mhz" not in g


@pytest.mark.parametrize("blk,flagged", [
    ({"cores": 2, "loadavg_before": [1.9, 1, 1], "loadavg_after": [2.0, 1, 1]}, []),
    ({"cores": 2, "loadavg_before": [1.0, 1, 1], "loadavg_after": [4.5, 1, 1]}, ["load average 4.50 > 2 cores (after)"]),
    ({"cores": 2, "loadavg_before": None, "loadavg_reason": "unavailable"}, []),
    ({"cores": 8, "gpu_before": {"throttle_reasons": ["gpu_idle"]}, "gpu_after": {"throttle_reasons": []}}, []),
    ({"cores": 8, "gpu_before": {"throttle_reasons": ["sw_thermal_slowdown", "gpu_idle"]}},
     ["GPU clocks throttled (sw_thermal_slowdown; before)"]),
    ({"cores": 8, "gpu_before": {"nvml_reason": "no NVML"}}, []),
    (None, []),
])
def test_load_flags(blk, flagged):
    assert load.load_flags(blk) == flagged


def test_throttle_mask_names():
    assert load.throttle_names(0x1 | 0x20) == ["gpu_idle", "sw_thermal_slowdown"]
    assert load.throttle_names(0x10000) == ["0x10000"]
    assert load.throttle_names(0) == []


def test_run_summaries_differ_on_load_and_clocks():
    quiet = [{"load": {"cores": 2, "loadavg_before": [0.5, 0, 0], "gpu_before": {"sm_clock_mhz": 1980}}}] * 4
    busy = [{"load": {"cores": 2, "loadavg_before": [5.0, 0, 0], "gpu_before": {"sm_clock_mhz": 1400}}}] * 4
    a, b = load.run_summary(quiet), load.run_summary(busy)
    assert a == {"rows": 4, "under_load": 0, "load_per_core": 0.25, "sm_clock_mhz": 1980, "mem_clock_mhz": None}
    diffs = load.run_differences(a, b)
    assert len(diffs) == 3 and "under load" in diffs[0] and "sm_clock" in diffs[2]
    assert load.run_differences(a, a) == []
    assert load.run_differences(load.run_summary([{}]), a) == []  # rows without load blocks: nothing to say


def _tiny_point(**timing):
    sc = scenario_from_dict({"name": "tiny", "device": "cpu", "neurons": ["lif"], "seq_lens": [8], "batch": [2],
                             "features": [4], "metrics": ["time"],
                             "timing": {"warmup_ms": 1, "rep_ms": 2, "min_reps": 3, "max_reps": 5}})
    return sc.points()[0]


def test_worker_records_load_and_applies_timing_threads():
    """execute_point samples the load around the point and runs it with timing.threads threads, restoring
    torch's count after (the scenario key may not exist yet: the point's timing is replaced by a copy)."""
    import torch

    from perfsuite.worker import execute_point, make_row

    point = _tiny_point()
    before = torch.get_num_threads()

    @dataclasses.dataclass(frozen=True)
    class Timing:  # stands in for a scenario.Timing with the `threads` key
        warmup_ms: float = 1
        rep_ms: float = 2
        min_reps: int = 3
        max_reps: int = 5
        cold_start: bool = False
        threads: int = 1

    res = execute_point(dataclasses.replace(point, timing=Timing()), {})
    assert res["status"] == "ok", res
    assert res["load"]["torch_threads"] == 1 and res["load"]["threads_requested"] == 1
    assert torch.get_num_threads() == before
    row = make_row(point, "r", "ok", None, res)
    assert row["load"]["cores"] >= 1 and isinstance(row["load"]["flags"], list)
    plain = execute_point(point, {})
    assert plain["load"]["threads_requested"] in (None, getattr(point.timing, "threads", None))


def test_roofline_is_best_of_repeats_and_unreliable_when_they_disagree(monkeypatch):
    medians = iter([1.0, 1.1, 0.9, 1.0, 1.05] + [2.0, 1.0, 1.0, 1.0, 1.0] * 3)
    monkeypatch.setattr(devmod, "bench", lambda fn, device, **kw: {"median_ms": next(medians)})
    monkeypatch.setattr(devmod, "_COPY_BYTES", {"cpu": 1 << 12})
    monkeypatch.setattr(devmod, "_MATMUL_N", {"cpu": 8})
    roof = devmod.roofline("cpu")
    assert roof["copy_gbps"] == pytest.approx(2 * (1 << 12) / 0.9e-3 / 1e9)  # the best, not the median
    assert roof["repeat_spreads"]["copy"] == pytest.approx(1.1 / 0.9 - 1)
    assert roof["repeat_spread"] == pytest.approx(1.0) and roof["reliable"] is False
    assert roof["matmul_tflops"]["fp32"] == pytest.approx(2 * 8 ** 3 / 1e-3 / 1e12)
    steady = iter([1.0, 1.1, 1.05, 1.0, 1.02] * 4)
    monkeypatch.setattr(devmod, "bench", lambda fn, device, **kw: {"median_ms": next(steady)})
    roof = devmod.roofline("cpu")
    assert roof["reliable"] is True and math.isclose(roof["repeat_spread"], 0.1)
