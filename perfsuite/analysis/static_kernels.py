"""The static kernel report of a run folder (``kernels_static.json``, the ``perfsuite kernels --json``
document, `perfsuite.kernels_static`), checked and flattened to one line per kernel configuration and
arch, each with the measured profile entries of the same kernel function in that run.

A file that is not such a report gives a ``reason`` line instead of rows; it never raises.

May import: .frames, .profiles (its columns), perfsuite.kernels_static (its format and file name only).
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from ..kernels_static import FORMAT, REPORT_FILE
from .frames import Run

STATIC_COLUMNS = ["run", "arch", "dtype", "case", "kernel", "tile", "compiled", "error", "registers", "stack_bytes",
                  "spill_store_bytes", "spill_load_bytes", "shared_bytes", "fits", "fit_problems", "occupancy",
                  "occupancy_limit", "has_dot", "tensor_cores", "streaming", "bytes_in_flight_per_sm",
                  "little_bytes_per_sm", "bandwidth_bound_gbs", "measured"]
#: one line per run folder that holds the file: where it is, what it says overall, or why it was not read
STATIC_FILE_COLUMNS = ["run", "file", "triton", "arches", "configs", "failures", "reason"]
#: tile parameters shown in the ``tile`` column (the rest of a kernel's constexprs are flags)
TILE_KEYS = ("BLOCK", "BT", "BM", "BN", "BK")

_INT = ("registers", "stack_bytes", "shared_bytes")
_BOOL = ("fits", "has_dot", "tensor_cores", "streaming")
_NUM = ("occupancy", "bytes_in_flight_per_sm", "little_bytes_per_sm", "bandwidth_bound_gbs")


class _Malformed(ValueError):
    pass


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_row(i: int, r: Any) -> None:
    """Raise `_Malformed` naming row ``i`` and the field that is not what the report writes."""
    if not isinstance(r, Mapping):
        raise _Malformed(f"rows[{i}] is not an object")
    for k in ("arch", "dtype", "kernel"):
        if not isinstance(r.get(k), str) or not r.get(k):
            raise _Malformed(f"rows[{i}].{k} is missing or not a string")
    if not isinstance(r.get("compiled"), bool):
        raise _Malformed(f"rows[{i}].compiled is missing or not true/false")
    if not r["compiled"]:
        return
    for k in _INT + _NUM:
        if not _is_num(r.get(k)):
            raise _Malformed(f"rows[{i}].{k} is missing or not a number")
    for k in _BOOL:
        if not isinstance(r.get(k), bool):
            raise _Malformed(f"rows[{i}].{k} is missing or not true/false")
    for k in ("spill_store_bytes", "spill_load_bytes"):
        if r.get(k) is not None and not _is_num(r.get(k)):
            raise _Malformed(f"rows[{i}].{k} is not a number")


def read_static_report(path) -> tuple[dict[str, Any] | None, str | None]:
    """(document, None) for a readable static report at ``path``; (None, reason) otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot read {path.name}: {e}"
    except json.JSONDecodeError as e:
        return None, f"{path.name} is not JSON ({e.msg} at line {e.lineno})"
    if not isinstance(doc, Mapping):
        return None, f"{path.name} is not a JSON object"
    if doc.get("format") != FORMAT:
        return None, f"{path.name} has format {doc.get('format')!r}; expected {FORMAT!r} (perfsuite kernels --json)"
    rows = doc.get("rows")
    if not isinstance(rows, list):
        return None, f"{path.name}: rows is missing or not a list"
    try:
        for i, r in enumerate(rows):
            _check_row(i, r)
    except _Malformed as e:
        return None, f"{path.name}: {e}"
    return dict(doc), None


def _tile(r: Mapping[str, Any]) -> str:
    c = r.get("constexprs") if isinstance(r.get("constexprs"), Mapping) else {}
    parts = [f"{k}={c[k]}" for k in TILE_KEYS if k in c]
    for k, label in (("num_warps", "w"), ("num_stages", "s")):
        if r.get(k) is not None:
            parts.append(f"{label}={r[k]}")
    return " ".join(parts)


def _measured(profiles: pd.DataFrame, run: str) -> dict[str, list[dict[str, Any]]]:
    """Kernel function name -> the profile entries of that name in ``run``, each with its point."""
    out: dict[str, list[dict[str, Any]]] = {}
    if profiles is None or profiles.empty:
        return out
    for _, p in profiles[profiles["run"] == run].iterrows():
        kernels = p["kernels"] if isinstance(p["kernels"], list) else []
        for k in kernels:
            if isinstance(k, Mapping) and isinstance(k.get("name"), str):
                out.setdefault(k["name"], []).append({
                    "neuron": p["neuron"], "backend": p["backend"], "mode": p["mode"], "precision": p["precision"],
                    "seq_len": p["seq_len"], "share": k.get("share"), "self_us": k.get("self_us"),
                    "calls": k.get("calls")})
    return out


def static_kernels(runs: Sequence[Run], profiles: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(configurations, files): one line per row of every run's ``kernels_static.json`` (columns
    `STATIC_COLUMNS`; ``measured`` lists the run's profile entries whose kernel name is that row's
    kernel function), and one line per file found (`STATIC_FILE_COLUMNS`; ``reason`` set, and no
    configuration lines, when the file is not a static report)."""
    recs, files = [], []
    for run in runs:
        folder = run.path if run.path.is_dir() else run.path.parent
        path = folder / REPORT_FILE
        if not path.is_file():
            continue
        doc, reason = read_static_report(path)
        if doc is None:
            files.append({"run": run.label, "file": str(path), "triton": None, "arches": [], "configs": 0,
                          "failures": [], "reason": reason})
            continue
        summary = doc.get("summary") if isinstance(doc.get("summary"), Mapping) else {}
        fails = summary.get("failures") if isinstance(summary.get("failures"), list) else []
        arches = doc.get("arches") if isinstance(doc.get("arches"), Mapping) else {}
        files.append({"run": run.label, "file": str(path), "triton": doc.get("triton"), "arches": sorted(arches),
                      "configs": len(doc["rows"]), "failures": [str(f) for f in fails], "reason": None})
        measured = _measured(profiles, run.label)
        for r in doc["rows"]:
            cases = r.get("cases") if isinstance(r.get("cases"), list) else [r.get("case")]
            rec = {k: r.get(k) for k in STATIC_COLUMNS}
            rec.update(run=run.label, case=", ".join(str(c) for c in cases if c is not None), tile=_tile(r),
                       fit_problems=list(r.get("fit_problems") or []), measured=measured.get(r["kernel"], []))
            recs.append(rec)
    return pd.DataFrame(recs, columns=STATIC_COLUMNS), pd.DataFrame(files, columns=STATIC_FILE_COLUMNS)
