// Placeholder until the NCCL bindings land.
#include "nccl.h"

namespace kiln {
void registerNccl(Napi::Env, Napi::Object) {}
}
