/**
 * A simulated NCCL for tests on machines without GPUs: N ranks in one process, "device
 * memory" in host Uint8Arrays addressed by fake pointers, collectives executed once every
 * rank has issued its operation (as NCCL completes them), `ncclPoll` answering 'pending' until
 * then. Tensors live on a CPU backend; the fake backend maps them to fake storages. It lets the
 * NcclCollective protocol (headers, verdicts, plans, timeouts) run with 2-3 ranks in vitest.
 */
import { CpuBackend } from '@kiln/backend-cpu';
import { allocStorage, dtypeInfo, fromStorage, sizeOf, type DType, type Tensor } from '@kiln/core';
import type { NcclAddon, NcclBackendLike } from '../src/collective/nccl-collective.js';
import { CudaStorage } from '../src/storage.js';

type Op =
  | { kind: 'allGather'; send: number; recv: number; bytes: number }
  | { kind: 'allGatherV'; send: number; sendBytes: number; recv: number; recvBytes: number[] }
  | { kind: 'allToAllV'; send: number; sendBytes: number[]; recv: number; recvBytes: number[] }
  | { kind: 'allReduce'; send: number; recv: number; count: number; dtype: number; op: string };

export class FakeNet {
  readonly mem = new Map<number, Uint8Array>();
  private nextPtr = 0x10000;
  /** Ops issued per rank, not yet executed (a FIFO each). */
  readonly queues: { op: Op; done: boolean }[][];
  readonly aborted: boolean[];
  /** Operations issued per rank (tests read it to see what went on the wire). */
  readonly issued: string[][];
  constructor(readonly worldSize: number) {
    this.queues = Array.from({ length: worldSize }, () => []);
    this.aborted = new Array(worldSize).fill(false);
    this.issued = Array.from({ length: worldSize }, () => []);
  }
  alloc(bytes: number): number {
    const p = this.nextPtr;
    this.nextPtr += Math.max(bytes, 1) + 4096;
    this.mem.set(p, new Uint8Array(Math.max(bytes, 1)));
    return p;
  }
  bytes(ptr: number): Uint8Array {
    const m = this.mem.get(ptr);
    if (!m) throw new Error(`fake NCCL: no allocation at ${ptr}`);
    return m;
  }
  issue(rank: number, op: Op): { op: Op; done: boolean } {
    const entry = { op, done: false };
    this.queues[rank].push(entry);
    this.issued[rank].push(op.kind);
    this.progress();
    return entry;
  }
  /** Executes the head operations once every rank has one. */
  private progress(): void {
    while (this.queues.every((q, r) => q.length > 0 && !this.aborted[r])) {
      const ops = this.queues.map((q) => q.shift()!);
      const kinds = new Set(ops.map((e) => e.op.kind));
      if (kinds.size !== 1) throw new Error(`fake NCCL: ranks issued different operations ${[...kinds].join(', ')} (kiln's header step should prevent this)`);
      this.execute(ops.map((e) => e.op));
      for (const e of ops) e.done = true;
    }
  }
  private execute(ops: Op[]): void {
    const N = this.worldSize;
    const kind = ops[0].kind;
    if (kind === 'allGather') {
      const snap = ops.map((o) => this.bytes((o as { send: number }).send).slice(0, (o as { bytes: number }).bytes));
      ops.forEach((o) => {
        const r = this.bytes((o as { recv: number }).recv);
        snap.forEach((s, q) => r.set(s, q * s.length));
      });
    } else if (kind === 'allGatherV') {
      const os = ops as Extract<Op, { kind: 'allGatherV' }>[];
      const snap = os.map((o) => this.bytes(o.send).slice(0, o.sendBytes));
      for (const o of os) {
        const r = this.bytes(o.recv);
        let off = 0;
        for (let q = 0; q < N; q++) {
          if (o.recvBytes[q] !== snap[q].length) throw new Error('fake NCCL: allGatherV sizes disagree');
          r.set(snap[q], off);
          off += o.recvBytes[q];
        }
      }
    } else if (kind === 'allToAllV') {
      const os = ops as Extract<Op, { kind: 'allToAllV' }>[];
      const snap = os.map((o) => this.bytes(o.send).slice());
      os.forEach((o, r) => {
        const recv = this.bytes(o.recv);
        let roff = 0;
        for (let q = 0; q < N; q++) {
          const soff = os[q].sendBytes.slice(0, r).reduce((a, b) => a + b, 0);
          const n = os[q].sendBytes[r];
          if (n !== o.recvBytes[q]) throw new Error(`fake NCCL: rank ${q} sends ${n} bytes to rank ${r}, which expects ${o.recvBytes[q]}`);
          recv.set(snap[q].subarray(soff, soff + n), roff);
          roff += n;
        }
      });
    } else {
      const os = ops as Extract<Op, { kind: 'allReduce' }>[];
      const { dtype, op, count } = os[0];
      const Ctor = dtype === 0 ? Float32Array : dtype === 5 ? Int32Array : Uint8Array;
      const ins = os.map((o) => new Ctor(this.bytes(o.send).slice().buffer, 0, count));
      const out = new Ctor(count);
      for (let i = 0; i < count; i++) {
        let acc = ins[0][i];
        for (let q = 1; q < N; q++) acc = op === 'sum' ? acc + ins[q][i] : op === 'max' ? Math.max(acc, ins[q][i]) : Math.min(acc, ins[q][i]);
        out[i] = acc;
      }
      for (const o of os) this.bytes(o.recv).set(new Uint8Array(out.buffer));
    }
  }
}

