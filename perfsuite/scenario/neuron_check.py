"""Checking neuron parameter values by building the neuron, in bounded time and memory.

Owns: `check_values` (one neuron entry at each distinct length and layer width). The neuron's own
constructor judges the values (its ValueError names the parameter and what it expects). Building is
bounded three ways, so ``validate`` never runs out of memory or hangs:

* integer parameters are first checked against `MAX_NEURON_INT` (a ``k: 1e12`` would build a list
  of k floats even on the meta device); parameters named ``seed`` or ``*_seed`` against `MAX_SEED`;
* the neuron is built on the CPU only when it is small (T <= `BUILD_CHECK_CPU_MAX_T` and every size
  <= `BUILD_CHECK_CPU_MAX_SIZE`), else on PyTorch's ``meta`` device, which allocates nothing
  (``features: 1000000000`` costs nothing);
* each build runs with a time bound (`perfsuite.neurons.plugins.call_with_timeout`): a plugin
  constructor that hangs or calls ``sys.exit`` becomes a problem naming it.

May import: torch, `perfsuite.neurons` and the scenario's errors, schema and expand modules.
"""
from __future__ import annotations

import itertools
import re

from ..neurons import plugins
from ..neurons.plugins import CallExit, CallTimeout, build_neuron, call_with_timeout
from .errors import Problems, join
from .expand import Entry, point_params, workload_params_for
from .schema import MAX_NEURON_INT, MAX_SEED, is_int

#: the neuron is really built on the CPU up to this T (a 2048 x 2048 weight is 16 MB) ...
BUILD_CHECK_CPU_MAX_T = 2048
#: ... and while every integer size (features, k, levels, ...) is at most this; else on the meta device
BUILD_CHECK_CPU_MAX_SIZE = 4096


def check_values(pr: Problems, path: str, e: Entry, workload: str, wparams: dict) -> None:
    """Build the neuron once per distinct (seq_len, layer width): parameter values are checked by the
    neuron's own constructor."""
    if e.spec.needs_features and "features" in e.params:
        pr.add(join(path, "params.features"), e.params["features"],
               "no `features` here: it is filled from the sweep's `features` (the layer width)",
               "parameter not allowed")
        return
    if not _ints_in_bounds(pr, path, e.params):
        return
    lens = e.axes["seq_lens"] if e.spec.fixed_length else [min(e.axes["seq_lens"])]
    widths = e.axes["features"] if e.spec.needs_features else [e.axes["features"][0]]
    for T, F in itertools.product(lens, widths):
        wp = workload_params_for(workload, wparams, F)
        params = point_params(e, F, wp, workload)
        err = _build_error(e.neuron, T, params)
        if err is not None:
            bad = [k for k in e.params if re.search(rf"\b{re.escape(str(k))}=", err)]
            where = join(path, f"params.{bad[0]}") if len(bad) == 1 else join(path, "params")
            value = e.params[bad[0]] if len(bad) == 1 else dict(e.params)
            at = f" at seq_len={T}" if e.spec.fixed_length else ""
            pr.add(where, value, f"a value the neuron accepts{at}: {err}", "rejected by the neuron:")
            return


def _ints_in_bounds(pr: Problems, path: str, params: dict) -> bool:
    ok = True
    for k, v in params.items():
        if not is_int(v):
            continue
        seed = str(k) == "seed" or str(k).endswith("_seed")
        limit = MAX_SEED if seed else MAX_NEURON_INT
        if abs(v) > limit:
            what = "a seed" if seed else "a size: validation builds the neuron, and a larger one would not fit a measurement"
            pr.add(join(path, f"params.{k}"), v, f"an int of magnitude <= {limit} ({what})")
            ok = False
    return ok


def _build_device(seq_len: int, params: dict) -> str:
    sizes = [abs(v) for v in params.values() if is_int(v)]
    small = seq_len <= BUILD_CHECK_CPU_MAX_T and all(s <= BUILD_CHECK_CPU_MAX_SIZE for s in sizes)
    return "cpu" if small else "meta"


def _build_error(neuron: str, seq_len: int, params: dict) -> str | None:
    """The ValueError (or TypeError: a missing argument) message of building the neuron, else None.

    Small neurons are built on the CPU (some meta ops import torch._dynamo, seconds on a small CPU, hence
    not always meta), large ones on the ``meta`` device. A build past the time bound is reported as
    a ValueError-like message. Other exceptions are not validation problems: a plugin may fail at run
    time, and the runner records that as an error row."""
    import torch

    device = _build_device(seq_len, params)

    def build():
        with torch.device(device):
            build_neuron(neuron, backend="reference", seq_len=seq_len, params=params)

    try:
        call_with_timeout(build, plugins.PLUGIN_TIMEOUT_S)
    except CallTimeout as exc:
        return f"building {neuron} {exc} (a constructor that hangs)"
    except CallExit as exc:
        return f"building {neuron}: {exc}"
    except (ValueError, TypeError) as exc:
        return str(exc)
    except Exception:
        return None
    return None
