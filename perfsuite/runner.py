"""Run the points of a sweep and write their rows: isolated, bounded in time, resumable.

Every point runs in a worker process (``multiprocessing`` spawn), one at a time. The worker is reused
from point to point while points succeed (importing torch costs seconds), and replaced after a point
that raised, ran out of memory, crashed it or passed its timeout (then it is killed), so a poisoned
CUDA context or a leaked allocation never reaches the next point. Each finished point becomes one row
appended to ``results.jsonl`` and flushed at once (`perfsuite.results.append_row`), so Ctrl-C or a
kill loses at most the point in flight and ``resume`` finishes the rest.

Before a worker is used, each point is checked in the parent: unsupported by construction (a backend
missing here, step mode without serial inference) -> ``unsupported``; an analytic lower bound of its
memory above the limit -> ``skipped`` with the prediction.
"""
from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from .results import ENV_FILE, RESULTS_FILE, SCHEMA_VERSION, STATUSES, append_row, load_run, read_rows

SUMMARY_FILE = "summary.md"
#: the metric blocks of a row and the scenario metric that asks for each
BLOCKS = {"time": "time", "memory": "memory", "energy": "energy", "modelled_energy": "energy",
          "activity": "activity", "agreement": "agreement"}
#: seconds a fresh worker may take to start (spawn + import torch on a loaded machine)
WORKER_START_TIMEOUT_S = 300.0
GIB = 1024 ** 3


# ------------------------------------------------------------------------------------------- shards
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1 <= i <= n) -> (i, n); ValueError naming the value otherwise."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard={text!r} is invalid; expected 'i/n' with integers 1 <= i <= n, e.g. '2/4'") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard={text!r} is invalid; expected 'i/n' with 1 <= i <= n (i counts from 1)")
    return i, n


def select_shard(points: Sequence, shard: tuple[int, int] | None) -> list:
    """Shard i of n: every n-th point of the sweep's stable order, starting at the i-th (round robin
    keeps long and short points spread over the shards). The n shards partition the sweep."""
    if shard is None:
        return list(points)
    i, n = shard
    return list(points)[i - 1::n]


def shard_extrapolation(extrapolation: dict | None, shard: tuple[int, int] | None) -> dict | None:
    """The scenario's extrapolation block as shard ``shard`` runs it: in shard 1 only (training a model
    and evaluating it at every length is one job, not split across shards)."""
    return None if shard is not None and shard[0] != 1 else extrapolation


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def plan_summary(n_points: int, extrapolation: dict | None) -> str:
    """What a run will write: ``"N timed points"``, and with an extrapolation block
    ``", M extrapolation rows (K neurons × L evaluation lengths)"`` (one row per neuron and length)."""
    text = _plural(n_points, "timed point")
    if extrapolation is None:
        return text
    from .extrapolation import ExtrapolationConfig

    cfg = ExtrapolationConfig.from_block(extrapolation)
    k, n_lens = len(cfg.neurons), len(cfg.eval_lens)
    return (f"{text}, {_plural(k * n_lens, 'extrapolation row')} ({_plural(k, 'neuron')} × "
            f"{_plural(n_lens, 'evaluation length')})")


# --------------------------------------------------------------------------------------------- plan
@dataclass
class Planned:
    """A point with its verdict before running: status None = run it in a worker."""

    point: Any
    status: str | None
    reason: str | None
    predicted_bytes: int | None


def memory_limit_bytes(point, device_bytes: int | None) -> int | None:
    gb = point.limits.memory_gb
    return int(gb * GIB) if gb is not None else device_bytes


