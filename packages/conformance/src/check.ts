/**
 * Element-by-element comparisons with failure messages that name the element, its inputs,
 * the expected value and the error against its bound. Every output element is checked on
 * its own; nothing is compared through sums or norms.
 */
import type { DType } from '@kiln/core';
import { f32BitsOf, fmt, isNegativeZero } from './reference/float.js';
import { decode, grid, isLowDType, type LowDType } from './reference/formats.js';
import { unravel, type Shape } from './reference/nd.js';

export class ConformanceFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConformanceFailure';
  }
}

export function fail(message: string): never {
  throw new ConformanceFailure(message);
}

export function assert(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) fail(typeof message === 'function' ? message() : message);
}

export function assertShape(label: string, actual: Shape, expected: Shape): void {
  if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) {
    fail(`${label}: shape [${actual.join(', ')}], expected [${expected.join(', ')}]`);
  }
}

export function assertDType(label: string, actual: DType, expected: DType): void {
  if (actual !== expected) fail(`${label}: dtype ${actual}, expected ${expected}`);
}

/** Describes element i for a failure message. */
export type Describe = (i: number) => string;

export function describeAt(shape: Shape, inputs?: Record<string, ArrayLike<number> | ((i: number) => string | number)>): Describe {
  return (i) => {
    const parts = [`[${unravel(i, shape).join(', ')}]`];
    if (inputs) {
      for (const [k, v] of Object.entries(inputs)) {
        const x = typeof v === 'function' ? v(i) : v[i];
        parts.push(`${k}=${typeof x === 'number' ? fmt(x) : x}`);
      }
    }
    return parts.join(' ');
  };
}

class Mismatches {
  readonly lines: string[] = [];
  count = 0;
  constructor(private readonly label: string, private readonly n: number) {}
  add(line: () => string): void {
    this.count++;
    if (this.lines.length < 6) this.lines.push(line());
  }
  throwIfAny(): void {
    if (this.count > 0) {
      fail(`${this.label}: ${this.count} of ${this.n} elements wrong; first:\n  ${this.lines.join('\n  ')}`);
    }
  }
}

function hex(code: number, digits: number): string {
  return `0x${(code >>> 0).toString(16).padStart(digits, '0')}`;
}

/**
 * Bit-exact storage codes. f32 codes are compared as bit patterns, except that any NaN
 * matches any NaN (payloads and NaN signs of f32 values are not part of the contract).
 */
export function expectCodes(label: string, dtype: DType, actual: ArrayLike<number>, expected: ArrayLike<number>, describe?: Describe): void {
  if (actual.length !== expected.length) fail(`${label}: ${actual.length} elements, expected ${expected.length}`);
  const m = new Mismatches(label, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    let ok: boolean;
    if (dtype === 'f32') ok = (Number.isNaN(a) && Number.isNaN(e)) || (!Number.isNaN(a) && !Number.isNaN(e) && f32BitsOf(a) === f32BitsOf(e));
    else ok = a === e;
    if (!ok) {
      m.add(() => {
        const where = describe ? describe(i) : `[${i}]`;
        if (dtype === 'f32') return `${where}: got ${fmt(a)} (${hex(f32BitsOf(a), 8)}), expected ${fmt(e)} (${hex(f32BitsOf(e), 8)})`;
        if (isLowDType(dtype)) {
          const digits = dtype === 'f16' || dtype === 'bf16' ? 4 : 2;
          return `${where}: got ${hex(a, digits)} (${fmt(decode(dtype, a))}), expected ${hex(e, digits)} (${fmt(decode(dtype, e))})`;
        }
        return `${where}: got ${a}, expected ${e}`;
      });
    }
  }
  m.throwIfAny();
}

/** Exact values (0 and -0 equal, NaN equals NaN). */
export function expectExact(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, describe?: Describe, signedZero = false): void {
  if (actual.length !== expected.length) fail(`${label}: ${actual.length} elements, expected ${expected.length}`);
  const m = new Mismatches(label, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const ok = (Number.isNaN(a) && Number.isNaN(e)) || (a === e && (!signedZero || isNegativeZero(a) === isNegativeZero(e)));
    if (!ok) m.add(() => `${describe ? describe(i) : `[${i}]`}: got ${fmt(a)}, expected ${fmt(e)}`);
  }
  m.throwIfAny();
}

const F32_OVERFLOW = 2 ** 128 - 2 ** 103; // values at or above round to inf in f32

