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
* ``{"cmd": "stop"}`` ends the server.

This module is the entry point a ref must have for `perfsuite ab`: a checkout older than it is refused
with a clear message. It imports the runner (planning) and the worker, and nothing imports it.
"""
from __future__ import annotations

import functools
import json
import os
import select
import signal
import sys
import time
import traceback
from typing import Any, Callable

PROTOCOL = 1


def _in_child(fn: Callable[[], Any], timeout_s: float) -> tuple[str, Any, float]:
    """Run ``fn`` in a forked child; ("ok", its JSON-able result, seconds), ("timeout", None, s) when it
    passed ``timeout_s`` (it is killed), ("died", reason, s) when it crashed."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: measure, answer, leave without running the parent's cleanup
        os.close(r)
        code = 0
        try:
            data = json.dumps({"result": fn()}, default=str).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            data = json.dumps({"error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc()[-3000:]}).encode()
            code = 1
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout_s
    with os.fdopen(r, "rb") as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "timeout", None, time.perf_counter() - t0
            ready, _, _ = select.select([f], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(f.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - t0
    if not chunks:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        how = f"signal {signal.Signals(sig).name}" if sig else f"exit code {os.waitstatus_to_exitcode(status)}"
        return "died", f"the round's process died ({how}) before it answered", seconds
    doc = json.loads(b"".join(chunks))
    if "error" in doc:
        return "died", doc["error"], seconds
    return "ok", doc["result"], seconds


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
    return make_row(point, run_id, res["status"], res["reason"], res, plan.predicted_bytes,
                    duration_s=res.get("worker_s"))


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
    for line in inp:
        req = json.loads(line)
        cmd = req.get("cmd")
        if cmd == "stop":
            return 0
        if cmd == "env":
            state, res, _ = _in_child(functools.partial(collect_env, req["device"], req.get("roofline", True)), 600.0)
            env = res if state == "ok" else {}
            say({"env": res} if state == "ok" else {"error": f"recording the environment failed: {res or state}"})
        elif cmd == "round":
            point = points[req["key"]]
            run_id, ctx = req["run_id"], req.get("ctx") or {}
            measure = functools.partial(_round_row, point, run_id, ctx, env.get("memory_bytes"))
            state, res, seconds = _in_child(measure, point.limits.timeout_s)
            if state == "ok":
                row = res
            elif state == "timeout":
                row = make_row(point, run_id, "timeout", f"exceeded limits.timeout_s = {point.limits.timeout_s:g} s; "
                               f"the round's process was killed", duration_s=seconds)
            else:
                row = make_row(point, run_id, "error", res, duration_s=seconds)
            say({"row": row, "child_s": seconds})
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
