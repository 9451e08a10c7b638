"""perfsuite.report.build_report on synthetic runs: files, Markdown links, self-contained HTML, missing
metrics, failed points, one and several runs."""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pytest

from perfsuite.report import build_report
from tests.synthetic_runs import default_env, make_run

FAST = dict(dpi=40, n_boot=200)
SMALL = dict(neurons=("lif", "psn", "dsn"), seq_lens=(64, 128, 256, 512), samples=5)
FAILURES = {("psn", "eager", "train", 512): ("oom", "CUDA out of memory (synthetic)"),
            ("psn", "compiled", "train", 512): ("oom", "CUDA out of memory (synthetic)"),
            ("dsn", "compiled", "forward", 64): ("error", "RuntimeError: synthetic failure")}
EXTRA = {"neurons": ["dsn", "psn", "lif", "masked_psn"], "train_len": 64, "eval_lens": [64, 128, 256],
         "growth": {"psn": 0.3}, "nonfinite": ["lif"], "unsupported": {"masked_psn": "weights tied to T=64"}}


class _Page(HTMLParser):
    """Collects what the tests check: images, external references, scripts, section ids."""

    def __init__(self):
        super().__init__()
        self.imgs: list[dict] = []
        self.external: list[str] = []
        self.scripts = 0
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts += 1
        if "id" in a:
            self.ids.append(a["id"])
        for key in ("src", "href"):
            v = a.get(key, "")
            if v and not v.startswith(("data:", "#")):
                self.external.append(v)
        if tag == "link":
            self.external.append(a.get("href", "<link>"))


def _parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    p.close()
    return p


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("one")
    run = make_run(d / "run", failures=FAILURES, missing=("energy",), extrapolation=EXTRA, **SMALL)
    html = build_report([run], **FAST)
    return run, html


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    a = make_run(d / "a", env=default_env("a", gpu="GPU A"), **SMALL)
    b = make_run(d / "b", env=default_env("b", gpu="GPU B"), prefactor={"lif": 0.025, "psn": 0.00025,
                                                                         "dsn": 0.003}, seed=1, **SMALL)
    html = build_report([a, b], d / "out", **FAST)
    return a, b, html


def test_files_are_written_next_to_the_run_by_default(one_run):
    run, html = one_run
    assert html == run / "report.html"
    assert (run / "report.md").is_file()
    pngs = sorted(p.stem for p in (run / "plots").glob("*.png"))
    svgs = sorted(p.stem for p in (run / "plots").glob("*.svg"))
    assert pngs == svgs == ["extrapolation", "memory", "roofline", "throughput", "time"]  # energy not measured
    for p in (run / "plots").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for p in (run / "plots").glob("*.svg"):
        assert "<svg" in p.read_text()[:2000]


def test_html_is_self_contained_and_embeds_every_plot(one_run):
    run, html = one_run
    text = html.read_text()
    page = _parse(text)
    assert page.external == [] and page.scripts == 0
    pngs = sorted((run / "plots").glob("*.png"))
    assert len(page.imgs) == len(pngs)
    embedded = {base64.b64decode(i["src"].split(",", 1)[1]) for i in page.imgs}
    assert embedded == {p.read_bytes() for p in pngs}  # each plot, byte for byte
    assert all(i["src"].startswith("data:image/png;base64,") and i.get("alt") for i in page.imgs)
    for sid in ("environment", "headline", "scaling", "backends", "roofline", "activity", "extrapolation",
                "claims", "not-ok"):
        assert sid in page.ids


def test_markdown_links_every_plot_and_nothing_else(one_run):
    run, _ = one_run
    md = (run / "report.md").read_text()
    linked = set(re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md))
    assert linked == {f"plots/{p.name}" for p in (run / "plots").glob("*.png")}
    assert "| neuron | T=64 | T=128 | T=256 | T=512 |\n|---|---|---|---|---|\n| lif |" in md


def test_missing_energy_is_shown_with_its_reason(one_run):
    run, html = one_run
    text = html.read_text()
    assert "— no energy plot: synthetic run: energy not measured" in text
    md = (run / "report.md").read_text()
    assert "measured J / 10⁹ neuron-steps" in md and "synthetic run: energy not measured" in md


