"""The environment of a run: what env.json records, and which differences between two make their
rows incomparable.

Owns `collect_env` (run in a worker at run start), the fields the regression gate and merge compare
(`ENV_FIELDS`, `CPU_ENV_FIELDS`, `MERGE_SAME_FIELDS`) and the helpers over them (`env_value`,
`env_differences`, `env_fields`, `merge_env_differences`). A shared low module: it imports only
`perfsuite.errors` and `perfsuite.measure` (lazily), never the runner, compare, merge or report that use it.
"""
from __future__ import annotations

from typing import Any, Sequence

from .errors import exc_reason
from .results import field_at

#: environment fields that must match, and where env.json may keep each (first found wins)
ENV_FIELDS: dict[str, tuple[str, ...]] = {
    "gpu": ("gpu.name", "gpu_name", "device_name", "gpu"),
    "driver": ("gpu.driver", "driver", "driver_version", "nvidia_driver"),
    "torch": ("torch", "torch_version", "versions.torch"),
    "triton": ("triton", "triton_version", "versions.triton"),
    # the compile backend changes what `compiled` runs (Inductor vs aot_eager)
    "compile_backend": ("compile_backend",),
}
#: compared only when both runs are CPU runs: there the CPU is the device being timed
CPU_ENV_FIELDS: dict[str, tuple[str, ...]] = {"cpu": ("cpu.model", "cpu_model")}
#: env.json fields that must match across the parts of a merge besides the regression gate's
#: (`env_differences`): the gate compares two commits on purpose, but the shards of one run come
#: from one checkout
MERGE_SAME_FIELDS = ("commit",)


def collect_env(device: str, roofline: bool = True) -> dict:
    """env.json contents: environment, measured roofline, idle power (CUDA + NVML), device memory."""
    from .measure import device as devmod
    from .measure.energy import NvmlEnergy
    from .measure.memory import device_memory_bytes, host_memory

    env = devmod.environment(device)
    if device == "cuda":
        env["memory_bytes"], env["memory_source"] = device_memory_bytes(device), "cuda total_memory"
    else:  # the smaller of the host's available memory and this process's cgroup limit
        env["memory_bytes"], env["memory_source"] = host_memory()
    try:
        env["roofline"] = devmod.roofline(device) if roofline else None
        if not roofline:
            env["roofline_reason"] = "not measured (roofline turned off for this run)"
    except Exception as exc:  # the run can go on without it; say why it is missing
        env["roofline"] = None
        env["roofline_reason"] = exc_reason(exc)
    meter = NvmlEnergy(device)
    env["idle_watts"] = meter.idle_watts() if meter.available else None
    env["energy_reason"] = meter.reason
    return env



def env_value(env: dict[str, Any], name: str) -> Any:
    """The environment field ``name`` (see `ENV_FIELDS`, `CPU_ENV_FIELDS`) from an env.json dict, or None."""
    for path in {**ENV_FIELDS, **CPU_ENV_FIELDS}[name]:
        v = field_at(env, path)
        if v is not None and not isinstance(v, dict):
            return v
    return None


def env_differences(baseline: dict[str, Any], candidate: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """[(field, baseline value, candidate value)] for every `ENV_FIELDS` entry that differs."""
    out = []
    both_cpu = baseline.get("device") == "cpu" and candidate.get("device") == "cpu"
    for name in [*ENV_FIELDS, *(CPU_ENV_FIELDS if both_cpu else ())]:
        a, b = env_value(baseline, name), env_value(candidate, name)
        if a != b:
            out.append((name, a, b))
    return out


def env_fields(env: dict[str, Any]) -> dict[str, Any]:
    """The `ENV_FIELDS` (and, for a CPU run, `CPU_ENV_FIELDS`) of an env.json dict: what a floor records."""
    fields = {**ENV_FIELDS, **(CPU_ENV_FIELDS if env.get("device") == "cpu" else {})}
    # stored under a flat key that `env_value` reads back ("gpu", "torch", ..., "cpu_model")
    out: dict[str, Any] = {(name if name in paths else next(p for p in paths if "." not in p)): env_value(env, name)
                           for name, paths in fields.items()}
    if env.get("device") is not None:
        out["device"] = env["device"]  # env_differences compares the CPU model only between CPU runs
    return out


def merge_env_differences(parts: Sequence[tuple[str, dict]]) -> list[str]:
    """Every difference between the first part's env.json and each later part's in the fields the
    regression gate compares and in `MERGE_SAME_FIELDS`, as ``"<part> vs <first>: field a != b"``."""
    (first, env0), out = parts[0], []
    for path, env in parts[1:]:
        diffs = [(name, a, b) for name, a, b in env_differences(env0, env)]
        diffs += [(name, env0.get(name), env.get(name)) for name in MERGE_SAME_FIELDS if env0.get(name) != env.get(name)]
        out += [f"{path} vs {first}: {name} {b!r} != {a!r}" for name, a, b in diffs]
    return out
