"""The local executor: one worker process on this machine, one point at a time.

The worker is reused from point to point while points succeed (importing torch costs seconds), and
replaced after a point that raised, ran out of memory, crashed it or passed its timeout (then it is
killed), so a poisoned CUDA context or a leaked allocation never reaches the next point.

Imports: `perfsuite.worker`, `.base`; never the runner.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from ..worker import WORKER_START_TIMEOUT_S, Worker, WorkerDied, WorkerTimeout, make_row, now
from .base import Executor, Planned, RunContext, verdict_row


class LocalExecutor(Executor):
    """Runs each planned point in one reused worker process, in order; see `perfsuite.executors.base`."""

    name = "local"

    def __init__(self) -> None:
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

    def close(self, kill: bool = False) -> None:
        self._drop_worker(kill=kill)

    # ------------------------------------------------------------------------- interface
    def environment(self, device: str, roofline: bool) -> dict:
        try:
            return self._get_worker().call(("env", device, roofline), WORKER_START_TIMEOUT_S)
        except (WorkerDied, WorkerTimeout) as exc:
            self._drop_worker()
            raise RuntimeError(f"the worker process failed while recording the environment: {exc}") from None

    def run(self, planned: Iterable[Planned], ctx: RunContext) -> Iterator[tuple[Any, dict]]:
        for plan in planned:
            row = self._one(plan, ctx)
            interrupted = ctx.profile and self._profile(plan.point, row, ctx.out_dir)
            yield plan.point, row
            if interrupted:
                raise KeyboardInterrupt

    # ---------------------------------------------------------------------------- points
    def _one(self, plan: Planned, ctx: RunContext) -> dict:
        point, run_id = plan.point, ctx.run_id
        if plan.status is not None:
            return verdict_row(plan, run_id)
        started_at, t0 = plan.started_at or now(), time.perf_counter()
        try:
            worker = self._get_worker()
        except (WorkerDied, WorkerTimeout) as exc:
            self._drop_worker()
            return make_row(point, run_id, "error", f"the worker process failed to start: {exc}",
                            predicted_bytes=plan.predicted_bytes, started_at=started_at,
                            duration_s=time.perf_counter() - t0 + (plan.plan_s or 0.0))
        t0 = time.perf_counter()  # worker start-up is not the point's time
        try:
            res = worker.call(("point", point, ctx.measure), point.limits.timeout_s)
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

    def _profile(self, point, row: dict, out_dir) -> bool:
        """``--profile``: once the point is timed, its worker traces a few calls of the same workload
        (`perfsuite.profile.profile_after_timing`) into ``<out>/traces/`` and the row gets the block as
        ``profile``. The timing is already in the row: a profile that raises, kills the worker or passes
        ``limits.timeout_s`` only makes ``profile`` null with ``profile_reason``. Returns True when
        Ctrl-C came while profiling (the row is still written, then the run stops)."""
        if row["status"] != "ok":
            row["profile"], row["profile_reason"] = None, f"not profiled: point status {row['status']}"
            return False
        try:
            res = self._get_worker().call(("profile", point, str(out_dir.resolve())), point.limits.timeout_s)
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
