/**
 * NCCL collective and launcher. CI machines have no GPU (and usually no libnccl), so this runs
 * what needs neither: the launcher with plain node children, the id-file handshake, the pure
 * arithmetic of the collective (headers, verdicts, counts and offsets), and the addon saying
 * why NCCL is unavailable. The real collectives run on 2 GPUs only (test/gpu/nccl-2gpu.mjs).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend } from '@kiln/backend-cpu';
import { ArgumentError, CollectiveError, CollectiveTimeoutError, DTYPES, DTypeError, ShapeError, type DType, type Tensor } from '@kiln/core';
import { loadAddon } from '@kiln/backend-cuda';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeNet, fakeRank } from './fake-nccl.js';
import { createNcclCollective, exitCodeOf, joinFromEnv, launchRanks, lineSplitter, writeFileAtomic } from '../src/collective/index.js';
import {
  allGatherPlan,
  allToAllPlan,
  decodeHeaders,
  encodeHeader,
  headerWords,
  opCode,
  prefixOffsets,
  reduceRoute,
  resolveSendCounts,
  rowBytes,
  validateHeaders,
  type CallHeader,
} from '../src/collective/plan.js';

const pkg = join(__dirname, '..');
const child = join(__dirname, 'fixtures', 'launch-child.mjs');
const load = loadAddon();
const addon = load.ok ? (load.addon as unknown as { probe(): { ok: boolean; deviceCount: number }; ncclAvailable(): { ok: boolean; reason: string } }) : undefined;
const gpus = addon?.probe().ok ? addon.probe().deviceCount : 0;
const nccl = addon?.ncclAvailable();
const gpus2 = gpus >= 2 && nccl?.ok === true;
const gpuSkipReason = gpus2 ? '' : `needs 2 GPUs and NCCL (here: ${load.ok ? `${gpus} GPU(s), NCCL ${nccl?.ok ? 'ok' : `unavailable: ${nccl?.reason}`}` : load.reason})`;

const tmp = mkdtempSync(join(tmpdir(), 'kiln-nccl-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function launch(nproc: number, mode: string) {
  const out: string[] = [];
  const err: string[] = [];
  const t0 = Date.now();
  const r = await launchRanks({ nproc, argv: [child, mode], stdout: (l) => out.push(l), stderr: (l) => err.push(l), killGraceMs: 2000, forwardSignals: false });
  return { ...r, out, err, ms: Date.now() - t0 };
}

describe('launchRanks (plain node children)', () => {
  it('starts one process per rank with its env, a private id-file directory, and prefixed output', async () => {
    const r = await launch(2, 'ok');
    expect(r.exitCode).toBe(0);
    expect(r.failedRank).toBeUndefined();
    expect(r.ranks.map((x) => x.code)).toEqual([0, 0]);
    for (const rank of [0, 1]) {
      const line = r.out.find((l) => l.startsWith(`[rank ${rank}] rank=`));
      expect(line).toMatch(new RegExp(`^\\[rank ${rank}\\] rank=${rank} world=2 local=${rank} idfile=\\S+nccl-id dirmode=700$`));
      expect(r.err).toContain(`[rank ${rank}] stderr line of ${rank}`);
    }
    // Both ranks got the same id file path, and the launcher removed its directory afterwards.
    const files = r.out.map((l) => /idfile=(\S+)/.exec(l)?.[1]).filter(Boolean);
    expect(new Set(files).size).toBe(1);
    expect(() => statSync(files[0]!)).toThrow();
  });

  it('hands rank 0 id file to the other ranks', async () => {
    const r = await launch(3, 'write-id');
    expect(r.exitCode).toBe(0);
    expect(r.out.filter((l) => l.includes('read id of 128 bytes, first 7'))).toHaveLength(2);
  });

  it('a failing rank stops the others and its exit code is the result', async () => {
    const r = await launch(2, 'fail-rank-1');
    expect(r.exitCode).toBe(3);
    expect(r.failedRank).toBe(1);
    expect(r.ranks[1]).toEqual({ code: 3, signal: null });
    expect(r.ranks[0].signal).toBe('SIGTERM'); // rank 0 was waiting 60 s: the launcher killed it
    expect(r.ms).toBeLessThan(20_000);
  });

  it('a binary that cannot start is a failure of that rank (exit 127), not a hang', async () => {
    const r = await launchRanks({ nproc: 2, argv: [child], execPath: join(tmp, 'no-such-node'), stdout: () => {}, stderr: () => {}, forwardSignals: false });
    expect(r.exitCode).toBe(127);
  });

  it('rejects bad arguments', () => {
    expect(() => launchRanks({ nproc: 0, argv: [child] })).toThrow(ArgumentError);
    expect(() => launchRanks({ nproc: 2, argv: [] })).toThrow(ArgumentError);
  });

  it('exit codes and line splitting', () => {
    expect(exitCodeOf(0, null)).toBe(0);
    expect(exitCodeOf(null, 'SIGKILL')).toBe(137);
    expect(exitCodeOf(null, 'SIGTERM')).toBe(143);
    const lines: string[] = [];
    const s = lineSplitter((l) => lines.push(l));
    s.push('a\nb');
    s.push('c\n\nd');
    s.end();
    expect(lines).toEqual(['a', 'bc', '', 'd']);
  });
});

describe('joinFromEnv (the child side)', () => {
  it('is undefined outside the launcher', async () => {
    expect(await joinFromEnv({ env: {} })).toBeUndefined();
  });

  it('rank 0 writes the id atomically (0600); the others read it', async () => {
    const file = join(tmp, 'id-a');
    const id = Uint8Array.from({ length: 128 }, (_, i) => i);
    const env = (rank: number) => ({ KILN_RANK: String(rank), KILN_WORLD_SIZE: '2', KILN_LOCAL_RANK: String(rank), KILN_NCCL_ID_FILE: file });
    const waiting = joinFromEnv({ env: env(1), timeoutMs: 5000 });
    const r0 = await joinFromEnv({ env: env(0), createUniqueId: () => id });
    const r1 = await waiting;
    expect(r0).toEqual({ rank: 0, worldSize: 2, localRank: 0, uniqueId: id });
    expect(r1?.rank).toBe(1);
    expect(Array.from(r1!.uniqueId)).toEqual(Array.from(id));
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('a rank whose id never comes times out with CollectiveTimeoutError', async () => {
    const env = { KILN_RANK: '1', KILN_WORLD_SIZE: '2', KILN_NCCL_ID_FILE: join(tmp, 'never') };
    await expect(joinFromEnv({ env, timeoutMs: 100 })).rejects.toThrow(CollectiveTimeoutError);
  });

  it('rejects a malformed environment', async () => {
    await expect(joinFromEnv({ env: { KILN_RANK: '2', KILN_WORLD_SIZE: '2', KILN_NCCL_ID_FILE: 'x' } })).rejects.toThrow(ArgumentError);
    await expect(joinFromEnv({ env: { KILN_RANK: 'a', KILN_WORLD_SIZE: '2', KILN_NCCL_ID_FILE: 'x' } })).rejects.toThrow(ArgumentError);
    await expect(joinFromEnv({ env: { KILN_RANK: '0', KILN_WORLD_SIZE: '2' } })).rejects.toThrow(/KILN_NCCL_ID_FILE/);
    await expect(joinFromEnv({ env: { KILN_RANK: '0', KILN_WORLD_SIZE: '1', KILN_NCCL_ID_FILE: join(tmp, 'short') }, createUniqueId: () => new Uint8Array(5) })).rejects.toThrow(/128 bytes/);
  });

  it('writeFileAtomic leaves no temporary file behind', () => {
    const path = join(tmp, 'atomic');
    writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect(Array.from(readFileSync(path))).toEqual([1, 2, 3]);
  });
});

describe('collective arithmetic (pure)', () => {
  const header = (q: number, over: Partial<CallHeader> = {}): CallHeader => ({
    status: 1,
    op: opCode('allToAll'),
    seq: 4,
    dtype: DTYPES.indexOf('e4m3'),
    shape: [5, 128],
    aux: 0,
    bytes: 640,
    counts: [2, 3],
    ...over,
  });

  it('send counts: explicit, even split, and every argument error', () => {
    expect(resolveSendCounts('allToAll', [6, 2], 3, undefined)).toEqual([2, 2, 2]);
    expect(resolveSendCounts('allToAll', [6, 2], 3, [0, 6, 0])).toEqual([0, 6, 0]);
    expect(() => resolveSendCounts('allToAll', [5, 2], 2, undefined)).toThrow(ShapeError);
    expect(() => resolveSendCounts('allToAll', [], 2, undefined)).toThrow(/scalar/);
    expect(() => resolveSendCounts('allToAll', [5], 2, [5])).toThrow(/one per rank/);
    expect(() => resolveSendCounts('allToAll', [5], 2, [6, -1])).toThrow(ArgumentError);
    expect(() => resolveSendCounts('allToAll', [5], 2, [1.5, 3.5])).toThrow(ArgumentError);
    expect(() => resolveSendCounts('allToAll', [5], 2, [1, 3])).toThrow(/sum to 4/);
  });

  it('headers survive encode/decode, local errors included', () => {
    const N = 3;
    const words = new Float64Array(headerWords(N) * N);
    words.set(encodeHeader(N, { op: 1, seq: 7, dtype: 3, shape: [4, 2, 8], aux: 0, bytes: 64, counts: [1, 0, 3] }), 0);
    words.set(encodeHeader(N, { op: 1, seq: 7, error: new ShapeError('allToAll', 'x') }), headerWords(N));
    words.set(encodeHeader(N, { op: 4, seq: 7, dtype: -1, shape: [], aux: 0, bytes: 0, counts: [] }), 2 * headerWords(N));
    const [a, b, c] = decodeHeaders(N, words);
    expect(a).toEqual({ status: 1, op: 1, seq: 7, dtype: 3, shape: [4, 2, 8], aux: 0, bytes: 64, counts: [1, 0, 3] });
    expect(b.status).toBe(2);
    expect(b.aux).toBe(1); // ShapeError
    expect(c.shape).toEqual([]);
    expect(() => decodeHeaders(N, new Float64Array(5))).toThrow(CollectiveError);
  });

  it('every rank reaches the same verdict on mismatched calls', () => {
    expect(() => validateHeaders('allToAll', 4, [header(0), header(1)])).not.toThrow();
    expect(() => validateHeaders('allToAll', 4, [header(0), header(1, { status: 2, aux: 1 })])).toThrow(/failed on rank 1 \(ShapeError\)/);
    expect(() => validateHeaders('allToAll', 4, [header(0), header(1, { op: opCode('barrier') })])).toThrow(/different collectives \(rank 0: allToAll #4; rank 1: barrier #4\)/);
    expect(() => validateHeaders('allToAll', 4, [header(0), header(1, { seq: 5 })])).toThrow(/different collectives/);
    expect(() => validateHeaders('allToAll', 4, [header(0), header(1, { dtype: 0 })])).toThrow(/different dtypes \(rank 0: e4m3, rank 1: f32\)/);
    expect(() => validateHeaders('allToAll', 4, [header(0), header(1, { shape: [5, 64] })])).toThrow(/different trailing shapes/);
    const ar = (q: number, over: Partial<CallHeader> = {}) => header(q, { op: opCode('allReduce'), dtype: 0, shape: [3, 4], ...over });
    expect(() => validateHeaders('allReduce', 4, [ar(0), ar(1, { shape: [4, 3] })])).toThrow(/different shapes/);
    expect(() => validateHeaders('allReduce', 4, [ar(0), ar(1, { aux: 1 })])).toThrow(/allReduce\(sum\) #4; rank 1: allReduce\(max\)/);
    expect(() => validateHeaders('barrier', 4, [header(0, { op: 4 }), header(1, { op: 4, dtype: 0 })])).not.toThrow();
  });

  it('allToAll: bytes sent and received, counts exchanged through the headers', () => {
    // rank q's counts[p] = rows q sends to p; 3 ranks, rows of 10 bytes.
    const counts = [
      [1, 0, 4],
      [2, 2, 0],
      [0, 5, 3],
    ];
    const peers = counts.map((c, q) => header(q, { counts: c }));
    const p1 = allToAllPlan(1, peers, 10);
    expect(p1.sendBytes).toEqual([20, 20, 0]);
    expect(p1.recvCounts).toEqual([0, 2, 5]);
    expect(p1.recvBytes).toEqual([0, 20, 50]);
    expect(p1.recvRows).toBe(7);
    expect(prefixOffsets(p1.recvBytes)).toEqual([0, 0, 20, 70]);
    // Conservation: what q sends to r is what r receives from q.
    for (let q = 0; q < 3; q++) for (let r = 0; r < 3; r++) expect(allToAllPlan(q, peers, 10).sendBytes[r]).toBe(allToAllPlan(r, peers, 10).recvBytes[q]);
  });

  it('allGather: uneven leading dims, and when ncclAllGather applies', () => {
    const peers = [header(0, { shape: [2, 4] }), header(1, { shape: [0, 4] }), header(2, { shape: [5, 4] })];
    expect(allGatherPlan(peers, rowBytes([2, 4], 4))).toEqual({ recvBytes: [32, 0, 80], rows: 7, equal: false });
    expect(allGatherPlan([header(0, { shape: [3, 4] }), header(1, { shape: [3, 4] })], 16).equal).toBe(true);
    expect(rowBytes([7], 2)).toBe(2);
    expect(rowBytes([7, 3, 5], 1)).toBe(15);
  });

  it('reductions: native NCCL, through f32, or a DTypeError', () => {
    expect(reduceRoute('f32', 'sum')).toEqual({ kind: 'native', ncclOp: 'sum' });
    expect(reduceRoute('f32', 'mean')).toEqual({ kind: 'native', ncclOp: 'sum' }); // then / N
    expect(reduceRoute('i32', 'max')).toEqual({ kind: 'native', ncclOp: 'max' });
    expect(reduceRoute('bf16', 'sum')).toEqual({ kind: 'via-f32' });
    expect(reduceRoute('e4m3', 'max')).toEqual({ kind: 'via-f32' });
    expect(reduceRoute('i32', 'mean').kind).toBe('error');
    expect(reduceRoute('bool', 'sum').kind).toBe('error');
    expect(reduceRoute('bool', 'max')).toEqual({ kind: 'native', ncclOp: 'max' });
  });
});

describe('NCCL availability', () => {
  it.skipIf(!load.ok)('the addon reports NCCL unavailable with a reason when libnccl cannot be loaded', () => {
    const script = `const a = require(${JSON.stringify(load.ok ? load.path : '')}); console.log(JSON.stringify(a.ncclAvailable()));`;
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, KILN_NCCL_LIBRARY: '/nonexistent/libnccl.so.2' }, encoding: 'utf8' });
    expect(r.status).toBe(0);
    const av = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: boolean; reason: string; version: number };
    expect(av.ok).toBe(false);
    expect(av.version).toBe(0);
    expect(av.reason).toMatch(/NCCL could not be loaded \(\/nonexistent\/libnccl\.so\.2: .*KILN_NCCL_LIBRARY/);
  });

  it.skipIf(!load.ok || nccl?.ok === true)('without libnccl, ncclUniqueId throws KILN_NCCL_UNAVAILABLE instead of crashing', () => {
    const a = load.ok ? (load.addon as unknown as { ncclUniqueId(): Uint8Array; ncclPoll(): string }) : undefined;
    expect(() => a!.ncclUniqueId()).toThrow(/NCCL could not be loaded/);
    expect(a!.ncclPoll()).toBe('idle');
  });

  it('createNcclCollective says why NCCL is unusable (CollectiveError), and checks its arguments', async () => {
    const backend = {
      name: 'cuda',
      addon: { ncclAvailable: () => ({ ok: false, reason: 'NCCL could not be loaded (test)', version: 0 }) },
      storageOf: () => {
        throw new Error('unused');
      },
      wrapStorage: () => {
        throw new Error('unused');
      },
      allocStorage: () => {
        throw new Error('unused');
      },
      release: () => {},
    };
    const id = new Uint8Array(128);
    await expect(createNcclCollective({ backend: backend as never, rank: 0, worldSize: 2, uniqueId: id })).rejects.toThrow(/NCCL could not be loaded \(test\)/);
    await expect(createNcclCollective({ backend: backend as never, rank: 0, worldSize: 2, uniqueId: id })).rejects.toThrow(CollectiveError);
    await expect(createNcclCollective({ backend: backend as never, rank: 2, worldSize: 2, uniqueId: id })).rejects.toThrow(ArgumentError);
    await expect(createNcclCollective({ backend: backend as never, rank: 0, worldSize: 2, uniqueId: new Uint8Array(16) })).rejects.toThrow(/128-byte/);
    await expect(createNcclCollective({ backend: backend as never, rank: 0, worldSize: 2, uniqueId: id, timeoutMs: 0 })).rejects.toThrow(/timeoutMs/);
  });
});

describe('NcclCollective over a simulated NCCL (3 ranks in one process)', () => {
  const cpu = new CpuBackend();
  afterAll(() => cpu.dispose());
  const N = 3;
  async function group(timeoutMs = 5000) {
    const net = new FakeNet(N);
    const ranks = [0, 1, 2].map((r) => fakeRank(net, r, cpu));
    const colls = await Promise.all(ranks.map((b, r) => createNcclCollective({ backend: b, rank: r, worldSize: N, uniqueId: new Uint8Array(128), timeoutMs })));
    return { net, ranks, colls };
  }
  const bytesOf = async (t: Tensor) => {
    const d = await t.data();
    return Array.from(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  };

  it('allToAll with uneven counts (zeros included) moves FP8 codes, f32 and bf16 byte for byte', async () => {
    const { ranks, colls } = await group();
    const counts = [
      [2, 0, 3],
      [1, 1, 0],
      [0, 4, 2],
    ];
    for (const [dtype, width] of [['e4m3', 5], ['f32', 2], ['bf16', 3]] as [DType, number][]) {
      const bpe = dtype === 'f32' ? 4 : dtype === 'bf16' ? 2 : 1;
      const codes = (q: number) => {
        const rows = counts[q].reduce((a, b) => a + b, 0);
        return Array.from({ length: rows * width }, (_, i) => (dtype === 'f32' ? q * 1000 + i + 0.5 : (q * 40 + i) & 0xff));
      };
      const sends = ranks.map((b, q) => b.tensor(codes(q), [counts[q].reduce((a, c) => a + c, 0), width], dtype));
      const pending = colls.map((c, q) => c.allToAll(sends[q], counts[q]));
      for (const t of sends) t.dispose(); // inputs were copied when the call was issued
      const results = await Promise.all(pending);
      for (let r = 0; r < N; r++) {
        expect(results[r].recvCounts).toEqual(counts.map((c) => c[r]));
        const expected: number[] = [];
        for (let q = 0; q < N; q++) {
          const src = ranks[q].tensor(codes(q), [codes(q).length], dtype);
          const b = await bytesOf(src);
          src.dispose();
          const off = counts[q].slice(0, r).reduce((a, c) => a + c, 0) * width * bpe;
          expected.push(...b.slice(off, off + counts[q][r] * width * bpe));
        }
        expect(results[r].tensor.shape).toEqual([counts.reduce((a, c) => a + c[r], 0), width]);
        expect(results[r].tensor.dtype).toBe(dtype);
        expect(await bytesOf(results[r].tensor)).toEqual(expected);
        results[r].tensor.dispose();
      }
    }
  });

  it('allReduce: sum / mean / max / min on f32, i32 sum, bf16 through f32; integer mean is a DTypeError on every rank', async () => {
    const { ranks, colls } = await group();
    const vals = (q: number) => [q + 0.5, -q, 10 * q, 1 / (q + 1)].map(Math.fround);
    const xs = ranks.map((b, q) => b.tensor(vals(q), [2, 2], 'f32'));
    for (const op of ['sum', 'mean', 'max', 'min'] as const) {
      const ys = await Promise.all(colls.map((c, q) => c.allReduce(xs[q], op)));
      const want = [0, 1, 2, 3].map((i) => {
        const v = [0, 1, 2].map((q) => vals(q)[i]);
        if (op === 'max') return Math.max(...v);
        if (op === 'min') return Math.min(...v);
        const s = Math.fround(Math.fround(v[0] + v[1]) + v[2]);
        return op === 'mean' ? Math.fround(s / N) : s;
      });
      for (const y of ys) {
        expect(y.shape).toEqual([2, 2]);
        expect(Array.from(await y.data())).toEqual(want);
        y.dispose();
      }
    }
    const is = ranks.map((b, q) => b.tensor([q, 2 * q, 7], [3], 'i32'));
    const ys = await Promise.all(colls.map((c, q) => c.allReduce(is[q], 'sum')));
    for (const y of ys) expect(Array.from(await y.data())).toEqual([3, 6, 21]);
    const bf = ranks.map((b) => b.tensor([0x3fc0 /* 1.5 */], [1], 'bf16'));
    const ybf = await Promise.all(colls.map((c, q) => c.allReduce(bf[q], 'sum')));
    for (const y of ybf) {
      expect(y.dtype).toBe('bf16');
      expect(Array.from(await y.data())).toEqual([0x4090]); // 4.5
    }
    const errs = await Promise.allSettled(colls.map((c, q) => c.allReduce(is[q], 'mean')));
    for (const e of errs) expect((e as PromiseRejectedResult).reason).toBeInstanceOf(DTypeError);
    await Promise.all(colls.map((c) => c.barrier())); // still in step
  });

  it('allGather with differing leading dims (send/recv) and equal ones (ncclAllGather)', async () => {
    const { net, ranks, colls } = await group();
    const xs = ranks.map((b, q) => b.tensor(Array.from({ length: q * 2 }, (_, i) => q * 10 + i), [q, 2], 'f32'));
    const ys = await Promise.all(colls.map((c, q) => c.allGather(xs[q])));
    for (const y of ys) {
      expect(y.shape).toEqual([3, 2]);
      expect(Array.from(await y.data())).toEqual([10, 11, 20, 21, 22, 23]);
    }
    expect(net.issued[0].slice(-1)).toEqual(['allGatherV']);
    const es = ranks.map((b, q) => b.tensor([q], [1, 1], 'i32'));
    const ye = await Promise.all(colls.map((c, q) => c.allGather(es[q])));
    expect(Array.from(await ye[1].data())).toEqual([0, 1, 2]);
    expect(net.issued[0].slice(-1)).toEqual(['allGather']);
  });

  it('mismatched calls fail on every rank with the same message; a local argument error fails at once elsewhere; the group stays usable', async () => {
    const { ranks, colls } = await group();
    const x = ranks.map((b) => b.tensor([1, 2], [2], 'f32'));
    const r1 = await Promise.allSettled([colls[0].allReduce(x[0]), colls[1].allReduce(x[1]), colls[2].barrier()]);
    const msgs = r1.map((r) => ((r as PromiseRejectedResult).reason as Error).message);
    for (const m of msgs) expect(m).toMatch(/ranks issued different collectives \(rank 0: allReduce\(sum\) #1; rank 1: allReduce\(sum\) #1; rank 2: barrier #1\)/);
    const r2 = await Promise.allSettled([colls[0].allToAll(x[0], [1, 1, 0]), colls[1].allToAll(x[1], [1, 1]), colls[2].allToAll(x[2], [0, 0, 2])]);
    expect((r2[1] as PromiseRejectedResult).reason).toBeInstanceOf(ShapeError);
    for (const q of [0, 2]) expect(((r2[q] as PromiseRejectedResult).reason as Error).message).toMatch(/call #2 failed on rank 1 \(ShapeError\)/);
    const shapes = [ranks[0].tensor([1, 2], [1, 2], 'f32'), ranks[1].tensor([1, 2, 3], [1, 3], 'f32'), ranks[2].tensor([1, 2], [1, 2], 'f32')];
    const r3 = await Promise.allSettled(colls.map((c, q) => c.allGather(shapes[q])));
    for (const r of r3) expect(((r as PromiseRejectedResult).reason as Error).message).toMatch(/different trailing shapes/);
    const ok = await Promise.all(colls.map((c, q) => c.allReduce(x[q], 'sum')));
    expect(Array.from(await ok[2].data())).toEqual([3, 6]);
  });

  it('a rank that skips a collective: the others get CollectiveTimeoutError within the timeout, then "aborted earlier"; close() ends the group', async () => {
    const { ranks, colls } = await group(300);
    const x = ranks.map((b) => b.tensor([1], [1], 'f32'));
    const t0 = Date.now();
    const r = await Promise.allSettled([colls[0].allReduce(x[0]), colls[1].allReduce(x[1], 'sum', { timeoutMs: 200 })]);
    const ms = Date.now() - t0;
    expect((r[0] as PromiseRejectedResult).reason).toBeInstanceOf(CollectiveTimeoutError);
    expect(((r[0] as PromiseRejectedResult).reason as Error).message).toMatch(/rank 0 timed out after 300 ms in call #1: a peer did not take part/);
    expect(((r[1] as PromiseRejectedResult).reason as Error).message).toMatch(/rank 1 timed out after 200 ms/);
    expect(ms).toBeLessThan(2000);
    await expect(colls[0].barrier()).rejects.toThrow(/aborted earlier/);
    colls[2].close();
    await expect(colls[2].barrier()).rejects.toThrow(/after close\(\)/);
  });
});

describe('NCCL on 2 GPUs', () => {
  it.skipIf(!gpus2)(`allToAll (FP8 / f32 / bf16, uneven), allReduce, allGather, barrier, timeout: test/gpu/nccl-2gpu.mjs ${gpuSkipReason}`, () => {
    const b = spawnSync(process.execPath, [join(__dirname, 'gpu', 'build-bundle.mjs')], { encoding: 'utf8' });
    expect(b.status, b.stderr).toBe(0);
    const r = spawnSync(process.execPath, [join(pkg, '..', '..', '.carry', 'nccl-gpu.bundle.mjs'), '--nproc', '2'], {
      encoding: 'utf8',
      env: { ...process.env, KILN_CUDA_ADDON: load.ok ? load.path : '' },
      timeout: 300_000,
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('all 2 ranks passed');
  }, 320_000);
});
