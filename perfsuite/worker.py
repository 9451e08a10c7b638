"""One point in an isolated process -> one row: the worker process, what it measures, and the row.

`Worker` is one spawned process (``multiprocessing`` spawn) and the pipe to it; `_worker_main` is its
body, answering ``env`` (`perfsuite.environment.collect_env`), ``point`` (`execute_point`) and
``profile`` (`perfsuite.profile.profile_after_timing`, imported lazily there) requests. A point that
does not answer within its timeout raises `WorkerTimeout` in the parent, a process that ends raises
`WorkerDied`; the caller (an executor, `perfsuite.executors`) kills and replaces the worker.
`make_row` turns a point and its outcome into a row of the `perfsuite.results` schema.

Imports: the standard library, `perfsuite.results`, `perfsuite.errors`, `perfsuite.environment`, and
lazily torch, `perfsuite.measure`, `perfsuite.workloads`, `perfsuite.profile`. Never the runner or an
executor (they import this module).
"""
from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from typing import Any

from .environment import collect_env
from .errors import classify_exception, exc_reason
from .results import SCHEMA_VERSION, STATUSES, finite_row

__all__ = ["BLOCKS", "WORKER_START_TIMEOUT_S", "Worker", "WorkerDied", "WorkerTimeout", "classify_exception",
           "execute_point", "make_row", "now"]

#: the metric blocks of a row and the scenario metric that asks for each
BLOCKS = {"time": "time", "memory": "memory", "energy": "energy", "modelled_energy": "energy",
          "activity": "activity", "agreement": "agreement"}
#: seconds a fresh worker may take to start (spawn + import torch on a loaded machine)
WORKER_START_TIMEOUT_S = 300.0


class WorkerTimeout(Exception):
    """The worker gave no answer in time (it is then killed)."""


class WorkerDied(Exception):
    """The worker process ended (crashed, killed) before it answered."""


