// Types shared by host code (the bindings) and the kernels: dtype codes and strided views.
#pragma once
#include <stdint.h>

namespace kiln {

// Same order as @kiln/core's DTYPES.
enum DType : int { F32 = 0, F16 = 1, BF16 = 2, E4M3 = 3, E5M2 = 4, I32 = 5, U8 = 6, BOOL = 7 };

inline int dtypeBytes(int d) { return d == F32 || d == I32 ? 4 : (d == F16 || d == BF16 ? 2 : 1); }

constexpr int kMaxDims = 8;
// A strided view: element (i0..in-1) lives at offset + sum(i_d * stride_d).
struct Strided {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t stride[kMaxDims];
  int64_t offset;
};

}  // namespace kiln