/** One rank's fake addon + backend over a shared FakeNet. */
export function fakeRank(net: FakeNet, rank: number, cpu: CpuBackend): NcclBackendLike & { cpu: CpuBackend; tensor(codes: ArrayLike<number>, shape: number[], dtype: DType): Tensor } {
  let phase = 'none';
  let current: { op: Op; done: boolean } | undefined;
  const storages = new WeakMap<Tensor, CudaStorage>();
  const start = (op: Op): void => {
    if (phase !== 'idle') throw new Error(`fake NCCL: rank ${rank} issued ${op.kind} in phase ${phase}`);
    current = net.issue(rank, op);
    phase = 'running';
  };
  const addon: NcclAddon & Record<string, unknown> = {
    ncclAvailable: () => ({ ok: true, reason: '', version: 22809, versionString: '2.28.9', library: 'fake', nonBlocking: true }),
    ncclUniqueId: () => new Uint8Array(128),
    ncclInit: () => {
      phase = 'idle';
      return 'done';
    },
    ncclPoll: () => {
      if (phase === 'none') return 'idle';
      if (phase === 'idle') return 'done';
      if (current?.done) {
        phase = 'idle';
        return 'done';
      }
      return 'pending';
    },
    ncclAllToAllV: (send, sendBytes, recv, recvBytes) => start({ kind: 'allToAllV', send, sendBytes, recv, recvBytes }),
    ncclAllReduce: (send, recv, count, dtype, op) => start({ kind: 'allReduce', send, recv, count, dtype, op }),
    ncclAllGather: (send, recv, bytes) => start({ kind: 'allGather', send, recv, bytes }),
    ncclAllGatherV: (send, sendBytes, recv, recvBytes) => start({ kind: 'allGatherV', send, sendBytes, recv, recvBytes }),
    ncclAbort: () => {
      phase = 'none';
      net.aborted[rank] = true;
    },
    ncclDestroy: () => {
      phase = 'none';
    },
    ncclState: () => ({ phase, rank, worldSize: net.worldSize, nonBlocking: true }),
    upload: (ptr: number, data: ArrayBufferView) => net.bytes(ptr).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
    downloadAsync: async <V extends ArrayBufferView>(ptr: number, into: V): Promise<V> => {
      new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(net.bytes(ptr).subarray(0, into.byteLength));
      return into;
    },
    copy: (dst: number, src: number, bytes: number) => net.bytes(dst).set(net.bytes(src).subarray(0, bytes)),
  };
  const allocStorageFn = (bytes: number): CudaStorage => new CudaStorage(net.alloc(bytes), bytes, rank);
  const adopt = (t: Tensor): CudaStorage => {
    // A CPU tensor made by core ops (cast, div): give it a fake storage holding its codes.
    const values = (t.dataId as { values: ArrayBufferView }).values;
    const s = allocStorageFn(values.byteLength);
    net.bytes(s.ptr).set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    storages.set(t, s);
    return s;
  };
  return {
    name: 'cuda',
    cpu,
    addon,
    storageOf: (t) => storages.get(t) ?? adopt(t),
    wrapStorage: (storage, shape, dtype) => {
      const codes = allocStorage(dtype, sizeOf(shape));
      new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength).set(net.bytes(storage.ptr).subarray(0, sizeOf(shape) * dtypeInfo(dtype).bytes));
      const t = fromStorage(codes, shape, dtype, { backend: cpu });
      storages.set(t, storage);
      return t;
    },
    allocStorage: allocStorageFn,
    release: (s) => {
      net.mem.delete(s.ptr);
    },
    tensor(codes, shape, dtype) {
      const arr = allocStorage(dtype, sizeOf(shape));
      (arr as unknown as { set(a: ArrayLike<number>): void }).set(codes);
      return fromStorage(arr, shape, dtype, { backend: cpu });
    },
  };
}
