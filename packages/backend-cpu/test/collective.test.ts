/**
 * The CPU backend's in-process Collective.
 *
 * - "in-thread" tests join every rank of a group on the test's own thread (the protocol is
 *   asynchronous, so ranks interleave on one event loop) and run against the sources.
 * - "runCpuRanks" tests spawn one worker thread per rank (2 and 4 ranks); the rank modules in
 *   test/fixtures import the BUILT @kiln/core and @kiln/backend-cpu (`npm test` builds first;
 *   otherwise run `node_modules/.bin/turbo run build`).
 *
 * Expected results are computed here from the inputs with plain loops: rows are sliced and
 * concatenated by hand, reductions are folded in rank order with Math.fround (f32 arithmetic)
 * and rounded with the core codecs, so they must match bit for bit.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError,
  CollectiveError,
  CollectiveTimeoutError,
  DTypeError,
  ShapeError,
  decodeValues,
  encodeBf16,
  encodeF16,
  encodeFp8,
  encodeFp8Value,
  f32ToBf16Bits,
  f32ToF16Bits,
  tensor,
  useBackend,
  type DType,
  type ReduceKind,
  type StorageArray,
} from '@kiln/core';
import { CpuBackend } from '../src/cpu-backend.js';
import {
  CpuCollective,
  CpuRankError,
  abortCpuCollectiveGroup,
  createCpuCollectiveGroup,
  joinCpuCollective,
  runCpuRanks,
} from '../src/collective/index.js';
import { codesOf, runCases, type Case, type CaseInput, type CaseResult } from './fixtures/cases.mjs';

const cpu = new CpuBackend();
beforeAll(() => useBackend(cpu));

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);
const seedOf = (name: string, rank: number): number => {
  let h = 2166136261;
  for (const ch of `${name}/${rank}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
};

// ---- cases ---------------------------------------------------------------------------------

function allToAllCase(name: string, n: number, dtype: DType, trailing: number[], count: (src: number, dst: number) => number): Case {
  return {
    name,
    op: 'allToAll',
    inputs: range(n).map((r) => {
      const counts = range(n).map((d) => count(r, d));
      const rows = counts.reduce((a, b) => a + b, 0);
      return { dtype, shape: [rows, ...trailing], counts, gen: { seed: seedOf(name, r), size: rows * prod(trailing) } };
    }),
  };
}

function generated(name: string, n: number, dtype: DType, shape: (rank: number) => number[]): CaseInput[] {
  return range(n).map((r) => ({ dtype, shape: shape(r), gen: { seed: seedOf(name, r), size: prod(shape(r)) } }));
}

/** f32 values in (-scale, scale), deterministic per (name, rank). */
function floats(name: string, rank: number, size: number, scale: number): Float32Array {
  const g = codesOf({ dtype: 'f32', shape: [size], gen: { seed: seedOf(name, rank), size } }) as Float32Array;
  return g.map((v) => (v / 512) * scale);
}

function encodedCase(name: string, n: number, dtype: DType, shape: number[], reduce: ReduceKind, scale: number): Case {
  const encode = (v: Float32Array): StorageArray => {
    if (dtype === 'bf16') return encodeBf16(v);
    if (dtype === 'f16') return encodeF16(v);
    if (dtype === 'e4m3' || dtype === 'e5m2') return encodeFp8(v, dtype);
    return v;
  };
  return { name, op: 'allReduce', reduce, inputs: range(n).map((r) => ({ dtype, shape, codes: encode(floats(name, r, prod(shape), scale)) })) };
}

/** f32 specials, rotated by rank so that every position sees different combinations. */
function specials(rank: number): Float32Array {
  const v = [NaN, Infinity, -Infinity, -0, 0, 3.5, -2, 1e38];
  return Float32Array.from(range(v.length), (i) => v[(i + rank * 3) % v.length]);
}