def plan_point(point, device_bytes: int | None) -> Planned:
    """Decide in the parent whether a point is unsupported, skipped by memory prediction, or to run."""
    from .workloads import predicted_memory_bytes, unsupported_reason

    try:
        reason = unsupported_reason(point, point.device)
    except Exception as exc:  # a plugin that fails to import or build: an error row, the sweep goes on
        return Planned(point, "error", _exc_reason(exc), None)
    if reason:
        return Planned(point, "unsupported", reason, None)
    try:
        predicted = predicted_memory_bytes(point)
    except Exception as exc:
        return Planned(point, "error", f"memory prediction failed: {_exc_reason(exc)}", None)
    limit = memory_limit_bytes(point, device_bytes)
    if limit is not None and predicted > limit:
        src = "limits.memory_gb" if point.limits.memory_gb is not None else f"{point.device} memory"
        return Planned(point, "skipped",
                       f"predicted at least {predicted / GIB:.3g} GiB (analytic lower bound: parameters, input, "
                       f"spikes and stored state), above {src} = {limit / GIB:.3g} GiB", predicted)
    return Planned(point, None, None, predicted)


# ------------------------------------------------------------------------------------------ worker
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
        self.proc = ctx.Process(target=_worker_main, args=(child,), name="perfsuite-worker")
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


def _worker_main(conn) -> None:
    """Body of the worker process: answer requests until the parent says stop or goes away."""
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
def collect_env(device: str, roofline: bool = True) -> dict:
    """env.json contents: environment, measured roofline, idle power (CUDA + NVML), device memory."""
    from .measure import device as devmod
    from .measure.energy import NvmlEnergy
    from .measure.memory import device_memory_bytes

    env = devmod.environment(device)
    env["memory_bytes"] = device_memory_bytes(device)
    env["memory_source"] = "cuda total_memory" if device == "cuda" else "host MemAvailable at run start"
    try:
        env["roofline"] = devmod.roofline(device) if roofline else None
        if not roofline:
            env["roofline_reason"] = "not measured (roofline turned off for this run)"
    except Exception as exc:  # the run can go on without it; say why it is missing
        env["roofline"] = None
        env["roofline_reason"] = _exc_reason(exc)
    meter = NvmlEnergy(device)
    env["idle_watts"] = meter.idle_watts() if meter.available else None
    env["energy_reason"] = meter.reason
    return env


