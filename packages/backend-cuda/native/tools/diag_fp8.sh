#!/usr/bin/env bash
# Diagnostics for the FP8 GEMM on a GPU machine: SASS of one instantiation and an ncu summary.
set -o pipefail
cd "$(dirname "$0")"
OUT=${1:-.}
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a fp8_gemm_harness.cu ../kernels/fp8_gemm_sm90.cu -lcublasLt -lcublas -o /tmp/fp8_harness || exit 1
cuobjdump -sass /tmp/fp8_harness > /tmp/all.sass
awk '/Function : .*kiln_fp8_gemm_sm90_kernelILi128ELi128ELi1ELb1/{p=1} p&&/Function : /&&!/ILi128ELi128ELi1ELb1/{p=0} p' /tmp/all.sass > "$OUT/sass_128x128.txt"
wc -l "$OUT/sass_128x128.txt"
grep -o "QGMMA[^ ]*\|WARPGROUP[^ ;]*\|SYNCS[^ ;]*\|FFMA\|MOV \|BAR[^ ;]*" "$OUT/sass_128x128.txt" | sort | uniq -c
timeout 150 ncu --clock-control none -k regex:kiln_fp8_gemm_sm90_kernel -s 1 -c 1 \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
  --section ComputeWorkloadAnalysis /tmp/fp8_harness --profile 4096 7168 2048 5 > "$OUT/ncu.txt" 2>&1
grep -v "^==PROF==" "$OUT/ncu.txt" | grep -E "Throughput|Duration|Stall|Issue|Pipe|Bandwidth|Hit|Busy|Eligible|Active|Warp Cycles|Elapsed|SM Freq|DRAM|L2|Shared" | head -80
