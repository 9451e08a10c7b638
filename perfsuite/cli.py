"""The ``perfsuite`` command line (typer): run, validate, schema, list, env, merge, report, compare, ab, profile,
kernels.

Every user mistake (a bad scenario, a folder that already holds rows, a bad ``--shard``) prints one
clear message to stderr and exits with code 2, never a traceback. One small function per command.
"""
from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    from .scenario import ScenarioError, load_scenario

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

    from .workloads import unsupported_reason

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


# ----------------------------------------------------------------------------------------- run
@app.command()
def run(scenario: Path = typer.Argument(..., help="scenario YAML file"),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="run folder (default reports/<scenario>-<timestamp>/)"),
        device: Optional[Device] = typer.Option(None, help="auto|cpu|cuda (default: the scenario's device)"),
        resume: bool = typer.Option(False, "--resume", help="finish the run in --out: skip points already in its rows"),
        shard: Optional[str] = typer.Option(None, help="run shard i of n ('i/n', 1 <= i <= n) of the sweep"),
        dry_run: bool = typer.Option(False, "--dry-run", help="list the points with predicted memory; run nothing"),
        report: bool = typer.Option(True, "--report/--no-report", help="build the report at the end"),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="draw a progress bar"),
        roofline: bool = typer.Option(True, "--roofline/--no-roofline",
                                      help="measure copy bandwidth and matmul FLOP/s at run start"),
        profile: bool = typer.Option(False, "--profile", help="after timing each point, record a torch.profiler "
                                     "trace into <out>/traces/ and put its kernel summary and backend identity "
                                     "in the row"),
        no_plugins: bool = typer.Option(False, "--no-plugins", help=_NO_PLUGINS_HELP),
        executor: ExecutorName = typer.Option(ExecutorName.local, help="where points run: local (one worker on "
                                              "this machine) or ray (every device of a Ray cluster; "
                                              "pip install 'perfsuite[ray]')"),
        address: Optional[str] = typer.Option(None, help="ray: 'local' (start a Ray instance on this machine), "
                                              "'auto' (join the running cluster), HOST:PORT (a head node) or "
                                              "'ray://HOST:PORT'; default: join a running cluster, else start a "
                                              "local one"),
        num_gpus: Optional[int] = typer.Option(None, "--num-gpus", help="ray with --address local: GPUs the "
                                               "local instance declares (default: what Ray detects)"),
        gpus_per_point: int = typer.Option(1, "--gpus-per-point", help="ray: whole GPUs each point reserves"),
        allow_mixed: bool = typer.Option(False, "--allow-mixed", help="ray: run on a cluster with different GPU "
                                         "models (rows keep their own GPU)")) -> None:
    """Measure every point of SCENARIO; rows go to <out>/results.jsonl one by one."""
    from . import runner
    from .summary import SUMMARY_FILE, summary_table

    sc = _load(scenario, plugins=not no_plugins)
    try:
        shard_t = runner.parse_shard(shard) if shard is not None else None
        points = sc.points(device.value if device else None)
        ray_args = _ray_args(executor, address, num_gpus, gpus_per_point, allow_mixed)
    except ValueError as exc:
        fail(str(exc))
    if dry_run:
        return _dry_run(sc, runner.select_shard(points, shard_t), device.value if device else None,
                        runner.shard_extrapolation(sc.extrapolation, shard_t))
    if resume and out_dir is None:
        fail("--resume needs --out: the folder of the run to finish")
    out_dir = out_dir or _default_out(sc.name)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            fail(f"--out {out_dir} is a file; expected a run folder (new, or one to --resume)")
    except OSError as exc:  # e.g. a name too long for the file system
        fail(os_error_message(exc, out_dir, None))
    for line in _unsupported_here(runner.select_shard(points, shard_t)):
        typer.echo(f"note: {line}", err=True)
    try:
        from .scenario import resolve_device

        options = _run_options(device, shard, profile, roofline, report, progress) + ray_args
        result = runner.run_points(points, out_dir, resume=resume, shard=shard_t, progress=progress, console=err,
                                   roofline=roofline, extrapolation=sc.extrapolation, scenario=sc.name,
                                   device=resolve_device(device.value if device else sc.device),
                                   command=_command(scenario, ["--out", str(out_dir)] + ["--resume"] * resume + options),
                                   reproduce=_command(scenario, options), profile=profile,
                                   executor=_executor(executor, address, num_gpus, gpus_per_point, allow_mixed))
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:  # read-only folder, full disk, name too long: the rows written so far are kept
        fail(os_error_message(exc, out_dir, f"perfsuite run {scenario} --out {out_dir} --resume"))
    except RuntimeError as exc:  # the worker could not even record the environment
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    out.print(summary_table(result.rows))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    typer.echo(f"{len(result.rows)} rows ({counts}): {result.new_rows} new, {result.resumed} already done. "
               f"Rows: {out_dir / 'results.jsonl'}; summary: {out_dir / SUMMARY_FILE}")
    if result.interrupted:
        typer.echo(f"interrupted: finished rows are kept; finish with: perfsuite run {scenario} --out {out_dir} "
                   "--resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if report:
        try:
            _build_report([out_dir], out_dir)
        except Exception as exc:  # the rows are safe; a report can be rebuilt with `perfsuite report`
            typer.echo(f"report failed ({type(exc).__name__}: {exc}); rebuild it with: perfsuite report {out_dir}",
                       err=True)
            raise typer.Exit(1) from None


def _run_options(device, shard: str | None, profile: bool, roofline: bool, report: bool, progress: bool) -> list[str]:
    """The options of `run` other than --out, --resume and --dry-run, as the user gave them."""
    args = []
    if device is not None:
        args += ["--device", device.value]
    if shard is not None:
        args += ["--shard", shard]
    args += ["--no-roofline"] * (not roofline) + ["--no-report"] * (not report) + ["--no-progress"] * (not progress)
    return args + ["--profile"] * profile


def _ray_args(executor: ExecutorName, address: str | None, num_gpus: int | None, gpus_per_point: int,
              allow_mixed: bool) -> list[str]:
    """The executor options as the user gave them (for env.json ``command``); ValueError for Ray options
    without ``--executor ray``."""
    given = [name for name, on in (("--address", address is not None), ("--num-gpus", num_gpus is not None),
                                   ("--gpus-per-point", gpus_per_point != 1), ("--allow-mixed", allow_mixed)) if on]
    if executor is ExecutorName.local:
        if given:
            raise ValueError(f"{', '.join(given)}: Ray options, they apply only with --executor ray; expected "
                             "--executor ray or none of them")
        return []
    args = ["--executor", "ray"] + ["--address", address] * (address is not None)
    args += ["--num-gpus", str(num_gpus)] * (num_gpus is not None)
    return args + ["--gpus-per-point", str(gpus_per_point)] * (gpus_per_point != 1) + ["--allow-mixed"] * allow_mixed


def _executor(executor: ExecutorName, address: str | None, num_gpus: int | None, gpus_per_point: int,
              allow_mixed: bool):
    """None (the runner's default local executor) or a `RayExecutor` (ValueError: bad option, no ray)."""
    if executor is ExecutorName.local:
        return None
    from .executors.ray import RayExecutor, RayOptions

    return RayExecutor(RayOptions(address=address, num_gpus=num_gpus, gpus_per_point=gpus_per_point,
                                  allow_mixed=allow_mixed))


def _command(scenario: Path, args: list[str]) -> str:
    """``perfsuite run SCENARIO ARGS`` as one shell-quoted line (env.json ``command`` and ``reproduce``)."""
    return shlex.join(["perfsuite", "run", str(scenario), *args])


def _dry_run(sc, points, device: str | None, extrapolation: dict | None) -> None:
    """List the points with their analytic memory lower bound and what the runner would do with each;
    ``extrapolation``: the block this shard would run (only counted: its cost is training, not memory)."""
    import torch

    from .measure.memory import device_memory_bytes, host_memory
    from .runner import plan_point, plan_summary
    from .scenario import resolve_device

    dev = points[0].device if points else resolve_device(device or sc.device)
    if dev == "cuda" and not torch.cuda.is_available():
        # a dry run plans a GPU sweep from any machine: the points are listed, not checked against a memory
        dev_bytes, memory = None, "device memory unknown (no CUDA device here)"
    else:
        try:
            if dev == "cpu":  # the smaller of the host's available memory and the cgroup's limit
                dev_bytes, source = host_memory()
                memory = f"memory {_human_bytes(dev_bytes)} ({source})"
            else:
                dev_bytes = device_memory_bytes(dev)
                memory = f"memory {_human_bytes(dev_bytes)}"
        except Exception as exc:  # the listing is still useful without the device's size
            dev_bytes, memory = None, f"device memory unknown ({type(exc).__name__}: {exc})"
    if dev_bytes is None:
        memory += ", so only limits.memory_gb can skip a point"
    # plain lines, not a table: the reasons are long and the listing is meant to be grepped
    typer.echo(f"{sc.name}: {plan_summary(len(points), extrapolation)} on {dev}; {memory}; "
               "predicted memory is an analytic lower bound")
    for i, p in enumerate(points):
        plan = plan_point(p, dev_bytes)
        pred = f">= {_human_bytes(plan.predicted_bytes)}" if plan.predicted_bytes is not None else "-"
        verdict = "run" if plan.status is None else f"{plan.status}: {plan.reason}"
        typer.echo(f"{i + 1:4d}  {p.neuron}/{p.backend}/{p.mode}/{p.precision} T={p.seq_len} B={p.batch} "
                   f"F={p.features}  {pred}  {verdict}")
    excluded = sc.excluded(device)
    if excluded:
        typer.echo(f"{len(excluded)} points excluded by rules (first: {excluded[0][0].key}: {excluded[0][1]})")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover


def _build_report(run_dirs: list[Path], out_dir: Path, progress: bool = False) -> None:
    """Build the report; ``progress`` draws a rich progress bar on stderr when it is a terminal."""
    try:
        from .report import build_report
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


# ------------------------------------------------------------------------------------ validate
@app.command()
def validate(files: list[Path] = typer.Argument(..., help="scenario YAML files"),
             no_plugins: bool = typer.Option(False, "--no-plugins", help=_NO_PLUGINS_HELP)) -> None:
    """Check scenario files; exit 2 when any is invalid, with every file's problems listed."""
    from .scenario import ScenarioError, load_scenario

    bad = 0
    for file in files:
        try:
            sc = load_scenario(file, plugins=not no_plugins)
        except ScenarioError as exc:
            typer.echo(str(exc), err=True)
            bad += 1
            continue
        _validated(file, sc)
    if len(files) > 1:
        typer.echo(f"{len(files) - bad} of {len(files)} files valid" + (f"; {bad} invalid" if bad else ""))
    if bad:
        raise typer.Exit(EXIT_USAGE)


def _validated(file: Path, sc) -> None:
    """What `validate` says about a valid file: its points, what will not run here, warnings."""
    points = sc.points()
    typer.echo(f"{file}: valid; {len(points)} points ({len(sc.excluded())} excluded by rules)")
    for line in _unsupported_here(points):
        typer.echo(f"{file}: {line}")
    if sc.plugins:
        typer.echo(f"{file}: note: runs plugin code: {', '.join(sc.plugins)}", err=True)
    from .compare import Thresholds, min_testable_samples

    need = min_testable_samples(Thresholds().alpha)
    if "time" in sc.metrics and sc.timing.min_reps < need:
        typer.echo(f"warning: {file}: timing.min_reps={sc.timing.min_reps}: points may get fewer than {need} time "
                   f"samples, too few for the regression gate's U test to reach alpha={Thresholds().alpha:g} "
                   f"(`perfsuite compare` lists them as untestable); set timing.min_reps >= {need} for runs "
                   f"meant for the gate", err=True)
    _echo_extrapolation_plan(file, sc, len(points))


# -------------------------------------------------------------------------------------- schema
@app.command()
def schema(markdown: bool = typer.Option(False, "--markdown", help="print the key reference of "
                                         "docs/scenarios.md instead")) -> None:
    """Print the JSON Schema of scenario files (draft 2020-12; the repository ships it as
    scenario.schema.json for editors' YAML language servers)."""
    from .scenario.reference import json_schema_text, markdown_reference

    typer.echo(markdown_reference() if markdown else json_schema_text(), nl=False)


def _echo_extrapolation_plan(file: Path, sc, n_points: int) -> None:
    """A scenario with an extrapolation block writes rows beyond its timed points: say how many."""
    from .runner import plan_summary

    if sc.extrapolation is not None:
        typer.echo(f"{file}: {plan_summary(n_points, sc.extrapolation)}")


# ---------------------------------------------------------------------------------------- list
@app.command("list")
def list_(what: ListWhat = typer.Argument(ListWhat.neurons, help="neurons | backends | devices")) -> None:
    """List the registered neurons, the backends (and the neurons that have each), or the devices."""
    from . import neurons

    if what is ListWhat.neurons:
        table = Table("neuron", "family", "causal", "serial", "T-bound", "integer", "summary")
        for n in neurons.names():
            s = neurons.info(n)
            table.add_row(n, s.family, _yn(s.causal), _yn(s.serial_inference), _yn(s.fixed_length),
                          _yn(s.integer_spikes), s.summary)
    elif what is ListWhat.backends:
        table = Table("backend", "neurons with it on this machine")
        have = {n: neurons.backends_of(n) for n in neurons.names()}
        for b in neurons.backend_names():
            table.add_row(b, ", ".join(n for n, bs in have.items() if b in bs) or "none available on this machine")
    else:
        table = _devices_table()
    out.print(table)


def _yn(v: bool) -> str:
    return "yes" if v else "no"


def _devices_table() -> Table:
    import os

    import torch

    from .measure.device import cpu_model

    table = Table("device", "name", "memory GiB")
    table.add_row("cpu", f"{cpu_model()} ({os.cpu_count()} cores)", "")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            table.add_row(f"cuda:{i}", p.name, f"{p.total_memory / 1024 ** 3:.1f}")
    else:
        table.add_row("cuda", "none visible to torch", "")
    return table


# ----------------------------------------------------------------------------------------- env
@app.command()
def env(device: Device = typer.Option(Device.auto, help="auto|cpu|cuda"),
        roofline: bool = typer.Option(False, "--roofline", help="also measure copy bandwidth and matmul FLOP/s")) -> None:
    """Print the environment a run records in env.json (as JSON)."""
    from .measure import device as devmod
    from .scenario import resolve_device

    dev = resolve_device(device.value)
    try:
        from .runner import _check_device

        _check_device(dev)
    except ValueError as exc:
        fail(str(exc))
    info = devmod.environment(dev)
    if roofline:
        info["roofline"] = devmod.roofline(dev)
    typer.echo(json.dumps(info, indent=2, default=str))


# --------------------------------------------------------------------------------------- merge
@app.command()
def merge(out_dir: Path = typer.Argument(..., help="new folder for the merged run"),
          parts: list[Path] = typer.Argument(..., help="run folders (shards) to join"),
          force: bool = typer.Option(False, "--force", help="merge parts from different environments or commits, "
                                     "or holding different rows for one key (an ok row wins, else the last part's)")) -> None:
    """Join shard run folders of one run into one (rows deduplicated by key); parts from different
    environments, or with different rows for one key, are refused unless --force."""
    from .merge import merge_runs
    from .results import ENV_FILE

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
    from . import compare as cmp
    from . import compare_output

    try:
        th = cmp.Thresholds(time=threshold, alpha=alpha, memory=memory_threshold, firing_rate=firing_rate_tol,
                            agreement=agreement_tol, cpu_memory=gate_cpu_memory)
        result = cmp.compare_runs(baseline, candidate, thresholds=th, noise_floor=noise_floor, force=force,
                                  fail_on_missing=fail_on_missing, fail_on_untestable=fail_on_untestable,
                                  allow_missing=allow_missing)
        if rerun is not None and result.flagged_keys():
            from .rerun import confirm_by_rerun

            rerun_dir = rerun_out or candidate.with_name(f"{candidate.name}-rerun-{datetime.now():%Y%m%d-%H%M%S}")
            typer.echo(f"re-measuring {len(result.flagged_keys())} flagged point(s) into {rerun_dir}", err=True)
            result = confirm_by_rerun(result, baseline, rerun, rerun_dir, console=err)
        compare_output.render_table(result, out, show_all=show_all)
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
       allow_missing: bool = typer.Option(False, "--allow-missing", help="pass even when more than 10 % of the "
                                          "baseline points are missing from the candidate"),
       progress: bool = typer.Option(True, "--progress/--no-progress", help="print each round as it ends")) -> None:
    """Interleaved A/B gate on one machine: exit 0 (no regression), 1 (regression), 2 (bad input or an
    internal error)."""
    from . import ab as abmod
    from .verdicts import Thresholds

    dev = None if device is None else ("cuda" if device.value == "auto" and _has_cuda() else
                                       "cpu" if device.value == "auto" else device.value)
    out_dir = out_dir or Path("reports") / f"ab-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        th = Thresholds(time=threshold)
        result = abmod.run_ab(scenario, baseline, candidate, out_dir, rounds=rounds, thresholds=th, device=dev,
                              seed=seed, allow_missing=allow_missing,
                              progress=(lambda text: err.print(Text(text))) if progress else None)
        abmod.render(result, out)
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


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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


