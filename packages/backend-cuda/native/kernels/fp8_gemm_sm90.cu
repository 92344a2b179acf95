// kiln: Hopper (sm_90a) FP8 E4M3 block-scaled GEMM / grouped GEMM. See fp8_gemm_sm90.cuh for semantics.
//
// Design (written for kiln; the hardware facts follow the PTX ISA):
//  * Persistent grid (one CTA per SM) walking output tiles [BM x BN] in a grouped raster
//    (16 M-blocks fastest, then N-blocks) so that concurrently running CTAs share A/B tiles in L2.
//  * 3 warpgroups per CTA: warpgroup 2 is the producer (setmaxnreg.dec to 40 registers; one thread
//    issues TMA bulk-tensor loads of the A [BM x 128] and B [BN x 128] FP8 tiles, 128B-swizzled, into a
//    STAGES-deep shared-memory ring guarded by full/empty mbarriers). Warpgroups 0 and 1 are consumers
//    (setmaxnreg.inc to 232): for BM = 128 each owns 64 rows x BN columns, for BM = 64 each owns
//    64 rows x BN/2 columns.
//  * A consumer warpgroup runs, per 128-wide K block, four `wgmma.mma_async m64nWNk32 .e4m3.e4m3`
//    from shared-memory descriptors (128B swizzle, K-major), waits for them, releases the stage, and
//    promotes the block's partial sums into a separate FP32 register accumulator scaled by
//    sa[row, kb] * sb[col/128, kb] (the scales are prefetched one K block ahead from global memory).
//  * Epilogue: direct 8-byte (f32) / 4-byte (bf16 RNE) stores from registers, masked by the
//    group's row range and by N.
//  * Grouped GEMMs are the same kernel: each CTA builds a prefix sum of M-blocks per group in shared
//    memory from the device-side offsets / masked_m (no host sync) and maps a linear tile index to
//    (group, M-block, N-block). Group starts need no alignment.
#include "fp8_gemm_sm90.cuh"

#include <cuda.h>           // CUtensorMap & enums only (no libcuda link: entry point via cudart)
#include <cudaTypedefs.h>   // PFN_cuTensorMapEncodeTiled
#include <cuda_bf16.h>

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <mutex>

#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KILN_SM90A_DEVICE 1
#else
#define KILN_SM90A_DEVICE 0
#endif

namespace kiln_fp8 {

constexpr int kBlockK = 128;          // K elements (= bytes) per stage; also the scale granularity
constexpr int kNumConsumerWG = 2;
constexpr int kThreads = (kNumConsumerWG + 1) * 128;
#define KILN_FP8_RASTER_GROUP 16  // M-blocks walked fastest in the tile raster

struct Params {
  const float* sa;
  const float* sb;
  void* D;
  const int* groupInfo;  // offsets[G+1] (mode 1) or masked_m[G] (mode 2)
  int mode;              // 0 dense, 1 contiguous grouped, 2 masked grouped
  int G;
  int M;                 // dense: M; contiguous: totalM; masked: Mmax
  int N;
  int K;
  int Kb;                // ceil(K/128)
  int Nb;                // ceil(N/128)
};

#if KILN_SM90A_DEVICE
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
#ifdef KILN_FP8_DEBUG_WATCHDOG
  uint32_t spins = 0;
#endif
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
#ifdef KILN_FP8_DEBUG_WATCHDOG
    if (!done && ++spins > (1u << 26)) {
      printf("kiln fp8 gemm watchdog: block %d thread %d stuck on mbarrier %u parity %u\n", blockIdx.x, threadIdx.x, bar, parity);
      __trap();
    }
#endif
  } while (!done);
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void cp_async_4(uint32_t dst, const float* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(src) : "memory");
}
// The mbarrier tracks this thread's prior cp.async copies: pending count +1 now, arrive when they land.
__device__ __forceinline__ void cp_async_mbar_arrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
}
// Multicast variant: the box lands at the same shared-memory offset in every CTA of ctaMask and
// completes bytes on the mbarrier at the same offset in each of them.
__device__ __forceinline__ void tma_load_2d_mc(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1,
                                               uint16_t ctaMask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%3, %4}], [%2], %5;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "h"(ctaMask)
      : "memory");
}
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
__device__ __forceinline__ void cluster_sync_all() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// Arrive on the mbarrier at the same offset in CTA `rank` of the cluster.
__device__ __forceinline__ void mbar_arrive_remote(uint32_t bar, uint32_t rank) {
  asm volatile(
      "{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" ::"r"(bar),
      "r"(rank)
      : "memory");
}
__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
__device__ __forceinline__ void reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// Shared-memory matrix descriptor for a K-major operand tile whose rows are 128 bytes, written by TMA
// with 128B swizzle into a 1024-byte aligned buffer: 8-row core-matrix groups are 1024 bytes apart
// (stride byte offset), the leading byte offset is unused for this mode, swizzle mode 1 = 128B.
__device__ __forceinline__ uint64_t make_smem_desc(uint32_t addr) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>(1) << 16;
  d |= static_cast<uint64_t>(1024 >> 4) << 32;
  d |= static_cast<uint64_t>(1) << 62;
  return d;
}

