"""Developer tools: ``profile`` (a torch.profiler trace per point and the backend identity check) and
``kernels`` (the static compile report of every Triton kernel configuration, no GPU needed).

May import perfsuite.cli.common and any perfsuite module below the CLI (profile, runner, kernels_static);
nothing imports this module but the ``perfsuite.cli`` package.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import common
from .common import Device, _load, app, fail


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
    from ..profile import PROFILES_FILE, point_matches, profile_points
    from ..runner import progress_bar

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
    with progress_bar(progress and common.err.is_terminal, common.err, len(points)) as advance:
        rows = profile_points(points, out_dir, steps=steps, top=top,
                              on_point=lambda row: advance(f"{row['key'].split('#')[0]}: {row['status']}"))
    table = Table("point", "status", "identity", "top kernel / op", "detail")
    for row in rows:
        blk = row["profile"] or {}
        first = (blk.get("kernels") or [{}])[0]
        table.add_row(row["key"].split("#")[0], row["status"], blk.get("identity", "-"),
                      f"{first.get('name', '-')} ({first.get('share', 0):.0%})" if first else "-",
                      blk.get("detail") or row["reason"] or "")
    common.out.print(table)
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
    from .. import kernels_static as ks

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

