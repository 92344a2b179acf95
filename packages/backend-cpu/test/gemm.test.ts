import { afterAll, describe, expect, it } from 'vitest';
import { configureGemm, disposeGemmPool, gemmInfo, sgemm, type GemmConfig, type GemmJob } from '../src/gemm/index.js';

// Deterministic inputs (xorshift) so a failure reproduces.
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296 - 0.5;
  };
}

function randArray(len: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = r() * 2;
  return out;
}

interface Case {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  aOffsets?: number[];
  bOffsets?: number[];
  batch?: number;
}

/** Float64 reference and the error bound from f32 accumulation: |err| <= eps_k * sum|a||b| + tiny. */
function reference(job: GemmJob): { ref: Float64Array; bound: Float64Array } {
  const { m, n, k, a, b } = job;
  const count = job.cOffsets.length;
  const ref = new Float64Array(count * m * n);
  const bound = new Float64Array(count * m * n);
  // Every partial sum is rounded to f32: relative error per step <= 2^-24, at most k steps.
  const eps = (k + 2) * 2 ** -24;
  for (let e = 0; e < count; e++) {
    const ao = job.aOffsets[e];
    const bo = job.bOffsets[e];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let sa = 0;
        for (let p = 0; p < k; p++) {
          const av = job.transA ? a[ao + p * m + i] : a[ao + i * k + p];
          const bv = job.transB ? b[bo + j * k + p] : b[bo + p * n + j];
          s += av * bv;
          sa += Math.abs(av * bv);
        }
        ref[e * m * n + i * n + j] = s;
        bound[e * m * n + i * n + j] = eps * sa + 1e-30;
      }
    }
  }
  return { ref, bound };
}

function makeJob(cs: Case, seed: number): GemmJob {
  const { m, n, k } = cs;
  const count = cs.batch ?? cs.aOffsets?.length ?? 1;
  const aOffsets = cs.aOffsets ?? Array.from({ length: count }, (_, e) => e * m * k);
  const bOffsets = cs.bOffsets ?? Array.from({ length: count }, (_, e) => e * k * n);
  // C entries laid out in reverse order with a gap, to check offsets are honoured
  const gap = 3;
  const cOffsets = Array.from({ length: count }, (_, e) => (count - 1 - e) * (m * n + gap) + gap);
  const aLen = Math.max(0, ...aOffsets.map((o) => o + m * k));
  const bLen = Math.max(0, ...bOffsets.map((o) => o + k * n));
  const cLen = count * (m * n + gap) + gap;
  return {
    m, n, k,
    transA: cs.transA ?? false,
    transB: cs.transB ?? false,
    a: randArray(aLen, seed * 7 + 1),
    b: randArray(bLen, seed * 13 + 2),
    c: new Float32Array(cLen).fill(Number.NaN),
    aOffsets, bOffsets, cOffsets,
  };
}

function check(job: GemmJob): void {
  const { ref, bound } = reference(job);
  const { m, n } = job;
  const count = job.cOffsets.length;
  // gaps (not part of any C) must stay poisoned
  const covered = new Uint8Array(job.c.length);
  let bad = 0;
  let first = '';
  for (let e = 0; e < count; e++) {
    const co = job.cOffsets[e];
    for (let x = 0; x < m * n; x++) {
      covered[co + x] = 1;
      const got = job.c[co + x];
      const want = ref[e * m * n + x];
      if (!(Math.abs(got - want) <= bound[e * m * n + x])) {
        if (bad++ === 0) first = `entry ${e} [${Math.floor(x / n)}, ${x % n}]: got ${got}, want ${want} (bound ${bound[e * m * n + x]})`;
      }
    }
  }
  expect(first, `${bad} wrong elements; first: ${first}`).toBe('');
  for (let i = 0; i < job.c.length; i++) if (!covered[i]) expect(Number.isNaN(job.c[i]), `c[${i}] outside C was written`).toBe(true);
}

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 1, 7], [1, 17, 1], [17, 1, 1], [2, 16, 1], [3, 5, 7], [7, 3, 5],
  [16, 16, 16], [15, 17, 33], [31, 33, 64], [64, 64, 64], [1, 300, 257], [300, 1, 257],
  [127, 129, 131], [129, 127, 5], [96, 96, 300], [300, 257, 513], [33, 520, 260],
  [2, 700, 3], [4, 37, 45], [3, 531, 17], [1, 1, 300], [5, 77, 19],
];

const saved: GemmConfig = configureGemm();
afterAll(() => {
  configureGemm(saved);
  disposeGemmPool();
});

