/**
 * The f32 GEMM check the WebGPU GEMM test files run: random operands (row-major or transposed,
 * batched), a poisoned output size class, the product against float64 sums with an a priori
 * f32 summation bound.
 */
import { expect } from 'vitest';
import type { WebGpuBackend } from '@kiln/backend-webgpu';
import { seededUniform } from './seeded.js';

type V = { dataId: object; shape: number[]; dtype: 'f32' };
const v = (dataId: object, shape: number[]): V => ({ dataId, shape, dtype: 'f32' });

export interface F32GemmCase {
  readonly batch: readonly number[];
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly tA: boolean;
  readonly tB: boolean;
}

export async function checkF32(b: WebGpuBackend, c: F32GemmCase): Promise<void> {
  const nb = c.batch.reduce((x, y) => x * y, 1);
  const aShape = [...c.batch, ...(c.tA ? [c.K, c.M] : [c.M, c.K])];
  const bShape = [...c.batch, ...(c.tB ? [c.N, c.K] : [c.K, c.N])];
  const a = seededUniform(nb * c.M * c.K, 11 + c.M);
  const w = seededUniform(nb * c.N * c.K, 13 + c.N);
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