def execute_point(point, ctx: dict) -> dict:
    """Build the workload, measure what the point asks for; {status, reason, blocks, <block>_reason}."""
    import torch

    device = point.device
    started = time.perf_counter()
    try:
        out = _measure(point, ctx)
        out.update(status="ok", reason=None)
    except Exception as exc:
        status, reason = classify_exception(exc)
        out = {"status": status, "reason": reason}
        if status == "error":
            out["traceback"] = "".join(traceback.format_exception(exc)[-6:])[-3000:]
    finally:
        gc.collect()
        if device == "cuda":
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
    out["worker_s"] = time.perf_counter() - started
    return out


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


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of an exception raised by a point: oom, unsupported (an op without a kernel
    for this dtype/device) or error."""
    import torch

    from .workloads import Unsupported

    text = str(exc).lower()
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text \
            or isinstance(exc, MemoryError):
        return "oom", _exc_reason(exc)
    if isinstance(exc, Unsupported) or (isinstance(exc, (RuntimeError, NotImplementedError))
                                        and "not implemented for" in text):
        return "unsupported", _exc_reason(exc)
    return "error", _exc_reason(exc)


def _exc_reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


# ------------------------------------------------------------------------------------------- rows
def make_row(point, run_id: str, status: str, reason: str | None, result: dict | None = None,
             predicted_bytes: int | None = None, started_at: str | None = None,
             duration_s: float | None = None) -> dict:
    """A row of the `perfsuite.results` schema for ``point``; absent blocks are null with a reason."""
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
        row["cost"], row["cost_reason"] = None, _exc_reason(exc)
    row["predicted_memory_bytes"] = predicted_bytes
    for extra in ("traceback", "peer"):
        if extra in result:
            row[extra] = result[extra]
    row["started_at"] = started_at or _now()
    row["duration_s"] = duration_s
    return row


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -------------------------------------------------------------------------------------------- run
@dataclass
class RunResult:
    out_dir: Path
    rows: list[dict] = field(default_factory=list)   # every row of the run folder (resumed ones too)
    new_rows: int = 0
    resumed: int = 0
    interrupted: bool = False

    @property
    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)


class Runner:
    """Runs points into a run folder. ``progress`` draws a rich progress bar on ``console``."""

    def __init__(self, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
                 console=None, roofline: bool = True, command: str | None = None, reproduce: str | None = None,
                 profile: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.profile = profile
        self.command = command
        self.reproduce = reproduce
        self.roofline = roofline
        self.resume = resume
        self.progress = progress
        self.console = console
        self._worker: Worker | None = None

    # ------------------------------------------------------------------- worker lifecycle
    def _get_worker(self) -> Worker:
        if self._worker is None or not self._worker.proc.is_alive():
            self._worker = Worker()
        return self._worker

    def _drop_worker(self, kill: bool = True) -> None:
        if self._worker is not None:
            self._worker.kill() if kill else self._worker.stop()
            self._worker = None

    # --------------------------------------------------------------------------------- run
    def run(self, points: Sequence, *, extrapolation: dict | None = None, scenario: str = "",
            device: str | None = None) -> RunResult:
        """Measure ``points``, then (when given) the scenario's ``extrapolation`` block (train short,
        evaluate long; see `perfsuite.extrapolation`) on ``device`` (default: the points' device)."""
        points = list(points)
        devices = {p.device for p in points}
        if len(devices) > 1:
            raise ValueError(f"points for several devices {sorted(devices)}; expected one device per run")
        device = devices.pop() if devices else (device or "cpu")
        _check_device(device)
        results = self.out_dir / RESULTS_FILE
        done: set[str] = set()
        if results.exists() and results.stat().st_size > 0:
            if not self.resume:
                n = len(read_rows(results))
                raise ValueError(f"{self.out_dir} already holds {n} rows; pass --resume to finish that run "
                                 "or choose another --out folder")
            repair_torn_tail(results)
            done = {r["key"] for r in read_rows(results)}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        todo = [p for p in points if p.key not in done]
        result = RunResult(self.out_dir, resumed=len(points) - len(todo))
        with _sigterm_as_interrupt():
            try:
                env = self._env(device)
                self._loop(todo, env, results, result)
                if extrapolation is not None:
                    self._extrapolate(extrapolation, scenario, env, device, results, result, done)
            except KeyboardInterrupt:
                result.interrupted = True
            finally:
                self._drop_worker(kill=result.interrupted)
        result.rows = read_rows(results) if results.exists() else []
        write_summary(self.out_dir, result.rows)
        return result

    def _env(self, device: str) -> dict:
        """env.json of the run: measured once by a worker; a resumed run keeps its own (and run id)."""
        path = self.out_dir / ENV_FILE
        if self.resume and path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        try:
            env = self._get_worker().call(("env", device, self.roofline), WORKER_START_TIMEOUT_S)
        except (WorkerDied, WorkerTimeout) as exc:
            self._drop_worker()
            raise RuntimeError(f"the worker process failed while recording the environment: {exc}") from None
        env["run_id"] = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        if self.command:
            env["command"] = self.command
        if self.reproduce:
            env["reproduce"] = reproduce_entry(self.reproduce, env.get("commit"))
        path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
        return env

    def _loop(self, todo: list, env: dict, results: Path, result: RunResult) -> None:
        ctx = {"idle_watts": env.get("idle_watts"), "energy_reason": env.get("energy_reason")}
        # an extrapolation-only scenario (or a resumed run with nothing left) draws no empty bar
        with _progress(self.progress and bool(todo), self.console, len(todo)) as advance:
            for point in todo:
                row = self._one(point, env, ctx)
                interrupted = self.profile and self._profile(point, row)
                append_row(results, row)
                result.new_rows += 1
                advance(f"{point.neuron}/{point.backend}/{point.mode} T={point.seq_len}: {row['status']}")
                if interrupted:
                    raise KeyboardInterrupt

    def _extrapolate(self, block: dict, scenario: str, env: dict, device: str, results: Path,
                     result: RunResult, done: set[str]) -> None:
        """Extrapolation rows, appended one by one. They run in this process (training holds the model
        across evaluation lengths); a neuron that raises becomes error rows and the others go on."""
        from .extrapolation import ExtrapolationConfig, run_extrapolation

        def write(row: dict) -> None:
            append_row(results, row)
            result.new_rows += 1
            if self.console is not None and self.progress:
                self.console.print(f"extrapolation {row['neuron']} L={row['eval_len']}: {row['status']}")

        run_extrapolation(ExtrapolationConfig.from_block(block), self.out_dir, device=device,
                          run_id=env["run_id"], scenario=scenario, write_row=write, done_keys=done)

    def _profile(self, point, row: dict) -> bool:
        """``--profile``: once the point is timed, its worker traces a few calls of the same workload
        (`perfsuite.profile.profile_after_timing`) into ``<out>/traces/`` and the row gets the block as
        ``profile``. The timing is already in the row: a profile that raises, kills the worker or passes
        ``limits.timeout_s`` only makes ``profile`` null with ``profile_reason``. Returns True when
        Ctrl-C came while profiling (the row is still written, then the run stops)."""
        if row["status"] != "ok":
            row["profile"], row["profile_reason"] = None, f"not profiled: point status {row['status']}"
            return False
        try:
            res = self._get_worker().call(("profile", point, str(self.out_dir.resolve())), point.limits.timeout_s)
        except KeyboardInterrupt:
            row["profile"], row["profile_reason"] = None, "not profiled: the run was interrupted while profiling"
            return True
        except WorkerTimeout:
            res = {"profile": None, "profile_reason": f"profiling exceeded limits.timeout_s = "
                                                      f"{point.limits.timeout_s:g} s; the worker was killed"}
        except WorkerDied as exc:
            res = {"profile": None, "profile_reason": f"profiling failed: {exc}"}
        if res.get("profile") is None:
            self._drop_worker()  # a failed trace may leave the profiler or the device in a bad state
        row.update(res)
        return False

    def _one(self, point, env: dict, ctx: dict) -> dict:
        run_id = env["run_id"]
        started_at, t0 = _now(), time.perf_counter()
        plan = plan_point(point, env.get("memory_bytes"))
        if plan.status is not None:
            return make_row(point, run_id, plan.status, plan.reason, predicted_bytes=plan.predicted_bytes,
                            started_at=started_at, duration_s=time.perf_counter() - t0)
        try:
            worker = self._get_worker()
        except (WorkerDied, WorkerTimeout) as exc:
            self._drop_worker()
            return make_row(point, run_id, "error", f"the worker process failed to start: {exc}",
                            predicted_bytes=plan.predicted_bytes, started_at=started_at,
                            duration_s=time.perf_counter() - t0)
        t0 = time.perf_counter()  # worker start-up is not the point's time
        try:
            res = worker.call(("point", point, ctx), point.limits.timeout_s)
        except WorkerTimeout:
            self._drop_worker()
            return make_row(point, run_id, "timeout",
                            f"exceeded limits.timeout_s = {point.limits.timeout_s:g} s; the worker was killed",
                            predicted_bytes=plan.predicted_bytes, started_at=started_at,
                            duration_s=time.perf_counter() - t0)
        except WorkerDied as exc:
            self._drop_worker()
            return make_row(point, run_id, "error", str(exc), predicted_bytes=plan.predicted_bytes,
                            started_at=started_at, duration_s=time.perf_counter() - t0)
        if res["status"] in ("error", "oom"):
            self._drop_worker()  # the process may hold a poisoned CUDA context or leaked memory
        return make_row(point, run_id, res["status"], res["reason"], res, plan.predicted_bytes, started_at,
                        time.perf_counter() - t0)


def reproduce_entry(command: str, commit: str | None) -> dict:
    """env.json ``reproduce``: ``command`` (as typed, without ``--out``/``--resume``) and the ``commit`` of
    the checkout it ran from, with a note on how to run it again."""
    note = "run in a checkout of that commit, with --out a new folder"
    if commit is None:
        note = "no git commit was recorded (not run from a git checkout); run it with --out a new folder"
    elif commit.endswith("-dirty"):
        note += "; the run had uncommitted changes to tracked files, which a checkout does not bring back"
    return {"command": command, "commit": commit, "note": note}


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line left unfinished by a kill mid-write, so rows appended later stay valid JSON
    lines (`read_rows` ignores a torn *last* line only). Returns True when something was cut."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    return True


def run_points(points: Sequence, out_dir: str | os.PathLike, *, resume: bool = False,
               shard: tuple[int, int] | None = None, progress: bool = True, console=None,
               roofline: bool = True, extrapolation: dict | None = None, scenario: str = "",
               device: str | None = None, command: str | None = None, reproduce: str | None = None,
               profile: bool = False) -> RunResult:
    """Run ``points`` (the shard of them) and an optional extrapolation block into ``out_dir``; see
    `Runner`. The extrapolation block runs in shard 1 only (it is not split). ``profile``: trace each
    ok point after timing it (`Runner._profile`). ``command``: what was run (env.json ``command``);
    ``reproduce``: the command that measures the run again, without ``--out`` (`reproduce_entry`)."""
    extrapolation = shard_extrapolation(extrapolation, shard)
    runner = Runner(out_dir, resume=resume, progress=progress, console=console, roofline=roofline,
                    command=command, reproduce=reproduce, profile=profile)
    return runner.run(select_shard(points, shard), extrapolation=extrapolation, scenario=scenario, device=device)


def _check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    elif device != "cpu":
        raise ValueError(f"device={device!r} is invalid; expected 'cpu' or 'cuda'")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A kill (SIGTERM) stops the run like Ctrl-C: the worker is killed, finished rows are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _progress(enabled: bool, console, total: int):
    if not enabled:
        yield lambda text: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False) as prog:
        task = prog.add_task("points", total=total)

        def advance(text: str) -> None:
            prog.update(task, advance=1, description=text[:60])

        yield advance


