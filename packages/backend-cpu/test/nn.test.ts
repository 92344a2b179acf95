import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { gradcheck } from '@kiln/conformance';
import { CpuBackend } from '../src/index.js';
import { defineLayerGradchecks, init, mlaConfig, moeConfig, rope, withParams } from './layer-gradchecks.js';

const { nn } = k;

let backend: CpuBackend;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
});
afterAll(() => backend.dispose());

const vals = (t: k.Tensor) => Array.from(t.valuesSync());
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}
const randT = (shape: number[], seed: number, scale = 1) => {
  const r = rng(seed);
  return k.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * scale), shape);
};

describe('nn: YaRN and rotary', () => {
  it('plain inv_freq and the YaRN ramp: high frequencies kept, low ones divided by factor', () => {
    const base = nn.ropeInvFreq(64, 10000);
    expect(base[0]).toBe(1);
    expect(base[1]).toBeCloseTo(10000 ** (-2 / 64), 12);
    const { invFreq, attentionFactor } = nn.yarnInvFreq(64, 10000, { type: 'yarn', factor: 40, originalMaxPositionEmbeddings: 4096, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 1 });
    expect(invFreq[0]).toBe(base[0]);
    expect(invFreq[31]).toBeCloseTo(base[31] / 40, 15);
    expect(attentionFactor).toBe(1);
    // DeepSeek-V3's released config: qk_head_dim 192, factor 40, mscale_all_dim 1.
    const m = 0.1 * Math.log(40) + 1;
    expect(nn.attentionSoftmaxScale(192, { type: 'yarn', factor: 40, originalMaxPositionEmbeddings: 4096, mscaleAllDim: 1 })).toBeCloseTo((m * m) / Math.sqrt(192), 12);
    expect(nn.attentionSoftmaxScale(192)).toBeCloseTo(1 / Math.sqrt(192), 15);
    expect(nn.yarnGetMscale(1, 5)).toBe(1);
  });

  it('interleaved rope = de-interleave then x*cos + rotate_half(x)*sin (transformers), times the attention factor', () => {
    const r = rope();
    const [T, d] = [5, 4];
    const x = randT([1, 1, T, d], 3);
    const y = vals(r.apply(x, 2));
    const xv = vals(x);
    for (let t = 0; t < T; t++) {
      const row = xv.slice(t * d, (t + 1) * d);
      const de = [row[0], row[2], row[1], row[3]];
      const rot = [-de[2], -de[3], de[0], de[1]];
      for (let j = 0; j < d; j++) {
        const ang = Math.fround(Math.fround(t + 2) * Math.fround(r.invFreq[j % 2]));
        const want = de[j] * Math.cos(ang) * r.attentionFactor + rot[j] * Math.sin(ang) * r.attentionFactor;
        expect(y[t * d + j]).toBeCloseTo(want, 5);
      }
    }
  });
});

describe('nn: layer gradient checks', () => {
  it('Linear with an FP8 block-quantized weight equals the dequantized product', () => {
    const lin = new nn.Linear(130, 3, init());
    const q = k.quantize(randT([3, 130], 9), { block: k.WEIGHT_BLOCK });
    lin.setQuantizedWeight(q);
    const x = randT([2, 130], 4);
    const want = k.linear(x, k.dequantize(q));
    expect(maxAbsDiff(vals(lin.forward(x)), vals(want))).toBe(0);
  });
  defineLayerGradchecks(gradcheck);
});

/** float64 reference router, one token at a time, written from the semantics. */
function referenceRoute(x: number[][], W: number[][], bias: number[], c: k.nn.RouterConfig) {
  return x.map((row) => {
    const s = W.map((w) => 1 / (1 + Math.exp(-w.reduce((acc, wi, i) => acc + wi * row[i], 0))));
    const b = s.map((v, e) => v + bias[e]);
    const per = c.nRoutedExperts / c.nGroup;
    const groupScore = Array.from({ length: c.nGroup }, (_, g) => {
      const v = b.slice(g * per, (g + 1) * per).sort((p, q) => q - p);
      return v[0] + v[1];
    });
    const groups = groupScore.map((v, g) => [v, g]).sort((p, q) => q[0] - p[0]).slice(0, c.topkGroup).map((p) => p[1]);
    const cand = b.map((v, e) => [groups.includes(Math.floor(e / per)) ? v : 0, e]).sort((p, q) => q[0] - p[0]).slice(0, c.numExpertsPerTok).map((p) => p[1]);
    let w = cand.map((e) => s[e]);
    if (c.normTopkProb) {
      const tot = w.reduce((p, q) => p + q, 0);
      w = w.map((v) => v / tot);
    }
    return { experts: cand, weights: w.map((v) => v * c.routedScalingFactor) };
  });
}

