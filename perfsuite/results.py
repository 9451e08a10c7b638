"""Rows on disk: the one contract between the runner, the report and the regression gate.

A run folder holds ``env.json`` (the environment, once) and ``results.jsonl`` (one JSON object per
measured point, appended and flushed one by one, so a crash loses at most the point in flight).

This module owns the row schema and the files of a run folder: writing rows (`append_row`, non-finite
numbers stored as null), reading them with the checks every reader shares (`read_rows`, `load_run`,
`load_env` raise `BadRunFile` naming the file and line), repairing a folder for ``--resume``
(`salvage_rows`) and the folder's writer lock (`lock_run_dir`). It imports nothing from perfsuite
(pandas lazily, in `to_frame`): every layer may use it.

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
  "rounds", "round_medians_ms", "round_mins_ms", "round_sizes", "round_started", "median_of_rounds_ms",
  "rounds_under_load"}``
* ``nonfinite`` (only when something was): the field paths (``"activity.firing_rate"``,
  ``"time.samples_ms.3"``) whose value was NaN or infinite; they are stored as ``null`` (JSON has no
  NaN). A non-finite measured quantity makes a bench row ``error`` with that reason (`perfsuite.worker`)
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

import errno
import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
STATUSES = ("ok", "skipped", "oom", "error", "unsupported", "timeout")
RESULTS_FILE = "results.jsonl"
ENV_FILE = "env.json"
#: where ``--resume`` moves the lines of results.jsonl it cannot read, before it appends
REJECTED_FILE = "results.rejected.jsonl"
#: the exclusive lock of a run folder while a run, resume or merge writes it (`lock_run_dir`)
LOCK_FILE = ".lock"
#: keys every row holds (with a string key and a known status) for a reader to use it
REQUIRED_KEYS = ("key", "status")


class BadRunFile(ValueError):
    """A results.jsonl or env.json that cannot be read as a run: the message names the file and line."""


class RunDirLocked(ValueError):
    """Another process holds the run folder's lock (`lock_run_dir`)."""
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
    """Append one row and force it to disk before returning. Non-finite numbers are stored as null and
    their paths added to the row's ``nonfinite`` (`finite_row`); the caller's dict is updated too."""
    nonfinite = finite_row(row)
    if nonfinite:
        row["nonfinite"] = sorted(set(row.get("nonfinite") or []) | set(nonfinite))
    line = json.dumps(row, default=_json_default, allow_nan=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def finite_row(row: dict[str, Any]) -> list[str]:
    """Replace every NaN or infinite number in ``row`` (nested dicts and lists, numpy/torch scalars
    too) by None, in place; returns the dotted paths of the replaced values."""
    found: list[str] = []

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            for k in list(value):
                value[k] = clean(value[k], f"{path}.{k}" if path else str(k))
            return value
        if isinstance(value, list):
            for i, v in enumerate(value):
                value[i] = clean(v, f"{path}.{i}")
            return value
        if isinstance(value, tuple):
            return clean(list(value), path)
        if not isinstance(value, (bool, int, float, str)) and value is not None and hasattr(value, "item"):
            try:
                value = value.item()
            except (TypeError, ValueError):  # a tensor of several numbers: left to _json_default
                return value
        if isinstance(value, float) and not math.isfinite(value):
            found.append(path)
            return None
        return value

    clean(row, "")
    return found
def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def row_problem(value: Any) -> str | None:
    """Why a parsed results.jsonl line is no row (not an object, a required key missing or of the wrong
    type, an unknown status), or None when it is one."""
    if not isinstance(value, dict):
        return f"holds {type(value).__name__} {json.dumps(value)[:60]}, expected a JSON object (one row)"
    missing = [k for k in REQUIRED_KEYS if k not in value]
    if missing:
        return f"is a row without {', '.join(repr(k) for k in missing)} (every row holds {list(REQUIRED_KEYS)})"
    if not isinstance(value["key"], str):
        return f"has key={value['key']!r}, expected a string"
    if value["status"] not in STATUSES:
        return f"has status={value['status']!r}, expected one of {list(STATUSES)}"
    return None


def scan_rows(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]], bool]:
    """(rows, rejected, torn) of a results.jsonl: every line that is a row; (line number, line, why) of
    every other non-blank line; and whether the file ends in a line without its newline (a kill
    mid-write). A torn last line that is not a row is among ``rejected``, its reason starting "is torn"."""
    rows, _, rejected, torn = _scan(path)
    return rows, rejected, torn


