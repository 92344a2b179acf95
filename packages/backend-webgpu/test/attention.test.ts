/**
 * The fused attention kernel (wgsl/attention.ts) against a float64 reference: causal with
 * offset 0 and S - Tq, no mask, dk != dv (DeepSeek-V3's 192 / 128 included), S and Tq not
 * multiples of the tile, decode (Tq = 1), broadcast k/v leading axes, a batch count that
 * folds the dispatch into y; every layout and fallback (V from global memory, 1-deep chunks)
 * pinned through $KILN_WEBGPU_ATTENTION on the same cases; the tile plan within 8 / 16 / 48 KiB.
 * Split keys ($KILN_WEBGPU_ATTENTION_SPLITS forced): decode and Tq = 3 against S = 1 .. 1000,
 * ranges wholly past S or past the causal limit, broadcast k/v, every case above; the split plan.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, type AttentionKernelArgs } from '@kiln/core';
import { WebGpuBackend } from '@kiln/backend-webgpu';
import { attentionBatchMeta, attentionWorkgroupBytes, parseAttentionConfig, parseAttentionSplits, planAttention, planAttentionSplits } from '../src/wgsl/attention.js';
import { seededUniform } from './seeded.js';

process.env.EGL_PLATFORM ??= 'surfaceless';

let backend: WebGpuBackend | undefined;
let reason = '';
beforeAll(async () => {
  try {
    backend = await WebGpuBackend.create();
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    reason = e.message;
  }
});
afterAll(() => backend?.dispose());


const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/** float64 attention: out [B, Tq, dv] and logSumExp [B, Tq] over q's leading dims (k, v broadcast per axis). */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, lead: number[], kLead: number[], vLead: number[], Tq: number, S: number, dk: number, dv: number, args: AttentionKernelArgs) {
  const B = prod(lead);
  const out = new Float64Array(B * Tq * dv);
  const lse = new Float64Array(B * Tq);
  const s = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    // b's coordinates -> k's and v's batch index
    let rem = b;
    let kb = 0;
    let vb = 0;
    let kStride = 1;
    let vStride = 1;
    for (let d = lead.length - 1; d >= 0; d--) {
      const c = rem % lead[d];
      rem = Math.floor(rem / lead[d]);
      if (kLead[d] !== 1) kb += c * kStride;
      if (vLead[d] !== 1) vb += c * vStride;
      kStride *= kLead[d];
      vStride *= vLead[d];
    }
    for (let i = 0; i < Tq; i++) {
      const last = args.causalOffset === null ? S - 1 : Math.min(S - 1, args.causalOffset + i);
      let m = -Infinity;
      for (let j = 0; j <= last; j++) {
        let dot = 0;
        for (let d = 0; d < dk; d++) dot += q[(b * Tq + i) * dk + d] * k[(kb * S + j) * dk + d];
        s[j] = args.scale * dot;
        m = Math.max(m, s[j]);
      }
      let l = 0;
      for (let j = 0; j <= last; j++) l += Math.exp(s[j] - m);
      for (let j = 0; j <= last; j++) {
        const p = Math.exp(s[j] - m) / l;
        for (let c = 0; c < dv; c++) out[(b * Tq + i) * dv + c] += p * v[(vb * S + j) * dv + c];
      }
      lse[b * Tq + i] = m + Math.log(l);
    }
  }
  return { out, lse };
}

interface Case {
  name: string;
  lead: number[];
  kLead?: number[];
  vLead?: number[];
  Tq: number;
  S: number;
  dk: number;
  dv: number;
  causalOffset: number | null;
  scale?: number;
}

const worst = { out: 0, lse: 0 };

