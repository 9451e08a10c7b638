"""report.html opened in a real headless browser (Debian's chromium): it renders with no error and every
embedded image decodes. Skips with a message when no chromium is installed (.ci/run installs it)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from perfsuite.report import build_report
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
    width: document.documentElement.scrollWidth
  });
  document.body.appendChild(p);
});
</script>"""


def _chromium(*args: str, profile) -> subprocess.CompletedProcess:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run(tmp_path / "run", neurons=("lif", "psn", "dsn"), seq_lens=(64, 128, 256), samples=5,
                   failures={("psn", "eager", "train", 256): ("oom", "CUDA out of memory (synthetic)")},
                   extrapolation={"neurons": ["dsn"], "train_len": 64, "eval_lens": [64, 128, 256]})
    html = build_report([run], dpi=40, n_boot=100)
    n_plots = len(list((run / "plots").glob("*.png")))
    assert n_plots >= 4

    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text().replace("</head>", PROBE + "\n</head>", 1))
    res = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(), profile=tmp_path / "profile")
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.DOTALL)
    assert m, f"the page never finished loading; stderr: {res.stderr[-2000:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["images"] == n_plots and probe["decoded"] == n_plots
    assert probe["sections"] >= 8 and probe["tables"] >= 5

    shot = tmp_path / "shot.png"
    res = _chromium("--window-size=1280,2400", f"--screenshot={shot}", html.as_uri(), profile=tmp_path / "profile2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
