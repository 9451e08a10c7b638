"""Run the points of a sweep and write their rows: planned, scheduled on an executor, resumable.

The runner plans each point in the parent (`plan_point`): unsupported by construction (a backend
missing here, step mode without serial inference) -> ``unsupported``; an analytic lower bound of its
memory above the limit -> ``skipped`` with the prediction; else it is measured by an executor
(`perfsuite.executors`; by default `LocalExecutor`: one isolated worker process, one point at a time,
see `perfsuite.worker`). The runner is the single writer of ``results.jsonl``: each row the executor
yields is appended and flushed at once (`perfsuite.results.append_row`), so Ctrl-C or a kill loses at
most the points in flight and ``resume`` finishes the rest. It also records env.json, draws progress
and writes ``summary.md`` (`perfsuite.summary`).

Imports: `perfsuite.executors`, `perfsuite.worker`, `perfsuite.errors`, `perfsuite.results`,
`perfsuite.summary`, and lazily `perfsuite.workloads`, `perfsuite.extrapolation`; never compare,
report or cli.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import exc_reason
from .executors import Executor, LocalExecutor, Planned, RunContext
from .results import (
    ENV_FILE,
    RESULTS_FILE,
    RunResult,
    append_row,
    finite_row,
    load_env,
    lock_run_dir,
    read_rows,
    salvage_rows,
    scan_rows,
)
from .summary import write_summary
from .worker import now

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
def memory_limit_bytes(point, device_bytes: int | None) -> int | None:
    gb = point.limits.memory_gb
    return int(gb * GIB) if gb is not None else device_bytes


def plan_point(point, device_bytes: int | None) -> Planned:
    """Decide in the parent whether a point is unsupported, skipped by memory prediction, or to run."""
    from .workloads import predicted_memory_bytes, unsupported_reason

    try:
        reason = unsupported_reason(point, point.device)
    except Exception as exc:  # a plugin that fails to import or build: an error row, the sweep goes on
        return Planned(point, "error", exc_reason(exc), None)
    if reason:
        return Planned(point, "unsupported", reason, None)
    try:
        predicted = predicted_memory_bytes(point)
    except Exception as exc:
        return Planned(point, "error", f"memory prediction failed: {exc_reason(exc)}", None)
    limit = memory_limit_bytes(point, device_bytes)
    if limit is not None and predicted > limit:
        src = "limits.memory_gb" if point.limits.memory_gb is not None else f"{point.device} memory"
        return Planned(point, "skipped",
                       f"predicted at least {predicted / GIB:.3g} GiB (analytic lower bound: parameters, input, "
                       f"spikes and stored state), above {src} = {limit / GIB:.3g} GiB", predicted)
    return Planned(point, None, None, predicted)


# -------------------------------------------------------------------------------------------- run
class Runner:
    """Runs points into a run folder on an executor (default `LocalExecutor`). ``progress`` draws a
    rich progress bar on ``console``."""

    def __init__(self, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
                 console=None, roofline: bool = True, command: str | None = None, reproduce: str | None = None,
                 profile: bool = False, executor: Executor | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.profile = profile
        self.command = command
        self.reproduce = reproduce
        self.roofline = roofline
        self.resume = resume
        self.progress = progress
        self.console = console
        self.executor = executor if executor is not None else LocalExecutor()

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
        if self.resume and not any((self.out_dir / f).exists() for f in (RESULTS_FILE, ENV_FILE)):
            raise ValueError(f"nothing to resume in {self.out_dir}: it holds no {RESULTS_FILE} or {ENV_FILE} "
                             "(expected the folder of an earlier run; drop --resume to start a new one)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_run_dir(self.out_dir)  # one writer per folder: a second run/resume/merge is refused
        try:
            return self._run_locked(points, extrapolation, scenario, device)
        finally:
            lock.close()

    def _run_locked(self, points: list, extrapolation: dict | None, scenario: str, device: str) -> RunResult:
        results = self.out_dir / RESULTS_FILE
        done: set[str] = set()
        warnings: list[str] = []
        if results.exists() and results.stat().st_size > 0:
            if not self.resume:
                n = len(scan_rows(results)[0])
                raise ValueError(f"{self.out_dir} already holds {n} rows; pass --resume to finish that run "
                                 "or choose another --out folder")
            rows, warnings = salvage_rows(results)  # unreadable lines -> results.rejected.jsonl
            for w in warnings:
                self._warn(w)
            done = {r["key"] for r in rows}
        todo = [p for p in points if p.key not in done]
        result = RunResult(self.out_dir, resumed=len(points) - len(todo), warnings=warnings)
        failed = True  # any exit but a normal end or Ctrl-C (e.g. a full disk) kills the workers
        with _sigterm_as_interrupt():
            try:
                env = self._env(device, points)
                self._loop(todo, env, results, result)
                if extrapolation is not None:
                    self._extrapolate(extrapolation, scenario, env, device, results, result, done)
                failed = False
            except KeyboardInterrupt:
                result.interrupted, failed = True, False
            finally:
                self.executor.close(kill=result.interrupted or failed)
        result.rows = read_rows(results) if results.exists() else []
        write_summary(self.out_dir, result.rows)
        return result

    def _warn(self, text: str) -> None:
        if self.console is not None:
            from rich.markup import escape

            self.console.print(f"[yellow]warning:[/] {escape(text)}")

    def _env(self, device: str, points: Sequence) -> dict:
        """env.json of the run: measured once by the executor; a resumed run keeps its own (and run id).
        ``timing_threads``: the torch thread counts the points ask for (`timing.threads`; None = torch's
        default), so a compare or report can see the setting without reading every row."""
        path = self.out_dir / ENV_FILE
        if self.resume and path.exists():
            return load_env(path)
        env = self.executor.environment(device, self.roofline)
        env.setdefault("executor", self.executor.name)
        env["run_id"] = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        env["timing_threads"] = sorted({p.timing.threads for p in points}, key=lambda n: (n is not None, n or 0))
        if self.command:
            env["command"] = self.command
        if self.reproduce:
            env["reproduce"] = reproduce_entry(self.reproduce, env.get("commit"))
        nonfinite = finite_row(env)  # e.g. a NaN roofline figure: null, named, and strict JSON
        if nonfinite:
            env["nonfinite"] = nonfinite
        path.write_text(json.dumps(env, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
        return env

    def _loop(self, todo: list, env: dict, results: Path, result: RunResult) -> None:
        # an extrapolation-only scenario (or a resumed run with nothing left) draws no empty bar
        with progress_bar(self.progress and bool(todo), self.console, len(todo)) as advance:
            ctx = RunContext(run_id=env["run_id"], out_dir=self.out_dir, profile=self.profile,
                             measure={"idle_watts": env.get("idle_watts"), "energy_reason": env.get("energy_reason")},
                             status=getattr(advance, "status", None))
            for point, row in self.executor.run(_plan_each(todo, env.get("memory_bytes")), ctx):
                row.setdefault("executor", self.executor.name)
                append_row(results, row)
                result.new_rows += 1
                advance(f"{point.neuron}/{point.backend}/{point.mode} T={point.seq_len}: {row['status']}")

    def _extrapolate(self, block: dict, scenario: str, env: dict, device: str, results: Path,
                     result: RunResult, done: set[str]) -> None:
        """Extrapolation rows, appended one by one as the executor hands them over (`Executor.extrapolate`:
        the local one trains in this process); a neuron that raises becomes error rows, the others go on."""
        from .extrapolation import ExtrapolationConfig

        def write(row: dict) -> None:
            row.setdefault("executor", self.executor.name)
            append_row(results, row)
            result.new_rows += 1
            if self.console is not None and self.progress:
                self.console.print(f"extrapolation {row['neuron']} L={row['eval_len']}: {row['status']}", markup=False)

        self.executor.extrapolate(ExtrapolationConfig.from_block(block), out_dir=self.out_dir, device=device,
                                  run_id=env["run_id"], scenario=scenario, done_keys=done, write_row=write)


def _plan_each(points: Iterable, device_bytes: int | None) -> Iterator[Planned]:
    """Plan each point when the executor asks for it (a point's row time starts with its planning)."""
    for point in points:
        started_at, t0 = now(), time.perf_counter()
        plan = plan_point(point, device_bytes)
        plan.started_at, plan.plan_s = started_at, time.perf_counter() - t0
        yield plan


def reproduce_entry(command: str, commit: str | None) -> dict:
    """env.json ``reproduce``: ``command`` (as typed, without ``--out``/``--resume``) and the ``commit`` of
    the checkout it ran from, with a note on how to run it again."""
    note = "run in a checkout of that commit, with --out a new folder"
    if commit is None:
        note = "no git commit was recorded (not run from a git checkout); run it with --out a new folder"
    elif commit.endswith("-dirty"):
        note += "; the run had uncommitted changes to tracked files, which a checkout does not bring back"
    return {"command": command, "commit": commit, "note": note}


def run_points(points: Sequence, out_dir: str | os.PathLike, *, resume: bool = False,
               shard: tuple[int, int] | None = None, progress: bool = True, console=None,
               roofline: bool = True, extrapolation: dict | None = None, scenario: str = "",
               device: str | None = None, command: str | None = None, reproduce: str | None = None,
               profile: bool = False, executor: Executor | None = None) -> RunResult:
    """Run ``points`` (the shard of them) and an optional extrapolation block into ``out_dir``; see
    `Runner`. The extrapolation block runs in shard 1 only (it is not split). ``profile``: trace each
    ok point after timing it (`perfsuite.executors.local.LocalExecutor._profile`). ``command``: what
    was run (env.json ``command``); ``reproduce``: the command that measures the run again, without
    ``--out`` (`reproduce_entry`). ``executor``: where points run (default: a `LocalExecutor`)."""
    extrapolation = shard_extrapolation(extrapolation, shard)
    runner = Runner(out_dir, resume=resume, progress=progress, console=console, roofline=roofline,
                    command=command, reproduce=reproduce, profile=profile, executor=executor)
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
def progress_bar(enabled: bool, console, total: int):
    """A rich bar of ``total`` points on ``console`` (a no-op when not ``enabled``), yielding ``advance(text)``
    with an ``advance.status(text)`` for what runs where; used by the run loop and by ``perfsuite profile``."""
    if not enabled:
        yield lambda text: None
        return
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[where]}"), console=console,
                  transient=False) as prog:
        task = prog.add_task("points", total=total, where="")

        def advance(text: str) -> None:
            prog.update(task, advance=1, description=escape(text[:60]))  # names from data: no rich markup

        # an executor running several points at once says what runs where (`RunContext.status`)
        advance.status = lambda text: prog.update(task, where=escape(text[:160]))
        yield advance
