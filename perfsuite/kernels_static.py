"""Static soundness report of perfsuite's Triton kernels, for GPUs this machine does not have.

For every kernel configuration the host code launches on a CUDA device (found by running the neurons'
triton backend on ``meta`` tensors in a clean subprocess, `perfsuite.kernels_compile`), and for each
arch, it records: compile ok or the error; registers, stack frame, spill stores/loads, static and dynamic
shared memory; whether the block fits the arch's limits; the theoretical occupancy and what limits it;
whether a kernel with a ``tl.dot`` became tensor-core instructions; and for streaming (no ``tl.dot``)
kernels the bytes of global loads in flight per SM against Little's law, with the bandwidth bound that
implies. Everything here is read from the compiled code and the arch's published limits: no speed is
measured (that needs a GPU run, `scripts/gpu_session.sh`).

JSON format (``perfsuite kernels --json F``; stable, read by the report's "Kernels" section):
``{"format": "perfsuite-kernels/1", "triton": str, "cases": [...], "arches": {name: ARCH},
"rows": [ROW, ...], "summary": {...}}`` with ARCH the limits and Little's-law figures of `ARCHES`
(``little_bytes_per_sm`` included) and ROW one configuration on one arch (fields in docs/kernels.md).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT = "perfsuite-kernels/1"
#: the file name of this report in a run folder (``perfsuite kernels --json RUN/kernels_static.json``,
#: written by scripts/gpu_session.sh); `perfsuite report` shows it in the Kernels section
REPORT_FILE = "kernels_static.json"

#: DRAM latency under load assumed by the Little's-law figures (kernel_anchors §4.4: 0.4-0.8 µs)
LATENCY_NS = 600.0


@dataclass(frozen=True)
class Arch:
    """Per-SM limits and memory figures of one GPU of the arch (the one named in ``gpu``)."""

    gpu: str
    capability: int
    sms: int
    bandwidth_gbs: float          # peak DRAM bandwidth of that GPU
    registers_per_sm: int = 65536
    max_registers_per_thread: int = 255
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    max_threads_per_block: int = 1024
    shared_per_sm: int = 233472    # bytes usable by blocks on one SM
    shared_per_block: int = 232448  # opt-in maximum for one block
    shared_reserved_per_block: int = 1024  # the driver's per-block reservation (sm_80 and later)

    @property
    def little_bytes_per_sm(self) -> float:
        """Bytes each SM must have in flight to sustain the peak bandwidth: BW × latency ÷ SMs."""
        return self.bandwidth_gbs * 1e9 * LATENCY_NS * 1e-9 / self.sms


ARCHES = {
    "sm_80": Arch("A100 SXM4 80GB", 80, 108, 2039.0, shared_per_sm=167936, shared_per_block=166912),
    "sm_90a": Arch("H100 SXM5 80GB", 90, 132, 3350.0),
    "sm_100a": Arch("B200", 100, 148, 8000.0),
}
DTYPES = ("bf16", "fp32")
N_NEURONS = 32768


def _case(name, neuron, seq_len, **params) -> dict:
    extra = {k: params.pop(k) for k in ("allow_tf32", "dtypes") if k in params}
    return {"name": name, "neuron": neuron, "seq_len": seq_len, "neurons": N_NEURONS, **extra, "params": params}


#: the default configurations: every neuron with a Triton kernel at its default parameters, T = 16 384
#: for the scans, 4 096 for the T×T GEMMs; PSN fp32 also with TF32 allowed (the host follows torch's flag)
DEFAULT_CASES = [
    _case("lif", "lif", 16384), _case("plif", "plif", 16384),
    _case("psn", "psn", 4096), _case("psn_tf32", "psn", 4096, allow_tf32=True, dtypes=["fp32"]),
    _case("masked_psn", "masked_psn", 4096, k=32), _case("sliding_psn", "sliding_psn", 16384, k=32),
    _case("dsn", "dsn", 16384, features=512), _case("psu", "psu", 4096), _case("ipsu", "ipsu", 4096),
    _case("rpsu", "rpsu", 4096), _case("spsn", "spsn", 16384),
]
#: the full matrix adds the parameter variants that select other kernel specialisations
EXTRA_CASES = [
    _case("lif_soft", "lif", 16384, reset="soft", decay_input=False, surrogate="atan"),
    _case("dsn_k8", "dsn", 16384, features=512, k=8),
    _case("dsn_binary", "dsn", 16384, features=512, spikes="binary", surrogate="atan"),
    _case("ipsu_prob", "ipsu", 4096, variant="prob"),
    _case("masked_psn_dense", "masked_psn", 4096, k=32, lambda_=0.5),
]


def cache_dir() -> Path:
    """$PERFSUITE_CACHE/kernels, else ~/.cache/perfsuite/kernels."""
    base = os.environ.get("PERFSUITE_CACHE")
    return Path(base) / "kernels" if base else Path.home() / ".cache" / "perfsuite" / "kernels"


class StaticError(RuntimeError):
    """The compile subprocess could not run (not a kernel finding)."""


def compile_rows(arches, dtypes, cases, cache: Path | None = None, timeout: float = 3600,
                 overrides: dict | None = None, jobs: int | None = None) -> list[dict]:
    """Raw rows of `perfsuite.kernels_compile` for ``cases`` on ``arches`` × ``dtypes``, run in a clean
    environment (no TRITON_INTERPRET) so that tests running under the interpreter can call it. One
    subprocess per (arch, dtype), ``jobs`` at a time (default: the CPU count)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITON_")}
    env["TRITON_ALWAYS_COMPILE"] = "1"  # Triton's own cache would skip ptxas and its report
    env["TRITON_DEFAULT_FP_FUSION"] = os.environ.get("TRITON_DEFAULT_FP_FUSION", "1")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    pending = [(a, d) for a in arches for d in dtypes]
    jobs = max(1, jobs or os.cpu_count() or 1)
    running, done = [], {}
    try:
        _drain(pending, running, done, jobs, cases, cache, overrides, env, timeout)
    finally:
        for _, proc, _, _ in running:  # after an error: end the compiles this call started
            if proc.poll() is None:
                proc.kill()
    return [row for a in arches for d in dtypes for row in done[(a, d)]]


