import type { Fp8Format } from '../codecs/fp8.js';
import { engine } from '../engine.js';
import { ArgumentError, DTypeError, ShapeError } from '../errors.js';
import { formatShape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { fromStorage, type CreateOptions } from '../ops/creation.js';
import { backendOf, wrap } from '../ops/plumbing.js';
import { cast } from '../ops/cast.js';
import { mul } from '../ops/elementwise.js';
import { indexSelect } from '../ops/indexing.js';
import { sliceAxis } from '../ops/layout.js';
import { checkBlockArgs, type ScaleFormat } from './blockwise.js';
import { checkFp8GemmOperands, resolveFp8GemmOptions, type Fp8GemmOptions } from './fp8-gemm-reference.js';

/** Block shapes DeepSeek-V3 uses. */
export const ACTIVATION_BLOCK: readonly [number, number] = [1, 128];
export const WEIGHT_BLOCK: readonly [number, number] = [128, 128];

/**
 * A 2-D tensor in fine-grained FP8: codes [rows, cols] plus one f32 scale per block
 * (`scales[i, j]` multiplies the codes of block (i, j) back, like DeepSeek's
 * `weight_scale_inv`). Owns its two tensors.
 */
export class QuantizedTensor {
  readonly codes: Tensor;
  readonly scales: Tensor;
  readonly block: readonly [number, number];
  readonly scaleFormat: ScaleFormat;

  constructor(codes: Tensor, scales: Tensor, block: readonly [number, number], scaleFormat: ScaleFormat = 'fp32') {
    const op = 'QuantizedTensor';
    if (codes.dtype !== 'e4m3' && codes.dtype !== 'e5m2') throw new DTypeError(op, `codes must be e4m3 or e5m2, got ${codes.dtype}`);
    if (scales.dtype !== 'f32') throw new DTypeError(op, `scales must be f32, got ${scales.dtype}`);
    if (codes.rank !== 2) throw new ShapeError(op, `codes must be 2-D [rows, cols], got ${formatShape(codes.shape)}`);
    checkBlockArgs(op, codes.size, codes.shape, [...block]);
    const want = [Math.ceil(codes.shape[0] / block[0]), Math.ceil(codes.shape[1] / block[1])];
    if (scales.rank !== 2 || scales.shape[0] !== want[0] || scales.shape[1] !== want[1]) {
      throw new ShapeError(op, `scales must be ${formatShape(want)} for codes ${formatShape(codes.shape)} in [${block.join(', ')}] blocks, got ${formatShape(scales.shape)}`);
    }
    backendOf(op, codes, scales);
    this.codes = codes;
    this.scales = scales;
    this.block = Object.freeze([block[0], block[1]]) as readonly [number, number];
    this.scaleFormat = scaleFormat;
  }

  get shape(): readonly number[] {
    return this.codes.shape;
  }
  get format(): Fp8Format {
    return this.codes.dtype as Fp8Format;
  }
  get isDisposed(): boolean {
    return this.codes.isDisposed || this.scales.isDisposed;
  }

  dispose(): void {
    this.codes.dispose();
    this.scales.dispose();
  }

  /** f32 values: decode(code) * scale of its block. */
  dequantize(): Tensor {
    return dequantize(this);
  }

  /**
   * Rows [start, start + count). With blocks taller than one row, `start` must be
   * block-aligned so that scales stay whole blocks (count may end mid-block only at the end).
   */
  sliceRows(start: number, count: number): QuantizedTensor {
    const op = 'QuantizedTensor.sliceRows';
    const [rows] = this.codes.shape;
    const br = this.block[0];
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
      throw new ShapeError(op, `rows [${start}, ${start + count}) are out of range for ${rows} rows`);
    }
    if (start % br !== 0 || (count % br !== 0 && start + count !== rows)) {
      throw new ShapeError(op, `rows [${start}, ${start + count}) cut through a ${br}-row scale block; slice on multiples of ${br}`);
    }
    const codes = sliceAxis(this.codes, 0, start, count);
    const scales = sliceAxis(this.scales, 0, start / br, Math.ceil(count / br));
    return new QuantizedTensor(codes, scales, this.block, this.scaleFormat);
  }

  /** Host copies of codes and scales (for saving). */
  async toHost(): Promise<QuantizedHost> {
    return {
      codes: (await this.codes.data()) as Uint8Array,
      scales: (await this.scales.data()) as Float32Array,
      shape: [this.codes.shape[0], this.codes.shape[1]],
      block: [this.block[0], this.block[1]],
      format: this.format,
      scaleFormat: this.scaleFormat,
    };
  }

  /** Rebuilds a QuantizedTensor from host codes and scales (validated). */
  static fromHost(host: QuantizedHost, options: CreateOptions = {}): QuantizedTensor {
    const op = 'QuantizedTensor.fromHost';
    if (!(host.codes instanceof Uint8Array)) throw new ArgumentError(op, 'codes must be a Uint8Array');
    if (!(host.scales instanceof Float32Array)) throw new ArgumentError(op, 'scales must be a Float32Array');
    const [rows, cols] = host.shape;
    const nr = Math.ceil(rows / host.block[0]);
    const nc = Math.ceil(cols / host.block[1]);
    if (host.scales.length !== nr * nc) throw new ShapeError(op, `expected ${nr * nc} scales for [${rows}, ${cols}] in [${host.block.join(', ')}] blocks, got ${host.scales.length}`);
    const codes = fromStorage(host.codes, [rows, cols], host.format, options);
    const scales = fromStorage(host.scales, [nr, nc], 'f32', options);
    return new QuantizedTensor(codes, scales, host.block, host.scaleFormat);
  }
}

