"""Best backend per neuron and T with the interval of its median, speed-ups over the baselines (LIF, PSN)
with a stated bound, backend-over-backend ratios and the side-by-side comparison of several runs.

A time whose interval (the row's ``time.ci95_ms``) reaches more than `NOISY` from its median either way,
or that has no interval, is *noisy*; a speed-up is given a bound only when both of its times are not noisy:
[baseline low / neuron high, baseline high / neuron low].

May import: .frames.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .frames import BASELINES, OWN_BACKENDS, SETTING, TIME, bench_ok

# ------------------------------------------------------------------------------------ best and speed-up

#: relative half-width beyond which a time's interval marks it noisy (±20 %)
NOISY = 0.2


def interval(df: pd.DataFrame) -> pd.DataFrame:
    """``ci_lo``, ``ci_hi`` (ms, from ``time.ci95_ms``; NaN when a row has none) and ``noisy`` (no interval,
    or one reaching beyond ±`NOISY` of the median) of timed rows."""
    ci = df["time.ci95_ms"] if "time.ci95_ms" in df.columns else pd.Series(None, index=df.index, dtype=object)

    def end(v, i):
        if isinstance(v, (list, tuple)) and len(v) == 2:
            x = pd.to_numeric(v[i], errors="coerce")
            return float(x) if pd.notna(x) else np.nan
        return np.nan

    lo = ci.map(lambda v: end(v, 0)).astype(float)
    hi = ci.map(lambda v: end(v, 1)).astype(float)
    med = pd.to_numeric(df[TIME], errors="coerce")
    noisy = ~(np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi <= med * (1 + NOISY)) & (lo >= med * (1 - NOISY)))
    return pd.DataFrame({"ci_lo": lo, "ci_hi": hi, "noisy": noisy.astype(bool)}, index=df.index)


#: backends never ranked as "best": the float64 reference is the test oracle, slow on purpose
NOT_RANKED = ("reference",)


def best_backend(df: pd.DataFrame) -> pd.DataFrame:
    """Per run × settings × neuron × T: the fastest backend, its median time (ms) and that time's interval
    (`interval`); the float64 reference backend is left out (it is the oracle, not a way to run a neuron)."""
    ok = bench_ok(df)
    ok = ok[~ok["backend"].isin(NOT_RANKED)]
    keys = SETTING + ["neuron", "seq_len"]
    if ok.empty:
        return pd.DataFrame(columns=keys + ["backend", TIME, "ci_lo", "ci_hi", "noisy"])
    idx = ok.groupby(keys, observed=True)[TIME].idxmin()
    best = ok.loc[idx]
    return pd.concat([best[keys + ["backend", TIME]], interval(best)], axis=1).reset_index(drop=True)


def speedups(df: pd.DataFrame, baselines: Iterable[str] = BASELINES) -> pd.DataFrame:
    """Best-backend time of every neuron with, per baseline, ``speedup_over_<baseline>`` =
    baseline's best time / neuron's best time at equal settings and T (NaN where the baseline has no
    point there, with ``speedup_over_<baseline>_reason``), and its bound ``speedup_over_<baseline>_lo`` /
    ``_hi`` from the two times' intervals (NaN, with a ``_bound_reason``, when either time is noisy)."""
    best = best_backend(df)
    keys = SETTING + ["seq_len"]
    for base in baselines:
        ref = best[best["neuron"] == base][keys + [TIME, "ci_lo", "ci_hi", "noisy"]].rename(
            columns={TIME: "_ref", "ci_lo": "_ref_lo", "ci_hi": "_ref_hi", "noisy": "_ref_noisy"})
        best = best.merge(ref, on=keys, how="left")
        col = f"speedup_over_{base}"
        best[col] = best["_ref"] / best[TIME]
        best[f"{col}_reason"] = np.where(best["_ref"].isna(), f"no ok {base} point at these settings", None)
        bounded = ~best["noisy"].astype(bool) & (best["_ref_noisy"] == False)  # noqa: E712 (NaN: no baseline)
        best[f"{col}_lo"] = np.where(bounded, best["_ref_lo"] / best["ci_hi"], np.nan)
        best[f"{col}_hi"] = np.where(bounded, best["_ref_hi"] / best["ci_lo"], np.nan)
        best[f"{col}_bound_reason"] = np.where(
            best["_ref"].isna() | bounded, None,
            np.where(best["noisy"].astype(bool), "the neuron's time is noisy", f"{base}'s time is noisy"))
        best = best.drop(columns=["_ref", "_ref_lo", "_ref_hi", "_ref_noisy"])
    return best


def backend_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Speed-up of every backend over eager and over each peer backend, per neuron × settings × T.

    ``over`` names the reference backend, ``ratio`` = reference time / backend time (> 1 = faster).
    """
    ok = bench_ok(df)
    keys = SETTING + ["neuron", "seq_len"]
    med = ok.groupby(keys + ["backend"], observed=True)[TIME].median().reset_index()
    peers = sorted(set(med["backend"]) - set(OWN_BACKENDS))
    recs = []
    for ref in ["eager"] + peers:
        r = med[med["backend"] == ref][keys + [TIME]].rename(columns={TIME: "_ref"})
        m = med[(med["backend"] != ref) & (med["backend"] != "reference")].merge(r, on=keys, how="inner")
        if ref != "eager":  # over a peer, only perfsuite's own fast backends are of interest
            m = m[m["backend"].isin(OWN_BACKENDS)]
        m["over"] = ref
        m["ratio"] = m["_ref"] / m[TIME]
        recs.append(m.drop(columns="_ref"))
    cols = keys + ["backend", "over", TIME, "ratio"]
    return pd.concat(recs, ignore_index=True)[cols] if recs else pd.DataFrame(columns=cols)


def compare_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Median times of matching points side by side, one column per run, and ``ratio: <run>`` =
    that run's time / the first run's (< 1 = faster than the first run)."""
    ok = bench_ok(df)
    runs = list(df["run"].cat.categories)
    keys = ["neuron", "backend", "mode", "precision", "workload", "batch", "features", "seq_len"]
    if len(runs) < 2 or ok.empty:
        return pd.DataFrame(columns=keys + runs)
    wide = ok.pivot_table(index=keys, columns="run", values=TIME, aggfunc="median", observed=True)
    wide = wide.reindex(columns=runs)
    for r in runs[1:]:
        wide[f"ratio: {r}"] = wide[r] / wide[runs[0]]
    return wide.reset_index()
