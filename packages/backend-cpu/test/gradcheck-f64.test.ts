import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { gradcheck, observeGradchecks, runConformance, type GradcheckReport } from '@kiln/conformance';
import { CpuBackend, createCpuBackend, createCpuCollectiveGroup, joinCpuCollective } from '../src/index.js';
import { defineLayerGradchecks } from './layer-gradchecks.js';

// Gradient checks in float64: the CPU backend's float64 reference mode holds f32 tensors as
// float64, so gradcheck takes central differences with a 1e-6 step and a 1e-6 tolerance.

const reports: GradcheckReport[] = [];
beforeAll(() => observeGradchecks((r) => reports.push(r)));
afterAll(() => {
  observeGradchecks(undefined);
  const f64 = reports.filter((r) => r.float64);
  const worst = f64.reduce((m, r) => Math.max(m, r.maxError), 0);
  console.info(`float64 gradient checks: ${f64.length} passed, largest |numeric - analytic| / gradient scale ${worst.toExponential(2)}`);
  for (const r of f64) console.info(`  ${r.name}: ${r.maxError.toExponential(2)} over ${r.probes} probes`);
});

// (a) the conformance suite's autograd area alone, on the float64 backend (gradcheck sees
// f32Precision 'f64' and switches to float64 differences by itself).
runConformance(() => new CpuBackend({ float64: true }), {
  name: 'cpu, float64 reference mode',
  areas: ['autograd'],
});

describe('float64 reference mode of the CPU backend', () => {
  let backend: CpuBackend;
  beforeAll(() => {
    backend = createCpuBackend({ float64: true });
    k.useBackend(backend);
  });
  afterAll(() => backend.dispose());

  it('holds f32 tensors as float64 and computes without rounding to f32', () => {
    expect(backend.f32Precision).toBe('f64');
    expect(new CpuBackend().f32Precision).toBe('f32');
    const third = k.div(k.scalar(1), k.scalar(3));
    const v = third.valuesSync();
    expect(v).toBeInstanceOf(Float64Array);
    expect(v[0]).toBe(1 / 3);
    expect(Math.fround(v[0])).not.toBe(v[0]);
    // a long float64 sum and a matmul keep float64 precision (f32 would lose 1e-8 at once)
    const x = k.add(k.scalar(1), k.scalar(1e-12));
    expect(x.valuesSync()[0]).toBe(1 + 1e-12);
    const a = k.mul(k.ones([3, 4]), 1 / 3);
    const prod = k.matmul(a, k.transpose(a)).valuesSync();
    expect(prod).toBeInstanceOf(Float64Array);
    for (const p of prod) expect(p).toBe((1 / 3) * (1 / 3) + (1 / 3) * (1 / 3) + (1 / 3) * (1 / 3) + (1 / 3) * (1 / 3));
    expect(k.exp(third).valuesSync()[0]).toBe(Math.exp(1 / 3));
    expect(k.softmax(k.tensor([0, 1])).valuesSync()[1]).toBeCloseTo(Math.E / (1 + Math.E), 15);
  });

  it('moves float64 values bit-exactly through layout and indexing ops', () => {
    const base = k.div(k.arange(0, 24, 1, 'f32'), 7);
    const want = Array.from({ length: 24 }, (_, i) => i / 7);
    const x = k.reshape(base, [2, 3, 4]);
    expect(Array.from(x.valuesSync())).toEqual(want);
    const t = k.transpose(x, [2, 0, 1]).arraySync() as number[][][];
    expect(t[3][1][2]).toBe(want[1 * 12 + 2 * 4 + 3]);
    expect(Array.from(k.slice(x, [1, 1, 1], [1, 2, 2]).valuesSync())).toEqual([17 / 7, 18 / 7, 21 / 7, 22 / 7]);
    expect(Array.from(k.concat([k.slice(x, [0, 0, 0], [1, 1, 2]), k.slice(x, [1, 2, 2], [1, 1, 2])], 2).valuesSync())).toEqual([0, 1 / 7, 22 / 7, 23 / 7]);
    const idx = k.tensor([2, 0, 2], [3], 'i32');
    expect(Array.from(k.indexSelect(k.reshape(base, [6, 4]), 0, idx).valuesSync().slice(0, 5))).toEqual([8 / 7, 9 / 7, 10 / 7, 11 / 7, 0]);
    expect(Array.from(k.indexAdd(k.zeros([3]), 0, idx, k.slice(base, [1], [3])).valuesSync())).toEqual([2 / 7, 0, 1 / 7 + 3 / 7]);
    expect(Array.from(k.where(k.greater(k.slice(base, [0], [3]), 0.1), k.slice(base, [0], [3]), -1).valuesSync())).toEqual([-1, 1 / 7, 2 / 7]);
  });

  it('refuses collectives (their wire format is f32), naming the mode', async () => {
    const group = createCpuCollectiveGroup(2);
    const c = joinCpuCollective(group, 0);
    await expect(c.allReduce(k.tensor([1, 2]), 'sum', { timeoutMs: 2000 })).rejects.toThrow(/float64 reference mode/);
  });

  it('low-precision dtypes behave as in the default mode (casts to them round through f32)', () => {
    const v = [1 / 3, -2.71828182845, 1e-3, 300.123456789];
    for (const dtype of ['f16', 'bf16', 'e4m3', 'e5m2', 'i32'] as const) {
      const got = Array.from(k.cast(k.cast(k.div(k.tensor(v.map((x) => x * 3)), 3), dtype), 'f32').valuesSync());
      const ref = new CpuBackend();
      const want = Array.from(k.cast(k.cast(k.tensor(v, [4], 'f32', { backend: ref }), dtype), 'f32').valuesSync());
      expect(got).toEqual(want);
    }
  });
});

