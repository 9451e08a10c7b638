#!/usr/bin/env bash
# Record this GPU's regression baseline: run scenarios/ci_gpu.yaml into reports/baselines/<gpu>/ and
# measure its A/A noise floor (noise_floor.sh) into reports/baselines/<gpu>/noise_floor.json.
# Run it on the CI runner itself, from a commit known to be good, then commit the folder.
#
#   bash scripts/refresh_baseline.sh [NOISE_RUNS]     (default 5; 0 skips the noise floor)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scenario=${SCENARIO:-scenarios/ci_gpu.yaml}
noise_runs=${1:-5}
slug=$(gpu_slug)
dest=${BASELINES:-reports/baselines}/$slug
tmp=$dest.new-$$
"$PY" -m perfsuite run "$scenario" --out "$tmp" --no-progress --no-report
if (( noise_runs > 0 )); then
  bash scripts/noise_floor.sh "$tmp/noise_floor.json" "$noise_runs" "$scenario"
fi
# replace the old baseline only once the new one is complete
rm -rf "$dest.old" && { [[ -d "$dest" ]] && mv "$dest" "$dest.old" || true; }
mv "$tmp" "$dest" && rm -rf "$dest.old"
echo "baseline for $slug: $dest (commit it: git add $dest)"
