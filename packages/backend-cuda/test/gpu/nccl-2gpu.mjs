#!/usr/bin/env node
// NCCL collective check + all-to-all benchmark on real GPUs (plain node, no vitest).
// Runs from a self-contained bundle (node_modules does not travel to GPU machines):
//   node packages/backend-cuda/test/gpu/build-bundle.mjs        # -> .carry/nccl-gpu.bundle.mjs
//   KILN_CUDA_ADDON=$PWD/packages/backend-cuda/build/Release/kiln_cuda.node \
//     node .carry/nccl-gpu.bundle.mjs --nproc 2 [--bench] [--out DIR]
// Without KILN_RANK it is the launcher (launchRanks, one process per GPU); with it, one rank.
// Checks (each prints `ok ...` or throws, which fails the rank and the run):
//   allToAll with uneven splits (zero rows included) of FP8 codes, f32 scales, bf16 rows, byte-exact;
//   allReduce sum / mean / max / min (f32), sum (i32), sum (bf16 via f32); allGather with
//   differing leading dims; barrier; mismatched calls -> CollectiveError on every rank and the
//   group still works; and (last, N >= 2) rank 1 skipping a collective -> rank 0 gets a
//   CollectiveTimeoutError within its timeout (no hang). --bench: all-to-all 1 MiB .. 256 MiB.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CollectiveError, CollectiveTimeoutError, fromStorage } from '@kiln/core';
import { CudaBackend } from '@kiln/backend-cuda';
import { createNcclCollective, joinFromEnv, launchRanks } from '../../src/collective/index.js';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};

function assert(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}
function sameBytes(a, b, what) {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  assert(x.length === y.length, `${what}: ${x.length} bytes, expected ${y.length}`);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) throw new Error(`check failed: ${what}: byte ${i} is ${x[i]}, expected ${y[i]}`);
}

// ---- launcher side ----------------------------------------------------------------------------
if (process.env.KILN_RANK === undefined) {
  const nproc = Number(value('--nproc', '2'));
  const r = await launchRanks({ nproc, argv: [process.argv[1], ...args] });
  console.log(r.exitCode === 0 ? `nccl-gpu: all ${nproc} ranks passed` : `nccl-gpu: rank ${r.failedRank} failed (exit ${r.exitCode})`);
  process.exit(r.exitCode);
}

// ---- rank side --------------------------------------------------------------------------------
const joined = await joinFromEnv();
const { rank, worldSize: N } = joined;
const backend = new CudaBackend();
const log = (s) => console.log(s);
log(`rank ${rank}/${N} on ${backend.props.name} (ordinal ${backend.props.ordinal}), NCCL ${backend.addon.ncclAvailable().versionString}`);
const t0 = performance.now();
const coll = await createNcclCollective({ backend, rank, worldSize: N, uniqueId: joined.uniqueId, timeoutMs: 30_000 });
log(`ok joined in ${(performance.now() - t0).toFixed(0)} ms`);
const dev = (codes, shape, dtype) => fromStorage(codes, shape, dtype, { backend });

// Deterministic per-rank data: byte b of rank q's payload of kind k.
const byteOf = (q, k, i) => (q * 97 + k * 31 + i * 13 + ((i >> 8) * 7)) & 0xff;

// ---- allToAll, uneven -------------------------------------------------------------------------
// counts[q][p] = rows rank q sends to rank p (zeros included).
// 2 ranks: rank 0 sends rank 1 nothing (a zero count on the wire), rank 1 sends 4 rows to rank 0.
const counts =
  N === 2
    ? [
        [3, 0],
        [4, 2],
      ]
    : Array.from({ length: N }, (_, q) => Array.from({ length: N }, (_, p) => (q * 7 + p * 3 + 2) % 6));
