"""Analysis of stored rows: scaling fits, crossovers, speed-ups, backend ratios, roofline fractions,
firing rates, extrapolation summaries, comparisons between runs, the papers' claims and the kernel
profiles (``perfsuite run --profile`` / ``perfsuite profile``).

Everything works on the flat DataFrame of `perfsuite.results.to_frame` plus a ``run`` column (the run's
label), so it runs anywhere the rows are, GPU or not. Each function returns a DataFrame; a quantity that
cannot be computed is NaN (or None) and a ``*_reason`` column says why, so a report can print "—" and the
reason instead of crashing or inventing a number.

"Settings" are the fields that must be equal for two times to be compared: run, mode, precision,
workload, device, batch and features (`SETTING`). Speed-ups and crossovers compare each neuron's *best*
backend at each sequence length (the time a user would get), unless said otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .results import load_run, read_rows, results_path, to_frame

#: fields that must match for two measurements to be compared
SETTING = ["run", "mode", "precision", "workload", "device", "batch", "features"]
#: backends that belong to perfsuite itself; any other backend name is a peer library's adapter
OWN_BACKENDS = ("reference", "eager", "compiled", "triton")
#: the baselines of the headline table: the serial LIF and the first parallel spiking neuron
BASELINES = ("lif", "psn")
TIME = "time.median_ms"
_COLUMNS = (
    "run", "kind", "status", "reason", "neuron", "backend", "seq_len", "batch", "features", "neurons",
    "precision", "mode", "workload", "device", TIME, "time.ci95_ms", "time.samples_ms",
    "memory.peak_allocated_bytes", "memory.method", "energy.joules_per_gneuron_step", "energy.joules_per_call",
    "modelled_energy.joules_per_call", "modelled_energy.source", "activity.firing_rate", "activity.per_layer",
    "activity.silent_fraction", "cost.flops", "cost.min_bytes", "task", "train_len", "eval_len", "loss",
    "optimal_loss", "excess_loss", "finite", "time_reason", "memory_reason", "energy_reason",
    "modelled_energy_reason", "activity_reason", "cost_reason", "workload_params.layers",
    "workload_params.hidden", "workload_params.outputs",
)


# ----------------------------------------------------------------------------------------------- loading

@dataclass
class Run:
    """One run folder: its label, environment and rows."""

    label: str
    path: Path
    env: dict[str, Any]
    rows: list[dict[str, Any]]


def gpu_name(env: Mapping[str, Any]) -> str | None:
    """The GPU's name from env.json (``gpu`` is a dict with ``name`` in the runner's env), else None."""
    gpu = env.get("gpu")
    if isinstance(gpu, Mapping):
        return gpu.get("name")
    return gpu if isinstance(gpu, str) else None


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Load run folders; labels are ``<gpu or device> · <folder name>``, made unique when repeated."""
    if not run_dirs:
        raise ValueError("run_dirs is empty; expected at least one run folder")
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for d in run_dirs:
        env, rows = load_run(d)
        path = Path(d)
        folder = path.name if path.is_dir() else path.parent.name
        device = gpu_name(env) or env.get("device")
        label = f"{device} · {folder}" if device else folder
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        runs.append(Run(label=label, path=path, env=env, rows=rows))
    return runs


def frame(runs: Sequence[Run]) -> pd.DataFrame:
    """All rows of all runs as one flat DataFrame with a ``run`` column and every column the analysis
    reads (missing ones added as NaN, so a run whose metric blocks are all null still analyses)."""
    parts = []
    for run in runs:
        df = to_frame(run.rows) if run.rows else pd.DataFrame()
        df["run"] = run.label
        parts.append(df)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for col in _COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    df["kind"] = df["kind"].fillna("bench")
    df["run"] = pd.Categorical(df["run"], categories=[r.label for r in runs], ordered=True)
    for col in ("batch", "features"):
        df[col] = df[col].fillna(-1)  # extrapolation rows may lack them; NaN keys vanish from groupby
    for col in ("workload", "device", "precision", "mode"):
        df[col] = df[col].fillna("—")
    return df


# ----------------------------------------------------------------------------------------- neuron order

def _builtin_neurons() -> list[str]:
    """perfsuite's own neurons in registry order (LIF first, then the PSN family, SPSN, the PSU family,
    DSN); neurons registered from other modules (plugins) are left out. Empty when the registry cannot
    be imported (a report is still built, in alphabetical order)."""
    try:
        from . import neurons
    except ImportError:
        return []
    return [n for n in neurons.names() if neurons.neuron_class(n).__module__.startswith("perfsuite.")]


