import type { BinaryOp, DType, Tensor, TensorLike } from '@kiln/core';
import * as core from '@kiln/core';
import { BINARY_OPS } from '@kiln/core';
import { assert, describeAt, expectNear } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { ALL_DTYPES, expectedBinary, isComparison, isLogical, type Compute } from '../reference/dtypes.js';
import { ulp32 } from '../reference/float.js';
import { binary64, toCompute } from '../reference/math.js';
import { broadcast, mapBroadcast, size, type Shape } from '../reference/nd.js';
import type { Rng } from '../prng.js';
import { readChecked } from './util.js';

export const BINARY_FN: Record<BinaryOp, (a: TensorLike, b: TensorLike) => Tensor> = {
  add: core.add,
  sub: core.sub,
  mul: core.mul,
  div: core.div,
  pow: core.pow,
  maximum: core.maximum,
  minimum: core.minimum,
  mod: core.mod,
  eq: core.equal,
  ne: core.notEqual,
  lt: core.less,
  le: core.lessEqual,
  gt: core.greater,
  ge: core.greaterEqual,
  and: core.logicalAnd,
  or: core.logicalOr,
};

/** Shape pairs cycled through the dtype pairs: broadcasting, scalars, rank-0, empty dims, odd sizes. */
const SHAPE_PAIRS: [Shape, Shape][] = [
  [[3, 1, 5], [4, 1]],
  [[2, 3], [3]],
  [[7], [7]],
  [[], [4]],
  [[5, 3], []],
  [[1], [5]],
  [[2, 1], [1, 3]],
  [[0, 3], [1, 3]],
  [[4, 0], [4, 1]],
  [[13], [1]],
  [[2, 1, 3, 1], [5, 1, 2]],
  [[], []],
];

/** Raw values for operand `side` of `op`, before rounding to the operand dtype. */
function gen(op: BinaryOp, side: 0 | 1, dtype: DType, r: Rng): number {
  const integer = dtype === 'i32' || dtype === 'u8' || dtype === 'bool';
  if (dtype === 'bool') return op === 'mod' && side === 1 ? 1 : r.bool() ? 1 : 0; // integer mod by 0 is undefined
  const nonzero = (v: number): number => (v === 0 ? 1 : v);
  switch (op) {
    case 'div':
      if (side === 1) return integer ? nonzero(r.int(dtype === 'u8' ? 0 : -20, 21)) : (r.bool() ? 1 : -1) * r.uniform(0.05, 10);
      return integer ? r.int(dtype === 'u8' ? 0 : -200, 201) : r.uniform(-10, 10);
    case 'mod':
      if (side === 1) return integer ? nonzero(r.int(dtype === 'u8' ? 1 : -20, 21)) : (r.bool() ? 1 : -1) * r.uniform(0.05, 10);
      return integer ? r.int(dtype === 'u8' ? 0 : -200, 201) : r.uniform(-30, 30);
    case 'pow':
      if (side === 0) return integer ? r.int(dtype === 'u8' ? 0 : -6, 7) : r.uniform(0.1, 6);
      return integer ? r.int(dtype === 'u8' ? 0 : -3, 5) : r.uniform(-4, 4);
    case 'eq':
    case 'ne':
    case 'le':
    case 'ge':
      // small integers so that equal values actually occur (in every dtype)
      return integer ? r.int(dtype === 'u8' ? 0 : -3, 4) : r.int(-6, 7) / 2;
    default:
      if (dtype === 'u8') return r.int(0, 256);
      if (integer) return r.int(-1000, 1001);
      return r.uniform(-10, 10);
  }
}

function binaryBound(op: BinaryOp, exact: number, compute: Compute, tol: Ctx['tol']): number {
  if (compute !== 'f32' || !Number.isFinite(exact)) return 0;
  if (op === 'maximum' || op === 'minimum' || isComparison(op) || isLogical(op)) return 0;
  if (op === 'pow') return tol.transcendental * ulp32(exact);
  return tol.f32 * ulp32(exact);
}

