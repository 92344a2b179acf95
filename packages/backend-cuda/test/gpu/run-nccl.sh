#!/usr/bin/env bash
# On a GPU machine (from the repository root): NCCL ABI check, then the NCCL collective checks on
# NPROC GPUs; with --bench also the all-to-all benchmark against PyTorch (torchrun), results in
# $OUT/bench/results/cuda-alltoall.{json,md}.
#   bash packages/backend-cuda/test/gpu/run-nccl.sh NPROC [--bench]
# Needs .carry/node.xz and .carry/nccl-gpu.bundle.mjs (test/gpu/build-bundle.mjs) and the addon
# (packages/backend-cuda/build/Release/kiln_cuda.node, or KILN_CUDA_ADDON).
set -euo pipefail
# NVLink multicast stays off on shared machines (the device image sets these; keep them set).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
NPROC=${1:-2}
shift || true
OUT=${OUT:-/tmp/kiln-out}
if ! command -v node >/dev/null; then
  xz -dc .carry/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
fi
NCCL_DIR=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null || true)
if [ -n "$NCCL_DIR" ] && [ -f "$NCCL_DIR/lib/libnccl.so.2" ]; then
  export KILN_NCCL_LIBRARY=${KILN_NCCL_LIBRARY:-$NCCL_DIR/lib/libnccl.so.2}
  INC=$NCCL_DIR/include
else
  INC=/usr/include
fi
echo "== NCCL: ${KILN_NCCL_LIBRARY:-libnccl.so.2 from the loader path}, headers in $INC"
CXX=$(command -v g++ || command -v c++ || true)
CUDA_INC=/usr/local/cuda/include
if [ -n "$CXX" ]; then
  "$CXX" -std=c++17 -I"$INC" -I"$CUDA_INC" packages/backend-cuda/native/tools/check_nccl_abi.cpp -o /tmp/check_nccl_abi
else
  nvcc -std=c++17 -I"$INC" -x cu packages/backend-cuda/native/tools/check_nccl_abi.cpp -o /tmp/check_nccl_abi
fi
/tmp/check_nccl_abi
export KILN_CUDA_ADDON=${KILN_CUDA_ADDON:-$PWD/packages/backend-cuda/build/Release/kiln_cuda.node}
echo "== kiln NCCL collective on $NPROC GPU(s)"
timeout "${KILN_GPU_TIMEOUT:-300}" node .carry/nccl-gpu.bundle.mjs --nproc "$NPROC" "$@" --out "$OUT/raw"
if [[ " $* " == *" --bench "* ]] && [ "$NPROC" -ge 2 ]; then
  echo "== PyTorch peer: torch.distributed.all_to_all_single (torchrun --nproc_per_node $NPROC)"
  timeout 300 torchrun --nproc_per_node "$NPROC" bench/peers/torch_alltoall.py --out "$OUT/raw/torch-alltoall.json" || echo "torch peer failed (the kiln numbers stand alone)"
  node packages/backend-cuda/test/gpu/merge-bench.mjs "$OUT/raw" "$OUT/bench/results"
fi
