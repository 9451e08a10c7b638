#!/usr/bin/env bash
# Set up perfsuite with its test extras and run the CPU test suite (extra arguments go to pytest).
# Used by `.ci/run` and by the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,triton,ray
# SpikingJelly (the peer backend) imports with loguru alone; its other requirements (torchvision, torchaudio,
# tensorboard, ...) would pull a CUDA torch, so the tests install the two without dependencies.
"${PYTHON:-python3}" -m pip install -q --no-deps spikingjelly==2.0.0 loguru==0.7.3
exec "${PYTHON:-python3}" -m pytest "$@"
