"""Peak memory of one mode of one point, and the analytic prediction used to skip hopeless points.

* CUDA: the caching allocator's peak allocated and reserved bytes after ``reset_peak_memory_stats``
  (method ``"cuda_allocator"``).
* CPU: there is no allocator counter, so the worker measures the growth of its resident set: Linux's
  high-water mark ``VmHWM`` is reset by writing ``5`` to ``/proc/self/clear_refs``, and the peak is
  ``VmHWM`` after the calls minus ``VmRSS`` before them (method ``"cpu_peak_rss_delta"``). It counts
  every page the process touched (allocator slack, thread stacks), not only tensors; when the reset is
  refused the block is ``null`` with the reason.
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


class PeakMemory:
    """Context manager around the calls of one mode; ``result()`` -> (memory block or None, reason)."""

    def __init__(self, device: str) -> None:
        self.device = device
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
            self._block = {"peak_allocated_bytes": delta, "peak_reserved_bytes": None,
                           "method": "cpu_peak_rss_delta"}

    def result(self) -> tuple[dict | None, str | None]:
        return self._block, (None if self._block is not None else self._error or "not measured")


def device_memory_bytes(device: str) -> int:
    """Memory a point may use: the GPU's total memory, or the host's MemAvailable on the CPU."""
    if device == "cuda":
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise OSError("/proc/meminfo has no MemAvailable")
