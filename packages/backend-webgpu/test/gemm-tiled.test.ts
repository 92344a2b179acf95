/**
 * The hardware-GPU GEMM kernels (gemm-tiled.ts), forced on whatever adapter runs the tests
 * (llvmpipe in CI): f32 products against float64 sums over every load path (row-major,
 * transposed, broadcast batches, odd sizes that take the scalar path), split-K, and the FP8
 * block GEMM bit for bit against core's fp8GemmReference.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, fp8GemmReference, quantizeBlockwise, tensorFromDataId } from '@kiln/core';
import { WebGpuBackend } from '@kiln/backend-webgpu';
import { planF32Gemm, planFp8Gemm, planGroupedFp8, chooseGemmKernels, type GemmOption } from '../src/gemm-plan.js';
import { tiledGemmShader } from '../src/wgsl/gemm-tiled.js';
import { expectFp8GemmMatchesReference } from './fp8-gemm-check.js';
import { checkF32 } from './f32-gemm-check.js';
import { withEnv, withEnvAsync } from './with-env.js';
import { seededUniform } from './seeded.js';

process.env.EGL_PLATFORM ??= 'surfaceless';

let backend: WebGpuBackend | undefined;
/**
 * The same kernels with other tiles pinned: 128 x 128 x 16 one stage, 64 x 64 x 8 two stages, 128 x 64 x 32,
 * 128 x 128 x 8 two stages, 128 x 128 x 16 two stages (large FP8 products on GPUs; FP8 falls back to one
 * stage where its 34 KiB do not fit, as on llvmpipe), 64 x 64 x 16 two stages (the same 16-deep
 * two-stage FP8 staging at a size every adapter fits), 128 x 128 x 8 two stages on 16 x 8 invocations
 * (16 x 8 outputs each) and 128 x 256 x 8 two stages (8 x 16 each).
 */
const pinned: WebGpuBackend[] = [];
/**
 * The same kernels with 'vec-k' operands staged a 4 x 4 block per invocation
 * ($KILN_WEBGPU_GEMM_VECK4=1): the default tile, 128 x 128 x 8 one stage, 64 x 64 x 16 two
 * stages, 128 x 64 x 32 (every invocation owns a block).
 */
const veck4: WebGpuBackend[] = [];
let reason = '';
const withVeck4 = (gemm: GemmOption): Promise<WebGpuBackend> => withEnvAsync('KILN_WEBGPU_GEMM_VECK4', '1', () => WebGpuBackend.create({ gemm }));
beforeAll(async () => {
  // these tests are about the tiled kernels: the sliced-K ones (gemm-sliced.test.ts) would take the small products
  process.env.KILN_WEBGPU_GEMM_SLICED = 'off';
  try {
    backend = await WebGpuBackend.create({ gemm: 'tiled' });
    for (const gemm of ['tiled:2,2,16,1', 'tiled:1,1,8,2', 'tiled:2,1,32', 'tiled:2,2,8,2', 'tiled:2,2,16,2', 'tiled:1,1,16,2', 'tiled:4,2,8,2,8', 'tiled:2,4,8,2'] as const) pinned.push(await WebGpuBackend.create({ gemm }));
    for (const gemm of ['tiled', 'tiled:2,2,8', 'tiled:1,1,16,2', 'tiled:2,1,32'] as const) veck4.push(await withVeck4(gemm));
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
  } finally {
    delete process.env.KILN_WEBGPU_GEMM_SLICED;
  }
});
afterAll(() => {
  backend?.dispose();
  for (const b of [...pinned, ...veck4]) b.dispose();
});


type V = { dataId: object; shape: number[]; dtype: 'f32' | 'e4m3' | 'e5m2' };
const v = (dataId: object, shape: number[], dtype: V['dtype'] = 'f32'): V => ({ dataId, shape, dtype });

