"""How loaded the machine was while a point was measured: the ``load`` block of a row.

A timing taken while other processes compete for the cores, or while the GPU runs at throttled clocks,
measures the machine as much as the code. The worker samples, before and after each point:

* ``os.getloadavg()`` (1, 5, 15 minutes) and the core count (`os.cpu_count`);
* the share of CPU time stolen by a hypervisor between the two samples, from ``/proc/stat`` (Linux);
* on CUDA, the SM and memory clocks and the clock-throttle reasons from NVML;
* torch's intra-op thread count.

Whatever cannot be read here is recorded as unavailable with the reason (``steal_reason``,
``nvml_reason``), never as zero. `load_flags` says why a block counts as "under load"; compare, ab and the
report use it so the rule lives in one place.
"""
from __future__ import annotations

import os
from typing import Any

#: the 1-minute load average above this many runnable processes per core counts as loaded
LOAD_PER_CORE_LIMIT = 1.0
#: steal above this share of CPU time counts as loaded (a noisy neighbour on a virtual machine)
STEAL_LIMIT = 0.05
#: NVML throttle reasons that are not a slowdown: the GPU idles or runs the application clocks it was set to
BENIGN_THROTTLE = {"gpu_idle", "applications_clocks_setting"}
_THROTTLE_BITS = {  # bit -> name, from nvml.h's nvmlClocksThrottleReason* (stable across driver versions)
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def cpu_times(path: str = "/proc/stat") -> tuple[int, int] | str:
    """(total jiffies, steal jiffies) of the aggregate ``cpu`` line, or the reason they cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            first = f.readline().split()
    except OSError as exc:
        return f"{path} unreadable ({type(exc).__name__}: {exc})"
    if not first or first[0] != "cpu" or len(first) < 9:
        return f"{path} has no aggregate 'cpu' line with a steal column (kernel older than 2.6.11 or not Linux)"
    values = [int(v) for v in first[1:]]
    # guest time is already counted in user time: leave columns 9-10 (guest, guest_nice) out of the total
    return sum(values[:8]), values[7]


def throttle_names(mask: int) -> list[str]:
    """The names of the throttle-reason bits set in an NVML mask (unknown bits as hex)."""
    names = [name for bit, name in _THROTTLE_BITS.items() if mask & bit]
    rest = mask & ~sum(_THROTTLE_BITS)
    return names + ([f"0x{rest:x}"] if rest else [])


def gpu_clocks(index: int) -> dict[str, Any]:
    """SM and memory clocks (MHz) and throttle reasons of GPU ``index`` from NVML; ``nvml_reason`` instead
    when NVML or the query is absent."""
    try:
        import pynvml

        from .energy import _physical_index

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(index))
        out: dict[str, Any] = {"sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                               "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)}
    except Exception as exc:  # no pynvml, no driver, a GPU without the query: say so, never zero
        return {"nvml_reason": f"{type(exc).__name__}: {exc}"[:300]}
    # newer bindings call the throttle reasons "clock event reasons"
    query = (getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
             or getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
    try:
        out["throttle_reasons"] = throttle_names(int(query(h)))
    except Exception as exc:
        out["throttle_reasons"], out["throttle_reason"] = None, f"{type(exc).__name__}: {exc}"[:300]
    return out


def sample(device: str, *, gpu_index: int | None = None) -> dict[str, Any]:
    """One snapshot: load averages, cores, CPU jiffies (for the steal between two snapshots), torch
    threads, and on CUDA the clocks."""
    snap: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        snap["loadavg"] = list(os.getloadavg())
    except OSError as exc:  # not every platform has it
        snap["loadavg"], snap["loadavg_reason"] = None, f"os.getloadavg unavailable ({exc})"
    times = cpu_times()
    if isinstance(times, str):
        snap["cpu_times_reason"] = times
    else:
        snap["cpu_times"] = list(times)
    try:
        import torch

        snap["torch_threads"] = torch.get_num_threads()
    except ImportError:
        snap["torch_threads"] = None
    if device == "cuda":
        if gpu_index is None:
            import torch

            gpu_index = torch.cuda.current_device() if torch.cuda.is_initialized() else 0
        snap["gpu"] = gpu_clocks(gpu_index)
    return snap


def block(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The row's ``load`` block from the snapshots taken before and after a point."""
    out: dict[str, Any] = {"cores": before.get("cores"), "loadavg_before": before.get("loadavg"),
                           "loadavg_after": after.get("loadavg"), "torch_threads": after.get("torch_threads")}
    if before.get("loadavg") is None:
        out["loadavg_reason"] = before.get("loadavg_reason")
    tb, ta = before.get("cpu_times"), after.get("cpu_times")
    if tb and ta and ta[0] > tb[0]:
        out["steal"] = (ta[1] - tb[1]) / (ta[0] - tb[0])
    else:
        out["steal"] = None
        out["steal_reason"] = (before.get("cpu_times_reason") or after.get("cpu_times_reason")
                               or "no CPU time passed between the two /proc/stat samples")
    if "gpu" in before or "gpu" in after:
        out["gpu_before"], out["gpu_after"] = before.get("gpu"), after.get("gpu")
    out["flags"] = load_flags(out)
    return out


def load_flags(load: dict[str, Any] | None) -> list[str]:
    """Why a ``load`` block counts as measured under load ([] when it does not, or has no data):
    the 1-minute load average above `LOAD_PER_CORE_LIMIT` × cores (before or after), steal above
    `STEAL_LIMIT`, or a GPU clock throttled for a reason other than idling or application clocks."""
    if not isinstance(load, dict):
        return []
    flags = []
    cores = load.get("cores")
    for when in ("before", "after"):
        avg = load.get(f"loadavg_{when}")
        if isinstance(cores, int) and cores > 0 and isinstance(avg, list) and avg and \
                isinstance(avg[0], (int, float)) and avg[0] > LOAD_PER_CORE_LIMIT * cores:
            flags.append(f"load average {avg[0]:.2f} > {cores} cores ({when})")
            break
    steal = load.get("steal")
    if isinstance(steal, (int, float)) and steal > STEAL_LIMIT:
        flags.append(f"CPU steal {steal:.0%} > {STEAL_LIMIT:.0%}")
    for when in ("before", "after"):
        gpu = load.get(f"gpu_{when}")
        bad = [r for r in (gpu or {}).get("throttle_reasons") or [] if r not in BENIGN_THROTTLE]
        if bad:
            flags.append(f"GPU clocks throttled ({', '.join(bad)}; {when})")
            break
    return flags


def run_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run: how many rows carry a ``load`` block, how many were under load, the median 1-minute load
    per core and the median SM / memory clocks (None where no row recorded them)."""
    import statistics

    loads = [r.get("load") for r in rows if isinstance(r.get("load"), dict)]
    per_core, sm, mem = [], [], []
    for ld in loads:
        avg, cores = ld.get("loadavg_before"), ld.get("cores")
        if isinstance(avg, list) and avg and isinstance(cores, int) and cores > 0:
            per_core.append(avg[0] / cores)
        g = ld.get("gpu_before") or {}
        if isinstance(g.get("sm_clock_mhz"), (int, float)):
            sm.append(g["sm_clock_mhz"])
        if isinstance(g.get("mem_clock_mhz"), (int, float)):
            mem.append(g["mem_clock_mhz"])
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {"rows": len(loads), "under_load": sum(bool(load_flags(ld)) for ld in loads),
            "load_per_core": med(per_core), "sm_clock_mhz": med(sm), "mem_clock_mhz": med(mem)}


def run_differences(baseline: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """Sentences for the ways two `run_summary` results differ enough to move timings: one run under
    load and the other not, the load per core apart by more than 0.5, or a median clock apart by more
    than 5 %."""
    out = []
    if baseline["rows"] and candidate["rows"]:
        fb, fc = baseline["under_load"] / baseline["rows"], candidate["under_load"] / candidate["rows"]
        if (fb > 0) != (fc > 0) or abs(fb - fc) > 0.25:
            out.append(f"points measured under load: baseline {baseline['under_load']}/{baseline['rows']}, "
                       f"candidate {candidate['under_load']}/{candidate['rows']}")
    lb, lc = baseline["load_per_core"], candidate["load_per_core"]
    if lb is not None and lc is not None and abs(lb - lc) > 0.5:
        out.append(f"median load per core: baseline {lb:.2f}, candidate {lc:.2f}")
    for name in ("sm_clock_mhz", "mem_clock_mhz"):
        cb, cc = baseline[name], candidate[name]
        if cb and cc and abs(cc / cb - 1) > 0.05:
            out.append(f"median {name.replace('_mhz', '')}: baseline {cb:g} MHz, candidate {cc:g} MHz")
    return out