# ----------------------------------------------------------------------------------- summaries
SUMMARY_COLUMNS = ("neuron", "backend", "mode", "precision", "seq_len", "batch", "features", "status",
                   "median ms", "median CI ms (95 % unless marked)", "peak MiB", "rate", "agree")


def summary_cells(row: dict) -> list[str]:
    """One summary line of a row, as strings (shared by the Markdown file and the terminal table).
    The median's interval carries its coverage when it is below 95 % (fewer than 6 samples: min–max)."""
    from .measure.timing import ci_label

    t, m, a, g = row.get("time"), row.get("memory"), row.get("activity"), row.get("agreement")
    return [
        str(row.get("neuron")), str(row.get("backend")), str(row.get("mode")), str(row.get("precision")),
        str(row.get("seq_len")), str(row.get("batch")), str(row.get("features")), str(row.get("status")),
        f"{t['median_ms']:.4g}" if t else "",
        ci_label(t) if t and t.get("ci95_ms") else "",
        f"{m['peak_allocated_bytes'] / 2**20:.4g}" if m and m.get("peak_allocated_bytes") is not None else "",
        f"{a['firing_rate']:.3f}" if a else "",
        f"{g['equal_fraction']:.4f}" if g else "",
    ]


EXTRAPOLATION_COLUMNS = ["neuron", "task", "train_len", "eval_len", "status", "loss", "optimal loss", "excess",
                         "accuracy", "policy"]