async function check(b: WebGpuBackend, c: Case, seed = 1): Promise<void> {
  const kLead = c.kLead ?? c.lead;
  const vLead = c.vLead ?? c.lead;
  const qs = [...c.lead, c.Tq, c.dk];
  const ks = [...kLead, c.S, c.dk];
  const vs = [...vLead, c.S, c.dv];
  const q = seededUniform(prod(qs), seed);
  const k = seededUniform(prod(ks), seed + 1);
  const v = seededUniform(prod(vs), seed + 2);
  const args: AttentionKernelArgs = { scale: c.scale ?? 1 / Math.sqrt(c.dk), causalOffset: c.causalOffset };
  const qi = b.write(q, 'f32', qs);
  const ki = b.write(k, 'f32', ks);
  const vi = b.write(v, 'f32', vs);
  const before = b.memory().buffers;
  const r = b.fused.attention!({ dataId: qi, shape: qs, dtype: 'f32' }, { dataId: ki, shape: ks, dtype: 'f32' }, { dataId: vi, shape: vs, dtype: 'f32' }, args);
  const got = (await b.read({ dataId: r.out, shape: [...c.lead, c.Tq, c.dv], dtype: 'f32' })) as Float32Array;
  const gotL = (await b.read({ dataId: r.logSumExp, shape: [...c.lead, c.Tq], dtype: 'f32' })) as Float32Array;
  expect(b.memory().buffers).toBe(before + 2);
  for (const id of [qi, ki, vi, r.out, r.logSumExp]) b.release(id);
  const ref = reference(q, k, v, c.lead, kLead, vLead, c.Tq, c.S, c.dk, c.dv, args);
  let eo = 0;
  for (let i = 0; i < ref.out.length; i++) {
    const e = Math.abs(got[i] - ref.out[i]);
    if (!(e <= 2e-6 + 2e-5 * Math.abs(ref.out[i]))) throw new Error(`${c.name}: out[${i}] = ${got[i]}, float64 ${ref.out[i]}`);
    eo = Math.max(eo, e);
  }
  let el = 0;
  for (let i = 0; i < ref.lse.length; i++) {
    const e = Math.abs(gotL[i] - ref.lse[i]);
    if (!(e <= 2e-6 + 2e-6 * Math.abs(ref.lse[i]))) throw new Error(`${c.name}: logSumExp[${i}] = ${gotL[i]}, float64 ${ref.lse[i]}`);
    el = Math.max(el, e);
  }
  worst.out = Math.max(worst.out, eo);
  worst.lse = Math.max(worst.lse, el);
}

const CASES: Case[] = [
  { name: 'causal offset 0, dk 24 / dv 16, T 37 (partial tiles)', lead: [2, 3], Tq: 37, S: 37, dk: 24, dv: 16, causalOffset: 0 },
  { name: 'causal offset S - Tq (new queries after a cache)', lead: [2], Tq: 20, S: 70, dk: 16, dv: 16, causalOffset: 50 },
  { name: 'no mask, Tq != S', lead: [3], Tq: 33, S: 45, dk: 24, dv: 16, causalOffset: null, scale: 0.3 },
  { name: 'DeepSeek-V3 heads: dk 192 / dv 128, causal', lead: [1, 2], Tq: 40, S: 40, dk: 192, dv: 128, causalOffset: 0 },
  { name: 'tiny preset heads: dk 48 / dv 32, T 128, causal', lead: [2, 4], Tq: 128, S: 128, dk: 48, dv: 32, causalOffset: 0 },
  { name: 'odd sizes: dk 13 / dv 7, S 29', lead: [2], Tq: 17, S: 29, dk: 13, dv: 7, causalOffset: 5 },
  { name: 'decode: Tq 1 after 99 cached keys', lead: [2, 4], Tq: 1, S: 100, dk: 48, dv: 32, causalOffset: 99 },
  { name: 'decode: Tq 1, no mask, dk 192 / dv 128', lead: [3], Tq: 1, S: 70, dk: 192, dv: 128, causalOffset: null },
  { name: 'a few new queries: Tq 3 after 61', lead: [2], Tq: 3, S: 64, dk: 32, dv: 24, causalOffset: 61 },
  { name: 'broadcast: k over heads, v over the batch', lead: [2, 3], kLead: [2, 1], vLead: [1, 3], Tq: 19, S: 23, dk: 16, dv: 12, causalOffset: 4 },
  { name: 'broadcast: one k and v for every batch index', lead: [2, 3], kLead: [1, 1], vLead: [1, 1], Tq: 9, S: 40, dk: 8, dv: 8, causalOffset: null },
  { name: 'causal offset past S (every key visible to late rows)', lead: [1], Tq: 10, S: 12, dk: 8, dv: 8, causalOffset: 7 },
];

