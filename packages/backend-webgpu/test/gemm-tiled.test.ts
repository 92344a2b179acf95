/**
 * The hardware-GPU GEMM kernels (gemm-tiled.ts), forced on whatever adapter runs the tests
 * (llvmpipe in CI): f32 products against float64 sums over every load path (row-major,
 * transposed, broadcast batches, odd sizes that take the scalar path), split-K, and the FP8
 * block GEMM bit for bit against core's fp8GemmReference.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, fp8GemmReference, quantizeBlockwise } from '@kiln/core';
import { WebGpuBackend } from '@kiln/backend-webgpu';
import { planF32Gemm, chooseGemmKernels } from '../src/gemm-plan.js';

process.env.EGL_PLATFORM ??= 'surfaceless';

let backend: WebGpuBackend | undefined;
/** The same kernels with other tiles pinned: 128-row, 64 x 64 x 8, 128 x 64 x 32. */
const pinned: WebGpuBackend[] = [];
let reason = '';
beforeAll(async () => {
  try {
    backend = await WebGpuBackend.create({ gemm: 'tiled' });
    for (const gemm of ['tiled:2,2,16', 'tiled:1,1,8', 'tiled:2,1,32'] as const) pinned.push(await WebGpuBackend.create({ gemm }));
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
  }
});
afterAll(() => {
  backend?.dispose();
  for (const b of pinned) b.dispose();
});

function rand(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

type V = { dataId: object; shape: number[]; dtype: 'f32' | 'e4m3' | 'e5m2' };
const v = (dataId: object, shape: number[], dtype: V['dtype'] = 'f32'): V => ({ dataId, shape, dtype });

describe('WebGPU tiled f32 GEMM (hardware-GPU kernels) against float64', () => {
  const cases = [
    { batch: [], M: 130, N: 140, K: 70, tA: false, tB: false }, // vec-k A, vec-inner B, partial tiles
    { batch: [], M: 128, N: 256, K: 64, tA: true, tB: true }, // vec-inner A, vec-k B
    { batch: [], M: 33, N: 65, K: 37, tA: false, tB: false }, // scalar loads (odd K, odd N)
    { batch: [], M: 7, N: 96, K: 4096, tA: false, tB: true }, // skinny: split along K
    { batch: [3], M: 70, N: 20, K: 48, tA: true, tB: false }, // batched
    { batch: [2, 2], M: 9, N: 12, K: 300, tA: false, tB: false }, // batched + split
    { batch: [], M: 1, N: 1, K: 1, tA: false, tB: false },
  ];
  for (const c of cases) {
    it(`[${c.batch}] ${c.M}x${c.N}x${c.K} ${c.tA ? 'Aᵀ' : 'A'} ${c.tB ? 'Bᵀ' : 'B'} (default tile and three pinned ones)`, async (t) => {
      if (!backend) return t.skip(reason);
      for (const b of [backend, ...pinned]) await checkF32(b, c);
    });
  }

  async function checkF32(b: WebGpuBackend, c: { batch: number[]; M: number; N: number; K: number; tA: boolean; tB: boolean }): Promise<void> {
    const nb = c.batch.reduce((x, y) => x * y, 1);
    const aShape = [...c.batch, ...(c.tA ? [c.K, c.M] : [c.M, c.K])];
    const bShape = [...c.batch, ...(c.tB ? [c.N, c.K] : [c.K, c.N])];
    const a = rand(nb * c.M * c.K, 11 + c.M);
    const w = rand(nb * c.N * c.K, 13 + c.N);
    const ia = b.write(a, 'f32', aShape);
    const iw = b.write(w, 'f32', bShape);
    const outShape = [...c.batch, c.M, c.N];
    // poison: a stale result of the same size class must not leak into the output
    b.release(b.write(new Float32Array(nb * c.M * c.N).fill(NaN), 'f32', outShape));
    const out = b.matmul(v(ia, aShape), v(iw, bShape), { transposeA: c.tA, transposeB: c.tB }, outShape);
    const got = (await b.read(v(out, outShape))) as Float32Array;
    let worst = 0;
    for (let z = 0; z < nb; z++)
      for (let m = 0; m < c.M; m++)
        for (let n = 0; n < c.N; n++) {
          let ref = 0;
          let mag = 0;
          for (let k = 0; k < c.K; k++) {
            const x = a[z * c.M * c.K + (c.tA ? k * c.M + m : m * c.K + k)];
            const y = w[z * c.N * c.K + (c.tB ? n * c.K + k : k * c.N + n)];
            ref += x * y;
            mag += Math.abs(x * y);
          }
          // f32 summation of K products: |err| <= K * 2^-24 * sum|x*y| (a loose a priori bound)
          const err = Math.abs(got[(z * c.M + m) * c.N + n] - ref) / (c.K * 2 ** -24 * mag + 1e-30);
          worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
        }
    expect(worst, `${String(b.device.details?.gemmKernels)} ${c.M}x${c.N}x${c.K}`).toBeLessThanOrEqual(1);
    for (const id of [ia, iw, out]) b.release(id);
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
    expect(big.groups).toEqual([32, 64, 1]);
    expect(planF32Gemm(chooseGemmKernels('software', false, { maxComputeWorkgroupStorageSize: 32768 }), 64, 64, 64, 1, strides(64, 64, 64))).toBeUndefined();
  });
});