def extrapolation_cells(row: dict) -> list[str]:
    """One summary line of an extrapolation row (train short, evaluate long)."""
    def num(k: str) -> str:
        v = row.get(k)
        return f"{v:.4f}" if isinstance(v, (int, float)) else ""

    return [str(row.get("neuron")), str(row.get("task")), str(row.get("train_len")), str(row.get("eval_len")),
            str(row.get("status")), num("loss"), num("optimal_loss"), num("excess_loss"), num("accuracy"),
            str(row.get("policy") or "")]


def _split(rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    rows = list(rows)
    return ([r for r in rows if r.get("kind", "bench") != "extrapolation"],
            [r for r in rows if r.get("kind") == "extrapolation"])


def _md_table(columns: list[str], lines_cells: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in lines_cells]
    return out


def summary_markdown(rows: Iterable[dict]) -> str:
    rows = list(rows)
    bench, extra = _split(rows)
    counts = Counter(r["status"] for r in rows)
    lines = ["# Run summary", ""]
    lines.append("Status: " + ", ".join(f"{s} {counts[s]}" for s in STATUSES if counts[s]) + f" (total {len(rows)})")
    lines.append("")
    if bench:
        lines.append("peak MiB: `memory.peak_allocated_bytes` (method in each row: the CUDA allocator's peak, or on "
                     "the CPU the growth of the worker's peak RSS during one call). rate: mean firing rate. agree: "
                     "fraction of spikes equal to the float64 reference.")
        lines.append("")
        lines += _md_table(SUMMARY_COLUMNS, (summary_cells(r) for r in bench))
    if extra:
        lines += ["", "## Extrapolation", "",
                  "Mean loss (nats) on fresh sequences of each evaluation length; optimal loss: the Bayes predictor "
                  "on the same sequences; excess = loss − optimal.", ""]
        lines += _md_table(EXTRAPOLATION_COLUMNS, (extrapolation_cells(r) for r in extra))
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        lines += ["", "## Not ok", ""]
        for r in problems:
            lines.append(f"- `{r['key']}`: **{r['status']}**: {r.get('reason')}")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, rows: list[dict]) -> Path:
    path = Path(out_dir) / SUMMARY_FILE
    path.write_text(summary_markdown(rows), encoding="utf-8")
    return path


