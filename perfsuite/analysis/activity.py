"""Firing rates and energy per neuron, extrapolation summaries (loss at the training length against the
longest evaluation), the points that are not ok, and why a metric block is empty.

May import: .frames.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .frames import _groups

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