function buildCases(n: number, large: boolean): Case[] {
  const cases: Case[] = [
    // MoE dispatch shape: [tokens, hidden] rows, some ranks get no rows from some peers
    allToAllCase('a2a-f32-tokens', n, 'f32', [3], (r, d) => (r + 2 * d) % 3),
    allToAllCase('a2a-bf16-tokens', n, 'bf16', [8], (r, d) => (r * 7 + d * 3) % 5),
    allToAllCase('a2a-i32-none-to-rank-1', n, 'i32', [], (r, d) => (d === 1 ? 0 : 1 + ((r + d) % 4))),
    allToAllCase('a2a-u8-3d', n, 'u8', [2, 3], (r, d) => (r * d) % 3),
    allToAllCase('a2a-empty', n, 'f32', [4], () => 0),
    { name: 'a2a-even-f32', op: 'allToAll', even: true, inputs: generated('a2a-even-f32', n, 'f32', () => [n * 2, 5]) },
    { name: 'ar-f32-sum', op: 'allReduce', reduce: 'sum', inputs: generated('ar-f32', n, 'f32', () => [3, 7]) },
    { name: 'ar-f32-max', op: 'allReduce', reduce: 'max', inputs: generated('ar-f32', n, 'f32', () => [3, 7]) },
    { name: 'ar-f32-min', op: 'allReduce', reduce: 'min', inputs: generated('ar-f32', n, 'f32', () => [3, 7]) },
    { name: 'ar-f32-mean', op: 'allReduce', reduce: 'mean', inputs: generated('ar-f32', n, 'f32', () => [3, 7]) },
    { name: 'ar-f32-scalar', op: 'allReduce', reduce: 'sum', inputs: generated('ar-f32-scalar', n, 'f32', () => []) },
    { name: 'ar-i32-sum-wraps', op: 'allReduce', reduce: 'sum', inputs: generated('ar-i32', n, 'i32', () => [11]) },
    { name: 'ar-i32-max', op: 'allReduce', reduce: 'max', inputs: generated('ar-i32', n, 'i32', () => [11]) },
    { name: 'ar-i32-min', op: 'allReduce', reduce: 'min', inputs: generated('ar-i32', n, 'i32', () => [11]) },
    { name: 'ar-u8-sum-wraps', op: 'allReduce', reduce: 'sum', inputs: generated('ar-u8', n, 'u8', () => [9]) },
    { name: 'ar-bool-max', op: 'allReduce', reduce: 'max', inputs: generated('ar-bool', n, 'bool', () => [9]) },
    encodedCase('ar-bf16-sum', n, 'bf16', [4, 5], 'sum', 3),
    encodedCase('ar-bf16-mean', n, 'bf16', [4, 5], 'mean', 3),
    encodedCase('ar-f16-sum', n, 'f16', [13], 'sum', 100),
    encodedCase('ar-e4m3-sum', n, 'e4m3', [13], 'sum', 40),
    encodedCase('ar-e5m2-max', n, 'e5m2', [13], 'max', 1000),
    // NaN, infinities and signed zeros; full-range bf16/f16 codes (sums overflow to inf and NaN)
    ...(['sum', 'max', 'min'] as const).map((reduce): Case => ({ name: `ar-f32-special-${reduce}`, op: 'allReduce', reduce, inputs: range(n).map((r) => ({ dtype: 'f32', shape: [8], codes: specials(r) })) })),
    { name: 'ar-bf16-wild-sum', op: 'allReduce', reduce: 'sum', inputs: generated('ar-bf16-wild', n, 'bf16', () => [257]) },
    { name: 'ar-bf16-wild-mean', op: 'allReduce', reduce: 'mean', inputs: generated('ar-bf16-wild', n, 'bf16', () => [257]) },
    { name: 'ar-f16-wild-sum', op: 'allReduce', reduce: 'sum', inputs: generated('ar-f16-wild', n, 'f16', () => [257]) },
    // from 64 KiB on 3+ ranks, allReduce reduce-scatters within each chunk
    { name: 'ar-f32-mid-sum', op: 'allReduce', reduce: 'sum', inputs: generated('ar-f32-mid', n, 'f32', () => [300, 100]) },
    encodedCase('ar-bf16-mid-mean', n, 'bf16', [40, 1000], 'mean', 10),
    encodedCase('ar-e4m3-mid-max', n, 'e4m3', [70001], 'max', 300),
    { name: 'ag-f32-ragged', op: 'allGather', inputs: generated('ag-f32', n, 'f32', (r) => [r % 3, 4]) },
    { name: 'ag-e5m2-3d', op: 'allGather', inputs: generated('ag-e5m2', n, 'e5m2', (r) => [r + 1, 2, 3]) },
    { name: 'barrier', op: 'barrier', inputs: [] },
  ];
  if (large) {
    // several MB per rank: more than one 1 MiB slot, so payloads move in several rounds
    cases.push(allToAllCase('big-a2a-f32', n, 'f32', [1024], (r, d) => 160 + 48 * ((r + d) % 3)));
    cases.push({ name: 'big-ar-f32-sum', op: 'allReduce', reduce: 'sum', inputs: generated('big-ar', n, 'f32', () => [1536, 1024]) });
    cases.push({ name: 'big-ag-bf16', op: 'allGather', inputs: generated('big-ag', n, 'bf16', (r) => [900 + 100 * r, 1024]) });
  }
  return cases;
}

