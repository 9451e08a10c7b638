"""`perfsuite ab` (#11 item 1): the paired statistics on synthetic rounds with known answers, the schedule,
the judgement of measured rounds, the refusal of bad refs, and one real interleaved job on the CPU."""
import json
import math
import random
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from perfsuite import ab
from perfsuite.cli import app
from perfsuite.stats import MIN_PAIRED_ROUNDS, paired_verdict
from perfsuite.verdicts import Thresholds


# ------------------------------------------------------------------------------- paired statistics
def _rounds(rng, rounds, slowdown, drift=0.5, noise=0.02):
    """Per-round medians of A and B: a load factor shared by both halves of a pair (log-normal, ``drift``:
    ×1.6 typical swings, as on a loaded CI machine) times independent noise per side."""
    load = np.exp(rng.normal(0.0, drift, rounds))
    a = 2.0 * load * np.exp(rng.normal(0.0, noise, rounds))
    b = 2.0 * slowdown * load * np.exp(rng.normal(0.0, noise, rounds))
    return a.tolist(), b.tolist()


def _rate(slowdown, points=400, rounds=10, seed=0, **kw):
    rng = np.random.default_rng(seed)
    verdicts = [paired_verdict(*_rounds(rng, rounds, slowdown, **kw), threshold=0.05)[0] for _ in range(points)]
    return sum(v == "regression" for v in verdicts) / points


def test_paired_gate_is_quiet_on_aa_and_sees_slowdowns_through_shared_drift():
    """The fast version of scripts/gate_power.py: drift ×1.6 shared within a pair cancels in the ratio.
    A/A: at most 1 % false alarms; +30 % always found; +10 % found in most points with 2 % noise a side."""
    assert _rate(1.0) <= 0.01
    assert _rate(1.3) >= 0.95
    assert _rate(1.1) >= 0.80
    # without pairing (the drift differs between the halves) the same rounds could not see +10 %
    rng = np.random.default_rng(1)
    unpaired = [paired_verdict(_rounds(rng, 10, 1.0)[0], _rounds(rng, 10, 1.1)[1], threshold=0.05)[0]
                for _ in range(200)]
    assert sum(v == "regression" for v in unpaired) / 200 < 0.5


def test_paired_verdict_interval_and_edge_cases():
    a = [1.0] * 10
    b = [1.2, 1.21, 1.19, 1.22, 1.18, 1.2, 1.2, 1.23, 1.17, 1.2]
    verdict, ratio, ev = paired_verdict(a, b, threshold=0.05)
    assert verdict == "regression" and ratio == pytest.approx(1.2)
    assert ev["ci"] == [pytest.approx(1.18), pytest.approx(1.22)]  # ranks 1 and 8 of 10 sorted ratios
    assert ev["coverage"] >= 0.95 and ev["n"] == 10
    assert paired_verdict(b, a, threshold=0.05)[0] == "improvement"
    # too few rounds: untestable, never unchanged
    v, _, ev = paired_verdict(a[:MIN_PAIRED_ROUNDS - 1], b[:MIN_PAIRED_ROUNDS - 1], threshold=0.05)
    assert v == "untestable" and "--rounds" in ev["untestable"]
    # a candidate whose rounds are all NaN broke: a regression, never unchanged
    v, ratio, ev = paired_verdict(a, [math.nan] * 10, threshold=0.05)
    assert v == "regression" and ratio is None and "NaN" in ev["reason"]
    # NaN rounds of either side are dropped pairwise
    v, _, ev = paired_verdict(a + [math.nan], b + [1.2], threshold=0.05)
    assert v == "regression" and ev["n"] == 10
    with pytest.raises(ValueError, match="one per round"):
        paired_verdict(a, b[:3], threshold=0.05)


def test_interleave_is_round_major_with_random_order_per_pair():
    plan = ab.interleave(["k1", "k2"], 20, random.Random(0))
    assert [(k, r) for k, r, _ in plan[:4]] == [("k1", 0), ("k2", 0), ("k1", 1), ("k2", 1)]
    orders = {o for _, _, o in plan}
    assert orders == {("baseline", "candidate"), ("candidate", "baseline")}
    assert plan == ab.interleave(["k1", "k2"], 20, random.Random(0))  # reproducible from the seed


