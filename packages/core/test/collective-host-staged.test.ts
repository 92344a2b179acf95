/**
 * core's host-staged group over CPU backends: 2 (and 3) ranks = distinct CpuBackend instances
 * in this process, data moved by readback and upload through the host. Two references, both
 * independent of the code under test: plain loops written here (rows sliced and concatenated
 * by hand; f32 reductions folded in rank order with Math.fround; bf16 decoded with a
 * DataView), and the CPU backend's own collective (shared memory, ranks joined on this
 * thread), the semantic reference, run on the same inputs: codes and error messages must
 * match exactly.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  ArgumentError,
  CollectiveError,
  CollectiveTimeoutError,
  DTypeError,
  HostStagedCollective,
  ShapeError,
  createHostStagedGroup,
  createHostStagedGroupWith,
  fromStorage,
  type Backend,
  type Collective,
  type DType,
  type ReduceKind,
  type StorageArray,
  type Tensor,
} from '@kiln/core';
import { CpuBackend, createCpuCollectiveGroup, joinCpuCollective } from '@kiln/backend-cpu';

const backends: CpuBackend[] = [new CpuBackend({ threads: 1 }), new CpuBackend({ threads: 1 }), new CpuBackend({ threads: 1 })];
afterAll(() => {
  for (const b of backends) b.dispose();
});

const group = (n = 2, timeoutMs = 10_000): HostStagedCollective[] => createHostStagedGroup(backends.slice(0, n), { timeoutMs });
/** The CPU collective (the semantic reference), every rank on this thread, results on backend r. */
const cpuGroup = (n = 2): Collective[] => {
  const g = createCpuCollectiveGroup(n);
  return Array.from({ length: n }, (_, r) => joinCpuCollective(g, r, { timeoutMs: 10_000 }));
};

/** Deterministic codes (every bit pattern, NaN codes included). */
function codes(dtype: DType, n: number, seed: number): StorageArray {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  if (dtype === 'f32') return Float32Array.from({ length: n }, () => ((next() % 2001) - 1000) / 64);
  if (dtype === 'i32') return Int32Array.from({ length: n }, () => next() | 0);
  if (dtype === 'bf16' || dtype === 'f16') return Uint16Array.from({ length: n }, () => next() >>> 16);
  return Uint8Array.from({ length: n }, () => next() >>> 24);
}

const on = (b: Backend, x: StorageArray, shape: number[], dtype: DType): Tensor => fromStorage(x, shape, dtype, { backend: b });
const codesOf = async (t: Tensor): Promise<number[]> => Array.from((await t.data()) as ArrayLike<number>);
const reasons = async (...ps: Promise<unknown>[]): Promise<Error[]> => (await Promise.allSettled(ps)).map((r) => (r.status === 'rejected' ? (r.reason as Error) : new Error('resolved')));

/** bf16 code -> f32 value through a DataView (not core's codec). */
const bf16 = (code: number): number => {
  const v = new DataView(new ArrayBuffer(4));
  v.setUint32(0, code << 16);
  return v.getFloat32(0);
};