describe('WebGPU tiled f32 GEMM (hardware-GPU kernels) against float64', () => {
  const cases = [
    { batch: [], M: 130, N: 140, K: 70, tA: false, tB: false }, // vec-k A, vec-inner B, partial tiles
    { batch: [], M: 128, N: 256, K: 64, tA: true, tB: true }, // vec-inner A, vec-k B
    { batch: [], M: 33, N: 65, K: 37, tA: false, tB: false }, // scalar loads (odd K, odd N)
    { batch: [], M: 7, N: 96, K: 4096, tA: false, tB: true }, // skinny: split along K
    { batch: [3], M: 70, N: 20, K: 48, tA: true, tB: false }, // batched
    { batch: [2, 2], M: 9, N: 12, K: 900, tA: false, tB: false }, // batched + split (56 tile depths: split)
    { batch: [], M: 1, N: 1, K: 1, tA: false, tB: false },
  ];
  for (const c of cases) {
    it(`[${c.batch}] ${c.M}x${c.N}x${c.K} ${c.tA ? 'Aᵀ' : 'A'} ${c.tB ? 'Bᵀ' : 'B'} (default tile and eight pinned ones)`, async (t) => {
      if (!backend) return t.skip(reason);
      for (const b of [backend, ...pinned]) await checkF32(b, c);
    });
  }

  // row-major A / transposed B (the 'vec-k' loads) staged as 4 x 4 blocks: ragged M (rows past
  // M inside a block read as 0), ragged N, K not a multiple of the tile depth, batches, split K
  const veck4Cases = [
    { batch: [], M: 130, N: 140, K: 68, tA: false, tB: false }, // vec-k A, partial tiles (K ragged for every depth)
    { batch: [], M: 131, N: 66, K: 52, tA: false, tB: true }, // vec-k A and B, M and N ragged inside a 4-row block
    { batch: [], M: 61, N: 130, K: 36, tA: true, tB: true }, // vec-inner A, vec-k B (N past a block)
    { batch: [], M: 7, N: 96, K: 4096, tA: false, tB: true }, // skinny: split along K
    { batch: [], M: 3, N: 257, K: 1028, tA: false, tB: false }, // skinny, odd N (scalar B), split
    { batch: [3], M: 70, N: 20, K: 48, tA: false, tB: true }, // batched
    { batch: [2, 2], M: 9, N: 12, K: 900, tA: false, tB: false }, // batched + split (56 tile depths: split)
  ];
  for (const c of veck4Cases) {
    it(`4 x 4 block staging: [${c.batch}] ${c.M}x${c.N}x${c.K} ${c.tA ? 'Aᵀ' : 'A'} ${c.tB ? 'Bᵀ' : 'B'} (default tile and three pinned ones)`, async (t) => {
      if (!backend) return t.skip(reason);
      for (const b of veck4) await checkF32(b, c);
    });
  }

  it('plans split K for skinny products and none for large ones', () => {
    const choice = chooseGemmKernels('tiled', false, { maxComputeWorkgroupStorageSize: 32768 });
    const strides = (M: number, N: number, K: number) => ({ aBatch: 0, bBatch: 0, sam: K, sak: 1, sbk: N, sbn: 1 });
    const skinny = planF32Gemm(choice, 32, 1536, 2048, 1, strides(32, 1536, 2048))!;
    expect(skinny.slices).toBeGreaterThan(1);
    expect(skinny.kPer * skinny.slices).toBeGreaterThanOrEqual(2048);
    expect(skinny.spec).toMatchObject({ a: 'vec-k', b: 'vec-inner', vecOut: true });
    const big = planF32Gemm(choice, 4096, 4096, 4096, 1, strides(4096, 4096, 4096))!;
    expect(big.slices).toBe(1);
    expect(big.groups).toEqual([32, 32, 1]); // 128 x 128 tiles: enough of them to fill a large GPU
    expect(big.spec).toMatchObject({ ra: 2, rb: 2, bk: 8, double: true }); // two stages on 128 x 128 x 8 tiles
    expect(planF32Gemm(choice, 2048, 2048, 2048, 1, strides(2048, 2048, 2048))!.spec).toMatchObject({ ra: 2, rb: 2, bk: 8, double: true }); // 256 of them: enough
    const mid = planF32Gemm(choice, 1536, 2048, 2048, 1, strides(1536, 2048, 2048))!;
    expect(mid.spec).toMatchObject({ ra: 1, rb: 2, bk: 16 });
    expect(mid.spec.double).toBeUndefined(); // one stage on the others
    const medium = planF32Gemm(choice, 1024, 1024, 1024, 1, strides(1024, 1024, 1024))!;
    expect(medium.spec).toMatchObject({ ra: 1, rb: 2, bk: 16 }); // 128 tiles of 64 x 128 (FP8: 256 of 64 x 64), K split in 3
    expect(medium.slices).toBe(3);
    expect(planFp8Gemm(choice, 1024, 1024, 1024, 128)!.spec).toMatchObject({ ra: 2, rb: 1, bk: 16 }); // FP8: 128 of 128 x 64
    expect(planFp8Gemm(choice, 64, 2048, 4096, 128)!.spec).toMatchObject({ ra: 1, rb: 1, bk: 16 }); // ... 64 x 64 for few rows
    // too few tiles, but an unsplit tile is only 32 tile depths long: a second dispatch would cost more than it saves
    expect(planF32Gemm(choice, 512, 512, 512, 1, strides(512, 512, 512))!.slices).toBe(1);
    expect(planF32Gemm(choice, 64, 2048, 1024, 1, strides(64, 2048, 1024))!.slices).toBeGreaterThan(1); // 64 depths: split
    const two = chooseGemmKernels('tiled:1,2,16,2', false, { maxComputeWorkgroupStorageSize: 32768 });
    expect(planF32Gemm(two, 2048, 2048, 2048, 1, strides(2048, 2048, 2048))!.spec.double).toBe(true);
    const tooSmall = chooseGemmKernels('tiled:1,2,16,2', false, { maxComputeWorkgroupStorageSize: 16384 });
    expect(planF32Gemm(tooSmall, 2048, 2048, 2048, 1, strides(2048, 2048, 2048))!.spec.double).toBeUndefined(); // two stages need 24 KiB
    expect(planF32Gemm(chooseGemmKernels('software', false, { maxComputeWorkgroupStorageSize: 32768 }), 64, 64, 64, 1, strides(64, 64, 64))).toBeUndefined();
    // 4 x 4 block staging: off unless asked for (measured slower on every tile once ops streamed to the worker)
    expect(big.spec.veck4).toBeUndefined();
    expect(mid.spec.veck4).toBeUndefined();
    expect(medium.spec.veck4).toBeUndefined();
    expect(planFp8Gemm(choice, 2048, 2048, 2048, 128)!.spec.veck4).toBeUndefined(); // no change for FP8: kept off
    // large FP8 products: 16-deep two-stage tiles where 34 KiB fit, else 8-deep ones
    expect(planFp8Gemm(choice, 2048, 2048, 2048, 128)!.spec).toMatchObject({ ra: 2, rb: 2, bk: 8, double: true });
    expect(planFp8Gemm(chooseGemmKernels('tiled', false, { maxComputeWorkgroupStorageSize: 49152 }), 2048, 2048, 2048, 128)!.spec).toMatchObject({ ra: 2, rb: 2, bk: 16, double: true });
    expect(planF32Gemm(chooseGemmKernels('tiled', false, { maxComputeWorkgroupStorageSize: 49152 }), 2048, 2048, 2048, 1, strides(2048, 2048, 2048))!.spec).toMatchObject({ bk: 8, double: true }); // f32 stays 8 deep
    // FP8 skinny products: a workgroup layer per promotion chunk (16 of them), not for short K or big products
    expect(planFp8Gemm(choice, 32, 1536, 2048, 128)).toMatchObject({ chunks: 16, groups: [24, 1, 16], spec: { chunked: true } });
    expect(planFp8Gemm(choice, 32, 1536, 512, 128)!.chunks).toBe(1);
    expect(planFp8Gemm(choice, 2048, 2048, 2048, 128)!.chunks).toBe(1);
    expect(planFp8Gemm(choice, 32, 1536, 2048, Infinity)!.chunks).toBe(1);
  });

  it('parses pinned invocation rows and wide tiles, and refuses bad ones', () => {
    const limits = { maxComputeWorkgroupStorageSize: 32768 };
    const strides = { aBatch: 0, bBatch: 0, sam: 4096, sak: 1, sbk: 4096, sbn: 1 };
    const narrow = chooseGemmKernels('tiled:4,2,8,2,8', false, limits);
    expect(narrow.pinned).toEqual({ ra: 4, rb: 2, bk: 8, double: true, wy: 8 });
    // 128 x 128 tiles of 16 x 8 invocations: 32 x 32 of them for 4096², and wy survives a shrink
    expect(planF32Gemm(narrow, 4096, 4096, 4096, 1, strides)).toMatchObject({ groups: [32, 32, 1], spec: { ra: 4, rb: 2, wy: 8, double: true } });
    const tight = chooseGemmKernels('tiled:4,2,32,2,8', false, { maxComputeWorkgroupStorageSize: 16384 });
    expect(planF32Gemm(tight, 4096, 4096, 4096, 1, strides)!.spec).toMatchObject({ ra: 4, rb: 2, bk: 16, wy: 8 });
    expect(planF32Gemm(chooseGemmKernels('tiled:2,4,8', false, limits), 4096, 4096, 4096, 1, strides)!.groups).toEqual([16, 32, 1]);
    expect(() => chooseGemmKernels('tiled:3,2,8', false, limits)).toThrow(/1\|2\|4, 1\|2\|4/);
    expect(() => chooseGemmKernels('tiled:2,2,8,2,4', false, limits)).toThrow(/8\|16/);
  });

  it('sizes a grouped FP8 product by its mean rows per group', () => {
    const choice = chooseGemmKernels('tiled', false, { maxComputeWorkgroupStorageSize: 49152 });
    // 8 experts of 512 rows x 4096: 1024 tiles of 128 x 128 in all, the large two-stage FP8 tile
    expect(planGroupedFp8(choice, 4096, 4096, 8)).toMatchObject({ ra: 2, rb: 2, bk: 16, double: true });
    // 128 rows per expert, or unknown: 64-row tiles as before
    expect(planGroupedFp8(choice, 2048, 1024, 8)).toMatchObject({ ra: 1, rb: 2, bk: 16 });
    expect(planGroupedFp8(choice, 2048)).toMatchObject({ ra: 1, rb: 2, bk: 16 });
    // many rows but too few tiles to fill a large GPU: a medium product's 128 x 64 tile, one stage
    const few = planGroupedFp8(choice, 256, 512, 2)!;
    expect(few).toMatchObject({ ra: 2, rb: 1, bk: 16 });
    expect(few.double).toBeUndefined();
  });

  it('stages 4 x 4 blocks everywhere with $KILN_WEBGPU_GEMM_VECK4=1 (f32, fp8, grouped fp8), nowhere with 0', () => {
    const limits = { maxComputeWorkgroupStorageSize: 32768 };
    const strides = { aBatch: 0, bBatch: 0, sam: 256, sak: 1, sbk: 256, sbn: 1 };
    expect(chooseGemmKernels('tiled', false, limits).veck4).toBe('auto');
    process.env.KILN_WEBGPU_GEMM_VECK4 = '0';
    try {
      const off = chooseGemmKernels('tiled', false, limits);
      expect(planF32Gemm(off, 2048, 2048, 2048, 1, { aBatch: 0, bBatch: 0, sam: 2048, sak: 1, sbk: 2048, sbn: 1 })!.spec.veck4).toBeUndefined();
    } finally {
      delete process.env.KILN_WEBGPU_GEMM_VECK4;
    }
    const choice = withEnv('KILN_WEBGPU_GEMM_VECK4', '1', () => chooseGemmKernels('tiled:2,2,8', false, limits));
    expect(choice.veck4).toBe(true);
    expect(planF32Gemm(choice, 256, 256, 256, 1, strides)!.spec).toMatchObject({ ra: 2, rb: 2, bk: 8, a: 'vec-k', veck4: true });
    expect(planFp8Gemm(choice, 256, 256, 256, 128)!.spec).toMatchObject({ a: 'vec-k', b: 'vec-k', veck4: true });
    expect(planGroupedFp8(choice, 256)).toMatchObject({ veck4: true });
    // the kernel: whole vec4 stores of a transposed block, no scalar component stores
    const src = tiledGemmShader({ kind: 'f32', ra: 2, rb: 2, bk: 8, veck4: true, a: 'vec-k', b: 'vec-k', vecOut: true });
    expect(src).toMatch(/As\[base \+ \(kq \* 4u \+ 0u\) \* 32u \+ mb\] = vec4<f32>\(rA0_0\.x, rA0_1\.x, rA0_2\.x, rA0_3\.x\)/);
    expect(src).not.toMatch(/\]\[row % 4u\]/);
  });
});

