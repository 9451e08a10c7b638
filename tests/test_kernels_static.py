"""The static kernel report (perfsuite kernels): its arithmetic, its SASS reading, the tuned-tile table, and
the issue #12 targets on the default configurations compiled for sm_90a (CI) and the full matrix (slow)."""
from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

pytest.importorskip("triton")

from perfsuite import kernels_static as ks  # noqa: E402
from perfsuite.cli import app  # noqa: E402
from perfsuite.kernels_compile import _sass_facts  # noqa: E402

H100 = ks.ARCHES["sm_90a"]
A100 = ks.ARCHES["sm_80"]


def test_occupancy_registers_in_warp_units_of_256():
    # 128 registers x 32 threads = 4096 per warp: 16 warps fit, 8 blocks of 2 warps = 25 %
    assert ks.occupancy(H100, 128, 0, 2) == (8, 0.25, "registers")
    # 129 registers round up to 136 per thread (4352 per warp): 15 warps -> 7 blocks of 2
    assert ks.occupancy(H100, 129, 0, 2)[0] == 7
    # 32 registers: the warp limit (64 warps / 4 per block = 16 blocks) binds before the block limit
    assert ks.occupancy(H100, 32, 0, 4) == (16, 1.0, "warps")
    # shared memory: 100 KB + the 1 KB reservation -> 2 blocks on H100, 1 on A100
    assert ks.occupancy(H100, 64, 100 * 1024, 4)[0::2] == (2, "shared")
    assert ks.occupancy(A100, 64, 100 * 1024, 4)[0::2] == (1, "shared")


def test_little_law_per_sm_is_bandwidth_times_latency_over_sms():
    assert H100.little_bytes_per_sm == pytest.approx(3350e9 * 600e-9 / 132)


def _raw(**res):
    base = {"compiled": True, "registers": 128, "stack_bytes": 0, "spill_store_bytes": 0, "spill_load_bytes": 0,
            "static_shared_bytes": 0, "dynamic_shared_bytes": 0, "num_warps": 2, "has_dot": False,
            "tensor_core_instructions": 0, "loop_load_bytes_per_thread": 64}
    base.update(res)
    return {"arch": "sm_90a", "dtype": "bf16", "case": "lif", "kernel": "_k", "module": "m", "constexprs": {},
            "num_warps": base["num_warps"], "num_stages": 3, "grid": [512], "key": "x", "result": base}


def test_analyse_streaming_row_bytes_in_flight_and_bound():
    row = ks.analyse(_raw())
    # 512 programs of 64 threads all resident (8 per SM allowed); 64 B each in flight
    assert row["resident_programs"] == 512
    total = 512 * 64 * 64
    assert row["bytes_in_flight_per_sm"] == round(total / 132)
    assert row["bandwidth_bound_gbs"] == 3350.0  # 2.1 MB / 600 ns exceeds the peak: the peak bounds
    small = ks.analyse({**_raw(), "grid": [64]})  # 64 programs: fewer bytes in flight than Little needs
    assert small["bandwidth_bound_gbs"] == pytest.approx(64 * 64 * 64 / 600, abs=0.1)
    assert small["bytes_in_flight_per_sm"] < small["little_bytes_per_sm"]
    assert row["targets"] == {"compiles": True, "no_stack": True, "launchable": True, "occupancy_or_little": True,
                              "tensor_cores": None}


def test_analyse_flags_spills_shared_memory_and_missing_tensor_cores():
    row = ks.analyse({**_raw(stack_bytes=104, spill_store_bytes=96), "arch": "sm_90a"})
    assert row["targets"]["no_stack"] is False
    big = ks.analyse({**_raw(dynamic_shared_bytes=229376), "arch": "sm_80"})
    assert big["targets"]["launchable"] is False and "166912" in big["fit_problems"][0]
    dot = ks.analyse(_raw(has_dot=True, tensor_core_instructions=0))
    assert dot["targets"]["tensor_cores"] is False and dot["targets"]["occupancy_or_little"] is None
    ieee = ks.analyse({**_raw(has_dot=True), "dtype": "fp32", "case": "psn"})
    assert ieee["targets"]["tensor_cores"] is None  # strict fp32 has no tensor-core path to miss
    assert ks.failures([row, big]) and len(ks.failures([ks.analyse(_raw())])) == 0
    assert ks.analyse({**_raw(), "result": {"compiled": False, "error": "boom"}})["targets"] == {"compiles": False}


