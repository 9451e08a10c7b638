#!/usr/bin/env bash
# GPU regression CI. Two modes:
#
# * pull request (BASE_SHA and HEAD_SHA set): `perfsuite ab scenarios/ci_gpu.yaml --baseline $BASE_SHA
#   --candidate $HEAD_SHA`: both commits measured on this runner in one job, interleaved round by round
#   (docs/regression.md, "perfsuite ab"), so drift between jobs cannot raise or hide a regression. A base
#   commit older than `perfsuite ab` (no perfsuite/ab_server.py) falls back to the stored-baseline compare.
# * push to main (no BASE_SHA): run scenarios/ci_gpu.yaml, compare it with reports/baselines/<gpu>/ and
#   confirm any regression by re-measuring only the flagged points (the stored baseline also feeds trends).
#
#   bash scripts/gpu_ci.sh [OUT_DIR]          (default reports/ci-<timestamp>)
#
# Writes gate.md and gate.json into OUT_DIR (for ab: copies of ab.md and ab.json) and appends gate.md to
# $GITHUB_STEP_SUMMARY when set.
# Exit: 0 no regression, 1 regression (compare: confirmed by the re-run, or time findings with too few
# samples to be tested: --fail-on-untestable), 2 bad input (no GPU, no baseline for this GPU, environments
# that differ from the baseline's, a ref that does not exist) or an internal error.
# The compare mode's noise floor is the baseline's noise_floor.json (scripts/noise_floor.sh, >= 5 A/A runs);
# a GPU session's noise_floor_provisional.json (2 runs) is never used as the gate's floor.
# Environment: SCENARIO (default scenarios/ci_gpu.yaml), BASELINES (default reports/baselines),
# BASE_SHA / HEAD_SHA (pull requests), ROUNDS (ab rounds, default 10; see docs/regression.md for how many
# fit the job), AB_ARGS (extra arguments for `perfsuite ab`), COMPARE_ARGS (extra arguments for
# `perfsuite compare`, e.g. "--threshold 0.08").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scenario=${SCENARIO:-scenarios/ci_gpu.yaml}
out=${1:-reports/ci-$(date +%Y%m%d-%H%M%S)}
slug=$(gpu_slug)

summary() {  # append gate.md to the job summary
  if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -f "$out/gate.md" ]]; then
    cat "$out/gate.md" >> "$GITHUB_STEP_SUMMARY"
  fi
}

if [[ -n "${BASE_SHA:-}" && -n "${HEAD_SHA:-}" ]]; then
  if git cat-file -e "$BASE_SHA:perfsuite/ab_server.py" 2>/dev/null; then
    set +e
    # shellcheck disable=SC2086  # AB_ARGS is a list of words
    "$PY" -m perfsuite ab "$scenario" --baseline "$BASE_SHA" --candidate "$HEAD_SHA" --rounds "${ROUNDS:-10}" \
      --out "$out" --no-progress ${AB_ARGS:-}
    status=$?
    set -e
    [[ -f "$out/ab.md" ]] && cp "$out/ab.md" "$out/gate.md"
    [[ -f "$out/ab.json" ]] && cp "$out/ab.json" "$out/gate.json"
    summary
    exit $status
  fi
  echo "warning: base commit $BASE_SHA predates perfsuite ab (no perfsuite/ab_server.py); gating against the" \
       "stored baseline instead" >&2
fi

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
summary
exit $status
