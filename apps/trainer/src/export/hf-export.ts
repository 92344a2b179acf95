/**
 * Hugging Face export: a kiln DeepSeek-V3 model as a directory transformers' `from_pretrained`
 * (and kiln's own `HfCheckpoint`) loads: `config.json`, `model.safetensors` with transformers'
 * tensor names (per-expert `mlp.experts.E.*`, the router's `e_score_correction_bias`, MTP modules
 * at `model.layers.{num_hidden_layers + j}.*`), and `tokenizer.json` when given.
 */
import { readFile, rm, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ArgumentError, QuantizedTensor, cast, fromStorage, nn, noGrad, tensor, type Tensor } from '@kiln/core';
import { writeFileAtomic, writeSafetensorsAtomic } from '../checkpoint/atomic.js';
import { HfCheckpoint } from '../checkpoint/checkpoint.js';
import { CheckpointError } from '../checkpoint/errors.js';
import { loadModelWeights } from '../checkpoint/load-model.js';
import { parseDeepseekV3Config, type DeepseekV3Config } from '../model/config.js';
import { toConfigJson } from '../model/config-json.js';
import { DeepseekV3ForCausalLM } from '../model/deepseek-v3.js';
import { MODEL_TENSOR_PREFIX, type SnapshotTensor, type TrainingSnapshot } from '../train/snapshot.js';

export interface HfExportOptions {
  /** Leave the multi-token-prediction modules out (config gets num_nextn_predict_layers 0). */
  dropMtp?: boolean;
  /** Tensor dtype in model.safetensors (default f32). bf16 rounds to nearest even, as torch does. */
  dtype?: 'f32' | 'bf16';
  /** A tokenizer.json to copy next to the model: a path, or the JSON text itself (starts with `{`). */
  tokenizerJson?: string;
  /**
   * The model's original config.json (e.g. a snapshot's `configJson.model`): keys kiln does not
   * model (bos_token_id, eos_token_id, ...) are carried over; the architecture comes from the model.
   */
  baseConfig?: Record<string, unknown>;
}

/** Keys of a base config that must not be carried into an export (it is dequantized and re-typed). */
const DROP_FROM_BASE = ['quantization_config', 'torch_dtype', 'dtype', 'transformers_version', 'auto_map'];

const LAYER_RE = /^model\.layers\.(\d+)\./;

/**
 * Writes `model` to `outDir` (created if needed) in transformers' format. Every file is written
 * atomically (temporary file, fsync, rename), `config.json` last; a stale
 * `model.safetensors.index.json` in `outDir` is removed so loaders see the new single file.
 * Returns the written files.
 */
