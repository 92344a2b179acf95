/**
 * Hugging Face export: config.json round trip, export → HfCheckpoint reload with identical logits,
 * MTP kept/dropped, bf16, tokenizer, snapshots → model.
 *
 * Generator mode for the transformers check (test/fixtures/check_hf_export.py):
 *   KILN_HF_EXPORT_FIXTURES=/some/dir node_modules/.bin/vitest run apps/trainer/test/hf-export.test.ts
 * writes one exported directory per case there, each with a kiln-computed reference.safetensors.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';
import { HfCheckpoint, SafetensorsFile } from '../src/checkpoint/index.js';
import { CheckpointError } from '../src/checkpoint/errors.js';
import { parseDeepseekV3Config, type DeepseekV3Config } from '../src/model/config.js';
import { toConfigJson } from '../src/model/config-json.js';
import { DeepseekV3ForCausalLM } from '../src/model/deepseek-v3.js';
import { exportHuggingFace, loadHuggingFaceModel, modelFromSnapshot, writeExportReference } from '../src/export/hf-export.js';
import { saveSnapshot, type SnapshotTensor } from '../src/train/snapshot.js';
import { runExport } from '../src/commands/export.js';

let backend: CpuBackend;
let dir: string;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
  dir = mkdtempSync(join(tmpdir(), 'kiln-export-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  backend.dispose();
});

const base = {
  model_type: 'deepseek_v3',
  vocab_size: 48,
  hidden_size: 32,
  intermediate_size: 40,
  moe_intermediate_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  n_shared_experts: 1,
  n_routed_experts: 8,
  routed_scaling_factor: 2.5,
  kv_lora_rank: 16,
  q_lora_rank: 24,
  qk_rope_head_dim: 8,
  qk_nope_head_dim: 8,
  v_head_dim: 8,
  n_group: 4,
  topk_group: 2,
  num_experts_per_tok: 2,
  first_k_dense_replace: 1,
  norm_topk_prob: true,
  max_position_embeddings: 128,
  rope_theta: 10000,
  rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
  num_nextn_predict_layers: 1,
};
const cfg = (over: Record<string, unknown> = {}): DeepseekV3Config => parseDeepseekV3Config({ ...base, ...over }, 'test/config.json');

describe('toConfigJson', () => {
  const variants: [string, Record<string, unknown>][] = [
    ['yarn with original_max_position_embeddings', {}],
    ['yarn without original_max_position_embeddings', { rope_scaling: { type: 'yarn', factor: 40, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 } }],
    ['yarn with attention_factor and truncate', { rope_scaling: { rope_type: 'yarn', factor: 2, attention_factor: 1.25, truncate: false } }],
    ['plain rope, no q_lora, dense layers only', { rope_scaling: null, rope_theta: 5000, q_lora_rank: null, first_k_dense_replace: 2, num_nextn_predict_layers: 0 }],
    ['rope_parameters spelling', { rope_scaling: undefined, rope_theta: undefined, rope_parameters: { rope_type: 'yarn', rope_theta: 20000, factor: 8, mscale: 0.5, mscale_all_dim: 0.707 } }],
    ['other values', { norm_topk_prob: false, attention_bias: true, rms_norm_eps: 1e-5, initializer_range: 0.006, routed_scaling_factor: 1.5, rope_interleave: false }],
  ];
  it.each(variants)('round-trips through parseDeepseekV3Config: %s', (_name, over) => {
    const c = cfg(over);
    const json = JSON.parse(JSON.stringify(toConfigJson(c)));
    expect(parseDeepseekV3Config(json, 'x')).toEqual(c);
    // Old transformers read rope_scaling + rope_theta, new ones rope_parameters: each alone is enough.
    const { rope_parameters: _p, ...legacy } = json;
    expect(parseDeepseekV3Config(legacy, 'legacy')).toEqual(c);
    const { rope_scaling: _s, rope_theta: _t, ...modern } = json;
    expect(parseDeepseekV3Config(modern, 'modern')).toEqual(c);
  });

  it('writes transformers field names and both RoPE spellings', () => {
    const j = toConfigJson(cfg());
    expect(j).toMatchObject({
      model_type: 'deepseek_v3',
      architectures: ['DeepseekV3ForCausalLM'],
      hidden_size: 32,
      num_key_value_heads: 2,
      q_lora_rank: 24,
      rope_theta: 10000,
      rope_scaling: { type: 'yarn', rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32, mscale_all_dim: 1 },
      rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4, original_max_position_embeddings: 32 },
      tie_word_embeddings: false,
      hidden_act: 'silu',
    });
    expect(toConfigJson(cfg({ rope_scaling: null }))).toMatchObject({ rope_scaling: null, rope_parameters: { rope_type: 'default', rope_theta: 10000 } });
  });
});

// ---------------------------------------------------------------------------------------------

function rng(seed: number) {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return { u, n: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) };
}

/** Random weights with spread-out router scores (so expert choice is far from ties) and a positive router bias. */
function randomModel(c: DeepseekV3Config, seed: number): DeepseekV3ForCausalLM {
  const model = DeepseekV3ForCausalLM.create(c, { init: 'zeros' });
  const r = rng(seed);
  for (const [name, p] of model.parameters()) {
    const v = new Float32Array(p.size);
    const fanIn = p.shape[p.shape.length - 1]!;
    for (let i = 0; i < v.length; i++) {
      if (name.endsWith('e_score_correction_bias')) v[i] = r.u() * 0.1;
      else if (p.rank === 1) v[i] = 1 + 0.1 * r.n();
      else if (name.endsWith('embed_tokens.weight')) v[i] = r.n();
      else if (name.endsWith('mlp.gate.weight')) v[i] = (r.n() * 2) / Math.sqrt(fanIn);
      else v[i] = r.n() / Math.sqrt(fanIn);
    }
    model.setParameter(name, k.tensor(v, p.shape, 'f32'));
  }
  return model;
}

