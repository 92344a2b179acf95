import type { Fp8Format } from '../codecs/fp8.js';
import { isRecording, noGrad, recordGradWith, savedCopy } from '../autograd/tape.js';
import { swiglu } from '../composed/activations.js';
import { isFloatDType } from '../dtype.js';
import { tidy } from '../engine.js';
import { ArgumentError, DTypeError, ShapeError } from '../errors.js';
import { cast } from '../ops/cast.js';
import { add, mul, sigmoid, sub } from '../ops/elementwise.js';
import { reshape, transpose } from '../ops/layout.js';
import { linear, matmul } from '../ops/matmul.js';
import { backendOf } from '../ops/plumbing.js';
import { formatShape, shapesEqual } from '../shape.js';
import type { Tensor } from '../tensor.js';
import type { ScaleFormat } from './blockwise.js';
import { ACTIVATION_BLOCK, dequantize, matmulFp8, quantize, QuantizedTensor, WEIGHT_BLOCK } from './quantized-tensor.js';

/**
 * Mixed-precision training GEMMs of a Linear layer (DeepSeek-V3 §3.3): y = x Wᵀ with x [..., K]
 * and W [N, K] the f32 master weight, differentiable through `valueAndGrads`.
 *
 * fp8 (`fp8Linear`): all three GEMMs take FP8 operands with fine-grained scales and promote
 * to f32 every 128 along their reduction axis (`matmulFp8`):
 *   Fprop  y  = x · Wᵀ   x in 1x128 tiles along K,  W in 128x128 blocks;
 *   Dgrad  dx = dy · W   dy in 1x128 tiles along N, W in 128x128 blocks (Wᵀ's blocks are W's
 *                         blocks transposed, same scales: `transposeQuantized`);
 *   Wgrad  dW = dyᵀ · x  dy and x both in tiles of 128 tokens (the reduction axis of Wgrad):
 *                         dyᵀ [N, T] and xᵀ [K, T] in 1x128 tiles.
 * What the tape keeps for backward is x already quantized for Wgrad (codes 1 byte/element
 * plus one f32 scale per 128 tokens) and the master weight (alive anyway): the f32 input is
 * freed as soon as nothing else uses it. Linears reading the same x in one forward pass share
 * that copy (`savedCopy`). Gradients are f32.
 *
 * bf16 (`bf16Linear`): x, W and dy rounded to bf16, products accumulated in f32, f32 outputs;
 * the tape keeps x as bf16 (2 bytes/element).
 *
 * fp32: the plain `linear` (autograd keeps x and W as they are).
 */

export type LinearPrecision = 'fp32' | 'bf16' | 'fp8';
export const LINEAR_PRECISIONS: readonly LinearPrecision[] = ['fp32', 'bf16', 'fp8'];

export interface Fp8LinearOptions {
  /** FP8 format of every operand (activations, weights, gradients); default e4m3, as DeepSeek-V3. */
  format?: Fp8Format;
  /** Block scales as plain f32 (default) or powers of two (ue8m0). */
  scaleFormat?: ScaleFormat;
}

/** Throws unless `p` is one of 'fp32', 'bf16', 'fp8'. */
export function checkLinearPrecision(op: string, p: unknown): asserts p is LinearPrecision {
  if (!LINEAR_PRECISIONS.includes(p as LinearPrecision)) {
    throw new ArgumentError(op, `precision must be one of ${LINEAR_PRECISIONS.map((x) => `'${x}'`).join(', ')}, got ${JSON.stringify(p)}`);
  }
}

/**
 * The same quantized matrix transposed: codes [C, R], scales transposed, block [bc, br]. For
 * 128x128 weight blocks this is exactly `quantize(transpose(W), { block: [128, 128] })`, bit for
 * bit (a block's amax, hence its scale and codes, do not depend on the order of its elements;
 * tested), which is what the Dgrad GEMM needs without re-quantizing.
 */
export function transposeQuantized(q: QuantizedTensor): QuantizedTensor {
  if (!(q instanceof QuantizedTensor)) throw new ArgumentError('transposeQuantized', 'expected a QuantizedTensor');
  return new QuantizedTensor(transpose(q.codes), transpose(q.scales), [q.block[1], q.block[0]], q.scaleFormat);
}

