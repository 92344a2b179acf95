/**
 * The layer gradient checks of nn.test.ts (f32, through gradcheck's default tolerance) and
 * gradcheck-f64.test.ts (the float64 reference mode): one list, two precisions.
 */
import { it } from 'vitest';
import * as k from '@kiln/core';
import type { gradcheck } from '@kiln/conformance';

const { nn } = k;

export type LayerCheck = (...args: Parameters<typeof gradcheck>) => Promise<unknown>;

export const init = (seed = 1, std = 0.3) => new nn.Initializer({ seed, std });

/** Runs f with the module's named parameters temporarily replaced by xs (for gradcheck). */
export function withParams(m: k.nn.Module, names: string[], xs: k.Tensor[]): void {
  names.forEach((n, i) => {
    if (!m.setParameter(n, xs[i])) throw new Error(`no parameter ${n}`);
  });
}

export const mlaConfig = (qLoraRank: number | null): k.nn.MLAConfig => ({
  hiddenSize: 8,
  numHeads: 2,
  qLoraRank,
  kvLoraRank: 6,
  qkNopeHeadDim: 4,
  qkRopeHeadDim: 4,
  vHeadDim: 3,
  softmaxScale: 1 / Math.sqrt(8),
});

export const rope = () =>
  new nn.RotaryEmbedding({
    dim: 4,
    base: 10000,
    interleave: true,
    scaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 16, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0.707 },
  });

export function moeConfig(over: Partial<k.nn.DeepseekMoEConfig> = {}): k.nn.DeepseekMoEConfig {
  return { hiddenSize: 6, nRoutedExperts: 8, numExpertsPerTok: 2, nGroup: 4, topkGroup: 2, normTopkProb: true, routedScalingFactor: 2.5, moeIntermediateSize: 4, nSharedExperts: 1, ...over };
}

/** Registers one `it` per layer (inside the caller's describe), each running `check`. */
export function defineLayerGradchecks(check: LayerCheck): void {
  it('Linear (input and weight)', async () => {
    const lin = new nn.Linear(5, 3, init());
    await check('Linear', ([x, w]) => (withParams(lin, ['weight'], [w]), lin.forward(x)), [{ shape: [2, 4, 5] }, { shape: [3, 5] }]);
  });
  it('Embedding (weight)', async () => {
    const emb = new nn.Embedding(7, 4, init());
    const ids = k.tensor([1, 6, 1, 0, 3, 2], [2, 3], 'i32');
    await check('Embedding', ([w]) => (withParams(emb, ['weight'], [w]), emb.forward(ids)), [{ shape: [7, 4] }]);
  });
  it('RMSNorm (input and weight)', async () => {
    const n = new nn.RMSNorm(6, init());
    await check('RMSNorm', ([x, w]) => (withParams(n, ['weight'], [w]), n.forward(x)), [{ shape: [3, 6] }, { shape: [6] }]);
  });
  it('SwiGLU MLP (input and all three weights)', async () => {
    const m = new nn.MLP(4, 6, init());
    const names = ['gate_proj.weight', 'up_proj.weight', 'down_proj.weight'];
    await check('MLP', ([x, ...ws]) => (withParams(m, names, ws), m.forward(x)), [{ shape: [3, 4] }, { shape: [6, 4] }, { shape: [6, 4] }, { shape: [4, 6] }]);
  });
  for (const qLoraRank of [5, null]) {
    it(`MLA, q_lora_rank ${qLoraRank} (input and every projection)`, async () => {
      const attn = new nn.MultiHeadLatentAttention(mlaConfig(qLoraRank), rope(), init(2, 0.4));
      const names = [...attn.parameters().keys()];
      const specs = [{ shape: [2, 4, 8] }, ...names.map((n) => ({ shape: [...attn.parameters().get(n)!.shape], lo: n.includes('layernorm') ? 0.5 : -0.6, hi: n.includes('layernorm') ? 1.5 : 0.6 }))];
      await check(`MLA ${qLoraRank}`, ([x, ...ps]) => (withParams(attn, names, ps), attn.forward(x)), specs, { probes: 8 });
    });
  }
  it('MoE with a fixed routing decision (input, router weight, experts, shared expert)', async () => {
    const moe = new nn.DeepseekMoE(moeConfig(), init(3, 0.5));
    const fixed = k.tensor([0, 3, 2, 1, 5, 4, 3, 0, 7, 6], [5, 2], 'i32');
    const names = ['gate.weight', 'experts.3.up_proj.weight', 'experts.0.down_proj.weight', 'shared_experts.gate_proj.weight'];
    const specs = [{ shape: [5, 6] }, ...names.map((n) => ({ shape: [...moe.parameters().get(n)!.shape] }))];
    await check('MoE', ([x, ...ps]) => (withParams(moe, names, ps), moe.forward(x, { fixedIndices: fixed })), specs, { probes: 10 });
  });
  it('RotaryEmbedding (YaRN, interleaved) input', async () => {
    const r = rope();
    await check('rope', ([x]) => r.apply(x, 3), [{ shape: [2, 3, 4] }]);
  });
  it('DecoderLayer with a MoE MLP and a fixed routing decision (input, norms, attention and router weights)', async () => {
    const layer = new nn.DecoderLayer({ attention: { ...mlaConfig(5), hiddenSize: 6 }, mlp: { kind: 'moe', ...moeConfig() }, rmsNormEps: 1e-6 }, rope(), init(14, 0.4), 1);
    const fixed = k.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1, 4, 2, 6], [6, 2], 'i32');
    const names = ['input_layernorm.weight', 'self_attn.kv_b_proj.weight', 'post_attention_layernorm.weight', 'mlp.gate.weight', 'mlp.experts.4.gate_proj.weight'];
    const specs = [{ shape: [2, 3, 6] }, ...names.map((n) => ({ shape: [...layer.parameters().get(n)!.shape], lo: n.includes('layernorm') ? 0.5 : -1, hi: n.includes('layernorm') ? 1.5 : 1 }))];
    await check('DecoderLayer', ([x, ...ps]) => (withParams(layer, names, ps), layer.forward(x, { fixedIndices: fixed })), specs, { probes: 8 });
  });
  it('MTP module (hidden input, enorm, eh_proj)', async () => {
    const layerCfg: k.nn.DecoderLayerConfig = { attention: mlaConfig(5), mlp: { kind: 'dense', intermediateSize: 6 }, rmsNormEps: 1e-6 };
    const mtp = new nn.MTPModule(layerCfg, rope(), init(4, 0.3), 0);
    const emb = new nn.Embedding(11, 8, init(5));
    const head = new nn.Linear(8, 11, init(6));
    const ids = k.tensor([1, 2, 3, 4, 5, 6], [2, 3], 'i32');
    await check('MTP', ([h, w, p]) => (withParams(mtp, ['enorm.weight', 'eh_proj.weight'], [w, p]), mtp.forward(h, ids, emb, head).logits), [{ shape: [2, 3, 8] }, { shape: [8], lo: 0.5, hi: 1.5 }, { shape: [8, 16] }], { probes: 8 });
  });
}
