"""The regression gate on synthetic runs with known answers: quiet on A/A noise, catches real changes.

Statistical tests draw raw time samples i.i.d. from a known distribution (`_sample_rows`), so an A/A
pair really is the same distribution; run-level tests use `synthetic_runs.make_run`.
"""
import json
import math

import numpy as np
import pytest
from synthetic_runs import default_env, make_run

from perfsuite import compare as cmp
from perfsuite import compare_output as out
from perfsuite import rerun, verdicts
from perfsuite.results import ENV_FILE, RESULTS_FILE, append_row, point_key

POINTS = [dict(kind="bench", neuron=n, neuron_params={}, backend="eager", seq_len=T, batch=4, features=8,
               precision="fp32", mode="forward", workload="layer", device="cuda")
          for n, T in (("lif", 256), ("psn", 1024), ("dsn", 4096))]
MEDIAN_MS = (0.8, 2.5, 11.0)


def _sample_rows(rng, *, slowdown=1.0, sigma=0.05, n=30, outliers=0.0, firing_rate=0.15, memory=1 << 20,
                 equal_fraction=None):
    """One row per POINTS entry: ``n`` log-normal samples (sigma in log space) around the point's median
    times ``slowdown``; a fraction ``outliers`` of samples is 1.5× slower (a one-sided GPU hiccup)."""
    rows = []
    for fields, median in zip(POINTS, MEDIAN_MS):
        s = median * slowdown * np.exp(rng.normal(0.0, sigma, n))
        s[rng.random(n) < outliers] *= 1.5
        rows.append({**fields, "key": point_key(fields), "status": "ok", "reason": None,
                     "time": {"samples_ms": s.tolist(), "median_ms": float(np.median(s))},
                     "memory": {"peak_allocated_bytes": memory, "method": "cuda_allocator"},
                     "activity": {"firing_rate": firing_rate},
                     "agreement": None if equal_fraction is None else {"equal_fraction": equal_fraction}})
    return rows


def _time_verdicts(findings):
    return [f.verdict for f in findings if f.metric == "time"]


def _write(directory, rows, env=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ENV_FILE).write_text(json.dumps(env or default_env(directory.name)))
    for row in rows:
        append_row(directory / RESULTS_FILE, row)
    return directory


# ------------------------------------------------------------------------------ statistical behaviour
def test_aa_false_positive_rate_at_most_one_percent():
    """200 A/A pairs × 3 points drawn from one distribution (5 % log-normal noise; every other pair
    with 5 % of its samples 1.5× slower, a one-sided GPU hiccup): count every time verdict that is not
    `unchanged`; at most 1 % of the 600 may be."""
    rng = np.random.default_rng(1234)
    verdicts = []
    for i in range(200):
        outliers = 0.05 * (i % 2)
        verdicts += _time_verdicts(cmp.compare_rows(_sample_rows(rng, outliers=outliers),
                                                    _sample_rows(rng, outliers=outliers)))
    assert len(verdicts) == 600
    false_positives = sum(v == "regression" for v in verdicts)
    false_changes = sum(v != "unchanged" for v in verdicts)
    assert false_positives <= 6, f"{false_positives} false regressions in 600 A/A comparisons"
    assert false_changes <= 6, f"{false_changes} false changes in 600 A/A comparisons"


def test_twenty_percent_slowdown_is_caught_every_time():
    rng = np.random.default_rng(7)
    verdicts = []
    for _ in range(30):
        verdicts += _time_verdicts(cmp.compare_rows(_sample_rows(rng), _sample_rows(rng, slowdown=1.2)))
    assert verdicts == ["regression"] * 90


def test_twenty_percent_speedup_is_an_improvement():
    rng = np.random.default_rng(8)
    findings = cmp.compare_rows(_sample_rows(rng), _sample_rows(rng, slowdown=1 / 1.2))
    assert _time_verdicts(findings) == ["improvement"] * 3
    assert cmp.Comparison(findings, cmp.Thresholds()).exit_code == 0


def test_two_percent_under_five_percent_noise_is_not_flagged():
    """A real +2 % shift under 5 % sample noise (30 samples a side) stays below the 5 % threshold:
    at most 1 % of 600 comparisons may flag it."""
    rng = np.random.default_rng(99)
    verdicts = []
    for _ in range(200):
        verdicts += _time_verdicts(cmp.compare_rows(_sample_rows(rng), _sample_rows(rng, slowdown=1.02)))
    assert len(verdicts) == 600
    flagged = sum(v == "regression" for v in verdicts)
    assert flagged <= 6, f"+2% flagged {flagged} times in 600"


def test_time_verdict_evidence():
    rng = np.random.default_rng(3)
    b = 10 * np.exp(rng.normal(0, 0.03, 40))
    verdict, ratio, ev = cmp.time_verdict(b, b * 1.3, threshold=0.05)
    assert verdict == "regression" and ratio == pytest.approx(1.3)
    assert ev["p_value"] < 1e-6 and ev["alternative"] == "slower"
    lo, hi = ev["ci"]
    assert 1.05 < lo <= 1.3 <= hi
    assert ev["n"] == [40, 40] and ev["confidence"] == 0.95


def test_interval_must_clear_the_threshold():
    """A certain but small slowdown (+3 % with 0.5 % noise) is significant yet below the 5 % threshold."""
    rng = np.random.default_rng(4)
    b = 10 * np.exp(rng.normal(0, 0.005, 40))
    verdict, ratio, ev = cmp.time_verdict(b, b * 1.03, threshold=0.05)
    assert verdict == "unchanged" and ev["p_value"] < 1e-6 and ev["ci"][1] < 1.05
    verdict, _, _ = cmp.time_verdict(b, b * 1.03, threshold=0.01)
    assert verdict == "regression"


