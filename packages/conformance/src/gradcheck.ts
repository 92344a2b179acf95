import * as k from '@kiln/core';

/** One input of a gradient check: its shape and the range its values are drawn from. */
export interface GradSpec {
  shape: number[];
  lo?: number;
  hi?: number;
}

export interface GradcheckOptions {
  seed?: number;
  /**
   * Relative tolerance (of the gradient's largest magnitude and of the numeric value).
   * Default 3e-3, or 1e-6 in float64.
   */
  tol?: number;
  /** Positions probed per input (all when the input is smaller). */
  probes?: number;
  /**
   * Take the differences in float64: inputs are created exactly in float64, the step is
   * 1e-6 relative and the default tolerance 1e-6. Default: whether the current backend holds
   * f32 tensors as float64 (`backend.f32Precision === 'f64'`, e.g.
   * `new CpuBackend({ float64: true })`); `true` on a backend that does not is an error.
   */
  float64?: boolean;
}

/** What a passing gradient check measured. */
export interface GradcheckReport {
  name: string;
  /** Whether the differences were taken in float64. */
  float64: boolean;
  /** Relative step of the central differences. */
  step: number;
  /** Tolerance applied. */
  tol: number;
  /** Largest |numeric - analytic| over the probes, divided by that input's gradient scale. */
  maxError: number;
  /** Positions probed, over all inputs. */
  probes: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return (s >>> 8) / 16777216;
  };
}

/** Whether the current backend holds f32 tensors as float64 (a reference mode). */
export function backendHoldsFloat64(): boolean {
  return (k.getBackend() as { f32Precision?: string }).f32Precision === 'f64';
}

/**
 * An f32 tensor holding the float64 values `v` exactly, on a backend that keeps f32 as
 * float64: `v` is split into three f32-representable parts (hi + mid + lo = v exactly, as
 * 3 x 24 bits cover float64's 53) that are created as ordinary tensors and added in float64.
 */
function exactTensor(v: Float64Array, shape: k.Shape): k.Tensor {
  const hi = Float32Array.from(v);
  const mid = new Float32Array(v.length);
  const lo = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const r = v[i] - hi[i];
    mid[i] = r;
    lo[i] = r - mid[i];
  }
  return k.noGrad(() => k.tidy(() => k.add(k.add(k.tensor(hi, shape), k.tensor(mid, shape)), k.tensor(lo, shape))));
}

/**
 * Checks `valueAndGrads` of `f` against central finite differences. The loss is a fixed random
 * projection of f's output (so every output element matters). When the forward runs in the
 * backend's f32, the step is 1e-2 relative and the tolerance `tol` (default 3e-3) of the
 * gradient's scale; in float64 (a backend holding f32 as float64, see `options.float64`) the
 * step is 1e-6 and the default tolerance 1e-6. Also checks that no tensor leaks. Throws an
 * Error naming the case, the input and the element on mismatch; returns what it measured.
 */
export async function gradcheck(name: string, f: (xs: k.Tensor[]) => k.Tensor, specs: GradSpec[], options: GradcheckOptions = {}): Promise<GradcheckReport> {
  const holds64 = backendHoldsFloat64();
  const f64 = options.float64 ?? holds64;
  if (f64 && !holds64) throw new Error(`${name}: a float64 gradcheck needs a backend that holds f32 as float64 (f32Precision 'f64', e.g. new CpuBackend({ float64: true }))`);
  const tol = options.tol ?? (f64 ? 1e-6 : 3e-3);
  const step = f64 ? 1e-6 : 1e-2;
  const probes = options.probes ?? 24;
  const r = rng(options.seed ?? name.length * 7919);
  const arr = (n: number, fn: () => number): Float32Array | Float64Array => (f64 ? Float64Array.from({ length: n }, fn) : Float32Array.from({ length: n }, fn));
  const make = (v: Float32Array | Float64Array, shape: k.Shape): k.Tensor => (f64 ? exactTensor(v as Float64Array, shape) : k.tensor(v, shape));
  const values = specs.map((s) => arr(s.shape.reduce((a, b) => a * b, 1), () => (s.lo ?? -1) + ((s.hi ?? 1) - (s.lo ?? -1)) * r()));
  const out = k.noGrad(() => k.tidy(() => f(values.map((v, i) => make(v, specs[i].shape)))));
  const probe = { w: arr(out.size, () => r() * 2 - 1), shape: out.shape };
  out.dispose();
  const loss = (xs: k.Tensor[]) => k.sum(k.mul(k.cast(f(xs), 'f32'), make(probe.w, probe.shape)));
  const read = async (t: k.Tensor): Promise<Float32Array | Float64Array> => (await t.values()) as Float32Array | Float64Array;
  const lossAt = async (vals: (Float32Array | Float64Array)[]) => {
    const t = k.noGrad(() => k.tidy(() => k.cast(loss(vals.map((v, i) => make(v, specs[i].shape))), 'f32')));
    const v = (await read(t))[0];
    t.dispose();
    return v;
  };
  const before = k.memory().tensors;
  const params = values.map((v, i) => make(v, specs[i].shape));
  if (f64) {
    // the inputs must hold the float64 values exactly, or the differences are meaningless
    for (let i = 0; i < params.length; i++) {
      const got = await read(params[i]);
      if (!(got instanceof Float64Array) || got.some((v, j) => v !== values[i][j])) {
        for (const t of params) t.dispose();
        throw new Error(`${name}: the backend did not keep input ${i} in float64 (read back a ${got.constructor.name} that differs from the values written)`);
      }
    }
  }
  const { value, grads } = k.valueAndGrads(() => loss(params), params);
  const analytic: (Float32Array | Float64Array)[] = [];
  for (const g of grads) analytic.push(await read(g));
  value.dispose();
  for (const t of [...params, ...grads]) t.dispose();
  if (k.memory().tensors !== before) throw new Error(`${name}: valueAndGrads leaked ${k.memory().tensors - before} tensors`);
  let maxError = 0;
  let probed = 0;
  for (let i = 0; i < values.length; i++) {
    const g = analytic[i];
    let scale = 1e-3;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    const positions = values[i].length <= probes ? [...values[i].keys()] : Array.from({ length: probes }, () => Math.floor(r() * values[i].length));
    for (const p of positions) {
      const x0 = values[i][p];
      const eps = step * Math.max(1, Math.abs(x0));
      const plus = values.map((v) => v.slice());
      const minus = values.map((v) => v.slice());
      plus[i][p] = x0 + eps;
      minus[i][p] = x0 - eps;
      const numeric = ((await lossAt(plus)) - (await lossAt(minus))) / (plus[i][p] - minus[i][p]);
      const err = Math.abs(numeric - g[p]);
      if (!(err <= tol * scale + tol * Math.abs(numeric))) {
        throw new Error(`${name}: input ${i} element ${p}: analytic ${g[p]}, numeric ${numeric} (gradient scale ${scale})`);
      }
      maxError = Math.max(maxError, err / scale);
      probed++;
    }
  }
  const report = { name, float64: f64, step, tol, maxError, probes: probed };
  observer?.(report);
  return report;
}

let observer: ((report: GradcheckReport) => void) | undefined;

/**
 * Calls `fn` with the report of every gradient check that passes from now on (also those the
 * conformance suite's 'autograd' area runs), until called again (`undefined` stops).
 */
export function observeGradchecks(fn: ((report: GradcheckReport) => void) | undefined): void {
  observer = fn;
}