# ------------------------------------------------------------------------------ rounds -> verdicts
class FakeServer:
    """Answers round requests like `perfsuite.ab_server` with rows of a known median."""

    def __init__(self, medians: dict, status: str = "ok"):
        self.medians, self.status, self.calls = medians, status, []

    def ask(self, request, timeout, what):
        key = request["key"]
        self.calls.append(key)
        m = self.medians[key]
        row = {"key": key, "status": self.status, "reason": None if self.status == "ok" else "boom [/x]",
               "time": {"samples_ms": [m, m * 1.01, m * 0.99], "median_ms": m} if self.status == "ok" else None,
               "duration_s": 0.01, "load": {"cores": 2, "loadavg_before": [0.1, 0, 0], "flags": []}}
        return {"row": row, "child_s": 0.02}


def _measure(a_server, b_server, keys, rounds=8):
    servers = {"baseline": a_server, "candidate": b_server}
    return ab.measure_rounds(servers, keys, rounds, {"baseline": "ra", "candidate": "rb"},
                             {"baseline": {}, "candidate": {}}, {k: 10.0 for k in keys})


def test_rounds_are_judged_pairwise_and_failures_are_regressions():
    keys = ["fast#1", "slow#2", "nan#3"]
    a = FakeServer({"fast#1": 1.0, "slow#2": 1.0, "nan#3": 1.0})
    b = FakeServer({"fast#1": 1.0, "slow#2": 1.3, "nan#3": math.nan})
    measured = _measure(a, b, keys)
    assert len(a.calls) == len(b.calls) == 3 * 8 and len(measured["baseline"].overhead_s) == 24
    findings = {f.key: f for f in ab.judge(measured, keys, keys, Thresholds()) if f.metric == "time"}
    assert findings["slow#2"].verdict == "regression" and findings["slow#2"].change == pytest.approx(1.3)
    assert findings["fast#1"].verdict == "unchanged"
    assert findings["nan#3"].verdict == "regression"  # all-NaN candidate rounds: never unchanged
    row = ab.side_row(measured["baseline"].rows["slow#2"], "baseline", "main")
    assert row["time"]["n"] == 24 and row["ab"]["rounds"] == 8 and row["ab"]["median_of_rounds_ms"] == 1.0


class ChunkedFakeServer(FakeServer):
    """Speaks protocol 2 like `perfsuite.ab_server`: prepare pauses before the first chunk, each go measures
    one chunk (``log`` records the order in which the two sides' chunks ran); the round ends after the
    last chunk. ``samples`` are the repetition times of one round, spread over the chunks."""
    protocol = 2

    def __init__(self, name, samples, log, status="ok"):
        super().__init__({}, status)
        self.name, self.samples, self.log = name, samples, log

    def ask(self, request, timeout, what):
        cmd = request["cmd"]
        if cmd == "round":  # protocol 1, as a driver that does not chunk asks
            self.medians = {request["key"]: float(np.median(self.samples))}
            return super().ask(request, timeout, what)
        self.calls.append(cmd)
        if cmd == "prepare":
            if self.status != "ok":  # failed while building: the round ends before measuring
                return {"row": {"key": request["key"], "status": self.status, "reason": "boom", "time": None,
                                "duration_s": 0.01}, "child_s": 0.02}
            self.key, self.left = request["key"], request["chunks"]
            return {"paused": True}
        assert cmd == "go"
        self.log.append(self.name)
        self.left -= 1
        if self.left:
            return {"paused": True}
        row = {"key": self.key, "status": "ok", "reason": None, "duration_s": 0.01,
               "time": {"samples_ms": list(self.samples), "median_ms": float(np.median(self.samples))}}
        return {"row": row, "child_s": 0.02}


