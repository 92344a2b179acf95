/**
 * Float64 helpers for reasoning about f32 results: bit patterns, exact binary exponents,
 * and the size of an f32 ulp at a value. Written for the suite; nothing here comes from
 * @kiln/core.
 */
const view = new DataView(new ArrayBuffer(8));

/** The f32 bit pattern of `x` rounded to f32 (what a Float32Array would store). */
export function f32BitsOf(x: number): number {
  view.setFloat32(0, x);
  return view.getUint32(0);
}

/** The f32 value with bit pattern `bits`. */
export function f32FromBits(bits: number): number {
  view.setUint32(0, bits >>> 0);
  return view.getFloat32(0);
}

/** floor(log2(|x|)) for finite non-zero x, exactly (from the float64 exponent field). */
export function exponentOf(x: number): number {
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const e = (hi >>> 20) & 0x7ff;
  if (e !== 0) return e - 1023;
  // float64 subnormal: normalise by scaling.
  return exponentOf(x * 2 ** 64) - 64;
}

/** Spacing of f32 numbers at |x| (the ulp of the binade x lies in; 2^-149 below 2^-126). */
export function ulp32(x: number): number {
  const a = Math.abs(x);
  if (!Number.isFinite(a)) return NaN;
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.min(exponentOf(a), 127) - 23);
}

/** f32 machine epsilon (2^-23): the ulp of 1. */
export const EPS32 = 2 ** -23;

/** The value of an f32 bit pattern as a float64 number; NaN stays NaN. */
export function isNegativeZero(x: number): boolean {
  return x === 0 && 1 / x < 0;
}

/** Formats a number with its f32 bit pattern for failure messages. */
export function fmt(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (isNegativeZero(x)) return '-0';
  return String(x);
}

export function fmtF32(x: number): string {
  return `${fmt(x)} (0x${f32BitsOf(x).toString(16).padStart(8, '0')})`;
}

/** Round half to even to an integer, in float64 (exact for f32 inputs). */
export function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const f = Math.floor(x);
  const d = x - f;
  let r: number;
  if (d > 0.5) r = f + 1;
  else if (d < 0.5) r = f;
  else r = f % 2 === 0 ? f : f + 1;
  // keep the sign of zero for inputs in (-0.5, -0]
  return r === 0 && (x < 0 || isNegativeZero(x)) ? -0 : r;
}
