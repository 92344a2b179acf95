/* eslint-disable @typescript-eslint/no-explicit-any */
import { BackendError, OutOfMemoryError } from '@kiln/core';
import { envVar } from './env.js';
import { createExecutor, type ExecutorError } from './executor.js';
import type { KernelLimits } from './gpu.js';

/**
 * Dawn in a Node worker thread. kiln's models read a few small tensors synchronously (MoE
 * routing decisions, loss values: `valuesSync()`), and WebGPU has no synchronous readback:
 * a buffer maps only while the thread that owns the device runs its event loop. So in Node
 * the device lives in a worker that runs `createExecutor`; the backend posts it every op
 * (ordered, no waiting) and a synchronous read blocks on `Atomics.wait` while the worker maps
 * the buffer and copies it into shared memory.
 */

/** What the worker reports once its device exists. */
export interface RemoteReady {
  readonly via: string;
  readonly featureLevel: 'core' | 'compatibility';
  readonly info: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  readonly limits: KernelLimits;
  readonly features: string[];
  /** Index of the Dawn attempt that found the adapter (probeAdapter). */
  readonly attempt?: number;
}

export interface RemoteAttempt {
  readonly flags: string[];
  readonly level: 'core' | 'compatibility';
}

/** Ops per message to the worker at most ($KILN_WEBGPU_SEND_EVERY, tuning). */
const SEND_EVERY = Number(envVar('KILN_WEBGPU_SEND_EVERY') ?? 16);
/** The worker submits every batch it has encoded ($KILN_WEBGPU_SUBMIT_BATCHES=0: only every submitEvery dispatches). */
const SUBMIT_BATCHES = envVar('KILN_WEBGPU_SUBMIT_BATCHES') !== '0';

