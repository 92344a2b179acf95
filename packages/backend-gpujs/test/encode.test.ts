import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { E4M3, E5M2, F16, bitsToF32, decodeMinifloat, encodeMinifloat, f32Bits, f32ToBf16Bits, quantizeBlockwise, type DType, type MinifloatFormat, type TensorView } from '@kiln/core';
import type { GpujsBackend } from '@kiln/backend-gpujs';
import { ENGINES, openOn } from './open-engine.js';

// The GPU encoders (src/kernels.ts: encodeStmts, encodeCastKernel, QUANT_SCALES,
// quantCodesKernel) on each engine (Chromium: GLSL ES 3.00; headless-gl: GLSL ES 1.00), bit
// for bit against core: casts to f16/bf16/e4m3/e5m2 against encodeMinifloat / f32ToBf16Bits
// on every code's value, every midpoint between adjacent codes and its f32 neighbours, the
// overflow thresholds, +-0, +-inf, NaN and random f32 patterns; quantizeBlockwise against
// core's quantizeBlockwise (codes and scales). And neither takes the host path.
// Not compared: f32 subnormal inputs (WebGL flushes them: they give a zero code, checked
// separately) and an f32 NaN's sign (GLSL cannot see it: it gives the positive NaN code; a
// NaN *code* keeps its sign).


let seed = 20261127;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const rndU32 = (): number => ((rnd() * 65536) >>> 0) * 65536 + ((rnd() * 65536) >>> 0);
const view = (dataId: object, shape: number[], dtype: DType = 'f32'): TensorView => ({ dataId, shape, dtype });

type Target = 'f16' | 'bf16' | 'e4m3' | 'e5m2';
const FMT: Record<Exclude<Target, 'bf16'>, MinifloatFormat> = { f16: F16, e4m3: E4M3, e5m2: E5M2 };
const NAN_MAG: Record<Target, number> = { f16: 0x7e00, bf16: 0x7fc0, e4m3: 0x7f, e5m2: 0x7f };
const SIGN: Record<Target, number> = { f16: 0x8000, bf16: 0x8000, e4m3: 0x80, e5m2: 0x80 };
const BITS: Record<Target, number> = { f16: 16, bf16: 16, e4m3: 8, e5m2: 8 };

/** core's encoder; NaN -> the positive NaN code (see above). */
function ref(x: number, to: Target, saturate: boolean): number {
  if (x !== x) return NAN_MAG[to];
  return to === 'bf16' ? f32ToBf16Bits(x) : encodeMinifloat(x, FMT[to], saturate);
}

/** Exact f32 value of a code (NaN codes NaN). */
function decode(code: number, from: Target): number {
  if (from === 'bf16') return bitsToF32(code << 16);
  const special =
    from === 'e4m3' ? (m: number) => (m === 0x7f ? NaN : undefined) : from === 'e5m2' ? (m: number) => (m === 0x7c ? Infinity : m > 0x7c ? NaN : undefined) : (m: number) => (m === 0x7c00 ? Infinity : m > 0x7c00 ? NaN : undefined);
  return decodeMinifloat(code, FMT[from], special);
}

const isSub = (x: number): boolean => x !== 0 && Math.abs(x) < 2 ** -126;
const up = (x: number): number => bitsToF32(f32Bits(x) + 1); // next f32 away from zero (x finite, nonzero or +0)
const down = (x: number): number => bitsToF32(f32Bits(x) - 1);

