import { tidy } from '../../engine.js';
import { add } from '../../ops/elementwise.js';
import { reshape } from '../../ops/layout.js';
import type { Tensor } from '../../tensor.js';
import { MLP } from '../mlp.js';
import { Initializer, Module } from '../module.js';
import { GroupedGemmDispatch } from './dispatch.js';
import { SigmoidGroupRouter, type RouterConfig } from './router.js';
import type { MoELayer } from './types.js';

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
      const routing = this.gate.route(flat, options.fixedIndices);
      const routed = this.dispatcher.dispatch(flat, routing);
      routing.indices.dispose();
      routing.weights.dispose();
      return add(reshape(routed, x.shape), this.sharedExperts.forward(x));
    });
  }
}
