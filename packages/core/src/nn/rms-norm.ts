import { rmsNorm } from '../composed/norm.js';
import type { Tensor } from '../tensor.js';
import { Initializer, Module } from './module.js';

/** RMSNorm over the last axis with a learned scale `weight` [dim] (initialised to ones). */
export class RMSNorm extends Module {
  constructor(readonly dim: number, init: Initializer, readonly eps = 1e-6) {
    super();
    this.registerParameter('weight', init.ones([dim]));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}