def test_chunked_rounds_alternate_a_and_b_and_are_judged_by_the_round_minimum():
    log = []
    # the candidate's fastest repetition is 1.3x the baseline's; its median is not (one slow repetition in
    # A, bursts of load in B's upper half): the CPU statistic (min) sees the +30 %, the median would not
    a = ChunkedFakeServer("A", [1.0, 1.0, 5.0, 5.0], log)
    b = ChunkedFakeServer("B", [1.3, 1.3, 1.3, 1.3], log)
    measured = ab.measure_rounds({"baseline": a, "candidate": b}, ["k#1"], 6, {"baseline": "ra", "candidate": "rb"},
                                 {"baseline": {}, "candidate": {}}, {"k#1": 10.0}, chunks=4)
    assert a.calls.count("prepare") == 6 and a.calls.count("go") == 24 and len(log) == 48
    for r in range(6):  # per round: X Y Y X X Y Y X, where X is the pair's random first side
        x, y = log[8 * r], log[8 * r + 1]
        assert {x, y} == {"A", "B"} and log[8 * r: 8 * r + 8] == [x, y, y, x, x, y, y, x]
    by_min = {f.metric: f for f in ab.judge(measured, ["k#1"], ["k#1"], Thresholds(), "min")}["time"]
    by_median = {f.metric: f for f in ab.judge(measured, ["k#1"], ["k#1"], Thresholds(), "median")}["time"]
    assert by_min.verdict == "regression" and by_min.change == pytest.approx(1.3)
    assert by_min.evidence["round_stat"] == "min" and "round mins" in by_min.detail
    assert by_median.verdict == "improvement"
    row = ab.side_row(measured["candidate"].rows["k#1"], "candidate", "x")
    assert row["ab"]["round_mins_ms"] == [1.3] * 6 and row["ab"]["round_sizes"] == [4] * 6
    # a side that fails before measuring ends its round; the other still measures all its chunks
    log.clear()
    bad = ChunkedFakeServer("B", [], log, status="error")
    measured = ab.measure_rounds({"baseline": ChunkedFakeServer("A", [1.0], log), "candidate": bad}, ["k#1"], 2,
                                 {"baseline": "ra", "candidate": "rb"}, {"baseline": {}, "candidate": {}},
                                 {"k#1": 10.0}, chunks=3)
    assert log == ["A"] * 6 and [r["status"] for r in measured["candidate"].rows["k#1"]] == ["error"] * 2
    # a protocol-1 server on either side: whole rounds, one side after the other
    b1 = ChunkedFakeServer("B", [1.0], [])
    plain = _measure(FakeServer({"k#1": 1.0}), b1, ["k#1"], rounds=2)
    assert len(plain["candidate"].rows["k#1"]) == 2 and b1.calls == ["k#1", "k#1"]


def test_chunk_gate_splits_the_repetitions_untimed():
    """`perfsuite.measure.timing`: with a gate, every repetition is still measured once, in ``chunks``
    consecutive chunks with the gate called (outside the timed calls) before each; without, no gate."""
    import time as _time

    from perfsuite.measure import timing

    calls, gates = [], []
    try:
        timing.set_chunk_gate(3, lambda: (gates.append(len(calls)), _time.sleep(0.02)))
        samples = timing._samples(lambda: calls.append(1), 7, "cpu")
    finally:
        timing.set_chunk_gate(1, None)
    assert len(samples) == 7 and len(calls) == 7
    assert gates == [0, 2, 5]  # chunk bounds round(c * 7 / 3): 0, 2, 5, 7
    assert max(samples) < 15.0  # the gate's 20 ms pause is in no sample
    assert len(timing._samples(lambda: None, 4, "cpu")) == 4 and gates == [0, 2, 5]


def test_candidate_that_fails_is_a_status_regression_and_missing_keys_count():
    keys = ["k#1"]
    measured = _measure(FakeServer({"k#1": 1.0}), FakeServer({"k#1": 1.0}, status="error"), keys, rounds=6)
    findings = ab.judge(measured, keys + ["gone#2"], keys, Thresholds())
    by = {(f.key, f.metric): f for f in findings}
    assert by[("k#1", "status")].verdict == "regression" and "[/x]" in by[("k#1", "status")].detail
    assert by[("gone#2", "point")].verdict == "missing"


def test_an_interrupted_schedule_keeps_the_rounds_already_measured():
    class Interrupting(FakeServer):
        def ask(self, request, timeout, what):
            if len(self.calls) == 5:
                raise KeyboardInterrupt
            return super().ask(request, timeout, what)

    kept = {s: ab.Rounds() for s in ab.SIDES}
    with pytest.raises(KeyboardInterrupt):
        ab.measure_rounds({"baseline": FakeServer({"k#1": 1.0}), "candidate": Interrupting({"k#1": 1.0})}, ["k#1"], 10,
                          {"baseline": "ra", "candidate": "rb"}, {"baseline": {}, "candidate": {}}, {"k#1": 10.0},
                          out=kept)
    assert len(kept["candidate"].rows["k#1"]) == 5 and len(kept["baseline"].rows["k#1"]) in (5, 6)