function checkOperands(op: string, x: Tensor, weight: Tensor): { K: number; N: number; T: number } {
  backendOf(op, x, weight);
  if (weight.rank !== 2) throw new ShapeError(op, `weight must be 2-D [out, in], got ${formatShape(weight.shape)}`);
  if (!isFloatDType(weight.dtype) || weight.dtype === 'e4m3' || weight.dtype === 'e5m2') throw new DTypeError(op, `weight must be f32, bf16 or f16 (the master weight), got ${weight.dtype}`);
  if (!isFloatDType(x.dtype) || x.dtype === 'e4m3' || x.dtype === 'e5m2') throw new DTypeError(op, `x must be f32, bf16 or f16, got ${x.dtype}`);
  const [N, K] = weight.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== K) {
    throw new ShapeError(op, `x ${formatShape(x.shape)} must end in the weight's in-features ${K} (weight ${formatShape(weight.shape)})`);
  }
  if (K === 0 || N === 0) throw new ShapeError(op, `weight ${formatShape(weight.shape)} has no elements`);
  return { K, N, T: x.size / K };
}

function fp8Options(op: string, options: Fp8LinearOptions): { format: Fp8Format; scaleFormat: ScaleFormat } {
  const format = options.format ?? 'e4m3';
  const scaleFormat = options.scaleFormat ?? 'fp32';
  if (format !== 'e4m3' && format !== 'e5m2') throw new ArgumentError(op, `format must be 'e4m3' or 'e5m2', got ${JSON.stringify(format)}`);
  if (scaleFormat !== 'fp32' && scaleFormat !== 'ue8m0') throw new ArgumentError(op, `scaleFormat must be 'fp32' or 'ue8m0', got ${JSON.stringify(scaleFormat)}`);
  return { format, scaleFormat };
}

/**
 * Tiles of 128 along the token axis: m [T, C] -> mᵀ [C, T] in 1x128 tiles (Wgrad's operand).
 * Quantized in place as [128, 1] tiles of m, then codes and scales are transposed (1 byte per
 * element moved instead of 4): the same bits as quantizing transpose(m) in [1, 128] tiles.
 */
function quantizeTokenTiles(m: Tensor, format: Fp8Format, scaleFormat: ScaleFormat): QuantizedTensor {
  const q = quantize(m, { block: TOKEN_TILE, format, scaleFormat });
  const t = transposeQuantized(q);
  q.dispose();
  return t;
}
const TOKEN_TILE: readonly [number, number] = [ACTIVATION_BLOCK[1], ACTIVATION_BLOCK[0]];

/**
 * The Dgrad and Wgrad GEMMs of an FP8 Linear: dX = dY · W (dY 1x128 along N, W 128x128),
 * dW = dYᵀ · X (both in 128-token tiles; `xT` is X's saved quantization, [K, T]).
 */
function fp8LinearGrads(
  dy2: Tensor,
  weight: Tensor,
  xT: QuantizedTensor | undefined,
  needX: boolean,
  format: Fp8Format,
  scaleFormat: ScaleFormat,
): { dx: Tensor | null; dw: Tensor | null } {
  let dx: Tensor | null = null;
  let dw: Tensor | null = null;
  if (needX) {
    const dyq = quantize(dy2, { block: ACTIVATION_BLOCK, format, scaleFormat });
    const wT = transposeQuantized(quantize(weight, { block: WEIGHT_BLOCK, format, scaleFormat }));
    dx = matmulFp8(dyq, wT);
  }
  if (xT) dw = matmulFp8(quantizeTokenTiles(dy2, format, scaleFormat), xT);
  return { dx, dw };
}

/**
 * y = x Wᵀ with FP8 Fprop/Dgrad/Wgrad GEMMs (see the module comment). x [..., K] (f32, bf16
 * or f16), weight [N, K] the master weight; y [..., N] f32. Differentiable w.r.t. x and weight.
 */
