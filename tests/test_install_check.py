"""scripts/install_check.py: setup.sh skips `pip install` only when the installed perfsuite is this
checkout, editable, at its version, with its dependencies and the asked extras (#14 item 8)."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("install_check", ROOT / "scripts" / "install_check.py")
install_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_check)

PYPROJECT = """[project]
name = "perfsuite"
version = "0.3.0"
dependencies = ["dep-a>=1.0"]
[project.optional-dependencies]
extra = ["dep_b>=2"]
other = ["dep-c"]
"""


def _dist(site: Path, name: str, version: str, direct_url: dict | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def _site(tmp_path, root, *, version="0.3.0", editable=True, url=None, deps=(("dep-a", "1.2"), ("dep-b", "2.0"))):
    site = tmp_path / "site"
    _dist(site, "perfsuite", version, {"url": url or root.as_uri(), "dir_info": {"editable": editable}})
    for name, v in deps:
        _dist(site, name, v)
    return [str(site)]


def test_current_editable_install_of_this_checkout_skips(tmp_path, checkout):
    path = _site(tmp_path, checkout)
    assert install_check.install_needed(checkout, [], path) is None
    assert install_check.install_needed(checkout, ["extra"], path) is None


@pytest.mark.parametrize("site_args,extras,reason", [
    ({"version": "0.2.0"}, [], "installed perfsuite is 0.2.0, the checkout is 0.3.0"),
    ({"editable": False}, [], "not an editable install"),
    ({"url": "file:///elsewhere/perfsuite"}, [], "the checkout at file:///elsewhere/perfsuite, not"),
    ({}, ["other"], "dep-c is not installed"),
    ({"deps": (("dep-a", "0.9"), ("dep-b", "2.0"))}, [], "dep-a 0.9 does not satisfy dep-a>=1.0"),
    ({"deps": (("dep-a", "1.0"),)}, ["extra"], "dep_b is not installed"),
    ({}, ["nope"], "unknown extra(s) ['nope']"),
])
def test_install_needed_says_why(tmp_path, checkout, site_args, extras, reason):
    got = install_check.install_needed(checkout, extras, _site(tmp_path, checkout, **site_args))
    assert got is not None and reason in got


def test_not_installed(tmp_path, checkout):
    (tmp_path / "empty").mkdir()
    assert install_check.install_needed(checkout, [], [str(tmp_path / "empty")]) == "perfsuite is not installed"


def test_setup_script_runs_the_check_before_pip():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert text.index("scripts/install_check.py") < text.index("pip install")