function ids(c: DeepseekV3Config, batch: number, seq: number, seed: number): k.Tensor {
  const r = rng(seed);
  return k.tensor(Int32Array.from({ length: batch * seq }, () => Math.floor(r.u() * c.vocabSize)), [batch, seq], 'i32');
}

const logitsOf = (m: DeepseekV3ForCausalLM, x: k.Tensor) => k.noGrad(() => m.forward(x)).dataSync() as Float32Array;

function expectBitEqual(a: Float32Array, b: Float32Array) {
  expect(a.length).toBe(b.length);
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) diff++;
  expect(diff).toBe(0);
}

let nextOut = 0;
const outDir = () => join(dir, `out${nextOut++}`);

describe('exportHuggingFace', () => {
  it('exports config.json + model.safetensors that reload (HfCheckpoint + loadModelWeights) to identical logits, MTP included', async () => {
    const c = cfg();
    const model = randomModel(c, 1);
    const out = outDir();
    const { files } = await exportHuggingFace(model, out);
    expect(files.map((f) => f.split('/').pop())).toEqual(['model.safetensors', 'config.json']);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);

    const ck = await HfCheckpoint.open(out);
    const names = ck.names();
    expect(names).toContain('model.layers.1.mlp.gate.e_score_correction_bias');
    expect(names).toContain('model.layers.1.mlp.experts.7.down_proj.weight');
    expect(names).toContain('model.layers.2.eh_proj.weight'); // MTP module 0
    expect(names).toContain('model.layers.2.shared_head.norm.weight');
    expect(names).toHaveLength(model.parameters().size);
    expect(ck.entry('lm_head.weight').dtype).toBe('F32');
    expect(ck.config).toMatchObject({ model_type: 'deepseek_v3', num_nextn_predict_layers: 1, torch_dtype: 'float32' });
    await ck.close();
    const meta = await SafetensorsFile.open(join(out, 'model.safetensors'));
    expect(meta.header.metadata).toEqual({ format: 'pt' });
    await meta.close();

    const back = await loadHuggingFaceModel(out);
    for (const [name, p] of model.parameters()) expectBitEqual(back.parameters().get(name)!.dataSync() as Float32Array, p.dataSync() as Float32Array);
    const x = ids(c, 2, 9, 3);
    expectBitEqual(logitsOf(back, x), logitsOf(model, x));
    const a = k.noGrad(() => model.forwardWithMtp(x));
    const b = k.noGrad(() => back.forwardWithMtp(x));
    expect(b.mtpLogits).toHaveLength(1);
    expectBitEqual(b.mtpLogits[0]!.dataSync() as Float32Array, a.mtpLogits[0]!.dataSync() as Float32Array);
    // The router bias matters: another bias gives other logits (the test would notice a dropped bias).
    const otherBias = await loadHuggingFaceModel(out);
    otherBias.setParameter('model.layers.1.mlp.gate.e_score_correction_bias', k.tensor(Float32Array.from({ length: 8 }, (_, i) => (i === 0 ? 10 : 0)), [8], 'f32'));
    expect(logitsOf(otherBias, x)).not.toEqual(logitsOf(model, x));
    for (const m of [model, back, otherBias]) m.dispose();
  });

  it('--drop-mtp leaves the MTP modules out and says so in config.json', async () => {
    const c = cfg();
    const model = randomModel(c, 2);
    const out = outDir();
    await exportHuggingFace(model, out, { dropMtp: true });
    const ck = await HfCheckpoint.open(out);
    expect(ck.names().some((n) => n.startsWith('model.layers.2.'))).toBe(false);
    expect(ck.config.num_nextn_predict_layers).toBe(0);
    await ck.close();
    const back = await loadHuggingFaceModel(out);
    expect(back.model.mtp).toHaveLength(0);
    const x = ids(c, 1, 7, 4);
    expectBitEqual(logitsOf(back, x), logitsOf(model, x));
  });

  it('bf16 export: BF16 tensors that reload to the bf16-rounded model exactly', async () => {
    const c = cfg({ q_lora_rank: null, rope_scaling: null });
    const model = randomModel(c, 3);
    const out = outDir();
    await exportHuggingFace(model, out, { dtype: 'bf16' });
    const ck = await HfCheckpoint.open(out);
    expect(ck.entry('model.embed_tokens.weight').dtype).toBe('BF16');
    expect(ck.config.torch_dtype).toBe('bfloat16');
    await ck.close();
    const back = await loadHuggingFaceModel(out);
    // Round the original to bf16 (round-to-nearest-even) and back: the same model.
    for (const [name, p] of model.parameters()) model.setParameter(name, k.cast(k.cast(p, 'bf16'), 'f32'));
    const x = ids(c, 2, 6, 5);
    expectBitEqual(logitsOf(back, x), logitsOf(model, x));
  });

  it('copies tokenizer.json (path or text) and removes a stale sharded index', async () => {
    const model = randomModel(cfg({ num_nextn_predict_layers: 0 }), 4);
    const out = outDir();
    mkdirSync(out);
    writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'lm_head.weight': 'gone.safetensors' } }));
    const tokPath = join(dir, 'tok.json');
    writeFileSync(tokPath, JSON.stringify({ version: '1.0', model: { type: 'BPE' } }));
    const { files } = await exportHuggingFace(model, out, { tokenizerJson: tokPath });
    expect(files.map((f) => f.split('/').pop())).toContain('tokenizer.json');
    expect(JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8'))).toEqual({ version: '1.0', model: { type: 'BPE' } });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    await (await HfCheckpoint.open(out)).close();
    await exportHuggingFace(model, outDir(), { tokenizerJson: '{"version": "1.0"}' });
    await expect(exportHuggingFace(model, outDir(), { tokenizerJson: join(dir, 'missing.json') })).rejects.toThrow(CheckpointError);
  });
});

