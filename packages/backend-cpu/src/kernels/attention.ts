import type { Shape } from '@kiln/core';
import { sgemm } from '../gemm/index.js';
import { newF32, recycle } from '../pool.js';
import { prod } from './plan.js';

/**
 * Fused scaled dot-product attention for the CPU backend (`fused.attention`).
 *
 * q [..., Tq, dk], k [..., S, dk], v [..., S, dv]: k's and v's leading axes have q's rank and
 * are each 1 (broadcast) or q's size. Query i sees key j when causalOffset is null or
 * j <= causalOffset + i; masked keys take no part (their scores are never formed into the
 * softmax, their values get weight exactly 0). Returns out [..., Tq, dv] and the log
 * normaliser logSumExp [..., Tq] of the scaled scores.
 *
 * f32 (`attentionF32`): tiles of query rows go through the backend's GEMM (WebAssembly SIMD,
 * threads, f32 accumulation, as `matmul`): scores = Q_tile Kᵀ for the keys the tile can see,
 * then per row in float64: scale, max, exp and the softmax denominator; the unnormalised
 * weights (rounded to f32) times V by the GEMM again, and the rows divided by the float64
 * denominator. Scratch is one tile of scores, at most TILE floats whatever Tq, S and the batch.
 *
 * float64 reference mode (`attentionF64`): a plain float64 loop per query row (one score row
 * and one accumulator row of scratch), never rounding.
 */
export function attentionKernel(
  q: Float32Array | Float64Array,
  qShape: Shape,
  k: Float32Array | Float64Array,
  kShape: Shape,
  v: Float32Array | Float64Array,
  vShape: Shape,
  scale: number,
  causalOffset: number | null,
  f64: boolean,
): { out: Float32Array | Float64Array; logSumExp: Float32Array | Float64Array } {
  if (f64) return attentionF64(q, qShape, k, kShape, v, vShape, scale, causalOffset);
  return attentionF32(q as Float32Array, qShape, k as Float32Array, kShape, v as Float32Array, vShape, scale, causalOffset);
}

/** The sizes both kernels work with: q [...lead, Tq, dk], k [..., S, dk], v [..., S, dv]; batch = prod(lead). */
function attentionDims(qShape: Shape, kShape: Shape, vShape: Shape): { Tq: number; dk: number; S: number; dv: number; lead: Shape; batch: number } {
  const rank = qShape.length;
  const lead = qShape.slice(0, -2);
  return { Tq: qShape[rank - 2], dk: qShape[rank - 1], S: kShape[rank - 2], dv: vShape[rank - 1], lead, batch: prod(lead) };
}

/** Most f32 scores held at once (4 MiB): query rows x visible keys x batch entries of a tile. */
const TILE = 1 << 20;
/** Query rows per tile under a causal mask, so a tile's GEMMs skip the keys none of its rows sees. */
const CAUSAL_ROWS = 64;

function attentionF32(
  q: Float32Array,
  qShape: Shape,
  k: Float32Array,
  kShape: Shape,
  v: Float32Array,
  vShape: Shape,
  scale: number,
  causalOffset: number | null,
): { out: Float32Array; logSumExp: Float32Array } {
  const { Tq, dk, S, dv, lead, batch } = attentionDims(qShape, kShape, vShape);
  const out = newF32(batch * Tq * dv);
  const lse = newF32(batch * Tq);
  if (batch * Tq === 0) return { out, logSumExp: lse };
  if (S === 0) {
    // no key to attend to (only reachable through the raw kernel): zeros, log(0)
    out.fill(0);
    lse.fill(-Infinity);
    return { out, logSumExp: lse };
  }
  const kOffsets = broadcastOffsets(lead, kShape.slice(0, -2), S * dk);
  const vOffsets = broadcastOffsets(lead, vShape.slice(0, -2), S * dv);
  const rows = Math.max(1, Math.min(Tq, causalOffset === null ? Tq : CAUSAL_ROWS, Math.floor(TILE / S)));
  const group = Math.max(1, Math.min(batch, Math.floor(TILE / (rows * S))));
  const scores = newF32(group * rows * S);
  const inv = new Float64Array(group * rows);

  for (let i0 = 0; i0 < Tq; i0 += rows) {
    const m = Math.min(rows, Tq - i0);
    // keys visible to the tile's last row; none of its rows sees a later one
    const n = causalOffset === null ? S : Math.min(S, causalOffset + i0 + m);
    for (let b0 = 0; b0 < batch; b0 += group) {
      const count = Math.min(group, batch - b0);
      const qOff = new Float64Array(count);
      const kOff = new Float64Array(count);
      const vOff = new Float64Array(count);
      const sOff = new Float64Array(count);
      const oOff = new Float64Array(count);
      for (let e = 0; e < count; e++) {
        const b = b0 + e;
        qOff[e] = (b * Tq + i0) * dk;
        kOff[e] = kOffsets[b];
        vOff[e] = vOffsets[b];
        sOff[e] = e * m * n;
        oOff[e] = (b * Tq + i0) * dv;
      }
      sgemm({ m, n, k: dk, transA: false, transB: true, a: q, b: k, c: scores, aOffsets: qOff, bOffsets: kOff, cOffsets: sOff });
      for (let e = 0; e < count; e++) {
        for (let r = 0; r < m; r++) {
          const base = e * m * n + r * n;
          const visible = causalOffset === null ? n : Math.min(n, causalOffset + i0 + r + 1);
          let mx = -Infinity;
          for (let j = 0; j < visible; j++) {
            const t = scale * scores[base + j];
            if (t > mx || t !== t) mx = t;
          }
          let l = 0;
          for (let j = 0; j < visible; j++) {
            const w = Math.exp(scale * scores[base + j] - mx);
            l += w;
            scores[base + j] = w;
          }
          for (let j = visible; j < n; j++) scores[base + j] = 0;
          inv[e * m + r] = 1 / l;
          lse[(b0 + e) * Tq + i0 + r] = mx + Math.log(l);
        }
      }
      sgemm({ m, n: dv, k: n, transA: false, transB: false, a: scores, b: v, c: out, aOffsets: sOff, bOffsets: vOff, cOffsets: oOff });
      for (let e = 0; e < count; e++) {
        for (let r = 0; r < m; r++) {
          const o = oOff[e] + r * dv;
          const f = inv[e * m + r];
          for (let c = 0; c < dv; c++) out[o + c] *= f;
        }
      }
    }
  }
  recycle(scores);
  return { out, logSumExp: lse };
}

