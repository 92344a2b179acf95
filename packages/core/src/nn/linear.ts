import { tidy } from '../engine.js';
import { linear } from '../ops/matmul.js';
import { dequantize, QuantizedTensor } from '../quant/quantized-tensor.js';
import type { Tensor } from '../tensor.js';
import { checkShape, Initializer, Module } from './module.js';

/**
 * y = x W^T (+ b), W stored [out, in]. The weight may be f32/bf16 or an FP8
 * `QuantizedTensor` with 128x128 block scales (`weight_scale_inv`); a quantized weight is
 * dequantized for the product (the forward transformers runs on a dequantized checkpoint).
 */
export class Linear extends Module {
  quantized: QuantizedTensor | undefined;
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
      return tidy(() => linear(x, dequantize(q), b));
    }
    return linear(x, this.weight, b);
  }
  override dispose(): void {
    super.dispose();
    this.quantized?.dispose();
  }
}
