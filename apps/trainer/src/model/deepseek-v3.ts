import { ArgumentError, nn, QuantizedTensor, ShapeError, slice as sliceImpl, tidy, type Tensor } from '@kiln/core';
import type { DeepseekV3Config } from './config.js';

export interface CreateOptions {
  seed?: number;
  /** 'random': normal(0, initializer_range), norms at 1; 'zeros': every parameter 0 (to be loaded). */
  init?: 'random' | 'zeros';
}

export interface ForwardOptions {
  /** MLA latent cache; positions continue from what it holds unless `positionOffset` is given. */
  cache?: nn.KVCache;
  positionOffset?: number;
}

/** The decoder stack under `model.` (embed_tokens, layers.N, norm). */
class DeepseekV3Model extends nn.Module {
  readonly embedTokens: nn.Embedding;
  readonly layers: nn.DecoderLayer[] = [];
  readonly mtp: nn.MTPModule[] = [];
  readonly norm: nn.RMSNorm;
  constructor(c: DeepseekV3Config, rope: nn.RotaryEmbedding, init: nn.Initializer) {
    super();
    this.embedTokens = this.registerModule('embed_tokens', new nn.Embedding(c.vocabSize, c.hiddenSize, init));
    for (let i = 0; i < c.numHiddenLayers; i++) this.layers.push(this.registerModule(`layers.${i}`, new nn.DecoderLayer(layerConfig(c, i), rope, init, i)));
    for (let j = 0; j < c.numNextnPredictLayers; j++) {
      const i = c.numHiddenLayers + j;
      this.mtp.push(this.registerModule(`layers.${i}`, new nn.MTPModule(layerConfig(c, i), rope, init, i)));
    }
    this.norm = this.registerModule('norm', new nn.RMSNorm(c.hiddenSize, init, c.rmsNormEps));
  }
}

export function layerConfig(c: DeepseekV3Config, layerIndex: number): nn.DecoderLayerConfig {
  const qkHeadDim = c.qkNopeHeadDim + c.qkRopeHeadDim;
  return {
    attention: {
      hiddenSize: c.hiddenSize,
      numHeads: c.numAttentionHeads,
      qLoraRank: c.qLoraRank,
      kvLoraRank: c.kvLoraRank,
      qkNopeHeadDim: c.qkNopeHeadDim,
      qkRopeHeadDim: c.qkRopeHeadDim,
      vHeadDim: c.vHeadDim,
      attentionBias: c.attentionBias,
      softmaxScale: nn.attentionSoftmaxScale(qkHeadDim, c.ropeScaling ?? undefined),
    },
    mlp:
      layerIndex < c.firstKDenseReplace
        ? { kind: 'dense', intermediateSize: c.intermediateSize }
        : {
            kind: 'moe',
            hiddenSize: c.hiddenSize,
            nRoutedExperts: c.nRoutedExperts,
            numExpertsPerTok: c.numExpertsPerTok,
            nGroup: c.nGroup,
            topkGroup: c.topkGroup,
            normTopkProb: c.normTopkProb,
            routedScalingFactor: c.routedScalingFactor,
            moeIntermediateSize: c.moeIntermediateSize,
            nSharedExperts: c.nSharedExperts,
          },
    rmsNormEps: c.rmsNormEps,
  };
}

/**
 * DeepSeek-V3 for causal LM, parameters named exactly as transformers names them
 * (`model.embed_tokens.weight`, `model.layers.L.self_attn.kv_b_proj.weight`, ..., `lm_head.weight`;
 * MTP modules at `model.layers.{num_hidden_layers + j}.{enorm,hnorm,eh_proj,shared_head.norm,...}`).
 */
export class DeepseekV3ForCausalLM extends nn.Module {
  readonly model: DeepseekV3Model;
  readonly lmHead: nn.Linear;
  readonly rope: nn.RotaryEmbedding;

  private constructor(readonly config: DeepseekV3Config, init: nn.Initializer) {
    super();
    this.rope = new nn.RotaryEmbedding({ dim: config.qkRopeHeadDim, base: config.ropeTheta, scaling: config.ropeScaling ?? undefined, interleave: config.ropeInterleave });
    this.model = this.registerModule('model', new DeepseekV3Model(config, this.rope, init));
    this.lmHead = this.registerModule('lm_head', new nn.Linear(config.hiddenSize, config.vocabSize, init));
  }