function workerMain(make: typeof createExecutor, parentPort: any, workerData: any): void {
  let ex: any = null;
  let failed: string | null = null;
  let queue: any[] | null = [];
  const codes = new Map<number, string>();
  const text = (e: any): string => String((e && e.message) || e).split('\n')[0];
  let pendingError: any = null;

  async function start(): Promise<void> {
    // (import() written through Function so that test transforms of this source leave it alone)
    const load = new Function('u', 'return import(u)') as (u: string) => Promise<any>;
    const dawn = await load(workerData.dawnUrl);
    const tried: string[] = [];
    for (const a of workerData.attempts) {
      const label = 'dawn (' + (a.flags.join(',') || 'default backend') + ')';
      try {
        const gpu = dawn.create(a.flags);
        const adapter = await gpu.requestAdapter({ featureLevel: a.level, powerPreference: 'high-performance' });
        if (!adapter) {
          tried.push(label + ': no adapter');
          continue;
        }
        const requiredLimits: Record<string, number> = {};
        for (const k of workerData.wantedLimits) if (typeof adapter.limits[k] === 'number') requiredLimits[k] = adapter.limits[k];
        const requiredFeatures = ['shader-f16', 'subgroups'].filter((f) => adapter.features.has(f));
        const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
        (globalThis as any).__kilnDawnInstance = gpu; // Dawn ends when its instance is collected
        const info = adapter.info || {};
        ex = make(device, workerData.submitEvery);
        parentPort.postMessage({
          t: 'ready',
          via: label + ' in a worker thread',
          featureLevel: a.level,
          info: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, isFallbackAdapter: info.isFallbackAdapter },
          limits: {
            maxBufferSize: device.limits.maxBufferSize,
            maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
            maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
            maxComputeWorkgroupSizeX: device.limits.maxComputeWorkgroupSizeX,
            maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
            maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
          },
          features: [...device.features],
        });
        return;
      } catch (e) {
        tried.push(label + ': ' + text(e));
      }
    }
    throw new Error('no WebGPU adapter: ' + tried.join('; '));
  }

  async function read(m: any): Promise<void> {
    let buf: ArrayBuffer | null = null;
    let err: any = null;
    if (failed) err = { oom: false, message: failed };
    else {
      try {
        buf = await ex.read(m.id, m.bytes);
      } catch (e) {
        err = { oom: false, message: 'read failed: ' + text(e) };
      }
    }
    const ge = pendingError || (ex && ex.takeError()) || err;
    pendingError = null;
    if (m.sab) {
      const hdr = new Int32Array(m.sab, 0, 4);
      if (ge) {
        const bytes = new TextEncoder().encode(ge.message).subarray(0, m.sab.byteLength - 16);
        new Uint8Array(m.sab, 16, bytes.length).set(bytes);
        hdr[1] = 1;
        hdr[2] = ge.oom ? 1 : 0;
        hdr[3] = bytes.length;
      } else {
        new Uint8Array(m.sab, 16, m.bytes).set(new Uint8Array(buf!));
      }
      Atomics.store(hdr, 0, 1);
      Atomics.notify(hdr, 0);
    } else {
      parentPort.postMessage({ t: 'data', token: m.token, buf: ge ? null : buf, error: ge }, ge || !buf ? [] : [buf]);
    }
  }

  function handle(m: any): void {
    if (m.t === 'batch') {
      for (const x of m.ms) handle(x);
      // submit what the batch encoded: the GPU starts on it while the next batch is encoded
      // (waiting for submitEvery dispatches left the GPU idle behind short bursts of ops)
      if (ex && !failed && m.submit) {
        try {
          ex.flush();
        } catch (e) {
          if (!pendingError) pendingError = { oom: false, message: 'webgpu worker: ' + text(e) };
        }
      }
      return;
    }
    if (failed) {
      if (m.t === 'read') void read(m);
      return;
    }
    try {
      switch (m.t) {
        case 'alloc':
          ex.alloc(m.id, m.bytes);
          break;
        case 'free':
          ex.free(m.id);
          break;
        case 'write':
          ex.write(m.id, m.data);
          break;
        case 'code':
          codes.set(m.cid, m.code);
          break;
        case 'dispatch':
          ex.dispatch(codes.get(m.cid), m.meta, m.out, m.inputs, m.gx, m.gy, m.gz, m.cid);
          break;
        case 'flush':
          ex.flush();
          break;
        case 'read':
          void read(m);
          break;
        case 'trim':
          ex.trim();
          break;
        case 'dispose':
          ex.dispose();
          parentPort.postMessage({ t: 'disposed' });
          break;
      }
    } catch (e) {
      if (!pendingError) pendingError = { oom: false, message: 'webgpu worker: ' + text(e) };
    }
  }
  // ops posted before the device exists wait in a queue
  parentPort.on('message', (m: any) => {
    if (queue) queue.push(m);
    else handle(m);
  });
  start()
    .catch((e) => {
      failed = text(e);
      parentPort.postMessage({ t: 'unavailable', reason: failed });
    })
    .then(() => {
      const q = queue || [];
      queue = null;
      for (const m of q) handle(m);
    });
}

/** The main-thread end of the worker: posts ops, waits for reads. */
export class RemoteGpu {
  private readonly codeIds = new Map<string, number>();
  private nextToken = 1;
  private readonly waiting = new Map<number, { resolve: (b: ArrayBuffer) => void; reject: (e: Error) => void }>();
  pendingError: ExecutorError | null = null;
  private closed = false;
  private readonly exited: Promise<void>;
  private outbox: unknown[] = [];
  private transfers: ArrayBuffer[] = [];
  private scheduled = false;

  private constructor(
    private readonly worker: any,
    readonly ready: RemoteReady,
  ) {
    worker.on('message', (m: any) => {
      if (m.t === 'data') {
        const w = this.waiting.get(m.token);
        if (!w) return;
        this.waiting.delete(m.token);
        if (this.waiting.size === 0) this.worker.unref();
        if (m.error) w.reject(toError(m.error));
        else w.resolve(m.buf);
      }
    });
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('error', (e: Error) => {
      this.pendingError ??= { oom: false, message: `webgpu worker died: ${e.message}` };
      for (const w of this.waiting.values()) w.reject(new BackendError('webgpu', `webgpu worker died: ${e.message}`));
      this.waiting.clear();
    });
    worker.unref();
  }

