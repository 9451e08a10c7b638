#!/usr/bin/env bash
# Set up perfsuite with its test extras and run the CPU test suite (extra arguments go to pytest).
# Used by `.ci/run` and by the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,triton
exec "${PYTHON:-python3}" -m pytest "$@"
