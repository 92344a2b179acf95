import { QuantizedTensor, type Backend, type Tensor } from '@kiln/core';
import { CheckpointError } from './errors.js';
import type { HfCheckpoint } from './checkpoint.js';

/** What the loader needs from a model: its parameters by transformers' names, and a setter. */
export interface LoadableModel {
  parameters(): Map<string, Tensor>;
  setParameter(name: string, value: Tensor | QuantizedTensor): void;
}

export interface LoadWeightsOptions {
  backend?: Backend;
  /**
   * FP8 weights: 'dequantize' (default) loads f32; 'keep' loads QuantizedTensors for every
   * FP8 weight `keepFp8` accepts (default: all but `kv_b_proj`, which DeepSeek's reference
   * FP8 inference dequantizes) and dequantizes the rest.
   */
  fp8?: 'dequantize' | 'keep';
  keepFp8?: (name: string) => boolean;
  /** config.num_hidden_layers: layers at or beyond it are MTP modules. */
  numHiddenLayers: number;
}

export interface LoadReport {
  loaded: number;
  fp8Kept: number;
  fp8Dequantized: number;
  /** Human-readable notes: absent MTP layers, checkpoint tensors the model does not use. */
  notes: string[];
}

const LAYER_RE = /^model\.layers\.(\d+)\./;

function layerOf(name: string): number | undefined {
  const m = LAYER_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Loads every parameter of `model` from `ckpt`, one tensor at a time. Shapes must match
 * exactly; a parameter missing from the checkpoint is an error, except those of MTP layers
 * (`model.layers.{num_hidden_layers}.*`), which are skipped with a note. Checkpoint tensors
 * the model has no parameter for (e.g. MTP layers of a model built without them) are noted.
 */
export async function loadModelWeights(model: LoadableModel, ckpt: HfCheckpoint, options: LoadWeightsOptions): Promise<LoadReport> {
  const params = model.parameters();
  const keep = options.keepFp8 ?? ((n: string) => !n.includes('kv_b_proj'));
  const report: LoadReport = { loaded: 0, fp8Kept: 0, fp8Dequantized: 0, notes: [] };
  const missingMtp = new Set<number>();
  for (const [name, param] of params) {
    const layer = layerOf(name);
    const isMtp = layer !== undefined && layer >= options.numHiddenLayers;
    if (!ckpt.has(name)) {
      if (isMtp) {
        missingMtp.add(layer);
        continue;
      }
      throw new CheckpointError(ckpt.dir, `missing from the checkpoint (the model expects shape [${param.shape.join(', ')}])`, name);
    }
    const file = ckpt.fileOf(name);
    const e = file.entry(name);
    if (e.shape.length !== param.shape.length || e.shape.some((d, i) => d !== param.shape[i])) {
      throw new CheckpointError(file.path, `shape is [${e.shape.join(', ')}], expected [${param.shape.join(', ')}]`, name);
    }
    const fp8 = e.dtype === 'F8_E4M3';
    const mode = fp8 && options.fp8 === 'keep' && keep(name) ? 'keep' : 'dequantize';
    const value = await ckpt.load(name, { backend: options.backend, fp8: mode });
    if (!(value instanceof QuantizedTensor) && (value.dtype === 'f32') !== (param.dtype === 'f32') && value.dtype !== param.dtype) {
      value.dispose();
      throw new CheckpointError(file.path, `dtype ${e.dtype} does not fit the model's ${param.dtype} parameter`, name);
    }
    model.setParameter(name, value);
    report.loaded++;
    if (fp8) {
      if (mode === 'keep') report.fp8Kept++;
      else report.fp8Dequantized++;
    }
  }
  for (const l of [...missingMtp].sort((a, b) => a - b)) {
    report.notes.push(`MTP layer model.layers.${l}.* is not in the checkpoint; ignored (MTP is not needed for inference)`);
  }
  const unused = new Map<string, number>();
  for (const name of ckpt.names()) {
    if (params.has(name) || name.endsWith('_scale_inv') && params.has(name.slice(0, -'_scale_inv'.length))) continue;
    const layer = layerOf(name);
    const key = layer !== undefined && layer >= options.numHiddenLayers ? `model.layers.${layer}.* (MTP)` : name;
    unused.set(key, (unused.get(key) ?? 0) + 1);
  }
  for (const [key, n] of unused) report.notes.push(`checkpoint tensor${n > 1 ? `s ${key} (${n})` : ` ${key}`} not used by the model; ignored`);
  return report;
}