  /**
   * Starts the worker without waiting for its device: ops posted meanwhile queue in the worker.
   * `ready` is what a probe (probeAdapter) saw; a worker that then finds no adapter answers
   * every read with the reason.
   */
  static spawn(WorkerClass: any, dawnUrl: string, attempts: readonly RemoteAttempt[], wantedLimits: readonly string[], submitEvery: number, ready: RemoteReady): RemoteGpu {
    // the prelude is a string, so bundlers do not rewrite its require
    const src = `const { parentPort, workerData } = require('node:worker_threads');\nconst createExecutor = ${createExecutor.toString()};\n(${workerMain.toString()})(createExecutor, parentPort, workerData);\n`;
    const worker = new WorkerClass(src, { eval: true, workerData: { dawnUrl, attempts, wantedLimits, submitEvery } });
    const remote = new RemoteGpu(worker, ready);
    worker.on('message', (m: any) => {
      if (m.t === 'unavailable') remote.pendingError ??= { oom: false, message: m.reason };
    });
    return remote;
  }

  /**
   * Ops go to the worker in batches (one postMessage per microtask, or per SEND_EVERY ops): a
   * message per op cost tens of µs of main-thread time each, while waiting for the end of a
   * long synchronous run of ops left the worker and the GPU idle until then. The worker submits
   * each batch's dispatches as it finishes it. Reads send the batch at once.
   */
  private post(m: unknown, transfer?: ArrayBuffer[]): void {
    if (this.closed) throw new BackendError('webgpu', 'the WebGPU backend was disposed');
    this.outbox.push(m);
    if (transfer) this.transfers.push(...transfer);
    if (this.outbox.length >= SEND_EVERY) this.send();
    else if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.send());
    }
  }
  private send(): void {
    this.scheduled = false;
    if (this.outbox.length === 0) return;
    const ms = this.outbox;
    const transfers = this.transfers;
    this.outbox = [];
    this.transfers = [];
    this.worker.postMessage({ t: 'batch', ms, submit: SUBMIT_BATCHES }, transfers);
  }

  alloc(id: number, bytes: number): void {
    this.post({ t: 'alloc', id, bytes });
  }
  free(id: number): void {
    if (!this.closed) this.post({ t: 'free', id });
  }
  write(id: number, data: Uint8Array): void {
    this.post({ t: 'write', id, data }, [data.buffer as ArrayBuffer]);
  }
  dispatch(code: string, meta: Uint32Array, out: number, inputs: readonly number[], gx: number, gy: number, gz: number): void {
    let cid = this.codeIds.get(code);
    if (cid === undefined) {
      cid = this.codeIds.size + 1;
      this.codeIds.set(code, cid);
      this.post({ t: 'code', cid, code });
    }
    this.post({ t: 'dispatch', cid, meta, out, inputs, gx, gy, gz });
  }
  flush(): void {
    this.post({ t: 'flush' });
  }
  trim(): void {
    this.post({ t: 'trim' });
  }
  read(id: number, bytes: number): Promise<ArrayBuffer> {
    const token = this.nextToken++;
    return new Promise<ArrayBuffer>((resolve, reject) => {
      this.waiting.set(token, { resolve, reject });
      this.worker.ref();
      this.post({ t: 'read', id, bytes, token });
      this.send();
    });
  }
  /** Blocks until the worker has copied the buffer (or reports an error). */
  readSync(id: number, bytes: number): ArrayBuffer {
    const sab = new SharedArrayBuffer(16 + Math.max(bytes, 4096));
    const hdr = new Int32Array(sab, 0, 4);
    this.post({ t: 'read', id, bytes, sab });
    this.send();
    for (;;) {
      const r = Atomics.wait(hdr, 0, 0, 120_000);
      if (Atomics.load(hdr, 0) === 1) break;
      if (r === 'timed-out') throw new BackendError('webgpu.readSync', 'the GPU did not answer a read within 120 s');
    }
    if (hdr[1] === 1) {
      const msg = new TextDecoder().decode(new Uint8Array(sab, 16, hdr[3]).slice());
      throw toError({ oom: hdr[2] === 1, message: msg });
    }
    return new Uint8Array(sab, 16, bytes).slice().buffer;
  }
  takeError(): ExecutorError | null {
    const e = this.pendingError;
    this.pendingError = null;
    return e;
  }
  /** Settles when the worker has exited. */
  whenExited(): Promise<void> {
    return this.exited;
  }
  dispose(): void {
    if (this.closed) return;
    try {
      this.post({ t: 'dispose' });
      this.send();
    } finally {
      this.closed = true;
      // end the worker 200 ms after it has destroyed its device (Dawn settles the device's
      // lost promise meanwhile; ending it mid-destroy aborted the process from inside Dawn on
      // an H200, ending it at once crashed Mesa); a worker that never answers goes after 10 s
      const end = (): void => void this.worker.terminate();
      // keep the process alive until the worker is gone: a process that exits while the
      // worker still destroys the device aborts inside Dawn
      this.worker.ref();
      const timer = setTimeout(end, 10_000);
      timer.unref?.();
      this.worker.on('message', (m: { t?: string }) => {
        if (m.t === 'disposed') {
          clearTimeout(timer);
          setTimeout(end, 200).unref?.();
        }
      });
    }
  }
}

