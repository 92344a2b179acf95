import { tidy } from '../../engine.js';
import { fromStorage, zeros } from '../../ops/creation.js';
import { mul } from '../../ops/elementwise.js';
import { indexAdd, indexSelect } from '../../ops/indexing.js';
import { concat, flatten, reshape, sliceAxis } from '../../ops/layout.js';
import type { Tensor } from '../../tensor.js';
import type { MLP } from '../mlp.js';
import type { ExpertDispatch, Routing } from './types.js';

/**
 * Grouped-GEMM dispatch: the N*K (token, expert) assignments are sorted by expert, the token
 * rows gathered into one [N*K, hidden] matrix, each expert runs one GEMM over its contiguous
 * row range, and the weighted results are scattered back with index_add. The routing indices
 * are read on the host (the sort needs them).
 */
export class GroupedGemmDispatch implements ExpertDispatch {
  constructor(readonly experts: readonly MLP[]) {}

  dispatch(x: Tensor, routing: Routing): Tensor {
    return tidy(() => {
      const [N, K] = routing.indices.shape;
      const ids = routing.indices.valuesSync() as Int32Array;
      const order = Array.from({ length: N * K }, (_, i) => i).sort((a, b) => ids[a] - ids[b] || a - b);
      const tokenOf = Int32Array.from(order, (a) => Math.floor(a / K));
      const perm = Int32Array.from(order);
      const rows = indexSelect(x, 0, fromStorage(tokenOf, [N * K], 'i32'));
      const w = indexSelect(flatten(routing.weights), 0, fromStorage(perm, [N * K], 'i32'));
      const outs: Tensor[] = [];
      let start = 0;
      while (start < order.length) {
        const e = ids[order[start]];
        let end = start;
        while (end < order.length && ids[order[end]] === e) end++;
        outs.push(this.experts[e].forward(sliceAxis(rows, 0, start, end - start)));
        start = end;
      }
      const D = x.shape[1];
      if (outs.length === 0) return zeros([N, D]);
      const y = mul(concat(outs, 0), reshape(w, [N * K, 1]));
      return indexAdd(zeros([N, D]), 0, fromStorage(tokenOf, [N * K], 'i32'), y);
    });
  }
}