for (const [kind, dtype, width, Ctor] of [
  [0, 'e4m3', 96, Uint8Array], // FP8 codes, 96 per row
  [1, 'f32', 3, Float32Array], // per-row block scales
  [2, 'bf16', 40, Uint16Array],
]) {
  const payload = (q) => {
    const rows = counts[q].reduce((a, b) => a + b, 0);
    const bytes = new Uint8Array(rows * width * Ctor.BYTES_PER_ELEMENT);
    for (let i = 0; i < bytes.length; i++) bytes[i] = byteOf(q, kind, i);
    // keep f32 values finite-or-not does not matter: bytes travel as they are
    return { rows, codes: new Ctor(bytes.buffer) };
  };
  const mine = payload(rank);
  const send = dev(mine.codes, [mine.rows, width], dtype);
  const { tensor, recvCounts } = await coll.allToAll(send, counts[rank]);
  send.dispose(); // after the call: inputs are copied at issue time
  const expectCounts = counts.map((c) => c[rank]);
  assert(JSON.stringify(recvCounts) === JSON.stringify(expectCounts), `allToAll ${dtype} recvCounts ${recvCounts} vs ${expectCounts}`);
  const rowBytes = width * Ctor.BYTES_PER_ELEMENT;
  const parts = [];
  for (let q = 0; q < N; q++) {
    const src = new Uint8Array(payload(q).codes.buffer);
    const off = counts[q].slice(0, rank).reduce((a, b) => a + b, 0);
    parts.push(src.subarray(off * rowBytes, (off + counts[q][rank]) * rowBytes));
  }
  const expected = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) expected.set(p, (o += p.length) - p.length);
  assert(tensor.shape[0] === expectCounts.reduce((a, b) => a + b, 0) && tensor.shape[1] === width, `allToAll ${dtype} shape ${tensor.shape}`);
  sameBytes(await tensor.data(), expected, `allToAll ${dtype}`);
  tensor.dispose();
  log(`ok allToAll uneven ${dtype} (sent ${counts[rank]} rows, received ${recvCounts})`);
}
// Even split without counts.
{
  const x = dev(Int32Array.from({ length: 4 * N * 2 }, (_, i) => rank * 1000 + i), [4 * N, 2], 'i32');
  const { tensor, recvCounts } = await coll.allToAll(x);
  const got = await tensor.data();
  for (let q = 0; q < N; q++) for (let j = 0; j < 8; j++) assert(got[q * 8 + j] === q * 1000 + rank * 8 + j, `even allToAll element ${q * 8 + j}`);
  assert(recvCounts.every((c) => c === 4), 'even recvCounts');
  x.dispose();
  tensor.dispose();
  log('ok allToAll even split (i32)');
}

// ---- allReduce --------------------------------------------------------------------------------
{
  const n = 1000;
  const vals = (q) => Float32Array.from({ length: n }, (_, i) => Math.fround((q + 1) * i * 0.37 - q * 5.5 + (i % 7 === 0 ? -1e-3 : 0)));
  const all = Array.from({ length: N }, (_, q) => vals(q));
  const x = dev(vals(rank), [10, 100], 'f32');
  for (const op of ['sum', 'mean', 'max', 'min']) {
    const y = await coll.allReduce(x, op);
    const got = await y.data();
    for (let i = 0; i < n; i++) {
      let e = all[0][i];
      for (let q = 1; q < N; q++) e = op === 'max' ? Math.max(e, all[q][i]) : op === 'min' ? Math.min(e, all[q][i]) : Math.fround(e + all[q][i]);
      if (op === 'mean') e = Math.fround(e / N);
      // N <= 2: one addition, so NCCL's order cannot differ from the rank order.
      const tol = N <= 2 ? 0 : 1e-5 * Math.abs(e);
      if (!(Math.abs(got[i] - e) <= tol)) throw new Error(`check failed: allReduce ${op}[${i}] = ${got[i]}, expected ${e}`);
    }
    assert(y.shape.join() === '10,100' && y.dtype === 'f32', `allReduce ${op} shape/dtype`);
    y.dispose();
    log(`ok allReduce ${op} f32`);
  }
  x.dispose();
  const xi = dev(Int32Array.from({ length: 64 }, (_, i) => (rank + 1) * i), [64], 'i32');
  const yi = await coll.allReduce(xi, 'sum');
  const gi = await yi.data();
  for (let i = 0; i < 64; i++) assert(gi[i] === ((N * (N + 1)) / 2) * i, `allReduce sum i32[${i}]`);
  xi.dispose();
  yi.dispose();
  log('ok allReduce sum i32');
  // bf16 through f32: 1.5 * (rank + 1) is exact in bf16, and so is the sum.
  const xb = dev(Uint16Array.from({ length: 16 }, () => 0), [16], 'bf16');
  const one = await coll.allReduce(xb, 'max');
  assert((await one.data()).every((v) => v === 0), 'allReduce max bf16 zeros');
  xb.dispose();
  one.dispose();
  log('ok allReduce max bf16 (via f32)');
}