def test_too_few_samples_are_untestable_not_unchanged():
    """Three samples a side cannot reach p < 0.01 (the exact U test's smallest one-sided p is 1/20): a
    +50 % change is then `untestable`, with the reason, never `unchanged`."""
    verdict, ratio, ev = cmp.time_verdict([1.0, 1.1, 0.9], [1.5, 1.6, 1.4], threshold=0.05)
    assert verdict == "untestable" and ratio > 1.3 and ev["p_value"] >= 0.05 and ev["ci"] is None
    assert "3 baseline, 3 candidate" in ev["untestable"] and "0.05" in ev["untestable"]
    f = verdicts._time_finding("k", {"time": {"samples_ms": [1.0, 1.1, 0.9]}},
                          {"time": {"samples_ms": [1.5, 1.6, 1.4]}}, cmp.Thresholds(), None)
    assert f.verdict == "untestable" and "too few samples" in f.detail
    # an A/A pair of 4 a side is untestable too (1/70 >= 0.01): the count, not the data, decides
    verdict, _, ev = cmp.time_verdict([1.0] * 4, [1.0] * 4, threshold=0.05)
    assert verdict == "untestable" and "1/70" not in ev["untestable"] and "0.014" in ev["untestable"]
    # a larger alpha makes 4 a side testable: 1/70 < 0.05
    assert cmp.time_verdict([1.0, 1.1, 0.9, 1.0], [1.5, 1.6, 1.4, 1.5], threshold=0.05, alpha=0.05)[0] == "regression"


@pytest.mark.parametrize("n_b,n_c,alpha,testable", [(5, 5, 0.01, True), (4, 4, 0.01, False), (4, 5, 0.01, True),
                                                    (3, 6, 0.01, False), (3, 7, 0.01, True), (2, 8, 0.01, False),
                                                    (3, 3, 0.05, False), (3, 4, 0.05, True)])
def test_untestable_reason_follows_the_exact_tests_smallest_p(n_b, n_c, alpha, testable):
    """Testable exactly when scipy's exact U test, on fully separated samples (its most extreme case),
    gives p < alpha: 1/C(10,5) = 1/252, 1/C(8,4) = 1/70, 1/C(9,4) = 1/126, 1/C(9,3) = 1/84,
    1/C(10,3) = 1/120, 1/C(10,2) = 1/45, 1/C(6,3) = 1/20, 1/C(7,3) = 1/35."""
    from scipy.stats import mannwhitneyu

    p = mannwhitneyu(np.arange(n_c) + 100.0, np.arange(n_b), alternative="greater", method="exact").pvalue
    assert p == pytest.approx(1 / math.comb(n_b + n_c, n_b))
    assert (cmp.untestable_reason(n_b, n_c, alpha) is None) == testable == (p < alpha)


def test_min_testable_samples():
    assert cmp.min_testable_samples(0.01) == 5  # 1/C(10,5) = 1/252; 1/C(8,4) = 1/70 is not below 0.01
    assert cmp.min_testable_samples(0.05) == 4  # 1/C(8,4) = 1/70; 1/C(6,3) = 1/20 is not below 0.05
    assert cmp.min_testable_samples(0.001) == 7  # 1/C(14,7) = 1/3432; 1/C(12,6) = 1/924
    for alpha in (0.2, 0.01, 0.001):
        n = cmp.min_testable_samples(alpha)
        assert cmp.untestable_reason(n, n, alpha) is None and cmp.untestable_reason(n - 1, n - 1, alpha)


def test_estimate_beyond_threshold_without_evidence_says_so():
    f = verdicts._time_finding("k", {"time": {"samples_ms": [1.0, 1.1, 0.9, 1.0, 1.05]}},
                          {"time": {"samples_ms": [1.5, 0.95, 1.4, 1.3, 1.35]}}, cmp.Thresholds(), None)
    assert f.verdict == "unchanged" and "evidence not sufficient" in f.detail


def test_threshold_is_never_below_the_noise_floor():
    rng = np.random.default_rng(5)
    b, c = _sample_rows(rng), _sample_rows(rng, slowdown=1.12)
    assert set(_time_verdicts(cmp.compare_rows(b, c))) == {"regression"}
    floor = cmp.NoiseFloor({}, default=0.15)
    findings = cmp.compare_rows(b, c, noise_floor=floor)
    assert set(_time_verdicts(findings)) == {"unchanged"}
    assert all(f.evidence["threshold"] == 0.15 for f in findings if f.metric == "time")


# ------------------------------------------------------------------------------------- other metrics
def test_memory_ten_percent_is_caught_and_half_percent_is_not():
    rng = np.random.default_rng(0)
    base = _sample_rows(rng, memory=1_000_000)
    worse = cmp.compare_rows(base, _sample_rows(rng, memory=1_100_000))
    assert [f.verdict for f in worse if f.metric == "memory"] == ["regression"] * 3
    assert all(f.change == pytest.approx(1.1) for f in worse if f.metric == "memory")
    same = cmp.compare_rows(base, _sample_rows(rng, memory=1_005_000))
    assert [f.verdict for f in same if f.metric == "memory"] == ["unchanged"] * 3
    better = cmp.compare_rows(base, _sample_rows(rng, memory=800_000))
    assert [f.verdict for f in better if f.metric == "memory"] == ["improvement"] * 3


@pytest.mark.parametrize("rate,verdict", [(0.18, "regression"), (0.12, "regression"), (0.155, "unchanged")])
def test_firing_rate_change_in_either_direction_is_caught(rate, verdict):
    rng = np.random.default_rng(0)
    findings = cmp.compare_rows(_sample_rows(rng, firing_rate=0.15), _sample_rows(rng, firing_rate=rate))
    fr = [f for f in findings if f.metric == "firing_rate"]
    assert [f.verdict for f in fr] == [verdict] * 3
    assert fr[0].change == pytest.approx(rate - 0.15)


