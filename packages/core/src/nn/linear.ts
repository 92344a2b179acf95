import { tidy } from '../engine.js';
import { linear } from '../ops/matmul.js';
import { dequantize, matmulFp8, quantize, QuantizedTensor } from '../quant/quantized-tensor.js';
import { add } from '../ops/elementwise.js';
import { reshape } from '../ops/layout.js';
import type { Tensor } from '../tensor.js';
import { checkShape, Initializer, Module } from './module.js';

/**
 * y = x W^T (+ b), W stored [out, in]. The weight may be f32/bf16 or an FP8
 * `QuantizedTensor` with 128x128 block scales (`weight_scale_inv`); a quantized weight is
 * dequantized for the product (the forward transformers runs on a dequantized checkpoint),
 * unless `fp8Activations` is set: then x is quantized per 1x128 tile and the product runs in
 * `matmulFp8`, as DeepSeek-V3's reference FP8 inference does (inference only: no gradient).
 */
export class Linear extends Module {
  quantized: QuantizedTensor | undefined;
  /** With an FP8 weight: quantize activations per 1x128 tile and multiply in FP8. */
  fp8Activations = false;
  constructor(readonly inFeatures: number, readonly outFeatures: number, init: Initializer, bias = false) {
    super();
    this.registerParameter('weight', init.normal([outFeatures, inFeatures]));
    if (bias) this.registerParameter('bias', init.zerosT([outFeatures]));
  }
  get weight(): Tensor {
    return this.param('weight');
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
    return linear(x, this.weight, b);
  }
  override dispose(): void {
    super.dispose();
    this.quantized?.dispose();
  }
}
