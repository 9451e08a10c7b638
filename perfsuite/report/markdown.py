"""The report as GitHub-flavoured Markdown (``report.md``); figures are linked from ``plots/``.

Every text that can come from data (rows, exception messages, env.json, run labels, paths) goes through
`perfsuite.text`: prose and captions through ``md_text``, table cells through ``md_cell``, code through
``md_fence`` (a fence longer than any backtick run inside). Backticked words in perfsuite's own prose stay
inline code; their contents are escaped like the rest.
"""
from __future__ import annotations

from urllib.parse import quote

from ..text import md_cell, md_fence, md_text
from .blocks import Link, Report
from .templating import render


def _label(value: object) -> str:
    """Text inside ``[...]`` (a link's text, an image's alt text): a cell, with the brackets escaped too."""
    return md_cell(value).replace("[", "&#91;").replace("]", "&#93;")


def _cell(value: object) -> str:
    """A table cell: escaped text, or ``[text](href)`` for a link (href percent-encoded, never absolute)."""
    if isinstance(value, Link):
        return f"[{_label(value.text)}]({quote(value.href, safe='/%._-~')})"
    return md_cell(value)


def render_markdown(report: Report) -> str:
    filters = {"mdcell": _cell, "mdlabel": _label, "mdtext": md_text, "mdfence": md_fence,
               "md_rule": lambda columns: "|" + "---|" * len(columns)}
    return render("report.md.j2", autoescape=False, filters=filters, report=report)
