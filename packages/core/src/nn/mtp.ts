import { tidy } from '../engine.js';
import { concat } from '../ops/layout.js';
import type { Tensor } from '../tensor.js';
import { DecoderLayer, type DecoderLayerConfig } from './decoder-layer.js';
import type { Embedding } from './embedding.js';
import type { KVCache } from './kv-cache.js';
import { Linear } from './linear.js';
import { Initializer, Module } from './module.js';
import { RMSNorm } from './rms-norm.js';
import type { RotaryEmbedding } from './rotary-embedding.js';

/**
 * One multi-token-prediction module (stored as layer `num_hidden_layers`): `enorm`, `hnorm`,
 * `eh_proj` [hidden, 2*hidden] over [enorm(Emb(t_{i+1})); hnorm(h_i)], then one decoder block
 * (its parameters sit directly under the layer prefix), `shared_head.norm`, and the main
 * model's output head. The embedding and head are passed in (shared with the main model).
 */
export class MTPModule extends Module {
  readonly enorm: RMSNorm;
  readonly hnorm: RMSNorm;
  readonly ehProj: Linear;
  readonly block: DecoderLayer;
  readonly sharedHeadNorm: RMSNorm;
  constructor(config: DecoderLayerConfig, rope: RotaryEmbedding, init: Initializer, layerIndex: number) {
    super();
    const hidden = config.attention.hiddenSize;
    this.enorm = this.registerModule('enorm', new RMSNorm(hidden, init, config.rmsNormEps));
    this.hnorm = this.registerModule('hnorm', new RMSNorm(hidden, init, config.rmsNormEps));
    this.ehProj = this.registerModule('eh_proj', new Linear(2 * hidden, hidden, init));
    this.block = new DecoderLayer(config, rope, init, layerIndex);
    for (const [n, m] of (this.block as unknown as { children: Map<string, Module> }).children) this.registerModule(n, m);
    this.sharedHeadNorm = this.registerModule('shared_head.norm', new RMSNorm(hidden, init, config.rmsNormEps));
  }
  /**
   * hidden [B, T, D] (the previous depth: the main model's final normed hidden states for module 0) and the ids shifted by
   * one (`nextIds` [B, T] = t_{i+1}) -> logits [B, T, V] predicting t_{i+2}.
   */
  forward(hidden: Tensor, nextIds: Tensor, embed: Embedding, head: Linear, options: { cache?: KVCache; positionOffset?: number } = {}): { hidden: Tensor; logits: Tensor } {
    return tidy(() => {
      const e = this.enorm.forward(embed.forward(nextIds));
      const h = this.hnorm.forward(hidden);
      const x = this.ehProj.forward(concat([e, h], -1));
      const out = this.block.forward(x, options);
      return { hidden: out, logits: head.forward(this.sharedHeadNorm.forward(out)) };
    });
  }
}
