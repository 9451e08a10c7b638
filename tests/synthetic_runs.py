"""Synthetic run folders with known answers, for the report, analysis and regression-gate tests.

A synthetic point's time follows ``median_ms = a[neuron] · backend_factor[backend] · mode_factor[mode] ·
T^b[neuron]`` times log-normal point noise (``noise`` = its sigma in log space), so a test knows the
exponent ``b`` that an analysis must recover. Raw samples scatter a little around each point's median.
Failed points, missing metric blocks and extrapolation rows can be mixed in on demand.

Nothing here is a measurement: the numbers are made up by construction and only exercise the code.

    from tests.synthetic_runs import make_run
    run = make_run(tmp_path / "run", neurons=("lif", "psn", "dsn"), exponent={"psn": 2.0}, noise=0.05)
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from perfsuite.results import ENV_FILE, RESULTS_FILE, SCHEMA_VERSION, append_row, point_key

#: default exponents b and prefactors a (ms at T=1) per neuron: O(T) serial/scan neurons, O(T²) GEMM ones
DEFAULT_EXPONENT = {"lif": 1.0, "plif": 1.0, "psn": 2.0, "masked_psn": 2.0, "sliding_psn": 1.0,
                    "spsn": 1.1, "psu": 2.0, "ipsu": 2.0, "rpsu": 2.0, "dsn": 1.0}
DEFAULT_PREFACTOR = {"lif": 0.05, "plif": 0.05, "psn": 0.0005, "masked_psn": 0.0006, "sliding_psn": 0.004,
                     "spsn": 0.003, "psu": 0.001, "ipsu": 0.0012, "rpsu": 0.0012, "dsn": 0.006}
#: time multipliers of the backends and modes (compiled/triton faster than eager, train ≈ 3× forward)
BACKEND_FACTOR = {"eager": 1.0, "compiled": 0.6, "triton": 0.4, "spikingjelly": 0.8, "reference": 20.0}
MODE_FACTOR = {"forward": 1.0, "train": 3.0, "step": 5.0}
#: firing rates per neuron (made up; DSN lowest so the firing-rate claim has something to read)
FIRING_RATE = {"lif": 0.15, "plif": 0.16, "psn": 0.21, "masked_psn": 0.2, "sliding_psn": 0.18,
               "spsn": 0.3, "psu": 0.25, "ipsu": 0.22, "rpsu": 0.22, "dsn": 0.12}


def _per_neuron(value: float | Mapping[str, float] | None, default: Mapping[str, float], neuron: str,
                fallback: float) -> float:
    if value is None:
        return default.get(neuron, fallback)
    if isinstance(value, Mapping):
        return value.get(neuron, default.get(neuron, fallback))
    return float(value)


def default_env(run_id: str = "synthetic", *, gpu: str = "Synthetic GPU", roofline: bool = True,
                command: str | None = "perfsuite run scenarios/synthetic.yaml") -> dict[str, Any]:
    """An env.json body shaped like the runner's; ``roofline=False`` leaves the measured roofline out."""
    env: dict[str, Any] = {
        "run_id": run_id,
        "gpu": {"name": gpu, "memory_bytes": 80 * 2**30},
        "device": "cuda",
        "torch": "0.0-synthetic",
        "triton": "0.0-synthetic",
        "commit": "0000000",
        "python": "3.11",
    }
    if command is not None:
        env["command"] = command
    if roofline:
        env["roofline"] = {"copy_gbps": 2000.0,
                           "matmul_tflops": {"fp32": 50.0, "bf16": 400.0, "fp16": 400.0}}
    return env


def time_ms(neuron: str, backend: str, mode: str, seq_len: int, *, exponent=None, prefactor=None,
            backend_factor: Mapping[str, float] | None = None) -> float:
    """The noise-free synthetic time of a point (what a perfect fit recovers)."""
    a = _per_neuron(prefactor, DEFAULT_PREFACTOR, neuron, 0.01)
    b = _per_neuron(exponent, DEFAULT_EXPONENT, neuron, 1.0)
    factor = {**BACKEND_FACTOR, **(backend_factor or {})}.get(backend, 1.0)
    return a * factor * MODE_FACTOR.get(mode, 1.0) * seq_len ** b