/** The cases every pinned layout runs (a subset: 256-invocation workgroups are slow on llvmpipe). */
const PINNED_CASES = [CASES[0], CASES[1], CASES[3], CASES[5], CASES[6], CASES[9]];

/** Layouts pinned through $KILN_WEBGPU_ATTENTION: hardware 64 x 64 and 128 x 64 (long sequences), decode 4 x 64 (staged V and the GPU default), 1 x 256 (the GPU's one-row decode), V from global memory, the smallest fallback. */
const PINNED = ['16,16,4,4,32,32', '16,16,8,4,16,64', '4,64,1,1,32,64', '4,64,1,1,16,0', '1,256,1,1,4,0', '16,16,2,2,8,0', '16,16,1,1,1,0', '8,32,2,1,16,8'];

describe('WebGPU fused attention against float64', () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!backend) return t.skip(reason);
      await check(backend, c);
    });
  }

  it('every pinned layout and fallback on the same cases', async (t) => {
    if (!backend) return t.skip(reason);
    const saved = process.env.KILN_WEBGPU_ATTENTION;
    try {
      for (const p of PINNED) {
        process.env.KILN_WEBGPU_ATTENTION = p;
        for (const c of PINNED_CASES) {
          const spec = planAttention(c.dk, c.dv, c.Tq, prod(c.lead), backend.limits.maxComputeWorkgroupStorageSize, false, parseAttentionConfig(p));
          await check(backend, { ...c, name: `${c.name} [${p} -> ${spec.dc},${spec.vc}]` }, 7);
        }
      }
    } finally {
      if (saved === undefined) delete process.env.KILN_WEBGPU_ATTENTION;
      else process.env.KILN_WEBGPU_ATTENTION = saved;
    }
  });

  it('more than 65535 workgroups: the dispatch folds into y', async (t) => {
    if (!backend) return t.skip(reason);
    await check(backend, { name: 'fold', lead: [70001], Tq: 1, S: 3, dk: 4, dv: 4, causalOffset: 2 });
  });

  it('an empty batch and S = 0 without a mask (out 0, logSumExp -inf, no NaN)', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend;
    const view = (dataId: object, shape: number[]) => ({ dataId, shape, dtype: 'f32' as const });
    const q = b.write(seededUniform(2 * 3 * 4, 1), 'f32', [2, 3, 4]);
    const k = b.write(new Float32Array(0), 'f32', [2, 0, 4]);
    const v = b.write(new Float32Array(0), 'f32', [2, 0, 5]);
    const r = b.fused.attention!(view(q, [2, 3, 4]), view(k, [2, 0, 4]), view(v, [2, 0, 5]), { scale: 1, causalOffset: null });
    expect([...((await b.read(view(r.out, [2, 3, 5]))) as Float32Array)]).toEqual(new Array(30).fill(0));
    expect([...((await b.read(view(r.logSumExp, [2, 3]))) as Float32Array)]).toEqual(new Array(6).fill(-Infinity));
    const e = b.write(new Float32Array(0), 'f32', [0, 3, 4]);
    const r0 = b.fused.attention!(view(e, [0, 3, 4]), view(e, [0, 3, 4]), view(e, [0, 3, 4]), { scale: 1, causalOffset: 0 });
    expect((await b.read(view(r0.out, [0, 3, 4]))).length).toBe(0);
    for (const id of [q, k, v, e, r.out, r.logSumExp, r0.out, r0.logSumExp]) b.release(id);
  });

  it('worst errors (reported)', (t) => {
    if (!backend) return t.skip(reason);
    console.log(`attention: worst |out - float64| ${worst.out.toExponential(2)}, |logSumExp - float64| ${worst.lse.toExponential(2)}; workgroup memory ${backend.limits.maxComputeWorkgroupStorageSize} B`);
  });
});

