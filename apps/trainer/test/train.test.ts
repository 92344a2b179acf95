import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { isKilnError } from '../src/errors.js';
import { PRESETS } from '../src/presets/index.js';
import { balanceBiasUpdate, maxOverMean, sequenceBalanceLoss, sequenceExpertFractions } from '../src/train/balance.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { learningRate, mtpLambdaAt, runTraining, type TrainMetrics, type TrainRunOptions, type ValMetrics } from '../src/train/trainer.js';
import { useCpuBackendForTests, useTempDirForTests } from './helpers.js';

const cpuBackend = useCpuBackendForTests();
const tempDir = useTempDirForTests('kiln-train-');

function expectArgError(fn: () => unknown, field: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(k.ArgumentError);
  expect(isKilnError(err)).toBe(true);
  expect((err as Error).message).toMatch(field);
}

describe('training config', () => {
  it('resolves presets, files and overrides', () => {
    const c = resolveTrainConfig();
    expect(c.preset).toBe('tiny');
    expect(c.model).toEqual(PRESETS.tiny.model);
    const d = resolveTrainConfig({ preset: 'micro', configJson: { model: { hidden_size: 48, num_attention_heads: 3 }, train: { lr: 0.5 } }, overrides: { lr: 0.25, mtpDepth: 2, steps: 7 } });
    expect(d.model.hidden_size).toBe(48);
    expect(d.model.num_nextn_predict_layers).toBe(2);
    expect(d.train.lr).toBe(0.25);
    expect(d.train.steps).toBe(7);
    const file = join(tempDir(), 'cfg.json');
    writeFileSync(file, JSON.stringify({ preset: 'micro', train: { seed: 9 } }));
    expect(resolveTrainConfig({ configFile: file }).train.seed).toBe(9);
    expect(resolveTrainConfig({ configFile: file }).preset).toBe('micro');
  });

  it('rejects bad presets, types, fields and impossible shapes with typed errors naming the field', () => {
    expectArgError(() => resolveTrainConfig({ preset: 'huge' }), /unknown preset "huge".*micro, tiny/);
    expectArgError(() => resolveTrainConfig({ configJson: { train: { lr: 'fast' } } }), /train\.lr: expected number, got string "fast"/);
    expectArgError(() => resolveTrainConfig({ configJson: { model: { hidden_size: 64.5 } } }), /model\.hidden_size/);
    expectArgError(() => resolveTrainConfig({ configJson: { model: { vocab_size: 100 } } }), /unknown field model\.vocab_size.*train\.vocabSize/);
    expectArgError(() => resolveTrainConfig({ configJson: { train: { stepz: 3 } } }), /train\.stepz/);
    expectArgError(() => resolveTrainConfig({ configJson: { model: { num_attention_heads: 5 } } }), /model\.num_attention_heads \(5\) must divide model\.hidden_size \(128\)/);
    expectArgError(() => resolveTrainConfig({ configJson: { model: { num_experts_per_tok: 9 } } }), /model\.num_experts_per_tok \(9\) is larger than model\.n_routed_experts \(8\)/);
    expectArgError(() => resolveTrainConfig({ configJson: { model: { n_group: 3 } } }), /model\.n_group \(3\) must divide model\.n_routed_experts \(8\)/);
    expectArgError(() => resolveTrainConfig({ configJson: { model: { topk_group: 5 } } }), /model\.topk_group/);
    expectArgError(() => resolveTrainConfig({ overrides: { batchTokens: 1000 } }), /train\.batchTokens \(1000\) must be a multiple/);
    expectArgError(() => resolveTrainConfig({ overrides: { precision: 'fp4' as never } }), /train\.precision/);
    expectArgError(() => resolveTrainConfig({ configJson: [] }), /JSON object/);
    const bad = join(tempDir(), 'bad.json');
    writeFileSync(bad, '{ nope');
    expect(() => resolveTrainConfig({ configFile: bad })).toThrow(k.FormatError);
    expectArgError(() => resolveTrainConfig({ configFile: join(tempDir(), 'missing.json') }), /missing\.json/);
  });

  it('schedules: warmup then cosine, or constant then decay', () => {
    const t = { ...PRESETS.micro.train, steps: 100, warmupSteps: 10, lr: 1, minLrRatio: 0.1 };
    expect(learningRate(0, t)).toBeCloseTo(0.1);
    expect(learningRate(9, t)).toBeCloseTo(1);
    expect(learningRate(99, t)).toBeGreaterThan(0.1);
    expect(learningRate(100, t)).toBeCloseTo(0.1);
    const c = { ...t, schedule: 'constant-decay' as const, decayFrom: 0.5 };
    expect(learningRate(49, c)).toBe(1);
    expect(learningRate(75, c)).toBeCloseTo(0.55, 5);
  });

  it("MTP λ: constant by default; the report's 0.3 then 0.1 with mtpLambdaFinal", () => {
    const t = { ...PRESETS.micro.train, steps: 148, mtpLambda: 0.3 };
    expect(mtpLambdaAt(147, t)).toBe(0.3);
    const s = { ...t, mtpLambdaFinal: 0.1 };
    expect(mtpLambdaAt(99, s)).toBe(0.3);
    expect(mtpLambdaAt(100, s)).toBe(0.1); // 10/14.8 of 148 steps
    expect(mtpLambdaAt(49, { ...s, mtpLambdaSwitch: 0.5 })).toBe(0.3);
    expect(mtpLambdaAt(74, { ...s, mtpLambdaSwitch: 0.5 })).toBe(0.1);
    expect(resolveTrainConfig({ preset: 'micro', overrides: { mtpLambdaFinal: 0.1, mtpLambdaSwitch: 0.5 } }).train.mtpLambdaFinal).toBe(0.1);
    expectArgError(() => resolveTrainConfig({ preset: 'micro', overrides: { mtpLambdaSwitch: 2 } }), /mtpLambdaSwitch/);
  });
});

