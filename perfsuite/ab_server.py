"""One side of `perfsuite ab`: a long-lived server in one checkout that measures rounds in fresh processes.

``python -m perfsuite.ab_server SCENARIO --device DEVICE`` is started by `perfsuite.ab` in the checkout of
the baseline or of the candidate, with that checkout on ``PYTHONPATH``, so every row is measured by that
version's own code (its scenario loader, workloads, worker and row schema). Starting Python and importing
torch costs seconds, so the server imports them once and **forks** a fresh child per round: the child
measures the point (`perfsuite.worker.execute_point`), builds the row (`make_row`), sends it back and
exits. The server itself never runs a torch op and never touches CUDA, so each child starts from a clean
process image with a fresh CUDA context and no allocator or compile cache left by an earlier round.

Protocol (version `PROTOCOL`): one JSON object per line. The server writes its answers on the stdout it
was started with; anything else that prints goes to stderr. Requests on stdin:

* on start the server says ``{"ready": true, "protocol", "keys": [point keys in scenario order], "devices",
  "pid"}``
  (or ``{"ready": false, "error"}`` for a scenario this version cannot load);
* ``{"cmd": "env", "roofline": bool}`` -> ``{"env": env.json body}``;
* ``{"cmd": "round", "key", "run_id", "ctx"}`` -> ``{"row": row, "child_s": seconds the child lived}``;
* protocol 2: ``{"cmd": "prepare", "key", "run_id", "ctx", "chunks": C}`` forks the round's child, which
  builds the point, warms it up and pauses before the first of ``C`` chunks of its measured repetitions:
  ``{"paused": true}``; each ``{"cmd": "go"}`` lets it measure the next chunk and answers ``{"paused":
  true}`` again, or, after the last chunk (or when the point failed before measuring), the round's
  ``{"row", "child_s"}``. The driver alternates the chunks of A and B (A B B A ...), so both sides of a
  round are measured in the same stretch of time, interleaved, instead of one after the other;
* ``{"cmd": "stop"}`` ends the server.

This module is the entry point a ref must have for `perfsuite ab`: a checkout older than it is refused
with a clear message. It imports the runner (planning) and the worker, and nothing imports it.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import sys
import time
import traceback
from typing import Any, Callable

#: 1: ``round`` (a whole round per request); 2: also ``prepare`` and ``go`` (a round in chunks that the
#: driver alternates between A and B)
PROTOCOL = 2


#: in a round's child: seconds spent paused, waiting for the other side's chunks (left out of duration_s)
_paused_s = [0.0]


class _Child:
    """A forked child running ``fn`` once; it answers on a pipe with one JSON document and exits. With
    ``chunks`` (protocol 2) it pauses before each chunk of its measured repetitions
    (`perfsuite.measure.timing.set_chunk_gate`): it writes ``p`` and waits for the server's ``g``."""

    def __init__(self, fn: Callable[[], Any], chunks: int | None = None) -> None:
        r, w = os.pipe()
        go_r, go_w = os.pipe() if chunks else (None, None)
        self.t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: measure, answer, leave without running the parent's cleanup
            os.close(r)
            code = 0
            try:
                if chunks:
                    os.close(go_w)
                    from .measure.timing import set_chunk_gate

                    def gate() -> None:
                        t = time.perf_counter()
                        os.write(w, b"p")
                        if os.read(go_r, 1) != b"g":  # the server went away: stop measuring
                            os._exit(3)
                        _paused_s[0] += time.perf_counter() - t
                    set_chunk_gate(chunks, gate)
                data = json.dumps({"result": fn()}, default=str).encode()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
                data = json.dumps({"error": f"{type(exc).__name__}: {exc}",
                                   "traceback": traceback.format_exc()[-3000:]}).encode()
                code = 1
            with os.fdopen(w, "wb") as f:
                f.write(data)
            os._exit(code)
        os.close(w)
        if go_r is not None:
            os.close(go_r)
        self.pid, self._r, self._go = pid, os.fdopen(r, "rb"), go_w
        self._chunks: list[bytes] = []

    def go(self) -> None:
        """Let the paused child measure its next chunk."""
        os.write(self._go, b"g")

    def wait(self, timeout_s: float) -> tuple[str, Any, float]:
        """("paused", None, s) when the child paused before a chunk; else as `_in_child`. A child that
        passes ``timeout_s`` in this wait is killed."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return "timeout", None, time.perf_counter() - self.t0
            ready, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._r.fileno(), 1 << 20)
                if not chunk:
                    break
                if not self._chunks and chunk == b"p":  # a pause: the child waits for go()
                    return "paused", None, time.perf_counter() - self.t0
                self._chunks.append(chunk)
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        self._close()
        seconds = time.perf_counter() - self.t0
        if not self._chunks:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            how = f"signal {signal.Signals(sig).name}" if sig else f"exit code {os.waitstatus_to_exitcode(status)}"
            return "died", f"the round's process died ({how}) before it answered", seconds
        doc = json.loads(b"".join(self._chunks))
        if "error" in doc:
            return "died", doc["error"], seconds
        return "ok", doc["result"], seconds

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        self._close()

    def _close(self) -> None:
        self._r.close()
        if self._go is not None:
            with contextlib.suppress(OSError):
                os.close(self._go)
            self._go = None


def _in_child(fn: Callable[[], Any], timeout_s: float) -> tuple[str, Any, float]:
    """Run ``fn`` in a forked child; ("ok", its JSON-able result, seconds), ("timeout", None, s) when it
    passed ``timeout_s`` (it is killed), ("died", reason, s) when it crashed."""
    return _Child(fn).wait(timeout_s)


def _round_row(point, run_id: str, ctx: dict, memory_bytes: int | None) -> dict:
    """In the round's child: plan the point (a backend check may touch the device, which the server itself
    must not), measure it and build its row with this version's code."""
    from .runner import plan_point
    from .worker import execute_point, make_row

    t0 = time.perf_counter()
    plan = plan_point(point, memory_bytes)
    if plan.status is not None:
        return make_row(point, run_id, plan.status, plan.reason, predicted_bytes=plan.predicted_bytes,
                        duration_s=time.perf_counter() - t0)
    res = execute_point(point, ctx)
    worker_s = res.get("worker_s")
    return make_row(point, run_id, res["status"], res["reason"], res, plan.predicted_bytes,
                    duration_s=None if worker_s is None else worker_s - _paused_s[0])


