import { tidy } from '../engine.js';
import { linear } from '../ops/matmul.js';
import { dequantize, matmulFp8, quantize, QuantizedTensor } from '../quant/quantized-tensor.js';
import { checkLinearPrecision, linearWithPrecision, swigluLinear, type LinearPrecision } from '../quant/fp8-linear.js';
import { swiglu } from '../composed/activations.js';
import { add } from '../ops/elementwise.js';
import { reshape } from '../ops/layout.js';
import type { Tensor } from '../tensor.js';
import { ArgumentError } from '../errors.js';
import { checkShape, Initializer, Module } from './module.js';

/**
 * y = x W^T (+ b), W stored [out, in]. The weight may be f32/bf16 or an FP8
 * `QuantizedTensor` with 128x128 block scales (`weight_scale_inv`); a quantized weight is
 * dequantized for the product (the forward transformers runs on a dequantized checkpoint),
 * unless `fp8Activations` is set: then x is quantized per 1x128 tile and the product runs in
 * `matmulFp8`, as DeepSeek-V3's reference FP8 inference does (inference only: no gradient).
 *
 * With an f32 master weight, `precision` picks the training numerics of the GEMMs (forward
 * and both backward GEMMs): 'fp32' (default), 'bf16' (`bf16Linear`) or 'fp8' (`fp8Linear`:
 * FP8 E4M3 with 1x128 / 128x128 scales, FP8 activations saved for backward). It is ignored
 * while an FP8 checkpoint weight is installed.
 */
export class Linear extends Module {
  quantized: QuantizedTensor | undefined;
  /** With an FP8 weight: quantize activations per 1x128 tile and multiply in FP8. */
  fp8Activations = false;
  private _precision: LinearPrecision = 'fp32';
  constructor(readonly inFeatures: number, readonly outFeatures: number, init: Initializer, bias = false) {
    super();
    this.registerParameter('weight', init.normal([outFeatures, inFeatures]));
    if (bias) this.registerParameter('bias', init.zerosT([outFeatures]));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  /** Training precision of the GEMMs when the weight is the f32 master ('fp32' by default). */
  get precision(): LinearPrecision {
    return this._precision;
  }
  set precision(p: LinearPrecision) {
    checkLinearPrecision('Linear.precision', p);
    this._precision = p;
  }
  /** Installs an FP8 block-quantized weight (codes [out, in] + scales). */
  setQuantizedWeight(q: QuantizedTensor, name = 'weight'): void {
    checkShape(name, [this.outFeatures, this.inFeatures], q.shape);
    this.quantized?.dispose();
    this.quantized = q;
  }
  protected override setOwnParameter(leaf: string, t: Tensor, fullName: string): boolean {
    const ok = super.setOwnParameter(leaf, t, fullName);
    if (ok && leaf === 'weight' && this.quantized) {
      this.quantized.dispose();
      this.quantized = undefined;
    }
    return ok;
  }
  forward(x: Tensor): Tensor {
    const b = this.params.get('bias');
    if (this.quantized) {
      const q = this.quantized;
      if (this.fp8Activations) {
        return tidy(() => {
          const xq = quantize(reshape(x, [x.size / this.inFeatures, this.inFeatures]), { block: [1, 128] });
          const y = reshape(matmulFp8(xq, q), [...x.shape.slice(0, -1), this.outFeatures]);
          xq.dispose();
          return b ? add(y, b) : y;
        });
      }
      return tidy(() => linear(x, dequantize(q), b));
    }
    if (this._precision === 'fp32') return linear(x, this.weight, b);
    return linearWithPrecision(x, this.weight, b, this._precision);
  }

  /**
   * this.forward(swiglu(gate, up)); in 'fp8' precision (with the master weight), DeepSeek-V3's
   * SwiGLU caching instead: gate and up are kept for backward in FP8 and the SwiGLU output is
   * recomputed there (`swigluFp8Linear`); in 'bf16' the same with bf16 copies (`swigluLinear`).
   */
  forwardSwiglu(gate: Tensor, up: Tensor): Tensor {
    if (this._precision === 'fp32' || this.quantized) return tidy(() => this.forward(swiglu(gate, up)));
    const b = this.params.get('bias');
    return tidy(() => {
      const y = swigluLinear(gate, up, this.weight, this._precision);
      return b ? add(y, b) : y;
    });
  }
  override dispose(): void {
    super.dispose();
    this.quantized?.dispose();
  }
}

/**
 * Sets the training precision of every `Linear` below `root` (and `root` itself if it is one),
 * except those whose dotted name `exclude` accepts (e.g. `n => n === 'lm_head'`). Returns how
 * many were set.
 */
export function setLinearPrecision(root: Module, precision: LinearPrecision, options: { exclude?: (name: string) => boolean } = {}): number {
  checkLinearPrecision('setLinearPrecision', precision);
  if (!(root instanceof Module)) throw new ArgumentError('setLinearPrecision', 'root must be a Module');
  const exclude = options.exclude;
  if (exclude !== undefined && typeof exclude !== 'function') throw new ArgumentError('setLinearPrecision', 'exclude must be a function of the module name');
  let count = 0;
  const all: [string, Module][] = [['', root], ...root.modules()];
  for (const [name, m] of all) {
    if (!(m instanceof Linear) || (exclude && exclude(name))) continue;
    m.precision = precision;
    count++;
  }
  return count;
}