def test_agreement_drop_is_a_regression_and_rise_an_improvement():
    rng = np.random.default_rng(0)
    base = _sample_rows(rng, equal_fraction=0.99)
    drop = cmp.compare_rows(base, _sample_rows(rng, equal_fraction=0.95))
    assert {f.verdict for f in drop if f.metric == "agreement"} == {"regression"}
    rise = cmp.compare_rows(base, _sample_rows(rng, equal_fraction=1.0))
    assert {f.verdict for f in rise if f.metric == "agreement"} == {"improvement"}


def test_metric_on_one_side_only_is_missing_or_new():
    rng = np.random.default_rng(0)
    base, cand = _sample_rows(rng), _sample_rows(rng, equal_fraction=0.99)
    for r in cand:
        r["memory"] = None
    findings = cmp.compare_rows(base, cand)
    assert {f.verdict for f in findings if f.metric == "memory"} == {"missing"}
    assert {f.verdict for f in findings if f.metric == "agreement"} == {"new"}


def test_failed_and_recovered_points():
    rng = np.random.default_rng(0)
    base, cand = _sample_rows(rng), _sample_rows(rng)
    cand[0].update(status="oom", reason="CUDA out of memory", time=None)
    cand[1].update(status="skipped", reason="predicted memory above the limit", time=None)
    findings = {f.key: f for f in cmp.compare_rows(base, cand)}
    assert findings[base[0]["key"]].verdict == "regression" and "oom" in findings[base[0]["key"]].detail
    assert findings[base[1]["key"]].verdict == "missing"
    back = {f.key: f for f in cmp.compare_rows(cand, base) if f.metric == "status"}
    assert back[base[0]["key"]].verdict == "improvement"


# --------------------------------------------------------------------------------------- run folders
def test_missing_and_new_points_are_listed(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(64, 128), modes=("forward",), noise=0.0)
    b = make_run(tmp_path / "b", neurons=("lif",), seq_lens=(128, 256), modes=("forward",), noise=0.0)
    c = cmp.compare_runs(a, b)
    points = {(f.verdict, f.point.split("/")[4]) for f in c.findings if f.metric == "point"}
    assert points == {("missing", "64"), ("new", "256")}
    assert c.counts()["missing"] == 2 and c.counts()["new"] == 2  # two backends each
    # 2 of 4 baseline points missing (> 10 %) fails by default (#11 item 5); --allow-missing: the old rule
    assert c.exit_code == 1 and c.too_many_missing and "2 of 4 baseline points are missing" in c.warnings[0]
    assert out.verdict_word(c) == "FAIL"
    assert cmp.compare_runs(a, b, allow_missing=True).exit_code == 0
    assert cmp.compare_runs(a, b, allow_missing=True, fail_on_missing=True).exit_code == 1


def test_missing_share_at_or_below_ten_percent_passes(tmp_path):
    """1 of 10 baseline points missing is at the limit (not above it): the gate passes, listing it."""
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(16, 32, 64, 128, 256), modes=("forward",), noise=0.0)
    b = make_run(tmp_path / "b", neurons=("lif",), seq_lens=(16, 32, 64, 128, 256), modes=("forward",), noise=0.0)
    rows = [json.loads(line) for line in (b / RESULTS_FILE).read_text().splitlines()]
    assert len(rows) == 10
    (b / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    c = cmp.compare_runs(a, b)
    assert len(c.missing_points) == 1 and c.baseline_points == 10 and not c.too_many_missing
    assert c.exit_code == 0


def test_untestable_findings_are_counted_warned_and_fail_only_on_request(tmp_path):
    """Runs of 3 samples a point: even a +50 % slowdown cannot be tested. The gate passes (exit 0) but
    counts the findings as untestable in the headline, table, Markdown and JSON, with a warning naming
    timing.min_reps; fail_on_untestable turns them into exit 1."""
    from rich.console import Console

    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64, 256), modes=("forward",), noise=0.0, samples=3)
    a = make_run(tmp_path / "a", seed=1, **kw)
    slow = make_run(tmp_path / "slow", seed=2, prefactor={"lif": 0.05 * 1.5}, **kw)
    c = cmp.compare_runs(a, slow)
    time = [f for f in c.findings if f.metric == "time"]
    assert [f.verdict for f in time] == ["untestable"] * 2 and c.untestable == time
    assert all(f.evidence["untestable"].startswith("too few samples (3 baseline, 3 candidate)") for f in time)
    assert c.exit_code == 0 and c.counts()["untestable"] == 2
    assert len(c.warnings) == 1 and "2 time finding(s) untestable" in c.warnings[0]
    assert "timing.min_reps >= 5" in c.warnings[0] and "--fail-on-untestable" in c.warnings[0]
    head = out._headline(c)
    assert head.startswith("PASS: ") and "2 untestable" in head
    md = out.to_markdown(c)
    assert f"**{head}**" in md and "> **warning:** 2 time finding(s) untestable" in md
    assert md.count("| untestable |") == 2 * 2  # changed table + the folded full table
    doc = json.loads(out.to_json(c))
    assert doc["counts"]["untestable"] == 2 and doc["warnings"] == c.warnings and doc["result"] == "pass"
    assert doc["fail_on_untestable"] is False
    console = Console(record=True, width=300)
    out.render_table(c, console)
    text = console.export_text()
    assert text.count("untestable") >= 3 and "warning: 2 time finding(s) untestable" in text

    strict = cmp.compare_runs(a, slow, fail_on_untestable=True)
    assert strict.exit_code == 1 and out._headline(strict).startswith("FAIL: ")
    assert "they fail the gate" in strict.warnings[0]
    assert json.loads(out.to_json(strict))["result"] == "fail"
    # enough samples: the same slowdown is a regression and nothing is untestable
    kw["samples"] = 8
    a, slow = make_run(tmp_path / "a8", seed=1, **kw), make_run(tmp_path / "s8", seed=2, prefactor={"lif": 0.075}, **kw)
    c = cmp.compare_runs(a, slow, fail_on_untestable=True)
    assert c.counts()["untestable"] == 0 and c.counts()["regression"] == 2 and not c.warnings


