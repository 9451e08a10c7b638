"""Regression gate: compare a candidate run with a baseline run, point by point and metric by metric.

Rows are matched by ``key`` (see `perfsuite.results.point_key`). Each (point, metric) gets one verdict
from `VERDICTS` with the evidence behind it:

* **time** (noisy): a one-sided Mann–Whitney U test on the raw samples (``time.samples_ms``) *and* a
  bootstrap interval of the median ratio candidate/baseline. A regression needs the U test significant
  at ``alpha`` and the whole interval above ``1 + threshold``; the threshold is 5 % by default and never
  below the point's noise floor when an A/A noise-floor file is given. With too few samples the exact U
  test cannot reach ``alpha`` whatever the data (`untestable_reason`): such a finding is ``untestable``,
  not ``unchanged``, so a gate that could not have seen a slowdown does not read as a clean pass. Pairing a significance test with
  a minimum factor follows asv's ``compare`` (Mann–Whitney U plus ``--factor``), asking the interval
  (not only the estimate) to clear the threshold follows Criterion.rs; the fixed-percentage rules of
  TorchBench and pytest-benchmark flood on GPU noise (``shared/research/harness_anchors.md`` §2, §8, §11).
* **memory** (deterministic with the CUDA allocator): ratio of ``memory.peak_allocated_bytes`` against a
  tight threshold; the CPU's peak-RSS growth is shown but not gated unless ``Thresholds.cpu_memory``.
* **firing_rate**, **agreement** (``agreement.equal_fraction``) and, for extrapolation rows,
  **accuracy**: absolute tolerances. These flag a change of behaviour, not of speed, so a firing-rate
  move in either direction is a regression.
* **status**: a point that measured ``ok`` in the baseline and failed (error, oom, timeout) in the
  candidate is a regression; one that now skips is listed as missing.

Points only in the baseline are ``missing``, points only in the candidate are ``new``. Runs from
different environments (GPU model, driver, torch, triton) are refused unless forced: a baseline from
another machine says nothing about a change of code.

Exit codes (`Comparison.exit_code`): 0 no regression, 1 at least one regression, more than
`MISSING_LIMIT` of the baseline's points missing (unless ``allow_missing``), or a missing / untestable
finding when ``fail_on_missing`` / ``fail_on_untestable`` is set; untestable findings alone pass with a
warning (`Comparison.warnings`), as does a pass that could not have seen a `LOW_POWER_CHANGE`
("PASS (low power)"). Bad input (missing files, mismatched environments, a bad noise-floor file) raises,
and the CLI turns that into exit 2.

The parts: the statistics in `perfsuite.stats`, the per-metric judgement in `perfsuite.verdicts`, the
output in `perfsuite.compare_output`, the confirming re-run in `perfsuite.rerun` (this module never
imports the runner). `perfsuite.ab` builds the same `Comparison` from interleaved rounds.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .environment import env_differences, env_fields
from .measure.load import run_differences, run_summary
from .results import field_at, load_run
from .stats import median_ratio_interval, min_testable_samples, time_verdict, untestable_reason
from .verdicts import FAILED, METRICS, VERDICTS, Finding, Thresholds, _number, compare_point, compare_rows

#: the gate's API; the statistics and the per-metric judgement are re-exported from `perfsuite.stats` and
#: `perfsuite.verdicts`, where they moved from here
__all__ = ["FAILED", "LOW_POWER_CHANGE", "METRICS", "MISSING_LIMIT", "MIN_NOISE_FLOOR_RUNS", "NOISE_FLOOR_KIND",
           "VERDICTS", "Comparison", "EnvironmentMismatch", "Finding", "NoiseFloor", "Thresholds", "compare_point",
           "compare_rows", "compare_runs", "confirm", "json_safe", "load_noise_floor", "measure_noise_floor",
           "median_ratio_interval", "min_testable_samples", "time_verdict", "untestable_reason",
           "write_noise_floor"]

NOISE_FLOOR_KIND = "perfsuite-noise-floor"
#: a gated time finding that could not have seen a change this large labels a PASS "PASS (low power)"
LOW_POWER_CHANGE = 0.10
#: more than this share of the baseline's points missing from the candidate fails the gate (--allow-missing)
MISSING_LIMIT = 0.10
#: fewer A/A runs than this give per-point floors that vary too much (docs/regression.md); compare warns
MIN_NOISE_FLOOR_RUNS = 5


class EnvironmentMismatch(ValueError):
    """Baseline and candidate were measured in different environments (and ``force`` was not set)."""


@dataclass(frozen=True)
class NoiseFloor:
    """Per-point time noise floors (fractions) measured from repeated A/A runs on one machine."""

    points: dict[str, float]
    default: float
    source: str = ""
    #: `ENV_FIELDS` of the A/A runs; a floor from another machine or software stack is refused
    env: dict[str, Any] = field(default_factory=dict)
    #: how many A/A runs it was measured from (None: a file that does not say)
    runs: int | None = None
    #: made from runs whose environments differ (``force``): its spread includes the environment change
    forced: bool = False

    def floor(self, key: str) -> float:
        return self.points.get(key, self.default)


@dataclass
class Comparison:
    findings: list[Finding]
    thresholds: Thresholds
    env_baseline: dict[str, Any] = field(default_factory=dict)
    env_candidate: dict[str, Any] = field(default_factory=dict)
    env_differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    forced: bool = False
    noise_floor: str | None = None
    rerun: str | None = None
    fail_on_missing: bool = False
    fail_on_untestable: bool = False
    #: the floor itself (``noise_floor`` above is where it came from), reused by a confirming re-run
    floor: NoiseFloor | None = field(default=None, repr=False)
    #: keep the old rule: missing baseline points never fail the gate (unless ``fail_on_missing``)
    allow_missing: bool = False
    #: how the two runs' machine load and clocks differ (`perfsuite.measure.load.run_differences`)
    load_differences: list[str] = field(default_factory=list)
    #: number of points in the baseline (the denominator of the missing share)
    baseline_points: int = 0
    #: made by `perfsuite ab` (paired rounds) rather than from two separate runs
    paired: bool = False

    @property
    def missing_points(self) -> list[str]:
        """Baseline points the candidate lacks or did not measure (absent, skipped, unsupported)."""
        return sorted({f.key for f in self.findings if f.verdict == "missing" and f.metric in ("point", "status")})

    @property
    def too_many_missing(self) -> bool:
        return (not self.allow_missing and self.baseline_points > 0
                and len(self.missing_points) > MISSING_LIMIT * self.baseline_points)

    @property
    def low_power(self) -> list[Finding]:
        """Time findings that passed but could not have flagged a change of `LOW_POWER_CHANGE` (or more)."""
        return [f for f in self.findings if f.metric == "time" and f.verdict in ("unchanged", "improvement")
                and (f.evidence.get("detectable") is None or f.evidence["detectable"] > LOW_POWER_CHANGE)]

    def counts(self) -> dict[str, int]:
        return {v: sum(f.verdict == v for f in self.findings) for v in VERDICTS}

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    @property
    def untestable(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "untestable"]

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return 1
        if self.fail_on_missing and any(f.verdict == "missing" for f in self.findings):
            return 1
        if self.too_many_missing:
            return 1
        if self.fail_on_untestable and self.untestable:
            return 1
        return 0

    @property
    def warnings(self) -> list[str]:
        """What limits this comparison's power, for the headline's reader: untestable time findings
        (with the scenario setting that fixes them) and a noise floor from too few or mixed A/A runs."""
        out = []
        if self.too_many_missing:
            out.append(f"{len(self.missing_points)} of {self.baseline_points} baseline points are missing from the "
                       f"candidate (more than {MISSING_LIMIT:.0%}; first: {self.missing_points[0]}): the gate "
                       f"fails (--allow-missing lets it pass)")
        out += [f"the runs were measured under different conditions: {d}" for d in self.load_differences]
        loaded = sorted({f.point for f in self.findings if f.evidence.get("load")})
        if loaded:
            out.append(f"{len(loaded)} point(s) measured under load (first: {loaded[0]}); their times measure the "
                       f"machine as much as the code")
        low = self.low_power
        if low and not self.exit_code:
            worst = max(low, key=lambda f: f.evidence.get("detectable") or float("inf"))
            d = worst.evidence.get("detectable")
            out.append(f"{len(low)} time finding(s) passed without the power to see a {LOW_POWER_CHANGE:.0%} change "
                       f"(worst: {worst.point}, smallest detectable change "
                       f"{'unknown' if d is None else format(d, '+.0%')})"
                       + ("; more rounds narrow the paired interval (--rounds)" if self.paired else
                          "; `perfsuite ab` pairs the versions in one time window, so drift between runs cancels"))
        if self.thresholds.cpu_memory is False and any(f.metric == "memory" and f.evidence.get("not_gated")
                                                       for f in self.findings):
            out.append("CPU memory (peak-RSS growth) is shown but not gated: it is allocator noise "
                       "(--gate-cpu-memory gates it)")
        untestable = self.untestable
        if untestable:
            need = min_testable_samples(self.thresholds.alpha)
            fails = "they fail the gate (--fail-on-untestable)" if self.fail_on_untestable else (
                "the gate passes without having tested them (--fail-on-untestable makes them fail it)")
            out.append(f"{len(untestable)} time finding(s) untestable: {untestable[0].evidence['untestable']} "
                       f"(first: {untestable[0].point}); {fails}. Set the scenario's timing.min_reps >= {need} "
                       f"and measure the baseline and the candidate again")
        nf = self.floor
        if nf is not None and (nf.runs is None or nf.runs < MIN_NOISE_FLOOR_RUNS):
            made = "does not record how many A/A runs it came from" if nf.runs is None else (
                f"was measured from {nf.runs} A/A run(s)")
            out.append(f"the noise floor {nf.source or '(given)'} {made}; with fewer than {MIN_NOISE_FLOOR_RUNS} "
                       f"the per-point floors vary too much: measure it again with scripts/noise_floor.sh "
                       f"(RUNS >= {MIN_NOISE_FLOOR_RUNS})")
        if nf is not None and nf.forced:
            out.append(f"the noise floor {nf.source or '(given)'} was forced across A/A runs from different "
                       f"environments: its spread includes that change")
        return out

    def flagged_keys(self) -> list[str]:
        """Keys of the points with at least one regression (what a confirming re-run measures again)."""
        return sorted({f.key for f in self.regressions})

    def to_dict(self) -> dict[str, Any]:
        return {
            # "fail": exit 1 without a regression (fail_on_missing / fail_on_untestable)
            "result": "regression" if self.regressions else "fail" if self.exit_code else "pass",
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "warnings": self.warnings,
            "fail_on_missing": self.fail_on_missing,
            "fail_on_untestable": self.fail_on_untestable,
            "allow_missing": self.allow_missing,
            "missing_points": len(self.missing_points),
            "baseline_points": self.baseline_points,
            "low_power": [f.key for f in self.low_power],
            "load_differences": self.load_differences,
            "thresholds": asdict(self.thresholds),
            "noise_floor": self.noise_floor,
            "rerun": self.rerun,
            "forced": self.forced,
            "env_differences": [{"field": k, "baseline": a, "candidate": b} for k, a, b in self.env_differences],
            "findings": [json_safe(asdict(f) | {"point": f.point}) for f in self.findings],
        }


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an unmeasurable ratio, an infinite detectable change) as None:
    strict JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------------------- noise floor
def measure_noise_floor(runs: list[tuple[dict[str, Any], list[dict[str, Any]]]], *, z: float = 3.0,
                        force: bool = False, names: list[str] | None = None) -> NoiseFloor:
    """Noise floor per point from repeated runs of the same code on the same machine (A/A).

    ``runs`` are (env.json dict, rows) pairs, ``names`` their labels for messages. Runs whose
    environments differ (`env_differences`, as `compare_runs` checks) raise `EnvironmentMismatch`
    unless ``force``: their spread would mix a change of machine or software into the floor.

    From each point's median times over the runs, ``s`` = the standard deviation of their logs (the
    run-to-run drift that raw samples of one run cannot show: clocks, thermals, placement). Few runs
    give a noisy ``s`` per point, so a point's ``s`` is never taken below the pooled one (root mean
    square over the points). The floor is ``exp(z · √2 · s) − 1``: the change an A/A pair of that point
    exceeds with probability ≈ 0.3 % at z = 3 — in the spirit of the anchors' advice to keep the gate
    above a multiple (3×) of the observed A/A spread (``harness_anchors.md`` §11).
    Points measured ok in fewer than two runs get no floor; points without one use the largest."""
    if len(runs) < 2:
        raise ValueError(f"noise floor needs at least 2 runs of the same scenario, got {len(runs)}")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or z <= 0:
        raise ValueError(f"noise floor z={z!r} is invalid; expected a number > 0")
    names = names or [f"run {i + 1}" for i in range(len(runs))]
    mixed = [(names[i], d) for i in range(1, len(runs)) if (d := env_differences(runs[0][0], runs[i][0]))]
    if mixed and not force:
        name, diffs = mixed[0]
        what = "; ".join(f"{k}: {names[0]} {a!r}, {name} {b!r}" for k, a, b in diffs)
        raise EnvironmentMismatch(f"noise floor: {len(mixed)} A/A run(s) come from another environment than "
                                  f"{names[0]} (first: {what}); measure every run on one machine with the same "
                                  f"software, or force it")
    logs: dict[str, list[float]] = {}
    for _, rows in runs:
        for row in rows:
            m = _number(field_at(row, "time.median_ms"))
            if row.get("status") == "ok" and m and m > 0:
                logs.setdefault(row["key"], []).append(math.log(m))
    sd = {k: float(np.std(v, ddof=1)) for k, v in logs.items() if len(v) >= 2}
    if not sd:
        raise ValueError("noise floor: no point was measured ok in at least 2 of the runs")
    pooled = math.sqrt(sum(v * v for v in sd.values()) / len(sd))
    points = {k: math.expm1(z * math.sqrt(2) * max(v, pooled)) for k, v in sd.items()}
    return NoiseFloor(points, max(points.values()), env=env_fields(runs[0][0]), runs=len(runs), forced=bool(mixed))


def write_noise_floor(path: str | os.PathLike, run_dirs: list[str | os.PathLike], *,
                      force: bool = False) -> NoiseFloor:
    """Measure the noise floor of ``run_dirs`` (A/A runs) and write it as JSON to ``path``.

    The file records the number of runs (``n_runs``; `Comparison.warnings` flags fewer than
    `MIN_NOISE_FLOOR_RUNS`) and every run's environment fields (``run_envs``); ``env`` is the first
    run's, the one `compare_runs` checks against the baseline. Runs from different environments raise
    `EnvironmentMismatch` unless ``force`` (then ``forced`` is true in the file)."""
    names = [str(r) for r in run_dirs]
    runs = [load_run(r) for r in run_dirs]
    nf = measure_noise_floor(runs, force=force, names=names)
    doc = {"kind": NOISE_FLOOR_KIND, "runs": names, "n_runs": len(runs), "forced": nf.forced,
           "env": nf.env, "run_envs": [{"run": n, "env": env_fields(env)} for n, (env, _) in zip(names, runs)],
           "default": nf.default, "points": nf.points}
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return replace(nf, source=str(path))


def load_noise_floor(path: str | os.PathLike) -> NoiseFloor:
    """Read a file written by `write_noise_floor`; a malformed one raises `ValueError`."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"noise floor file {path}: not found (expected a JSON file written by scripts/noise_floor.sh)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"noise floor file {path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("kind") != NOISE_FLOOR_KIND:
        raise ValueError(f"noise floor file {path}: expected an object with kind={NOISE_FLOOR_KIND!r}")
    points, default = doc.get("points"), _number(doc.get("default"))
    if not isinstance(points, dict) or default is None or default < 0 or any(
            _number(v) is None or v < 0 for v in points.values()):
        raise ValueError(f"noise floor file {path}: expected 'default' (a number >= 0) and 'points' "
                         f"(key -> number >= 0)")
    n_runs = doc.get("n_runs", len(doc["runs"]) if isinstance(doc.get("runs"), list) else None)
    if n_runs is not None and (isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 2):
        raise ValueError(f"noise floor file {path}: n_runs={n_runs!r} is invalid; expected an int >= 2 "
                         f"(the number of A/A runs)")
    env = doc.get("env") if isinstance(doc.get("env"), dict) else {}
    return NoiseFloor({k: float(v) for k, v in points.items()}, default, str(path), env, n_runs,
                      doc.get("forced") is True)


