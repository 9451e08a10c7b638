"""What a point runs: a neuron layer on a calibrated drive, or a small spiking network.

* ``layer``: one neuron layer on a Gaussian drive ``x = scale · z``, z ~ N(0, 1) of shape [T, B, F].
  ``scale`` is calibrated (bisection in log space, a few no-grad forward passes) so that the layer fires
  near ``target_rate`` (default 0.1): neurons are compared at equal activity, and the achieved rate is
  recorded next to the scale.
* ``network``: ``layers`` blocks of Linear → neuron (F inputs, ``hidden`` units per block, default F;
  the last block ``outputs`` wide), the same for every neuron, e.g. the four-layer fully connected net
  of the PSU paper on SHD (700 inputs). The drive is calibrated so the first block fires near
  ``target_rate``, and each later block's Linear gets a gain calibrated the same way (an untrained
  net's sparse spikes would otherwise leave the deeper blocks silent); each block's rate is recorded.

Modes: ``forward`` (no grad), ``train`` (forward + backward: input gradient of a layer, parameter
gradients), ``step`` (the neuron's serial ``step`` over T, no grad; neurons without serial inference
are unsupported).

A workload does not time itself: it builds the model and input and hands the runner the call to time.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch
from torch import nn

from . import neurons
from .errors import Unsupported  # noqa: F401  (workloads raise it; plugins and callers import it from here)
from .measure.activity import activity as activity_stats
from .measure.activity import layer_rate
from .neurons import plugins
from .neurons.backends import CORE_BACKENDS
from .neurons.base import Neuron
from .neurons.spec import dtype_bytes

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "train", "step")
WORKLOADS = ("layer", "network")
DEFAULT_TARGET_RATE = 0.1
DEFAULT_LAYERS = 4
#: calibration: scale bracket, offset bracket (±), evaluations, relative tolerance on the rate, longest
#: T it looks at for neurons not tied to T (their rate settles within a few time constants)
_SCALE_RANGE = (1e-2, 1e3)
_OFFSET_MAX = 64.0
_CALIBRATION_EVALS = 16
_CALIBRATION_RTOL = 0.05
_CALIBRATION_MAX_T = 1024
_CALIBRATION_MAX_NEURONS = 4096


# ------------------------------------------------------------------------------------------ neurons
def build_neuron(point, backend: str | None = None, features: int | None = None) -> Neuron:
    """The point's neuron on ``backend`` (default the point's). ``features`` overrides the channel
    count of neurons with a feature dimension (the last block of a network may be narrower)."""
    params = dict(point.neuron_params or {})
    if features is not None and "features" in params:
        params["features"] = features
    return plugins.build_neuron(point.neuron, backend=backend or point.backend, seq_len=point.seq_len,
                                 params=params)


def workload_param(point, key: str) -> Any:
    """A workload parameter with its default (``layers``/``hidden``/``outputs`` describe a single
    layer as one block of width ``features``)."""
    wp = point.workload_params or {}
    if key == "target_rate":
        return float(wp.get("target_rate") or DEFAULT_TARGET_RATE)
    if point.workload != "network":
        return 1 if key == "layers" else point.features
    if key == "layers":
        return int(wp.get("layers") or DEFAULT_LAYERS)
    if key == "hidden":
        return int(wp.get("hidden") or point.features)
    if key == "outputs":
        return int(wp.get("outputs") or workload_param(point, "hidden"))
    raise KeyError(key)


def block_widths(point) -> tuple[list[int], list[int]]:
    """(fan-in, width) of every block: a layer is one block F -> F (no Linear); a network is
    F -> hidden, hidden -> hidden, ..., hidden -> outputs."""
    layers = workload_param(point, "layers")
    if point.workload != "network":
        return [point.features], [point.features]
    hidden, outputs = workload_param(point, "hidden"), workload_param(point, "outputs")
    widths = [hidden] * (layers - 1) + [outputs]
    return [point.features] + widths[:-1], widths


# ------------------------------------------------------------------------------ before running
def unsupported_reason(point, device: str) -> str | None:
    """Why the point cannot run on ``device`` (None when it can); checked before a worker is used.

    Raises ValueError when the neuron does not resolve (a user mistake, not a limitation)."""
    if getattr(point, "unsupported", None):
        return point.unsupported
    spec = plugins.neuron_spec(point.neuron)
    if point.backend not in CORE_BACKENDS:
        try:
            neurons.backend_impl(spec.name, point.backend)
        except ValueError as exc:
            return str(exc) if spec.name in neurons.names() else f"{point.neuron} has no {point.backend!r} backend"
        if point.backend == "triton" and device != "cuda":
            return "the triton backend needs a CUDA device (the Triton CPU interpreter is for tests only)"
    if point.mode == "step":
        if not spec.serial_inference:
            return f"{spec.name} has no serial inference (no step method; spec §7)"
        if point.backend != "eager":
            return ("step mode runs the neuron's own step method in PyTorch and is measured once, under "
                    f"backend 'eager'; backend {point.backend!r} has no step")
    if point.precision != "fp32" and point.backend == "reference":
        return "the reference backend computes in float64 whatever the precision; it is measured at fp32 only"
    return None


def point_spec(point):
    """The spec of the point's neuron as built with its parameters (costs may depend on them, e.g.
    sliding_psn's k): the module is built on the meta device, so nothing is allocated."""
    try:
        with torch.device("meta"):
            return build_neuron(point, "eager").spec
    except (ValueError, TypeError):
        raise
    except Exception:  # an op the meta device lacks: the class's spec
        return plugins.neuron_spec(point.neuron)


