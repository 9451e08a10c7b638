"""The Ray executor: the points of a run spread over every device of a Ray cluster.

Ray (a laptop, one multi-GPU box, or many nodes: SLURM, Kubernetes) does the placement; perfsuite
only keeps one *slot* per device and hands each slot one point at a time. A slot is a Ray actor that
reserves a whole device for the run: ``gpus_per_point`` GPUs on CUDA (Ray sets
``CUDA_VISIBLE_DEVICES``, so no two points share a GPU), or **all** CPUs of its node for a CPU run
(points never share cores). Inside the slot the point runs exactly as with the local executor
(`perfsuite.executors.local`: one isolated worker process, the same timeout, out-of-memory and crash
classification), so a worker that dies is an ``error`` row, never a lost point. Ray's own retries are
off (a retried point would hide a crash); a point whose *node* died is re-queued once on another slot
and its row says so (``requeued``). Declared GPUs on a local instance (``--num-gpus`` without real
ones, as the tests and ``scripts/bench_executor.py`` do) give CPU points slots that share the cores:
env.json says so, and such times are not measurements of a device.

The driver (the runner) stays the single writer of ``results.jsonl``: `RayExecutor.run` yields each
row as its slot finishes it. Rows add ``executor``, ``node`` (hostname), ``gpu_index`` (the slot's
``CUDA_VISIBLE_DEVICES``) and ``gpu_uuid``; env.json adds ``cluster`` (nodes, GPUs per node, GPU
models, slots). A run over different GPU models is refused unless ``allow_mixed``. The extrapolation
block runs as one task per neuron on the same slots (weights go to ``<out>/weights/`` on the node that
trained them: on several nodes the run folder must be on a shared file system, as for traces).

``ray`` is imported here only, when the executor connects (the CLI's start-up never pays for it).
Imports: `perfsuite.executors.base`, `perfsuite.executors.local`; never the runner.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import platform
import re
import signal
import threading
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from ..worker import WORKER_START_TIMEOUT_S
from .base import Executor, Planned, RunContext, verdict_row
from .local import LocalExecutor

INSTALL_HINT = "pip install 'perfsuite[ray]'"
#: seconds between two looks at the slots while points run (progress and node liveness)
POLL_S = 0.5
#: seconds a slot may take to be placed and start its worker (spawn + import torch) before it is dropped
SETUP_TIMEOUT_S = WORKER_START_TIMEOUT_S + 60


def ray_installed() -> bool:
    """Whether the ``ray`` package can be imported here (looked up, not imported)."""
    return importlib.util.find_spec("ray") is not None


def require_ray() -> None:
    """ValueError with the install hint when the ``ray`` package is not installed here."""
    if not ray_installed():
        raise ValueError(f"--executor ray needs the 'ray' package, which is not installed in this Python; "
                         f"install it with: {INSTALL_HINT}")


@dataclasses.dataclass
class RayOptions:
    """How to reach the cluster and what a point reserves.

    ``address``: None = Ray's default (join the running cluster if there is one, else start a local
    instance); ``"local"`` = always start a local instance of this machine; ``"auto"`` = join the running
    cluster; ``"HOST:PORT"`` = join the cluster whose head listens there; ``"ray://HOST:PORT"`` = Ray
    Client. ``num_gpus``: GPUs the local instance declares (default: what Ray detects).
    ``gpus_per_point``: whole GPUs one point reserves."""

    address: str | None = None
    num_gpus: int | None = None
    gpus_per_point: int = 1
    allow_mixed: bool = False

    def check(self) -> None:
        if self.address is not None and self.address not in ("local", "auto") \
                and not re.fullmatch(r"(ray://)?[\w.-]+:\d+", self.address):
            raise ValueError(f"--address {self.address!r} is invalid; expected 'local', 'auto', HOST:PORT (the head "
                             "node's GCS port) or 'ray://HOST:PORT' (Ray Client)")
        if self.num_gpus is not None:
            if self.num_gpus < 0:
                raise ValueError(f"--num-gpus {self.num_gpus} is invalid; expected an integer >= 0")
            if self.address != "local":
                raise ValueError("--num-gpus declares the GPUs of a local Ray instance; it needs --address local "
                                 "(a running cluster declares its own GPUs at `ray start`)")
        if self.gpus_per_point < 1:
            raise ValueError(f"--gpus-per-point {self.gpus_per_point} is invalid; expected an integer >= 1 "
                             "(points never share a GPU)")


def check_gpu_models(cluster: dict, allow_mixed: bool) -> None:
    """ValueError when the slots of ``cluster`` (env.json ``cluster``) hold different GPU models, unless
    ``allow_mixed``: times from different models are not one sweep's."""
    models = sorted({m for node in cluster["nodes"] for m in node["gpu_models"] if m})
    if len(models) > 1 and not allow_mixed:
        where = "; ".join(f"{n['hostname']}: {', '.join(n['gpu_models'])}" for n in cluster["nodes"] if n["gpu_models"])
        raise ValueError(f"the Ray cluster mixes GPU models {models} ({where}); a run over several models is "
                         "refused (its times are not comparable); pass --allow-mixed to run anyway (rows keep "
                         "their GPU)")