def test_identical_runs_pass_and_regressed_run_fails(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif", "psn"), seq_lens=(64, 256), noise=0.0, seed=1)
    same = make_run(tmp_path / "same", neurons=("lif", "psn"), seq_lens=(64, 256), noise=0.0, seed=1)
    slow = make_run(tmp_path / "slow", neurons=("lif", "psn"), seq_lens=(64, 256), noise=0.0, seed=2,
                    prefactor={"psn": 0.0005 * 1.3})
    ok = cmp.compare_runs(a, same)
    assert ok.exit_code == 0 and set(ok.counts()) == set(cmp.VERDICTS) and ok.counts()["regression"] == 0
    bad = cmp.compare_runs(a, slow)
    assert bad.exit_code == 1
    assert {f.point.split("/")[0] for f in bad.regressions} == {"psn"}
    assert all(f.metric == "time" for f in bad.regressions)


@pytest.mark.parametrize("field,value", [("gpu", {"name": "Other GPU"}), ("torch", "9.9"), ("triton", "9.9")])
def test_mismatched_environments_are_refused_unless_forced(tmp_path, field, value):
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(64,), noise=0.0)
    env = default_env("b")
    env[field] = value
    b = make_run(tmp_path / "b", env=env, neurons=("lif",), seq_lens=(64,), noise=0.0)
    with pytest.raises(cmp.EnvironmentMismatch, match=field):
        cmp.compare_runs(a, b)
    forced = cmp.compare_runs(a, b, force=True)
    assert forced.forced and [d[0] for d in forced.env_differences] == [field]
    assert "forced across environments" in out.to_markdown(forced)


def test_driver_mismatch_is_refused(tmp_path):
    env_a, env_b = default_env("a"), default_env("b")
    env_a["gpu"]["driver"], env_b["gpu"]["driver"] = "550.54", "560.28"
    a = make_run(tmp_path / "a", env=env_a, neurons=("lif",), seq_lens=(64,))
    b = make_run(tmp_path / "b", env=env_b, neurons=("lif",), seq_lens=(64,))
    with pytest.raises(cmp.EnvironmentMismatch, match="driver"):
        cmp.compare_runs(a, b)


def test_missing_run_and_keyless_rows_are_bad_input(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(64,))
    with pytest.raises(FileNotFoundError, match="nope"):
        cmp.compare_runs(a, tmp_path / "nope")
    with pytest.raises(ValueError, match="row 1 has no 'key'"):
        cmp.compare_rows([{"status": "ok"}], [])


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match=r"threshold time=-0.1 .* >= 0"):
        cmp.Thresholds(time=-0.1)
    with pytest.raises(ValueError, match=r"alpha=0.7"):
        cmp.Thresholds(alpha=0.7)
    with pytest.raises(ValueError, match=r"bootstrap=10"):
        cmp.Thresholds(bootstrap=10)


# --------------------------------------------------------------------------------------- noise floor
def test_noise_floor_from_aa_runs_silences_run_to_run_drift(tmp_path):
    """make_run's point noise moves each point's median from run to run (3 % in log space) while its
    samples scatter only 1 %: the U test sees every drift as significant, so plain A/A comparisons raise
    false alarms; a floor measured from five other A/A runs keeps them at most 1 % of the comparisons
    (its z = 3 aims at ≈ 0.3 %) and a +40 % change still fails."""
    kw = dict(neurons=("lif", "psn"), seq_lens=(64, 1024), noise=0.03)
    aa = [make_run(tmp_path / f"aa{i}", seed=10 + i, **kw) for i in range(5)]
    nf = cmp.write_noise_floor(tmp_path / "floor.json", aa)
    assert len(nf.points) == 16 and nf.default == max(nf.points.values())
    assert 0.05 < min(nf.points.values()) and nf.default < 0.4
    loaded = cmp.load_noise_floor(tmp_path / "floor.json")
    assert loaded.points == pytest.approx(nf.points) and loaded.source.endswith("floor.json")
    assert loaded.runs == nf.runs == 5 and not loaded.forced

    plain = with_floor = compared = 0
    for seed in range(20, 30):
        base = make_run(tmp_path / "base", seed=seed, **kw)
        cand = make_run(tmp_path / "cand", seed=seed + 100, **kw)
        plain += len(cmp.compare_runs(base, cand).regressions)
        gated = cmp.compare_runs(base, cand, noise_floor=tmp_path / "floor.json")
        # five A/A runs: the floor itself draws no warning, but floors above 10 % leave the gate unable to
        # see a 10 % change, and it says so (#11 item 5)
        assert all("without the power to see a 10% change" in w for w in gated.warnings)
        assert gated.exit_code or (gated.low_power and gated.warnings)
        with_floor += len(gated.regressions)
        compared += sum(f.metric == "time" for f in gated.findings)
    assert compared == 160
    assert plain > 5, "the drift should fool a gate without a floor (else this test shows nothing)"
    assert with_floor <= compared // 100, f"{with_floor} false regressions with the floor ({plain} without)"
    other = default_env("other", gpu="Other GPU")
    with pytest.raises(cmp.EnvironmentMismatch, match="noise floor .* another environment"):
        cmp.compare_runs(make_run(tmp_path / "o1", env=other, **kw), make_run(tmp_path / "o2", env=other, **kw),
                         noise_floor=tmp_path / "floor.json")
    slow = make_run(tmp_path / "slow", seed=200, prefactor={"psn": 0.0005 * 1.4}, **kw)
    gated = cmp.compare_runs(base, slow, noise_floor=tmp_path / "floor.json")
    assert {f.point.split("/")[0] for f in gated.regressions} == {"psn"}


