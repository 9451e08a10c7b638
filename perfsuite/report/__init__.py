"""Reports built from rows on disk: ``report.md``, a self-contained ``report.html`` and ``plots/``.

    from perfsuite.report import build_report
    build_report([Path("reports/run-a"), Path("reports/run-b")], Path("reports/a-vs-b"))

The CLI's ``perfsuite report RUN_DIR... [--out DIR]`` and the end of ``perfsuite run`` call `build_report`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .. import analysis as A
from .content import build_content
from .html import render_html
from .markdown import render_markdown
from .plots import make_plots

__all__ = ["build_report"]


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, *, dpi: int = 110,
                 claims: Sequence[A.Claim] | None = None, n_boot: int = 2000) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/`` (PNG + SVG) for one or several runs.

    ``out_dir`` defaults to the first run folder. Returns the path of ``report.html``. Raises
    `ValueError` for an empty ``run_dirs`` and `FileNotFoundError` for a folder without results.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    runs = A.load_runs(run_dirs)
    out = Path(out_dir) if out_dir is not None else (run_dirs[0] if run_dirs[0].is_dir() else run_dirs[0].parent)
    out.mkdir(parents=True, exist_ok=True)
    an = A.analyse(runs, claims=claims, n_boot=n_boot)
    plots = out / "plots"
    if plots.is_dir():  # figures of an earlier build with other runs must not linger beside the new ones
        for old in list(plots.glob("*.png")) + list(plots.glob("*.svg")):
            old.unlink()
    figures, missing = make_plots(an, plots, dpi=dpi)
    report = build_content(an, figures, missing)
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    html = out / "report.html"
    html.write_text(render_html(report), encoding="utf-8")
    return html
