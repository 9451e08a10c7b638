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
  tight threshold.
* **firing_rate**, **agreement** (``agreement.equal_fraction``) and, for extrapolation rows,
  **accuracy**: absolute tolerances. These flag a change of behaviour, not of speed, so a firing-rate
  move in either direction is a regression.
* **status**: a point that measured ``ok`` in the baseline and failed (error, oom, timeout) in the
  candidate is a regression; one that now skips is listed as missing.

Points only in the baseline are ``missing``, points only in the candidate are ``new``. Runs from
different environments (GPU model, driver, torch, triton) are refused unless forced: a baseline from
another machine says nothing about a change of code.

Exit codes (`Comparison.exit_code`): 0 no regression, 1 at least one regression (or a missing /
untestable finding when ``fail_on_missing`` / ``fail_on_untestable`` is set); untestable findings alone
pass with a warning (`Comparison.warnings`). Bad input (missing files, mismatched environments, a bad
noise-floor file) raises, and the CLI turns that into exit 2.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .environment import env_differences, env_fields
from .results import load_run

#: ``untestable``: a time finding whose sample counts cannot reach significance (listed right after
#: the regressions: it is the other thing a reader of the gate must act on)
VERDICTS = ("regression", "untestable", "improvement", "unchanged", "missing", "new")
METRICS = ("status", "time", "memory", "firing_rate", "agreement", "accuracy")
#: statuses after which a point's metrics mean nothing; ok -> one of these is a regression
FAILED = ("error", "oom", "timeout")
NOISE_FLOOR_KIND = "perfsuite-noise-floor"
#: fewer A/A runs than this give per-point floors that vary too much (docs/regression.md); compare warns
MIN_NOISE_FLOOR_RUNS = 5


class EnvironmentMismatch(ValueError):
    """Baseline and candidate were measured in different environments (and ``force`` was not set)."""


# ----------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Thresholds:
    """What counts as a change. Ratios are fractions (0.05 = 5 %), tolerances absolute."""

    time: float = 0.05
    alpha: float = 0.01
    confidence: float = 0.95
    bootstrap: int = 1000
    memory: float = 0.01
    firing_rate: float = 0.01
    agreement: float = 0.005
    accuracy: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("time", "memory", "firing_rate", "agreement", "accuracy"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"threshold {name}={v!r} is invalid; expected a finite number >= 0")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha={self.alpha!r} is invalid; expected a number in (0, 0.5)")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) or not (
                0.5 <= self.confidence < 1):
            raise ValueError(f"confidence={self.confidence!r} is invalid; expected a number in [0.5, 1)")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 100:
            raise ValueError(f"bootstrap={self.bootstrap!r} is invalid; expected an int >= 100 (resamples)")


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


# ----------------------------------------------------------------------------------------- results
@dataclass
class Finding:
    """One verdict for one (point, metric) with its evidence.

    ``change`` is the ratio candidate/baseline for time and memory, the difference candidate−baseline
    for the absolute metrics, ``None`` where one side has no value."""

    key: str
    metric: str
    verdict: str
    baseline: Any = None
    candidate: Any = None
    change: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    #: unit of baseline/candidate ("ms" median time, "bytes"; "" for fractions and statuses)
    unit: str = ""

    @property
    def point(self) -> str:
        """Readable head of the key (without the parameter hash)."""
        return self.key.split("#", 1)[0]


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
        if self.fail_on_untestable and self.untestable:
            return 1
        return 0

    @property
    def warnings(self) -> list[str]:
        """What limits this comparison's power, for the headline's reader: untestable time findings
        (with the scenario setting that fixes them) and a noise floor from too few or mixed A/A runs."""
        out = []
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
            "thresholds": asdict(self.thresholds),
            "noise_floor": self.noise_floor,
            "rerun": self.rerun,
            "forced": self.forced,
            "env_differences": [{"field": k, "baseline": a, "candidate": b} for k, a, b in self.env_differences],
            "findings": [asdict(f) | {"point": f.point} for f in self.findings],
        }


# --------------------------------------------------------------------------------------- statistics
def _row_medians(x: np.ndarray) -> np.ndarray:
    """Median of each row of ``x`` [B, n] (partition instead of np.median: the bootstrap's hot spot)."""
    n = x.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(x, k, axis=1)[:, k]
    p = np.partition(x, (k - 1, k), axis=1)
    return (p[:, k - 1] + p[:, k]) / 2


