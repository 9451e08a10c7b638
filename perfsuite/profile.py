"""Profiler traces per point: one torch.profiler trace, a kernel summary and a backend identity check.

Layout (inside a run folder)::

    traces/<point slug>/<worker>.<time_ns>.pt.trace.json

Each file is a Chrome trace (open it in https://ui.perfetto.dev or chrome://tracing) written by
``torch.profiler.tensorboard_trace_handler``, so ``traces/`` is also a TensorBoard log directory with
one TensorBoard "run" per point (torch 2.13's handler writes ``*.pt.trace.json`` straight into the
folder it is given; torch-tb-profiler lists each sub-folder of the logdir as a run). One file serves
both viewers. torch-tb-profiler is deprecated upstream (``shared/research/harness_anchors.md`` §6,
§11), so the Chrome/Perfetto view is the primary one.

Two commands write these: ``perfsuite profile`` (`profile_points`: every point, in this process, into
``profiles.jsonl``) and ``perfsuite run --profile`` (the runner's worker calls `profile_after_timing`
after a point is timed, and the row gets the block as ``row["profile"]``). Both go through
`profile_workload`, so a point is built and traced the same way by either.

The kernel summary and the identity check are computed from the trace file, not from live profiler
objects, so a report can recompute them from disk on a machine without a GPU.

Identity rules (anchors §10.8: SpikingJelly shipped silent dispatch bugs, so the label on a row is
checked against what ran):

* ``triton``: a kernel named like one of perfsuite's Triton kernels (`perfsuite_kernel_names`) ran.
  On CPU the Triton interpreter runs kernels as Python and the profiler records no launch, so the
  answer there is ``unverified``.
* ``compiled``: Dynamo's compiled region ran and, with Inductor, generated code ran (kernels named
  ``triton_*`` on GPU, ``cpp_fused_*`` or the ``Call CompiledFxGraph`` range on CPU); no perfsuite
  kernel ran.
* ``eager`` / ``reference``: none of the above ran.
* other backends (peers): ``unverified``, no rule.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

TRACE_DIR = "traces"
#: name prefixes of kernels that Inductor generates: Triton kernels on GPU (triton_poi_/triton_red_/
#: triton_per_/triton_tem_...), C++ kernels on CPU (visible only with Inductor's kernel profiling on)
GENERATED_PREFIXES = ("triton_", "cpp_fused_")
#: profiler range around a call of an Inductor-generated graph (CPU has no per-kernel events by default)
COMPILED_GRAPH_CALL = "CompiledFxGraph"
COMPILED_REGION = "Torch-Compiled Region"
IDENTITIES = ("ok", "mismatch", "unverified")


# ---------------------------------------------------------------------------------------- recording
def point_slug(key: str) -> str:
    """A file-system-safe folder name for a point key (``lif/eager/...#hash`` -> ``lif_eager_..-hash``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("#", "-")).strip("_") or "point"


def record_trace(fn: Callable[[], Any], run_dir: str | os.PathLike, key: str, *, steps: int = 3,
                 warmup: int = 1, device: str = "cpu") -> Path:
    """Call ``fn`` ``warmup`` times unprofiled (compilation, autotuning, caches), then ``steps`` times
    under torch.profiler, and write the trace into ``run_dir/traces/<slug>/``. Returns the trace path."""
    import torch
    from torch.profiler import ProfilerActivity, profile, tensorboard_trace_handler

    for name, v in (("steps", steps), ("warmup", warmup)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "steps" else 0):
            raise ValueError(f"profile {name}={v!r} is invalid; expected an int >= {1 if name == 'steps' else 0}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"profile device={device!r} is invalid; expected 'cpu' or 'cuda'")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = Path(run_dir) / TRACE_DIR / point_slug(key)
    before = set(out.glob("*.pt.trace.json")) if out.exists() else set()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, on_trace_ready=tensorboard_trace_handler(str(out), worker_name="perfsuite")):
        for _ in range(steps):
            fn()
        sync()
    written = sorted(set(out.glob("*.pt.trace.json")) - before)
    if not written:
        raise RuntimeError(f"torch.profiler wrote no trace into {out}")
    return written[-1]


def profile_point(fn: Callable[[], Any], run_dir: str | os.PathLike, key: str, *, backend: str,
                  device: str = "cpu", steps: int = 3, warmup: int = 1, top: int = 10) -> dict[str, Any]:
    """Trace one point and return the row's ``profile`` block::

        {"trace": "traces/<slug>/....pt.trace.json" (relative to run_dir), "tensorboard_logdir": "traces",
         "identity": "ok" | "mismatch" | "unverified", "detail": str, "kernels": [...], "kernel_source": str,
         "steps": steps}
    """
    path = record_trace(fn, run_dir, key, steps=steps, warmup=warmup, device=device)
    events = load_trace(path)
    summary = kernel_summary(events, top=top)
    identity, detail = backend_identity(backend, events)
    return {
        "trace": path.relative_to(run_dir).as_posix(),
        "tensorboard_logdir": TRACE_DIR,
        "identity": identity,
        "detail": detail,
        "kernels": summary["rows"],
        "kernel_source": summary["source"],
        "steps": steps,
    }


# ----------------------------------------------------------------------------------------- reading
def load_trace(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``traceEvents`` of a Chrome trace file (``.json`` or ``.json.gz``)."""
    p = Path(path)
    if p.suffix == ".gz":
        import gzip

        text = gzip.decompress(p.read_bytes()).decode("utf-8")
    else:
        text = p.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a Chrome trace (invalid JSON: {exc})") from exc
    events = doc.get("traceEvents") if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        raise ValueError(f"{path}: not a Chrome trace (expected a 'traceEvents' list)")
    return events


def _complete(events: Iterable[dict[str, Any]], cat: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("ph") == "X" and e.get("cat") == cat and "dur" in e]


def _self_times(ops: list[dict[str, Any]]) -> list[float]:
    """Self time of each op (its duration minus its direct children's), nesting taken per thread."""
    self_t = [float(e["dur"]) for e in ops]
    by_thread: dict[Any, list[int]] = defaultdict(list)
    for i, e in enumerate(ops):
        by_thread[(e.get("pid"), e.get("tid"))].append(i)
    for idx in by_thread.values():
        idx.sort(key=lambda i: (ops[i]["ts"], -ops[i]["dur"]))
        stack: list[int] = []
        for i in idx:
            start = ops[i]["ts"]
            while stack and ops[stack[-1]]["ts"] + ops[stack[-1]]["dur"] <= start:
                stack.pop()
            if stack:
                self_t[stack[-1]] -= float(ops[i]["dur"])
            stack.append(i)
    return self_t


def kernel_summary(events: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """Top ``top`` names by self time: device kernels when the trace has any, else CPU ops.

    Returns ``{"source": "gpu_kernels" | "cpu_ops", "total_us": float, "rows": [{"name", "calls",
    "self_us", "share"}, ...]}`` sorted by self time, share = fraction of the total self time."""
    kernels = _complete(events, "kernel")
    if kernels:
        source, items, times = "gpu_kernels", kernels, [float(e["dur"]) for e in kernels]
    else:
        ops = _complete(events, "cpu_op")
        source, items, times = "cpu_ops", ops, _self_times(ops)
    calls: dict[str, int] = defaultdict(int)
    total: dict[str, float] = defaultdict(float)
    for e, t in zip(items, times):
        calls[e["name"]] += 1
        total[e["name"]] += t
    grand = sum(total.values())
    rows = [{"name": n, "calls": calls[n], "self_us": round(t, 3), "share": (t / grand if grand > 0 else 0.0)}
            for n, t in sorted(total.items(), key=lambda kv: -kv[1])[:top]]
    return {"source": source, "total_us": grand, "rows": rows}


# ---------------------------------------------------------------------------------------- identity
def _kernel_function_name(obj: Any) -> str | None:
    """Name of a Triton kernel object (jit, interpreted, autotuned or heuristics wrapper), else None."""
    if not type(obj).__module__.startswith("triton."):
        return None
    seen = 0
    while hasattr(obj, "fn") and seen < 8:
        obj, seen = obj.fn, seen + 1
    return getattr(obj, "__name__", None) if callable(obj) and seen else None


def perfsuite_kernel_names(package: str = "perfsuite.kernels") -> frozenset[str]:
    """Names of the Triton kernels defined in ``package`` and its modules (empty without triton)."""
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        return frozenset()
    modules = [pkg]
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), prefix=f"{package}."):
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:
            continue
    names = {n for m in modules for obj in vars(m).values() if (n := _kernel_function_name(obj))}
    return frozenset(names)


def backend_identity(backend: str, events: list[dict[str, Any]], *, kernel_names: Iterable[str] | None = None,
                     compile_backend: str | None = None) -> tuple[str, str]:
    """(identity, detail) for a trace of ``backend``: ``ok``, ``mismatch`` or ``unverified`` (see module doc).

    ``kernel_names`` defaults to `perfsuite_kernel_names()`; ``compile_backend`` to the backend the
    ``compiled`` neurons use (`perfsuite.neurons.base.COMPILE_BACKEND`)."""
    if compile_backend is None:
        from .neurons.base import COMPILE_BACKEND as compile_backend
    ours = frozenset(perfsuite_kernel_names() if kernel_names is None else kernel_names)
    device_kernels = {e["name"] for e in _complete(events, "kernel")}
    op_names = {e.get("name", "") for e in events if e.get("ph") == "X" and e.get("cat") != "kernel"}
    hits = sorted(device_kernels & ours)
    generated = sorted(n for n in device_kernels | op_names
                       if n not in ours and (n.startswith(GENERATED_PREFIXES) or COMPILED_GRAPH_CALL in n))
    region = any(n.startswith(COMPILED_REGION) for n in op_names)

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")

    if backend in ("eager", "reference"):
        found = [f"perfsuite kernels {few(hits)}"] * bool(hits) + [f"generated code {few(generated)}"] * bool(generated)
        found += [f"'{COMPILED_REGION}'"] * region
        if found:
            return "mismatch", f"{backend} backend, but the trace shows " + "; ".join(found)
        return "ok", f"no perfsuite kernel, no generated code, no compiled region in the {backend} trace"
    if backend == "compiled":
        if hits:
            return "mismatch", f"compiled backend launched hand-written perfsuite kernels: {few(hits)}"
        if not region:
            return "mismatch", f"compiled backend, but no '{COMPILED_REGION}' ran (torch.compile fell back to eager?)"
        if generated:
            return "ok", f"compiled region ran generated code: {few(generated)}"
        if compile_backend != "inductor":
            return "ok", (f"compiled region ran; compile backend {compile_backend!r} generates no kernels, "
                          f"so only the region is checked")
        return "mismatch", "compiled region ran but no Inductor-generated kernel or graph call was recorded"
    if backend == "triton":
        if hits:
            return "ok", f"perfsuite Triton kernels launched: {few(hits)}"
        if not device_kernels:
            return "unverified", ("no device kernels in the trace (on CPU the Triton interpreter runs kernels as "
                                  "Python, which the profiler does not record)")
        if not ours:
            return "mismatch", ("no perfsuite Triton kernel is defined (perfsuite.kernels has none, "
                                "or triton is missing)")
        return "mismatch", f"none of perfsuite's Triton kernels launched; launched: {few(sorted(device_kernels))}"
    return "unverified", f"no identity rule for backend {backend!r}"


# ---------------------------------------------------------------------------------- scenario points
PROFILES_FILE = "profiles.jsonl"
#: what ``perfsuite run --profile`` records per point: profiled calls, unprofiled warm-up calls, kernels kept
DEFAULT_STEPS, DEFAULT_WARMUP, DEFAULT_TOP = 3, 1, 10


def profile_workload(point, run_dir: str | os.PathLike, *, steps: int = DEFAULT_STEPS, warmup: int = DEFAULT_WARMUP,
                     top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The ``profile`` block of one scenario point: its workload built exactly as the runner builds it
    (`perfsuite.workloads.Workload`), traced by `profile_point`. The one profiling path shared by
    ``perfsuite profile`` (`profile_points`) and ``perfsuite run --profile`` (`profile_after_timing`)."""
    from .workloads import Workload

    fn = Workload(point, point.device).call()
    return profile_point(fn, run_dir, point.key, backend=point.backend, device=point.device, steps=steps,
                         warmup=warmup, top=top)


def profile_after_timing(point, run_dir: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """``{"profile": block}`` for a point the runner has just timed, or ``{"profile": None,
    "profile_reason": why}`` when profiling raised: a failed trace never costs the point its timing row.
    ``options`` go to `profile_workload` (steps, warmup, top)."""
    from .errors import classify_exception

    try:
        return {"profile": profile_workload(point, run_dir, **options)}
    except Exception as exc:  # the timing is already measured; the row keeps it and says why no trace
        status, reason = classify_exception(exc)
        return {"profile": None, "profile_reason": f"profiling failed ({status}): {reason}"}


def profile_points(points, run_dir: str | os.PathLike, *, steps: int = DEFAULT_STEPS, warmup: int = DEFAULT_WARMUP,
                   top: int = DEFAULT_TOP, on_point: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Profile each scenario point in this process (the same workload the runner times) and append one
    line per point to ``run_dir/profiles.jsonl``: the point's fields, ``status``/``reason`` as in a row
    (`perfsuite.errors.classify_exception`), and the ``profile`` block of `profile_point`."""
    from .errors import classify_exception
    from .results import append_row

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for p in points:
        row: dict[str, Any] = {**p.fields(), "status": "ok", "reason": None, "profile": None}
        if p.unsupported:
            row.update(status="unsupported", reason=p.unsupported)
        else:
            try:
                row["profile"] = profile_workload(p, run_dir, steps=steps, warmup=warmup, top=top)
            except Exception as exc:  # one failing point must not stop the others; its row says why
                row["status"], row["reason"] = classify_exception(exc)
        append_row(run_dir / PROFILES_FILE, row)
        out.append(row)
        if on_point is not None:
            on_point(row)
    return out
