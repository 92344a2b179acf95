import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { QuantizedTensor, WEIGHT_BLOCK, cast, type Backend, type SafetensorsEntry, type Tensor } from '@kiln/core';
import { CheckpointError } from './errors.js';
import { SafetensorsFile } from './safetensors-file.js';

/** DeepSeek's FP8 release format, from `config.json`'s `quantization_config`. */
export interface Fp8QuantizationConfig {
  quantMethod: 'fp8';
  fmt: 'e4m3';
  weightBlockSize: [number, number];
  activationScheme: string;
}

/**
 * Reads `quantization_config` (absent → undefined). Only DeepSeek's format is accepted:
 * quant_method fp8, fmt e4m3, weight_block_size [128, 128].
 */
export function parseQuantizationConfig(config: Record<string, unknown>, file: string): Fp8QuantizationConfig | undefined {
  const q = config.quantization_config;
  if (q === undefined || q === null) return undefined;
  if (typeof q !== 'object' || Array.isArray(q)) throw new CheckpointError(file, 'field quantization_config must be an object');
  const r = q as Record<string, unknown>;
  if (r.quant_method !== 'fp8') throw new CheckpointError(file, `field quantization_config.quant_method is ${JSON.stringify(r.quant_method)}, expected "fp8"`);
  const fmt = r.fmt ?? 'e4m3';
  if (fmt !== 'e4m3') throw new CheckpointError(file, `field quantization_config.fmt is ${JSON.stringify(fmt)}, expected "e4m3"`);
  const b = r.weight_block_size;
  if (!Array.isArray(b) || b.length !== 2 || b[0] !== WEIGHT_BLOCK[0] || b[1] !== WEIGHT_BLOCK[1]) {
    throw new CheckpointError(file, `field quantization_config.weight_block_size is ${JSON.stringify(b)}, expected [128, 128]`);
  }
  const scheme = r.activation_scheme ?? 'dynamic';
  if (scheme !== 'dynamic') throw new CheckpointError(file, `field quantization_config.activation_scheme is ${JSON.stringify(scheme)}, expected "dynamic"`);
  return { quantMethod: 'fp8', fmt: 'e4m3', weightBlockSize: [128, 128], activationScheme: 'dynamic' };
}

export interface LoadTensorOptions {
  backend?: Backend;
  /** FP8 weights: 'dequantize' (default) gives f32; 'keep' gives a QuantizedTensor. */
  fp8?: 'dequantize' | 'keep';
}

/**
 * A Hugging Face checkpoint directory: `config.json` plus `model.safetensors` or shards listed
 * in `model.safetensors.index.json`. Tensors are read lazily, one at a time.
 */
export class HfCheckpoint {
  private constructor(
    readonly dir: string,
    readonly config: Record<string, unknown>,
    readonly quantization: Fp8QuantizationConfig | undefined,
    private readonly files: Map<string, SafetensorsFile>,
    /** tensor name → the file that holds it. */
    private readonly where: Map<string, SafetensorsFile>,
  ) {}

