#!/usr/bin/env bash
# Install perfsuite (editable) with the given extras, e.g. `bash scripts/setup.sh test,triton`.
# Skipped when perfsuite is already installed from this checkout, editable, at its version, with its
# dependencies and those extras present (scripts/install_check.py: a check of installed metadata, no pip run).
# Where no torch is installed yet, the CPU build is pinned (constraints/cpu.txt): an unpinned torch would
# pull a CUDA build of several GB. A torch that is already installed (e.g. a CUDA build) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=${1:-}
if "$PY" scripts/install_check.py "$extras"; then exit 0; fi
if "$PY" -c "import torch" 2>/dev/null; then constraint=(); else constraint=(-c constraints/cpu.txt); fi
"$PY" -m pip install -q "${constraint[@]}" -e ".${extras:+[$extras]}"
