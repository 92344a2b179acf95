import type { Backend, DType, FusedKernels, Tensor } from '@kiln/core';
import { attention, crossEntropy, gelu, logSoftmax, logSumExp, mse, rmsNorm, rotary, rotaryTables, silu, softmax, swiglu, topk, type AttentionOptions } from '@kiln/core';
import { assert, describeAt, expectExact, expectNear } from '../check.js';
import { backendView, type Area, type CaseDef, type Ctx } from '../harness.js';
import { attentionRef, geluRef, logSoftmaxRef, rmsNormRef, rotaryRef, siluRef, softmaxRef, swigluRef, topkRef, type Ref } from '../reference/composed.js';
import { EPS32, ulp32 } from '../reference/float.js';
import { size, type Shape } from '../reference/nd.js';
import { readChecked } from './util.js';

/**
 * The backend as it is (fused kernels used where it has them) and, when it has any, a view of
 * it without `fused`, so core's composition from primitives is checked on the same backend.
 */
function paths(c: Ctx): { label: string; backend: Backend }[] {
  const fused = c.backend.fused ?? {};
  const names = (Object.keys(fused) as (keyof FusedKernels)[]).filter((k) => typeof fused[k] === 'function');
  const out = [{ label: names.length ? `fused (${names.join(', ')})` : 'composed', backend: c.backend }];
  if (names.length) out.push({ label: 'composed (fused kernels hidden)', backend: backendView(c.backend, { fused: undefined }) });
  return out;
}

const FLOATS_IN: DType[] = ['f32', 'f16', 'bf16', 'e4m3'];

/** Inputs of a softmax-like row op: normal values around an offset (large ones where the dtype holds them). */
function rowGen(c: Ctx, scale: number, dtype: DType = 'f32') {
  const offset = dtype === 'e4m3' || dtype === 'e5m2' ? 0 : c.rng.pick([0, 50, -1000]);
  return () => offset + c.rng.normal() * scale;
}

async function checkRef(c: Ctx, t: Tensor, label: string, dtype: DType, shape: Shape, ref: Ref): Promise<void> {
  const r = await readChecked(c, t, label, dtype, shape);
  expectNear(label, dtype, r.values, ref.exact, ref.bound, describeAt(shape));
}

/** An attention setup: q, k, v shapes, the input dtype, options, and the spread of q and k. */
type AttentionSetup = [label: string, q: Shape, k: Shape, v: Shape, dtype: DType, options: AttentionOptions, spread: number];

const ATTENTION_SETUPS: AttentionSetup[] = [
  ['causal, Tq = S', [2, 3, 6, 8], [2, 3, 6, 8], [2, 3, 6, 8], 'f32', { causal: true }, 1],
  ['causal, offset S - Tq (queries after a cache)', [2, 2, 3, 8], [2, 2, 7, 8], [2, 2, 7, 8], 'f32', { causalOffset: 4 }, 1],
  ['no mask, peaked scores (scale 3)', [3, 5, 16], [3, 9, 16], [3, 9, 16], 'f32', { scale: 3 }, 1],
  ['no mask, dk != dv', [2, 4, 12], [2, 6, 12], [2, 6, 5], 'f32', {}, 1.5],
  ['k/v broadcast over heads, offset 2', [2, 3, 4, 8], [2, 1, 6, 8], [2, 1, 6, 4], 'f32', { causalOffset: 2 }, 1],
  ['k/v of lower rank than q', [2, 3, 4, 8], [5, 8], [5, 3], 'f32', { causal: true, causalOffset: 1 }, 1],
  ['bf16 inputs, causal', [1, 2, 5, 16], [1, 2, 5, 16], [1, 2, 5, 16], 'bf16', { causal: true }, 1],
  ['long rows (S = 129, dk = 64), offset 96', [1, 2, 33, 64], [1, 2, 129, 64], [1, 2, 129, 32], 'f32', { causalOffset: 96 }, 0.5],
  ['offset past the last key (every key visible)', [1, 4, 6], [1, 3, 6], [1, 3, 6], 'f32', { causalOffset: 5 }, 1],
  ['no query rows', [2, 0, 4], [2, 3, 4], [2, 3, 2], 'f32', { causal: true }, 1],
];

/** The kernel's causalOffset for attention options (null: no mask). */
function offsetOf(o: AttentionOptions): number | null {
  return o.causalOffset ?? (o.causal ? 0 : null);
}

