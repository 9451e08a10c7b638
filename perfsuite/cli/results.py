"""Commands on stored results: ``merge`` (shards into one run), ``report`` (report.md/html and plots),
``compare`` (the regression gate on two runs, with ``--rerun``) and ``ab`` (the interleaved A/B gate).

May import perfsuite.cli.common and any perfsuite module below the CLI (merge, results, report, compare,
compare_output, rerun, ab, verdicts); nothing imports this module but the ``perfsuite.cli`` package.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from . import common
from .common import EXIT_INTERRUPTED, Device, _build_report, app, fail, internal_error, os_error_message


# --------------------------------------------------------------------------------------- merge
@app.command()
def merge(out_dir: Path = typer.Argument(..., help="new folder for the merged run"),
          parts: list[Path] = typer.Argument(..., help="run folders (shards) to join"),
          force: bool = typer.Option(False, "--force", help="merge parts from different environments or commits, "
                                     "or holding different rows for one key (an ok row wins, else the last part's)")) -> None:
    """Join shard run folders of one run into one (rows deduplicated by key); parts from different
    environments, or with different rows for one key, are refused unless --force."""
    from ..merge import merge_runs
    from ..results import ENV_FILE

    try:
        result = merge_runs(out_dir, parts, force=force)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_message(exc, out_dir, None))
    forced = json.loads((out_dir / ENV_FILE).read_text(encoding="utf-8")).get("merge_forced")
    if forced:
        for line in forced["env_differences"]:
            typer.echo(f"warning (--force): environments differ: {line}", err=True)
        dups = forced["duplicates"]
        for d in dups[:10]:
            typer.echo(f"warning (--force): {d['key']} held by {', '.join(d['parts'])}: kept {d['winner']} "
                       f"({d['rule']})", err=True)
        if len(dups) > 10:
            typer.echo(f"warning (--force): {len(dups) - 10} more duplicate keys; every one is in "
                       f"{out_dir / ENV_FILE} under merge_forced.duplicates", err=True)
    typer.echo(f"merged {len(parts)} parts into {out_dir}: {len(result.rows)} rows")


# -------------------------------------------------------------------------------------- report
@app.command()
def report(run_dirs: list[Path] = typer.Argument(..., help="run folders"),
           out_dir: Optional[Path] = typer.Option(None, "--out", help="report folder (default: the first run)"),
           progress: bool = typer.Option(True, "--progress/--no-progress",
                                         help="draw a progress bar (only when stderr is a terminal)")) -> None:
    """Build report.md, report.html and plots from run folders."""
    missing = [str(d) for d in run_dirs if not (d / "results.jsonl").exists() and not d.is_file()]
    if missing:
        fail(f"no results.jsonl in {', '.join(missing)} (expected run folders)")
    try:
        _build_report(list(run_dirs), out_dir or run_dirs[0], progress)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


# ------------------------------------------------------------------------------------- compare
@app.command()
def compare(baseline: Path = typer.Argument(..., help="baseline run folder or results.jsonl"),
            candidate: Path = typer.Argument(..., help="candidate run folder or results.jsonl"),
            threshold: float = typer.Option(0.05, help="time: smallest slowdown that counts (0.05 = 5 %)"),
            alpha: float = typer.Option(0.01, help="time: significance level of the Mann-Whitney U test"),
            memory_threshold: float = typer.Option(0.01, help="memory: ratio threshold (0.01 = 1 %)"),
            firing_rate_tol: float = typer.Option(0.01, help="firing rate: absolute tolerance"),
            agreement_tol: float = typer.Option(0.005, help="agreement with the reference: absolute tolerance"),
            noise_floor: Optional[Path] = typer.Option(None, "--noise-floor", help="A/A noise floor JSON (scripts/noise_floor.sh)"),
            force: bool = typer.Option(False, "--force", help="compare runs from different environments anyway"),
            markdown: Optional[Path] = typer.Option(None, "--markdown", help="also write the verdicts as Markdown"),
            json_out: Optional[Path] = typer.Option(None, "--json", help="also write the verdicts as JSON"),
            show_all: bool = typer.Option(False, "--all", help="list unchanged findings too"),
            fail_on_missing: bool = typer.Option(False, "--fail-on-missing", help="exit 1 when baseline points are missing"),
            fail_on_untestable: bool = typer.Option(False, "--fail-on-untestable", help="exit 1 when time findings have "
                                                    "too few samples to be tested (default: pass with a warning)"),
            rerun: Optional[Path] = typer.Option(None, "--rerun", help="scenario to re-measure flagged points with; "
                                                 "fail only if the re-run agrees"),
            rerun_out: Optional[Path] = typer.Option(None, "--rerun-out", help="run folder of the re-run"),
            allow_missing: bool = typer.Option(False, "--allow-missing", help="pass even when more than 10 % of the "
                                               "baseline points are missing from the candidate"),
            gate_cpu_memory: bool = typer.Option(False, "--gate-cpu-memory", help="also gate the CPU's peak-RSS "
                                                 "growth (default: shown, not gated: allocator noise)")) -> None:
    """Regression gate: exit 0 (no regression), 1 (regression), 2 (bad input or an internal error)."""
    from .. import compare as cmp
    from .. import compare_output

    try:
        th = cmp.Thresholds(time=threshold, alpha=alpha, memory=memory_threshold, firing_rate=firing_rate_tol,
                            agreement=agreement_tol, cpu_memory=gate_cpu_memory)
        result = cmp.compare_runs(baseline, candidate, thresholds=th, noise_floor=noise_floor, force=force,
                                  fail_on_missing=fail_on_missing, fail_on_untestable=fail_on_untestable,
                                  allow_missing=allow_missing)
        if rerun is not None and result.flagged_keys():
            from ..rerun import confirm_by_rerun

            rerun_dir = rerun_out or candidate.with_name(f"{candidate.name}-rerun-{datetime.now():%Y%m%d-%H%M%S}")
            typer.echo(f"re-measuring {len(result.flagged_keys())} flagged point(s) into {rerun_dir}", err=True)
            result = confirm_by_rerun(result, baseline, rerun, rerun_dir, console=common.err)
        compare_output.render_table(result, common.out, show_all=show_all)
        if markdown is not None:
            markdown.write_text(compare_output.to_markdown(result), encoding="utf-8")
        if json_out is not None:
            json_out.write_text(compare_output.to_json(result), encoding="utf-8")
    except (ValueError, FileNotFoundError, OSError) as exc:
        fail(str(exc))
    except Exception as exc:  # a bug must never read as "regression" (exit 1): it is exit 2 with its name
        internal_error("compare", exc)
    raise typer.Exit(result.exit_code)


@app.command()
def ab(scenario: Path = typer.Argument(..., help="scenario YAML file (both sides read it with their own code)"),
       baseline: str = typer.Option(..., "--baseline", help="git ref or path to a checkout (A)"),
       candidate: str = typer.Option(..., "--candidate", help="git ref or path to a checkout (B)"),
       rounds: int = typer.Option(10, "--rounds", help="interleaved A/B rounds per point (>= 6 to test time)"),
       out_dir: Optional[Path] = typer.Option(None, "--out", help="folder (default reports/ab-<timestamp>/)"),
       threshold: float = typer.Option(0.05, help="time: smallest slowdown that counts (0.05 = 5 %)"),
       device: Optional[Device] = typer.Option(None, help="auto|cpu|cuda (default: the scenario's device)"),
       seed: int = typer.Option(0, help="seed of the random A/B order within each pair"),
       chunks: Optional[int] = typer.Option(None, "--chunks", min=1, help="chunks each side's repetitions are cut "
                                            "into within a round, alternating A B B A (default: 6 on the CPU, 1 "
                                            "on CUDA, where the sides never hold GPU memory at once)"),
       allow_missing: bool = typer.Option(False, "--allow-missing", help="pass even when more than 10 % of the "
                                          "baseline points are missing from the candidate"),
       progress: bool = typer.Option(True, "--progress/--no-progress", help="print each round as it ends")) -> None:
    """Interleaved A/B gate on one machine: exit 0 (no regression), 1 (regression), 2 (bad input or an
    internal error)."""
    from .. import ab as abmod
    from ..scenario import resolve_device
    from ..verdicts import Thresholds

    dev = None if device is None else resolve_device(device.value)
    out_dir = out_dir or Path("reports") / f"ab-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        th = Thresholds(time=threshold)
        result = abmod.run_ab(scenario, baseline, candidate, out_dir, rounds=rounds, thresholds=th, device=dev,
                              seed=seed, chunks=chunks, allow_missing=allow_missing,
                              progress=(lambda text: common.err.print(Text(text))) if progress else None)
        abmod.render(result, common.out)
    except (ValueError, FileNotFoundError, OSError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the servers were stopped and the worktrees removed; the rounds measured so far "
                   f"are in {out_dir / 'baseline'} and {out_dir / 'candidate'}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        internal_error("ab", exc)
    typer.echo(f"verdicts: {out_dir / 'ab.json'}, {out_dir / 'ab.md'}; runs: {out_dir / 'baseline'}, "
               f"{out_dir / 'candidate'}", err=True)
    raise typer.Exit(result.exit_code)

