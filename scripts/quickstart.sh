#!/usr/bin/env bash
# Set up perfsuite and run the main job on a small default: the smoke scenario (every neuron, tiny sizes).
# Extra arguments go to `perfsuite run` (e.g. --device cpu, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m perfsuite run scenarios/smoke.yaml "$@"