def _drain(pending, running, done, jobs, cases, cache, overrides, env, timeout) -> None:
    """Run the (arch, dtype) compile subprocesses of `compile_rows`, ``jobs`` at a time, into ``done``."""
    while pending or running:
        while pending and len(running) < jobs:
            a, d = pending.pop(0)
            job = {"arches": [a], "dtypes": [d], "cases": list(cases), "cache": str(cache or cache_dir()),
                   **(overrides or {})}
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            proc = subprocess.Popen([sys.executable, "-m", "perfsuite.kernels_compile"], stdin=subprocess.PIPE,
                                    stdout=out, stderr=err, env=env, text=True)
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
            running.append(((a, d), proc, out, err))
        key, proc, out, err = running[0]
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise StaticError(f"kernel compile subprocess for {key[0]} {key[1]} ran over {timeout:.0f} s") from None
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = (err.read().strip().splitlines() or ["no output"])[-1]
            raise StaticError(f"kernel compile subprocess failed (exit {proc.returncode}): {tail}")
        done[key] = [json.loads(line) for line in out.read().splitlines() if line.startswith("{")]
        running.pop(0)


def candidate_rows(arches, dtypes, cache: Path | None = None) -> list[dict]:
    """Report rows of every tuning candidate (`perfsuite.kernels.tiles`): round i compiles the default
    cases with each kernel's i-th candidate in place of its default (`perfsuite.kernels_compile`);
    each row carries ``candidate`` (the kernel's tile entry) and ``round``."""
    raw = compile_rows(arches, dtypes, DEFAULT_CASES, cache, overrides={"candidates": True})
    return [{**analyse(r), "candidate": r["candidate"], "round": r["round"]} for r in raw if "host_error" not in r]