// (b) every layer gradient check of nn.test.ts, in float64 with the tight tolerance.
/** gradcheck that must run in float64 (fails if the backend rounds). */
const check64 = async (...args: Parameters<typeof gradcheck>) => {
  const r = await gradcheck(args[0], args[1], args[2], { ...args[3], float64: true });
  expect(r.float64).toBe(true);
  expect(r.tol).toBe(1e-6);
  expect(r.maxError).toBeLessThanOrEqual(1e-6);
  return r;
};

describe('nn layer gradient checks in float64', () => {
  let backend: CpuBackend;
  beforeAll(() => {
    backend = new CpuBackend({ float64: true });
    k.useBackend(backend);
  });
  afterAll(() => backend.dispose());

  defineLayerGradchecks(check64);
});

describe('the float64 check is meaningful', () => {
  // d/dx x^2 = 2x, deliberately off by 1e-4 relative.
  const slightlyWrongSquare = (x: k.Tensor) => {
    const y = k.noGrad(() => k.square(x));
    k.recordGrad('slightlyWrongSquare', [x], y, (dy, [xs]) => [k.mul(dy, k.mul(xs, 2 * (1 + 1e-4)))]);
    return y;
  };
  const f = ([x]: k.Tensor[]) => slightlyWrongSquare(x);
  const specs = [{ shape: [5] }];

  it('a gradient off by 1e-4 relative passes the old f32 check but fails in float64', async () => {
    const f32 = new CpuBackend();
    k.useBackend(f32);
    try {
      const r = await gradcheck('off by 1e-4 (f32)', f, specs);
      expect(r.float64).toBe(false);
      await expect(gradcheck('off by 1e-4 (f32, float64 forced)', f, specs, { float64: true })).rejects.toThrow(/needs a backend that holds f32 as float64/);
    } finally {
      f32.dispose();
    }
    const f64 = new CpuBackend({ float64: true });
    k.useBackend(f64);
    try {
      await expect(gradcheck('off by 1e-4 (float64)', f, specs)).rejects.toThrow(/analytic .* numeric/);
      // the correct rule passes at the same tolerance
      const r = await gradcheck('square (float64)', ([x]) => k.square(x), specs);
      expect(r.float64).toBe(true);
      expect(r.maxError).toBeLessThan(1e-8);
    } finally {
      f64.dispose();
    }
  });
});