# ------------------------------------------------------------------------------------- entry points
def compare_runs(baseline: str | os.PathLike, candidate: str | os.PathLike, *, thresholds: Thresholds | None = None,
                 noise_floor: str | os.PathLike | NoiseFloor | None = None, force: bool = False,
                 fail_on_missing: bool = False, fail_on_untestable: bool = False,
                 allow_missing: bool = False) -> Comparison:
    """Compare two run folders (or results files).

    Raises `FileNotFoundError` for a missing run, `EnvironmentMismatch` when the environments differ and
    ``force`` is false, `ValueError` for a bad noise-floor file or rows without keys."""
    env_b, rows_b = load_run(baseline)
    env_c, rows_c = load_run(candidate)
    diffs = env_differences(env_b, env_c)
    if diffs and not force:
        what = "; ".join(f"{k}: baseline {a!r}, candidate {b!r}" for k, a, b in diffs)
        raise EnvironmentMismatch(f"runs come from different environments ({what}); compare runs from the same "
                                  f"machine and software, or pass --force to compare anyway")
    nf = load_noise_floor(noise_floor) if isinstance(noise_floor, (str, os.PathLike)) else noise_floor
    nf_diffs = env_differences(nf.env, env_b) if nf is not None and nf.env else []
    if nf_diffs and not force:
        what = "; ".join(f"{k}: noise floor {a!r}, baseline {b!r}" for k, a, b in nf_diffs)
        raise EnvironmentMismatch(f"the noise floor {nf.source} was measured in another environment ({what}); "
                                  f"measure it again with scripts/noise_floor.sh, or pass --force")
    th = thresholds or Thresholds()
    return Comparison(compare_rows(rows_b, rows_c, th, nf), th, env_b, env_c, diffs, force,
                      (nf.source or "given noise floor") if nf else None, fail_on_missing=fail_on_missing,
                      fail_on_untestable=fail_on_untestable, floor=nf, allow_missing=allow_missing,
                      load_differences=run_differences(run_summary(rows_b), run_summary(rows_c)),
                      baseline_points=len({r.get("key") for r in rows_b}))


