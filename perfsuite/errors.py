"""What went wrong in a point, as a row says it: (status, reason) of an exception.

A tiny low module shared by the worker (`perfsuite.worker`), the profiler (`perfsuite.profile`) and
the runner's planning, so none of them imports another to classify a failure. Owns the `Unsupported`
exception a workload raises for a point that cannot run by design (`perfsuite.workloads` re-exports it).
Imports only the standard library (torch lazily, inside `classify_exception`), no perfsuite module.
"""
from __future__ import annotations


class Unsupported(Exception):
    """The point cannot run by design (the message is the reason); it becomes an ``unsupported`` row."""


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of an exception raised by a point: oom, unsupported (an op without a kernel
    for this dtype/device) or error."""
    import torch

    text = str(exc).lower()
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text \
            or isinstance(exc, MemoryError):
        return "oom", exc_reason(exc)
    if isinstance(exc, Unsupported) or (isinstance(exc, (RuntimeError, NotImplementedError))
                                        and "not implemented for" in text):
        return "unsupported", exc_reason(exc)
    return "error", exc_reason(exc)


def exc_reason(exc: BaseException) -> str:
    """``"<Type>: <first line of the message>"``, at most 500 characters: the ``reason`` of a row."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
