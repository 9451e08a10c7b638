"""Every ```python block of README.md runs as written on a CPU machine (#14 item 1).

Each block runs in a fresh interpreter with CUDA hidden and without the test suite's TRITON_INTERPRET, as
a new user's first try would, under a time bound.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TIME_LIMIT_S = 300


def python_blocks(markdown: str) -> list[str]:
    return BLOCK.findall(markdown)


def test_python_blocks_are_found():
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks and any("neurons.build" in b for b in blocks)
    assert python_blocks("text\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n") == ["x = 1\n", "y = 2\n"]


@pytest.mark.parametrize("index", range(len(python_blocks((ROOT / "README.md").read_text(encoding="utf-8")))))
def test_readme_python_block_runs_on_cpu(index, tmp_path):
    code = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[index]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=TIME_LIMIT_S)
    assert r.returncode == 0, f"README.md python block {index + 1} failed:\n{code}\n--- stderr ---\n{r.stderr}"
