import { runConformance } from '@kiln/conformance';
import { CudaBackend, cudaUnavailableReason } from '@kiln/backend-cuda';

// The whole suite on the GPU, once with the default FP8 GEMM path (kiln's Hopper kernel where
// a shape qualifies) and once with the exact CUDA-core path. Skips, saying why, without a GPU.
const available = () => cudaUnavailableReason() ?? true;
runConformance(() => new CudaBackend(), { name: 'cuda', available });
runConformance(() => new CudaBackend({ fp8Gemm: 'exact', useCublasLt: false }), { name: 'cuda (own kernels only)', available, areas: ['fp8', 'matmul'] });