export interface QuantizedHost {
  codes: Uint8Array;
  scales: Float32Array;
  shape: [number, number];
  block: [number, number];
  format: Fp8Format;
  scaleFormat: ScaleFormat;
}

export interface QuantizeOptions {
  /** Default [1, 128] (activation tiles); use WEIGHT_BLOCK [128, 128] for weights. */
  block?: readonly [number, number];
  format?: Fp8Format;
  scaleFormat?: ScaleFormat;
}

/** Quantises a 2-D float tensor on its backend (bit-exact with `quantizeBlockwise`). */
export function quantize(x: Tensor, options: QuantizeOptions = {}): QuantizedTensor {
  const op = 'quantize';
  const backend = backendOf(op, x);
  const block = options.block ?? ACTIVATION_BLOCK;
  const format = options.format ?? 'e4m3';
  const scaleFormat = options.scaleFormat ?? 'fp32';
  if (x.rank !== 2) throw new ShapeError(op, `x must be 2-D [rows, cols], got ${formatShape(x.shape)}; reshape first`);
  if (x.dtype !== 'f32' && x.dtype !== 'bf16' && x.dtype !== 'f16') throw new DTypeError(op, `x must be f32, bf16 or f16, got ${x.dtype}`);
  if (format !== 'e4m3' && format !== 'e5m2') throw new ArgumentError(op, `format must be 'e4m3' or 'e5m2', got ${JSON.stringify(format)}`);
  if (scaleFormat !== 'fp32' && scaleFormat !== 'ue8m0') throw new ArgumentError(op, `scaleFormat must be 'fp32' or 'ue8m0', got ${JSON.stringify(scaleFormat)}`);
  checkBlockArgs(op, x.size, x.shape, [...block]);
  const v = x.dtype === 'f32' ? x : cast(x, 'f32');
  try {
    const { codes, scales } = backend.quantizeBlockwise(v, [block[0], block[1]], { format, scaleFormat });
    const [rows, cols] = x.shape;
    const c = wrap(backend, codes, [rows, cols], format);
    const s = wrap(backend, scales, [Math.ceil(rows / block[0]), Math.ceil(cols / block[1])], 'f32');
    return new QuantizedTensor(c, s, block, scaleFormat);
  } finally {
    if (v !== x) v.dispose();
  }
}

/** decode(code) * scale, composed from primitives (cast, indexSelect, mul). f32 result. */
export function dequantize(q: QuantizedTensor): Tensor {
  const op = 'dequantize';
  backendOf(op, q.codes, q.scales);
  return engine.tidy(() => {
    const [rows, cols] = q.codes.shape;
    const [br, bc] = q.block;
    const backend = q.codes.backend;
    const rowBlock = br === 1 ? undefined : divIndex(rows, br, backend);
    const colBlock = divIndex(cols, bc, backend);
    let s = q.scales;
    if (rowBlock) s = indexSelect(s, 0, rowBlock);
    s = indexSelect(s, 1, colBlock);
    return mul(cast(q.codes, 'f32'), s);
  });
}

function divIndex(n: number, b: number, backend: Tensor['backend']): Tensor {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = Math.floor(i / b);
  return fromStorage(idx, [n], 'i32', { backend });
}

export interface MatmulFp8Options extends Fp8GemmOptions {
  /** Output dtype: f32 (default) or bf16 (rounded from the f32 result). */
  outDtype?: 'f32' | 'bf16';
}

/**
 * DeepSeek-V3's FP8 GEMM: a [M, K] (1x128 tiles) times b [N, K]^T (a Linear weight in 128x128
 * blocks) -> [M, N], promoting partial sums to f32 every `promotionInterval` (default 128) K
 * elements and applying both block scales there. K need not be a multiple of 128. b may have
 * any block height, e.g. 1x128 tiles like a: the weight-gradient GEMM of FP8 training
 * (`fp8Linear`) multiplies dyᵀ [N, T] by xᵀ [K, T], both tiled 1x128 along the tokens T.
 */
export function matmulFp8(a: QuantizedTensor, b: QuantizedTensor, options: MatmulFp8Options = {}): Tensor {
  const op = 'matmulFp8';
  if (!(a instanceof QuantizedTensor) || !(b instanceof QuantizedTensor)) throw new ArgumentError(op, 'a and b must be QuantizedTensors (see quantize())');
  const backend = backendOf(op, a.codes, a.scales, b.codes, b.scales);
  const hostA = { codes: { length: a.codes.size }, scales: { length: a.scales.size }, shape: [a.codes.shape[0], a.codes.shape[1]] as [number, number], block: a.block };
  const hostB = { codes: { length: b.codes.size }, scales: { length: b.scales.size }, shape: [b.codes.shape[0], b.codes.shape[1]] as [number, number], block: b.block };
  const { M, N } = checkFp8GemmOperands(op, hostA, hostB);
  const { nc, model } = resolveFp8GemmOptions(op, options);
  if (nc !== Infinity && nc % a.block[1] !== 0 && a.block[1] % nc !== 0) {
    throw new ArgumentError(op, `promotionInterval ${nc} must divide or be a multiple of the K block ${a.block[1]}`);
  }
  const outDtype = options.outDtype ?? 'f32';
  if (outDtype !== 'f32' && outDtype !== 'bf16') throw new DTypeError(op, `outDtype must be 'f32' or 'bf16', got ${JSON.stringify(outDtype)}`);
  const id = backend.matmulFp8(a, b, {
    promotionInterval: nc,
    accumulatorMantissaBits: model.mantissaBits,
    accumulatorGroupSize: model.groupSize,
    accumulatorRounding: model.rounding,
  });
  const out = wrap(backend, id, [M, N], 'f32');
  if (outDtype === 'f32') return out;
  const rounded = cast(out, 'bf16');
  out.dispose();
  return rounded;
}
