/**
 * The FP8 block GEMM check both WebGPU GEMM test files run: quantise random operands on the
 * host, multiply on the backend, compare bit for bit with core's fp8GemmReference.
 */
import { expect } from 'vitest';
import { fp8GemmReference, quantizeBlockwise } from '@kiln/core';
import type { WebGpuBackend } from '@kiln/backend-webgpu';

export interface Fp8GemmCase {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly ba: readonly [number, number];
  readonly bb: readonly [number, number];
  readonly nc: number;
  readonly fa: 'e4m3' | 'e5m2';
  readonly fb: 'e4m3' | 'e5m2';
}

/** `values(n, seed)` makes the f32 operands (a with seed 1 + M, b with seed 2 + N). */
export async function expectFp8GemmMatchesReference(b: WebGpuBackend, c: Fp8GemmCase, values: (n: number, seed: number) => Float32Array): Promise<void> {
  const a = values(c.M * c.K, 1 + c.M);
  const w = values(c.N * c.K, 2 + c.N);
  const qa = quantizeBlockwise(a, [c.M, c.K], [...c.ba], { format: c.fa });
  const qw = quantizeBlockwise(w, [c.N, c.K], [...c.bb], { format: c.fb });
  const ref = fp8GemmReference(
    { codes: qa.codes, scales: qa.scales, shape: [c.M, c.K], block: c.ba, format: c.fa },
    { codes: qw.codes, scales: qw.scales, shape: [c.N, c.K], block: c.bb, format: c.fb },
    { promotionInterval: c.nc },
  );
  const v = (dataId: object, shape: number[], dtype: 'f32' | 'e4m3' | 'e5m2') => ({ dataId, shape, dtype });
  const sA = [Math.ceil(c.M / c.ba[0]), Math.ceil(c.K / c.ba[1])];
  const sW = [Math.ceil(c.N / c.bb[0]), Math.ceil(c.K / c.bb[1])];
  const ids = [b.write(qa.codes, c.fa, [c.M, c.K]), b.write(qa.scales, 'f32', sA), b.write(qw.codes, c.fb, [c.N, c.K]), b.write(qw.scales, 'f32', sW)];
  const out = b.matmulFp8(
    { codes: v(ids[0], [c.M, c.K], c.fa), scales: v(ids[1], sA, 'f32'), block: c.ba },
    { codes: v(ids[2], [c.N, c.K], c.fb), scales: v(ids[3], sW, 'f32'), block: c.bb },
    { promotionInterval: c.nc },
  );
  const got = (await b.read(v(out, [c.M, c.N], 'f32'))) as Float32Array;
  expect(new Uint32Array(got.buffer)).toEqual(new Uint32Array(ref.buffer));
  for (const id of [...ids, out]) b.release(id);
}