  static async open(dir: string): Promise<HfCheckpoint> {
    const configPath = join(dir, 'config.json');
    const config = await readJson(configPath);
    const quantization = parseQuantizationConfig(config, configPath);
    const indexPath = join(dir, 'model.safetensors.index.json');
    const files = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      if (await exists(indexPath)) {
        const index = await readJson(indexPath);
        const map = index.weight_map;
        if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new CheckpointError(indexPath, 'field weight_map must map tensor names to shard file names');
        for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
          if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard === '..') {
            throw new CheckpointError(indexPath, `weight_map entry ${JSON.stringify(shard)} must be a shard file name in the checkpoint directory`, name);
          }
          let f = files.get(shard);
          if (!f) {
            f = await SafetensorsFile.open(join(dir, shard));
            files.set(shard, f);
          }
          if (!f.has(name)) throw new CheckpointError(f.path, `listed in ${indexPath} but not found in this shard`, name);
          where.set(name, f);
        }
      } else {
        const single = join(dir, 'model.safetensors');
        if (!(await exists(single))) throw new CheckpointError(dir, 'no model.safetensors or model.safetensors.index.json in the checkpoint directory');
        const f = await SafetensorsFile.open(single);
        files.set('model.safetensors', f);
        for (const name of f.names()) where.set(name, f);
      }
    } catch (err) {
      for (const f of files.values()) await f.close();
      throw err;
    }
    return new HfCheckpoint(dir, config, quantization, files, where);
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** The file holding `name`; throws a CheckpointError naming the tensor when absent. */
  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new CheckpointError(this.dir, 'missing from the checkpoint', name);
    return f;
  }

  entry(name: string): SafetensorsEntry {
    return this.fileOf(name).entry(name);
  }

  /** Whether `name` is an FP8 weight (F8_E4M3 with a `<name>_scale_inv` companion). */
  isFp8(name: string): boolean {
    return this.has(name) && this.entry(name).dtype === 'F8_E4M3';
  }

  /** One tensor as stored (F64 → f32, I64 → i32). FP8 weights come through `load`. */
  async readTensor(name: string, options: { backend?: Backend } = {}): Promise<Tensor> {
    return this.fileOf(name).readTensor(name, options);
  }

  /**
   * A weight ready for the model: F8_E4M3 weights are paired with their float32
   * `weight_scale_inv` ([ceil(N/128), ceil(K/128)]) and returned dequantized to f32 or as a
   * QuantizedTensor; every other tensor is converted to f32 when it is a float.
   */
  async load(name: string, options: LoadTensorOptions = {}): Promise<Tensor | QuantizedTensor> {
    const file = this.fileOf(name);
    const e = file.entry(name);
    if (e.dtype !== 'F8_E4M3') {
      if (e.dtype === 'F8_E5M2') throw new CheckpointError(file.path, 'F8_E5M2 weights are not supported (DeepSeek checkpoints store F8_E4M3)', name);
      const t = await file.readTensor(name, { backend: options.backend });
      if (t.dtype === 'f16' || t.dtype === 'bf16') {
        const f = cast(t, 'f32');
        t.dispose();
        return f;
      }
      return t;
    }
    const q = await this.loadFp8(name, options.backend);
    if (options.fp8 === 'keep') return q;
    const d = q.dequantize();
    q.dispose();
    return d;
  }

  private async loadFp8(name: string, backend: Backend | undefined): Promise<QuantizedTensor> {
    const file = this.fileOf(name);
    const e = file.entry(name);
    if (e.shape.length !== 2) throw new CheckpointError(file.path, `an F8_E4M3 weight must be 2-D [out, in], got [${e.shape.join(', ')}]`, name);
    const scaleName = `${name}_scale_inv`;
    if (!this.has(scaleName)) throw new CheckpointError(file.path, `F8_E4M3 weight without its scale tensor '${scaleName}'`, name);
    const sfile = this.fileOf(scaleName);
    const se = sfile.entry(scaleName);
    const [n, k] = e.shape;
    const want = [Math.ceil(n / 128), Math.ceil(k / 128)];
    if (se.dtype !== 'F32') throw new CheckpointError(sfile.path, `dtype is ${se.dtype}, expected F32`, scaleName);
    if (se.shape.length !== 2 || se.shape[0] !== want[0] || se.shape[1] !== want[1]) {
      throw new CheckpointError(sfile.path, `shape is [${se.shape.join(', ')}], expected [${want.join(', ')}] for weight [${n}, ${k}] in 128x128 blocks`, scaleName);
    }
    const codes = await file.readBytes(name);
    const sb = await sfile.readBytes(scaleName);
    const scales = new Float32Array(sb.buffer, sb.byteOffset, sb.length / 4);
    for (let i = 0; i < scales.length; i++) {
      if (!Number.isFinite(scales[i]!)) throw new CheckpointError(sfile.path, `scale ${i} is ${scales[i]}, expected a finite number`, scaleName);
    }
    return QuantizedTensor.fromHost(
      { codes, scales, shape: [n!, k!], block: [128, 128], format: 'e4m3', scaleFormat: 'fp32' },
      { backend },
    );
  }

  async close(): Promise<void> {
    for (const f of this.files.values()) await f.close();
    this.files.clear();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads a JSON object file; a missing or malformed file is a CheckpointError naming it. */
export async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CheckpointError(path, `cannot read the file (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(path, `not valid JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new CheckpointError(path, 'expected a JSON object');
  return json as Record<string, unknown>;
}
