import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '../src/index.js';

let backend: CpuBackend;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
});
afterAll(() => backend.dispose());

// Deterministic PRNG of the test (independent of kiln's generator).
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return (s >>> 8) / 16777216;
  };
}

interface Spec {
  shape: number[];
  /** Values drawn from [lo, hi). */
  lo?: number;
  hi?: number;
}

/**
 * Central finite differences (f32 forward, eps 1e-2 scaled to |x|) against valueAndGrads on a
 * random projection of the output, at up to `probes` random positions per input.
 */
function gradcheck(name: string, f: (xs: k.Tensor[]) => k.Tensor, specs: Spec[], seed = 1, tol = 3e-3, probes = 24): void {
  const r = rng(seed);
  const values = specs.map((s) => Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => (s.lo ?? -1) + ((s.hi ?? 1) - (s.lo ?? -1)) * r()));
  const probe = (() => {
    const out = k.noGrad(() => k.tidy(() => f(values.map((v, i) => k.tensor(v, specs[i].shape)))));
    const w = Float32Array.from({ length: out.size }, () => r() * 2 - 1);
    const shape = out.shape;
    out.dispose();
    return { w, shape };
  })();
  const loss = (xs: k.Tensor[]) => k.sum(k.mul(k.cast(f(xs), 'f32'), k.tensor(probe.w, probe.shape)));
  const evalLoss = (vals: Float32Array[]) =>
    k.noGrad(() => k.tidy(() => Number(k.cast(loss(vals.map((v, i) => k.tensor(v, specs[i].shape))), 'f32').valuesSync()[0])));
  const before = k.memory().tensors;
  const params = values.map((v, i) => k.tensor(v, specs[i].shape));
  const { value, grads } = k.valueAndGrads(() => loss(params), params);
  const analytic = grads.map((g) => g.valuesSync() as Float32Array);
  value.dispose();
  for (const t of [...params, ...grads]) t.dispose();
  expect(k.memory().tensors, `${name}: tensors leaked by valueAndGrads`).toBe(before);
  for (let i = 0; i < values.length; i++) {
    const g = analytic[i];
    let scale = 1e-3;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    const positions = values[i].length <= probes ? [...values[i].keys()] : Array.from({ length: probes }, () => Math.floor(r() * values[i].length));
    for (const p of positions) {
      const x0 = values[i][p];
      const eps = 1e-2 * Math.max(1, Math.abs(x0));
      const plus = values.map((v) => v.slice());
      const minus = values.map((v) => v.slice());
      plus[i][p] = x0 + eps;
      minus[i][p] = x0 - eps;
      const numeric = (evalLoss(plus) - evalLoss(minus)) / (plus[i][p] - minus[i][p]);
      const err = Math.abs(numeric - g[p]);
      if (!(err <= tol * scale + tol * Math.abs(numeric))) {
        throw new Error(`${name}: input ${i} element ${p}: analytic ${g[p]}, numeric ${numeric} (scale ${scale})`);
      }
    }
  }
}

