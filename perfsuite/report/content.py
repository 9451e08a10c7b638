"""What a report says, independent of its format: sections made of paragraphs, code, tables and figures,
with every number already formatted. `markdown` and `html` only lay these blocks out, so both formats
always show the same content.

A value that is missing is printed as "—" and the table's notes say why (the row's ``*_reason``, the
point's status, or what the run lacks).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .. import analysis as A

DASH = "—"
MODE_ORDER = {"forward": 0, "train": 1, "step": 2}
#: the identity cell of a point whose trace contradicts its backend label (HTML colours it)
MISMATCH = "⚠ mismatch"
#: kernels listed per profiled point (the block keeps up to `perfsuite.profile.DEFAULT_TOP`)
KERNELS_SHOWN = 5


@dataclass
class Paragraph:
    text: str
    kind: str = "paragraph"


@dataclass
class Alert:
    """A paragraph the reader must not miss (e.g. a backend identity mismatch): bold in Markdown, a
    coloured box in HTML."""

    text: str
    kind: str = "alert"


@dataclass
class Code:
    text: str
    kind: str = "code"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "table"


@dataclass
class Figure:
    """A plot written to ``plots/<name>.png`` and ``plots/<name>.svg``."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path
    kind: str = "figure"


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


# ------------------------------------------------------------------------------------------ formatting

def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_ms(v: Any) -> str:
    """A time given in ms, in the unit that keeps three significant digits readable."""
    if not _finite(v):
        return DASH
    v = float(v)
    if v < 1:
        return f"{v * 1e3:.3g} µs"
    if v < 1e3:
        return f"{v:.3g} ms"
    return f"{v / 1e3:.3g} s"


def fmt_x(v: Any) -> str:
    return f"{float(v):.3g}×" if _finite(v) else DASH


def fmt_num(v: Any, digits: int = 3) -> str:
    return f"{float(v):.{digits}g}" if _finite(v) else DASH


def fmt_pct(v: Any) -> str:
    return f"{100 * float(v):.3g} %" if _finite(v) else DASH


def fmt_int(v: Any) -> str:
    return str(int(v)) if _finite(v) else DASH


def setting_label(row: Any) -> str:
    """``fp32 · layer · B=8 F=128`` (the settings besides run and mode)."""
    parts = [str(row["precision"]), str(row["workload"])]
    if _finite(row["batch"]) and row["batch"] >= 0:
        parts.append(f"B={int(row['batch'])} F={int(row['features'])}")
    return " · ".join(parts)


def _in_order(an: A.Analysis, df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``cols``, runs in the order they were given (not alphabetically), modes as
    forward, train, step, and neurons (``neuron``, ``other``) in registry order (`analysis.neuron_rank`)."""
    runs = {r.label: i for i, r in enumerate(an.runs)}

    def key(col: pd.Series) -> pd.Series:
        if col.name == "run":
            return col.astype(str).map(runs)
        if col.name == "mode":
            return col.map(lambda m: (MODE_ORDER.get(m, 9)))
        if col.name in ("neuron", "other"):
            return col.map(A.neuron_rank(col.unique()))
        return col

    return df.sort_values(cols, key=key)


def _mode_sorted(values: Iterable[str]) -> list[str]:
    return sorted(set(values), key=lambda m: (MODE_ORDER.get(m, 9), m))


# ------------------------------------------------------------------------------------------- sections

def _env_value(v: Any) -> str:
    """An env.json value as text: floats to 4 significant digits (measured rates, not identifiers)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_env_value(x) or DASH}" for k, x in v.items())
    if isinstance(v, list):
        return json.dumps(v)
    return str(v)


