import { keep } from '../engine.js';
import { concat } from '../ops/layout.js';
import type { Tensor } from '../tensor.js';

/**
 * MLA's inference cache: per layer only the normalised compressed latent c_kv
 * [B, S, kv_lora_rank] and the rotated RoPE key [B, S, qk_rope_head_dim] (shared by all heads).
 */
export class KVCache {
  private readonly latents: (Tensor | undefined)[] = [];
  private readonly ropeKeys: (Tensor | undefined)[] = [];

  /** Cached positions of layer `layer` (0 when empty). */
  length(layer = 0): number {
    return this.latents[layer]?.shape[1] ?? 0;
  }
  get(layer: number): { latent: Tensor; ropeKey: Tensor } | undefined {
    const latent = this.latents[layer];
    const ropeKey = this.ropeKeys[layer];
    return latent && ropeKey ? { latent, ropeKey } : undefined;
  }
  /** Appends new positions and returns the whole cached sequence of the layer. */
  append(layer: number, latent: Tensor, ropeKey: Tensor): { latent: Tensor; ropeKey: Tensor } {
    const prev = this.get(layer);
    const l = keep(prev ? concat([prev.latent, latent], 1) : concatOne(latent));
    const r = keep(prev ? concat([prev.ropeKey, ropeKey], 1) : concatOne(ropeKey));
    prev?.latent.dispose();
    prev?.ropeKey.dispose();
    this.latents[layer] = l;
    this.ropeKeys[layer] = r;
    return { latent: l, ropeKey: r };
  }
  /** Values stored per token per layer (kv_lora_rank + qk_rope_head_dim). */
  widthPerToken(layer = 0): number {
    const e = this.get(layer);
    return e ? e.latent.shape[2] + e.ropeKey.shape[2] : 0;
  }
  dispose(): void {
    for (const t of [...this.latents, ...this.ropeKeys]) t?.dispose();
    this.latents.length = 0;
    this.ropeKeys.length = 0;
  }
}

function concatOne(t: Tensor): Tensor {
  return concat([t], 1);
}
