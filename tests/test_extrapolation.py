"""Extrapolation tasks and protocol (issue 6): optimum vs empirical estimate, training beats the marginal
baseline, evaluation at longer lengths, length policies, serial agreement, non-finite losses reported."""
import itertools
import math

import numpy as np
import pytest
import torch

from perfsuite.extrapolation import ExtrapolationConfig, evaluate, load_model, run_extrapolation
from perfsuite.tasks import make_task


def test_markov_entropy_rate_matches_empirical_estimate():
    task = make_task("markov_lm", vocab=4, seed=3)
    x, y = task.sample(2000, 60, torch.Generator().manual_seed(0))
    seq = torch.cat([x[:1], y]).numpy()  # [T+1, B]
    a, b, c = seq[:-2].ravel(), seq[1:-1].ravel(), seq[2:].ravel()
    counts = np.zeros((4, 4, 4))
    np.add.at(counts, (a, b, c), 1)
    cond = counts / counts.sum(axis=2, keepdims=True)
    empirical = -np.mean(np.log(cond[a, b, c]))
    assert empirical == pytest.approx(task.entropy_rate, abs=0.02)
    # the Bayes predictor's loss on samples matches the analytic optimum
    assert task.bayes_loss(x, y).mean().item() == pytest.approx(task.optimal_loss(60), abs=0.02)
    assert task.entropy_rate < task.baseline_loss() - 0.2


def test_regime_filter_equals_enumeration_of_hidden_paths():
    task = make_task("hidden_regime", regimes=2, channels=3, mean_duration=4.0, seed=1)
    x, z = task.sample(3, 7, torch.Generator().manual_seed(0))
    post = task.posterior(x)
    A, R = task.transition, task.rates
    for bi in range(3):
        xs = x[:, bi].numpy()
        for t in range(7):
            weights = np.zeros(2)
            for path in itertools.product(range(2), repeat=t + 1):
                p = 0.5
                for s in range(t + 1):
                    if s:
                        p *= A[path[s - 1], path[s]]
                    p *= np.prod(np.where(xs[s] > 0, R[path[s]], 1 - R[path[s]]))
                weights[path[-1]] += p
            np.testing.assert_allclose(post[t, bi].numpy(), weights / weights.sum(), rtol=1e-9)


def test_regime_optimum_below_prior_and_falls_with_evidence():
    task = make_task("hidden_regime")
    x, z = task.sample(32, 600, torch.Generator().manual_seed(0))
    loss = task.bayes_loss(x, z)
    assert loss.mean() < task.baseline_loss()
    assert loss[300:].mean() < loss[:5].mean()


def _cfg(**kw):
    base = dict(task="markov_lm", task_params={"vocab": 4}, train_len=32, eval_lens=[32, 80], steps=120,
                batch=32, eval_batch=32, hidden=32, layers=2, lr=1e-2, neurons=[{"name": "lif"}])
    base.update(kw)
    return ExtrapolationConfig(**base)