def environment_section(an: A.Analysis) -> Section:
    sec = Section("environment", "Environment and how to reproduce")
    keys: list[str] = []
    flat_envs = []
    for run in an.runs:
        flat: dict[str, str] = {}
        for k, v in run.env.items():
            if k in ("command", "reproduce", "merge_forced"):  # shown below the table
                continue
            if k == "merged_from":  # each part's whole env.json is in it: name the parts only
                flat[k] = ", ".join(str(m.get("path")) for m in v if isinstance(m, dict)) if isinstance(v, list) \
                    else _env_value(v)
                continue
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    flat[f"{k}.{k2}"] = _env_value(v2)
            else:
                flat[k] = _env_value(v)
        flat_envs.append(flat)
        keys += [k for k in flat if k not in keys]
    if keys:
        sec.blocks.append(Table(["field"] + [r.label for r in an.runs],
                                [[k] + [f.get(k) or DASH for f in flat_envs] for k in keys],
                                caption="env.json of each run"))
    else:
        sec.blocks.append(Paragraph(f"{DASH} no env.json in any run folder: the environment is unknown."))
    for run in an.runs:
        parts = [m for m in run.env.get("merged_from") or [] if isinstance(m, dict)]
        if parts:
            sec.blocks.append(Paragraph(f"Reproduce {run.label} (rows from {run.path}): it was merged from "
                                        f"{len(parts)} run folders (`perfsuite merge`); measure each again, then "
                                        "merge the new folders."))
            for m in parts:
                sec.blocks.append(Paragraph(f"Part {m.get('path')}:"))
                sec.blocks += _reproduce_blocks(m.get("env") or {})
        else:
            sec.blocks.append(Paragraph(f"Reproduce {run.label} (rows from {run.path}):"))
            sec.blocks += _reproduce_blocks(run.env)
        forced = run.env.get("merge_forced")
        if isinstance(forced, dict):
            diffs, dups = forced.get("env_differences") or [], forced.get("duplicates") or []
            sec.blocks.append(Alert(f"{run.label} was merged with --force: "
                                    + ("; ".join(diffs) if diffs else "the parts' environments match")
                                    + f"; {len(dups)} key(s) held different rows in several parts (env.json "
                                    "`merge_forced.duplicates` names the part kept for each)."))
    n_ok = int((an.df["status"] == "ok").sum())
    sec.blocks.append(Paragraph(f"{len(an.df)} rows in {len(an.runs)} run(s): {n_ok} ok, {len(an.df) - n_ok} not ok "
                                "(listed under 'Points not ok')."))
    return sec


def _reproduce_blocks(env: dict[str, Any]) -> list[Any]:
    """How to measure a run again: env.json ``reproduce`` (the command as typed, without ``--out``, and
    the commit) as ``git checkout`` + the command into a new folder; runs recorded before ``reproduce``
    existed show their ``command`` as it ran."""
    rep, cmd = env.get("reproduce"), env.get("command")
    if isinstance(rep, dict) and rep.get("command"):
        commit = rep.get("commit")
        lines = [f"git checkout {commit.removesuffix('-dirty')}"] if isinstance(commit, str) and commit else []
        blocks: list[Any] = [Code("\n".join(lines + [f"{rep['command']} --out NEW_FOLDER"]))]
        if not commit:
            blocks.append(Paragraph("No git commit was recorded (the run was not made from a git checkout): the "
                                    "code version is unknown."))
        elif commit.endswith("-dirty"):
            blocks.append(Paragraph(f"The run had uncommitted changes to tracked files ({commit}); the checkout "
                                    "gives the committed code only."))
        return blocks
    if cmd:
        text = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        note = [Paragraph("The command as it ran (no `reproduce` entry); its `--out` folder already holds these "
                          "rows: give a new one.")] if "--out" in text else []
        return [Code(text), *note]
    return [Paragraph(f"{DASH} env.json has no `command` entry (nor `reproduce`), so the exact command is unknown.")]