__device__ __forceinline__ void wgmma_m64n16k32_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
      : "l"(descA), "l"(descB), "r"(scaleD));
}

__device__ __forceinline__ void wgmma_m64n32k32_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(descA), "l"(descB), "r"(scaleD));
}

__device__ __forceinline__ void wgmma_m64n64k32_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(descA), "l"(descB), "r"(scaleD));
}

__device__ __forceinline__ void wgmma_m64n128k32_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(descA), "l"(descB), "r"(scaleD));
}

__device__ __forceinline__ void wgmma_m64n192k32_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, %96, %97, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(descA), "l"(descB), "r"(scaleD));
}

template <int WN>
__device__ __forceinline__ void wgmma_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  if constexpr (WN == 16) wgmma_m64n16k32_e4m3(d, descA, descB, scaleD);
  else if constexpr (WN == 32) wgmma_m64n32k32_e4m3(d, descA, descB, scaleD);
  else if constexpr (WN == 64) wgmma_m64n64k32_e4m3(d, descA, descB, scaleD);
  else if constexpr (WN == 128) wgmma_m64n128k32_e4m3(d, descA, descB, scaleD);
  else wgmma_m64n192k32_e4m3(d, descA, descB, scaleD);
}

__device__ __forceinline__ void group_rows(const Params& p, int g, int& rs, int& rc) {
  if (p.mode == 0) {
    rs = 0;
    rc = p.M;
  } else if (p.mode == 1) {
    int a = __ldg(p.groupInfo + g), b = __ldg(p.groupInfo + g + 1);
    a = max(a, 0);
    b = min(b, p.M);
    rs = a;
    rc = max(b - a, 0);
  } else {
    rs = g * p.M;
    rc = min(max(__ldg(p.groupInfo + g), 0), p.M);
  }
}

struct TileInfo {
  int g, rowStart, rowEnd, n0;
};

// Units are CL consecutive M-blocks of one group (one per CTA of the cluster); a unit's CTA whose M-block
// lies past the group's rows computes a phantom tile and stores nothing.
template <int BM, int BN, int CL>
__device__ __forceinline__ TileInfo decode_tile(const Params& p, const int* tp, int totalMB, int numNB, int t,
                                                int rank) {
  const int per = KILN_FP8_RASTER_GROUP * numNB;
  const int chunk = t / per;
  const int first = chunk * KILN_FP8_RASTER_GROUP;
  const int gsz = min(KILN_FP8_RASTER_GROUP, totalMB - first);
  const int r = t - chunk * per;
  const int mbg = first + r % gsz;
  const int nb = r / gsz;
  int g = 0;
  if (p.mode != 0) {  // largest g with tp[g] <= mbg (empty groups have tp[g] == tp[g+1])
    int lo = 0, hi = p.G - 1;
    while (lo < hi) {
      int mid = (lo + hi + 1) >> 1;
      if (tp[mid] <= mbg) lo = mid; else hi = mid - 1;
    }
    g = lo;
  }
  int rs, rc;
  group_rows(p, g, rs, rc);
  TileInfo ti;
  ti.g = g;
  ti.rowStart = rs + ((mbg - tp[g]) * CL + rank) * BM;
  ti.rowEnd = rs + rc;
  ti.n0 = nb * BN;
  return ti;
}
#endif  // KILN_SM90A_DEVICE

template <int BM, int BN>
struct Cfg {
  static constexpr int WN = (BM == 128) ? BN : BN / 2;  // columns per consumer warpgroup
  // a warpgroup's columns may straddle two 128-wide weight-scale blocks
  static constexpr bool STRADDLE = (WN > 128) || (128 % WN != 0);
#ifdef KILN_FP8_NO_DOUBLE_ACC
  static constexpr bool DBL = false;
#else
  static constexpr bool DBL = (WN <= 128);  // two accumulator sets fit the 232-register budget
#endif
  static constexpr int A_BYTES = BM * kBlockK;
  static constexpr int B_BYTES = BN * kBlockK;
  // per stage: sa for the BM rows, then sb (first, second block) for each consumer warpgroup
  static constexpr int SC_FLOATS = BM + 2 * kNumConsumerWG;
  static constexpr int SC_BYTES = ((SC_FLOATS * 4 + 15) / 16) * 16;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int STAGES_RAW = (200 * 1024) / (STAGE_BYTES + SC_BYTES);
#ifndef KILN_FP8_MAX_STAGES
#define KILN_FP8_MAX_STAGES 12
#endif
  static constexpr int STAGES = STAGES_RAW > KILN_FP8_MAX_STAGES ? KILN_FP8_MAX_STAGES : STAGES_RAW;
  static constexpr int SMEM_BYTES = 1024 /*align slack*/ + STAGES * (STAGE_BYTES + SC_BYTES) + 2 * STAGES * 8 +
                                    (KILN_FP8_GEMM_MAX_GROUPS + 1) * 4;
  static_assert(BM == 64 || BM == 128, "BM");
  static_assert(WN == 16 || WN == 32 || WN == 64 || WN == 128 || WN == 192, "WN");
  static_assert(WN <= 256 - 128 + 64, "a warpgroup's columns may touch at most two scale blocks");
  static_assert(SMEM_BYTES <= 227 * 1024, "smem");
  static_assert((BN / 2) % 8 == 0, "multicast halves of B must stay 1024-byte aligned");
};

