#!/usr/bin/env bash
# The one script a short GPU session runs (docs/gpu_session.md): everything worth keeping lands in
# reports/baselines/<gpu>/ and is packed into $OUT/gpu_session.tar.gz, with $OUT/gpu_session.log and
# $OUT/SUMMARY.md (steps, row counts, the issue-5 goals computed by scripts/goals.py from the rows).
#
#   OUT=/some/dir bash scripts/gpu_session.sh        (OUT defaults to ./gpu-session-out)
#
# Steps, in priority order, each under its own cap (`timeout`), the sweep going on after a failed step:
#   setup    pip install -e (PYTHONPATH is set anyway), nvidia-smi, perfsuite env --roofline
#   tests    pytest -m gpu (tests/test_gpu_harness.py and the kernel tests' GPU marks)
#   ci_a     scenarios/ci_gpu.yaml with energy and memory: the regression baseline, in the layout
#            scripts/gpu_ci.sh reads (reports/baselines/<gpu>/results.jsonl, env.json)
#   ci_b     ci_gpu.yaml again, time only (A/A partner of ci_a) -> <gpu>/aa_run2/
#   noise    noise floor of ci_a + ci_b -> <gpu>/noise_floor_provisional.json (perfsuite.compare.write_noise_floor):
#            provisional, from 2 A/A runs where docs/regression.md asks for >= 5, so not named noise_floor.json,
#            the file scripts/gpu_ci.sh gates with (scripts/noise_floor.sh on the runner makes that one)
#   longseq  scenarios/long_seq_quick.yaml -> <gpu>/long_seq_quick/
#   bench    scripts/bench_kernels.py, bf16 at T = 16k -> <gpu>/session/bench_kernels.txt
#   extrap   scenarios/extrapolation_quick.yaml -> <gpu>/extrapolation_quick/
#   kstatic  perfsuite kernels --arch <this GPU's sm> --json: the static kernel report -> session/kernels_static.json,
#            copied into each run folder as kernels_static.json (the report's Kernels section shows it)
#   reports  perfsuite report for each run folder (rows suffice: `perfsuite report` rebuilds them anywhere)
# then, always: goals + SUMMARY.md + pack.
#
# Caps (seconds; the whole script must end well inside the device tool's 570 s timeout, machine start
# not counted). A global deadline (GPU_SESSION_BUDGET_S, default 525 s) cuts every cap so that each later
# step keeps at least its FLOOR and packing keeps PACK_RESERVE; a step that ends early leaves its time
# to the ones after it. The caps are a budget split, not measurements: no GPU has run this script yet.
# The first session that does records each step's real duration in steps.tsv (SUMMARY.md); set the caps
# from those. What each step must fit:
#   setup 40: pip install -e --no-deps, torch import and CUDA init, the roofline (a 1 GiB copy and three
#     8192^3 matmuls under 60 ms budgets each, perfsuite/measure/device.py).
#   tests 80: pytest start, one Triton JIT compile per dtype/constexpr set, eager LIF loops at T = 30 000.
#   ci_a 150: 56 points, each at least MIN_WINDOW_S (perfsuite/measure/energy.py) for its NVML energy window
#     plus calibration and the timing budgets (25 + 100 ms), and 8 torch.compile cold starts.
#   ci_b 80: the same points without the energy window, compile caches warm.
#   noise 15: reads two rows files.
#   longseq 130: scenarios/long_seq_quick.yaml (its header says how it is sized).
#   bench 30: 2 neurons x 2 backends x 2 modes at T = 16k under do_bench budgets, plus JIT compiles.
#   extrap 60: scenarios/extrapolation_quick.yaml.
#   kstatic 90: the default kernel configurations compiled for one arch, bf16 and fp32 in two processes (the CI
#     test compiles them for sm_90a in about a minute on 2 cores); floor 0: the report is useful without it.
#   reports 60: seaborn plots per report (last: reports can be rebuilt off the GPU from the rows).
#
# Environment: OUT, PYTHON, BASELINES (default reports/baselines), GPU_SESSION_BUDGET_S,
# GPU_SESSION_STEPS (space-separated subset of the steps above, default all; goals/summary/pack always
# run), GPU_SESSION_SLUG (folder name; default from the GPU's name as scripts/lib.sh's gpu_slug).
# Optional packages that the GPU machine lacks (SpikingJelly) are found in build/gpu-deps when present
# (carried by the device tool; see docs/gpu_session.md).
set -uo pipefail  # no -e: a failed step is recorded and the session goes on
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh

