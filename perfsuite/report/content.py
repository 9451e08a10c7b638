"""What a report says: the sections in reading order (`build_content`). This module fills the environment,
headline, scaling and backend sections; `sections` the rest (kernels, roofline, activity, extrapolation,
claims, points not ok, runs side by side, the appendix).

A value that is missing is printed as "—" and the table's notes say why (the row's ``*_reason``, the
point's status, or what the run lacks).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis as A
from ..analysis import setting_label
from .blocks import (
    DASH,
    NOISY_MARK,
    Alert,
    Code,
    Details,
    Figure,
    Paragraph,
    Report,
    Section,
    Table,
    _finite,
    _in_order,
    fmt_int,
    fmt_interval,
    fmt_ms,
    fmt_num,
    fmt_x,
)
from .sections import (
    activity_section,
    appendix_section,
    claims_section,
    comparison_section,
    extrapolation_section,
    kernels_section,
    not_ok_section,
    roofline_section,
)

__all__ = ["build_content"]


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


def _time_cell(r: Any) -> str:
    """``1.23 ms [1.2–1.27 ms] (eager)``, with ``⚠ noisy`` when the interval is missing or wider than ±20 %."""
    text = f"{fmt_ms(r[A.TIME])} {fmt_interval(r[A.TIME], r['ci_lo'], r['ci_hi'])}"
    return text + (f" {NOISY_MARK}" if r["noisy"] else "") + f" ({r['backend']})"


def _speedup_cell(r: Any, base: str) -> tuple[str, str | None]:
    """(``12.3× [11.8–12.9]``, or ``⚠ noisy`` with a note when either time is noisy: a speed-up is shown only
    with its bound) of one baseline."""
    col = f"speedup_over_{base}"
    v = r[col]
    if not _finite(v):
        return DASH, f"{DASH} in the speed-up: {r[f'{col}_reason']}"
    if r["neuron"] == base:
        return fmt_x(v), None
    if not (_finite(r[f"{col}_lo"]) and _finite(r[f"{col}_hi"])):
        return NOISY_MARK, f"{NOISY_MARK}: no speed-up is shown, as it has no bound: {r[f'{col}_bound_reason']}"
    return f"{fmt_x(v)} [{fmt_num(r[f'{col}_lo'])}–{fmt_num(r[f'{col}_hi'])}]", None


def headline_section(an: A.Analysis) -> Section:
    sec = Section("headline", "Headline: the fastest backend per neuron and sequence length")
    sp = an.speedups
    if sp.empty:
        return sec.missing("no timed point succeeded, so there is nothing to rank.")
    unranked = " and ".join(f"`{b}`" for b in A.NOT_RANKED)
    pct = f"±{A.NOISY:.0%}".replace("%", " %")
    sec.blocks.append(Paragraph(
        "Each cell is the neuron's fastest backend at that sequence length T, its median time and the interval "
        "of that median (the row's `time.ci95_ms`); the float64 "
        f"{unranked} backend is left out of the ranking (it is the test oracle, slow on purpose, not a way to "
        f"run a neuron), here and in the speed-ups. {NOISY_MARK}: the interval reaches beyond {pct} of the median "
        "(or the row has none), so the time is not a finding. The speed-up "
        "tables divide the best LIF time, and the best PSN time, by the neuron's best time at the same settings "
        "(> 1 = the neuron is faster); the bound in brackets is [baseline low / neuron high, baseline high / "
        "neuron low] from the two intervals; a speed-up is shown only when neither time is noisy."))
    n_noisy = int(sp["noisy"].sum())
    if n_noisy:
        sec.blocks.append(Alert(f"{n_noisy} of {len(sp)} headline times are noisy (interval wider than {pct} or "
                                "missing): repeat the run on a quiet machine before reading them as findings."))
    if not an.under_load.empty:
        ul = an.under_load
        sec.blocks.append(Alert(f"{len(ul)} point(s) were measured under load (the machine busier than its cores, "
                                "CPU steal, or GPU clocks throttled; the row's `load` block): their times are not "
                                "findings."))
        sec.blocks.append(Details(f"Points measured under load ({len(ul)})", [Table(
            ["run", "point", "status", "why"],
            [[r.run, r.key, r.status, r.why] for r in ul.itertuples(index=False)])]))
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
        time_rows, sp_rows, notes, sp_notes = [], [], set(), set()
        for n in neurons:
            gn = g[g["neuron"] == n].set_index("seq_len")
            trow, srow = [n], [n]
            for T in Ts:
                if T in gn.index:
                    r = gn.loc[T]
                    trow.append(_time_cell(r))
                    cells = []
                    for base in A.BASELINES:
                        cell, note = _speedup_cell(r, base)
                        cells.append(cell)
                        if note:
                            sp_notes.add(note)
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
                                caption=f"Speed-up over LIF · over PSN — {title}", notes=sorted(sp_notes | notes)))
    return sec


def scaling_section(an: A.Analysis, figures: dict[str, list[Figure]], missing: dict[str, list[str]]) -> Section:
    sec = Section("scaling", "Scaling with sequence length")
    for key in ("time", "memory", "energy", "throughput"):
        sec.blocks += figures.get(key, [])
        if key in missing:
            sec.blocks.append(Paragraph(f"{DASH} no {key} plot: {'; '.join(missing[key])}"))
    fits = an.fits
    if fits.empty:
        return sec.missing("no fits: no timed point succeeded.")
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
        return sec.missing("no crossovers: no pair of neurons (vs LIF, vs PSN) shares two or more measured lengths.")
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
        return sec.missing("no ratios: a neuron needs eager (or a peer) and another backend measured at the "
                           "same settings.")
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


def build_content(an: A.Analysis, figures: dict[str, list[Figure]], missing: dict[str, list[str]],
                  out: Path | None = None) -> Report:
    """All sections of the report, in reading order; ``out`` is the report's folder (trace links are
    relative to it)."""
    sections = [environment_section(an), headline_section(an), scaling_section(an, figures, missing),
                backends_section(an), kernels_section(an, out), roofline_section(an, figures, missing),
                activity_section(an), extrapolation_section(an, figures), claims_section(an), not_ok_section(an),
                comparison_section(an), appendix_section(an)]
    labels = " vs ".join(r.label for r in an.runs)
    return Report(title="perfsuite report", subtitle=labels, sections=[s for s in sections if s is not None])