describe('exportHuggingFace baseConfig', () => {
  it('carries keys kiln does not model, never the quantization or a stale architecture', async () => {
    const c = cfg({ num_nextn_predict_layers: 0 });
    const model = randomModel(c, 6);
    const out = outDir();
    await exportHuggingFace(model, out, { baseConfig: { ...base, hidden_size: 999, bos_token_id: 5, eos_token_id: 6, quantization_config: { quant_method: 'fp8' }, transformers_version: '4.0' } });
    const j = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(j).toMatchObject({ bos_token_id: 5, eos_token_id: 6, hidden_size: 32, num_nextn_predict_layers: 0 });
    expect(j.quantization_config).toBeUndefined();
    expect(j.transformers_version).toBeUndefined();
  });
});

describe('modelFromSnapshot', () => {
  it('builds the model from configJson.model and model/<name> tensors (f32 or bf16)', () => {
    const c = cfg();
    const model = randomModel(c, 5);
    const tensors = new Map<string, SnapshotTensor>();
    for (const [name, p] of model.parameters()) tensors.set(`model/${name}`, { dtype: 'f32', shape: [...p.shape], data: p.dataSync() as Float32Array });
    const snap = { step: 10, configJson: { model: toConfigJson(c) }, tensors, state: {} };
    const back = modelFromSnapshot(snap, 'run/checkpoints/step-00000010');
    const x = ids(c, 1, 5, 6);
    expectBitEqual(logitsOf(back, x), logitsOf(model, x));

    const missing = new Map(tensors);
    missing.delete('model/lm_head.weight');
    expect(() => modelFromSnapshot({ ...snap, tensors: missing }, 'src')).toThrow(/model\/lm_head\.weight.*missing/);
    expect(() => modelFromSnapshot({ ...snap, configJson: {} }, 'src')).toThrow(/config\.model/);
    const wrong = new Map(tensors);
    wrong.set('model/lm_head.weight', { dtype: 'f32', shape: [2], data: new Float32Array(2) });
    expect(() => modelFromSnapshot({ ...snap, tensors: wrong }, 'src')).toThrow(CheckpointError);
  });
});

