"""The environment of a run (``env.json``) and a roofline measured on this machine at run start.

Datasheet peaks differ between sources and between variants of one GPU (PCIe vs SXM), so perfsuite
measures what this device reaches: copy bandwidth (read + write bytes of ``dst.copy_(src)``) and
matmul throughput per precision, each the best of several short measurements (a peak: a median tracks the
machine's load), with ``reliable`` false when those measurements disagree by more than 20 %.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import __version__
from .timing import bench

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: roofline sizes: big enough to leave the caches (CUDA) yet quick on two CPU cores
_COPY_BYTES = {"cuda": 1 << 30, "cpu": 32 << 20}
_MATMUL_N = {"cuda": 8192, "cpu": 256}
_BUDGET = {"warmup_ms": 5.0, "rep_ms": 15.0, "min_reps": 3, "max_reps": 100}
#: short measurements per roof quantity (the best counts) and the disagreement that makes a roof unreliable
ROOF_REPEATS = 5
ROOF_SPREAD_LIMIT = 0.20


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU raises ValueError."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r} is not known; expected one of ['auto', 'cpu', 'cuda']")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return device


def git_commit() -> str | None:
    """Commit of the perfsuite checkout (None when not run from a git working tree)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _nvml_info(index: int) -> dict:
    """Driver, clocks and power limit from NVML; {} with a reason when NVML is absent."""
    try:
        import pynvml

        from .energy import _physical_index

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(index))
    except Exception as exc:
        return {"nvml_reason": f"{type(exc).__name__}: {exc}"}
    info: dict = {}
    queries = {
        "driver": lambda: pynvml.nvmlSystemGetDriverVersion(),
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1e3,
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "persistence_mode": lambda: pynvml.nvmlDeviceGetPersistenceMode(h),
    }
    for key, q in queries.items():
        try:
            v = q()
            info[key] = v.decode() if isinstance(v, bytes) else v
        except Exception:  # a query the GPU or driver does not support: leave it out
            pass
    return info


def environment(device: str) -> dict:
    """The env.json contents (without the roofline)."""
    env = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "perfsuite": __version__,
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "triton": _triton_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "compile_backend": os.environ.get("PERFSUITE_COMPILE_BACKEND", "inductor"),
    }
    if device == "cuda":
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        env["gpu"] = {"name": props.name, "memory_bytes": props.total_memory,
                      "capability": f"{props.major}.{props.minor}",
                      "multiprocessors": props.multi_processor_count, "cuda": torch.version.cuda,
                      **_nvml_info(idx)}
    return env


def _peak(fn, device: str) -> tuple[float, float]:
    """(best ms, spread) of `ROOF_REPEATS` short measurements of ``fn``: the best (a peak the device can
    reach, not a median that tracks the load) and how far the repeats' medians disagree (slowest/fastest − 1)."""
    medians = [bench(fn, device, **_BUDGET)["median_ms"] for _ in range(ROOF_REPEATS)]
    return min(medians), max(medians) / min(medians) - 1.0


def roofline(device: str) -> dict:
    """Measured copy bandwidth (GB/s, read + write) and matmul TFLOP/s per precision on ``device``: each the
    best of `ROOF_REPEATS` short measurements. ``reliable`` is False when the repeats of any of them disagree
    by more than `ROOF_SPREAD_LIMIT` (a loaded machine): such a roof must not decide what bounds a point.
    ``repeat_spread`` is the largest disagreement (slowest/fastest − 1)."""
    n_elem = _COPY_BYTES[device] // 4
    src = torch.ones(n_elem, device=device)
    dst = torch.empty_like(src)
    best, spread = _peak(functools.partial(dst.copy_, src), device)
    spreads = {"copy": spread}
    out = {"copy_gbps": 2 * src.numel() * 4 / (best * 1e-3) / 1e9, "copy_bytes": 2 * n_elem * 4}
    del src, dst
    n = _MATMUL_N[device]
    out["matmul_n"] = n
    out["matmul_tflops"] = {}
    for name, dtype in PRECISIONS.items():
        try:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            best, spreads[name] = _peak(functools.partial(torch.matmul, a, b), device)
            out["matmul_tflops"][name] = 2 * n ** 3 / (best * 1e-3) / 1e12
        except RuntimeError as exc:  # e.g. a precision without matmul kernels on this device
            out["matmul_tflops"][name] = None
            out.setdefault("matmul_errors", {})[name] = str(exc).splitlines()[0]
    out["repeat_spreads"] = spreads
    out["repeat_spread"] = max(spreads.values())
    out["reliable"] = out["repeat_spread"] <= ROOF_SPREAD_LIMIT
    out["method"] = (f"best of {ROOF_REPEATS} short budgeted measurements (perfsuite.measure.timing.bench); "
                     f"unreliable when they disagree by more than {ROOF_SPREAD_LIMIT:.0%}")
    return out
