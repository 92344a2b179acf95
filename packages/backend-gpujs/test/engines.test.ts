import { describe, expect, it } from 'vitest';
import { GpujsBackend } from '@kiln/backend-gpujs';

const failure = (p: Promise<GpujsBackend>): Promise<Error | undefined> =>
  p.then(
    (b) => {
      b.dispose();
      return undefined;
    },
    (e: Error) => e,
  );

describe('@kiln/backend-gpujs engines', () => {
  it('rejects an unknown engine name', async () => {
    const err = await failure(GpujsBackend.create({ engine: 'webgl9' as never }));
    expect(err?.name).toBe('BackendError');
    expect(err?.message).toMatch(/unknown engine "webgl9"/);
  });

  it('headless-gl on an X display that does not exist is unavailable, with the reason (and DISPLAY is left as it was)', async () => {
    const before = process.env.DISPLAY;
    const err = await failure(GpujsBackend.create({ engine: 'headless-gl', display: ':4711' }));
    expect(err?.name).toBe('BackendError');
    // without a built `gl` addon the reason is the build; with one, the display
    expect(err?.message).toMatch(/headless-gl engine: (no context on X display :4711|.*not built|.*not installed)/);
    expect(process.env.DISPLAY).toBe(before);
  });

  it('headless-gl runs kernels in this process: device details, a matmul, a fused softmax, memory back to zero', async (t) => {
    let b: GpujsBackend;
    try {
      b = await GpujsBackend.create({ engine: 'headless-gl' });
    } catch (e) {
      t.skip((e as Error).message);
      return;
    }
    try {
      expect(b.device.details?.engine).toBe('headless-gl');
      expect(String(b.device.details?.via)).toMatch(/headless-gl 8\.1\.6/);
      expect(b.device.name).toMatch(/ANGLE/);
      const A = Float32Array.from({ length: 6 }, (_, i) => i + 1); // [2, 3]
      const B = Float32Array.from({ length: 12 }, (_, i) => (i % 5) - 2); // [3, 4]
      const a = { dataId: b.write(A, 'f32', [2, 3]), shape: [2, 3], dtype: 'f32' as const };
      const w = { dataId: b.write(B, 'f32', [3, 4]), shape: [3, 4], dtype: 'f32' as const };
      const c = b.matmul(a, w, { transposeA: false, transposeB: false }, [2, 4]);
      const want = new Float32Array(8);
      for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) for (let k = 0; k < 3; k++) want[i * 4 + j] += A[i * 3 + k] * B[k * 4 + j];
      expect(Array.from((await b.read({ dataId: c, shape: [2, 4], dtype: 'f32' })) as Float32Array)).toEqual(Array.from(want));
      const s = b.fused.softmax!({ dataId: c, shape: [2, 4], dtype: 'f32' });
      const sm = (await b.read({ dataId: s, shape: [2, 4], dtype: 'f32' })) as Float32Array;
      expect(sm[0] + sm[1] + sm[2] + sm[3]).toBeCloseTo(1, 6);
      for (const id of [a.dataId, w.dataId, c, s]) b.release(id);
      expect(b.memory()).toEqual({ bytes: 0, buffers: 0 });
    } finally {
      b.dispose();
    }
  });

  it("'auto' takes headless-gl when it can create a context; an explicit executablePath means Chromium", async (t) => {
    let b: GpujsBackend;
    try {
      b = await GpujsBackend.create({ engine: 'auto' });
    } catch (e) {
      t.skip((e as Error).message);
      return;
    }
    const hgl = await failure(GpujsBackend.create({ engine: 'headless-gl' }));
    try {
      expect(b.device.details?.engine).toBe(hgl ? 'chromium' : 'headless-gl');
    } finally {
      b.dispose();
    }
    const err = await failure(GpujsBackend.create({ executablePath: '/nonexistent/chromium' }));
    expect(err?.message).toMatch(/does not exist/);
  });
});
