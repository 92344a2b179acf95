import type { Tensor } from '../../tensor.js';

/** A routing decision for N tokens: K experts each. */
export interface Routing {
  /** [N, K] i32 expert ids. */
  indices: Tensor;
  /** [N, K] f32 combine weights (differentiable w.r.t. the router's parameters). */
  weights: Tensor;
  /** [N, E] f32 normalised affinities s_i / Σ_j s_j (only when asked for; differentiable). */
  affinities?: Tensor;
}

export interface RouteOptions {
  /** Also return the normalised affinities (for the sequence-wise balance loss). */
  affinities?: boolean;
}

/**
 * What one MoE forward routed, for load balancing: handed to `DeepseekMoE.onRouting`.
 * Counting never changes the routing result.
 */
export interface RoutingStats {
  /** Tokens routed per expert [E] (host; every token counts K times in total). */
  counts: Int32Array;
  /** The chosen experts, row-major [tokens, K] (host). */
  indices: Int32Array;
  /** Leading shape of the input without the hidden axis, e.g. [B, T] (a 2-D input gives [N]). */
  tokenShape: number[];
  /** Experts per token. */
  k: number;
  /**
   * [tokens, E] normalised affinities, when `DeepseekMoE.routingAffinities` is on. The listener
   * owns this tensor (it is kept out of the forward's scopes): dispose it when done.
   */
  affinities?: Tensor;
}

/** Scores tokens x [N, hidden] and picks K experts per token. */
export interface Router {
  route(x: Tensor, fixedIndices?: Tensor, options?: RouteOptions): Routing;
}

/** Runs the routed experts over tokens x [N, hidden] and combines them with the routing weights. */
export interface ExpertDispatch {
  dispatch(x: Tensor, routing: Routing): Tensor;
}

/** A mixture-of-experts FFN: [..., hidden] -> [..., hidden]. */
export interface MoELayer {
  forward(x: Tensor, options?: { fixedIndices?: Tensor }): Tensor;
}
