"""Best backend per neuron and T, speed-ups over the baselines (LIF, PSN), backend-over-backend ratios
and the side-by-side comparison of several runs.

May import: .frames.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .frames import BASELINES, OWN_BACKENDS, SETTING, TIME, bench_ok

# ------------------------------------------------------------------------------------ best and speed-up

#: backends never ranked as "best": the float64 reference is the test oracle, slow on purpose
NOT_RANKED = ("reference",)


def best_backend(df: pd.DataFrame) -> pd.DataFrame:
    """Per run × settings × neuron × T: the fastest backend and its median time (ms); the float64
    reference backend is left out (it is the oracle, not a way to run a neuron)."""
    ok = bench_ok(df)
    ok = ok[~ok["backend"].isin(NOT_RANKED)]
    keys = SETTING + ["neuron", "seq_len"]
    if ok.empty:
        return pd.DataFrame(columns=keys + ["backend", TIME])
    idx = ok.groupby(keys, observed=True)[TIME].idxmin()
    return ok.loc[idx, keys + ["backend", TIME]].reset_index(drop=True)


def speedups(df: pd.DataFrame, baselines: Iterable[str] = BASELINES) -> pd.DataFrame:
    """Best-backend time of every neuron with, per baseline, ``speedup_over_<baseline>`` =
    baseline's best time / neuron's best time at equal settings and T (NaN where the baseline has no
    point there, with ``speedup_over_<baseline>_reason``)."""
    best = best_backend(df)
    keys = SETTING + ["seq_len"]
    for base in baselines:
        ref = best[best["neuron"] == base][keys + [TIME]].rename(columns={TIME: "_ref"})
        best = best.merge(ref, on=keys, how="left")
        best[f"speedup_over_{base}"] = best["_ref"] / best[TIME]
        best[f"speedup_over_{base}_reason"] = np.where(best["_ref"].isna(), f"no ok {base} point at these settings",
                                                       None)
        best = best.drop(columns="_ref")
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
