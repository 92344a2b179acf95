import { nn, noGrad, sliceAxis, tensor, tidy, type Tensor } from '@kiln/core';
import { checkTokenIds } from '../checkpoint/index.js';
import type { DeepseekV3ForCausalLM } from '../model/deepseek-v3.js';
import { sampleToken, type SamplingOptions } from './sampler.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Stop after emitting this token (e.g. the tokenizer's end of text). */
  eosTokenId?: number;
  /** Called with each new token as soon as it is chosen (for streaming). */
  onToken?: (id: number, index: number) => void;
  /**
   * 'cache' (default): prefill once, then decode one token at a time from MLA's compressed
   * latent cache. 'recompute': a full forward over the whole sequence for every token (the
   * reference the cached path must equal).
   */
  mode?: 'cache' | 'recompute';
}

export interface GenerateResult {
  tokens: number[];
  promptTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  /** New tokens per second of decoding (after the prefill). */
  tokensPerSec: number;
  /** Values the latent cache holds per token per layer (kv_lora_rank + qk_rope_head_dim). */
  cacheWidthPerToken: number;
}

function lastRow(logits: Tensor): Float32Array {
  const [, T, V] = logits.shape;
  return tidy(() => sliceAxis(logits, 1, T - 1, 1).valuesSync() as Float32Array).slice(0, V);
}

/** Autoregressive generation for one sequence. */
export function generate(model: DeepseekV3ForCausalLM, prompt: readonly number[], options: GenerateOptions = {}): GenerateResult {
  const maxNew = options.maxNewTokens ?? 32;
  if (prompt.length === 0) throw new RangeError('generate: the prompt is empty (at least one token is needed)');
  checkTokenIds(prompt, model.config.vocabSize, 'prompt', 'prompt ids');
  const limit = model.config.maxPositionEmbeddings;
  const out: number[] = [];
  const seq = [...prompt];
  const cache = options.mode === 'recompute' ? undefined : new nn.KVCache();
  let prefillSeconds = 0;
  const t0 = performance.now();
  let t1 = t0;
  try {
    noGrad(() => {
      for (let i = 0; i < maxNew && seq.length < limit + 1; i++) {
        const feed = cache && i > 0 ? [seq[seq.length - 1]!] : seq;
        const row = tidy(() => {
          const ids = tensor(Int32Array.from(feed), [1, feed.length], 'i32');
          return lastRow(model.forward(ids, { cache }));
        });
        if (i === 0) {
          t1 = performance.now();
          prefillSeconds = (t1 - t0) / 1000;
        }
        const id = sampleToken(row, options, i);
        out.push(id);
        seq.push(id);
        options.onToken?.(id, i);
        if (id === options.eosTokenId) break;
      }
    });
    const decodeSeconds = (performance.now() - t1) / 1000;
    return {
      tokens: out,
      promptTokens: prompt.length,
      prefillSeconds,
      decodeSeconds,
      tokensPerSec: out.length > 1 ? (out.length - 1) / decodeSeconds : 0,
      cacheWidthPerToken: cache?.widthPerToken(0) ?? 0,
    };
  } finally {
    cache?.dispose();
  }
}