# ------------------------------------------------------------------------------------ the slot
def _gpu_identity() -> dict:
    """``gpu_index`` (this process's ``CUDA_VISIBLE_DEVICES``, as Ray set it) and ``gpu_uuid`` from NVML
    (null with ``gpu_uuid_reason`` when NVML or a GPU is absent, e.g. declared GPUs on a CPU box)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or None
    out: dict = {"gpu_index": visible, "gpu_uuid": None}
    if visible is None:
        out["gpu_uuid_reason"] = "no GPU assigned to this slot"
        return out
    try:
        import pynvml

        pynvml.nvmlInit()
        uuids = []
        for v in visible.split(","):
            v = v.strip()
            h = pynvml.nvmlDeviceGetHandleByUUID(v) if v.startswith("GPU-") else pynvml.nvmlDeviceGetHandleByIndex(int(v))
            u = pynvml.nvmlDeviceGetUUID(h)
            uuids.append(u.decode() if isinstance(u, bytes) else u)
        out["gpu_uuid"] = ",".join(uuids)
    except Exception as exc:  # no NVML here (declared GPUs without hardware): say why, never invent one
        out["gpu_uuid_reason"] = f"NVML unavailable: {type(exc).__name__}: {exc}"[:300]
    return out


class Slot:
    """The body of a slot actor: one device of one node, one `LocalExecutor` (one isolated worker)."""

    def __init__(self) -> None:
        self.local = LocalExecutor()
        self.where = {"node": platform.node(), **_gpu_identity()}
        self.measure_ctx: dict | None = None

    def setup(self, device: str, roofline: bool) -> dict:
        """Record this slot's environment in its worker (idle power for its energy, GPU model)."""
        env = self.local.environment(device, roofline)
        from .. import workloads  # noqa: F401 - rows are made here (analytic cost): import torch now, not in a point

        self.measure_ctx = {"idle_watts": env.get("idle_watts"), "energy_reason": env.get("energy_reason")}
        return {"env": env, "where": self.where, "pid": os.getpid()}

    def measure(self, plan: Planned, ctx: RunContext) -> dict:
        if self.measure_ctx is not None:  # this device's idle power, not the first slot's
            ctx = dataclasses.replace(ctx, measure=self.measure_ctx)
        _, row = next(iter(self.local.run([plan], ctx)))
        row.update(executor="ray", **self.where)
        return row

    def extrapolate(self, cfg, out_dir: str, device: str, run_id: str, scenario: str, done_keys: set) -> list[dict]:
        """One neuron's extrapolation rows, trained and evaluated in this slot's process."""
        from pathlib import Path

        from ..extrapolation import run_extrapolation

        self.local.close()  # the idle worker would hold a second context on the device
        rows: list[dict] = []
        run_extrapolation(cfg, Path(out_dir), device=device, run_id=run_id, scenario=scenario,
                          write_row=rows.append, done_keys=done_keys)
        for r in rows:
            r.update(executor="ray", **self.where)
        return rows

    def close(self) -> None:
        self.local.close()


# ---------------------------------------------------------------------------------- the executor
@dataclasses.dataclass
class _Handle:
    actor: Any
    node_id: str
    hostname: str
    gpu: str | None = None   # the slot's CUDA_VISIBLE_DEVICES, once it is set up
    label: str = ""          # what it runs now, for progress
    dead: bool = False


