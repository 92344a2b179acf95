import { tidy } from '../engine.js';
import { add } from '../ops/elementwise.js';
import type { Tensor } from '../tensor.js';
import type { KVCache } from './kv-cache.js';
import { MultiHeadLatentAttention, type MLAConfig } from './mla.js';
import { MLP } from './mlp.js';
import { Initializer, Module } from './module.js';
import { DeepseekMoE, type DeepseekMoEConfig } from './moe/moe-layer.js';
import { RMSNorm } from './rms-norm.js';
import type { RotaryEmbedding } from './rotary-embedding.js';

export interface DecoderLayerConfig {
  attention: MLAConfig;
  /** A dense SwiGLU MLP of this width, or a MoE. */
  mlp: { kind: 'dense'; intermediateSize: number } | ({ kind: 'moe' } & DeepseekMoEConfig);
  rmsNormEps: number;
}

/** Pre-norm block: h = x + attn(norm(x)); out = h + mlp(norm(h)). */
export class DecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: MultiHeadLatentAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: MLP | DeepseekMoE;
  constructor(readonly config: DecoderLayerConfig, rope: RotaryEmbedding, init: Initializer, readonly layerIndex: number) {
    super();
    const hidden = config.attention.hiddenSize;
    this.selfAttn = this.registerModule('self_attn', new MultiHeadLatentAttention(config.attention, rope, init, layerIndex));
    const m = config.mlp;
    this.mlp = this.registerModule('mlp', m.kind === 'dense' ? new MLP(hidden, m.intermediateSize, init) : new DeepseekMoE(m, init));
    this.inputLayernorm = this.registerModule('input_layernorm', new RMSNorm(hidden, init, config.rmsNormEps));
    this.postAttentionLayernorm = this.registerModule('post_attention_layernorm', new RMSNorm(hidden, init, config.rmsNormEps));
  }
  forward(x: Tensor, options: { cache?: KVCache; positionOffset?: number; fixedIndices?: Tensor } = {}): Tensor {
    return tidy(() => {
      const h = add(x, this.selfAttn.forward(this.inputLayernorm.forward(x), options));
      const n = this.postAttentionLayernorm.forward(h);
      const f = this.mlp instanceof DeepseekMoE ? this.mlp.forward(n, { fixedIndices: options.fixedIndices }) : this.mlp.forward(n);
      return add(h, f);
    });
  }
}