describe('load balancing', () => {
  it('moves the bias of overloaded experts down and of underloaded ones up by γ; γ = 0 leaves it', () => {
    const bias = Float32Array.from([0, 0.5, -0.25, 0]);
    const load = [10, 2, 4, 8]; // mean 6
    const out = balanceBiasUpdate(bias, load, 0.01);
    expect(Array.from(out)).toEqual([0 - 0.01, 0.5 + 0.01, -0.25 + 0.01, 0 - 0.01].map(Math.fround));
    expect(Array.from(balanceBiasUpdate(bias, load, 0))).toEqual(Array.from(bias));
    expect(Array.from(balanceBiasUpdate(bias, [6, 6, 6, 6], 0.01))).toEqual(Array.from(bias));
    expect(maxOverMean(load)).toBeCloseTo(10 / 6);
  });

  it('balancing evens out a skewed router', () => {
    // Scores strongly prefer expert 0: repeated bias updates spread the load.
    const E = 4;
    const frac = (x: number): number => x - Math.floor(x);
    const scores = Array.from({ length: 256 }, (_, n) => Array.from({ length: E }, (_, e) => 0.5 * frac(Math.sin(n * 12.9898 + e * 78.233) * 43758.5453) + (e === 0 ? 0.4 : 0)));
    let bias: Float32Array = new Float32Array(E);
    const loadOf = (b: Float32Array): number[] => {
      const load = new Array(E).fill(0);
      for (const s of scores) {
        let best = 0;
        for (let e = 1; e < E; e++) if (s[e] + b[e] > s[best] + b[best]) best = e;
        load[best]++;
      }
      return load;
    };
    const first = maxOverMean(loadOf(bias));
    for (let i = 0; i < 200; i++) bias = balanceBiasUpdate(bias, loadOf(bias), 0.01);
    expect(first).toBeGreaterThan(3);
    expect(maxOverMean(loadOf(bias))).toBeLessThan(1.25);
    expect(bias[0]).toBeLessThan(Math.min(bias[1], bias[2], bias[3]));
  });

  it('sequence-wise balance loss matches a float64 reference, and only P carries the gradient', () => {
    const B = 2, T = 5, E = 4, K = 2;
    const raw = Array.from({ length: B * T * E }, (_, i) => 0.05 + ((i * 37) % 11) / 10);
    // normalised affinities per token
    const aff = new Float64Array(raw.length);
    for (let n = 0; n < B * T; n++) {
      let s = 0;
      for (let e = 0; e < E; e++) s += raw[n * E + e];
      for (let e = 0; e < E; e++) aff[n * E + e] = raw[n * E + e] / s;
    }
    const indices = Int32Array.from({ length: B * T * K }, (_, i) => (i * 3 + (i >> 2)) % E);
    let ref = 0;
    for (let b = 0; b < B; b++) {
      for (let e = 0; e < E; e++) {
        let count = 0;
        for (let t = 0; t < T; t++) for (let j = 0; j < K; j++) if (indices[(b * T + t) * K + j] === e) count++;
        const f = (E / (K * T)) * count;
        let p = 0;
        for (let t = 0; t < T; t++) p += aff[(b * T + t) * E + e];
        ref += f * (p / T);
      }
    }
    ref /= B;
    const affT = k.tensor(Float32Array.from(aff), [B * T, E]);
    const { value, grads } = k.valueAndGrads(() => sequenceBalanceLoss(affT, indices, B, T, K), [affT]);
    expect(value.valuesSync()[0]).toBeCloseTo(ref, 6);
    const f = sequenceExpertFractions(indices, B, T, K, E);
    const g = grads[0].valuesSync() as Float32Array;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) expect(g[(b * T + t) * E + e]).toBeCloseTo(f[b * E + e] / (T * B), 6);
    // Each expert's fraction sums to E over the experts (K·T selections scaled by E/(K·T)).
    expect(f.slice(0, E).reduce((a, x) => a + x, 0)).toBeCloseTo(E);
  });

  it('the MoE layer reports counts and affinities without changing its output', () => {
    const cfg = { hiddenSize: 8, nRoutedExperts: 4, numExpertsPerTok: 2, nGroup: 2, topkGroup: 1, normTopkProb: true, routedScalingFactor: 2.5, moeIntermediateSize: 4, nSharedExperts: 1 };
    const moe = new k.nn.DeepseekMoE(cfg, new k.nn.Initializer({ seed: 3, std: 0.5 }));
    const x = k.randomNormal([2, 3, 8], 11);
    const plain = moe.forward(x).valuesSync();
    const seen: Parameters<NonNullable<typeof moe.onRouting>>[0][] = [];
    moe.onRouting = (s) => seen.push(s);
    moe.routingAffinities = true;
    const withStats = moe.forward(x).valuesSync();
    expect(Array.from(withStats)).toEqual(Array.from(plain));
    expect(seen).toHaveLength(1);
    const s = seen[0];
    expect(s.tokenShape).toEqual([2, 3]);
    expect(s.k).toBe(2);
    expect(s.counts.reduce((a, c) => a + c, 0)).toBe(12);
    const recount = new Array(4).fill(0);
    for (const i of s.indices) recount[i]++;
    expect(Array.from(s.counts)).toEqual(recount);
    const a = s.affinities!.valuesSync() as Float32Array;
    expect(s.affinities!.shape).toEqual([6, 4]);
    for (let n = 0; n < 6; n++) expect(a[n * 4] + a[n * 4 + 1] + a[n * 4 + 2] + a[n * 4 + 3]).toBeCloseTo(1, 5);
    s.affinities!.dispose();
    // With a bias strongly favouring expert 3, every token picks it.
    moe.setParameter('gate.e_score_correction_bias', k.tensor([0, 0, 0, 10]));
    moe.routingAffinities = false;
    moe.forward(x).dispose();
    expect(seen[1].counts[3]).toBe(6);
    expect(seen[1].affinities).toBeUndefined();
    moe.dispose();
  });
});

