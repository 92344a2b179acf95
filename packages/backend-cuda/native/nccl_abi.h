// kiln's own declarations of the part of NCCL's C ABI the addon uses. The addon is built
// without NCCL's headers (CI machines have nvcc and cudart only) and loads libnccl.so.2 with
// dlopen at first use; tools/check_nccl_abi.cpp static_asserts every value and layout below
// against a real nccl.h.
#pragma once
#include <climits>
#include <cstddef>

#include <cuda_runtime.h>

namespace kiln {
namespace nccl {

// ncclResult_t
enum Result : int {
  Success = 0,
  UnhandledCudaError = 1,
  SystemError = 2,
  InternalError = 3,
  InvalidArgument = 4,
  InvalidUsage = 5,
  RemoteError = 6,
  InProgress = 7,
};

// ncclDataType_t (FP8 types exist from NCCL 2.24; kiln moves FP8 as bytes anyway)
enum DataType : int {
  Int8 = 0,
  Uint8 = 1,
  Int32 = 2,
  Uint32 = 3,
  Int64 = 4,
  Uint64 = 5,
  Float16 = 6,
  Float32 = 7,
  Float64 = 8,
  Bfloat16 = 9,
};

// ncclRedOp_t (Avg since NCCL 2.10)
enum RedOp : int { Sum = 0, Prod = 1, Max = 2, Min = 3, Avg = 4 };

constexpr int kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
struct UniqueId {
  char internal[kUniqueIdBytes];
};

// ncclComm_t is an opaque pointer.
using Comm = void*;

constexpr int kConfigUndefInt = INT_MIN;         // NCCL_CONFIG_UNDEF_INT
constexpr unsigned int kConfigMagic = 0xcafebeef;  // NCCL_CONFIG_INITIALIZER's magic
constexpr unsigned int kConfigVersion = 21700;     // NCCL_VERSION(2, 17, 0): the layout below

// The leading fields of ncclConfig_t as of NCCL 2.17. NCCL copies min(size, its own size)
// bytes and gives fields newer than `version` their defaults, so this prefix stays valid.
struct Config {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cgaClusterSize;
  int minCTAs;
  int maxCTAs;
  const char* netName;
  int splitShare;
};

inline Config defaultConfig() {
  return Config{sizeof(Config), kConfigMagic, kConfigVersion, kConfigUndefInt, kConfigUndefInt,
                kConfigUndefInt, kConfigUndefInt, nullptr, kConfigUndefInt};
}

// Entry points (the types of the functions looked up with dlsym).
using GetVersionFn = Result (*)(int* version);
using GetUniqueIdFn = Result (*)(UniqueId* id);
using CommInitRankFn = Result (*)(Comm* comm, int nranks, UniqueId id, int rank);
using CommInitRankConfigFn = Result (*)(Comm* comm, int nranks, UniqueId id, int rank, Config* config);
using CommAbortFn = Result (*)(Comm comm);
using CommDestroyFn = Result (*)(Comm comm);
using CommGetAsyncErrorFn = Result (*)(Comm comm, Result* asyncError);
using GetErrorStringFn = const char* (*)(Result result);
using GetLastErrorFn = const char* (*)(Comm comm);
using GroupStartFn = Result (*)();
using GroupEndFn = Result (*)();
using SendFn = Result (*)(const void* buf, size_t count, DataType type, int peer, Comm comm, cudaStream_t stream);
using RecvFn = Result (*)(void* buf, size_t count, DataType type, int peer, Comm comm, cudaStream_t stream);
using AllReduceFn = Result (*)(const void* send, void* recv, size_t count, DataType type, RedOp op, Comm comm,
                               cudaStream_t stream);
using AllGatherFn = Result (*)(const void* send, void* recv, size_t sendCount, DataType type, Comm comm,
                               cudaStream_t stream);

}  // namespace nccl
}  // namespace kiln
