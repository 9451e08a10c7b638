"""Extrapolation accuracy: train every neuron at ``train_len``, evaluate at each of ``eval_lens``.

For each neuron of the block the same `SpikingModel` is trained with AdamW for ``steps`` steps on fresh
sequences of the task, its weights saved under ``<run>/weights/``, then evaluated on fresh sequences at every
evaluation length. A row (kind ``extrapolation``, see `perfsuite.results`) per (neuron, eval_len) holds the
mean loss and accuracy over all positions and over the last 10 % of positions, the optimal loss of the
Bayes predictor on the very same sequences, the excess loss over it, the marginal baseline, whether every
value stayed finite, and the length policy used. Serial-capable neurons are also evaluated step by step at
``serial_check_len`` and the row records the largest logit difference to the parallel evaluation.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import neurons
from .results import SCHEMA_VERSION, point_key
from .tasks import make_task
from .tasks.model import SpikingModel


@dataclass
class ExtrapolationConfig:
    task: str = "markov_lm"
    task_params: dict = field(default_factory=dict)
    train_len: int = 2048
    eval_lens: list = field(default_factory=lambda: [1024, 2048, 4096, 8192, 16384, 30000])
    steps: int = 300
    batch: int = 16
    eval_batch: int = 8
    hidden: int = 64
    layers: int = 2
    lr: float = 3e-3
    weight_decay: float = 0.01
    precision: str = "fp32"
    backend: str = "eager"
    seed: int = 0
    serial_check_len: int = 64
    neurons: list = field(default_factory=lambda: [{"name": n} for n in neurons.names()])

    @classmethod
    def from_block(cls, block: dict) -> ExtrapolationConfig:
        """From a scenario's validated ``extrapolation:`` block (unknown keys raise ValueError)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(block) - known)
        if unknown:
            raise ValueError(f"extrapolation: unknown key(s) {unknown}; expected some of {sorted(known)}")
        cfg = cls(**block)
        cfg.neurons = [n if isinstance(n, dict) else {"name": n} for n in cfg.neurons]
        return cfg


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device, enabled=False)
    return torch.autocast(device_type=device, dtype=_AUTOCAST[precision])


def _token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy [T, B] in fp32."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def train_model(cfg: ExtrapolationConfig, neuron: str, params: dict, task, device: str):
    """Train one model; returns (model, info dict with final loss, time and finiteness)."""
    torch.manual_seed(cfg.seed)
    model = SpikingModel(neuron, params, input_dim=task.input_dim, hidden=cfg.hidden, layers=cfg.layers,
                         num_classes=task.num_classes, train_len=cfg.train_len, backend=cfg.backend).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    masked = [c for c in model.cells if hasattr(c, "set_lambda")]
    start, last, finite = time.perf_counter(), float("nan"), True
    for step in range(cfg.steps):
        if masked:  # the PSN paper's progressive mask, with steps as epochs (spec §2.2)
            from .neurons.psn import masked_psn_lambda

            for c in masked:
                c.set_lambda(masked_psn_lambda(step, cfg.steps) if cfg.steps > 1 else 1.0)
        x, y = task.sample(cfg.batch, cfg.train_len, gen)
        with _autocast(device, cfg.precision):
            loss = _token_loss(model(task.encode(x).to(device)), y.to(device)).mean()
        if not torch.isfinite(loss):
            finite = False
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = loss.item()
    for c in masked:
        c.set_lambda(1.0)
    return model, {"train_loss": _finite(last), "train_time_s": time.perf_counter() - start,
                   "train_finite": finite, "train_steps": cfg.steps}


