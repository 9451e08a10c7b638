"""Test set-up: run Triton kernels in the CPU interpreter and keep torch.compile cheap on CPU.

Both variables must be set before perfsuite's kernels are defined, hence here, at import time.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Inductor's C++ builds cost tens of seconds per graph on 2 cores; most tests compile with aot_eager
# (same graph capture, no codegen). tests/test_compiled_inductor.py runs Inductor itself.
os.environ.setdefault("PERFSUITE_COMPILE_BACKEND", "aot_eager")

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