// ---- expected results ----------------------------------------------------------------------

const inputCache = new WeakMap<CaseInput, StorageArray>();
/** An input's codes (generated once per input object). */
function inputCodes(input: CaseInput): StorageArray {
  let codes = inputCache.get(input);
  if (!codes) inputCache.set(input, (codes = codesOf(input)));
  return codes;
}

function concatCodes(dtype: DType, parts: StorageArray[]): StorageArray {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const Ctor = parts[0]?.constructor as { new (n: number): StorageArray } | undefined;
  const out = Ctor ? new Ctor(total) : (codesOf({ dtype, shape: [0], gen: { seed: 1, size: 0 } }) as StorageArray);
  let at = 0;
  for (const p of parts) {
    (out as Float32Array).set(p as Float32Array, at);
    at += p.length;
  }
  return out;
}

function expectedAllToAll(c: Case, dst: number): { codes: StorageArray; shape: number[]; recvCounts: number[] } {
  const trailing = c.inputs[0].shape.slice(1);
  const rowElems = prod(trailing);
  const parts: StorageArray[] = [];
  const recvCounts: number[] = [];
  for (const input of c.inputs) {
    const codes = inputCodes(input);
    const n = c.inputs.length;
    const counts = c.even ? range(n).map(() => input.shape[0] / n) : input.counts!;
    let before = 0;
    for (let d = 0; d < dst; d++) before += counts[d];
    parts.push(codes.slice(before * rowElems, (before + counts[dst]) * rowElems));
    recvCounts.push(counts[dst]);
  }
  const rows = recvCounts.reduce((a, b) => a + b, 0);
  return { codes: concatCodes(c.inputs[0].dtype, parts), shape: [rows, ...trailing], recvCounts };
}

function expectedAllGather(c: Case): { codes: StorageArray; shape: number[] } {
  const parts = c.inputs.map((i) => inputCodes(i));
  const rows = c.inputs.reduce((a, i) => a + i.shape[0], 0);
  return { codes: concatCodes(c.inputs[0].dtype, parts), shape: [rows, ...c.inputs[0].shape.slice(1)] };
}

function expectedAllReduce(c: Case): StorageArray {
  const dtype = c.inputs[0].dtype;
  const op = c.reduce ?? 'sum';
  const n = c.inputs.length;
  const vals = c.inputs.map((i) => decodeValues(inputCodes(i), dtype));
  const size = vals[0].length;
  const acc = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    let a = vals[0][i];
    for (let r = 1; r < n; r++) {
      const b = vals[r][i];
      if (dtype === 'i32') a = op === 'sum' ? (a + b) | 0 : op === 'max' ? Math.max(a, b) : Math.min(a, b);
      else if (dtype === 'u8') a = op === 'sum' ? (a + b) & 0xff : op === 'max' ? Math.max(a, b) : Math.min(a, b);
      else if (dtype === 'bool') a = op === 'max' ? a | b : a & b;
      else a = op === 'max' ? Math.max(a, b) : op === 'min' ? Math.min(a, b) : Math.fround(a + b);
    }
    if (op === 'mean') a = Math.fround(a / n);
    acc[i] = a;
  }
  switch (dtype) {
    case 'f32':
      return Float32Array.from(acc);
    case 'bf16':
      return Uint16Array.from(acc, (v) => f32ToBf16Bits(v));
    case 'f16':
      return Uint16Array.from(acc, (v) => f32ToF16Bits(v));
    case 'e4m3':
    case 'e5m2':
      return Uint8Array.from(acc, (v) => encodeFp8Value(v, dtype));
    case 'i32':
      return Int32Array.from(acc);
    default:
      return Uint8Array.from(acc);
  }
}

