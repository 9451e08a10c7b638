"""The analysis frame: run folders loaded (`Run`, `load_runs`), their rows as one flat DataFrame with a
``run`` column (`frame`), the settings that make two times comparable (`SETTING`), the report's neuron
order (`neuron_order`) and the timed points that succeeded (`bench_ok`).

Owns the column names every other analysis module reads. May import: perfsuite.results and (lazily, for
the neuron order) perfsuite.neurons; nothing above analysis.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..results import load_run, to_frame

#: fields that must match for two measurements to be compared
SETTING = ["run", "mode", "precision", "workload", "device", "batch", "features"]
#: backends that belong to perfsuite itself; any other backend name is a peer library's adapter
OWN_BACKENDS = ("reference", "eager", "compiled", "triton")
#: the baselines of the headline table: the serial LIF and the first parallel spiking neuron
BASELINES = ("lif", "psn")
TIME = "time.median_ms"
_COLUMNS = (
    "run", "kind", "status", "reason", "neuron", "backend", "seq_len", "batch", "features", "neurons",
    "precision", "mode", "workload", "device", TIME, "time.ci95_ms", "time.samples_ms",
    "memory.peak_allocated_bytes", "memory.method", "energy.joules_per_gneuron_step", "energy.joules_per_call",
    "modelled_energy.joules_per_call", "modelled_energy.source", "activity.firing_rate", "activity.per_layer",
    "activity.silent_fraction", "cost.flops", "cost.min_bytes", "task", "train_len", "eval_len", "loss",
    "optimal_loss", "excess_loss", "finite", "time_reason", "memory_reason", "energy_reason",
    "modelled_energy_reason", "activity_reason", "cost_reason", "workload_params.layers",
    "workload_params.hidden", "workload_params.outputs",
)


# ----------------------------------------------------------------------------------------------- loading

@dataclass
class Run:
    """One run folder: its label, environment and rows."""

    label: str
    path: Path
    env: dict[str, Any]
    rows: list[dict[str, Any]]


def gpu_name(env: Mapping[str, Any]) -> str | None:
    """The GPU's name from env.json (``gpu`` is a dict with ``name`` in the runner's env), else None."""
    gpu = env.get("gpu")
    if isinstance(gpu, Mapping):
        return gpu.get("name")
    return gpu if isinstance(gpu, str) else None


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Load run folders; labels are ``<gpu or device> · <folder name>``, made unique when repeated."""
    if not run_dirs:
        raise ValueError("run_dirs is empty; expected at least one run folder")
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for d in run_dirs:
        env, rows = load_run(d)
        path = Path(d)
        folder = path.name if path.is_dir() else path.parent.name
        device = gpu_name(env) or env.get("device")
        label = f"{device} · {folder}" if device else folder
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        runs.append(Run(label=label, path=path, env=env, rows=rows))
    return runs


def frame(runs: Sequence[Run]) -> pd.DataFrame:
    """All rows of all runs as one flat DataFrame with a ``run`` column and every column the analysis
    reads (missing ones added as NaN, so a run whose metric blocks are all null still analyses)."""
    parts = []
    for run in runs:
        df = to_frame(run.rows) if run.rows else pd.DataFrame()
        df["run"] = run.label
        parts.append(df)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for col in _COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    df["kind"] = df["kind"].astype(object).fillna("bench")  # rows may lack it (see the settings below)
    df["run"] = pd.Categorical(df["run"], categories=[r.label for r in runs], ordered=True)
    for col in ("batch", "features"):
        df[col] = df[col].fillna(-1)  # extrapolation rows may lack them; NaN keys vanish from groupby
    for col in ("workload", "device", "precision", "mode"):
        # object first: a column no row has (extrapolation-only runs have no mode) is all-NaN float64, and
        # filling a float column with text is deprecated in pandas (Pandas4Warning, an error in pandas 4)
        df[col] = df[col].astype(object).fillna("—")
    return df


# ----------------------------------------------------------------------------------------- neuron order

def _builtin_neurons() -> list[str]:
    """perfsuite's own neurons in registry order (LIF first, then the PSN family, SPSN, the PSU family,
    DSN); neurons registered from other modules (plugins) are left out. Empty when the registry cannot
    be imported (a report is still built, in alphabetical order)."""
    try:
        from .. import neurons
    except ImportError:
        return []
    return [n for n in neurons.names() if neurons.neuron_class(n).__module__.startswith("perfsuite.")]


def neuron_rank(names: Iterable[Any]) -> dict[str, int]:
    """Sort rank of each distinct name: perfsuite's neurons in registry order, then any other (plugin,
    unknown) name alphabetically. Tables and legends list neurons in this order."""
    builtin = _builtin_neurons()
    known = {n: i for i, n in enumerate(builtin)}
    present = {n for n in names if isinstance(n, str)}
    others = sorted(present - set(known))
    ranks = {n: known[n] for n in present if n in known}
    ranks.update({n: len(builtin) + i for i, n in enumerate(others)})
    return ranks


def neuron_order(names: Iterable[Any]) -> list[str]:
    """The distinct neuron names of ``names`` in report order (see `neuron_rank`)."""
    ranks = neuron_rank(names)
    return sorted(ranks, key=ranks.__getitem__)


#: the order modes are listed in: forward, train, step, then any other alphabetically
MODE_ORDER = {"forward": 0, "train": 1, "step": 2}


def mode_order(values: Iterable[str]) -> list[str]:
    """The distinct modes of ``values`` in report order (`MODE_ORDER`)."""
    return sorted(set(values), key=lambda m: (MODE_ORDER.get(m, 9), m))


def setting_label(row: Any) -> str:
    """``fp32 · layer · B=8 F=128`` (the settings besides run and mode) of a row or record."""
    parts = [str(row["precision"]), str(row["workload"])]
    batch = pd.to_numeric(row["batch"], errors="coerce")
    if pd.notna(batch) and batch >= 0:
        parts.append(f"B={int(row['batch'])} F={int(row['features'])}")
    return " · ".join(parts)


def bench_ok(df: pd.DataFrame) -> pd.DataFrame:
    """Timed points that succeeded and have a positive median time."""
    t = pd.to_numeric(df[TIME], errors="coerce")
    keep = (df["kind"] == "bench") & (df["status"] == "ok") & (t > 0) & df["seq_len"].notna()
    out = df[keep].copy()
    out[TIME] = t[keep].astype(float)
    out["seq_len"] = out["seq_len"].astype(int)
    return out


def _groups(df: pd.DataFrame, keys: list[str]):
    return df.groupby(keys, observed=True, sort=True, dropna=False)
