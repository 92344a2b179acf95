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
      // Slots sorted by expert, stably (a counting sort: the same order as sorting by (expert, slot)).
      const order = sortSlotsByExpert(ids);
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

/** Slot indices 0..ids.length-1 ordered by ids[slot], ties by slot (a stable counting sort). */
export function sortSlotsByExpert(ids: Int32Array): Int32Array {
  let max = -1;
  for (let i = 0; i < ids.length; i++) if (ids[i] > max) max = ids[i];
  const start = new Int32Array(max + 2);
  for (let i = 0; i < ids.length; i++) start[ids[i] + 1]++;
  for (let e = 0; e <= max; e++) start[e + 1] += start[e];
  const order = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) order[start[ids[i]]++] = i;
  return order;
}
