import { indexSelect } from '../ops/indexing.js';
import { flatten, reshape } from '../ops/layout.js';
import { tidy } from '../engine.js';
import type { Tensor } from '../tensor.js';
import { Initializer, Module } from './module.js';

/** Token embedding: ids [...] (i32) -> [..., dim] rows of `weight` [vocab, dim]. */
export class Embedding extends Module {
  constructor(readonly numEmbeddings: number, readonly dim: number, init: Initializer) {
    super();
    this.registerParameter('weight', init.normal([numEmbeddings, dim]));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  forward(ids: Tensor): Tensor {
    return tidy(() => reshape(indexSelect(this.weight, 0, flatten(ids)), [...ids.shape, this.dim]));
  }
}
