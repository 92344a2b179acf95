/** RoPE inverse frequencies, YaRN scaling and the mscale helpers (pure math, float64). */

export interface YarnScaling {
  type: 'yarn';
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast?: number; // default 32
  betaSlow?: number; // default 1
  mscale?: number;
  mscaleAllDim?: number;
  /** Round the correction range to integers (transformers' default: true). */
  truncate?: boolean;
  /** An explicit cos/sin scale (`attention_factor`), overriding the mscale rule. */
  attentionFactor?: number;
  /**
   * The model's `max_position_embeddings`: transformers' RoPE then uses
   * max_position_embeddings / original_max_position_embeddings in place of `factor` (the
   * softmax-scale correction still uses `factor`).
   */
  maxPositionEmbeddings?: number;
}

/** Plain RoPE: inv_freq[i] = base^(-2i/dim), i < dim/2. */
export function ropeInvFreq(dim: number, base: number): Float64Array {
  const out = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) out[i] = 1 / Math.pow(base, (2 * i) / dim);
  return out;
}

/** YaRN's attention magnitude: 0.1 * mscale * ln(scale) + 1 for scale > 1, else 1. */
export function yarnGetMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** The dimension whose wavelength makes `numRotations` turns over `maxPos` positions. */
function correctionDim(numRotations: number, dim: number, base: number, maxPos: number): number {
  return (dim * Math.log(maxPos / (numRotations * 2 * Math.PI))) / (2 * Math.log(base));
}

/**
 * YaRN inverse frequencies and the cos/sin attention factor (transformers' `_compute_yarn_parameters`
 * semantics): dims below the fast boundary keep their frequency (extrapolation), dims above the
 * slow boundary are divided by `factor` (interpolation), with a linear ramp in between.
 */
export function yarnInvFreq(dim: number, base: number, s: YarnScaling): { invFreq: Float64Array; attentionFactor: number } {
  const betaFast = s.betaFast ?? 32;
  const betaSlow = s.betaSlow ?? 1;
  const truncate = s.truncate ?? true;
  let low = correctionDim(betaFast, dim, base, s.originalMaxPositionEmbeddings);
  let high = correctionDim(betaSlow, dim, base, s.originalMaxPositionEmbeddings);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const factor = s.maxPositionEmbeddings !== undefined ? s.maxPositionEmbeddings / s.originalMaxPositionEmbeddings : s.factor;
  const extrapolation = ropeInvFreq(dim, base);
  const invFreq = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolationFactor = 1 - ramp;
    const interp = extrapolation[i] / factor;
    invFreq[i] = interp * (1 - extrapolationFactor) + extrapolation[i] * extrapolationFactor;
  }
  const attentionFactor =
    s.attentionFactor ?? (s.mscale && s.mscaleAllDim ? yarnGetMscale(factor, s.mscale) / yarnGetMscale(factor, s.mscaleAllDim) : yarnGetMscale(factor));
  return { invFreq, attentionFactor };
}

/**
 * DeepSeek-V3's softmax scale: qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 when
 * YaRN scaling sets a non-zero `mscale_all_dim`.
 */
export function attentionSoftmaxScale(qkHeadDim: number, scaling?: YarnScaling): number {
  let scale = 1 / Math.sqrt(qkHeadDim);
  if (scaling && scaling.mscaleAllDim) {
    const m = yarnGetMscale(scaling.factor, scaling.mscaleAllDim);
    scale *= m * m;
  }
  return scale;
}
