"""Text that comes from data (rows, exception messages, env.json, scenario names) made safe for Markdown.

Every Markdown output of perfsuite (`summary.md`, `report.md`, `compare --markdown`, `ab.md`) passes such
text through these helpers, so an exception message holding `<script>`, a `|` or a code fence can neither
inject markup into a rendered page nor break a table or a code block. This module imports nothing from
perfsuite: every layer may use it.
"""

from __future__ import annotations

import re
from typing import Any

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_text(value: Any) -> str:
    """`value` as Markdown prose: `&`, `<` and `>` HTML-escaped, so no tag or entity survives."""
    return "".join(_HTML.get(ch, ch) for ch in str(value))


def md_cell(value: Any) -> str:
    """`value` as one Markdown table cell: `md_text`, with `|` escaped and line breaks folded to spaces."""
    return md_text(value).replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def md_code(value: Any) -> str:
    """`value` as inline code: a backtick run longer than any inside it (CommonMark's rule), padded with a
    space where the text starts or ends with a backtick. Line breaks are folded to spaces."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_fence(value: Any, lang: str = "") -> str:
    """`value` as a fenced code block whose fence (at least three backticks) is longer than any backtick run
    inside it, so the text cannot close the block early."""
    text = str(value)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"
