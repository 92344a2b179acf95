/**
 * The suite's own decoders and encoders for the low-precision storage formats, written from
 * the bit layouts (sign | exponent | mantissa) and independent of @kiln/core's codecs:
 *
 * - decode: value = mantissa * 2^(1 - bias - mbits) for a zero exponent field (subnormals),
 *   (2^mbits + mantissa) * 2^(exp - bias - mbits) otherwise; the all-ones exponent is inf/NaN
 *   for f16, bf16 and e5m2, while e4m3fn ("fn" = finite, NaN only) has NaN at mantissa 7 only.
 * - encode: searches the sorted grid of finite magnitudes for the two neighbours of |x| and
 *   picks the nearer, ties to the even code, in exact float64 comparisons. Past the largest
 *   finite value the grid continues with one virtual step (the next power of two for f16,
 *   bf16, e5m2; 480 for e4m3), so overflow follows round-to-nearest-even: f16 >= 65520 -> inf,
 *   e5m2 >= 61440 -> inf, e4m3 > 464 -> NaN (464 itself ties to 448). NaN encodes as the
 *   quiet NaN with the source's sign (f16 0x7e00, FP8 0x7f) except bf16, whose NaN is 0x7fc0
 *   whatever the sign (PyTorch's conversions). `saturate` clamps overflow and infinities to
 *   the largest finite value for f16 and FP8; bf16 has f32's range and ignores it.
 */
export type LowDType = 'f16' | 'bf16' | 'e4m3' | 'e5m2';

interface Layout {
  readonly bits: number;
  readonly expBits: number;
  readonly manBits: number;
  readonly bias: number;
  /** IEEE-style inf/NaN at the all-ones exponent (false: e4m3fn). */
  readonly ieee: boolean;
  readonly maxFiniteCode: number;
  readonly nanCode: number;
  readonly nanKeepsSign: boolean;
  readonly infCode: number | undefined;
}

const LAYOUTS: Record<LowDType, Layout> = {
  f16: { bits: 16, expBits: 5, manBits: 10, bias: 15, ieee: true, maxFiniteCode: 0x7bff, nanCode: 0x7e00, nanKeepsSign: true, infCode: 0x7c00 },
  bf16: { bits: 16, expBits: 8, manBits: 7, bias: 127, ieee: true, maxFiniteCode: 0x7f7f, nanCode: 0x7fc0, nanKeepsSign: false, infCode: 0x7f80 },
  e4m3: { bits: 8, expBits: 4, manBits: 3, bias: 7, ieee: false, maxFiniteCode: 0x7e, nanCode: 0x7f, nanKeepsSign: true, infCode: undefined },
  e5m2: { bits: 8, expBits: 5, manBits: 2, bias: 15, ieee: true, maxFiniteCode: 0x7b, nanCode: 0x7f, nanKeepsSign: true, infCode: 0x7c },
};

export function isLowDType(d: string): d is LowDType {
  return d === 'f16' || d === 'bf16' || d === 'e4m3' || d === 'e5m2';
}

export function codeCount(d: LowDType): number {
  return 2 ** LAYOUTS[d].bits;
}

export function signBit(d: LowDType): number {
  return 2 ** (LAYOUTS[d].bits - 1);
}

/** Exact value of a code. */
export function decode(d: LowDType, code: number): number {
  const L = LAYOUTS[d];
  const sign = code & signBit(d) ? -1 : 1;
  const expMax = 2 ** L.expBits - 1;
  const exp = Math.floor(code / 2 ** L.manBits) % 2 ** L.expBits;
  const man = code % 2 ** L.manBits;
  if (exp === expMax) {
    if (L.ieee) return man === 0 ? sign * Infinity : NaN;
    if (man === 2 ** L.manBits - 1) return NaN;
  }
  const mag = exp === 0 ? man * 2 ** (1 - L.bias - L.manBits) : (2 ** L.manBits + man) * 2 ** (exp - L.bias - L.manBits);
  return sign * mag;
}

const grids = new Map<LowDType, Float64Array>();

/** Non-negative finite magnitudes, indexed by code (0 .. maxFiniteCode), ascending. */
export function grid(d: LowDType): Float64Array {
  let g = grids.get(d);
  if (!g) {
    const L = LAYOUTS[d];
    g = new Float64Array(L.maxFiniteCode + 1);
    for (let c = 0; c <= L.maxFiniteCode; c++) g[c] = decode(d, c);
    for (let c = 1; c < g.length; c++) if (!(g[c] > g[c - 1])) throw new Error(`grid of ${d} is not increasing at ${c}`);
    grids.set(d, g);
  }
  return g;
}

/** The magnitude one step past the largest finite value (for overflow rounding). */
function virtualNext(d: LowDType): number {
  const g = grid(d);
  const n = g.length;
  return g[n - 1] + (g[n - 1] - g[n - 2]);
}

export interface EncodeOptions {
  saturate?: boolean;
  /** Sign of a NaN input (JS NaN carries none). */
  negativeNaN?: boolean;
}

/** Round-half-to-even encoding of the float64 value `x`. */
export function encode(d: LowDType, x: number, options: EncodeOptions = {}): number {
  const L = LAYOUTS[d];
  const sb = signBit(d);
  const saturate = (options.saturate ?? false) && d !== 'bf16';
  if (Number.isNaN(x)) return L.nanCode | (L.nanKeepsSign && options.negativeNaN ? sb : 0);
  const negative = x < 0 || (x === 0 && 1 / x < 0);
  const s = negative ? sb : 0;
  const a = Math.abs(x);
  const overflow = (): number => {
    if (saturate) return s | L.maxFiniteCode;
    return s | (L.infCode ?? L.nanCode);
  };
  if (a === Infinity) return overflow();
  const g = grid(d);
  // largest code whose magnitude is <= a
  let lo = 0;
  let hi = g.length - 1;
  if (a >= g[hi]) lo = hi;
  else {
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (g[mid] <= a) lo = mid;
      else hi = mid;
    }
  }
  if (a === g[lo]) return s | lo;
  const below = g[lo];
  const above = lo + 1 < g.length ? g[lo + 1] : virtualNext(d);
  const mid = (below + above) / 2; // exact: both have few significant bits
  let code: number;
  if (a < mid) code = lo;
  else if (a > mid) code = lo + 1;
  else code = lo % 2 === 0 ? lo : lo + 1;
  if (code > L.maxFiniteCode) return overflow();
  return s | code;
}
