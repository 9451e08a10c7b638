"""SpikingJelly 2.0.0 as backend ``"spikingjelly"`` for lif, plif, psn, masked_psn and sliding_psn.

The adapter builds SpikingJelly's own node once per perfsuite module (multi-step mode) with our
parameters mapped to SpikingJelly's (kernel_anchors §1, spec §1–2):

* ``reset="soft"`` ⇒ ``v_reset=None``; hard ⇒ ``v_reset=<our v_reset>``; ``tau``/``init_tau``,
  ``v_threshold``, ``decay_input``, ``detach_reset`` as they are; surrogate ``atan``/``sigmoid`` ⇒
  ``surrogate.ATan(alpha)``/``surrogate.Sigmoid(alpha)`` (``rect`` has no checked equivalent: refused).
* Learnable tensors are *shared*, not copied: the SpikingJelly node holds our Parameters (PLIF ``w``,
  PSN ``weight``, sliding PSN ``weight``/``bias``), so values stay in sync and gradients land on our
  module. PSN/masked PSN keep the bias as [T, 1]: theirs is replaced by a view of ours made at each
  call (a differentiable view, so its gradient reaches our bias too).
* Masked PSN: λ is copied from our buffer on every call (a scalar).

Which SpikingJelly implementation ran is recorded in ``module.peer_info`` (a dict the runner can store):
``library``, ``version``, ``implementation`` — for LIF/PLIF SpikingJelly's own answer from
``functional.neuron.neuron_implementation`` (``cuda`` native, ``triton`` or ``torch``; chosen by SpikingJelly
and forced with ``SJ_LIF_CUDA_IMPLEMENTATION`` / ``SJ_PLIF_CUDA_IMPLEMENTATION``), for the PSN family
``"torch"`` (SpikingJelly 2.0.0 implements them with PyTorch ops: ``addmm`` on a dense [T, T] matrix).
"""
from __future__ import annotations

import importlib.metadata

import torch
from spikingjelly.activation_based import neuron as sj_neuron  # ImportError = backend unavailable
from spikingjelly.activation_based import surrogate as sj_surrogate
from spikingjelly.activation_based.functional.neuron import neuron_implementation

from ..neurons import register_backend

VERSION = importlib.metadata.version("spikingjelly")
_IMPL_ENV = {"lif": "SJ_LIF_CUDA_IMPLEMENTATION", "plif": "SJ_PLIF_CUDA_IMPLEMENTATION"}


def _surrogate(module):
    s = module.surrogate
    if s.name == "atan":
        return sj_surrogate.ATan(alpha=s.alpha)
    if s.name == "sigmoid":
        return sj_surrogate.Sigmoid(alpha=s.alpha)
    raise ValueError(f"{module.spec.name} (spikingjelly backend): surrogate={s.name!r} has no mapped "
                     f"SpikingJelly surrogate; expected 'atan' or 'sigmoid'")


def _lif_node(module):
    kw = dict(v_threshold=module.v_threshold, v_reset=None if module.reset == "soft" else module.v_reset,
              decay_input=module.decay_input, detach_reset=module.detach_reset,
              surrogate_function=_surrogate(module), step_mode="m")
    if module.spec.name == "lif":
        return sj_neuron.LIFNode(tau=module.tau, **kw)
    node = sj_neuron.ParametricLIFNode(**kw)
    node.w = module.w  # share the learnable scalar
    return node


def _psn_node(module):
    name = module.spec.name
    if name == "psn":
        node = sj_neuron.PSN(T=module.seq_len, surrogate_function=_surrogate(module))
    elif name == "masked_psn":
        node = sj_neuron.MaskedPSN(k=module.k, T=module.seq_len, surrogate_function=_surrogate(module),
                                   step_mode="m")
    else:
        node = sj_neuron.SlidingPSN(k=module.k, surrogate_function=_surrogate(module), step_mode="m")
        node.weight, node.bias = module.weight, module.bias
        return node
    node.weight = module.weight
    del node._parameters["bias"]  # replaced by a view of ours at each call (`_node`)
    return node


def _node(module, x_seq):
    node = getattr(module, "peer_node", None)
    if node is None:
        node = _lif_node(module) if module.spec.name in _IMPL_ENV else _psn_node(module)
        # a plain attribute, not a submodule: our state_dict and .parameters() stay as they are
        object.__setattr__(module, "peer_node", node)
    if module.spec.name in ("psn", "masked_psn"):
        node.bias = module.bias.view(-1, 1)
    if module.spec.name == "masked_psn":
        node.lambda_ = float(module.lambda_)
    return node


def _implementation(name, device: torch.device) -> str:
    if name not in _IMPL_ENV:
        return "torch"
    return str(neuron_implementation(name, device)["implementation"])


def spikingjelly_backend(module, x_seq: torch.Tensor) -> torch.Tensor:
    """`register_backend` entry: run SpikingJelly's node on ``x_seq`` [T, *batch]; record what ran."""
    node = _node(module, x_seq)
    node.to(x_seq.device)
    if hasattr(node, "reset"):
        node.reset()  # clear membrane state between calls (each call is one sequence)
    object.__setattr__(module, "peer_info", {
        "library": "spikingjelly", "version": VERSION,
        "implementation": _implementation(module.spec.name, x_seq.device),
        "env": _IMPL_ENV.get(module.spec.name),
    })
    if module.spec.name in ("psn", "masked_psn", "sliding_psn"):
        # SpikingJelly's PSN family computes in the parameters' dtype: feed it that, return ours
        return node(x_seq.to(node.weight.dtype)).to(x_seq.dtype)
    return node(x_seq)


for _name in ("lif", "plif", "psn", "masked_psn", "sliding_psn"):
    register_backend(_name, "spikingjelly", spikingjelly_backend)
