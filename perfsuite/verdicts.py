"""Verdicts of the regression gate: what counts as a change (`Thresholds`), one finding per (point,
metric) (`Finding`) and how each metric of two rows of the same point is judged (`compare_point`,
`compare_rows`). `perfsuite.compare` wraps these into a `Comparison` of two runs; the statistics of time
live in `perfsuite.stats`, the machine-load rule in `perfsuite.measure.load`.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

from .measure.load import load_flags
from .results import field_at
from .stats import detectable_change, finite, time_verdict

#: ``untestable``: a time finding whose sample counts cannot reach significance (listed right after
#: the regressions: it is the other thing a reader of the gate must act on)
VERDICTS = ("regression", "untestable", "improvement", "unchanged", "missing", "new")
METRICS = ("status", "time", "memory", "firing_rate", "agreement", "accuracy")
#: statuses after which a point's metrics mean nothing; ok -> one of these is a regression
FAILED = ("error", "oom", "timeout")


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
    #: gate the CPU's peak-RSS growth (``cpu_peak_rss_delta``)? Off by default: it is allocator noise
    #: (two runs of the same code differ by x1.4); the CUDA allocator's peak is always gated
    cpu_memory: bool = False

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
    b, c = field_at(br, "time.samples_ms"), field_at(cr, "time.samples_ms")
    if not b or not c:
        return _one_sided(key, "time", b or None, c or None, "no raw time samples on one side")
    threshold = max(th.time, floor or 0.0)
    seed = th.seed + zlib.crc32(key.encode())  # a different resampling stream per point, reproducible
    verdict, ratio, ev = time_verdict(b, c, threshold=threshold, alpha=th.alpha, confidence=th.confidence,
                                      resamples=th.bootstrap, seed=seed)
    if floor is not None:
        ev["noise_floor"] = floor
    ev["detectable"] = detectable_change(b, c, threshold=threshold, alpha=th.alpha, confidence=th.confidence)
    load = {side: flags for side, row in (("baseline", br), ("candidate", cr)) if (flags := load_flags(row.get("load")))}
    if load:
        ev["load"] = load
    if ev.get("reason"):  # no finite sample on one side
        return Finding(key, "time", verdict, _median(b), _median(c), None, ev, ev["reason"], "ms")
    ci = "" if ev["ci"] is None else " [{:.3f}, {:.3f}]".format(*ev["ci"])
    detail = f"x{ratio:.3f}{ci} p={ev['p_value']:.2g}, threshold {threshold:.1%}"
    if math.isfinite(ev["detectable"]):
        detail += f", detectable >= {ev['detectable']:+.0%}"
    if load:
        detail += "; under load: " + "; ".join(f"{side} {', '.join(f)}" for side, f in load.items())
    if verdict == "untestable":
        detail += f" (untestable: {ev['untestable']})"
    elif verdict == "unchanged" and (ratio > 1 + threshold or ratio < 1 / (1 + threshold)):
        detail += " (estimate beyond threshold, evidence not sufficient)"
    return Finding(key, "time", verdict, _median(b), _median(c), ratio, ev, detail, "ms")


def _median(samples: Iterable[Any]) -> float | None:
    x = finite(samples)
    return float(np.median(x)) if x.size else None


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
    bm, cm = _number(field_at(br, "memory.peak_allocated_bytes")), _number(field_at(cr, "memory.peak_allocated_bytes"))
    b_method, c_method = field_at(br, "memory.method"), field_at(cr, "memory.method")
    if bm is not None and cm is not None and b_method != c_method:
        out.append(Finding(key, "memory", "missing", bm, cm,
                           detail=f"memory measured by different methods ({b_method} vs {c_method})"))
    elif bm is not None and cm is not None:
        f = _ratio_finding(key, "memory", bm, cm, th.memory, "bytes")
        if b_method == "cpu_peak_rss_delta" and not th.cpu_memory and f.verdict != "unchanged":
            # shown, not gated: the RSS growth of the same code moves by tens of percent between runs
            f = replace(f, verdict="unchanged", evidence=f.evidence | {"not_gated": True},
                        detail=f"{f.detail} (CPU peak-RSS growth: shown, not gated)")
        out.append(f)
    else:
        out.append(_one_sided(key, "memory", bm, cm))
    for metric, path, tol, two_sided in (
        ("firing_rate", "activity.firing_rate", th.firing_rate, True),
        ("agreement", "agreement.equal_fraction", th.agreement, False),
        ("accuracy", "accuracy", th.accuracy, False),
    ):
        b, c = _number(field_at(br, path)), _number(field_at(cr, path))
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
                 thresholds: Thresholds | None = None, noise_floor: Any = None) -> list[Finding]:
    """Findings for every point of either run, regressions first, then by key and metric. ``noise_floor``:
    a `perfsuite.compare.NoiseFloor` (its ``floor(key)`` raises a point's time threshold), or None."""
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