def test_failed_points_are_listed_with_status_and_reason(one_run):
    run, _ = one_run
    md = (run / "report.md").read_text()
    section = md.split("## Points not ok", 1)[1]
    for status, reason in set(FAILURES.values()):
        assert f"| {status} | {reason} |" in section
    # the headline cell of a point that failed on every backend names the status
    assert "— (oom)" in md


def test_environment_and_reproduce_command(one_run):
    run, _ = one_run
    md = (run / "report.md").read_text()
    assert "```bash\nperfsuite run scenarios/synthetic.yaml\n```" in md
    assert "| gpu.name | Synthetic GPU |" in md


def test_claims_table_has_paper_value_source_and_verdict(one_run):
    run, _ = one_run
    md = (run / "report.md").read_text()
    section = md.split("## The papers' claims against this run", 1)[1].split("\n## ", 1)[0]
    assert "25.6×" in section and "arXiv 2602.01133 abstract" in section
    assert "not measured" in section  # no 16k point in this small run
    # a single layer is not the trained network of the firing-rate claim: not comparable, and why
    assert "| not comparable | the run's rows differ from the paper's setting: workload layer (paper: network) |" \
        in section
    assert "Only rows at the paper's setting" in section


def test_claims_of_a_cpu_run_are_not_comparable_and_the_html_marks_them(tmp_path):
    run = make_run(tmp_path / "cpu", neurons=("psn", "dsn"), seq_lens=(32, 64), modes=("train",), samples=3)
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    (run / "results.jsonl").write_text("".join(json.dumps({**r, "device": "cpu"}) + "\n" for r in rows))
    html = build_report([run], **FAST)
    md = (run / "report.md").read_text()
    section = md.split("## The papers' claims against this run", 1)[1].split("\n## ", 1)[0]
    iclr = next(line for line in section.splitlines() if "ICLR version of DSN" in line)
    assert "| not comparable | the run's rows differ from the paper's setting: device cpu (paper: cuda) |" in iclr
    assert "lower than paper" not in section and "higher than paper" not in section
    assert '<td class="verdict-not">not comparable</td>' in html.read_text()


def test_several_runs_side_by_side(two_runs):
    _, _, html = two_runs
    out = html.parent
    assert html == out / "report.html"
    md = (out / "report.md").read_text()
    assert "## Runs side by side" in md
    assert "ratio: GPU B · b" in md
    stems = {p.stem for p in (out / "plots").glob("*.png")}
    # one figure per quantity with both runs overlaid (the run is the line style), not one per run
    assert stems == {"time", "memory", "energy", "throughput", "roofline"}
    assert "Runs overlaid, told apart by line style" in md
    page = _parse(html.read_text())
    assert len(page.imgs) == len(stems)


def test_rebuilding_into_a_folder_drops_old_plots(two_runs, tmp_path):
    a, _, html = two_runs
    out = html.parent
    build_report([a], out, **FAST)
    stems = {p.stem for p in (out / "plots").glob("*.png")}
    assert stems == {"time", "memory", "energy", "throughput", "roofline"}
    assert "Runs side by side" not in (out / "report.md").read_text()


def test_run_where_everything_failed_still_reports(tmp_path):
    failures = {("lif", b, m, T): ("error", "RuntimeError: synthetic") for b in ("eager",)
                for m in ("forward", "train") for T in (64, 128)}
    run = make_run(tmp_path / "bad", neurons=("lif",), backends=("eager",), seq_lens=(64, 128), failures=failures,
                   env={})
    html = build_report([run], **FAST)
    md = (run / "report.md").read_text()
    assert "no timed point succeeded" in md
    assert "env.json has no `command` entry" in md
    assert "<code>command</code>" in html.read_text()
    assert not list((run / "plots").glob("*.png"))
    assert _parse(html.read_text()).imgs == []


def test_bad_input_raises_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="run_dirs is empty"):
        build_report([])
    with pytest.raises(FileNotFoundError, match="missing.*no results.jsonl"):
        build_report([tmp_path / "missing"])


