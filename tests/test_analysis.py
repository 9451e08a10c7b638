"""perfsuite.analysis on synthetic runs whose answers are known by construction (tests/synthetic_runs.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from perfsuite import analysis as A
from perfsuite.results import ENV_FILE, RESULTS_FILE, append_row
from tests.synthetic_runs import BACKEND_FACTOR, default_env, make_rows, make_run, time_ms

SMALL = dict(seq_lens=(32, 64, 128, 256, 512), samples=5)


def _analysed(tmp_path, name="run", **kw):
    run = make_run(tmp_path / name, **{**SMALL, **kw})
    runs = A.load_runs([run])
    return runs, A.frame(runs)


def _frame_of(tmp_path, rows, name="run"):
    """The analysis frame of a run folder holding ``rows`` (synthetic rows edited by a test)."""
    d = tmp_path / name
    d.mkdir()
    (d / ENV_FILE).write_text(json.dumps(default_env(name)), encoding="utf-8")
    for r in rows:
        append_row(d / RESULTS_FILE, r)
    return A.frame(A.load_runs([d]))


def _with(rows, **fields):
    """The rows with point fields replaced (e.g. device="cpu", workload_params={...})."""
    return [{**r, **fields} for r in rows]


# ------------------------------------------------------------------------------------------ power laws

def test_fit_recovers_exponent_and_ci_covers_truth():
    rng = np.random.default_rng(1)
    T = np.array([64, 128, 256, 512, 1024, 2048, 4096, 8192], dtype=float)
    covered, errors = 0, []
    for seed in range(40):
        t = 0.01 * T ** 1.7 * np.exp(rng.normal(0, 0.05, len(T)))
        f = A.fit_power_law(T, t, n_boot=500, seed=seed)
        errors.append(abs(f["b"] - 1.7))
        covered += f["b_lo"] <= 1.7 <= f["b_hi"]
    assert max(errors) < 0.06
    # a 95 % interval from 8 points: allow for the bootstrap's known under-coverage with few points
    assert covered >= 32, f"95 % CI covered the true exponent in only {covered}/40 synthetic runs"


def test_fit_is_exact_without_noise():
    T = [16, 32, 64, 128]
    f = A.fit_power_law(T, [0.5 * x ** 2 for x in T])
    assert f["b"] == pytest.approx(2.0, abs=1e-12)
    assert f["a"] == pytest.approx(0.5, rel=1e-12)
    assert f["r2"] == pytest.approx(1.0)
    assert f["b_lo"] == pytest.approx(2.0, abs=1e-9) and f["b_hi"] == pytest.approx(2.0, abs=1e-9)


def test_fit_with_too_few_lengths_says_why():
    one = A.fit_power_law([64, 64], [1.0, 1.1])
    assert math.isnan(one["b"]) and "2 distinct" in one["fit_reason"]
    two = A.fit_power_law([64, 128], [1.0, 2.0])
    assert two["b"] == pytest.approx(1.0)
    assert math.isnan(two["b_lo"]) and "without an interval" in two["fit_reason"]


def test_scaling_fits_of_a_run_recover_each_neurons_exponent(tmp_path):
    truth = {"lif": 1.0, "psn": 2.0, "dsn": 1.3}
    _, df = _analysed(tmp_path, neurons=tuple(truth), exponent=truth, noise=0.03, seed=3,
                      seq_lens=(32, 64, 128, 256, 512, 1024, 2048))
    fits = A.scaling_fits(df, n_boot=1000)
    assert len(fits) == 3 * 2 * 2  # neurons × backends × modes
    for _, f in fits.iterrows():
        b = truth[f["neuron"]]
        assert abs(f["b"] - b) < 0.08, f"{f['neuron']}/{f['backend']}/{f['mode']}: b={f['b']:.3f}, truth {b}"
        assert f["b_lo"] <= f["b"] <= f["b_hi"]
    # most intervals cover the truth (seeded, so this is deterministic)
    cover = np.mean([f["b_lo"] <= truth[f["neuron"]] <= f["b_hi"] for _, f in fits.iterrows()])
    assert cover >= 0.75


# ------------------------------------------------------------------------------- speed-ups, crossovers

def test_speedups_and_crossover_match_the_analytic_values(tmp_path):
    # noise-free: lif = 0.05·T, psn = 0.0005·T² (times the backend factor) => psn/lif ratio = T/100, T* = 100
    _, df = _analysed(tmp_path, neurons=("lif", "psn"), noise=0.0)
    sp = A.speedups(df)
    psn = sp[(sp["neuron"] == "psn") & (sp["mode"] == "forward")].set_index("seq_len")
    for T in SMALL["seq_lens"]:
        assert psn.loc[T, "speedup_over_lif"] == pytest.approx(100.0 / T, rel=1e-9)
        assert psn.loc[T, "backend"] == "compiled"  # 0.6× eager in the synthetic model
    cr = A.crossovers(df)
    row = cr[(cr["neuron"] == "psn") & (cr["other"] == "lif") & (cr["mode"] == "train")].iloc[0]
    assert row["t_star_measured"] == pytest.approx(100.0, rel=1e-9)  # exact: log ratio is linear in log T
    assert row["t_star_fit"] == pytest.approx(100.0, rel=1e-9) and row["fit_in_range"]
    assert "psn falls behind lif" in row["status"]


def test_no_crossover_says_who_is_faster(tmp_path):
    _, df = _analysed(tmp_path, neurons=("lif", "dsn"), noise=0.0)
    row = A.crossovers(df).iloc[0]
    assert math.isnan(row["t_star_measured"])
    assert row["status"] == "dsn faster at every measured T"


def test_backend_ratios_over_eager_and_over_a_peer(tmp_path):
    _, df = _analysed(tmp_path, neurons=("lif",), backends=("eager", "compiled", "triton", "spikingjelly"),
                      noise=0.0)
    br = A.backend_ratios(df)
    over_eager = br[(br["over"] == "eager") & (br["backend"] == "triton")]
    assert np.allclose(over_eager["ratio"], BACKEND_FACTOR["eager"] / BACKEND_FACTOR["triton"])
    over_peer = br[(br["over"] == "spikingjelly") & (br["backend"] == "compiled")]
    assert np.allclose(over_peer["ratio"], BACKEND_FACTOR["spikingjelly"] / BACKEND_FACTOR["compiled"])
    assert set(br[br["over"] == "spikingjelly"]["backend"]) == {"eager", "compiled", "triton"}


# ------------------------------------------------------------------------------------------- roofline

def test_roofline_fraction_from_cost_and_measured_roofline(tmp_path):
    runs, df = _analysed(tmp_path, neurons=("lif",), backends=("eager",), noise=0.0)
    rf = A.roofline_fractions(df, {r.label: r.env for r in runs})
    ok = A.bench_ok(df)
    r, src = rf.iloc[0], ok.iloc[0]
    s = src[A.TIME] / 1e3
    bw, mm = 2000.0, 50.0  # default_env's roofline
    assert r["achieved_gbs"] == pytest.approx(src["cost.min_bytes"] / s / 1e9)
    ai = src["cost.flops"] / src["cost.min_bytes"]
    assert r["fraction"] == pytest.approx((src["cost.flops"] / s / 1e12) / min(mm, ai * bw / 1e3))
    assert r["bound"] == "memory"


def test_roofline_degrades_without_measured_roofline(tmp_path):
    run = make_run(tmp_path / "r", neurons=("lif",), backends=("eager",), env=default_env("r", roofline=False),
                   **SMALL)
    runs = A.load_runs([run])
    rf = A.roofline_fractions(A.frame(runs), {r.label: r.env for r in runs})
    assert rf["fraction"].isna().all()
    assert (rf["reason"] == "env.json has no measured roofline").all()
    assert rf["achieved_gbs"].notna().all()  # achieved rates need no roofline


def test_roofline_with_bandwidth_only(tmp_path):
    env = default_env("r")
    env["roofline"] = {"copy_gbps": 1000.0, "matmul_tflops": {"fp32": None}}
    run = make_run(tmp_path / "r", neurons=("lif",), backends=("eager",), env=env, **SMALL)
    runs = A.load_runs([run])
    rf = A.roofline_fractions(A.frame(runs), {r.label: r.env for r in runs})
    assert np.allclose(rf["fraction"], rf["achieved_gbs"] / 1000.0)
    assert rf["reason"].str.contains("fp32 matmul throughput").all()


# ------------------------------------------------------------------------------ missing and failures

def test_missing_metrics_give_nan_with_the_rows_reason(tmp_path):
    runs, df = _analysed(tmp_path, neurons=("lif", "psn"), missing=("energy", "activity", "modelled_energy", "cost"))
    act = A.activity_summary(df)
    assert act["firing_rate"].isna().all() and act["measured_j_per_gstep"].isna().all()
    assert (act["firing_rate_reason"] == "synthetic run: activity not measured").all()
    assert (act["measured_reason"] == "synthetic run: energy not measured").all()
    rf = A.roofline_fractions(df, {r.label: r.env for r in runs})
    assert rf["fraction"].isna().all() and (rf["reason"] == "synthetic run: cost not measured").all()
    assert not A.scaling_fits(df).empty  # time was measured, so the fits still work


def test_failed_points_are_listed_and_excluded(tmp_path):
    failures = {("psn", "eager", "train", 512): ("oom", "CUDA out of memory"),
                ("psn", "compiled", "train", 512): ("timeout", "exceeded 60 s")}
    _, df = _analysed(tmp_path, neurons=("lif", "psn"), failures=failures)
    bad = A.not_ok(df)
    assert set(zip(bad["status"], bad["reason"])) == {("oom", "CUDA out of memory"), ("timeout", "exceeded 60 s")}
    best = A.best_backend(df)
    assert best[(best["neuron"] == "psn") & (best["mode"] == "train")]["seq_len"].max() == 256
    sp = A.speedups(df)
    assert not ((sp["neuron"] == "psn") & (sp["mode"] == "train") & (sp["seq_len"] == 512)).any()


def test_all_points_failed_gives_empty_tables_not_errors(tmp_path):
    failures = {(n, b, m, T): ("error", "RuntimeError: synthetic") for n in ("lif",) for b in ("eager", "compiled")
                for m in ("forward", "train") for T in SMALL["seq_lens"]}
    runs, _ = _analysed(tmp_path, neurons=("lif",), failures=failures)
    an = A.analyse(runs, n_boot=10)
    assert an.fits.empty and an.speedups.empty and an.crossovers.empty and an.roofline.empty
    assert len(an.not_ok) == len(failures)
    assert (an.claims["verdict"] == "not measured").all()


# ---------------------------------------------------------------------------------------- several runs

def test_compare_runs_ratio_is_the_ratio_of_times(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif",), noise=0.0, env=default_env("a", gpu="GPU A"), **SMALL)
    b = make_run(tmp_path / "b", neurons=("lif",), noise=0.0, prefactor={"lif": 0.025},
                 env=default_env("b", gpu="GPU B"), **SMALL)
    runs = A.load_runs([a, b])
    assert [r.label for r in runs] == ["GPU A · a", "GPU B · b"]
    cmp_ = A.compare_runs(A.frame(runs))
    assert np.allclose(cmp_["ratio: GPU B · b"], 0.5)


def test_repeated_labels_are_made_unique(tmp_path):
    a = make_run(tmp_path / "x" / "run", neurons=("lif",), **SMALL)
    b = make_run(tmp_path / "y" / "run", neurons=("lif",), **SMALL)
    labels = [r.label for r in A.load_runs([a, b])]
    assert len(set(labels)) == 2


def test_load_runs_rejects_empty_and_missing(tmp_path):
    with pytest.raises(ValueError, match="run_dirs is empty"):
        A.load_runs([])
    with pytest.raises(FileNotFoundError, match="no results.jsonl"):
        A.load_runs([tmp_path / "nowhere"])


# --------------------------------------------------------------------------------------------- claims

def test_shipped_claims_load_and_cite_a_source():
    claims = A.load_claims()
    assert len(claims) >= 10
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))
    for c in claims:
        assert c.source and c.conditions and c.evidence in "PCRSU"
    # the abstract's headline number is carried as primary evidence
    dsn = next(c for c in claims if c.id == "dsn_psn_train_16k")
    assert dsn.value == 25.6 and dsn.evidence == "P" and dsn.measure["seq_len"] == 16384


@pytest.mark.parametrize("measured, paper, verdict", [
    (25.0, 25.6, "consistent"), (10.0, 25.6, "lower than paper"), (60.0, 25.6, "higher than paper"),
    (0.5, 25.6, "contradicts"), (3.5, [3, 4], "consistent"), (1.5, [3, 4], "lower than paper"),
    (2.0, 0.33, "contradicts"), (0.3, 0.33, "consistent"),
])
def test_verdicts(measured, paper, verdict):
    assert A._verdict_number(measured, paper, 0.25)[0] == verdict


def test_speedup_claim_measures_best_times_at_the_papers_length(tmp_path):
    _, df = _analysed(tmp_path, neurons=("psn", "dsn"), noise=0.0, seq_lens=(1024, 4096, 16384))
    claim = next(c for c in A.load_claims() if c.id == "dsn_psn_train_16k")
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    want = time_ms("psn", "compiled", "train", 16384) / time_ms("dsn", "compiled", "train", 16384)
    assert rec["value"] == pytest.approx(want, rel=1e-9)
    assert rec["verdict"] == A._verdict_number(want, 25.6, claim.tolerance)[0]
    assert "T=16384" in rec["how"]


def test_backward_claim_uses_train_minus_forward(tmp_path):
    _, df = _analysed(tmp_path, neurons=("psn", "dsn"), noise=0.0, seq_lens=(4096, 16384))
    claim = next(c for c in A.load_claims() if c.id == "dsn_psn_backward_16k")
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    def bwd(n):
        return time_ms(n, "compiled", "train", 16384) - time_ms(n, "compiled", "forward", 16384)
    assert rec["value"] == pytest.approx(bwd("psn") / bwd("dsn"), rel=1e-9)


def test_claim_without_matching_length_is_not_measured(tmp_path):
    _, df = _analysed(tmp_path, neurons=("psn", "dsn"))
    claim = next(c for c in A.load_claims() if c.id == "dsn_psn_train_16k")
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    assert rec["verdict"] == "not measured" and "T=16384" in rec["difference"]


@pytest.mark.parametrize("exponent, verdict", [(0.5, "consistent"), (2.0, "contradicts")])
def test_trend_claim(tmp_path, exponent, verdict):
    # lif is O(T); a psn cheaper than O(T) makes t_LIF/t_PSN grow with T, an O(T²) one makes it shrink
    _, df = _analysed(tmp_path, neurons=("lif", "psn"), exponent={"psn": exponent}, noise=0.0,
                      seq_lens=(4, 8, 16, 32, 64))
    claim = next(c for c in A.load_claims() if c.id == "psn_lif_grows_with_t_train")
    assert A.evaluate_claim(claim, df, df["run"].cat.categories[0])["verdict"] == verdict


def test_firing_rate_and_extrapolation_claims(tmp_path):
    ex = {"neurons": ["dsn"], "train_len": 64, "eval_lens": [64, 128, 256, 1024], "growth": {"dsn": 0.0}}
    _, df = _analysed(tmp_path, neurons=("lif", "psn", "sliding_psn", "dsn"), extrapolation=ex, workload="network")
    run = df["run"].cat.categories[0]
    claims = {c.id: c for c in A.load_claims()}
    rate = A.evaluate_claim(claims["dsn_lowest_firing_rate"], df, run)
    assert rate["verdict"] == "consistent"  # synthetic rates put DSN lowest
    _, layer = _analysed(tmp_path, name="layer", neurons=("lif", "psn", "sliding_psn", "dsn"))
    other = A.evaluate_claim(claims["dsn_lowest_firing_rate"], layer, layer["run"].cat.categories[0])
    assert other["verdict"] == "not comparable" and "workload layer (paper: network)" in other["difference"]
    # rows whose drive was calibrated to a target rate cannot say which neuron fires less
    calibrated = df.copy()
    calibrated["activity.target_rate"] = 0.1
    not_measured = A.evaluate_claim(claims["dsn_lowest_firing_rate"], calibrated, run)
    assert not_measured["verdict"] == "not measured" and "equal by construction" in not_measured["difference"]
    stable = A.evaluate_claim(claims["dsn_extrapolation"], df, run)
    assert stable["verdict"] == "consistent" and "16× train length" in stable["measured"]
    assert "paper 15×" not in stable["difference"]  # 16× ≥ the paper's 15×

    ex["growth"] = {"dsn": 0.3}
    _, df2 = _analysed(tmp_path, name="grow", neurons=("dsn",), extrapolation=ex)
    grow = A.evaluate_claim(claims["dsn_extrapolation"], df2, df2["run"].cat.categories[0])
    assert grow["verdict"] == "contradicts"


def test_bad_claims_file_names_the_claim(tmp_path):
    p = tmp_path / "claims.yaml"
    p.write_text("claims:\n  - {id: x, paper: p, statement: s, value: 1, conditions: c, source: s, evidence: P,"
                 " measure: {kind: guess}}\n")
    with pytest.raises(ValueError, match=r"claims\[0\] \(x\) measure.kind='guess'"):
        A.load_claims(p)
    p.write_text("claims:\n  - {id: y}\n")
    with pytest.raises(ValueError, match=r"claims\[0\] lacks"):
        A.load_claims(p)


def test_extrapolation_claim_with_non_finite_loss_is_contradicted(tmp_path):
    ex = {"neurons": ["dsn"], "train_len": 64, "eval_lens": [64, 128, 256], "nonfinite": ["dsn"]}
    _, df = _analysed(tmp_path, neurons=("dsn",), extrapolation=ex)
    summary = A.extrapolation_summary(df).iloc[0]
    assert not summary["all_finite"] and summary["max_eval_len"] == 256 and math.isnan(summary["loss_max_eval"])
    claim = next(c for c in A.load_claims() if c.id == "dsn_extrapolation")
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    assert rec["verdict"] == "contradicts" and "eval 128, 256" in rec["measured"]
    assert "paper 15×" in rec["difference"]  # evaluated only to 4× the training length


def test_extrapolation_claim_over_a_shorter_range_is_inconclusive(tmp_path):
    ex = {"neurons": ["dsn"], "train_len": 64, "eval_lens": [64, 128, 256]}
    _, df = _analysed(tmp_path, neurons=("dsn",), extrapolation=ex)
    claim = next(c for c in A.load_claims() if c.id == "dsn_extrapolation")
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    assert rec["verdict"] == "inconclusive" and "evaluated only to 4× the training length" in rec["difference"]


def test_per_layer_firing_rates_of_a_network(tmp_path):
    run = make_run(tmp_path / "net", neurons=("lif",), workload="network", **SMALL)
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for r in rows:
        r["activity"]["per_layer"] = [0.1, 0.2, 0.3]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    act = A.activity_summary(A.frame(A.load_runs([run])))
    assert act.iloc[0]["per_layer"] == pytest.approx([0.1, 0.2, 0.3])
    assert act.iloc[0]["workload"] == "network"


# ------------------------------------------------------------------------- claims at the paper's setting

SHD_NET = {"layers": 4, "hidden": 128, "outputs": 20}


def test_cpu_rows_are_not_comparable_with_a_gpu_claim(tmp_path):
    rows = make_rows(neurons=("psn", "dsn"), seq_lens=(32, 64), modes=("train",), samples=5)
    claim = next(c for c in A.load_claims() if c.id == "dsn_psn_t32_iclr")
    cuda = _frame_of(tmp_path, rows, "cuda")
    rec = A.evaluate_claim(claim, cuda, cuda["run"].cat.categories[0])
    want = time_ms("psn", "compiled", "train", 32) / time_ms("dsn", "compiled", "train", 32)
    assert rec["verdict"] not in ("not comparable", "not measured") and rec["value"] == pytest.approx(want, rel=0.2)
    assert "device cuda" in rec["how"]
    cpu = _frame_of(tmp_path, _with(rows, device="cpu"), "cpu")
    rec = A.evaluate_claim(claim, cpu, cpu["run"].cat.categories[0])
    assert rec["verdict"] == "not comparable" and rec["measured"] is None and "value" not in rec
    assert rec["difference"] == "the run's rows differ from the paper's setting: device cpu (paper: cuda)"


def test_a_smoke_run_is_comparable_with_no_speed_claim(tmp_path):
    """The issue's case: a CPU run of one layer at B=2, F=8 once got "higher than paper" for SPSN's SHD
    network and "lower than paper" for DSN vs PSN at T=32."""
    rows = make_rows(neurons=("lif", "psn", "sliding_psn", "spsn", "psu", "dsn"), seq_lens=(15, 32, 64),
                     batch=2, features=8, samples=5)
    df = _frame_of(tmp_path, _with(rows, device="cpu"))
    claims = A.evaluate_claims(df).set_index("id")
    speed = [c.id for c in A.load_claims() if c.measure["kind"] in ("speedup", "speedup_trend")]
    assert set(claims.loc[speed, "verdict"]) == {"not comparable"}
    shd = claims.loc["spsn_lif_shd", "difference"]
    for part in ("device cpu (paper: cuda)", "workload layer (paper: network)", "features 8 (paper: 700)",
                 "layers not recorded (paper: 4)", "hidden not recorded (paper: 128)"):
        assert part in shd
    assert claims.loc["dsn_lowest_firing_rate", "verdict"] == "not comparable"


def test_rows_at_the_papers_network_give_a_verdict_and_others_are_left_out(tmp_path):
    net = _with(make_rows(neurons=("lif", "spsn"), seq_lens=(64, 256), modes=("train",), batch=4, features=700,
                          workload="network", samples=5, noise=0.0), workload_params=SHD_NET)
    # the same neurons at another width (with a far faster LIF) and on the CPU: must not enter the range
    other = _with(make_rows(neurons=("lif", "spsn"), seq_lens=(64, 256), modes=("train",), batch=4, features=700,
                            workload="network", samples=5, noise=0.0, prefactor={"lif": 1e-4}),
                  workload_params={**SHD_NET, "hidden": 64})
    other += _with(net, device="cpu")
    claim = next(c for c in A.load_claims() if c.id == "spsn_lif_shd")
    df = _frame_of(tmp_path, net + other)
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    lo, hi = (time_ms("lif", "compiled", "train", T) / time_ms("spsn", "compiled", "train", T) for T in (64, 256))
    assert rec["measured"].startswith(f"{min(lo, hi):.3g}×–{max(lo, hi):.3g}×")
    assert rec["verdict"] in ("consistent", "higher than paper", "lower than paper")
    assert f"({len(other)} ok row(s) of the claim's neurons at other settings left out)" in rec["how"]
    # only the rows at another hidden width: every setting but one matches, and that one is named
    df = _frame_of(tmp_path, other[: len(other) // 2], "narrow")
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    assert rec["verdict"] == "not comparable" and rec["difference"].endswith("hidden 64 (paper: 128)")


def test_neuron_range_setting_keeps_only_the_papers_n(tmp_path):
    rows = make_rows(neurons=("lif", "psn"), seq_lens=(4, 8, 16, 32, 64), modes=("train",), batch=1,
                     features=128, samples=5, noise=0.0, exponent={"psn": 0.5})
    claim = next(c for c in A.load_claims() if c.id == "psn_lif_grows_with_t_train")
    df = _frame_of(tmp_path, rows)  # N = 128, below the paper's 2^8
    rec = A.evaluate_claim(claim, df, df["run"].cat.categories[0])
    assert rec["verdict"] == "not comparable" and "neurons 128 (paper: 256…1048576)" in rec["difference"]
    df = _frame_of(tmp_path, _with(rows, batch=2, neurons=256), "n256")
    assert A.evaluate_claim(claim, df, df["run"].cat.categories[0])["verdict"] == "consistent"


def test_a_claim_whose_neurons_are_absent_is_not_measured_not_incomparable(tmp_path):
    df = _frame_of(tmp_path, _with(make_rows(neurons=("lif", "psn"), seq_lens=(32, 64), samples=5), device="cpu"))
    claim = next(c for c in A.load_claims() if c.id == "spsn_lif_shd")
    assert A.evaluate_claim(claim, df, df["run"].cat.categories[0])["verdict"] == "not measured"


def test_bad_setting_in_a_claim_is_named(tmp_path):
    p = tmp_path / "claims.yaml"
    p.write_text("claims:\n  - {id: z, paper: p, statement: s, value: 1, conditions: c, source: s, evidence: P,"
                 " measure: {kind: speedup, neuron: a, baseline: b, neurons: {low: 1}}}\n")
    with pytest.raises(ValueError, match=r"claims\[0\] \(z\) measure.neurons=\{'low': 1\}"):
        A.load_claims(p)


def test_frame_of_an_extrapolation_only_run_raises_no_pandas_deprecation(tmp_path):
    """An extrapolation-only run has no mode/workload column: filling it must not warn (#14 item 10)."""
    import warnings

    run = make_run(tmp_path / "ex", neurons=(), extrapolation={"neurons": ["dsn", "psn"], "train_len": 64,
                                                                "eval_lens": [64, 128]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pandas4Warning is a DeprecationWarning
        df = A.frame(A.load_runs([run]))
        A.analyse(A.load_runs([run]), n_boot=0)
    assert set(df["mode"]) == {"—"} and set(df["kind"]) == {"extrapolation"}


def test_frame_of_rows_without_kind_raises_no_pandas_deprecation(tmp_path):
    """Rows written before ``kind`` existed are timed points; filling the missing column must not warn."""
    import warnings

    run = make_run(tmp_path / "old", neurons=("lif",), backends=("eager",), seq_lens=(64, 128), modes=("forward",),
                   samples=3)
    rows = [json.loads(line) for line in (run / RESULTS_FILE).read_text().splitlines()]
    (run / RESULTS_FILE).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "kind"}) + "\n"
                                            for r in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = A.frame(A.load_runs([run]))
    assert set(df["kind"]) == {"bench"} and len(A.bench_ok(df)) == 2


def test_report_plots_take_only_the_figure_specs():
    """One-way flow (#15): the report's plots never read rows or call into analysis beyond the figure specs
    (checked on the import statements, with ast; the layers of all modules: tests/test_layering.py)."""
    import ast
    from pathlib import Path

    root = Path(A.__file__).parent.parent

    def imports(path: Path) -> set[str]:
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-node.level])
                mod = f"{base}.{node.module}" if node.module else base
                out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        return out

    plots = imports(root / "report" / "plots.py")
    assert {m for m in plots if m.startswith("perfsuite.analysis")} <= {
        "perfsuite.analysis.figures", "perfsuite.analysis.figures.FigurePlan", "perfsuite.analysis.figures.FigureSpec",
        "perfsuite.analysis.figures.Style"}
    assert not any(m.startswith(("perfsuite.results", "pandas.io")) for m in plots)