def headline_section(an: A.Analysis) -> Section:
    sec = Section("headline", "Headline: the fastest backend per neuron and sequence length")
    sp = an.speedups
    if sp.empty:
        sec.blocks.append(Paragraph(f"{DASH} no timed point succeeded, so there is nothing to rank."))
        return sec
    unranked = " and ".join(f"`{b}`" for b in A.NOT_RANKED)
    sec.blocks.append(Paragraph(
        "Each cell is the neuron's fastest backend at that sequence length T and its median time; the float64 "
        f"{unranked} backend is left out of the ranking (it is the test oracle, slow on purpose, not a way to "
        "run a neuron), here and in the speed-ups. The speed-up "
        "tables divide the best LIF time, and the best PSN time, by the neuron's best time at the same settings "
        "(> 1 = the neuron is faster)."))
    failed = an.df[(an.df["kind"] == "bench") & (an.df["status"] != "ok")]
    group_keys = ["run", "precision", "workload", "device", "batch", "features", "mode"]
    sp = _in_order(an, sp, group_keys + ["neuron", "seq_len"])
    for gk, g in sp.groupby(group_keys, observed=True, sort=False):
        info = dict(zip(group_keys, gk))
        Ts = sorted(g["seq_len"].unique())
        neurons = A.neuron_order(g["neuron"].unique())
        fails = failed[(failed["run"] == info["run"]) & (failed["mode"] == info["mode"]) &
                       (failed["precision"] == info["precision"]) & (failed["batch"] == info["batch"]) &
                       (failed["features"] == info["features"])]
        time_rows, sp_rows, notes = [], [], set()
        for n in neurons:
            gn = g[g["neuron"] == n].set_index("seq_len")
            trow, srow = [n], [n]
            for T in Ts:
                if T in gn.index:
                    r = gn.loc[T]
                    trow.append(f"{fmt_ms(r[A.TIME])} ({r['backend']})")
                    cells = []
                    for base in A.BASELINES:
                        v = r[f"speedup_over_{base}"]
                        cells.append(fmt_x(v))
                        if not _finite(v):
                            notes.add(f"{DASH} in the speed-up: {r[f'speedup_over_{base}_reason']}")
                    srow.append(" · ".join(cells))
                else:
                    st = sorted(set(fails[(fails["neuron"] == n) & (fails["seq_len"] == T)]["status"]))
                    trow.append(f"{DASH} ({', '.join(st)})" if st else DASH)
                    srow.append(DASH)
                    notes.add(f"{DASH} ({'/'.join(st)}): every backend failed at that T, see 'Points not ok'" if st
                              else f"{DASH}: the point was not in the run")
            time_rows.append(trow)
            sp_rows.append(srow)
        title = f"{info['run']} · {info['mode']} · {setting_label(pd.Series(info))}"
        sec.blocks.append(Table(["neuron"] + [f"T={T}" for T in Ts], time_rows, caption=f"Best time — {title}",
                                notes=sorted(notes)))
        sec.blocks.append(Table(["neuron"] + [f"T={T}" for T in Ts], sp_rows,
                                caption=f"Speed-up over LIF · over PSN — {title}"))
    return sec