/** Index of the first differing byte of two code arrays (-1 when bit-identical). */
function firstDiff(a: StorageArray, b: StorageArray): number {
  if (a.constructor !== b.constructor) return -2;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return -3;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** Checks every rank's result of every case against the expected data. */
function checkResults(cases: Case[], results: Record<string, CaseResult>[]): void {
  for (const c of cases) {
    // the same on every rank
    const reduced = c.op === 'allReduce' ? expectedAllReduce(c) : undefined;
    const gathered = c.op === 'allGather' ? expectedAllGather(c) : undefined;
    for (let rank = 0; rank < results.length; rank++) {
      const got = results[rank][c.name];
      const where = `${c.name} on rank ${rank}`;
      expect(got, where).toBeDefined();
      if (c.op === 'barrier') continue;
      expect(got.untouched, `${where}: input unchanged`).toBe(true);
      expect(got.dtype, where).toBe(c.inputs[0].dtype);
      let exp: { codes: StorageArray; shape: number[]; recvCounts?: number[] };
      if (c.op === 'allToAll') exp = expectedAllToAll(c, rank);
      else if (c.op === 'allGather') exp = gathered!;
      else exp = { codes: reduced!, shape: c.inputs[0].shape };
      expect(got.shape, where).toEqual(exp.shape);
      if (exp.recvCounts) expect(got.recvCounts, where).toEqual(exp.recvCounts);
      expect(firstDiff(got.codes!, exp.codes), `${where}: first differing byte`).toBe(-1);
    }
  }
}

function timings(results: Record<string, CaseResult>[], names: string[]): string {
  return names.map((n) => `${n} ${Math.max(...results.map((r) => r[n].ms)).toFixed(1)} ms`).join(', ');
}

/** Every rank of a group joined on this thread. */
async function inThread(worldSize: number, cases: Case[], slotBytes?: number): Promise<Record<string, CaseResult>[]> {
  const group = createCpuCollectiveGroup(worldSize, slotBytes === undefined ? {} : { slotBytes });
  const ranks = range(worldSize).map((r) => joinCpuCollective(group, r, { timeoutMs: 20_000 }));
  const out = await Promise.all(ranks.map((c, r) => runCases(c, r, cases, { backend: cpu })));
  for (const c of ranks) c.close();
  return out;
}

/** The rejection reasons of calls issued together (undefined for those that resolved). */
async function reasons(...calls: Promise<unknown>[]): Promise<Error[]> {
  return (await Promise.allSettled(calls)).map((r) => (r.status === 'rejected' ? (r.reason as Error) : (undefined as unknown as Error)));
}

const fixture = (name: string): URL => new URL(`./fixtures/${name}`, import.meta.url);

// ---- in-thread ----------------------------------------------------------------------------

describe('CpuCollective, ranks on one thread (sources)', () => {
  it.each([1, 2, 3])('worldSize %i with 64-byte slots (many rounds per call): every op matches the reference', async (n) => {
    const cases = buildCases(n, false);
    checkResults(cases, await inThread(n, cases, 64));
  });

  it('worldSize 4 with default slots, including multi-MB payloads', async () => {
    const cases = buildCases(4, true);
    const results = await inThread(4, cases);
    checkResults(cases, results);
    console.log(`in-thread worldSize 4: ${timings(results, ['a2a-f32-tokens', 'ar-f32-sum', 'barrier', 'big-a2a-f32', 'big-ar-f32-sum', 'big-ag-bf16'])}`);
  });

  it('runs calls one at a time in issue order, even when not awaited; inputs may be disposed once issued', async () => {
    const group = createCpuCollectiveGroup(2);
    const [a, b] = [joinCpuCollective(group, 0), joinCpuCollective(group, 1)];
    const issue = (c: CpuCollective, r: number) => {
      const x = tensor([r + 1]);
      const calls = [c.allReduce(x), c.barrier(), c.allGather(tensor([r, r], [1, 2], 'i32'))] as const;
      x.dispose(); // the input was captured when the call was issued
      return calls;
    };
    const [pa, pb] = [issue(a, 0), issue(b, 1)];
    const [sa, , ga] = await Promise.all(pa);
    const [sb, , gb] = await Promise.all(pb);
    expect(Array.from(await sa.values())).toEqual([3]);
    expect(Array.from(await sb.values())).toEqual([3]);
    expect(await ga.array()).toEqual([[0, 0], [1, 1]]);
    expect(await gb.array()).toEqual([[0, 0], [1, 1]]);
  });

  it('validates group creation and joining', () => {
    expect(() => createCpuCollectiveGroup(0)).toThrow(ArgumentError);
    expect(() => createCpuCollectiveGroup(2.5)).toThrow(ArgumentError);
    expect(() => createCpuCollectiveGroup(2, { slotBytes: 12 })).toThrow(/multiple of 8/);
    const group = createCpuCollectiveGroup(2, { slotBytes: 64 });
    expect(group.data.byteLength).toBe(2 * 2 * 64);
    expect(() => joinCpuCollective(group, 2)).toThrow(ArgumentError);
    expect(() => joinCpuCollective(group, 0, { timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => joinCpuCollective({ ...group, data: new ArrayBuffer(256) } as never, 0)).toThrow(/SharedArrayBuffer/);
    expect(() => joinCpuCollective(JSON.parse(JSON.stringify(group)), 0)).toThrow(ArgumentError);
    const c = joinCpuCollective(group, 0);
    expect(c).toBeInstanceOf(CpuCollective);
    expect([c.rank, c.worldSize]).toEqual([0, 2]);
    expect(() => joinCpuCollective(group, 0)).toThrow(/already joined/);
  });

  it('local argument errors: the caller gets ShapeError/ArgumentError/DTypeError, peers a CollectiveError, nobody hangs', async () => {
    const group = createCpuCollectiveGroup(2);
    const [a, b] = [joinCpuCollective(group, 0, { timeoutMs: 5000 }), joinCpuCollective(group, 1, { timeoutMs: 5000 })];
    const x = tensor([1, 2, 3, 4], [4, 1]);
    let [ea, eb] = await reasons(a.allToAll(x, [1, 2]), b.allToAll(x, [2, 2]));
    expect(ea).toBeInstanceOf(ShapeError);
    expect(ea.message).toMatch(/sum to 3, but send has 4 rows/);
    expect(eb).toBeInstanceOf(CollectiveError);
    expect(eb.message).toMatch(/rank 0 \(ShapeError\)/);
    [ea, eb] = await reasons(a.allToAll(x, [1, 1.5]), b.allToAll(tensor([1, 2, 3], [3, 1])));
    expect(ea).toBeInstanceOf(ArgumentError);
    expect(eb).toBeInstanceOf(ShapeError); // 3 rows do not split over 2 ranks
    [ea, eb] = await reasons(a.allReduce(tensor([1], [1], 'i32'), 'mean'), b.allReduce(tensor([1], [1], 'bool'), 'sum'));
    expect(ea).toBeInstanceOf(DTypeError);
    expect(eb).toBeInstanceOf(DTypeError);
    [ea, eb] = await reasons(a.allGather(tensor(1)), b.allReduce(tensor([1]), 'prod' as ReduceKind));
    expect(ea).toBeInstanceOf(ShapeError);
    expect(eb).toBeInstanceOf(ArgumentError);
    const gone = tensor([1]);
    gone.dispose();
    [ea, eb] = await reasons(a.allGather(gone), b.barrier({ timeoutMs: -5 }));
    expect(ea.name).toBe('DisposedTensorError');
    expect(eb).toBeInstanceOf(ArgumentError);
    // still in step afterwards
    const [sa, sb] = await Promise.all([a.allReduce(tensor([1, 2])), b.allReduce(tensor([10, 20]))]);
    expect(Array.from(await sa.values())).toEqual([11, 22]);
    expect(Array.from(await sb.values())).toEqual([11, 22]);
  });

  it('close(): later calls reject; a peer waiting for the closed rank fails fast', async () => {
    const group = createCpuCollectiveGroup(2);
    const [a, b] = [joinCpuCollective(group, 0), joinCpuCollective(group, 1)];
    await Promise.all([a.barrier(), b.barrier()]);
    a.close();
    expect(a.isClosed).toBe(true);
    await expect(a.barrier()).rejects.toThrow(CollectiveError);
    await expect(a.allReduce(tensor([1]))).rejects.toThrow(/after close\(\)/);
    const t0 = performance.now();
    await expect(b.barrier()).rejects.toThrow(/rank 0 closed its collective/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('timeouts name the op, the rank and the missing peers, and abort the group', async () => {
    const group = createCpuCollectiveGroup(3);
    const [a, b, c] = range(3).map((r) => joinCpuCollective(group, r));
    const t0 = performance.now();
    const [ea, eb] = await reasons(a.barrier({ timeoutMs: 150 }), b.barrier({ timeoutMs: 5000 }));
    const waited = performance.now() - t0;
    expect(ea).toBeInstanceOf(CollectiveTimeoutError);
    expect(ea.message).toMatch(/^barrier: rank 0 timed out after 150 ms in call #1: rank 2 did not arrive/);
    // rank 1 is woken by the abort rather than waiting for its own 5 s timeout
    expect(eb).toBeInstanceOf(CollectiveTimeoutError);
    expect(eb.message).toMatch(/rank 1, call #1: the group was aborted \(rank 0 timed out in barrier #1\) while waiting for rank 2/);
    expect(waited).toBeLessThan(2000);
    await expect(c.barrier()).rejects.toThrow(/aborted earlier \(rank 0 timed out in barrier #1\)/);
    await expect(a.allGather(tensor([1]))).rejects.toBeInstanceOf(CollectiveError);
  });

  it('abortCpuCollectiveGroup wakes waiters with a CollectiveError', async () => {
    const group = createCpuCollectiveGroup(2);
    const a = joinCpuCollective(group, 0);
    const pending = a.barrier();
    setTimeout(() => abortCpuCollectiveGroup(group, 1), 20);
    await expect(pending).rejects.toThrow(/rank 1 failed/);
  });
});

// ---- worker threads ------------------------------------------------------------------------

describe.each([2, 4])('runCpuRanks with %i ranks (worker threads, built packages)', (n) => {
  const cases = buildCases(n, true);
  let results: Record<string, CaseResult>[];
  let wallMs = 0;

  beforeAll(async () => {
    const t0 = performance.now();
    results = await runCpuRanks<Record<string, CaseResult>>({ worldSize: n, module: fixture('suite-rank.mjs'), data: { cases }, timeoutMs: 30_000 });
    wallMs = performance.now() - t0;
    console.log(
      `runCpuRanks worldSize ${n}: ${wallMs.toFixed(0)} ms in all (worker start-up included); ` +
        timings(results, ['a2a-f32-tokens', 'ar-f32-sum', 'ag-f32-ragged', 'barrier', 'big-a2a-f32', 'big-ar-f32-sum', 'big-ag-bf16']),
    );
  });

  const byOp = (op: Case['op'], big: boolean) => cases.filter((c) => c.op === op && c.name.startsWith('big-') === big);

  it('returns one result per rank, in rank order', () => {
    expect(results).toHaveLength(n);
  });
  it('variable-size allToAll (f32/bf16/i32/u8 rows, zero rows to some ranks) and the equal split', () => {
    checkResults(byOp('allToAll', false), results);
  });
  it('allReduce sum/max/min/mean, bit-exact against the rank-ordered f32 reference', () => {
    checkResults(byOp('allReduce', false), results);
  });
  it('allGather with different leading dims', () => {
    checkResults(byOp('allGather', false), results);
  });
  it('barrier', () => {
    checkResults(byOp('barrier', false), results);
  });
  it('multi-MB payloads (several slots per rank)', () => {
    const big = cases.filter((c) => c.name.startsWith('big-'));
    expect(big.length).toBe(3);
    checkResults(big, results);
  });

  it('a rank that skips a collective: the others get CollectiveTimeoutError naming op, rank and missing peer', async () => {
    const timeoutMs = 250;
    type Outcome = { ok: boolean; name?: string; message?: string };
    const r = await runCpuRanks<{ skipped?: Outcome; next: Outcome; ms: number }>({ worldSize: n, module: fixture('errors-rank.mjs'), data: { scenario: 'timeout', timeoutMs } });
    for (const q of range(n)) {
      if (q === 1) {
        expect(r[1].next.name).toBe('CollectiveError');
        expect(r[1].next.message).toMatch(/^allReduce: rank 1: the group was aborted earlier \(rank \d timed out in barrier #2\)/);
        continue;
      }
      expect(r[q].skipped!.name).toBe('CollectiveTimeoutError');
      expect(r[q].skipped!.message).toMatch(new RegExp(`^barrier: rank ${q}.*rank 1 did not arrive|^barrier: rank ${q}, call #2: the group was aborted .* while waiting for rank 1$`));
      // the rank that timed out waited its timeoutMs; the others were woken by its abort
      if (/timed out after/.test(r[q].skipped!.message!)) expect(r[q].ms).toBeGreaterThanOrEqual(timeoutMs - 5);
      expect(r[q].ms).toBeLessThan(timeoutMs + 2000);
      expect(r[q].next.name).toBe('CollectiveError');
    }
  });

  it('ranks that disagree all get errors, and the group stays usable', async () => {
    const r = await runCpuRanks<Record<string, { ok: boolean; name: string; message: string } | number[]>>({ worldSize: n, module: fixture('errors-rank.mjs'), data: { scenario: 'mismatch' } });
    const sum = (n * (n - 1)) / 2;
    for (const q of range(n)) {
      const o = r[q] as Record<string, { ok: boolean; name: string; message: string }>;
      expect(o.ops.name).toBe('CollectiveError');
      expect(o.ops.message).toMatch(/ranks issued different collectives \(rank 0: allReduce\(sum\) #1; rank 1: barrier #1/);
      expect(o.reduce.message).toMatch(/rank 0: allReduce\(max\) #2; rank 1: allReduce\(sum\) #2/);
      expect(o.dtype.message).toMatch(/^allGather: ranks passed different dtypes \(rank 0: f32, rank 1: i32/);
      expect(o.shape.message).toMatch(/^allReduce: ranks passed different shapes \(rank 0: \[2\], rank 1: \[3\]/);
      expect(o.trailing.message).toMatch(/^allToAll: ranks passed different trailing shapes/);
      expect(o.counts.name).toBe(q === 1 ? 'ShapeError' : 'CollectiveError');
      expect(o.counts.message).toMatch(q === 1 ? /sendCounts .* sum to/ : /failed on rank 1 \(ShapeError\)/);
      expect(o.negative.name).toBe(q === 0 ? 'ArgumentError' : 'CollectiveError');
      expect(o.length.name).toBe('ShapeError');
      expect(o.intMean.name).toBe('DTypeError');
      expect(o.closed.name).toBe('CollectiveError');
      expect(r[q].after).toEqual([sum, n]);
    }
  });

  it('an error in one rank rejects with a CollectiveError naming the rank and the message; the others are stopped', async () => {
    const t0 = performance.now();
    const err = await runCpuRanks({ worldSize: n, module: fixture('errors-rank.mjs'), data: { scenario: 'throws', failRank: n - 1 } }).catch((e) => e);
    expect(err).toBeInstanceOf(CpuRankError);
    expect(err).toBeInstanceOf(CollectiveError);
    expect(err.rank).toBe(n - 1);
    expect(err.errorName).toBe('RangeError');
    expect(err.message).toMatch(new RegExp(`^runCpuRanks: rank ${n - 1} failed: RangeError: boom from rank ${n - 1}`));
    expect((err.cause as Error).stack).toMatch(/errors-rank\.mjs/);
    // the others were blocked in a barrier with the default 60 s timeout
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

describe('runCpuRanks', () => {
  it('rejects an unclonable result and a module without a default export', async () => {
    await expect(runCpuRanks({ worldSize: 2, module: fixture('errors-rank.mjs'), data: { scenario: 'unclonable' } })).rejects.toThrow(/rank [01] failed: TypeError: the rank entry returned a value that cannot be structured-cloned/);
    await expect(runCpuRanks({ worldSize: 1, module: fixture('cases.mjs') })).rejects.toThrow(/has no default export function/);
  });

  it('validates its options', async () => {
    await expect(runCpuRanks({ worldSize: 0, module: fixture('suite-rank.mjs') })).rejects.toThrow(ArgumentError);
    await expect(runCpuRanks({ worldSize: 2, module: fixture('suite-rank.mjs'), timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
  });

  it('runTimeoutMs bounds the whole run', async () => {
    const err = await runCpuRanks({ worldSize: 2, module: fixture('errors-rank.mjs'), data: { scenario: 'timeout', timeoutMs: 5000 }, runTimeoutMs: 300 }).catch((e) => e);
    expect(err).toBeInstanceOf(CollectiveTimeoutError);
    expect(err.message).toMatch(/did not finish within runTimeoutMs = 300 ms/);
  });
});