template <int BM, int BN, int CL, bool OUT_BF16>
__global__ void __launch_bounds__(kThreads, 1)
    kiln_fp8_gemm_sm90_kernel(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB,
                              const Params p) {
#if KILN_SM90A_DEVICE
  using C = Cfg<BM, BN>;
  constexpr int WN = C::WN;
  constexpr int STAGES = C::STAGES;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw_base = smem_u32(smem_raw);
  const uint32_t base = (raw_base + 1023u) & ~1023u;
  uint8_t* gbase = smem_raw + (base - raw_base);
  // layout: [A stages][B stages][scale stages][full bars][empty bars][tile prefix]
  const uint32_t sA = base;
  const uint32_t sB = base + STAGES * C::A_BYTES;
  const uint32_t sS = sB + STAGES * C::B_BYTES;
  const uint32_t barFull = sS + STAGES * C::SC_BYTES;
  const uint32_t barEmpty = barFull + STAGES * 8;
  const float* sSg = reinterpret_cast<const float*>(gbase + (sS - base));
  int* tp = reinterpret_cast<int*>(gbase + (barEmpty + STAGES * 8 - base));

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int wg = tid >> 7;

  if (tid == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(barFull + 8 * s, 1);
      mbar_init(barEmpty + 8 * s, kNumConsumerWG * 4 * CL);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    tma_prefetch_desc(&tmA);
    tma_prefetch_desc(&tmB);
  }
  // Prefix sum of M-blocks per group (warp 0).
  const int numNB = (p.N + BN - 1) / BN;
  if (warp == 0) {
    if (p.mode == 0) {
      if (lane == 0) {
        tp[0] = 0;
        tp[1] = (p.M + BM * CL - 1) / (BM * CL);
      }
    } else {
      int running = 0;
      if (lane == 0) tp[0] = 0;
      for (int base_g = 0; base_g < p.G; base_g += 32) {
        const int g = base_g + lane;
        int cnt = 0;
        if (g < p.G) {
          int rs, rc;
          group_rows(p, g, rs, rc);
          cnt = (rc + BM * CL - 1) / (BM * CL);
        }
        int incl = cnt;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          int v = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += v;
        }
        if (g < p.G) tp[g + 1] = running + incl;
        running += __shfl_sync(0xffffffffu, incl, 31);
      }
    }
  }
  __syncthreads();
  if constexpr (CL > 1) cluster_sync_all();  // peers' barriers are initialised before any remote traffic
  const int rank = (CL > 1) ? static_cast<int>(cluster_rank()) : 0;
  const int clusterId = blockIdx.x / CL, numClusters = gridDim.x / CL;
  const int G = (p.mode == 0) ? 1 : p.G;
  const int totalMB = tp[G];
  const int totalTiles = totalMB * numNB;
  const int Kb = p.Kb;

  if (wg == kNumConsumerWG) {
    // ---------------- producer warpgroup (one warp works) ----------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (warp == kNumConsumerWG * 4) {
      int stage = 0;
      uint32_t phase = 0;
      for (int t = clusterId; t < totalTiles; t += numClusters) {
        const TileInfo ti = decode_tile<BM, BN, CL>(p, tp, totalMB, numNB, t, rank);
        const int bRow = ti.g * p.N + ti.n0;
        // this lane's activation-scale rows (clamped into the group) and weight-scale row
        const float* saRow[BM / 32];
#pragma unroll
        for (int i = 0; i < BM / 32; ++i)
          saRow[i] = p.sa + static_cast<size_t>(min(ti.rowStart + lane + 32 * i, ti.rowEnd - 1)) * Kb;
        const float* sbRow = p.sb;
        if (lane < 2 * kNumConsumerWG) {
          const int w = lane >> 1;
          const int colBase = ti.n0 + (BM == 128 ? 0 : w * WN);
          const int r = min(colBase / 128 + (lane & 1), p.Nb - 1);
          sbRow = p.sb + (static_cast<size_t>(ti.g) * p.Nb + r) * Kb;
        }
        for (int kb = 0; kb < Kb; ++kb) {
          mbar_wait(barEmpty + 8 * stage, phase ^ 1u);
          const uint32_t fb = barFull + 8 * stage;
          const uint32_t sc = sS + stage * C::SC_BYTES;
#pragma unroll
          for (int i = 0; i < BM / 32; ++i) cp_async_4(sc + 4 * (lane + 32 * i), saRow[i] + kb);
          if (lane < 2 * kNumConsumerWG) cp_async_4(sc + 4 * (BM + lane), sbRow + kb);
          cp_async_mbar_arrive(fb);  // +1 pending now, -1 when this lane's copies land
          __syncwarp();
          if (lane == 0) {
            mbar_arrive_expect_tx(fb, C::STAGE_BYTES);
            tma_load_2d(sA + stage * C::A_BYTES, &tmA, fb, kb * kBlockK, ti.rowStart);
            if constexpr (CL == 1) {
              tma_load_2d(sB + stage * C::B_BYTES, &tmB, fb, kb * kBlockK, bRow);
            } else {
              // each CTA fetches 1/CL of the shared B tile and multicasts it to the whole cluster
              constexpr int part = BN / CL;
              tma_load_2d_mc(sB + stage * C::B_BYTES + rank * part * kBlockK, &tmB, fb, kb * kBlockK,
                             bRow + rank * part, static_cast<uint16_t>((1u << CL) - 1));
            }
          }
          if (++stage == STAGES) {
            stage = 0;
            phase ^= 1u;
          }
        }
      }
    }
  } else {
    // ---------------- consumer warpgroups ----------------
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int wm = (BM == 128) ? wg : 0;         // 64-row slab of the tile
    const int wn = (BM == 128) ? 0 : wg;         // WN-column slab of the tile
    const int wwarp = warp & 3;
    const int rowInTile = wm * 64 + wwarp * 16 + (lane >> 2);
    const int colInTile = wn * WN + 2 * (lane & 3);
    const uint32_t aOff = wm * 64 * kBlockK;     // multiple of 1024
    const uint32_t bOff = wn * WN * kBlockK;     // multiple of 1024 (WN % 8 == 0)

    int stage = 0;
    uint32_t phase = 0;
    constexpr bool DBL = C::DBL;
    float acc[WN / 2];
    float acc2[DBL ? WN / 2 : 1];
    float out[WN / 2];
#pragma unroll
    for (int i = 0; i < WN / 2; ++i) acc[i] = 0.f;
#pragma unroll
    for (int i = 0; i < (DBL ? WN / 2 : 1); ++i) acc2[i] = 0.f;
    for (int t = clusterId; t < totalTiles; t += numClusters) {
      const TileInfo ti = decode_tile<BM, BN, CL>(p, tp, totalMB, numNB, t, rank);
      const int r0 = ti.rowStart + rowInTile;
      const int r1 = r0 + 8;
      const int colBase = ti.n0 + wn * WN;
      const int split = 128 - (colBase & 127);  // columns [0, split) use the first weight-scale block
#pragma unroll
      for (int i = 0; i < WN / 2; ++i) out[i] = 0.f;
      auto issue = [&](float* a, int st) {
        const uint64_t dA = make_smem_desc(sA + st * C::A_BYTES + aOff);
        const uint64_t dB = make_smem_desc(sB + st * C::B_BYTES + bOff);
#pragma unroll
        for (int i = 0; i < WN / 2; ++i) reg_fence(a[i]);
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < kBlockK / 32; ++k) {
          // +32 bytes along K inside the 128-byte swizzle atom = +2 in 16-byte units
          wgmma_e4m3<WN>(a, dA + 2 * k, dB + 2 * k, k);
        }
        wgmma_commit();
      };
      auto scales = [&](int st, float& a0, float& a1, float& bA, float& bB) {
        const float* sc = sSg + st * (C::SC_BYTES / 4);
        a0 = sc[rowInTile];
        a1 = sc[rowInTile + 8];
        bA = sc[BM + 2 * wg];
        bB = C::STRADDLE ? sc[BM + 2 * wg + 1] : bA;
      };
      auto release = [&](int st) {
        __syncwarp();
        if (lane == 0) {
          mbar_arrive(barEmpty + 8 * st);
          if constexpr (CL > 1) {
#pragma unroll
            for (int r = 1; r < CL; ++r) mbar_arrive_remote(barEmpty + 8 * st, (rank + r) % CL);
          }
        }
      };
      auto promote = [&](float* a, float a0, float a1, float bA, float bB) {
#pragma unroll
        for (int i = 0; i < WN / 2; ++i) reg_fence(a[i]);
        const float s0A = a0 * bA, s1A = a1 * bA;
        const float s0B = a0 * bB, s1B = a1 * bB;
#pragma unroll
        for (int j = 0; j < WN / 8; ++j) {
          const bool first = !C::STRADDLE || (8 * j < split);
          const float s0 = first ? s0A : s0B, s1 = first ? s1A : s1B;
          out[4 * j + 0] = fmaf(a[4 * j + 0], s0, out[4 * j + 0]);
          out[4 * j + 1] = fmaf(a[4 * j + 1], s0, out[4 * j + 1]);
          out[4 * j + 2] = fmaf(a[4 * j + 2], s1, out[4 * j + 2]);
          out[4 * j + 3] = fmaf(a[4 * j + 3], s1, out[4 * j + 3]);
        }
      };
      auto acquire = [&]() {
        const int st = stage;
        mbar_wait(barFull + 8 * st, phase);
        if (++stage == STAGES) {
          stage = 0;
          phase ^= 1u;
        }
        return st;
      };
      if constexpr (DBL) {
        // Two accumulator sets per pair of K blocks: the tensor cores run block kb+1 while block kb is
        // promoted; nothing stays in flight across loop iterations.
        for (int kb = 0; kb < Kb; kb += 2) {
          float pa0, pa1, pbA, pbB;
          const int st0 = acquire();
          scales(st0, pa0, pa1, pbA, pbB);
          issue(acc, st0);
          if (kb + 1 < Kb) {
            float qa0, qa1, qbA, qbB;
            const int st1 = acquire();
            scales(st1, qa0, qa1, qbA, qbB);
            issue(acc2, st1);
            wgmma_wait_1();
            release(st0);
            promote(acc, pa0, pa1, pbA, pbB);
            wgmma_wait_all();
            release(st1);
            promote(acc2, qa0, qa1, qbA, qbB);
          } else {
            wgmma_wait_all();
            release(st0);
            promote(acc, pa0, pa1, pbA, pbB);
          }
        }
      } else {
        for (int kb = 0; kb < Kb; ++kb) {
          const int st = acquire();
          float a0, a1, bA, bB;
          scales(st, a0, a1, bA, bB);
          issue(acc, st);
          wgmma_wait_all();
#pragma unroll
          for (int i = 0; i < WN / 2; ++i) reg_fence(acc[i]);
          release(st);
          promote(acc, a0, a1, bA, bB);
        }
      }
      // ---------------- epilogue ----------------
      const bool ok0 = r0 < ti.rowEnd, ok1 = r1 < ti.rowEnd;
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) {
        const int col = ti.n0 + colInTile + 8 * j;
        if (col < p.N) {
          if constexpr (OUT_BF16) {
            __nv_bfloat16* Dp = static_cast<__nv_bfloat16*>(p.D);
            if (ok0)
              *reinterpret_cast<__nv_bfloat162*>(Dp + static_cast<size_t>(r0) * p.N + col) =
                  __floats2bfloat162_rn(out[4 * j + 0], out[4 * j + 1]);
            if (ok1)
              *reinterpret_cast<__nv_bfloat162*>(Dp + static_cast<size_t>(r1) * p.N + col) =
                  __floats2bfloat162_rn(out[4 * j + 2], out[4 * j + 3]);
          } else {
            float* Dp = static_cast<float*>(p.D);
            if (ok0)
              *reinterpret_cast<float2*>(Dp + static_cast<size_t>(r0) * p.N + col) =
                  make_float2(out[4 * j + 0], out[4 * j + 1]);
            if (ok1)
              *reinterpret_cast<float2*>(Dp + static_cast<size_t>(r1) * p.N + col) =
                  make_float2(out[4 * j + 2], out[4 * j + 3]);
          }
        }
      }
    }
  }
  // no CTA may leave while a peer can still multicast into it or arrive on its barriers
  if constexpr (CL > 1) cluster_sync_all();