def test_noise_floor_file_records_every_run_and_its_environment(tmp_path):
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64, 256), modes=("forward",))
    runs = [make_run(tmp_path / f"aa{i}", seed=i, **kw) for i in range(2)]
    cmp.write_noise_floor(tmp_path / "floor.json", runs)
    doc = json.loads((tmp_path / "floor.json").read_text())
    assert doc["n_runs"] == 2 and doc["runs"] == [str(r) for r in runs] and doc["forced"] is False
    assert [e["run"] for e in doc["run_envs"]] == doc["runs"]
    for e in doc["run_envs"]:
        assert e["env"]["gpu"] == "Synthetic GPU" and e["env"]["torch"] == "0.0-synthetic"
    assert doc["env"] == doc["run_envs"][0]["env"]
    assert cmp.load_noise_floor(tmp_path / "floor.json").runs == 2


@pytest.mark.parametrize("field,value", [("gpu", {"name": "Other GPU"}), ("torch", "9.9"),
                                         ("compile_backend", "inductor")])
def test_noise_floor_refuses_runs_from_different_environments_unless_forced(tmp_path, field, value):
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64, 256), modes=("forward",))
    env = default_env("odd")
    env[field] = value
    runs = [make_run(tmp_path / "aa0", seed=0, **kw), make_run(tmp_path / "aa1", seed=1, **kw),
            make_run(tmp_path / "odd", seed=2, env=env, **kw)]
    with pytest.raises(cmp.EnvironmentMismatch, match=rf"1 A/A run\(s\) come from another environment .*{field}"):
        cmp.write_noise_floor(tmp_path / "floor.json", runs)
    assert not (tmp_path / "floor.json").exists()
    nf = cmp.write_noise_floor(tmp_path / "floor.json", runs, force=True)
    doc = json.loads((tmp_path / "floor.json").read_text())
    assert nf.forced and doc["forced"] is True and doc["n_runs"] == 3
    recorded = [e["env"].get(field) for e in doc["run_envs"]]
    assert recorded[0] == recorded[1] != recorded[2]
    c = cmp.compare_runs(runs[0], runs[1], noise_floor=tmp_path / "floor.json")
    assert any("forced across A/A runs from different environments" in w for w in c.warnings)


def test_cpu_noise_floor_records_the_cpu_model_and_refuses_another_cpu(tmp_path):
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64,), modes=("forward",))

    def cpu_env(name, model):
        return {**default_env(name), "device": "cpu", "cpu": {"model": model}}

    runs = [make_run(tmp_path / f"aa{i}", seed=i, env=cpu_env(f"aa{i}", "CPU A"), **kw) for i in range(2)]
    with pytest.raises(cmp.EnvironmentMismatch, match="cpu"):
        cmp.write_noise_floor(tmp_path / "mixed.json", [*runs, make_run(tmp_path / "b", env=cpu_env("b", "CPU B"), **kw)])
    cmp.write_noise_floor(tmp_path / "floor.json", runs)
    assert json.loads((tmp_path / "floor.json").read_text())["env"]["cpu_model"] == "CPU A"
    other = [make_run(tmp_path / f"o{i}", seed=i, env=cpu_env(f"o{i}", "CPU B"), **kw) for i in range(2)]
    with pytest.raises(cmp.EnvironmentMismatch, match="noise floor .* another environment .*cpu"):
        cmp.compare_runs(*other, noise_floor=tmp_path / "floor.json")