def neuron_rank(names: Iterable[Any]) -> dict[str, int]:
    """Sort rank of each distinct name: perfsuite's neurons in registry order, then any other (plugin,
    unknown) name alphabetically. Tables and legends list neurons in this order."""
    builtin = _builtin_neurons()
    known = {n: i for i, n in enumerate(builtin)}
    present = {n for n in names if isinstance(n, str)}
    others = sorted(present - set(known))
    ranks = {n: known[n] for n in present if n in known}
    ranks.update({n: len(builtin) + i for i, n in enumerate(others)})
    return ranks


def neuron_order(names: Iterable[Any]) -> list[str]:
    """The distinct neuron names of ``names`` in report order (see `neuron_rank`)."""
    ranks = neuron_rank(names)
    return sorted(ranks, key=ranks.__getitem__)


def bench_ok(df: pd.DataFrame) -> pd.DataFrame:
    """Timed points that succeeded and have a positive median time."""
    t = pd.to_numeric(df[TIME], errors="coerce")
    keep = (df["kind"] == "bench") & (df["status"] == "ok") & (t > 0) & df["seq_len"].notna()
    out = df[keep].copy()
    out[TIME] = t[keep].astype(float)
    out["seq_len"] = out["seq_len"].astype(int)
    return out


def _groups(df: pd.DataFrame, keys: list[str]):
    return df.groupby(keys, observed=True, sort=True, dropna=False)


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


# ---------------------------------------------------------------------------------------------- roofline

def _peaks(env: Mapping[str, Any], precision: str) -> tuple[float | None, float | None, str | None]:
    """(copy GB/s, matmul TFLOP/s at precision, reason when something is missing) from env.json."""
    roof = env.get("roofline")
    if not isinstance(roof, Mapping):
        return None, None, "env.json has no measured roofline"
    bw = roof.get("copy_gbps", roof.get("copy_bandwidth_gbs"))
    mm = roof.get("matmul_tflops")
    if isinstance(mm, Mapping):
        mm = mm.get(precision)
    bw = float(bw) if isinstance(bw, (int, float)) and bw > 0 else None
    mm = float(mm) if isinstance(mm, (int, float)) and mm > 0 else None
    missing = [n for n, v in (("copy bandwidth", bw), (f"{precision} matmul throughput", mm)) if v is None]
    return bw, mm, ("roofline lacks " + " and ".join(missing)) if missing else None


