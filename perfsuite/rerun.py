"""Confirm a regression before failing: measure the flagged points again and keep only what the re-run
agrees with (`perfsuite compare --rerun`).

It sits above both the runner and the gate (it imports both), so `perfsuite.compare` itself never imports
the runner. TorchBench confirms by bisection before it alerts; here a second measurement of just the
flagged points plays that role.
"""
from __future__ import annotations

import os
from typing import Iterable

from .compare import Comparison, compare_runs, confirm
from .runner import run_points
from .scenario import load_scenario


def rerun_points(scenario: str | os.PathLike, keys: Iterable[str], device: str | None = None) -> list:
    """The points of ``scenario`` whose keys are in ``keys``; `ValueError` when any key is not there (a
    re-run with another scenario or device could not confirm anything)."""
    keys = set(keys)
    points = [p for p in load_scenario(scenario).points(device) if p.key in keys]
    absent = sorted(keys - {p.key for p in points})
    if absent:
        raise ValueError(f"--rerun {scenario}: {len(absent)} flagged point(s) are not in this scenario"
                         f"{f' on device {device}' if device else ''} (first: {absent[0]}); pass the scenario "
                         f"that produced the candidate run")
    return points


def confirm_by_rerun(first: Comparison, baseline: str | os.PathLike, scenario: str | os.PathLike,
                     out_dir: str | os.PathLike, *, progress: bool = False, console=None) -> Comparison:
    """Measure only the points ``first`` flags again (`perfsuite.runner.run_points` into ``out_dir``),
    compare them with the baseline under the same settings, and keep the regressions the re-run agrees
    with (`confirm`). Without flagged points ``first`` is returned as it is."""
    keys = first.flagged_keys()
    if not keys:
        return first
    points = rerun_points(scenario, keys, first.env_candidate.get("device"))
    run_points(points, out_dir, progress=progress, console=console)
    again = compare_runs(baseline, out_dir, thresholds=first.thresholds, noise_floor=first.floor, force=first.forced)
    return confirm(first, again, str(out_dir))
