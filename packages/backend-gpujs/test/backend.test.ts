import { describe, expect, it } from 'vitest';
import { fp8GemmReference } from '@kiln/core';
import { GpujsBackend, findChromium, HOST_FALLBACKS } from '@kiln/backend-gpujs';

describe('@kiln/backend-gpujs', () => {
  it('reports itself unavailable, with the reason, when there is no browser', async () => {
    const err = await GpujsBackend.create({ executablePath: '/nonexistent/chromium' }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).toBe('BackendError');
    expect(err?.message).toMatch(/does not exist/);
    expect(HOST_FALLBACKS.length).toBe(3);
  });

  it('FP8 block GEMM on the GPU equals core fp8GemmReference bit for bit (e4m3 x e4m3 and e5m2 x e4m3, promotion 128 and 32)', async (t) => {
    const found = await findChromium();
    if ('reason' in found) t.skip(found.reason);
    let b: GpujsBackend;
    try {
      b = await GpujsBackend.create();
    } catch (e) {
      t.skip((e as Error).message);
      return;
    }
    try {
      const M = 9;
      const N = 130;
      const K = 256;
      let seed = 12345;
      const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const codes = (n: number, fmt: string): Uint8Array => Uint8Array.from({ length: n }, () => {
        const c = Math.floor(rnd() * 256);
        return fmt === 'e4m3' ? ((c & 0x7f) === 0x7f ? c - 1 : c) : (c & 0x7c) === 0x7c ? c & 0x83 : c;
      });
      for (const [fa, fb, nc] of [['e4m3', 'e4m3', 128], ['e5m2', 'e4m3', 32]] as const) {
        const ac = codes(M * K, fa);
        const bc = codes(N * K, fb);
        const as = Float32Array.from({ length: M * 2 }, () => 2 ** Math.floor(rnd() * 8 - 4) * (1 + rnd()));
        const bs = Float32Array.from({ length: 2 * 2 }, () => 2 ** Math.floor(rnd() * 8 - 4) * (1 + rnd()));
        const ref = fp8GemmReference(
          { codes: ac, scales: as, shape: [M, K], block: [1, 128], format: fa },
          { codes: bc, scales: bs, shape: [N, K], block: [128, 128], format: fb },
          { promotionInterval: nc },
        );
        const view = (dataId: object, shape: number[], dtype: 'e4m3' | 'e5m2' | 'f32') => ({ dataId, shape, dtype });
        const out = b.matmulFp8(
          { codes: view(b.write(ac, fa, [M, K]), [M, K], fa), scales: view(b.write(as, 'f32', [M, 2]), [M, 2], 'f32'), block: [1, 128] },
          { codes: view(b.write(bc, fb, [N, K]), [N, K], fb), scales: view(b.write(bs, 'f32', [2, 2]), [2, 2], 'f32'), block: [128, 128] },
          { promotionInterval: nc },
        );
        const got = (await b.read(view(out, [M, N], 'f32'))) as Float32Array;
        let diff = 0;
        for (let i = 0; i < M * N; i++) if (!Object.is(got[i], ref[i])) diff++;
        expect(diff, `${fa} x ${fb}, promotion ${nc}`).toBe(0);
      }
    } finally {
      b.dispose();
    }
  });
});