export function fp8Linear(x: Tensor, weight: Tensor, options: Fp8LinearOptions = {}): Tensor {
  const op = 'fp8Linear';
  const { K, N, T } = checkOperands(op, x, weight);
  const { format, scaleFormat } = fp8Options(op, options);
  return tidy(() => {
    const needX = isRecording([x]);
    const needW = isRecording([weight]);
    const y = noGrad(() => {
      const xq = quantize(reshape(x, [T, K]), { block: ACTIVATION_BLOCK, format, scaleFormat });
      const wq = quantize(weight, { block: WEIGHT_BLOCK, format, scaleFormat });
      return reshape(matmulFp8(xq, wq), [...x.shape.slice(0, -1), N]);
    });
    // Wgrad's operand, quantized now from the f32 values (no second rounding of an FP8 copy),
    // and shared with every other FP8 Linear reading the same x in this forward pass
    const xT = needW
      ? savedCopy(x, `fp8Linear.xT:${format}:${scaleFormat}`, () =>
          noGrad(() => {
            const q = quantizeTokenTiles(reshape(x, [T, K]), format, scaleFormat);
            return [q.codes, q.scales];
          }),
        )
      : undefined;
    if (needX || needW) {
      const saved = xT ? [weight, ...xT] : [weight];
      recordGradWith(op, [x, weight], y, saved, (dy, [w, codes, scales]) => {
        const xTs = codes ? new QuantizedTensor(codes, scales, ACTIVATION_BLOCK, scaleFormat) : undefined;
        const { dx, dw } = fp8LinearGrads(reshape(dy, [T, N]), w, xTs, needX, format, scaleFormat);
        return [dx && reshape(dx, x.shape), dw];
      });
    }
    return y;
  });
}

const toBf16 = (t: Tensor): Tensor => cast(cast(t, 'bf16'), 'f32');

/**
 * y = x Wᵀ with bf16 GEMM inputs: x, W (and dy in backward) rounded to bf16 (nearest even),
 * products accumulated in f32, f32 outputs and gradients. The tape keeps x as bf16.
 */
export function bf16Linear(x: Tensor, weight: Tensor): Tensor {
  const op = 'bf16Linear';
  const { K, N, T } = checkOperands(op, x, weight);
  return tidy(() => {
    const needX = isRecording([x]);
    const needW = isRecording([weight]);
    // x in bf16: the GEMM input, and what backward keeps (shared with every other bf16 Linear
    // reading the same x in this forward pass)
    const toB = () => noGrad(() => [cast(reshape(x, [T, K]), 'bf16')]);
    const xb = needW ? savedCopy(x, 'bf16Linear.x', toB)[0] : toB()[0];
    const y = noGrad(() => reshape(matmul(cast(xb, 'f32'), toBf16(weight), { transposeB: true }), [...x.shape.slice(0, -1), N]));
    if (needX || needW) {
      const saved = needW ? [weight, xb] : [weight];
      recordGradWith(op, [x, weight], y, saved, (dy, [w, xs]) => {
        const dy2 = toBf16(reshape(dy, [T, N]));
        const dx = needX ? reshape(matmul(dy2, toBf16(w)), x.shape) : null;
        const dw = xs ? matmul(dy2, cast(xs, 'f32'), { transposeA: true }) : null;
        return [dx, dw];
      });
    }
    return y;
  });
}

/**
 * y = down(swiglu(gate, up)) for an FP8 down-projection, with DeepSeek-V3's caching: the SwiGLU
 * inputs gate and up [..., I] are quantized to FP8 (1x128 tiles along I) and only those codes
 * are kept for backward; the SwiGLU output h is recomputed from them there. The forward uses the
 * same FP8-rounded gate and up (h = swiglu(dequantize(gate), dequantize(up))), so the
 * recomputed h is bit-identical with the forward's and the gradients are those of the function
 * computed. h then goes through the FP8 GEMMs of `fp8Linear` (Wgrad in 128-token tiles).
 * Differentiable w.r.t. gate, up and weight [N, I]; y [..., N] f32.
 */
export function swigluFp8Linear(gate: Tensor, up: Tensor, weight: Tensor, options: Fp8LinearOptions = {}): Tensor {
  return swigluLinear(gate, up, weight, 'fp8', options);
}

/**
 * `swigluFp8Linear` for 'fp8'; for 'bf16' the same recomputation with gate and up kept as bf16
 * (2 bytes/element) and the down-projection in `bf16Linear`'s numerics. ('fp32' is
 * `linear(swiglu(gate, up), weight)`, which keeps f32 gate, up and h.)
 */
