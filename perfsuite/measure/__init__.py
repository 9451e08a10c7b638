"""Measurement: timing, memory, energy, activity and the device (environment, measured roofline).

A workload never times itself; the runner's worker calls these around the workload's functions."""
from .activity import activity, agreement, layer_rate, spike_count
from .energy import E_AC_J, E_MAC_J, ENERGY_SOURCE, NvmlEnergy, modelled_energy
from .memory import PeakMemory, device_memory_bytes
from .timing import bench, median_ci_ranks, summarize, time_call

__all__ = ["E_AC_J", "E_MAC_J", "ENERGY_SOURCE", "NvmlEnergy", "PeakMemory", "activity", "agreement",
           "bench", "device_memory_bytes", "layer_rate", "median_ci_ranks", "modelled_energy", "spike_count",
           "summarize", "time_call"]
