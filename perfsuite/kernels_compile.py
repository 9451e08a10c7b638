"""The compile half of the static kernel report (`perfsuite.kernels_static`), run in its own process.

``python -m perfsuite.kernels_compile`` reads a job (JSON on stdin: arches, dtypes, cases, cache folder)
and writes one JSON object per compiled kernel configuration on stdout. It must run in a clean
environment: ``TRITON_INTERPRET`` unset (under it ``@triton.jit`` makes interpreter objects, which do not
compile), and it makes this process look like a CUDA machine of the arch being compiled
(`torch.cuda.is_available`, the device's capability and SM count) so perfsuite's kernel package imports
and its host code takes its GPU branches.

Where the configurations come from: each case (a neuron with parameters, a dtype, a length) is run
through the neuron's real ``backend="triton"`` path on ``meta`` tensors (shapes only, no memory), with
`triton.runtime.jit.JITFunction.run` replaced by a recorder. The recorder binds every launch's
arguments with Triton's own binder, so the signature, the constexprs and the specialisation attributes
(16-byte aligned pointers, integers divisible by 16) are exactly those a launch on a GPU would compile
with; nothing is typed by hand. Each distinct configuration is then compiled for the arch with
`triton.compile` and read back: ptxas's own report (registers, stack frame, spill stores and loads),
``cuobjdump -res-usage`` (static shared memory), the kernel's dynamic shared memory, and the SASS
(tensor-core instructions, global load bytes in the main loop).

Results are cached per configuration, keyed by the kernel's source hash (Triton's, which covers the
functions it calls), its signature, constexprs, attributes and options, the arch and the Triton version.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from types import SimpleNamespace

#: arch name -> (compute capability, SM count used for the host's grid decisions)
CAPABILITY = {"sm_80": ((8, 0), 108), "sm_90a": ((9, 0), 132), "sm_100a": ((10, 0), 148)}

_state = SimpleNamespace(arch="sm_90a", records=[], backend=None, target=None)


def _patch_cuda(torch) -> None:
    """Make this process's torch report a CUDA device of ``_state.arch`` (no device is touched)."""
    def props(device=None):
        (major, minor), sms = CAPABILITY[_state.arch]
        return SimpleNamespace(multi_processor_count=sms, major=major, minor=minor, name=f"static {_state.arch}",
                               total_memory=80 << 30)

    torch.cuda.is_available = lambda: True
    torch.cuda.get_device_capability = lambda device=None: (props().major, props().minor)
    torch.cuda.get_device_properties = props
    torch.cuda.get_device_name = lambda device=None: props().name


def _recording_run(self, *args, grid, warmup, **kwargs):
    """Stand-in for `JITFunction.run`: bind the launch as Triton would and record it; launch nothing."""
    from triton.runtime.jit import create_function_from_signature

    kwargs["debug"] = kwargs.get("debug", self.debug) or False
    binder = create_function_from_signature(self.signature, self.params, _state.backend)
    bound, specialization, opts = binder(*args, **kwargs)
    options, signature, constexprs, attrs = self._pack_args(_state.backend, kwargs, bound, specialization, opts)
    if callable(grid):
        grid = grid(bound)
    _state.records.append(dict(fn=self, signature=signature, constexprs=constexprs, attrs=attrs, options=options,
                               grid=[int(g) for g in grid]))
    return None


def _constexpr_names(fn, constexprs) -> dict:
    names = [p.name for p in fn.params]
    return {names[path[0]]: (str(v) if v.__class__.__name__ == "dtype" else v) for path, v in constexprs.items()}


def _key(fn, signature, constexprs, attrs, options, arch: str) -> str:
    import triton

    parts = [fn.cache_key, repr(sorted(signature.items())), repr(sorted(constexprs.items(), key=str)),
             repr(sorted(attrs.items(), key=str)), options.hash() if hasattr(options, "hash") else repr(options),
             arch, triton.__version__]
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:32]


_PTXAS = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RES = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")
_SASS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_LOAD_BYTES = {"128": 16, "64": 8, "U16": 2, "S16": 2, "U8": 1, "S8": 1}


