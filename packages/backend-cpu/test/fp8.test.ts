import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dequantizeBlockwise,
  fp8GemmReference,
  matmulFp8,
  memory,
  quantize,
  quantizeBlockwise,
  QuantizedTensor,
  randomNormal,
  ShapeError,
  tensor,
  tidy,
  useBackend,
  WEIGHT_BLOCK,
} from '@kiln/core';
import { CpuBackend } from '../src/index.js';

let backend: CpuBackend;
beforeAll(() => {
  backend = new CpuBackend();
  useBackend(backend);
});
afterAll(() => backend.dispose());

function ref64(a: Float32Array, b: Float32Array, M: number, N: number, K: number): { c: Float64Array; mag: Float64Array } {
  const c = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      let t = 0;
      for (let k = 0; k < K; k++) {
        s += a[m * K + k] * b[n * K + k];
        t += Math.abs(a[m * K + k] * b[n * K + k]);
      }
      c[m * N + n] = s;
      mag[m * N + n] = t;
    }
  return { c, mag };
}

describe('cpu FP8', () => {
  it('quantize on the backend is bit-exact with quantizeBlockwise (both tilings, both scale formats)', async () => {
    for (const [rows, cols, block] of [[5, 300, [1, 128]], [200, 130, [128, 128]]] as const) {
      for (const scaleFormat of ['fp32', 'ue8m0'] as const) {
        const x = randomNormal([rows, cols], 11);
        const host = quantizeBlockwise((await x.data()) as Float32Array, [rows, cols], [...block], { scaleFormat });
        const q = quantize(x, { block, scaleFormat });
        expect(Array.from((await q.codes.data()) as Uint8Array)).toEqual(Array.from(host.codes));
        expect(Array.from((await q.scales.data()) as Float32Array)).toEqual(Array.from(host.scales));
        const deq = (await q.dequantize().data()) as Float32Array;
        expect(Array.from(deq)).toEqual(Array.from(dequantizeBlockwise(host.codes, host.scales, [rows, cols], [...block])));
        q.dispose();
        x.dispose();
      }
    }
  });

  for (const [M, N, K] of [[1, 1, 1], [3, 5, 127], [17, 130, 300], [64, 256, 512], [33, 129, 1000]] as const) {
    it(`matmulFp8 ${M}x${N}x${K} matches the float64 product of the dequantised operands`, async () => {
      const before = memory().tensors;
      tidy(() => {
        const x = randomNormal([M, K], 1);
        const w = randomNormal([N, K], 2, 0, 0.05);
        const qa = quantize(x);
        const qb = quantize(w, { block: WEIGHT_BLOCK });
        const out = matmulFp8(qa, qb).dataSync() as Float32Array;
        const da = qa.dequantize().dataSync() as Float32Array;
        const db = qb.dequantize().dataSync() as Float32Array;
        const { c, mag } = ref64(da, db, M, N, K);
        let bad = 0;
        for (let i = 0; i < M * N; i++) {
          // f32 accumulation over K plus the per-block scale products: a few f32 ulps of sum|ab|.
          if (!(Math.abs(out[i] - c[i]) <= 8 * 2 ** -24 * (mag[i] + Math.abs(c[i])) * Math.ceil(K / 128) + 1e-30)) bad++;
        }
        expect(bad).toBe(0);
        // The fast path agrees with core's scalar definition to f32 summation-order noise.
        const hostRef = fp8GemmReference(
          { codes: qa.codes.dataSync() as Uint8Array, scales: qa.scales.dataSync() as Float32Array, shape: [M, K], block: [1, 128] },
          { codes: qb.codes.dataSync() as Uint8Array, scales: qb.scales.dataSync() as Float32Array, shape: [N, K], block: [128, 128] },
        );
        for (let i = 0; i < M * N; i++) expect(Math.abs(out[i] - hostRef[i])).toBeLessThanOrEqual(8 * 2 ** -24 * (mag[i] + 1e-30) * Math.ceil(K / 128));
      });
      expect(memory().tensors).toBe(before);
    });
  }

  it('the limited accumulator without promotion loses accuracy that promotion every 128 restores', () => {
    const K = 4096;
    tidy(() => {
      const x = randomNormal([8, K], 5);
      const w = randomNormal([8, K], 6);
      // One scale per row over all of K, so that "never promote" is well defined.
      const qa = quantize(x, { block: [1, K] });
      const qb = quantize(w, { block: [8, K] });
      const exact = matmulFp8(qa, qb, { promotionInterval: Infinity }).dataSync() as Float32Array;
      const relErr = (opts: Parameters<typeof matmulFp8>[2]) => {
        const got = matmulFp8(qa, qb, opts).dataSync() as Float32Array;
        let num = 0;
        let den = 0;
        for (let i = 0; i < got.length; i++) {
          num += Math.abs(got[i] - exact[i]);
          den += Math.abs(exact[i]);
        }
        return num / den;
      };
      const noPromotion = relErr({ promotionInterval: Infinity, accumulatorMantissaBits: 13 });
      const promoted = relErr({ promotionInterval: 128, accumulatorMantissaBits: 13 });
      expect(noPromotion).toBeGreaterThan(0.005);
      expect(promoted).toBeLessThan(noPromotion / 20);
    });
  });

  it('refuses mismatched operands with typed errors', () => {
    tidy(() => {
      const qa = quantize(randomNormal([4, 256], 1));
      const qb = quantize(randomNormal([8, 128], 2), { block: WEIGHT_BLOCK });
      expect(() => matmulFp8(qa, qb)).toThrow(ShapeError);
      expect(() => matmulFp8(qa, qb)).toThrow(/K differs/);
      expect(() => quantize(tensor([1, 2, 3]))).toThrow(/must be 2-D/);
      const q = quantize(randomNormal([256, 256], 3), { block: WEIGHT_BLOCK });
      expect(() => q.sliceRows(64, 128)).toThrow(/cut through a 128-row scale block/);
      expect(q.sliceRows(128, 128).shape).toEqual([128, 256]);
      expect(() => new QuantizedTensor(q.codes, q.codes, WEIGHT_BLOCK)).toThrow(/scales must be f32/);
    });
  });
});

import { saveQuantized, loadQuantized, FormatError } from '@kiln/core';

describe('QuantizedTensor save/load', () => {
  it('round-trips codes, scales, block and scale format through safetensors', async () => {
    const x = randomNormal([130, 300], 9);
    const q = quantize(x, { block: WEIGHT_BLOCK, scaleFormat: 'ue8m0' });
    const bytes = await saveQuantized(q);
    const back = loadQuantized(bytes);
    expect(back.block).toEqual([128, 128]);
    expect(back.scaleFormat).toBe('ue8m0');
    expect(back.shape).toEqual([130, 300]);
    expect(Array.from((await back.codes.data()) as Uint8Array)).toEqual(Array.from((await q.codes.data()) as Uint8Array));
    expect(Array.from((await back.scales.data()) as Float32Array)).toEqual(Array.from((await q.scales.data()) as Float32Array));
    expect(() => loadQuantized(bytes.subarray(0, bytes.length - 10))).toThrow(FormatError);
    for (const t of [x, q, back]) t.dispose();
  });
});