def roofline_fractions(df: pd.DataFrame, envs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Achieved bandwidth and FLOP/s of every ok timed point, from its analytic ``cost`` block, and the
    fraction of the run's measured roofline: attainable = min(matmul peak, intensity × copy bandwidth).

    The bytes are the neuron's *minimum* traffic, so achieved GB/s is a floor of the real traffic; the
    compute roof is the measured dense-matmul rate, which element-wise work cannot reach, so memory-bound
    fractions are the meaningful ones. ``envs`` maps run label -> env.json.
    """
    ok = bench_ok(df)
    recs = []
    for _, row in ok.iterrows():
        flops = pd.to_numeric(row["cost.flops"], errors="coerce")
        nbytes = pd.to_numeric(row["cost.min_bytes"], errors="coerce")
        s = row[TIME] / 1e3
        rec = {k: row[k] for k in SETTING + ["neuron", "backend", "seq_len"]}
        rec.update(intensity=np.nan, achieved_gbs=np.nan, achieved_tflops=np.nan, fraction=np.nan, bound=None,
                   reason=None)
        if not (np.isfinite(flops) and np.isfinite(nbytes) and nbytes > 0):
            rec["reason"] = row.get("cost_reason") if isinstance(row.get("cost_reason"), str) else "no analytic cost"
            recs.append(rec)
            continue
        rec.update(intensity=flops / nbytes, achieved_gbs=nbytes / s / 1e9, achieved_tflops=flops / s / 1e12)
        bw, mm, why = _peaks(envs.get(row["run"], {}), row["precision"])
        if bw is not None and mm is not None:
            ridge = rec["intensity"] * bw / 1e3  # TFLOP/s the bandwidth allows at this intensity
            attainable = min(mm, ridge)
            rec["fraction"] = rec["achieved_tflops"] / attainable if flops > 0 else rec["achieved_gbs"] / bw
            rec["bound"] = "memory" if ridge < mm or flops == 0 else "compute"
        elif bw is not None:
            rec.update(fraction=rec["achieved_gbs"] / bw, bound="memory (bandwidth only)", reason=why)
        else:
            rec["reason"] = why
        recs.append(rec)
    cols = SETTING + ["neuron", "backend", "seq_len", "intensity", "achieved_gbs", "achieved_tflops", "fraction",
                      "bound", "reason"]
    return pd.DataFrame(recs, columns=cols)


# ------------------------------------------------------------------------------- activity and energy

def activity_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per run × neuron × precision × workload: median firing rate, silent fraction, per-layer rates
    (networks), measured and modelled energy per 10⁹ neuron-steps, over the ok timed points."""
    ok = df[(df["kind"] == "bench") & (df["status"] == "ok")].copy()
    keys = ["run", "neuron", "precision", "workload"]
    recs = []
    for gk, g in _groups(ok, keys):
        rate = pd.to_numeric(g["activity.firing_rate"], errors="coerce")
        silent = pd.to_numeric(g["activity.silent_fraction"], errors="coerce")
        steps = pd.to_numeric(g["seq_len"], errors="coerce") * pd.to_numeric(g["neurons"], errors="coerce")
        modelled = pd.to_numeric(g["modelled_energy.joules_per_call"], errors="coerce") / steps * 1e9
        measured = pd.to_numeric(g["energy.joules_per_gneuron_step"], errors="coerce")
        layers = [v for v in g["activity.per_layer"] if isinstance(v, list) and len(v) > 1]
        depth = min((len(v) for v in layers), default=0)  # rows of one neuron share a depth; guard anyway
        per_layer = [float(np.nanmedian([np.nan if lay[i] is None else lay[i] for lay in layers]))
                     for i in range(depth)] or None
        rec = {**dict(zip(keys, gk)), "firing_rate": rate.median(), "silent_fraction": silent.median(),
               "per_layer": per_layer, "modelled_j_per_gstep": modelled.median(),
               "measured_j_per_gstep": measured.median(), "n_points": len(g)}
        rec["firing_rate_reason"] = None if rate.notna().any() else _reason(g, "activity")
        rec["modelled_reason"] = None if modelled.notna().any() else _reason(g, "modelled_energy")
        rec["measured_reason"] = None if measured.notna().any() else _reason(g, "energy")
        sources = {s for s in g["modelled_energy.source"] if isinstance(s, str)}
        rec["modelled_source"] = "; ".join(sorted(sources)) or None
        recs.append(rec)
    cols = keys + ["firing_rate", "silent_fraction", "per_layer", "modelled_j_per_gstep", "measured_j_per_gstep",
                   "n_points", "firing_rate_reason", "modelled_reason", "measured_reason", "modelled_source"]
    return pd.DataFrame(recs, columns=cols)


def _reason(g: pd.DataFrame, block: str) -> str:
    """The distinct ``<block>_reason`` values of some rows, or a generic reason."""
    col = f"{block}_reason"
    reasons = sorted({r for r in g[col] if isinstance(r, str)}) if col in g else []
    return "; ".join(reasons) if reasons else f"no {block} values in the rows"


def metric_reason(df: pd.DataFrame, block: str) -> str:
    """Why a metric block is empty over a set of rows (for captions of missing plots)."""
    return _reason(df[(df["kind"] == "bench") & (df["status"] == "ok")], block)


# --------------------------------------------------------------------------------------- extrapolation

def extrapolation_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per run × neuron × task × train length: loss at the training length and at the longest
    evaluation length, their ratio, whether every evaluation gave a finite loss, and why not."""
    ex = df[df["kind"] == "extrapolation"]
    keys = ["run", "neuron", "task", "train_len"]
    recs = []
    for gk, g in _groups(ex, keys):
        g = g.sort_values("eval_len")
        loss = pd.to_numeric(g["loss"], errors="coerce")
        good = (g["status"] == "ok") & loss.notna() & (g["finite"].astype(object) != False)  # noqa: E712
        rec = {**dict(zip(keys, gk)), "max_eval_len": g["eval_len"].max(), "loss_train_len": np.nan,
               "loss_max_eval": np.nan, "loss_ratio": np.nan, "optimal_loss_max_eval": np.nan,
               "all_finite": bool(good.all()), "reason": None}
        at_train = good & (g["eval_len"] == gk[3])
        at_max = good & (g["eval_len"] == rec["max_eval_len"])
        if at_train.any():
            rec["loss_train_len"] = float(loss[at_train].iloc[0])
        if at_max.any():
            rec["loss_max_eval"] = float(loss[at_max].iloc[0])
            rec["optimal_loss_max_eval"] = pd.to_numeric(g.loc[at_max, "optimal_loss"], errors="coerce").iloc[0]
        rec["loss_ratio"] = rec["loss_max_eval"] / rec["loss_train_len"]
        reasons = []
        for (status, reason), lens in g[~good].groupby(["status", "reason"], dropna=False)["eval_len"]:
            why = reason if isinstance(reason, str) else "no finite loss"
            reasons.append(f"{status if status != 'ok' else 'ok but'} {why} "
                           f"(eval {', '.join(str(int(x)) for x in lens)})")
        rec["reason"] = "; ".join(reasons) or None
        recs.append(rec)
    cols = keys + ["max_eval_len", "loss_train_len", "loss_max_eval", "loss_ratio", "optimal_loss_max_eval",
                   "all_finite", "reason"]
    return pd.DataFrame(recs, columns=cols)


# ------------------------------------------------------------------------------------------ comparisons

def not_ok(df: pd.DataFrame) -> pd.DataFrame:
    """Every point whose status is not ``ok``, or ok with a reason (e.g. non-finite loss)."""
    bad = df[(df["status"] != "ok") | df["reason"].apply(lambda r: isinstance(r, str) and bool(r))]
    cols = ["run", "kind", "status", "reason", "neuron", "backend", "mode", "precision", "seq_len", "eval_len",
            "batch", "features"]
    return bad[cols].reset_index(drop=True)


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


# ----------------------------------------------------------------------------------------------- claims

@dataclass
class Claim:
    """A headline number of a paper that rows can speak to (one entry of ``claims.yaml``)."""

    id: str
    paper: str
    statement: str
    value: Any
    conditions: str
    source: str
    evidence: str
    measure: dict[str, Any]
    unit: str = "×"
    tolerance: float = 0.25
    note: str | None = None


CLAIM_KINDS = ("speedup", "speedup_trend", "rate_lower", "extrapolation_stable")
#: keys of a claim's ``measure`` that name a setting of the paper's experiment, and the row column each
#: is read from; a row is compared with the paper only when it has every one the claim gives
CLAIM_SETTINGS = {"device": "device", "workload": "workload", "precision": "precision", "batch": "batch",
                  "features": "features", "neurons": "neurons", "layers": "workload_params.layers",
                  "hidden": "workload_params.hidden", "outputs": "workload_params.outputs"}
_EVIDENCE = {"P": "primary paper text", "C": "authors' code/logs", "R": "peer review", "S": "secondary source",
             "U": "perfsuite's reading"}


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """Claims from a YAML file (default: the one shipped with perfsuite), validated."""
    import yaml

    path = Path(path) if path is not None else Path(__file__).with_name("claims.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ValueError(f"{path}: expected a mapping with a 'claims' list")
    claims = []
    required = ("id", "paper", "statement", "value", "conditions", "source", "evidence", "measure")
    for i, c in enumerate(data["claims"]):
        missing = [k for k in required if k not in c]
        if missing:
            raise ValueError(f"{path}: claims[{i}] lacks {missing}; expected keys {list(required)}")
        kind = c["measure"].get("kind")
        if kind not in CLAIM_KINDS:
            raise ValueError(f"{path}: claims[{i}] ({c['id']}) measure.kind={kind!r}; expected one of {CLAIM_KINDS}")
        for key in set(c["measure"]) & set(CLAIM_SETTINGS):
            want = c["measure"][key]
            if isinstance(want, dict) and (set(want) - {"min", "max"} or not want):
                raise ValueError(f"{path}: claims[{i}] ({c['id']}) measure.{key}={want!r}; expected a value, a list "
                                 "of values or a range {min: …, max: …}")
        if c["evidence"] not in _EVIDENCE:
            raise ValueError(f"{path}: claims[{i}] ({c['id']}) evidence={c['evidence']!r}; "
                             f"expected one of {list(_EVIDENCE)}")
        claims.append(Claim(**{k: c[k] for k in c if k in Claim.__dataclass_fields__}))
    return claims


def _mode_times(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Best-backend times for ``mode``; ``backward`` is derived as train − forward (same settings, same
    backend), since the runner times forward and forward+backward."""
    if mode != "backward":
        best = best_backend(df)
        return best[best["mode"] == mode]
    ok = bench_ok(df)
    keys = [k for k in SETTING if k != "mode"] + ["neuron", "backend", "seq_len"]
    med = ok.groupby(keys + ["mode"], observed=True)[TIME].median().unstack("mode")
    if "train" not in med or "forward" not in med:
        return pd.DataFrame(columns=SETTING + ["neuron", "seq_len", "backend", TIME])
    bwd = (med["train"] - med["forward"]).rename(TIME).dropna()
    bwd = bwd[bwd > 0].reset_index()
    bwd["mode"] = "backward"
    if bwd.empty:
        return bwd
    idx = bwd.groupby([k for k in keys if k != "backend"] + ["mode"], observed=True)[TIME].idxmin()
    return bwd.loc[idx]


def _setting_matches(values: pd.Series, want: Any) -> pd.Series:
    """Which of a column's values meet a claim's setting: one value, a list of values, or a range
    ``{min, max}`` (either end optional); numbers compare as numbers, a missing value never matches."""
    if isinstance(want, Mapping):
        x = pd.to_numeric(values, errors="coerce")
        ok = x.notna()
        if want.get("min") is not None:
            ok &= x >= float(want["min"])
        if want.get("max") is not None:
            ok &= x <= float(want["max"])
        return ok
    wants = list(want) if isinstance(want, (list, tuple)) else [want]
    if all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in wants):
        return pd.to_numeric(values, errors="coerce").isin([float(w) for w in wants])
    return values.astype(object).isin(wants)