describe('WebGPU tiled FP8 block GEMM is bit-exact with core fp8GemmReference', () => {
  const cases = [
    { M: 130, N: 140, K: 272, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 5, N: 300, K: 512, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 97, N: 66, K: 64, ba: [1, 32], bb: [32, 32], nc: 16, fa: 'e5m2', fb: 'e5m2' },
    { M: 64, N: 63, K: 100, ba: [1, 128], bb: [128, 128], nc: Infinity, fa: 'e5m2', fb: 'e4m3' },
    // skinny: one workgroup layer per promotion chunk, chunks summed in K order (every tile but 128 x 64 x 32)
    { M: 32, N: 260, K: 1024, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 3, N: 64, K: 1000, ba: [1, 128], bb: [128, 128], nc: 256, fa: 'e5m2', fb: 'e4m3' }, // a short last chunk
  ] as const;
  for (const c of cases) {
    it(`[${c.M}, ${c.K}] x [${c.N}, ${c.K}]ᵀ, blocks ${c.ba}/${c.bb}, promotion ${c.nc}, ${c.fa} x ${c.fb} (default tile, eight pinned ones, four with 4 x 4 block staging)`, async (t) => {
      if (!backend) return t.skip(reason);
      for (const b of [backend, ...pinned, ...veck4]) await expectFp8GemmMatchesReference(b, c, (n, seed) => seededUniform(n, seed, 4));
    });
  }
});