def _scan(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str], list[tuple[int, str, str]], bool]:
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise BadRunFile(f"{path} is a folder; expected a results.jsonl file") from None
    rows: list[dict[str, Any]] = []
    good: list[str] = []  # the text of each row's line
    rejected: list[tuple[int, str, str]] = []
    lines = data.decode("utf-8", errors="replace").split("\n")
    torn = bool(lines[-1])  # text after the last newline
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            why = "is torn (no newline at its end: the run was killed while writing it)" \
                if i == len(lines) - 1 else f"is not valid JSON ({exc})"
            rejected.append((i + 1, line, why))
            continue
        problem = row_problem(value)
        if problem:
            rejected.append((i + 1, line, problem))
        else:
            rows.append(value)
            good.append(line)
    return rows, good, rejected, torn


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``; a torn last line (killed mid-write) is ignored, any other line that
    is not a row (`row_problem`: bad JSON, not an object, no key or status) raises `BadRunFile` naming
    the file and line."""
    rows, rejected, _ = scan_rows(path)
    for line_no, _, why in rejected:
        if not why.startswith("is torn"):
            raise BadRunFile(f"{path}: line {line_no} {why}")
    return rows


def salvage_rows(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Make ``path`` safe to append to for ``--resume``: move every line that is no row (`scan_rows`),
    a torn last line included, into ``results.rejected.jsonl`` next to it (appended), and replace
    ``path`` atomically by its rows. Returns (rows, one warning per moved line); ``path`` is untouched
    when every line is a whole row."""
    path = Path(path)
    rows, good, rejected, torn = _scan(path)
    if not rejected and not torn:
        return rows, []
    rejected_path = path.with_name(REJECTED_FILE)
    if rejected:
        with open(rejected_path, "a", encoding="utf-8") as f:
            for _, line, _ in rejected:
                f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in good:  # each row's line as it was written
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rows, [f"{path}: line {n} {why}; moved to {rejected_path}" for n, _, why in rejected]


def load_env(path: str | os.PathLike) -> dict[str, Any]:
    """An env.json as a dict; `BadRunFile` naming the file when it is not a JSON object."""
    try:
        env = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRunFile(f"{path}: not valid JSON ({exc}); expected the run's environment as a JSON object") from None
    if not isinstance(env, dict):
        raise BadRunFile(f"{path}: holds {type(env).__name__}, expected a JSON object (the run's environment)")
    return env


def lock_run_dir(out_dir: str | os.PathLike):
    """Take the exclusive lock of a run folder (``<out_dir>/.lock``, `fcntl.flock`, non-blocking) and
    write this process's pid into it. Returns the open lock file: the lock holds until it is closed (or
    the process ends). `RunDirLocked` naming the folder and the holder's pid when another process holds it."""
    import fcntl

    path = Path(out_dir) / LOCK_FILE
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirLocked(f"{out_dir} is in use by another perfsuite process (pid {holder}): a run, resume "
                               "or merge writes it; wait for it to end or choose another --out folder") from None
        raise
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


@dataclass
class RunResult:
    """What a run (or a merge) left in its folder: every row of ``out_dir`` (resumed ones too), how many
    rows it added, how many points were already done, and whether it was interrupted."""

    out_dir: Path
    rows: list[dict] = field(default_factory=list)
    new_rows: int = 0
    resumed: int = 0
    interrupted: bool = False
    #: what ``--resume`` had to repair (lines moved to results.rejected.jsonl), one line each
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)


def results_path(run: str | os.PathLike) -> Path:
    """``results.jsonl`` of a run folder, or the file itself."""
    p = Path(run)
    return p / RESULTS_FILE if p.is_dir() else p


def load_run(run: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(env, rows) of a run folder or results file; env is {} when ``env.json`` is missing.
    `BadRunFile` (a ValueError) names the file and line of anything that is not a run."""
    path = results_path(run)
    if not path.exists():
        raise FileNotFoundError(f"{run}: no {RESULTS_FILE} found (expected a run folder or a results file)")
    env_path = path.parent / ENV_FILE
    env = load_env(env_path) if env_path.exists() else {}
    return env, read_rows(path)


def field_at(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in a row or env.json (``"time.samples_ms"``, ``"gpu.name"``); None where a
    part is missing or a step is not an object."""
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


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
