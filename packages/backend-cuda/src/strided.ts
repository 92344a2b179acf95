import type { Shape, StridedView } from '@kiln/core';
import { collapseDims, stridesOf } from '@kiln/core';

export { broadcastStrides, collapseDims } from '@kiln/core';

/** The view of a contiguous tensor. */
export function contiguousView(shape: Shape): StridedView {
  return collapseDims(shape, [stridesOf(shape)])[0];
}
