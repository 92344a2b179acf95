/**
 * The fused row kernels (softmax, logSoftmax, rmsNorm) with a workgroup per long row
 * (wgsl/rows-wide.ts) against float64: both choices ('wide' and, where the device offers the
 * feature, 'subgroups'; the one-invocation-per-row kernel is the conformance suite's on
 * llvmpipe and there its compensated sums are not kept, so it gets the suite's looser bounds), row lengths that do and do not fill the
 * workgroup's stride, rows with -inf, +inf and NaN entries, a stale poisoned buffer of the
 * output's size class, and more rows than one dispatch dimension holds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, BackendError } from '@kiln/core';
import { WebGpuBackend, type RowKernels } from '@kiln/backend-webgpu';
import { seededUniform } from './seeded.js';

process.env.EGL_PLATFORM ??= 'surfaceless';

const backends = new Map<RowKernels, WebGpuBackend>();
let reason = '';
beforeAll(async () => {
  try {
    const probe = await WebGpuBackend.create({ rowKernels: 'wide' });
    backends.set('wide', probe);
    if (probe.device.details?.subgroups) backends.set('subgroups', await WebGpuBackend.create({ rowKernels: 'subgroups' }));
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
  }
});
afterAll(() => {
  for (const b of backends.values()) b.dispose();
});


type Kind = 'softmax' | 'logSoftmax' | 'rmsNorm';

/**
 * float64 reference of one row kernel over rows of len, and each element's error budget in f32
 * ulps of 2^-24: a few ulps of the result, plus for softmax kinds the rounding of the argument
 * x - m (exp turns its absolute error into a relative one) and of log(sum).
 */
function reference(kind: Kind, x: Float32Array, len: number, w: Float32Array, eps: number): { ref: Float64Array; budget: Float64Array } {
  const ref = new Float64Array(x.length);
  const budget = new Float64Array(x.length);
  for (let r = 0; r < x.length / len; r++) {
    const row = Array.from(x.subarray(r * len, (r + 1) * len));
    if (kind === 'rmsNorm') {
      const ms = row.reduce((a, v) => a + v * v, 0) / len;
      const k = 1 / Math.sqrt(ms + eps);
      row.forEach((v, j) => {
        ref[r * len + j] = v * k * w[j];
        budget[r * len + j] = 16 * Math.abs(ref[r * len + j]);
      });
      continue;
    }
    const m = row.some(Number.isNaN) ? NaN : Math.max(...row);
    const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
    row.forEach((v, j) => {
      const y = kind === 'softmax' ? Math.exp(v - m) / s : v - m - Math.log(s);
      ref[r * len + j] = y;
      // (an exact zero, exp(-inf), gets no budget: 0 * inf would be NaN)
      budget[r * len + j] = y === 0 ? 0 : kind === 'softmax' ? Math.abs(y) * (8 + 2 * Math.abs(v - m)) : 8 * Math.abs(y) + 2 * Math.abs(v - m) + 8 * Math.abs(Math.log(s));
    });
  }
  return { ref, budget };
}

async function check(b: WebGpuBackend, kind: Kind, rows: number, len: number, special = false): Promise<void> {
  const name = b.rowKernels;
  const x = seededUniform(rows * len, 7 + len + rows, kind === 'rmsNorm' ? 3 : 20);
  if (special) {
    // row 0: some -inf; row 1: a NaN; row 2: a +inf; row 3: all -inf (softmax kinds only)
    x[3] = -Infinity;
    x[len - 1] = -Infinity;
    x[len + 5] = NaN;
    x[2 * len + 7] = Infinity;
    x.fill(-Infinity, 3 * len, 4 * len);
  }
  const w = seededUniform(len, 99, 2);
  const eps = 1e-6;
  const shape = [rows, len];
  const xi = b.write(x, 'f32', shape);
  const wi = b.write(w, 'f32', [len]);
  // poison: a released buffer of the output's size class holding NaN must not leak through
  b.release(b.write(new Float32Array(rows * len).fill(NaN), 'f32', shape));
  const xv = { dataId: xi, shape, dtype: 'f32' as const };
  const out =
    kind === 'rmsNorm' ? b.fused.rmsNorm!(xv, { dataId: wi, shape: [len], dtype: 'f32' }, eps) : kind === 'softmax' ? b.fused.softmax!(xv) : b.fused.logSoftmax!(xv);
  const got = (await b.read({ dataId: out, shape, dtype: 'f32' })) as Float32Array;
  const { ref, budget } = reference(kind, x, len, w, eps);
  let worst = 0;
  let where = -1;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i];
    const g = got[i];
    if (Number.isNaN(r) || !Number.isFinite(r)) {
      if (!Object.is(g, r) && !(Number.isNaN(r) && Number.isNaN(g))) {
        worst = Infinity;
        where = i;
        break;
      }
      continue;
    }
    const err = Math.abs(g - r) / (budget[i] * 2 ** -24 + 1e-37);
    if (!(err <= worst)) {
      worst = Number.isNaN(err) ? Infinity : err;
      where = i;
    }
  }
  expect(worst, `${name} ${kind} ${rows}x${len} at ${where}: got ${got[where]}, want ${ref[where]} (x ${x[where]})`).toBeLessThanOrEqual(1);
  for (const id of [xi, wi, out]) b.release(id);
}

describe('WebGPU fused row kernels, a workgroup per long row, against float64', () => {
  for (const kind of ['softmax', 'logSoftmax', 'rmsNorm'] as const) {
    it(`${kind}: rows of 128 .. 4099 elements, every wide row-kernel choice of the adapter`, async (t) => {
      if (backends.size === 0) return t.skip(reason);
      for (const [name, b] of backends) {
        expect(b.rowKernels).toBe(name);
        for (const [rows, len] of [
          [1, 128],
          [3, 300],
          [5, 1000],
          [2, 4099],
          [70, 129],
        ])
          await check(b, kind, rows, len);
      }
    });
  }

  it('softmax and logSoftmax: -inf entries, NaN and +inf rows, a row of -inf', async (t) => {
    if (backends.size === 0) return t.skip(reason);
    for (const b of backends.values()) for (const kind of ['softmax', 'logSoftmax'] as const) await check(b, kind, 4, 200, true);
  });

  it('more rows than one dispatch dimension holds (folded into y)', async (t) => {
    const b = backends.get('wide');
    if (!b) return t.skip(reason);
    await check(b, 'softmax', 65537, 128);
  });

  it('takes the one-invocation-per-row kernel when told, refuses an unknown choice and subgroups without the feature', async (t) => {
    const b = backends.get('wide');
    if (!b) return t.skip(reason);
    const row = await WebGpuBackend.create({ rowKernels: 'row' });
    expect(row.rowKernels).toBe('row');
    expect(row.device.details?.rowKernels).toBe('row');
    row.dispose();
    await expect(WebGpuBackend.create({ rowKernels: 'fast' as RowKernels })).rejects.toThrow(ArgumentError);
    if (!b.device.details?.subgroups) await expect(WebGpuBackend.create({ rowKernels: 'subgroups' })).rejects.toThrow(/subgroups/);
  });
});