# ------------------------------------------------------------------------------------- profile
@app.command("profile")
def profile_(scenario: Path = typer.Argument(..., help="scenario YAML file"),
             out_dir: Optional[Path] = typer.Option(None, "--out", help="folder (default reports/<scenario>-profile-<timestamp>/)"),
             device: Optional[Device] = typer.Option(None, help="auto|cpu|cuda (default: the scenario's device)"),
             match: Optional[str] = typer.Option(None, help="profile only the points whose key "
                                                 "(neuron/backend/mode/precision/T/B/F/workload) holds these "
                                                 "'/'-separated segments in a row, each matched whole, shell "
                                                 "wildcards inside a segment: 'psn' (not masked_psn), "
                                                 "'psn/*/train', 'train/bf16'"),
             steps: int = typer.Option(3, min=1, help="profiled calls per point (after one warm-up call)"),
             top: int = typer.Option(10, min=1, help="kernels listed per point"),
             progress: bool = typer.Option(True, "--progress/--no-progress",
                                           help="draw a progress bar (only when stderr is a terminal)")) -> None:
    """Record a torch.profiler trace per point (traces/, also a TensorBoard logdir) and check that each
    backend ran what it claims; exit 1 on an identity mismatch."""
    from .profile import PROFILES_FILE, point_matches, profile_points
    from .runner import _progress

    sc = _load(scenario)
    try:
        points = [p for p in sc.points(device.value if device else None) if match is None or point_matches(match, p.key)]
    except ValueError as exc:
        fail(str(exc))
    if not points:
        fail(f"no point of {scenario} matches --match {match!r} (segments of neuron/backend/mode/precision/T/B/F/"
             "workload, e.g. 'psn' or 'psn/*/train')")
    out_dir = out_dir or Path("reports") / f"{sc.name}-profile-{datetime.now():%Y%m%d-%H%M%S}"
    if (out_dir / PROFILES_FILE).exists():
        fail(f"{out_dir} already holds {PROFILES_FILE}; choose another --out folder")
    with _progress(progress and err.is_terminal, err, len(points)) as advance:
        rows = profile_points(points, out_dir, steps=steps, top=top,
                              on_point=lambda row: advance(f"{row['key'].split('#')[0]}: {row['status']}"))
    table = Table("point", "status", "identity", "top kernel / op", "detail")
    for row in rows:
        blk = row["profile"] or {}
        first = (blk.get("kernels") or [{}])[0]
        table.add_row(row["key"].split("#")[0], row["status"], blk.get("identity", "-"),
                      f"{first.get('name', '-')} ({first.get('share', 0):.0%})" if first else "-",
                      blk.get("detail") or row["reason"] or "")
    out.print(table)
    typer.echo(f"traces: {out_dir / 'traces'} (Chrome/Perfetto files; also a TensorBoard logdir); "
              f"rows: {out_dir / PROFILES_FILE}")
    if any((r.get("profile") or {}).get("identity") == "mismatch" for r in rows):
        raise typer.Exit(1)


