"""The summary of a run folder: ``summary.md`` and the end-of-run terminal table.

One line per row (`summary_cells`, `extrapolation_cells`), shared by the Markdown file and the rich
table. Imports: `perfsuite.results`, `perfsuite.measure.timing` (lazily) and rich (lazily); never the
runner (which calls it).
"""
from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Iterable

from .results import ENV_FILE, STATUSES, load_env
from .text import md_cell, md_code, md_fence, md_text

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
        _num(t and t.get("median_ms"), ".4g"),
        ci_label(t) if t and t.get("ci95_ms") and None not in t["ci95_ms"] else "",
        _num(m and m.get("peak_allocated_bytes") is not None and m["peak_allocated_bytes"] / 2**20, ".4g"),
        _num(a and a.get("firing_rate"), ".3f"),
        _num(g and g.get("equal_fraction"), ".4f"),
    ]


def _num(value, fmt: str) -> str:
    """A number formatted, or "" for a block that is absent or a value stored as null (non-finite)."""
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


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
    out += ["| " + " | ".join(md_cell(c) for c in cells) + " |" for cells in lines_cells]
    return out


def reason_groups(rows: Iterable[dict]) -> list[tuple[str, str, int]]:
    """(status, reason, count) of the rows that are not ok, one entry per distinct status and reason,
    most frequent first: what the end of a run says about the rows it could not measure."""
    counts = Counter((r["status"], str(r.get("reason") or "no reason recorded")) for r in rows if r["status"] != "ok")
    return [(status, reason, n) for (status, reason), n in
            sorted(counts.items(), key=lambda kv: (-kv[1], STATUSES.index(kv[0][0]) if kv[0][0] in STATUSES else 99))]


def summary_markdown(rows: Iterable[dict], env: dict | None = None) -> str:
    """summary.md: status counts, the table of rows, the reason of every row that is not ok, and the
    command that measures the run again (``env``'s ``reproduce``). Every text that comes from rows or
    env.json is escaped (`perfsuite.text`)."""
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
            lines.append(f"- {md_code(r['key'])}: **{md_text(r['status'])}**: {md_text(r.get('reason'))}")
    reproduce = (env or {}).get("reproduce")
    if isinstance(reproduce, dict) and reproduce.get("command"):
        commit = reproduce.get("commit")
        steps = ([f"git checkout {commit}"] if commit else []) + [f"{reproduce['command']} --out NEW_FOLDER"]
        lines += ["", "## Reproduce", "", md_text(reproduce.get("note") or ""), "",
                  md_fence("\n".join(str(s) for s in steps), "sh")]
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, rows: list[dict]) -> Path:
    """``summary.md`` of the rows, with the reproduce command of the folder's env.json when it has one."""
    path = Path(out_dir) / SUMMARY_FILE
    env = None
    with contextlib.suppress(OSError, ValueError):
        env = load_env(Path(out_dir) / ENV_FILE)
    path.write_text(summary_markdown(rows, env), encoding="utf-8")
    return path


_STATUS_COLORS = {"ok": "green", "skipped": "yellow", "unsupported": "yellow", "oom": "red", "error": "red",
                  "timeout": "red"}


def _rich_table(title: str, columns: list[str], rows: list[dict], cells_of, status_col: int):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c in ("seq_len", "batch", "features", "train_len", "eval_len")
                         or "ms" in c or "loss" in c or c in ("excess", "accuracy") else "left")
    for r in rows:
        cells = [Text(c) for c in cells_of(r)]  # data-borne text: never read as rich markup
        cells[status_col].stylize(_STATUS_COLORS.get(r["status"], "white"))
        table.add_row(*cells)
    return table


def summary_table(rows: Iterable[dict]):
    """Rich tables of the rows (the end-of-run summary): timed points, then extrapolation rows, then
    one line per distinct reason of the rows that are not ok (`reason_groups`), e.g.
    ``12 unsupported: triton needs CUDA``."""
    from rich.console import Group
    from rich.text import Text

    bench, extra = _split(rows)
    parts = []
    if bench or not extra:
        parts.append(_rich_table("perfsuite run", SUMMARY_COLUMNS, bench, summary_cells, 7))
    if extra:
        parts.append(_rich_table("extrapolation", EXTRAPOLATION_COLUMNS, extra, extrapolation_cells, 4))
    for status, reason, n in reason_groups(bench + extra):
        line = Text(f"{n} {status}: ", style=_STATUS_COLORS.get(status, "white"))
        line.append(reason)
        parts.append(line)
    return Group(*parts)