/** Runs f with the given environment variables set (undefined: unset), restoring them after. */
async function withEnv(vars: Record<string, string | undefined>, f: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (k: string, v: string | undefined) => {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  };
  try {
    for (const [k, v] of Object.entries(vars)) set(k, v);
    await f();
  } finally {
    for (const [k, v] of Object.entries(saved)) set(k, v);
  }
}

describe('WebGPU fused attention, split keys (forced) against float64', () => {
  for (const Tq of [1, 3]) {
    for (const S of [1, 63, 64, 65, 1000]) {
      const off = Math.max(0, S - Tq);
      it(`Tq ${Tq}, S ${S}, causal offset ${off}, dk 192 / dv 128, splits 2 / 4 / 7 / 16`, async (t) => {
        if (!backend) return t.skip(reason);
        const b = backend;
        for (const splits of [2, 4, 7, 16]) {
          await withEnv({ KILN_WEBGPU_ATTENTION_SPLITS: String(splits) }, () =>
            check(b, { name: `split ${splits}: Tq ${Tq}, S ${S}`, lead: [2], Tq, S, dk: 192, dv: 128, causalOffset: off }, 11 + splits),
          );
        }
      });
    }
  }

  const SPLIT_CASES: [number, Case][] = [
    [5, { name: 'decode, no mask, 16 heads', lead: [16], Tq: 1, S: 300, dk: 64, dv: 48, causalOffset: null, scale: 0.5 }],
    [3, { name: 'Tq 3, no mask, dk != dv', lead: [2, 2], Tq: 3, S: 130, dk: 24, dv: 40, causalOffset: null }],
    [8, { name: 'decode, causal limit at key 100 of 1000: ranges 1..7 wholly masked', lead: [2], Tq: 1, S: 1000, dk: 32, dv: 16, causalOffset: 100 }],
    [6, { name: 'Tq 3, causal offset 10 of 200: later ranges wholly masked', lead: [3], Tq: 3, S: 200, dk: 16, dv: 8, causalOffset: 10 }],
    [9, { name: 'more splits than keys: S 5, 9 splits (ranges past S empty)', lead: [2], Tq: 1, S: 5, dk: 8, dv: 8, causalOffset: 4 }],
    [4, { name: 'broadcast: k over heads, v over the batch, decode', lead: [2, 3], kLead: [2, 1], vLead: [1, 3], Tq: 1, S: 150, dk: 16, dv: 12, causalOffset: 149 }],
    [3, { name: 'broadcast: one k and v for every batch index, Tq 3', lead: [2, 3], kLead: [1, 1], vLead: [1, 1], Tq: 3, S: 90, dk: 8, dv: 8, causalOffset: 87 }],
    [16, { name: 'large scores (scale 8): rescale across splits', lead: [2], Tq: 2, S: 257, dk: 16, dv: 16, causalOffset: 255, scale: 8 }],
  ];
  for (const [splits, c] of SPLIT_CASES) {
    it(`${c.name} [splits ${splits}]`, async (t) => {
      if (!backend) return t.skip(reason);
      const b = backend;
      await withEnv({ KILN_WEBGPU_ATTENTION_SPLITS: String(splits) }, () => check(b, c, 5));
    });
  }

  it('every case of the one-pass suite with 3 splits, and with 2 pinned layouts', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend;
    await withEnv({ KILN_WEBGPU_ATTENTION_SPLITS: '3' }, async () => {
      for (const c of CASES) await check(b, { ...c, name: `${c.name} [splits 3]` }, 3);
    });
    for (const p of ['4,64,1,1,32,64', '16,16,2,2,8,0']) {
      await withEnv({ KILN_WEBGPU_ATTENTION_SPLITS: '4', KILN_WEBGPU_ATTENTION: p }, async () => {
        for (const c of [CASES[1], CASES[6], CASES[8], CASES[9]]) await check(b, { ...c, name: `${c.name} [splits 4, ${p}]` }, 9);
      });
    }
  });

  it('folds past 65535 workgroups; 0 and 1 pin the one-pass kernel', async (t) => {
    if (!backend) return t.skip(reason);
    const b = backend;
    await withEnv({ KILN_WEBGPU_ATTENTION_SPLITS: '2' }, () => check(b, { name: 'fold, split 2', lead: [33000], Tq: 1, S: 3, dk: 4, dv: 4, causalOffset: 2 }));
    for (const off of ['0', '1']) {
      await withEnv({ KILN_WEBGPU_ATTENTION_SPLITS: off }, () => check(b, { name: `splits ${off}`, lead: [2], Tq: 1, S: 100, dk: 8, dv: 8, causalOffset: 99 }));
    }
  });
});

