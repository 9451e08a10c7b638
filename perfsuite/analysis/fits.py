"""Scaling fits (``time ≈ a·T^b`` with a bootstrap interval of b) and crossovers (the sequence length
where one neuron overtakes another, measured and from the fitted curves).

May import: .frames, .speedups (best backends).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .frames import BASELINES, SETTING, TIME, _groups, bench_ok
from .speedups import best_backend

# ----------------------------------------------------------------------------------------- scaling fits

def fit_power_law(seq_lens: Sequence[float], times: Sequence[float], *, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """Least-squares fit of ``log t = log a + b·log T`` with a bootstrap 95 % interval for ``b``.

    The interval comes from a residual bootstrap: the fitted line plus log residuals drawn with
    replacement, rescaled by sqrt(n/(n-2)) because least-squares residuals under-state the scatter with
    few points. With few sequence lengths it is still narrower than an exact t-interval, which the
    report says. Needs three distinct T for an interval; two give ``b`` alone.
    """
    T = np.asarray(seq_lens, dtype=float)
    t = np.asarray(times, dtype=float)
    ok = np.isfinite(T) & np.isfinite(t) & (T > 0) & (t > 0)
    T, t = T[ok], t[ok]
    out: dict[str, Any] = {"a": np.nan, "b": np.nan, "b_lo": np.nan, "b_hi": np.nan, "r2": np.nan,
                           "n_points": int(len(T)), "t_min": float(T.min()) if len(T) else np.nan,
                           "t_max": float(T.max()) if len(T) else np.nan, "fit_reason": None}
    if len(np.unique(T)) < 2:
        out["fit_reason"] = f"needs ≥ 2 distinct sequence lengths, has {len(np.unique(T))}"
        return out
    x, y = np.log(T), np.log(t)
    xc = x - x.mean()
    w = xc / (xc @ xc)  # slope = w @ y
    b = float(w @ y)
    loga = float(y.mean() - b * x.mean())
    fitted = loga + b * x
    resid = y - fitted
    ss_tot = float(((y - y.mean()) ** 2).sum())
    out.update(a=math.exp(loga), b=b, r2=1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0)
    n = len(T)
    if len(np.unique(T)) < 3:
        out["fit_reason"] = "2 sequence lengths: exponent without an interval"
        return out
    if n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    scaled = resid * math.sqrt(n / (n - 2))
    draws = fitted + scaled[rng.integers(0, n, size=(n_boot, n))]
    slopes = draws @ w
    out["b_lo"], out["b_hi"] = (float(v) for v in np.percentile(slopes, [2.5, 97.5]))
    return out


def scaling_fits(df: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``time ≈ a·T^b`` per run × neuron × backend × settings, with the bootstrap 95 % interval of b."""
    ok = bench_ok(df)
    keys = SETTING + ["neuron", "backend"]
    recs = []
    for gk, g in _groups(ok, keys):
        g = g.groupby("seq_len")[TIME].median()
        recs.append({**dict(zip(keys, gk)), **fit_power_law(g.index.values, g.values, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(recs, columns=keys + ["a", "b", "b_lo", "b_hi", "r2", "n_points", "t_min", "t_max",
                                               "fit_reason"])


# --------------------------------------------------------------------------------------------- crossover

#: how far (in log T) beyond the measured lengths a crossing of the fitted curves is still shown: 10×
FIT_CROSS_REACH = math.log(10.0)


def default_pairs(neurons: Iterable[str]) -> list[tuple[str, str]]:
    """Every neuron against LIF and against PSN, plus DSN against sliding PSN: the comparisons the
    papers make (spec §2.5, §5.4)."""
    present = list(dict.fromkeys(neurons))
    pairs = []
    for base in BASELINES:
        if base in present:
            pairs += [(n, base) for n in present if n != base and (base, n) not in pairs]
    if "dsn" in present and "sliding_psn" in present:
        pairs.append(("dsn", "sliding_psn"))
    return pairs


def _log_crossings(T: np.ndarray, r: np.ndarray) -> list[tuple[float, str]]:
    """Points where log-ratio ``r`` changes sign between measured lengths, linearly interpolated in
    log T; each with the direction ("A overtakes" when r falls through 0)."""
    out = []
    for i in range(len(T) - 1):
        r0, r1 = r[i], r[i + 1]
        if r0 == 0:
            out.append((float(T[i]), "equal"))
        elif r0 * r1 < 0:
            x0, x1 = math.log(T[i]), math.log(T[i + 1])
            x = x0 + (x1 - x0) * r0 / (r0 - r1)
            out.append((math.exp(x), "overtakes" if r0 > 0 else "falls behind"))
    if len(r) and r[-1] == 0:
        out.append((float(T[-1]), "equal"))
    return out


def crossovers(df: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Sequence length T* where neuron A overtakes neuron B (best backends, equal settings).

    ``t_star_measured``: where the measured time ratio crosses 1, interpolated in log–log between the
    two neighbouring measured lengths (NaN if it never crosses; ``status`` says who is faster then).
    ``t_star_fit``: where the two fitted power laws cross, with ``fit_in_range`` telling whether that
    lies inside the measured lengths (outside it is an extrapolation of the fits, not a measurement).
    """
    best = best_backend(df)
    if pairs is None:
        pairs = default_pairs(best["neuron"].unique())
    recs = []
    for gk, g in _groups(best, SETTING):
        for a, b in pairs:
            ga = g[g["neuron"] == a].set_index("seq_len")[TIME]
            gb = g[g["neuron"] == b].set_index("seq_len")[TIME]
            common = sorted(set(ga.index) & set(gb.index))
            if len(common) < 2:  # one shared length says who is faster there, not where they cross
                continue
            T = np.array(common, dtype=float)
            r = np.log(ga.loc[common].values / gb.loc[common].values)
            crossings = _log_crossings(T, r)
            rec = {**dict(zip(SETTING, gk)), "neuron": a, "other": b, "t_min": T.min(), "t_max": T.max(),
                   "n_common": len(T), "ratio_at_min": float(np.exp(-r[0])), "ratio_at_max": float(np.exp(-r[-1]))}
            if crossings:
                rec["t_star_measured"] = crossings[0][0]
                rec["status"] = "; ".join(f"{a} {d} {b} at T≈{t:.3g}" for t, d in crossings)
            else:
                rec["t_star_measured"] = np.nan
                rec["status"] = f"{a} faster at every measured T" if r[0] < 0 else f"{b} faster at every measured T"
            fa = fit_power_law(T, ga.loc[common].values, n_boot=0)
            fb = fit_power_law(T, gb.loc[common].values, n_boot=0)
            rec["t_star_fit"], rec["fit_in_range"] = np.nan, None
            if np.isfinite(fa["b"]) and np.isfinite(fb["b"]) and abs(fa["b"] - fb["b"]) > 1e-9:
                log_ts = (math.log(fb["a"]) - math.log(fa["a"])) / (fa["b"] - fb["b"])
                # fits that cross far outside the measured lengths say nothing about the run: leave empty
                if math.log(T.min()) - FIT_CROSS_REACH <= log_ts <= math.log(T.max()) + FIT_CROSS_REACH:
                    ts = math.exp(log_ts)
                    rec["t_star_fit"], rec["fit_in_range"] = ts, bool(T.min() <= ts <= T.max())
            recs.append(rec)
    cols = SETTING + ["neuron", "other", "t_star_measured", "status", "t_star_fit", "fit_in_range", "t_min",
                      "t_max", "n_common", "ratio_at_min", "ratio_at_max"]
    return pd.DataFrame(recs, columns=cols)