# ------------------------------------------------------------------------------------ bad refs
def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_a_ref_without_the_entry_point_is_refused_and_its_worktree_removed(tmp_path):
    repo = tmp_path / "repo"
    (repo / "perfsuite").mkdir(parents=True)
    (repo / "perfsuite" / "__init__.py").write_text("")
    _git("init", "-q", cwd=repo)
    _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "old", "--allow-empty", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "old perfsuite", cwd=repo)
    c = ab.resolve_ref("HEAD", repo, tmp_path / "trees", "baseline")
    assert c.temporary and (c.path / "perfsuite" / "__init__.py").is_file()
    with pytest.raises(ab.ABError, match="no perfsuite/ab_server.py.*predates"):
        ab.check_entry_point(c, "baseline")
    ab.remove_checkout(c, repo)
    assert not c.path.exists()
    with pytest.raises(ab.ABError, match="neither a folder nor a commit"):
        ab.resolve_ref("no-such-ref", repo, tmp_path / "trees", "candidate")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ab.ABError, match="without perfsuite/__init__.py"):
        ab.resolve_ref(str(tmp_path / "empty"), repo, tmp_path / "trees", "candidate")


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    runner = CliRunner()
    scen = tmp_path / "s.yaml"
    scen.write_text("name: s\nneurons: [lif]\nseq_lens: [8]\n")
    for args, message in [
        (["ab", str(scen), "--baseline", str(tmp_path / "nope"), "--candidate", "."], "neither a folder nor a commit"),
        (["ab", str(tmp_path / "missing.yaml"), "--baseline", ".", "--candidate", "."], "not found"),
        (["ab", str(scen), "--baseline", ".", "--candidate", ".", "--rounds", "0"], "--rounds 0"),
    ]:
        r = runner.invoke(app, args + ["--out", str(tmp_path / "out")])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_cli_passes_chunks_to_the_job_and_refuses_zero(tmp_path, monkeypatch):
    """`perfsuite ab --chunks N` reaches run_ab; no --chunks leaves the device's default (None); 0 is refused."""
    seen = []

    def fake_run_ab(*args, **kwargs):
        seen.append(kwargs.get("chunks", "absent"))
        raise ValueError("stop here")

    monkeypatch.setattr(ab, "run_ab", fake_run_ab)
    runner = CliRunner()
    scen = tmp_path / "s.yaml"
    scen.write_text("name: s\nneurons: [lif]\nseq_lens: [8]\n")
    base = ["ab", str(scen), "--baseline", ".", "--candidate", ".", "--out", str(tmp_path / "out")]
    for extra in (["--chunks", "3"], []):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and "stop here" in r.output, r.output
    assert seen == [3, None]
    r = runner.invoke(app, base + ["--chunks", "0"])
    assert r.exit_code == 2 and "--chunks" in r.output and seen == [3, None], r.output


# ------------------------------------------------------------------------------------ a real job
@pytest.mark.slow  # two servers importing torch and 12 forked rounds: about 8 s on 2 loaded cores
def test_real_interleaved_job_on_the_cpu(tmp_path):
    """Both sides are this checkout (A/A): two servers, a forked process per round, a run folder per side
    that `perfsuite report` reads, ab.json and ab.md; the verdict is not a regression."""
    from pathlib import Path

    from perfsuite.results import load_run

    root = Path(__file__).resolve().parents[1]
    scen = tmp_path / "tiny.yaml"
    scen.write_text("name: tiny\ndevice: cpu\nneurons: [lif]\nseq_lens: [16]\nbatch: [2]\nfeatures: [8]\n"
                    "modes: [forward]\nbackends: [eager]\nmetrics: [time]\n"
                    "timing: {warmup_ms: 1, rep_ms: 3, min_reps: 3, max_reps: 20}\n")
    res = ab.run_ab(scen, str(root), str(root), tmp_path / "out", rounds=MIN_PAIRED_ROUNDS, repo=root)
    assert res.exit_code in (0, 1)  # a loaded machine may still move one point; the shape is what is tested
    doc = json.loads((tmp_path / "out" / "ab.json").read_text())
    assert doc["kind"] == "perfsuite-ab" and doc["rounds"] == MIN_PAIRED_ROUNDS
    assert doc["chunks"] == ab.DEFAULT_CHUNKS and doc["round_stat"] == "min"  # both servers speak protocol 2
    assert doc["round_overhead_s"]["baseline"] is not None
    time_f = [f for f in doc["findings"] if f["metric"] == "time"]
    assert len(time_f) == 1 and time_f[0]["evidence"]["n"] == MIN_PAIRED_ROUNDS
    for side in ("baseline", "candidate"):
        env, rows = load_run(tmp_path / "out" / side)
        assert env["ab"]["side"] == side and len(rows) == 1 and rows[0]["status"] == "ok"
        assert len(rows[0]["ab"]["round_medians_ms"]) == MIN_PAIRED_ROUNDS and "load" in rows[0]
        # every repetition of every round is kept, in order; the pauses between chunks are not in duration_s
        assert sum(rows[0]["ab"]["round_sizes"]) == rows[0]["time"]["n"] == len(rows[0]["time"]["samples_ms"])
        assert min(rows[0]["ab"]["round_mins_ms"]) == min(rows[0]["time"]["samples_ms"])
    assert (tmp_path / "out" / "ab.md").read_text().startswith("## perfsuite ab")