@pytest.mark.slow
def test_tiny_training_beats_marginal_baseline_and_evaluates_longer(tmp_path):
    rows = []
    n = run_extrapolation(_cfg(), tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    assert n == 2 and [r["eval_len"] for r in rows] == [32, 80]
    for r in rows:
        assert r["status"] == "ok" and r["kind"] == "extrapolation" and r["policy"] == "native"
        assert r["finite"] and r["train_finite"]
        assert r["loss"] < r["baseline_loss"] - 0.2, r  # clearly better than ignoring the past
        assert r["excess_loss"] == pytest.approx(r["loss"] - r["optimal_loss"])
        assert r["serial_agrees"] and r["serial_check"] <= 1e-6  # step-by-step = parallel
        assert 0 <= r["accuracy_last10"] <= 1
    # weights were saved and evaluation can be repeated or extended
    (path,) = list((tmp_path / "weights").glob("lif-*.pt"))
    model, cfg = load_model(path)
    again = evaluate(model, make_task("markov_lm", vocab=4), 80, cfg, "cpu")
    assert again["loss"] == pytest.approx(rows[1]["loss"], rel=1e-6)


def test_window_policy_for_t_bound_neurons(tmp_path):
    rows = []
    cfg = _cfg(neurons=[{"name": "masked_psn", "params": {"k": 4}}], steps=5, eval_lens=[32, 80])
    run_extrapolation(cfg, tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert rows[1]["policy"] == "window" and "windows" in rows[1]["policy_reason"]
    model, _ = load_model(next((tmp_path / "weights").glob("masked_psn-*.pt")))
    x = torch.randn(80, 2, 4)
    with torch.no_grad():
        full = model(x)
        # each window of the training length is evaluated on its own with a fresh state
        first = model(x[:32])
        last = model(torch.cat([x[64:], torch.zeros(16, 2, 4)]))[:16]
    torch.testing.assert_close(full[:32], first)
    torch.testing.assert_close(full[64:], last)


def test_non_causal_psn_is_unsupported(tmp_path):
    rows = []
    cfg = _cfg(neurons=[{"name": "psn"}], steps=1)
    run_extrapolation(cfg, tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    assert {r["status"] for r in rows} == {"unsupported"}
    assert "not causal" in rows[0]["reason"]


def test_non_finite_losses_are_reported_not_crashed_on(tmp_path):
    rows = []
    cfg = _cfg(lr=math.inf, steps=3)
    run_extrapolation(cfg, tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    assert len(rows) == 2
    for r in rows:
        assert r["finite"] is False or r["train_finite"] is False
        assert r["reason"] and "non-finite" in r["reason"]


def test_resume_skips_done_rows(tmp_path):
    rows = []
    cfg = _cfg(steps=2)
    run_extrapolation(cfg, tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    more = []
    n = run_extrapolation(cfg, tmp_path, device="cpu", run_id="r", scenario="t", write_row=more.append,
                          done_keys={r["key"] for r in rows})
    assert n == 0 and more == []


def test_unknown_task_and_parameters():
    with pytest.raises(ValueError, match="did you mean 'markov_lm'"):
        make_task("markov_lmm")
    with pytest.raises(ValueError, match="valid parameters"):
        make_task("hidden_regime", regims=3)
    with pytest.raises(ValueError, match="unknown key"):
        ExtrapolationConfig.from_block({"task": "markov_lm", "stepz": 3})


def test_runner_runs_the_extrapolation_block_and_resumes(tmp_path):
    """`perfsuite run` on a scenario with only an extrapolation block: rows, summary, no duplicates."""
    from perfsuite.results import read_rows
    from perfsuite.runner import run_points

    block = dict(task="markov_lm", task_params={"vocab": 4}, train_len=16, eval_lens=[16, 32], steps=2,
                 batch=4, eval_batch=4, hidden=8, layers=1, neurons=["lif", "psn"])
    out = tmp_path / "run"
    res = run_points([], out, progress=False, roofline=False, extrapolation=block, scenario="x", device="cpu")
    rows = read_rows(out / "results.jsonl")
    assert res.new_rows == 4 and len(rows) == 4
    assert {r["kind"] for r in rows} == {"extrapolation"}
    assert [r["status"] for r in rows] == ["ok", "ok", "unsupported", "unsupported"]
    assert "lif/eager/fp32/markov_lm/16/32#" in rows[1]["key"]
    summary = (out / "summary.md").read_text()
    assert "## Extrapolation" in summary and "| lif | markov_lm | 16 | 32 | ok |" in summary
    again = run_points([], out, resume=True, progress=False, roofline=False, extrapolation=block, scenario="x",
                       device="cpu")
    assert again.new_rows == 0 and len(read_rows(out / "results.jsonl")) == 4


def test_serial_evaluation_agrees_for_every_serial_neuron(tmp_path):
    rows = []
    names = ["plif", {"name": "masked_psn", "params": {"k": 3}}, {"name": "sliding_psn", "params": {"k": 3}},
             "psu", "ipsu", "rpsu", "dsn"]
    cfg = _cfg(neurons=[n if isinstance(n, dict) else {"name": n} for n in names], steps=1, eval_lens=[16],
               train_len=16, hidden=8, layers=2, batch=4, eval_batch=2)
    run_extrapolation(cfg, tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    for r in rows:
        assert r["status"] == "ok" and r["serial_agrees"], (r["neuron"], r.get("reason"), r.get("serial_check"))


def test_serial_disagreement_is_an_error_row(tmp_path, monkeypatch):
    from perfsuite.neurons.lif import LIF

    real_step = LIF.step

    def broken_step(self, x_t, state):
        s, v = real_step(self, x_t, state)
        return 1.0 - s, v  # a step that emits the complement of its spikes: no longer the parallel neuron

    monkeypatch.setattr(LIF, "step", broken_step)
    rows = []
    run_extrapolation(_cfg(steps=1), tmp_path, device="cpu", run_id="r", scenario="t", write_row=rows.append)
    assert {r["status"] for r in rows} == {"error"}
    assert "disagrees with the parallel one" in rows[0]["reason"] and rows[0]["serial_agrees"] is False
