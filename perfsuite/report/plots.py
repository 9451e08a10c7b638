"""The report's figures (seaborn on matplotlib's Agg canvas, log–log), each saved as PNG and SVG.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot, so no
display is ever touched and the caller's pyplot state and backend are left alone.

One figure per run and quantity: time, peak memory, measured energy per 10⁹ neuron-steps and throughput
vs T, with one panel per mode (columns) × settings (rows: precision, workload, batch × features), the
neuron as colour and the backend as line style. Extrapolation rows give loss vs evaluation length.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from .. import analysis as A
from .content import Figure, _mode_sorted, setting_label

PANEL_W, PANEL_H = 4.2, 3.2


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "run"


def _fmt_len(v: float, _pos=None) -> str:
    """Tick label of a sequence length: 512, 2k, 16k (plain text: mathtext labels are slow to lay out)."""
    if v >= 1024 and v % 1024 == 0:
        return f"{int(v) // 1024}k"
    return f"{v:g}"


def _log_axes(ax, xs) -> None:
    """Log–log axes with ticks at the measured lengths and plain-number labels."""
    xs = sorted({float(x) for x in xs if x > 0})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    step = max(1, len(xs) // 8)  # at most ~8 labelled lengths per panel
    ax.xaxis.set_major_locator(FixedLocator(xs[::step]))
    ax.xaxis.set_major_formatter(FuncFormatter(_fmt_len))
    ax.xaxis.set_minor_locator(NullLocator())  # minor ticks cost layout time and add nothing here
    # 1-2-5 ticks so a panel spanning less than a decade still gets labelled ticks
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.grid(True, which="major", alpha=0.3)


def _palette(neurons) -> dict[str, tuple]:
    """One colour per neuron, stable across every figure of a report (neurons in registry order)."""
    names = A.neuron_order(neurons)
    colours = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours))


def _save(fig: MplFigure, out: Path, name: str, dpi: int) -> tuple[Path, Path]:
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    # constrained layout already fits the legend and labels: no bbox_inches="tight" (it costs a draw)
    fig.savefig(png, dpi=dpi)
    fig.savefig(svg)
    return png, svg


def _facet(df: pd.DataFrame, y: str, ylabel: str, palette: dict, backends: list[str], title: str,
           x: str = "seq_len", xlabel: str = "sequence length T") -> MplFigure:
    """A grid of log–log line plots: columns = modes, rows = settings."""
    df = df.assign(_setting=df.apply(setting_label, axis=1))
    modes = _mode_sorted(df["mode"])
    settings = sorted(df["_setting"].unique())
    fig = MplFigure(figsize=(PANEL_W * len(modes) + 1.8, PANEL_H * len(settings) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(settings), len(modes), squeeze=False))
    dashes = {b: d for b, d in zip(backends, [(1, 0), (4, 2), (1, 1.5), (6, 2, 1, 2), (3, 1, 1, 1, 1, 1), (8, 3)] * 3)}
    markers = dict(zip(backends, ["o", "s", "^", "D", "v", "P"] * 3))
    for i, s in enumerate(settings):
        for j, m in enumerate(modes):
            ax = axes[i, j]
            d = df[(df["_setting"] == s) & (df["mode"] == m)]
            if d.empty:
                ax.text(0.5, 0.5, "no ok points", ha="center", va="center", transform=ax.transAxes)
            else:
                sns.lineplot(data=d, x=x, y=y, hue="neuron", style="backend", palette=palette, dashes=dashes,
                             markers=markers, estimator="median", errorbar=None, ax=ax, legend=False,
                             hue_order=A.neuron_order(d["neuron"].unique()), style_order=backends)
                _log_axes(ax, d[x])
            ax.set_title(f"{m} · {s}", fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
    _legend(fig, palette, A.neuron_order(df["neuron"].unique()), backends, dashes, markers)
    fig.suptitle(title, fontsize=11)
    return fig


def _legend(fig: MplFigure, palette: dict, neurons: list[str], backends: list[str], dashes: dict, markers: dict):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=palette[n], lw=2, label=n) for n in neurons]
    handles.append(Line2D([], [], color="none", label=""))
    handles += [Line2D([], [], color="0.3", dashes=dashes[b], marker=markers[b], label=b) for b in backends]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="neuron / backend", title_fontsize=8)


def _series(ok: pd.DataFrame) -> dict[str, tuple[str, str, Callable[[pd.DataFrame], pd.Series]]]:
    """quantity -> (y label, file stem, function giving the y values of ok rows)."""
    def num(c):
        return lambda d: pd.to_numeric(d[c], errors="coerce")

    return {
        "time": ("median time (ms)", "time", lambda d: d[A.TIME]),
        "memory": ("peak memory (MiB)", "memory",
                   lambda d: num("memory.peak_allocated_bytes")(d) / 2 ** 20),
        "energy": ("measured J per 10⁹ neuron-steps", "energy", num("energy.joules_per_gneuron_step")),
        "throughput": ("10⁹ neuron-steps / s", "throughput",
                       lambda d: d["seq_len"] * pd.to_numeric(d["neurons"], errors="coerce") / (d[A.TIME] / 1e3) / 1e9),
    }


_CAPTIONS = {
    "time": "Median time per call vs T, log–log; slope = scaling exponent.",
    "memory": "Peak memory per call vs T (method as recorded in the rows: CUDA allocator or CPU RSS delta).",
    "energy": "Measured energy per 10⁹ neuron-steps vs T (NVML counter, idle power subtracted).",
    "throughput": "Neuron-steps per second (T × N / time) vs T.",
}
_BLOCK = {"memory": "memory", "energy": "energy", "throughput": "time", "time": "time"}


def make_plots(an: A.Analysis, out: Path, *, dpi: int = 110) -> tuple[dict[str, list[Figure]], dict[str, list[str]]]:
    """Write every figure under ``out`` (PNG + SVG). Returns (quantity -> figures, quantity -> why a run
    has no figure for it)."""
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[Figure]] = {}
    missing: dict[str, list[str]] = {}
    ok = A.bench_ok(an.df)
    palette = _palette(an.df["neuron"].dropna())
    several = len(an.runs) > 1
    for key, (ylabel, stem, fn) in _series(ok).items():
        for run in an.runs:
            d = ok[ok["run"] == run.label]
            if d.empty:
                missing.setdefault(key, []).append("no ok timed points" + (f" in {run.label}" if several else ""))
                continue
            d = d.assign(_y=fn(d))
            d = d[np.isfinite(d["_y"]) & (d["_y"] > 0)]
            if d.empty:
                why = A.metric_reason(an.df[an.df["run"] == run.label], _BLOCK[key])
                missing.setdefault(key, []).append(why + (f" ({run.label})" if several else ""))
                continue
            backends = sorted(d["backend"].unique())
            title = f"{ylabel} — {run.label}"
            fig = _facet(d, "_y", ylabel, palette, backends, title)
            name = f"{stem}-{_slug(run.label)}" if several else stem
            png, svg = _save(fig, out, name, dpi)
            figures.setdefault(key, []).append(Figure(name, title, _CAPTIONS[key], png, svg))
    ex = an.df[(an.df["kind"] == "extrapolation") & (an.df["status"] == "ok")].copy()
    ex["loss"] = pd.to_numeric(ex["loss"], errors="coerce")
    ex = ex[np.isfinite(ex["loss"])]
    if not ex.empty:
        for run in an.runs:
            d = ex[ex["run"] == run.label]
            if d.empty:
                continue
            fig = _extrapolation_figure(d, palette, run.label)
            name = f"extrapolation-{_slug(run.label)}" if several else "extrapolation"
            png, svg = _save(fig, out, name, dpi)
            figures.setdefault("extrapolation", []).append(Figure(
                name, f"Extrapolation — {run.label}", "Loss vs evaluation length per neuron; dotted vertical line = "
                "training length, black dashed line = the optimal (Bayes) loss on the same sequences.", png, svg))
    return figures, missing


def _extrapolation_figure(d: pd.DataFrame, palette: dict, label: str) -> MplFigure:
    panels = sorted({(str(t), int(L)) for t, L in zip(d["task"], d["train_len"])})
    fig = MplFigure(figsize=(PANEL_W * len(panels) + 1.8, PANEL_H + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    for ax, (task, L) in zip(axes, panels):
        g = d[(d["task"].astype(str) == task) & (d["train_len"] == L)]
        sns.lineplot(data=g, x="eval_len", y="loss", hue="neuron", palette=palette, marker="o", estimator="median",
                     errorbar=None, ax=ax, legend=False, hue_order=A.neuron_order(g["neuron"].unique()))
        opt = pd.to_numeric(g["optimal_loss"], errors="coerce")
        if opt.notna().any():
            o = g.assign(_o=opt).groupby("eval_len")["_o"].median()
            ax.plot(o.index, o.values, color="black", ls="--", lw=1.2)
        ax.axvline(L, color="0.4", ls=":", lw=1)
        _log_axes(ax, g["eval_len"])
        ax.set_yscale("linear")  # losses span a narrow range: a linear axis reads better
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.set_title(f"task {task} · trained at {L}", fontsize=9)
        ax.set_xlabel("evaluation length")
        ax.set_ylabel("loss")
    from matplotlib.lines import Line2D

    neurons = A.neuron_order(d["neuron"].unique())
    handles = [Line2D([], [], color=palette[n], marker="o", label=n) for n in neurons]
    handles += [Line2D([], [], color="black", ls="--", label="optimal loss"),
                Line2D([], [], color="0.4", ls=":", label="training length")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(f"Extrapolation — {label}", fontsize=11)
    return fig
