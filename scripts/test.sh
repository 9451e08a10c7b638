#!/usr/bin/env bash
# Set up perfsuite with its test extras and run the CPU test suite.
# Used by `.ci/run` and by the README's test command. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Pin the CPU torch build only where no torch is installed yet: a user's own (CUDA) torch stays.
if "$PY" -c "import torch" 2>/dev/null; then constraint=(); else constraint=(-c constraints/cpu.txt); fi
"$PY" -m pip install -q "${constraint[@]}" -e ".[test,triton]"
exec "$PY" -m pytest "$@"
