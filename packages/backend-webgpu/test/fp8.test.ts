import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, quantizeBlockwise } from '@kiln/core';
import { WebGpuBackend } from '@kiln/backend-webgpu';
import { expectFp8GemmMatchesReference } from './fp8-gemm-check.js';

process.env.EGL_PLATFORM ??= 'surfaceless';

let backend: WebGpuBackend | undefined;
let reason = '';
beforeAll(async () => {
  try {
    backend = await WebGpuBackend.create();
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
  }
});
afterAll(() => backend?.dispose());

function rand(n: number, seed: number, scale = 4): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale * (i % 7 === 0 ? 100 : 1);
  }
  return out;
}

describe('WebGPU FP8 block GEMM is bit-exact with core fp8GemmReference (exact f32 accumulation)', () => {
  const cases = [
    { M: 5, N: 7, K: 300, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 130, N: 70, K: 272, ba: [1, 128], bb: [128, 128], nc: 128, fa: 'e4m3', fb: 'e4m3' },
    { M: 97, N: 200, K: 64, ba: [1, 32], bb: [32, 32], nc: 16, fa: 'e5m2', fb: 'e5m2' },
    { M: 70, N: 65, K: 256, ba: [1, 128], bb: [128, 128], nc: 32, fa: 'e4m3', fb: 'e4m3' },
    { M: 3, N: 130, K: 200, ba: [1, 64], bb: [64, 64], nc: 64, fa: 'e5m2', fb: 'e4m3' },
    { M: 9, N: 4, K: 77, ba: [2, 16], bb: [3, 16], nc: 8, fa: 'e4m3', fb: 'e5m2' },
    { M: 40, N: 33, K: 75, ba: [1, 25], bb: [5, 25], nc: 25, fa: 'e4m3', fb: 'e4m3' },
    { M: 2, N: 3, K: 256, ba: [1, 256], bb: [128, 256], nc: Infinity, fa: 'e4m3', fb: 'e4m3' },
  ] as const;
  for (const c of cases) {
    it(`[${c.M}, ${c.K}] x [${c.N}, ${c.K}]ᵀ, blocks ${c.ba}/${c.bb}, promotion ${c.nc}, ${c.fa} x ${c.fb}`, async (t) => {
      if (!backend) return t.skip(reason);
      await expectFp8GemmMatchesReference(backend, c, rand);
    });
  }

  it('quantizeBlockwise on the GPU is bit-exact with core (codes and scales), fp32 and ue8m0 scales', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend;
    const x = rand(37 * 300, 9);
    for (const scaleFormat of ['fp32', 'ue8m0'] as const) {
      for (const format of ['e4m3', 'e5m2'] as const) {
        const ref = quantizeBlockwise(x, [37, 300], [1, 128], { format, scaleFormat });
        const id = b.write(x, 'f32', [37, 300]);
        const q = b.quantizeBlockwise({ dataId: id, shape: [37, 300], dtype: 'f32' }, [1, 128], { format, scaleFormat });
        const codes = await b.read({ dataId: q.codes, shape: [37, 300], dtype: format });
        const scales = (await b.read({ dataId: q.scales, shape: [37, 3], dtype: 'f32' })) as Float32Array;
        expect(codes).toEqual(ref.codes);
        expect(new Uint32Array(scales.buffer)).toEqual(new Uint32Array(ref.scales.buffer));
        for (const i of [id, q.codes, q.scales]) b.release(i);
      }
    }
  });
});
