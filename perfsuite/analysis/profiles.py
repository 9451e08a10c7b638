"""Kernel profiles: every ``profile`` block of a run's rows (``perfsuite run --profile``) and of a
``profiles.jsonl`` in its folder (``perfsuite profile``), one line per point and source.

May import: .frames, perfsuite.results, perfsuite.profile (its file name only).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ..results import read_rows, results_path
from .frames import Run

# -------------------------------------------------------------------------------------- kernel profiles

PROFILE_COLUMNS = ["run", "source", "key", "neuron", "backend", "mode", "precision", "workload", "device", "batch",
                   "features", "seq_len", "status", "identity", "detail", "kernels", "kernel_source", "trace",
                   "reason"]
#: where a profile block came from: a row of ``perfsuite run --profile`` or a line of ``perfsuite profile``
PROFILE_SOURCES = ("run --profile", "perfsuite profile")
_PROFILE_POINT_FIELDS = ("key", "neuron", "backend", "mode", "precision", "workload", "device", "batch", "features",
                         "seq_len", "status")


def _profile_record(run: Run, source: str, row: Mapping[str, Any]) -> dict[str, Any]:
    blk = row.get("profile")
    rec = {k: row.get(k) for k in _PROFILE_POINT_FIELDS}
    rec.update(run=run.label, source=source, identity=None, detail=None, kernels=[], kernel_source=None,
               trace=None, reason=None)
    if isinstance(blk, Mapping):
        rec.update(identity=blk.get("identity"), detail=blk.get("detail"), kernels=list(blk.get("kernels") or []),
                   kernel_source=blk.get("kernel_source"), trace=blk.get("trace"))
    else:  # not profiled: the row says why (profile_reason in a run's row, status/reason in profiles.jsonl)
        rec["reason"] = row.get("profile_reason") or (f"{row.get('status')}: {row.get('reason')}"
                                                      if row.get("status") != "ok" else "no profile block")
    return rec


def kernel_profiles(runs: Sequence[Run]) -> pd.DataFrame:
    """Every profile block of the runs, one line per point and source: the ``profile`` block of rows
    from ``perfsuite run --profile`` and the lines of ``profiles.jsonl`` (``perfsuite profile``) found
    in a run's folder. Rows of a run made without ``--profile`` (no ``profile`` key) are not listed.
    ``kernels`` is the block's list of top kernels/ops by self time; ``reason`` says why a point has
    no block (not ok, or profiling failed)."""
    from ..profile import PROFILES_FILE

    recs = []
    for run in runs:
        for row in run.rows:
            if "profile" in row and row.get("kind", "bench") == "bench":
                recs.append(_profile_record(run, PROFILE_SOURCES[0], row))
        extra = results_path(run.path).parent / PROFILES_FILE
        if extra.is_file():
            recs += [_profile_record(run, PROFILE_SOURCES[1], row) for row in read_rows(extra)]
    return pd.DataFrame(recs, columns=PROFILE_COLUMNS)
