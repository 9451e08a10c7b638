"""Launch shapes of perfsuite's Triton kernels on a GPU: statically checked defaults, the candidate list
each kernel may be tuned among, and the table of tuned winners.

Streaming kernels ([T, N], a block of neurons per program, a [BT, BLOCK] register tile of time steps) take
a `Tile`: ``bt`` steps per tile and ``num_warps`` per program, with vec neighbouring neurons per thread,
so BLOCK = 32·vec·num_warps and one thread holds vec·bt elements of every tile it keeps. That product sets
the registers; bt alone sets how many steps of the layer are in flight (bt·N·bytes per streamed input,
whatever the split over threads). vec is fixed at one 16-byte vector (see `Tile.vec`), so bt is what
the defaults cut where registers ran out. The PSN
GEMMs take a `GemmTile` per kernel and operand class (half, tf32, ieee fp32), with a smaller one where an
arch has less shared memory (sm_80).

Every default and candidate is compiled for sm_90a and sm_80 by `perfsuite kernels` and must have no
stack frame and fit the arch (tests/test_kernels_static.py). ``scripts/bench_kernels.py --tune`` times
the candidates on a real GPU and writes the winners to ``tuned.json`` beside this file, keyed by the GPU's
name; `tile_for` takes a winner from there only if it is still one of the candidates, else the default.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TUNED_FILE = Path(__file__).with_name("tuned.json")


@dataclass(frozen=True)
class Tile:
    """``bt`` time steps per register tile, ``num_warps`` per program; each thread holds one 16-byte
    vector of neighbouring neurons (`vec`), so BLOCK = 32·vec·num_warps."""

    bt: int
    num_warps: int
    scalar: bool = False

    def vec(self, element_bytes: int) -> int:
        """Neurons per thread: one 16-byte vector, or 1 for a ``scalar`` tile. Triton's coalescing picks
        the widest load the alignment allows whenever the tile has enough elements, so any other split
        would make every loaded tile change layout (a round trip through shared memory) before the
        recurrence reads its rows; a scalar tile is for kernels compiled without N's divisibility
        (``do_not_specialize=["N"]``), whose loads are one element wide."""
        return 1 if self.scalar else max(1, 16 // element_bytes)

    def block(self, element_bytes: int) -> int:
        return 32 * self.vec(element_bytes) * self.num_warps


@dataclass(frozen=True)
class GemmTile:
    """[bm, bn] output blocks with bk steps per reduction step (dL/dW: [bm, bm] blocks, bn neurons per
    step); ``dw_programs``: the fewest dL/dW programs wanted (split over neurons when T is short), None =
    4 per SM."""

    bm: int
    bn: int
    bk: int
    num_warps: int = 4
    num_stages: int = 3
    dw_programs: int | None = None


#: streaming kernel -> {input element bytes (2 or 4): default Tile}. Registers grow with the elements one
#: thread keeps per tile, vec·bt (64 for bf16 at bt 8): bt is cut where a kernel would spill or fall below
#: 25 % occupancy (128 registers); a smaller bt also means fewer steps in flight (docs/kernels.md).
STREAM_DEFAULTS = {
    "lif_fwd": {2: Tile(4, 2), 4: Tile(8, 2)},
    "lif_bwd": {2: Tile(2, 2), 4: Tile(4, 2)},
    "scan_fwd": {2: Tile(8, 2), 4: Tile(8, 2)},
    "scan_bwd": {2: Tile(4, 2), 4: Tile(8, 2)},
    "dsn_fwd": {2: Tile(8, 4, scalar=True), 4: Tile(8, 4, scalar=True)},
    "dsn_bwd": {2: Tile(4, 4, scalar=True), 4: Tile(4, 4, scalar=True)},
    "psu_fwd": {2: Tile(2, 2), 4: Tile(4, 2)},
    "psu_bwd": {2: Tile(8, 4, scalar=True), 4: Tile(8, 4, scalar=True)},
    "conv": {2: Tile(4, 2), 4: Tile(8, 2)},
    "conv_wgrad": {2: Tile(4, 2), 4: Tile(4, 2)},
}


def _stream_candidates(default: Tile) -> list[Tile]:
    """The default, the same depth with 4 warps, and half the depth (never deeper: that costs registers)."""
    shallow = Tile(max(1, default.bt // 2), default.num_warps, default.scalar)
    return sorted({default, Tile(default.bt, 4, default.scalar), shallow}, key=lambda t: (t.bt, t.num_warps))


#: candidates for tuning, per kernel and element size (each statically checked like the defaults)
STREAM_CANDIDATES = {name: {size: _stream_candidates(t) for size, t in d.items()} for name, d in STREAM_DEFAULTS.items()}

#: PSN GEMM kernel -> operand class -> candidate GemmTiles, the default first. dL/dW forms dL/dH from
#: the loaded tiles in registers before its tl.dot, so it takes small [32, 32] blocks (64 × 64 spilled);
#: strict fp32 (no tensor cores) takes smaller blocks and 2 stages everywhere.
GEMM_CANDIDATES = {
    "mix_fire": {"half": [GemmTile(64, 128, 32), GemmTile(64, 64, 32)],
                 "tf32": [GemmTile(64, 128, 32), GemmTile(64, 64, 32, num_stages=2)],
                 "ieee": [GemmTile(32, 64, 16, num_stages=2), GemmTile(32, 32, 16, num_stages=2)]},
    "mix_grad_x": {"half": [GemmTile(64, 128, 32), GemmTile(64, 64, 32)],
                   "tf32": [GemmTile(64, 128, 32, num_stages=2), GemmTile(64, 64, 32, num_stages=2)],
                   "ieee": [GemmTile(32, 64, 16, num_stages=2), GemmTile(32, 32, 16, num_stages=2)]},
    "mix_grad_w": {"half": [GemmTile(32, 32, 32), GemmTile(32, 32, 32, num_stages=2)],
                   "tf32": [GemmTile(32, 32, 32), GemmTile(32, 32, 32, num_stages=2)],
                   "ieee": [GemmTile(32, 32, 32, num_stages=2), GemmTile(32, 32, 16, num_stages=2)]},
}
GEMM_DEFAULTS = {k: {cls: c[0] for cls, c in by_cls.items()} for k, by_cls in GEMM_CANDIDATES.items()}
#: arch (major) -> kernel -> operand class -> candidates that do not suit that arch; where one is the
#: default, the arch takes the next candidate. On sm_80 TF32 dL/dX at [64, 128] needed 168 registers and
#: a stack frame (perfsuite kernels --arch sm_80).
GEMM_ARCH_UNFIT = {8: {"mix_grad_x": {"tf32": [GemmTile(64, 128, 32, num_stages=2)]}}}


def gemm_candidates(kernel: str, operands: str, major: int) -> list[GemmTile]:
    """The candidates of PSN GEMM ``kernel`` for ``operands`` that suit an arch of capability ``major``."""
    unfit = GEMM_ARCH_UNFIT.get(major, {}).get(kernel, {}).get(operands, [])
    return [c for c in GEMM_CANDIDATES[kernel][operands] if c not in unfit]


#: kernel function name -> its entry in STREAM_DEFAULTS or GEMM_DEFAULTS
TILE_OF = {"_lif_fwd_kernel": "lif_fwd", "_lif_bwd_kernel": "lif_bwd", "_scan_fwd_kernel": "scan_fwd",
           "_scan_bwd_kernel": "scan_bwd", "_dsn_fwd_kernel": "dsn_fwd", "_dsn_bwd_kernel": "dsn_bwd",
           "_psu_fwd_kernel": "psu_fwd", "_psu_bwd_kernel": "psu_bwd", "_causal_conv_kernel": "conv",
           "_conv_weight_grad_kernel": "conv_wgrad", "_mix_fire_kernel": "mix_fire",
           "_mix_grad_x_kernel": "mix_grad_x", "_mix_grad_w_kernel": "mix_grad_w"}


def candidate_round(i: int, major: int) -> tuple[dict, dict]:
    """Round i of the candidate check on an arch of capability ``major``: ({stream kernel: {element
    size: its i-th candidate}}, {GEMM kernel: {operand class: its i-th candidate for the arch}}) where
    there is one; both empty once every list is done."""
    def pick(table):
        out = {k: {key: c[i] for key, c in by_key.items() if i < len(c)} for k, by_key in table.items()}
        return {k: v for k, v in out.items() if v}

    gemm = {k: {cls: gemm_candidates(k, cls, major) for cls in by_cls} for k, by_cls in GEMM_CANDIDATES.items()}
    return pick(STREAM_CANDIDATES), pick(gemm)


@lru_cache(maxsize=1)
def tuned_table() -> dict:
    """{gpu name: {kernel: {dtype: [fields...]}}} from tuned.json; {} when absent or unreadable."""
    try:
        doc = json.loads(TUNED_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return doc.get("gpus", {}) if isinstance(doc, dict) else {}


def _tuned(gpu: str | None, kernel: str, dtype: str, cls, candidates):
    entry = tuned_table().get(gpu or "", {}).get(kernel, {}).get(dtype)
    if not isinstance(entry, list):
        return None
    try:
        tile = cls(*entry)
    except TypeError:
        return None
    return tile if tile in candidates else None


def stream_tile(kernel: str, element_bytes: int, dtype: str = "", gpu: str | None = None) -> Tile:
    """The Tile of streaming ``kernel`` for inputs of ``element_bytes`` (a tuned winner for ``gpu`` and
    ``dtype`` when tuned.json has one, else the default)."""
    size = 2 if element_bytes <= 2 else 4
    return _tuned(gpu, kernel, dtype, Tile, STREAM_CANDIDATES[kernel][size]) or STREAM_DEFAULTS[kernel][size]


def gemm_tile(kernel: str, operands: str, major: int, dtype: str = "", gpu: str | None = None) -> GemmTile:
    """The GemmTile of PSN GEMM ``kernel`` for operand class ``operands`` (half, tf32, ieee) on an arch
    of compute capability ``major``: a tuned winner for ``gpu`` if it is a candidate there, else the
    default, else (the default does not suit the arch) the first candidate that does."""
    fit = gemm_candidates(kernel, operands, major)
    tuned = _tuned(gpu, kernel, dtype, GemmTile, fit)
    if tuned:
        return tuned
    default = GEMM_DEFAULTS[kernel][operands]
    return default if default in fit else fit[0]