describe('sgemm', () => {
  it('loads the wasm SIMD kernel here', () => {
    const info = gemmInfo();
    expect(info.simd, info.reason).toBe(true);
    expect(info.kernel).toBe('wasm-simd');
    expect(info.threads).toBeGreaterThanOrEqual(1);
  });

  const modes: Array<[string, Partial<GemmConfig>]> = [
    ['ts kernel', { kernel: 'ts', threads: 1 }],
    ['wasm, 1 thread', { kernel: 'wasm', threads: 1, wasmMinMacs: 0 }],
    ['wasm, 3 threads', { kernel: 'wasm', threads: 3, wasmMinMacs: 0, parallelMinFlops: 0 }],
  ];

  for (const [label, opts] of modes) {
    describe(label, () => {
      it('matches a float64 reference over many shapes and transposes', () => {
        configureGemm({ ...saved, ...opts });
        let seed = 1;
        for (const [m, n, k] of SHAPES) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) {
              const job = makeJob({ m, n, k, transA, transB }, seed++);
              sgemm(job);
              check(job);
            }
          }
        }
      });

      it('handles batches, including broadcast operands', () => {
        configureGemm({ ...saved, ...opts });
        const cases: Case[] = [
          { m: 5, n: 9, k: 3, batch: 4 },
          { m: 33, n: 17, k: 65, batch: 3, transB: true },
          { m: 40, n: 40, k: 40, aOffsets: [0, 0, 0, 0, 0], bOffsets: [0, 1600, 3200, 4800, 6400] },
          { m: 40, n: 36, k: 24, aOffsets: [0, 960, 1920], bOffsets: [0, 0, 0], transA: true },
          { m: 130, n: 70, k: 90, aOffsets: [11700, 0, 11700], bOffsets: [6300, 6300, 0], transA: true, transB: true },
          { m: 8, n: 8, k: 8, batch: 37 },
          { m: 3, n: 20, k: 20, aOffsets: [5, 0, 17, 5, 5, 9, 1, 2, 3], bOffsets: [0, 0, 0, 0, 400, 400, 400, 0, 1] },
        ];
        let seed = 100;
        for (const cs of cases) {
          const job = makeJob(cs, seed++);
          sgemm(job);
          check(job);
        }
      });

      it('k = 0 gives zeros, empty shapes write nothing', () => {
        configureGemm({ ...saved, ...opts });
        const c = new Float32Array(12).fill(Number.NaN);
        sgemm({ m: 3, n: 4, k: 0, transA: false, transB: false, a: new Float32Array(0), b: new Float32Array(0), c, aOffsets: [0], bOffsets: [0], cOffsets: [0] });
        expect(Array.from(c)).toEqual(new Array(12).fill(0));
        const c2 = new Float32Array(4).fill(Number.NaN);
        sgemm({ m: 0, n: 4, k: 3, transA: false, transB: false, a: new Float32Array(0), b: new Float32Array(12), c: c2, aOffsets: [0], bOffsets: [0], cOffsets: [0] });
        sgemm({ m: 2, n: 2, k: 3, transA: false, transB: false, a: new Float32Array(6), b: new Float32Array(6), c: c2, aOffsets: [], bOffsets: [], cOffsets: [] });
        expect(c2.every(Number.isNaN)).toBe(true);
      });

      it('propagates NaN and Inf', () => {
        configureGemm({ ...saved, ...opts });
        for (const [m, n, k] of [[4, 4, 4], [37, 41, 43]] as const) {
          const job = makeJob({ m, n, k }, 7);
          job.a[1 * k + 2] = Number.NaN; // row 1 of C is NaN everywhere
          job.b[3 * n + 2] = Number.POSITIVE_INFINITY; // column 2 gets +-Inf (or NaN on row 1)
          job.a.fill(0, 2 * k, 3 * k); // row 2: 0 * Inf = NaN in column 2
          sgemm(job);
          const at = (i: number, j: number) => job.c[job.cOffsets[0] + i * n + j];
          for (let j = 0; j < n; j++) expect(Number.isNaN(at(1, j))).toBe(true);
          expect(Number.isNaN(at(2, 2))).toBe(true);
          expect(at(2, 0)).toBe(0);
          expect(Math.abs(at(0, 2))).toBe(Number.POSITIVE_INFINITY);
          expect(Number.isFinite(at(0, 1))).toBe(true);
        }
      });
    });
  }

  it('threaded: large shapes, both split modes, repeated calls', () => {
    configureGemm({ ...saved, kernel: 'wasm', threads: 2, parallelMinFlops: 0 });
    let seed = 500;
    // one entry (split inside the GEMM), few entries (sequential, split), many entries (spread)
    const cases: Case[] = [
      { m: 300, n: 257, k: 513, transB: true },
      { m: 129, n: 700, k: 300, transA: true },
      { m: 290, n: 290, k: 290, batch: 3 },
      { m: 70, n: 70, k: 300, aOffsets: [0, 0, 0, 0, 0, 0, 0], bOffsets: [0, 21000, 42000, 0, 21000, 42000, 0] },
      // few rows (B read in place, split by columns)
      { m: 3, n: 1000, k: 300, transA: true },
      { m: 1, n: 513, k: 1100, transB: true },
      { m: 4, n: 2000, k: 101, transA: true, transB: true },
      { m: 2, n: 900, k: 333, batch: 2 },
      { m: 1, n: 300, k: 500, batch: 6, transA: true, bOffsets: [0, 0, 150000, 150000, 0, 150000] },
    ];
    for (let rep = 0; rep < 3; rep++) {
      for (const cs of cases) {
        const job = makeJob(cs, seed++);
        sgemm(job);
        check(job);
      }
    }
    expect(gemmInfo().threads).toBe(2);
    // after disposal the next call starts a fresh pool and memory
    disposeGemmPool();
    const job = makeJob(cases[0], seed++);
    sgemm(job);
    check(job);
  });

  it('the default configuration (auto kernel choice) is correct on a mid-size problem', () => {
    configureGemm(saved);
    const job = makeJob({ m: 200, n: 190, k: 180, transA: true }, 9);
    sgemm(job);
    check(job);
  });

  it('rejects offsets outside the arrays', () => {
    configureGemm(saved);
    const job = makeJob({ m: 4, n: 4, k: 4 }, 3);
    expect(() => sgemm({ ...job, aOffsets: [1] })).toThrow(RangeError);
    expect(() => sgemm({ ...job, cOffsets: [-1] })).toThrow(RangeError);
    expect(() => sgemm({ ...job, bOffsets: [] })).toThrow(RangeError);
  });
});
