"""The executor interface: where and how the planned points of a run are measured.

The runner (`perfsuite.runner`) plans each point in the parent (`Planned`: a verdict of unsupported,
skipped or error before running, or None = measure it), hands the planned points to an executor and
writes every row the executor yields. The executor decides where points run (one local worker at a
time, `perfsuite.executors.local`; or several devices at once) and in which order rows come back.

Contract of an `Executor`:

* ``environment(device, roofline) -> dict``: the env.json body of a new run (`perfsuite.environment.
  collect_env`, measured where the points will run). Called once per run, before ``run``, and not at
  all on ``--resume`` (the run keeps its env.json).
* ``run(planned, ctx) -> Iterator[(point, row)]``: measure the points and yield one ``(point, row)``
  per planned point **as each finishes**, in any order (a concurrent executor yields in completion
  order). ``planned`` may be a lazy iterable: the local executor plans each point just before it runs
  it. A planned point with a verdict (``status`` not None) gets a row without running
  (`verdict_row`). An ok row is profiled before it is yielded when ``ctx.profile`` is set. The
  executor never writes to the run folder's ``results.jsonl``: the runner is its single writer (it
  appends each yielded row at once, skips keys already done on ``--resume``, draws progress). A
  KeyboardInterrupt raised from ``run`` after a yield means: rows yielded so far are kept, stop.
* ``extrapolate(cfg, ..., write_row)``: the extrapolation block's rows (default: in this process).
* ``close(kill)``: release workers (``kill=True`` after an interrupt: do not wait for them).

Imports: `perfsuite.worker` (and lazily `perfsuite.extrapolation`) and the standard library; never the runner.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..worker import make_row, now


@dataclass
class Planned:
    """A point with its verdict before running: status None = run it in a worker. ``started_at`` and
    ``plan_s`` (when the planning began, how long it took) time the row of a point that is not run."""

    point: Any
    status: str | None
    reason: str | None
    predicted_bytes: int | None
    started_at: str | None = None
    plan_s: float | None = None


@dataclass
class RunContext:
    """What every point of a run shares: ``run_id``, the run folder (traces go under it), whether to
    profile ok points after timing them, and ``measure`` (idle power and energy reason from env.json,
    sent with each point to the worker). ``status``: when set, an executor that runs several points at
    once reports what runs where as one line (the runner shows it with the progress bar)."""

    run_id: str
    out_dir: Path
    profile: bool = False
    measure: dict = field(default_factory=dict)
    status: Callable[[str], None] | None = field(default=None, compare=False)


def verdict_row(plan: Planned, run_id: str) -> dict:
    """The row of a point the runner decided not to measure (unsupported, skipped, error in planning)."""
    return make_row(plan.point, run_id, plan.status, plan.reason, predicted_bytes=plan.predicted_bytes,
                    started_at=plan.started_at or now(), duration_s=plan.plan_s)


class Executor(abc.ABC):
    """Measures planned points and yields their rows; see the module docstring for the contract."""

    #: short name, e.g. for env.json and messages
    name = "executor"

    @abc.abstractmethod
    def environment(self, device: str, roofline: bool) -> dict:
        """env.json body of a new run on ``device`` (RuntimeError when it cannot be measured)."""

    @abc.abstractmethod
    def run(self, planned: Iterable[Planned], ctx: RunContext) -> Iterator[tuple[Any, dict]]:
        """Yield ``(point, row)`` for each planned point as it finishes."""

    def extrapolate(self, cfg, *, out_dir: Path, device: str, run_id: str, scenario: str, done_keys: set,
                    write_row: Callable[[dict], None]) -> None:
        """The scenario's extrapolation block (`perfsuite.extrapolation.ExtrapolationConfig`): every row
        goes to ``write_row``. By default in this process (training holds the model across evaluation
        lengths); a neuron that raises becomes error rows and the others go on."""
        from ..extrapolation import run_extrapolation

        run_extrapolation(cfg, out_dir, device=device, run_id=run_id, scenario=scenario, write_row=write_row,
                          done_keys=done_keys)

    def close(self, kill: bool = False) -> None:
        """Release the executor's workers (killed when ``kill``); an executor without any keeps this."""
        return None