def test_single_length_run_says_there_is_nothing_to_fit(tmp_path):
    run = make_run(tmp_path / "one", neurons=("lif", "psn"), backends=("eager", "reference"), seq_lens=(32,),
                   modes=("forward",), samples=3, backend_factor={"reference": 0.5})  # reference fastest
    build_report([run], **FAST)
    md = (run / "report.md").read_text()
    assert "— no fits: every neuron × backend × mode was measured at a single sequence length." in md
    assert "— no crossovers" in md
    # the float64 reference is never the "best backend", even when it is the fastest row
    headline = md.split("## Headline", 1)[1].split("\n## ", 1)[0]
    assert "(reference)" not in headline and "(eager)" in headline
    # ... and the sentence above the tables says the reference was left out of the ranking
    assert "the float64 `reference` backend is left out of the ranking" in headline


def test_extrapolation_failures_are_reported(one_run):
    run, _ = one_run
    md = (run / "report.md").read_text()
    section = md.split("## Extrapolation", 1)[1].split("\n## ", 1)[0]
    assert "| lif | markov | 64 | 0.7" in section and section.count("| no |") == 2  # lif: non-finite; masked
    assert "masked_psn: unsupported weights tied to T=64 (eval 64, 128, 256)" in section
    assert "lif: ok but non-finite loss (training or evaluation) (eval 128, 256)" in section
    assert "dsn:" not in section  # nothing to say about a neuron whose every evaluation is fine
    bad = md.split("## Points not ok", 1)[1]
    assert "| unsupported | weights tied to T=64 | masked_psn |" in bad
    assert "| ok | non-finite loss (training or evaluation) | lif |" in bad


# -------------------------------------------------------------------- kernels and backend identity
def test_without_profiles_the_kernel_section_says_how_to_get_them(one_run):
    run, html = one_run
    md = (run / "report.md").read_text()
    section = md.split("## Kernels and backend identity", 1)[1].split("\n## ", 1)[0]
    assert "no profiler traces in this run" in section
    assert "`perfsuite run SCENARIO --profile`" in section and "`perfsuite profile SCENARIO --out RUN_DIR`" in section
    assert "kernels" in _parse(html.read_text()).ids


def _block(identity, detail, kernels, source="gpu_kernels"):
    """A profile block shaped like perfsuite.profile.profile_point's (synthetic numbers)."""
    return {"trace": "traces/x/perfsuite.1.pt.trace.json", "tensorboard_logdir": "traces", "identity": identity,
            "detail": detail, "kernel_source": source, "steps": 3,
            "kernels": [{"name": n, "calls": 3, "self_us": 10.0 * s, "share": s} for n, s in kernels]}


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """A synthetic run whose rows carry profile blocks (as `run --profile` writes them), one of them a
    mismatch and one a failed profile, plus a profiles.jsonl (as `perfsuite profile` writes it)."""
    import json

    from perfsuite.profile import PROFILES_FILE
    from perfsuite.results import append_row, read_rows

    d = tmp_path_factory.mktemp("prof")
    run = make_run(d / "run", neurons=("lif", "psn"), backends=("eager", "compiled", "triton"), seq_lens=(64, 128),
                   modes=("forward",), samples=5)
    rows = read_rows(run / "results.jsonl")
    blocks = {"eager": _block("ok", "no perfsuite kernel, no generated code", [("elementwise_kernel", 0.6)]),
              "compiled": _block("ok", "compiled region ran generated code: triton_poi_fused_0",
                                 [("triton_poi_fused_0", 0.7), ("gemm_kernel", 0.3)]),
              "triton": _block("mismatch", "none of perfsuite's Triton kernels launched; launched: gemm_kernel",
                               [("gemm_kernel", 0.9), ("a", 0.02), ("b", 0.02), ("c", 0.02), ("d", 0.02),
                                ("e", 0.01), ("f", 0.01)])}
    (run / "results.jsonl").unlink()
    for r in rows:
        if r["neuron"] == "psn" and r["backend"] == "triton" and r["seq_len"] == 128:
            r.update(profile=None, profile_reason="profiling failed (error): RuntimeError: synthetic")
        else:
            r["profile"] = json.loads(json.dumps(blocks[r["backend"]]))
        append_row(run / "results.jsonl", r)
    extra = {k: v for k, v in rows[0].items() if k in ("kind", "key", "neuron", "backend", "seq_len", "batch",
                                                        "features", "precision", "mode", "workload", "device")}
    append_row(run / PROFILES_FILE, {**extra, "status": "ok", "reason": None,
                                     "profile": _block("ok", "no compiled region in the eager trace",
                                                       [("aten::mul", 0.5)], source="cpu_ops")})
    html = build_report([run], **FAST)
    return run, html


