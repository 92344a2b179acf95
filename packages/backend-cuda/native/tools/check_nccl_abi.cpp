// Checks kiln's hand-written NCCL declarations (native/nccl_abi.h) against a real nccl.h:
// enum values, the unique id's size, ncclConfig_t's leading layout and the entry points'
// signatures. Everything is a static_assert, so compiling it is the check; running it prints
// the header's version.
//
//   NCCL_INC=$(python3 -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))")/include
//   g++ -std=c++17 -I"$NCCL_INC" -I/usr/local/cuda/include \
//       packages/backend-cuda/native/tools/check_nccl_abi.cpp -o /tmp/check_nccl_abi && /tmp/check_nccl_abi
#include <nccl.h>

#include <cstddef>
#include <cstdio>
#include <type_traits>

#include "../nccl_abi.h"

namespace n = kiln::nccl;

#define SAME(a, b) static_assert((int)(a) == (int)(b), #a " != " #b)

// ncclResult_t
SAME(n::Success, ncclSuccess);
SAME(n::UnhandledCudaError, ncclUnhandledCudaError);
SAME(n::SystemError, ncclSystemError);
SAME(n::InternalError, ncclInternalError);
SAME(n::InvalidArgument, ncclInvalidArgument);
SAME(n::InvalidUsage, ncclInvalidUsage);
SAME(n::RemoteError, ncclRemoteError);
SAME(n::InProgress, ncclInProgress);
static_assert(sizeof(n::Result) == sizeof(ncclResult_t), "ncclResult_t size");

// ncclDataType_t
SAME(n::Int8, ncclInt8);
SAME(n::Uint8, ncclUint8);
SAME(n::Int32, ncclInt32);
SAME(n::Uint32, ncclUint32);
SAME(n::Int64, ncclInt64);
SAME(n::Uint64, ncclUint64);
SAME(n::Float16, ncclFloat16);
SAME(n::Float32, ncclFloat32);
SAME(n::Float64, ncclFloat64);
SAME(n::Bfloat16, ncclBfloat16);
static_assert(sizeof(n::DataType) == sizeof(ncclDataType_t), "ncclDataType_t size");

// ncclRedOp_t
SAME(n::Sum, ncclSum);
SAME(n::Prod, ncclProd);
SAME(n::Max, ncclMax);
SAME(n::Min, ncclMin);
SAME(n::Avg, ncclAvg);
static_assert(sizeof(n::RedOp) == sizeof(ncclRedOp_t), "ncclRedOp_t size");

// ncclUniqueId, ncclComm_t
SAME(n::kUniqueIdBytes, NCCL_UNIQUE_ID_BYTES);
static_assert(sizeof(n::UniqueId) == sizeof(ncclUniqueId), "ncclUniqueId size");
static_assert(sizeof(n::Comm) == sizeof(ncclComm_t), "ncclComm_t size");

// ncclConfig_t: kiln's struct is a prefix of the real one, field for field.
SAME(n::kConfigUndefInt, NCCL_CONFIG_UNDEF_INT);
static_assert(sizeof(n::Config) <= sizeof(ncclConfig_t), "kiln's ncclConfig_t prefix is larger than the real struct");
#define FIELD(f)                                                                   \
  static_assert(offsetof(n::Config, f) == offsetof(ncclConfig_t, f), "offset of " #f); \
  static_assert(sizeof(n::Config::f) == sizeof(ncclConfig_t::f), "size of " #f)
FIELD(size);
FIELD(magic);
FIELD(version);
FIELD(blocking);
FIELD(cgaClusterSize);
FIELD(minCTAs);
FIELD(maxCTAs);
FIELD(netName);
FIELD(splitShare);

// Entry points: the real prototypes, with kiln's types substituted, must equal kiln's.
using R = ncclResult_t;
using C = ncclComm_t;
using T = ncclDataType_t;
#define SIG(fn, ...) static_assert(std::is_same<decltype(fn), __VA_ARGS__>::value, "signature of " #fn)
SIG(ncclGetVersion, R(int*));
SIG(ncclGetUniqueId, R(ncclUniqueId*));
SIG(ncclCommInitRank, R(C*, int, ncclUniqueId, int));
SIG(ncclCommInitRankConfig, R(C*, int, ncclUniqueId, int, ncclConfig_t*));
SIG(ncclCommAbort, R(C));
SIG(ncclCommDestroy, R(C));
SIG(ncclCommGetAsyncError, R(C, R*));
SIG(ncclGetErrorString, const char*(R));
SIG(ncclGetLastError, const char*(C));
SIG(ncclGroupStart, R());
SIG(ncclGroupEnd, R());
SIG(ncclSend, R(const void*, size_t, T, int, C, cudaStream_t));
SIG(ncclRecv, R(void*, size_t, T, int, C, cudaStream_t));
SIG(ncclAllReduce, R(const void*, void*, size_t, T, ncclRedOp_t, C, cudaStream_t));
SIG(ncclAllGather, R(const void*, void*, size_t, T, C, cudaStream_t));

// And kiln's function-pointer types have the same shape (parameter by parameter, same sizes).
static_assert(std::is_same<n::SendFn, n::Result (*)(const void*, size_t, n::DataType, int, n::Comm, cudaStream_t)>::value, "SendFn");

int main() {
  n::Config c = n::defaultConfig();
  ncclConfig_t real = NCCL_CONFIG_INITIALIZER;
  bool ok = c.magic == real.magic && c.blocking == real.blocking && c.cgaClusterSize == real.cgaClusterSize &&
            c.minCTAs == real.minCTAs && c.maxCTAs == real.maxCTAs && c.splitShare == real.splitShare;
  std::printf("nccl.h %d.%d.%d (NCCL_VERSION_CODE %d): kiln's NCCL ABI declarations match; config initializer %s\n",
              NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH, NCCL_VERSION_CODE, ok ? "matches" : "DIFFERS");
  return ok ? 0 : 1;
}
