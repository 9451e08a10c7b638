"""What each report figure shows, decided once from an `Analysis`: the data of every panel, the panel grid,
the order of neurons, backends and runs, the colours and markers, the captions, and why a figure is
missing. `perfsuite.report.plots` only draws these specs; it never reads rows or calls back into analysis.

Encodings are shared by every figure of a report (`Style`): a neuron has one colour and a backend one
marker everywhere, in the time, memory, energy, throughput and roofline plots alike. Several runs are
overlaid in one figure per quantity, the run drawn as the line style; one run draws the backend as the
line style. A figure whose every point has a single x value (one sequence length) is a dot plot (neurons
along x) instead of a line plot.

May import: .frames, .roofline, .activity (reasons of empty metric blocks). No plotting library.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from .activity import metric_reason
from .frames import TIME, bench_ok, mode_order, neuron_order, setting_label
from .roofline import peaks, roof_reliable

if TYPE_CHECKING:
    from .bundle import Analysis

#: matplotlib's "tab10" colours, in its order: one per neuron while there are at most ten
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
DASHES = ((1, 0), (4, 2), (1, 1.5), (6, 2, 1, 2), (3, 1, 1, 1, 1, 1), (8, 3))


@dataclass
class Style:
    """The visual encoding every figure of one report shares."""

    neurons: list[str]
    backends: list[str]
    runs: list[str]
    palette: dict[str, str]  # neuron -> colour (hex)
    markers: dict[str, str]  # backend -> matplotlib marker
    dashes: dict[str, tuple]  # backend (one run) or run (several runs) -> dash pattern
    line_by: str  # "backend" or "run": what the line style tells apart


@dataclass
class FigureSpec:
    """One figure: ``data`` has the columns x, y, neuron, backend, run, row and col (the panel's row and
    column labels); ``kind`` is "lines", "dots", "extrapolation" or "roofline"."""

    quantity: str
    name: str
    title: str
    caption: str
    kind: str
    data: pd.DataFrame
    x_label: str
    y_label: str
    rows: list[str]
    cols: list[str]
    log_y: bool = True
    #: extra lines per panel: dicts with panel (row, col), x, y, label, colour, dash
    guides: list[dict[str, Any]] = field(default_factory=list)
    #: vertical lines per panel: dicts with panel (row, col), x, label
    vlines: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FigurePlan:
    style: Style
    figures: list[FigureSpec]
    #: quantity -> why a run (or every run) has no figure of it
    missing: dict[str, list[str]]

    def of(self, quantity: str) -> list[FigureSpec]:
        return [f for f in self.figures if f.quantity == quantity]


def _colours(n: int) -> list[str]:
    """``n`` distinct colours: tab10 up to ten, else evenly spaced hues."""
    if n <= len(TAB10):
        return list(TAB10[:n])
    out = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb(i / n, 0.5, 0.65)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def make_style(an: Analysis) -> Style:
    """One colour per neuron (registry order), one marker per backend and one dash per backend or run,
    over every row of every run, so the same thing looks the same in every figure."""
    neurons = neuron_order(an.df["neuron"].dropna())
    backends = sorted({b for b in an.df["backend"].dropna() if isinstance(b, str)})
    runs = [r.label for r in an.runs]
    line_by = "run" if len(runs) > 1 else "backend"
    styled = runs if line_by == "run" else backends
    return Style(neurons=neurons, backends=backends, runs=runs, palette=dict(zip(neurons, _colours(len(neurons)))),
                 markers={b: MARKERS[i % len(MARKERS)] for i, b in enumerate(backends)},
                 dashes={s: DASHES[i % len(DASHES)] for i, s in enumerate(styled)}, line_by=line_by)


def _series() -> dict[str, tuple[str, str, Callable[[pd.DataFrame], pd.Series]]]:
    """quantity -> (y label, metric block that explains an empty figure, y values of ok rows)."""
    def num(c):
        return lambda d: pd.to_numeric(d[c], errors="coerce")

    return {
        "time": ("median time (ms)", "time", lambda d: d[TIME]),
        "memory": ("peak memory (MiB)", "memory", lambda d: num("memory.peak_allocated_bytes")(d) / 2 ** 20),
        "energy": ("measured J per 10⁹ neuron-steps", "energy", num("energy.joules_per_gneuron_step")),
        "throughput": ("10⁹ neuron-steps / s", "time",
                       lambda d: d["seq_len"] * pd.to_numeric(d["neurons"], errors="coerce") / (d[TIME] / 1e3) / 1e9),
    }


CAPTIONS = {
    "time": "Median time per call vs T, log–log; slope = scaling exponent.",
    "memory": "Peak memory per call vs T (method as recorded in the rows: CUDA allocator or CPU RSS delta).",
    "energy": "Measured energy per 10⁹ neuron-steps vs T (NVML counter, idle power subtracted).",
    "throughput": "Neuron-steps per second (T × N / time) vs T.",
}
_DOTS = " Every point has one sequence length (T={T}), so the neurons are dots along x (log y)."
_RUNS = " Runs overlaid, told apart by line style; every panel shares the axes."


def _panels(d: pd.DataFrame) -> pd.DataFrame:
    """``row`` = the settings label, ``col`` = the mode."""
    return d.assign(row=d.apply(setting_label, axis=1) if len(d) else pd.Series(dtype=object),
                    col=d["mode"].astype(str))


def _row_order(d: pd.DataFrame) -> list[str]:
    return sorted(d["row"].unique())


def metric_figures(an: Analysis, style: Style) -> tuple[list[FigureSpec], dict[str, list[str]]]:
    """Time, memory, energy and throughput against T: one figure per quantity (all runs overlaid)."""
    ok = bench_ok(an.df)
    figures, missing = [], {}
    several = len(an.runs) > 1
    for key, (ylabel, block, fn) in _series().items():
        parts = []
        for run in an.runs:
            d = ok[ok["run"] == run.label]
            if d.empty:
                missing.setdefault(key, []).append("no ok timed points" + (f" in {run.label}" if several else ""))
                continue
            d = d.assign(y=fn(d))
            d = d[np.isfinite(d["y"]) & (d["y"] > 0)]
            if d.empty:
                why = metric_reason(an.df[an.df["run"] == run.label], block)
                missing.setdefault(key, []).append(why + (f" ({run.label})" if several else ""))
                continue
            parts.append(d)
        if not parts:
            continue
        d = _panels(pd.concat(parts, ignore_index=True))
        d = d.assign(x=d["seq_len"].astype(float), run=d["run"].astype(str))[
            ["x", "y", "neuron", "backend", "run", "row", "col", "seq_len"]]
        single = d["x"].nunique() == 1
        caption = CAPTIONS[key] + (_DOTS.format(T=int(d["x"].iloc[0])) if single else "") + (_RUNS if several else "")
        title = ylabel + (f" — {' vs '.join(style.runs)}" if several else f" — {style.runs[0]}")
        figures.append(FigureSpec(quantity=key, name=key, title=title, caption=caption,
                                  kind="dots" if single else "lines", data=d,
                                  x_label="neuron" if single else "sequence length T", y_label=ylabel,
                                  rows=_row_order(d), cols=mode_order(d["col"])))
    return figures, missing


def extrapolation_figure(an: Analysis) -> FigureSpec | None:
    """Loss against evaluation length, one panel per task × training length, runs overlaid."""
    df = an.df
    ex = df[(df["kind"] == "extrapolation") & (df["status"] == "ok")].copy()
    ex["loss"] = pd.to_numeric(ex["loss"], errors="coerce")
    ex = ex[np.isfinite(ex["loss"])]
    if ex.empty:
        return None
    ex = ex.assign(x=pd.to_numeric(ex["eval_len"], errors="coerce").astype(float), y=ex["loss"],
                   row="", col=[f"task {t} · trained at {int(L)}" for t, L in zip(ex["task"], ex["train_len"])],
                   run=ex["run"].astype(str), backend=ex["backend"].fillna("eager"))
    cols = sorted(ex["col"].unique())
    guides, vlines = [], []
    for c in cols:
        g = ex[ex["col"] == c]
        opt = pd.to_numeric(g["optimal_loss"], errors="coerce")
        if opt.notna().any():
            o = g.assign(_o=opt).groupby("x")["_o"].median().dropna()
            guides.append({"panel": ("", c), "x": list(o.index), "y": list(o.values), "label": "optimal loss",
                           "colour": "black", "dash": (4, 2)})
        vlines.append({"panel": ("", c), "x": float(g["train_len"].iloc[0]), "label": "training length"})
    runs = " vs ".join(r.label for r in an.runs)
    return FigureSpec(quantity="extrapolation", name="extrapolation", title=f"Extrapolation — {runs}",
                      caption="Loss vs evaluation length per neuron; dotted vertical line = training length, black "
                      "dashed line = the optimal (Bayes) loss on the same sequences."
                      + (_RUNS if len(an.runs) > 1 else ""), kind="extrapolation",
                      data=ex[["x", "y", "neuron", "backend", "run", "row", "col"]], x_label="evaluation length",
                      y_label="loss", rows=[""], cols=cols, log_y=False, guides=guides, vlines=vlines)


def roofline_figure(an: Analysis) -> tuple[FigureSpec | None, str | None]:
    """Attained TFLOP/s against arithmetic intensity (FLOP/byte), log–log, with each run's measured roofs
    (min(matmul peak, intensity × copy bandwidth)); one panel per run × precision, points at every measured
    T. Returns (spec, why there is none)."""
    rf = an.roofline
    pts = rf[np.isfinite(pd.to_numeric(rf["intensity"], errors="coerce"))
             & (pd.to_numeric(rf["intensity"], errors="coerce") > 0)
             & (pd.to_numeric(rf["achieved_tflops"], errors="coerce") > 0)]
    if pts.empty:
        return None, ("no ok timed point has an analytic cost with FLOPs" if not rf.empty else "no ok timed points")
    d = pts.assign(x=pts["intensity"].astype(float), y=pts["achieved_tflops"].astype(float),
                   row=pts["run"].astype(str), col=pts["precision"].astype(str), run=pts["run"].astype(str))
    rows = [r.label for r in an.runs if r.label in set(d["row"])]
    cols = sorted(d["col"].unique())
    envs = {r.label: r.env for r in an.runs}
    guides, notes = [], []
    for r in rows:
        env = envs.get(r, {})
        for c in cols:
            bw, mm, why = peaks(env, c)
            if why and bw is None:
                notes.append(f"{r} {c}: {why}")
                continue
            xs = d[(d["row"] == r) & (d["col"] == c)]["x"]
            if xs.empty:
                continue
            lo, hi = float(xs.min()) / 4, float(xs.max()) * 4
            if mm is not None:
                ridge = mm * 1e3 / bw
                lo, hi = min(lo, ridge / 4), max(hi, ridge * 4)
            grid = np.geomspace(lo, hi, 64)
            roof = grid * bw / 1e3 if mm is None else np.minimum(mm, grid * bw / 1e3)
            unreliable = not roof_reliable(env)
            guides.append({"panel": (r, c), "x": list(grid), "y": list(roof), "colour": "0.25",
                           "dash": (2, 2) if unreliable else (1, 0),
                           "label": "measured roof (unreliable)" if unreliable else "measured roof"})
    caption = ("Attained TFLOP/s vs arithmetic intensity (analytic FLOPs / minimum bytes), log–log, every ok point "
               "with FLOPs; the line is the run's measured roof, min(matmul peak, intensity × copy bandwidth), "
               "dashed when env.json marks it unreliable.")
    if notes:
        caption += " No roof drawn for " + "; ".join(notes) + "."
    return FigureSpec(quantity="roofline", name="roofline", title="Roofline — " + " vs ".join(rows), caption=caption,
                      kind="roofline", data=d[["x", "y", "neuron", "backend", "run", "row", "col"]],
                      x_label="FLOP / byte", y_label="attained TFLOP/s", rows=rows, cols=cols, guides=guides), None


def figure_specs(an: Analysis) -> FigurePlan:
    """Every figure of a report, in reading order, with the reasons for the missing ones."""
    style = make_style(an)
    figures, missing = metric_figures(an, style)
    ex = extrapolation_figure(an)
    if ex is not None:
        figures.append(ex)
    rf, why = roofline_figure(an)
    if rf is not None:
        figures.append(rf)
    else:
        missing["roofline"] = [why]
    return FigurePlan(style=style, figures=figures, missing=missing)
