#!/usr/bin/env bash
# Build and run the FP8 GEMM harness on an sm_90 machine.
# Usage: run_fp8_harness.sh OUTDIR   -> OUTDIR/{build.log,bench.txt,fp8_bench.json,check.txt,fp8_check.json}
# Benchmarks run first (on a cool GPU), then the correctness suite.
set -o pipefail
cd "$(dirname "$0")"
OUTDIR=${1:-.}
mkdir -p "$OUTDIR"
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a ${KILN_NVCC_EXTRA:-} -Xptxas -v \
  fp8_gemm_harness.cu ../kernels/fp8_gemm_sm90.cu -lcublasLt -lcublas -o /tmp/fp8_harness 2>"$OUTDIR/build.log" \
  || { cat "$OUTDIR/build.log"; exit 1; }
grep -E "registers|spill" "$OUTDIR/build.log" | sort | uniq -c | head -5
echo "QGMMA instructions in SASS: $(cuobjdump -sass /tmp/fp8_harness | grep -c QGMMA)"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader || true
timeout ${KILN_HARNESS_TIMEOUT:-200} /tmp/fp8_harness --no-check --sweep --json "$OUTDIR/fp8_bench.json" ${KILN_BENCH_ARGS:-} > "$OUTDIR/bench.txt" 2>&1
echo "bench rc=$?"
timeout ${KILN_HARNESS_TIMEOUT:-200} /tmp/fp8_harness --no-bench --json "$OUTDIR/fp8_check.json" > "$OUTDIR/check.txt" 2>&1
echo "check rc=$?"
grep -v "^  ok" "$OUTDIR/check.txt" | tail -12
cat "$OUTDIR/bench.txt"