def test_kernel_section_from_row_blocks_and_profiles_jsonl(profiled_run):
    run, _ = profiled_run
    md = (run / "report.md").read_text()
    section = md.split("## Kernels and backend identity", 1)[1].split("\n## ", 1)[0]
    # 12 rows with a block or a reason, plus the profiles.jsonl line
    assert "13 profiled point(s): identity ok 9, mismatch 3, unverified 0; no profile 1 (reasons in the table)." \
        in section
    lines = [ln for ln in section.splitlines() if ln.startswith("| lif") or ln.startswith("| psn")]
    assert len(lines) == 13
    assert ("| lif | compiled | forward | fp32 · layer · B=8 F=128 | 64 | run --profile | ok | compiled region ran "
            "generated code: triton_poi_fused_0 | GPU kernels | triton_poi_fused_0 70 %; gemm_kernel 30 % |") in section
    assert ("| lif | eager | forward | fp32 · layer · B=8 F=128 | 64 | perfsuite profile | ok | no compiled region in "
            "the eager trace | CPU ops | aten::mul 50 % |") in section
    # the top 5 are listed, the rest counted
    assert "gemm_kernel 90 %; a 2 %; b 2 %; c 2 %; d 2 %; +2 more in the profile block" in section
    assert "| psn | triton | forward | fp32 · layer · B=8 F=128 | 128 | run --profile | — | profiling failed (error): " \
           "RuntimeError: synthetic | — | — | — |" in section
    # rows in neuron order, then backend, then T; the row's block before the profiles.jsonl line
    order = [tuple(c.strip() for c in ln.split("|")[1:7:1]) for ln in lines]
    keys = [(o[0], o[1], int(o[4]), o[5]) for o in order]
    assert keys == sorted(keys, key=lambda k: (["lif", "psn"].index(k[0]), k[1], k[2], k[3] != "run --profile"))


def test_identity_mismatch_is_highlighted_in_markdown_and_html(profiled_run):
    run, html = profiled_run
    md = (run / "report.md").read_text()
    section = md.split("## Kernels and backend identity", 1)[1].split("\n## ", 1)[0]
    alert = [ln for ln in section.splitlines() if ln.startswith("> **⚠ mismatch: at 3 point(s)")]
    assert len(alert) == 1
    for T in (64, 128):
        assert f"lif/triton/forward T={T}: none of perfsuite's Triton kernels launched" in alert[0]
    assert section.count("| ⚠ mismatch |") == 3
    text = html.read_text()
    assert text.count('<td class="identity-mismatch">⚠ mismatch</td>') == 3
    assert '<p class="alert">⚠ mismatch: at 3 point(s)' in text


# ---------------------------------------------------------------------------------- neuron order
def test_neurons_are_listed_in_registry_order_in_tables_and_legends(tmp_path):
    from perfsuite import analysis as A
    from perfsuite.neurons import names
    from perfsuite.report import plots

    plugin = "tests.plugins.some:Neuron"
    given = ("dsn", "zeta_plugin", "spsn", plugin, "psu", "psn", "plif", "lif")
    expected = [n for n in names() if n in given] + sorted([plugin, "zeta_plugin"])
    assert expected[:6] == ["lif", "plif", "psn", "spsn", "psu", "dsn"]
    assert A.neuron_order(given) == expected
    run = make_run(tmp_path / "run", neurons=given, backends=("eager", "compiled"), seq_lens=(64, 128),
                   modes=("forward",), samples=3)
    build_report([run], **FAST)
    md = (run / "report.md").read_text()

    def first_column(section_title, caption):
        part = md.split(section_title, 1)[1].split(caption, 1)[1].split("\n\n", 2)[1]
        return [ln.split("|")[1].strip() for ln in part.splitlines()[2:] if ln.startswith("|")]

    assert first_column("## Headline", "**Best time") == expected
    assert first_column("## Firing rates and energy", "**Medians") == expected
    backends = first_column("## Backend comparison", "**Speed-up of each backend")
    assert list(dict.fromkeys(backends)) == expected
    # the figures' legend and colours follow the same order
    an = A.analyse(A.load_runs([run]), n_boot=0)
    plan = A.figure_specs(an)
    fig = plots.draw(plan.of("time")[0], plan.style)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:len(expected)] == expected
    assert list(plan.style.palette) == expected
