import { attention } from '../composed/attention.js';
import { tidy } from '../engine.js';
import { tensor } from '../ops/creation.js';
import { matmul } from '../ops/matmul.js';
import { broadcastTo, concat, reshape, split, transpose } from '../ops/layout.js';
import { dequantize } from '../quant/quantized-tensor.js';
import type { Tensor } from '../tensor.js';
import type { KVCache } from './kv-cache.js';
import { Linear } from './linear.js';
import { Initializer, Module } from './module.js';
import { RMSNorm } from './rms-norm.js';
import type { RotaryEmbedding } from './rotary-embedding.js';

export interface MLAConfig {
  hiddenSize: number;
  numHeads: number;
  /** null: a direct q_proj instead of q_a_proj -> q_a_layernorm -> q_b_proj. */
  qLoraRank: number | null;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  attentionBias?: boolean;
  /** eps of q_a_layernorm / kv_a_layernorm (transformers builds them with the default 1e-6). */
  latentNormEps?: number;
  softmaxScale: number;
}

/**
 * Additive causal mask [Tq, S]: query i (absolute position offset + i) sees keys j <= offset + i.
 * (MLA itself masks through `attention`'s causal options; this stays for callers that add it.)
 */
export function causalMask(Tq: number, S: number, offset: number): Tensor {
  const m = new Float32Array(Tq * S);
  for (let i = 0; i < Tq; i++) for (let j = 0; j < S; j++) m[i * S + j] = j <= offset + i ? 0 : -Infinity;
  return tensor(m, [Tq, S]);
}

/**
 * Multi-head Latent Attention. Input [B, T, hidden] -> [B, T, hidden].
 * Without a cache: the naive path (k/v up-projected per head, as transformers computes it).
 * With a cache: the latent + RoPE key of the new positions are appended and attention runs on
 * the absorbed path (W_UK folded into the query, W_UV applied after the weighted sum of latents).
 */
export class MultiHeadLatentAttention extends Module {
  readonly qProj?: Linear;
  readonly qAProj?: Linear;
  readonly qANorm?: RMSNorm;
  readonly qBProj?: Linear;
  readonly kvAProj: Linear;
  readonly kvANorm: RMSNorm;
  readonly kvBProj: Linear;
  readonly oProj: Linear;
  readonly qkHeadDim: number;

  constructor(readonly config: MLAConfig, readonly rope: RotaryEmbedding, init: Initializer, readonly layerIndex = 0) {
    super();
    const c = config;
    const bias = c.attentionBias ?? false;
    const eps = c.latentNormEps ?? 1e-6;
    this.qkHeadDim = c.qkNopeHeadDim + c.qkRopeHeadDim;
    if (c.qLoraRank === null) {
      this.qProj = this.registerModule('q_proj', new Linear(c.hiddenSize, c.numHeads * this.qkHeadDim, init));
    } else {
      this.qAProj = this.registerModule('q_a_proj', new Linear(c.hiddenSize, c.qLoraRank, init, bias));
      this.qANorm = this.registerModule('q_a_layernorm', new RMSNorm(c.qLoraRank, init, eps));
      this.qBProj = this.registerModule('q_b_proj', new Linear(c.qLoraRank, c.numHeads * this.qkHeadDim, init));
    }
    this.kvAProj = this.registerModule('kv_a_proj_with_mqa', new Linear(c.hiddenSize, c.kvLoraRank + c.qkRopeHeadDim, init, bias));
    this.kvANorm = this.registerModule('kv_a_layernorm', new RMSNorm(c.kvLoraRank, init, eps));
    this.kvBProj = this.registerModule('kv_b_proj', new Linear(c.kvLoraRank, c.numHeads * (c.qkNopeHeadDim + c.vHeadDim), init));
    this.oProj = this.registerModule('o_proj', new Linear(c.numHeads * c.vHeadDim, c.hiddenSize, init, bias));
  }

  /** q [B, H, T, qk_head_dim] split into (nope, rope-rotated). */
  private queries(x: Tensor, offset: number): [Tensor, Tensor] {
    const c = this.config;
    const [B, T] = x.shape;
    const q = this.qProj ? this.qProj.forward(x) : this.qBProj!.forward(this.qANorm!.forward(this.qAProj!.forward(x)));
    const qh = transpose(reshape(q, [B, T, c.numHeads, this.qkHeadDim]), [0, 2, 1, 3]);
    const [qNope, qRope] = split(qh, [c.qkNopeHeadDim, c.qkRopeHeadDim], -1);
    return [qNope, this.rope.apply(qRope, offset)];
  }

  /** Normalised latent [B, T, r] and rotated RoPE key [B, T, rope]. */
  private latents(x: Tensor, offset: number): [Tensor, Tensor] {
    const c = this.config;
    const [B, T] = x.shape;
    const [kv, kRope] = split(this.kvAProj.forward(x), [c.kvLoraRank, c.qkRopeHeadDim], -1);
    const kRot = this.rope.apply(reshape(kRope, [B, 1, T, c.qkRopeHeadDim]), offset);
    return [this.kvANorm.forward(kv), reshape(kRot, [B, T, c.qkRopeHeadDim])];
  }

  forward(x: Tensor, options: { cache?: KVCache; positionOffset?: number } = {}): Tensor {
    const c = this.config;
    const offset = options.positionOffset ?? options.cache?.length(this.layerIndex) ?? 0;
    const cache = options.cache;
    return tidy(() => {
      const [B, T] = x.shape;
      const [qNope, qRot] = this.queries(x, offset);
      const [latent, kRot] = this.latents(x, offset);
      let out: Tensor; // [B, H, T, v]
      if (!cache) {
        const kv = transpose(reshape(this.kvBProj.forward(latent), [B, T, c.numHeads, c.qkNopeHeadDim + c.vHeadDim]), [0, 2, 1, 3]);
        const [kNope, v] = split(kv, [c.qkNopeHeadDim, c.vHeadDim], -1);
        const kRotH = broadcastTo(reshape(kRot, [B, 1, T, c.qkRopeHeadDim]), [B, c.numHeads, T, c.qkRopeHeadDim]);
        const q = concat([qNope, qRot], -1);
        const k = concat([kNope, kRotH], -1);
        out = attention(q, k, v, { scale: c.softmaxScale, causal: true });
      } else {
        const all = cache.append(this.layerIndex, latent, kRot);
        const S = all.latent.shape[1];
        const w = this.kvBProj.quantized ? dequantize(this.kvBProj.quantized) : this.kvBProj.weight;
        const wh = reshape(w, [c.numHeads, c.qkNopeHeadDim + c.vHeadDim, c.kvLoraRank]);
        const [wUK, wUV] = split(wh, [c.qkNopeHeadDim, c.vHeadDim], 1); // [H, nope, r], [H, v, r]
        const qAbs = matmul(qNope, wUK); // [B, H, T, r]
        const lat = reshape(all.latent, [B, 1, S, c.kvLoraRank]);
        const kr = reshape(all.ropeKey, [B, 1, S, c.qkRopeHeadDim]);
        // one attention over [qAbs, qRot] · [latent, ropeKey] (keys shared by every head), the
        // latent as values; the new queries follow the S - T cached positions
        const ctx = attention(concat([qAbs, qRot], -1), concat([lat, kr], -1), lat, { scale: c.softmaxScale, causalOffset: S - T });
        out = matmul(ctx, wUV, { transposeB: true }); // [B, H, T, v]
      }
      const merged = reshape(transpose(out, [0, 2, 1, 3]), [B, T, c.numHeads * c.vHeadDim]);
      return this.oProj.forward(merged);
    });
  }
}

