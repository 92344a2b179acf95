import { tidy, keep } from '../../engine.js';
import { add, div, mul, sigmoid } from '../../ops/elementwise.js';
import { fromStorage } from '../../ops/creation.js';
import { gather } from '../../ops/indexing.js';
import { matmul } from '../../ops/matmul.js';
import { sum } from '../../ops/reduce.js';
import { noGrad } from '../../autograd/tape.js';
import type { Tensor } from '../../tensor.js';
import { Initializer, Module } from '../module.js';
import type { RouteOptions, Router, Routing } from './types.js';

export interface RouterConfig {
  hiddenSize: number;
  nRoutedExperts: number;
  numExpertsPerTok: number;
  nGroup: number;
  topkGroup: number;
  normTopkProb: boolean;
  routedScalingFactor: number;
}

/**
 * DeepSeek-V3's router (`mlp.gate`): s = sigmoid(x W^T) in f32; selection on s + bias
 * (`e_score_correction_bias`), limited to the `topk_group` groups with the largest sum of their
 * top-2 biased scores (experts of the other groups get a biased score of 0, as transformers
 * masks them); the weights are the unbiased s of the chosen experts, normalised when
 * `norm_topk_prob`, times `routed_scaling_factor`. The bias is not a trained parameter: the
 * auxiliary-loss-free balancing rule moves it between optimizer steps.
 */
export class SigmoidGroupRouter extends Module implements Router {
  constructor(readonly config: RouterConfig, init: Initializer) {
    super();
    this.registerParameter('weight', init.normal([config.nRoutedExperts, config.hiddenSize]));
    this.registerParameter('e_score_correction_bias', init.zerosT([config.nRoutedExperts]));
  }

  /** Selection only (no gradient): [N, K] i32 expert ids from scores [N, E]. */
  select(scores: Tensor): Tensor {
    const c = this.config;
    return noGrad(() =>
      tidy(() => {
        const biased = add(scores, this.param('e_score_correction_bias')).valuesSync() as Float32Array;
        const [N, E] = scores.shape;
        const per = E / c.nGroup;
        const K = c.numExpertsPerTok;
        const out = new Int32Array(N * K);
        // Typed scratch reused across tokens: this loop runs for every token of every step.
        const gs = new Float64Array(c.nGroup);
        const groups = new Int32Array(c.topkGroup);
        const inGroup = new Uint8Array(c.nGroup);
        const masked = new Float64Array(E);
        for (let n = 0; n < N; n++) {
          const row = n * E;
          for (let g = 0; g < c.nGroup; g++) {
            // Sum of the group's two largest scores (the group's only one when per = 1).
            let m1 = -Infinity;
            let m2 = -Infinity;
            for (let e = row + g * per, end = e + per; e < end; e++) {
              const v = biased[e];
              if (v > m1) {
                m2 = m1;
                m1 = v;
              } else if (v > m2) m2 = v;
            }
            gs[g] = m1 + (per > 1 ? m2 : 0);
          }
          topIndices(gs, c.topkGroup, groups, 0);
          inGroup.fill(0);
          for (let i = 0; i < c.topkGroup; i++) inGroup[groups[i]] = 1;
          for (let e = 0; e < E; e++) masked[e] = inGroup[Math.floor(e / per)] ? biased[row + e] : 0;
          topIndices(masked, K, out, n * K);
        }
        return fromStorage(out, [N, c.numExpertsPerTok], 'i32');
      }),
    );
  }

  /**
   * Routes tokens x [N, hidden]. With `options.affinities`, the routing also carries the
   * normalised affinities s_i / Σ_j s_j [N, E] (differentiable; for the sequence-wise balance
   * loss). The decision and the weights are the same either way.
   */
  route(x: Tensor, fixedIndices?: Tensor, options: RouteOptions = {}): Routing {
    const c = this.config;
    const scores = tidy(() => sigmoid(matmul(x, this.param('weight'), { transposeB: true })));
    const indices = fixedIndices ? keep(tidy(() => add(fixedIndices, 0))) : this.select(scores);
    const weights = tidy(() => {
      let w = gather(scores, -1, indices);
      if (c.normTopkProb) w = div(w, add(sum(w, -1, { keepDims: true }), 1e-20));
      return mul(w, c.routedScalingFactor);
    });
    const affinities = options.affinities ? tidy(() => div(scores, sum(scores, -1, { keepDims: true }))) : undefined;
    scores.dispose();
    return affinities ? { indices, weights, affinities } : { indices, weights };
  }

  /** The current selection bias (`e_score_correction_bias`) [E]. */
  get bias(): Tensor {
    return this.param('e_score_correction_bias');
  }
}

/** Indices of the k largest values, ties to the lower index (like torch.topk on CPU in practice). */
/**
 * The k largest entries of v, largest first, ties to the lower index (the order of a stable
 * descending sort), written to out[at..at+k). One pass with a sorted k-buffer: O(len · k) worst
 * case, O(len) typically.
 */
function topIndices(v: ArrayLike<number>, k: number, out: Int32Array, at: number): void {
  let filled = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (filled === k && !(x > v[out[at + k - 1]])) continue;
    // Scanning in index order, an equal value never displaces an earlier one.
    let j = filled < k ? filled++ : k - 1;
    while (j > 0 && x > v[out[at + j - 1]]) {
      out[at + j] = out[at + j - 1];
      j--;
    }
    out[at + j] = i;
  }
}