describe('attention split plan', () => {
  it('decode on a GPU: ~256 workgroups of >= 64 keys, whole tiles', () => {
    // DeepSeek-V3 decode: 16 heads, 1024 keys, one 64-key tile per workgroup
    expect(planAttentionSplits(1024, 16, 64, false)).toEqual({ splits: 16, chunk: 64 });
    expect(planAttentionSplits(1000, 16, 64, false)).toEqual({ splits: 16, chunk: 64 });
    expect(planAttentionSplits(4096, 16, 64, false)).toEqual({ splits: 16, chunk: 256 });
    expect(planAttentionSplits(1024, 2, 64, false)).toEqual({ splits: 16, chunk: 64 });
    expect(planAttentionSplits(65536, 1, 64, false)).toEqual({ splits: 256, chunk: 256 });
    // 8 sequences x 16 heads: 128 workgroups, 2 ranges
    expect(planAttentionSplits(1024, 128, 64, false)).toEqual({ splits: 2, chunk: 512 });
    // a 16-key tile: ranges stay >= 64 keys
    expect(planAttentionSplits(200, 16, 16, false)).toEqual({ splits: 4, chunk: 64 });
    // too few keys for two 64-key ranges, enough workgroups already, software adapters, S = 0
    for (const [S, wg, sw] of [[127, 16, false], [1024, 256, false], [1024, 16, true], [0, 16, false]] as const) {
      expect(planAttentionSplits(S, wg, 64, sw).splits, `${S} ${wg} ${sw}`).toBe(1);
    }
  });

  it('a pinned count is taken as is (0 / 1: off) and checked', () => {
    expect(planAttentionSplits(100, 16, 64, true, 7)).toEqual({ splits: 7, chunk: 15 });
    expect(planAttentionSplits(1024, 16, 64, false, 0).splits).toBe(1);
    expect(planAttentionSplits(1024, 16, 64, false, 1).splits).toBe(1);
    expect(parseAttentionSplits(undefined)).toBeUndefined();
    expect(parseAttentionSplits('')).toBeUndefined();
    expect(parseAttentionSplits('0')).toBe(0);
    expect(parseAttentionSplits('12')).toBe(12);
    for (const bad of ['-1', '2.5', 'x', '70000']) expect(() => parseAttentionSplits(bad), bad).toThrow(/KILN_WEBGPU_ATTENTION_SPLITS/);
  });
});

