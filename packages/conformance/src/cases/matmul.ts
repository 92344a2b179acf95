import type { DType } from '@kiln/core';
import { linear, matmul } from '@kiln/core';
import { describeAt, expectNear } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { expectedMatmul } from '../reference/dtypes.js';
import { EPS32, ulp32 } from '../reference/float.js';
import { toCompute } from '../reference/math.js';
import { matmulRef, type Shape } from '../reference/nd.js';
import { readChecked } from './util.js';

interface MM {
  a: Shape;
  b: Shape;
  ta?: boolean;
  tb?: boolean;
}

/** Stored shapes for logical [.., M, K] x [.., K, N]. */
function mm(M: number, K: number, N: number, ta = false, tb = false, batchA: number[] = [], batchB: number[] = []): MM {
  return { a: [...batchA, ...(ta ? [K, M] : [M, K])], b: [...batchB, ...(tb ? [N, K] : [K, N])], ta, tb };
}

async function checkMatmul(c: Ctx, da: DType, db: DType, s: MM, gen?: (r: import('../prng.js').Rng) => number): Promise<void> {
  const a = c.random(s.a, da, gen);
  const b = c.random(s.b, db, gen);
  const { compute, result } = expectedMatmul(da, db);
  const av = a.values.map((v) => toCompute(v, da, compute));
  const bv = b.values.map((v) => toCompute(v, db, compute));
  const ref = matmulRef(av, s.a, bv, s.b, !!s.ta, !!s.tb, compute === 'i32');
  const label = `matmul(${da} [${s.a.join(', ')}]${s.ta ? 'ᵀ' : ''}, ${db} [${s.b.join(', ')}]${s.tb ? 'ᵀ' : ''})`;
  const y = c.run(() => matmul(a.t, b.t, { transposeA: s.ta, transposeB: s.tb }));
  const r = await readChecked(c, y, label, result, ref.shape);
  const bound = compute === 'i32' ? 0 : ref.absSum.map((abs) => c.tol.matmul * EPS32 * abs);
  expectNear(label, result, r.values, ref.values, bound, describeAt(ref.shape));
}

