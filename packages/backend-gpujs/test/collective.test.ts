/**
 * gpu.js collectives: 2 ranks = 2 GpujsBackend instances (2 engines: 2 headless-gl contexts under
 * an X display, else 2 headless Chromium pages) in this process, data moved by texture readback and upload through the host.
 * Expected results are computed here with plain loops (rows sliced by hand, reductions folded
 * in rank order with Math.fround), so codes must match exactly. The group semantics (timeouts,
 * aborts, close, every error message) are tested over CPU backends in
 * packages/core/test/collective-host-staged.test.ts; here: that gpu.js textures go through it
 * intact and the results are live textures of each rank's page. Skips with the reason when no
 * browser or no WebGL2 context is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, CollectiveError, fromStorage, mul, scalar, type DType, type StorageArray, type Tensor } from '@kiln/core';
import { GpujsBackend, createGpujsGroup, type GpujsCollective } from '@kiln/backend-gpujs';

let ranks: GpujsCollective[] = [];
let reason = '';

beforeAll(async () => {
  try {
    ranks = await createGpujsGroup(2, { timeoutMs: 30_000 }); // a GpujsBackend (its own engine) per rank
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
    console.warn(`@kiln/backend-gpujs collective tests skipped: ${reason}`);
  }
}, 120_000);

afterAll(() => {
  for (const c of ranks) c.backend.dispose?.();
});

/** Deterministic codes; f32 values are multiples of 1/64 (no subnormals, no NaN payloads: WebGL keeps neither). */
function codes(dtype: DType, n: number, seed: number): StorageArray {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  if (dtype === 'f32') return Float32Array.from({ length: n }, () => ((next() % 2001) - 1000) / 64);
  if (dtype === 'bf16') return Uint16Array.from({ length: n }, () => next() >>> 16);
  return Uint8Array.from({ length: n }, () => next() >>> 24);
}

const onRank = (c: GpujsCollective, x: StorageArray, shape: number[], dtype: DType): Tensor => fromStorage(x, shape, dtype, { backend: c.backend });
const codesOf = async (t: Tensor): Promise<number[]> => Array.from((await t.data()) as ArrayLike<number>);