class Worker:
    """One spawned worker process and the pipe to it. ``call`` sends a request and waits for the reply."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        # not a daemon: torch.compile may start its own compile workers, which daemons may not have
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid()), name="perfsuite-worker")
        self.proc.start()
        child.close()
        try:
            self._wait(WORKER_START_TIMEOUT_S, "starting")
        except BaseException:
            self.kill()
            raise

    def _wait(self, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout(f"no answer within {timeout:g} s while {what}")
            try:
                if self._conn.poll(min(left, 0.5)):
                    return self._conn.recv()
            except (EOFError, OSError):
                raise WorkerDied(self._death()) from None
            if not self.proc.is_alive() and not self._conn.poll(0):
                raise WorkerDied(self._death())

    def _death(self) -> str:
        self.proc.join(5)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = str(-code)
            hint = " (on Linux usually the out-of-memory killer)" if sig == "SIGKILL" else ""
            return f"the worker process died from signal {sig}{hint}"
        return f"the worker process exited with code {code}"

    def call(self, request: tuple, timeout: float) -> Any:
        try:
            self._conn.send(request)
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._death()) from None
        return self._wait(timeout, "running")

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)
        self._conn.close()

    def stop(self) -> None:
        try:
            self._conn.send(("stop",))
            self.proc.join(10)
        except (BrokenPipeError, OSError):
            pass
        self.kill()


#: seconds between two checks of the worker's watchdog that its parent is still alive
PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this worker when its parent ends, even while it is busy in a point (a parent killed with
    SIGKILL cannot kill it): on Linux the kernel sends SIGKILL at the parent's death
    (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread polls ``os.getppid()`` and ends the
    process once it is no longer ``parent_pid`` (the worker was re-parented). The idle worker also
    ends on its own when the pipe to the parent closes (`_worker_main`)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="perfsuite-parent-watchdog", daemon=True).start()


def _worker_main(conn, parent_pid: int) -> None:
    """Body of the worker process: answer requests until the parent says stop or goes away."""
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent decides (it kills this worker), so a
    # KeyboardInterrupt here would only print a second traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent is gone (killed): nothing left to report to
            return
        if request[0] == "stop":
            return
        if request[0] == "env":
            conn.send(collect_env(*request[1:]))
        elif request[0] == "point":
            conn.send(execute_point(request[1], request[2]))
        elif request[0] == "profile":  # run --profile: after the point was timed (never during)
            from .profile import profile_after_timing

            conn.send(profile_after_timing(request[1], request[2]))


# ------------------------------------------------------------------------------ in the worker
def execute_point(point, ctx: dict) -> dict:
    """Build the workload, measure what the point asks for; {status, reason, blocks, <block>_reason}."""
    import torch

    from .measure import load

    device = point.device
    started = time.perf_counter()
    threads = point.timing.threads  # scenario key timing.threads (None: leave torch's default)
    before = load.sample(device)
    try:
        with torch_threads(threads):
            out = _measure(point, ctx)
            after = load.sample(device)  # inside: torch_threads is the count the point ran with
        out.update(status="ok", reason=None)
    except Exception as exc:
        status, reason = classify_exception(exc)
        out = {"status": status, "reason": reason}
        if status == "error":
            out["traceback"] = "".join(traceback.format_exception(exc)[-6:])[-3000:]
        after = load.sample(device)
    finally:
        gc.collect()
        if device == "cuda":
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
    out["load"] = {**load.block(before, after), "threads_requested": threads}
    out["worker_s"] = time.perf_counter() - started
    return out


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` for the block and restored after (None: unchanged).
    Under contention more threads than free cores make a small op many times slower."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _measure(point, ctx: dict) -> dict:
    from .measure.activity import agreement
    from .measure.energy import NvmlEnergy, modelled_energy
    from .measure.memory import PeakMemory
    from .measure.timing import bench, time_call
    from .workloads import Workload, predicted_memory_bytes

    device, metrics = point.device, set(point.metrics)
    res: dict = {}
    wl = Workload(point, device)
    fn = wl.call()
    cold = time_call(fn, device)  # first call: compile, autotune, allocator growth
    estimate = None
    if "memory" in metrics:
        # the CPU's RSS delta cannot resolve less than the point must hold: below that it is no measurement
        bound = predicted_memory_bytes(point) if device == "cpu" else None
        with PeakMemory(device, lower_bound_bytes=bound) as pm:
            estimate = time_call(fn, device)  # a steady-state call: also the estimate for the budgets
        res["memory"], reason = pm.result()
        if reason:
            res["memory_reason"] = reason
    if "time" in metrics:
        t = point.timing
        res["time"] = bench(fn, device, warmup_ms=t.warmup_ms, rep_ms=t.rep_ms, min_reps=t.min_reps,
                            max_reps=t.max_reps, estimate_ms=estimate)
        res["time"]["cold_start_ms"] = cold if t.cold_start else None
    # a peer backend records which of its implementations actually ran (e.g. SpikingJelly torch/triton)
    peer = next((m.peer_info for m in wl.model.modules() if getattr(m, "peer_info", None)), None)
    if peer is not None:
        res["peer"] = peer
    if "energy" in metrics:
        meter = NvmlEnergy(device)
        if meter.available and ctx.get("idle_watts") is not None:
            res["energy"] = meter.measure(fn, ctx["idle_watts"], wl.neuron_steps())
        else:
            res["energy_reason"] = meter.reason or ctx.get("energy_reason") or "idle power was not measured"
    if metrics & {"activity", "energy", "agreement"}:
        spikes = wl.spikes()
        if "activity" in metrics:
            res["activity"] = wl.activity(spikes)
        if "energy" in metrics:
            ops = wl.synaptic_ops(spikes)
            if ops is None:
                res["modelled_energy_reason"] = ("a single layer has no synapses; the modelled energy counts "
                                                 "synaptic operations (use workload: network)")
            else:
                res["modelled_energy"] = modelled_energy(*ops)
        if "agreement" in metrics:
            if point.seq_len <= point.limits.reference_max_len:
                res["agreement"] = agreement(spikes, wl.reference_spikes())
            else:
                res["agreement_reason"] = (f"seq_len={point.seq_len} > limits.reference_max_len="
                                           f"{point.limits.reference_max_len}: the float64 reference is not run")
    return res


# ------------------------------------------------------------------------------------------- rows
def make_row(point, run_id: str, status: str, reason: str | None, result: dict | None = None,
             predicted_bytes: int | None = None, started_at: str | None = None,
             duration_s: float | None = None) -> dict:
    """A row of the `perfsuite.results` schema for ``point``; absent blocks are null with a reason.
    NaN or infinite numbers become null and are listed in ``nonfinite``; one inside a metric block (a
    measured quantity: a time, a firing rate, ...) makes an ok point ``error`` with that reason."""
    from .workloads import analytic_cost

    if status not in STATUSES:
        raise ValueError(f"status={status!r} is invalid; expected one of {list(STATUSES)}")
    result = result or {}
    row: dict = {"schema": SCHEMA_VERSION, "run_id": run_id, **point.fields(), "status": status, "reason": reason}
    for block, metric in BLOCKS.items():
        row[block] = result.get(block)
        if row[block] is None:
            if metric not in point.metrics:
                why = f"metric {metric!r} not requested by the scenario"
            elif status != "ok":
                why = f"not measured: point status {status}"
            else:
                why = result.get(f"{block}_reason", "not measured")
            row[f"{block}_reason"] = why
    try:
        row["cost"] = analytic_cost(point)
    except Exception as exc:
        row["cost"], row["cost_reason"] = None, exc_reason(exc)
    row["predicted_memory_bytes"] = predicted_bytes
    for extra in ("traceback", "peer", "load"):
        if extra in result:
            row[extra] = result[extra]
    row["started_at"] = started_at or now()
    row["duration_s"] = duration_s
    nonfinite = finite_row(row)
    if nonfinite:
        row["nonfinite"] = nonfinite
        measured = [p for p in nonfinite if p.split(".")[0] in BLOCKS]
        if measured and row["status"] == "ok":
            shown = ", ".join(measured[:5]) + (f" and {len(measured) - 5} more" if len(measured) > 5 else "")
            row["status"] = "error"
            row["reason"] = f"non-finite measurement (NaN or infinite, stored as null): {shown}"
    return row


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
