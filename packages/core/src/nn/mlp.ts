import { swiglu } from '../composed/activations.js';
import { tidy } from '../engine.js';
import type { Tensor } from '../tensor.js';
import { Linear } from './linear.js';
import { Initializer, Module } from './module.js';

/** SwiGLU MLP: down_proj(silu(gate_proj(x)) * up_proj(x)). */
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
    return tidy(() => this.downProj.forward(swiglu(this.gateProj.forward(x), this.upProj.forward(x))));
  }
}
