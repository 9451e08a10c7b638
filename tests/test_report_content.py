"""What the report says about noisy times, bounded speed-ups, claims a CPU run cannot speak to, the roofline
(plot, appendix, unreliable roofs), trace links, escaping of data-borne text, figure layout and progress.
Synthetic runs (tests/synthetic_runs.py): every number is made up by construction."""
from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser

import pytest

from perfsuite import analysis as A
from perfsuite.report import build_report, plots
from perfsuite.results import append_row, read_rows
from tests.synthetic_runs import default_env, make_run

FAST = dict(dpi=40, n_boot=100)
SMALL = dict(neurons=("lif", "psn", "dsn"), seq_lens=(64, 128, 256), modes=("forward",), samples=5)


def _rewrite(run, edit):
    """Rewrite a run's rows through ``edit(row) -> row``."""
    rows = read_rows(run / "results.jsonl")
    (run / "results.jsonl").unlink()
    for r in rows:
        append_row(run / "results.jsonl", edit(r))


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------ intervals and noise
def test_interval_and_bounded_speedup_from_the_rows_ci(tmp_path):
    run = make_run(tmp_path / "r", **SMALL)

    def edit(r):  # known intervals: lif ±10 %, psn ±5 %, dsn at T=128 ±50 % (noisy)
        m = r["time"]["median_ms"]
        half = {"lif": 0.1, "psn": 0.05}.get(r["neuron"], 0.5 if r["seq_len"] == 128 else 0.02)
        r["time"]["ci95_ms"] = [m * (1 - half), m * (1 + half)]
        return r

    _rewrite(run, edit)
    sp = A.speedups(A.frame(A.load_runs([run])))
    row = sp[(sp["neuron"] == "psn") & (sp["seq_len"] == 64) & (sp["mode"] == "forward")].iloc[0]
    assert not row["noisy"]
    lif = sp[(sp["neuron"] == "lif") & (sp["seq_len"] == 64)].iloc[0]
    # bound = [lif low / psn high, lif high / psn low]
    assert row["speedup_over_lif_lo"] == pytest.approx(lif["ci_lo"] / row["ci_hi"])
    assert row["speedup_over_lif_hi"] == pytest.approx(lif["ci_hi"] / row["ci_lo"])
    assert row["speedup_over_lif_lo"] < row["speedup_over_lif"] < row["speedup_over_lif_hi"]
    noisy = sp[(sp["neuron"] == "dsn") & (sp["seq_len"] == 128)].iloc[0]
    assert noisy["noisy"] and not sp[(sp["neuron"] == "dsn") & (sp["seq_len"] == 64)].iloc[0]["noisy"]
    assert noisy["speedup_over_lif_lo"] != noisy["speedup_over_lif_lo"]  # NaN: no bound from a noisy time
    assert noisy["speedup_over_lif_bound_reason"] == "the neuron's time is noisy"


def test_headline_cells_carry_the_interval_and_a_noisy_mark(tmp_path):
    run = make_run(tmp_path / "r", **SMALL)

    def edit(r):
        if r["neuron"] == "dsn" and r["seq_len"] == 128:
            m = r["time"]["median_ms"]
            r["time"]["ci95_ms"] = [m * 0.5, m * 3.0]
        return r

    _rewrite(run, edit)
    build_report([run], **FAST)
    md = (run / "report.md").read_text()
    head = _section(md, "Headline")
    best = head.split("**Best time", 1)[1].split("**Speed-up", 1)[0]
    dsn = next(ln for ln in best.splitlines() if ln.startswith("| dsn |")).split("|")[2:5]
    assert "⚠ noisy" not in dsn[0] and re.search(r"\[[\d.]+–[\d.]+ [µm]?s\] \(compiled\)", dsn[0])
    assert "⚠ noisy (compiled)" in dsn[1]
    speed = head.split("**Speed-up", 1)[1]
    dsn_sp = next(ln for ln in speed.splitlines() if ln.startswith("| dsn |")).split("|")[2:5]
    assert re.fullmatch(r" [\d.]+× \[[\d.]+–[\d.]+\] · [\d.]+× \[[\d.]+–[\d.]+\] ", dsn_sp[0])
    assert dsn_sp[1] == " ⚠ noisy · ⚠ noisy "  # no bound from a noisy time, so no speed-up at all
    assert "⚠ noisy: no speed-up is shown, as it has no bound: the neuron's time is noisy" in speed
    lif_sp = next(ln for ln in speed.splitlines() if ln.startswith("| lif |")).split("|")[2:5]
    assert lif_sp[1].startswith(" 1× · ") and "⚠ noisy" not in lif_sp[1]  # lif and psn are quiet at T=128
    assert "> **1 of 9 headline times are noisy" in head  # dsn/compiled at T=128 (its eager row is not the best)