/** The float64 reference mode's kernel: one query row at a time, float64 throughout. */
function attentionF64(
  q: ArrayLike<number>,
  qShape: Shape,
  k: ArrayLike<number>,
  kShape: Shape,
  v: ArrayLike<number>,
  vShape: Shape,
  scale: number,
  causalOffset: number | null,
): { out: Float64Array; logSumExp: Float64Array } {
  const { Tq, dk, S, dv, lead, batch } = attentionDims(qShape, kShape, vShape);
  const out = new Float64Array(batch * Tq * dv);
  const lse = new Float64Array(batch * Tq);
  if (batch * Tq === 0) return { out, logSumExp: lse };

  const kOffsets = broadcastOffsets(lead, kShape.slice(0, -2), S * dk);
  const vOffsets = broadcastOffsets(lead, vShape.slice(0, -2), S * dv);
  const row = new Float64Array(S);
  const qi = new Float64Array(dk);
  const acc = new Float64Array(dv);

  for (let b = 0; b < batch; b++) {
    const ko = kOffsets[b];
    const vo = vOffsets[b];
    for (let i = 0; i < Tq; i++) {
      const r = b * Tq + i;
      const qo = r * dk;
      for (let p = 0; p < dk; p++) qi[p] = q[qo + p];
      const visible = causalOffset === null ? S : Math.min(S, causalOffset + i + 1);
      // pass 1: scores of the visible keys and their max
      let m = -Infinity;
      for (let j = 0; j < visible; j++) {
        const kb = ko + j * dk;
        let s = 0;
        for (let p = 0; p < dk; p++) s += qi[p] * k[kb + p];
        s *= scale;
        row[j] = s;
        if (s > m || s !== s) m = s;
      }
      // pass 2: exponentials, their sum and the weighted sum of values
      acc.fill(0);
      let l = 0;
      for (let j = 0; j < visible; j++) {
        const e = Math.exp(row[j] - m);
        l += e;
        const vb = vo + j * dv;
        for (let c = 0; c < dv; c++) acc[c] += e * v[vb + c];
      }
      const oo = r * dv;
      if (visible === 0) {
        // no key to attend to (only reachable through the raw kernel with S = 0)
        for (let c = 0; c < dv; c++) out[oo + c] = 0;
        lse[r] = -Infinity;
        continue;
      }
      const inv = 1 / l;
      for (let c = 0; c < dv; c++) out[oo + c] = acc[c] * inv;
      lse[r] = m + Math.log(l);
    }
  }
  return { out, logSumExp: lse };
}

/**
 * Element offset of each leading-batch matrix of an operand whose leading axes `own` (same
 * rank as `lead`) are each 1 or lead's size, for the row-major batch index over `lead`.
 */
function broadcastOffsets(lead: Shape, own: Shape, matrix: number): Float64Array {
  const n = prod(lead);
  const offsets = new Float64Array(n);
  const strides = new Array<number>(lead.length);
  let st = matrix;
  for (let a = lead.length - 1; a >= 0; a--) {
    strides[a] = own[a] === 1 ? 0 : st;
    st *= own[a];
  }
  const idx = new Array<number>(lead.length).fill(0);
  let off = 0;
  for (let e = 0; e < n; e++) {
    offsets[e] = off;
    // advance the multi-index over lead (last axis fastest), keeping `off` in step
    for (let a = lead.length - 1; a >= 0; a--) {
      idx[a]++;
      off += strides[a];
      if (idx[a] < lead[a]) break;
      off -= strides[a] * lead[a];
      idx[a] = 0;
    }
  }
  return offsets;
}
