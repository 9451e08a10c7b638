"""``perfsuite run``: measure every point of a scenario (local or Ray executor), or list them with
``--dry-run`` (predicted memory, what the runner would do with each point).

May import perfsuite.cli.common and any perfsuite module below the CLI (runner, executors, scenario,
summary, measure, workloads); nothing imports this module but the ``perfsuite.cli`` package.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from . import common
from .common import (
    _NO_PLUGINS_HELP,
    EXIT_INTERRUPTED,
    Device,
    ExecutorName,
    _build_report,
    _default_out,
    _load,
    _unsupported_here,
    app,
    fail,
    os_error_message,
)


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
    from .. import runner
    from ..summary import SUMMARY_FILE, summary_table

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
        from ..scenario import resolve_device

        options = _run_options(device, shard, profile, roofline, report, progress) + ray_args
        result = runner.run_points(points, out_dir, resume=resume, shard=shard_t, progress=progress, console=common.err,
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
    common.out.print(summary_table(result.rows))
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
    from ..executors.ray import RayExecutor, RayOptions

    return RayExecutor(RayOptions(address=address, num_gpus=num_gpus, gpus_per_point=gpus_per_point,
                                  allow_mixed=allow_mixed))


def _command(scenario: Path, args: list[str]) -> str:
    """``perfsuite run SCENARIO ARGS`` as one shell-quoted line (env.json ``command`` and ``reproduce``)."""
    return shlex.join(["perfsuite", "run", str(scenario), *args])


def _dry_run(sc, points, device: str | None, extrapolation: dict | None) -> None:
    """List the points with their analytic memory lower bound and what the runner would do with each;
    ``extrapolation``: the block this shard would run (only counted: its cost is training, not memory)."""
    import torch

    from ..measure.memory import device_memory_bytes, host_memory
    from ..runner import plan_point, plan_summary
    from ..scenario import resolve_device

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

