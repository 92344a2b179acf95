/**
 * The sliced-K GEMM kernels (gemm-sliced.ts), pinned by $KILN_WEBGPU_GEMM_SLICED on whatever
 * adapter runs the tests (llvmpipe in CI): f32 products against float64 sums, FP8 bit for bit
 * against core's fp8GemmReference (whole promotion chunks per slice, summed in chunk order),
 * over tiles with 1, 2, 4 and 8 slices, ragged edges, slices past the end of K and both load paths.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError } from '@kiln/core';
import { WebGpuBackend } from '@kiln/backend-webgpu';
import { chooseGemmKernels, planSlicedF32, planSlicedFp8, type GemmChoice } from '../src/gemm-plan.js';
import { slicedGemmShader, slicedGemmWorkgroupBytes, slicedGeometry } from '../src/wgsl/gemm-sliced.js';
import { expectFp8GemmMatchesReference } from './fp8-gemm-check.js';
import { checkF32 } from './f32-gemm-check.js';
import { seededUniform } from './seeded.js';
import { withEnv, withEnvAsync } from './with-env.js';

process.env.EGL_PLATFORM ??= 'surfaceless';

/** bm,bn,slices,bk: 4 slices of 64 invocations (4 x 4 blocks), 2 of 128 (4 x 8), 8 of 32 (4 x 8), 4 of 64 (4 x 8), 1 of 256 (4 x 4), and the three automatic tiles. */
const TILES = ['32,32,4,16', '64,64,2,8', '32,32,8,8', '32,64,4,8', '64,64,1,16', '16,64,4,16', '16,32,8,16', '16,64,8,8'];
const backends: WebGpuBackend[] = [];
let reason = '';
beforeAll(async () => {
  try {
    for (const t of TILES) {
      await withEnvAsync('KILN_WEBGPU_GEMM_SLICED', t, async () => {
        const b = await WebGpuBackend.create({ gemm: 'tiled' });
        backends.push(b);
        // the pinned tile must fit this adapter, or these tests would run the tiled kernels
        const choice = (b as unknown as { gemm: GemmChoice }).gemm;
        const [bm, bn, slices, bk] = t.split(',').map(Number);
        expect(choice.sliced).toEqual({ bm, bn, slices, bk });
        expect(slicedGemmWorkgroupBytes({ bm, bn, slices, bk }, 'fp8')).toBeLessThanOrEqual(choice.workgroupBytes);
      });
    }
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
  }
});
afterAll(() => {
  for (const b of backends) b.dispose();
});

describe('WebGPU sliced-K f32 GEMM against float64', () => {
  const cases = [
    { batch: [], M: 130, N: 136, K: 70, tA: false, tB: false }, // vec-k A, vec-inner B, ragged tiles, K ragged for every depth
    { batch: [], M: 64, N: 256, K: 64, tA: true, tB: true }, // vec-inner A, vec-k B; slices past the end of K
    { batch: [], M: 7, N: 96, K: 2052, tA: false, tB: true }, // skinny, long K
    { batch: [3], M: 20, N: 44, K: 300, tA: true, tB: false }, // batched, N not a tile multiple
    { batch: [2], M: 9, N: 12, K: 900, tA: false, tB: false }, // one partial tile
  ];
  for (const c of cases) {
    it(`[${c.batch}] ${c.M}x${c.N}x${c.K} ${c.tA ? 'Aᵀ' : 'A'} ${c.tB ? 'Bᵀ' : 'B'} (eight tiles)`, async (t) => {
      if (!backends.length) return t.skip(reason);
      for (const b of backends) await checkF32(b, c);
    });
  }
});

