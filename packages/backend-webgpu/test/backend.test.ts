import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, OutOfMemoryError, bestAvailableBackend, probeBackends, setBackend, tensor, add, matmul, tidy, type Backend } from '@kiln/core';
import '@kiln/backend-cpu';
import { WebGpuBackend } from '@kiln/backend-webgpu';

process.env.EGL_PLATFORM ??= 'surfaceless';

let backend: WebGpuBackend | undefined;
let reason = '';

beforeAll(async () => {
  try {
    backend = await WebGpuBackend.create();
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
    console.warn(`@kiln/backend-webgpu tests skipped: ${reason}`);
  }
});

afterAll(() => backend?.dispose());

describe('WebGPU backend on this machine', () => {
  it('describes the adapter and whether it is software', (t) => {
    if (!backend) return t.skip(reason);
    const d = backend.device;
    expect(d.backend).toBe('webgpu');
    expect(d.name.length).toBeGreaterThan(0);
    expect(typeof d.details?.via).toBe('string');
    if (d.details?.software) {
      expect(d.accelerated).toBe(false);
      expect(backend.notPreferred).toMatch(/^software adapter \(.+\): the CPU backend is faster$/);
    } else {
      expect(d.accelerated).toBe(true);
      expect(backend.notPreferred).toBeUndefined();
    }
  });

  it('bestAvailableBackend passes over a software adapter; setBackend("webgpu") still uses it', async (t) => {
    if (!backend) return t.skip(reason);
    const report = await probeBackends();
    const w = report.find((r) => r.name === 'webgpu');
    expect(w?.available).toBe(true);
    const best = await bestAvailableBackend();
    if (backend.notPreferred) {
      expect(best.name).toBe('cpu');
      expect(w?.notPreferred).toMatch(/software adapter/);
    } else expect(best.name).toBe('webgpu');
    const explicit: Backend = await setBackend('webgpu');
    expect(explicit.name).toBe('webgpu');
    const c = tidy(() => add(matmul(tensor([[1, 2], [3, 4]]), tensor([[5, 6], [7, 8]])), 1));
    expect(await c.array()).toEqual([[20, 23], [44, 51]]);
    c.dispose();
    await setBackend('cpu');
  });

  it('refuses storage of another backend instance and use after release', async (t) => {
    if (!backend) return t.skip(reason);
    const other = await WebGpuBackend.create();
    try {
      const id = other.write(Float32Array.from([1, 2]), 'f32', [2]);
      expect(() => backend!.unary('neg', { dataId: id, shape: [2], dtype: 'f32' }, 'f32')).toThrow(BackendError);
      other.release(id);
      expect(() => other.unary('neg', { dataId: id, shape: [2], dtype: 'f32' }, 'f32')).toThrow(/released/);
    } finally {
      other.dispose();
    }
    const gone = await WebGpuBackend.create();
    gone.dispose();
    expect(() => gone.fill([2], 'f32', 1)).toThrow(/disposed/);
  });

  it('a tensor larger than the largest storage buffer is an OutOfMemoryError, thrown at once', (t) => {
    if (!backend) return t.skip(reason);
    const max = backend.limits.maxStorageBufferBindingSize;
    const n = Math.ceil(max / 4) + 1024;
    expect(() => backend!.fill([n], 'f32', 0)).toThrow(OutOfMemoryError);
    expect(backend.memory().buffers).toBe(0);
  });

  it('a shader that does not compile surfaces as a BackendError, not a hang or zeros', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend as unknown as { dispatch: (code: string, meta: number[], out: number, inputs: number[], groups: [number, number, number]) => void };
    const out = backend.fill([4], 'f32', 1);
    b.dispatch('this is not WGSL', [4], backend.storageOf({ dataId: out, shape: [4], dtype: 'f32' }).id, [], [1, 1, 1]);
    await expect(backend.read({ dataId: out, shape: [4], dtype: 'f32' })).rejects.toThrow(BackendError);
    backend.release(out);
    // the backend keeps working after the error was reported
    const ok = backend.fill([3], 'f32', 2);
    expect([...(await backend.read({ dataId: ok, shape: [3], dtype: 'f32' }))]).toEqual([2, 2, 2]);
    backend.release(ok);
  });

  it('reads synchronously where the device runs in a worker thread (Node)', (t) => {
    if (!backend) return t.skip(reason);
    expect(typeof backend.readSync).toBe('function');
    const id = backend.write(Int32Array.from([3, -4, 5]), 'i32', [3]);
    const y = backend.unary('abs', { dataId: id, shape: [3], dtype: 'i32' }, 'i32');
    expect([...backend.readSync!({ dataId: y, shape: [3], dtype: 'i32' })]).toEqual([3, 4, 5]);
    backend.release(id);
    backend.release(y);
  });

  it('f32 GEMM: both tile shapes (32-row for skinny, 64-row), transposes, broadcast batch, odd sizes', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend;
    let seed = 7;
    const rnd = (n: number) => Float32Array.from({ length: n }, () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
    for (const [batch, M, N, K, ta, tb] of [
      [1, 1, 5, 7, false, false],
      [1, 33, 70, 65, true, false],
      [2, 31, 129, 17, false, true],
      [1, 100, 3, 130, true, true],
      [3, 96, 64, 40, false, false],
      [1, 200, 150, 33, false, true],
    ] as const) {
      const a = rnd(batch * M * K);
      const w = rnd(N * K);
      const aShape = ta ? [batch, K, M] : [batch, M, K];
      const wShape = tb ? [N, K] : [K, N];
      const ia = b.write(a, 'f32', aShape);
      const iw = b.write(w, 'f32', wShape);
      const out = b.matmul({ dataId: ia, shape: aShape, dtype: 'f32' }, { dataId: iw, shape: wShape, dtype: 'f32' }, { transposeA: ta, transposeB: tb }, [batch, M, N]);
      const got = await b.read({ dataId: out, shape: [batch, M, N], dtype: 'f32' });
      for (let z = 0; z < batch; z++)
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            let ref = 0;
            let abs = 0;
            for (let k = 0; k < K; k++) {
              const x = ta ? a[z * K * M + k * M + m] : a[z * M * K + m * K + k];
              const y = tb ? w[n * K + k] : w[k * N + n];
              ref += x * y;
              abs += Math.abs(x * y);
            }
            const e = Math.abs(got[z * M * N + m * N + n] - ref);
            if (!(e <= 4 * 2 ** -23 * abs + 1e-30)) throw new Error(`[${batch},${M},${N},${K},${ta},${tb}] at ${z},${m},${n}: ${got[z * M * N + m * N + n]} vs ${ref}`);
          }
      for (const id of [ia, iw, out]) b.release(id);
    }
  });

  it('batches dispatches: no submission until a read or every 64 ops, and frees are reused', async (t) => {
    if (!backend) return t.skip(reason);
    const view = (id: object) => ({ dataId: id, shape: [1000], dtype: 'f32' as const });
    let x = backend.fill([1000], 'f32', 0.1);
    let want = Math.fround(0.1);
    for (let i = 0; i < 50; i++) {
      const y = backend.binary('add', view(x), view(x), [1000], 'f32');
      const z = backend.unary('sin', view(y), 'f32');
      want = Math.fround(Math.sin(Math.fround(want + want)));
      backend.release(x);
      backend.release(y);
      x = z;
    }
    const r = await backend.read(view(x));
    expect(r.length).toBe(1000);
    expect(Math.abs(r[999] - want)).toBeLessThan(1e-4);
    backend.release(x);
    expect(backend.memory().buffers).toBe(0);
  });
});
