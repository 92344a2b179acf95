/**
 * Scalar math shared by the elementwise kernels and the fused kernels (so both round
 * identically). Everything here works in float64; callers round to f32 on store.
 */

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

// ---------------------------------------------------------------------------------------
// erf
//
// Three regions, all evaluated in float64 (error ~1e-14, far below f32's 6e-8 ulp):
//  - |x| < 0.5: the Maclaurin series x * sum_n (-1)^n x^(2n) / (n! (2n+1)) * 2/sqrt(pi),
//    14 terms in Horner form (the next term is < 1e-19 of the first).
//  - 0.5 <= |x| < 6: Chebyshev interpolants (degree <= 14) on 0.5-wide intervals,
//    evaluated with Clenshaw's recurrence. Their coefficients are computed once at load
//    from the everywhere-positive series erf(x) = 2/sqrt(pi) e^(-x^2)
//    sum_n 2^n x^(2n+1) / (2n+1)!!, which has no cancellation.
//  - |x| >= 6: +-1 (erfc(6) ~ 2e-17 is below half an f64 ulp of 1).

const SERIES_TERMS = 14;
const SERIES = new Float64Array(SERIES_TERMS);
{
  let fact = 1;
  for (let n = 0; n < SERIES_TERMS; n++) {
    if (n > 0) fact *= n;
    SERIES[n] = ((n % 2 === 0 ? 1 : -1) * TWO_OVER_SQRT_PI) / (fact * (2 * n + 1));
  }
}

/** Slow, accurate erf for 0 <= x <= 6 (positive-term series); used to build the tables. */
function erfPositiveSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 400; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-18) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

const CHEB_LO = 0.5;
const CHEB_HI = 6;
const CHEB_WIDTH = 0.5;
const CHEB_NODES = 20;
const CHEB_INTERVALS = Math.round((CHEB_HI - CHEB_LO) / CHEB_WIDTH);
/** Coefficients, CHEB_NODES per interval (c0 pre-halved). */
const CHEB = new Float64Array(CHEB_INTERVALS * CHEB_NODES);
/**
 * Coefficients below this are noise of the table's float64 reference (~1e-15) and are
 * dropped: the remaining error stays ~1e-14 absolute, invisible after rounding to f32.
 */
const CHEB_NOISE = 2e-15;
/** Number of significant coefficients per interval. */
const CHEB_DEGREE = new Int32Array(CHEB_INTERVALS);
{
  const f = new Float64Array(CHEB_NODES);
  for (let iv = 0; iv < CHEB_INTERVALS; iv++) {
    const lo = CHEB_LO + iv * CHEB_WIDTH;
    const mid = lo + CHEB_WIDTH / 2;
    for (let j = 0; j < CHEB_NODES; j++) {
      const t = Math.cos((Math.PI * (j + 0.5)) / CHEB_NODES);
      f[j] = erfPositiveSeries(mid + (t * CHEB_WIDTH) / 2);
    }
    let degree = 1;
    for (let k = 0; k < CHEB_NODES; k++) {
      let s = 0;
      for (let j = 0; j < CHEB_NODES; j++) s += f[j] * Math.cos((Math.PI * k * (j + 0.5)) / CHEB_NODES);
      const c = (2 / CHEB_NODES) * s;
      CHEB[iv * CHEB_NODES + k] = k === 0 ? c / 2 : c;
      if (Math.abs(c) > CHEB_NOISE) degree = k + 1;
    }
    CHEB_DEGREE[iv] = degree;
  }
}

/** The error function, accurate to ~1e-14 in float64 (relative for |x| < 0.5). */
export function erf(x: number): number {
  if (x !== x) return x;
  const ax = x < 0 ? -x : x;
  if (ax < CHEB_LO) {
    const x2 = x * x;
    let p = SERIES[SERIES_TERMS - 1];
    for (let n = SERIES_TERMS - 2; n >= 0; n--) p = p * x2 + SERIES[n];
    return x * p;
  }
  if (ax >= CHEB_HI) return x < 0 ? -1 : 1;
  const iv = Math.floor((ax - CHEB_LO) / CHEB_WIDTH);
  const lo = CHEB_LO + iv * CHEB_WIDTH;
  const t = (2 * (ax - lo)) / CHEB_WIDTH - 1;
  const base = iv * CHEB_NODES;
  let b1 = 0;
  let b2 = 0;
  for (let k = CHEB_DEGREE[iv] - 1; k >= 1; k--) {
    const b0 = CHEB[base + k] + 2 * t * b1 - b2;
    b2 = b1;
    b1 = b0;
  }
  const y = CHEB[base] + t * b1 - b2;
  return x < 0 ? -y : y;
}

// ---------------------------------------------------------------------------------------

/** Logistic sigmoid without overflow: exp is only taken of a non-positive number. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** Rounds half to even (banker's rounding, as torch.round). Keeps -0 and NaN. */
export function roundHalfEven(x: number): number {
  let r = Math.round(x); // half towards +inf
  if (r - x === 0.5 && r % 2 !== 0) r -= 1;
  return r;
}

/** Floored modulo (Python's %): the result has the divisor's sign; x mod 0 is NaN. */
export function floorModF(a: number, b: number): number {
  let r = a % b;
  if (r !== 0) {
    if (r < 0 !== b < 0) r += b;
  } else {
    r = b < 0 ? -0 : 0;
  }
  return r;
}

/** Floored modulo of int32 values; x mod 0 is 0 (integers have no NaN). */
export function floorModI(a: number, b: number): number {
  if (b === 0) return 0;
  let r = a % b;
  if (r !== 0 && r < 0 !== b < 0) r += b;
  return r | 0;
}