@app.command("kernels")
def kernels_(arch: list[str] = typer.Option(["sm_90a", "sm_80"], "--arch", help="sm_90a | sm_80 | sm_100a (repeat)"),
             dtype: list[str] = typer.Option(["bf16", "fp32"], "--dtype", help="bf16 | fp32 | fp16 (repeat)"),
             full: bool = typer.Option(False, "--full", help="also the parameter variants (more kernels)"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="write the report as JSON here"),
             markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="write the report as Markdown here"),
             check: bool = typer.Option(False, "--check", help="exit 1 when a target is missed")) -> None:
    """Compile every Triton kernel configuration the host code launches, for each arch, without a GPU, and
    report registers, stack/spills, shared memory, occupancy, tensor cores and bytes in flight."""
    from . import kernels_static as ks

    for a in arch:
        if a not in ks.ARCHES:
            fail(f"--arch {a!r} is not known; expected one of {list(ks.ARCHES)}")
    for d in dtype:
        if d not in ("bf16", "fp32", "fp16"):
            fail(f"--dtype {d!r} is not known; expected one of ['bf16', 'fp32', 'fp16']")
    for p in (json_out, markdown_out):
        if p is not None and p.parent and not p.parent.is_dir():
            fail(f"{p}: folder {p.parent} does not exist")
    try:
        import triton  # noqa: F401
    except ImportError:
        fail("perfsuite kernels needs triton installed (it compiles the kernels); pip install triton")
    try:
        doc = ks.report(arch, dtype, ks.DEFAULT_CASES + (ks.EXTRA_CASES if full else []))
    except ks.StaticError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_out is not None:
        json_out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    text = ks.markdown(doc)
    if markdown_out is not None:
        markdown_out.write_text(text)
    typer.echo(text)
    if check and doc["summary"]["failures"]:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``perfsuite`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
