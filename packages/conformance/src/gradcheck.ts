import * as k from '@kiln/core';

/** One input of a gradient check: its shape and the range its values are drawn from. */
export interface GradSpec {
  shape: number[];
  lo?: number;
  hi?: number;
}

export interface GradcheckOptions {
  seed?: number;
  /** Relative tolerance (of the gradient's largest magnitude and of the numeric value). */
  tol?: number;
  /** Positions probed per input (all when the input is smaller). */
  probes?: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return (s >>> 8) / 16777216;
  };
}

/**
 * Checks `valueAndGrads` of `f` against central finite differences. The loss is a fixed random
 * projection of f's output (so every output element matters); the forward runs in the
 * backend's f32, so the step is 1e-2 relative and the tolerance `tol` (default 3e-3) of the
 * gradient's scale. Also checks that no tensor leaks. Throws an Error naming the case, the
 * input and the element on mismatch.
 */
export async function gradcheck(name: string, f: (xs: k.Tensor[]) => k.Tensor, specs: GradSpec[], options: GradcheckOptions = {}): Promise<void> {
  const tol = options.tol ?? 3e-3;
  const probes = options.probes ?? 24;
  const r = rng(options.seed ?? name.length * 7919);
  const values = specs.map((s) => Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => (s.lo ?? -1) + ((s.hi ?? 1) - (s.lo ?? -1)) * r()));
  const out = k.noGrad(() => k.tidy(() => f(values.map((v, i) => k.tensor(v, specs[i].shape)))));
  const probe = { w: Float32Array.from({ length: out.size }, () => r() * 2 - 1), shape: out.shape };
  out.dispose();
  const loss = (xs: k.Tensor[]) => k.sum(k.mul(k.cast(f(xs), 'f32'), k.tensor(probe.w, probe.shape)));
  const read = async (t: k.Tensor): Promise<Float32Array> => (await t.values()) as Float32Array;
  const lossAt = async (vals: Float32Array[]) => {
    const t = k.noGrad(() => k.tidy(() => k.cast(loss(vals.map((v, i) => k.tensor(v, specs[i].shape))), 'f32')));
    const v = (await read(t))[0];
    t.dispose();
    return v;
  };
  const before = k.memory().tensors;
  const params = values.map((v, i) => k.tensor(v, specs[i].shape));
  const { value, grads } = k.valueAndGrads(() => loss(params), params);
  const analytic: Float32Array[] = [];
  for (const g of grads) analytic.push(await read(g));
  value.dispose();
  for (const t of [...params, ...grads]) t.dispose();
  if (k.memory().tensors !== before) throw new Error(`${name}: valueAndGrads leaked ${k.memory().tensors - before} tensors`);
  for (let i = 0; i < values.length; i++) {
    const g = analytic[i];
    let scale = 1e-3;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    const positions = values[i].length <= probes ? [...values[i].keys()] : Array.from({ length: probes }, () => Math.floor(r() * values[i].length));
    for (const p of positions) {
      const x0 = values[i][p];
      const eps = 1e-2 * Math.max(1, Math.abs(x0));
      const plus = values.map((v) => v.slice());
      const minus = values.map((v) => v.slice());
      plus[i][p] = x0 + eps;
      minus[i][p] = x0 - eps;
      const numeric = ((await lossAt(plus)) - (await lossAt(minus))) / (plus[i][p] - minus[i][p]);
      const err = Math.abs(numeric - g[p]);
      if (!(err <= tol * scale + tol * Math.abs(numeric))) {
        throw new Error(`${name}: input ${i} element ${p}: analytic ${g[p]}, numeric ${numeric} (gradient scale ${scale})`);
      }
    }
  }
}
