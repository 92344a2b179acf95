/**
 * WebGPU collectives: 2 ranks = 2 WebGpuBackend instances (2 GPUDevices, in Node 2 Dawn
 * worker threads) in this process, data moved by readback and upload. Expected results are
 * computed here with plain loops (rows sliced and concatenated by hand, reductions folded in
 * rank order with Math.fround), so codes must match exactly. Skips with the reason when no
 * adapter can be created.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError,
  BackendError,
  CollectiveError,
  CollectiveTimeoutError,
  ShapeError,
  bf16BitsToF32,
  f32ToBf16Bits,
  fromStorage,
  initBackend,
  type DType,
  type StorageArray,
  type Tensor,
} from '@kiln/core';
import '@kiln/backend-cpu';
import { WebGpuBackend, WebGpuCollective, createWebGpuGroup } from '@kiln/backend-webgpu';

process.env.EGL_PLATFORM ??= 'surfaceless';

let backends: WebGpuBackend[] = [];
let reason = '';

beforeAll(async () => {
  const made = await Promise.allSettled([WebGpuBackend.create(), WebGpuBackend.create()]);
  const ok = made.flatMap((m) => (m.status === 'fulfilled' ? [m.value] : []));
  const failed = made.find((m) => m.status === 'rejected');
  if (!failed) backends = ok;
  else {
    for (const b of ok) b.dispose();
    const e = failed.reason as unknown;
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
    console.warn(`@kiln/backend-webgpu collective tests skipped: ${reason}`);
  }
});

afterAll(() => {
  for (const b of backends) b.dispose();
});

const group = (timeoutMs = 10_000): Promise<WebGpuCollective[]> => createWebGpuGroup(2, { backends, timeoutMs });

/** Deterministic codes (all bit patterns, NaN codes included). */
function codes(dtype: DType, n: number, seed: number): StorageArray {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  if (dtype === 'f32') return Float32Array.from({ length: n }, () => ((next() % 2001) - 1000) / 64);
  if (dtype === 'i32') return Int32Array.from({ length: n }, () => next() | 0);
  if (dtype === 'bf16') return Uint16Array.from({ length: n }, () => next() >>> 16);
  return Uint8Array.from({ length: n }, () => next() >>> 24);
}

const onRank = (c: WebGpuCollective, x: StorageArray, shape: number[], dtype: DType): Tensor => fromStorage(x, shape, dtype, { backend: c.backend });
const rowsOf = (x: StorageArray, w: number, lo: number, hi: number): number[] => Array.from(x.subarray(lo * w, hi * w));
const reasons = async (...ps: Promise<unknown>[]): Promise<Error[]> => (await Promise.allSettled(ps)).map((r) => (r.status === 'rejected' ? (r.reason as Error) : new Error('resolved')));

