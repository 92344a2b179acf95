/**
 * Exact float32 -> small binary float conversion with round-half-to-even, done in
 * integer arithmetic on the f32 bit pattern (float tricks would double-round in JS,
 * whose arithmetic is float64).
 */
export interface MinifloatFormat {
  readonly exponentBits: number;
  readonly mantissaBits: number;
  readonly bias: number;
  /** Largest finite magnitude code (e.g. 0x7e for e4m3fn, 0x7b for e5m2, 0x7bff for f16). */
  readonly maxFiniteCode: number;
  /** Code for overflow when not saturating: +inf code for IEEE-like formats, the NaN code for e4m3fn. */
  readonly overflowCode: number;
  /** Code written for NaN inputs (sign bit added separately). */
  readonly nanCode: number;
  /** Code written for +-inf inputs when not saturating. */
  readonly infCode: number;
  /** Total bits, for placing the sign. */
  readonly totalBits: number;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/** Encodes one float32 value (given as a JS number that is already an f32) into `fmt`. */
export function encodeMinifloat(x: number, fmt: MinifloatFormat, saturate: boolean): number {
  const bits = f32Bits(x);
  const sign = bits >>> 31 ? 1 << (fmt.totalBits - 1) : 0;
  const abs = bits & 0x7fffffff;
  const expField = abs >>> 23;
  const frac = abs & 0x7fffff;
  if (expField === 0xff) {
    if (frac !== 0) return sign | fmt.nanCode;
    return sign | (saturate ? fmt.maxFiniteCode : fmt.infCode);
  }
  if (abs === 0) return sign;
  // Value = m * 2^(e - 23) with m a 24-bit integer (implicit bit included for normals).
  let e: number;
  let m: number;
  if (expField === 0) {
    e = -126;
    m = frac;
  } else {
    e = expField - 127;
    m = frac | 0x800000;
  }
  const eminTarget = 1 - fmt.bias;
  // Normalise f32 subnormals so e is the true exponent of the leading bit.
  while (m < 0x800000) {
    m *= 2;
    e -= 1;
  }
  const te = e < eminTarget ? eminTarget : e;
  const shift = 23 - fmt.mantissaBits + (te - e);
  let q: number;
  if (shift > 25) {
    q = 0; // below half of the smallest subnormal
  } else {
    const div = 2 ** shift;
    q = Math.floor(m / div);
    const rem = m - q * div;
    const half = div / 2;
    if (rem > half || (rem === half && (q & 1) === 1)) q += 1;
  }
  const code = (te + fmt.bias - 1) * 2 ** fmt.mantissaBits + q;
  if (code > fmt.maxFiniteCode) return sign | (saturate ? fmt.maxFiniteCode : fmt.overflowCode);
  return sign | code;
}

/** Decodes one code of `fmt` to its exact value. */
export function decodeMinifloat(code: number, fmt: MinifloatFormat, hasInfNan: (mag: number) => number | undefined): number {
  const signBit = 1 << (fmt.totalBits - 1);
  const neg = (code & signBit) !== 0;
  const mag = code & (signBit - 1);
  const special = hasInfNan(mag);
  if (special !== undefined) return neg ? -special : special;
  const expField = mag >>> fmt.mantissaBits;
  const mant = mag & ((1 << fmt.mantissaBits) - 1);
  const value =
    expField === 0
      ? mant * 2 ** (1 - fmt.bias - fmt.mantissaBits)
      : (mant + 2 ** fmt.mantissaBits) * 2 ** (expField - fmt.bias - fmt.mantissaBits);
  return neg ? -value : value;
}