export async function exportHuggingFace(model: DeepseekV3ForCausalLM, outDir: string, options: HfExportOptions = {}): Promise<{ files: string[] }> {
  const dtype = options.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'bf16') throw new ArgumentError('exportHuggingFace', `dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
  const config = model.config;
  const dropMtp = options.dropMtp ?? false;
  let tokenizerText: string | undefined;
  if (options.tokenizerJson !== undefined) {
    const t = options.tokenizerJson;
    if (t.trimStart().startsWith('{')) tokenizerText = t;
    else {
      try {
        tokenizerText = await readFile(t, 'utf8');
      } catch (err) {
        throw new CheckpointError(t, `cannot read the tokenizer (${(err as Error).message})`);
      }
    }
    try {
      JSON.parse(tokenizerText);
    } catch (err) {
      throw new CheckpointError(typeof t === 'string' && !t.trimStart().startsWith('{') ? t : 'tokenizerJson', `not valid JSON (${(err as Error).message})`);
    }
  }

  // FP8 Linears hold their weight as a QuantizedTensor: export it dequantized.
  const quantized = new Map<string, QuantizedTensor>();
  for (const [name, m] of model.modules()) if (m instanceof nn.Linear && m.quantized) quantized.set(`${name}.weight`, m.quantized);

  const tensors: Record<string, { dtype: string; shape: readonly number[]; data: ArrayBufferView }> = {};
  for (const [name, p] of model.parameters()) {
    const m = LAYER_RE.exec(name);
    if (dropMtp && m && Number(m[1]) >= config.numHiddenLayers) continue;
    const q = quantized.get(name);
    const src = q ? q.dequantize() : p;
    try {
      tensors[name] = { dtype: dtype === 'f32' ? 'F32' : 'BF16', shape: [...src.shape], data: await hostData(src, dtype) };
    } finally {
      if (q) src.dispose();
    }
  }

  await mkdir(outDir, { recursive: true });
  const files: string[] = [];
  const weights = join(outDir, 'model.safetensors');
  await writeSafetensorsAtomic(weights, tensors, { format: 'pt' });
  files.push(weights);
  await rm(join(outDir, 'model.safetensors.index.json'), { force: true });
  if (tokenizerText !== undefined) {
    const tok = join(outDir, 'tokenizer.json');
    await writeFileAtomic(tok, new TextEncoder().encode(tokenizerText));
    files.push(tok);
  }
  const base: Record<string, unknown> = { ...(options.baseConfig ?? {}) };
  for (const key of DROP_FROM_BASE) delete base[key];
  const cfg = { ...base, ...toConfigJson(dropMtp ? { ...config, numNextnPredictLayers: 0 } : config, { dtype: dtype === 'f32' ? 'float32' : 'bfloat16' }) };
  const configPath = join(outDir, 'config.json');
  await writeFileAtomic(configPath, new TextEncoder().encode(`${JSON.stringify(cfg, null, 2)}\n`));
  files.push(configPath);
  return { files: files.map((f) => resolve(f)) };
}

async function hostData(t: Tensor, dtype: 'f32' | 'bf16'): Promise<Float32Array | Uint16Array> {
  if (t.dtype === dtype) return (await t.data()) as Float32Array | Uint16Array;
  const c = cast(t, dtype);
  try {
    return (await c.data()) as Float32Array | Uint16Array;
  } finally {
    c.dispose();
  }
}

/** Loads an exported (or any transformers DeepSeek-V3) directory into a fresh kiln model. */
export async function loadHuggingFaceModel(dir: string): Promise<DeepseekV3ForCausalLM> {
  const ckpt = await HfCheckpoint.open(dir);
  try {
    const config = parseDeepseekV3Config(ckpt.config, join(dir, 'config.json'));
    const model = DeepseekV3ForCausalLM.create(config, { init: 'zeros' });
    await loadModelWeights(model, ckpt, { numHiddenLayers: config.numHiddenLayers });
    return model;
  } finally {
    await ckpt.close();
  }
}

/**
 * Writes `reference.safetensors` next to an export: `input_ids` I32 [batch, seq] (deterministic
 * from `seed`) and `logits` F32 [batch, seq, vocab] computed by kiln from the exported files
 * themselves, for `test/fixtures/check_hf_export.py` to compare transformers against.
 */
export async function writeExportReference(dir: string, options: { batch?: number; seq?: number; seed?: number } = {}): Promise<string> {
  const batch = options.batch ?? 2;
  const seq = options.seq ?? 12;
  const model = await loadHuggingFaceModel(dir);
  try {
    const ids = new Int32Array(batch * seq);
    let s = (options.seed ?? 1) >>> 0;
    for (let i = 0; i < ids.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      ids[i] = s % model.config.vocabSize;
    }
    const input = tensor(ids, [batch, seq], 'i32');
    const logits = noGrad(() => model.forward(input));
    const data = (await logits.data()) as Float32Array;
    input.dispose();
    const path = join(dir, 'reference.safetensors');
    await writeSafetensorsAtomic(path, { input_ids: { dtype: 'I32', shape: [batch, seq], data: ids }, logits: { dtype: 'F32', shape: [...logits.shape], data } }, { format: 'pt' });
    logits.dispose();
    return resolve(path);
  } finally {
    model.dispose();
  }
}

/**
 * Builds the model held by a training snapshot: its config from `configJson.model` (a
 * transformers config.json object) and its parameters from the tensors `model/<name>`.
 * CheckpointError names what is missing or malformed.
 */
export function modelFromSnapshot(snap: TrainingSnapshot, source: string): DeepseekV3ForCausalLM {
  const cfgJson = snap.configJson.model;
  if (cfgJson === null || typeof cfgJson !== 'object' || Array.isArray(cfgJson)) {
    throw new CheckpointError(source, 'field config.model is missing: the snapshot does not say which model it holds (expected a transformers config.json object)');
  }
  let config: DeepseekV3Config;
  try {
    config = parseDeepseekV3Config(cfgJson, `${source} (config.model)`);
  } catch (err) {
    throw new CheckpointError(source, (err as Error).message);
  }
  const model = DeepseekV3ForCausalLM.create(config, { init: 'zeros' });
  try {
    for (const [name, p] of model.parameters()) {
      const t = snap.tensors.get(MODEL_TENSOR_PREFIX + name);
      if (!t) throw new CheckpointError(source, `missing from the snapshot (expected shape [${p.shape.join(', ')}])`, MODEL_TENSOR_PREFIX + name);
      if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
        throw new CheckpointError(source, `shape is [${t.shape.join(', ')}], the model expects [${p.shape.join(', ')}]`, MODEL_TENSOR_PREFIX + name);
      }
      model.setParameter(name, toParamTensor(t, p.dtype, source, MODEL_TENSOR_PREFIX + name));
    }
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

function toParamTensor(t: SnapshotTensor, want: string, source: string, name: string): Tensor {
  if (t.dtype !== 'f32' && t.dtype !== 'bf16') throw new CheckpointError(source, `dtype ${t.dtype} cannot hold a model parameter (expected f32 or bf16)`, name);
  const x = fromStorage(t.data, t.shape, t.dtype);
  if (x.dtype === want) return x;
  const c = cast(x, want as 'f32' | 'bf16');
  x.dispose();
  return c;
}
