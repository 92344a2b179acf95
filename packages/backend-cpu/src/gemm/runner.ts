/**
 * The task runner shared by the main thread and the worker threads.
 *
 * It is kept as JavaScript source text so that workers can be started from an eval'd
 * string (no worker file to resolve, identical behaviour from TS sources under vitest and
 * from the bundled ESM/CJS dist); the main thread builds the very same function from it.
 *
 * A job is a list of NTASKS tasks, claimed in order through an atomic counter (dynamic
 * scheduling: a thread that is slow, busy elsewhere, or not started yet simply takes fewer
 * tasks). A task may depend on every task before its phase start; it then waits until the
 * DONE counter reaches that start. Tasks are claimed in order, so every task it waits for
 * is already claimed by a running thread: no deadlock.
 */

/** Indices into the Int32Array control block (a SharedArrayBuffer). */
export const C = {
  GEN: 0, // job generation: odd while the main thread writes a job, even when published
  ACTIVE: 1, // threads inside the current job
  NEXT: 2, // next task to claim
  DONE: 3, // tasks finished
  ERROR: 4, // non-zero if a task threw
  NTASKS: 5,
  MODE: 6, // 1: whole batch entries per task; 2: entries in sequence, each split in tiles
  M: 7,
  N: 8,
  K: 9,
  TRANS_A: 10,
  TRANS_B: 11,
  TABLE: 12, // byte address of the [A, B, C] u32 address table
  ENTRIES: 13,
  GROUP: 14, // mode 1: entries per task
  THR_BASE: 15, // per-thread buffers: scratch, then (mode 1) packed A and packed B
  THR_STRIDE: 16,
  PA: 17, // mode 2: shared packed A
  PB: 18, // mode 2: shared packed B
  A_TASKS: 19, // mode 2: pack-A tasks per entry
  B_TASKS: 20, // mode 2: pack-B tasks per entry
  MCH: 21, // mode 2: rows per compute tile
  NCH: 22, // mode 2: columns per compute tile
  MT: 23, // mode 2: tile rows
  NT: 24, // mode 2: tile columns
  STOP: 25, // set to 1 to make workers exit
  THREADS: 26, // threads taking part in this job (tid < THREADS), main thread included
  SIZE: 32,
} as const;

export const SCRATCH_BYTES = 128;

/** Wasm exports used by the runner. */
export interface KernelExports {
  peek(ptr: number): number;
  packA(a: number, transA: number, m: number, k: number, dst: number, s0: number, s1: number): void;
  packB(b: number, transB: number, k: number, n: number, dst: number, t0: number, t1: number): void;
  compute(pa: number, pb: number, c: number, m: number, n: number, k: number, r0: number, r1: number, c0: number, c1: number, scratch: number): void;
  batch(table: number, e0: number, e1: number, m: number, n: number, k: number, transA: number, transB: number, pa: number, pb: number, scratch: number): void;
  smallLimit(): number;
}

export type Runner = (tid: number) => void;