def scaling_section(an: A.Analysis, figures: dict[str, list[Figure]], missing: dict[str, list[str]]) -> Section:
    sec = Section("scaling", "Scaling with sequence length")
    for key in ("time", "memory", "energy", "throughput"):
        sec.blocks += figures.get(key, [])
        if key in missing:
            sec.blocks.append(Paragraph(f"{DASH} no {key} plot: {'; '.join(missing[key])}"))
    fits = an.fits
    if fits.empty:
        sec.blocks.append(Paragraph(f"{DASH} no fits: no timed point succeeded."))
        return sec
    several = len(an.runs) > 1
    rows, notes = [], set()
    single = fits[fits["n_points"] < 2]
    fits = fits[fits["n_points"] >= 2]
    if not single.empty:
        notes.add(f"Left out: {len(single)} neuron × backend × mode group(s) measured at a single sequence length "
                  "(a fit needs at least two).")
    if fits.empty:
        sec.blocks.append(Paragraph(f"{DASH} no fits: every neuron × backend × mode was measured at a single "
                                    "sequence length."))
    for _, f in _in_order(an, fits, ["run", "mode", "precision", "neuron", "backend"]).iterrows():
        ci = f"[{fmt_num(f['b_lo'])}, {fmt_num(f['b_hi'])}]" if _finite(f["b_lo"]) else DASH
        if f["fit_reason"]:
            notes.add(f"{DASH}: {f['fit_reason']}")
        rows.append(([f["run"]] if several else []) + [
            f["neuron"], f["backend"], f["mode"], setting_label(f), fmt_num(f["b"]), ci, fmt_ms(f["a"]),
            fmt_num(f["r2"], 4), f"{fmt_int(f['t_min'])}…{fmt_int(f['t_max'])}", str(f["n_points"])])
    cols = (["run"] if several else []) + ["neuron", "backend", "mode", "settings", "exponent b", "95 % CI of b",
                                           "a (time at T=1)", "R²", "T range", "points"]
    method = (f"95 % CI: residual bootstrap ({an.extra.get('n_boot', '?')} draws, residuals rescaled by "
              "√(n/(n−2))); with few lengths it is narrower than an exact t-interval. A fixed launch or loop "
              "overhead flattens small T and lowers b: read b together with R² and the plot.")
    if rows:
        sec.blocks.append(Table(cols, rows, caption="Fitted scaling time ≈ a·T^b (least squares in log–log)",
                                notes=[method, *sorted(notes)]))
    cr = an.crossovers
    if cr.empty:
        sec.blocks.append(Paragraph(f"{DASH} no crossovers: no pair of neurons (vs LIF, vs PSN) shares two or "
                                    "more measured lengths."))
        return sec
    rows = []
    for _, c in _in_order(an, cr, ["run", "mode", "precision", "neuron", "other"]).iterrows():
        fit = fmt_num(c["t_star_fit"]) if _finite(c["t_star_fit"]) else DASH
        if _finite(c["t_star_fit"]) and not c["fit_in_range"]:
            fit += " (outside measured T)"
        rows.append(([c["run"]] if several else []) + [
            f"{c['neuron']} vs {c['other']}", c["mode"], setting_label(c), fmt_num(c["t_star_measured"]), c["status"],
            fit, fmt_x(c["ratio_at_min"]), fmt_x(c["ratio_at_max"]), f"{fmt_int(c['t_min'])}…{fmt_int(c['t_max'])}"])
    sec.blocks.append(Table(
        (["run"] if several else []) + ["pair", "mode", "settings", "T* (measured)", "what happens",
                                        "T* (fitted curves)", "speed-up at min T", "speed-up at max T", "T range"],
        rows, caption="Crossovers: where one neuron overtakes the other (best backends)", notes=[(
            "T* (measured): the measured time ratio crosses 1 between two neighbouring lengths, interpolated in "
            "log–log. T* (fitted curves): where the two power laws cross; outside the measured lengths it is an "
            f"extrapolation (shown up to 10× beyond them, else {DASH}). Speed-up = other's time / neuron's time.")]))
    return sec


def backends_section(an: A.Analysis) -> Section:
    sec = Section("backends", "Backend comparison")
    br = an.backends
    if br.empty:
        sec.blocks.append(Paragraph(f"{DASH} no ratios: a neuron needs eager (or a peer) and another backend "
                                    "measured at the same settings."))
        return sec
    several = len(an.runs) > 1
    rows = []
    keys = ["run", "neuron", "mode", "precision", "workload", "batch", "features", "backend", "over"]
    for gk, g in _in_order(an, br, keys).groupby(keys, observed=True, sort=False):
        info = dict(zip(keys, gk))
        g = g.sort_values("seq_len")
        geo = float(np.exp(np.log(g["ratio"]).mean()))
        rows.append(([info["run"]] if several else []) + [
            info["neuron"], info["mode"], setting_label(pd.Series(info)), info["backend"], info["over"],
            fmt_x(g["ratio"].iloc[0]), fmt_x(g["ratio"].iloc[-1]), fmt_x(geo),
            f"{int(g['seq_len'].iloc[0])}…{int(g['seq_len'].iloc[-1])}"])
    sec.blocks.append(Table((["run"] if several else []) + [
        "neuron", "mode", "settings", "backend", "over", "at min T", "at max T", "geometric mean", "T range"], rows,
        caption="Speed-up of each backend over eager and over peer libraries (reference time / backend time)"))
    return sec


