"""The report's figures, drawn from the specs of `perfsuite.analysis.figures` (matplotlib's Agg canvas),
each saved as PNG and SVG.

This module only draws: what is plotted, in which panel and order, with which colour, marker and line
style, comes prepared in a `FigurePlan`; nothing here reads rows or calls into analysis. Figures are built
on `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot, so no display is ever touched
and the caller's pyplot state and backend are left alone. The legend sits outside the panels, right of
them and below the title, so it never covers a title or a point.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from ..analysis.figures import FigurePlan, FigureSpec, Style
from .blocks import Figure

PANEL_W, PANEL_H = 4.2, 3.2
#: height of one legend entry (inches), to size a figure so its legend fits beside the panels
LEGEND_ENTRY_H = 0.2


def _fmt_len(v: float, _pos=None) -> str:
    """Tick label of a sequence length: 512, 2k, 16k (plain text: mathtext labels are slow to lay out)."""
    if v >= 1024 and v % 1024 == 0:
        return f"{int(v) // 1024}k"
    return f"{v:g}"


def _log_y(ax, ys) -> None:
    ax.set_yscale("log")
    ys = [float(y) for y in ys if y > 0]
    wide = bool(ys) and max(ys) / min(ys) > 1e3
    # 1-2-5 ticks so a panel spanning less than a decade still gets labelled ticks; decades on wide panels
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _log_x_lengths(ax, xs) -> None:
    """Log x axis with ticks at the measured lengths and plain-number labels."""
    xs = sorted({float(x) for x in xs if x > 0})
    ax.set_xscale("log", base=2)
    step = max(1, len(xs) // 8)  # at most ~8 labelled lengths per panel
    ax.xaxis.set_major_locator(FixedLocator(xs[::step]))
    ax.xaxis.set_major_formatter(FuncFormatter(_fmt_len))
    ax.xaxis.set_minor_locator(NullLocator())  # minor ticks cost layout time and add nothing here


def _line_groups(d: pd.DataFrame, style: Style):
    """(neuron, backend, run, points sorted by x with the median y per x) in legend order."""
    rank = {n: i for i, n in enumerate(style.neurons)}
    keys = sorted(d.groupby(["neuron", "backend", "run"], observed=True).groups,
                  key=lambda k: (rank.get(k[0], 99), k[1], style.runs.index(k[2]) if k[2] in style.runs else 99))
    for n, b, r in keys:
        g = d[(d["neuron"] == n) & (d["backend"] == b) & (d["run"] == r)]
        yield n, b, r, g.groupby("x")["y"].median().sort_index()


def _dash(style: Style, backend: str, run: str):
    return style.dashes.get(run if style.line_by == "run" else backend, (1, 0))


def _draw_lines(ax, d: pd.DataFrame, style: Style, spec: FigureSpec) -> None:
    for n, b, r, s in _line_groups(d, style):
        marker = "o" if spec.kind == "extrapolation" else style.markers.get(b, "o")
        line, = ax.plot(s.index, s.values, color=style.palette.get(n, "0.3"), marker=marker, ms=4, lw=1.4)
        solid = spec.kind == "extrapolation" and style.line_by == "backend"  # no backend legend there
        line.set_dashes((1, 0) if solid else _dash(style, b, r))
    _log_x_lengths(ax, d["x"])
    if spec.log_y:  # losses (extrapolation) span a narrow range: a linear axis reads better there
        _log_y(ax, d["y"])


def _draw_dots(ax, d: pd.DataFrame, style: Style) -> None:
    """One x position per neuron; the backends (and runs) of a neuron side by side around it."""
    neurons = [n for n in style.neurons if n in set(d["neuron"])]
    combos = sorted({(b, r) for b, r in zip(d["backend"], d["run"])},
                    key=lambda k: (k[0], style.runs.index(k[1]) if k[1] in style.runs else 99))
    width = 0.7
    for i, n in enumerate(neurons):
        for j, (b, r) in enumerate(combos):
            g = d[(d["neuron"] == n) & (d["backend"] == b) & (d["run"] == r)]["y"]
            if g.empty:
                continue
            x = i + (j + 0.5) / len(combos) * width - width / 2
            filled = style.line_by != "run" or style.runs.index(r) == 0
            ax.plot([x], [float(g.median())], ls="none", marker=style.markers.get(b, "o"), ms=6,
                    color=style.palette.get(n, "0.3"), markerfacecolor=style.palette.get(n, "0.3") if filled else "white")
    ax.set_xticks(range(len(neurons)), neurons, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(neurons) - 0.4)
    _log_y(ax, d["y"])


def _draw_roofline(ax, d: pd.DataFrame, style: Style, roofs: list) -> None:
    for (n, b), g in d.groupby(["neuron", "backend"], observed=True):
        ax.plot(g["x"], g["y"], ls="none", marker=style.markers.get(b, "o"), ms=5, color=style.palette.get(n, "0.3"),
                alpha=0.85)
    ax.set_xscale("log")
    _log_y(ax, list(d["y"]) + [y for g in roofs for y in g["y"]])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))


def _legend(fig: MplFigure, spec: FigureSpec, style: Style, d: pd.DataFrame) -> None:
    neurons = [n for n in style.neurons if n in set(d["neuron"])]
    backends = [b for b in style.backends if b in set(d["backend"])]
    handles = [Line2D([], [], color=style.palette[n], lw=2, label=n) for n in neurons]
    handles.append(Line2D([], [], color="none", label=""))
    lines = spec.kind in ("lines", "extrapolation")
    if spec.kind != "extrapolation":
        for b in backends:
            h = Line2D([], [], color="0.3", marker=style.markers[b], ls="-" if lines and style.line_by == "backend"
                       else "none", label=b)
            if lines and style.line_by == "backend":
                h.set_dashes(style.dashes[b])
            handles.append(h)
    if style.line_by == "run" and len(style.runs) > 1 and spec.kind != "roofline":  # roofline: a panel per run
        handles.append(Line2D([], [], color="none", label=""))
        for r in style.runs:
            h = Line2D([], [], color="0.3", lw=1.4, label=r,
                       ls="-" if lines else "none", marker=None if lines else "o",
                       markerfacecolor="0.3" if style.runs.index(r) == 0 else "white")
            if lines:
                h.set_dashes(style.dashes[r])
            handles.append(h)
    seen = set()
    for g in spec.guides:
        if g["label"] not in seen:
            seen.add(g["label"])
            h = Line2D([], [], color=g["colour"], lw=1.2, label=g["label"])
            h.set_dashes(g["dash"])
            handles.append(h)
    if spec.vlines:
        handles.append(Line2D([], [], color="0.4", ls=":", label=spec.vlines[0]["label"]))
    runs = style.line_by == "run" and len(style.runs) > 1 and spec.kind != "roofline"
    what = ("neuron" if spec.kind == "extrapolation" else "neuron / backend") + (" / run" if runs else "")
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title=what, title_fontsize=8)


def draw(spec: FigureSpec, style: Style) -> MplFigure:
    """One figure: a grid of panels (rows × cols of the spec) with a shared legend right of them."""
    d = spec.data
    n_entries = len(set(d["neuron"])) + len(set(d["backend"])) + len(style.runs) + len(spec.guides) + 4
    height = max(PANEL_H * len(spec.rows) + 0.6, LEGEND_ENTRY_H * n_entries + 0.8)
    fig = MplFigure(figsize=(PANEL_W * len(spec.cols) + 2.2, height), layout="constrained")
    FigureCanvasAgg(fig)
    share = spec.kind in ("lines", "dots", "extrapolation") and len(style.runs) > 1
    axes = np.atleast_2d(fig.subplots(len(spec.rows), len(spec.cols), squeeze=False, sharey=share))
    for i, row in enumerate(spec.rows):
        for j, col in enumerate(spec.cols):
            ax = axes[i, j]
            p = d[(d["row"] == row) & (d["col"] == col)]
            if p.empty:
                ax.text(0.5, 0.5, "no ok points", ha="center", va="center", transform=ax.transAxes)
            elif spec.kind == "dots":
                _draw_dots(ax, p, style)
            elif spec.kind == "roofline":
                _draw_roofline(ax, p, style, [g for g in spec.guides if g["panel"] == (row, col)])
            else:
                _draw_lines(ax, p, style, spec)
            for g in spec.guides:
                if g["panel"] == (row, col):
                    line, = ax.plot(g["x"], g["y"], color=g["colour"], lw=1.2)
                    line.set_dashes(g["dash"])
            for v in spec.vlines:
                if v["panel"] == (row, col):
                    ax.axvline(v["x"], color="0.4", ls=":", lw=1)
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(" · ".join(t for t in (col, row) if t), fontsize=9)
            ax.set_xlabel(spec.x_label)
            ax.set_ylabel(spec.y_label)
    _legend(fig, spec, style, d)
    fig.suptitle(spec.title, fontsize=11)
    return fig


def _save(fig: MplFigure, out: Path, name: str, dpi: int) -> tuple[Path, Path]:
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    # constrained layout already fits the legend and labels: no bbox_inches="tight" (it costs a draw)
    fig.savefig(png, dpi=dpi)
    fig.savefig(svg)
    return png, svg


def make_plots(plan: FigurePlan, out: Path, *, dpi: int = 110, step=None) -> dict[str, list[Figure]]:
    """Draw and write every figure of ``plan`` under ``out`` (PNG + SVG); ``step(name)`` is called after
    each (progress). Returns quantity -> the figures written."""
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[Figure]] = {}
    for spec in plan.figures:
        png, svg = _save(draw(spec, plan.style), out, spec.name, dpi)
        figures.setdefault(spec.quantity, []).append(Figure(spec.name, spec.title, spec.caption, png, svg))
        if step is not None:
            step(spec.name)
    return figures