describe('attention tile plan', () => {
  const shapes = [
    [192, 128, 512, 16],
    [192, 128, 1, 16],
    [48, 32, 128, 64],
    [16, 8, 32, 8],
    [13, 7, 17, 2],
    [256, 2048, 64, 4],
    [4096, 4096, 64, 1],
  ];
  for (const limit of [8192, 16384, 32768, 49152]) {
    it(`fits ${limit} bytes of workgroup memory, hardware and software layouts`, () => {
      for (const [dk, dv, Tq, B] of shapes) {
        for (const software of [false, true]) {
          const s = planAttention(dk, dv, Tq, B, limit, software);
          expect(attentionWorkgroupBytes(s), `${dk}/${dv} Tq ${Tq}`).toBeLessThanOrEqual(limit);
          expect(s.vc === 0 || (s.tx * s.rk) % s.vc === 0).toBe(true);
        }
      }
    });
  }

  it('DeepSeek-V3 heads on an H100-sized limit: 128 x 64 tiles for long sequences, smaller query blocks while workgroups are few, a staged V; 8 KiB falls back to smaller stages', () => {
    const long = planAttention(192, 128, 1024, 16, 49152, false);
    expect([long.ty * long.rq, long.tx * long.rk]).toEqual([128, 64]);
    expect(long.vc).toBeGreaterThan(0);
    expect(attentionWorkgroupBytes(long)).toBeLessThanOrEqual(49152);
    // 16 heads of 512: 64 blocks of 128 rows would be too few; 32-row blocks give 256 workgroups
    const mid = planAttention(192, 128, 512, 16, 49152, false);
    expect([mid.ty * mid.rq, mid.tx * mid.rk]).toEqual([32, 64]);
    const small = planAttention(192, 128, 1024, 16, 8192, false);
    expect(attentionWorkgroupBytes(small)).toBeLessThanOrEqual(8192);
    expect(small.dc * small.rq).toBeLessThan(long.dc * long.rq);
  });

  it('decode on a GPU streams K and V: 1 x 256 invocations for one row, 4 x 64 for up to 4, shallow dk chunks, V from global memory', () => {
    expect(planAttention(192, 128, 1, 128, 49152, false)).toMatchObject({ ty: 1, tx: 256, rq: 1, rk: 1, dc: 4, vc: 0 });
    expect(planAttention(192, 128, 4, 128, 49152, false)).toMatchObject({ ty: 4, tx: 64, rq: 1, rk: 1, dc: 16, vc: 0 });
    // llvmpipe keeps its 16 invocations of 4 keys with V staged
    expect(planAttention(192, 128, 1, 128, 49152, true)).toMatchObject({ ty: 1, tx: 16, rk: 4, vc: 64 });
  });

  it('a pinned layout is parsed and checked', () => {
    expect(parseAttentionConfig('8,8,4,4,64,32')).toEqual({ ty: 8, tx: 8, rq: 4, rk: 4, dc: 64, vc: 32 });
    expect(parseAttentionConfig(undefined)).toBeUndefined();
    for (const bad of ['8,8,4,4,64', '32,16,1,1,8,8', '8,8,3,4,8,8', '8,8,4,4,8,64']) expect(() => parseAttentionConfig(bad), bad).toThrow(/KILN_WEBGPU_ATTENTION/);
  });

  it('merges leading axes with the same broadcast pattern', () => {
    // q [2, 3, 4], k [2, 3, 4] (full): one axis of 24, stride S*dk
    expect(attentionBatchMeta([2, 3, 4], [2, 3, 4], [2, 3, 4], 10, 20)).toEqual([1, 24, 10, 20]);
    // k broadcast over the middle axis, v full
    expect(attentionBatchMeta([2, 3], [2, 1], [2, 3], 10, 20)).toEqual([2, 2, 3, 10, 0, 60, 20]);
    // size-1 axes dropped
    expect(attentionBatchMeta([1, 5, 1], [1, 1, 1], [1, 5, 1], 10, 20)).toEqual([1, 5, 0, 20]);
  });
});
