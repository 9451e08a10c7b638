"""What every ``perfsuite`` command shares: the typer ``app``, the two consoles, the exit codes, the
option enums, ``fail`` (one line on stderr, exit 2), OS-error and internal-error messages, scenario loading,
the "unsupported here" notes and the report build that ``run`` and ``report`` both end with.

Owns no command. May import any perfsuite module below the CLI (lazily, inside functions, so that
``perfsuite --help`` stays fast); imports no other ``perfsuite.cli`` module.
"""
from __future__ import annotations

import sys
from datetime import datetime
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark and profile parallel spiking neurons against the serial LIF baseline.")
# piped output is not cut to rich's default 80 columns (the summary table has 13 columns)
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

#: exit codes: user mistake (as click's usage errors), interrupted run (as a shell's SIGINT)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


class ListWhat(str, Enum):
    neurons = "neurons"
    backends = "backends"
    devices = "devices"


def fail(message: str) -> None:
    """Print a user-facing error and exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def os_error_message(exc: OSError, out_dir: Path, resume: str | None) -> str:
    """One line for an OS error while writing a run folder (read-only, full disk, name too long)."""
    import errno

    what = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    msg = f"cannot write the run folder {out_dir}: {what}{where}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        msg += "; the rows written so far are kept"
        if resume:
            msg += f": free some space, then finish with: {resume}"
    elif exc.errno == errno.ENAMETOOLONG:
        msg += "; expected a shorter --out path"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        msg += "; expected a writable --out folder"
    return msg


def _load(path: Path, plugins: bool = True):
    from ..scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path, plugins=plugins)
    except ScenarioError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None


_NO_PLUGINS_HELP = ("refuse plugin neuron entries without importing them (a scenario with plugins is code: "
                    "use this for files you do not trust)")


def _unsupported_here(points) -> list[str]:
    """Lines saying which points will be `unsupported` on this machine and why, grouped by reason
    (e.g. '12 of 40 points unsupported here: ... the triton backend needs a CUDA device ...'), and how
    many points ask for a CUDA device this machine does not have (`run` refuses those)."""
    import torch

    from ..workloads import unsupported_reason

    reasons: dict[str, int] = {}
    no_cuda = 0
    for p in points:
        if p.device == "cuda" and not torch.cuda.is_available():
            no_cuda += 1
            continue
        try:
            why = unsupported_reason(p, p.device)
        except Exception as exc:  # a neuron that does not resolve here becomes an error row at run time
            why = f"{p.neuron} does not build here ({type(exc).__name__}: {exc})"
        if why:
            reasons[why] = reasons.get(why, 0) + 1
    lines = []
    if no_cuda:
        lines.append(f"{no_cuda} of {len(points)} points are for device cuda, and torch sees no CUDA device here: "
                     "`run` refuses them on this machine (use --device cpu, or a GPU machine)")
    if reasons:
        n = sum(reasons.values())
        lines.append(f"{n} of {len(points)} points unsupported here (they become `unsupported` rows):")
        lines += [f"  {count} x {why}" for why, count in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return lines


def _default_out(name: str) -> Path:
    return Path("reports") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def _build_report(run_dirs: list[Path], out_dir: Path, progress: bool = False) -> None:
    """Build the report; ``progress`` draws a rich progress bar on stderr when it is a terminal."""
    try:
        from ..report import build_report
    except ImportError as exc:
        typer.echo(f"note: no report built (the report builder is not available: {exc}); "
                   f"the rows and summary.md are in {out_dir}", err=True)
        return
    if not (progress and err.is_terminal):
        path = build_report(run_dirs, out_dir)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("report: {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("loading runs", total=None)
            path = build_report(run_dirs, out_dir,
                                progress=lambda done, total, what: bar.update(task, completed=done, total=total,
                                                                              description=what[:50]))
    typer.echo(f"report: {path}")




def internal_error(command: str, exc: BaseException) -> None:
    """An unexpected exception inside a gate command: one line naming it, exit 2 (never the regression
    code 1). PERFSUITE_DEBUG=1 prints the traceback too."""
    import os
    import traceback

    if os.environ.get("PERFSUITE_DEBUG"):
        traceback.print_exception(exc)
    typer.echo(f"error: internal error in perfsuite {command}: {type(exc).__name__}: {exc} "
               f"(set PERFSUITE_DEBUG=1 for the traceback); exit 2, not a verdict", err=True)
    raise typer.Exit(EXIT_USAGE)

