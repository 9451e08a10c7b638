"""Peak memory of one mode of one point, and the analytic prediction used to skip hopeless points.

* CUDA: the caching allocator's peak allocated and reserved bytes after ``reset_peak_memory_stats``
  (method ``"cuda_allocator"``).
* CPU: there is no allocator counter, so the worker measures the growth of its resident set: Linux's
  high-water mark ``VmHWM`` is reset by writing ``5`` to ``/proc/self/clear_refs``, and the peak is
  ``VmHWM`` after the calls minus ``VmRSS`` before them (method ``"cpu_peak_rss_delta"``). It counts
  every page the process touched (allocator slack, thread stacks), not only tensors; when the reset is
  refused the block is ``null`` with the reason. The allocator reuses pages that are already resident
  and tensors made before the calls (parameters, input) are not counted, so the delta is often 0 or
  below what the point must hold: when it is 0, or below the point's analytic lower bound
  (``lower_bound_bytes``, the runner's `perfsuite.workloads.predicted_memory_bytes`), the block is
  ``null`` with that reason rather than a number the measure cannot stand behind.
"""
from __future__ import annotations

from pathlib import Path

import torch

GIB = 1024 ** 3


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def unresolved_reason(delta_bytes: int, lower_bound_bytes: int | None) -> str | None:
    """Why a CPU resident-set growth of ``delta_bytes`` is no measurement of the calls' peak memory
    (0, or below the point's analytic lower bound), or None when it can stand as one."""
    why = ("below the resolution of the RSS-delta measure (the allocator reuses resident pages, and "
           "tensors made before the calls are not counted)")
    if delta_bytes <= 0:
        return f"the resident set did not grow during the calls: {why}"
    if lower_bound_bytes is not None and delta_bytes < lower_bound_bytes:
        return (f"the resident set grew by {delta_bytes} bytes, less than the point's analytic lower bound of "
                f"{lower_bound_bytes} bytes: {why}")
    return None


class PeakMemory:
    """Context manager around the calls of one mode; ``result()`` -> (memory block or None, reason).
    ``lower_bound_bytes``: the least memory the calls must hold (CPU only: a smaller delta is null)."""

    def __init__(self, device: str, lower_bound_bytes: int | None = None) -> None:
        if lower_bound_bytes is not None and lower_bound_bytes < 0:
            raise ValueError(f"PeakMemory: lower_bound_bytes={lower_bound_bytes}; expected None or >= 0 bytes")
        self.device = device
        self.lower_bound_bytes = lower_bound_bytes
        self._base = 0
        self._error: str | None = None
        self._block: dict | None = None

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._base = _status_kib("VmRSS")
        except OSError as exc:
            self._error = f"peak RSS cannot be reset on this system ({exc})"
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            return
        if self.device == "cuda":
            torch.cuda.synchronize()
            self._block = {"peak_allocated_bytes": torch.cuda.max_memory_allocated(),
                           "peak_reserved_bytes": torch.cuda.max_memory_reserved(),
                           "method": "cuda_allocator"}
        elif self._error is None:
            delta = max(0, _status_kib("VmHWM") - self._base) * 1024
            self._error = unresolved_reason(delta, self.lower_bound_bytes)
            if self._error is None:
                self._block = {"peak_allocated_bytes": delta, "peak_reserved_bytes": None,
                               "method": "cpu_peak_rss_delta"}

    def result(self) -> tuple[dict | None, str | None]:
        return self._block, (None if self._block is not None else self._error or "not measured")


def device_memory_bytes(device: str) -> int:
    """Memory a point may use: the GPU's total memory, or on the CPU the host's MemAvailable, or the
    memory limit of this process's cgroup when that is smaller (`host_memory`)."""
    if device == "cuda":
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return host_memory()[0]


#: where the cgroup file systems and this process's cgroup membership are read (tests point them elsewhere)
CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
MEMINFO = Path("/proc/meminfo")
#: a cgroup v1 limit at or above this is "no limit" (the kernel writes a page-rounded 2**63 - 1)
_V1_UNLIMITED = 2 ** 60


def host_memory(meminfo: Path | None = None, cgroup_root: Path | None = None,
                self_cgroup: Path | None = None) -> tuple[int, str]:
    """(bytes, source) of the memory a CPU run may use: min(host MemAvailable, cgroup limit). A
    container or a SLURM job limits the process through its cgroup: ``memory.max`` (v2; ``max`` =
    no limit) or ``memory/memory.limit_in_bytes`` (v1). ``source`` says which of the two was used."""
    meminfo = meminfo or MEMINFO
    host = None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            host = int(line.split()[1]) * 1024
    if host is None:
        raise OSError(f"{meminfo} has no MemAvailable")
    limit = cgroup_memory_limit(cgroup_root or CGROUP_ROOT, self_cgroup or SELF_CGROUP)
    if limit is not None and limit[0] < host:
        return limit[0], f"cgroup memory limit ({limit[1]}), below the host's MemAvailable at run start"
    return host, "host MemAvailable at run start" + (f" (below the cgroup limit in {limit[1]})" if limit else "")


def cgroup_memory_limit(root: Path, self_cgroup: Path) -> tuple[int, str] | None:
    """(bytes, file) of the memory limit of this process's cgroup, or None when there is none (no
    cgroup file system, ``max``, the v1 "unlimited" value). The process's own cgroup (from
    ``/proc/self/cgroup``) is looked up first, then the root of the mount (a container sees its own
    cgroup there)."""
    v2_path, v1_path = "", ""
    try:
        for line in self_cgroup.read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
                v2_path = parts[2].strip("/")
            elif len(parts) == 3 and "memory" in parts[1].split(","):
                v1_path = parts[2].strip("/")
    except OSError:
        pass
    candidates = [root / v2_path / "memory.max", root / "memory.max",
                  root / "memory" / v1_path / "memory.limit_in_bytes", root / "memory" / "memory.limit_in_bytes"]
    for path in dict.fromkeys(candidates):  # in order, without repeats
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        return (value, str(path)) if value < _V1_UNLIMITED else None
    return None
