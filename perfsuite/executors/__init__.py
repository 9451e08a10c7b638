"""Executors: where the runner's planned points are measured (`base.Executor` is the interface).

`LocalExecutor` (today's loop: one worker process on this machine, one point at a time) is the
default. Imports: `perfsuite.worker` and below; the runner imports this package, never the reverse.
"""
from .base import Executor, Planned, RunContext, verdict_row
from .local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "Planned", "RunContext", "verdict_row"]