// ---- allGather, uneven ------------------------------------------------------------------------
{
  const rowsOf = (q) => (q + 1) * 3 - 1;
  const data = (q) => Float32Array.from({ length: rowsOf(q) * 4 }, (_, i) => q * 100 + i);
  const x = dev(data(rank), [rowsOf(rank), 4], 'f32');
  const y = await coll.allGather(x);
  const expected = new Float32Array(Array.from({ length: N }, (_, q) => Array.from(data(q))).flat());
  assert(y.shape[0] === expected.length / 4, `allGather rows ${y.shape[0]}`);
  sameBytes(await y.data(), expected, 'allGather uneven');
  x.dispose();
  y.dispose();
  const e = dev(new Float32Array(8), [2, 4], 'f32');
  const ye = await coll.allGather(e);
  assert(ye.shape[0] === 2 * N, 'allGather even rows');
  e.dispose();
  ye.dispose();
  log('ok allGather uneven and even');
}

// ---- barrier and mismatches ---------------------------------------------------------------------
{
  await coll.barrier();
  log('ok barrier');
  if (N >= 2) {
    // Different trailing shapes: every rank gets the same CollectiveError, then the group works.
    const bad = dev(new Float32Array(rank === 0 ? 6 : 8), rank === 0 ? [2, 3] : [2, 4], 'f32');
    let err;
    try {
      await coll.allGather(bad);
    } catch (e) {
      err = e;
    }
    assert(err instanceof CollectiveError && /trailing shapes/.test(err.message), `mismatch error: ${err}`);
    bad.dispose();
    // A local argument error on rank 1 only: rank 1 gets its ShapeError, rank 0 a CollectiveError.
    const z = dev(new Float32Array(6), [3, 2], 'f32');
    let err2;
    try {
      await coll.allToAll(z, rank === 1 ? [1, 1] : [3, 0]);
    } catch (e) {
      err2 = e;
    }
    assert(rank === 1 ? err2?.name === 'ShapeError' : err2 instanceof CollectiveError && /failed on rank 1/.test(err2.message), `local error: ${err2}`);
    z.dispose();
    await coll.barrier();
    log('ok mismatches are errors on every rank and the group stays usable');
  }
}

