// NCCL bindings (libnccl.so.2 loaded at run time): registered into the addon's exports.
#pragma once
#include <napi.h>

namespace kiln {
void registerNccl(Napi::Env env, Napi::Object exports);
}