/** Values around every rounding boundary of `to`, plus specials and random patterns (no f32 subnormals). */
function inputs(to: Target): Float32Array {
  let v: number[] = [0, -0, Infinity, -Infinity, NaN, 3.4028234663852886e38, 2 ** -126, 2 ** 127, 1, 1.5, 0.1];
  const codes = 1 << BITS[to];
  const pos: number[] = [];
  for (let c = 0; c < codes / 2; c++) {
    const x = decode(c, to);
    if (Number.isFinite(x) && !isSub(x)) pos.push(x);
  }
  pos.sort((a, b) => a - b);
  for (let i = 0; i < pos.length; i++) {
    const x = pos[i];
    v.push(x);
    if (x > 0) v.push(up(x), down(x));
    // the midpoint to the next code (or, above the largest finite, to where the next would be)
    const next = i + 1 < pos.length ? pos[i + 1] : x + (x - pos[i - 1]);
    const mid = Math.fround((x + next) / 2);
    if (mid === (x + next) / 2 && Number.isFinite(mid) && !isSub(mid)) v.push(mid, up(mid), down(mid));
    if (i + 1 === pos.length) v.push(Math.fround(next), x * 2, x * 1024);
  }
  for (let i = 0; i < 4096; i++) {
    let x = bitsToF32(rndU32());
    if (x !== x) x = NaN;
    if (!isSub(x)) v.push(x);
  }
  // small magnitudes at every exponent (the subnormal range of the target and below)
  for (let e = -126; e <= 20; e++) v.push(Math.fround(2 ** e * (1 + rnd())), Math.fround(2 ** e * 1.5), 2 ** e);
  v = v.filter((x) => !isSub(x));
  const out = new Float32Array(v.length * 2);
  for (let i = 0; i < v.length; i++) {
    out[2 * i] = v[i];
    out[2 * i + 1] = -v[i];
  }
  return out;
}

function mismatches(got: ArrayLike<number>, want: ArrayLike<number>, x: ArrayLike<number>, limit = 5): string[] {
  const bad: string[] = [];
  for (let i = 0; i < want.length && bad.length < limit; i++) {
    if (got[i] !== want[i]) bad.push(`x=${x[i]} (0x${f32Bits(x[i]).toString(16)}): got 0x${got[i].toString(16)} want 0x${want[i].toString(16)}`);
  }
  return bad;
}

