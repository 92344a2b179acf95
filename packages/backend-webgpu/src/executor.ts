/* eslint-disable @typescript-eslint/no-explicit-any */
/**
 * The GPU side of the backend: buffers by id (pooled by size class), pipelines by shader
 * source, one command encoder with one open compute pass that collects dispatches and is
 * submitted every `submitEvery` of them or when a read needs it, the dispatches' small
 * parameter blocks packed into one arena buffer (one queue write per submission instead of one
 * per dispatch; bound at a dynamic offset), bind groups cached by the buffers they bind, and GPU
 * errors kept for the next read to report.
 *
 * `createExecutor` must stay self-contained (no imports, no module-level helpers): its source
 * text (`createExecutor.toString()`) is also what the Node worker thread runs, so the same
 * code drives the device on the main thread (browsers) and in the worker (Node).
 */
export interface ExecutorError {
  readonly oom: boolean;
  readonly message: string;
}

export interface Executor {
  alloc(id: number, bytes: number): void;
  free(id: number): void;
  write(id: number, data: Uint8Array): void;
  /** `codeId`: a number naming `code` for good (the worker's code ids): its pipelines are found by it, not by the text. */
  dispatch(code: string, meta: Uint32Array, out: number, inputs: readonly number[], gx: number, gy: number, gz: number, codeId?: number): void;
  flush(): void;
  read(id: number, bytes: number): Promise<ArrayBuffer>;
  takeError(): ExecutorError | null;
  pooled(): number;
  trim(): void;
  dispose(): void;
}

