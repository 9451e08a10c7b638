"""Reports built from rows on disk: ``report.md``, a self-contained ``report.html`` and ``plots/``.

    from perfsuite.report import build_report
    build_report([Path("reports/run-a"), Path("reports/run-b")], Path("reports/a-vs-b"))

The CLI's ``perfsuite report RUN_DIR... [--out DIR]`` and the end of ``perfsuite run`` call `build_report`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .. import analysis as A
from .content import build_content
from .html import render_html
from .markdown import render_markdown
from .plots import make_plots

__all__ = ["build_report"]

#: ``progress(done, total, what)``: called as each stage of a build finishes (total grows once the
#: figures are known), so a caller can show a progress bar
Progress = Callable[[int, int, str], None]


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, *, dpi: int = 110,
                 claims: Sequence[A.Claim] | None = None, n_boot: int = 2000,
                 progress: Progress | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/`` (PNG + SVG) for one or several runs.

    ``out_dir`` defaults to the first run folder. Returns the path of ``report.html``. Raises
    `ValueError` for an empty ``run_dirs`` and `FileNotFoundError` for a folder without results.
    ``progress(done, total, what)`` is told of each finished stage (loading, analysis, each figure, writing).
    """
    done, total = 0, 3

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    runs = A.load_runs(run_dirs)
    step("loaded runs")
    out = Path(out_dir) if out_dir is not None else (run_dirs[0] if run_dirs[0].is_dir() else run_dirs[0].parent)
    out.mkdir(parents=True, exist_ok=True)
    an = A.analyse(runs, claims=claims, n_boot=n_boot)
    plan = A.figure_specs(an)
    total += len(plan.figures)
    step("analysed")
    plots = out / "plots"
    if plots.is_dir():  # figures of an earlier build with other runs must not linger beside the new ones
        for old in list(plots.glob("*.png")) + list(plots.glob("*.svg")):
            old.unlink()
    figures = make_plots(plan, plots, dpi=dpi, step=lambda name: step(f"plot {name}"))
    report = build_content(an, figures, plan.missing, out)
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    html = out / "report.html"
    html.write_text(render_html(report), encoding="utf-8")
    step("wrote report")
    return html
