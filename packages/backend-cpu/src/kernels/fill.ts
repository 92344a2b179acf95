import type { DType, StorageArray } from '@kiln/core';
import { newStorage } from '../pool.js';
import { encodeScalar } from './cast.js';

/**
 * A tensor of one value. Float dtypes store the value rounded to f32 and then encoded
 * (the same path as creating a tensor from JS numbers); i32/u8 use typed-array conversion
 * (truncate toward zero, wrap; NaN -> 0), also as tensor creation does; bool is value != 0.
 */
export function fillKernel(size: number, dtype: DType, value: number): StorageArray {
  const out = newStorage(dtype, size);
  if (size === 0) return out;
  if (dtype === 'bool') (out as Uint8Array).fill(value !== 0 ? 1 : 0);
  else if (dtype === 'i32' || dtype === 'u8' || dtype === 'f32') out.fill(value);
  else out.fill(encodeScalar(value, dtype));
  return out;
}
