"""The static kernel report's part of the Kernels section: per kernel configuration and arch of a run's
``kernels_static.json`` (`perfsuite.analysis.static_kernels`), its compile status, registers, stack and
spills, shared memory, occupancy and its limiter, tensor cores, the bytes-in-flight bandwidth bound, and
the measured profile entries of the same kernel function when the run has profiles.

May import: perfsuite.analysis, .blocks.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .. import analysis as A
from .blocks import DASH, Alert, Details, Paragraph, Table, fmt_int, fmt_ms, fmt_num, fmt_pct

#: measured profile entries listed per static row
MEASURED_SHOWN = 3


def _kib(v: Any) -> str:
    return f"{float(v) / 1024:.1f} KiB" if isinstance(v, (int, float)) else DASH


def _measured_cell(entries: Any) -> str:
    """``neuron/backend/mode precision T=…: share of self time, self time over calls`` per profiled point
    whose kernel summary names this kernel."""
    if not isinstance(entries, list) or not entries:
        return DASH
    cells = []
    for e in entries[:MEASURED_SHOWN]:
        self_ms = e["self_us"] / 1e3 if isinstance(e.get("self_us"), (int, float)) else None
        cells.append(f"{e['neuron']}/{e['backend']}/{e['mode']} {e['precision']} T={fmt_int(e['seq_len'])}: "
                     f"{fmt_pct(e.get('share'))}, {fmt_ms(self_ms)} over {fmt_int(e.get('calls'))} calls")
    more = len(entries) - MEASURED_SHOWN
    return "; ".join(cells) + (f"; +{more} more" if more > 0 else "")


def _row(r: pd.Series, several: bool) -> list[str]:
    head = ([str(r["run"])] if several else []) + [str(r["arch"]), str(r["dtype"]), str(r["case"]),
                                                   str(r["kernel"]), r["tile"] or DASH]
    if not r["compiled"]:
        return head + [f"error: {r['error'] or 'not compiled'}"] + [DASH] * 7 + [_measured_cell(r["measured"])]
    spills = f"{fmt_int(r['spill_store_bytes'])}/{fmt_int(r['spill_load_bytes'])}"
    shared = str(int(r["shared_bytes"])) + ("" if r["fits"] else " (does not fit: "
                                            + "; ".join(map(str, r["fit_problems"])) + ")")
    tc = ("yes" if r["tensor_cores"] else "no") if r["has_dot"] else DASH
    if r["streaming"]:
        flight = f"{_kib(r['bytes_in_flight_per_sm'])} of {_kib(r['little_bytes_per_sm'])}"
        bound = fmt_num(r["bandwidth_bound_gbs"], 4)
    else:
        flight = bound = DASH
    return head + ["ok", str(int(r["registers"])), f"{int(r['stack_bytes'])} ({spills})", shared,
                   f"{fmt_pct(r['occupancy'])} ({r['occupancy_limit']})", tc, flight, bound,
                   _measured_cell(r["measured"])]


def static_kernel_blocks(an: A.Analysis) -> list[Any]:
    """The blocks of the static report: unreadable files (with the reason), one line per file read, the
    table of configurations beside the measured kernels, the missed targets collapsed."""
    files, rows = an.static_files, an.static
    if files.empty:
        where = "this run folder" if len(an.runs) == 1 else "these run folders"
        return [Paragraph(f"{DASH} no static kernel report in {where}. Write one, on a CPU or a GPU machine, with "
                          "`perfsuite kernels --json RUN_DIR/kernels_static.json` (scripts/gpu_session.sh does it "
                          "for the GPU it runs on), then rebuild the report.")]
    blocks: list[Any] = []
    several = len(an.runs) > 1
    fails: list[str] = []
    for _, f in files.iterrows():
        if isinstance(f["reason"], str):
            blocks.append(Alert(f"{f['run']}: the static kernel report is not shown: {f['reason']}."))
            continue
        blocks.append(Paragraph(
            f"{f['run']}: static kernel report of Triton {f['triton'] or DASH} for {', '.join(f['arches']) or DASH}, "
            f"{f['configs']} configuration(s), {len(f['failures'])} missed target(s). It is read from the compiled "
            "code (`perfsuite kernels`, no GPU needed) and the arch's published limits; no speed in it is measured."))
        fails += [(f"{f['run']}: " if several else "") + x for x in f["failures"]]
    if rows.empty:
        return blocks
    sort = (["run"] if several else []) + ["arch", "dtype", "case", "kernel"]
    runs = {r.label: i for i, r in enumerate(an.runs)}
    rows = rows.sort_values(sort, key=lambda c: c.map(runs) if c.name == "run" else c, kind="stable")
    table_rows = [_row(r, several) for _, r in rows.iterrows()]
    notes = [
        "stack (spill st/ld): the stack frame per thread in bytes, with the spill stores/loads ptxas reports.",
        "occupancy: resident warps ÷ the arch's maximum, from registers, shared memory and warps; the limiter "
        "in brackets.",
        f"tensor cores: whether the SASS of a kernel with a `tl.dot` has tensor-core instructions; {DASH}: no "
        "`tl.dot`.",
        "in flight/SM: global-load bytes in flight per SM of a streaming kernel, of what Little's law needs to "
        "sustain the arch's peak bandwidth; bound: the bandwidth that implies (GB/s). Both assume the "
        "arch's GPU and DRAM latency named in docs/kernels.md, not this run's GPU.",
        f"measured: this run's profiled points whose kernel summary names the same kernel function (share of the "
        f"trace's self time, self time, calls); {DASH}: no profile of this run lists it.",
    ]
    blocks.append(Table(
        (["run"] if several else []) + ["arch", "dtype", "case", "kernel", "tile", "compile", "reg",
                                        "stack B (spill st/ld)", "smem B", "occupancy (limit)", "tensor cores",
                                        "in flight/SM", "bound GB/s", "measured"],
        table_rows, caption="Static kernel report per configuration and arch, beside the measured kernels",
        notes=notes))
    if fails:
        blocks.append(Details(f"Missed static targets: {len(fails)}", [Paragraph("; ".join(fails))]))
    return blocks
