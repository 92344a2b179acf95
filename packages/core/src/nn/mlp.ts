import { tidy } from '../engine.js';
import type { Tensor } from '../tensor.js';
import { Linear } from './linear.js';
import { Initializer, Module } from './module.js';

/** SwiGLU MLP: down_proj(silu(gate_proj(x)) * up_proj(x)). Each Linear has its own training `precision`. */
export class MLP extends Module {
  readonly gateProj: Linear;
  readonly upProj: Linear;
  readonly downProj: Linear;
  constructor(readonly hidden: number, readonly intermediate: number, init: Initializer) {
    super();
    this.gateProj = this.registerModule('gate_proj', new Linear(hidden, intermediate, init));
    this.upProj = this.registerModule('up_proj', new Linear(hidden, intermediate, init));
    this.downProj = this.registerModule('down_proj', new Linear(intermediate, hidden, init));
  }
  forward(x: Tensor): Tensor {
    // forwardSwiglu = downProj.forward(swiglu(g, u)), or in fp8 precision DeepSeek-V3's FP8
    // caching of the SwiGLU inputs with the output recomputed in backward
    return tidy(() => this.downProj.forwardSwiglu(this.gateProj.forward(x), this.upProj.forward(x)));
  }
}