describe('kiln export (runExport)', () => {
  it('exports the newest complete checkpoint of a run, with its tokenizer and a reference file', async () => {
    const c = cfg();
    const run = join(dir, 'run-export');
    const snapOf = (m: DeepseekV3ForCausalLM, step: number) => {
      const tensors = new Map<string, SnapshotTensor>();
      for (const [name, p] of m.parameters()) tensors.set(`model/${name}`, { dtype: 'f32', shape: [...p.shape], data: Float32Array.from(p.dataSync() as Float32Array) });
      tensors.set('optim/m/lm_head.weight', { dtype: 'bf16', shape: [4], data: new Uint16Array(4) });
      return { step, configJson: { preset: 'test', model: toConfigJson(c), train: { lr: 1e-3 } }, tensors, state: { note: 'x' } };
    };
    const older = randomModel(c, 7);
    const newer = randomModel(c, 8);
    await saveSnapshot(run, snapOf(older, 10));
    const ckpt20 = await saveSnapshot(run, snapOf(newer, 20));
    writeFileSync(join(run, 'tokenizer.json'), '{"version":"1.0","model":{"type":"BPE"}}');
    const x = ids(c, 2, 8, 9);
    const want = logitsOf(newer, x);

    const out = outDir();
    const report = await runExport({ run, out, reference: true, dropMtp: true }, false);
    k.useBackend(backend);
    expect(report.step).toBe(20);
    expect(report.files.map((f) => f.split('/').pop()).sort()).toEqual(['config.json', 'model.safetensors', 'reference.safetensors', 'tokenizer.json']);
    const back = await loadHuggingFaceModel(out);
    expect(back.model.mtp).toHaveLength(0);
    expectBitEqual(logitsOf(back, x), want);
    // reference.safetensors holds kiln's logits of the exported model for its input_ids
    const ref = await SafetensorsFile.open(join(out, 'reference.safetensors'));
    const refIds = (await ref.readHost('input_ids')) as { shape: number[]; data: Int32Array };
    const refLogits = (await ref.readHost('logits')).data as Float32Array;
    await ref.close();
    expectBitEqual(logitsOf(back, k.tensor(refIds.data, refIds.shape, 'i32')), refLogits);

    // A corrupt newest checkpoint: the older one is exported, with a warning.
    writeFileSync(join(ckpt20, 'state.json'), '{}');
    const out2 = outDir();
    const r2 = await runExport({ run, out: out2, dtype: 'bf16' }, false);
    k.useBackend(backend);
    expect(r2.step).toBe(10);
    expect(r2.warnings.join()).toMatch(/step-00000020.*state\.json/);
    const ck = await HfCheckpoint.open(out2);
    expect(ck.entry('lm_head.weight').dtype).toBe('BF16');
    expect(ck.has('model.layers.2.eh_proj.weight')).toBe(true);
    await ck.close();

    // --checkpoint picks one directory; a run without checkpoints is an error.
    const r3 = await runExport({ checkpoint: join(run, 'checkpoints', 'step-00000010'), out: outDir() }, false);
    k.useBackend(backend);
    expect(r3.step).toBe(10);
    await expect(runExport({ run: join(dir, 'nothing-here'), out: outDir() }, false)).rejects.toThrow(/no complete checkpoint/);
    k.useBackend(backend);
    await expect(runExport({ out: outDir() } as never, false)).rejects.toThrow(/exactly one of --run/);
  });
});