def _tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def _sass_facts(sass: str) -> dict:
    """Tensor-core instructions, local-memory (spill) instructions, and the bytes one thread's global
    loads fetch in the outermost loop (the whole kernel when it has no loop)."""
    instr = []
    labels = {}
    pending = []
    for line in sass.splitlines():
        lab = re.match(r"\s*(\.L_x_\d+):", line)
        if lab:
            pending.append(lab.group(1))
            continue
        m = _SASS.search(line)
        if m:
            addr = int(m.group(1), 16)
            for name in pending:
                labels[name] = addr
            pending = []
            instr.append((addr, m.group(3), m.group(4)))
    loops = []
    for addr, op, operand in instr:
        if op.startswith("BRA"):
            t = re.search(r"0x([0-9a-f]+)", operand)
            target = int(t.group(1), 16) if t else labels.get(operand.strip().strip("`()"), None)
            if target is not None and target < addr:
                loops.append((target, addr))
    lo, hi = max(loops, key=lambda r: r[1] - r[0]) if loops else (0, 1 << 62)

    def load_bytes(op):
        for part in op.split(".")[1:]:
            if part in _LOAD_BYTES:
                return _LOAD_BYTES[part]
        return 4

    ldg = [op for addr, op, _ in instr if op.startswith("LDG") and lo <= addr <= hi]
    return {
        "tensor_core_instructions": sum(1 for _, op, _ in instr if re.match(r"(HGMMA|HMMA|UTC\w*MMA)", op)),
        "local_store_instructions": sum(1 for _, op, _ in instr if op.startswith("STL")),
        "local_load_instructions": sum(1 for _, op, _ in instr if op.startswith("LDL")),
        "loop_load_bytes_per_thread": sum(load_bytes(op) for op in ldg),
        "loop_load_instructions": len(ldg),
        "has_loop": bool(loops),
    }


