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
__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
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

template <int WN>
__device__ __forceinline__ void wgmma_e4m3(float* d, uint64_t descA, uint64_t descB, int scaleD) {
  if constexpr (WN == 16) wgmma_m64n16k32_e4m3(d, descA, descB, scaleD);
  else if constexpr (WN == 32) wgmma_m64n32k32_e4m3(d, descA, descB, scaleD);
  else if constexpr (WN == 64) wgmma_m64n64k32_e4m3(d, descA, descB, scaleD);
  else wgmma_m64n128k32_e4m3(d, descA, descB, scaleD);
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

template <int BM, int BN>
__device__ __forceinline__ TileInfo decode_tile(const Params& p, const int* tp, int totalMB, int numNB, int t) {
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
  ti.rowStart = rs + (mbg - tp[g]) * BM;
  ti.rowEnd = rs + rc;
  ti.n0 = nb * BN;
  return ti;
}
#endif  // KILN_SM90A_DEVICE

template <int BM, int BN>
struct Cfg {
  static constexpr int WN = (BM == 128) ? BN : BN / 2;  // columns per consumer warpgroup
  static constexpr int A_BYTES = BM * kBlockK;
  static constexpr int B_BYTES = BN * kBlockK;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int STAGES_RAW = (200 * 1024) / STAGE_BYTES;
  static constexpr int STAGES = STAGES_RAW > 12 ? 12 : STAGES_RAW;
  static constexpr int SMEM_BYTES = 1024 /*align slack*/ + STAGES * STAGE_BYTES + 2 * STAGES * 8 +
                                    (KILN_FP8_GEMM_MAX_GROUPS + 1) * 4;
  static_assert(BM == 64 || BM == 128, "BM");
  static_assert(WN == 16 || WN == 32 || WN == 64 || WN == 128, "WN");
  static_assert(128 % WN == 0, "a warpgroup's columns must lie in one 128-wide scale block");
  static_assert(SMEM_BYTES <= 227 * 1024, "smem");
};

template <int BM, int BN, bool OUT_BF16>
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
  // layout: [A stages][B stages][full bars][empty bars][tile prefix]
  const uint32_t sA = base;
  const uint32_t sB = base + STAGES * C::A_BYTES;
  const uint32_t barFull = sB + STAGES * C::B_BYTES;
  const uint32_t barEmpty = barFull + STAGES * 8;
  int* tp = reinterpret_cast<int*>(gbase + (barEmpty + STAGES * 8 - base));

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int wg = tid >> 7;

  if (tid == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(barFull + 8 * s, 1);
      mbar_init(barEmpty + 8 * s, kNumConsumerWG * 4);
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
        tp[1] = (p.M + BM - 1) / BM;
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
          cnt = (rc + BM - 1) / BM;
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
  const int G = (p.mode == 0) ? 1 : p.G;
  const int totalMB = tp[G];
  const int totalTiles = totalMB * numNB;

  if (wg == kNumConsumerWG) {
    // ---------------- producer warpgroup ----------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (warp == kNumConsumerWG * 4 && lane == 0) {
      int stage = 0;
      uint32_t phase = 0;
      for (int t = blockIdx.x; t < totalTiles; t += gridDim.x) {
        const TileInfo ti = decode_tile<BM, BN>(p, tp, totalMB, numNB, t);
        const int bRow = ti.g * p.N + ti.n0;
        for (int kb = 0; kb < p.Kb; ++kb) {
          mbar_wait(barEmpty + 8 * stage, phase ^ 1u);
          const uint32_t fb = barFull + 8 * stage;
          mbar_arrive_expect_tx(fb, C::STAGE_BYTES);
          tma_load_2d(sA + stage * C::A_BYTES, &tmA, fb, kb * kBlockK, ti.rowStart);
          tma_load_2d(sB + stage * C::B_BYTES, &tmB, fb, kb * kBlockK, bRow);
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
    const int Kb = p.Kb;

    int stage = 0;
    uint32_t phase = 0;
    float acc[WN / 2];
    float out[WN / 2];
#pragma unroll
    for (int i = 0; i < WN / 2; ++i) acc[i] = 0.f;
    for (int t = blockIdx.x; t < totalTiles; t += gridDim.x) {
      const TileInfo ti = decode_tile<BM, BN>(p, tp, totalMB, numNB, t);
      const int r0 = ti.rowStart + rowInTile;
      const int r1 = r0 + 8;
      const int rLast = ti.rowEnd - 1;  // >= rowStart since the tile exists
      const float* sa0 = p.sa + static_cast<size_t>(min(r0, rLast)) * Kb;
      const float* sa1 = p.sa + static_cast<size_t>(min(r1, rLast)) * Kb;
      const int colBase = ti.n0 + wn * WN;  // this warpgroup's first column
      const int sbRow = min(colBase / 128, p.Nb - 1);
      const float* sbp = p.sb + (static_cast<size_t>(ti.g) * p.Nb + sbRow) * Kb;
#pragma unroll
      for (int i = 0; i < WN / 2; ++i) out[i] = 0.f;
      float a0 = __ldg(sa0), a1 = __ldg(sa1), b0 = __ldg(sbp);
      for (int kb = 0; kb < Kb; ++kb) {
        float na0 = 0.f, na1 = 0.f, nb0 = 0.f;
        if (kb + 1 < Kb) {
          na0 = __ldg(sa0 + kb + 1);
          na1 = __ldg(sa1 + kb + 1);
          nb0 = __ldg(sbp + kb + 1);
        }
        mbar_wait(barFull + 8 * stage, phase);
        const uint64_t dA = make_smem_desc(sA + stage * C::A_BYTES + aOff);
        const uint64_t dB = make_smem_desc(sB + stage * C::B_BYTES + bOff);
#pragma unroll
        for (int i = 0; i < WN / 2; ++i) reg_fence(acc[i]);
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < kBlockK / 32; ++k) {
          // +32 bytes along K inside the 128-byte swizzle atom = +2 in 16-byte units
          wgmma_e4m3<WN>(acc, dA + 2 * k, dB + 2 * k, k);
        }
        wgmma_commit();
        wgmma_wait_all();
#pragma unroll
        for (int i = 0; i < WN / 2; ++i) reg_fence(acc[i]);
        __syncwarp();
        if (lane == 0) mbar_arrive(barEmpty + 8 * stage);
        if (++stage == STAGES) {
          stage = 0;
          phase ^= 1u;
        }
        const float s0 = a0 * b0, s1 = a1 * b0;
#pragma unroll
        for (int j = 0; j < WN / 8; ++j) {
          out[4 * j + 0] = fmaf(acc[4 * j + 0], s0, out[4 * j + 0]);
          out[4 * j + 1] = fmaf(acc[4 * j + 1], s0, out[4 * j + 1]);
          out[4 * j + 2] = fmaf(acc[4 * j + 2], s1, out[4 * j + 2]);
          out[4 * j + 3] = fmaf(acc[4 * j + 3], s1, out[4 * j + 3]);
        }
        a0 = na0;
        a1 = na1;
        b0 = nb0;
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
  int bm, bn;
  const char* name;
};
static const ConfigDesc kConfigs[] = {
    {64, 32, "64x32"}, {64, 64, "64x64"}, {64, 128, "64x128"}, {64, 256, "64x256"},
    {128, 64, "128x64"}, {128, 128, "128x128"},
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

// Rough time model used to choose a tile shape: max(compute, memory) per wave.
static int choose_config(long long M, int N, int K, int G, int sms) {
  if (g_forced >= 0 && g_forced < kNumConfigs) return g_forced;
  // rows per group (average) decides which BM values make sense
  const double rowsPerGroup = G > 0 ? static_cast<double>(M) / G : static_cast<double>(M);
  int best = 5;
  double bestT = 1e30;
  for (int i = 0; i < kNumConfigs; ++i) {
    const int bm = kConfigs[i].bm, bn = kConfigs[i].bn;
    const double mBlocks = (G > 1) ? (std::ceil(rowsPerGroup / bm) * G) : std::ceil(static_cast<double>(M) / bm);
    const double tiles = mBlocks * std::ceil(static_cast<double>(N) / bn);
    const double waves = std::ceil(tiles / sms);
    const double active = tiles < sms ? tiles : sms;
    // compute: tensor time per tile at ~ 1979 TFLOPS / 132 SMs peak, derated for small N per warpgroup
    const int wn = bm == 128 ? bn : bn / 2;
    const double eff = wn >= 128 ? 0.80 : wn >= 64 ? 0.70 : wn >= 32 ? 0.5 : 0.3;
    const double tComp = waves * (2.0 * bm * bn * K) / (1979e12 / 132 * eff);
    // memory: unique bytes over DRAM, and per-SM streaming of the tile's operands from L2
    const double uniq = static_cast<double>(M) * K + static_cast<double>(N) * K * (G > 1 ? G : 1);
    const double tDram = uniq / (3.0e12 * (active / sms < 0.25 ? 0.25 : active / sms) );
    const double tL2 = waves * (bm + bn) * static_cast<double>(K) / 60e9;
    double t = tComp;
    if (tDram > t) t = tDram;
    if (tL2 > t) t = tL2;
    t += waves * 1.5e-6;  // per-tile prologue/epilogue
    if (t < bestT * 0.97) {
      bestT = t;
      best = i;
    }
  }
  return best;
}

template <int BM, int BN, bool BF16>
static cudaError_t launch_t(const CUtensorMap& mA, const CUtensorMap& mB, const Params& p, int grid,
                           cudaStream_t stream) {
  using C = Cfg<BM, BN>;
  auto kern = kiln_fp8_gemm_sm90_kernel<BM, BN, BF16>;
  static std::once_flag once;
  static cudaError_t attrErr = cudaSuccess;
  std::call_once(once, [&] {
    attrErr = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_BYTES);
  });
  if (attrErr != cudaSuccess) return attrErr;
  kern<<<grid, kThreads, C::SMEM_BYTES, stream>>>(mA, mB, p);
  return cudaGetLastError();
}

template <bool BF16>
static cudaError_t launch_cfg(int cfg, const CUtensorMap& mA, const CUtensorMap& mB, const Params& p, int grid,
                              cudaStream_t s) {
  switch (cfg) {
    case 0: return launch_t<64, 32, BF16>(mA, mB, p, grid, s);
    case 1: return launch_t<64, 64, BF16>(mA, mB, p, grid, s);
    case 2: return launch_t<64, 128, BF16>(mA, mB, p, grid, s);
    case 3: return launch_t<64, 256, BF16>(mA, mB, p, grid, s);
    case 4: return launch_t<128, 64, BF16>(mA, mB, p, grid, s);
    default: return launch_t<128, 128, BF16>(mA, mB, p, grid, s);
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
  const int Gn = mode == 0 ? 1 : G;
  const int cfg = choose_config(mode == 0 ? M : static_cast<long long>(hintRows) * Gn, N, K, Gn, sms);
  g_last = cfg;
  const int bm = kConfigs[cfg].bm, bn = kConfigs[cfg].bn;
  CUtensorMap mA, mB;
  if (!make_map(&mA, A, rowsTotal, K, bm)) return cudaErrorInvalidValue;
  if (!make_map(&mB, B, static_cast<uint64_t>(Gn) * N, K, bn)) return cudaErrorInvalidValue;
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
    const long long tiles = ((M + bm - 1) / bm) * static_cast<long long>((N + bn - 1) / bn);
    if (tiles < grid) grid = static_cast<int>(tiles);
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
