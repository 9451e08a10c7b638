#!/usr/bin/env python
"""Time perfsuite's neuron backends on a GPU: forward and forward+backward at N = 32 768 neurons.

For each neuron, backend (eager, compiled, triton, spikingjelly where installed), T and dtype it prints
the median time of `triton.testing.do_bench` and the achieved bandwidth: the neuron's analytic minimum
bytes (`NeuronSpec.min_bytes`) divided by the time, also as a fraction of the device-to-device copy
bandwidth measured at the start. It measures; it asserts nothing. Needs CUDA.

    python scripts/bench_kernels.py                         # all neurons, T = 1k, 4k, 16k, 30k
    python scripts/bench_kernels.py --neurons lif --seq-lens 16384 --dtypes bf16
    python scripts/bench_kernels.py --tune                  # pick launch tiles, write kernels/tuned.json

--tune times every statically checked candidate tile of each Triton kernel (`perfsuite.kernels.tiles`)
on this GPU, through the neuron that launches it (forward kernels: inference forward; backward kernels:
forward + backward), and writes the fastest per kernel and dtype to perfsuite/kernels/tuned.json under
this GPU's name, with every candidate's time. `launch_config` reads it; a GPU without an entry runs the
defaults.
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


#: tiled kernel -> (neuron that launches it, its parameters, T, timed mode)
TUNE_VIA = {
    "lif_fwd": ("lif", {}, 16384, "fwd"), "lif_bwd": ("lif", {}, 16384, "train"),
    "scan_fwd": ("spsn", {}, 16384, "fwd"), "scan_bwd": ("spsn", {}, 16384, "train"),
    "dsn_fwd": ("dsn", {"features": 512}, 16384, "fwd"), "dsn_bwd": ("dsn", {"features": 512}, 16384, "train"),
    "psu_fwd": ("psu", {}, 4096, "fwd"), "psu_bwd": ("psu", {}, 4096, "train"),
    "conv": ("sliding_psn", {"k": 32}, 16384, "fwd"), "conv_wgrad": ("sliding_psn", {"k": 32}, 16384, "train"),
    "mix_fire": ("psn", {}, 4096, "fwd"), "mix_grad_x": ("psn", {}, 4096, "train"),
    "mix_grad_w": ("psn", {}, 4096, "train"),
}


def tune(dtypes: list[str], n: int, do_bench) -> int:
    """Time each candidate tile in place of its kernel's default; write the winners to tuned.json."""
    import json
    from dataclasses import astuple

    from perfsuite import neurons
    from perfsuite.kernels import tiles

    gpu = torch.cuda.get_device_name()
    out = tiles.TUNED_FILE
    table = json.loads(out.read_text()) if out.exists() else {}
    tiles.TUNED_FILE = out.with_name("tuned.json.ignored-while-tuning")  # time candidates, not old winners
    tiles.tuned_table.cache_clear()
    entry = table.setdefault("gpus", {}).setdefault(gpu, {})
    times = table.setdefault("measured_ms", {}).setdefault(gpu, {})
    for kernel, (name, params, T, mode) in TUNE_VIA.items():
        stream = kernel in tiles.STREAM_CANDIDATES
        fixed = neurons.info(name).fixed_length
        for dt in dtypes:
            m = neurons.build(name, backend="triton", seq_len=T if fixed else None, **params).cuda()
            shape = (T, n // params["features"], params["features"]) if "features" in params else (T, n)
            x = (torch.randn(shape, device="cuda") + 0.5).to(DTYPES[dt])
            xg = x.clone().requires_grad_(True)
            fn = (lambda m=m, x=x: m(x)) if mode == "fwd" else (lambda m=m, xg=xg: m(xg).sum().backward())
            saved = dict(tiles.STREAM_DEFAULTS if stream else tiles.GEMM_DEFAULTS)[kernel]
            if stream:
                size = 2 if DTYPES[dt].itemsize <= 2 else 4
                candidates = tiles.STREAM_CANDIDATES[kernel][size]
            else:  # the operand class this dtype runs (fp32: TF32 only when torch allows it)
                cls = "half" if dt != "fp32" else ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee")
                candidates = tiles.gemm_candidates(kernel, cls, torch.cuda.get_device_capability()[0])
            results = {}
            for cand in candidates:
                if stream:
                    tiles.STREAM_DEFAULTS[kernel] = {**saved, size: cand}
                else:
                    tiles.GEMM_DEFAULTS[kernel] = {**saved, cls: cand}
                try:
                    with torch.no_grad() if mode == "fwd" else torch.enable_grad():
                        results[astuple(cand)] = do_bench(fn)
                except Exception as e:  # a candidate that cannot run here is reported, not chosen
                    print(f"{kernel:12} {dt:5} {astuple(cand)} failed: {type(e).__name__}: {e}")
            if stream:
                tiles.STREAM_DEFAULTS[kernel] = saved
            else:
                tiles.GEMM_DEFAULTS[kernel] = saved
            if results:
                best = min(results, key=results.get)
                entry.setdefault(kernel, {})[dt] = list(best)
                times.setdefault(kernel, {})[dt] = {str(list(k)): round(v, 4) for k, v in results.items()}
                print(f"{kernel:12} {dt:5} best {best} {results[best]:.3f} ms of {len(results)} candidates "
                      f"(via {name} {mode}, T={T})")
            torch.cuda.empty_cache()
    table["format"] = "perfsuite-tuned/1"
    out.write_text(json.dumps(table, indent=1) + "\n")
    tiles.TUNED_FILE = out
    tiles.tuned_table.cache_clear()
    print(f"wrote {out} ({gpu})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", nargs="+", default=list(DEFAULT_PARAMS))
    ap.add_argument("--backends", nargs="+", default=["eager", "compiled", "triton", "spikingjelly"])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[1024, 4096, 16384, 30000])
    ap.add_argument("--neurons-n", type=int, default=32768, help="neurons per layer (N)")
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    ap.add_argument("--tune", action="store_true", help="time the candidate tiles, write kernels/tuned.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels.py needs a CUDA GPU (none found); nothing measured", file=sys.stderr)
        return 2
    from triton.testing import do_bench

    if args.tune:
        return tune(args.dtypes, args.neurons_n, do_bench)

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
                    runs = {"fwd": lambda m=m, x=x: m(x), "train": lambda m=m, xg=xg: m(xg).sum().backward()}
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