def _measure(kernel) -> dict:
    """Resources of a compiled kernel from its ptxas report (captured by the caller), cuobjdump and SASS."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        res = subprocess.run([_tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True,
                             check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                              check=True).stdout
    m = _RES.search(res)
    out = {"registers": int(m.group(1)), "stack_bytes": int(m.group(2)), "static_shared_bytes": int(m.group(3)),
           "local_bytes": int(m.group(4)), "dynamic_shared_bytes": int(kernel.metadata.shared),
           "num_warps": int(kernel.metadata.num_warps), "has_dot": "tt.dot" in kernel.asm["ttir"]}
    out.update(_sass_facts(sass))
    return out


def _compile(rec: dict) -> dict:
    import triton
    from triton.compiler import ASTSource

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        kernel = triton.compile(ASTSource(rec["fn"], rec["signature"], rec["constexprs"], rec["attrs"]),
                                target=_state.target, options=rec["options"].__dict__)
    out = _measure(kernel)
    text = log.getvalue()
    frame = _FRAME.findall(text)
    used = _PTXAS.findall(text)
    if frame:
        out["stack_bytes"] = max(out["stack_bytes"], int(frame[-1][0]))
        out["spill_store_bytes"], out["spill_load_bytes"] = int(frame[-1][1]), int(frame[-1][2])
    else:  # no ptxas report captured: count the spill instructions' presence only
        out["spill_store_bytes"] = out["spill_load_bytes"] = None
    if used:
        out["registers"] = int(used[-1])
    return out


def _run_case(torch, neurons, case: dict, dtype) -> None:
    """Run one case's host path on meta tensors: training forward + backward, and inference."""
    params = dict(case.get("params", {}))
    T, N = int(case["seq_len"]), int(case["neurons"])
    kw = {"seq_len": T} if neurons.info(case["neuron"]).fixed_length else {}
    module = neurons.build(case["neuron"], backend="triton", **kw, **params).to(dtype=dtype)
    # parameters become shapes; 0-dim buffers stay real (the host reads some, e.g. masked PSN's λ)
    for sub in module.modules():
        for name, t in sub._parameters.items():
            if t is not None:
                sub._parameters[name] = torch.nn.Parameter(t.detach().to("meta"), t.requires_grad)
        for name, t in sub._buffers.items():
            if t is not None and t.dim() > 0:
                sub._buffers[name] = t.to("meta")
    shape = (T, N) if "features" not in params else (T, N // params["features"], params["features"])
    for train in (True, False):
        x = torch.empty(shape, device="meta", dtype=dtype, requires_grad=train)
        if train:
            s = module(x)
            grads = [p for p in [x, *module.parameters()] if p.requires_grad]
            torch.autograd.grad(s, grads, torch.empty_like(s), allow_unused=True)
        else:
            with torch.no_grad():
                module(x)


def _cached_compile(rec: dict, hit: Path) -> dict:
    """The measured resources of ``rec`` from the cache file ``hit``, or compiled now and stored there."""
    if hit.exists():
        return {**json.loads(hit.read_text()), "cached": True}
    try:
        result = {"compiled": True, **_compile(rec)}
    except Exception as e:  # a compile error is a finding of the report; not cached (it may be the setup's)
        msg = str(e).strip().splitlines() or [type(e).__name__]
        if os.environ.get("PERFSUITE_KERNELS_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        return {"compiled": False, "error": f"{type(e).__name__}: {msg[0]}"[:300], "cached": False}
    tmp = hit.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(hit)
    return {**result, "cached": False}


def _set_tiles(stream: dict, gemm: dict) -> None:
    """Put tiles in place of the defaults of `perfsuite.kernels.tiles` (both element sizes, every operand
    class, every arch) for a sweep or the candidate check."""
    from perfsuite.kernels import tiles

    for kernel, by_size in stream.items():
        tiles.STREAM_DEFAULTS[kernel] = {**tiles.STREAM_DEFAULTS[kernel], **by_size}
    for kernel, by_cls in gemm.items():
        tiles.GEMM_DEFAULTS[kernel] = {**tiles.GEMM_DEFAULTS[kernel], **by_cls}


def _rounds(job: dict, major: int):
    """(tag, stream tiles, GEMM tiles) per pass: one pass with the job's own tiles (job["tiles"] =
    {kernel: {element size: [bt, warps, scalar]}}, job["gemm"] = {kernel: {operands: [bm, bn, bk, warps, stages]}}), or with
    job["candidates"] one pass per candidate round."""
    from perfsuite.kernels import tiles

    if not job.get("candidates"):
        yield None, {k: {int(size): tiles.Tile(*v) for size, v in by_size.items()}
                     for k, by_size in job.get("tiles", {}).items()}, \
            {k: {cls: tiles.GemmTile(*v) for cls, v in by_cls.items()} for k, by_cls in job.get("gemm", {}).items()}
        return
    i = 0
    while True:
        stream, gemm = tiles.candidate_round(i, major)
        if not stream and not gemm:
            return
        yield i, stream, gemm
        i += 1


def main() -> int:
    job = json.load(sys.stdin)
    os.environ.pop("TRITON_INTERPRET", None)
    import torch

    _patch_cuda(torch)
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction

    knobs.nvidia.dump_ptxas_log = True
    JITFunction.run = _recording_run
    import perfsuite.kernels  # noqa: F401  (registers backend "triton"; needs the patched torch.cuda)
    from perfsuite import neurons
    from perfsuite.kernels import tiles

    defaults = (dict(tiles.STREAM_DEFAULTS), dict(tiles.GEMM_DEFAULTS))
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    cache = Path(job["cache"])
    cache.mkdir(parents=True, exist_ok=True)
    for arch in job["arches"]:
        (major, minor), _ = CAPABILITY[arch]
        _state.arch = arch
        _state.target = GPUTarget("cuda", major * 10 + minor, 32)
        _state.backend = make_backend(_state.target)
        for tag, stream, gemm in _rounds(job, major):
            tiles.STREAM_DEFAULTS.update(defaults[0])
            tiles.GEMM_DEFAULTS.update(defaults[1])
            _set_tiles(stream, gemm)
            swept = {**stream, **gemm}
            for dname in job["dtypes"]:
                rows = {}
                for case in job["cases"]:
                    if dname not in case.get("dtypes", [dname]):
                        continue
                    torch.backends.cuda.matmul.allow_tf32 = bool(case.get("allow_tf32", False))
                    _state.records = []
                    try:
                        _run_case(torch, neurons, case, dtypes[dname])
                    except Exception as e:  # a host path that cannot run is a finding, not a crash
                        print(json.dumps({"arch": arch, "dtype": dname, "case": case["name"],
                                          "host_error": f"{type(e).__name__}: {e}".splitlines()[0]}), flush=True)
                        continue
                    for rec in _state.records:
                        if tag is not None and tiles.TILE_OF.get(rec["fn"].fn.__name__) not in swept:
                            continue  # a candidate round reports only the kernels it changed
                        key = _key(rec["fn"], rec["signature"], rec["constexprs"], rec["attrs"], rec["options"], arch)
                        if key in rows:
                            if case["name"] not in rows[key]["cases"]:
                                rows[key]["cases"].append(case["name"])
                            continue
                        rows[key] = {"arch": arch, "dtype": dname, "case": case["name"], "cases": [case["name"]],
                                     "kernel": rec["fn"].fn.__name__, "module": rec["fn"].fn.__module__, "key": key,
                                     "grid": rec["grid"], "constexprs": _constexpr_names(rec["fn"], rec["constexprs"]),
                                     "num_warps": rec["options"].num_warps, "num_stages": rec["options"].num_stages,
                                     "triton": triton.__version__, "result": _cached_compile(rec, cache / f"{key}.json")}
                        if tag is not None:
                            rows[key].update(candidate=tiles.TILE_OF[rec["fn"].fn.__name__], round=tag)
                for row in rows.values():
                    print(json.dumps(row, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