OUT=${OUT:-$ROOT/gpu-session-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_session.log
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

BUDGET=${GPU_SESSION_BUDGET_S:-525}
DEADLINE=$((SECONDS + BUDGET))
PACK_RESERVE=20
ORDER=(setup tests ci_a ci_b noise longseq bench extrap kstatic reports)
declare -A CAP=([setup]=40 [tests]=80 [ci_a]=150 [ci_b]=80 [noise]=15 [longseq]=130 [bench]=30 [extrap]=60
                [kstatic]=90 [reports]=60)
# the least time each step must keep (enough for a useful part: the goal points come first in long_seq_quick)
declare -A FLOOR=([setup]=20 [tests]=40 [ci_a]=90 [ci_b]=40 [noise]=5 [longseq]=60 [bench]=15 [extrap]=30
                  [kstatic]=0 [reports]=0)
STEPS=" ${GPU_SESSION_STEPS-${ORDER[*]}} "  # set but empty: no step, only summary and pack

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[[ -d "$ROOT/build/gpu-deps" ]] && PYTHONPATH="$ROOT/build/gpu-deps:$PYTHONPATH"
unset TRITON_INTERPRET  # real kernels on the GPU, never the CPU interpreter
export PY ROOT OUT

if [[ -n "${GPU_SESSION_SLUG:-}" ]]; then
  SLUG=$GPU_SESSION_SLUG
else
  SLUG=$(gpu_slug) || SLUG=no-gpu
fi
BASELINES=${BASELINES:-reports/baselines}
mkdir -p "$BASELINES"
BASELINES=$(cd "$BASELINES" && pwd)
BASE=$BASELINES/$SLUG
SESSION=$BASE/session
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
rm -rf "$SESSION" && mkdir -p "$SESSION"  # this session's files only
STEPS_TSV=$SESSION/steps.tsv
printf 'step\tcap_s\ttook_s\tstatus\n' > "$STEPS_TSV"
export SLUG BASE SESSION WORK
echo "gpu_session: $(date -u +%FT%TZ) slug=$SLUG base=$BASE out=$OUT budget=${BUDGET}s steps:$STEPS"

# seconds to keep for the steps after $1, plus packing
reserve_after() {
  local after=0 seen=0 s
  for s in "${ORDER[@]}"; do
    if (( seen )) && [[ "$STEPS" == *" $s "* ]]; then after=$((after + FLOOR[$s])); fi
    [[ $s == "$1" ]] && seen=1
  done
  echo $((after + PACK_RESERVE))
}

# step NAME: run the function do_NAME under min(CAP, time left after the later steps' floors)
step() {
  local name=$1
  [[ "$STEPS" == *" $name "* ]] || return 0
  local left=$((DEADLINE - SECONDS - $(reserve_after "$name")))
  local cap=$((CAP[$name] < left ? CAP[$name] : left))
  if (( cap < 5 )); then
    printf '%s\t%s\t0\tskipped: no time left\n' "$name" "$cap" >> "$STEPS_TSV"
    echo "=== $name: skipped, no time left"
    return 0
  fi
  echo "=== $name: cap ${cap}s ($(date -u +%T))"
  local t0=$SECONDS rc status
  timeout -k 10 "$cap" bash -c "do_$name"
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="timed out (cap ${cap}s); what it wrote is kept" ;;
    *) status="failed (exit $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$cap" "$((SECONDS - t0))" "$status" >> "$STEPS_TSV"
  echo "=== $name: $status after $((SECONDS - t0))s"
}

# a fresh run folder: the copy checked out from git is replaced by this session's run
fresh() { rm -rf "$1"; mkdir -p "$(dirname "$1")"; }