def confirm(first: Comparison, rerun: Comparison, rerun_source: str = "") -> Comparison:
    """Keep a regression of ``first`` only where ``rerun`` (baseline vs a re-measurement of the flagged
    points) finds the same (point, metric) regressed; the others become ``unchanged`` with both pieces
    of evidence in the detail. TorchBench confirms by bisection before it alerts (anchors §2); here a
    second measurement of just the flagged points plays that role."""
    again = {(f.key, f.metric): f for f in rerun.findings}
    out = []
    for f in first.findings:
        if f.verdict != "regression":
            out.append(f)
            continue
        r = again.get((f.key, f.metric))
        if r is not None and r.verdict == "regression":
            out.append(replace(f, evidence=f.evidence | {"rerun": asdict(r)}, detail=f"{f.detail}; re-run: {r.detail}"))
        else:
            why = r.detail if r is not None else "not measured again"
            out.append(replace(f, verdict="unchanged", evidence=f.evidence | {"rerun": asdict(r) if r else None},
                               detail=f"not confirmed by the re-run ({why}); first run: {f.detail}"))
    order = {v: i for i, v in enumerate(VERDICTS)}
    out.sort(key=lambda f: (order[f.verdict], f.key, f.metric))
    return replace(first, findings=out, rerun=rerun_source or "re-run")