function readMetrics(runDir: string): (TrainMetrics | ValMetrics)[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as TrainMetrics | ValMetrics);
}

/** A quiet micro-preset run into `out` (shared tokenizer/id cache, no xz baseline). */
const microRun = (out: string, extra: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  preset: 'micro',
  backend: cpuBackend(),
  out,
  cacheDir: join(tempDir(), 'cache'),
  progress: 'none',
  baseline: false,
  ...extra,
});

describe('a short training run (micro preset)', () => {
  it('trains: the loss goes down; metrics.jsonl and run.json carry the documented fields', async () => {
    const out = join(tempDir(), 'run');
    const r = await runTraining(microRun(out, { overrides: { steps: 12, evalEvery: 6, evalBytes: 4000 } }));
    expect(r.step).toBe(12);
    expect(r.stopped).toBe(false);
    expect(r.skipped).toBe(0);
    const lines = readMetrics(out);
    const train = lines.filter((l): l is TrainMetrics => l.type === 'train');
    const val = lines.filter((l): l is ValMetrics => l.type === 'val');
    expect(train.map((l) => l.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(val.map((l) => l.step)).toEqual([6, 12]);
    for (const l of train) {
      expect(Object.keys(l).sort()).toEqual(['balanceLoss', 'ceLoss', 'elapsedSec', 'gradNorm', 'loss', 'lr', 'mtpLoss', 'router', 'skipped', 'step', 'tokens', 'tokensPerSec', 'type'].sort());
      expect(l.loss).toBeCloseTo(l.ceLoss + l.mtpLoss + l.balanceLoss, 4);
      expect(l.mtpLoss).toBeGreaterThan(0);
      expect(l.balanceLoss).toBeGreaterThan(0);
      expect(l.router).toHaveLength(2); // layer 1 (MoE) and the MTP module's MoE
      for (const router of l.router) {
        expect(Object.keys(router).sort()).toEqual(['bias', 'layer', 'load', 'maxOverMean']);
        expect(router.load.reduce((a, b) => a + b, 0)).toBe(router.layer === 1 ? 256 * 2 : 8 * 31 * 2);
        expect(router.bias).toHaveLength(4);
      }
    }
    expect(train[0].router.map((x) => x.layer)).toEqual([1, 2]);
    // bias moved by exactly γ per step where loads differ from the mean
    expect(Math.abs(train[0].router[0].bias[0])).toBeCloseTo(0.001, 6);
    for (const l of val) expect(Object.keys(l).sort()).toEqual(['bpb', 'bytes', 'loss', 'step', 'tokens', 'type']);
    const first = (train[0].ceLoss + train[1].ceLoss) / 2;
    const last = (train[10].ceLoss + train[11].ceLoss) / 2;
    expect(last).toBeLessThan(first - 0.3);
    expect(val[1].bpb).toBeLessThan(val[0].bpb);
    expect(r.val?.bpb).toBe(val[1].bpb);
    const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(run).toMatchObject({ preset: 'micro', precision: 'fp32', backend: 'cpu', seed: 0 });
    expect(run.config.train.steps).toBe(12);
    expect(run.result.val.bpb).toBe(val[1].bpb);
    expect(typeof run.kiln).toBe('string');
    // a new run refuses an existing run directory
    await expect(runTraining(microRun(out))).rejects.toThrow(/already holds a run/);
  });

  it('skips a step whose gradients are not finite, counts it and reports it', async () => {
    const out = join(tempDir(), 'nan');
    const r = await runTraining({
      ...microRun(out, { overrides: { steps: 4, evalBytes: 2000 } }),
      onGradients: (step, grads) => {
        if (step === 2) grads.get('lm_head.weight')![5] = Number.NaN;
      },
    });
    expect(r.skipped).toBe(1);
    const train = readMetrics(out).filter((l): l is TrainMetrics => l.type === 'train');
    expect(train.map((l) => l.skipped)).toEqual([false, false, true, false]);
    expect(train[2].gradNorm).toBeNull(); // NaN is written as null in JSON
    // a skipped step leaves the balancing biases alone as well
    expect(train[2].router[0].bias).toEqual(train[1].router[0].bias);
    expect(train[3].router[0].bias).not.toEqual(train[2].router[0].bias);
    const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(run.result.skipped).toBe(1);
  });
});