// ---- benchmark ----------------------------------------------------------------------------------
const bench = [];
if (flag('--bench') && N >= 2) {
  const a = backend.addon;
  const sizes = [];
  for (let s = 1 << 20; s <= 256 << 20; s *= 2) sizes.push(s);
  const rawWait = async () => {
    for (;;) {
      const s = a.ncclPoll();
      if (s === 'done') return;
      if (s !== 'pending') throw new Error(s);
    }
  };
  for (const bytes of sizes) {
    const rows = bytes / 1024;
    const x = dev(new Uint8Array(bytes), [rows, 1024], 'u8');
    const iters = bytes >= 64 << 20 ? 10 : 25;
    // kiln's collective (header exchange + input copy + output alloc + NCCL), as the model uses it
    for (let i = 0; i < 3; i++) (await coll.allToAll(x)).tensor.dispose();
    await coll.barrier();
    let t = performance.now();
    for (let i = 0; i < iters; i++) (await coll.allToAll(x)).tensor.dispose();
    const kilnMs = (performance.now() - t) / iters;
    // the bare binding: grouped ncclSend/ncclRecv only
    const src = backend.storageOf(x);
    const out = backend.allocStorage(bytes);
    const per = new Array(N).fill(bytes / N);
    for (let i = 0; i < 3; i++) {
      a.ncclAllToAllV(src.ptr, per, out.ptr, per);
      await rawWait();
    }
    await coll.barrier();
    t = performance.now();
    for (let i = 0; i < iters; i++) {
      a.ncclAllToAllV(src.ptr, per, out.ptr, per);
      await rawWait();
    }
    const rawMs = (performance.now() - t) / iters;
    backend.release(out);
    x.dispose();
    const gbps = (ms) => bytes / (ms / 1000) / 1e9;
    const row = { bytes, kilnMs, rawMs, kilnAlgGBps: gbps(kilnMs), rawAlgGBps: gbps(rawMs), kilnBusGBps: (gbps(kilnMs) * (N - 1)) / N, rawBusGBps: (gbps(rawMs) * (N - 1)) / N };
    bench.push(row);
    log(`bench allToAll ${(bytes / 2 ** 20).toFixed(0)} MiB: collective ${kilnMs.toFixed(3)} ms (${row.kilnAlgGBps.toFixed(1)} GB/s), raw binding ${rawMs.toFixed(3)} ms (${row.rawAlgGBps.toFixed(1)} GB/s)`);
  }
  // Small-message latency: barrier (the header step alone) and a 4 KiB f32 allReduce; and a
  // gradient-sized allReduce (64 MiB f32) as data parallelism issues it.
  const timeCalls = async (n, fn) => {
    for (let i = 0; i < 5; i++) await fn();
    await coll.barrier();
    const t = performance.now();
    for (let i = 0; i < n; i++) await fn();
    return (performance.now() - t) / n;
  };
  const small = dev(new Float32Array(1024), [1024], 'f32');
  const big = dev(new Float32Array(16 << 20), [16 << 20], 'f32');
  const latency = {
    barrierUs: 1000 * (await timeCalls(200, () => coll.barrier())),
    allReduce4KiBUs: 1000 * (await timeCalls(200, async () => (await coll.allReduce(small, 'sum')).dispose())),
    allReduce64MiBMs: await timeCalls(10, async () => (await coll.allReduce(big, 'sum')).dispose()),
  };
  small.dispose();
  big.dispose();
  log(`bench barrier ${latency.barrierUs.toFixed(1)} us, allReduce 4 KiB ${latency.allReduce4KiBUs.toFixed(1)} us, allReduce 64 MiB ${latency.allReduce64MiBMs.toFixed(3)} ms`);
  if (rank === 0) {
    const out = value('--out', '.');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'kiln-alltoall.json'), JSON.stringify({ worldSize: N, device: backend.props.name, nccl: backend.addon.ncclAvailable().versionString, latency, results: bench }, null, 2));
  }
}

// ---- timeout: rank 1 skips a collective ---------------------------------------------------------
if (N >= 2) {
  await coll.barrier();
  if (rank === 0) {
    const x = dev(new Float32Array(1024), [1024], 'f32');
    const start = performance.now();
    let err;
    try {
      await coll.allReduce(x, 'sum', { timeoutMs: 2000 });
    } catch (e) {
      err = e;
    }
    const ms = performance.now() - start;
    assert(err instanceof CollectiveTimeoutError, `expected CollectiveTimeoutError, got ${err}`);
    assert(ms < 2000 + 1500, `timeout took ${ms.toFixed(0)} ms`);
    let later;
    try {
      await coll.barrier();
    } catch (e) {
      later = e;
    }
    assert(later instanceof CollectiveError && /aborted earlier/.test(later.message), `later call after timeout: ${later}`);
    log(`ok timeout: rank 1 skipped allReduce -> ${err.name} after ${ms.toFixed(0)} ms (${err.message})`);
  } else {
    // Wait past rank 0's timeout, then leave without joining.
    await new Promise((r) => setTimeout(r, 3000));
    log('ok skipped a collective on purpose');
  }
  backend.addon.ncclAbort();
} else {
  await coll.closeAndWait();
  // One GPU: joining a world of 2 whose other rank never comes must time out (abort, no hang).
  const start = performance.now();
  let err;
  try {
    await createNcclCollective({ backend, rank: 0, worldSize: 2, uniqueId: backend.addon.ncclUniqueId(), timeoutMs: 3000 });
  } catch (e) {
    err = e;
  }
  const ms = performance.now() - start;
  assert(err instanceof CollectiveTimeoutError && ms < 6000, `join timeout: ${err} after ${ms.toFixed(0)} ms`);
  assert(backend.addon.ncclState().phase === 'none', 'state after the aborted join');
  log(`ok joining with a missing rank -> ${err.name} after ${ms.toFixed(0)} ms`);
}
log('ok done');
process.exit(0);
