"""The cheap commands import no heavy library (#14 item 2): `perfsuite list neurons` and `perfsuite
validate` must cost little beyond `import torch`. Asserted on what is imported (``python -X importtime``
of the real command), not on a time; the time itself is measured by scripts/bench_startup.py."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: loaded only by the commands that use them (report, compare, compiled/triton backends, executors)
HEAVY = ("pandas", "seaborn", "matplotlib", "scipy", "triton", "torch._inductor", "torch._dynamo", "ray",
         "jinja2", "sympy")
LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)\s*$")


def imported_modules(args: list[str]) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "perfsuite", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return {m.group(2) for line in r.stderr.splitlines() if (m := LINE.match(line))}


@pytest.mark.parametrize("args", [["list", "neurons"], ["validate", "scenarios/smoke.yaml"]])
def test_cheap_commands_import_no_heavy_library(args):
    mods = imported_modules(args)
    assert {"torch", "perfsuite.cli", "perfsuite.neurons"} <= mods  # the reader sees the real imports
    loaded = sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert loaded == [], f"`perfsuite {' '.join(args)}` imports {loaded}; import them where they are used"