describe('nn: DeepSeekMoE routing and dispatch', () => {
  it('router matches a float64 per-token reference (group-limited, bias for selection only)', () => {
    const c = moeConfig({ nRoutedExperts: 16, nGroup: 4, topkGroup: 2, numExpertsPerTok: 3 });
    const router = new nn.SigmoidGroupRouter(c, init(7, 0.8));
    const bias = Array.from({ length: 16 }, (_, e) => (e % 5) * 0.07 - 0.1);
    router.setParameter('e_score_correction_bias', k.tensor(bias));
    const x = randT([12, 6], 11);
    const { indices, weights } = router.route(x);
    const ref = referenceRoute(x.arraySync() as number[][], router.parameters().get('weight')!.arraySync() as number[][], bias, c);
    const idx = indices.arraySync() as number[][];
    const w = weights.arraySync() as number[][];
    ref.forEach((r, n) => {
      expect(idx[n]).toEqual(r.experts);
      r.weights.forEach((v, j) => expect(w[n][j]).toBeCloseTo(v, 5));
    });
  });

  it('the bias changes which experts are chosen but not their weights', () => {
    const c = moeConfig({ nGroup: 1, topkGroup: 1, numExpertsPerTok: 2, normTopkProb: false, routedScalingFactor: 1 });
    const router = new nn.SigmoidGroupRouter(c, init(8));
    const x = randT([1, 6], 12);
    const s = vals(k.sigmoid(k.matmul(x, router.parameters().get('weight')!, { transposeB: true })));
    // Push the lowest-scoring expert to the top with a large bias.
    const lowest = s.indexOf(Math.min(...s));
    router.setParameter('e_score_correction_bias', k.tensor(s.map((_, e) => (e === lowest ? 10 : 0))));
    const { indices, weights } = router.route(x);
    expect(vals(indices)[0]).toBe(lowest);
    expect(vals(weights)[0]).toBeCloseTo(s[lowest], 6);
  });

  it('group-limited selection excludes experts of low-scoring groups', () => {
    const c = moeConfig({ nRoutedExperts: 8, nGroup: 4, topkGroup: 1, numExpertsPerTok: 2 });
    const router = new nn.SigmoidGroupRouter(c, init(9, 0));
    // Zero router weights: every s = 0.5; the bias alone decides. Group 2 (experts 4, 5) has
    // the largest top-2 sum although expert 0 has the single largest biased score.
    router.setParameter('e_score_correction_bias', k.tensor([0.9, -0.9, 0, 0, 0.5, 0.5, 0, 0]));
    const { indices } = router.route(randT([3, 6], 1));
    for (const row of indices.arraySync() as number[][]) expect([...row].sort()).toEqual([4, 5]);
  });

  it('grouped GEMM over expert-sorted tokens equals a per-token loop', () => {
    const c = moeConfig();
    const moe = new nn.DeepseekMoE(c, init(10, 0.5));
    const x = randT([9, 6], 13);
    const routing = moe.gate.route(x);
    const y = vals(moe.dispatcher.dispatch(x, routing));
    const idx = routing.indices.arraySync() as number[][];
    const w = routing.weights.arraySync() as number[][];
    const want: number[] = [];
    for (let n = 0; n < 9; n++) {
      const xn = k.sliceAxis(x, 0, n, 1);
      const acc = new Array(6).fill(0);
      idx[n].forEach((e, j) => vals(moe.experts[e].forward(xn)).forEach((v, i) => (acc[i] += v * w[n][j])));
      want.push(...acc);
    }
    expect(maxAbsDiff(y, want)).toBeLessThan(1e-6);
  });
});