async function checkBinary(c: Ctx, op: BinaryOp, da: DType, db: DType, shapes: [Shape, Shape]): Promise<void> {
  const [sa, sb] = shapes;
  const a = c.random(sa, da, (r) => gen(op, 0, da, r));
  const b = c.random(sb, db, (r) => gen(op, 1, db, r));
  const { compute, result } = expectedBinary(op, da, db);
  const outShape = broadcast(sa, sb);
  const label = `${op}(${da} [${sa.join(', ')}], ${db} [${sb.join(', ')}])`;
  const y = c.run(() => BINARY_FN[op](a.t, b.t));
  const r = await readChecked(c, y, label, result, outShape);
  const ref = mapBroadcast([sa, sb], [a.values, b.values], (x, z) => binary64(op, toCompute(x, da, compute), toCompute(z, db, compute), compute));
  const bound = ref.values.map((e) => binaryBound(op, e, compute, c.tol));
  const ai = mapBroadcast([sa, sb], [a.values, b.values], (x) => x).values;
  const bi = mapBroadcast([sa, sb], [a.values, b.values], (_, z) => z).values;
  expectNear(label, result, r.values, ref.values, bound, describeAt(outShape, { a: ai, b: bi }));
}

function opCase(op: BinaryOp): CaseDef {
  return {
    name: `${op}: all 64 dtype pairs over broadcasting shapes ([3,1,5]+[4,1], rank-0, empty dims, odd sizes): output dtype, shape and every value`,
    async run(c) {
      let k = 0;
      for (const da of ALL_DTYPES) {
        for (const db of ALL_DTYPES) {
          await checkBinary(c, op, da, db, SHAPE_PAIRS[k++ % SHAPE_PAIRS.length]);
        }
      }
    },
  };
}

const NaN_ = NaN;
const INF = Infinity;

/** [op, a, b, expected] with f32 operands; expected per IEEE 754 / torch semantics. */
const F32_SPECIAL: [BinaryOp, number, number, number][] = [
  ['add', INF, -INF, NaN_], ['add', INF, 1, INF], ['add', NaN_, 1, NaN_], ['add', 3.4028234663852886e38, 3.4028234663852886e38, INF], ['add', 1, -1, 0],
  ['sub', INF, INF, NaN_], ['sub', -INF, 1, -INF],
  ['mul', 0, INF, NaN_], ['mul', -2, INF, -INF], ['mul', NaN_, 0, NaN_], ['mul', 1e30, 1e30, INF],
  ['div', 1, 0, INF], ['div', -1, 0, -INF], ['div', 1, -0, -INF], ['div', 0, 0, NaN_], ['div', INF, INF, NaN_], ['div', 1, INF, 0], ['div', NaN_, 2, NaN_],
  ['pow', 0, 0, 1], ['pow', 2, 0, 1], ['pow', NaN_, 0, 1], ['pow', -2, 3, -8], ['pow', -2, 2, 4], ['pow', -2, 0.5, NaN_], ['pow', 0, -1, INF], ['pow', 2, -1, 0.5], ['pow', 4, 0.5, 2], ['pow', 10, 40, INF], ['pow', 2, NaN_, NaN_],
  ['maximum', NaN_, 1, NaN_], ['maximum', 1, NaN_, NaN_], ['maximum', -INF, 3, 3], ['maximum', INF, 3, INF],
  ['minimum', NaN_, 1, NaN_], ['minimum', 1, NaN_, NaN_], ['minimum', -INF, 3, -INF],
  ['mod', 5, 3, 2], ['mod', -5, 3, 1], ['mod', 5, -3, -1], ['mod', -5, -3, -2], ['mod', 5.5, 2, 1.5], ['mod', -0.5, 2, 1.5], ['mod', 1, 0, NaN_], ['mod', INF, 2, NaN_], ['mod', NaN_, 2, NaN_],
  ['eq', NaN_, NaN_, 0], ['ne', NaN_, NaN_, 1], ['lt', NaN_, 1, 0], ['le', NaN_, 1, 0], ['gt', NaN_, 1, 0], ['ge', 1, NaN_, 0], ['eq', 0, -0, 1], ['lt', -INF, INF, 1], ['ge', INF, INF, 1],
  ['and', NaN_, 1, 1], ['or', 0, NaN_, 1], ['and', -0, 1, 0], ['or', 0, 0, 0],
];