def make_rows(*, neurons: Iterable[str] = ("lif", "psn", "dsn"), backends: Iterable[str] = ("eager", "compiled"),
              seq_lens: Iterable[int] = (64, 128, 256, 512, 1024, 2048), modes: Iterable[str] = ("forward", "train"),
              precisions: Iterable[str] = ("fp32",), batch: int = 8, features: int = 128,
              exponent: float | Mapping[str, float] | None = None,
              prefactor: float | Mapping[str, float] | None = None,
              backend_factor: Mapping[str, float] | None = None, noise: float = 0.03, seed: int = 0,
              run_id: str = "synthetic", failures: Mapping[tuple, tuple[str, str]] | None = None,
              missing: Iterable[str] = (), samples: int = 15, workload: str = "layer",
              extrapolation: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of a synthetic run.

    ``backend_factor`` overrides `BACKEND_FACTOR` (time multiplier per backend).
    ``failures`` maps ``(neuron, backend, mode, seq_len)`` to ``(status, reason)`` for points that did not
    run (their metric blocks are null). ``missing`` names metric blocks left null in every row, each with
    a ``<block>_reason`` (e.g. ``("energy", "memory")``). ``extrapolation`` adds extrapolation rows:
    ``{"neurons": [...], "train_len": 64, "eval_lens": [...], "growth": {neuron: loss growth per
    doubling}, "unsupported": {neuron: reason}, "nonfinite": [neurons whose loss is not finite beyond
    the training length]}``, shaped like `perfsuite.extrapolation`'s rows.
    """
    rng = np.random.default_rng(seed)
    failures = dict(failures or {})
    missing = set(missing)
    rows: list[dict[str, Any]] = []
    neurons_n = batch * features
    for precision in precisions:
        bpe = 4 if precision == "fp32" else 2
        for mode in modes:
            for neuron in neurons:
                for backend in backends:
                    for T in seq_lens:
                        fields = dict(kind="bench", neuron=neuron, neuron_params={}, backend=backend, seq_len=T,
                                      batch=batch, features=features, precision=precision, mode=mode,
                                      workload=workload, device="cuda")
                        row: dict[str, Any] = {"schema": SCHEMA_VERSION, "run_id": run_id,
                                               "scenario": "synthetic", "key": point_key(fields), **fields,
                                               "neurons": neurons_n, "status": "ok", "reason": None,
                                               "started_at": "2025-01-01T00:00:00+00:00"}
                        fail = failures.get((neuron, backend, mode, T))
                        blocks = ("time", "memory", "energy", "modelled_energy", "activity", "agreement", "cost")
                        if fail is not None:
                            row["status"], row["reason"] = fail
                            for blk in blocks:
                                row[blk] = None
                                row[f"{blk}_reason"] = f"point {fail[0]}"
                            row["duration_s"] = 0.1
                            rows.append(row)
                            continue
                        true = time_ms(neuron, backend, mode, T, exponent=exponent, prefactor=prefactor,
                                       backend_factor=backend_factor)
                        median = true * math.exp(rng.normal(0.0, noise)) if noise > 0 else true
                        s = median * np.exp(rng.normal(0.0, 0.01, size=samples))
                        s = s * (median / float(np.median(s)))  # pin the samples' median to the point's
                        lo, hi = np.percentile(s, [2.5, 97.5])
                        q1, q3 = np.percentile(s, [25, 75])
                        row["time"] = {"samples_ms": [float(v) for v in s], "median_ms": float(np.median(s)),
                                       "mean_ms": float(s.mean()), "iqr_ms": float(q3 - q1),
                                       "ci95_ms": [float(lo), float(hi)], "n": samples,
                                       "cold_start_ms": float(median * 50), "timer": "cuda_event"}
                        per_el = bpe * T * neurons_n
                        row["memory"] = {"peak_allocated_bytes": int(per_el * (3 if mode == "train" else 2)),
                                         "peak_reserved_bytes": int(per_el * 4), "method": "cuda_allocator"}
                        calls_energy = 250.0 * median / 1e3  # 250 W while busy
                        row["energy"] = {"joules_per_call": calls_energy,
                                         "joules_per_gneuron_step": calls_energy / (T * neurons_n) * 1e9,
                                         "idle_watts": 60.0, "window_s": 1.0, "calls": 100}
                        rate = FIRING_RATE.get(neuron, 0.2)
                        sops = rate * T * neurons_n * 128
                        row["modelled_energy"] = {"joules_per_call": sops * 0.9e-12, "sops": sops, "macs": 0,
                                                  "source": "synthetic: 0.9 pJ per synaptic operation"}
                        row["activity"] = {"firing_rate": rate, "per_layer": [rate],
                                           "silent_fraction": 0.05, "saturated_fraction": 0.0,
                                           "input_scale": 1.0, "target_rate": None}
                        row["agreement"] = None
                        row["agreement_reason"] = "synthetic run: no reference comparison"
                        quadratic = DEFAULT_EXPONENT.get(neuron, 1.0) >= 2  # a T×T GEMM, else a scan
                        flops = 2.0 * T * T * neurons_n if quadratic else 4.0 * T * neurons_n
                        row["cost"] = {"flops": flops * (3 if mode == "train" else 1),
                                       "min_bytes": float(2 * per_el * (2 if mode == "train" else 1))}
                        for blk in missing:
                            row[blk] = None
                            row[f"{blk}_reason"] = f"synthetic run: {blk} not measured"
                        row["duration_s"] = float(median * samples / 1e3 + 0.5)
                        rows.append(row)
    if extrapolation:
        train_len = int(extrapolation.get("train_len", 64))
        growth = extrapolation.get("growth", {})
        unsupported = extrapolation.get("unsupported", {})
        nonfinite = set(extrapolation.get("nonfinite", ()))
        for neuron in extrapolation.get("neurons", ()):
            for L in extrapolation.get("eval_lens", (64, 128, 256, 512)):
                g = float(growth.get(neuron, 0.0))
                loss = 0.7 + g * max(0.0, math.log2(L / train_len)) + rng.normal(0.0, 0.005)
                # the fields perfsuite.extrapolation writes: no seq_len/batch/mode, no time block
                fields = {"kind": "extrapolation", "neuron": neuron, "neuron_params": {}, "backend": "eager",
                          "task": "markov", "train_len": train_len, "precision": "fp32", "device": "cuda",
                          "seed": seed, "hidden": 32, "layers": 2, "steps": 100, "eval_len": L}
                row = {"schema": SCHEMA_VERSION, "run_id": run_id, "scenario": "synthetic", **fields,
                       "key": point_key(fields), "status": "ok", "reason": None, "loss": loss,
                       "accuracy": max(0.0, 0.9 - (loss - 0.7)), "loss_last10": loss, "accuracy_last10": None,
                       "optimal_loss": 0.69, "optimal_loss_last10": 0.69, "baseline_loss": 1.1,
                       "excess_loss": loss - 0.69, "finite": True, "policy": "native", "policy_reason": None,
                       "duration_s": 1.0}
                if neuron in unsupported:
                    row.update(status="unsupported", reason=unsupported[neuron], policy="unsupported", loss=None,
                               loss_last10=None, accuracy=None, excess_loss=None, finite=None)
                elif neuron in nonfinite and L > train_len:
                    row.update(reason="non-finite loss (training or evaluation)", loss=None, loss_last10=None,
                               accuracy=None, excess_loss=None, finite=False)
                rows.append(row)
    return rows


def make_run(directory: str | Path, *, env: Mapping[str, Any] | None = None, run_id: str | None = None,
             **kwargs: Any) -> Path:
    """Write a synthetic run folder (``env.json`` + ``results.jsonl``) and return its path.

    Keyword arguments go to `make_rows` (neurons, backends, seq_lens, modes, precisions, exponent,
    prefactor, noise, seed, failures, missing, extrapolation, ...). ``env=None`` writes `default_env`;
    ``env={}`` writes no env.json at all.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    run_id = run_id or d.name
    if env is None:
        env = default_env(run_id)
    if env:
        (d / ENV_FILE).write_text(json.dumps(dict(env), indent=2), encoding="utf-8")
    path = d / RESULTS_FILE
    if path.exists():
        path.unlink()
    for row in make_rows(run_id=run_id, **kwargs):
        append_row(path, row)
    return d
