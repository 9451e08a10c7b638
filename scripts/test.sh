#!/usr/bin/env bash
# Set up perfsuite with its test extras and run the CPU test suite (extra arguments go to pytest).
# Used by `.ci/run` and by the README's test command. By default the tests marked `slow` (Inductor builds,
# whole runs in worker processes, training) are left out; the last -m wins, so `bash scripts/test.sh -m slow`
# runs only those and `bash scripts/test.sh -m ""` runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,triton,ray
# SpikingJelly (the peer backend) imports with loguru alone; its other requirements (torchvision, torchaudio,
# tensorboard, ...) would pull a CUDA torch, so the tests install the two without dependencies.
if ! "${PYTHON:-python3}" -c "from importlib.metadata import version as v
assert (v('spikingjelly'), v('loguru')) == ('2.0.0', '0.7.3')" 2>/dev/null; then
  "${PYTHON:-python3}" -m pip install -q --no-deps spikingjelly==2.0.0 loguru==0.7.3
fi
exec "${PYTHON:-python3}" -m pytest -m "not slow" "$@"