describe('gpu.js collectives, 2 ranks (2 engines, by texture readback/upload)', () => {
  it('createGpujsGroup made one GpujsBackend per rank; a bad browser path is a BackendError', async (t) => {
    if (!ranks.length) return t.skip(reason);
    expect(ranks.map((c) => [c.rank, c.worldSize])).toEqual([[0, 2], [1, 2]]);
    for (const c of ranks) expect(c.backend).toBeInstanceOf(GpujsBackend);
    expect(ranks[0].backend).not.toBe(ranks[1].backend);
    await expect(createGpujsGroup(2, { executablePath: '/nonexistent/chromium' })).rejects.toThrow(BackendError);
    await expect(createGpujsGroup(0)).rejects.toThrow(/worldSize must be an integer/);
  });

  it.for(['f32', 'bf16', 'e4m3'] as const)('uneven allToAll of %s rows: codes exact, results on each rank\'s page', async (dtype, t) => {
    if (!ranks.length) return t.skip(reason);
    const w = 5;
    const counts = [[1, 3], [2, 0]]; // rank 1 sends nothing to itself
    const inputs = counts.map((c, r) => codes(dtype, (c[0] + c[1]) * w, 17 + r));
    const out = await Promise.all(ranks.map((c, r) => c.allToAll(onRank(c, inputs[r], [counts[r][0] + counts[r][1], w], dtype), counts[r])));
    for (let me = 0; me < 2; me++) {
      const expected: number[] = [];
      for (let q = 0; q < 2; q++) {
        const lo = me === 0 ? 0 : counts[q][0];
        expected.push(...Array.from(inputs[q].subarray(lo * w, (lo + counts[q][me]) * w)));
      }
      const { tensor, recvCounts } = out[me];
      expect(recvCounts).toEqual([counts[0][me], counts[1][me]]);
      expect(tensor.shape).toEqual([counts[0][me] + counts[1][me], w]);
      expect(tensor.backend).toBe(ranks[me].backend);
      expect(await codesOf(tensor)).toEqual(expected);
    }
  });

  it('dispatch, a kernel on each page, combine: the round trip returns every row where it came from', async (t) => {
    if (!ranks.length) return t.skip(reason);
    const rows = [[0, 1, 2, 3], [10, 11, 12]].map((ids) => Float32Array.from(ids.flatMap((i) => [i, i + 0.5])));
    const counts = [[2, 2], [1, 2]];
    const back = await Promise.all(
      ranks.map(async (c, r) => {
        const sent = await c.allToAll(onRank(c, rows[r], [rows[r].length / 2, 2], 'f32'), counts[r]);
        const doubled = mul(sent.tensor, scalar(2, 'f32', { backend: c.backend })); // a gpu.js kernel on the received texture
        return (await c.allToAll(doubled, sent.recvCounts)).tensor;
      }),
    );
    for (let r = 0; r < 2; r++) expect(await codesOf(back[r])).toEqual(Array.from(rows[r], (v) => 2 * v));
  });

  it.for(['sum', 'mean', 'max', 'min'] as const)('allReduce %s of f32 (±inf, NaN): every rank gets the f32 fold in rank order', async (op, t) => {
    if (!ranks.length) return t.skip(reason);
    const xs = [Float32Array.of(1.5, NaN, Infinity, 3, 1e30, 0.1, -2), Float32Array.of(2.25, 1, -Infinity, 7, 1e30, 0.2, -2)];
    const expected = Array.from(xs[0], (a, i) => {
      const b = xs[1][i];
      if (op === 'max') return Math.max(a, b);
      if (op === 'min') return Math.min(a, b);
      const s = Math.fround(a + b);
      return op === 'mean' ? Math.fround(s / 2) : s;
    });
    const out = await Promise.all(ranks.map((c, r) => c.allReduce(onRank(c, xs[r], [7], 'f32'), op)));
    for (let r = 0; r < 2; r++) {
      expect(out[r].backend).toBe(ranks[r].backend);
      expect(await codesOf(out[r])).toEqual(expected);
    }
  });

  it('uneven allGather of bf16, barrier, and a mismatch that leaves the group usable', async (t) => {
    if (!ranks.length) return t.skip(reason);
    const xs = [codes('bf16', 3 * 4, 3), codes('bf16', 1 * 4, 4)];
    const [ga, gb] = await Promise.all(ranks.map((c, r) => c.allGather(onRank(c, xs[r], [r ? 1 : 3, 4], 'bf16'))));
    const expected = [...Array.from(xs[0]), ...Array.from(xs[1])];
    for (const g of [ga, gb]) {
      expect(g.shape).toEqual([4, 4]);
      expect(await codesOf(g)).toEqual(expected);
    }
    await Promise.all(ranks.map((c) => c.barrier()));
    const bad = await Promise.allSettled(ranks.map((c, r) => c.allGather(onRank(c, codes(r ? 'bf16' : 'f32', 4, 1), [1, 4], r ? 'bf16' : 'f32'))));
    for (const b of bad) {
      expect(b.status).toBe('rejected');
      expect((b as PromiseRejectedResult).reason).toBeInstanceOf(CollectiveError);
      expect(((b as PromiseRejectedResult).reason as Error).message).toMatch(/^allGather: ranks passed different dtypes \(rank 0: f32, rank 1: bf16\)/);
    }
    const sums = await Promise.all(ranks.map((c, r) => c.allReduce(onRank(c, Float32Array.of(r + 1, 10), [2], 'f32'))));
    for (const s of sums) expect(await codesOf(s)).toEqual([3, 20]);
  });
});