describe('nn: MLA cache', () => {
  for (const qLoraRank of [5, null]) {
    it(`prefill then one token at a time on the absorbed path equals the full forward (q_lora_rank ${qLoraRank})`, () => {
      const attn = new nn.MultiHeadLatentAttention(mlaConfig(qLoraRank), rope(), init(12, 0.5));
      const x = randT([2, 7, 8], 21);
      const full = attn.forward(x);
      const cache = new nn.KVCache();
      const outs = [attn.forward(k.sliceAxis(x, 1, 0, 3), { cache })];
      for (let t = 3; t < 7; t++) outs.push(attn.forward(k.sliceAxis(x, 1, t, 1), { cache }));
      expect(maxAbsDiff(vals(k.concat(outs, 1)), vals(full))).toBeLessThan(1e-5);
      expect(cache.length(0)).toBe(7);
      // Only the latent (kv_lora_rank 6) and the RoPE key (4) per token.
      expect(cache.widthPerToken(0)).toBe(10);
      expect(cache.get(0)!.latent.shape).toEqual([2, 7, 6]);
      expect(cache.get(0)!.ropeKey.shape).toEqual([2, 7, 4]);
      cache.dispose();
    });
  }
  it('causal: a later token does not change earlier outputs', () => {
    const attn = new nn.MultiHeadLatentAttention(mlaConfig(5), rope(), init(13));
    const x = randT([1, 5, 8], 22);
    const a = vals(attn.forward(x)).slice(0, 3 * 8);
    const b = vals(attn.forward(k.sliceAxis(x, 1, 0, 3)));
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
  });
});

describe('nn: modules', () => {
  it('names parameters with Hugging Face names and validates shapes on set', () => {
    const layer = new nn.DecoderLayer({ attention: mlaConfig(5), mlp: { kind: 'moe', ...moeConfig() }, rmsNormEps: 1e-6 }, rope(), init(), 3);
    const names = [...layer.parameters('model.layers.3.').keys()];
    for (const n of ['self_attn.q_a_proj.weight', 'self_attn.q_a_layernorm.weight', 'self_attn.q_b_proj.weight', 'self_attn.kv_a_proj_with_mqa.weight', 'self_attn.kv_a_layernorm.weight', 'self_attn.kv_b_proj.weight', 'self_attn.o_proj.weight', 'mlp.gate.weight', 'mlp.gate.e_score_correction_bias', 'mlp.experts.7.down_proj.weight', 'mlp.shared_experts.up_proj.weight', 'input_layernorm.weight', 'post_attention_layernorm.weight']) {
      expect(names).toContain(`model.layers.3.${n}`);
    }
    expect(() => layer.setParameter('mlp.experts.7.down_proj.weight', k.zeros([3, 3]))).toThrow(k.ShapeError);
    expect(layer.setParameter('mlp.experts.7.down_proj.weight', k.zeros([6, 4]))).toBe(true);
    expect(layer.setParameter('nope.weight', k.zeros([1]))).toBe(false);
  });
  it('MTP shapes and names', () => {
    const mtp = new nn.MTPModule({ attention: mlaConfig(5), mlp: { kind: 'dense', intermediateSize: 6 }, rmsNormEps: 1e-6 }, rope(), init(), 2);
    const names = [...mtp.parameters().keys()];
    for (const n of ['enorm.weight', 'hnorm.weight', 'eh_proj.weight', 'shared_head.norm.weight', 'self_attn.kv_b_proj.weight', 'mlp.up_proj.weight', 'input_layernorm.weight']) expect(names).toContain(n);
    expect(mtp.parameters().get('eh_proj.weight')!.shape).toEqual([8, 16]);
    const out = mtp.forward(randT([2, 4, 8], 1), k.tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], 'i32'), new nn.Embedding(10, 8, init()), new nn.Linear(8, 10, init()));
    expect(out.hidden.shape).toEqual([2, 4, 8]);
    expect(out.logits.shape).toEqual([2, 4, 10]);
  });
});
