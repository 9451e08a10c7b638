#!/usr/bin/env bash
# A/A noise floor: run a scenario RUNS times on this machine with the same code, then write per-point
# noise floors (perfsuite.compare.write_noise_floor) that `perfsuite compare --noise-floor` never lets
# the time threshold go below.
#
#   bash scripts/noise_floor.sh OUT_JSON [RUNS] [SCENARIO]
#
# RUNS defaults to 5 (fewer runs give noisier floors; 2 is the minimum, and `perfsuite compare` warns
# about a floor from fewer than 5: the file records n_runs); SCENARIO to scenarios/ci_gpu.yaml. Runs
# whose environments differ (GPU, driver, torch, triton, compile backend) are refused. The A/A runs stay in reports/noise-<timestamp>/ (ignored by git) for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out_json=${1:?usage: noise_floor.sh OUT_JSON [RUNS] [SCENARIO]}
runs=${2:-5}
scenario=${3:-scenarios/ci_gpu.yaml}
if ! [[ "$runs" =~ ^[0-9]+$ ]] || (( runs < 2 )); then
  echo "error: RUNS=$runs is invalid; expected an integer >= 2" >&2
  exit 2
fi
if (( runs < 5 )); then
  echo "warning: RUNS=$runs: a floor from fewer than 5 A/A runs varies too much per point; compare will warn" >&2
fi
work=reports/noise-$(date +%Y%m%d-%H%M%S)
dirs=()
for i in $(seq 1 "$runs"); do
  "$PY" -m perfsuite run "$scenario" --out "$work/run$i" --no-progress --no-report
  dirs+=("$work/run$i")
done
"$PY" - "$out_json" "${dirs[@]}" <<'PYEOF'
import sys
from perfsuite.compare import write_noise_floor
nf = write_noise_floor(sys.argv[1], sys.argv[2:])
print(f"noise floor of {len(nf.points)} points from {len(sys.argv) - 2} runs: "
      f"smallest {min(nf.points.values()):.1%}, largest {nf.default:.1%} -> {sys.argv[1]}")
PYEOF