class RayExecutor(Executor):
    """Runs planned points on Ray slots, several at once; see the module docstring."""

    name = "ray"

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()
        self.options.check()
        require_ray()
        self._ray = None
        self._slots: list[_Handle] = []
        self._setups: list[dict] = []
        self._device: str | None = None
        self.cluster: dict | None = None

    # ------------------------------------------------------------------------- connection
    def _connect(self):
        if self._ray is not None:
            return self._ray
        import ray

        opts = self.options
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True,
                        "logging_level": logging.ERROR}
        if opts.address == "local":
            kwargs.update(address="local", num_cpus=os.cpu_count() or 1)
            if opts.num_gpus is not None:
                kwargs["num_gpus"] = opts.num_gpus
        elif opts.address is not None:
            kwargs["address"] = opts.address
        # Ray's core installs its own handlers (SIGTERM aborts the driver): keep the runner's, which turn
        # SIGTERM and Ctrl-C into a clean stop that keeps the finished rows
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            text = str(exc).strip().splitlines()
            raise ValueError(f"cannot reach a Ray cluster at --address {opts.address or '(Ray default)'}: "
                             f"{text[0] if text else type(exc).__name__}; start one with `ray start --head` "
                             "or use --address local") from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    if handler is not None:
                        signal.signal(sig, handler)
        self._ray = ray
        return ray

    def _alive_nodes(self) -> list[dict]:
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def _slot_options(self, node: dict, device: str) -> list[dict]:
        """Actor options of every slot of ``node``: one per ``gpus_per_point`` GPUs (CUDA, or declared
        GPUs on a local instance), else one per node holding all of its CPUs."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        res = node.get("Resources", {})
        place = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        base = {"scheduling_strategy": place, "max_restarts": 0, "max_task_retries": 0}
        gpus = int(res.get("GPU", 0))
        if device == "cuda" or (self.options.num_gpus and gpus):
            n = gpus // self.options.gpus_per_point
            return [dict(base, num_gpus=self.options.gpus_per_point, num_cpus=0) for _ in range(n)]
        cpus = int(res.get("CPU", 0))
        return [dict(base, num_cpus=cpus)] if cpus else []

    def _reservation(self, device: str) -> str:
        if device == "cuda":
            return f"{self.options.gpus_per_point} GPU(s) per point"
        if self.options.num_gpus:
            return ("declared GPUs of a local instance, one per point: CPU points share the cores (for testing "
                    "the executor; these times are not device measurements)")
        return "all CPUs of a node per point"

    def _ensure_slots(self, device: str, roofline: bool) -> list[dict]:
        """Start the slots (once) and record each one's environment; returns their setup answers."""
        if self._slots:
            return self._setups
        ray = self._connect()
        self._device = device
        actor_cls = ray.remote(Slot)
        nodes = self._alive_nodes()
        for node in nodes:
            for opts in self._slot_options(node, device):
                self._slots.append(_Handle(actor_cls.options(**opts).remote(), node["NodeID"],
                                           node.get("NodeManagerHostname", "?")))
        if not self._slots:
            need = f"{self.options.gpus_per_point} GPU(s)" if device == "cuda" else "CPUs"
            raise ValueError(f"the Ray cluster has no node with {need} for a {device} point "
                             f"({len(nodes)} node(s) alive); expected at least one")
        refs = [s.actor.setup.remote(device, roofline and i == 0) for i, s in enumerate(self._slots)]
        setups = []
        for s, ref in zip(self._slots, refs):
            try:  # a slot Ray cannot place (devices held by other jobs) or whose worker fails takes no point
                setups.append(ray.get(ref, timeout=SETUP_TIMEOUT_S))
                s.gpu = setups[-1]["where"].get("gpu_index")
            except Exception as exc:
                s.dead = True
                ray.kill(s.actor)
                text = str(exc).strip().splitlines()
                setups.append({"error": f"{type(exc).__name__}: {text[-1][:300] if text else ''}"})
        self._setups = setups
        if all(s.dead for s in self._slots):
            raise RuntimeError(f"no Ray slot could start its worker: {setups[0].get('error')}")
        self.cluster = self._describe(nodes, setups, device)
        check_gpu_models(self.cluster, self.options.allow_mixed)
        return setups

    def _describe(self, nodes: list[dict], setups: list[dict], device: str) -> dict:
        by_node: dict[str, dict] = {}
        for n in nodes:
            res = n.get("Resources", {})
            by_node[n["NodeID"]] = {"hostname": n.get("NodeManagerHostname"), "node_id": n["NodeID"],
                                    "cpus": int(res.get("CPU", 0)), "gpus": int(res.get("GPU", 0)),
                                    "gpu_models": [], "slots": []}
        for s, st in zip(self._slots, setups):
            gpu = ((st.get("env") or {}).get("gpu") or {}).get("name")
            node = by_node[s.node_id]
            node["slots"].append({**st.get("where", {}), **({"error": st["error"]} if "error" in st else {})})
            if gpu and gpu not in node["gpu_models"]:
                node["gpu_models"].append(gpu)
        return {"executor": "ray", "ray_version": self._ray.__version__, "address": self.options.address,
                "reservation": self._reservation(device), "gpus_per_point": self.options.gpus_per_point,
                "slots": sum(not s.dead for s in self._slots), "nodes": list(by_node.values()),
                "gpu_models": sorted({m for n in by_node.values() for m in n["gpu_models"]})}

    # ------------------------------------------------------------------------- interface
    def environment(self, device: str, roofline: bool) -> dict:
        setups = self._ensure_slots(device, roofline)
        env = dict(setups[0]["env"]) if "env" in setups[0] else next(s["env"] for s in setups if "env" in s)
        env["executor"] = "ray"
        env["cluster"] = self.cluster
        return env

    def run(self, planned: Iterable[Planned], ctx: RunContext) -> Iterator[tuple[Any, dict]]:
        # planned at once, so progress can count what is queued; a point's row time starts in its slot
        plans = list(planned)
        for plan in plans:
            if plan.status is not None:
                yield plan.point, verdict_row(plan, ctx.run_id)
        todo = [dataclasses.replace(p, started_at=None) for p in plans if p.status is None]
        if not todo:
            return
        self._ensure_slots(todo[0].point.device, roofline=False)
        send = dataclasses.replace(ctx, status=None)  # the progress hook stays in the driver

        def submit(slot: _Handle, plan: Planned):
            return slot.actor.measure.remote(plan, send)

        def label(plan: Planned) -> str:
            p = plan.point
            return f"{p.neuron}/{p.backend}/{p.mode} T={p.seq_len}"

        def rows(plan: Planned, row: dict, note: str | None):
            if note:
                row["requeued"] = note
            return [(plan.point, row)]

        def lost(plan: Planned, reason: str, note: str | None):
            from ..worker import make_row

            row = make_row(plan.point, ctx.run_id, "error", reason, predicted_bytes=plan.predicted_bytes)
            row.update(executor="ray", **({"requeued": note} if note else {}))
            return [(plan.point, row)]

        yield from self._schedule(todo, submit, label, rows, lost, ctx.status)

    def extrapolate(self, cfg, *, out_dir, device: str, run_id: str, scenario: str, done_keys: set,
                    write_row: Callable[[dict], None]) -> None:
        """One task per neuron on the slots; each neuron's rows are written when its task ends."""
        from ..extrapolation import neuron_rows

        jobs = [dataclasses.replace(cfg, neurons=[spec]) for spec in cfg.neurons
                if not all(r["key"] in done_keys for r in neuron_rows(cfg, spec, device=device, run_id=run_id,
                                                                        scenario=scenario))]
        if not jobs:
            return
        self._ensure_slots(device, roofline=False)

        def submit(slot: _Handle, job):
            return slot.actor.extrapolate.remote(job, str(out_dir), device, run_id, scenario, set(done_keys))

        def label(job) -> str:
            return f"extrapolation {job.neurons[0]['name']}"

        def rows(job, got: list[dict], note: str | None):
            return [(job, dict(r, requeued=note) if note else r) for r in got]

        def lost(job, reason: str, note: str | None):
            todo = [r for r in neuron_rows(job, job.neurons[0], device=device, run_id=run_id, scenario=scenario)
                    if r["key"] not in done_keys]
            extra = {"requeued": note} if note else {}
            return [(job, dict(r, status="error", reason=reason, executor="ray", **extra)) for r in todo]

        for _, row in self._schedule(jobs, submit, label, rows, lost, None):
            write_row(row)

    def close(self, kill: bool = False) -> None:
        if self._ray is None:
            return
        ray = self._ray
        live = [s for s in self._slots if not s.dead]
        # idle slots stop their workers cleanly; after an interrupt the actors are killed at once and
        # their workers die with them (`perfsuite.worker.die_with_parent`)
        try:
            refs = [] if kill else [s.actor.close.remote() for s in live]
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=30)
        except Exception:  # a lost connection or dead actors: the kills below are what matters
            pass
        for s in live:
            try:
                ray.kill(s.actor)
            except Exception:
                pass
        self._slots, self._setups = [], []
        ray.shutdown()  # stops a local instance; from a cluster, only this driver disconnects
        self._ray = None

    # ------------------------------------------------------------------------- scheduling
    def _schedule(self, items: list, submit, label, rows, lost, status) -> Iterator[tuple[Any, Any]]:
        """Hand ``items`` to idle slots and yield their rows as they finish. A slot whose actor died: on a
        dead node its item is re-queued once (at the front); otherwise, or the second time, the item
        gets `lost` rows (status error with the reason) and the sweep goes on."""
        ray = self._ray
        idle = deque(s for s in self._slots if not s.dead)
        queue: deque = deque((item, None) for item in items)   # (item, re-queue note)
        inflight: dict = {}                                      # ref -> (slot, item, note)
        done = 0
        while queue or inflight:
            while idle and queue:
                item, note = queue.popleft()
                slot = idle.popleft()
                slot.label = label(item)
                inflight[submit(slot, item)] = (slot, item, note)
            if not inflight:  # items left but no slot alive
                item, note = queue.popleft()
                done += 1
                yield from lost(item, "no Ray slot is left alive to run it (its nodes died)", note)
                continue
            if status is not None:
                where = "; ".join(f"{s.hostname}{'/gpu' + s.gpu if s.gpu else ''}: {s.label}"
                                  for s, _, _ in inflight.values())
                status(f"{done} done, {len(inflight)} running, {len(queue)} queued | {where}")
            try:
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
            except (ConnectionError, ray.exceptions.RaySystemError) as exc:  # the head or the client link is gone
                raise RuntimeError(f"lost the Ray cluster while {len(inflight)} point(s) ran ({type(exc).__name__}: "
                                   f"{str(exc).strip()[:200]}); the finished rows are kept, finish with --resume") from None
            for ref in ready:
                slot, item, note = inflight.pop(ref)
                slot.label = ""
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    slot.dead = True
                    text = str(exc).strip().splitlines()
                    why = f"{type(exc).__name__}: {text[0][:200] if text else ''}"
                    if not self._node_alive(slot.node_id):
                        if note is None:
                            queue.appendleft((item, f"node {slot.hostname} died while running it ({why}); "
                                                    "re-queued once on another slot"))
                            continue
                        reason = f"node {slot.hostname} died while running it again after a re-queue ({why})"
                    else:  # the actor died, its node lives: a crash, not re-run (a retry would hide it)
                        self._replace(slot, idle)
                        reason = f"the Ray actor running it on {slot.hostname} died ({why})"
                    done += 1
                    yield from lost(item, reason, note)
                    continue
                done += 1
                idle.append(slot)
                yield from rows(item, result, note)

    def _node_alive(self, node_id: str) -> bool:
        return any(n["NodeID"] == node_id for n in self._alive_nodes())

    def _replace(self, slot: _Handle, idle: deque) -> None:
        """A new actor on the same node for a slot whose actor died while its node lives on."""
        node = next((n for n in self._alive_nodes() if n["NodeID"] == slot.node_id), None)
        if node is None:
            return
        opts = self._slot_options(node, self._device or "cpu")
        if not opts:
            return
        actor = self._ray.remote(Slot).options(**opts[0]).remote()
        try:
            got = self._ray.get(actor.setup.remote(self._device or "cpu", False), timeout=SETUP_TIMEOUT_S)
        except Exception:  # the node cannot host a new slot: the run goes on with the others
            self._ray.kill(actor)
            return
        new = _Handle(actor, slot.node_id, slot.hostname, gpu=got["where"].get("gpu_index"))
        self._slots.append(new)
        idle.append(new)
