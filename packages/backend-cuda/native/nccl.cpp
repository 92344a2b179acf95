// NCCL bindings. libnccl.so.2 is loaded with dlopen at first use (KILN_NCCL_LIBRARY overrides
// the path), so the addon builds and loads without NCCL; ncclAvailable() says why it is not
// usable. One communicator per process (one rank per process and GPU), on the addon's stream.
//
// Nothing here blocks the JS thread on a peer: the communicator is created non-blocking
// (ncclConfig_t.blocking = 0), every operation is only *started* by its binding, and JS polls
// ncclPoll() until it answers 'done' (or gives up after its timeout and calls ncclAbort()).
// ncclPoll() walks a small state machine:
//   Initializing: ncclCommGetAsyncError until the non-blocking init has finished.
//   Enqueuing:    the non-blocking group is still being launched by NCCL's thread; once
//                 ncclCommGetAsyncError says success, an event is recorded on the stream.
//   Running:      cudaEventQuery(event), plus ncclCommGetAsyncError for remote failures.
// Errors become a message string (never an exception inside NCCL's threads, never an abort).
//
// Bindings (all addresses are numbers, see runtime.h):
//   ncclAvailable() -> { ok, reason, version, versionString, library, nonBlocking }
//   ncclUniqueId() -> Uint8Array(128)
//   ncclInit(id: Uint8Array(128), worldSize, rank) -> 'pending' | 'done'   (then poll)
//   ncclPoll() -> 'done' | 'pending' | 'idle' | error message
//   ncclAllToAllV(sendPtr, sendBytes: number[], recvPtr, recvBytes: number[])   bytes per peer,
//       packed in rank order on both sides; grouped ncclSend/ncclRecv of ncclUint8
//   ncclAllReduce(sendPtr, recvPtr, count, dtype, op)   dtype: kiln code (f32 0, f16 1, bf16 2,
//       i32 5, u8 6); op: 'sum' | 'prod' | 'max' | 'min' | 'avg'; in place when sendPtr == recvPtr
//   ncclAllGather(sendPtr, recvPtr, bytesPerRank)          equal sizes (ncclAllGather of bytes)
//   ncclAllGatherV(sendPtr, sendBytes, recvPtr, recvBytes: number[])   uneven (send/recv)
//   ncclAbort()    aborts the communicator (wakes kernels waiting for a dead peer)
//   ncclDestroy()  frees a healthy communicator
//   ncclState() -> { phase, rank, worldSize, nonBlocking }
#include "nccl.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/types.h"
#include "nccl_abi.h"
#include "runtime.h"