describe('autograd: gradient checks against central finite differences', () => {
  const cases: Array<[string, (xs: k.Tensor[]) => k.Tensor, Spec[]]> = [
    ['add broadcast', ([a, b]) => k.add(a, b), [{ shape: [3, 4] }, { shape: [4] }]],
    ['sub broadcast', ([a, b]) => k.sub(a, b), [{ shape: [2, 1, 3] }, { shape: [4, 1] }]],
    ['mul', ([a, b]) => k.mul(a, b), [{ shape: [5, 3] }, { shape: [5, 1] }]],
    ['div', ([a, b]) => k.div(a, b), [{ shape: [4, 3] }, { shape: [3], lo: 0.5, hi: 2 }]],
    ['pow', ([a, b]) => k.pow(a, b), [{ shape: [6], lo: 0.5, hi: 2 }, { shape: [6], lo: -1, hi: 2 }]],
    ['maximum/minimum', ([a, b]) => k.add(k.maximum(a, b), k.mul(k.minimum(a, b), 2)), [{ shape: [7] }, { shape: [7] }]],
    ['exp/log/sqrt/rsqrt', ([a]) => k.add(k.add(k.exp(a), k.log(a)), k.add(k.sqrt(a), k.rsqrt(a))), [{ shape: [9], lo: 0.5, hi: 2 }]],
    ['sin/cos/tanh/sigmoid/erf', ([a]) => k.add(k.add(k.sin(a), k.cos(a)), k.add(k.tanh(a), k.add(k.sigmoid(a), k.erf(a)))), [{ shape: [3, 5] }]],
    ['abs/square/reciprocal/neg/relu', ([a]) => k.add(k.add(k.abs(a), k.square(a)), k.add(k.neg(k.relu(a)), k.reciprocal(k.add(k.square(a), 1)))), [{ shape: [11] }]],
    ['where', ([c, a, b]) => k.where(k.greater(c, 0), a, b), [{ shape: [4, 3] }, { shape: [4, 3] }, { shape: [3] }]],
    ['sum/mean over axes', ([a]) => k.add(k.sum(a, [0, 2], { keepDims: true }), k.mean(a, 1, { keepDims: true })), [{ shape: [2, 3, 4] }]],
    ['max/min reductions', ([a]) => k.add(k.max(a, -1), k.min(a, 0)), [{ shape: [4, 4] }]],
    ['prod', ([a]) => k.prod(a, 1), [{ shape: [3, 4], lo: 0.5, hi: 1.5 }]],
    ['variance', ([a]) => k.variance(a, -1), [{ shape: [3, 7] }]],
    ['matmul', ([a, b]) => k.matmul(a, b), [{ shape: [3, 5] }, { shape: [5, 4] }]],
    ['matmul transposed, batched with broadcast', ([a, b]) => k.matmul(a, b, { transposeA: true, transposeB: true }), [{ shape: [2, 5, 3] }, { shape: [4, 5] }]],
    ['linear with bias', ([x, w, b]) => k.linear(x, w, b), [{ shape: [2, 3, 6] }, { shape: [4, 6] }, { shape: [4] }]],
    ['reshape/transpose/slice/concat', ([a, b]) => k.concat([k.transpose(k.reshape(a, [3, 4])), k.slice(b, [1, 0], [4, -1])], 1), [{ shape: [12] }, { shape: [6, 2] }]],
    ['stack/split/broadcastTo/clone', ([a]) => { const [p, q] = k.split(a, 2, 1); return k.add(k.stack([p, k.clone(q)]), k.broadcastTo(k.sum(a, 1, { keepDims: true }), [3, 2])); }, [{ shape: [3, 4] }]],
    ['softmax (fused) and logSoftmax (fused)', ([a]) => k.add(k.softmax(a), k.logSoftmax(a)), [{ shape: [3, 6] }]],
    ['softmax over a non-last axis (composed)', ([a]) => k.softmax(a, 0), [{ shape: [4, 3] }]],
    ['logSumExp', ([a]) => k.logSumExp(a, -1), [{ shape: [2, 5] }]],
    ['rmsNorm (fused)', ([x, w]) => k.rmsNorm(x, w, 1e-6), [{ shape: [3, 8] }, { shape: [8] }]],
    ['swiglu (fused), silu, gelu', ([g, u]) => k.add(k.swiglu(g, u), k.add(k.silu(g), k.gelu(u))), [{ shape: [2, 5] }, { shape: [2, 5] }]],
    ['rotary, interleaved and half', ([x, c, s]) => k.add(k.rotary(x, c, s), k.rotary(x, c, s, { layout: 'half' })), [{ shape: [2, 3, 8] }, { shape: [3, 4] }, { shape: [3, 4] }]],
    ['clamp', ([a]) => k.clamp(a, -0.5, 0.5), [{ shape: [10] }]],
  ];
  for (const [name, f, specs] of cases) it(name, () => gradcheck(name, f, specs, name.length * 7919));

  it('gather / indexSelect / scatterAdd / indexAdd / crossEntropy', () => {
    const idx = k.tensor([2, 0, 1, 2], [4], 'i32');
    const g2 = k.tensor([[1, 0], [2, 2], [0, 1]], [3, 2], 'i32');
    const targets = k.tensor([1, 4, 0], [3], 'i32');
    try {
      gradcheck('gather', ([x]) => k.gather(x, 1, g2), [{ shape: [3, 3] }]);
      gradcheck('indexSelect (duplicates)', ([x]) => k.indexSelect(x, 0, idx), [{ shape: [3, 2] }]);
      gradcheck('scatterAdd', ([b, s]) => k.scatterAdd(b, 1, g2, s), [{ shape: [3, 3] }, { shape: [3, 2] }]);
      gradcheck('indexAdd (duplicates)', ([b, s]) => k.indexAdd(b, 0, idx, s), [{ shape: [3, 2] }, { shape: [4, 2] }]);
      gradcheck('crossEntropy', ([logits]) => k.crossEntropy(logits, targets), [{ shape: [3, 5] }]);
    } finally {
      k.dispose([idx, g2, targets]);
    }
  });

  it('topk: gradient flows to the selected values only (fixed routing decision)', () => {
    // Offsets 0.5 apart with inputs scaled into +-0.1 keep the selection fixed under the probes.
    const sep = k.tensor([0, 2.5, 0.5, 2, 1, 1.5], [6]);
    try {
      gradcheck('topk values', ([x]) => k.topk(k.add(k.mul(x, 0.1), sep), 3).values, [{ shape: [3, 6] }]);
    } finally {
      sep.dispose();
    }
  });

  it('casts to low precision pass gradients straight through', () => {
    const a = k.tensor([0.1, -2.3, 7.77]);
    const { value, grads } = k.valueAndGrads(() => k.sum(k.mul(k.cast(k.cast(a, 'bf16'), 'f32'), 3)), [a]);
    expect(Array.from(grads[0].valuesSync())).toEqual([3, 3, 3]);
    k.dispose([a, value, grads]);
  });

  it('accumulates gradients of a parameter used several times, and gives zeros to unused ones', () => {
    const a = k.tensor([1, 2, 3]);
    const unused = k.tensor([5]);
    const { value, grads } = k.valueAndGrads(() => k.sum(k.add(k.mul(a, a), a)), [a, unused]);
    expect(Array.from(grads[0].valuesSync())).toEqual([3, 5, 7]);
    expect(Array.from(grads[1].valuesSync())).toEqual([0]);
    k.dispose([a, unused, value, grads]);
  });

  it('noGrad records nothing and tidy inside f is safe', () => {
    const a = k.tensor([1, 2]);
    const { value, grads } = k.valueAndGrads(() => k.tidy(() => k.sum(k.mul(k.noGrad(() => k.mul(a, 10)), a))), [a]);
    // noGrad part is a constant: d/da sum(c * a) = c = 10a (held fixed).
    expect(Array.from(grads[0].valuesSync())).toEqual([10, 20]);
    k.dispose([a, value, grads]);
  });
});