def test_compare_warns_about_a_noise_floor_from_fewer_than_five_runs(tmp_path):
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64, 256), modes=("forward",))
    runs = [make_run(tmp_path / f"aa{i}", seed=i, **kw) for i in range(4)]
    cmp.write_noise_floor(tmp_path / "two.json", runs[:2])
    c = cmp.compare_runs(runs[2], runs[3], noise_floor=tmp_path / "two.json")
    assert c.exit_code == 0 and len(c.warnings) == 1
    assert "measured from 2 A/A run(s)" in c.warnings[0] and "scripts/noise_floor.sh (RUNS >= 5)" in c.warnings[0]
    assert "> **warning:** the noise floor" in out.to_markdown(c)
    assert json.loads(out.to_json(c))["warnings"] == c.warnings
    # a file that does not say how many runs it came from is flagged too
    doc = json.loads((tmp_path / "two.json").read_text())
    del doc["n_runs"], doc["runs"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    c = cmp.compare_runs(runs[2], runs[3], noise_floor=tmp_path / "old.json")
    assert "does not record how many A/A runs" in c.warnings[0]
    # a file with the run list but no n_runs counts the list
    doc["runs"] = ["r1", "r2", "r3", "r4", "r5"]
    (tmp_path / "listed.json").write_text(json.dumps(doc))
    assert cmp.load_noise_floor(tmp_path / "listed.json").runs == 5
    assert not cmp.compare_runs(runs[2], runs[3], noise_floor=tmp_path / "listed.json").warnings
    doc["n_runs"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"n_runs=1 is invalid; expected an int >= 2"):
        cmp.load_noise_floor(tmp_path / "bad.json")


def test_noise_floor_needs_two_runs_and_a_valid_file(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(64,))
    with pytest.raises(ValueError, match="at least 2 runs"):
        cmp.write_noise_floor(tmp_path / "f.json", [a])
    with pytest.raises(ValueError, match="not found"):
        cmp.load_noise_floor(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"kind": "perfsuite-noise-floor", "default": -1, "points": {}}')
    with pytest.raises(ValueError, match="'default'"):
        cmp.load_noise_floor(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="kind"):
        cmp.load_noise_floor(tmp_path / "other.json")


# -------------------------------------------------------------------------------- re-run and output
def test_rerun_keeps_only_confirmed_regressions():
    rng = np.random.default_rng(11)
    base = _sample_rows(rng)
    first = cmp.Comparison(cmp.compare_rows(base, _sample_rows(rng, slowdown=1.2)), cmp.Thresholds())
    assert len(first.flagged_keys()) == 3
    again_slow = cmp.Comparison(cmp.compare_rows(base, _sample_rows(rng, slowdown=1.2)), cmp.Thresholds())
    confirmed = cmp.confirm(first, again_slow, "rerun-1")
    assert confirmed.exit_code == 1 and len(confirmed.regressions) == 3
    assert all("re-run:" in f.detail for f in confirmed.regressions)
    again_fine = cmp.Comparison(cmp.compare_rows(base, _sample_rows(rng)), cmp.Thresholds())
    refuted = cmp.confirm(first, again_fine, "rerun-2")
    assert refuted.exit_code == 0 and refuted.rerun == "rerun-2"
    assert all("not confirmed by the re-run" in f.detail for f in refuted.findings if f.metric == "time")


def test_markdown_json_and_terminal_outputs(tmp_path):
    from rich.console import Console

    rng = np.random.default_rng(2)
    c = cmp.Comparison(cmp.compare_rows(_sample_rows(rng), _sample_rows(rng, slowdown=1.25, firing_rate=0.2)),
                       cmp.Thresholds())
    md = out.to_markdown(c)
    assert md.startswith("## perfsuite regression gate")
    assert "**REGRESSION: 6 regression" in md
    assert md.count("| **regression** |") == 2 * 6  # changed table + the folded full table
    doc = json.loads(out.to_json(c))
    assert doc["exit_code"] == 1 and doc["result"] == "regression" and doc["counts"]["regression"] == 6
    assert {f["metric"] for f in doc["findings"] if f["verdict"] == "regression"} == {"time", "firing_rate"}
    assert all(f["point"] and f["evidence"] is not None for f in doc["findings"])
    console = Console(record=True, width=200)
    out.render_table(c, console)
    text = console.export_text()
    assert "regression" in text and "lif/eager/forward/fp32/256" in text and "REGRESSION" in text


# ------------------------------------------------------------------------------------------- CLI
TINY_SCENARIO = """\
name: tiny
device: cpu
seed: 0
neurons: [lif, plif]
backends: [eager]
seq_lens: [8]
batch: [1]
features: [4]
precisions: [fp32]
modes: [forward]
metrics: [time]
"""


def _cli(*args):
    from typer.testing import CliRunner

    from perfsuite.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_exit_codes_and_output_files(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(64, 256), noise=0.0, seed=1)
    same = make_run(tmp_path / "same", neurons=("lif",), seq_lens=(64, 256), noise=0.0, seed=1)
    slow = make_run(tmp_path / "slow", neurons=("lif",), seq_lens=(64, 256), noise=0.0, seed=2,
                    prefactor={"lif": 0.05 * 1.3})
    r = _cli("compare", a, same)
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    r = _cli("compare", a, slow, "--markdown", tmp_path / "gate.md", "--json", tmp_path / "gate.json")
    assert r.exit_code == 1, r.output
    assert "REGRESSION: 8 regression" in (tmp_path / "gate.md").read_text()
    assert json.loads((tmp_path / "gate.json").read_text())["counts"]["regression"] == 8
    # a threshold above the slowdown lets it pass
    assert _cli("compare", a, slow, "--threshold", "0.5").exit_code == 0


def test_cli_untestable_passes_with_a_warning_or_fails_on_request(tmp_path):
    kw = dict(neurons=("lif",), backends=("eager",), seq_lens=(64,), modes=("forward",), noise=0.0, samples=4)
    a = make_run(tmp_path / "a", seed=1, **kw)
    slow = make_run(tmp_path / "slow", seed=2, prefactor={"lif": 0.05 * 1.5}, **kw)
    r = _cli("compare", a, slow, "--json", tmp_path / "gate.json")
    assert r.exit_code == 0, r.output
    assert "PASS: " in r.output and "1 untestable" in r.output and "timing.min_reps >= 5" in r.output
    assert json.loads((tmp_path / "gate.json").read_text())["counts"]["untestable"] == 1
    r = _cli("compare", a, slow, "--fail-on-untestable", "--markdown", tmp_path / "gate.md")
    assert r.exit_code == 1, r.output
    assert "FAIL: " in r.output and "**FAIL: " in (tmp_path / "gate.md").read_text()
    # alpha 0.05 makes 4 + 4 samples testable (1/70 < 0.05): the slowdown is a regression
    r = _cli("compare", a, slow, "--alpha", "0.05", "--fail-on-untestable")
    assert r.exit_code == 1 and "REGRESSION: 1 regression" in r.output and "untestable" not in r.output, r.output


@pytest.mark.parametrize("min_reps,metrics,warns", [(3, ["time"], True), (4, ["time", "memory"], True),
                                                    (5, ["time"], False), (3, ["memory"], False)])
def test_cli_validate_warns_when_min_reps_is_too_small_for_the_gate(tmp_path, min_reps, metrics, warns):
    text = TINY_SCENARIO.replace("metrics: [time]", f"metrics: [{', '.join(metrics)}]")
    text += f"timing: {{min_reps: {min_reps}, max_reps: 20}}\n"
    (tmp_path / "s.yaml").write_text(text)
    r = _cli("validate", tmp_path / "s.yaml")
    assert r.exit_code == 0 and "valid; 2 points" in r.output, r.output
    warning = f"warning: {tmp_path / 's.yaml'}: timing.min_reps={min_reps}"
    assert (warning in r.output) == warns, r.output
    if warns:
        assert "set timing.min_reps >= 5" in r.output and "untestable" in r.output


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    a = make_run(tmp_path / "a", neurons=("lif",), seq_lens=(64,))
    env = default_env("b")
    env["torch"] = "9.9"
    b = make_run(tmp_path / "b", env=env, neurons=("lif",), seq_lens=(64,))
    cases = [((a, b), "different environments"), ((a, tmp_path / "nope"), "no results.jsonl"),
             ((a, a, "--threshold", "-1"), "threshold time=-1.0"),
             ((a, a, "--noise-floor", tmp_path / "nf.json"), "noise floor file"),
             ((a, a, "--alpha", "0.9"), "alpha=0.9")]
    for args, message in cases:
        r = _cli("compare", *args)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (args, r.output)
    assert _cli("compare", a, b, "--force").exit_code == 0


def _scenario_rows(points, slowdowns, rng):
    """Rows for ``points`` keyed as the runner keys them, 20 samples each around 2 ms × its slowdown."""
    rows = []
    for p, slowdown in zip(points, slowdowns):
        s = 2.0 * slowdown * np.exp(rng.normal(0.0, 0.02, 20))
        rows.append({**p.fields(), "status": "ok", "reason": None,
                     "time": {"samples_ms": s.tolist(), "median_ms": float(np.median(s))}})
    return rows


def _cpu_run(directory, rows):
    return _write(directory, rows, env={**default_env(directory.name), "device": "cpu"})


@pytest.mark.parametrize("rerun_slowdown,exit_code", [(1.0, 0), (1.5, 1)])
def test_cli_rerun_measures_only_flagged_points_and_fails_only_if_it_agrees(tmp_path, monkeypatch, rerun_slowdown,
                                                                           exit_code):
    from perfsuite.scenario import load_scenario

    (tmp_path / "tiny.yaml").write_text(TINY_SCENARIO)
    points = load_scenario(tmp_path / "tiny.yaml").points()
    assert [p.neuron for p in points] == ["lif", "plif"]
    rng = np.random.default_rng(0)
    base = _cpu_run(tmp_path / "base", _scenario_rows(points, (1.0, 1.0), rng))
    # the candidate is slower on lif only: only lif is flagged and re-measured
    cand = _cpu_run(tmp_path / "cand", _scenario_rows(points, (1.5, 1.0), rng))
    measured = []

    def fake_run_points(pts, out_dir, **kw):  # stands in for the runner: writes the re-measured rows
        measured.extend(p.key for p in pts)
        _cpu_run(out_dir, _scenario_rows(pts, [rerun_slowdown] * len(pts), rng))

    monkeypatch.setattr(rerun, "run_points", fake_run_points)
    r = _cli("compare", base, cand, "--rerun", tmp_path / "tiny.yaml", "--rerun-out", tmp_path / "again",
             "--json", tmp_path / "gate.json")
    assert r.exit_code == exit_code, r.output
    assert measured == [points[0].key]
    doc = json.loads((tmp_path / "gate.json").read_text())
    assert doc["rerun"] == str(tmp_path / "again")
    lif = next(f for f in doc["findings"] if f["key"] == points[0].key and f["metric"] == "time")
    assert lif["verdict"] == ("regression" if exit_code else "unchanged")
    assert lif["evidence"]["rerun"]["verdict"] == lif["verdict"]


def test_rerun_with_a_scenario_lacking_the_flagged_points_is_bad_input(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SCENARIO)
    with pytest.raises(ValueError, match="not in this scenario"):
        rerun.rerun_points(tmp_path / "tiny.yaml", ["psn/eager/forward#0000"])


# ------------------------------------------------------------------------ #10 item 6 and #11 item 4-5
def test_row_text_is_never_markup_and_internal_errors_exit_2(tmp_path, monkeypatch):
    """A reason with `[/x]` used to raise rich's MarkupError (exit 1) and torch's `[enforce fail at ...]`
    vanished from the table; both print as they are now. An internal error exits 2, never 1."""
    from rich.console import Console

    rng = np.random.default_rng(0)
    base = _sample_rows(rng)
    cand = _sample_rows(rng)
    cand[0].update(status="oom", time=None,
                   reason="RuntimeError: [enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator [/x]")
    a, b = _write(tmp_path / "a", base), _write(tmp_path / "b", cand)
    c = cmp.compare_runs(a, b)
    console = Console(record=True, width=300)
    out.render_table(c, console)
    text = console.export_text()
    assert "[enforce fail at alloc_cpu.cpp:127]" in text and "[/x]" in text
    assert "[enforce fail at alloc_cpu.cpp:127]" in out.to_markdown(c)
    r = _cli("compare", a, b)
    assert r.exit_code == 1 and "[/x]" in r.output  # a real regression, printed, not a crash

    def broken(*a, **k):
        raise RuntimeError("bug inside the gate")

    monkeypatch.setattr(cmp, "compare_runs", broken)
    r = _cli("compare", a, b)
    assert r.exit_code == 2 and "internal error" in r.output and "bug inside the gate" in r.output


def test_all_nan_candidate_samples_are_a_regression_never_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    base, cand = _sample_rows(rng), _sample_rows(rng)
    cand[1]["time"] = {"samples_ms": [float("nan")] * 30, "median_ms": float("nan")}
    f = next(f for f in cmp.compare_rows(base, cand) if f.key == cand[1]["key"] and f.metric == "time")
    assert f.verdict == "regression" and "NaN" in f.detail and f.change is None
    # on disk rows are strict JSON: a broken timer's samples arrive as nulls
    cand[1]["time"] = {"samples_ms": [None] * 30, "median_ms": None}
    c = cmp.compare_runs(_write(tmp_path / "a", base), _write(tmp_path / "b", cand))
    assert [f.verdict for f in c.findings if f.key == cand[1]["key"] and f.metric == "time"] == ["regression"]
    json.loads(out.to_json(c))  # strict JSON: no NaN/Infinity left in the evidence


def test_cpu_memory_is_shown_not_gated_by_default_gpu_memory_stays_exact():
    rng = np.random.default_rng(0)
    base, cand = _sample_rows(rng), _sample_rows(rng, memory=int(1.43 * (1 << 20)))
    for rows in (base, cand):
        rows[0]["memory"]["method"] = "cpu_peak_rss_delta"
    mem = {f.key: f for f in cmp.compare_rows(base, cand) if f.metric == "memory"}
    assert mem[base[0]["key"]].verdict == "unchanged" and mem[base[0]["key"]].evidence["not_gated"]
    assert mem[base[1]["key"]].verdict == "regression"  # cuda_allocator: gated at 1 %
    gated = {f.key: f for f in cmp.compare_rows(base, cand, cmp.Thresholds(cpu_memory=True)) if f.metric == "memory"}
    assert gated[base[0]["key"]].verdict == "regression"


def test_detectable_change_and_low_power_pass(tmp_path):
    """Tight samples can see a 10 % change: PASS. Samples spread ±40 % cannot: PASS (low power), warned."""
    rng = np.random.default_rng(0)
    tight = cmp.compare_runs(_write(tmp_path / "a", _sample_rows(rng, sigma=0.01)),
                             _write(tmp_path / "b", _sample_rows(rng, sigma=0.01)))
    assert tight.exit_code == 0 and not tight.low_power and out.verdict_word(tight) == "PASS"
    assert all(0.05 <= f.evidence["detectable"] < 0.10 for f in tight.findings if f.metric == "time")
    wide = cmp.compare_runs(_write(tmp_path / "c", _sample_rows(rng, sigma=0.4)),
                            _write(tmp_path / "d", _sample_rows(rng, sigma=0.4)))
    assert wide.exit_code == 0 and len(wide.low_power) == 3
    assert out.verdict_word(wide) == "PASS (low power)" and out._headline(wide).startswith("PASS (low power)")
    assert any("without the power to see a 10% change" in w for w in wide.warnings)
    assert all("detectable >= +" in f.detail for f in wide.low_power)


def test_points_under_load_and_runs_under_different_load_are_flagged(tmp_path):
    rng = np.random.default_rng(0)
    base, cand = _sample_rows(rng), _sample_rows(rng)
    for r in base:
        r["load"] = {"cores": 2, "loadavg_before": [0.3, 0.3, 0.3], "loadavg_after": [0.3, 0.3, 0.3]}
    for r in cand:
        r["load"] = {"cores": 2, "loadavg_before": [5.0, 3, 2], "loadavg_after": [5.0, 3, 2],
                     "gpu_before": {"sm_clock_mhz": 1200, "throttle_reasons": ["hw_slowdown"]}}
    c = cmp.compare_runs(_write(tmp_path / "a", base), _write(tmp_path / "b", cand))
    t = next(f for f in c.findings if f.metric == "time")
    assert "load average 5.00 > 2 cores" in t.evidence["load"]["candidate"][0] and "under load" in t.detail
    assert any("measured under different conditions" in w and "under load" in w for w in c.warnings)
    assert any("3 point(s) measured under load" in w for w in c.warnings)


def test_gate_modules_are_layered_and_small():
    """#11 item 8: compare no longer imports the runner (the --rerun step lives in perfsuite.rerun, above
    both), and none of the gate's modules is over ~500 lines."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, perfsuite.compare, perfsuite.compare_output, perfsuite.verdicts, perfsuite.stats; "
            "print(sorted(m for m in sys.modules if m in ('perfsuite.runner', 'perfsuite.cli', 'perfsuite.rerun')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    root = Path(__file__).resolve().parents[1] / "perfsuite"
    for name in ("compare.py", "compare_output.py", "verdicts.py", "stats.py", "rerun.py", "ab.py", "ab_server.py",
                 "ab_output.py", "measure/load.py"):
        assert len((root / name).read_text().splitlines()) <= 500, name


def test_cli_allow_missing_and_gate_cpu_memory_flags(tmp_path):
    rng = np.random.default_rng(0)
    base, cand = _sample_rows(rng, sigma=0.01), _sample_rows(rng, sigma=0.01, memory=2 << 20)
    for rows in (base, cand):
        for r in rows:
            r["memory"]["method"] = "cpu_peak_rss_delta"
    a = _write(tmp_path / "a", base)
    b = _write(tmp_path / "b", cand[1:])  # 1 of 3 baseline points missing, CPU memory doubled
    r = _cli("compare", a, b, "--json", tmp_path / "g.json")
    assert r.exit_code == 1 and "1 of 3 baseline points are missing" in r.output, r.output
    r = _cli("compare", a, b, "--allow-missing", "--json", tmp_path / "g.json")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["allow_missing"] and doc["missing_points"] == 1 and doc["baseline_points"] == 3
    assert any("CPU memory" in w and "not gated" in w for w in doc["warnings"])
    assert _cli("compare", a, b, "--allow-missing", "--gate-cpu-memory").exit_code == 1