for (const engine of ENGINES) describe(`gpujs GPU encoders on ${engine}`, () => {
  let b: GpujsBackend | undefined;
  let reason = '';
  let host: ReturnType<typeof vi.spyOn> | undefined;
  beforeAll(async () => {
    // casts take the GPU encoder only when asked (by default the exact host path)
    process.env.KILN_GPUJS_GPU_CAST = '1';
    ({ b, reason } = await openOn(engine));
    if (b) host = vi.spyOn(b as unknown as { host: (...a: unknown[]) => unknown }, 'host');
  });
  afterAll(() => {
    delete process.env.KILN_GPUJS_GPU_CAST;
    b?.dispose();
  });

  const cast = async (x: ArrayLike<number>, from: DType, to: Target, saturate: boolean): Promise<ArrayLike<number>> => {
    const id = b!.write(x as Float32Array, from, [x.length]);
    const out = b!.cast(view(id, [x.length], from), to, { saturate });
    const got = await b!.read(view(out, [x.length], to));
    b!.release(id);
    b!.release(out);
    return got as ArrayLike<number>;
  };

  for (const to of ['e4m3', 'e5m2', 'f16', 'bf16'] as const) {
    for (const saturate of to === 'bf16' ? [false] : [false, true]) {
      it(`cast f32 -> ${to}${saturate ? ' (saturate)' : ''}: core's codes bit for bit`, async (t) => {
        if (!b) return t.skip(reason);
        host!.mockClear();
        const x = inputs(to);
        const want = Array.from(x, (v) => ref(v, to, saturate));
        const got = await cast(x, 'f32', to, saturate);
        expect(mismatches(got, want, x)).toEqual([]);
        expect(host!).not.toHaveBeenCalled();
      });
    }
  }

  it('cast f32 subnormals -> a zero code of either sign', async (t) => {
    if (!b) return t.skip(reason);
    const x = Float32Array.from([1e-40, -1e-40, 2 ** -149, -(2 ** -149), 1.1e-38, -1.1e-38]);
    for (const to of ['e4m3', 'e5m2', 'f16', 'bf16'] as const) {
      const got = await cast(x, 'f32', to, false);
      for (let i = 0; i < x.length; i++) expect(got[i] & ~SIGN[to], `${to} ${x[i]}`).toBe(0);
    }
  });

  it('casts between code dtypes and from integers through the exact f32 value', async (t) => {
    if (!b) return t.skip(reason);
    host!.mockClear();
    const all = (n: number, from: Target): number[] => Array.from({ length: n }, (_, c) => c).filter((c) => !isSub(decode(c, from)));
    const pairs: [Target | 'i32' | 'u8', Target, number[]][] = [
      ['f16', 'e4m3', all(65536, 'f16')],
      ['f16', 'e5m2', all(65536, 'f16')],
      ['f16', 'bf16', all(65536, 'f16')],
      ['bf16', 'f16', all(65536, 'bf16')],
      ['bf16', 'e4m3', all(65536, 'bf16')],
      ['e4m3', 'e5m2', all(256, 'e4m3')],
      ['e5m2', 'e4m3', all(256, 'e5m2')],
      ['e4m3', 'f16', all(256, 'e4m3')],
      ['i32', 'f16', Array.from({ length: 4000 }, () => Math.round((rnd() - 0.5) * 2 ** (rnd() * 24)))],
      ['i32', 'e4m3', Array.from({ length: 1000 }, (_, i) => i - 500)],
      ['u8', 'bf16', Array.from({ length: 256 }, (_, i) => i)],
    ];
    for (const [from, to, codes] of pairs) {
      for (const saturate of [false, true]) {
        const src = from === 'i32' ? Int32Array.from(codes) : BITS[from as Target] === 16 ? Uint16Array.from(codes) : Uint8Array.from(codes);
        const vals = Array.from(src, (c) => (from === 'i32' || from === 'u8' ? Math.fround(c) : decode(c, from)));
        const got = await cast(src as unknown as Float32Array, from, to, saturate);
        // a NaN code keeps its sign (but bf16 NaN is always 0x7fc0)
        const neg = (c: number): boolean => from !== 'i32' && from !== 'u8' && (c & SIGN[from as Target]) !== 0;
        const want = vals.map((v, i) => (v !== v && to !== 'bf16' && neg(src[i]) ? NAN_MAG[to] | SIGN[to] : ref(v, to, saturate)));
        expect(mismatches(got, want, vals), `${from} -> ${to}`).toEqual([]);
      }
    }
    expect(host!).not.toHaveBeenCalled();
  });

  it('by default (no KILN_GPUJS_GPU_CAST) a cast takes the exact host path: an f32 -NaN keeps its sign', async (t) => {
    if (!b) return t.skip(reason);
    delete process.env.KILN_GPUJS_GPU_CAST;
    try {
      host!.mockClear();
      // (a negative quiet NaN by its bits: a JS -NaN literal is just NaN)
      const got = await cast(new Float32Array(new Uint32Array([0xffc00000, 0x3fc00000]).buffer), 'f32', 'f16', false);
      expect(host!).toHaveBeenCalledTimes(1);
      expect(got[0] & 0x8000).toBe(0x8000);
    } finally {
      process.env.KILN_GPUJS_GPU_CAST = '1';
    }
  });

  it('KILN_GPUJS_GPU_ENCODE=0 takes the host path (same codes)', async (t) => {
    if (!b) return t.skip(reason);
    const x = inputs('e4m3').filter((v) => v === v);
    const want = Array.from(x, (v) => ref(v, 'e4m3', false));
    vi.stubEnv('KILN_GPUJS_GPU_ENCODE', '0');
    try {
      host!.mockClear();
      const got = await cast(x, 'f32', 'e4m3', false);
      expect(host!).toHaveBeenCalledTimes(1);
      expect(mismatches(got, want, x)).toEqual([]);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  describe('quantizeBlockwise', () => {
    /** Values over a wide range: signs, exponents 2^-40..2^40, exact codes' values times a power of two, zeros. */
    const matrix = (rows: number, cols: number): Float32Array => {
      const x = new Float32Array(rows * cols);
      for (let i = 0; i < x.length; i++) {
        const k = rnd();
        x[i] = k < 0.05 ? 0 : k < 0.1 ? -0 : (rnd() < 0.5 ? -1 : 1) * Math.fround((1 + rnd()) * 2 ** Math.floor(rnd() * 24 - 12)) * (k < 0.2 ? 2 ** Math.floor(rnd() * 60 - 30) : 1);
      }
      return x;
    };
    const cases: { shape: [number, number]; block: [number, number]; edit?: (x: Float32Array, cols: number) => void }[] = [
      { shape: [1, 1], block: [1, 128] },
      { shape: [3, 200], block: [1, 128] },
      { shape: [7, 129], block: [1, 128], edit: (x) => x.fill(0, 0, 128) }, // an all-zero block
      { shape: [5, 300], block: [1, 128], edit: (x, c) => void (x[c + 5] = 3.0e38) }, // a huge outlier
      { shape: [130, 257], block: [128, 128], edit: (x, c) => void (x[3 * c + 200] = -2.5e37) },
      { shape: [129, 131], block: [128, 128], edit: (x, c) => { for (let r = 0; r < 128; r++) x.fill(0, r * c, r * c + 128); } },
      { shape: [9, 140], block: [1, 128], edit: (x, c) => { for (let j = 0; j < 128; j++) x[2 * c + j] = Math.fround(1e-30 * (j - 64)); x[4 * c + 7] = NaN; x[6 * c + 130] = Infinity; } },
    ];
    /** A block [1,128] with amax = the format's max and midpoints between its codes (ties with ue8m0 scales, a power of two). */
    const ties = (format: 'e4m3' | 'e5m2') => (x: Float32Array): void => {
      const vals = Array.from({ length: 127 }, (_, c) => decode(c, format)).filter((v) => Number.isFinite(v));
      const max = vals[vals.length - 1];
      x[0] = max;
      for (let j = 1; j < 128; j++) {
        const i = (j * 7) % (vals.length - 1);
        x[j] = (j % 2 ? 1 : -1) * ((vals[i] + vals[i + 1]) / 2);
      }
    };
    for (const format of ['e4m3', 'e5m2'] as const) {
      for (const scaleFormat of ['fp32', 'ue8m0'] as const) {
        it(`${format}, ${scaleFormat} scales: core's codes and scales bit for bit (odd shapes, [1,128] and [128,128] blocks, zero/outlier/tiny/NaN/inf blocks)`, async (t) => {
          if (!b) return t.skip(reason);
          host!.mockClear();
          for (const c of [...cases, { shape: [3, 128] as [number, number], block: [1, 128] as [number, number], edit: ties(format) }]) {
            const [rows, cols] = c.shape;
            const x = matrix(rows, cols);
            c.edit?.(x, cols);
            const want = quantizeBlockwise(x, c.shape, c.block, { format, scaleFormat });
            const id = b.write(x, 'f32', c.shape);
            const r = b.quantizeBlockwise(view(id, c.shape), c.block, { format, scaleFormat });
            const codes = (await b.read(view(r.codes, c.shape, format))) as Uint8Array;
            const ss = [Math.ceil(rows / c.block[0]), Math.ceil(cols / c.block[1])];
            const scales = (await b.read(view(r.scales, ss))) as Float32Array;
            const label = `${JSON.stringify(c.shape)} ${JSON.stringify(c.block)}`;
            const sb = (s: Float32Array): number[] => Array.from(s, (v) => (v !== v ? -1 : f32Bits(v)));
            expect(sb(scales), label).toEqual(sb(want.scales));
            expect(mismatches(codes, want.codes, x), label).toEqual([]);
            for (const d of [id, r.codes, r.scales]) b.release(d);
          }
          expect(host!).not.toHaveBeenCalled();
        });
      }
    }
  });
});
