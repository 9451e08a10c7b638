"""Statistics of the regression gate: when two sets of times differ, and by how much a gate could tell.

Two designs are judged here:

* **separate runs** (`perfsuite compare`): raw samples of each run, a one-sided Mann–Whitney U test and
  a bootstrap interval of the median ratio (`time_verdict`);
* **interleaved rounds** (`perfsuite ab`): one value per round and side, the rounds of A and B measured
  interleaved, judged by the exact sign-test interval of the median *paired* ratio B/A (`paired_verdict`).
  Pairing in the same time window cancels the drift between rounds that raw samples of separate runs
  cannot show.

`detectable_change` says for either design the smallest slowdown that could have been flagged, so a
PASS from a gate without the power to see a change reads as such. The order-statistic interval of a median
is `perfsuite.measure.timing.median_ci_ranks` (imported when needed: it brings torch).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

#: the order-statistic interval of a median needs this many values to reach 95 % coverage
MIN_PAIRED_ROUNDS = 6


def finite(values: Iterable[Any]) -> np.ndarray:
    """The finite numbers among ``values`` as a float array (NaN, inf, None and non-numbers dropped)."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return np.asarray(out, dtype=float)


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
    (`untestable_reason`): neither a regression nor ``unchanged`` can honestly be claimed. NaN/inf samples
    are dropped; a candidate with no finite sample left is a ``regression`` (its measurement broke), a
    baseline with none ``untestable``.

    Regression: the one-sided Mann–Whitney U test says the candidate is slower (p < alpha) *and* the
    whole bootstrap ``confidence`` interval of the median ratio lies above ``1 + threshold``.
    Improvement mirrors it (interval below ``1 / (1 + threshold)``). Requiring the interval, not just
    the point estimate, beyond the threshold is Criterion.rs's rule (a change is reported only when its
    confidence interval clears the noise threshold): a +2 % shift whose estimate wanders past 5 % under
    noise is not flagged, at the price of catching a true +5..8 % change only part of the time."""
    from scipy.stats import mannwhitneyu

    b, c = finite(baseline_ms), finite(candidate_ms)
    if c.size == 0 or b.size == 0:
        # a candidate whose samples are all NaN/inf broke its measurement: never "unchanged"
        side = "candidate" if c.size == 0 else "baseline"
        evidence = {"p_value": None, "alternative": None, "ci": None, "confidence": confidence, "alpha": alpha,
                    "threshold": threshold, "n": [int(b.size), int(c.size)],
                    "reason": f"no finite {side} sample (all NaN/inf)"}
        if side == "candidate":
            return "regression", math.nan, evidence
        evidence["untestable"] = evidence["reason"]
        return "untestable", math.nan, evidence
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


def _order_interval(values: np.ndarray, level: float) -> tuple[float, float, float]:
    """(lo, hi, coverage): the distribution-free interval of the median of ``values`` (sign test)."""
    from .measure.timing import median_ci_coverage, median_ci_ranks

    s = np.sort(values)
    lo, hi = median_ci_ranks(s.size, level)
    return float(s[lo]), float(s[hi]), median_ci_coverage(s.size, level)


def paired_verdict(baseline_ms: Iterable[Any], candidate_ms: Iterable[Any], *, threshold: float,
                   confidence: float = 0.95) -> tuple[str, float | None, dict[str, Any]]:
    """(verdict, median paired ratio, evidence) for one statistic per round (the median, or on a CPU the
    fastest repetition: `perfsuite.ab.ROUND_STATS`) of A (baseline) and B (candidate), round ``i`` of
    each measured in the same window.

    The ratio of round ``i`` is B_i / A_i; rounds where either side has no finite positive value are
    dropped. The interval of the median ratio is the exact sign-test interval (order statistics of the
    ratios, `perfsuite.measure.timing.median_ci_ranks`): it assumes only that the rounds are independent,
    which the fresh process per round and the random order within each pair make plausible. Regression:
    the whole interval above ``1 + threshold``; improvement: the whole interval below ``1 / (1 + threshold)``.
    With an unchanged median ratio of 1 each tail of a 95 % interval errs at most 2.5 % of the time (with 10
    rounds 1.1 %), and far less once the threshold is added. Fewer than `MIN_PAIRED_ROUNDS` usable rounds
    cannot reach 95 %: ``untestable``. A candidate without a single finite round is a ``regression``
    (its measurement broke), never ``unchanged``."""
    a, b = list(baseline_ms), list(candidate_ms)
    if len(a) != len(b):
        raise ValueError(f"paired rounds: {len(a)} baseline and {len(b)} candidate values; expected one per round each")
    ev: dict[str, Any] = {"method": "exact sign-test interval of the median paired ratio B/A",
                          "confidence": confidence, "threshold": threshold, "rounds": len(a), "ci": None}
    if len(b) and not finite(b).size:
        ev["reason"] = "every candidate round is NaN/inf: its measurement broke"
        return "regression", None, ev
    pairs = [(x, y) for x, y in zip(a, b) if finite([x, y]).size == 2 and x > 0 and y > 0]
    ratios = np.asarray([y / x for x, y in pairs], dtype=float)
    ev["n"] = int(ratios.size)
    ev["ratios"] = [float(r) for r in ratios]
    if ratios.size < MIN_PAIRED_ROUNDS:
        ev["untestable"] = (f"{ratios.size} usable round(s): the median's interval needs at least "
                            f"{MIN_PAIRED_ROUNDS} for {confidence:.0%} (use --rounds >= {MIN_PAIRED_ROUNDS})")
        return "untestable", (float(np.median(ratios)) if ratios.size else None), ev
    ratio = float(np.median(ratios))
    lo, hi, coverage = _order_interval(ratios, confidence)
    ev.update(ci=[lo, hi], coverage=coverage, detectable=detectable_paired(ratios, threshold, confidence))
    if lo > 1.0 + threshold:
        return "regression", ratio, ev
    if hi < 1.0 / (1.0 + threshold):
        return "improvement", ratio, ev
    return "unchanged", ratio, ev


def detectable_paired(ratios: np.ndarray, threshold: float, confidence: float = 0.95) -> float:
    """The smallest slowdown (fraction) these paired rounds could have flagged: the interval's lower part
    (median − lower bound, relative) added on top of the threshold. inf with too few rounds."""
    if ratios.size < MIN_PAIRED_ROUNDS:
        return math.inf
    lo, _, _ = _order_interval(ratios, confidence)
    med = float(np.median(ratios))
    return (1.0 + threshold) * (1.0 + max(med - lo, 0.0) / med) - 1.0


def detectable_change(baseline_ms: Iterable[Any], candidate_ms: Iterable[Any], *, threshold: float,
                      alpha: float = 0.01, confidence: float = 0.95) -> float:
    """The smallest slowdown (fraction) `time_verdict` could have flagged for samples like these: the
    threshold (already raised to the noise floor by the caller) widened by the combined relative
    half-widths of both medians' order-statistic intervals (their errors add in quadrature in the ratio).
    inf when the sample counts cannot reach ``alpha`` at all (`untestable_reason`)."""
    a, b = finite(baseline_ms), finite(candidate_ms)
    if a.size == 0 or b.size == 0 or untestable_reason(a.size, b.size, alpha) is not None:
        return math.inf
    widths = []
    for x in (a, b):
        lo, hi, _ = _order_interval(x, confidence)
        med = float(np.median(x))
        widths.append((hi - lo) / (2 * med) if med > 0 else math.inf)
    return (1.0 + threshold) * (1.0 + math.hypot(*widths)) - 1.0