export function swigluLinear(gate: Tensor, up: Tensor, weight: Tensor, precision: LinearPrecision, options: Fp8LinearOptions = {}): Tensor {
  const op = precision === 'fp8' ? 'swigluFp8Linear' : 'swigluLinear';
  checkLinearPrecision(op, precision);
  backendOf(op, gate, up, weight);
  if (!shapesEqual(gate.shape, up.shape)) throw new ShapeError(op, `gate ${formatShape(gate.shape)} and up ${formatShape(up.shape)} must have one shape`);
  const { K, N, T } = checkOperands(op, gate, weight);
  if (!isFloatDType(up.dtype) || up.dtype === 'e4m3' || up.dtype === 'e5m2') throw new DTypeError(op, `up must be f32, bf16 or f16, got ${up.dtype}`);
  if (precision === 'fp32') return linear(swiglu(gate, up), weight);
  const { format, scaleFormat } = fp8Options(op, options);
  const fp8 = precision === 'fp8';
  // the stored copy of gate/up: FP8 codes + scales, or bf16
  const store = (t: Tensor): Tensor[] => {
    if (!fp8) return [cast(t, 'bf16')];
    const q = quantize(t, { block: ACTIVATION_BLOCK, format, scaleFormat });
    return [q.codes, q.scales];
  };
  const load = (ts: readonly Tensor[]): Tensor => (fp8 ? dequantize(new QuantizedTensor(ts[0], ts[1], ACTIVATION_BLOCK, scaleFormat)) : cast(ts[0], 'f32'));
  const width = fp8 ? 2 : 1;
  return tidy(() => {
    const needGU = isRecording([gate, up]);
    const needW = isRecording([weight]);
    const { y, gs, us } = noGrad(() => {
      const gs = store(reshape(gate, [T, K]));
      const us = store(reshape(up, [T, K]));
      const h = swiglu(load(gs), load(us));
      const y2 = fp8
        ? matmulFp8(quantize(h, { block: ACTIVATION_BLOCK, format, scaleFormat }), quantize(weight, { block: WEIGHT_BLOCK, format, scaleFormat }))
        : matmul(toBf16(h), toBf16(weight), { transposeB: true });
      return { y: reshape(y2, [...gate.shape.slice(0, -1), N]), gs, us };
    });
    if (needGU || needW) {
      recordGradWith(op, [gate, up, weight], y, [weight, ...gs, ...us], (dy, [w, ...rest]) => {
        const g = load(rest.slice(0, width));
        const u = load(rest.slice(width));
        const dy2 = reshape(dy, [T, N]);
        let dh: Tensor | null = null;
        let dw: Tensor | null = null;
        if (fp8) {
          const hT = needW ? quantizeTokenTiles(swiglu(g, u), format, scaleFormat) : undefined; // recomputed
          ({ dx: dh, dw } = fp8LinearGrads(dy2, w, hT, needGU, format, scaleFormat));
        } else {
          const dyb = toBf16(dy2);
          if (needGU) dh = matmul(dyb, toBf16(w));
          if (needW) dw = matmul(dyb, toBf16(swiglu(g, u)), { transposeA: true }); // h recomputed
        }
        let dg: Tensor | null = null;
        let du: Tensor | null = null;
        if (dh) {
          // h = silu(g) u: dh/dg = u s (1 + g (1 - s)), dh/du = g s, with s = sigmoid(g)
          const s = sigmoid(g);
          dg = reshape(mul(mul(dh, u), mul(s, add(mul(g, sub(1, s)), 1))), gate.shape);
          du = reshape(mul(dh, mul(g, s)), up.shape);
        }
        return [dg, du, dw];
      });
    }
    return y;
  });
}

/**
 * x Wᵀ (+ bias) in the given training precision: 'fp32' is the plain `linear` GEMM, 'bf16'
 * `bf16Linear`, 'fp8' `fp8Linear`. The bias is added in f32.
 */
export function linearWithPrecision(x: Tensor, weight: Tensor, bias: Tensor | undefined, precision: LinearPrecision, options: Fp8LinearOptions = {}): Tensor {
  checkLinearPrecision('linearWithPrecision', precision);
  if (precision === 'fp32') return linear(x, weight, bias);
  return tidy(() => {
    const y = precision === 'fp8' ? fp8Linear(x, weight, options) : bf16Linear(x, weight);
    return bias ? add(y, bias) : y;
  });
}