def test_points_measured_under_load_are_flagged_in_the_headline(tmp_path):
    """#11 item 2: the report flags rows whose load block says the machine was busy, by the gate's own rule."""
    run = make_run(tmp_path / "r", **SMALL)
    busy = {"cores": 2, "loadavg_before": [7.5, 6.0, 5.0], "loadavg_after": [7.9, 6.1, 5.0]}
    quiet = {"cores": 2, "loadavg_before": [0.5, 0.4, 0.3], "loadavg_after": [0.6, 0.4, 0.3]}

    def edit(r):
        hot = r["neuron"] == "dsn" and r["seq_len"] == 128
        return {**r, "load": busy if hot else quiet}

    _rewrite(run, edit)
    n_hot = sum(1 for ln in (run / "results.jsonl").read_text().splitlines()
                if '"neuron": "dsn"' in ln and '"seq_len": 128' in ln)
    assert n_hot > 0
    build_report([run], **FAST)
    head = _section((run / "report.md").read_text(), "Headline")
    assert f"**{n_hot} point(s) were measured under load" in head
    assert "<details><summary>Points measured under load" in head
    assert "| ok | load average 7.50 &gt; 2 cores (before) |" in head  # ">" escaped: Markdown from data
    # a run with quiet load blocks only has no such alert
    _rewrite(run, lambda r: {**r, "load": quiet})
    build_report([run], **FAST)
    assert "measured under load" not in _section((run / "report.md").read_text(), "Headline")


# ------------------------------------------------------------------------------------------ claims
def test_claims_of_a_cpu_run_collapse_into_one_line(tmp_path):
    run = make_run(tmp_path / "cpu", env={**default_env("cpu"), "device": "cpu"}, **SMALL)
    _rewrite(run, lambda r: {**r, "device": "cpu"})
    html = build_report([run], **FAST).read_text()
    md = (run / "report.md").read_text()
    section = _section(md, "The papers' claims against this run")
    n = len(A.load_claims())
    assert f"{n} claims need GPU rows at the papers' settings: dsn_psn_train_16k, " in section
    assert "<details><summary>Why each claim is not comparable or not measured" in section
    assert section.index("<details>") < section.index("| claim | paper |") < section.index("</details>")
    assert "<details><summary>Why each claim" in html and '<td class="verdict-not">not comparable</td>' in html


def test_claims_with_a_verdict_stay_a_table(tmp_path):
    run = make_run(tmp_path / "gpu", neurons=("lif", "psn"), seq_lens=(8, 16, 32, 64), modes=("forward",),
                   samples=5)  # the trend of PSN's speed-up over LIF at T ≤ 64 gets a verdict
    build_report([run], **FAST)
    section = _section((run / "report.md").read_text(), "The papers' claims against this run")
    assert "claims need" not in section and "<details>" not in section and "| claim | paper |" in section


# ---------------------------------------------------------------------------------------- roofline
def test_roofline_is_a_plot_and_its_table_is_in_the_appendix(tmp_path):
    run = make_run(tmp_path / "r", **SMALL)
    build_report([run], **FAST)
    md = (run / "report.md").read_text()
    roof = _section(md, "Roofline")
    assert "![Roofline" in roof and "| FLOP/byte |" not in roof
    appendix = _section(md, "Appendix")
    assert "**Roofline table: achieved rates" in appendix and "| memory |" in appendix


