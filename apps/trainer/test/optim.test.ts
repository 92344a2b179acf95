import { ArgumentError, bf16BitsToF32, f32ToBf16Bits, tensor, useBackend, type Tensor } from '@kiln/core';
import { createCpuBackend } from '@kiln/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, GradAccumulator, clipGradNorm } from '../src/optim/adamw.js';
import { warmupConstantDecay, warmupCosine } from '../src/optim/schedule.js';

beforeAll(() => useBackend(createCpuBackend()));

const bf16 = (x: number): number => bf16BitsToF32(f32ToBf16Bits(x));

/** Independent float64 AdamW (PyTorch's formulation), moments optionally rounded to BF16 after each update. */
function referenceAdamW(p0: number[][], gradsPerStep: number[][][], lrs: number[], decays: boolean[], roundMoments: boolean) {
  const [b1, b2, eps, wd] = [0.9, 0.95, 1e-8, 0.1];
  const p = p0.map((x) => x.slice());
  const m = p0.map((x) => x.map(() => 0));
  const v = p0.map((x) => x.map(() => 0));
  gradsPerStep.forEach((grads, s) => {
    const t = s + 1;
    p.forEach((param, k) => {
      for (let i = 0; i < param.length; i++) {
        const g = grads[k][i];
        m[k][i] = b1 * m[k][i] + (1 - b1) * g;
        v[k][i] = b2 * v[k][i] + (1 - b2) * g * g;
        if (roundMoments) (m[k][i] = bf16(m[k][i])), (v[k][i] = bf16(v[k][i]));
        const mhat = m[k][i] / (1 - b1 ** t);
        const vhat = v[k][i] / (1 - b2 ** t);
        if (decays[k]) param[i] *= 1 - lrs[s] * wd;
        param[i] -= (lrs[s] * mhat) / (Math.sqrt(vhat) + eps);
      }
    });
  });
  return p;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

describe('AdamW', () => {
  const rand = lcg(42);
  const w0 = Array.from({ length: 12 }, () => rand());
  const b0 = Array.from({ length: 3 }, () => rand());
  const steps = Array.from({ length: 6 }, () => [Array.from({ length: 12 }, () => rand() * 0.5), Array.from({ length: 3 }, () => rand() * 2)]);
  const lrs = [1e-2, 2e-2, 3e-2, 3e-2, 2e-2, 1e-2];
  const params = (): Map<string, Tensor> =>
    new Map([
      ['w', tensor(w0, [4, 3])],
      ['b', tensor(b0, [3])],
    ]);

  for (const momentDtype of ['f32', 'bf16'] as const) {
    it(`matches a float64 reference (${momentDtype} moments); weight decay only on 2-D params`, async () => {
      const opt = await AdamW.create(params(), { momentDtype });
      for (let s = 0; s < steps.length; s++) {
        const r = await opt.step(new Map([['w', Float32Array.from(steps[s][0])], ['b', Float32Array.from(steps[s][1])]]), lrs[s]);
        expect(r.applied).toBe(true);
      }
      const ref = referenceAdamW([w0, b0], steps, lrs, [true, false], momentDtype === 'bf16');
      const w = opt.master('w'), b = opt.master('b');
      // f32 master arithmetic vs f64: a few ulps of the parameter; BF16 moments are rounded identically in both.
      for (let i = 0; i < 12; i++) expect(Math.abs(w[i] - ref[0][i])).toBeLessThan(2e-6);
      for (let i = 0; i < 3; i++) expect(Math.abs(b[i] - ref[1][i])).toBeLessThan(2e-6);
      // Without the rounding the BF16 run would be measurably different from the f32 reference.
      if (momentDtype === 'bf16') {
        const f32ref = referenceAdamW([w0, b0], steps, lrs, [true, false], false);
        const diff = Math.max(...w0.map((_, i) => Math.abs(f32ref[0][i] - ref[0][i])));
        expect(diff).toBeGreaterThan(1e-6);
      }
      const out = opt.params();
      expect(out.get('w')!.shape).toEqual([4, 3]);
      expect(Array.from(await out.get('b')!.values())).toEqual(Array.from(b));
    });
  }

  it('skips (and counts) steps with NaN/Inf gradients, changing nothing', async () => {
    const opt = await AdamW.create(params());
    await opt.step(new Map([['w', tensor(steps[0][0], [4, 3])], ['b', tensor(steps[0][1], [3])]]), 1e-2);
    const before = opt.toHost();
    const bad = steps[1][0].slice();
    bad[5] = Number.NaN;
    const r = await opt.step(new Map([['w', Float32Array.from(bad)], ['b', Float32Array.from([1, Infinity, 0])]]), 1e-2);
    expect(r.applied).toBe(false);
    expect(opt.skipped).toBe(1);
    expect(opt.stepCount).toBe(1);
    const after = opt.toHost();
    expect(after.params.w.master).toEqual(before.params.w.master);
    expect(after.params.w.m).toEqual(before.params.w.m);
  });

  it('toHost/fromHost resumes bit-exactly', async () => {
    const a = await AdamW.create(params(), { maxGradNorm: 1 });
    const g = (s: number) => new Map([['w', Float32Array.from(steps[s][0])], ['b', Float32Array.from(steps[s][1])]]);
    for (let s = 0; s < 3; s++) await a.step(g(s), lrs[s]);
    const b = AdamW.fromHost(structuredClone(a.toHost()), { maxGradNorm: 1 });
    for (let s = 3; s < 6; s++) {
      await a.step(g(s), lrs[s]);
      await b.step(g(s), lrs[s]);
    }
    expect(b.master('w')).toEqual(a.master('w'));
    expect(b.toHost()).toEqual(a.toHost());
  });

  it('rejects missing or mis-sized gradients', async () => {
    const opt = await AdamW.create(params());
    await expect(opt.step(new Map([['w', new Float32Array(12)]]), 1e-3)).rejects.toThrow(ArgumentError);
    await expect(opt.step(new Map([['w', new Float32Array(11)], ['b', new Float32Array(3)]]), 1e-3)).rejects.toThrow(ArgumentError);
  });
});

describe('gradient clipping and accumulation', () => {
  it('clips by global norm and returns the pre-clip norm', () => {
    const a = Float32Array.from([3, 0]), b = Float32Array.from([0, 4]);
    expect(clipGradNorm([a, b], 1)).toBeCloseTo(5, 6);
    expect(Math.hypot(a[0], b[1])).toBeCloseTo(1, 5);
    const c = Float32Array.from([0.3, 0.4]);
    expect(clipGradNorm([c], 1)).toBeCloseTo(0.5, 6);
    expect(Array.from(c)).toEqual([Math.fround(0.3), Math.fround(0.4)]);
    const d = Float32Array.from([Number.NaN]);
    expect(clipGradNorm([d], 1)).toBeNaN();
  });

  it('accumulates micro-batch gradients as their FP32 mean', async () => {
    const acc = new GradAccumulator();
    await acc.add(new Map([['w', tensor([1, 2], [2])]]));
    await acc.add(new Map([['w', tensor([3, 6], [2])]]));
    expect(acc.microBatches).toBe(2);
    expect(Array.from(acc.take().get('w')!)).toEqual([2, 4]);
    expect(acc.microBatches).toBe(0);
  });
});

describe('learning-rate schedules', () => {
  it('warmupCosine: linear warmup, cosine to minLr', () => {
    const o = { peakLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-4 };
    expect(warmupCosine(0, o)).toBeCloseTo(1e-4, 12);
    expect(warmupCosine(9, o)).toBeCloseTo(1e-3, 12);
    expect(warmupCosine(10, o)).toBeCloseTo(1e-3, 12);
    expect(warmupCosine(60, o)).toBeCloseTo(5.5e-4, 12);
    expect(warmupCosine(110, o)).toBeCloseTo(1e-4, 12);
    expect(warmupCosine(500, o)).toBe(1e-4);
  });

  it('warmupConstantDecay: DeepSeek-V3 shape', () => {
    const o = { peakLr: 2.2e-4, warmupSteps: 20, decayStart: 100, decaySteps: 50, minLr: 2.2e-5 };
    expect(warmupConstantDecay(9, o)).toBeCloseTo(1.1e-4, 12);
    expect(warmupConstantDecay(20, o)).toBe(2.2e-4);
    expect(warmupConstantDecay(99, o)).toBe(2.2e-4);
    expect(warmupConstantDecay(125, o)).toBeCloseTo((2.2e-4 + 2.2e-5) / 2, 12);
    expect(warmupConstantDecay(150, o)).toBe(2.2e-5);
    expect(() => warmupConstantDecay(0, { ...o, decayStart: 10 })).toThrow(ArgumentError);
  });
});
