"""The `Neuron` module: holds parameters, checks inputs and dispatches to a backend.

A neuron family module (lif.py, psn.py, ...) writes the math as functions and subclasses `Neuron` with:

* ``forward_reference(x)``: float64 serial loop or defining formula, the oracle (input already float64);
* ``forward_eager(x)``: the parallel formulation in PyTorch ops;
* optionally ``forward_compiled(x)`` when ``torch.compile(forward_eager)`` would not compile in
  bounded time (LIF: a Python loop over T), and ``init_state`` / ``step`` for serial inference.

Other backends (``triton``, peers) are functions ``fn(module, x) -> spikes`` registered in
the backend table `perfsuite.neurons.backends` under (neuron name, backend name). This module imports
that table, never the registry of neuron classes (which imports this module).
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import nn

from .backends import backend_impl
from .spec import NeuronSpec

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
#: torch.compile backend of the `compiled` backend. Inductor by default; the CPU test suite sets
#: PERFSUITE_COMPILE_BACKEND=aot_eager for most tests because Inductor's C++ builds take tens of
#: seconds per graph on a 2-core machine (a marked test still runs Inductor itself).
COMPILE_BACKEND = os.environ.get("PERFSUITE_COMPILE_BACKEND", "inductor")


def compile_fn(fn):
    """`torch.compile` with perfsuite's settings: static shapes, the configured backend.

    Every module instance and input shape is a new guard set on the same code object. Past Dynamo's
    recompile limit (8) torch would silently run the eager code instead, and a "compiled" timing would be
    an eager one; perfsuite raises the limit and makes hitting it an error rather than a silent fallback."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 4096)
    dynamo_config.fail_on_recompile_limit_hit = True
    return torch.compile(fn, dynamic=False, backend=COMPILE_BACKEND)


class Neuron(nn.Module):
    """Base class of every perfsuite neuron. Input ``x_seq`` is ``[T, *batch]``; output spikes alike."""

    spec: ClassVar[NeuronSpec]

    def __init__(self, *, backend: str = "eager", seq_len: int | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.seq_len = seq_len
        self._compiled_fn = None

    # ----------------------------------------------------------------- checks
    def check_input(self, x_seq: torch.Tensor) -> None:
        name = self.spec.name
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"{name}: x_seq must be a torch.Tensor [T, *batch], got {type(x_seq).__name__}")
        if x_seq.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name}: x_seq dtype {x_seq.dtype} is not supported; expected fp32, bf16, fp16 or fp64")
        if x_seq.dim() < 1 or x_seq.shape[0] < 1:
            raise ValueError(f"{name}: x_seq must be [T, *batch] with T >= 1, got shape {tuple(x_seq.shape)}")
        if self.spec.fixed_length and x_seq.shape[0] != self.seq_len:
            raise ValueError(
                f"{name} was built for seq_len={self.seq_len} (its weights are [T, T]); "
                f"got an input with T={x_seq.shape[0]}. Build it again with seq_len={x_seq.shape[0]}."
            )

    # --------------------------------------------------------------- dispatch
    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.check_input(x_seq)
        if self.backend == "eager":
            return self.forward_eager(x_seq)
        if self.backend == "reference":
            return self.forward_reference(x_seq.to(torch.float64)).to(x_seq.dtype)
        if self.backend == "compiled":
            return self.forward_compiled(x_seq)
        return backend_impl(self.spec.name, self.backend)(self, x_seq)

    def forward_reference(self, x_seq: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_eager(self, x_seq: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_compiled(self, x_seq: torch.Tensor) -> torch.Tensor:
        """`torch.compile` of the eager path (no Python loop over T there, so compile time is bounded)."""
        if self._compiled_fn is None:
            self._compiled_fn = compile_fn(self.forward_eager)
        return self._compiled_fn(x_seq)

    # ------------------------------------------------------- serial inference
    def init_state(self, batch_shape: tuple[int, ...] | torch.Size, *, device=None,
                   dtype: torch.dtype = torch.float32) -> Any:
        raise NotImplementedError(f"{self.spec.name} has no serial inference (spec §7)")

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError(f"{self.spec.name} has no serial inference (spec §7)")

    def forward_serial(self, x_seq: torch.Tensor, state_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Run ``step`` over time (state in ``state_dtype``): equals ``forward`` for every serial-capable
        neuron."""
        self.check_input(x_seq)
        state = self.init_state(x_seq.shape[1:], device=x_seq.device, dtype=state_dtype)
        out = []
        for t in range(x_seq.shape[0]):
            s_t, state = self.step(x_seq[t], state)
            out.append(s_t)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}" + (f", seq_len={self.seq_len}" if self.seq_len else "")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """State and accumulation dtype: fp32 for half inputs, the input dtype otherwise (fp32, fp64)."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def check_param(neuron: str, param: str, value: Any, ok: bool, expected: str) -> None:
    """Raise `ValueError` naming the neuron, the parameter, its value and what is expected."""
    if not ok:
        raise ValueError(f"{neuron}: {param}={value!r} is invalid; expected {expected}")


def check_choice(neuron: str, param: str, value: Any, choices) -> None:
    check_param(neuron, param, value, value in tuple(choices), f"one of {list(choices)}")


def check_number(neuron: str, param: str, value: Any, *, gt: float | None = None, ge: float | None = None) -> float:
    """Validate a real number (not bool) with an optional lower bound; return it as float."""
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if gt is not None:
        check_param(neuron, param, value, is_num and value > gt, f"a number > {gt}")
    elif ge is not None:
        check_param(neuron, param, value, is_num and value >= ge, f"a number >= {ge}")
    else:
        check_param(neuron, param, value, is_num, "a number")
    return float(value)


def check_int(neuron: str, param: str, value: Any, *, ge: int = 1) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= ge
    check_param(neuron, param, value, ok, f"an int >= {ge}")
    return int(value)
