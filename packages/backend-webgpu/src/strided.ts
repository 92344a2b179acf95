import type { Shape } from '@kiln/core';
import { collapseDims } from '@kiln/core';

export { broadcastStrides, collapseDims, type StridedView } from '@kiln/core';

/**
 * The `meta` words of a strided kernel over nops operands: [n (filled in later), nd,
 * dims[nd], strides of each operand [nd] ..., base offset of each operand].
 */
export function stridedMeta(shape: Shape, strides: readonly (readonly number[])[], offsets?: readonly number[]): number[] {
  const views = collapseDims(shape, strides);
  const nd = views[0][1];
  const meta = [0, nd, ...views[0].slice(2, 2 + nd)];
  for (const v of views) meta.push(...v.slice(2 + nd, 2 + 2 * nd));
  for (let k = 0; k < strides.length; k++) meta.push(offsets?.[k] ?? 0);
  return meta;
}
