"""The report's later sections: kernels and backend identity, roofline, firing rates and energy,
extrapolation, the papers' claims, points not ok, runs side by side, and the appendix (long tables moved
out of the reading flow).

May import: perfsuite.analysis (its frames and constants), .blocks, .static_kernels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from .. import analysis as A
from ..analysis import setting_label
from .blocks import (
    DASH,
    KERNELS_SHOWN,
    MISMATCH,
    Alert,
    Details,
    Figure,
    Link,
    Paragraph,
    Section,
    Table,
    _finite,
    _in_order,
    fmt_int,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_x,
    relative_link,
)
from .static_kernels import static_kernel_blocks


def roofline_section(an: A.Analysis, figures: dict[str, list[Figure]], missing: dict[str, list[str]]) -> Section:
    """The measured roofs of each run, the roofline plot, and a pointer to the table in the appendix."""
    sec = Section("roofline", "Roofline")
    for run in an.runs:
        bw, _, why = A.peaks(run.env, "fp32")
        roof = run.env.get("roofline")
        if isinstance(roof, dict):
            tf = roof.get("matmul_tflops")
            tf_s = ", ".join(f"{k} {fmt_num(v)}" for k, v in tf.items()) if isinstance(tf, dict) else fmt_num(tf)
            sec.blocks.append(Paragraph(f"{run.label}: measured copy bandwidth {fmt_num(bw)} GB/s, matmul "
                                        f"TFLOP/s {tf_s or DASH}."))
            if not A.roof_reliable(run.env):
                sec.blocks.append(Alert(f"{run.label}: {A.UNRELIABLE}. No point is called memory- or compute-bound "
                                        "from it and no fraction of it is given; the plot draws it dashed."))
        else:
            sec.blocks.append(Paragraph(f"{run.label}: {DASH} {why}; fractions cannot be computed, achieved rates "
                                        "are still shown."))
    if an.roofline.empty:
        return sec.missing("no ok timed points.")
    sec.blocks += figures.get("roofline", [])
    if "roofline" in missing:
        sec.blocks.append(Paragraph(f"{DASH} no roofline plot: {'; '.join(missing['roofline'])}"))
    sec.blocks.append(Paragraph("The achieved rates of every neuron × backend at its largest measured T, with the "
                                "fraction of the roof and the bound, are in the appendix (Roofline table)."))
    return sec


def _roofline_table(an: A.Analysis) -> Table | None:
    rf = an.roofline
    if rf.empty:
        return None
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
    return Table((["run"] if several else []) + [
        "neuron", "backend", "mode", "settings", "T", "FLOP/byte", "GB/s", "TFLOP/s", "of roofline", "bound"], rows,
        caption="Roofline table: achieved rates at the largest measured T, from the neuron's analytic cost", notes=[(
            "Bytes are the neuron's minimum traffic (a floor), so GB/s is a lower bound of what moved. The roof is "
            "min(measured matmul peak, intensity × measured copy bandwidth); element-wise work cannot reach the "
            "matmul peak, so memory-bound fractions are the meaningful ones."), *sorted(notes)])


def appendix_section(an: A.Analysis) -> Section | None:
    """Long reference tables, out of the reading flow."""
    table = _roofline_table(an)
    if table is None:
        return None
    return Section("appendix", "Appendix", [table])


def activity_section(an: A.Analysis) -> Section:
    sec = Section("activity", "Firing rates and energy")
    act = an.activity
    if act.empty:
        return sec.missing("no ok timed points, so no firing rates.")
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
        return sec.missing("no claims loaded.")
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
    table = Table((["run"] if several else []) + [
        "claim", "paper", "paper's conditions", "measured", "verdict", "difference", "source", "how measured"], rows)
    unmeasured = cl["verdict"].isin(("not comparable", "not measured"))
    if unmeasured.all():  # nothing to read: one line, the table collapsed under it
        ids = list(dict.fromkeys(cl["id"]))
        gpu = (an.df["device"].astype(str).str.startswith("cuda")).any()
        need = "rows" if gpu else "GPU rows"
        sec.blocks.append(Paragraph(f"{len(ids)} claims need {need} at the papers' settings: {', '.join(ids)}."))
        sec.blocks.append(Details(f"Why each claim is not comparable or not measured ({len(cl)} rows)", [table]))
    else:
        sec.blocks.append(table)
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
        return sec.missing("the runs share no ok timed point.")
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


def _trace_cell(an: A.Analysis, label: Any, trace: Any, out: Path | None) -> Any:
    """The trace as a link relative to the report's folder ``out`` (the path in the row is relative to its
    run folder and must stay inside it, see `relative_link`); the bare path when it is not such a path."""
    link = relative_link(trace)
    run = next((r for r in an.runs if r.label == str(label)), None)
    if not isinstance(link, Link) or out is None or run is None:
        return link
    folder = run.path if run.path.is_dir() else run.path.parent
    rel = os.path.relpath(Path(os.path.abspath(folder)) / link.text, os.path.abspath(out)).replace(os.sep, "/")
    return Link(link.text, quote(rel, safe="/._-~"))


def kernels_section(an: A.Analysis, out: Path | None = None) -> Section:
    """Per profiled point: the backend identity verdict and the top kernels by self time, from rows of
    ``perfsuite run --profile`` and from ``profiles.jsonl`` (``perfsuite profile``) in a run folder; then
    the static kernel report of a run folder's ``kernels_static.json`` (`static_kernel_blocks`)."""
    sec = Section("kernels", "Kernels and backend identity")
    kp = an.profiles
    if kp.empty:
        sec.blocks.append(Paragraph(
            f"{DASH} no profiler traces in {'this run' if len(an.runs) == 1 else 'these runs'}. Record them with "
            "`perfsuite run SCENARIO --profile` (each point is traced after it is timed; the row gets the "
            "kernel summary) or `perfsuite profile SCENARIO --out RUN_DIR` (writes `profiles.jsonl` into the run "
            "folder), then rebuild the report with `perfsuite report RUN_DIR`."))
        sec.blocks += static_kernel_blocks(an)
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
            _trace_cell(an, r["run"], r["trace"], out)])
    notes.add("Trace: a link to the Chrome/Perfetto file, relative to the run folder where the report sits "
              "(open it in https://ui.perfetto.dev); `traces/` is also a TensorBoard profiler logdir.")
    sec.blocks.append(Table((["run"] if several else []) + [
        "neuron", "backend", "mode", "settings", "T", "from", "identity", "what ran", "kernels of",
        f"top {KERNELS_SHOWN} by self time (share)", "trace"], rows,
        caption="Backend identity and top kernels per profiled point", notes=sorted(notes)))
    sec.blocks += static_kernel_blocks(an)
    return sec