_STATUS_COLORS = {"ok": "green", "skipped": "yellow", "unsupported": "yellow", "oom": "red", "error": "red",
                  "timeout": "red"}


def _rich_table(title: str, columns: list[str], rows: list[dict], cells_of, status_col: int):
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c in ("seq_len", "batch", "features", "train_len", "eval_len")
                         or "ms" in c or "loss" in c or c in ("excess", "accuracy") else "left")
    for r in rows:
        cells = cells_of(r)
        cells[status_col] = f"[{_STATUS_COLORS.get(r['status'], 'white')}]{cells[status_col]}[/]"
        table.add_row(*cells)
    return table


def summary_table(rows: Iterable[dict]):
    """Rich tables of the rows (the end-of-run summary): timed points, then extrapolation rows."""
    from rich.console import Group

    bench, extra = _split(rows)
    parts = []
    if bench or not extra:
        parts.append(_rich_table("perfsuite run", SUMMARY_COLUMNS, bench, summary_cells, 7))
    if extra:
        parts.append(_rich_table("extrapolation", EXTRAPOLATION_COLUMNS, extra, extrapolation_cells, 4))
    return Group(*parts)


# ---------------------------------------------------------------------------------------- merge
#: env.json fields that must match across the parts of a merge besides the regression gate's
#: (`perfsuite.compare.env_differences`): the gate compares two commits on purpose, but the shards
#: of one run come from one checkout
MERGE_SAME_FIELDS = ("commit",)


def _row_text(row: dict) -> str:
    """A row as canonical JSON: rows are compared as text (a NaN never equals itself as a float)."""
    return json.dumps(row, sort_keys=True, default=str)


def merge_env_differences(parts: Sequence[tuple[str, dict]]) -> list[str]:
    """Every difference between the first part's env.json and each later part's in the fields the
    regression gate compares and in `MERGE_SAME_FIELDS`, as ``"<part> vs <first>: field a != b"``."""
    from .compare import env_differences

    (first, env0), out = parts[0], []
    for path, env in parts[1:]:
        diffs = [(name, a, b) for name, a, b in env_differences(env0, env)]
        diffs += [(name, env0.get(name), env.get(name)) for name in MERGE_SAME_FIELDS if env0.get(name) != env.get(name)]
        out += [f"{path} vs {first}: {name} {b!r} != {a!r}" for name, a, b in diffs]
    return out