function toError(e: ExecutorError): Error {
  return e.oom ? new OutOfMemoryError('webgpu', e.message) : new BackendError('webgpu', e.message);
}

/**
 * Node: looks for an adapter in a child process (so Dawn's and Mesa's native warnings go to
 * its captured stderr, not this process's), reporting what the worker will find. Returns the
 * adapter's description, or throws a BackendError with the reason.
 */
export async function probeAdapter(dawnUrl: string, attempts: readonly RemoteAttempt[], wantedLimits: readonly string[]): Promise<RemoteReady> {
  const { spawnSync } = (await import(/* @vite-ignore */ 'node:child_process' as string)) as any;
  const script = `
const dawn = await import(${JSON.stringify(dawnUrl)});
const attempts = ${JSON.stringify(attempts)};
const wanted = ${JSON.stringify(wantedLimits)};
const tried = [];
for (const [index, a] of attempts.entries()) {
  const label = 'dawn (' + (a.flags.join(',') || 'default backend') + ')';
  try {
    const gpu = dawn.create(a.flags);
    const adapter = await gpu.requestAdapter({ featureLevel: a.level, powerPreference: 'high-performance' });
    if (!adapter) { tried.push(label + ': no adapter'); continue; }
    const requiredLimits = {};
    for (const k of wanted) if (typeof adapter.limits[k] === 'number') requiredLimits[k] = adapter.limits[k];
    const device = await adapter.requestDevice({ requiredLimits });
    const i = adapter.info || {};
    const l = device.limits;
    process.stdout.write(JSON.stringify({ ok: true, attempt: index, via: label + ' in a worker thread', featureLevel: a.level,
      info: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: i.isFallbackAdapter },
      limits: { maxBufferSize: l.maxBufferSize, maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX, maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize, maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage },
      features: [...adapter.features] }));
    device.destroy();
    process.exit(0);
  } catch (e) { tried.push(label + ': ' + String((e && e.message) || e).split('\\n')[0]); }
}
process.stdout.write(JSON.stringify({ ok: false, reason: 'no WebGPU adapter: ' + tried.join('; ') }));
process.exit(0);
`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: process.env });
  let out: { ok: boolean; reason?: string } & Partial<RemoteReady>;
  try {
    out = JSON.parse(String(r.stdout).trim().split('\n').pop() ?? '');
  } catch {
    const err = String(r.stderr ?? '').trim().split('\n').filter((l: string) => l && !/^\s*at /.test(l)).pop();
    throw new BackendError('webgpu', `the WebGPU adapter probe failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}${err ? `: ${err}` : ''})`);
  }
  if (!out.ok) throw new BackendError('webgpu', out.reason ?? 'no WebGPU adapter');
  return out as unknown as RemoteReady;
}
