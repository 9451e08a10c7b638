"""The report as GitHub-flavoured Markdown (``report.md``); figures are linked from ``plots/``."""
from __future__ import annotations

from .content import Report
from .templating import environment


def _md_cell(value: object) -> str:
    """A table cell: pipes escaped and line breaks kept inside the cell."""
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def render_markdown(report: Report) -> str:
    env = environment(autoescape=False)
    env.filters["mdcell"] = _md_cell
    env.filters["md_rule"] = lambda columns: "|" + "---|" * len(columns)
    return env.get_template("report.md.j2").render(report=report)