describe('kiln export (built CLI)', () => {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  it('exports a run as bf16 without MTP and reports the files as JSON', async () => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: build first with \`npm run setup\` (npm test does it for you)`);
    const c = cfg();
    const model = randomModel(c, 12);
    const run = join(dir, 'cli-run');
    const tensors = new Map<string, SnapshotTensor>();
    for (const [name, p] of model.parameters()) tensors.set(`model/${name}`, { dtype: 'f32', shape: [...p.shape], data: Float32Array.from(p.dataSync() as Float32Array) });
    await saveSnapshot(run, { step: 3, configJson: { model: toConfigJson(c) }, tensors, state: {} });
    const out = outDir();
    const r = spawnSync(process.execPath, [cli, 'export', '--run', run, '--out', out, '--dtype', 'bf16', '--drop-mtp', '--json'], { encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '' }, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { step: number; files: string[] };
    expect(report.step).toBe(3);
    expect(report.files.map((f) => f.split('/').pop()).sort()).toEqual(['config.json', 'model.safetensors']);
    const ck = await HfCheckpoint.open(out);
    expect(ck.entry('lm_head.weight').dtype).toBe('BF16');
    expect(ck.names().some((n) => n.startsWith('model.layers.2.'))).toBe(false);
    await ck.close();
    const bad = spawnSync(process.execPath, [cli, 'export', '--run', join(dir, 'none'), '--out', outDir()], { encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '' }, timeout: 120_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/no complete checkpoint/);
  });
});

// Generator mode: exports + kiln reference logits for check_hf_export.py (see the header).
const fixturesOut = process.env.KILN_HF_EXPORT_FIXTURES;
describe.runIf(fixturesOut)('fixtures for check_hf_export.py', () => {
  const cases: [string, Record<string, unknown>, { dropMtp?: boolean; dtype?: 'f32' | 'bf16' }][] = [
    ['export-yarn-qlora-mtp', {}, {}],
    ['export-yarn-no-omp', { rope_scaling: { type: 'yarn', factor: 4, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 } }, { dropMtp: true }],
    ['export-plain-noqlora-bf16', { rope_scaling: null, q_lora_rank: null, first_k_dense_replace: 0, n_group: 2, topk_group: 1 }, { dtype: 'bf16' }],
  ];
  it.each(cases)('%s', async (name, over, options) => {
    const out = join(fixturesOut!, name);
    const model = randomModel(cfg(over), 11);
    await exportHuggingFace(model, out, options);
    await writeExportReference(out, { batch: 2, seq: 16, seed: 7 });
    model.dispose();
  });
});
