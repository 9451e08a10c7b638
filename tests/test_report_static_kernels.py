"""The report's static kernel part: a run folder's ``kernels_static.json`` (the ``perfsuite kernels --json``
document) shown in the Kernels section beside the measured profile of the same kernel, escaped, and a
malformed file named with its reason instead of a crash. The documents are synthetic (no compile)."""
from __future__ import annotations

import json

import pytest

from perfsuite import analysis as A
from perfsuite import kernels_static as ks
from perfsuite.report import build_report
from perfsuite.results import append_row, read_rows
from tests.synthetic_runs import make_run

FAST = dict(dpi=40, n_boot=100)


def _raw(kernel, *, arch="sm_90a", dtype="bf16", case="lif", registers=96, stack=0, shared=0, dot=False, tc=0,
         warps=2, per_thread=256, compiled=True):
    res = {"compiled": compiled, "registers": registers, "stack_bytes": stack, "spill_store_bytes": stack,
           "spill_load_bytes": stack, "static_shared_bytes": shared, "dynamic_shared_bytes": 0, "has_dot": dot,
           "tensor_core_instructions": tc, "num_warps": warps, "loop_load_bytes_per_thread": per_thread}
    if not compiled:
        res = {"compiled": False, "error": "ptxas: out of resources"}
    return {"arch": arch, "dtype": dtype, "case": case, "kernel": kernel, "module": "perfsuite.kernels.x",
            "constexprs": {"BLOCK": 512, "BT": 8}, "num_warps": warps, "num_stages": 1, "grid": [64], "result": res}


def _document(raws):
    """A static report document built by perfsuite.kernels_static's own analysis of the raw compile rows."""
    rows = [ks.analyse(r) for r in raws]
    return {"format": ks.FORMAT, "triton": "3.6.0", "latency_ns": ks.LATENCY_NS, "cases": [],
            "arches": {"sm_90a": {"gpu": "H100", "little_bytes_per_sm": round(ks.ARCHES["sm_90a"].little_bytes_per_sm)}},
            "rows": rows, "host_errors": [], "summary": {"configs": len(rows), "compiled": len(rows),
                                                         "failures": ks.failures(rows)}}


def _run(tmp_path, doc=None, text=None, profile_kernels=None):
    run = make_run(tmp_path / "run", neurons=("lif",), backends=("eager",), seq_lens=(64,), modes=("forward",),
                   samples=3)
    if profile_kernels is not None:
        rows = read_rows(run / "results.jsonl")
        (run / "results.jsonl").unlink()
        for r in rows:
            append_row(run / "results.jsonl", {**r, "profile": {"identity": "ok", "detail": "d", "trace": None,
                                                                "kernel_source": "gpu_kernels",
                                                                "kernels": profile_kernels}})
    if doc is not None:
        (run / ks.REPORT_FILE).write_text(json.dumps(doc))
    if text is not None:
        (run / ks.REPORT_FILE).write_text(text)
    return run


def _kernels_md(run) -> str:
    md = (run / "report.md").read_text()
    return md.split("## Kernels and backend identity", 1)[1].split("\n## ", 1)[0]


