#!/usr/bin/env bash
# Build and run the FP8 GEMM harness on an sm_90 machine. Usage: run_fp8_harness.sh [outdir] [harness args...]
set -o pipefail
cd "$(dirname "$0")"
OUTDIR=${1:-.}; shift || true
mkdir -p "$OUTDIR"
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a ${KILN_NVCC_EXTRA:-} -Xptxas -v \
  fp8_gemm_harness.cu ../kernels/fp8_gemm_sm90.cu -lcublasLt -lcublas -o /tmp/fp8_harness 2>"$OUTDIR/build.log" \
  || { cat "$OUTDIR/build.log"; exit 1; }
grep -E "registers|spill" "$OUTDIR/build.log" | sort | uniq -c | head -5
echo "QGMMA instructions in SASS: $(cuobjdump -sass /tmp/fp8_harness | grep -c QGMMA)"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader || true
timeout ${KILN_HARNESS_TIMEOUT:-240} /tmp/fp8_harness --json "$OUTDIR/fp8.json" "$@" 2>&1 | tee "$OUTDIR/log.txt"