def roofline_section(an: A.Analysis) -> Section:
    sec = Section("roofline", "Roofline")
    for run in an.runs:
        bw, _, why = A.peaks(run.env, "fp32")
        roof = run.env.get("roofline")
        if isinstance(roof, dict):
            tf = roof.get("matmul_tflops")
            tf_s = ", ".join(f"{k} {fmt_num(v)}" for k, v in tf.items()) if isinstance(tf, dict) else fmt_num(tf)
            sec.blocks.append(Paragraph(f"{run.label}: measured copy bandwidth {fmt_num(bw)} GB/s, matmul "
                                        f"TFLOP/s {tf_s or DASH}."))
        else:
            sec.blocks.append(Paragraph(f"{run.label}: {DASH} {why}; fractions cannot be computed, achieved rates "
                                        "are still shown."))
    rf = an.roofline
    if rf.empty:
        sec.blocks.append(Paragraph(f"{DASH} no ok timed points."))
        return sec
    idx = rf.groupby(A.SETTING + ["neuron", "backend"], observed=True)["seq_len"].idxmax()
    top = _in_order(an, rf.loc[idx], ["run", "mode", "precision", "neuron", "backend"])
    several = len(an.runs) > 1
    rows, notes = [], set()
    for _, r in top.iterrows():
        if isinstance(r["reason"], str):
            notes.add(f"{DASH}: {r['reason']}")
        rows.append(([r["run"]] if several else []) + [
            r["neuron"], r["backend"], r["mode"], setting_label(r), str(int(r["seq_len"])), fmt_num(r["intensity"]),
            fmt_num(r["achieved_gbs"]), fmt_num(r["achieved_tflops"]), fmt_pct(r["fraction"]), r["bound"] or DASH])
    sec.blocks.append(Table((["run"] if several else []) + [
        "neuron", "backend", "mode", "settings", "T", "FLOP/byte", "GB/s", "TFLOP/s", "of roofline", "bound"], rows,
        caption="Achieved rates at the largest measured T, from the neuron's analytic cost", notes=[(
            "Bytes are the neuron's minimum traffic (a floor), so GB/s is a lower bound of what moved. The roof is "
            "min(measured matmul peak, intensity × measured copy bandwidth); element-wise work cannot reach the "
            "matmul peak, so memory-bound fractions are the meaningful ones."), *sorted(notes)]))
    return sec


def activity_section(an: A.Analysis) -> Section:
    sec = Section("activity", "Firing rates and energy")
    act = an.activity
    if act.empty:
        sec.blocks.append(Paragraph(f"{DASH} no ok timed points, so no firing rates."))
        return sec
    several = len(an.runs) > 1
    rows, notes = [], set()
    for _, r in _in_order(an, act, ["run", "precision", "workload", "neuron"]).iterrows():
        for col, rcol, what in (("firing_rate", "firing_rate_reason", "firing rate"),
                                ("modelled_j_per_gstep", "modelled_reason", "modelled energy"),
                                ("measured_j_per_gstep", "measured_reason", "measured energy")):
            if not _finite(r[col]) and r[rcol]:
                notes.add(f"{DASH} ({what}): {r[rcol]}")
        layers = ", ".join(fmt_num(v) for v in r["per_layer"]) if isinstance(r["per_layer"], list) else DASH
        rows.append(([r["run"]] if several else []) + [
            r["neuron"], f"{r['precision']} · {r['workload']}", fmt_num(r["firing_rate"]),
            fmt_num(r["silent_fraction"]), layers, fmt_num(r["modelled_j_per_gstep"]),
            fmt_num(r["measured_j_per_gstep"]), str(r["n_points"])])
    sources = sorted({s for s in act["modelled_source"] if isinstance(s, str)})
    if sources:
        notes.add("Modelled energy: " + "; ".join(sources))
    sec.blocks.append(Table((["run"] if several else []) + [
        "neuron", "settings", "firing rate", "silent fraction", "per layer", "modelled J / 10⁹ neuron-steps",
        "measured J / 10⁹ neuron-steps", "points"], rows,
        caption="Medians over the ok points of each neuron", notes=sorted(notes)))
    return sec


