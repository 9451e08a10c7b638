#!/usr/bin/env python
"""Time perfsuite's neuron backends on a GPU: forward and forward+backward at N = 32 768 neurons.

For each neuron, backend (eager, compiled, triton, spikingjelly where installed), T and dtype it prints
the median time of `triton.testing.do_bench` and the achieved bandwidth: the neuron's analytic minimum
bytes (`NeuronSpec.min_bytes`) divided by the time, also as a fraction of the device-to-device copy
bandwidth measured at the start. It measures; it asserts nothing. Needs CUDA.

    python scripts/bench_kernels.py                         # all neurons, T = 1k, 4k, 16k, 30k
    python scripts/bench_kernels.py --neurons lif --seq-lens 16384 --dtypes bf16
"""
from __future__ import annotations

import argparse
import sys

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_PARAMS = {
    "lif": dict(reset="hard", surrogate="atan"), "plif": dict(reset="hard", surrogate="atan"),
    "psn": {}, "masked_psn": dict(k=32), "sliding_psn": dict(k=32),
}
#: dense [T, T] weights above this many elements are skipped (PSN at T = 30k is 0.9 G parameters)
MAX_WEIGHT = 16384 ** 2


def copy_bandwidth(do_bench) -> float:
    """Bytes/s of a 1 GiB device-to-device copy (read + write)."""
    x = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / (ms * 1e-3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", nargs="+", default=list(DEFAULT_PARAMS))
    ap.add_argument("--backends", nargs="+", default=["eager", "compiled", "triton", "spikingjelly"])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[1024, 4096, 16384, 30000])
    ap.add_argument("--neurons-n", type=int, default=32768, help="neurons per layer (N)")
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels.py needs a CUDA GPU (none found); nothing measured", file=sys.stderr)
        return 2
    from triton.testing import do_bench

    from perfsuite import neurons

    bw = copy_bandwidth(do_bench)
    print(f"device: {torch.cuda.get_device_name()}  measured copy bandwidth: {bw / 1e9:.0f} GB/s")
    print(f"{'neuron':12} {'backend':13} {'dtype':5} {'T':>6} {'mode':5} {'ms':>10} {'GB/s':>8} {'of copy':>8}")
    for name in args.neurons:
        for T in args.seq_lens:
            fixed = neurons.info(name).fixed_length
            if fixed and T * T > MAX_WEIGHT:
                print(f"{name:12} {'-':13} {'-':5} {T:6} skipped: [T, T] weight too large")
                continue
            for dt in args.dtypes:
                for backend in args.backends:
                    try:
                        m = neurons.build(name, backend=backend, seq_len=T if fixed else None,
                                          **DEFAULT_PARAMS.get(name, {})).cuda()
                    except ValueError as e:  # backend not installed / not available
                        print(f"{name:12} {backend:13} {dt:5} {T:6} unavailable: {e}")
                        continue
                    x = (torch.randn(T, args.neurons_n, device="cuda") + 0.5).to(DTYPES[dt])
                    xg = x.clone().requires_grad_(True)
                    runs = {"fwd": lambda: m(x), "train": lambda: m(xg).sum().backward()}
                    for mode, fn in runs.items():
                        try:
                            with torch.no_grad() if mode == "fwd" else torch.enable_grad():
                                ms = do_bench(fn)
                        except torch.cuda.OutOfMemoryError:
                            print(f"{name:12} {backend:13} {dt:5} {T:6} {mode:5} out of memory")
                            torch.cuda.empty_cache()
                            continue
                        nbytes = m.spec.min_bytes(T, args.neurons_n, dt, train=mode == "train")
                        gbs = nbytes / (ms * 1e-3)
                        print(f"{name:12} {backend:13} {dt:5} {T:6} {mode:5} {ms:10.3f} {gbs / 1e9:8.0f} "
                              f"{gbs / bw:8.1%}")
                    del m, x, xg
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
