import type { Tensor } from '../../tensor.js';

/** A routing decision for N tokens: K experts each. */
export interface Routing {
  /** [N, K] i32 expert ids. */
  indices: Tensor;
  /** [N, K] f32 combine weights (differentiable w.r.t. the router's parameters). */
  weights: Tensor;
}

/** Scores tokens x [N, hidden] and picks K experts per token. */
export interface Router {
  route(x: Tensor, fixedIndices?: Tensor): Routing;
}

/** Runs the routed experts over tokens x [N, hidden] and combines them with the routing weights. */
export interface ExpertDispatch {
  dispatch(x: Tensor, routing: Routing): Tensor;
}

/** A mixture-of-experts FFN: [..., hidden] -> [..., hidden]. */
export interface MoELayer {
  forward(x: Tensor, options?: { fixedIndices?: Tensor }): Tensor;
}