describe('WebGPU collectives, 2 ranks (2 devices, by readback/upload)', () => {
  it.for(['f32', 'bf16', 'e4m3'] as const)('uneven allToAll of %s rows: codes exact, results on each rank\'s device', async (dtype, t) => {
    if (!backends.length) return t.skip(reason);
    const cs = await group();
    const w = 5;
    const counts = [[1, 3], [2, 0]]; // rank 1 sends nothing to itself
    const inputs = counts.map((c, r) => codes(dtype, (c[0] + c[1]) * w, 17 + r));
    const results = await Promise.all(cs.map((c, r) => c.allToAll(onRank(c, inputs[r], [counts[r][0] + counts[r][1], w], dtype), counts[r])));
    for (let me = 0; me < 2; me++) {
      const expected: number[] = [];
      for (let q = 0; q < 2; q++) {
        const lo = me === 0 ? 0 : counts[q][0];
        expected.push(...rowsOf(inputs[q], w, lo, lo + counts[q][me]));
      }
      const { tensor, recvCounts } = results[me];
      expect(recvCounts).toEqual([counts[0][me], counts[1][me]]);
      expect(tensor.shape).toEqual([counts[0][me] + counts[1][me], w]);
      expect(tensor.dtype).toBe(dtype);
      expect(tensor.backend).toBe(cs[me].backend);
      expect(Array.from(await tensor.data())).toEqual(expected);
    }
    // the even split (no sendCounts)
    const even = await Promise.all(cs.map((c, r) => c.allToAll(onRank(c, inputs[0].slice(0, 4 * w), [4, w], dtype))));
    expect(Array.from(await even[1].tensor.data())).toEqual([...rowsOf(inputs[0], w, 2, 4), ...rowsOf(inputs[0], w, 2, 4)]);
    expect(even[0].recvCounts).toEqual([2, 2]);
  });

  it('each rank an async function: MoE dispatch then combine (allToAll back with recvCounts) returns every rank its rows', async (t) => {
    if (!backends.length) return t.skip(reason);
    const cs = await group();
    const rank = async (c: WebGpuCollective): Promise<number[]> => {
      const counts = c.rank === 0 ? [2, 1] : [0, 3];
      const x = onRank(c, Float32Array.from({ length: 3 * 4 }, (_, i) => c.rank * 100 + i), [3, 4], 'f32');
      const sent = await c.allToAll(x, counts);
      await new Promise((r) => setTimeout(r, c.rank * 20)); // the ranks drift apart
      const back = await c.allToAll(sent.tensor, sent.recvCounts);
      expect(back.recvCounts).toEqual(counts);
      return Array.from(await back.tensor.data());
    };
    const out = await Promise.all(cs.map(rank));
    expect(out).toEqual([0, 1].map((r) => Array.from({ length: 12 }, (_, i) => r * 100 + i)));
  });

  it('allReduce sum/mean/max/min of f32 (NaN, ±inf, ±0 included) equals rank-ordered f32 host math on both ranks; bf16 mean', async (t) => {
    if (!backends.length) return t.skip(reason);
    const cs = await group();
    const specials = [NaN, Infinity, -Infinity, -0, 0, 3.5];
    const xs = [0, 1].map((r) => {
      const x = codes('f32', 24, 5 + r) as Float32Array;
      specials.forEach((v, i) => (x[(i * 4 + r * 3) % 24] = v));
      return x;
    });
    const host: Record<string, (a: number, b: number) => number> = {
      sum: (a, b) => Math.fround(a + b),
      mean: (a, b) => Math.fround(Math.fround(a + b) / 2),
      max: Math.max,
      min: Math.min,
    };
    for (const op of ['sum', 'mean', 'max', 'min'] as const) {
      const out = await Promise.all(cs.map((c, r) => c.allReduce(onRank(c, xs[r], [4, 6], 'f32'), op)));
      const expected = Array.from(xs[0], (a, i) => host[op](a, xs[1][i]));
      for (let r = 0; r < 2; r++) {
        expect(out[r].shape).toEqual([4, 6]);
        expect(out[r].backend).toBe(cs[r].backend);
        expect(Array.from(await out[r].data()), `${op} on rank ${r}`).toEqual(expected);
      }
    }
    const bf = [0, 1].map((r) => Uint16Array.from(codes('f32', 10, 9 + r) as Float32Array, f32ToBf16Bits));
    const mean = await Promise.all(cs.map((c, r) => c.allReduce(onRank(c, bf[r], [10], 'bf16'), 'mean')));
    const expected = Array.from(bf[0], (a, i) => f32ToBf16Bits(Math.fround(Math.fround(bf16BitsToF32(a) + bf16BitsToF32(bf[1][i])) / 2)));
    expect(Array.from(await mean[0].data())).toEqual(expected);
    expect(Array.from(await mean[1].data())).toEqual(expected);
  });

  it('allGather with different leading dims, in rank order', async (t) => {
    if (!backends.length) return t.skip(reason);
    const cs = await group();
    const xs = [codes('f32', 3 * 2, 1), codes('f32', 1 * 2, 2)];
    const out = await Promise.all(cs.map((c, r) => c.allGather(onRank(c, xs[r], [r === 0 ? 3 : 1, 2], 'f32'))));
    for (let r = 0; r < 2; r++) {
      expect(out[r].shape).toEqual([4, 2]);
      expect(Array.from(await out[r].data())).toEqual([...xs[0], ...xs[1]]);
    }
    const e = [codes('e4m3', 0, 0), codes('e4m3', 3, 3)]; // an empty contribution
    const g = await Promise.all(cs.map((c, r) => c.allGather(onRank(c, e[r], [r, 3], 'e4m3'))));
    expect(Array.from(await g[0].data())).toEqual(Array.from(e[1]));
  });

  it('barrier waits for every rank; calls issued without awaiting run in order; inputs may be disposed once issued', async (t) => {
    if (!backends.length) return t.skip(reason);
    const [a, b] = await group();
    const t0 = performance.now();
    const early = a.barrier();
    await new Promise((r) => setTimeout(r, 60));
    await Promise.all([early, b.barrier()]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
    const issue = (c: WebGpuCollective, r: number) => {
      const x = onRank(c, Float32Array.of(r + 1), [1], 'f32');
      const calls = [c.allReduce(x), c.barrier(), c.allGather(onRank(c, Int32Array.of(r, r), [1, 2], 'i32'))] as const;
      x.dispose();
      return calls;
    };
    const [pa, pb] = [issue(a, 0), issue(b, 1)];
    const [[sa, , ga], [sb, , gb]] = await Promise.all([Promise.all(pa), Promise.all(pb)]);
    expect(await sa.array()).toEqual([3]);
    expect(await sb.array()).toEqual([3]);
    expect(await ga.array()).toEqual([[0, 0], [1, 1]]);
    expect(await gb.array()).toEqual([[0, 0], [1, 1]]);
  });

  it('a missing rank: CollectiveTimeoutError naming op, rank and peer; the group is aborted', async (t) => {
    if (!backends.length) return t.skip(reason);
    const [a, b] = await group();
    const t0 = performance.now();
    const err = await a.barrier({ timeoutMs: 150 }).catch((e: Error) => e);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(err).toBeInstanceOf(CollectiveTimeoutError);
    expect((err as Error).message).toMatch(/^barrier: rank 0 timed out after 150 ms in call #1: rank 1 did not arrive; the group is aborted/);
    await expect(b.barrier()).rejects.toThrow(/^barrier: rank 1: the group was aborted earlier \(rank 0 timed out in barrier #1\)/);
    await expect(a.allGather(onRank(a, Float32Array.of(1), [1], 'f32'))).rejects.toBeInstanceOf(CollectiveError);
    // 3 ranks (the third on the CPU backend: any Backend works, data goes through the host):
    // a rank already waiting is woken by the abort instead of waiting for its own timeout
    const [c, d] = await createWebGpuGroup(3, { backends: [...backends, await initBackend('cpu')], timeoutMs: 10_000 });
    const t1 = performance.now();
    const [ec, ed] = await reasons(c.barrier({ timeoutMs: 150 }), d.barrier());
    expect(performance.now() - t1).toBeLessThan(2000);
    expect(ec.message).toMatch(/^barrier: rank 0 timed out after 150 ms in call #1: rank 2 did not arrive/);
    expect(ed).toBeInstanceOf(CollectiveTimeoutError);
    expect(ed.message).toMatch(/^barrier: rank 1, call #1: the group was aborted \(rank 0 timed out in barrier #1\) while waiting for rank 2$/);
  });

  it('mismatched calls reject with CollectiveError on every rank; a bad argument is the caller\'s own error; the group stays usable', async (t) => {
    if (!backends.length) return t.skip(reason);
    const [a, b] = await group();
    const f = (c: WebGpuCollective, shape: number[], dtype: DType = 'f32') => onRank(c, codes(dtype, shape.reduce((x, y) => x * y, 1), 1), shape, dtype);
    let [ea, eb] = await reasons(a.allGather(f(a, [2, 3])), b.allGather(f(b, [2, 3], 'i32')));
    for (const e of [ea, eb]) expect(e).toBeInstanceOf(CollectiveError);
    expect(ea.message).toMatch(/^allGather: ranks passed different dtypes \(rank 0: f32, rank 1: i32\)/);
    expect(eb.message).toBe(ea.message);
    [ea, eb] = await reasons(a.allToAll(f(a, [2, 3]), [1, 1]), b.allToAll(f(b, [2, 4]), [1, 1]));
    expect(ea.message).toMatch(/^allToAll: ranks passed different trailing shapes \(rank 0: \[2, 3\], rank 1: \[2, 4\]\)/);
    expect(eb).toBeInstanceOf(CollectiveError);
    [ea, eb] = await reasons(a.allReduce(f(a, [2])), b.barrier());
    expect(ea.message).toMatch(/ranks issued different collectives \(rank 0: allReduce\(sum\) #3; rank 1: barrier #3\)/);
    expect(eb).toBeInstanceOf(CollectiveError);
    [ea, eb] = await reasons(a.allReduce(f(a, [2]), 'max'), b.allReduce(f(b, [3]), 'max'));
    expect(ea.message).toMatch(/^allReduce: ranks passed different shapes/);
    [ea, eb] = await reasons(a.allToAll(f(a, [4, 1]), [1, 2]), b.allToAll(f(b, [4, 1]), [2, 2]));
    expect(ea).toBeInstanceOf(ShapeError);
    expect(ea.message).toMatch(/sum to 3, but send has 4 rows/);
    expect(eb).toBeInstanceOf(CollectiveError);
    expect(eb.message).toMatch(/failed on rank 0 \(ShapeError\)/);
    [ea, eb] = await reasons(a.barrier({ timeoutMs: -1 }), b.allReduce(f(b, [1], 'i32'), 'mean'));
    expect(ea).toBeInstanceOf(ArgumentError);
    expect(eb.name).toBe('DTypeError');
    const [sa, sb] = await Promise.all([a.allReduce(onRank(a, Float32Array.of(1, 2), [2], 'f32')), b.allReduce(onRank(b, Float32Array.of(10, 20), [2], 'f32'))]);
    expect(await sa.array()).toEqual([11, 22]);
    expect(await sb.array()).toEqual([11, 22]);
  });

  it('close(): later calls reject; a peer waiting for the closed rank fails fast', async (t) => {
    if (!backends.length) return t.skip(reason);
    const [a, b] = await group();
    a.close();
    expect(a.isClosed).toBe(true);
    await expect(a.barrier()).rejects.toThrow(/rank 0 called barrier after close\(\)/);
    const t0 = performance.now();
    await expect(b.barrier()).rejects.toThrow(/^barrier: rank 1, call #1: rank 0 closed its collective before joining this barrier/);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(b.backend.name).toBe('webgpu'); // the backends stay usable
  });

  it('createWebGpuGroup validates its arguments', async (t) => {
    if (!backends.length) return t.skip(reason);
    await expect(createWebGpuGroup(0)).rejects.toThrow(ArgumentError);
    await expect(createWebGpuGroup(2, { backends: [backends[0]] })).rejects.toThrow(/one backend per rank/);
    await expect(createWebGpuGroup(2, { backends: [backends[0], backends[0]] })).rejects.toThrow(/distinct/);
    await expect(createWebGpuGroup(2, { backends, timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
    const cs = await group();
    expect(cs.map((c) => [c.rank, c.worldSize])).toEqual([[0, 2], [1, 2]]);
  });
});
