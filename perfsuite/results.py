"""Rows on disk: the one contract between the runner, the report and the regression gate.

A run folder holds ``env.json`` (the environment, once) and ``results.jsonl`` (one JSON object per
measured point, appended and flushed one by one, so a crash loses at most the point in flight).

Row schema (``SCHEMA_VERSION`` = 1). Keys marked * are always present; the metric blocks are ``null``
when not measured, and then ``<block>_reason`` (e.g. ``energy_reason``) says why.

* ``schema``: int, ``SCHEMA_VERSION``
* ``kind``: ``"bench"`` (a timed point) or ``"extrapolation"`` (a train-short/evaluate-long point)
* ``run_id``: str, the run that produced the row; ``scenario``: scenario name
* ``key``: str, stable point key (see `point_key`): equal keys = the same measurement
* ``neuron``, ``neuron_params`` (dict), ``backend``, ``seq_len``, ``batch``, ``features``,
  ``neurons`` (= batch·features, the N of the analytic costs), ``precision`` (fp32|bf16|fp16),
  ``mode`` (forward|train|step), ``workload`` (layer|network), ``device`` (cpu|cuda)
* ``status``: ``ok | skipped | oom | error | unsupported | timeout``; ``reason``: str or null
* ``time``: ``{"samples_ms": [...], "median_ms", "mean_ms", "iqr_ms", "ci95_ms": [lo, hi], "ci_coverage",
  "n", "cold_start_ms", "timer": "cuda_event" | "perf_counter"}``. ``ci95_ms`` is the distribution-free
  interval of the median that aims at 95 % (`perfsuite.measure.timing.median_ci_ranks`); ``ci_coverage``
  is its exact coverage: ≥ 0.95 from n = 6 on, but with n < 6 the interval is [min, max] and covers
  only 1 − 2^(1−n) (0.75 for n = 3). Rows written before ``ci_coverage`` existed lack it; it follows
  from ``n`` (`perfsuite.measure.timing.median_ci_coverage`)
* ``memory``: ``{"peak_allocated_bytes", "peak_reserved_bytes", "method"}`` where method says what was
  measured (``"cuda_allocator"`` or ``"cpu_peak_rss_delta"``); on the CPU it is null with
  ``memory_reason`` when the resident-set growth is 0 or below the point's analytic lower bound (the
  measure cannot resolve it, see `perfsuite.measure.memory`)
* ``energy``: ``{"joules_per_call", "joules_per_gneuron_step", "idle_watts", "window_s", "calls"}``
* ``modelled_energy``: ``{"joules_per_call", "sops", "macs", "source"}`` (neuromorphic estimate)
* ``activity``: ``{"firing_rate", "per_layer": [...], "silent_fraction", "saturated_fraction",
  "input_scale", "target_rate"}``
* ``agreement``: ``{"equal_fraction", "first_divergent_step", "reference_seq_len"}``
* ``cost``: ``{"flops", "min_bytes"}`` analytic, from the neuron's spec for this point and mode
* ``peer``: for a peer backend, which implementation of the other library ran:
  ``{"library", "version", "implementation", "env"}`` (e.g. SpikingJelly's torch or triton LIF)
* ``started_at``: ISO time; ``duration_s``: wall time of the point, including warm-up
* ``load`` (rows measured by a worker; `perfsuite.measure.load`): the machine's load around the point:
  ``{"cores", "loadavg_before", "loadavg_after" (1/5/15 min), "steal" (share of CPU time stolen between
  the samples, or null with ``steal_reason``), "torch_threads" (in effect), "threads_requested"
  (``timing.threads``, null: torch's default), "gpu_before"/"gpu_after" (CUDA: ``sm_clock_mhz``,
  ``mem_clock_mhz``, ``throttle_reasons``, or ``nvml_reason``), "flags"}``; ``flags`` lists why the point
  counts as measured under load (empty: it does not). ``perfsuite ab`` rows add ``ab``: ``{"side", "ref",
  "rounds", "round_medians_ms", "median_of_rounds_ms"}``
* ``profile`` (only in runs made with ``perfsuite run --profile``; bench rows): the block of
  `perfsuite.profile.profile_point`, recorded after the point was timed: ``{"trace": path relative to the
  run folder, "tensorboard_logdir", "identity": "ok" | "mismatch" | "unverified", "detail", "kernels":
  [{"name", "calls", "self_us", "share"}, ...] (top by self time), "kernel_source": "gpu_kernels" |
  "cpu_ops", "steps"}``; null with ``profile_reason`` when the point was not ok or profiling failed
  (the timing blocks are kept either way)
* extrapolation rows add ``task``, ``train_len``, ``eval_len``, ``loss``, ``accuracy``,
  ``loss_last10``, ``accuracy_last10``, ``optimal_loss``, ``excess_loss``, ``finite``, ``policy``
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
STATUSES = ("ok", "skipped", "oom", "error", "unsupported", "timeout")
RESULTS_FILE = "results.jsonl"
ENV_FILE = "env.json"
#: the fields that identify a point (its key is a hash of these)
KEY_FIELDS = ("kind", "neuron", "neuron_params", "backend", "seq_len", "batch", "features", "precision",
              "mode", "workload", "workload_params", "device", "task", "train_len", "eval_len")


def point_key(fields: dict[str, Any]) -> str:
    """Stable, readable key of a point: ``neuron/backend/mode/precision/T/B/F/workload`` + a short hash
    of every identifying field (parameters included), the same on every machine and Python version."""
    ident = {k: fields.get(k) for k in KEY_FIELDS if fields.get(k) is not None}
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]
    head = "/".join(str(fields.get(k)) for k in ("neuron", "backend", "mode", "precision", "seq_len", "batch",
                                                  "features", "workload", "task", "train_len", "eval_len")
                    if fields.get(k) is not None)
    return f"{head}#{digest}"


def append_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row and force it to disk before returning."""
    line = json.dumps(row, default=_json_default, allow_nan=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``; a torn last line (killed mid-write) is ignored, other bad lines raise."""
    rows: list[dict[str, Any]] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({exc})") from exc
    return rows


@dataclass
class RunResult:
    """What a run (or a merge) left in its folder: every row of ``out_dir`` (resumed ones too), how many
    rows it added, how many points were already done, and whether it was interrupted."""

    out_dir: Path
    rows: list[dict] = field(default_factory=list)
    new_rows: int = 0
    resumed: int = 0
    interrupted: bool = False

    @property
    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)


def results_path(run: str | os.PathLike) -> Path:
    """``results.jsonl`` of a run folder, or the file itself."""
    p = Path(run)
    return p / RESULTS_FILE if p.is_dir() else p


def load_run(run: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(env, rows) of a run folder or results file; env is {} when ``env.json`` is missing."""
    path = results_path(run)
    if not path.exists():
        raise FileNotFoundError(f"{run}: no {RESULTS_FILE} found (expected a run folder or a results file)")
    env_path = path.parent / ENV_FILE
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.exists() else {}
    return env, read_rows(path)


def flatten(row: dict[str, Any], sep: str = ".") -> dict[str, Any]:
    """One level of nesting flattened: ``{"time": {"median_ms": 1}}`` -> ``{"time.median_ms": 1}``.
    Lists (raw samples, per-layer rates) stay lists."""
    flat: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict) and k != "neuron_params":
            for k2, v2 in v.items():
                flat[f"{k}{sep}{k2}"] = v2
        else:
            flat[k] = v
    return flat


def to_frame(rows: Iterable[dict[str, Any]]):
    """Rows as a flat pandas DataFrame (``neuron_params`` kept as a dict column)."""
    import pandas as pd

    return pd.DataFrame([flatten(r) for r in rows])