#endif  // KILN_SM90A_DEVICE
}

__global__ void kiln_fp8_probe_kernel(int* out) {
#if KILN_SM90A_DEVICE
  *out = 1;
#else
  *out = 0;
#endif
}

}  // namespace kiln_fp8

// ============================================================================================
// Host side
// ============================================================================================
namespace kiln_fp8 {

struct ConfigDesc {
  int bm, bn, cl;  // tile rows, tile columns, CTAs per cluster sharing (multicasting) the B tile
  const char* name;
};
static const ConfigDesc kConfigs[] = {
    {64, 32, 1, "64x32"},       {64, 64, 1, "64x64"},       {64, 128, 1, "64x128"},
    {64, 256, 1, "64x256"},     {128, 64, 1, "128x64"},     {128, 128, 1, "128x128"},
    {128, 192, 1, "128x192"},   {128, 128, 2, "128x128c2"}, {128, 192, 2, "128x192c2"},
    {64, 256, 2, "64x256c2"},
};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);

static thread_local int g_forced = -1;
static thread_local int g_last = -1;

static PFN_cuTensorMapEncodeTiled_v12000 get_encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &q) ==
            cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
    else
      (void)cudaGetLastError();
  });
  return fn;
}

// 2D map over an FP8 [rows, K] row-major matrix, box [boxRows, 128], 128B swizzle, OOB -> zero.
static bool make_map(CUtensorMap* map, const void* ptr, uint64_t rows, uint64_t K, uint32_t boxRows) {
  auto fn = get_encode_fn();
  if (!fn) return false;
  cuuint64_t dims[2] = {K, rows};
  cuuint64_t strides[1] = {K};  // bytes, dim 1
  cuuint32_t box[2] = {static_cast<cuuint32_t>(kBlockK), boxRows};
  cuuint32_t estr[2] = {1, 1};
  CUresult r = fn(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(ptr), dims, strides, box, estr,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

struct DevInfo {
  int sms = 0;
  int available = -1;  // -1 unknown
};
static DevInfo g_dev[64];
static std::mutex g_dev_mu;

static bool device_info(int& sms) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  std::lock_guard<std::mutex> lk(g_dev_mu);
  DevInfo& d = g_dev[dev];
  if (d.available < 0) {
    int major = 0, minor = 0, n = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    d.sms = n;
    int ok = 0;
    if (major == 9 && minor == 0 && get_encode_fn() != nullptr) {
      int* flag = nullptr;
      if (cudaMalloc(&flag, sizeof(int)) == cudaSuccess) {
        int h = 0;
        cudaMemset(flag, 0, sizeof(int));
        kiln_fp8_probe_kernel<<<1, 1>>>(flag);
        if (cudaGetLastError() == cudaSuccess && cudaMemcpy(&h, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess)
          ok = (h == 1);
        cudaFree(flag);
      }
      (void)cudaGetLastError();
    }
    d.available = ok;
  }
  sms = d.sms;
  return d.available == 1;
}

// Tile-shape choice, calibrated on H100 / H200 sweeps of the harness (tools/fp8_gemm_harness --sweep):
//  * few rows (<= 128 per group): BM = 64 and the widest BN that still gives ~all SMs a tile, since
//    these shapes are bound by the per-K-block latency of each CTA, not by the tensor cores;
//  * many rows (> 512 per group): 128x192 for narrow N, 64x256 for K >= 4096, else 128x192 for very
//    wide N and 128x128 otherwise (measured best on those shapes);
//  * in between: a small wave model, time = waves * K-blocks * max(latency floor, flops / rate).
static int cfg_index(int bm, int bn, int cl) {
  for (int i = 0; i < kNumConfigs; ++i)
    if (kConfigs[i].bm == bm && kConfigs[i].bn == bn && kConfigs[i].cl == cl) return i;
  return 5;
}
static int choose_config(long long M, int N, int K, int G, int sms) {
  if (g_forced >= 0 && g_forced < kNumConfigs) return g_forced;
  const int groups = G > 0 ? G : 1;
  const double rows = static_cast<double>(M) / groups;  // rows per group
  const double Kb = std::ceil(K / 128.0);
  auto tiles = [&](int bm, int bn) {
    return std::ceil(rows / bm) * groups * std::ceil(static_cast<double>(N) / bn);
  };
  if (rows <= 128) {
    const int bns[2] = {128, 64};
    for (int bn : bns)
      if (tiles(64, bn) >= 0.8 * sms) return cfg_index(64, bn, 1);
    return cfg_index(64, 32, 1);
  }
  if (rows > 512 && tiles(128, 128) >= 4.0 * sms) {
    if (N <= 2304) return cfg_index(128, 192, 1);
    if (K >= 4096) return cfg_index(64, 256, 1);
    if (N >= 16384) return cfg_index(128, 192, 1);
    return cfg_index(128, 128, 1);
  }
  struct Cand { int bm, bn; double usPerMflop; };
  const Cand cands[] = {{64, 64, 0.15}, {64, 128, 0.15}, {64, 256, 0.114},
                        {128, 64, 0.15}, {128, 128, 0.143}, {128, 192, 0.113}};
  int best = cfg_index(128, 128, 1);
  double bestT = 1e30;
  for (const Cand& c : cands) {
    const double waves = std::ceil(tiles(c.bm, c.bn) / sms);
    const double mflop = 2.0 * c.bm * c.bn * 128 * 1e-6;
    const double tk = std::max(0.36, mflop * c.usPerMflop);
    const double t = waves * (Kb * tk + 1.0);
    if (t < bestT * 0.999) {
      bestT = t;
      best = cfg_index(c.bm, c.bn, 1);
    }
  }
  return best;
}

// grid: desired number of CTAs (a multiple of CL), capped by how many clusters fit at once.
template <int BM, int BN, int CL, bool BF16>
static cudaError_t launch_t(const CUtensorMap& mA, const CUtensorMap& mB, const Params& p, int grid,
                           cudaStream_t stream) {
  using C = Cfg<BM, BN>;
  auto kern = kiln_fp8_gemm_sm90_kernel<BM, BN, CL, BF16>;
  // per device: the shared-memory attribute and the cluster occupancy are per-device properties
  static std::mutex mu;
  static signed char attrDone[64] = {};
  static int maxClustersDev[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return cudaErrorInvalidDevice;
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = CL;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = C::SMEM_BYTES;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = CL > 1 ? 1 : 0;
  int maxClusters = 0;
  {
    std::lock_guard<std::mutex> lk(mu);
    if (!attrDone[dev]) {
      const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_BYTES);
      if (e != cudaSuccess) return e;
      if (CL > 1) {
        cudaLaunchConfig_t q = cfg;
        q.gridDim = dim3(CL * 64, 1, 1);
        int n = 0;
        if (cudaOccupancyMaxActiveClusters(&n, kern, &q) == cudaSuccess && n > 0) maxClustersDev[dev] = n;
        (void)cudaGetLastError();
      }
      attrDone[dev] = 1;
    }
    maxClusters = maxClustersDev[dev];
  }
  if (CL > 1 && maxClusters > 0 && grid > maxClusters * CL) grid = maxClusters * CL;
  grid = (grid / CL) * CL;
  if (grid < CL) grid = CL;
  cfg.gridDim = dim3(grid, 1, 1);
  return cudaLaunchKernelEx(&cfg, kern, mA, mB, p);
}

template <bool BF16>
static cudaError_t launch_cfg(int cfg, const CUtensorMap& mA, const CUtensorMap& mB, const Params& p, int grid,
                              cudaStream_t s) {
  switch (cfg) {
    case 0: return launch_t<64, 32, 1, BF16>(mA, mB, p, grid, s);
    case 1: return launch_t<64, 64, 1, BF16>(mA, mB, p, grid, s);
    case 2: return launch_t<64, 128, 1, BF16>(mA, mB, p, grid, s);
    case 3: return launch_t<64, 256, 1, BF16>(mA, mB, p, grid, s);
    case 4: return launch_t<128, 64, 1, BF16>(mA, mB, p, grid, s);
    case 5: return launch_t<128, 128, 1, BF16>(mA, mB, p, grid, s);
    case 6: return launch_t<128, 192, 1, BF16>(mA, mB, p, grid, s);
    case 7: return launch_t<128, 128, 2, BF16>(mA, mB, p, grid, s);
    case 8: return launch_t<128, 192, 2, BF16>(mA, mB, p, grid, s);
    default: return launch_t<64, 256, 2, BF16>(mA, mB, p, grid, s);
  }
}

static bool shape_ok(long long M, long long N, long long K, char* why, size_t whyLen) {
  auto fail = [&](const char* msg) {
    if (why && whyLen) {
      std::strncpy(why, msg, whyLen - 1);
      why[whyLen - 1] = 0;
    }
    return false;
  };
  if (M < 0) return fail("M < 0");
  if (N <= 0 || K <= 0) return fail("N and K must be positive");
  if (K % 16 != 0) return fail("K must be a multiple of 16 (TMA row stride of the FP8 operands)");
  if (N % 8 != 0) return fail("N must be a multiple of 8");
  if (M >= (1ll << 31) || N >= (1ll << 31) || K >= (1ll << 31)) return fail("dimension too large");
  return true;
}

static cudaError_t run(int mode, const uint8_t* A, const float* sa, const uint8_t* B, const float* sb, void* D,
                       int outBf16, const int* info, int G, int M, int N, int K, int hintRows,
                       cudaStream_t stream) {
  int sms = 0;
  if (!device_info(sms)) return cudaErrorNotSupported;
  if (!shape_ok(M, N, K, nullptr, 0)) return cudaErrorInvalidValue;
  if (mode != 0 && (G < 1 || G > KILN_FP8_GEMM_MAX_GROUPS || info == nullptr)) return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(A) & 15) || (reinterpret_cast<uintptr_t>(B) & 15) ||
      (reinterpret_cast<uintptr_t>(D) & 7) || (reinterpret_cast<uintptr_t>(sa) & 3) ||
      (reinterpret_cast<uintptr_t>(sb) & 3))
    return cudaErrorInvalidValue;
  const long long rowsTotal = (mode == 2) ? static_cast<long long>(G) * M : M;
  if (rowsTotal == 0) return cudaSuccess;
  // row coordinates (A rows, G*N rows of B) and tile counts are 32-bit inside the kernel
  if (rowsTotal >= (1ll << 31) - 256 || static_cast<long long>(mode == 0 ? 1 : G) * N >= (1ll << 31) - 256)
    return cudaErrorInvalidValue;
  if ((rowsTotal / 64 + G + 1) * static_cast<long long>((N + 31) / 32) >= (1ll << 31)) return cudaErrorInvalidValue;
  const int Gn = mode == 0 ? 1 : G;
  const int cfg = choose_config(mode == 0 ? M : static_cast<long long>(hintRows) * Gn, N, K, Gn, sms);
  g_last = cfg;
  const int bm = kConfigs[cfg].bm, bn = kConfigs[cfg].bn, cl = kConfigs[cfg].cl;
  CUtensorMap mA, mB;
  if (!make_map(&mA, A, rowsTotal, K, bm)) return cudaErrorInvalidValue;
  if (!make_map(&mB, B, static_cast<uint64_t>(Gn) * N, K, bn / cl)) return cudaErrorInvalidValue;
  Params p;
  p.sa = sa;
  p.sb = sb;
  p.D = D;
  p.groupInfo = info;
  p.mode = mode;
  p.G = Gn;
  p.M = M;
  p.N = N;
  p.K = K;
  p.Kb = (K + kBlockK - 1) / kBlockK;
  p.Nb = (N + 127) / 128;
  int grid = sms;
  if (mode == 0) {
    const long long units = (M + bm * cl - 1) / (bm * cl);
    const long long ctas = units * cl * static_cast<long long>((N + bn - 1) / bn);
    if (ctas < grid) grid = static_cast<int>(ctas);
  }
  return outBf16 ? launch_cfg<true>(cfg, mA, mB, p, grid, stream) : launch_cfg<false>(cfg, mA, mB, p, grid, stream);
}

}  // namespace kiln_fp8

