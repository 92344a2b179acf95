// Placeholder until the dlopen-based cuBLASLt loader lands: reports cuBLASLt unavailable.
#include "cublaslt.h"

namespace kiln {
namespace lt {
bool available() { return false; }
std::string why() { return "cuBLASLt loader not built yet"; }
std::string version() { return ""; }
cudaError_t sgemm(const void*, const void*, void*, int, int64_t, int64_t, int, int, int, bool, bool, cudaStream_t) {
  return cudaErrorNotSupported;
}
cudaError_t bf16Gemm(const void*, const void*, void*, bool, int, int, int, cudaStream_t) { return cudaErrorNotSupported; }
bool fp8BlockwiseSupported(int, int, int) { return false; }
cudaError_t fp8BlockwiseGemm(const uint8_t*, const float*, const uint8_t*, const float*, void*, bool, int, int, int,
                             cudaStream_t) {
  return cudaErrorNotSupported;
}
}  // namespace lt
}  // namespace kiln
