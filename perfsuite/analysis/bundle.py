"""`analyse`: every analysis of a set of runs computed once, as one `Analysis` the report and the
compare gate read.

May import: every module of perfsuite.analysis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from .activity import activity_summary, extrapolation_summary, not_ok
from .claims import Claim, evaluate_claims
from .fits import crossovers, scaling_fits
from .frames import Run, frame
from .load import UNDER_LOAD_COLUMNS, under_load
from .profiles import PROFILE_COLUMNS, kernel_profiles
from .roofline import roofline_fractions
from .speedups import backend_ratios, compare_runs, speedups
from .static_kernels import STATIC_COLUMNS, STATIC_FILE_COLUMNS, static_kernels

# ---------------------------------------------------------------------------------------------- bundle

@dataclass
class Analysis:
    """Everything a report shows, computed once from the rows."""

    runs: list[Run]
    df: pd.DataFrame
    fits: pd.DataFrame
    speedups: pd.DataFrame
    crossovers: pd.DataFrame
    backends: pd.DataFrame
    roofline: pd.DataFrame
    activity: pd.DataFrame
    extrapolation: pd.DataFrame
    claims: pd.DataFrame
    not_ok: pd.DataFrame
    comparison: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)
    profiles: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROFILE_COLUMNS))
    #: the runs' static kernel reports (``kernels_static.json``): configurations and the files read
    static: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STATIC_COLUMNS))
    static_files: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STATIC_FILE_COLUMNS))
    #: rows measured under load (machine busy or GPU clocks throttled): run, key, status, why
    under_load: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNDER_LOAD_COLUMNS))


def analyse(runs: Sequence[Run], *, claims: Sequence[Claim] | None = None, n_boot: int = 2000,
            seed: int = 0) -> Analysis:
    """Run every analysis over the given runs."""
    df = frame(runs)
    envs = {r.label: r.env for r in runs}
    profiles = kernel_profiles(runs)
    static, static_files = static_kernels(runs, profiles)
    return Analysis(runs=list(runs), df=df, fits=scaling_fits(df, n_boot=n_boot, seed=seed), speedups=speedups(df),
                    crossovers=crossovers(df), backends=backend_ratios(df), roofline=roofline_fractions(df, envs),
                    activity=activity_summary(df), extrapolation=extrapolation_summary(df),
                    claims=evaluate_claims(df, claims), not_ok=not_ok(df), comparison=compare_runs(df),
                    extra={"n_boot": n_boot}, profiles=profiles, static=static,
                    static_files=static_files, under_load=under_load(runs))