def _merge_rule(n_ok: int, n: int) -> str:
    if n_ok == 0 or n_ok == n:
        return "the last part's"
    return "the ok row" if n_ok == 1 else "the last part's ok row"


def merge_runs(out_dir: str | os.PathLike, parts: Sequence[str | os.PathLike], *, force: bool = False) -> RunResult:
    """Join shard folders into ``out_dir``.

    Refused (ValueError) unless ``force``: parts whose env.json differ in the fields the regression
    gate compares or in the commit (`merge_env_differences`), and a key held by several parts with
    different rows. A key held by several parts with identical rows (a part given twice) keeps one.
    With ``force``, a differing key keeps an ``ok`` row over one that is not ok, else the last part's;
    env.json then lists the differences and, per such key, the parts and the winner under
    ``merge_forced``. env.json is the first part's, with ``merged_from``: each part's path, run id,
    host, GPU, commit and whole env.json."""
    out = Path(out_dir)
    if (out / RESULTS_FILE).exists() and (out / RESULTS_FILE).stat().st_size > 0:
        raise ValueError(f"{out} already holds results; merge into a new folder")
    if not parts:
        raise ValueError("merge: no parts given; expected one or more run folders")
    envs: list[tuple[str, dict]] = []
    holders: dict[str, list[tuple[str, dict]]] = {}  # key -> [(part, row)] in part order
    for part in parts:
        env, rows = load_run(part)  # FileNotFoundError names the part
        envs.append((str(part), env))
        for r in rows:
            holders.setdefault(r["key"], []).append((str(part), r))
    env_diffs = merge_env_differences(envs)
    conflicts = {k: h for k, h in holders.items() if len({_row_text(r) for _, r in h}) > 1}
    if (env_diffs or conflicts) and not force:
        msg = []
        if env_diffs:
            msg.append("the parts come from different environments (" + "; ".join(env_diffs) + ")")
        if conflicts:
            shown = [f"{k} in {', '.join(p for p, _ in h)}" for k, h in list(conflicts.items())[:5]]
            more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
            msg.append(f"{len(conflicts)} key(s) hold different rows in several parts ({'; '.join(shown)}{more})")
        raise ValueError("merge refused: " + "; ".join(msg) + ". Expected shards of one run (same machine, "
                         "software and commit, disjoint keys); pass --force to merge anyway (an ok row wins a "
                         "duplicate key, else the last part's; env.json records what was overridden)")
    by_key: dict[str, dict] = {}
    duplicates = []
    for key, h in holders.items():
        ok = [(p, r) for p, r in h if r["status"] == "ok"]
        winner, row = (ok or h)[-1]
        by_key[key] = row
        if key in conflicts:
            duplicates.append({"key": key, "parts": [p for p, _ in h], "statuses": [r["status"] for _, r in h],
                               "winner": winner, "rule": _merge_rule(len(ok), len(h))})
    out.mkdir(parents=True, exist_ok=True)
    env = dict(envs[0][1])
    env["merged_from"] = [{"path": p, "run_id": e.get("run_id"), "hostname": e.get("hostname"),
                           "gpu": (e.get("gpu") or {}).get("name"), "commit": e.get("commit"), "env": e}
                          for p, e in envs]
    if env_diffs or duplicates:
        env["merge_forced"] = {"env_differences": env_diffs, "duplicates": duplicates}
    else:
        env.pop("merge_forced", None)
    (out / ENV_FILE).write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    for r in by_key.values():
        append_row(out / RESULTS_FILE, r)
    rows = list(by_key.values())
    write_summary(out, rows)
    return RunResult(out, rows=rows, new_rows=len(rows))