def test_unreliable_roof_never_names_a_bound(tmp_path):
    env = default_env("r")
    env["roofline"]["reliable"] = False
    run = make_run(tmp_path / "r", env=env, **SMALL)
    an = A.analyse(A.load_runs([run]), n_boot=0)
    assert an.roofline["bound"].isna().all() and an.roofline["fraction"].isna().all()
    assert set(an.roofline["reason"]) == {A.UNRELIABLE}
    assert an.roofline["achieved_gbs"].notna().all()  # achieved rates are still shown
    build_report([run], **FAST)
    md = (run / "report.md").read_text()
    assert "the measured roof is unreliable" in _section(md, "Roofline")
    appendix = _section(md, "Appendix")
    assert "| memory |" not in appendix and "| compute |" not in appendix
    guides = A.figure_specs(an).of("roofline")[0].guides
    assert guides and all(g["label"] == "measured roof (unreliable)" for g in guides)


def test_roofline_without_the_reliable_key_is_used_as_before(tmp_path):
    run = make_run(tmp_path / "r", **SMALL)
    an = A.analyse(A.load_runs([run]), n_boot=0)
    assert set(an.roofline["bound"]) == {"memory", "compute"} and an.roofline["fraction"].notna().all()
    assert set(an.roofline[an.roofline["neuron"] == "lif"]["bound"]) == {"memory"}  # 4 FLOP per 8 bytes


# ------------------------------------------------------------------------------------------ escaping
NASTY = "<script>alert(1)</script> <img src=x onerror=alert(2)> a|b ```"


def test_data_borne_text_is_escaped_in_markdown_and_html(tmp_path):
    env = default_env("r", gpu=NASTY)
    env["reproduce"] = {"command": "perfsuite run x.yaml # ```` " + NASTY, "commit": "abc1234"}
    run = make_run(tmp_path / "r", env=env, failures={("psn", "eager", "forward", 128): ("error", NASTY)}, **SMALL)
    html = build_report([run], **FAST).read_text()
    md = (run / "report.md").read_text()
    prose = re.sub(r"`````bash\n.*?\n`````", "", md, flags=re.S)  # a fenced block shows its text literally
    assert "<script>" not in prose and "<img" not in prose
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(2)&gt;" in md
    bad = _section(md, "Points not ok")
    assert "| error | &lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt; a\\|b ``` |" in bad
    # the reproduce fence is longer than the longest backtick run inside it (4), so it cannot be closed early
    env_sec = _section(md, "Environment and how to reproduce")
    assert "`````bash\ngit checkout abc1234\nperfsuite run x.yaml # ```` " in env_sec
    assert "--out NEW_FOLDER\n`````" in env_sec

    class Tags(HTMLParser):
        tags: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            assert not any(k.startswith("on") for k, _ in attrs), (tag, attrs)

    p = Tags()
    p.feed(html)
    assert "script" not in p.tags and p.tags.count("img") == len(list((run / "plots").glob("*.png")))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------------- trace links
def _profiled(tmp_path):
    run = make_run(tmp_path / "run", neurons=("lif",), backends=("eager",), seq_lens=(64,), modes=("forward",),
                   samples=3)
    _rewrite(run, lambda r: {**r, "profile": {"trace": "traces/lif eager/p.trace.json", "identity": "ok",
                                               "detail": "d", "kernel_source": "cpu_ops", "kernels": []}})
    return run


def test_trace_paths_are_links_relative_to_the_report(tmp_path):
    run = _profiled(tmp_path)
    html = build_report([run], **FAST).read_text()
    md = (run / "report.md").read_text()
    assert "[traces/lif eager/p.trace.json](traces/lif%20eager/p.trace.json)" in md
    assert '<a href="traces/lif%20eager/p.trace.json">traces/lif eager/p.trace.json</a>' in html
    elsewhere = build_report([run], tmp_path / "out", **FAST).read_text()
    assert '<a href="../run/traces/lif%20eager/p.trace.json">' in elsewhere


@pytest.mark.parametrize("path", ["/etc/passwd", "javascript:alert(1)", "../../x.json"])
def test_trace_paths_outside_the_run_are_not_links(path):
    from perfsuite.report.blocks import Link, relative_link

    assert not isinstance(relative_link(path), Link)