/** Whether an f32 result `a` is acceptable for the exact result `e` with absolute bound `b`. */
export function f32Within(a: number, e: number, b: number): boolean {
  if (Number.isNaN(e)) return Number.isNaN(a);
  if (Number.isNaN(a)) return false;
  if (!Number.isFinite(e)) return a === e;
  if (!Number.isFinite(a)) return Math.abs(e) + b >= F32_OVERFLOW && Math.sign(a) === Math.sign(e);
  return Math.abs(a - e) <= b;
}

/** Largest value of the format (with +-inf) <= v, and smallest >= v. */
function gridFloor(d: LowDType, v: number): number {
  const c = bracket(d, v);
  return c[0];
}
function gridCeil(d: LowDType, v: number): number {
  return bracket(d, v)[1];
}


function bracket(d: LowDType, v: number): [number, number] {
  const g = grid(d);
  const top = g[g.length - 1];
  const hasInf = d !== 'e4m3';
  const beyond = hasInf ? Infinity : NaN;
  if (v > top) return [top, beyond];
  if (v < -top) return [-beyond, -top];
  const a = Math.abs(v);
  let lo = 0;
  let hi = g.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (g[mid] <= a) lo = mid;
    else hi = mid;
  }
  let below: number;
  let above: number;
  if (g[lo] === a) below = above = a;
  else if (g[hi] === a) below = above = a;
  else {
    below = g[lo];
    above = g[hi];
  }
  return v >= 0 ? [below, above] : [-above, -below];
}

/**
 * Whether a low-precision result `a` (decoded) is what rounding some f32 value within `b`
 * of the exact result `e` to format `d` can give: the grid values bracketing [e-b, e+b].
 * With b = 0 this is "the exact result rounded either way" (one ulp of the target format).
 */
export function lowWithin(d: LowDType, a: number, e: number, b: number): boolean {
  if (Number.isNaN(e)) return Number.isNaN(a);
  if (Number.isNaN(a)) {
    // e4m3 overflows to NaN
    return d === 'e4m3' && Math.abs(e) + b > grid(d)[grid(d).length - 1];
  }
  if (!Number.isFinite(e)) return a === e;
  const lo = gridFloor(d, e - b);
  const hi = gridCeil(d, e + b);
  return a >= lo && a <= hi;
}

/**
 * Flush-to-zero is allowed (WGSL, WebGL and GPUs' fast paths flush f32 subnormals): an exact
 * result in the f32 subnormal range may come back as a zero of its sign. The suite already
 * keeps subnormals out of its f32 inputs for the same reason.
 */
export function flushedSubnormal(a: number, e: number): boolean {
  return a === 0 && e !== 0 && Math.abs(e) < 2 ** -126 && Object.is(a, e < 0 ? -0 : 0);
}

/**
 * Checks results of dtype `dtype` (decoded values) against exact float64 results with
 * absolute f32 error bounds (`bound[i]`, for the f32 computation before any rounding to
 * f16/bf16). Integers and bool must be exact.
 */
export function expectNear(
  label: string,
  dtype: DType,
  actual: ArrayLike<number>,
  exact: ArrayLike<number>,
  bound: ArrayLike<number> | number,
  describe?: Describe,
): void {
  if (actual.length !== exact.length) fail(`${label}: ${actual.length} elements, expected ${exact.length}`);
  const m = new Mismatches(label, exact.length);
  for (let i = 0; i < exact.length; i++) {
    const a = actual[i];
    const e = exact[i];
    const b = typeof bound === 'number' ? bound : bound[i];
    let ok: boolean;
    if (flushedSubnormal(a, e)) ok = true;
    else if (dtype === 'f32') ok = f32Within(a, e, b);
    else if (isLowDType(dtype)) ok = lowWithin(dtype, a, e, b);
    else ok = a === e || (Number.isNaN(a) && Number.isNaN(e));
    if (!ok) {
      m.add(() => {
        const where = describe ? describe(i) : `[${i}]`;
        const err = Math.abs(a - e);
        return `${where}: got ${fmt(a)}, expected ${fmt(e)}${Number.isFinite(err) ? ` (|err| ${err.toExponential(3)}, bound ${b.toExponential(3)}${isLowDType(dtype) ? ` + rounding to ${dtype}` : ''})` : ''}`;
      });
    }
  }
  m.throwIfAny();
}
