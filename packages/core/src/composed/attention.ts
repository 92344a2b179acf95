import type { Backend } from '../backend.js';
import { recordGradWith } from '../autograd/tape.js';
import { sumToShape } from '../autograd/grads.js';
import { isFloatDType } from '../dtype.js';
import { tidy } from '../engine.js';
import { ArgumentError, DTypeError, ShapeError } from '../errors.js';
import { cast } from '../ops/cast.js';
import { arange } from '../ops/creation.js';
import { exp, lessEqual, mul, sub, where } from '../ops/elementwise.js';
import { expandDims, reshape } from '../ops/layout.js';
import { matmul } from '../ops/matmul.js';
import { backendOf, wrap } from '../ops/plumbing.js';
import { sum } from '../ops/reduce.js';
import { formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { softmax } from './softmax.js';

export interface AttentionOptions {
  /** Multiplies q k^T before the softmax (default 1 / sqrt(dk)). */
  scale?: number;
  /** Causal masking: query i sees keys j <= causalOffset + i. */
  causal?: boolean;
  /**
   * Absolute position of the first query among the keys (an integer >= 0; S - Tq for new
   * queries after a cache of S - Tq positions). Implies `causal`; default 0 when causal.
   */
  causalOffset?: number;
}

/**
 * Scaled dot-product attention over the last two axes: softmax(scale · q kᵀ + mask) v, with
 * q [..., Tq, dk], k [..., S, dk], v [..., S, dv]. k's and v's leading axes broadcast to q's
 * (each 1 or q's size; missing leading axes count as 1), so one key/value set can serve
 * every head. Causal masking removes key j from query i when j > causalOffset + i (masked
 * keys take no part at all: neither their scores nor their values reach the output).
 * Returns f32 [..., Tq, dv] for any float input dtypes.
 *
 * Runs the backend's `fused.attention` kernel when it has one (recording a composed backward
 * that recomputes the probabilities from the kernel's logSumExp); otherwise composes
 * matmul, softmax and where, and autograd differentiates the composition.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const backend = backendOf('attention', q, k, v);
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (!isFloatDType(t.dtype)) throw new DTypeError('attention', `${name} must be float, got ${t.dtype}`);
  }
  const shapes = `q ${formatShape(q.shape)}, k ${formatShape(k.shape)}, v ${formatShape(v.shape)}`;
  if (q.rank < 2 || k.rank < 2 || v.rank < 2) throw new ShapeError('attention', `q, k and v must have rank >= 2 ([..., T, d]), got ${shapes}`);
  const Tq = q.shape[q.rank - 2];
  const dk = q.shape[q.rank - 1];
  const S = k.shape[k.rank - 2];
  if (k.shape[k.rank - 1] !== dk) throw new ShapeError('attention', `q and k must share the last axis dk, got ${shapes}`);
  if (v.shape[v.rank - 2] !== S) throw new ShapeError('attention', `k and v must have the same number of positions S (axis -2), got ${shapes}`);
  if (S === 0) throw new ShapeError('attention', `there must be at least one key (S >= 1), got ${shapes}`);
  const lead = q.shape.slice(0, -2);
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    const tl = t.shape.slice(0, -2);
    const ok = tl.length <= lead.length && tl.every((d, i) => d === 1 || d === lead[lead.length - tl.length + i]);
    if (!ok) throw new ShapeError('attention', `${name}'s leading axes must each be 1 or q's size (broadcast to q's [${lead.join(', ')}]), got ${shapes}`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(dk);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new ArgumentError('attention', `scale must be a finite number, got ${String(scale)}`);
  const offset = causalOffsetOf(options);
  const dv = v.shape[v.rank - 1];

  return tidy(() => {
    const qf = q.dtype === 'f32' ? q : cast(q, 'f32');
    const kf = alignRank(k.dtype === 'f32' ? k : cast(k, 'f32'), q.rank);
    const vf = alignRank(v.dtype === 'f32' ? v : cast(v, 'f32'), q.rank);
    const kernel = backend.fused?.attention;
    if (kernel) {
      const res = kernel.call(backend.fused, qf, kf, vf, { scale, causalOffset: offset });
      const out = wrap(backend, res.out, [...lead, Tq, dv], 'f32');
      const lse = wrap(backend, res.logSumExp, [...lead, Tq], 'f32');
      recordGradWith('attention', [qf, kf, vf], out, [qf, kf, vf, out, lse], (dO, [sq, sk, sv, so, sl]) =>
        attentionGrads(dO, sq, sk, sv, so, sl, scale, offset),
      );
      return out;
    }
    const p = softmax(maskScores(mul(matmul(qf, kf, { transposeB: true }), scale), offset), -1);
    return matmul(p, vf);
  });
}

function causalOffsetOf(options: AttentionOptions): number | null {
  const { causal, causalOffset } = options;
  if (causal !== undefined && typeof causal !== 'boolean') throw new ArgumentError('attention', `causal must be a boolean, got ${String(causal)}`);
  if (causalOffset === undefined) return causal ? 0 : null;
  if (causal === false) throw new ArgumentError('attention', `causalOffset ${causalOffset} was given with causal: false (an offset implies causal masking)`);
  if (typeof causalOffset !== 'number' || !Number.isInteger(causalOffset) || causalOffset < 0) {
    throw new ArgumentError('attention', `causalOffset must be an integer >= 0, got ${String(causalOffset)}`);
  }
  return causalOffset;
}

/** x with leading 1s added up to `rank` (a view). */
function alignRank(x: Tensor, rank: number): Tensor {
  return x.rank === rank ? x : reshape(x, [...new Array<number>(rank - x.rank).fill(1), ...x.shape]);
}

/** bool [Tq, S]: key j is visible to query i when j <= offset + i (built on the device from two iotas). */
function visibleKeys(backend: Backend, Tq: number, S: number, offset: number): Tensor {
  const keys = arange(0, S, 1, 'i32', { backend });
  const last = reshape(arange(offset, offset + Tq, 1, 'i32', { backend }), [Tq, 1]);
  return lessEqual(keys, last);
}

/** Scores [..., Tq, S] with masked keys set to -inf (unchanged when offset is null). */
function maskScores(scores: Tensor, offset: number | null): Tensor {
  if (offset === null) return scores;
  const Tq = scores.shape[scores.rank - 2];
  const S = scores.shape[scores.rank - 1];
  return where(visibleKeys(scores.backend, Tq, S, offset), scores, -Infinity);
}

/**
 * Gradients of the fused attention for q, k, v from the saved inputs (rank-aligned f32), the
 * output and the log normaliser: P = exp(scale q kᵀ + mask - lse), dV = Pᵀ dO, dP = dO vᵀ,
 * D = rowsum(dO ∘ out), dS = P ∘ (dP - D), dq = scale dS k, dk = scale dSᵀ q; dk and dv are
 * summed over the leading axes they were broadcast along.
 */
function attentionGrads(dO: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, scale: number, offset: number | null): Tensor[] {
  const s = maskScores(mul(matmul(q, k, { transposeB: true }), scale), offset);
  const p = exp(sub(s, expandDims(lse, -1)));
  const dv = matmul(p, dO, { transposeA: true });
  const dp = matmul(dO, v, { transposeB: true });
  const d = sum(mul(dO, out), -1, { keepDims: true });
  const ds = mul(p, sub(dp, d));
  const dq = mul(matmul(ds, k), scale);
  const dk = mul(matmul(ds, q, { transposeA: true }), scale);
  return [dq, sumToShape(dk, k.shape), sumToShape(dv, v.shape)];
}
