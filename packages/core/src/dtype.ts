import { DTypeError } from './errors.js';

/**
 * Element types. Low-precision floats are stored in their real bit formats
 * (f16/bf16 as 16-bit codes, FP8 as byte codes), never widened to f32 in storage.
 * `e4m3` is the OCP "fn" variant (no infinities, max 448); `e5m2` is IEEE-like.
 */
export type DType = 'f32' | 'f16' | 'bf16' | 'e4m3' | 'e5m2' | 'i32' | 'u8' | 'bool';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'e4m3', 'e5m2', 'i32', 'u8', 'bool'];

export type FloatDType = 'f32' | 'f16' | 'bf16' | 'e4m3' | 'e5m2';
export type IntDType = 'i32' | 'u8';

/** The host array a dtype's codes live in. */
export interface StorageArrays {
  f32: Float32Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  e4m3: Uint8Array;
  e5m2: Uint8Array;
  i32: Int32Array;
  u8: Uint8Array;
  bool: Uint8Array;
}
export type StorageArray<D extends DType = DType> = StorageArrays[D];

export interface DTypeInfo {
  readonly name: DType;
  /** Bytes per element in storage. */
  readonly bytes: number;
  readonly isFloat: boolean;
  readonly isInt: boolean;
  /** Low-precision floats whose storage codes are not their values (f16, bf16, FP8). */
  readonly isEncoded: boolean;
}

const INFO: Record<DType, DTypeInfo> = {
  f32: { name: 'f32', bytes: 4, isFloat: true, isInt: false, isEncoded: false },
  f16: { name: 'f16', bytes: 2, isFloat: true, isInt: false, isEncoded: true },
  bf16: { name: 'bf16', bytes: 2, isFloat: true, isInt: false, isEncoded: true },
  e4m3: { name: 'e4m3', bytes: 1, isFloat: true, isInt: false, isEncoded: true },
  e5m2: { name: 'e5m2', bytes: 1, isFloat: true, isInt: false, isEncoded: true },
  i32: { name: 'i32', bytes: 4, isFloat: false, isInt: true, isEncoded: false },
  u8: { name: 'u8', bytes: 1, isFloat: false, isInt: true, isEncoded: false },
  bool: { name: 'bool', bytes: 1, isFloat: false, isInt: false, isEncoded: false },
};

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(INFO, x);
}

export function dtypeInfo(dtype: DType, op = 'dtype'): DTypeInfo {
  const info = isDType(dtype) ? INFO[dtype] : undefined;
  if (!info) throw new DTypeError(op, `unknown dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(', ')}`);
  return info;
}

export function isFloatDType(dtype: DType): dtype is FloatDType {
  return INFO[dtype].isFloat;
}

/** Allocates zeroed host storage for `size` elements of `dtype`. */
export function allocStorage<D extends DType>(dtype: D, size: number): StorageArray<D> {
  switch (dtype) {
    case 'f32':
      return new Float32Array(size) as StorageArray<D>;
    case 'f16':
    case 'bf16':
      return new Uint16Array(size) as StorageArray<D>;
    case 'i32':
      return new Int32Array(size) as StorageArray<D>;
    default:
      return new Uint8Array(size) as StorageArray<D>;
  }
}

/** True when `arr` is the storage array type of `dtype`. */
export function isStorageOf(dtype: DType, arr: unknown): boolean {
  switch (dtype) {
    case 'f32':
      return arr instanceof Float32Array;
    case 'f16':
    case 'bf16':
      return arr instanceof Uint16Array;
    case 'i32':
      return arr instanceof Int32Array;
    default:
      return arr instanceof Uint8Array;
  }
}

/**
 * The dtype two operands compute in when they differ: the wider float wins,
 * any float beats any int, i32 beats u8 and bool. FP8 never results from promotion
 * (FP8 is a storage format: arithmetic on it happens in f32).
 */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a === 'e4m3' || a === 'e5m2' ? 'f32' : a;
  const rank: Record<DType, number> = { bool: 0, u8: 1, i32: 2, e4m3: 3, e5m2: 3, bf16: 4, f16: 4, f32: 6 };
  const fa = INFO[a].isFloat;
  const fb = INFO[b].isFloat;
  if (fa !== fb) return promoteTypes(fa ? a : b, fa ? a : b);
  if ((a === 'f16' && b === 'bf16') || (a === 'bf16' && b === 'f16')) return 'f32';
  if (fa && (rank[a] === 3 || rank[b] === 3)) return 'f32';
  return rank[a] >= rank[b] ? a : b;
}
