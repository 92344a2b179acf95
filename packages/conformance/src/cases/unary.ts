import type { DType, Tensor, UnaryOp } from '@kiln/core';
import * as core from '@kiln/core';
import { UNARY_OPS } from '@kiln/core';
import { describeAt, expectNear } from '../check.js';
import { quantize, type Area, type CaseDef, type Ctx } from '../harness.js';
import { ALL_DTYPES, expectedUnary, isFloat } from '../reference/dtypes.js';
import { EPS32, ulp32 } from '../reference/float.js';
import { codeCount, decode, type LowDType } from '../reference/formats.js';
import { toCompute, unary64 } from '../reference/math.js';
import type { Rng } from '../prng.js';
import { isF32Subnormal, logUniform, readChecked } from './util.js';

/** The public core function of each unary op. */
export const UNARY_FN: Record<UnaryOp, (x: Tensor) => Tensor> = {
  neg: core.neg,
  abs: core.abs,
  sign: core.sign,
  square: core.square,
  sqrt: core.sqrt,
  rsqrt: core.rsqrt,
  reciprocal: core.reciprocal,
  exp: core.exp,
  log: core.log,
  sin: core.sin,
  cos: core.cos,
  tanh: core.tanh,
  sigmoid: core.sigmoid,
  relu: core.relu,
  erf: core.erf,
  floor: core.floor,
  ceil: core.ceil,
  round: core.round,
  not: core.logicalNot,
  isnan: core.isNaN,
};

type Accuracy = 'exact' | 'f32' | 'transcendental';

interface UnarySpec {
  accuracy: Accuracy;
  /** Random f32 inputs in the op's interesting range. */
  gen: (r: Rng) => number;
  /** Which enumerated inputs (FP8/f16 codes, ints) to use; always excludes f32 subnormals (FTZ is allowed). */
  keep?: (x: number) => boolean;
  /** Absolute error floor (in units of eps_f32 * tolerance) for functions whose results pass through 0 at non-zero inputs. */
  absFloor?: number;
}

const wide = (r: Rng): number => (r.bool(0.2) ? r.int(-40, 41) / 2 : r.uniform(-100, 100));

export const UNARY_SPECS: Record<UnaryOp, UnarySpec> = {
  neg: { accuracy: 'exact', gen: wide },
  abs: { accuracy: 'exact', gen: wide },
  sign: { accuracy: 'exact', gen: wide },
  square: { accuracy: 'f32', gen: wide },
  sqrt: { accuracy: 'f32', gen: (r) => (r.bool() ? r.uniform(0, 1000) : logUniform(r, 1e-30, 1e30)) },
  rsqrt: { accuracy: 'transcendental', gen: (r) => logUniform(r, 1e-30, 1e30) },
  reciprocal: { accuracy: 'f32', gen: (r) => logUniform(r, 1e-30, 1e30, true) },
  exp: { accuracy: 'transcendental', gen: (r) => r.uniform(-87, 88), keep: (x) => !(x < -87 && x > -104) },
  log: { accuracy: 'transcendental', gen: (r) => (r.bool(0.3) ? 1 + r.uniform(-1, 1) * 2 ** -10 : logUniform(r, 1e-37, 1e38)), absFloor: 0.5 },
  sin: { accuracy: 'transcendental', gen: (r) => r.uniform(-32, 32), keep: (x) => !(Math.abs(x) > 32), absFloor: 0.5 },
  cos: { accuracy: 'transcendental', gen: (r) => r.uniform(-32, 32), keep: (x) => !(Math.abs(x) > 32), absFloor: 0.5 },
  tanh: { accuracy: 'transcendental', gen: (r) => r.uniform(-10, 10) },
  sigmoid: { accuracy: 'transcendental', gen: (r) => r.uniform(-30, 30), keep: (x) => !(x < -87) },
  relu: { accuracy: 'exact', gen: wide },
  erf: { accuracy: 'transcendental', gen: (r) => r.uniform(-5, 5) },
  floor: { accuracy: 'exact', gen: wide },
  ceil: { accuracy: 'exact', gen: wide },
  round: { accuracy: 'exact', gen: wide },
  not: { accuracy: 'exact', gen: (r) => (r.bool() ? 0 : r.uniform(-3, 3)) },
  isnan: { accuracy: 'exact', gen: (r) => r.uniform(-3, 3) },
};

/** f32 special inputs whose results IEEE float64 semantics define. */
export const F32_SPECIALS = [0, -0, 1, -1, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, Infinity, -Infinity, NaN, 3.4028234663852886e38, -3.4028234663852886e38, 8388607.5, -8388608.5 + 1, 2 ** 24, 1e30, 2 ** -126];

export function unaryBound(op: UnaryOp, exact: number, tol: Ctx['tol']): number {
  const spec = UNARY_SPECS[op];
  if (!Number.isFinite(exact) || spec.accuracy === 'exact') return 0;
  const k = spec.accuracy === 'f32' ? tol.f32 : tol.transcendental;
  return k * ulp32(exact) + (spec.absFloor ? k * spec.absFloor * EPS32 : 0);
}