namespace kiln {
namespace {

namespace n = ::kiln::nccl;

struct Library {
  bool tried = false;
  void* handle = nullptr;
  std::string why;
  std::string path;
  int version = 0;
  n::GetVersionFn getVersion = nullptr;
  n::GetUniqueIdFn getUniqueId = nullptr;
  n::CommInitRankFn commInitRank = nullptr;
  n::CommInitRankConfigFn commInitRankConfig = nullptr;  // NCCL >= 2.14 (non-blocking init)
  n::CommAbortFn commAbort = nullptr;
  n::CommDestroyFn commDestroy = nullptr;
  n::CommGetAsyncErrorFn commGetAsyncError = nullptr;
  n::GetErrorStringFn getErrorString = nullptr;
  n::GetLastErrorFn getLastError = nullptr;  // NCCL >= 2.13, optional
  n::GroupStartFn groupStart = nullptr;
  n::GroupEndFn groupEnd = nullptr;
  n::SendFn send = nullptr;
  n::RecvFn recv = nullptr;
  n::AllReduceFn allReduce = nullptr;
  n::AllGatherFn allGather = nullptr;
};

enum class Phase { None, Initializing, Idle, Enqueuing, Running, Failed };

struct Comm {
  n::Comm comm = nullptr;
  int rank = -1;
  int size = 0;
  bool nonBlocking = false;
  Phase phase = Phase::None;
  cudaEvent_t event = nullptr;
  std::string failure;
};

Library& lib() {
  static Library l;
  return l;
}
Comm& state() {
  static Comm c;
  return c;
}

template <typename T>
bool sym(Library& l, T& fn, const char* name, bool required = true) {
  fn = reinterpret_cast<T>(dlsym(l.handle, name));
  if (!fn && required) {
    l.why = l.path + " has no symbol " + name + " (NCCL 2.14 or later is needed)";
    return false;
  }
  return true;
}

bool load() {
  Library& l = lib();
  if (l.tried) return l.handle != nullptr;
  l.tried = true;
  const char* env = std::getenv("KILN_NCCL_LIBRARY");
  std::vector<std::string> names;
  if (env && *env) names.push_back(env);
  else names = {"libnccl.so.2", "libnccl.so"};
  std::string errors;
  for (const std::string& name : names) {
    dlerror();
    l.handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (l.handle) {
      l.path = name;
      break;
    }
    const char* e = dlerror();
    errors += (errors.empty() ? "" : "; ") + std::string(e ? e : name + ": not found");
  }
  if (!l.handle) {
    l.why = "NCCL could not be loaded (" + errors + "); install NCCL (libnccl2, or the nvidia-nccl-cu* wheel) " +
            "or point KILN_NCCL_LIBRARY at libnccl.so.2";
    return false;
  }
  bool ok = sym(l, l.getVersion, "ncclGetVersion") && sym(l, l.getUniqueId, "ncclGetUniqueId") &&
            sym(l, l.commInitRank, "ncclCommInitRank") && sym(l, l.commAbort, "ncclCommAbort") &&
            sym(l, l.commDestroy, "ncclCommDestroy") && sym(l, l.commGetAsyncError, "ncclCommGetAsyncError") &&
            sym(l, l.getErrorString, "ncclGetErrorString") && sym(l, l.groupStart, "ncclGroupStart") &&
            sym(l, l.groupEnd, "ncclGroupEnd") && sym(l, l.send, "ncclSend") && sym(l, l.recv, "ncclRecv") &&
            sym(l, l.allReduce, "ncclAllReduce") && sym(l, l.allGather, "ncclAllGather");
  if (ok) {
    sym(l, l.commInitRankConfig, "ncclCommInitRankConfig", false);
    sym(l, l.getLastError, "ncclGetLastError", false);
    if (l.getVersion(&l.version) != n::Success) l.version = 0;
    if (l.version < 21400) {
      l.why = l.path + " is NCCL " + std::to_string(l.version) + "; kiln needs NCCL 2.14 or later";
      ok = false;
    }
  }
  if (!ok) {
    dlclose(l.handle);
    l.handle = nullptr;
  }
  return ok;
}

std::string versionString(int v) {
  // NCCL_VERSION(X, Y, Z) = X * 10000 + Y * 100 + Z from 2.9 on.
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

[[noreturn]] void fail(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

void requireLib(Napi::Env env) {
  if (!load()) fail(env, "KILN_NCCL_UNAVAILABLE", lib().why);
}

std::string ncclMessage(n::Result r, const char* what) {
  Library& l = lib();
  std::string msg = std::string(what) + ": " + (l.getErrorString ? l.getErrorString(r) : "NCCL error") + " (ncclResult " +
                    std::to_string((int)r) + ")";
  Comm& c = state();
  if (l.getLastError) {
    const char* last = l.getLastError(c.comm);
    if (last && *last) msg += ": " + std::string(last);
  }
  return msg;
}

// The communicator must be ready for a new operation.
void requireIdle(Napi::Env env, const char* op) {
  requireLib(env);
  requireInit(env);
  Comm& c = state();
  if (c.phase == Phase::Idle) return;
  const char* why = c.phase == Phase::None          ? "no communicator (call ncclInit first)"
                    : c.phase == Phase::Initializing ? "the communicator is still initialising (poll until done)"
                    : c.phase == Phase::Failed       ? "the communicator failed earlier (abort it and create a new one)"
                                                     : "the previous operation has not completed (poll until done)";
  fail(env, "KILN_NCCL_ERROR", std::string(op) + ": " + why);
}

// After an operation was issued: record the completion event, or wait for NCCL's enqueue.
void issued(Napi::Env env, n::Result r, const char* op) {
  Comm& c = state();
  if (r == n::InProgress) {
    c.phase = Phase::Enqueuing;
    return;
  }
  if (r != n::Success) {
    c.phase = Phase::Failed;
    c.failure = ncclMessage(r, op);
    fail(env, "KILN_NCCL_ERROR", c.failure);
  }
  cudaError_t e = cudaEventRecord(c.event, runtime().stream);
  if (e != cudaSuccess) {
    c.phase = Phase::Failed;
    c.failure = std::string(op) + ": cudaEventRecord: " + cudaGetErrorString(e);
    cudaGetLastError();
    fail(env, "KILN_NCCL_ERROR", c.failure);
  }
  c.phase = Phase::Running;
}

std::vector<double> numbers(const Napi::Value& v) {
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out[i] = a.Get(i).As<Napi::Number>().DoubleValue();
  return out;
}

// ---- bindings --------------------------------------------------------------------------------

Napi::Value Available(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool ok = load();
  Library& l = lib();
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", ok);
  o.Set("reason", ok ? std::string() : l.why);
  o.Set("version", ok ? l.version : 0);
  o.Set("versionString", ok ? versionString(l.version) : std::string());
  o.Set("library", l.path);
  o.Set("nonBlocking", ok && l.commInitRankConfig != nullptr);
  return o;
}

Napi::Value UniqueIdBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireLib(env);
  n::UniqueId id{};
  n::Result r = lib().getUniqueId(&id);
  if (r != n::Success) fail(env, "KILN_NCCL_ERROR", ncclMessage(r, "ncclGetUniqueId"));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, n::kUniqueIdBytes);
  std::memcpy(out.Data(), id.internal, n::kUniqueIdBytes);
  return out;
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireLib(env);
  requireInit(env);
  Comm& c = state();
  if (c.phase != Phase::None) fail(env, "KILN_NCCL_ERROR", "ncclInit: this process already has a communicator (ncclAbort or ncclDestroy it first)");
  Napi::Uint8Array idBytes = info[0].As<Napi::Uint8Array>();
  if (idBytes.ByteLength() != (size_t)n::kUniqueIdBytes) {
    fail(env, "KILN_NCCL_ERROR", "ncclInit: the unique id must be " + std::to_string(n::kUniqueIdBytes) + " bytes, got " +
                                     std::to_string(idBytes.ByteLength()));
  }
  int size = info[1].As<Napi::Number>().Int32Value();
  int rank = info[2].As<Napi::Number>().Int32Value();
  if (size < 1 || rank < 0 || rank >= size) {
    fail(env, "KILN_NCCL_ERROR", "ncclInit: rank " + std::to_string(rank) + " is outside a world of " + std::to_string(size));
  }
  n::UniqueId id{};
  std::memcpy(id.internal, idBytes.Data(), n::kUniqueIdBytes);
  if (!c.event) check(env, cudaEventCreateWithFlags(&c.event, cudaEventDisableTiming), "cudaEventCreate");
  Library& l = lib();
  n::Result r;
  c.comm = nullptr;
  if (l.commInitRankConfig) {
    n::Config config = n::defaultConfig();
    config.blocking = 0;
    c.nonBlocking = true;
    r = l.commInitRankConfig(&c.comm, size, id, rank, &config);
  } else {
    c.nonBlocking = false;  // unreachable for NCCL >= 2.14, kept for odd builds
    r = l.commInitRank(&c.comm, size, id, rank);
  }
  c.rank = rank;
  c.size = size;
  c.failure.clear();
  if (r == n::InProgress) {
    c.phase = Phase::Initializing;
    return Napi::String::New(env, "pending");
  }
  if (r != n::Success) {
    std::string msg = ncclMessage(r, "ncclCommInitRank");
    if (c.comm) l.commAbort(c.comm);
    c.comm = nullptr;
    c.phase = Phase::None;
    fail(env, "KILN_NCCL_ERROR", msg);
  }
  c.phase = Phase::Idle;
  return Napi::String::New(env, "done");
}

Napi::Value Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm& c = state();
  Library& l = lib();
  auto failed = [&](const std::string& msg) {
    c.phase = Phase::Failed;
    c.failure = msg;
    return Napi::String::New(env, msg);
  };
  auto asyncError = [&](n::Result* out) {
    *out = n::Success;
    return l.commGetAsyncError(c.comm, out);
  };
  n::Result ae;
  switch (c.phase) {
    case Phase::None:
      return Napi::String::New(env, "idle");
    case Phase::Idle:
      return Napi::String::New(env, "done");
    case Phase::Failed:
      return Napi::String::New(env, c.failure);
    case Phase::Initializing: {
      n::Result r = asyncError(&ae);
      if (r != n::Success) return failed(ncclMessage(r, "ncclCommGetAsyncError"));
      if (ae == n::InProgress) return Napi::String::New(env, "pending");
      if (ae != n::Success) return failed(ncclMessage(ae, "ncclCommInitRank"));
      c.phase = Phase::Idle;
      return Napi::String::New(env, "done");
    }
    case Phase::Enqueuing: {
      n::Result r = asyncError(&ae);
      if (r != n::Success) return failed(ncclMessage(r, "ncclCommGetAsyncError"));
      if (ae == n::InProgress) return Napi::String::New(env, "pending");
      if (ae != n::Success) return failed(ncclMessage(ae, "NCCL operation"));
      cudaError_t e = cudaEventRecord(c.event, runtime().stream);
      if (e != cudaSuccess) {
        cudaGetLastError();
        return failed(std::string("cudaEventRecord: ") + cudaGetErrorString(e));
      }
      c.phase = Phase::Running;
      return Napi::String::New(env, "pending");
    }
    case Phase::Running: {
      cudaError_t e = cudaEventQuery(c.event);
      if (e != cudaSuccess && e != cudaErrorNotReady) {
        cudaGetLastError();
        return failed(std::string("CUDA error while waiting for NCCL: ") + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")");
      }
      n::Result r = asyncError(&ae);
      if (r != n::Success) return failed(ncclMessage(r, "ncclCommGetAsyncError"));
      if (ae != n::Success && ae != n::InProgress) return failed(ncclMessage(ae, "NCCL operation"));
      if (e == cudaErrorNotReady) return Napi::String::New(env, "pending");
      c.phase = Phase::Idle;
      return Napi::String::New(env, "done");
    }
  }
  return Napi::String::New(env, "idle");
}

Napi::Value AllToAllV(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireIdle(env, "ncclAllToAllV");
  Comm& c = state();
  Library& l = lib();
  const char* send = (const char*)ptrArg(info[0]);
  std::vector<double> sendBytes = numbers(info[1]);
  char* recv = (char*)ptrArg(info[2]);
  std::vector<double> recvBytes = numbers(info[3]);
  if ((int)sendBytes.size() != c.size || (int)recvBytes.size() != c.size) {
    fail(env, "KILN_NCCL_ERROR", "ncclAllToAllV: byte counts need one entry per rank (" + std::to_string(c.size) + ")");
  }
  std::vector<size_t> soff(c.size + 1, 0), roff(c.size + 1, 0);
  for (int p = 0; p < c.size; ++p) {
    soff[p + 1] = soff[p] + (size_t)sendBytes[p];
    roff[p + 1] = roff[p] + (size_t)recvBytes[p];
  }
  cudaStream_t s = runtime().stream;
  size_t self = (size_t)sendBytes[c.rank];
  if (self != (size_t)recvBytes[c.rank]) fail(env, "KILN_NCCL_ERROR", "ncclAllToAllV: this rank sends itself a different byte count than it receives");
  if (self) check(env, cudaMemcpyAsync(recv + roff[c.rank], send + soff[c.rank], self, cudaMemcpyDeviceToDevice, s), "ncclAllToAllV (own rows)");
  n::Result r = l.groupStart();
  for (int p = 0; p < c.size && r == n::Success; ++p) {
    if (p == c.rank) continue;
    size_t sb = (size_t)sendBytes[p], rb = (size_t)recvBytes[p];
    if (sb) r = l.send(send + soff[p], sb, n::Uint8, p, c.comm, s);
    if (r == n::Success && rb) r = l.recv(recv + roff[p], rb, n::Uint8, p, c.comm, s);
  }
  n::Result end = l.groupEnd();
  issued(env, r != n::Success ? r : end, "ncclAllToAllV");
  return env.Undefined();
}

bool ncclType(int kilnDtype, n::DataType* out) {
  switch (kilnDtype) {
    case F32: *out = n::Float32; return true;
    case F16: *out = n::Float16; return true;
    case BF16: *out = n::Bfloat16; return true;
    case I32: *out = n::Int32; return true;
    case U8: *out = n::Uint8; return true;
    default: return false;
  }
}

Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireIdle(env, "ncclAllReduce");
  Comm& c = state();
  const void* send = ptrArg(info[0]);
  void* recv = ptrArg(info[1]);
  size_t count = (size_t)info[2].As<Napi::Number>().DoubleValue();
  n::DataType type;
  if (!ncclType(info[3].As<Napi::Number>().Int32Value(), &type)) {
    fail(env, "KILN_NCCL_ERROR", "ncclAllReduce: dtype code " + std::to_string(info[3].As<Napi::Number>().Int32Value()) +
                                     " has no NCCL reduction (f32, f16, bf16, i32 and u8 do)");
  }
  std::string op = info[4].As<Napi::String>().Utf8Value();
  n::RedOp red;
  if (op == "sum") red = n::Sum;
  else if (op == "prod") red = n::Prod;
  else if (op == "max") red = n::Max;
  else if (op == "min") red = n::Min;
  else if (op == "avg") red = n::Avg;
  else fail(env, "KILN_NCCL_ERROR", "ncclAllReduce: unknown reduction '" + op + "'");
  n::Result r = lib().allReduce(send, recv, count, type, red, c.comm, runtime().stream);
  issued(env, r, "ncclAllReduce");
  return env.Undefined();
}

Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireIdle(env, "ncclAllGather");
  Comm& c = state();
  size_t bytes = (size_t)info[2].As<Napi::Number>().DoubleValue();
  n::Result r = lib().allGather(ptrArg(info[0]), ptrArg(info[1]), bytes, n::Uint8, c.comm, runtime().stream);
  issued(env, r, "ncclAllGather");
  return env.Undefined();
}