def occupancy(arch: Arch, registers: int, shared_bytes: int, num_warps: int) -> tuple[int, float, str]:
    """(resident blocks per SM, theoretical occupancy = resident warps ÷ max warps, the limiting resource).
    Registers are allocated per warp in units of 256; each block also costs the driver's reservation of
    shared memory."""
    regs_per_warp = math.ceil(max(registers, 1) * 32 / 256) * 256
    limits = {  # on a tie the first one is named
        "warps": arch.max_warps_per_sm // num_warps,
        "blocks": arch.max_blocks_per_sm,
        "registers": (arch.registers_per_sm // regs_per_warp) // num_warps,
        "shared": arch.shared_per_sm // (shared_bytes + arch.shared_reserved_per_block),
    }
    what = min(limits, key=lambda k: limits[k])
    blocks = limits[what]
    return blocks, blocks * num_warps / arch.max_warps_per_sm, what


def analyse(raw: dict) -> dict:
    """One report row from a raw compile row: limits, occupancy, tensor cores, bytes in flight, targets."""
    arch = ARCHES[raw["arch"]]
    res = raw.get("result") or {}
    row = {k: raw[k] for k in ("arch", "dtype", "case", "cases", "kernel", "module", "constexprs", "num_warps",
                               "num_stages", "grid", "key") if k in raw}
    row["compiled"] = bool(res.get("compiled"))
    if not row["compiled"]:
        row["error"] = res.get("error", "not compiled")
        row["targets"] = {"compiles": False}
        return row
    for k in ("registers", "stack_bytes", "spill_store_bytes", "spill_load_bytes", "static_shared_bytes",
              "dynamic_shared_bytes", "has_dot", "tensor_core_instructions"):
        row[k] = res.get(k)
    warps = int(res.get("num_warps", raw["num_warps"]))
    shared = res["static_shared_bytes"] + res["dynamic_shared_bytes"]
    row["shared_bytes"] = shared
    problems = []
    if shared > arch.shared_per_block:
        problems.append(f"shared memory {shared} B > {arch.shared_per_block} B per block")
    if res["registers"] > arch.max_registers_per_thread:
        problems.append(f"{res['registers']} registers > {arch.max_registers_per_thread}")
    if warps * 32 > arch.max_threads_per_block:
        problems.append(f"{warps * 32} threads > {arch.max_threads_per_block}")
    row["fits"], row["fit_problems"] = not problems, problems
    blocks, occ, limit = occupancy(arch, res["registers"], shared, warps) if not problems else (0, 0.0, "does not fit")
    row.update(blocks_per_sm=blocks, occupancy=round(occ, 4), occupancy_limit=limit)
    row["tensor_cores"] = res["tensor_core_instructions"] > 0
    row["streaming"] = not res["has_dot"]
    per_thread = res["loop_load_bytes_per_thread"]
    programs = math.prod(raw.get("grid") or [1])
    resident = min(programs, blocks * arch.sms)  # the case's grid may not fill every SM
    in_flight = resident * warps * 32 * per_thread  # the whole GPU
    row.update(load_bytes_in_flight_per_thread=per_thread, programs=programs, resident_programs=resident,
               bytes_in_flight_per_sm=round(in_flight / arch.sms), little_bytes_per_sm=round(arch.little_bytes_per_sm),
               bandwidth_bound_gbs=round(min(arch.bandwidth_gbs, in_flight / LATENCY_NS), 1))
    row["targets"] = targets(row)
    return row


def targets(row: dict) -> dict:
    """The issue #12 targets one row meets (True) or misses (False); None where one does not apply."""
    half_or_tf32 = row["dtype"] != "fp32" or row.get("case", "").endswith("_tf32")
    return {
        "compiles": row["compiled"],
        "no_stack": row["stack_bytes"] == 0 and not row.get("spill_store_bytes"),
        "launchable": row["fits"],
        "occupancy_or_little": (row["occupancy"] >= 0.25 or row["bytes_in_flight_per_sm"] >= row["little_bytes_per_sm"])
        if row["streaming"] else None,
        "tensor_cores": row["tensor_cores"] if row["has_dot"] and half_or_tf32 else None,
    }


def failures(rows: list[dict]) -> list[str]:
    """One line per missed target."""
    out = []
    for r in rows:
        for name, ok in r.get("targets", {}).items():
            if ok is False:
                what = r.get("error") or ", ".join(r.get("fit_problems") or []) or _short(r)
                out.append(f"{r['arch']} {r['dtype']} {r['case']} {r['kernel']}: {name} ({what})")
    return out


def _short(r: dict) -> str:
    return (f"reg {r.get('registers')}, stack {r.get('stack_bytes')} B, occupancy {r.get('occupancy', 0):.0%}, "
            f"in flight {r.get('bytes_in_flight_per_sm', 0)} B/SM")


def report(arches=("sm_90a", "sm_80"), dtypes=DTYPES, cases=None, cache: Path | None = None) -> dict:
    """The static report (the JSON document described in the module docstring)."""
    import triton

    for a in arches:
        if a not in ARCHES:
            raise ValueError(f"unknown arch {a!r}; expected one of {list(ARCHES)}")
    for d in dtypes:
        if d not in DTYPES + ("fp16",):
            raise ValueError(f"unknown dtype {d!r}; expected one of {list(DTYPES) + ['fp16']}")
    cases = DEFAULT_CASES if cases is None else cases
    raw = compile_rows(arches, dtypes, cases, cache)
    host_errors = [r for r in raw if "host_error" in r]
    rows = [analyse(r) for r in raw if "host_error" not in r]
    return {
        "format": FORMAT, "triton": triton.__version__, "latency_ns": LATENCY_NS,
        "cases": cases, "arches": {a: {**asdict(ARCHES[a]), "little_bytes_per_sm": round(ARCHES[a].little_bytes_per_sm)}
                                   for a in arches},
        "rows": rows, "host_errors": host_errors,
        "summary": {"configs": len(rows), "compiled": sum(r["compiled"] for r in rows),
                    "failures": failures(rows) + [f"{h['arch']} {h['dtype']} {h['case']}: host path failed "
                                                  f"({h['host_error']})" for h in host_errors]},
    }


def markdown(doc: dict) -> str:
    """The report as Markdown: the arch figures, one table row per configuration, the missed targets."""
    from .text import md_cell, md_code, md_text

    lines = ["# Static kernel report", "",
             f"Triton {md_text(doc['triton'])}; compiled for the arches below without a GPU. Little's law: bytes "
             f"in flight needed per SM = bandwidth × {doc['latency_ns']:.0f} ns ÷ SMs. \"in flight\" = the global "
             "loads one thread issues in the kernel's main loop × the threads resident at once (the case's "
             "grid at N = 32 768, capped by occupancy), spread over the SMs; \"bound\" = that ÷ latency.", "",
             "| arch | GPU assumed | SMs | bandwidth GB/s | needed in flight per SM |", "|---|---|---|---|---|"]
    for name, a in doc["arches"].items():
        lines.append(f"| {name} | {md_cell(a['gpu'])} | {a['sms']} | {a['bandwidth_gbs']:.0f} | "
                     f"{_kib(a['little_bytes_per_sm'])} |")
    lines += ["", "| arch | dtype | case | kernel | tile | reg | stack | spill st/ld B | smem B | occupancy (limit) | "
              "tensor cores | in flight/SM | bound GB/s |", "|" + "---|" * 13]
    for r in doc["rows"]:
        c = r.get("constexprs", {})
        tile = " ".join(f"{k}={v}" for k, v in c.items() if k in ("BLOCK", "BT", "BM", "BN", "BK"))
        head = (f"| {r['arch']} | {r['dtype']} | {md_cell(', '.join(r.get('cases') or [r['case']]))} | "
                f"{md_code(r['kernel'])} | {md_cell(tile)} w={r['num_warps']} s={r['num_stages']} |")
        if not r["compiled"]:
            lines.append(f"{head} compile error: {md_cell(r['error'])} | | | | | | | |")
            continue
        tc = ("yes" if r["tensor_cores"] else "no") if r["has_dot"] else "-"
        fits = "" if r["fits"] else " (does not fit)"
        stream = (f"{_kib(r['bytes_in_flight_per_sm'])} | {r['bandwidth_bound_gbs']:.0f} |" if r["streaming"]
                  else "- | - |")
        lines.append(f"{head} {r['registers']} | {r['stack_bytes']} | {r['spill_store_bytes']}/{r['spill_load_bytes']} "
                     f"| {r['shared_bytes']}{fits} | {r['occupancy']:.0%} ({r['occupancy_limit']}) | {tc} | {stream}")
    fails = doc["summary"]["failures"]
    lines += ["", f"Missed targets: {len(fails)}" + ("" if fails else " (none)")]
    lines += [f"- {md_cell(f)}" for f in fails]
    return "\n".join(lines) + "\n"


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"
