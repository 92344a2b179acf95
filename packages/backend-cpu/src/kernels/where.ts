import type { DType, Shape, StorageArray } from '@kiln/core';
import { sizeOf } from '@kiln/core';
import { newStorage } from '../pool.js';
import { codeView, type CodeArray } from '../storage.js';
import { Odometer, planBroadcast } from './plan.js';

/** cond ? a : b with broadcasting. Moves codes (bit-exact), so it works for any dtype. */
export function whereKernel(
  cond: Uint8Array,
  condShape: Shape,
  a: StorageArray,
  aShape: Shape,
  b: StorageArray,
  bShape: Shape,
  dtype: DType,
  outShape: Shape,
): StorageArray {
  const size = sizeOf(outShape);
  const values = newStorage(dtype, size);
  if (size === 0) return values;
  const out = codeView(values);
  const av = codeView(a);
  const bv = codeView(b);
  const plan = planBroadcast(outShape, [condShape, aShape, bShape]);
  const { rowLen, rows } = plan;
  const [cs, as, bs] = plan.rowStrides;
  const odo = new Odometer(plan);
  const offs = odo.offsets;
  for (let r = 0, oi = 0; r < rows; r++, oi += rowLen) {
    selectRow(cond, offs[0], cs, av, offs[1], as, bv, offs[2], bs, out, oi, rowLen);
    odo.next();
  }
  return values;
}

function selectRow(
  c: Uint8Array, ci: number, cs: number,
  a: CodeArray, ai: number, as: number,
  b: CodeArray, bi: number, bs: number,
  o: CodeArray, oi: number, n: number,
): void {
  // Branchless select on the codes: b ^ ((a ^ b) & mask), mask all ones when cond holds.
  for (let i = 0; i < n; i++, ci += cs, ai += as, bi += bs) {
    const y = b[bi];
    o[oi + i] = y ^ ((a[ai] ^ y) & -+(c[ci] !== 0));
  }
}
