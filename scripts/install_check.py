"""Is perfsuite already installed from this checkout, editable, at this version, with these extras?

    python scripts/install_check.py [EXTRAS]     # e.g. test,triton

Exit 0 (and say so) when nothing needs installing, 1 (with the reason) when `pip install -e .` must run.
`scripts/setup.sh` calls it so that quickstart.sh and test.sh skip a pip run of ~20 s when the install is
current. Only the standard library and pip's own `packaging` are used: it runs before anything is installed.
"""
from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_table(root: Path) -> dict:
    """The [project] table of ``root/pyproject.toml``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _find(name: str, path: list[str] | None):
    want = _normalize(name)
    for dist in metadata.distributions(path=path if path is not None else sys.path):
        if _normalize(dist.metadata["Name"] or "") == want:
            return dist
    return None


def _requirement_problem(req: str, path: list[str] | None) -> str | None:
    """Why requirement ``req`` ('torch>=2.4') is not met, or None when an installed distribution meets it."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without packaging only presence is checked
        name, spec = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1), None
    else:
        parsed = Requirement(req)
        name, spec = parsed.name, parsed.specifier
    dist = _find(name, path)
    if dist is None:
        return f"{name} is not installed"
    if spec is not None and not spec.contains(dist.version, prereleases=True):
        return f"{name} {dist.version} does not satisfy {req}"
    return None


def install_needed(root: Path, extras: list[str], path: list[str] | None = None) -> str | None:
    """The reason `pip install -e root[extras]` has to run, or None when the installed perfsuite is this
    checkout (editable), at the checkout's version, with its dependencies and ``extras``' present.
    ``path``: where to look for installed distributions (default: sys.path)."""
    project = project_table(root)
    dist = _find(project["name"], path)
    if dist is None:
        return "perfsuite is not installed"
    if dist.version != project["version"]:
        return f"installed perfsuite is {dist.version}, the checkout is {project['version']}"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except json.JSONDecodeError:
        direct = None
    if not isinstance(direct, dict) or not direct.get("dir_info", {}).get("editable"):
        return "installed perfsuite is not an editable install"
    url = direct.get("url", "")
    if not url.startswith("file://") or Path(url[len("file://"):]).resolve() != root.resolve():
        return f"installed perfsuite is the checkout at {url or '?'}, not {root}"
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        return f"unknown extra(s) {unknown}; expected some of {sorted(optional)}"
    for req in list(project.get("dependencies", [])) + [r for e in extras for r in optional[e]]:
        problem = _requirement_problem(req, path)
        if problem:
            return problem
    return None


def main(argv: list[str]) -> int:
    extras = [e for e in (argv[0] if argv else "").split(",") if e]
    # the checkout itself is not an install (a perfsuite.egg-info left there by a build would look like one)
    path = [p for p in sys.path if p and Path(p).resolve() not in (ROOT, ROOT / "scripts")]
    try:
        reason = install_needed(ROOT, extras, path)
    except ImportError as exc:  # Python 3.10 without tomli: no way to read pyproject.toml, so install
        reason = f"cannot read pyproject.toml ({exc})"
    if reason:
        print(f"installing perfsuite: {reason}")
        return 1
    print(f"perfsuite {project_table(ROOT)['version']} is installed from this checkout (editable"
          f"{', extras ' + ','.join(extras) if extras else ''}): pip install skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