def test_static_rows_sit_beside_the_measured_kernel_of_the_same_name(tmp_path):
    doc = _document([_raw("_lif_fwd_kernel", registers=96),
                     _raw("_spill_kernel", registers=255, stack=4520, warps=4),
                     _raw("_mix_grad_w_kernel", arch="sm_80", dtype="fp32", case="psn", registers=128, shared=229376, dot=True),
                     _raw("_broken_kernel", compiled=False)])
    run = _run(tmp_path, doc, profile_kernels=[{"name": "_lif_fwd_kernel", "calls": 3, "self_us": 1500.0,
                                                 "share": 0.75}])
    an = A.analyse(A.load_runs([run]), n_boot=50)
    st = an.static.set_index("kernel")
    assert len(st) == 4 and an.static_files["reason"].isna().all()
    assert [e["share"] for e in st.loc["_lif_fwd_kernel", "measured"]] == [0.75]
    assert st.loc["_spill_kernel", "measured"] == []
    html = build_report([run], **FAST).read_text()
    md = _kernels_md(run)
    line = next(ln for ln in md.splitlines() if "_lif_fwd_kernel" in ln and "sm_90a" in ln)
    blocks, occ, limit = ks.occupancy(ks.ARCHES["sm_90a"], 96, 0, 2)
    assert "BLOCK=512 BT=8 w=2 s=1" in line and "| ok | 96 | 0 (0/0) | 0 |" in line
    assert f"{100 * occ:.3g} % ({limit})" in line
    assert "lif/eager/forward" in line and "75 %, 1.5 ms over 3 calls" in line
    bound = st.loc["_lif_fwd_kernel", "bandwidth_bound_gbs"]
    assert f"{bound:.4g}" in line
    spill = next(ln for ln in md.splitlines() if "_spill_kernel" in ln)
    assert "| 255 | 4520 (4520/4520) |" in spill and spill.rstrip().endswith("| — |")
    gemm = next(ln for ln in md.splitlines() if "_mix_grad_w_kernel" in ln)
    assert "229376 (does not fit" in gemm and "| no |" in gemm  # a tl.dot without tensor-core instructions
    assert "error: ptxas: out of resources" in md
    assert "Missed static targets: " in md and "_spill_kernel: no_stack" in md
    for kernel in ("_lif_fwd_kernel", "_spill_kernel", "_mix_grad_w_kernel", "_broken_kernel"):
        assert kernel in html
    assert "75 %, 1.5 ms over 3 calls" in html


def test_static_report_without_profiles_and_without_a_file(tmp_path):
    run = _run(tmp_path, _document([_raw("_lif_fwd_kernel")]))
    build_report([run], **FAST)
    md = _kernels_md(run)
    assert "no profiler traces" in md and "_lif_fwd_kernel" in md
    bare = _run(tmp_path / "bare")
    build_report([bare], **FAST)
    assert "no static kernel report in this run folder" in _kernels_md(bare)
    assert "perfsuite kernels --json RUN_DIR/kernels_static.json" in _kernels_md(bare)


def _missing_registers():
    doc = _document([_raw("_lif_fwd_kernel")])
    del doc["rows"][0]["registers"]
    return json.dumps(doc)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "kernels_static.json is not JSON"),
    ("[1, 2]", "kernels_static.json is not a JSON object"),
    (json.dumps({"format": "other/1", "rows": []}), "has format 'other/1'; expected 'perfsuite-kernels/1'"),
    (json.dumps({"format": ks.FORMAT, "rows": {}}), "rows is missing or not a list"),
    (_missing_registers(), "rows[0].registers is missing or not a number"),
    (json.dumps({"format": ks.FORMAT, "rows": [{"arch": "sm_90a", "dtype": "bf16", "kernel": "k"}]}),
     "rows[0].compiled is missing or not true/false"),
])
def test_a_malformed_file_gives_its_reason_not_a_crash(tmp_path, text, reason):
    run = _run(tmp_path, text=text)
    html = build_report([run], **FAST).read_text()
    md = _kernels_md(run)
    assert "the static kernel report is not shown" in md and reason in md.replace("\\", "")
    assert "the static kernel report is not shown" in html
    assert "Static kernel report per configuration" not in md


def test_static_report_text_is_escaped(tmp_path):
    raw = _raw("_k|<script>x</script>")
    raw["result"] = {"compiled": False, "error": "bad | <b>bold</b>\nsecond line"}
    run = _run(tmp_path, _document([raw]))
    html = build_report([run], **FAST).read_text()
    md = _kernels_md(run)
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html and "<b>bold</b>" not in html
    line = next(ln for ln in md.splitlines() if "_k" in ln and "script" in ln)
    assert "\\|" in line and "second line" in line  # the pipe is escaped and the newline kept in one row
