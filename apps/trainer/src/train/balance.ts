import { ArgumentError, mean, mul, reshape, sum, tensor, tidy, type Tensor } from '@kiln/core';

/**
 * DeepSeek-V3's load balancing (report §2.1.2).
 *
 * Auxiliary-loss-free: every MoE layer keeps a per-expert bias b (`e_score_correction_bias`) that is
 * added to the affinities for *selection only*. After each optimizer step, with the load of each
 * expert counted over the step's tokens, b_e += γ·sign(mean load − load_e): overloaded experts
 * become less attractive, underloaded ones more.
 *
 * Complementary sequence-wise balance loss, per sequence of T tokens and per MoE layer:
 * L = α·Σ_i f_i·P_i, f_i = E/(K·T)·|{t : expert i in the top-K of token t}|,
 * P_i = (1/T)·Σ_t s_{t,i}/Σ_j s_{t,j}. Only P carries a gradient.
 */

/** The bias after one balancing update: b_e + γ·sign(mean(load) − load_e), in f32. */
export function balanceBiasUpdate(bias: Float32Array, load: ArrayLike<number>, gamma: number): Float32Array {
  if (bias.length !== load.length) throw new ArgumentError('balanceBiasUpdate', `bias has ${bias.length} experts, load ${load.length}`);
  if (!(gamma >= 0)) throw new ArgumentError('balanceBiasUpdate', `gamma must be >= 0, got ${gamma}`);
  let total = 0;
  for (let i = 0; i < load.length; i++) total += load[i];
  const meanLoad = total / load.length;
  const out = Float32Array.from(bias);
  if (gamma === 0) return out;
  for (let i = 0; i < out.length; i++) out[i] = out[i] + gamma * Math.sign(meanLoad - load[i]);
  return out;
}

/** max(load) / mean(load) (1 = perfectly balanced; 0 when nothing was routed). */
export function maxOverMean(load: ArrayLike<number>): number {
  let total = 0;
  let max = 0;
  for (let i = 0; i < load.length; i++) {
    total += load[i];
    if (load[i] > max) max = load[i];
  }
  return total > 0 ? max / (total / load.length) : 0;
}

/**
 * f_{b,i} = E/(K·T)·count of tokens of sequence b routed to expert i, from host indices [B·T, K].
 */
export function sequenceExpertFractions(indices: Int32Array, sequences: number, seqLen: number, k: number, experts: number): Float32Array {
  if (indices.length !== sequences * seqLen * k) throw new ArgumentError('sequenceBalanceLoss', `indices hold ${indices.length} entries, expected ${sequences}·${seqLen}·${k}`);
  const f = new Float32Array(sequences * experts);
  const scale = experts / (k * seqLen);
  for (let b = 0; b < sequences; b++) {
    const counts = new Int32Array(experts);
    for (let j = b * seqLen * k; j < (b + 1) * seqLen * k; j++) counts[indices[j]]++;
    for (let e = 0; e < experts; e++) f[b * experts + e] = counts[e] * scale;
  }
  return f;
}

/**
 * Σ_i f_i·P_i averaged over the B sequences (without α), from the normalised affinities
 * [B·T, E] (differentiable) and the chosen experts [B·T, K] (host).
 */
export function sequenceBalanceLoss(affinities: Tensor, indices: Int32Array, sequences: number, seqLen: number, k: number): Tensor {
  const experts = affinities.shape[affinities.shape.length - 1];
  if (affinities.size !== sequences * seqLen * experts) throw new ArgumentError('sequenceBalanceLoss', `affinities [${affinities.shape.join(', ')}] do not hold ${sequences} sequences of ${seqLen} tokens`);
  const f = sequenceExpertFractions(indices, sequences, seqLen, k, experts);
  return tidy(() => {
    const p = mean(reshape(affinities, [sequences, seqLen, experts]), 1); // [B, E]
    return mul(sum(mul(p, tensor(f, [sequences, experts]))), 1 / sequences);
  });
}
