import * as k from '@kiln/core';
import { gradcheck, type GradSpec } from '../gradcheck.js';
import type { Area, CaseDef } from '../harness.js';

/**
 * Gradients through the backend under test: every differentiable op (and the fused kernels'
 * own backward rules) against central finite differences.
 */
type GradCase = [string, (xs: k.Tensor[]) => k.Tensor, GradSpec[]];

const OPS: GradCase[] = [
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
  [
    'stack/split/broadcastTo/clone',
    ([a]) => {
      const [p, q] = k.split(a, 2, 1);
      return k.add(k.stack([p, k.clone(q)]), k.broadcastTo(k.sum(a, 1, { keepDims: true }), [3, 2]));
    },
    [{ shape: [3, 4] }],
  ],
  ['softmax and logSoftmax (fused where the backend has them)', ([a]) => k.add(k.softmax(a), k.logSoftmax(a)), [{ shape: [3, 6] }]],
  ['softmax over a non-last axis (composed)', ([a]) => k.softmax(a, 0), [{ shape: [4, 3] }]],
  ['logSumExp', ([a]) => k.logSumExp(a, -1), [{ shape: [2, 5] }]],
  ['rmsNorm', ([x, w]) => k.rmsNorm(x, w, 1e-6), [{ shape: [3, 8] }, { shape: [8] }]],
  ['swiglu, silu, gelu', ([g, u]) => k.add(k.swiglu(g, u), k.add(k.silu(g), k.gelu(u))), [{ shape: [2, 5] }, { shape: [2, 5] }]],
  ['rotary, interleaved and half', ([x, c, s]) => k.add(k.rotary(x, c, s), k.rotary(x, c, s, { layout: 'half' })), [{ shape: [2, 3, 8] }, { shape: [3, 4] }, { shape: [3, 4] }]],
  ['clamp', ([a]) => k.clamp(a, -0.5, 0.5), [{ shape: [10] }]],
  // the fused path's backward recomputes the probabilities from the kernel's logSumExp, so a
  // wrong logSumExp shows here even though attention returns only its output
  ['attention, causal (Tq = S)', ([q, kk, v]) => k.attention(q, kk, v, { causal: true }), [{ shape: [2, 4, 3] }, { shape: [2, 4, 3] }, { shape: [2, 4, 3] }]],
  [
    'attention, causal offset S - Tq with k/v broadcast over heads',
    ([q, kk, v]) => k.attention(q, kk, v, { causalOffset: 2, scale: 0.8 }),
    [{ shape: [2, 2, 3, 4] }, { shape: [2, 1, 5, 4] }, { shape: [2, 1, 5, 3] }],
  ],
  ['attention, no mask, dk != dv', ([q, kk, v]) => k.attention(q, kk, v, { scale: 1.3 }), [{ shape: [2, 3, 5] }, { shape: [2, 4, 5] }, { shape: [2, 4, 2] }]],
];

const cases: CaseDef[] = [
  ...OPS.map(([name, f, specs]): CaseDef => ({ name: `gradient of ${name} matches central differences`, run: async () => void (await gradcheck(name, f, specs)) })),
  {
    name: 'gradients of gather / indexSelect / scatterAdd / indexAdd (duplicate indices) / crossEntropy',
    async run(c) {
      const idx = c.track(k.tensor([2, 0, 1, 2], [4], 'i32'));
      const g2 = c.track(k.tensor([[1, 0], [2, 2], [0, 1]], [3, 2], 'i32'));
      const targets = c.track(k.tensor([1, 4, 0], [3], 'i32'));
      await gradcheck('gather', ([x]) => k.gather(x, 1, g2), [{ shape: [3, 3] }]);
      await gradcheck('indexSelect', ([x]) => k.indexSelect(x, 0, idx), [{ shape: [3, 2] }]);
      await gradcheck('scatterAdd', ([b, s]) => k.scatterAdd(b, 1, g2, s), [{ shape: [3, 3] }, { shape: [3, 2] }]);
      await gradcheck('indexAdd', ([b, s]) => k.indexAdd(b, 0, idx, s), [{ shape: [3, 2] }, { shape: [4, 2] }]);
      await gradcheck('crossEntropy', ([logits]) => k.crossEntropy(logits, targets), [{ shape: [3, 5] }]);
    },
  },
  {
    name: 'gradient of topk values with a fixed selection (MoE routing)',
    async run(c) {
      // Offsets 0.5 apart with inputs scaled into +-0.1 keep the selection fixed under the probes.
      const sep = c.track(k.tensor([0, 2.5, 0.5, 2, 1, 1.5], [6]));
      await gradcheck('topk values', ([x]) => k.topk(k.add(k.mul(x, 0.1), sep), 3).values, [{ shape: [3, 6] }]);
    },
  },
];

export const autogradArea: Area = { name: 'autograd', cases };
