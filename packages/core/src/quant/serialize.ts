import { FormatError } from '../errors.js';
import { bytesOf, decodeSafetensors, encodeSafetensors, kilnDTypeOf } from '../io/safetensors.js';
import type { CreateOptions } from '../ops/creation.js';
import { QuantizedTensor, type QuantizedHost } from './quantized-tensor.js';

/**
 * Saves a QuantizedTensor as safetensors in DeepSeek-V3's checkpoint layout: `weight`
 * (F8_E4M3/F8_E5M2 codes) and `weight_scale_inv` (F32 block scales), with the block shape
 * and scale format in the metadata.
 */
export async function saveQuantized(q: QuantizedTensor): Promise<Uint8Array> {
  const host = await q.toHost();
  return encodeSafetensors(
    {
      weight: { dtype: host.format === 'e4m3' ? 'F8_E4M3' : 'F8_E5M2', shape: host.shape, bytes: host.codes },
      weight_scale_inv: { dtype: 'F32', shape: [Math.ceil(host.shape[0] / host.block[0]), Math.ceil(host.shape[1] / host.block[1])], bytes: bytesOf(host.scales) },
    },
    { format: 'kiln.quantized.v1', block: JSON.stringify(host.block), scale_format: host.scaleFormat },
  );
}

/** Loads what `saveQuantized` wrote (or any weight/weight_scale_inv pair, given its block). */
export function loadQuantized(bytes: Uint8Array, options: CreateOptions & { block?: [number, number]; source?: string } = {}): QuantizedTensor {
  const source = options.source ?? 'quantized tensor';
  const { tensors, metadata } = decodeSafetensors(bytes, source);
  const w = tensors.get('weight');
  const s = tensors.get('weight_scale_inv');
  if (!w || !s) throw new FormatError('loadQuantized', `${source}: expected tensors "weight" and "weight_scale_inv", found ${[...tensors.keys()].join(', ') || 'none'}`);
  const format = kilnDTypeOf(w.dtype);
  if (format !== 'e4m3' && format !== 'e5m2') throw new FormatError('loadQuantized', `${source}: "weight" must be F8_E4M3 or F8_E5M2, got ${w.dtype}`);
  if (s.dtype !== 'F32') throw new FormatError('loadQuantized', `${source}: "weight_scale_inv" must be F32, got ${s.dtype}`);
  if (w.shape.length !== 2) throw new FormatError('loadQuantized', `${source}: "weight" must be 2-D, got [${w.shape.join(', ')}]`);
  let block = options.block;
  if (!block && metadata.block) {
    try {
      block = JSON.parse(metadata.block) as [number, number];
    } catch {
      throw new FormatError('loadQuantized', `${source}: metadata "block" is not JSON: ${metadata.block}`);
    }
  }
  block ??= [128, 128];
  const scaleFormat = metadata.scale_format === 'ue8m0' ? 'ue8m0' : 'fp32';
  // Copy out of the file buffer so the tensor owns aligned storage.
  const scales = new Float32Array(s.bytes.length / 4);
  bytesOf(scales).set(s.bytes);
  const host: QuantizedHost = {
    codes: new Uint8Array(w.bytes),
    scales,
    shape: [w.shape[0], w.shape[1]],
    block: [block[0], block[1]],
    format,
    scaleFormat,
  };
  return QuantizedTensor.fromHost(host, options);
}