describe('WebGPU grouped FP8 GEMM (one dispatch for every expert) is bit-exact per group with fp8GemmReference', () => {
  /** A core tensor written to backend `b`. */
  const onBackend = (b: WebGpuBackend) => (x: Float32Array | Uint8Array | Int32Array, dtype: 'f32' | 'e4m3' | 'i32', shape: number[]) => tensorFromDataId(b, b.write(x, dtype, shape), shape, dtype);
  const K = 272;
  const N = 70;
  const G = 3;
  function experts(seed: number) {
    const w = seededUniform(G * N * K, seed, 4);
    const qs = Array.from({ length: G }, (_, g) => quantizeBlockwise(w.subarray(g * N * K, (g + 1) * N * K), [N, K], [128, 128], { format: 'e4m3' }));
    const codes = new Uint8Array(G * N * K);
    const scales = new Float32Array(G * qs[0].scales.length);
    qs.forEach((q, g) => {
      codes.set(q.codes, g * N * K);
      scales.set(q.scales, g * q.scales.length);
    });
    return { qs, codes, scales };
  }
  const refOf = (qa: ReturnType<typeof quantizeBlockwise>, rows: number, qb: ReturnType<typeof quantizeBlockwise>) =>
    fp8GemmReference(
      { codes: qa.codes, scales: qa.scales, shape: [rows, K], block: [1, 128], format: 'e4m3' },
      { codes: qb.codes, scales: qb.scales, shape: [N, K], block: [128, 128], format: 'e4m3' },
      { promotionInterval: 128 },
    );

  it('contiguous groups (uneven, one empty, rows past the last group stay 0)', async (t) => {
    if (!backend) return t.skip(reason);
    // the default kernels, every pinned tile, then 4 x 4 block staging with the default tile and three pinned ones
    for (const b of [backend, ...pinned, ...veck4]) {
      const offsets = [0, 70, 70, 101]; // group 1 empty; rows 101..104 belong to no group
      const rows = 105;
      const a = seededUniform(rows * K, 7, 4);
      const qa = quantizeBlockwise(a, [rows, K], [1, 128], { format: 'e4m3' });
      const e = experts(8);
      const T = onBackend(b);
      const out = b.groupedMatmulFp8(T(qa.codes, 'e4m3', [rows, K]), T(qa.scales, 'f32', [rows, 3]), T(e.codes, 'e4m3', [G, N, K]), T(e.scales, 'f32', [G, 1, 3]), T(new Int32Array(offsets), 'i32', [G + 1]));
      expect(out.shape).toEqual([rows, N]);
      const got = (await out.data()) as Float32Array;
      for (let g = 0; g < G; g++) {
        const r0 = offsets[g];
        const r1 = offsets[g + 1];
        if (r1 === r0) continue;
        const sub = quantizeBlockwise(a.subarray(r0 * K, r1 * K), [r1 - r0, K], [1, 128], { format: 'e4m3' });
        const ref = refOf(sub, r1 - r0, e.qs[g]);
        expect(new Uint32Array(got.slice(r0 * N, r1 * N).buffer), `group ${g}`).toEqual(new Uint32Array(ref.buffer));
      }
      expect(Array.from(got.slice(101 * N))).toEqual(new Array(4 * N).fill(0));
    }
  });

  it('masked groups ([G, Mmax, K] with valid-row counts; rows beyond a count are 0)', async (t) => {
    if (!backend) return t.skip(reason);
    // the default kernels, every pinned tile, then 4 x 4 block staging with the default tile and three pinned ones
    for (const b of [backend, ...pinned, ...veck4]) {
      const Mmax = 66;
      const counts = [66, 0, 33];
      const a = seededUniform(G * Mmax * K, 9, 4);
      const parts = Array.from({ length: G }, (_, g) => quantizeBlockwise(a.subarray(g * Mmax * K, (g + 1) * Mmax * K), [Mmax, K], [1, 128], { format: 'e4m3' }));
      const codes = new Uint8Array(G * Mmax * K);
      const scales = new Float32Array(G * Mmax * 3);
      parts.forEach((q, g) => {
        codes.set(q.codes, g * Mmax * K);
        scales.set(q.scales, g * Mmax * 3);
      });
      const e = experts(10);
      const T = onBackend(b);
      const out = b.groupedMatmulFp8(T(codes, 'e4m3', [G, Mmax, K]), T(scales, 'f32', [G, Mmax, 3]), T(e.codes, 'e4m3', [G, N, K]), T(e.scales, 'f32', [G, 1, 3]), T(new Int32Array(counts), 'i32', [G]), { masked: true });
      expect(out.shape).toEqual([G, Mmax, N]);
      const got = (await out.data()) as Float32Array;
      for (let g = 0; g < G; g++) {
        const ref = refOf(parts[g], Mmax, e.qs[g]);
        const base = g * Mmax * N;
        expect(new Uint32Array(got.slice(base, base + counts[g] * N).buffer), `group ${g}`).toEqual(new Uint32Array(ref.slice(0, counts[g] * N).buffer));
        expect(Array.from(got.slice(base + counts[g] * N, base + Mmax * N))).toEqual(new Array((Mmax - counts[g]) * N).fill(0));
      }
    }
  });

  it('refuses bad shapes and dtypes with typed errors naming the operand', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend;
    const T = onBackend(b);
    const a = T(new Uint8Array(4 * 128), 'e4m3', [4, 128]);
    const as = T(new Float32Array(4), 'f32', [4, 1]);
    const w = T(new Uint8Array(2 * 8 * 128), 'e4m3', [2, 8, 128]);
    const ws = T(new Float32Array(2), 'f32', [2, 1, 1]);
    expect(() => b.groupedMatmulFp8(a, as, w, ws, T(new Int32Array(2), 'i32', [2]))).toThrow(/groups must be i32 \[3\]/);
    expect(() => b.groupedMatmulFp8(a, as, w, T(new Float32Array(4), 'f32', [2, 2, 1]), T(new Int32Array(3), 'i32', [3]))).toThrow(/b scales must be \[2, 1, 1\]/);
    expect(() => b.groupedMatmulFp8(as, as, w, ws, T(new Int32Array(3), 'i32', [3]))).toThrow(/codes must be e4m3 or e5m2/);
  });
});
