#!/usr/bin/env bash
# The training experiments of docs/training.md, run side by side: one `kiln train` process per
# run, KILN_CPU_THREADS each (default 2, i.e. a 2-core machine per run), all on the same
# tokenizer, data order and seed. A short calibration pass sizes the step count to the time
# budget; then every run trains that many steps and validates on the Brown validation split.
#
#   scripts/train-experiments.sh OUT_DIR [BUDGET_SECONDS]      (needs a built kiln: npm run setup)
#
# Runs: fp32 / bf16 / fp8 (same model, default balancing), fp32 with another seed (the noise
# floor), gamma0 (no balancing at all), auxonly (sequence-wise balance loss only, gamma 0),
# nomtp (MTP off), dense (no MoE: every layer a dense SwiGLU with the same active FLOPs).
# Also selectable (EXP_RUNS): fp32-nomtp bf16-nomtp fp8-nomtp fp32-seed1-nomtp.
set -euo pipefail
OUT=${1:?usage: scripts/train-experiments.sh OUT_DIR [BUDGET_SECONDS]}
BUDGET=${2:-480}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE=${NODE:-node}
KILN=("$NODE" "$ROOT/apps/trainer/dist/cli.js")
export KILN_CPU_THREADS=${KILN_CPU_THREADS:-2}
mkdir -p "$OUT"
cd "$OUT"

# The tiny preset's model; small batches so a run gets thousands of steps; validation on the
# whole Brown validation split at the end.
cat > exp.json <<'JSON'
{ "preset": "tiny",
  "train": { "seqLen": 64, "microBatch": 4, "batchTokens": 256, "lr": 0.0015, "warmupSteps": 100,
             "evalEvery": 0, "evalBytes": 0, "logEvery": 100, "checkpointEvery": 0 } }
JSON
# Same active FLOPs per token without experts: tiny's MoE layer runs 1 shared + 2 routed experts
# of width 96 (288) and its dense layer 384; two dense layers of 336 match the sum.
cat > dense.json <<'JSON'
{ "preset": "tiny",
  "model": { "first_k_dense_replace": 2, "intermediate_size": 336 },
  "train": { "seqLen": 64, "microBatch": 4, "batchTokens": 256, "lr": 0.0015, "warmupSteps": 100,
             "evalEvery": 0, "evalBytes": 0, "logEvery": 100, "checkpointEvery": 0 } }
JSON

"${KILN[@]}" tokenizer train --vocab-size 1024 --out tokenizer.json

declare -A ARGS=(
  [fp32]="--config exp.json --precision fp32"
  [bf16]="--config exp.json --precision bf16"
  [fp8]="--config exp.json --precision fp8"
  [fp32-seed1]="--config exp.json --precision fp32 --seed 1"
  [gamma0]="--config exp.json --precision fp32 --balance-gamma 0 --aux-alpha 0"
  [auxonly]="--config exp.json --precision fp32 --balance-gamma 0 --aux-alpha 0.01"
  [nomtp]="--config exp.json --precision fp32 --mtp-depth 0"
  [dense]="--config dense.json --precision fp32"
  # MTP off: about 1.5x the steps in the same time, for a longer precision comparison.
  [fp32-nomtp]="--config exp.json --precision fp32 --mtp-depth 0"
  [bf16-nomtp]="--config exp.json --precision bf16 --mtp-depth 0"
  [fp8-nomtp]="--config exp.json --precision fp8 --mtp-depth 0"
  [fp32-seed1-nomtp]="--config exp.json --precision fp32 --mtp-depth 0 --seed 1"
)
RUNS=(${EXP_RUNS:-fp32 bf16 fp8 fp32-seed1 gamma0 auxonly nomtp dense})

TIME=()
if [[ -x /usr/bin/time ]]; then TIME=(/usr/bin/time -v); fi # peak RSS per run, in its .log

run_all() { # $1: phase dir, $2: steps, $3: extra args
  local pids=()
  for r in "${RUNS[@]}"; do
    # shellcheck disable=SC2086
    "${TIME[@]}" "${KILN[@]}" train ${ARGS[$r]} --tokenizer tokenizer.json --steps "$2" $3 --out "$1/$r" --json \
      > "$1-$r.json" 2> "$1-$r.log" &
    pids+=($!)
  done
  local fail=0
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
  return $fail
}

# PHASES=2 splits the training over two invocations (e.g. two calls on a machine with a
# per-command time limit): phase 1 calibrates, fixes the step count for both and stops halfway;
# `PHASE=2 scripts/train-experiments.sh OUT_DIR BUDGET` resumes every run to the end.
PHASES=${PHASES:-1}
PHASE=${PHASE:-1}
t0=$SECONDS
if [[ $PHASE == 1 ]]; then
  mkdir -p calib
  run_all calib 100000 "--stop-after 40"
  # Seconds per step of the slowest run (no validation in it; the final one is budgeted apart).
  per_step=$("$NODE" -e '
    const fs = require("fs");
    let worst = 0;
    for (const f of fs.readdirSync(".").filter((f) => f.startsWith("calib-") && f.endsWith(".json"))) {
      const r = JSON.parse(fs.readFileSync(f, "utf8"));
      worst = Math.max(worst, r.seconds / r.step);
    }
    console.log(worst);')
  calib_s=$((SECONDS - t0))
  val_s=90 # the final validation over the whole split plus start-up, on 2 threads
  steps=$("$NODE" -e "const s = Math.floor(($PHASES * $BUDGET - $calib_s - $val_s - 30 * $PHASES) / $per_step); console.log(Math.max(100, Math.min(8000, s - s % 100)))")
  echo "$steps" > steps.txt
  echo "calibration: ${per_step}s/step (slowest run), ${calib_s}s spent; ${steps} steps per run over $PHASES phase(s)"
  mkdir -p runs
  if [[ $PHASES == 2 ]]; then
    run_all runs "$steps" "--stop-after $((steps / 2))" || echo "some run failed: see runs-*.log"
    echo "phase 1 done in $((SECONDS - t0))s"
    exit 0
  fi
  run_all runs "$steps" "" || echo "some run failed: see runs-*.log"
else
  steps=$(cat steps.txt)
  # --resume continues each run from its checkpoint to the same step count.
  run_all runs "$steps" "--resume" || echo "some run failed: see runs-*.log"
fi
"${KILN[@]}" plot runs/* --out plots || true
# Checkpoints are large and not needed for the report (set KEEP_CHECKPOINTS=1 to keep them).
if [[ -z "${KEEP_CHECKPOINTS:-}" ]]; then rm -rf calib runs/*/checkpoints; fi
echo "done in $((SECONDS - t0))s"
