"""Points measured under load: the rows whose ``load`` block (recorded by the worker, `perfsuite.measure.load`)
says the machine was busy (load average above its cores, CPU steal) or a GPU clock was throttled, so their
times are not findings. The same rule the regression gate applies (`perfsuite.measure.load.load_flags`).

May import: perfsuite.measure.load, .frames.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..measure.load import load_flags
from .frames import Run

UNDER_LOAD_COLUMNS = ["run", "key", "status", "why"]


def under_load(runs: Sequence[Run]) -> pd.DataFrame:
    """One line per row of ``runs`` measured under load: run label, point key, status and the reasons."""
    lines = [{"run": run.label, "key": row.get("key"), "status": row.get("status"), "why": "; ".join(flags)}
             for run in runs for row in run.rows if (flags := load_flags(row.get("load")))]
    return pd.DataFrame(lines, columns=UNDER_LOAD_COLUMNS)