describe('WebGPU sliced-K FP8 block GEMM is bit-exact with core fp8GemmReference', () => {
  const cases = [
    { M: 130, N: 136, K: 1040, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' }, // 9 chunks: rounds with idle slices, a short last chunk
    { M: 5, N: 296, K: 512, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e5m2' },
    { M: 97, N: 64, K: 96, ba: [1, 32], bb: [32, 32], nc: 16, fa: 'e5m2', fb: 'e5m2' }, // chunks shorter than a scale block
    { M: 3, N: 64, K: 1000, ba: [1, 128], bb: [128, 128], nc: 256, fa: 'e5m2', fb: 'e4m3' },
  ] as const;
  for (const c of cases) {
    it(`[${c.M}, ${c.K}] x [${c.N}, ${c.K}]ᵀ, blocks ${c.ba}/${c.bb}, promotion ${c.nc}, ${c.fa} x ${c.fb} (eight tiles)`, async (t) => {
      if (!backends.length) return t.skip(reason);
      for (const b of backends) {
        // promotion chunks must be whole tiles of a slice: the others fall back to the tiled kernels
        await expectFp8GemmMatchesReference(b, c, (n, seed) => seededUniform(n, seed, 4));
      }
    });
  }
});

describe('sliced-K plans and tiles', () => {
  const limits = { maxComputeWorkgroupStorageSize: 32768 };
  const strides = (K: number, N: number) => ({ aBatch: 0, bBatch: 0, sam: K, sak: 1, sbk: N, sbn: 1 });
  it('a pinned tile serves every product its loads allow; odd strides fall back', () => {
    const choice = withEnv('KILN_WEBGPU_GEMM_SLICED', '32,32,4,16', () => chooseGemmKernels('tiled', false, limits));
    expect(planSlicedF32(choice, 512, 512, 512, 1, strides(512, 512))).toEqual({ spec: { kind: 'f32', bm: 32, bn: 32, slices: 4, bk: 16, a: 'vec-k', b: 'vec-inner', vecOut: true }, groups: [16, 16, 1] });
    expect(planSlicedF32(choice, 33, 65, 37, 1, strides(37, 65))).toBeUndefined(); // odd K and N: no 16-byte words
    expect(planSlicedFp8(choice, 32, 1536, 2048, 128)).toMatchObject({ spec: { kind: 'fp8', a: 'vec-k', b: 'vec-k' }, groups: [48, 1, 1] });
    expect(planSlicedFp8(choice, 32, 1536, 2048, 8)).toBeUndefined(); // a chunk shorter than a slice's tile depth
    expect(planSlicedFp8(choice, 32, 1536, 2048, Infinity)).toBeUndefined(); // one chunk: nothing to slice
    expect(planSlicedF32(chooseGemmKernels('software', false, limits), 512, 512, 512, 1, strides(512, 512))).toBeUndefined();
    // a tile whose partial tiles outgrow the workgroup memory falls back (64 x 64, 4 slices: 48 KiB)
    const big = withEnv('KILN_WEBGPU_GEMM_SLICED', '64,64,4,4', () => chooseGemmKernels('tiled', false, limits));
    expect(planSlicedF32(big, 512, 512, 512, 1, strides(512, 512))).toBeUndefined();
    // more row tiles than a dispatch dimension takes: the tiled kernels (which fold or split)
    expect(planSlicedF32(choice, 32 * 65536, 64, 64, 1, strides(64, 64))).toBeUndefined();
    expect(planSlicedFp8(choice, 32 * 65536, 64, 256, 128)).toBeUndefined();
  });

  it('automatic tiles: few 64 x 64 tiles and a long K; 8 slices for up to 64 rows; FP8 a slice per promotion chunk', () => {
    const choice = chooseGemmKernels('tiled', false, limits);
    expect(choice.sliced).toBe('auto');
    expect(planSlicedF32(choice, 512, 512, 512, 1, strides(512, 512))!.spec).toMatchObject({ bm: 16, bn: 64, slices: 4, bk: 16 });
    expect(planSlicedF32(choice, 32, 1536, 2048, 1, strides(2048, 1536))!.spec).toMatchObject({ bm: 16, bn: 32, slices: 8, bk: 16 });
    expect(planSlicedF32(choice, 64, 2048, 1024, 1, strides(1024, 2048))!.spec).toMatchObject({ bm: 16, bn: 64, slices: 8, bk: 8 });
    expect(planSlicedF32(choice, 1024, 1024, 1024, 1, strides(1024, 1024))).toBeUndefined(); // 256 tiles: the tiled kernels
    expect(planSlicedF32(choice, 128, 7168, 2048, 1, strides(2048, 7168))).toBeUndefined(); // 224 tiles
    expect(planSlicedF32(choice, 512, 512, 128, 1, strides(128, 512))).toBeUndefined(); // short K
    expect(planSlicedF32(choice, 256, 256, 512, 8, strides(512, 256))).toBeUndefined(); // 128 tiles over the batch
    expect(planSlicedFp8(choice, 32, 1536, 2048, 128)!.spec).toMatchObject({ bm: 16, bn: 32, slices: 8 });
    expect(planSlicedFp8(choice, 32, 1536, 512, 128)!.spec).toMatchObject({ bm: 16, bn: 64, slices: 4 }); // 4 chunks: 4 slices
    expect(planSlicedFp8(choice, 128, 512, 384, 128)).toBeUndefined(); // 3 chunks
    expect(planSlicedF32(chooseGemmKernels('tiled', false, { maxComputeWorkgroupStorageSize: 16384 }), 32, 1536, 2048, 1, strides(2048, 1536))).toBeUndefined(); // 24 KiB needed
    const off = withEnv('KILN_WEBGPU_GEMM_SLICED', 'off', () => chooseGemmKernels('tiled', false, limits));
    expect(planSlicedF32(off, 512, 512, 512, 1, strides(512, 512))).toBeUndefined();
  });

  it('refuses impossible tiles with a reason', () => {
    expect(slicedGeometry({ bm: 32, bn: 32, slices: 4, bk: 16 })).toEqual({ ra: 1, rb: 1, tx: 8, ty: 8 });
    expect(slicedGeometry({ bm: 64, bn: 64, slices: 4, bk: 8 })).toEqual({ ra: 2, rb: 2, tx: 8, ty: 8 });
    expect(slicedGeometry({ bm: 32, bn: 32, slices: 3, bk: 16 })).toMatch(/slices must be/);
    expect(slicedGeometry({ bm: 16, bn: 16, slices: 2, bk: 16 })).toMatch(/not 16, 32 or 64 outputs/);
    expect(slicedGeometry({ bm: 32, bn: 32, slices: 4, bk: 6 })).toMatch(/bk must be/);
    withEnv('KILN_WEBGPU_GEMM_SLICED', '32,32,3,16', () => expect(() => chooseGemmKernels('tiled', false, limits)).toThrow(/KILN_WEBGPU_GEMM_SLICED=32,32,3,16: slices must be/));
    expect(() => slicedGemmShader({ kind: 'f32', bm: 16, bn: 16, slices: 2, bk: 16, a: 'vec-k', b: 'vec-k', vecOut: true })).toThrow(/sliced GEMM/);
  });
});