/** Exact input values of `dtype` for an op: random from the op's range plus specials / enumerated codes. */
function inputsFor(op: UnaryOp, dtype: DType, r: Rng): number[] {
  const spec = UNARY_SPECS[op];
  const keep = (x: number): boolean => !isF32Subnormal(x) && (Number.isNaN(x) || !Number.isFinite(x) || !spec.keep || spec.keep(x));
  const out: number[] = [];
  switch (dtype) {
    case 'f32': {
      for (let i = 0; i < 700; i++) out.push(Math.fround(spec.gen(r)));
      for (const s of F32_SPECIALS) if (keep(s)) out.push(Math.fround(s));
      return out;
    }
    case 'e4m3':
    case 'e5m2': {
      for (let code = 0; code < 256; code++) {
        const v = decode(dtype, code);
        if (keep(v)) out.push(v);
      }
      return out;
    }
    case 'f16':
    case 'bf16': {
      const q = quantize(Array.from({ length: 500 }, () => spec.gen(r)), dtype);
      for (const v of q) if (keep(v)) out.push(v);
      for (let i = 0; i < 300; i++) {
        const v = decode(dtype as LowDType, r.int(0, codeCount(dtype as LowDType)));
        if (keep(v)) out.push(v);
      }
      for (const s of [0, -0, Infinity, -Infinity, NaN, 1, -1, 0.5, 2.5]) if (keep(s)) out.push(s);
      return out;
    }
    case 'i32': {
      for (let i = 0; i < 300; i++) {
        const v = r.int(-1000, 1001);
        if (keep(v)) out.push(v);
      }
      for (const s of [0, 1, -1, 2147483647, -2147483648, 16777217]) if (keep(s)) out.push(s);
      return out;
    }
    case 'u8':
      for (let v = 0; v < 256; v++) if (keep(v)) out.push(v);
      return out;
    case 'bool':
      return [0, 1, 1, 0];
  }
}

async function checkUnary(c: Ctx, op: UnaryOp, dtype: DType): Promise<void> {
  const values = inputsFor(op, dtype, c.rng);
  const shape = values.length % 2 === 0 ? [2, values.length / 2] : [values.length];
  const x = c.tensor(values, shape, dtype);
  const y = c.run(() => UNARY_FN[op](x));
  const { compute, result } = expectedUnary(op, dtype);
  const label = `${op}(${dtype})`;
  const r = await readChecked(c, y, label, result, shape);
  const exact = new Float64Array(values.length);
  const bound = new Float64Array(values.length);
  const identity = !isFloat(dtype) && (op === 'floor' || op === 'ceil' || op === 'round');
  for (let i = 0; i < values.length; i++) {
    const v = toCompute(values[i], dtype, compute);
    exact[i] = identity ? values[i] : unary64(op, v, compute);
    bound[i] = compute === 'f32' && result !== 'bool' ? unaryBound(op, exact[i], c.tol) : 0;
  }
  expectNear(label, result, r.values, exact, bound, describeAt(shape, { x: values }));
}

function opCase(op: UnaryOp): CaseDef {
  const acc = UNARY_SPECS[op].accuracy;
  return {
    name: `${op}: every input dtype (output dtype and values; ${acc === 'exact' ? 'exact' : acc === 'f32' ? 'f32 ulps' : 'transcendental ulps'}), f32 specials, all FP8 codes`,
    async run(c) {
      for (const dtype of ALL_DTYPES) await checkUnary(c, op, dtype);
    },
  };
}

const cases: CaseDef[] = [
  ...UNARY_OPS.map(opCase),
  {
    name: 'Backend.unary: every op on a [129, 131] f32 tensor (odd sizes, 64 KiB+) with a poisoned allocator',
    async run(c) {
      const shape = [129, 131];
      for (const op of UNARY_OPS) {
        const spec = UNARY_SPECS[op];
        const { t, values } = c.random(shape, 'f32', spec.gen);
        const outDtype = op === 'not' || op === 'isnan' ? 'bool' : 'f32';
        const xs = op === 'not' ? null : t;
        // `not` takes bool input (core casts); feed it a bool tensor
        const input = xs ?? c.random(shape, 'bool').t;
        const inVals = xs ? values : Float64Array.from((await c.read(input)).values);
        const r = await c.prim(`unary ${op}`, outDtype, shape, () => c.backend.unary(op, input, outDtype), [input]);
        const exact = inVals.map((v) => unary64(op, v, op === 'not' ? 'bool' : 'f32'));
        const bound = outDtype === 'bool' ? 0 : exact.map((e) => unaryBound(op, e, c.tol));
        expectNear(`Backend.unary(${op}) f32`, outDtype, r.values, exact, bound, describeAt(shape, { x: inVals }));
      }
    },
  },
  {
    name: 'Backend.unary: i32 ops (neg, abs, sign, square, relu) with wrapping on [129, 131], poisoned',
    async run(c) {
      const shape = [129, 131];
      for (const op of ['neg', 'abs', 'sign', 'square', 'relu'] as const) {
        const { t, values } = c.random(shape, 'i32', (r) => (r.bool(0.05) ? r.pick([2147483647, -2147483648, 65536, -65537]) : r.int(-50000, 50001)));
        const r = await c.prim(`unary ${op} i32`, 'i32', shape, () => c.backend.unary(op, t, 'i32'), [t]);
        expectNear(`Backend.unary(${op}) i32`, 'i32', r.values, values.map((v) => unary64(op, v, 'i32')), 0, describeAt(shape, { x: values }));
      }
    },
  },
];

export const unaryArea: Area = { name: 'unary', cases };