Napi::Value AllGatherV(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireIdle(env, "ncclAllGatherV");
  Comm& c = state();
  Library& l = lib();
  const char* send = (const char*)ptrArg(info[0]);
  size_t sendBytes = (size_t)info[1].As<Napi::Number>().DoubleValue();
  char* recv = (char*)ptrArg(info[2]);
  std::vector<double> recvBytes = numbers(info[3]);
  if ((int)recvBytes.size() != c.size) fail(env, "KILN_NCCL_ERROR", "ncclAllGatherV: recvBytes needs one entry per rank");
  if ((size_t)recvBytes[c.rank] != sendBytes) fail(env, "KILN_NCCL_ERROR", "ncclAllGatherV: recvBytes[rank] differs from sendBytes");
  std::vector<size_t> roff(c.size + 1, 0);
  for (int p = 0; p < c.size; ++p) roff[p + 1] = roff[p] + (size_t)recvBytes[p];
  cudaStream_t s = runtime().stream;
  if (sendBytes) check(env, cudaMemcpyAsync(recv + roff[c.rank], send, sendBytes, cudaMemcpyDeviceToDevice, s), "ncclAllGatherV (own part)");
  n::Result r = l.groupStart();
  for (int p = 0; p < c.size && r == n::Success; ++p) {
    if (p == c.rank) continue;
    if (sendBytes) r = l.send(send, sendBytes, n::Uint8, p, c.comm, s);
    if (r == n::Success && recvBytes[p] > 0) r = l.recv(recv + roff[p], (size_t)recvBytes[p], n::Uint8, p, c.comm, s);
  }
  n::Result end = l.groupEnd();
  issued(env, r != n::Success ? r : end, "ncclAllGatherV");
  return env.Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  Comm& c = state();
  if (c.comm && lib().commAbort) lib().commAbort(c.comm);
  c.comm = nullptr;
  c.phase = Phase::None;
  c.rank = -1;
  c.size = 0;
  return info.Env().Undefined();
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm& c = state();
  if (!c.comm) {
    c.phase = Phase::None;
    return env.Undefined();
  }
  // Only a communicator with nothing in flight is destroyed; anything else is aborted.
  n::Result r = c.phase == Phase::Idle ? lib().commDestroy(c.comm) : lib().commAbort(c.comm);
  c.comm = nullptr;
  c.phase = Phase::None;
  c.rank = -1;
  c.size = 0;
  if (r != n::Success && r != n::InProgress) fail(env, "KILN_NCCL_ERROR", ncclMessage(r, "ncclCommDestroy"));
  return env.Undefined();
}