def serve(scenario: str, device: str | None, inp, out) -> int:
    """Answer requests from ``inp`` on ``out`` until stop or end of input. Returns the exit code."""
    def say(obj: dict) -> None:
        out.write(json.dumps(obj, default=str) + "\n")
        out.flush()

    # the server must never initialise CUDA (a forked child cannot use a CUDA its parent initialised):
    # resolving a scenario's `device: auto` asks NVML instead of the CUDA driver
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    try:
        # imported once here, before forking, so that each round's process starts warm
        import torch  # noqa: F401

        from . import runner, worker, workloads  # noqa: F401
        from .environment import collect_env
        from .scenario import load_scenario
        from .worker import make_row

        points = {p.key: p for p in load_scenario(scenario).points(device)}
    except Exception as exc:  # this version cannot load the scenario: say so, the driver stops
        say({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 2
    devices = sorted({p.device for p in points.values()}) or [device or "cpu"]
    say({"ready": True, "protocol": PROTOCOL, "keys": list(points), "devices": devices, "pid": os.getpid()})
    env: dict = {}
    child: _Child | None = None  # the round's process between prepare/go requests

    def _answer(c: _Child, point, run_id: str) -> dict:
        """{"paused": true} while the round's child waits for go, else {"row", "child_s"} (it ended)."""
        nonlocal child
        state, res, seconds = c.wait(point.limits.timeout_s)
        if state == "paused":
            return {"paused": True}
        child = None
        if state == "ok":
            row = res
        elif state == "timeout":
            row = make_row(point, run_id, "timeout", f"exceeded limits.timeout_s = {point.limits.timeout_s:g} s; "
                           f"the round's process was killed", duration_s=seconds)
        else:
            row = make_row(point, run_id, "error", res, duration_s=seconds)
        return {"row": row, "child_s": seconds}

    for line in inp:
        req = json.loads(line)
        cmd = req.get("cmd")
        if cmd == "stop":
            if child is not None:
                child.kill()
            return 0
        if cmd == "env":
            state, res, _ = _in_child(functools.partial(collect_env, req["device"], req.get("roofline", True)), 600.0)
            env = res if state == "ok" else {}
            say({"env": res} if state == "ok" else {"error": f"recording the environment failed: {res or state}"})
        elif cmd in ("round", "prepare"):
            if child is not None:  # a round the driver left unfinished
                child.kill()
            point = points[req["key"]]
            run_id, ctx = req["run_id"], req.get("ctx") or {}
            measure = functools.partial(_round_row, point, run_id, ctx, env.get("memory_bytes"))
            child = _Child(measure, req.get("chunks") if cmd == "prepare" else None)
            say(_answer(child, point, run_id))
        elif cmd == "go":
            if child is None:
                say({"error": "go without a prepared round"})
                continue
            child.go()
            say(_answer(child, point, run_id))
        else:
            say({"error": f"unknown request {cmd!r}"})
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m perfsuite.ab_server")
    parser.add_argument("scenario")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    # answers go to the stdout we were started with; stray prints of the measured code go to stderr
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides; Ctrl-C reaches the whole group
    return serve(args.scenario, args.device, sys.stdin, proto)


if __name__ == "__main__":
    sys.exit(main())
