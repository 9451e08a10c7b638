"""Wall-time measurement with millisecond budgets, in the manner of ``triton.testing.do_bench``.

A few calls estimate the time of one call; the warm-up and measured repetition counts then follow from
the budgets (``warmup_ms``, ``rep_ms``), clamped to ``[min_reps, max_reps]``. Every repetition is timed
on its own (a CUDA event pair on a GPU, ``time.perf_counter`` around a synchronised call on the CPU) and
every raw sample is kept, so later steps (reports, the regression gate) can apply their own statistics.

The summary is the median, the IQR and a distribution-free confidence interval of the median from
order statistics (the ranks come from the binomial(n, 1/2) distribution, as asv's ``quantile_ci`` does),
which needs no assumption about the shape of the timing distribution. The interval aims at 95 %; with
fewer than 6 samples no pair of order statistics reaches it, the interval is then [min, max], and its
actual coverage (``ci_coverage``, e.g. 0.75 for 3 samples) is recorded beside it so that nobody reads it
as a 95 % interval.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch

#: calls used to estimate the duration of one call before the budgets are turned into counts
ESTIMATE_CALLS = 3


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timer_name(device: str) -> str:
    return "cuda_event" if device == "cuda" else "perf_counter"


def time_call(fn: Callable[[], object], device: str) -> float:
    """Milliseconds of one synchronised call (host clock; used for cold start and estimates)."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - t0) * 1e3


#: (chunks, gate) set by a round's process of `perfsuite ab` (`set_chunk_gate`): the measured repetitions
#: are split into ``chunks`` consecutive chunks and ``gate()`` is called, untimed, before each, so that the
#: driver can alternate the chunks of A and B within one round. None: one chunk, no gate.
_chunk_gate: tuple[int, Callable[[], None]] | None = None


def set_chunk_gate(chunks: int, gate: Callable[[], None] | None) -> None:
    """Call ``gate()`` before each of ``chunks`` chunks of the measured repetitions (None: no gate). Meant
    for a process that measures one point and exits (the setting is process-wide)."""
    global _chunk_gate
    _chunk_gate = None if gate is None else (max(1, int(chunks)), gate)


def _samples(fn: Callable[[], object], reps: int, device: str) -> list[float]:
    if _chunk_gate is None:
        return _timed(fn, reps, device)
    chunks, gate = _chunk_gate
    bounds = [round(c * reps / chunks) for c in range(chunks + 1)]
    out: list[float] = []
    for lo, hi in zip(bounds, bounds[1:]):
        gate()
        out += _timed(fn, hi - lo, device)
    return out


def _timed(fn: Callable[[], object], reps: int, device: str) -> list[float]:
    if reps <= 0:
        return []
    if device == "cuda":
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        synchronize(device)
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        synchronize(device)
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench(fn: Callable[[], object], device: str, *, warmup_ms: float, rep_ms: float, min_reps: int,
          max_reps: int, estimate_ms: float | None = None) -> dict:
    """Time ``fn`` with budgets; returns the ``time`` block of a row without ``cold_start_ms``.

    ``fn`` must already have been called once (cold start is measured separately by the caller).
    ``estimate_ms``: the time of a steady-state call the caller already measured (saves the estimate
    calls; slow points on a CPU pay seconds for each)."""
    if estimate_ms is None:
        estimate_ms = statistics.median(time_call(fn, device) for _ in range(ESTIMATE_CALLS))
    est = estimate_ms
    est = max(est, 1e-3)
    n_warmup = max(1, math.ceil(warmup_ms / est))
    reps = min(max(min_reps, math.ceil(rep_ms / est)), max_reps)
    for _ in range(n_warmup):
        fn()
    synchronize(device)
    samples = _samples(fn, reps, device)
    return {**summarize(samples), "warmup_calls": n_warmup, "timer": timer_name(device)}


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the sorted samples bracketing the median with coverage >= ``level``.

    With too few samples for that coverage the full range [min, max] is returned (coverage 1 - 2^(1-n))."""
    alpha = (1.0 - level) / 2.0
    # X = number of samples below the median ~ binomial(n, 1/2); P(median < x_(k+1)) = P(X <= k).
    # Exact integer arithmetic: the largest k with P(X <= k) <= alpha.
    total, cum, k = 1 << n, 1, 0          # cum = sum_{i<=k} C(n, i), starting at k = 0
    while k + 1 < n:
        nxt = cum + math.comb(n, k + 1)
        if nxt / total > alpha:
            break
        cum, k = nxt, k + 1
    return k, n - 1 - k


def median_ci_coverage(n: int, level: float = 0.95) -> float:
    """Exact coverage of the `median_ci_ranks` interval for ``n`` samples: 1 − 2·P(X ≤ lo) with
    X ~ binomial(n, 1/2); at least ``level`` from 6 samples on, 1 − 2^(1−n) below."""
    if n < 1:
        raise ValueError(f"median_ci_coverage: n={n}; expected at least one sample")
    lo, _ = median_ci_ranks(n, level)
    below = sum(math.comb(n, i) for i in range(lo + 1))
    return 1.0 - 2 * below / (1 << n)  # integers until the one division: 2.0 * below overflows past n = 1023


def ci_label(time_block: dict) -> str:
    """The median's interval of a row's ``time`` block as text: ``lo–hi`` when it covers the median
    with ≥ 95 % probability, else ``lo–hi (n=3: min–max, 75 %)``, so a short sample is never shown as a
    95 % interval. Rows written before ``ci_coverage`` existed get it from ``n`` (or the samples)."""
    lo, hi = time_block["ci95_ms"]
    text = f"{lo:.4g}–{hi:.4g}"
    coverage = time_block.get("ci_coverage")
    n = time_block.get("n") or len(time_block.get("samples_ms") or [])
    if coverage is None and n:
        coverage = median_ci_coverage(int(n))
    if coverage is None:
        return f"{text} (coverage unknown)"
    if coverage >= 0.95:
        return text
    return f"{text} (n={n}: min–max, {100 * coverage:.3g} %)"


def quantile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted samples (numpy's default method)."""
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def summarize(samples_ms: list[float]) -> dict:
    """``samples_ms`` (raw, in measured order), median, mean, IQR, the interval of the median that aims
    at 95 % (``ci95_ms``) with its exact coverage (``ci_coverage``, below 0.95 when n < 6), n."""
    if not samples_ms:
        raise ValueError("summarize: samples_ms is empty; expected at least one timing sample")
    xs = sorted(samples_ms)
    lo, hi = median_ci_ranks(len(xs))
    return {
        "samples_ms": list(samples_ms),
        "median_ms": statistics.median(xs),
        "mean_ms": statistics.fmean(xs),
        "iqr_ms": quantile(xs, 0.75) - quantile(xs, 0.25),
        "ci95_ms": [xs[lo], xs[hi]],
        "ci_coverage": median_ci_coverage(len(xs)),
        "n": len(xs),
    }