describe('WebGPU tiled FP8 block GEMM is bit-exact with core fp8GemmReference', () => {
  const cases = [
    { M: 130, N: 140, K: 272, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 5, N: 300, K: 512, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 97, N: 66, K: 64, ba: [1, 32], bb: [32, 32], nc: 16, fa: 'e5m2', fb: 'e5m2' },
    { M: 64, N: 63, K: 100, ba: [1, 128], bb: [128, 128], nc: Infinity, fa: 'e5m2', fb: 'e4m3' },
  ] as const;
  for (const c of cases) {
    it(`[${c.M}, ${c.K}] x [${c.N}, ${c.K}]ᵀ, blocks ${c.ba}/${c.bb}, promotion ${c.nc}, ${c.fa} x ${c.fb} (default tile and three pinned ones)`, async (t) => {
      if (!backend) return t.skip(reason);
      for (const b of [backend, ...pinned]) {
        const a = rand(c.M * c.K, 1 + c.M, 4);
        const w = rand(c.N * c.K, 2 + c.N, 4);
        const qa = quantizeBlockwise(a, [c.M, c.K], [...c.ba], { format: c.fa });
        const qw = quantizeBlockwise(w, [c.N, c.K], [...c.bb], { format: c.fb });
        const ref = fp8GemmReference(
          { codes: qa.codes, scales: qa.scales, shape: [c.M, c.K], block: c.ba, format: c.fa },
          { codes: qw.codes, scales: qw.scales, shape: [c.N, c.K], block: c.bb, format: c.fb },
          { promotionInterval: c.nc },
        );
        const sA = [Math.ceil(c.M / c.ba[0]), Math.ceil(c.K / c.ba[1])];
        const sW = [Math.ceil(c.N / c.bb[0]), Math.ceil(c.K / c.bb[1])];
        const ids = [b.write(qa.codes, c.fa, [c.M, c.K]), b.write(qa.scales, 'f32', sA), b.write(qw.codes, c.fb, [c.N, c.K]), b.write(qw.scales, 'f32', sW)];
        const out = b.matmulFp8(
          { codes: v(ids[0], [c.M, c.K], c.fa), scales: v(ids[1], sA), block: c.ba },
          { codes: v(ids[2], [c.N, c.K], c.fb), scales: v(ids[3], sW), block: c.bb },
          { promotionInterval: c.nc },
        );
        const got = (await b.read(v(out, [c.M, c.N]))) as Float32Array;
        expect(new Uint32Array(got.buffer)).toEqual(new Uint32Array(ref.buffer));
        for (const id of [...ids, out]) b.release(id);
      }
    });
  }
});
