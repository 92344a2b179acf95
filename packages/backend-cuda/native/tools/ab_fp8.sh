#!/usr/bin/env bash
# A/B build variants of the FP8 GEMM on a subset of shapes (sweeping every tile config).
cd "$(dirname "$0")"
OUT=${1:-.}
build() { nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a $2 fp8_gemm_harness.cu ../kernels/fp8_gemm_sm90.cu -lcublasLt -lcublas -o /tmp/h_$1 & }
build base ""
build st4 "-DKILN_FP8_MAX_STAGES=4"
build nodbl "-DKILN_FP8_NO_DOUBLE_ACC"
wait
for v in base st4 nodbl; do
  echo "=== variant $v"
  /tmp/h_$v --no-check --subset --sweep --reps 15 2>&1 | grep -E "^ +[0-9]" | tee "$OUT/ab_$v.txt"
done
