import { keep, tidy } from '../../engine.js';
import { add } from '../../ops/elementwise.js';
import { reshape } from '../../ops/layout.js';
import type { Tensor } from '../../tensor.js';
import { MLP } from '../mlp.js';
import { Initializer, Module } from '../module.js';
import { GroupedGemmDispatch } from './dispatch.js';
import { SigmoidGroupRouter, type RouterConfig } from './router.js';
import type { MoELayer, RoutingStats } from './types.js';

export interface DeepseekMoEConfig extends RouterConfig {
  moeIntermediateSize: number;
  nSharedExperts: number;
}

/** DeepSeekMoE: `gate` (router), `experts.E` (routed SwiGLU MLPs), `shared_experts` (always on). */
export class DeepseekMoE extends Module implements MoELayer {
  readonly gate: SigmoidGroupRouter;
  readonly experts: MLP[] = [];
  readonly sharedExperts: MLP;
  readonly dispatcher: GroupedGemmDispatch;
  /** Called after every forward with the routing's per-expert counts (and affinities, see below). */
  onRouting: ((stats: RoutingStats) => void) | null = null;
  /** When on (and `onRouting` is set), the stats carry the normalised affinities [tokens, E]. */
  routingAffinities = false;
  constructor(readonly config: DeepseekMoEConfig, init: Initializer) {
    super();
    const c = config;
    this.gate = this.registerModule('gate', new SigmoidGroupRouter(c, init));
    for (let e = 0; e < c.nRoutedExperts; e++) this.experts.push(this.registerModule(`experts.${e}`, new MLP(c.hiddenSize, c.moeIntermediateSize, init)));
    this.sharedExperts = this.registerModule('shared_experts', new MLP(c.hiddenSize, c.moeIntermediateSize * c.nSharedExperts, init));
    this.dispatcher = new GroupedGemmDispatch(this.experts);
  }
  forward(x: Tensor, options: { fixedIndices?: Tensor } = {}): Tensor {
    return tidy(() => {
      const D = this.config.hiddenSize;
      const flat = reshape(x, [x.size / D, D]);
      const listener = this.onRouting;
      const routing = this.gate.route(flat, options.fixedIndices, { affinities: listener !== null && this.routingAffinities });
      const routed = this.dispatcher.dispatch(flat, routing);
      if (listener) {
        const indices = Int32Array.from(routing.indices.valuesSync() as Int32Array);
        const counts = new Int32Array(this.config.nRoutedExperts);
        for (let i = 0; i < indices.length; i++) counts[indices[i]]++;
        const stats: RoutingStats = { counts, indices, tokenShape: x.shape.slice(0, -1), k: routing.indices.shape[1] };
        if (routing.affinities) stats.affinities = keep(routing.affinities);
        listener(stats);
      }
      routing.indices.dispose();
      routing.weights.dispose();
      return add(reshape(routed, x.shape), this.sharedExperts.forward(x));
    });
  }
}