def extrapolation_section(an: A.Analysis, figures: dict[str, list[Figure]]) -> Section | None:
    ex = an.extrapolation
    if ex.empty:
        return None
    sec = Section("extrapolation", "Extrapolation: trained short, evaluated long")
    sec.blocks += figures.get("extrapolation", [])
    several = len(an.runs) > 1
    rows, notes = [], set()
    for _, r in _in_order(an, ex, ["run", "task", "neuron"]).iterrows():
        if isinstance(r["reason"], str):
            notes.add(f"{r['neuron']}: {r['reason']}")
        rows.append(([r["run"]] if several else []) + [
            r["neuron"], str(r["task"]), fmt_int(r["train_len"]), fmt_num(r["loss_train_len"]),
            fmt_int(r["max_eval_len"]), fmt_num(r["loss_max_eval"]), fmt_num(r["optimal_loss_max_eval"]),
            fmt_x(r["loss_ratio"]), "yes" if r["all_finite"] else "no"])
    sec.blocks.append(Table((["run"] if several else []) + [
        "neuron", "task", "train length", "loss at train length", "longest eval", "loss there", "optimal loss there",
        "loss ratio", "all finite"], rows, caption="Loss at the training length and at the longest evaluation",
        notes=sorted(notes)))
    return sec


def claims_section(an: A.Analysis) -> Section:
    sec = Section("claims", "The papers' claims against this run")
    cl = an.claims
    if cl.empty:
        sec.blocks.append(Paragraph(f"{DASH} no claims loaded."))
        return sec
    sec.blocks.append(Paragraph(
        "Each headline number of the PSN, SPSN, PSU and DSN papers that rows can speak to (perfsuite/claims.yaml). "
        "Paper numbers come from other hardware, networks and code: a difference is a finding, not an error. "
        "Only rows at the paper's setting (device, workload and, where the spec gives it, network size: the "
        "settings in each claim's `measure`) are compared; a run whose rows of the claim's neurons all differ "
        "from it gets \"not comparable\", naming the settings that differ. "
        "Evidence: [P] paper text, [C] authors' code, [R] peer review, [S] secondary source (unverified), "
        "[U] perfsuite's reading."))
    several = len(an.runs) > 1
    rows = []
    for _, c in cl.iterrows():
        pv = c["paper_value"]
        pv = (f"{pv[0]}–{pv[1]}{c['unit']}" if isinstance(pv, (list, tuple)) else f"{pv}{c['unit']}")
        rows.append(([c["run"]] if several else []) + [
            f"{c['statement']} ({c['paper']})", pv, c["conditions"],
            c["measured"] if isinstance(c["measured"], str) else DASH, c["verdict"],
            c["difference"], f"{c['source']} {c['evidence'].split(']')[0]}]", c["how"] + (
                f" Note: {c['note']}" if isinstance(c.get("note"), str) else "")])
    sec.blocks.append(Table((["run"] if several else []) + [
        "claim", "paper", "paper's conditions", "measured", "verdict", "difference", "source", "how measured"], rows))
    return sec