/** `(exports, ctrl: Int32Array) => (tid) => void`, as source text. */
export const RUNNER_SOURCE = `(function makeRunner(ex, ctrl) {
  const U = (i) => ctrl[i] >>> 0;
  function waitDone(target) {
    for (let spin = 0; ; spin++) {
      const d = Atomics.load(ctrl, ${C.DONE});
      if (d >= target) return;
      if (spin > 2000) Atomics.wait(ctrl, ${C.DONE}, d, 5);
    }
  }
  function task(t, tid) {
    const m = ctrl[${C.M}], n = ctrl[${C.N}], k = ctrl[${C.K}];
    const ta = ctrl[${C.TRANS_A}], tb = ctrl[${C.TRANS_B}];
    const table = U(${C.TABLE});
    const thr = U(${C.THR_BASE}) + tid * U(${C.THR_STRIDE});
    if (ctrl[${C.MODE}] === 1) {
      const g = ctrl[${C.GROUP}];
      const e0 = t * g, e1 = Math.min(ctrl[${C.ENTRIES}], e0 + g);
      const ms = (m + 1) >> 1, ns = (n + 15) >> 4;
      const pa = thr + ${SCRATCH_BYTES}, pb = pa + ms * k * 8;
      ex.batch(table, e0, e1, m, n, k, ta, tb, pa, pb, thr);
      return;
    }
    const at = ctrl[${C.A_TASKS}], bt = ctrl[${C.B_TASKS}];
    const per = at + bt + ctrl[${C.MT}] * ctrl[${C.NT}];
    const e = Math.floor(t / per), r = t - e * per, base = e * per;
    const row = table + e * 12;
    if (r < at + bt) {
      if (base > 0) waitDone(base);
      if (r < at) {
        const a = ex.peek(row);
        if (e > 0 && ex.peek(row - 12) === a) return;
        const ms = (m + 1) >> 1, ch = Math.ceil(ms / at);
        ex.packA(a, ta, m, k, U(${C.PA}), r * ch, Math.min(ms, (r + 1) * ch));
      } else {
        const b = ex.peek(row + 4);
        if (e > 0 && ex.peek(row - 8) === b) return;
        const ns = (n + 15) >> 4, ch = Math.ceil(ns / bt), q = r - at;
        ex.packB(b, tb, k, n, U(${C.PB}), q * ch, Math.min(ns, (q + 1) * ch));
      }
      return;
    }
    waitDone(base + at + bt);
    const tile = r - at - bt, nt = ctrl[${C.NT}];
    const ti = Math.floor(tile / nt), tj = tile - ti * nt;
    const mch = ctrl[${C.MCH}], nch = ctrl[${C.NCH}];
    const r0 = ti * mch, c0 = tj * nch;
    ex.compute(U(${C.PA}), U(${C.PB}), ex.peek(row + 8), m, n, k, r0, Math.min(m, r0 + mch), c0, Math.min(n, c0 + nch), thr);
  }
  return function run(tid) {
    const total = ctrl[${C.NTASKS}];
    for (;;) {
      const t = Atomics.add(ctrl, ${C.NEXT}, 1);
      if (t >= total) return;
      try {
        task(t, tid);
      } catch (err) {
        Atomics.store(ctrl, ${C.ERROR}, 1);
      }
      Atomics.add(ctrl, ${C.DONE}, 1);
      Atomics.notify(ctrl, ${C.DONE});
    }
  };
})`;

/**
 * Worker body (CommonJS script, run with \`eval: true\`). Joins each published job
 * generation: registers in ACTIVE, re-checks the generation (the main thread only
 * rewrites a job once ACTIVE is back to 0 after marking the generation odd), runs tasks,
 * leaves. Between jobs it spins for about 0.25 ms, then sleeps in Atomics.wait.
 */
export const WORKER_SOURCE = `'use strict';
const { workerData } = require('node:worker_threads');
const { module, memory, ctrlBuffer, tid } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ctrl = new Int32Array(ctrlBuffer);
const run = ${RUNNER_SOURCE}(ex, ctrl);
let last = 0;
for (;;) {
  if (Atomics.load(ctrl, ${C.STOP}) !== 0) break;
  const g = Atomics.load(ctrl, ${C.GEN});
  if (g === last || (g & 1) === 1) {
    // spin up to ~0.25 ms (a futex wake-up costs tens of microseconds, more in VMs), then sleep
    const until = performance.now() + 0.25;
    while (Atomics.load(ctrl, ${C.GEN}) === g && performance.now() < until);
    if (Atomics.load(ctrl, ${C.GEN}) === g) Atomics.wait(ctrl, ${C.GEN}, g);
    continue;
  }
  Atomics.add(ctrl, ${C.ACTIVE}, 1);
  if (Atomics.load(ctrl, ${C.GEN}) === g) {
    if (tid < ctrl[${C.THREADS}]) run(tid);
    last = g;
  }
  if (Atomics.sub(ctrl, ${C.ACTIVE}, 1) === 1) Atomics.notify(ctrl, ${C.ACTIVE});
}
`;