do_setup() {
  timeout 30 "$PY" -m pip install --no-deps --no-build-isolation -q -e . \
    || echo "pip install -e failed; perfsuite is imported from PYTHONPATH=$ROOT"
  nvidia-smi | tee "$SESSION/nvidia-smi.txt"
  "$PY" -m perfsuite env --device cuda --roofline > "$SESSION/env.json"
  local rc=$?
  cat "$SESSION/env.json"
  "$PY" -c "import spikingjelly, importlib.metadata as m; print('spikingjelly', m.version('spikingjelly'))" \
    || echo "spikingjelly not importable: its points become 'unsupported' rows"
  return $rc
}

do_tests() {
  "$PY" -m pytest -m gpu -v -p no:cacheprovider --junitxml="$SESSION/pytest_gpu.xml" tests \
    2>&1 | tee "$SESSION/pytest_gpu.txt"
}

do_ci_a() {
  # keep the session's own folders, replace the rest of an older baseline of this GPU
  find "$BASE" -mindepth 1 -maxdepth 1 ! -name session -exec rm -rf {} +
  "$PY" -m perfsuite run scenarios/ci_gpu.yaml --out "$BASE" --device cuda --no-progress --no-report
}

do_ci_b() {
  # the A/A partner: same points and timing budgets, time only (the noise floor is a time threshold;
  # skipping the >= 1 s energy window per point halves the run)
  "$PY" - "$WORK/ci_gpu_aa.yaml" <<'PYEOF' || return 2
import sys, yaml
doc = yaml.safe_load(open("scenarios/ci_gpu.yaml"))
doc["metrics"] = ["time"]
yaml.safe_dump(doc, open(sys.argv[1], "w"), sort_keys=False)
PYEOF
  fresh "$BASE/aa_run2"
  "$PY" -m perfsuite run "$WORK/ci_gpu_aa.yaml" --out "$BASE/aa_run2" --device cuda --no-progress --no-report \
    --no-roofline
}

do_noise() {
  # provisional: two A/A runs give per-point floors that vary too much for the gate (docs/regression.md);
  # the file records n_runs = 2, so `compare --noise-floor` warns if it is used anyway
  "$PY" - "$BASE/noise_floor_provisional.json" "$BASE" "$BASE/aa_run2" <<'PYEOF'
import sys
from perfsuite.compare import write_noise_floor
nf = write_noise_floor(sys.argv[1], sys.argv[2:])
print(f"provisional noise floor of {len(nf.points)} points from {nf.runs} runs: largest {nf.default:.1%} "
      f"-> {sys.argv[1]}")
PYEOF
}

do_longseq() {
  fresh "$BASE/long_seq_quick"
  "$PY" -m perfsuite run scenarios/long_seq_quick.yaml --out "$BASE/long_seq_quick" --device cuda --no-progress \
    --no-report
}

do_bench() {
  "$PY" scripts/bench_kernels.py --neurons lif sliding_psn --seq-lens 16384 --dtypes bf16 \
    --backends triton spikingjelly 2>&1 | tee "$SESSION/bench_kernels.txt"
}

do_extrap() {
  fresh "$BASE/extrapolation_quick"
  "$PY" -m perfsuite run scenarios/extrapolation_quick.yaml --out "$BASE/extrapolation_quick" --device cuda \
    --no-progress --no-report
}

do_kstatic() {
  # the static kernel report (perfsuite kernels, docs/kernels.md) for this GPU's arch, written once and copied
  # into every run folder of the session, where `perfsuite report` shows it beside the measured profiles
  local arch d n=0
  arch=$("$PY" - <<'PYEOF'
import torch
from perfsuite.kernels_static import ARCHES
major, minor = torch.cuda.get_device_capability()
names = [n for n, a in ARCHES.items() if a.capability == major * 10 + minor]
print(names[0] if names else f"none: sm_{major}{minor} has no entry in perfsuite.kernels_static.ARCHES")
PYEOF
  ) || { echo "kstatic: could not read the GPU's compute capability"; return 2; }
  if [[ $arch == none:* ]]; then echo "kstatic: ${arch#none: }; no static report"; return 3; fi
  "$PY" -m perfsuite kernels --arch "$arch" --json "$SESSION/kernels_static.json" \
    --markdown "$SESSION/kernels_static.md" > /dev/null || return $?
  for d in "$BASE" "$BASE/long_seq_quick" "$BASE/extrapolation_quick"; do
    [[ -s "$d/results.jsonl" ]] || continue
    cp "$SESSION/kernels_static.json" "$d/kernels_static.json" && n=$((n + 1))
  done
  echo "kstatic: $arch -> $SESSION/kernels_static.json, copied into $n run folder(s)"
}

