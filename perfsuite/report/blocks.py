"""The blocks a report is made of (paragraphs, alerts, code, tables, links, figures, collapsed details,
sections) and the number formats they use. `content` and `sections` fill them from an `Analysis`, with every
number already formatted; `markdown` and `html` only lay them out (escaping data-borne text each its own
way), so both formats always show the same content.

A value that is missing is printed as "—" and the table's notes say why (the row's ``*_reason``, the
point's status, or what the run lacks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import analysis as A

DASH = "—"
#: a time (or a speed-up from one) whose interval is missing or wider than ±20 % of its median
NOISY_MARK = "⚠ noisy"
#: the identity cell of a point whose trace contradicts its backend label (HTML colours it)
MISMATCH = "⚠ mismatch"
#: kernels listed per profiled point (the block keeps up to `perfsuite.profile.DEFAULT_TOP`)
KERNELS_SHOWN = 5


@dataclass
class Paragraph:
    text: str
    kind: str = "paragraph"


@dataclass
class Alert:
    """A paragraph the reader must not miss (e.g. a backend identity mismatch): bold in Markdown, a
    coloured box in HTML."""

    text: str
    kind: str = "alert"


@dataclass
class Code:
    text: str
    kind: str = "code"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "table"


@dataclass(frozen=True)
class Link:
    """A table cell that links to a file relative to the report's folder (a trace); ``href`` is already
    percent-encoded and never absolute (see `relative_link`)."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Details:
    """Blocks shown collapsed under a one-line summary (HTML ``<details>``; GitHub renders the same)."""

    summary: str
    blocks: list[Any] = field(default_factory=list)
    kind: str = "details"


@dataclass
class Figure:
    """A plot written to ``plots/<name>.png`` and ``plots/<name>.svg``."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path
    kind: str = "figure"


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)

    def missing(self, why: str) -> Section:
        """This section with one "— why" paragraph, what a section shows when it has nothing to show."""
        self.blocks.append(Paragraph(f"{DASH} {why}"))
        return self


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


# ------------------------------------------------------------------------------------------ formatting

def relative_link(path: Any) -> Link | str:
    """A cell linking to ``path`` when it is a relative path inside the run folder (no scheme, not absolute,
    no ``..``), percent-encoded; else the text alone, never a link."""
    from urllib.parse import quote

    if not isinstance(path, str) or not path:
        return DASH
    p = path.replace("\\", "/")
    if p.startswith("/") or ":" in p.split("/", 1)[0] or ".." in p.split("/"):
        return path
    return Link(path, quote(p, safe="/._-~"))


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_ms(v: Any) -> str:
    """A time given in ms, in the unit that keeps three significant digits readable."""
    if not _finite(v):
        return DASH
    v = float(v)
    if v < 1:
        return f"{v * 1e3:.3g} µs"
    if v < 1e3:
        return f"{v:.3g} ms"
    return f"{v / 1e3:.3g} s"


def fmt_interval(median: Any, lo: Any, hi: Any) -> str:
    """``[lo–hi]`` of a time in ms, both ends in the unit `fmt_ms` gives the median."""
    if not (_finite(median) and _finite(lo) and _finite(hi)):
        return DASH
    m = float(median)
    scale, unit = (1e3, "µs") if m < 1 else (1.0, "ms") if m < 1e3 else (1e-3, "s")
    return f"[{float(lo) * scale:.3g}–{float(hi) * scale:.3g} {unit}]"


def fmt_x(v: Any) -> str:
    return f"{float(v):.3g}×" if _finite(v) else DASH


def fmt_num(v: Any, digits: int = 3) -> str:
    return f"{float(v):.{digits}g}" if _finite(v) else DASH


def fmt_pct(v: Any) -> str:
    return f"{100 * float(v):.3g} %" if _finite(v) else DASH


def fmt_int(v: Any) -> str:
    return str(int(v)) if _finite(v) else DASH


def _in_order(an: A.Analysis, df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``cols``, runs in the order they were given (not alphabetically), modes as
    forward, train, step, and neurons (``neuron``, ``other``) in registry order (`analysis.neuron_rank`)."""
    runs = {r.label: i for i, r in enumerate(an.runs)}

    def key(col: pd.Series) -> pd.Series:
        if col.name == "run":
            return col.astype(str).map(runs)
        if col.name == "mode":
            return col.map(lambda m: (A.MODE_ORDER.get(m, 9)))
        if col.name in ("neuron", "other"):
            return col.map(A.neuron_rank(col.unique()))
        return col

    return df.sort_values(cols, key=key)