SASS = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
.L_x_1:
        /*0020*/                   LDG.E.128 R8, desc[UR4][R2.64] ;
        /*0030*/                   LDG.E.U16 R12, desc[UR4][R2.64] ;
        /*0040*/                   HMMA.16816.F32.BF16 R16, R4, R8, R16 ;
        /*0050*/                   STL [R1], R3 ;
        /*0060*/              @P0  BRA `(.L_x_1) ;
        /*0070*/                   LDL R3, [R1] ;
        /*0080*/                   EXIT ;
"""


def test_sass_reading_loop_loads_tensor_cores_and_local_memory():
    f = _sass_facts(SASS)
    assert f["has_loop"] and f["loop_load_instructions"] == 2
    assert f["loop_load_bytes_per_thread"] == 16 + 2  # the prologue's load is outside the loop
    assert f["tensor_core_instructions"] == 1
    assert (f["local_store_instructions"], f["local_load_instructions"]) == (1, 1)
    flat = _sass_facts("        /*0000*/                   LDG.E.64 R4, desc[UR4][R2.64] ;\n")
    assert not flat["has_loop"] and flat["loop_load_bytes_per_thread"] == 8


def test_tuned_table_used_only_for_candidates(monkeypatch, tmp_path):
    from perfsuite.kernels import tiles

    cand = tiles.STREAM_CANDIDATES["lif_fwd"][2][0]
    assert cand != tiles.STREAM_DEFAULTS["lif_fwd"][2]
    table = tmp_path / "tuned.json"
    table.write_text(json.dumps({"gpus": {"GPU X": {"lif_fwd": {"bf16": [cand.bt, cand.num_warps, cand.scalar]},
                                                    "lif_bwd": {"bf16": [3, 3]},
                                                    "mix_grad_w": {"bf16": [128, 128, 64, 8, 4]}}}}))
    monkeypatch.setattr(tiles, "TUNED_FILE", table)
    tiles.tuned_table.cache_clear()
    try:
        assert tiles.stream_tile("lif_fwd", 2, "bf16", "GPU X") == cand
        assert tiles.stream_tile("lif_bwd", 2, "bf16", "GPU X") == tiles.STREAM_DEFAULTS["lif_bwd"][2]
        assert tiles.stream_tile("lif_fwd", 2, "bf16", "GPU Y") == tiles.STREAM_DEFAULTS["lif_fwd"][2]
        # not a candidate: the statically checked default, never an unchecked tile
        assert tiles.gemm_tile("mix_grad_w", "half", 9, "bf16", "GPU X") == tiles.GEMM_DEFAULTS["mix_grad_w"]["half"]
    finally:
        tiles.tuned_table.cache_clear()


def test_shipped_tuned_table_holds_no_invented_numbers():
    from perfsuite.kernels import tiles

    # no GPU has run --tune for this project yet: the table must be absent or empty
    assert tiles.TUNED_FILE.exists() is False or tiles.tuned_table() == {}


def test_every_default_is_a_candidate():
    from perfsuite.kernels import tiles

    for name, by_size in tiles.STREAM_DEFAULTS.items():
        for size, tile in by_size.items():
            assert tile in tiles.STREAM_CANDIDATES[name][size], (name, size)
            # a kernel compiled without N's divisibility has scalar loads: all its tiles must say so
            assert {t.scalar for t in tiles.STREAM_CANDIDATES[name][size]} == {tile.scalar}, name
    for name, by_cls in tiles.GEMM_DEFAULTS.items():
        for cls, tile in by_cls.items():
            assert tile in tiles.GEMM_CANDIDATES[name][cls], (name, cls)


def test_cli_rejects_bad_arch_and_dtype():
    r = CliRunner().invoke(app, ["kernels", "--arch", "sm_70"])
    assert r.exit_code == 2 and "sm_70" in r.output and "sm_90a" in r.output
    r = CliRunner().invoke(app, ["kernels", "--dtype", "int8"])
    assert r.exit_code == 2 and "int8" in r.output


def _assert_targets(doc):
    assert not doc["host_errors"], doc["host_errors"]
    assert doc["rows"], "no kernel configuration was recorded"
    bad = ks.failures(doc["rows"])
    assert not bad, "\n".join(bad)


def test_default_configs_meet_targets_on_sm90a():
    """Compiles every default configuration for sm_90a (bf16 and fp32): no stack, launchable, streaming
    kernels at >= 25 % occupancy or meeting Little's law, tensor cores wherever a half/TF32 tl.dot is."""
    doc = ks.report(["sm_90a"], ["bf16", "fp32"], ks.DEFAULT_CASES)
    _assert_targets(doc)
    kernels = {r["kernel"] for r in doc["rows"]}
    assert {"_lif_fwd_kernel", "_mix_grad_w_kernel", "_dsn_bwd_kernel", "_psu_bwd_kernel"} <= kernels


def _only_when_asked(request):
    # pytest's default run (CI, scripts/test.sh) includes slow tests; these two take many minutes
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("the full matrix compiles hundreds of kernels: run with -m slow")


@pytest.mark.slow
def test_full_matrix_meets_targets(request):
    """Defaults on sm_90a and sm_80 must meet every target; the parameter variants (--full cases) must
    compile and launch, and their stack or occupancy misses are reported as warnings."""
    _only_when_asked(request)
    doc = ks.report(["sm_90a", "sm_80"], ["bf16", "fp32"], ks.DEFAULT_CASES + ks.EXTRA_CASES)
    assert not doc["host_errors"], doc["host_errors"]
    extra = {c["name"] for c in ks.EXTRA_CASES}
    default_rows = [r for r in doc["rows"] if set(r["cases"]) - extra]
    variant_rows = [r for r in doc["rows"] if not set(r["cases"]) - extra]
    bad = ks.failures(default_rows)
    assert not bad, "\n".join(bad)
    assert all(r["compiled"] and r["fits"] for r in variant_rows)
    for line in ks.failures(variant_rows):
        warnings.warn(f"parameter variant misses a target: {line}", stacklevel=1)


@pytest.mark.slow
def test_every_candidate_is_statically_sound(request):
    """Each tuning candidate, compiled in place of the defaults for both arches and dtypes."""
    _only_when_asked(request)
    rows = ks.candidate_rows(["sm_90a", "sm_80"], ["bf16", "fp32"])
    assert {r["candidate"] for r in rows} >= {"lif_fwd", "dsn_bwd", "mix_grad_w"}
    bad = ks.failures(rows)
    assert not bad, "\n".join(bad)


def test_cli_writes_json_and_markdown(tmp_path):
    """End to end through the command (the compiled results come from the cache the test above filled)."""
    j, m = tmp_path / "k.json", tmp_path / "k.md"
    r = CliRunner().invoke(app, ["kernels", "--arch", "sm_90a", "--dtype", "bf16", "--json", str(j),
                                 "--markdown", str(m), "--check"])
    assert r.exit_code == 0, r.output
    doc = json.loads(j.read_text())
    assert doc["format"] == "perfsuite-kernels/1" and doc["arches"]["sm_90a"]["sms"] == 132
    assert {r["dtype"] for r in doc["rows"]} == {"bf16"} and all(r["compiled"] for r in doc["rows"])
    text = m.read_text()
    assert "| sm_90a | bf16 |" in text and "Missed targets: 0 (none)" in text
    r = CliRunner().invoke(app, ["kernels", "--arch", "sm_90a", "--json", str(tmp_path / "no" / "k.json")])
    assert r.exit_code == 2 and "does not exist" in r.output
