"""The summary of a run folder: ``summary.md`` and the end-of-run terminal table.

One line per row (`summary_cells`, `extrapolation_cells`), shared by the Markdown file and the rich
table. Imports: `perfsuite.results`, `perfsuite.measure.timing` (lazily) and rich (lazily); never the
runner (which calls it).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from .results import STATUSES

SUMMARY_FILE = "summary.md"
SUMMARY_COLUMNS = ("neuron", "backend", "mode", "precision", "seq_len", "batch", "features", "status",
                   "median ms", "median CI ms (95 % unless marked)", "peak MiB", "rate", "agree")


def summary_cells(row: dict) -> list[str]:
    """One summary line of a row, as strings (shared by the Markdown file and the terminal table).
    The median's interval carries its coverage when it is below 95 % (fewer than 6 samples: min–max)."""
    from .measure.timing import ci_label

    t, m, a, g = row.get("time"), row.get("memory"), row.get("activity"), row.get("agreement")
    return [
        str(row.get("neuron")), str(row.get("backend")), str(row.get("mode")), str(row.get("precision")),
        str(row.get("seq_len")), str(row.get("batch")), str(row.get("features")), str(row.get("status")),
        f"{t['median_ms']:.4g}" if t else "",
        ci_label(t) if t and t.get("ci95_ms") else "",
        f"{m['peak_allocated_bytes'] / 2**20:.4g}" if m and m.get("peak_allocated_bytes") is not None else "",
        f"{a['firing_rate']:.3f}" if a else "",
        f"{g['equal_fraction']:.4f}" if g else "",
    ]


EXTRAPOLATION_COLUMNS = ["neuron", "task", "train_len", "eval_len", "status", "loss", "optimal loss", "excess",
                         "accuracy", "policy"]


def extrapolation_cells(row: dict) -> list[str]:
    """One summary line of an extrapolation row (train short, evaluate long)."""
    def num(k: str) -> str:
        v = row.get(k)
        return f"{v:.4f}" if isinstance(v, (int, float)) else ""

    return [str(row.get("neuron")), str(row.get("task")), str(row.get("train_len")), str(row.get("eval_len")),
            str(row.get("status")), num("loss"), num("optimal_loss"), num("excess_loss"), num("accuracy"),
            str(row.get("policy") or "")]


def _split(rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    rows = list(rows)
    return ([r for r in rows if r.get("kind", "bench") != "extrapolation"],
            [r for r in rows if r.get("kind") == "extrapolation"])


def _md_table(columns: list[str], lines_cells: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in lines_cells]
    return out


def summary_markdown(rows: Iterable[dict]) -> str:
    rows = list(rows)
    bench, extra = _split(rows)
    counts = Counter(r["status"] for r in rows)
    lines = ["# Run summary", ""]
    lines.append("Status: " + ", ".join(f"{s} {counts[s]}" for s in STATUSES if counts[s]) + f" (total {len(rows)})")
    lines.append("")
    if bench:
        lines.append("peak MiB: `memory.peak_allocated_bytes` (method in each row: the CUDA allocator's peak, or on "
                     "the CPU the growth of the worker's peak RSS during one call). rate: mean firing rate. agree: "
                     "fraction of spikes equal to the float64 reference.")
        lines.append("")
        lines += _md_table(SUMMARY_COLUMNS, (summary_cells(r) for r in bench))
    if extra:
        lines += ["", "## Extrapolation", "",
                  "Mean loss (nats) on fresh sequences of each evaluation length; optimal loss: the Bayes predictor "
                  "on the same sequences; excess = loss − optimal.", ""]
        lines += _md_table(EXTRAPOLATION_COLUMNS, (extrapolation_cells(r) for r in extra))
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        lines += ["", "## Not ok", ""]
        for r in problems:
            lines.append(f"- `{r['key']}`: **{r['status']}**: {r.get('reason')}")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, rows: list[dict]) -> Path:
    path = Path(out_dir) / SUMMARY_FILE
    path.write_text(summary_markdown(rows), encoding="utf-8")
    return path


_STATUS_COLORS = {"ok": "green", "skipped": "yellow", "unsupported": "yellow", "oom": "red", "error": "red",
                  "timeout": "red"}


def _rich_table(title: str, columns: list[str], rows: list[dict], cells_of, status_col: int):
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c in ("seq_len", "batch", "features", "train_len", "eval_len")
                         or "ms" in c or "loss" in c or c in ("excess", "accuracy") else "left")
    for r in rows:
        cells = cells_of(r)
        cells[status_col] = f"[{_STATUS_COLORS.get(r['status'], 'white')}]{cells[status_col]}[/]"
        table.add_row(*cells)
    return table


def summary_table(rows: Iterable[dict]):
    """Rich tables of the rows (the end-of-run summary): timed points, then extrapolation rows."""
    from rich.console import Group

    bench, extra = _split(rows)
    parts = []
    if bench or not extra:
        parts.append(_rich_table("perfsuite run", SUMMARY_COLUMNS, bench, summary_cells, 7))
    if extra:
        parts.append(_rich_table("extrapolation", EXTRAPOLATION_COLUMNS, extra, extrapolation_cells, 4))
    return Group(*parts)