extern "C" {

bool kiln_fp8_gemm_sm90_available(void) {
  int sms = 0;
  return kiln_fp8::device_info(sms);
}

bool kiln_fp8_gemm_sm90_supported(int M, int N, int K, char* why, size_t whyLen) {
  return kiln_fp8::shape_ok(M, N, K, why, whyLen);
}

bool kiln_fp8_grouped_gemm_sm90_supported(int G, int N, int K, char* why, size_t whyLen) {
  if (G < 1 || G > KILN_FP8_GEMM_MAX_GROUPS) {
    if (why && whyLen) {
      std::snprintf(why, whyLen, "G must be in [1, %d]", KILN_FP8_GEMM_MAX_GROUPS);
    }
    return false;
  }
  return kiln_fp8::shape_ok(0, N, K, why, whyLen);
}

cudaError_t kiln_fp8_gemm_sm90(const uint8_t* A, const float* sa, const uint8_t* B, const float* sb, void* D,
                               int outIsBf16, int M, int N, int K, cudaStream_t stream) {
  return kiln_fp8::run(0, A, sa, B, sb, D, outIsBf16, nullptr, 1, M, N, K, M, stream);
}

cudaError_t kiln_fp8_grouped_gemm_contiguous_sm90(const uint8_t* A, const float* sa, const uint8_t* B,
                                                  const float* sb, void* D, int outIsBf16,
                                                  const int* groupOffsetsDevice, int G, int totalM, int N, int K,
                                                  cudaStream_t stream) {
  const int hint = G > 0 ? (totalM + G - 1) / G : totalM;
  return kiln_fp8::run(1, A, sa, B, sb, D, outIsBf16, groupOffsetsDevice, G, totalM, N, K, hint, stream);
}

cudaError_t kiln_fp8_grouped_gemm_masked_sm90(const uint8_t* A, const float* sa, const uint8_t* B,
                                              const float* sb, void* D, int outIsBf16, const int* maskedMDevice,
                                              int G, int Mmax, int N, int K, int expectedM, cudaStream_t stream) {
  int hint = expectedM > 0 ? expectedM : Mmax;
  if (hint > Mmax) hint = Mmax;
  return kiln_fp8::run(2, A, sa, B, sb, D, outIsBf16, maskedMDevice, G, Mmax, N, K, hint, stream);
}

int kiln_fp8_gemm_sm90_force_config(int index) {
  kiln_fp8::g_forced = index;
  return kiln_fp8::kNumConfigs;
}

const char* kiln_fp8_gemm_sm90_config_name(int index) {
  if (index < 0 || index >= kiln_fp8::kNumConfigs) return "auto";
  return kiln_fp8::kConfigs[index].name;
}

int kiln_fp8_gemm_sm90_last_config(void) { return kiln_fp8::g_last; }

}  // extern "C"
