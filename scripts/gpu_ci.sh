#!/usr/bin/env bash
# GPU regression CI: run scenarios/ci_gpu.yaml, compare it with reports/baselines/<gpu>/ and confirm any
# regression by re-measuring only the flagged points. Writes the report, gate.md and gate.json into the
# run folder and appends gate.md to $GITHUB_STEP_SUMMARY when set.
#
#   bash scripts/gpu_ci.sh [OUT_DIR]          (default reports/ci-<timestamp>)
#
# Exit: 0 no regression, 1 regression confirmed by the re-run or time findings with too few samples to
# be tested (--fail-on-untestable: a gate that cannot see a slowdown must not pass CI), 2 bad input (no
# GPU, no baseline for this GPU, environments that differ from the baseline's).
# The noise floor is the baseline's noise_floor.json (scripts/noise_floor.sh, >= 5 A/A runs); a GPU
# session's noise_floor_provisional.json (2 runs) is never used as the gate's floor.
# Environment: SCENARIO (default scenarios/ci_gpu.yaml), BASELINES (default reports/baselines),
# COMPARE_ARGS (extra arguments for `perfsuite compare`, e.g. "--threshold 0.08").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scenario=${SCENARIO:-scenarios/ci_gpu.yaml}
out=${1:-reports/ci-$(date +%Y%m%d-%H%M%S)}
slug=$(gpu_slug)
baseline=${BASELINES:-reports/baselines}/$slug

if [[ ! -f "$baseline/results.jsonl" ]]; then
  msg="no baseline for GPU '$slug' ($baseline/results.jsonl); record one on this runner with scripts/refresh_baseline.sh and commit it"
  echo "error: $msg" >&2
  [[ -n "${GITHUB_STEP_SUMMARY:-}" ]] && printf '## perfsuite regression gate\n\n**NO BASELINE**: %s\n' "$msg" >> "$GITHUB_STEP_SUMMARY"
  exit 2
fi

"$PY" -m perfsuite run "$scenario" --out "$out" --no-progress

floor=()
if [[ -f "$baseline/noise_floor.json" ]]; then
  floor=(--noise-floor "$baseline/noise_floor.json")
elif [[ -f "$baseline/noise_floor_provisional.json" ]]; then
  echo "warning: only $baseline/noise_floor_provisional.json (2 A/A runs) is there; gating without a noise" \
       "floor. Measure one on this runner: bash scripts/noise_floor.sh $baseline/noise_floor.json" >&2
fi
set +e
# shellcheck disable=SC2086  # COMPARE_ARGS is a list of words
"$PY" -m perfsuite compare "$baseline" "$out" "${floor[@]}" --rerun "$scenario" --rerun-out "$out-rerun" \
  --fail-on-untestable --markdown "$out/gate.md" --json "$out/gate.json" ${COMPARE_ARGS:-}
status=$?
set -e
if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -f "$out/gate.md" ]]; then
  cat "$out/gate.md" >> "$GITHUB_STEP_SUMMARY"
fi
exit $status
