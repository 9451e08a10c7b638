"""pytest-benchmark micro-benchmarks: kept out of the default test run.

They are collected only when asked for: a path inside ``tests/benchmarks`` on the command line,
``-m benchmark``, ``--benchmark-only``, or ``PERFSUITE_BENCH=1``. Otherwise `pytest` (the CPU test
suite) ignores this folder, so its timings never slow down or flake the unit tests.
"""
from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _asked_for(config) -> bool:
    if os.environ.get("PERFSUITE_BENCH") == "1":
        return True
    if "benchmark" in (config.getoption("markexpr", default="") or ""):
        return True
    if config.getoption("benchmark_only", default=False):
        return True
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config):
    if not _asked_for(config):
        return True
    return None
