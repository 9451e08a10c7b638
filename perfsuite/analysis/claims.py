"""The papers' claims (``perfsuite/claims.yaml``) evaluated against a run's rows: only rows at the paper's
settings are compared, and each claim gets a measured value, a verdict and how it was obtained.

May import: .frames, .speedups, .activity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .activity import activity_summary, extrapolation_summary
from .frames import SETTING, TIME, bench_ok
from .speedups import best_backend

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

    path = Path(path) if path is not None else Path(__file__).parent.parent / "claims.yaml"
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