def _setting_text(want: Any) -> str:
    if isinstance(want, Mapping):
        return f"{want.get('min', '…')}…{want.get('max', '…')}"
    if isinstance(want, (list, tuple)):
        return " or ".join(str(w) for w in want)
    return str(want)


def _value_text(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v == "—" or v == -1:
        return "not recorded"
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def claim_settings(claim: Claim) -> dict[str, Any]:
    """The settings of the paper's experiment a claim's ``measure`` names (`CLAIM_SETTINGS`)."""
    return {k: claim.measure[k] for k in CLAIM_SETTINGS if k in claim.measure}


def _claim_neurons(m: Mapping[str, Any]) -> list[str]:
    return [m["neuron"]] + [m[k] for k in ("baseline",) if k in m] + list(m.get("others", ()))


def comparable_rows(claim: Claim, d: pd.DataFrame) -> tuple[pd.DataFrame, str | None, int]:
    """(rows at the paper's settings, why none is when the claim's ok rows all differ, rows left out).

    Only the ok rows of the claim's neurons (and of its kind: extrapolation rows for an extrapolation
    claim) are weighed: rows of other neurons say nothing about the claim, and a run lacking the neuron
    or the baseline leaves the claim "not measured" whatever its settings. When none of them has every
    setting the claim names, the reason lists each setting the rows differ in with the values they
    have; the claim's verdict is then "not comparable", as numbers from another device or workload say
    nothing about the paper's."""
    want = claim_settings(claim)
    if not want:
        return d, None, 0
    kind = "extrapolation" if claim.measure["kind"] == "extrapolation_stable" else "bench"
    ok = pd.Series(True, index=d.index)
    per_key = {}
    for key, w in want.items():
        col = CLAIM_SETTINGS[key]
        values = d[col] if col in d.columns else pd.Series(np.nan, index=d.index)
        per_key[key] = (values, _setting_matches(values, w))
        ok &= per_key[key][1]
    relevant = (d["kind"] == kind) & (d["status"] == "ok") & d["neuron"].isin(_claim_neurons(claim.measure))
    needed = [claim.measure[k] for k in ("neuron", "baseline") if k in claim.measure]
    if not all((relevant & (d["neuron"] == n)).any() for n in needed):
        return d[ok], None, 0  # a neuron the claim needs is not in the run: the claim says "not measured"
    if (ok & relevant).any():
        return d[ok], None, int((relevant & ~ok).sum())
    diffs = []
    for key, (values, match) in per_key.items():
        bad = values[relevant & ~match]
        if len(bad):
            seen = sorted({_value_text(v) for v in bad}, key=str)
            diffs.append(f"{key} {', '.join(seen)} (paper: {_setting_text(want[key])})")
    return d[ok], "the run's rows differ from the paper's setting: " + "; ".join(diffs), 0


def _speedup_points(df: pd.DataFrame, m: Mapping[str, Any], cache: dict | None = None) -> pd.DataFrame:
    """Per settings × T: baseline best time / neuron best time for a claim's measure block."""
    mode = m.get("mode", "train")
    cache = {} if cache is None else cache
    # several claims read the same mode of the same rows (the rows depend on the claim's settings)
    tag = ("times", mode, repr(sorted((k, repr(v)) for k, v in m.items() if k in CLAIM_SETTINGS)))
    if tag not in cache:
        cache[tag] = _mode_times(df, mode)
    times = cache[tag]
    if m.get("precision"):
        times = times[times["precision"] == m["precision"]]
    keys = [k for k in SETTING] + ["seq_len"]
    a = times[times["neuron"] == m["neuron"]][keys + [TIME, "backend"]]
    b = times[times["neuron"] == m["baseline"]][keys + [TIME, "backend"]]
    j = a.merge(b, on=keys, suffixes=("", "_base"))
    j["speedup"] = j[f"{TIME}_base"] / j[TIME]
    return j


def _verdict_number(measured: float, paper: float | list, tol: float) -> tuple[str, str]:
    """(verdict, difference text) of a measured ratio against a paper value or [low, high] range."""
    lo, hi = (paper, paper) if not isinstance(paper, (list, tuple)) else (min(paper), max(paper))
    if (lo > 1 and measured < 1) or (hi < 1 and measured > 1):
        return "contradicts", f"direction reversed (measured {measured:.3g}×)"
    if lo / (1 + tol) <= measured <= hi * (1 + tol):
        verdict = "consistent"
    else:
        verdict = "lower than paper" if measured < lo else "higher than paper"
    ref = lo if measured < lo else hi if measured > hi else measured
    return verdict, ("within the paper's range" if lo != hi and lo <= measured <= hi
                     else f"measured / paper = {measured / ref:.2f}")


def evaluate_claim(claim: Claim, df: pd.DataFrame, run: str, cache: dict | None = None) -> dict[str, Any]:
    """The measured value of one claim on one run's rows, with a verdict and how it was obtained.
    ``cache`` (one dict per run) shares intermediate tables between the claims of a run."""
    cache = {} if cache is None else cache
    if "rows" not in cache:
        cache["rows"] = df[df["run"] == run]
    rec: dict[str, Any] = {"id": claim.id, "run": run, "measured": None, "verdict": "not measured",
                           "difference": "—", "how": ""}
    d, differs, left_out = comparable_rows(claim, cache["rows"])
    want = claim_settings(claim)
    if differs:
        rec["verdict"], rec["difference"] = "not comparable", differs
        rec["how"] = "only rows at the paper's setting are compared: " + _settings_label(want)
        return rec
    rec = _evaluate_kind(claim, d, rec, cache)
    if want:  # say which rows the number comes from
        rec["how"] = (f"{rec['how']}; rows at the paper's setting {_settings_label(want)}"
                      + (f" ({left_out} ok row(s) of the claim's neurons at other settings left out)"
                         if left_out else ""))
    return rec


def _settings_label(want: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_setting_text(v)}" for k, v in want.items())


def _evaluate_kind(claim: Claim, d: pd.DataFrame, rec: dict[str, Any], cache: dict) -> dict[str, Any]:
    """The measured value and verdict of one claim from rows already at the paper's settings."""
    m = claim.measure
    kind = m["kind"]
    if kind == "speedup":
        pts = _speedup_points(d, m, cache)
        label = f"{m['baseline']} time / {m['neuron']} time, best backends, mode {m.get('mode', 'train')}"
        rec["how"] = label + (f" at T≈{m['seq_len']}" if m.get("seq_len") else "")
        if pts.empty:
            rec["difference"] = f"no common ok {m['neuron']} and {m['baseline']} {m.get('mode', 'train')} points"
            return rec
        target = m.get("seq_len")
        if target is None:  # the paper's T is not known: report the measured range
            lo, hi = pts["speedup"].min(), pts["speedup"].max()
            rec["measured"] = f"{lo:.3g}×–{hi:.3g}× (T={int(pts['seq_len'].min())}…{int(pts['seq_len'].max())})"
            paper = claim.value if not isinstance(claim.value, (list, tuple)) else claim.value[0]
            rec["verdict"] = ("consistent" if lo <= paper <= hi else
                              "higher than paper" if lo > paper else "lower than paper")
            rec["difference"] = "paper value inside the measured range" if lo <= paper <= hi else \
                f"measured range {'above' if lo > paper else 'below'} the paper's value"
            rec["how"] = label + "; the paper's T is not known, so every common T is shown"
            return rec
        rtol = float(m.get("seq_len_rtol", 0.05))
        dist = (pts["seq_len"] / target - 1).abs()
        near = pts[dist <= rtol]
        if near.empty:
            rec["difference"] = (f"no common point within ±{rtol:.0%} of T={target} "
                                 f"(measured T {int(pts['seq_len'].min())}…{int(pts['seq_len'].max())})")
            return rec
        near = near.loc[[(near["seq_len"] / target - 1).abs().idxmin()]]
        row = near.iloc[0]
        val = float(row["speedup"])
        rec["measured"] = f"{val:.3g}×"
        rec["value"] = val
        rec["verdict"], rec["difference"] = _verdict_number(val, claim.value, claim.tolerance)
        rec["how"] = (f"{label} at T={int(row['seq_len'])} ({row['backend']} vs {row['backend_base']}, "
                      f"{row['precision']}, B={int(row['batch'])}, F={int(row['features'])})")
        return rec
    if kind == "speedup_trend":
        pts = _speedup_points(d, m, cache)
        var = m.get("over", "seq_len")
        lo, hi = m.get("range", [None, None])
        if var == "seq_len" and lo is not None:
            pts = pts[(pts["seq_len"] >= lo) & (pts["seq_len"] <= hi)]
        if var == "neurons":  # trend over N at fixed T: group by T instead of by the batch/feature split
            pts = pts.assign(neurons=pts["batch"] * pts["features"])
            groups = [k for k in SETTING if k not in ("batch", "features")] + ["seq_len"]
        else:
            groups = list(SETTING)
        rhos = []
        for _, g in pts.groupby(groups, observed=True):
            g = g.groupby(var)["speedup"].median()
            if len(g) >= 3:
                rhos.append(float(pd.Series(g.index.values, dtype=float).corr(pd.Series(g.values), method="spearman")))
        rng = f" in [{lo}, {hi}]" if lo is not None and var == "seq_len" else ""
        rec["how"] = (f"Spearman ρ between {var} and {m['baseline']}/{m['neuron']} best-time ratio "
                      f"(mode {m.get('mode', 'train')}{rng}), per settings group with ≥ 3 values")
        if not rhos:
            rec["difference"] = f"fewer than 3 {var} values with both neurons measured{rng}"
            return rec
        rho = float(np.median(rhos))
        rec["measured"] = f"ρ = {rho:+.2f} ({len(rhos)} group{'s' if len(rhos) > 1 else ''})"
        rec["value"] = rho
        rec["verdict"] = "consistent" if rho >= 0.5 else "contradicts" if rho <= -0.5 else "inconclusive"
        rec["difference"] = {"consistent": "speed-up grows", "contradicts": "speed-up shrinks",
                             "inconclusive": "no clear trend"}[rec["verdict"]]
        return rec
    if kind == "rate_lower":
        # perfsuite calibrates each point's drive to a target firing rate, so rates of such points are equal
        # by construction and say nothing about which neuron fires less; only uncalibrated points count
        if "activity.target_rate" in d.columns:
            calibrated = pd.to_numeric(d["activity.target_rate"], errors="coerce").notna()
        else:
            calibrated = pd.Series(False, index=d.index)
        if calibrated.any() and calibrated[d["kind"] == "bench"].all():
            rec["how"] = "median firing rate over the ok points of each neuron whose drive was not calibrated"
            rec["difference"] = ("every point's drive was calibrated to a target firing rate, so the rates are "
                                 "equal by construction; the claim concerns trained networks")
            return rec
        d = d[~calibrated]
        act = activity_summary(d)
        rates = act.groupby("neuron")["firing_rate"].median().dropna()
        others = [o for o in m["others"] if o in rates.index]
        rec["how"] = "median firing rate over the ok points of each neuron (calibrated drive of the run)"
        if m["neuron"] not in rates.index or not others:
            rec["difference"] = f"no firing rates for {m['neuron']} and at least one of {m['others']}"
            return rec
        mine = float(rates[m["neuron"]])
        rec["measured"] = ", ".join(f"{n} {rates[n]:.3g}" for n in [m["neuron"]] + others)
        higher = [o for o in others if rates[o] <= mine]
        rec["verdict"] = "consistent" if not higher else "contradicts"
        rec["difference"] = (f"{m['neuron']} lowest of {', '.join([m['neuron']] + others)}" if not higher
                             else f"{m['neuron']} not below {', '.join(higher)}")
        return rec
    if kind == "extrapolation_stable":
        tag = ("extrapolation", repr(sorted((k, repr(v)) for k, v in claim_settings(claim).items())))
        if tag not in cache:
            cache[tag] = extrapolation_summary(d)
        ex = cache[tag]
        ex = ex[ex["neuron"] == m["neuron"]]
        rec["how"] = ("loss at the longest evaluation length / loss at the training length; stable = "
                      f"every evaluation finite and ratio ≤ 1 + {claim.tolerance}")
        ex = ex[pd.notna(ex["loss_train_len"])]
        if ex.empty:
            rec["difference"] = f"no extrapolation rows for {m['neuron']} with a finite loss at the training length"
            return rec
        row = ex.iloc[0]
        factor = float(row["max_eval_len"]) / float(row["train_len"])
        want = float(m.get("eval_over_train", 1))
        short = f"; evaluated only to {factor:.3g}× the training length (paper {want:.3g}×)" if factor < want else ""
        if not row["all_finite"] or not np.isfinite(row["loss_ratio"]):
            rec["measured"] = f"not finite: {row['reason']}"
            rec["verdict"], rec["difference"] = "contradicts", "loss not finite" + short
            return rec
        rec["measured"] = (f"loss ×{row['loss_ratio']:.3g} at {int(row['max_eval_len'])} "
                           f"(= {factor:.3g}× train length {int(row['train_len'])}, task {row['task']})")
        rec["value"] = float(row["loss_ratio"])
        stable = row["loss_ratio"] <= 1 + claim.tolerance
        # stable over a shorter range than the paper's neither confirms nor refutes its reach
        rec["verdict"] = "contradicts" if not stable else "inconclusive" if short else "consistent"
        rec["difference"] = ("stable" if stable else "loss grows") + short
        return rec
    raise ValueError(f"claim {claim.id}: measure.kind={kind!r}; expected one of {CLAIM_KINDS}")


def evaluate_claims(df: pd.DataFrame, claims: Sequence[Claim] | None = None) -> pd.DataFrame:
    """Every claim against every run: paper value and conditions beside the measured value."""
    claims = load_claims() if claims is None else claims
    recs = []
    for run in df["run"].cat.categories:
        cache: dict = {}
        for c in claims:
            r = evaluate_claim(c, df, run, cache)
            r.update(paper=c.paper, statement=c.statement, paper_value=c.value, unit=c.unit, conditions=c.conditions,
                     source=c.source, evidence=f"[{c.evidence}] {_EVIDENCE[c.evidence]}", note=c.note)
            recs.append(r)
    return pd.DataFrame(recs)


# -------------------------------------------------------------------------------------- kernel profiles

PROFILE_COLUMNS = ["run", "source", "key", "neuron", "backend", "mode", "precision", "workload", "device", "batch",
                   "features", "seq_len", "status", "identity", "detail", "kernels", "kernel_source", "trace",
                   "reason"]
#: where a profile block came from: a row of ``perfsuite run --profile`` or a line of ``perfsuite profile``
PROFILE_SOURCES = ("run --profile", "perfsuite profile")
_PROFILE_POINT_FIELDS = ("key", "neuron", "backend", "mode", "precision", "workload", "device", "batch", "features",
                         "seq_len", "status")


def _profile_record(run: Run, source: str, row: Mapping[str, Any]) -> dict[str, Any]:
    blk = row.get("profile")
    rec = {k: row.get(k) for k in _PROFILE_POINT_FIELDS}
    rec.update(run=run.label, source=source, identity=None, detail=None, kernels=[], kernel_source=None,
               trace=None, reason=None)
    if isinstance(blk, Mapping):
        rec.update(identity=blk.get("identity"), detail=blk.get("detail"), kernels=list(blk.get("kernels") or []),
                   kernel_source=blk.get("kernel_source"), trace=blk.get("trace"))
    else:  # not profiled: the row says why (profile_reason in a run's row, status/reason in profiles.jsonl)
        rec["reason"] = row.get("profile_reason") or (f"{row.get('status')}: {row.get('reason')}"
                                                      if row.get("status") != "ok" else "no profile block")
    return rec


def kernel_profiles(runs: Sequence[Run]) -> pd.DataFrame:
    """Every profile block of the runs, one line per point and source: the ``profile`` block of rows
    from ``perfsuite run --profile`` and the lines of ``profiles.jsonl`` (``perfsuite profile``) found
    in a run's folder. Rows of a run made without ``--profile`` (no ``profile`` key) are not listed.
    ``kernels`` is the block's list of top kernels/ops by self time; ``reason`` says why a point has
    no block (not ok, or profiling failed)."""
    from .profile import PROFILES_FILE

    recs = []
    for run in runs:
        for row in run.rows:
            if "profile" in row and row.get("kind", "bench") == "bench":
                recs.append(_profile_record(run, PROFILE_SOURCES[0], row))
        extra = results_path(run.path).parent / PROFILES_FILE
        if extra.is_file():
            recs += [_profile_record(run, PROFILE_SOURCES[1], row) for row in read_rows(extra)]
    return pd.DataFrame(recs, columns=PROFILE_COLUMNS)


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


def analyse(runs: Sequence[Run], *, claims: Sequence[Claim] | None = None, n_boot: int = 2000,
            seed: int = 0) -> Analysis:
    """Run every analysis over the given runs."""
    df = frame(runs)
    envs = {r.label: r.env for r in runs}
    return Analysis(runs=list(runs), df=df, fits=scaling_fits(df, n_boot=n_boot, seed=seed), speedups=speedups(df),
                    crossovers=crossovers(df), backends=backend_ratios(df), roofline=roofline_fractions(df, envs),
                    activity=activity_summary(df), extrapolation=extrapolation_summary(df),
                    claims=evaluate_claims(df, claims), not_ok=not_ok(df), comparison=compare_runs(df),
                    extra={"n_boot": n_boot}, profiles=kernel_profiles(runs))
