"""Measured GPU energy (NVML) and modelled neuromorphic energy.

Measured: NVML's cumulative energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since
the driver loaded, Volta and newer) read before and after a window in which the workload is repeated.
NVML refreshes the counter only every ~100 ms, so the window lasts at least ``MIN_WINDOW_S`` (ten such
periods). The idle power of the GPU is measured once per run over the same kind of window and its share
is subtracted, so the figure is the energy the workload adds. Without NVML, pynvml or a CUDA device the
energy block is ``null`` and ``energy_reason`` says why: never 0.

Modelled: the estimate the spiking-network papers report, energy = E_MAC · MACs + E_AC · SOPs, where
MACs are the multiply-accumulates on real-valued inputs (the first layer) and SOPs the accumulates that
spikes trigger (each spike, or each unit of an integer spike count, adds its weight to every target).
"""
from __future__ import annotations

import time
from typing import Callable

#: energy per 32-bit floating-point operation at 45 nm, joules. Source: M. Horowitz, "Computing's energy
#: problem (and what we can do about it)", ISSCC 2014 — 0.9 pJ for an add (AC), 3.7 pJ for a multiply,
#: 4.6 pJ for a multiply-accumulate (MAC) as cited by the spiking-network papers.
E_AC_J = 0.9e-12
E_MAC_J = 4.6e-12
ENERGY_SOURCE = "45 nm fp32: E_AC = 0.9 pJ, E_MAC = 4.6 pJ (Horowitz, ISSCC 2014)"

#: shortest measurement window (s): ten periods of NVML's ~100 ms energy-counter refresh
MIN_WINDOW_S = 1.0


def modelled_energy(macs: float, sops: float) -> dict:
    """The ``modelled_energy`` block of a row for one call."""
    return {"joules_per_call": macs * E_MAC_J + sops * E_AC_J, "sops": sops, "macs": macs,
            "source": ENERGY_SOURCE}


class NvmlEnergy:
    """NVML energy counter of the current CUDA device; ``available`` False with ``reason`` otherwise."""

    def __init__(self, device: str) -> None:
        self.available = False
        self.reason: str | None = None
        self._nvml = None
        self._handle = None
        if device != "cuda":
            self.reason = "energy is measured on CUDA devices only (NVML energy counter); the device is the CPU"
            return
        try:
            import pynvml
        except ImportError:
            self.reason = "pynvml is not installed (pip install 'perfsuite[energy]')"
            return
        try:
            import torch

            pynvml.nvmlInit()
            index = torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(index))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:  # NVMLError_* (not supported, no library, no permission)
            self.reason = f"NVML energy counter unavailable: {type(exc).__name__}: {exc}"
            return
        self._nvml = pynvml
        self.available = True

    def read_mj(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def idle_watts(self, window_s: float = MIN_WINDOW_S) -> float:
        """Mean power over an idle window (the device synchronised and left alone)."""
        import torch

        torch.cuda.synchronize()
        e0, t0 = self.read_mj(), time.perf_counter()
        time.sleep(window_s)
        e1, t1 = self.read_mj(), time.perf_counter()
        return (e1 - e0) / 1e3 / (t1 - t0)

    def measure(self, fn: Callable[[], object], idle_watts: float, neuron_steps: float,
                min_window_s: float = MIN_WINDOW_S) -> dict:
        """Repeat ``fn`` for at least ``min_window_s``; the ``energy`` block of a row."""
        import torch

        torch.cuda.synchronize()
        e0, t0 = self.read_mj(), time.perf_counter()
        calls = 0
        while True:
            fn()
            calls += 1
            # synchronise rarely: only to know when the window is long enough
            if calls % 8 == 0 or time.perf_counter() - t0 >= min_window_s:
                torch.cuda.synchronize()
                if time.perf_counter() - t0 >= min_window_s:
                    break
        e1, t1 = self.read_mj(), time.perf_counter()
        window = t1 - t0
        per_call = ((e1 - e0) / 1e3 - idle_watts * window) / calls
        return {"joules_per_call": per_call, "joules_per_gneuron_step": per_call / neuron_steps * 1e9,
                "idle_watts": idle_watts, "window_s": window, "calls": calls}


def _physical_index(index: int) -> int:
    """NVML numbers GPUs physically; CUDA_VISIBLE_DEVICES renumbers them for torch."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return index
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if index < len(ids) and ids[index].isdigit():
        return int(ids[index])
    return index