Napi::Value StateBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm& c = state();
  static const char* names[] = {"none", "initializing", "idle", "enqueuing", "running", "failed"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("phase", names[(int)c.phase]);
  o.Set("rank", c.rank);
  o.Set("worldSize", c.size);
  o.Set("nonBlocking", c.nonBlocking);
  return o;
}

}  // namespace

void registerNccl(Napi::Env env, Napi::Object exports) {
  exports.Set("ncclAvailable", Napi::Function::New(env, Available));
  exports.Set("ncclUniqueId", Napi::Function::New(env, UniqueIdBinding));
  exports.Set("ncclInit", Napi::Function::New(env, Init));
  exports.Set("ncclPoll", Napi::Function::New(env, Poll));
  exports.Set("ncclAllToAllV", Napi::Function::New(env, AllToAllV));
  exports.Set("ncclAllReduce", Napi::Function::New(env, AllReduce));
  exports.Set("ncclAllGather", Napi::Function::New(env, AllGather));
  exports.Set("ncclAllGatherV", Napi::Function::New(env, AllGatherV));
  exports.Set("ncclAbort", Napi::Function::New(env, Abort));
  exports.Set("ncclDestroy", Napi::Function::New(env, Destroy));
  exports.Set("ncclState", Napi::Function::New(env, StateBinding));
}

}  // namespace kiln