const cases: CaseDef[] = [
  {
    name: 'f32 shapes: odd sizes, primes, vectors, K = 1, 127, 129, 257, 300 (not a multiple of 128): |err| <= c·eps·Σ|a||b| per element',
    async run(c) {
      for (const [M, K, N] of [
        [1, 1, 1],
        [3, 5, 7],
        [1, 129, 1],
        [13, 127, 11],
        [17, 129, 19],
        [5, 257, 3],
        [31, 300, 29],
        [64, 128, 64],
        [2, 1, 37],
        [37, 2, 1],
      ]) {
        await checkMatmul(c, 'f32', 'f32', mm(M, K, N));
      }
    },
  },
  {
    name: 'transposeA / transposeB in all four combinations, odd shapes',
    async run(c) {
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ]) {
        for (const [M, K, N] of [
          [7, 13, 5],
          [33, 129, 17],
          [1, 9, 4],
        ]) {
          await checkMatmul(c, 'f32', 'f32', mm(M, K, N, ta, tb));
        }
      }
    },
  },
  {
    name: 'batched matmul broadcasts batch dims: [2,1,M,K] x [3,K,N], [M,K] x [4,K,N], [5,M,K] x [K,N], rank 5',
    async run(c) {
      await checkMatmul(c, 'f32', 'f32', mm(3, 7, 5, false, false, [2, 1], [3]));
      await checkMatmul(c, 'f32', 'f32', mm(4, 9, 6, false, false, [], [4]));
      await checkMatmul(c, 'f32', 'f32', mm(5, 11, 3, false, true, [5], []));
      await checkMatmul(c, 'f32', 'f32', mm(2, 3, 4, true, false, [2, 1, 3], [1, 2, 1]));
      await checkMatmul(c, 'f32', 'f32', mm(6, 130, 2, true, true, [3], [3]));
    },
  },
  {
    name: 'empty operands: M = 0, N = 0 give empty results; K = 0 gives zeros; batch size 0',
    async run(c) {
      await checkMatmul(c, 'f32', 'f32', mm(0, 5, 3));
      await checkMatmul(c, 'f32', 'f32', mm(4, 5, 0));
      await checkMatmul(c, 'f32', 'f32', mm(4, 0, 3));
      await checkMatmul(c, 'i32', 'i32', mm(2, 0, 2));
      await checkMatmul(c, 'f32', 'f32', mm(3, 0, 2, true, true));
      await checkMatmul(c, 'f32', 'f32', mm(2, 3, 2, false, false, [0], [1]));
    },
  },
  {
    name: 'dtypes: f16/bf16 results rounded from f32, FP8 operands give f32, i32 exact and wrapping, u8 gives i32, mixed int/float promotes',
    async run(c) {
      const shape = mm(9, 33, 7);
      for (const [da, db] of [
        ['f16', 'f16'],
        ['bf16', 'bf16'],
        ['e4m3', 'e4m3'],
        ['e5m2', 'e4m3'],
        ['f16', 'f32'],
        ['bf16', 'f16'],
        ['i32', 'i32'],
        ['u8', 'u8'],
        ['u8', 'i32'],
        ['i32', 'f32'],
        ['i32', 'bf16'],
        ['e4m3', 'i32'],
        ['f32', 'u8'],
      ] as [DType, DType][]) {
        await checkMatmul(c, da, db, shape);
        await checkMatmul(c, da, db, mm(5, 4, 3, true, true, [2], []));
      }
      // i32 products and sums wrap like int32
      await checkMatmul(c, 'i32', 'i32', mm(3, 4, 2), (r) => r.pick([2147483647, -2147483648, 65536, 46341, -3]));
    },
  },
  {
    name: 'NaN in A poisons exactly its output row; inf times a non-zero gives inf',
    async run(c) {
      const a = c.tensor([1, 2, NaN, 4, 5, 6], [3, 2], 'f32');
      const b = c.tensor([1, 0, -1, 2, 3, 1], [2, 3], 'f32');
      const y = c.run(() => matmul(a, b));
      const r = await readChecked(c, y, 'matmul with NaN', 'f32', [3, 3]);
      expectNear('NaN row', 'f32', r.values, [5, 6, 1, NaN, NaN, NaN, 17, 18, 1], 0, describeAt([3, 3]));
      const ai = c.tensor([Infinity, 1], [1, 2], 'f32');
      const bi = c.tensor([2, 1], [2, 1], 'f32');
      const yi = c.run(() => matmul(ai, bi));
      expectNear('inf', 'f32', (await readChecked(c, yi, 'matmul inf', 'f32', [1, 1])).values, [Infinity], 0);
    },
  },
  {
    name: 'Backend.matmul: [129, 257] x [257, 131] and transposed [256, 384]ᵀ x [320, 384]ᵀ f32, i32 [129, 67] x [67, 131], poisoned',
    async run(c) {
      for (const [M, K, N, ta, tb, dtype] of [
        [129, 257, 131, false, false, 'f32'],
        [256, 384, 320, true, true, 'f32'],
        [129, 67, 131, false, true, 'i32'],
      ] as [number, number, number, boolean, boolean, 'f32' | 'i32'][]) {
        const s = mm(M, K, N, ta, tb);
        const a = c.random(s.a, dtype);
        const b = c.random(s.b, dtype);
        const ref = matmulRef(a.values, s.a, b.values, s.b, ta, tb, dtype === 'i32');
        const r = await c.prim(`matmul ${dtype}`, dtype, ref.shape, () => c.backend.matmul(a.t, b.t, { transposeA: ta, transposeB: tb }, ref.shape), [a.t, b.t]);
        const bound = dtype === 'i32' ? 0 : ref.absSum.map((abs) => c.tol.matmul * EPS32 * abs);
        expectNear(`Backend.matmul ${dtype} [${M}, ${K}] x [${K}, ${N}]`, dtype, r.values, ref.values, bound, describeAt(ref.shape));
      }
    },
  },
  {
    name: 'linear(x, W, b) = x Wᵀ + b with W stored [out, in], with and without bias, leading dims',
    async run(c) {
      for (const [lead, inF, outF, bias] of [
        [[5], 7, 3, true],
        [[2, 3], 129, 17, true],
        [[4], 6, 5, false],
      ] as [number[], number, number, boolean][]) {
        const x = c.random([...lead, inF], 'f32');
        const w = c.random([outF, inF], 'f32');
        const b = c.random([outF], 'f32');
        const y = c.run(() => linear(x.t, w.t, bias ? b.t : undefined));
        const ref = matmulRef(x.values, [...lead, inF], w.values, [outF, inF], false, true);
        const exact = ref.values.map((v, i) => v + (bias ? b.values[i % outF] : 0));
        const bound = ref.absSum.map((abs, i) => c.tol.matmul * EPS32 * abs + c.tol.f32 * ulp32(exact[i]) + (bias ? EPS32 * Math.abs(b.values[i % outF]) : 0));
        const r = await readChecked(c, y, 'linear', 'f32', [...lead, outF]);
        expectNear(`linear [${lead.join(', ')}, ${inF}] -> ${outF}${bias ? ' + b' : ''}`, 'f32', r.values, exact, bound, describeAt([...lead, outF]));
      }
    },
  },
];

export const matmulArea: Area = { name: 'matmul', cases };
