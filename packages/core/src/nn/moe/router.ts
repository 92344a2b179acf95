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
        const out = new Int32Array(N * c.numExpertsPerTok);
        for (let n = 0; n < N; n++) {
          const row = biased.subarray(n * E, (n + 1) * E);
          const gs: number[] = [];
          for (let g = 0; g < c.nGroup; g++) {
            const v = Array.from(row.subarray(g * per, (g + 1) * per)).sort((a, b) => b - a);
            gs.push(v[0] + (per > 1 ? v[1] : 0));
          }
          const groups = topIdx(gs, c.topkGroup);
          const masked = Array.from(row, (v, e) => (groups.includes(Math.floor(e / per)) ? v : 0));
          out.set(topIdx(masked, c.numExpertsPerTok), n * c.numExpertsPerTok);
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
function topIdx(v: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: v.length }, (_, i) => i);
  idx.sort((a, b) => v[b] - v[a] || a - b);
  return idx.slice(0, k);
}