def not_ok_section(an: A.Analysis) -> Section:
    sec = Section("not-ok", "Points not ok")
    bad = an.not_ok
    if bad.empty:
        sec.blocks.append(Paragraph("Every point ran and is ok."))
        return sec
    several = len(an.runs) > 1
    rows = []
    for _, r in bad.iterrows():
        T = fmt_int(r["seq_len"]) if r["kind"] == "bench" else f"eval {fmt_int(r['eval_len'])}"
        rows.append(([r["run"]] if several else []) + [
            str(r["status"]), str(r["reason"]) if isinstance(r["reason"], str) else DASH, str(r["neuron"]),
            str(r["backend"]), str(r["mode"]), str(r["precision"]), T, str(r["kind"])])
    sec.blocks.append(Table((["run"] if several else []) + [
        "status", "reason", "neuron", "backend", "mode", "precision", "T", "kind"], rows))
    return sec


def comparison_section(an: A.Analysis) -> Section | None:
    if len(an.runs) < 2:
        return None
    sec = Section("runs", "Runs side by side")
    cmp_ = an.comparison
    labels = [r.label for r in an.runs]
    if cmp_.empty:
        sec.blocks.append(Paragraph(f"{DASH} the runs share no ok timed point."))
        return sec
    ratio_cols = [f"ratio: {r}" for r in labels[1:]]
    sec.blocks.append(Paragraph(f"Ratios are each run's median time over {labels[0]}'s at the same point "
                                "(< 1 = faster than the first run)."))
    cmp_ = _in_order(an, cmp_, ["neuron", "backend", "mode", "precision", "workload", "batch", "features",
                                "seq_len"])
    summ = []
    for gk, g in cmp_.groupby(["neuron", "backend", "mode", "precision"], sort=False):
        cells = []
        for rc in ratio_cols:
            v = g[rc].dropna()
            cells.append(fmt_x(np.exp(np.log(v).mean())) if len(v) else DASH)
        summ.append(list(gk) + cells)
    sec.blocks.append(Table(["neuron", "backend", "mode", "precision"] + [f"geo-mean {c}" for c in ratio_cols], summ,
                            caption="Geometric mean of the time ratios over the common lengths",
                            notes=[f"{DASH}: no common ok point"]))
    rows = []
    for _, r in cmp_.iterrows():
        rows.append([r["neuron"], r["backend"], r["mode"], r["precision"], str(int(r["seq_len"]))]
                    + [fmt_ms(r[lab]) for lab in labels] + [fmt_x(r[rc]) for rc in ratio_cols])
    sec.blocks.append(Table(["neuron", "backend", "mode", "precision", "T"] + labels + ratio_cols, rows,
                            caption="Every common point", notes=[f"{DASH}: that run has no ok point there"]))
    return sec


def _kernels_cell(kernels: list[dict[str, Any]]) -> str:
    """``name share`` of the first `KERNELS_SHOWN` kernels/ops of a profile block, by self time."""
    if not isinstance(kernels, list) or not kernels:
        return DASH
    cells = [f"{k.get('name')} {fmt_pct(k.get('share'))}" for k in kernels[:KERNELS_SHOWN]]
    more = len(kernels) - KERNELS_SHOWN
    return "; ".join(cells) + (f"; +{more} more in the profile block" if more > 0 else "")


_KERNEL_SOURCE = {"gpu_kernels": "GPU kernels", "cpu_ops": "CPU ops"}