do_reports() {
  local d rc=0
  for d in "$BASE" "$BASE/long_seq_quick" "$BASE/extrapolation_quick"; do
    [[ -s "$d/results.jsonl" ]] || continue
    "$PY" -m perfsuite report "$d" || rc=1
  done
  return $rc
}
export -f do_setup do_tests do_ci_a do_ci_b do_noise do_longseq do_bench do_extrap do_kstatic do_reports fresh

for s in "${ORDER[@]}"; do step "$s"; done

# ------------------------------------------------------------------ goals, summary, pack (always)
goals_note=""
if [[ -s "$BASE/long_seq_quick/results.jsonl" ]]; then
  timeout 30 "$PY" scripts/goals.py "$BASE/long_seq_quick" --markdown "$SESSION/goals.md" \
    --json "$SESSION/goals.json" || goals_note="scripts/goals.py failed; see the log"
else
  goals_note="no long_seq_quick rows: the goals were not checked"
fi

{
  echo "# GPU session: $SLUG"
  echo
  echo "$(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "$(grep -m1 -o 'NVIDIA-SMI [0-9.]*.*Driver Version: [0-9.]*' "$SESSION/nvidia-smi.txt" 2>/dev/null || echo 'nvidia-smi: not run')."
  echo "Everything below is in \`gpu_session.tar.gz\` (unpack: \`tar -xzf gpu_session.tar.gz -C reports/\`;"
  echo "see docs/gpu_session.md)."
  echo
  echo "## Steps"
  echo
  echo "| step | cap (s) | took (s) | status |"
  echo "|---|---|---|---|"
  tail -n +2 "$STEPS_TSV" | awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}'
  echo
  echo "## Rows"
  echo
  timeout 30 "$PY" - "$BASE" "$BASE/aa_run2" "$BASE/long_seq_quick" "$BASE/extrapolation_quick" <<'PYEOF'
import sys
from collections import Counter
from pathlib import Path
from perfsuite.results import read_rows
for d in sys.argv[1:]:
    p = Path(d) / "results.jsonl"
    if p.exists():
        c = Counter(r.get("status") for r in read_rows(p))
        print(f"- `{Path(d).name}`: {sum(c.values())} rows (" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")")
    else:
        print(f"- `{Path(d).name}`: no rows")
PYEOF
  [[ -f "$BASE/noise_floor_provisional.json" ]] && echo "- noise floor: \`noise_floor_provisional.json\`" \
    "(ci_gpu A/A: the baseline and aa_run2; 2 runs, provisional: the gate needs scripts/noise_floor.sh's >= 5)"
  echo
  echo "## Issue-5 goals (long_seq_quick)"
  echo
  if [[ -z "$goals_note" ]]; then cat "$SESSION/goals.md"; else echo "$goals_note"; fi
} > "$OUT/SUMMARY.md"
cp "$OUT/SUMMARY.md" "$SESSION/SUMMARY.md"

echo "=== pack ($(date -u +%T))"
cp "$LOG" "$SESSION/gpu_session.log"
tarball=$OUT/gpu_session.tar.gz
tar -czf "$tarball" -C "$BASELINES" "$SLUG"
# the device tool returns files up to 16 MiB: drop the plots (rebuilt by `perfsuite report`) if needed
if (( $(stat -c %s "$tarball") > 15 * 1024 * 1024 )); then
  echo "tarball over 15 MiB: packed again without plots/ and report.html (rebuild them with perfsuite report)"
  tar -czf "$tarball" -C "$BASELINES" --exclude='plots' --exclude='report.html' "$SLUG"
fi
rm -rf "$WORK"
echo "gpu_session: done in $((SECONDS))s; $OUT: $(ls "$OUT" | tr '\n' ' ')"