# --------------------------------------------------------------------------------------- figures
def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _layout_problems(fig) -> list[str]:
    """Legends that overlap their figure's title or an axes' title (display-space bounding boxes)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    titles = [fig._suptitle] if fig._suptitle is not None else []
    titles += [ax.title for ax in fig.axes if ax.get_title()]
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [f"legend over {t.get_text()!r}" for leg in legends for t in titles
            if _overlaps(leg.get_window_extent(r), t.get_window_extent(r))]


@pytest.mark.parametrize("case", ["one run", "several runs", "single T"])
def test_no_legend_overlaps_a_title(tmp_path, case):
    if case == "several runs":
        dirs = [make_run(tmp_path / n, env=default_env(n, gpu=f"GPU {n}"), seed=i, **SMALL)
                for i, n in enumerate("ab")]
    elif case == "single T":  # one mode: a narrow figure under a long title (where the old legend hit it)
        dirs = [make_run(tmp_path / "smoke-20261201-121500", **{**SMALL, "seq_lens": (64,)})]
    else:
        dirs = [make_run(tmp_path / "smoke-20261201-121500", neurons=("lif", "plif", "psn", "masked_psn", "spsn", "psu", "dsn"),
                         backends=("eager", "compiled", "triton"), seq_lens=(64, 128), samples=3,
                         extrapolation={"neurons": ["dsn", "psn"], "train_len": 64, "eval_lens": [64, 128]})]
    plan = A.figure_specs(A.analyse(A.load_runs(dirs), n_boot=0))
    assert {"time", "memory"} <= {f.quantity for f in plan.figures}
    for spec in plan.figures:
        assert _layout_problems(plots.draw(spec, plan.style)) == [], spec.name


def test_single_length_runs_are_dot_plots_and_backends_keep_their_marker(tmp_path):
    run = make_run(tmp_path / "r", **{**SMALL, "seq_lens": (64,)})
    plan = A.figure_specs(A.analyse(A.load_runs([run]), n_boot=0))
    assert {f.kind for f in plan.figures if f.quantity in ("time", "memory")} == {"dots"}
    markers = {}
    for q in ("time", "memory"):
        fig = plots.draw(plan.of(q)[0], plan.style)
        markers[q] = {t.get_text(): h.get_marker() for t, h in zip(fig.legends[0].get_texts(),
                                                                   fig.legends[0].legend_handles)
                      if t.get_text() in ("eager", "compiled")}
    assert markers["time"] == markers["memory"] and len(set(markers["time"].values())) == 2


def test_several_runs_share_one_figure_and_its_axes(tmp_path):
    dirs = [make_run(tmp_path / n, env=default_env(n, gpu=f"GPU {n}"), seed=i, **{**SMALL, "modes": ("forward", "train")})
            for i, n in enumerate("ab")]
    plan = A.figure_specs(A.analyse(A.load_runs(dirs), n_boot=0))
    time = plan.of("time")
    assert len(time) == 1 and set(time[0].data["run"]) == {"GPU a · a", "GPU b · b"}
    assert plan.style.line_by == "run" and len(set(plan.style.dashes.values())) == 2
    fig = plots.draw(time[0], plan.style)
    axes = fig.axes
    assert len(axes) == 2 and all(ax.get_shared_y_axes().joined(axes[0], ax) for ax in axes)


# ---------------------------------------------------------------------------------------- progress
def test_build_report_reports_progress(tmp_path):
    run = make_run(tmp_path / "r", **SMALL)
    seen = []
    build_report([run], progress=lambda done, total, what: seen.append((done, total, what)), **FAST)
    assert [d for d, _, _ in seen] == list(range(1, len(seen) + 1))
    assert seen[-1][0] == seen[-1][1] and seen[-1][2] == "wrote report"
    assert any(w == "plot time" for _, _, w in seen)


def test_report_command_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    from rich.console import Console
    from typer.testing import CliRunner

    from perfsuite import cli
    from perfsuite.cli import common

    run = make_run(tmp_path / "r", **SMALL)
    buf = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=buf, force_terminal=True, width=120))
    res = CliRunner().invoke(cli.app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert "report:" in buf.getvalue()  # the bar's description column
    buf.truncate(0)
    res = CliRunner().invoke(cli.app, ["report", str(run), "--no-progress"])
    assert res.exit_code == 0 and buf.getvalue() == ""
    assert json.loads(json.dumps(res.output.strip().split("report: ", 1)[1])).endswith("report.html")
