"""report.html opened in a real headless browser (Debian's chromium): it renders with no error, every
embedded image decodes, and at 1400 px width no element sticks out horizontally (each section is also
screenshotted at that width). Skips with a message when no chromium is installed (.ci/run installs it).
The legend-over-title check of the figures needs no browser: tests/test_report_content.py."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from perfsuite.report import build_report
from perfsuite.results import append_row, read_rows
from tests.synthetic_runs import make_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason=f"no headless browser found (looked for {BROWSERS}); "
                                "install Debian's chromium to run this test")

# Put into a copy of the report only (the report itself has no script): records load errors of any
# element and, once the page has loaded, writes what it saw into <pre id="probe"> for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'failed to load <' + t.tagName.toLowerCase() + '>' : String(e.message));
}, true);
function overflowing() {
  // elements wider than their box (a scrolled table) or reaching past the right edge of the page
  var out = [], right = document.documentElement.clientWidth;
  document.querySelectorAll('body *').forEach(function (el) {
    if (el.id === 'probe' || el.closest('#probe')) { return; }
    var r = el.getBoundingClientRect();
    var name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '');
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible') {
      out.push(name + ' scrolls ' + el.scrollWidth + ' > ' + el.clientWidth);
    } else if (r.width > 0 && r.right > right + 1) {
      out.push(name + ' ends at ' + Math.round(r.right) + ' > ' + right);
    }
  });
  return out.slice(0, 20);
}
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var p = document.createElement('pre');
  p.id = 'probe';
  p.textContent = JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    errors: window.__errors,
    sections: document.querySelectorAll('section').length,
    tables: document.querySelectorAll('table').length,
    width: document.documentElement.scrollWidth,
    viewport: document.documentElement.clientWidth,
    overflowing: overflowing()
  });
  document.body.appendChild(p);
});
</script>"""


def _chromium(*args: str, profile) -> subprocess.CompletedProcess:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


WIDTH = 1400


def _profiled_run(path):
    """A run with every section filled, long cells included: profile blocks with long kernel names and
    trace paths (the kernels table is the widest), a failure, extrapolation rows."""
    run = make_run(path, neurons=("lif", "psn", "dsn"), backends=("eager", "compiled", "triton"),
                   seq_lens=(64, 128, 256, 512, 1024, 2048, 4096), samples=5,
                   failures={("psn", "eager", "train", 256): ("oom", "CUDA out of memory (synthetic)")},
                   extrapolation={"neurons": ["dsn"], "train_len": 64, "eval_lens": [64, 128, 256]})
    rows = read_rows(run / "results.jsonl")
    (run / "results.jsonl").unlink()
    for r in rows:
        if r["kind"] != "bench":
            append_row(run / "results.jsonl", r)
            continue
        tag = f"{r['neuron']}-{r['backend']}-{r['mode']}-{r['seq_len']}"
        r["profile"] = {"trace": f"traces/{tag}/perfsuite_profile_{tag}_worker_12345.1733050000000.pt.trace.json",
                        "identity": "ok", "detail": "compiled region ran generated code: "
                        "triton_per_fused__native_batch_norm_legit_functional_add_mul_sigmoid_0",
                        "kernel_source": "gpu_kernels",
                        "kernels": [{"name": "void at::native::vectorized_elementwise_kernel<4, at::native::"
                                     "CUDAFunctor_add<float>, at::detail::Array<char*, 3> >(int, ...)",
                                     "share": 0.5}, {"name": "triton_poi_fused_add_mul_0", "share": 0.3}]}
        append_row(run / "results.jsonl", r)
    return run


def test_report_renders_in_headless_chromium(tmp_path):
    run = _profiled_run(tmp_path / "run")
    html = build_report([run], dpi=40, n_boot=100)
    n_plots = len(list((run / "plots").glob("*.png")))
    assert n_plots >= 4

    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text().replace("</head>", PROBE + "\n</head>", 1))
    res = _chromium(f"--window-size={WIDTH},900", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
                    profile=tmp_path / "profile")
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.DOTALL)
    assert m, f"the page never finished loading; stderr: {res.stderr[-2000:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["images"] == n_plots and probe["decoded"] == n_plots
    assert probe["sections"] >= 8 and probe["tables"] >= 5
    assert probe["viewport"] <= WIDTH and probe["width"] <= probe["viewport"], probe
    assert probe["overflowing"] == [], probe["overflowing"]

    # each section alone (the others hidden), screenshotted at 1400 px: a non-empty picture of each
    ids = re.findall(r'<section id="([^"]+)">', html.read_text())
    assert "kernels" in ids and "appendix" in ids
    for sid in ids:
        page = tmp_path / f"section-{sid}.html"
        page.write_text(html.read_text().replace(
            "</style>", f"section:not(#{sid}), header {{ display: none; }}\n</style>", 1))
        shot = tmp_path / f"section-{sid}.png"
        res = _chromium(f"--window-size={WIDTH},1600", f"--screenshot={shot}", page.as_uri(),
                        profile=tmp_path / "profile2")
        assert res.returncode == 0, (sid, res.stderr[-2000:])
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000, sid
