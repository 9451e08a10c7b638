"""One pytest-benchmark micro-benchmark per neuron × backend × mode, on the workload the runner times.

Sizes: ``PERFSUITE_BENCH_SIZE=tiny`` (the default without CUDA: T=16, 1×8 neurons, seconds on a CPU,
a check that every benchmark runs, not a measurement) or ``real`` (the default with CUDA: T=4096, 4×256
neurons, the shape of ``scenarios/ci_gpu.yaml``). ``PERFSUITE_BENCH_ROUNDS`` sets the timed rounds.

The float64 ``reference`` backend is left out: it is the tests' oracle, slow on purpose. Each timed
call synchronises CUDA, since pytest-benchmark reads a host clock.

    pytest tests/benchmarks --benchmark-autosave                     # store a run
    pytest tests/benchmarks --benchmark-compare --benchmark-compare-fail=median:10%
"""
from __future__ import annotations

import os

import pytest
import torch

from perfsuite import neurons
from perfsuite.scenario import scenario_from_dict
from perfsuite.workloads import Workload

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIZES = {"tiny": {"seq_lens": [16], "batch": [1], "features": [8]},
         "real": {"seq_lens": [4096], "batch": [4], "features": [256]}}
SIZE = os.environ.get("PERFSUITE_BENCH_SIZE", "real" if DEVICE == "cuda" else "tiny")
if SIZE not in SIZES:
    raise ValueError(f"PERFSUITE_BENCH_SIZE={SIZE!r} is invalid; expected one of {list(SIZES)}")
ROUNDS = int(os.environ.get("PERFSUITE_BENCH_ROUNDS", "30" if SIZE == "real" else "3"))
BACKENDS = sorted({b for n in neurons.names() for b in neurons.backends_of(n)} - {"reference"})
#: parameters without a default (the order k of the masked and sliding PSN), as in the scenarios
REQUIRED = {"masked_psn": {"k": 4 if SIZE == "tiny" else 32}, "sliding_psn": {"k": 4 if SIZE == "tiny" else 32}}


def _points():
    sc = scenario_from_dict({
        "name": f"bench_{SIZE}", "device": DEVICE, "seed": 0,
        "neurons": [{"name": n, "params": REQUIRED.get(n, {})} for n in neurons.names()],
        "backends": BACKENDS, "precisions": ["fp32"], "modes": ["forward", "train", "step"],
        "metrics": ["time"], **SIZES[SIZE]}, path="tests/benchmarks")
    return sc.points()


POINTS = _points()


@pytest.mark.benchmark
@pytest.mark.parametrize("point", POINTS, ids=[f"{p.neuron}-{p.backend}-{p.mode}" for p in POINTS])
def test_neuron(benchmark, point):
    if point.unsupported:
        pytest.skip(point.unsupported)
    if point.backend not in neurons.backends_of(point.neuron):
        pytest.skip(f"backend {point.backend!r} not available for {point.neuron} here")
    fn = Workload(point, DEVICE).call()
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)

    def timed():
        out = fn()
        sync()
        return out

    benchmark.group = f"{point.neuron}-{point.mode}"
    benchmark.extra_info.update(key=point.key, seq_len=point.seq_len, neurons=point.neurons, device=DEVICE)
    out = benchmark.pedantic(timed, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert out is not None