const SOFTMAX_SHAPES: [Shape, number][] = [
  [[7], -1],
  [[3, 129], -1],
  [[2, 5, 4], 1],
  [[4, 3, 5], 0],
  [[5, 1], -1],
  [[0, 7], -1],
  [[1, 257], 1],
];

const cases: CaseDef[] = [
  {
    name: 'softmax along last, middle and first axes; f32/f16/bf16/e4m3 inputs give f32; rows of 1, large offsets, -inf entries; fused and composed paths',
    async run(c) {
      for (const p of paths(c)) {
        for (const dtype of FLOATS_IN) {
          for (const [shape, axis] of SOFTMAX_SHAPES) {
            const x = c.random(shape, dtype, rowGen(c, 3, dtype), p.backend);
            const ax = axis < 0 ? axis + shape.length : axis;
            const y = c.run(() => softmax(x.t, axis));
            await checkRef(c, y, `softmax(${dtype} [${shape.join(', ')}], ${axis}) [${p.label}]`, 'f32', shape, softmaxRef(x.values, shape, ax, c.tol));
          }
        }
        const withInf = c.tensor([0, -Infinity, 1, -Infinity, 2, 3], [2, 3], 'f32', p.backend);
        const y = c.run(() => softmax(withInf));
        await checkRef(c, y, `softmax with -inf [${p.label}]`, 'f32', [2, 3], softmaxRef([0, -Infinity, 1, -Infinity, 2, 3], [2, 3], 1, c.tol));
      }
    },
  },
  {
    name: 'logSoftmax and logSumExp (keepDims on/off) along each axis, float input dtypes, fused and composed paths',
    async run(c) {
      for (const p of paths(c)) {
        for (const dtype of FLOATS_IN) {
          for (const [shape, axis] of SOFTMAX_SHAPES) {
            const x = c.random(shape, dtype, rowGen(c, 4, dtype), p.backend);
            const ax = axis < 0 ? axis + shape.length : axis;
            const ref = logSoftmaxRef(x.values, shape, ax, c.tol);
            const y = c.run(() => logSoftmax(x.t, axis));
            await checkRef(c, y, `logSoftmax(${dtype} [${shape.join(', ')}], ${axis}) [${p.label}]`, 'f32', shape, ref);
            const reduced = shape.filter((_, d) => d !== ax);
            const kept = shape.map((d, i) => (i === ax ? 1 : d));
            for (const keep of [false, true]) {
              const l = c.run(() => logSumExp(x.t, axis, keep));
              const r = await readChecked(c, l, `logSumExp keepDims ${keep}`, 'f32', keep ? kept : reduced);
              expectNear(`logSumExp(${dtype} [${shape.join(', ')}], ${axis}, ${keep}) [${p.label}]`, 'f32', r.values, ref.lse, ref.lseBound, describeAt(keep ? kept : reduced));
            }
          }
        }
      }
    },
  },
  {
    name: 'rmsNorm over the last axis with weights, several eps, odd widths, f16/bf16 inputs (f32 result), fused and composed paths',
    async run(c) {
      for (const p of paths(c)) {
        for (const [shape, eps, dtype, wdtype] of [
          [[4, 7], 1e-6, 'f32', 'f32'],
          [[2, 3, 129], 1e-5, 'f32', 'f32'],
          [[1, 257], 1e-6, 'bf16', 'f32'],
          [[5, 16], 0.1, 'f16', 'bf16'],
          [[3, 1], 1e-6, 'f32', 'f32'],
          [[0, 9], 1e-6, 'f32', 'f32'],
          [[6], 1e-6, 'e4m3', 'f32'],
        ] as [Shape, number, DType, DType][]) {
          const d = shape[shape.length - 1];
          const x = c.random(shape, dtype, (r) => r.normal() * 3, p.backend);
          const w = c.random([d], wdtype, (r) => r.uniform(0.5, 1.5), p.backend);
          const y = c.run(() => rmsNorm(x.t, w.t, eps));
          await checkRef(c, y, `rmsNorm(${dtype} [${shape.join(', ')}], ${wdtype} w, ${eps}) [${p.label}]`, 'f32', shape, rmsNormRef(x.values, shape, w.values, eps, c.tol));
        }
        // a row of zeros normalises to zeros (no NaN), tiny rows are dominated by eps
        const z = c.tensor([0, 0, 0, 1e-4, -1e-4, 0], [2, 3], 'f32', p.backend);
        const w = c.tensor([1, 2, 3], [3], 'f32', p.backend);
        const y = c.run(() => rmsNorm(z, w, 1e-6));
        await checkRef(c, y, `rmsNorm zero row [${p.label}]`, 'f32', [2, 3], rmsNormRef([0, 0, 0, Math.fround(1e-4), Math.fround(-1e-4), 0], [2, 3], [1, 2, 3], 1e-6, c.tol));
      }
    },
  },
  {
    name: 'silu and gelu (exact erf form) on f32 over [-12, 12]; f16/bf16 inputs keep their dtype',
    async run(c) {
      for (const p of paths(c)) {
        const x = c.random([7, 131], 'f32', (r) => r.uniform(-12, 12), p.backend);
        await checkRef(c, c.run(() => silu(x.t)), `silu f32 [${p.label}]`, 'f32', [7, 131], siluRef(x.values, c.tol));
        await checkRef(c, c.run(() => gelu(x.t)), `gelu f32 [${p.label}]`, 'f32', [7, 131], geluRef(x.values, c.tol));
        for (const dtype of ['f16', 'bf16'] as const) {
          const h = c.random([5, 33], dtype, (r) => r.uniform(-6, 6), p.backend);
          // composed in the input's dtype: each step rounds to it; allow a few units of its rounding
          const u = dtype === 'f16' ? 2 ** -11 : 2 ** -8;
          for (const [name, f, ref] of [
            ['silu', silu, siluRef(h.values, c.tol)],
            ['gelu', gelu, geluRef(h.values, c.tol)],
          ] as const) {
            const bound = ref.exact.map((y, i) => 6 * u * (Math.abs(y) + Math.abs(h.values[i])));
            const t = c.run(() => f(h.t));
            const r = await readChecked(c, t, `${name}(${dtype})`, dtype, [5, 33]);
            expectNear(`${name}(${dtype}) [${p.label}]`, dtype, r.values, ref.exact, bound, describeAt([5, 33], { x: h.values }));
          }
        }
      }
    },
  },
  {
    name: 'swiglu(gate, up) = silu(gate) * up, f32 result for f32/f16/bf16 inputs, fused and composed paths',
    async run(c) {
      for (const p of paths(c)) {
        for (const [shape, dg, du] of [
          [[3, 129], 'f32', 'f32'],
          [[2, 2, 17], 'bf16', 'f32'],
          [[9], 'f16', 'f16'],
          [[0, 4], 'f32', 'f32'],
        ] as [Shape, DType, DType][]) {
          const g = c.random(shape, dg, (r) => r.uniform(-10, 10), p.backend);
          const u = c.random(shape, du, (r) => r.normal() * 2, p.backend);
          const y = c.run(() => swiglu(g.t, u.t));
          await checkRef(c, y, `swiglu(${dg}, ${du} [${shape.join(', ')}]) [${p.label}]`, 'f32', shape, swigluRef(g.values, u.values, c.tol));
        }
      }
    },
  },
  {
    name: 'rotary in both layouts (interleaved pairs, half split) over [B, H, T, d] with [T, d/2] tables, f32 and bf16 inputs',
    async run(c) {
      for (const layout of ['interleaved', 'half'] as const) {
        for (const [shape, dtype] of [
          [[2, 3, 5, 8], 'f32'],
          [[7, 64], 'f32'],
          [[1, 4, 2], 'bf16'],
          [[2, 0, 6], 'f32'],
        ] as [Shape, DType][]) {
          const d = shape[shape.length - 1];
          const T = shape[shape.length - 2];
          const invFreq = Array.from({ length: d / 2 }, (_, i) => 10000 ** (-(2 * i) / d));
          const tables = rotaryTables(invFreq, T + 3);
          const cosV = Float64Array.from(tables.cos.slice(0, T * (d / 2)), Math.fround);
          const sinV = Float64Array.from(tables.sin.slice(0, T * (d / 2)), Math.fround);
          const cos = c.tensor(cosV, [T, d / 2], 'f32');
          const sin = c.tensor(sinV, [T, d / 2], 'f32');
          const x = c.random(shape, dtype, (r) => r.normal() * 2);
          const y = c.run(() => rotary(x.t, cos, sin, { layout }));
          await checkRef(c, y, `rotary ${layout} (${dtype} [${shape.join(', ')}])`, 'f32', shape, rotaryRef(x.values, shape, cosV, sinV, layout, c.tol));
        }
      }
      // the default layout is interleaved
      const x = c.tensor([1, 2, 3, 4], [1, 4], 'f32');
      const cs = c.tensor([0, 1], [1, 2], 'f32');
      const sn = c.tensor([1, 0], [1, 2], 'f32');
      const y = c.run(() => rotary(x, cs, sn));
      expectExact('rotary default layout = interleaved', (await c.read(y)).values, [-2, 1, 3, 4]);
    },
  },
  {
    name: 'attention: causal (offset 0 and S - Tq), no mask, dk != dv, k/v broadcast over heads, bf16 inputs, S = 129; float64 reference; fused and composed paths',
    async run(c) {
      for (const p of paths(c)) {
        for (const [label, qs, ks, vs, dtype, options, spread] of ATTENTION_SETUPS) {
          const q = c.random(qs, dtype, (r) => r.normal() * spread, p.backend);
          const k = c.random(ks, dtype, (r) => r.normal() * spread, p.backend);
          const v = c.random(vs, dtype, (r) => r.normal() * 2, p.backend);
          const scale = options.scale ?? 1 / Math.sqrt(qs[qs.length - 1]);
          const ref = attentionRef(q.values, qs, k.values, ks, v.values, vs, scale, offsetOf(options), c.tol);
          const y = c.run(() => attention(q.t, k.t, v.t, options));
          await checkRef(c, y, `attention ${label} (${dtype} q [${qs.join(', ')}], k [${ks.join(', ')}], v [${vs.join(', ')}]) [${p.label}]`, 'f32', ref.outShape, ref);
        }
      }
    },
  },
  {
    name: 'Backend.fused.attention (when present) matches the float64 reference directly: out and logSumExp, poisoned outputs',
    async run(c) {
      const kernel = c.backend.fused?.attention;
      if (!kernel) return; // fused kernels are optional
      for (const [label, qs, ks0, vs0, dtype, options, spread] of ATTENTION_SETUPS) {
        if (dtype !== 'f32') continue; // the kernel takes f32 (core casts first)
        // the kernel's contract: k and v have q's rank
        const pad = (s: Shape): Shape => [...new Array<number>(qs.length - s.length).fill(1), ...s];
        const ks = pad(ks0);
        const vs = pad(vs0);
        const q = c.random(qs, 'f32', (r) => r.normal() * spread);
        const k = c.random(ks, 'f32', (r) => r.normal() * spread);
        const v = c.random(vs, 'f32', (r) => r.normal() * 2);
        const scale = options.scale ?? 1 / Math.sqrt(qs[qs.length - 1]);
        const offset = offsetOf(options);
        const ref = attentionRef(q.values, qs, k.values, ks, v.values, vs, scale, offset, c.tol);
        const lseShape = qs.slice(0, -1);
        c.poison('f32', size(ref.outShape));
        c.poison('f32', size(lseShape));
        const res = kernel.call(c.backend.fused, q.t, k.t, v.t, { scale, causalOffset: offset });
        try {
          for (const id of [res.out, res.logSumExp]) {
            assert(id !== null && typeof id === 'object', `fused.attention ${label}: returned ${String(id)}, expected DataId objects`);
            assert(![q.t.dataId, k.t.dataId, v.t.dataId].includes(id), `fused.attention ${label}: returned an input's storage`);
          }
          assert(res.out !== res.logSumExp, `fused.attention ${label}: out and logSumExp share storage`);
          const out = await c.read({ dataId: res.out, shape: ref.outShape, dtype: 'f32' }, `fused.attention ${label} out`);
          expectNear(`fused.attention ${label} out [${qs.join(', ')}]`, 'f32', out.values, ref.exact, ref.bound, describeAt(ref.outShape));
          const lse = await c.read({ dataId: res.logSumExp, shape: lseShape, dtype: 'f32' }, `fused.attention ${label} logSumExp`);
          expectNear(`fused.attention ${label} logSumExp [${lseShape.join(', ')}]`, 'f32', lse.values, ref.lse, ref.lseBound, describeAt(lseShape));
        } finally {
          c.backend.release(res.out);
          c.backend.release(res.logSumExp);
        }
      }
    },
  },
  {
    name: 'topk: values descending and indices for k = 0, 1, 3, n; ties go to the lower index; f32/f16/i32 inputs; rows of leading dims',
    async run(c) {
      for (const dtype of ['f32', 'f16', 'i32'] as const) {
        for (const [shape, k] of [
          [[4, 9], 3],
          [[2, 3, 6], 1],
          [[5], 5],
          [[3, 8], 0],
          [[2, 257], 8],
        ] as [Shape, number][]) {
          // few distinct values, so ties are frequent
          const x = c.random(shape, dtype, (r) => r.int(-4, 5));
          const ref = topkRef(x.values, shape, k);
          const outShape = [...shape.slice(0, -1), k];
          const res = c.run(() => topk(x.t, k));
          const rv = await readChecked(c, res.values, `topk values (${dtype})`, 'f32', outShape);
          const ri = await readChecked(c, res.indices, `topk indices (${dtype})`, 'i32', outShape);
          expectExact(`topk(${dtype} [${shape.join(', ')}], ${k}) values`, rv.values, ref.values);
          expectExact(`topk(${dtype} [${shape.join(', ')}], ${k}) indices`, ri.values, ref.indices, describeAt(outShape));
        }
      }
    },
  },
  {
    name: 'topk with -inf entries returns each index once (torch semantics: [1, -inf, -inf] top-3 -> indices 0, 1, 2)',
    async run(c) {
      const rows = [
        [1, -Infinity, -Infinity],
        [-Infinity, 2, -Infinity],
        [-Infinity, -Infinity, -Infinity],
      ];
      const x = c.tensor(rows.flat(), [3, 3], 'f32');
      const res = c.run(() => topk(x, 3));
      const ref = topkRef(rows.flat(), [3, 3], 3);
      expectExact('topk(-inf rows, 3) values', (await c.read(res.values)).values, ref.values);
      expectExact('topk(-inf rows, 3) indices', (await c.read(res.indices)).values, ref.indices, describeAt([3, 3]));
    },
  },
  {
    name: 'crossEntropy: reductions none/sum/mean, default and custom ignoreIndex, all targets ignored (mean 0), [B, T, C] logits, f16 logits',
    async run(c) {
      for (const p of paths(c)) {
        for (const [shape, dtype, ignore] of [
          [[6, 11], 'f32', undefined],
          [[2, 3, 129], 'f32', 5],
          [[4, 7], 'f16', -1],
          [[3, 5], 'f32', undefined],
        ] as [Shape, DType, number | undefined][]) {
          const C = shape[shape.length - 1];
          const lead = shape.slice(0, -1);
          const n = size(lead);
          const logits = c.random(shape, dtype, rowGen(c, 3, dtype), p.backend);
          const ignoreIndex = ignore ?? -100;
          const allIgnored = shape[0] === 3 && shape[1] === 5;
          const tv = Array.from({ length: n }, () => (allIgnored || c.rng.bool(0.25) ? ignoreIndex : c.rng.int(0, C)));
          const targets = c.tensor(tv, lead, 'i32', p.backend);
          const ref = logSoftmaxRef(logits.values, shape, shape.length - 1, c.tol);
          const loss = new Float64Array(n);
          const bound = new Float64Array(n);
          let total = 0;
          let totalBound = 0;
          let count = 0;
          let absSum = 0;
          for (let i = 0; i < n; i++) {
            if (tv[i] === ignoreIndex) continue;
            loss[i] = -ref.exact[i * C + tv[i]];
            bound[i] = ref.bound[i * C + tv[i]];
            total += loss[i];
            totalBound += bound[i];
            absSum += Math.abs(loss[i]);
            count++;
          }
          const opts = ignore === undefined ? {} : { ignoreIndex: ignore };
          const label = `crossEntropy(${dtype} [${shape.join(', ')}], ignoreIndex ${ignoreIndex}) [${p.label}]`;
          const none = c.run(() => crossEntropy(logits.t, targets, { ...opts, reduction: 'none' }));
          const rn = await readChecked(c, none, `${label} none`, 'f32', lead);
          expectNear(`${label} reduction none`, 'f32', rn.values, loss, bound, describeAt(lead, { target: tv }));
          const sumB = totalBound + c.tol.matmul * EPS32 * absSum;
          const s = c.run(() => crossEntropy(logits.t, targets, { ...opts, reduction: 'sum' }));
          expectNear(`${label} reduction sum`, 'f32', (await readChecked(c, s, `${label} sum`, 'f32', [])).values, [total], [sumB]);
          const m = c.run(() => crossEntropy(logits.t, targets, opts));
          const mean = total / Math.max(count, 1);
          expectNear(`${label} reduction mean`, 'f32', (await readChecked(c, m, `${label} mean`, 'f32', [])).values, [mean], [sumB / Math.max(count, 1) + c.tol.f32 * ulp32(mean)]);
        }
      }
    },
  },
  {
    name: 'mse(a, b) = mean((a - b)^2) over all elements, f32 result for mixed float dtypes',
    async run(c) {
      for (const [shape, da, db] of [
        [[3, 7], 'f32', 'f32'],
        [[129], 'bf16', 'f32'],
        [[2, 2, 2], 'f16', 'e4m3'],
      ] as [Shape, DType, DType][]) {
        const a = c.random(shape, da);
        const b = c.random(shape, db);
        let s = 0;
        for (let i = 0; i < a.values.length; i++) s += (a.values[i] - b.values[i]) ** 2;
        const n = a.values.length;
        const exact = s / n;
        const y = c.run(() => mse(a.t, b.t));
        const r = await readChecked(c, y, `mse(${da}, ${db})`, 'f32', []);
        expectNear(`mse(${da}, ${db}) [${shape.join(', ')}]`, 'f32', r.values, [exact], [(c.tol.matmul + 3 * c.tol.f32) * EPS32 * exact + c.tol.f32 * ulp32(exact)]);
      }
    },
  },
  {
    name: 'Backend.fused kernels (when present) match the float64 references directly: softmax, logSoftmax, rmsNorm, swiglu on [129, 131], [5, 1], [0, 7], poisoned',
    async run(c) {
      const f = c.backend.fused;
      if (!f) return; // fused kernels are optional
      for (const shape of [[129, 131], [5, 1], [0, 7], [3, 2, 257]] as Shape[]) {
        const n = size(shape);
        const x = c.random(shape, 'f32', rowGen(c, 3));
        if (f.softmax) {
          const r = await c.prim('fused.softmax', 'f32', shape, () => f.softmax!(x.t), [x.t]);
          const ref = softmaxRef(x.values, shape, shape.length - 1, c.tol);
          expectNear(`fused.softmax [${shape.join(', ')}]`, 'f32', r.values, ref.exact, ref.bound, describeAt(shape));
        }
        if (f.logSoftmax) {
          const r = await c.prim('fused.logSoftmax', 'f32', shape, () => f.logSoftmax!(x.t), [x.t]);
          const ref = logSoftmaxRef(x.values, shape, shape.length - 1, c.tol);
          expectNear(`fused.logSoftmax [${shape.join(', ')}]`, 'f32', r.values, ref.exact, ref.bound, describeAt(shape));
        }
        if (f.rmsNorm) {
          const d = shape[shape.length - 1];
          const w = c.random([d], 'f32', (r) => r.uniform(0.5, 1.5));
          const r = await c.prim('fused.rmsNorm', 'f32', shape, () => f.rmsNorm!(x.t, w.t, 1e-5), [x.t, w.t]);
          const ref = rmsNormRef(x.values, shape, w.values, 1e-5, c.tol);
          expectNear(`fused.rmsNorm [${shape.join(', ')}]`, 'f32', r.values, ref.exact, ref.bound, describeAt(shape));
        }
        if (f.swiglu) {
          const u = c.random(shape, 'f32', (r) => r.normal());
          const g = c.random(shape, 'f32', (r) => r.uniform(-10, 10));
          const r = await c.prim('fused.swiglu', 'f32', shape, () => f.swiglu!(g.t, u.t), [g.t, u.t]);
          const ref = swigluRef(g.values, u.values, c.tol);
          expectNear(`fused.swiglu [${shape.join(', ')}]`, 'f32', r.values, ref.exact, ref.bound, describeAt(shape));
        }
        assert(n >= 0, 'shape');
      }
    },
  },
];

export const composedArea: Area = { name: 'composed', cases };