const cases: CaseDef[] = [
  ...BINARY_OPS.map(opCase),
  {
    name: 'IEEE special values in f32: inf - inf, 0 * inf, x / 0, 0 / 0, pow edge cases, NaN propagation through maximum/minimum, comparisons with NaN, floored mod',
    async run(c) {
      for (const [op, a, b, want] of F32_SPECIAL) {
        const ta = c.tensor([a], [1], 'f32');
        const tb = c.tensor([b], [1], 'f32');
        const y = c.run(() => BINARY_FN[op](ta, tb));
        const { result } = expectedBinary(op, 'f32', 'f32');
        const r = await readChecked(c, y, `${op}(${a}, ${b})`, result, [1]);
        const bound = op === 'pow' ? c.tol.transcendental * ulp32(want) : Number.isFinite(want) ? c.tol.f32 * ulp32(want) : 0;
        expectNear(`${op}(${a}, ${b})`, result, r.values, [want], bound);
      }
    },
  },
  {
    name: 'signed zeros where IEEE 754 defines them: neg, abs, floor, ceil, round, sqrt, mul, add, sub, div',
    async run(c) {
      const x = c.tensor([0, -0, -0.4, -0.5, 0.3], [5], 'f32');
      for (const [label, f, want] of [
        ['neg', () => core.neg(x), [-0, 0, 0.4, 0.5, -0.3]],
        ['abs', () => core.abs(x), [0, 0, 0.4, 0.5, 0.3]],
        ['floor', () => core.floor(x), [0, -0, -1, -1, 0]],
        ['ceil', () => core.ceil(x), [0, -0, -0, -0, 1]],
        ['round', () => core.round(x), [0, -0, -0, -0, 0]],
        ['sqrt', () => core.sqrt(core.minimum(x, 0.3)), [0, -0, NaN, NaN, Math.sqrt(Math.fround(0.3))]],
        ['mul by -1', () => core.mul(x, -1), [-0, 0, 0.4, 0.5, -0.3]],
        ['add -0', () => core.add(x, c.tensor([-0], [1])), [0, -0, -0.4, -0.5, 0.3]],
        ['sub itself', () => core.sub(x, x), [0, 0, 0, 0, 0]],
        ['div by -inf', () => core.div(core.abs(x), -Infinity), [-0, -0, -0, -0, -0]],
      ] as [string, () => Tensor, number[]][]) {
        const y = c.run(f);
        const r = await readChecked(c, y, label, 'f32', [5]);
        const exp = want.map((v) => (Number.isNaN(v) ? NaN : Math.fround(v)));
        const bad = exp.findIndex((e, i) => !(Object.is(r.values[i], e) || (Number.isNaN(e) && Number.isNaN(r.values[i])) || (e !== 0 && Math.abs(r.values[i] - e) <= c.tol.f32 * ulp32(e))));
        assert(bad < 0, () => `${label}: element ${bad} is ${Object.is(r.values[bad], -0) ? '-0' : r.values[bad]}, expected ${Object.is(exp[bad], -0) ? '-0' : exp[bad]}`);
      }
    },
  },
  {
    name: 'i32 arithmetic wraps like int32 (add, sub, mul, neg via sub) and mod is floored for every sign combination',
    async run(c) {
      const a = [2147483647, -2147483648, 65536, -7, 7, -7, 7, 123456789, 0, -2147483648];
      const b = [1, -1, 65536, 3, -3, -3, 3, 1000, 5, 2147483647];
      const ta = c.tensor(a, [a.length], 'i32');
      const tb = c.tensor(b, [b.length], 'i32');
      for (const op of ['add', 'sub', 'mul', 'mod', 'maximum', 'minimum'] as const) {
        const y = c.run(() => BINARY_FN[op](ta, tb));
        const r = await readChecked(c, y, `${op} i32`, 'i32', [a.length]);
        expectNear(`${op}(i32, i32)`, 'i32', r.values, a.map((x, i) => binary64(op, x, b[i], 'i32')), 0, describeAt([a.length], { a, b }));
      }
    },
  },
  {
    name: 'number operands on either side: int and float numbers with f32, i32, u8 and bool tensors (result dtypes and values)',
    async run(c) {
      const cases: [DType, number, boolean, DType][] = [
        // tensor dtype, number, number on the left, expected add() dtype
        ['f32', 2, false, 'f32'],
        ['f32', 0.1, true, 'f32'],
        ['i32', 3, false, 'i32'],
        ['i32', 3, true, 'i32'],
        ['i32', 2.5, false, 'f32'],
        ['u8', 3, false, 'i32'],
        ['bool', 1, true, 'i32'],
        ['e4m3', 2, false, 'f32'],
        // a number is weak next to a float tensor: f16/bf16 keep their dtype (PyTorch semantics)
        ['f16', 0.1, false, 'f16'],
        ['bf16', 3, true, 'bf16'],
        ['f16', -2.5, true, 'f16'],
      ];
      for (const [dtype, num, left, want] of cases) {
        const x = c.random([2, 3], dtype);
        const y = c.run(() => (left ? core.add(num, x.t) : core.add(x.t, num)));
        const r = await readChecked(c, y, `add(${left ? `${num}, ${dtype}` : `${dtype}, ${num}`})`, want, [2, 3]);
        const compute: Compute = want === 'i32' ? 'i32' : 'f32';
        const numC = compute === 'f32' ? Math.fround(num) : num;
        const exact = Array.from(x.values, (v) => binary64('add', toCompute(v, dtype, compute), numC, compute));
        expectNear(`add with number ${num} (${dtype})`, want, r.values, exact, exact.map((e) => (compute === 'f32' ? c.tol.f32 * ulp32(e) : 0)), describeAt([2, 3], { x: x.values }));
      }
      // comparisons with numbers give bool; sub/div with the number on the left
      const x = c.tensor([-1, 0, 2.5, 3], [4], 'f32');
      const lt = c.run(() => core.less(x, 2.5));
      expectNear('less(x, 2.5)', 'bool', (await readChecked(c, lt, 'less', 'bool', [4])).values, [1, 1, 0, 0], 0);
      const sub = c.run(() => core.sub(1, x));
      expectNear('sub(1, x)', 'f32', (await readChecked(c, sub, 'sub(1, x)', 'f32', [4])).values, [2, 1, -1.5, -2], 0);
      const div = c.run(() => core.div(3, c.tensor([2, 4], [2], 'i32')));
      expectNear('div(3, i32)', 'f32', (await readChecked(c, div, 'div(3, i32)', 'f32', [2])).values, [1.5, 0.75], 0);
    },
  },
  {
    name: 'clamp(x, lo, hi) for f32, i32 and bf16 (keeps bf16), NaN stays NaN',
    async run(c) {
      const xs = [-5, -1.5, 0, 0.25, 1, 7, NaN, -Infinity, Infinity];
      const x = c.tensor(xs, [xs.length], 'f32');
      const y = c.run(() => core.clamp(x, -1, 2));
      const r = await readChecked(c, y, 'clamp f32', 'f32', [xs.length]);
      expectNear('clamp(f32, -1, 2)', 'f32', r.values, xs.map((v) => (Number.isNaN(v) ? NaN : Math.min(2, Math.max(-1, v)))), 0, describeAt([xs.length], { x: xs }));
      const xi = c.tensor([-7, -1, 0, 3, 9], [5], 'i32');
      const yi = c.run(() => core.clamp(xi, -2, 4));
      const ri = await readChecked(c, yi, 'clamp i32', 'i32', [5]);
      expectNear('clamp(i32, -2, 4)', 'i32', ri.values, [-2, -1, 0, 3, 4], 0);
      const xb = c.tensor([-3, 0.5, 2.5, 9], [4], 'bf16');
      const yb = c.run(() => core.clamp(xb, -1, 2));
      expectNear('clamp(bf16, -1, 2)', 'bf16', (await readChecked(c, yb, 'clamp bf16', 'bf16', [4])).values, [-1, 0.5, 2, 2], 0);
    },
  },
  {
    name: 'Backend.binary: every op on [129, 131] x [131] f32 and [257, 256] x [257, 1] bool outputs, poisoned',
    async run(c) {
      for (const op of BINARY_OPS) {
        const logical = isLogical(op);
        const inDtype: Compute = logical ? 'bool' : 'f32';
        const outDtype: Compute = logical || isComparison(op) ? 'bool' : 'f32';
        const [sa, sb] = outDtype === 'bool' ? [[257, 256], [257, 1]] : [[129, 131], [131]];
        const a = c.random(sa, inDtype, inDtype === 'bool' ? undefined : (r) => gen(op, 0, 'f32', r));
        const b = c.random(sb, inDtype, inDtype === 'bool' ? undefined : (r) => gen(op, 1, 'f32', r));
        const outShape = broadcast(sa, sb);
        const res = await c.prim(`binary ${op}`, outDtype, outShape, () => c.backend.binary(op, a.t, b.t, outShape, outDtype), [a.t, b.t]);
        const ref = mapBroadcast([sa, sb], [a.values, b.values], (x, z) => binary64(op, x, z, inDtype));
        expectNear(`Backend.binary(${op})`, outDtype, res.values, ref.values, ref.values.map((e) => binaryBound(op, e, inDtype, c.tol)), describeAt(outShape));
      }
    },
  },
  {
    name: 'Backend.binary: i32 add/sub/mul/maximum/minimum/mod and comparisons on [129, 131] x [129, 1], poisoned',
    async run(c) {
      const sa = [129, 131];
      const sb = [129, 1];
      for (const op of ['add', 'sub', 'mul', 'maximum', 'minimum', 'mod', 'eq', 'lt', 'ge'] as const) {
        const a = c.random(sa, 'i32', (r) => r.int(-100000, 100001));
        const b = c.random(sb, 'i32', (r) => (op === 'mod' ? (r.bool() ? 1 : -1) * r.int(1, 1000) : r.int(-100000, 100001)));
        const outDtype: Compute = isComparison(op) ? 'bool' : 'i32';
        const outShape = broadcast(sa, sb);
        const res = await c.prim(`binary ${op} i32`, outDtype, outShape, () => c.backend.binary(op, a.t, b.t, outShape, outDtype), [a.t, b.t]);
        const ref = mapBroadcast([sa, sb], [a.values, b.values], (x, z) => binary64(op, x, z, 'i32'));
        expectNear(`Backend.binary(${op}) i32`, outDtype, res.values, ref.values, 0, describeAt(outShape));
      }
    },
  },
  {
    name: 'size-0 broadcasts produce empty results of the broadcast shape',
    async run(c) {
      for (const [sa, sb] of [
        [[0], [1]],
        [[3, 0], [3, 1]],
        [[0, 4], [4]],
        [[2, 0, 5], []],
      ] as [Shape, Shape][]) {
        const a = c.random(sa, 'f32');
        const b = c.random(sb, 'f32');
        const y = c.run(() => core.add(a.t, b.t));
        const r = await readChecked(c, y, `add([${sa.join(', ')}], [${sb.join(', ')}])`, 'f32', broadcast(sa, sb));
        assert(r.values.length === size(broadcast(sa, sb)), 'empty result');
      }
    },
  },
];

export const binaryArea: Area = { name: 'binary-broadcast', cases };