def median_ratio_interval(baseline: np.ndarray, candidate: np.ndarray, *, confidence: float, resamples: int,
                          rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of median(candidate)/median(baseline); each side resampled alone."""
    b = baseline[rng.integers(0, baseline.size, (resamples, baseline.size))]
    c = candidate[rng.integers(0, candidate.size, (resamples, candidate.size))]
    ratios = _row_medians(c) / _row_medians(b)
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def min_testable_samples(alpha: float) -> int:
    """Smallest ``n`` such that ``n`` samples a side let the exact one-sided U test reach p < ``alpha``
    (its smallest p is 1 / C(2n, n): 5 a side give 1/252 ≈ 0.004, 4 give 1/70 ≈ 0.014)."""
    n = 1
    while 1 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


def untestable_reason(n_baseline: int, n_candidate: int, alpha: float) -> str | None:
    """Why samples of these sizes cannot show a change at ``alpha``, or None when they can.

    The exact one-sided Mann–Whitney U test's smallest p-value is 1 / C(n_b + n_c, n_b), reached when
    every candidate sample lies beyond every baseline sample; at or above ``alpha`` no data can be
    significant, so the verdict would be ``unchanged`` whatever the times were."""
    p_min = 1 / math.comb(n_baseline + n_candidate, n_baseline)
    if p_min < alpha:
        return None
    return (f"too few samples ({n_baseline} baseline, {n_candidate} candidate): the U test's smallest p is "
            f"{p_min:.2g}, not below alpha={alpha:g}")


def time_verdict(baseline_ms: Iterable[float], candidate_ms: Iterable[float], *, threshold: float,
                 alpha: float = 0.01, confidence: float = 0.95, resamples: int = 1000,
                 seed: int = 0) -> tuple[str, float, dict[str, Any]]:
    """(verdict, median ratio, evidence) for two sets of raw time samples.

    ``untestable`` (reason in ``evidence["untestable"]``) when the sample counts cannot reach ``alpha``
    (`untestable_reason`): neither a regression nor ``unchanged`` can honestly be claimed.

    Regression: the one-sided Mann–Whitney U test says the candidate is slower (p < alpha) *and* the
    whole bootstrap ``confidence`` interval of the median ratio lies above ``1 + threshold``.
    Improvement mirrors it (interval below ``1 / (1 + threshold)``). Requiring the interval, not just
    the point estimate, beyond the threshold is Criterion.rs's rule (a change is reported only when its
    confidence interval clears the noise threshold): a +2 % shift whose estimate wanders past 5 % under
    noise is not flagged, at the price of catching a true +5..8 % change only part of the time."""
    from scipy.stats import mannwhitneyu

    b = np.asarray(list(baseline_ms), dtype=float)
    c = np.asarray(list(candidate_ms), dtype=float)
    ratio = float(np.median(c) / np.median(b))
    direction = "greater" if ratio >= 1.0 else "less"  # test the direction the medians point to
    p = float(mannwhitneyu(c, b, alternative=direction).pvalue)
    evidence = {"p_value": p, "alternative": "slower" if direction == "greater" else "faster", "ci": None,
                "confidence": confidence, "alpha": alpha, "threshold": threshold, "n": [int(b.size), int(c.size)]}
    why = untestable_reason(int(b.size), int(c.size), alpha)
    if why is not None:
        evidence["untestable"] = why
        return "untestable", ratio, evidence
    if p >= alpha:  # no verdict can follow; skip the bootstrap (most points of a quiet run end here)
        return "unchanged", ratio, evidence
    lo, hi = median_ratio_interval(b, c, confidence=confidence, resamples=resamples, rng=np.random.default_rng(seed))
    evidence["ci"] = [lo, hi]
    if ratio >= 1.0 and lo > 1.0 + threshold:
        return "regression", ratio, evidence
    if ratio < 1.0 and hi < 1.0 / (1.0 + threshold):
        return "improvement", ratio, evidence
    return "unchanged", ratio, evidence


# ------------------------------------------------------------------------------------- per metric
def _get(row: dict[str, Any], path: str) -> Any:
    cur: Any = row
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _one_sided(key: str, metric: str, b: Any, c: Any, why: str = "") -> Finding | None:
    """missing/new when one side lacks the metric; None when both lack it."""
    if b is None and c is None:
        return None
    if c is None:
        return Finding(key, metric, "missing", b, None, detail=why or f"candidate has no {metric}")
    return Finding(key, metric, "new", None, c, detail=why or f"baseline has no {metric}")


def _time_finding(key: str, br: dict, cr: dict, th: Thresholds, floor: float | None) -> Finding | None:
    b, c = _get(br, "time.samples_ms"), _get(cr, "time.samples_ms")
    if not b or not c:
        return _one_sided(key, "time", b or None, c or None, "no raw time samples on one side")
    threshold = max(th.time, floor or 0.0)
    seed = th.seed + zlib.crc32(key.encode())  # a different resampling stream per point, reproducible
    verdict, ratio, ev = time_verdict(b, c, threshold=threshold, alpha=th.alpha, confidence=th.confidence,
                                      resamples=th.bootstrap, seed=seed)
    if floor is not None:
        ev["noise_floor"] = floor
    ci = "" if ev["ci"] is None else " [{:.3f}, {:.3f}]".format(*ev["ci"])
    detail = f"x{ratio:.3f}{ci} p={ev['p_value']:.2g}, threshold {threshold:.1%}"
    if verdict == "untestable":
        detail += f" (untestable: {ev['untestable']})"
    elif verdict == "unchanged" and (ratio > 1 + threshold or ratio < 1 / (1 + threshold)):
        detail += " (estimate beyond threshold, evidence not sufficient)"
    return Finding(key, "time", verdict, float(np.median(b)), float(np.median(c)), ratio, ev, detail, "ms")


def _ratio_finding(key: str, metric: str, b: float, c: float, threshold: float, unit: str) -> Finding:
    if b == 0:
        verdict = "unchanged" if c == 0 else "regression"
        return Finding(key, metric, verdict, b, c, None, {"threshold": threshold}, f"{b:g} -> {c:g} {unit}", unit)
    ratio = c / b
    verdict = "regression" if ratio > 1 + threshold else "improvement" if ratio < 1 - threshold else "unchanged"
    return Finding(key, metric, verdict, b, c, ratio, {"threshold": threshold},
                   f"x{ratio:.3f}, threshold {threshold:.1%}", unit)


def _abs_finding(key: str, metric: str, b: float, c: float, tol: float, *, two_sided: bool) -> Finding:
    """Absolute tolerance. two_sided: any move beyond tol is a regression (behaviour changed);
    otherwise a drop is a regression and a rise an improvement (agreement, accuracy)."""
    d = c - b
    if abs(d) <= tol:
        verdict = "unchanged"
    elif two_sided or d < 0:
        verdict = "regression"
    else:
        verdict = "improvement"
    return Finding(key, metric, verdict, b, c, d, {"tolerance": tol},
                   f"{b:.4g} -> {c:.4g} (diff {d:+.4g}, tolerance {tol:g})")


def compare_point(key: str, br: dict, cr: dict, th: Thresholds, floor: float | None = None) -> list[Finding]:
    """Findings of one point present in both runs."""
    bs, cs = br.get("status"), cr.get("status")
    if bs != "ok" or cs != "ok":
        if bs == "ok" and cs in FAILED:
            verdict, detail = "regression", f"ok -> {cs}: {cr.get('reason') or 'no reason given'}"
        elif bs == "ok":
            verdict, detail = "missing", f"candidate {cs}: {cr.get('reason') or 'no reason given'}"
        elif cs == "ok":
            verdict, detail = ("improvement" if bs in FAILED else "new"), f"{bs} -> ok"
        else:
            verdict, detail = "unchanged", f"{bs} -> {cs}"
        return [Finding(key, "status", verdict, bs, cs, detail=detail)]

    out: list[Finding | None] = [_time_finding(key, br, cr, th, floor)]
    bm, cm = _number(_get(br, "memory.peak_allocated_bytes")), _number(_get(cr, "memory.peak_allocated_bytes"))
    b_method, c_method = _get(br, "memory.method"), _get(cr, "memory.method")
    if bm is not None and cm is not None and b_method != c_method:
        out.append(Finding(key, "memory", "missing", bm, cm,
                           detail=f"memory measured by different methods ({b_method} vs {c_method})"))
    elif bm is not None and cm is not None:
        out.append(_ratio_finding(key, "memory", bm, cm, th.memory, "bytes"))
    else:
        out.append(_one_sided(key, "memory", bm, cm))
    for metric, path, tol, two_sided in (
        ("firing_rate", "activity.firing_rate", th.firing_rate, True),
        ("agreement", "agreement.equal_fraction", th.agreement, False),
        ("accuracy", "accuracy", th.accuracy, False),
    ):
        b, c = _number(_get(br, path)), _number(_get(cr, path))
        if b is not None and c is not None:
            out.append(_abs_finding(key, metric, b, c, tol, two_sided=two_sided))
        else:
            out.append(_one_sided(key, metric, b, c))
    return [f for f in out if f is not None]


def _by_key(rows: Iterable[dict[str, Any]], side: str) -> dict[str, dict[str, Any]]:
    """Rows by key; a key measured twice (a resumed run) keeps its last row."""
    out: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        key = row.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError(f"{side}: row {i + 1} has no 'key' (expected rows written by perfsuite run)")
        out[key] = row
    return out


def compare_rows(baseline: Iterable[dict[str, Any]], candidate: Iterable[dict[str, Any]],
                 thresholds: Thresholds | None = None, noise_floor: NoiseFloor | None = None) -> list[Finding]:
    """Findings for every point of either run, regressions first, then by key and metric."""
    th = thresholds or Thresholds()
    b, c = _by_key(baseline, "baseline"), _by_key(candidate, "candidate")
    findings: list[Finding] = []
    for key in sorted(b.keys() | c.keys()):
        if key not in c:
            findings.append(Finding(key, "point", "missing", b[key].get("status"), None, detail="not in the candidate"))
        elif key not in b:
            findings.append(Finding(key, "point", "new", None, c[key].get("status"), detail="not in the baseline"))
        else:
            findings.extend(compare_point(key, b[key], c[key], th, noise_floor.floor(key) if noise_floor else None))
    order = {v: i for i, v in enumerate(VERDICTS)}
    return sorted(findings, key=lambda f: (order[f.verdict], f.key, f.metric))


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
            m = _number(_get(row, "time.median_ms"))
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
                 fail_on_missing: bool = False, fail_on_untestable: bool = False) -> Comparison:
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
                      fail_on_untestable=fail_on_untestable, floor=nf)


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


def rerun_points(scenario: str | os.PathLike, keys: Iterable[str], device: str | None = None) -> list:
    """The points of ``scenario`` whose keys are in ``keys``; `ValueError` when any key is not there (a
    re-run with another scenario or device could not confirm anything)."""
    from .scenario import load_scenario

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
    from .runner import run_points

    points = rerun_points(scenario, keys, first.env_candidate.get("device"))
    run_points(points, out_dir, progress=progress, console=console)
    again = compare_runs(baseline, out_dir, thresholds=first.thresholds, noise_floor=first.floor, force=first.forced)
    return confirm(first, again, str(out_dir))


# ------------------------------------------------------------------------------------------ output
_COLUMNS = ("point", "metric", "verdict", "baseline", "candidate", "evidence")


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    text = f"{v:.4g}" if isinstance(v, float) else str(v)
    return f"{text} {unit}" if unit else text


def _headline(c: Comparison) -> str:
    n = c.counts()
    parts = ", ".join(f"{n[v]} {v}" for v in VERDICTS if n[v])
    # FAIL: exit 1 without a regression (--fail-on-missing / --fail-on-untestable)
    head = "REGRESSION" if c.regressions else "FAIL" if c.exit_code else "PASS"
    extra = []
    if c.forced and c.env_differences:
        extra.append("forced across environments: " + "; ".join(f"{k} {a!r} vs {b!r}" for k, a, b in c.env_differences))
    if c.noise_floor:
        extra.append(f"noise floor from {c.noise_floor}")
    if c.rerun:
        extra.append(f"flagged points re-measured in {c.rerun}; only regressions the re-run agrees with remain")
    return f"{head}: {parts or 'no points'}" + (f" ({'; '.join(extra)})" if extra else "")


def _shown(c: Comparison, show_all: bool) -> list[Finding]:
    return c.findings if show_all else [f for f in c.findings if f.verdict != "unchanged"]


def render_table(c: Comparison, console=None, *, show_all: bool = False) -> None:
    """Print the verdicts as a rich table (changed points only unless ``show_all``) and a headline."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    style = {"regression": "bold red", "untestable": "bold yellow", "improvement": "green", "missing": "yellow",
             "new": "cyan", "unchanged": "dim"}
    table = Table(title="perfsuite compare", show_lines=False)
    for col in _COLUMNS:
        table.add_column(col, overflow="fold")
    for f in _shown(c, show_all):
        table.add_row(f.point, f.metric, f"[{style[f.verdict]}]{f.verdict}[/]", _fmt(f.baseline, f.unit),
                      _fmt(f.candidate, f.unit), f.detail)
    if table.row_count:
        console.print(table)
    console.print(("[bold red]" if c.exit_code else "[bold green]") + _headline(c) + "[/]")
    for w in c.warnings:  # Text, not markup: a path in the warning may hold brackets
        console.print(Text.assemble(("warning: ", "bold yellow"), w))


def to_markdown(c: Comparison) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: headline, changed findings, every finding folded away."""

    def table(findings: list[Finding]) -> list[str]:
        lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        for f in findings:
            cells = [f"`{f.point}`", f.metric, f"**{f.verdict}**" if f.verdict == "regression" else f.verdict,
                     _fmt(f.baseline, f.unit), _fmt(f.candidate, f.unit), f.detail]
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
        return lines

    lines = ["## perfsuite regression gate", "", f"**{_headline(c)}**", ""]
    for w in c.warnings:
        lines += [f"> **warning:** {w}", ""]
    changed = _shown(c, False)
    if changed:
        lines += table(changed) + [""]
    if c.findings:
        lines += ["<details><summary>all findings</summary>", ""] + table(c.findings) + ["", "</details>", ""]
    return "\n".join(lines)


def to_json(c: Comparison) -> str:
    return json.dumps(c.to_dict(), indent=1, default=str, allow_nan=False) + "\n"