export function createExecutor(device: any, submitEvery: number): Executor {
  const STORAGE = 0x80;
  const COPY_SRC = 0x4;
  const COPY_DST = 0x8;
  const MAP_READ = 0x1;
  const buffers = new Map<number, any>();
  const pool = new Map<number, any[]>();
  const stagingPool = new Map<number, any[]>();
  const STAGING_KEEP = 256 * 1024 * 1024; // larger staging buffers are not kept
  let pooledBytes = 0;
  let pendingFree: any[] = [];
  let encoder: any = null;
  let pass: any = null;
  let encoded = 0;
  // parameter arena: slots aligned for storage-buffer binding offsets. One buffer serves every
  // submission (queue writes are ordered after the submissions before them), so the bind groups
  // that bind it at a dynamic offset stay valid; it is replaced only to grow.
  const ALIGN = Math.max(256, device.limits?.minStorageBufferOffsetAlignment ?? 256);
  let arenaHost = new Uint8Array(ALIGN * Math.max(1, submitEvery));
  let arenaUsed = 0;
  let arena: any = null;
  let arenaDirty = false;
  // bind groups by (binding count, parameter slot size, buffers bound): creating one per
  // dispatch was a large part of a small op's host cost on a real GPU. Buffers get a serial
  // number the first time they are bound (pooled buffers keep theirs, so keys recur).
  const bindGroups = new Map<string, any>();
  const BIND_GROUPS_KEEP = 8192;
  const serials = new WeakMap<object, number>();
  let nextSerial = 1;
  const serial = (b: any): number => {
    let s = serials.get(b);
    if (s === undefined) serials.set(b, (s = nextSerial++));
    return s;
  };
  const cacheBindGroups = (globalThis as any).process?.env?.KILN_WEBGPU_BIND_CACHE !== '0';
  let lastPipeline: any = null;
  // pipelines by shader text, then by binding count: the text is the key object itself (its
  // hash is cached), never a concatenation that would be flattened and rehashed per dispatch
  const pipelines = new Map<string, any[]>();
  const pipelinesById: any[][] = [];
  const layouts = new Map<number, any>();
  const pipelineLayouts = new Map<number, any>();
  let error: ExecutorError | null = null;
  let lost: string | null = null;
  let disposed = false;

  device.lost.then((l: any) => {
    if (!disposed) lost = 'device lost (' + l.reason + '): ' + l.message;
  });
  device.addEventListener('uncapturederror', (ev: any) => {
    const e = ev.error;
    if (!error) error = { oom: !!(e && e.constructor && e.constructor.name === 'GPUOutOfMemoryError'), message: 'GPU error: ' + (e && e.message) };
  });

  function sizeClass(bytes: number): number {
    const b = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (b <= 65536) return 2 ** Math.ceil(Math.log2(b));
    const p = 2 ** Math.floor(Math.log2(b));
    const step = p / 4;
    return Math.ceil(b / step) * step;
  }

  function raw(bytes: number): any {
    const cls = sizeClass(bytes);
    const list = pool.get(cls);
    if (list && list.length) {
      pooledBytes -= cls;
      return list.pop();
    }
    device.pushErrorScope('out-of-memory');
    const b = device.createBuffer({ size: cls, usage: STORAGE | COPY_SRC | COPY_DST });
    device.popErrorScope().then((e: any) => {
      if (e && !error) error = { oom: true, message: 'GPU out of memory allocating ' + cls + ' bytes: ' + e.message };
    });
    return b;
  }

  function toPool(b: any): void {
    const cls = b.size;
    let list = pool.get(cls);
    if (!list) pool.set(cls, (list = []));
    list.push(b);
    pooledBytes += cls;
  }

  function recycle(b: any): void {
    // a buffer used by the open encoder is reused only after that encoder is submitted
    if (encoder) pendingFree.push(b);
    else toPool(b);
  }

  function endPass(): void {
    if (pass) {
      pass.end();
      pass = null;
      lastPipeline = null;
    }
  }

  function flush(): void {
    endPass();
    if (arenaDirty) {
      // queue writes run after the submissions before them and before the one that follows
      device.queue.writeBuffer(arena, 0, arenaHost, 0, arenaUsed);
      arenaDirty = false;
      arenaUsed = 0;
    }
    if (encoder) {
      const cb = encoder.finish();
      encoder = null;
      encoded = 0;
      device.queue.submit([cb]);
    }
    for (const b of pendingFree) toPool(b);
    pendingFree = [];
  }

  /** A slot of the parameter arena holding `meta`: the binding's [offset, size]. */
  function metaSlot(meta: Uint32Array): [number, number] {
    const size = Math.max(16, Math.ceil(meta.byteLength / 16) * 16);
    const need = Math.ceil(size / ALIGN) * ALIGN;
    if (arena && arenaUsed + need > arena.size) flush();
    if (!arena || need > arena.size) {
      // (first use, or a parameter block larger than the whole arena: a larger one)
      if (arena) {
        flush();
        arena.destroy(); // (freed once the submitted work that binds it is done)
        bindGroups.clear();
      }
      const bytes = Math.max(arenaHost.byteLength, need);
      if (bytes > arenaHost.byteLength) arenaHost = new Uint8Array(bytes);
      arena = device.createBuffer({ size: bytes, usage: STORAGE | COPY_DST });
    }
    const offset = arenaUsed;
    arenaHost.set(new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength), offset);
    arenaUsed += need;
    arenaDirty = true;
    return [offset, need];
  }

  function layout(n: number): any {
    let pl = pipelineLayouts.get(n);
    if (!pl) {
      const entries = [];
      // binding 0 (parameters) sits at a dynamic offset in the arena
      for (let i = 0; i < n; i++) entries.push({ binding: i, visibility: 4, buffer: { type: i === 1 ? 'storage' : 'read-only-storage', hasDynamicOffset: i === 0 } });
      const bgl = device.createBindGroupLayout({ entries });
      layouts.set(n, bgl);
      pl = device.createPipelineLayout({ bindGroupLayouts: [bgl] });
      pipelineLayouts.set(n, pl);
    }
    return pl;
  }

  function pipeline(code: string, n: number, codeId: number | undefined): any {
    // (by code id where the caller names the text by one: an array index, no string hashing)
    let byCount = codeId === undefined ? undefined : pipelinesById[codeId];
    if (!byCount) {
      byCount = pipelines.get(code);
      if (!byCount) pipelines.set(code, (byCount = []));
      if (codeId !== undefined) pipelinesById[codeId] = byCount;
    }
    let p = byCount[n];
    if (!p) {
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code });
      p = device.createComputePipeline({ layout: layout(n), compute: { module, entryPoint: 'main' } });
      device.popErrorScope().then((e: any) => {
        if (e && !error) error = { oom: false, message: 'shader compilation failed: ' + e.message };
      });
      byCount[n] = p;
    }
    return p;
  }

  return {
    alloc(id: number, bytes: number): void {
      buffers.set(id, raw(bytes));
    },
    free(id: number): void {
      const b = buffers.get(id);
      if (!b) return;
      buffers.delete(id);
      if (!disposed) recycle(b);
    },
    write(id: number, data: Uint8Array): void {
      // the buffer came from the pool, so no command in the open encoder uses it
      device.queue.writeBuffer(buffers.get(id), 0, data);
    },
    dispatch(code: string, meta: Uint32Array, out: number, inputs: readonly number[], gx: number, gy: number, gz: number, codeId?: number): void {
      if (gx === 0 || gy === 0 || gz === 0) return;
      const n = 2 + inputs.length;
      const p = pipeline(code, n, codeId);
      const [offset, size] = metaSlot(meta);
      const ob = buffers.get(out);
      let key = '';
      let bg: any;
      if (cacheBindGroups) {
        key = n + ':' + size + ':' + serial(ob);
        for (let i = 0; i < inputs.length; i++) key += ',' + serial(buffers.get(inputs[i]));
        bg = bindGroups.get(key);
      }
      if (!bg) {
        const entries: any[] = [{ binding: 0, resource: { buffer: arena, offset: 0, size } }, { binding: 1, resource: { buffer: ob } }];
        for (let i = 0; i < inputs.length; i++) entries.push({ binding: i + 2, resource: { buffer: buffers.get(inputs[i]) } });
        bg = device.createBindGroup({ layout: layouts.get(n), entries });
        if (cacheBindGroups) {
          if (bindGroups.size >= BIND_GROUPS_KEEP) bindGroups.clear();
          bindGroups.set(key, bg);
        }
      }
      if (!encoder) encoder = device.createCommandEncoder();
      // one pass for the whole submission: WebGPU orders a compute pass's dispatches and makes
      // each one's writes visible to the next (each dispatch is its own usage scope)
      if (!pass) pass = encoder.beginComputePass();
      if (p !== lastPipeline) {
        pass.setPipeline(p);
        lastPipeline = p;
      }
      pass.setBindGroup(0, bg, [offset]);
      pass.dispatchWorkgroups(gx, gy, gz);
      if (++encoded >= submitEvery) flush();
    },
    flush,
    async read(id: number, bytes: number): Promise<ArrayBuffer> {
      // staging buffers are pooled by size class: creating a large mappable buffer per read
      // cost more than the copy itself on a real GPU
      const cls = sizeClass(bytes);
      const spare = stagingPool.get(cls);
      const staging = spare && spare.length ? spare.pop() : device.createBuffer({ size: cls, usage: MAP_READ | COPY_DST });
      if (!encoder) encoder = device.createCommandEncoder();
      endPass();
      encoder.copyBufferToBuffer(buffers.get(id), 0, staging, 0, bytes);
      flush();
      let ok = false;
      try {
        await staging.mapAsync(1, 0, bytes);
        const copy = staging.getMappedRange(0, bytes).slice(0);
        staging.unmap();
        ok = true;
        return copy;
      } finally {
        if (ok && !disposed && cls <= STAGING_KEEP) {
          let list = stagingPool.get(cls);
          if (!list) stagingPool.set(cls, (list = []));
          list.push(staging);
        } else staging.destroy();
      }
    },
    takeError(): ExecutorError | null {
      if (lost) return { oom: false, message: lost };
      const e = error;
      error = null;
      return e;
    },
    pooled(): number {
      return pooledBytes;
    },
    trim(): void {
      flush();
      bindGroups.clear();
      for (const list of pool.values()) for (const b of list) b.destroy();
      pool.clear();
      for (const list of stagingPool.values()) for (const b of list) b.destroy();
      stagingPool.clear();
      pooledBytes = 0;
    },
    dispose(): void {
      if (disposed) return;
      try {
        flush();
      } catch {
        /* nothing to report at teardown */
      }
      disposed = true;
      bindGroups.clear();
      if (arena) arena.destroy();
      for (const list of pool.values()) for (const b of list) b.destroy();
      pool.clear();
      for (const list of stagingPool.values()) for (const b of list) b.destroy();
      stagingPool.clear();
      device.destroy();
    },
  };
}