describe('host-staged group over CPU backends (readback/upload through the host)', () => {
  it.for(['f32', 'bf16', 'e4m3'] as const)('uneven allToAll of %s rows: codes exact against hand-sliced rows and the CPU collective', async (dtype) => {
    const w = 5;
    const counts = [[1, 3], [2, 0]]; // rank 1 sends nothing to itself
    const inputs = counts.map((c, r) => codes(dtype, (c[0] + c[1]) * w, 17 + r));
    const run = (cs: Collective[], bs: Backend[]) => Promise.all(cs.map((c, r) => c.allToAll(on(bs[r], inputs[r], [counts[r][0] + counts[r][1], w], dtype), counts[r])));
    const got = await run(group(), backends);
    const ref = await run(cpuGroup(), backends);
    for (let me = 0; me < 2; me++) {
      const expected: number[] = [];
      for (let q = 0; q < 2; q++) {
        const lo = me === 0 ? 0 : counts[q][0];
        expected.push(...Array.from(inputs[q].subarray(lo * w, (lo + counts[q][me]) * w)));
      }
      const { tensor, recvCounts } = got[me];
      expect(recvCounts).toEqual([counts[0][me], counts[1][me]]);
      expect(tensor.shape).toEqual([counts[0][me] + counts[1][me], w]);
      expect(tensor.dtype).toBe(dtype);
      expect(tensor.backend).toBe(backends[me]);
      expect(await codesOf(tensor)).toEqual(expected);
      expect(await codesOf(tensor)).toEqual(await codesOf(ref[me].tensor));
      expect(recvCounts).toEqual(ref[me].recvCounts);
    }
  });

  it('the even split without sendCounts; 3 ranks', async () => {
    const cs = group(3);
    const xs = [0, 1, 2].map((r) => Float32Array.from({ length: 6 }, (_, i) => 10 * r + i));
    const out = await Promise.all(cs.map((c, r) => c.allToAll(on(backends[r], xs[r], [3, 2], 'f32'))));
    // rank me gets row `me` of every rank
    for (let me = 0; me < 3; me++) expect(await out[me].tensor.array()).toEqual([0, 1, 2].map((q) => [10 * q + 2 * me, 10 * q + 2 * me + 1]));
  });

  it.for(['sum', 'mean', 'max', 'min'] as const)('allReduce %s of f32 (NaN, ±inf, ±0): every rank gets the f32 fold in rank order', async (op: ReduceKind) => {
    const a = Float32Array.of(1.5, -0, NaN, Infinity, 3, 1e30, 0.1, -2);
    const b = Float32Array.of(2.25, 0, 1, -Infinity, NaN, 1e30, 0.2, -2);
    const c = Float32Array.of(-1, -0, 2, 5, 7, -1e30, 0.3, 4);
    const xs = [a, b, c];
    const expected = Array.from(a, (_, i) => {
      let acc = xs[0][i];
      for (let q = 1; q < 3; q++) {
        const v = xs[q][i];
        acc = op === 'max' ? Math.max(acc, v) : op === 'min' ? Math.min(acc, v) : Math.fround(acc + v);
      }
      return op === 'mean' ? Math.fround(acc / 3) : acc;
    });
    const out = await Promise.all(group(3).map((g, r) => g.allReduce(on(backends[r], xs[r], [8], 'f32'), op)));
    for (const t of out) expect(Array.from((await t.data()) as Float32Array)).toEqual(expected);
    expect(out.map((t) => t.backend)).toEqual(backends);
  });

  it.for([
    ['bf16', 'mean'],
    ['bf16', 'sum'],
    ['f16', 'sum'],
    ['e4m3', 'max'],
    ['e5m2', 'sum'],
    ['i32', 'sum'],
    ['bool', 'min'],
  ] as const)('allReduce of %s (%s) equals the CPU collective bit for bit', async ([dtype, op]) => {
    const n = 64;
    const xs = [0, 1].map((r) => (dtype === 'bool' ? Uint8Array.from(codes('u8', n, 5 + r), (v) => v & 1) : codes(dtype, n, 5 + r)));
    const run = (cs: Collective[]) => Promise.all(cs.map((c, r) => c.allReduce(on(backends[r], xs[r], [8, 8], dtype), op)));
    const [got, ref] = [await run(group()), await run(cpuGroup())];
    for (let r = 0; r < 2; r++) expect(await codesOf(got[r])).toEqual(await codesOf(ref[r]));
    if (dtype === 'bf16' && op === 'mean') {
      // and against host math: the f32 mean of the decoded values, finite ones rounded to bf16 by the CPU collective
      const mean = Array.from(xs[0], (c, i) => Math.fround(Math.fround(bf16(c) + bf16(xs[1][i])) / 2));
      const back = (await codesOf(got[0])).map(bf16);
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(mean[i])) expect(back[i]).toBeNaN();
        else if (Number.isFinite(mean[i]) && mean[i] !== 0) expect(Math.abs(back[i] - mean[i]) / Math.abs(mean[i])).toBeLessThanOrEqual(2 ** -8);
      }
    }
  });

  it('uneven allGather (3 ranks, i32 and e4m3): rows concatenated in rank order', async () => {
    for (const dtype of ['i32', 'e4m3'] as const) {
      const rows = [2, 0, 3];
      const xs = rows.map((m, r) => codes(dtype, m * 4, 40 + r));
      const out = await Promise.all(group(3).map((c, r) => c.allGather(on(backends[r], xs[r], [rows[r], 4], dtype))));
      const expected = xs.flatMap((x) => Array.from(x));
      for (const t of out) {
        expect(t.shape).toEqual([5, 4]);
        expect(await codesOf(t)).toEqual(expected);
      }
    }
  });

  it('barrier waits for every rank; calls issued without awaiting run in order; inputs may be disposed once issued', async () => {
    const [a, b] = group();
    const t0 = performance.now();
    const early = a.barrier();
    await new Promise((r) => setTimeout(r, 60));
    await Promise.all([early, b.barrier()]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
    const issue = (c: HostStagedCollective, r: number) => {
      const x = on(c.backend, Float32Array.of(r + 1), [1], 'f32');
      const calls = [c.allReduce(x), c.barrier(), c.allGather(on(c.backend, Int32Array.of(r, r), [1, 2], 'i32'))] as const;
      x.dispose();
      return calls;
    };
    const [[sa, , ga], [sb, , gb]] = await Promise.all([Promise.all(issue(a, 0)), Promise.all(issue(b, 1))]);
    expect([await sa.array(), await sb.array()]).toEqual([[3], [3]]);
    expect(await ga.array()).toEqual([[0, 0], [1, 1]]);
    expect(await gb.array()).toEqual([[0, 0], [1, 1]]);
  });

  it('a missing rank: CollectiveTimeoutError naming op, rank and peer; the group is aborted; waiting ranks wake at once', async () => {
    const [a, b] = group();
    const t0 = performance.now();
    const err = await a.barrier({ timeoutMs: 150 }).catch((e: Error) => e);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(err).toBeInstanceOf(CollectiveTimeoutError);
    expect((err as Error).message).toMatch(/^barrier: rank 0 timed out after 150 ms in call #1: rank 1 did not arrive; the group is aborted/);
    await expect(b.barrier()).rejects.toThrow(/^barrier: rank 1: the group was aborted earlier \(rank 0 timed out in barrier #1\)/);
    await expect(a.allGather(on(backends[0], Float32Array.of(1), [1], 'f32'))).rejects.toBeInstanceOf(CollectiveError);
    const [c, d] = group(3);
    const t1 = performance.now();
    const [ec, ed] = await reasons(c.barrier({ timeoutMs: 150 }), d.barrier());
    expect(performance.now() - t1).toBeLessThan(2000);
    expect(ec.message).toMatch(/^barrier: rank 0 timed out after 150 ms in call #1: rank 2 did not arrive/);
    expect(ed).toBeInstanceOf(CollectiveTimeoutError);
    expect(ed.message).toBe('barrier: rank 1, call #1: the group was aborted (rank 0 timed out in barrier #1) while waiting for rank 2');
  });

  it('mismatched calls: CollectiveError on every rank with the CPU collective\'s messages; a bad argument is the caller\'s own error; the group stays usable', async () => {
    const f = (r: number, shape: number[], dtype: DType = 'f32') => on(backends[r], codes(dtype, shape.reduce((x, y) => x * y, 1), 1), shape, dtype);
    // each pair of calls on the host-staged group and on the CPU collective: same classes, same messages
    const both = async (calls: (c: Collective, r: number) => Promise<unknown>): Promise<Error[][]> => {
      const out: Error[][] = [];
      for (const cs of [hs, cpu]) out.push(await reasons(...cs.map((c, r) => calls(c, r))));
      return out;
    };
    const hs = group();
    const cpu = cpuGroup();
    const cases: [string, (c: Collective, r: number) => Promise<unknown>, RegExp][] = [
      ['dtype', (c, r) => c.allGather(f(r, [2, 3], r ? 'i32' : 'f32')), /^allGather: ranks passed different dtypes \(rank 0: f32, rank 1: i32\)/],
      ['trailing shape', (c, r) => c.allToAll(f(r, [2, 3 + r]), [1, 1]), /^allToAll: ranks passed different trailing shapes \(rank 0: \[2, 3\], rank 1: \[2, 4\]\)/],
      ['op', (c, r) => (r ? c.barrier() : c.allReduce(f(r, [2]))), /ranks issued different collectives \(rank 0: allReduce\(sum\) #3; rank 1: barrier #3\)/],
      ['shape', (c, r) => c.allReduce(f(r, [2 + r]), 'max'), /^allReduce: ranks passed different shapes/],
    ];
    for (const [what, call, message] of cases) {
      const [got, ref] = await both(call);
      for (let r = 0; r < 2; r++) {
        expect(got[r], what).toBeInstanceOf(CollectiveError);
        expect(got[r].message, what).toMatch(message);
        expect(got[r].message, what).toBe(ref[r].message);
      }
    }
    const [got, ref] = await both((c, r) => c.allToAll(f(r, [4, 1]), r ? [2, 2] : [1, 2]));
    expect(got[0]).toBeInstanceOf(ShapeError);
    expect(got[0].message).toMatch(/sum to 3, but send has 4 rows/);
    expect(got[1]).toBeInstanceOf(CollectiveError);
    expect(got[1].message).toMatch(/failed on rank 0 \(ShapeError\)/);
    expect(got.map((e) => e.message)).toEqual(ref.map((e) => e.message));
    const [ea, eb] = await reasons(hs[0].barrier({ timeoutMs: -1 }), hs[1].allReduce(f(1, [1], 'i32'), 'mean'));
    expect(ea).toBeInstanceOf(ArgumentError);
    expect(eb).toBeInstanceOf(DTypeError);
    const [sa, sb] = await Promise.all([hs[0].allReduce(on(backends[0], Float32Array.of(1, 2), [2], 'f32')), hs[1].allReduce(on(backends[1], Float32Array.of(10, 20), [2], 'f32'))]);
    expect([await sa.array(), await sb.array()]).toEqual([[11, 22], [11, 22]]);
    for (const c of cpu) c.close();
  });

  it('close(): later calls reject; a peer waiting for the closed rank fails fast; backends stay usable', async () => {
    const [a, b] = group();
    a.close();
    expect(a.isClosed).toBe(true);
    await expect(a.barrier()).rejects.toThrow(/rank 0 called barrier after close\(\)/);
    const t0 = performance.now();
    await expect(b.barrier()).rejects.toThrow(/^barrier: rank 1, call #1: rank 0 closed its collective before joining this barrier/);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(await on(backends[0], Float32Array.of(7), [1], 'f32').array()).toEqual([7]);
  });

  it('createHostStagedGroup / createHostStagedGroupWith check their arguments before creating anything', async () => {
    expect(() => createHostStagedGroup([])).toThrow(/^createHostStagedGroup: backends must be an array of 1 to 4096 kiln Backends \(one per rank\), got 0$/);
    expect(() => createHostStagedGroup(backends[0] as unknown as Backend[])).toThrow(ArgumentError);
    expect(() => createHostStagedGroup([backends[0], backends[0]])).toThrow(/distinct/);
    expect(() => createHostStagedGroup([backends[0], {} as Backend])).toThrow(/kiln Backends/);
    expect(() => createHostStagedGroup(backends.slice(0, 2), { timeoutMs: -1 })).toThrow(/^createHostStagedGroup: timeoutMs must be a number >= 0/);
    let created = 0;
    const make = () => {
      created++;
      return new CpuBackend({ threads: 1 });
    };
    await expect(createHostStagedGroupWith(0, make, { caller: 'createXGroup' })).rejects.toThrow(/^createXGroup: worldSize must be an integer in \[1, 4096\], got 0/);
    await expect(createHostStagedGroupWith(2, make, { timeoutMs: Number.NaN })).rejects.toThrow(/timeoutMs/);
    await expect(createHostStagedGroupWith(2, make, { backends: [backends[0]] })).rejects.toThrow(/one backend per rank \(2\), got 1/);
    expect(created).toBe(0);
    // a factory that fails on rank 1: rank 0's backend is disposed, the error comes through
    const disposed: string[] = [];
    const failing = (r: number): Backend => {
      if (r === 1) throw new Error('no device for rank 1');
      const b = new CpuBackend({ threads: 1 });
      const dispose = b.dispose.bind(b);
      b.dispose = () => (disposed.push(`rank ${r}`), dispose());
      return b;
    };
    await expect(createHostStagedGroupWith(2, failing)).rejects.toThrow('no device for rank 1');
    expect(disposed).toEqual(['rank 0']);
    const cs = await createHostStagedGroupWith(2, make);
    expect(created).toBe(2);
    expect(cs.map((c) => [c.rank, c.worldSize, c instanceof HostStagedCollective])).toEqual([[0, 2, true], [1, 2, true]]);
    const sums = await Promise.all(cs.map((c, r) => c.allReduce(on(c.backend, Float32Array.of(r + 1), [1], 'f32'))));
    expect(await sums[1].array()).toEqual([3]);
    for (const c of cs) c.backend.dispose?.();
  });
});