def kernels_section(an: A.Analysis) -> Section:
    """Per profiled point: the backend identity verdict and the top kernels by self time, from rows of
    ``perfsuite run --profile`` and from ``profiles.jsonl`` (``perfsuite profile``) in a run folder."""
    sec = Section("kernels", "Kernels and backend identity")
    kp = an.profiles
    if kp.empty:
        sec.blocks.append(Paragraph(
            f"{DASH} no profiler traces in {'this run' if len(an.runs) == 1 else 'these runs'}. Record them with "
            "`perfsuite run SCENARIO --profile` (each point is traced after it is timed; the row gets the "
            "kernel summary) or `perfsuite profile SCENARIO --out RUN_DIR` (writes `profiles.jsonl` into the run "
            "folder), then rebuild the report with `perfsuite report RUN_DIR`."))
        return sec
    sec.blocks.append(Paragraph(
        "Each profiled point ran a few calls under torch.profiler after its timing (the trace never affects the "
        "timed numbers). Identity checks the backend label against the trace: `triton` must launch perfsuite's "
        "own Triton kernels, `compiled` must run the compiled region (and, with Inductor, generated kernels) but "
        "none of perfsuite's kernels, `eager` and `reference` neither. `unverified`: the trace cannot tell (on a "
        "CPU the Triton interpreter's launches are not recorded; peer libraries have no rule). Top kernels: "
        "self time summed over the profiled calls, as a share of the trace's total self time (GPU kernels when "
        "the trace has any, else CPU ops)."))
    ids = kp["identity"]
    counts = {v: int((ids == v).sum()) for v in ("ok", "mismatch", "unverified")}
    missing = int(ids.isna().sum())
    sec.blocks.append(Paragraph(
        f"{len(kp)} profiled point(s): identity ok {counts['ok']}, mismatch {counts['mismatch']}, unverified "
        f"{counts['unverified']}" + (f"; no profile {missing} (reasons in the table)" if missing else "") + "."))
    bad = kp[ids == "mismatch"]
    if not bad.empty:
        items = "; ".join(f"{r['neuron']}/{r['backend']}/{r['mode']} T={fmt_int(r['seq_len'])}: {r['detail']}"
                          for _, r in _in_order(an, bad, ["run", "neuron", "backend", "mode"]).iterrows())
        sec.blocks.append(Alert(f"{MISMATCH}: at {len(bad)} point(s) the trace shows something other than "
                                    f"the backend on the row, so their times are not that backend's: {items}"))
    several = len(an.runs) > 1
    kp = kp.assign(_T=pd.to_numeric(kp["seq_len"], errors="coerce"),
                   _source=kp["source"].map({s: i for i, s in enumerate(A.PROFILE_SOURCES)}))
    kp = _in_order(an, kp, ["run", "mode", "precision", "neuron", "backend", "_T", "_source"])
    rows, notes = [], set()
    for _, r in kp.iterrows():
        identity = r["identity"] if isinstance(r["identity"], str) else DASH
        what = next((v for v in (r["detail"], r["reason"]) if isinstance(v, str) and v), DASH)
        if identity == DASH:
            notes.add(f"{DASH} identity: the point has no trace (its status, or why profiling failed, is shown)")
        settings = f"{r['precision']} · {r['workload']} · B={fmt_int(r['batch'])} F={fmt_int(r['features'])}"
        rows.append(([str(r["run"])] if several else []) + [
            str(r["neuron"]), str(r["backend"]), str(r["mode"]), settings, fmt_int(r["_T"]), str(r["source"]),
            MISMATCH if identity == "mismatch" else identity, what,
            _KERNEL_SOURCE.get(r["kernel_source"], DASH), _kernels_cell(r["kernels"]),
            r["trace"] if isinstance(r["trace"], str) else DASH])
    notes.add("Trace: a Chrome/Perfetto file relative to the run folder (open it in https://ui.perfetto.dev); "
              "`traces/` is also a TensorBoard profiler logdir.")
    sec.blocks.append(Table((["run"] if several else []) + [
        "neuron", "backend", "mode", "settings", "T", "from", "identity", "what ran", "kernels of",
        f"top {KERNELS_SHOWN} by self time (share)", "trace"], rows,
        caption="Backend identity and top kernels per profiled point", notes=sorted(notes)))
    return sec


def build_content(an: A.Analysis, figures: dict[str, list[Figure]], missing: dict[str, list[str]]) -> Report:
    """All sections of the report, in reading order."""
    sections = [environment_section(an), headline_section(an), scaling_section(an, figures, missing),
                backends_section(an), kernels_section(an), roofline_section(an), activity_section(an),
                extrapolation_section(an, figures), claims_section(an), not_ok_section(an),
                comparison_section(an)]
    labels = " vs ".join(r.label for r in an.runs)
    return Report(title="perfsuite report", subtitle=labels, sections=[s for s in sections if s is not None])
