"""The report as one self-contained HTML file: inline CSS, figures embedded as base64 PNG, no script and
no network access needed to view it. jinja2's autoescape escapes every text; the only markup added is
inline code for backticked words, links to trace files (relative, percent-encoded) and the verdict
classes."""
from __future__ import annotations

import base64
import re

from markupsafe import Markup, escape

from .blocks import MISMATCH, Link, Report
from .templating import render

_VERDICTS = ("consistent", "contradicts", "lower than paper", "higher than paper", "inconclusive", "not measured",
             "not comparable")


def _inline_code(text: object) -> Markup:
    """Escape, then show `backticked` words as code (the only markup the report's prose uses)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _verdict_class(cell: object) -> Markup:
    """A class attribute colouring the claims table's verdict cells and identity mismatches."""
    if cell == MISMATCH:
        return Markup(' class="identity-mismatch"')
    if cell in _VERDICTS:
        return Markup(f' class="verdict-{str(cell).split()[0]}"')
    return Markup("")


def _cell_html(cell: object) -> Markup:
    """A table cell: escaped text, or a link to a file relative to the report (a trace)."""
    if isinstance(cell, Link):
        return Markup('<a href="{}">{}</a>').format(cell.href, cell.text)
    return escape(cell)


def render_html(report: Report) -> str:
    images = {f.name: base64.b64encode(f.png.read_bytes()).decode("ascii") for f in report.figures()}
    filters = {"cell_html": _cell_html, "inline_code": _inline_code, "verdict_class": _verdict_class}
    return render("report.html.j2", autoescape=True, filters=filters, report=report, images=images)
