import { CpuBackend, CpuData } from '@kiln/backend-cpu';
import { tensor, useBackend, type Tensor } from '@kiln/core';
import { describe, expect, it } from 'vitest';
import { CudaBackend, cudaUnavailableReason } from '@kiln/backend-cuda';
import { AdamW, DeviceAdamW, DeviceGradAccumulator, deviceOptimizerOf, type DeviceAdamwHyper } from '../src/optim/index.js';

/**
 * DeviceAdamW's orchestration (norm, clipping, bias correction, decay, skips, snapshots) against
 * the host AdamW, on a CPU backend that offers the device-optimizer hooks with the update written
 * out in JS the way the CUDA kernel computes it (native/kernels/optim.cu). The CUDA kernel itself
 * is compared with the host optimizer on the GPU (packages/backend-cuda/test/gpu.test.ts).
 */
class CpuWithDeviceOptimizer extends CpuBackend {
  adamwStep(master: Tensor, m: Tensor, v: Tensor, grad: Tensor, h: DeviceAdamwHyper): void {
    const p = (master.dataId as CpuData).values as Float32Array;
    const g = (grad.dataId as CpuData).values as Float32Array;
    const mv = (m.dataId as CpuData).values;
    const vv = (v.dataId as CpuData).values;
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const toBf16 = (x: number) => {
      f[0] = x;
      const b = u[0];
      return (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    };
    const fromBf16 = (c: number) => {
      u[0] = c << 16;
      return f[0];
    };
    for (let i = 0; i < p.length; i++) {
      const gi = h.gradScale !== undefined && h.gradScale !== 1 ? Math.fround(g[i] * h.gradScale) : g[i];
      let mq: number;
      let vq: number;
      if (mv instanceof Uint16Array) {
        mv[i] = toBf16(Math.fround(h.beta1 * fromBf16(mv[i]) + (1 - h.beta1) * gi));
        (vv as Uint16Array)[i] = toBf16(Math.fround(h.beta2 * fromBf16((vv as Uint16Array)[i]) + (1 - h.beta2) * gi * gi));
        mq = fromBf16(mv[i]);
        vq = fromBf16((vv as Uint16Array)[i]);
      } else {
        mv[i] = h.beta1 * mv[i] + (1 - h.beta1) * gi;
        (vv as Float32Array)[i] = h.beta2 * (vv as Float32Array)[i] + (1 - h.beta2) * gi * gi;
        mq = mv[i];
        vq = (vv as Float32Array)[i];
      }
      p[i] = p[i] * h.decay - h.lr * (mq / h.bc1 / (Math.sqrt(vq / h.bc2) + h.eps));
    }
  }

  sumSquares(ts: readonly Tensor[]): number {
    let s = 0;
    for (const t of ts) for (const x of (t.dataId as CpuData).values as Float32Array) s += x * x;
    return s;
  }
}

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

describe('DeviceAdamW (master weights and moments on the device)', () => {
  for (const momentDtype of ['f32', 'bf16'] as const) {
    it(`matches the host AdamW bit for bit over 4 steps with clipping, decay and accumulation (${momentDtype} moments), and round-trips its state`, async () => {
      const backend = new CpuWithDeviceOptimizer();
      useBackend(backend);
      expect(deviceOptimizerOf(backend)).toBeDefined();
      expect(deviceOptimizerOf(new CpuBackend())).toBeUndefined();
      const rnd = lcg(7);
      const shapes: Record<string, number[]> = { 'w.weight': [8, 16], 'n.weight': [16] };
      const params = new Map(Object.entries(shapes).map(([n, s]) => [n, tensor(Array.from({ length: s.reduce((a, b) => a * b) }, rnd), s)] as [string, Tensor]));
      const options = { beta1: 0.9, beta2: 0.95, weightDecay: 0.1, maxGradNorm: 0.5, momentDtype };
      const host = await AdamW.create(params, options);
      let dev = await DeviceAdamW.create(params, backend, options);
      for (let step = 0; step < 4; step++) {
        // Two micro-batches per step (accumulated), large enough for the clip to act.
        const micro = [0, 1].map(() => new Map(Object.entries(shapes).map(([n, s]) => [n, tensor(Array.from({ length: s.reduce((a, b) => a * b) }, () => rnd() * 3), s)] as [string, Tensor])));
        const acc = new DeviceGradAccumulator();
        for (const g of micro) acc.add(g);
        const devGrads = acc.take();
        const hostGrads = new Map<string, Float32Array>();
        for (const [n] of micro[0]) hostGrads.set(n, Float32Array.from((await devGrads.get(n)!.data()) as Float32Array));
        const a = await host.step(hostGrads, 1e-2);
        const b = await dev.step(devGrads, 1e-2);
        expect(b.applied).toBe(true);
        expect(b.gradNorm).toBeCloseTo(a.gradNorm, 12);
        for (const [n, p] of a.params) expect(Array.from((await b.params.get(n)!.data()) as Float32Array)).toEqual(Array.from((await p.data()) as Float32Array));
        if (step === 1) dev = DeviceAdamW.fromHost(dev.toHost(), backend, options); // a resume mid-run changes nothing
      }
      const hs = host.toHost();
      const ds = dev.toHost();
      expect(ds.step).toBe(hs.step);
      for (const n of Object.keys(shapes)) {
        expect(Array.from(ds.params[n].master)).toEqual(Array.from(hs.params[n].master));
        expect(Array.from(ds.params[n].m)).toEqual(Array.from(hs.params[n].m));
        expect(Array.from(ds.params[n].v)).toEqual(Array.from(hs.params[n].v));
      }
    });
  }

  it('skips a step with a non-finite gradient and keeps the state', async () => {
    const backend = new CpuWithDeviceOptimizer();
    useBackend(backend);
    const params = new Map([['w', tensor([1, 2, 3, 4], [2, 2])]]);
    const dev = await DeviceAdamW.create(params, backend, { momentDtype: 'f32' });
    const r = await dev.step(new Map([['w', tensor([1, NaN, 0, 0], [2, 2])]]), 1e-2);
    expect(r.applied).toBe(false);
    expect(dev.skipped).toBe(1);
    expect(dev.stepCount).toBe(0);
    expect(Array.from((await r.params.get('w')!.data()) as Float32Array)).toEqual([1, 2, 3, 4]);
  });
});

describe.skipIf(cudaUnavailableReason() !== undefined)(`DeviceAdamW on the CUDA backend${cudaUnavailableReason() ? ` [skipped: ${cudaUnavailableReason()}]` : ''}`, () => {
  for (const momentDtype of ['f32', 'bf16'] as const) {
    it(`the CUDA update kernel matches the host AdamW bit for bit (${momentDtype} moments, no clipping)`, async () => {
      const cuda = new CudaBackend();
      useBackend(cuda);
      const rnd = lcg(11);
      const n = 100_003;
      const init = Float32Array.from({ length: n }, rnd);
      const params = new Map([['w', tensor(init, [n])]]);
      const options = { beta1: 0.9, beta2: 0.95, weightDecay: 0.1, momentDtype, decay: () => true };
      const host = await AdamW.create(params, options);
      const dev = await DeviceAdamW.create(params, cuda, options);
      for (let step = 0; step < 3; step++) {
        const g = Float32Array.from({ length: n }, rnd);
        const a = await host.step(new Map([['w', g.slice()]]), 3e-3);
        const b = await dev.step(new Map([['w', tensor(g, [n])]]), 3e-3);
        expect(b.gradNorm).toBeCloseTo(a.gradNorm, 9);
        const pa = (await a.params.get('w')!.data()) as Float32Array;
        const pb = (await b.params.get('w')!.data()) as Float32Array;
        let diff = 0;
        for (let i = 0; i < n; i++) if (pa[i] !== pb[i]) diff++;
        expect(diff).toBe(0);
      }
      const hs = host.toHost().params.w;
      const ds = dev.toHost().params.w;
      expect(Buffer.from(ds.m.buffer).equals(Buffer.from(hs.m.buffer))).toBe(true);
      expect(Buffer.from(ds.v.buffer).equals(Buffer.from(hs.v.buffer))).toBe(true);
      dev.dispose();
      cuda.dispose();
    });
  }
});