  static create(config: DeepseekV3Config, options: CreateOptions = {}): DeepseekV3ForCausalLM {
    return new DeepseekV3ForCausalLM(config, new nn.Initializer({ seed: options.seed ?? 0, std: config.initializerRange, zeros: options.init === 'zeros' }));
  }

  /**
   * Replaces a parameter by its transformers name. A `QuantizedTensor` (FP8 codes + 128x128
   * block scales) is accepted for Linear weights. ShapeError naming the tensor on a shape
   * mismatch; ArgumentError for an unknown name.
   */
  override setParameter(name: string, value: Tensor | QuantizedTensor): boolean {
    if (value instanceof QuantizedTensor) {
      const owner = name.endsWith('.weight') ? this.child(name.slice(0, -'.weight'.length)) : undefined;
      if (!(owner instanceof nn.Linear)) throw new ArgumentError('setParameter', `${name}: not the weight of a Linear layer, cannot take an FP8 QuantizedTensor`);
      owner.setQuantizedWeight(value, name);
      return true;
    }
    if (!super.setParameter(name, value)) throw new ArgumentError('setParameter', `unknown parameter ${name}`);
    return true;
  }

  /**
   * DeepSeek-V3's reference FP8 inference: every Linear holding an FP8 weight quantizes its
   * input per 1x128 tile and multiplies in FP8 (`matmulFp8`). Returns how many Linears switched.
   */
  useFp8Activations(on = true): number {
    let n = 0;
    for (const [, m] of this.modules()) {
      if (m instanceof nn.Linear && m.quantized) {
        m.fp8Activations = on;
        n++;
      }
    }
    return n;
  }

  /** Final hidden states (before `model.norm`) [B, T, hidden]. */
  hidden(inputIds: Tensor, options: ForwardOptions = {}): Tensor {
    if (inputIds.rank !== 2 || inputIds.dtype !== 'i32') throw new ShapeError('forward', `inputIds must be [B, T] i32, got [${inputIds.shape.join(', ')}] ${inputIds.dtype}`);
    const offset = options.positionOffset ?? options.cache?.length(0) ?? 0;
    return tidy(() => {
      let h = this.model.embedTokens.forward(inputIds);
      for (const layer of this.model.layers) h = layer.forward(h, { cache: options.cache, positionOffset: offset });
      return h;
    });
  }

  /** inputIds [B, T] i32 -> logits [B, T, vocab] f32. */
  forward(inputIds: Tensor, options: ForwardOptions = {}): Tensor {
    return tidy(() => this.lmHead.forward(this.model.norm.forward(this.hidden(inputIds, options))));
  }

  /**
   * Main logits plus the MTP modules' logits: module j sees the previous depth's hidden states at
   * positions 0..T-2-j and the tokens t_{i+1+j}, and predicts t_{i+2+j}. mtpLogits[j] is
   * [B, T-1-j, vocab].
   */
  forwardWithMtp(inputIds: Tensor): { logits: Tensor; mtpLogits: Tensor[] } {
    return tidy(() => {
      // The main model's final (normed) hidden states feed MTP module 0, as in vLLM's DeepSeek MTP.
      const h = this.model.norm.forward(this.hidden(inputIds));
      const logits = this.lmHead.forward(h);
      const T = inputIds.shape[1];
      const mtpLogits: Tensor[] = [];
      let prev = h;
      this.model.mtp.forEach((m, j) => {
        const n = T - 1 - j;
        if (n <= 0) return;
        const hPrev = sliceSeq(prev, 0, n);
        const next = sliceSeq(inputIds, 1 + j, n);
        const out = m.forward(hPrev, next, this.model.embedTokens, this.lmHead);
        mtpLogits.push(out.logits);
        prev = out.hidden;
      });
      return { logits, mtpLogits };
    });
  }
}

function sliceSeq(x: Tensor, start: number, length: number): Tensor {
  const begin = x.shape.map((_, i) => (i === 1 ? start : 0));
  const size = x.shape.map((d, i) => (i === 1 ? length : d));
  return sliceImpl(x, begin, size);
}
