"""Commands that read and print, measuring nothing: ``validate`` and ``schema`` (scenario files), ``list``
(neurons, backends, devices) and ``env`` (the environment a run records).

May import perfsuite.cli.common and any perfsuite module below the CLI (scenario, neurons, measure,
runner, compare); nothing imports this module but the ``perfsuite.cli`` package.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from . import common
from .common import _NO_PLUGINS_HELP, EXIT_USAGE, Device, ListWhat, _unsupported_here, app, fail


# ------------------------------------------------------------------------------------ validate
@app.command()
def validate(files: list[Path] = typer.Argument(..., help="scenario YAML files"),
             no_plugins: bool = typer.Option(False, "--no-plugins", help=_NO_PLUGINS_HELP)) -> None:
    """Check scenario files; exit 2 when any is invalid, with every file's problems listed."""
    from ..scenario import ScenarioError, load_scenario

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
    from ..compare import Thresholds, min_testable_samples

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
    from ..scenario.reference import json_schema_text, markdown_reference

    typer.echo(markdown_reference() if markdown else json_schema_text(), nl=False)


def _echo_extrapolation_plan(file: Path, sc, n_points: int) -> None:
    """A scenario with an extrapolation block writes rows beyond its timed points: say how many."""
    from ..runner import plan_summary

    if sc.extrapolation is not None:
        typer.echo(f"{file}: {plan_summary(n_points, sc.extrapolation)}")


# ---------------------------------------------------------------------------------------- list
@app.command("list")
def list_(what: ListWhat = typer.Argument(ListWhat.neurons, help="neurons | backends | devices")) -> None:
    """List the registered neurons, the backends (and the neurons that have each), or the devices."""
    from .. import neurons

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
    common.out.print(table)


def _yn(v: bool) -> str:
    return "yes" if v else "no"


def _devices_table() -> Table:
    import os

    import torch

    from ..measure.device import cpu_model

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
    from ..measure import device as devmod
    from ..scenario import resolve_device

    dev = resolve_device(device.value)
    try:
        from ..runner import _check_device

        _check_device(dev)
    except ValueError as exc:
        fail(str(exc))
    info = devmod.environment(dev)
    if roofline:
        info["roofline"] = devmod.roofline(dev)
    typer.echo(json.dumps(info, indent=2, default=str))

