import { rotary } from '../composed/rotary.js';
import { tidy } from '../engine.js';
import { tensor } from '../ops/creation.js';
import { reshape, transpose } from '../ops/layout.js';
import type { Tensor } from '../tensor.js';
import { ropeInvFreq, yarnInvFreq, type YarnScaling } from './yarn.js';

export interface RotaryConfig {
  dim: number;
  base: number;
  scaling?: YarnScaling;
  /**
   * DeepSeek-V3's `rope_interleave`: the stored pairs are (x[2i], x[2i+1]); they are first
   * de-interleaved to [x[0], x[2], ..., x[1], x[3], ...] and then rotated in the half layout,
   * so the output is in the half layout (exactly what transformers computes).
   */
  interleave: boolean;
}

/** Rotary position embedding for [..., T, dim] tensors, with optional YaRN scaling. */
export class RotaryEmbedding {
  readonly invFreq: Float64Array;
  readonly attentionFactor: number;
  constructor(readonly config: RotaryConfig) {
    if (config.scaling) {
      const y = yarnInvFreq(config.dim, config.base, config.scaling);
      this.invFreq = y.invFreq;
      this.attentionFactor = y.attentionFactor;
    } else {
      this.invFreq = ropeInvFreq(config.dim, config.base);
      this.attentionFactor = 1;
    }
  }

  /** cos/sin [T, dim/2] for positions offset..offset+T-1, scaled by the attention factor (f32). */
  tables(T: number, offset = 0): { cos: Tensor; sin: Tensor } {
    const h = this.invFreq.length;
    const f = this.attentionFactor;
    const c = new Float32Array(T * h);
    const s = new Float32Array(T * h);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < h; i++) {
        // transformers computes the angle in f32 (inv_freq f32 times position f32).
        const angle = Math.fround(Math.fround(offset + t) * Math.fround(this.invFreq[i]));
        c[t * h + i] = Math.cos(angle) * f;
        s[t * h + i] = Math.sin(angle) * f;
      }
    }
    return { cos: tensor(c, [T, h]), sin: tensor(s, [T, h]) };
  }

  /** Applies RoPE to x [..., T, dim] at positions offset.. (see `interleave`). f32 result. */
  apply(x: Tensor, offset = 0): Tensor {
    return tidy(() => {
      const T = x.shape[x.rank - 2];
      const { cos, sin } = this.tables(T, offset);
      return rotary(this.config.interleave ? deinterleave(x) : x, cos, sin, { layout: 'half' });
    });
  }
}

/** [..., d] with pairs (2i, 2i+1) -> [..., d] as [evens..., odds...]. */
export function deinterleave(x: Tensor): Tensor {
  return tidy(() => {
    const d = x.shape[x.rank - 1];
    const lead = x.shape.slice(0, -1);
    const perm = [...lead.map((_, i) => i), lead.length + 1, lead.length];
    return reshape(transpose(reshape(x, [...lead, d / 2, 2]), perm), x.shape);
  });
}