@torch.no_grad()
def evaluate(model: SpikingModel, task, eval_len: int, cfg: ExtrapolationConfig, device: str) -> dict:
    """Loss/accuracy over all positions and the last 10 %, against the Bayes optimum on the same data."""
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 + eval_len)  # fresh, never the training data
    x, y = task.sample(cfg.eval_batch, eval_len, gen)
    model.eval()
    with _autocast(device, cfg.precision):
        logits = model(task.encode(x).to(device))
    model.train()
    loss = _token_loss(logits, y.to(device)).double().cpu()
    correct = (logits.argmax(-1).cpu() == y).double()
    optimum = task.bayes_loss(x, y)
    tail = slice(eval_len - max(1, eval_len // 10), eval_len)
    finite = bool(torch.isfinite(logits).all())
    mean_loss = loss.mean().item() if finite else float("nan")
    out = {
        "loss": _finite(mean_loss),
        "accuracy": correct.mean().item(),
        "loss_last10": _finite(loss[tail].mean().item()) if finite else None,
        "accuracy_last10": correct[tail].mean().item(),
        "optimal_loss": optimum.mean().item(),
        "optimal_loss_last10": optimum[tail].mean().item(),
        "baseline_loss": task.baseline_loss(),
        "finite": finite,
    }
    out["excess_loss"] = None if out["loss"] is None else out["loss"] - out["optimal_loss"]
    return out


#: largest |logit difference| between step-by-step and parallel evaluation (float64) that counts as agreement
SERIAL_TOLERANCE = 1e-6


@torch.no_grad()
def serial_agreement(model: SpikingModel, task, cfg: ExtrapolationConfig, device: str) -> dict:
    """Step-by-step vs parallel evaluation of the trained model at serial_check_len, in float64 (so a
    disagreement is a difference of formulation, not a spike flipped by rounding): the largest |logit
    difference| and whether it is within `SERIAL_TOLERANCE`."""
    if not all(c.spec.serial_inference for c in model.cells):
        return {"serial_check": None, "serial_check_reason": f"{model.neuron} has no serial inference"}
    if model.neuron == "spsn":
        return {"serial_check": None, "serial_check_reason": "spsn spikes are random draws: step and "
                "parallel evaluation sample different spikes"}
    L = min(cfg.serial_check_len, cfg.train_len)
    x, _ = task.sample(2, L, torch.Generator().manual_seed(cfg.seed + 7))
    m64 = copy.deepcopy(model).double()
    h = task.encode(x).to(device=device, dtype=torch.float64)
    diff = (m64(h) - m64(h, serial=True)).abs().max().item()
    if not math.isfinite(diff):
        return {"serial_check": None, "serial_check_reason": "the trained model's logits are not finite"}
    return {"serial_check": diff, "serial_check_len": L, "serial_agrees": diff <= SERIAL_TOLERANCE}


def neuron_rows(cfg: ExtrapolationConfig, spec: dict, *, device: str, run_id: str, scenario: str) -> list[dict]:
    """The rows (without results) one neuron of ``cfg`` produces: one per evaluation length, with its key."""
    name, params = spec["name"], dict(spec.get("params", {}))
    base = {"schema": SCHEMA_VERSION, "kind": "extrapolation", "run_id": run_id, "scenario": scenario,
            "neuron": name, "neuron_params": params, "backend": cfg.backend, "task": cfg.task,
            "train_len": cfg.train_len, "precision": cfg.precision, "device": device, "seed": cfg.seed,
            "hidden": cfg.hidden, "layers": cfg.layers, "steps": cfg.steps}
    rows = [dict(base, eval_len=L) for L in cfg.eval_lens]
    for r in rows:
        r["key"] = point_key(r)
    return rows


def run_extrapolation(cfg: ExtrapolationConfig, out_dir: Path, *, device: str, run_id: str, scenario: str,
                      write_row: Callable[[dict], None], done_keys: set | None = None) -> int:
    """Train and evaluate every neuron of ``cfg``; each row goes to ``write_row`` as soon as it exists.
    Returns the number of rows written. A neuron that raises gives error rows and the loop goes on."""
    task = make_task(cfg.task, **cfg.task_params)
    weights = Path(out_dir) / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    done_keys = done_keys or set()
    written = 0
    for spec in cfg.neurons:
        name, params = spec["name"], dict(spec.get("params", {}))
        rows = neuron_rows(cfg, spec, device=device, run_id=run_id, scenario=scenario)
        if all(r["key"] in done_keys for r in rows):
            continue
        try:
            model, info = train_model(cfg, name, params, task, device)
            torch.save({"config": asdict(cfg), "neuron": name, "params": params, "state_dict": model.state_dict()},
                       weights / f"{name}-{rows[0]['key'].split('#')[1]}.pt")
            common = dict(info, policy=model.policy, policy_reason=model.policy_reason or None)
            if model.policy == "unsupported":
                for r in rows:
                    r.update(common, status="unsupported", reason=model.policy_reason)
            else:
                common.update(serial_agreement(model, task, cfg, device))
                for r in rows:
                    if r["key"] in done_keys:
                        continue
                    t0 = time.perf_counter()
                    try:
                        r.update(common, **evaluate(model, task, r["eval_len"], cfg, device))
                        ok = r["finite"] and info["train_finite"]
                        r.update(status="ok", reason=None if ok else "non-finite loss (training or evaluation)")
                        if common.get("serial_agrees") is False:
                            r.update(status="error", reason=(
                                "step-by-step evaluation disagrees with the parallel one: max |logit difference| "
                                f"{common['serial_check']:.3g} > {SERIAL_TOLERANCE:g} at T={common['serial_check_len']}"))
                    except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - GPU only
                        r.update(common, status="oom", reason=str(exc).splitlines()[0])
                    except Exception as exc:  # noqa: BLE001 - a failing neuron must not end the sweep
                        r.update(common, status="error", reason=f"{type(exc).__name__}: {exc}")
                    r["duration_s"] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001
            for r in rows:
                r.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        for r in rows:
            if r["key"] not in done_keys:
                write_row(r)
                written += 1
    return written


def load_model(path: str | Path, device: str = "cpu") -> tuple[SpikingModel, ExtrapolationConfig]:
    """Load saved weights so evaluation can be repeated or extended to other lengths."""
    blob = torch.load(path, map_location=device, weights_only=False)
    cfg = ExtrapolationConfig(**blob["config"])
    task = make_task(cfg.task, **cfg.task_params)
    model = SpikingModel(blob["neuron"], blob["params"], input_dim=task.input_dim, hidden=cfg.hidden,
                         layers=cfg.layers, num_classes=task.num_classes, train_len=cfg.train_len,
                         backend=cfg.backend).to(device)
    model.load_state_dict(blob["state_dict"])
    return model, cfg


__all__ = ["ExtrapolationConfig", "evaluate", "load_model", "run_extrapolation", "serial_agreement", "train_model"]