def _param_count(point) -> int:
    """Parameters of the neurons and linear layers, counted on the meta device (nothing allocated)."""
    fan_in, widths = block_widths(point)
    count = 0
    with torch.device("meta"):
        for w in widths:
            count += sum(p.numel() for p in build_neuron(point, "eager", features=w).parameters())
    if point.workload == "network":
        count += sum(f * w + w for f, w in zip(fan_in, widths))
    return count


def predicted_memory_bytes(point) -> int:
    """A lower bound of the point's device memory: parameters (and their gradients in train), the
    input, and per block the neuron's analytic minimum bytes for the mode (its input, spikes and what
    the backward stores)."""
    spec = point_spec(point)
    b = dtype_bytes(point.precision)
    train = point.mode == "train"
    T, B = point.seq_len, point.batch
    total = _param_count(point) * b * (2 if train else 1) + T * B * point.features * b
    for w in block_widths(point)[1]:
        total += spec.min_bytes(T, B * w, point.precision, train=train)
    return int(total)


def analytic_cost(point) -> dict:
    """The ``cost`` block: FLOPs and minimum bytes of one call from the neuron's spec, summed over the
    blocks, plus in a network the linear layers (GEMM 2·T·B·in·out FLOPs forward, twice that more
    backward; weights read once, and their gradients written in train)."""
    spec = point_spec(point)
    train = point.mode == "train"
    T, B, b = point.seq_len, point.batch, dtype_bytes(point.precision)
    fan_in, widths = block_widths(point)
    flops = sum(spec.flops(T, B * w, point.precision, train=train) for w in widths)
    nbytes = sum(spec.min_bytes(T, B * w, point.precision, train=train) for w in widths)
    if point.workload == "network":
        flops += sum(2 * T * B * f * w for f, w in zip(fan_in, widths)) * (3 if train else 1)
        nbytes += sum(f * w * b for f, w in zip(fan_in, widths)) * (2 if train else 1)
    return {"flops": float(flops), "min_bytes": float(nbytes)}


# ----------------------------------------------------------------------------------- the models
class SpikingNet(nn.Module):
    """Blocks of Linear(in, width) → neuron (`block_widths`); input [T, B, F], output [T, B, outputs]."""

    def __init__(self, point, backend: str) -> None:
        super().__init__()
        fan_in, widths = block_widths(point)
        self.linears = nn.ModuleList(nn.Linear(f, w) for f, w in zip(fan_in, widths))
        self.neurons = nn.ModuleList(build_neuron(point, backend, features=w) for w in widths)

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Spikes of every block, each [T, B, width]."""
        out = []
        for lin, neu in zip(self.linears, self.neurons):
            x = neu(lin(x))
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(x)[-1]

    def step_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The serial path: each time step through every block, each neuron through ``step``."""
        B = x.shape[1]
        states = [n.init_state((B, lin.out_features), device=x.device) for lin, n in zip(self.linears, self.neurons)]
        outs: list[list[torch.Tensor]] = [[] for _ in self.neurons]
        for t in range(x.shape[0]):
            h = x[t]
            for i, (lin, neu) in enumerate(zip(self.linears, self.neurons)):
                h, states[i] = neu.step(lin(h), states[i])
                outs[i].append(h)
        return [torch.stack(o) for o in outs]


def _step_layer(neuron: Neuron, x: torch.Tensor) -> list[torch.Tensor]:
    return [neuron.forward_serial(x)]


