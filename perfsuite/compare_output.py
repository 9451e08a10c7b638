"""The regression gate's verdicts for people: a rich table with a headline on the terminal, Markdown for
``$GITHUB_STEP_SUMMARY`` and JSON (`perfsuite compare --markdown/--json`).

Every text that comes from rows (point keys, failure reasons, env values, paths) reaches the terminal as
`rich.text.Text` or through `rich.markup.escape`, and Markdown through `perfsuite.text`: a torch message
such as ``[enforce fail at alloc_cpu.cpp:127]`` is printed as it is, never read as markup.
"""
from __future__ import annotations

import json
from typing import Any

from .compare import LOW_POWER_CHANGE, VERDICTS, Comparison, Finding
from .text import md_cell, md_code, md_text

_COLUMNS = ("point", "metric", "verdict", "baseline", "candidate", "detectable", "evidence")
STYLE = {"regression": "bold red", "untestable": "bold yellow", "improvement": "green", "missing": "yellow",
         "new": "cyan", "unchanged": "dim"}


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    text = f"{v:.4g}" if isinstance(v, float) else str(v)
    return f"{text} {unit}" if unit else text


def verdict_word(c: Comparison) -> str:
    """REGRESSION, FAIL (exit 1 without a regression), PASS (low power) or PASS."""
    if c.regressions:
        return "REGRESSION"
    if c.exit_code:
        return "FAIL"
    return "PASS (low power)" if c.low_power else "PASS"


def _headline(c: Comparison) -> str:
    n = c.counts()
    parts = ", ".join(f"{n[v]} {v}" for v in VERDICTS if n[v])
    extra = []
    if c.forced and c.env_differences:
        extra.append("forced across environments: " + "; ".join(f"{k} {a!r} vs {b!r}" for k, a, b in c.env_differences))
    if c.noise_floor:
        extra.append(f"noise floor from {c.noise_floor}")
    if c.rerun:
        extra.append(f"flagged points re-measured in {c.rerun}; only regressions the re-run agrees with remain")
    if c.low_power and not c.exit_code:
        extra.append(f"{len(c.low_power)} time finding(s) could not have detected a {LOW_POWER_CHANGE:.0%} change")
    return f"{verdict_word(c)}: {parts or 'no points'}" + (f" ({'; '.join(extra)})" if extra else "")


def _shown(c: Comparison, show_all: bool) -> list[Finding]:
    """Every finding with ``show_all``; else those that changed, and the unchanged time findings that could
    not have seen a `LOW_POWER_CHANGE` (a pass that proves little is listed, not hidden)."""
    if show_all:
        return c.findings
    low = {id(f) for f in c.low_power}
    return [f for f in c.findings if f.verdict != "unchanged" or id(f) in low]


def _detectable(f: Finding) -> str:
    """The smallest slowdown the time finding could have flagged ("-" for other metrics)."""
    if f.metric != "time" or "detectable" not in f.evidence:
        return "-"
    d = f.evidence["detectable"]
    return "none (untestable)" if d is None or d == float("inf") else f"{d:+.0%}"


def render_table(c: Comparison, console=None, *, show_all: bool = False, title: str = "perfsuite compare") -> None:
    """Print the verdicts as a rich table (changed points only unless ``show_all``) and a headline. Row
    text is passed as `Text`, never parsed as markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    table = Table(title=title, show_lines=False)
    for col in _COLUMNS:
        table.add_column(col, overflow="fold")
    for f in _shown(c, show_all):
        table.add_row(Text(f.point), Text(f.metric), Text(f.verdict, style=STYLE[f.verdict]),
                      Text(_fmt(f.baseline, f.unit)), Text(_fmt(f.candidate, f.unit)), Text(_detectable(f)),
                      Text(f.detail))
    if table.row_count:
        console.print(table)
    console.print(Text(_headline(c), style="bold red" if c.exit_code else "bold green"))
    for w in c.warnings:
        console.print(Text.assemble(("warning: ", "bold yellow"), w))


def to_markdown(c: Comparison, *, title: str = "perfsuite regression gate") -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: headline, changed findings, every finding folded away."""

    def table(findings: list[Finding]) -> list[str]:
        lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        for f in findings:
            verdict = f"**{f.verdict}**" if f.verdict == "regression" else f.verdict
            # a | inside a code span still ends a table cell unless escaped (GitHub's table rule)
            cells = [md_code(f.point).replace("|", "\\|"), md_cell(f.metric), verdict,
                     md_cell(_fmt(f.baseline, f.unit)), md_cell(_fmt(f.candidate, f.unit)), _detectable(f),
                     md_cell(f.detail)]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    lines = [f"## {md_text(title)}", "", f"**{md_text(_headline(c))}**", ""]
    for w in c.warnings:
        lines += [f"> **warning:** {md_text(w)}", ""]
    changed = _shown(c, False)
    if changed:
        lines += table(changed) + [""]
    if c.findings:
        lines += ["<details><summary>all findings</summary>", ""] + table(c.findings) + ["", "</details>", ""]
    return "\n".join(lines)


def to_json(c: Comparison) -> str:
    doc = c.to_dict()
    doc["headline"] = _headline(c)
    return json.dumps(doc, indent=1, default=str, allow_nan=False) + "\n"
