import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { AREAS, gradcheck, observeGradchecks, runConformance, type GradcheckReport } from '@kiln/conformance';
import { CpuBackend, createCpuBackend, createCpuCollectiveGroup, joinCpuCollective } from '../src/index.js';

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
  skip: AREAS.map((a) => a.name).filter((n) => n !== 'autograd'),
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
const { nn } = k;
const init = (seed = 1, std = 0.3) => new nn.Initializer({ seed, std });

function withParams(m: k.nn.Module, names: string[], xs: k.Tensor[]): void {
  names.forEach((n, i) => {
    if (!m.setParameter(n, xs[i])) throw new Error(`no parameter ${n}`);
  });
}
const mlaConfig = (qLoraRank: number | null): k.nn.MLAConfig => ({
  hiddenSize: 8,
  numHeads: 2,
  qLoraRank,
  kvLoraRank: 6,
  qkNopeHeadDim: 4,
  qkRopeHeadDim: 4,
  vHeadDim: 3,
  softmaxScale: 1 / Math.sqrt(8),
});
const rope = () =>
  new nn.RotaryEmbedding({
    dim: 4,
    base: 10000,
    interleave: true,
    scaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 16, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0.707 },
  });
function moeConfig(over: Partial<k.nn.DeepseekMoEConfig> = {}): k.nn.DeepseekMoEConfig {
  return { hiddenSize: 6, nRoutedExperts: 8, numExpertsPerTok: 2, nGroup: 4, topkGroup: 2, normTopkProb: true, routedScalingFactor: 2.5, moeIntermediateSize: 4, nSharedExperts: 1, ...over };
}

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

  it('Linear (input and weight)', async () => {
    const lin = new nn.Linear(5, 3, init());
    await check64('Linear', ([x, w]) => (withParams(lin, ['weight'], [w]), lin.forward(x)), [{ shape: [2, 4, 5] }, { shape: [3, 5] }]);
  });
  it('Embedding (weight)', async () => {
    const emb = new nn.Embedding(7, 4, init());
    const ids = k.tensor([1, 6, 1, 0, 3, 2], [2, 3], 'i32');
    await check64('Embedding', ([w]) => (withParams(emb, ['weight'], [w]), emb.forward(ids)), [{ shape: [7, 4] }]);
  });
  it('RMSNorm (input and weight)', async () => {
    const n = new nn.RMSNorm(6, init());
    await check64('RMSNorm', ([x, w]) => (withParams(n, ['weight'], [w]), n.forward(x)), [{ shape: [3, 6] }, { shape: [6] }]);
  });
  it('SwiGLU MLP (input and all three weights)', async () => {
    const m = new nn.MLP(4, 6, init());
    const names = ['gate_proj.weight', 'up_proj.weight', 'down_proj.weight'];
    await check64('MLP', ([x, ...ws]) => (withParams(m, names, ws), m.forward(x)), [{ shape: [3, 4] }, { shape: [6, 4] }, { shape: [6, 4] }, { shape: [4, 6] }]);
  });
  for (const qLoraRank of [5, null]) {
    it(`MLA, q_lora_rank ${qLoraRank} (input and every projection)`, async () => {
      const attn = new nn.MultiHeadLatentAttention(mlaConfig(qLoraRank), rope(), init(2, 0.4));
      const names = [...attn.parameters().keys()];
      const specs = [{ shape: [2, 4, 8] }, ...names.map((n) => ({ shape: [...attn.parameters().get(n)!.shape], lo: n.includes('layernorm') ? 0.5 : -0.6, hi: n.includes('layernorm') ? 1.5 : 0.6 }))];
      await check64(`MLA ${qLoraRank}`, ([x, ...ps]) => (withParams(attn, names, ps), attn.forward(x)), specs, { probes: 8 });
    });
  }
  it('MoE with a fixed routing decision (input, router weight, experts, shared expert)', async () => {
    const moe = new nn.DeepseekMoE(moeConfig(), init(3, 0.5));
    const fixed = k.tensor([0, 3, 2, 1, 5, 4, 3, 0, 7, 6], [5, 2], 'i32');
    const names = ['gate.weight', 'experts.3.up_proj.weight', 'experts.0.down_proj.weight', 'shared_experts.gate_proj.weight'];
    const specs = [{ shape: [5, 6] }, ...names.map((n) => ({ shape: [...moe.parameters().get(n)!.shape] }))];
    await check64('MoE', ([x, ...ps]) => (withParams(moe, names, ps), moe.forward(x, { fixedIndices: fixed })), specs, { probes: 10 });
  });
  it('RotaryEmbedding (YaRN, interleaved) input', async () => {
    const r = rope();
    await check64('rope', ([x]) => r.apply(x, 3), [{ shape: [2, 3, 4] }]);
  });
  it('DecoderLayer with a MoE MLP and a fixed routing decision (input, norms, attention and router weights)', async () => {
    const layer = new nn.DecoderLayer({ attention: { ...mlaConfig(5), hiddenSize: 6 }, mlp: { kind: 'moe', ...moeConfig() }, rmsNormEps: 1e-6 }, rope(), init(14, 0.4), 1);
    const fixed = k.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1, 4, 2, 6], [6, 2], 'i32');
    const names = ['input_layernorm.weight', 'self_attn.kv_b_proj.weight', 'post_attention_layernorm.weight', 'mlp.gate.weight', 'mlp.experts.4.gate_proj.weight'];
    const specs = [{ shape: [2, 3, 6] }, ...names.map((n) => ({ shape: [...layer.parameters().get(n)!.shape], lo: n.includes('layernorm') ? 0.5 : -1, hi: n.includes('layernorm') ? 1.5 : 1 }))];
    await check64('DecoderLayer', ([x, ...ps]) => (withParams(layer, names, ps), layer.forward(x, { fixedIndices: fixed })), specs, { probes: 8 });
  });
  it('MTP module (hidden input, enorm, eh_proj)', async () => {
    const layerCfg: k.nn.DecoderLayerConfig = { attention: mlaConfig(5), mlp: { kind: 'dense', intermediateSize: 6 }, rmsNormEps: 1e-6 };
    const mtp = new nn.MTPModule(layerCfg, rope(), init(4, 0.3), 0);
    const emb = new nn.Embedding(11, 8, init(5));
    const head = new nn.Linear(8, 11, init(6));
    const ids = k.tensor([1, 2, 3, 4, 5, 6], [2, 3], 'i32');
    await check64('MTP', ([h, w, p]) => (withParams(mtp, ['enorm.weight', 'eh_proj.weight'], [w, p]), mtp.forward(h, ids, emb, head).logits), [{ shape: [2, 3, 8] }, { shape: [8], lo: 0.5, hi: 1.5 }, { shape: [8, 16] }], { probes: 8 });
  });
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