class Workload:
    """The model, input and timed call of one point on one device.

    ``call()`` is what gets timed; ``spikes()`` gives the spikes of every layer on the same input (for
    activity and agreement); ``reference_spikes()`` the float64 reference's on the same input and weights."""

    def __init__(self, point, device: str) -> None:
        if point.workload not in WORKLOADS:
            raise ValueError(f"workload={point.workload!r} is not known; expected one of {list(WORKLOADS)}")
        if point.mode not in MODES:
            raise ValueError(f"mode={point.mode!r} is not known; expected one of {list(MODES)}")
        if point.precision not in PRECISIONS:
            raise ValueError(f"precision={point.precision!r} is not known; expected one of {list(PRECISIONS)}")
        self.point, self.device = point, device
        self.dtype = PRECISIONS[point.precision]
        self.spec = plugins.neuron_spec(point.neuron)
        self.target_rate = workload_param(point, "target_rate")
        gen = torch.Generator().manual_seed(int(point.seed))
        torch.manual_seed(int(point.seed))
        self.model = self._build(point.backend)
        # integer-spike neurons (DSN) emit counts 0..levels; the instance's spec says which it is
        first = next(m for m in self.model.modules() if isinstance(m, Neuron))
        self.levels = int(getattr(first, "levels", 1) or 1) if first.spec.integer_spikes else 1
        z = torch.randn(point.seq_len, point.batch, point.features, generator=gen)
        self.input_scale, self.input_offset, self.layer_gains, self.layer_shifts = self._calibrate(z)
        self.model.to(device=device, dtype=self.dtype)
        self.x = (z * self.input_scale + self.input_offset).to(device=device, dtype=self.dtype)
        self._grad_out: torch.Tensor | None = None

    # --------------------------------------------------------------------------------- build
    def _build(self, backend: str) -> nn.Module:
        if self.point.workload == "network":
            return SpikingNet(self.point, backend)
        return build_neuron(self.point, backend)

    def _layers_fn(self, model: nn.Module, serial: bool) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        if isinstance(model, SpikingNet):
            return model.step_layers if serial else model.forward_layers
        return (lambda x: _step_layer(model, x)) if serial else (lambda x: [model(x)])

    # --------------------------------------------------------------------------- calibration
    def _calibrate(self, z: torch.Tensor) -> tuple[float, float, list[float], list[float]]:
        """Calibrate the drive so the layer fires near ``target_rate`` (`_fit_drive`).

        Layer: ``x = scale · z + offset``. Network: ``x = scale · z``, and each block's Linear gets a
        bias shift (and from block 2 on a gain on weight and bias) so every block fires near the target,
        not only the first (an untrained net's spikes are otherwise too weak to drive the next block;
        an offset of the input would not act as a bias through the random weights). Runs the model's own
        parameters on its eager path in fp32, on the first time steps (all T when the neuron is tied to
        T) and the first batch elements of ``z``. Returns (input scale, input offset, per-block gains,
        per-block bias shifts); the block lists are empty for a layer."""
        T = z.shape[0] if self.spec.fixed_length else min(z.shape[0], _CALIBRATION_MAX_T)
        b = max(1, min(z.shape[1], _CALIBRATION_MAX_NEURONS // max(1, z.shape[2])))
        zc = z[:T, :b].to(self.device)
        model = self.model.to(self.device)
        target, levels = self.target_rate, self.levels
        with torch.no_grad(), _eager(model):
            if not isinstance(model, SpikingNet):
                scale, offset = _fit_drive(lambda s, m: layer_rate(model(zc * s + m), levels), target)
                return scale, offset, [], []
            lin, neu = model.linears, model.neurons
            scale, shift = _fit_drive(lambda s, m: layer_rate(neu[0](lin[0](zc * s) + m), levels), target)
            lin[0].bias.add_(shift)
            gains, shifts = [1.0], [shift]
            h = neu[0](lin[0](zc * scale))
            for i in range(1, len(lin)):
                pre = lin[i](h)
                g, m = _fit_drive(lambda s, m, pre=pre, i=i: layer_rate(neu[i](pre * s + m), levels), target)
                lin[i].weight.mul_(g)
                lin[i].bias.mul_(g).add_(m)
                gains.append(g)
                shifts.append(m)
                h = neu[i](lin[i](h))
            return scale, 0.0, gains, shifts

    # ----------------------------------------------------------------------------- the call
    def call(self) -> Callable[[], object]:
        """The function the runner times (one call = one full pass of the mode over T steps)."""
        mode = self.point.mode
        model, x = self.model, self.x
        if mode == "forward":
            def fwd():
                with torch.no_grad():
                    return model(x)
            return fwd
        if mode == "step":
            layers = self._layers_fn(model, serial=True)

            def step():
                with torch.no_grad():
                    return layers(x)
            return step
        xg = x.detach().clone().requires_grad_(True)

        def train():
            model.zero_grad(set_to_none=True)
            xg.grad = None
            out = model(xg)
            if self._grad_out is None:
                self._grad_out = torch.ones_like(out)
            out.backward(self._grad_out)
            return out
        return train

    def spikes(self) -> list[torch.Tensor]:
        """Spikes of every layer [T, B, width] on the measured input, with the point's backend (the
        serial path in step mode), no grad."""
        _restart_randomness(self.model, self.point.seed)
        with torch.no_grad():
            return self._layers_fn(self.model, serial=self.point.mode == "step")(self.x)

    def reference_spikes(self) -> list[torch.Tensor]:
        """The float64 reference backend's spikes on the same input and weights."""
        ref = self._build("reference")
        ref.load_state_dict(self.model.state_dict())
        ref = ref.to(device=self.device, dtype=torch.float64)
        _restart_randomness(ref, self.point.seed)
        with torch.no_grad():
            return self._layers_fn(ref, serial=False)(self.x.to(torch.float64))

    def activity(self, layers: list[torch.Tensor]) -> dict:
        block = {**activity_stats(layers, self.levels), "input_scale": self.input_scale,
                 "input_offset": self.input_offset, "target_rate": self.target_rate}
        if self.point.workload == "network":
            block["layer_gains"] = self.layer_gains
            block["layer_bias_shifts"] = self.layer_shifts
        return block

    def neuron_steps(self) -> float:
        p = self.point
        return float(p.seq_len * p.batch * sum(block_widths(p)[1]))

    def synaptic_ops(self, layers: list[torch.Tensor]) -> tuple[float, float] | None:
        """(MACs, SOPs) of one call for the modelled energy; None for a single layer (no synapses).

        The first linear layer multiplies real-valued inputs (T·B·F·hidden MACs); every later one is
        driven by spikes, each spike (each unit of an integer count) adding one weight per target."""
        if self.point.workload != "network":
            return None
        p = self.point
        fan_in, widths = block_widths(p)
        macs = float(p.seq_len * p.batch * p.features * widths[0])
        sops = sum(float(s.detach().double().sum().item()) * w for s, w in zip(layers[:-1], widths[1:]))
        return macs, sops


def _bisect(rate: Callable[[float], float], target: float, lo: float, hi: float, log: bool) -> float:
    """The value v in [lo, hi] (bisection, in log space when ``log``) with ``rate(v)`` closest to
    ``target``; the rate is assumed to grow with v. Stops early within ``_CALIBRATION_RTOL``."""
    if log:
        lo, hi = math.log(lo), math.log(hi)
    best_err, best = math.inf, lo
    for _ in range(_CALIBRATION_EVALS):
        mid = (lo + hi) / 2
        v = math.exp(mid) if log else mid
        r = rate(v)
        if abs(r - target) < best_err:
            best_err, best = abs(r - target), v
        if abs(r - target) <= _CALIBRATION_RTOL * target:
            break
        if r < target:
            lo = mid
        else:
            hi = mid
    return best


def _fit_drive(rate: Callable[[float, float], float], target: float) -> tuple[float, float]:
    """(scale, offset) of a drive ``scale · z + offset`` giving ``rate(scale, offset)`` near ``target``.

    First the scale of a zero-mean drive; a neuron that fires above the target even at the smallest
    scale (SPSN fires with probability sigmoid(0) = 1/2 at zero input) gets unit noise and a
    calibrated negative offset instead."""
    if rate(_SCALE_RANGE[0], 0.0) <= target * (1 + _CALIBRATION_RTOL):
        return _bisect(lambda s: rate(s, 0.0), target, *_SCALE_RANGE, log=True), 0.0
    return 1.0, _bisect(lambda m: rate(1.0, m), target, -_OFFSET_MAX, _OFFSET_MAX, log=False)


def _restart_randomness(model: nn.Module, seed: int) -> None:
    """Start stochastic neurons (SPSN) from the same random state before the spikes that agreement
    compares: the global generator, and each neuron's own generator where it has one (``reseed``)."""
    torch.manual_seed(int(seed))
    for m in model.modules():
        if isinstance(m, Neuron) and hasattr(m, "reseed"):
            m.reseed()


@contextlib.contextmanager
def _eager(model: nn.Module):
    """Run every neuron of ``model`` on its eager path for a while (calibration must not compile,
    launch a kernel's first build or pay for the float64 reference)."""
    mods = [m for m in model.modules() if isinstance(m, Neuron)]
    saved = [m.backend for m in mods]
    for m in mods:
        m.backend = "eager"
    try:
        yield
    finally:
        for m, b in zip(mods, saved):
            m.backend = b
