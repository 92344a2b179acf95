/**
 * The headless-gl engine's output-texture pool (src/engine.ts): kernels render into textures of
 * freed tensors instead of new ones. These tests drive the engine's own commands (as the backend
 * sends them) so that every texture's life is under the test's control.
 */
import { describe, expect, it } from 'vitest';
import { GpujsBackend } from '@kiln/backend-gpujs';
import type { EngineCommand, EngineStats } from '@kiln/backend-gpujs';

type Sync = { exec(batch: EngineCommand[]): void; readF32(id: number): Float32Array; stats(): EngineStats; finish(): void };

async function headlessGl(t: { skip(msg: string): void }, env?: Record<string, string>): Promise<{ b: GpujsBackend; sp: Sync } | undefined> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env ?? {})) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    const b = await GpujsBackend.create({ engine: 'headless-gl' });
    return { b, sp: (b as unknown as { syncPage: Sync }).syncPage };
  } catch (e) {
    t.skip((e as Error).message);
    return undefined;
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

// y = a * m[0] + m[1]; y = a + b (float64 references below, compared with a relative tolerance)
const AFFINE = 'function (a, m) { return a[this.thread.x] * m[0] + m[1]; }';
const ADD = 'function (a, b, m) { return a[this.thread.x] + b[this.thread.x]; }';

/** a small deterministic generator (mulberry32) */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectClose(got: Float32Array, want: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= 1e-5 * (1 + Math.abs(want[i])))) throw new Error(`${what}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}

describe('@kiln/backend-gpujs texture pool (headless-gl)', () => {
  it('a pooled texture is never one a live tensor still holds: random chains of kernels and frees keep every live value', async (t) => {
    const e = await headlessGl(t);
    if (!e) return;
    const { b, sp } = e;
    try {
      expect(sp.stats().pool).toBe(true);
      const r = rng(1234);
      const live = new Map<number, Float64Array>();
      let next = 1;
      const sizes = [7, 64, 65, 300, 4100];
      const pick = (n?: number): number | undefined => {
        const ids = [...live.keys()].filter((id) => n === undefined || live.get(id)!.length === n);
        return ids.length ? ids[Math.floor(r() * ids.length)] : undefined;
      };
      const upload = (n: number): number => {
        const v = Float64Array.from({ length: n }, () => Math.fround(r() * 4 - 2));
        const id = next++;
        sp.exec([{ t: 'up', id, n, f32: Float32Array.from(v) }]);
        live.set(id, v);
        return id;
      };
      for (const n of sizes) upload(n);
      for (let step = 0; step < 160; step++) {
        const u = r();
        if (u < 0.45) {
          // y = affine(x): x any live tensor, the kernel's previous output included
          const x = pick()!;
          const xv = live.get(x)!;
          const m0 = Math.fround(r() * 2.4 - 1.2);
          const m1 = Math.fround(r() - 0.5);
          const id = next++;
          sp.exec([{ t: 'k', id, n: xv.length, src: AFFINE, ins: [x], meta: [m0, m1] }]);
          live.set(id, Float64Array.from(xv, (a) => a * m0 + m1));
        } else if (u < 0.7) {
          // z = x + y of one size (x may be y: the same texture twice)
          const x = pick()!;
          const n = live.get(x)!.length;
          const y = pick(n)!;
          const xv = live.get(x)!;
          const yv = live.get(y)!;
          const id = next++;
          sp.exec([{ t: 'k', id, n, src: ADD, ins: [x, y], meta: [] }]);
          live.set(id, Float64Array.from(xv, (a, i) => a + yv[i]));
        } else if (u < 0.95) {
          // free something (keep at least one tensor of every size to build on)
          const x = pick();
          if (x !== undefined && [...live.values()].filter((v) => v.length === live.get(x)!.length).length > 1) {
            sp.exec([{ t: 'free', id: x }]);
            live.delete(x);
          }
        } else {
          upload(sizes[Math.floor(r() * sizes.length)]);
        }
        // every live tensor still holds its values
        for (const [id, want] of live) expectClose(sp.readF32(id), want, `step ${step}: tensor ${id} (n = ${want.length})`);
      }
      const st = sp.stats();
      // the pool did take part (else this test tests nothing)
      expect(st.reused).toBeGreaterThan(20);
      expect(st.pooled).toBeGreaterThan(20);
      sp.exec([...live.keys()].map((id) => ({ t: 'free' as const, id })));
    } finally {
      b.dispose();
    }
  });

  it('a kernel that reads its own output, frees it, changes size and reads its own output again gives the right values (gpu.js prevArg)', async (t) => {
    const e = await headlessGl(t);
    if (!e) return;
    const { b, sp } = e;
    try {
      // a kernel of its own (a source no other test uses) and sizes nothing else has pooled
      const K = 'function (a, m) { return a[this.thread.x] * m[0] + m[1];  }';
      const up = (id: number, n: number): void => sp.exec([{ t: 'up', id, n, f32: Float32Array.from({ length: n }, (_, i) => i) }]);
      const k = (id: number, x: number, n: number): void => sp.exec([{ t: 'k', id, n, src: K, ins: [x], meta: [2, 1] }]);
      up(1, 53);
      k(2, 1, 53);
      k(3, 2, 53); // reads the kernel's own output texture
      sp.exec([{ t: 'free', id: 2 }]);
      up(4, 91);
      k(5, 4, 91); // another size
      k(6, 5, 91); // its own output again
      expectClose(sp.readF32(6), Float64Array.from({ length: 91 }, (_, i) => 4 * i + 3), 'size 91');
      expectClose(sp.readF32(3), Float64Array.from({ length: 53 }, (_, i) => 4 * i + 3), 'size 53');
      sp.exec([1, 3, 4, 5, 6].map((id) => ({ t: 'free' as const, id })));
    } finally {
      b.dispose();
    }
  });

  it('a meta argument equal to the last call\'s is not uploaded again, and one that differs is', async (t) => {
    const e = await headlessGl(t);
    if (!e) return;
    const { b, sp } = e;
    try {
      const K = 'function (a, m) { return a[this.thread.x] * m[0] + m[1];   }';
      const n = 9;
      sp.exec([{ t: 'up', id: 1, n, f32: Float32Array.from({ length: n }, (_, i) => i + 1) }]);
      const metas = [[2, 1], [2, 1], [3, 0], [3, 0.5], [3, 0.5], [2, 1], [0, 7], [0, 7], [0, 8]];
      metas.forEach((meta, j) => sp.exec([{ t: 'k', id: 10 + j, n, src: K, ins: [1], meta }]));
      metas.forEach((meta, j) => {
        const got = sp.readF32(10 + j);
        for (let i = 0; i < n; i++) expect(got[i], `call ${j} element ${i}`).toBe(Math.fround((i + 1) * meta[0] + meta[1]));
      });
      sp.exec([1, ...metas.map((_, j) => 10 + j)].map((id) => ({ t: 'free' as const, id })));
    } finally {
      b.dispose();
    }
  });

  it('kernel calls take the textures of freed tensors: a chain of calls whose results are freed creates no texture, and KILN_GPUJS_TEXTURE_POOL=0 turns the pool off', async (t) => {
    for (const pool of [true, false]) {
      const e = await headlessGl(t, pool ? undefined : { KILN_GPUJS_TEXTURE_POOL: '0' });
      if (!e) return;
      const { b, sp } = e;
      try {
        expect(sp.stats().pool).toBe(pool);
        const n = 1000;
        sp.exec([{ t: 'up', id: 1, n, f32: Float32Array.from({ length: n }, (_, i) => i) }]);
        // y_i = y_{i-1} * 1 + 1 with y_{i-1} freed after each step, at two sizes taking turns
        const chain = (first: number, steps: number): number => {
          let y = first;
          for (let i = 0; i < steps; i++) {
            const id = 100 + i;
            sp.exec([{ t: 'k', id, n, src: AFFINE, ins: [y], meta: [1, 1] }]);
            // a second size from the same kernel: setOutput on every call
            sp.exec([{ t: 'k', id: 10_000 + i, n: 37, src: AFFINE, ins: [1], meta: [2, 0] }, { t: 'free', id: 10_000 + i }]);
            if (y !== first) sp.exec([{ t: 'free', id: y }]);
            y = id;
          }
          return y;
        };
        let y = chain(1, 5); // warm up: the kernel, its textures, the pool
        sp.exec([{ t: 'free', id: y }]);
        const before = sp.stats();
        y = chain(1, 40);
        const after = sp.stats();
        expectClose(sp.readF32(y), Float64Array.from({ length: n }, (_, i) => i + 40), 'the chain');
        if (pool) {
          expect(after.created - before.created).toBe(0);
          expect(after.reused - before.reused).toBeGreaterThanOrEqual(40);
        } else {
          // gpu.js alone: a new output texture per call (two calls a step)
          expect(after.created - before.created).toBeGreaterThanOrEqual(80);
          expect(after.reused).toBe(0);
        }
        sp.exec([{ t: 'free', id: y }, { t: 'free', id: 1 }]);
        expect(sp.stats().idle > 0).toBe(pool);
      } finally {
        b.dispose();
      }
    }
  });
  it('reads through the kept staging array hand out arrays of their own: a later read (any path, any size) leaves an earlier result as it was', async (t) => {
    const e = await headlessGl(t);
    if (!e) return;
    const { b, sp } = e;
    try {
      const r = rng(99);
      // one value per texel below READ4_MIN (4096), the gather pass above it, and sizes that shrink and grow
      const sizes = [300, 5000, 4100, 70000, 65, 20000];
      const results: { got: Float32Array; want: Float32Array }[] = [];
      let id = 1;
      for (const n of sizes) {
        const want = Float32Array.from({ length: n }, () => Math.fround(r() * 8 - 4));
        sp.exec([{ t: 'up', id, n, f32: want }]);
        const got = sp.readF32(id);
        expect(got.length).toBe(n);
        results.push({ got, want });
        id++;
      }
      // every earlier result still holds its own values after all the later reads
      for (const [k, { got, want }] of results.entries()) {
        for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) throw new Error(`read ${k} (n ${want.length}): element ${i} is ${got[i]}, want ${want[i]}`);
      }
      // and a returned array written by its owner does not change the next read
      results[0].got.fill(123);
      const again = sp.readF32(1);
      for (let i = 0; i < again.length; i++) expect(again[i]).toBe(results[0].want[i]);
    } finally {
      b.dispose();
    }
  });
});
