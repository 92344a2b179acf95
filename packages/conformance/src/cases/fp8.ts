import type { DType } from '@kiln/core';
import { QuantizedTensor, dequantize, matmulFp8, quantize } from '@kiln/core';
import { assert, describeAt, expectCodes, expectNear } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { EPS32, ulp32 } from '../reference/float.js';
import { decode } from '../reference/formats.js';
import { matmulFp8Ref, quantizeRef, type Fp8, type GemmModel } from '../reference/fp8.js';
import { readChecked } from './util.js';

/** Values with block-to-block scale variety, all-zero and sub-floor blocks, occasional outliers. */
function fp8Input(c: Ctx, rows: number, cols: number, dtype: DType = 'f32') {
  const rowScale = Array.from({ length: rows }, () => 2 ** c.rng.int(-14, 14));
  const zeroBlock = c.rng.int(0, Math.max(1, Math.ceil(cols / 128)));
  let i = 0;
  return c.random([rows, cols], dtype, (r) => {
    const row = Math.floor(i / cols);
    const col = i % cols;
    i++;
    if (Math.floor(col / 128) === zeroBlock && row % 3 === 0) return 0; // all-zero rows of a block: the amax floor
    if (row % 5 === 1) return r.normal() * 1e-6; // below the amax floor
    return r.bool(0.002) ? r.normal() * rowScale[row] * 300 : r.normal() * rowScale[row];
  });
}

interface QCase {
  rows: number;
  cols: number;
  block: [number, number];
  format: Fp8;
  scaleFormat: 'fp32' | 'ue8m0';
  dtype?: DType;
}

const Q_CASES: QCase[] = [
  { rows: 3, cols: 128, block: [1, 128], format: 'e4m3', scaleFormat: 'fp32' },
  { rows: 5, cols: 300, block: [1, 128], format: 'e4m3', scaleFormat: 'ue8m0' },
  { rows: 130, cols: 200, block: [128, 128], format: 'e4m3', scaleFormat: 'fp32' },
  { rows: 129, cols: 257, block: [128, 128], format: 'e5m2', scaleFormat: 'ue8m0' },
  { rows: 7, cols: 33, block: [2, 16], format: 'e5m2', scaleFormat: 'fp32' },
  { rows: 4, cols: 256, block: [1, 128], format: 'e4m3', scaleFormat: 'fp32', dtype: 'bf16' },
  { rows: 2, cols: 130, block: [1, 128], format: 'e4m3', scaleFormat: 'ue8m0', dtype: 'f16' },
  { rows: 0, cols: 128, block: [1, 128], format: 'e4m3', scaleFormat: 'fp32' },
];

async function quantized(c: Ctx, rows: number, cols: number, block: [number, number], format: Fp8 = 'e4m3') {
  const x = fp8Input(c, rows, cols);
  const q = c.track(quantize(x.t, { block, format }));
  const codes = Array.from((await c.read(q.codes)).codes);
  const scales = Array.from((await c.read(q.scales)).codes);
  return { q, op: { codes, scales, rows, K: cols, block, format } };
}

const cases: CaseDef[] = [
  {
    name: 'quantize / Backend.quantizeBlockwise are bit-exact: [1,128] and [128,128] and odd blocks, e4m3/e5m2, fp32/ue8m0 scales, edge blocks, all-zero and sub-floor blocks, f16/bf16 inputs',
    async run(c) {
      for (const qc of Q_CASES) {
        const x = fp8Input(c, qc.rows, qc.cols, qc.dtype);
        const ref = quantizeRef(x.values, qc.rows, qc.cols, qc.block, qc.format, qc.scaleFormat);
        const label = `quantize(${qc.dtype ?? 'f32'} [${qc.rows}, ${qc.cols}], block [${qc.block.join(', ')}], ${qc.format}, ${qc.scaleFormat})`;
        const q = c.track(quantize(x.t, { block: qc.block, format: qc.format, scaleFormat: qc.scaleFormat }));
        assert(q instanceof QuantizedTensor && q.format === qc.format && q.scaleFormat === qc.scaleFormat, `${label}: QuantizedTensor metadata`);
        const sShape = [Math.ceil(qc.rows / qc.block[0]), Math.ceil(qc.cols / qc.block[1])];
        const rc = await readChecked(c, q.codes, `${label} codes`, qc.format, [qc.rows, qc.cols]);
        const rs = await readChecked(c, q.scales, `${label} scales`, 'f32', sShape);
        expectCodes(`${label} scales`, 'f32', rs.codes, ref.scales, describeAt(sShape));
        expectCodes(`${label} codes`, qc.format, rc.codes, ref.codes, describeAt([qc.rows, qc.cols], { x: x.values }));
      }
    },
  },
  {
    name: 'Backend.quantizeBlockwise on [257, 256] (64 KiB+ codes) with a poisoned allocator',
    async run(c) {
      const x = fp8Input(c, 257, 256);
      const ref = quantizeRef(x.values, 257, 256, [1, 128], 'e4m3', 'fp32');
      c.poison('e4m3', 257 * 256);
      c.poison('f32', 257 * 2);
      const { codes, scales } = c.backend.quantizeBlockwise(x.t, [1, 128], { format: 'e4m3', scaleFormat: 'fp32' });
      try {
        assert(codes !== x.t.dataId && scales !== x.t.dataId && codes !== scales, 'quantizeBlockwise must return two new buffers');
        const rc = c.checkRead(await c.backend.read({ dataId: codes, shape: [257, 256], dtype: 'e4m3' }), 'e4m3', 257 * 256, 'codes');
        const rs = c.checkRead(await c.backend.read({ dataId: scales, shape: [257, 2], dtype: 'f32' }), 'f32', 257 * 2, 'scales');
        expectCodes('Backend.quantizeBlockwise scales', 'f32', rs.codes, ref.scales, describeAt([257, 2]));
        expectCodes('Backend.quantizeBlockwise codes', 'e4m3', rc.codes, ref.codes, describeAt([257, 256]));
      } finally {
        c.backend.release(codes);
        c.backend.release(scales);
      }
    },
  },
  {
    name: 'dequantize = decode(code) * block scale in f32, for activation and weight blocks',
    async run(c) {
      for (const [rows, cols, block, format] of [
        [3, 300, [1, 128], 'e4m3'],
        [130, 129, [128, 128], 'e5m2'],
      ] as [number, number, [number, number], Fp8][]) {
        const { q, op } = await quantized(c, rows, cols, block, format);
        const nc = Math.ceil(cols / block[1]);
        const exact = op.codes.map((code, i) => decode(format, code) * op.scales[Math.floor(Math.floor(i / cols) / block[0]) * nc + Math.floor((i % cols) / block[1])]);
        const y = c.run(() => dequantize(q));
        const r = await readChecked(c, y, 'dequantize', 'f32', [rows, cols]);
        expectNear(`dequantize [${rows}, ${cols}] block [${block.join(', ')}]`, 'f32', r.values, exact, exact.map((e) => c.tol.f32 * ulp32(e)), describeAt([rows, cols]));
      }
    },
  },
  {
    name: 'matmulFp8 with f32 accumulation is within (c+2)·eps·Σ|a·b| of the float64 product of the dequantised operands: K = 1, 128, 200, 384; odd M, N; promotionInterval 128 and 32; bf16 output',
    async run(c) {
      for (const [M, K, N, nc, outDtype] of [
        [1, 128, 1, 128, 'f32'],
        [3, 200, 129, 128, 'f32'],
        [130, 384, 7, 32, 'f32'],
        [5, 1, 3, 128, 'f32'],
        [4, 257, 9, 128, 'bf16'],
        [0, 128, 5, 128, 'f32'],
      ] as [number, number, number, number, 'f32' | 'bf16'][]) {
        const A = await quantized(c, M, K, [1, 128]);
        const B = await quantized(c, N, K, [128, 128]);
        const ref = matmulFp8Ref(A.op, B.op, { promotionInterval: nc });
        const y = c.run(() => matmulFp8(A.q, B.q, { promotionInterval: nc, outDtype }));
        const label = `matmulFp8([${M}, ${K}] x [${N}, ${K}]ᵀ, promotionInterval ${nc}, ${outDtype})`;
        const r = await readChecked(c, y, label, outDtype, [M, N]);
        expectNear(label, outDtype, r.values, ref.exact, ref.absSum.map((a) => (c.tol.matmul + 2) * EPS32 * a), describeAt([M, N]));
      }
    },
  },
  {
    name: 'matmulFp8 at DeepSeek-V3 recipe shapes (E4M3, 1x128 x 128x128, promotion 128, K % 128 = 0, N % 8 = 0: the shapes GPU tensor-core paths take) is within (c+2)·eps·Σ|a·b| plus the backend\'s declared FP8 accumulator bound',
    async run(c) {
      // A backend whose FP8 GEMM accumulates inside a promotion interval in a limited hardware
      // accumulator declares its bound as device.details.fp8GemmRelativeError (|error| / Σ|a·b|);
      // backends that accumulate exactly declare nothing and get the f32 bound.
      const declared = c.backend.device.details?.fp8GemmRelativeError;
      const extra = typeof declared === 'number' && declared > 0 ? declared : 0;
      for (const [M, K, N] of [
        [64, 512, 256],
        [130, 1024, 136],
        [1, 128, 128],
      ] as [number, number, number][]) {
        const A = await quantized(c, M, K, [1, 128]);
        const B = await quantized(c, N, K, [128, 128]);
        const ref = matmulFp8Ref(A.op, B.op, { promotionInterval: 128 });
        const y = c.run(() => matmulFp8(A.q, B.q));
        const label = `matmulFp8([${M}, ${K}] x [${N}, ${K}]ᵀ, recipe${extra ? `, declared accumulator bound ${extra.toExponential(1)}·Σ|a·b|` : ''})`;
        const r = await readChecked(c, y, label, 'f32', [M, N]);
        expectNear(label, 'f32', r.values, ref.exact, ref.absSum.map((a) => ((c.tol.matmul + 2) * EPS32 + extra) * a), describeAt([M, N]));
      }
    },
  },
  {
    name: 'matmulFp8 limited-accumulator emulation matches its definition bit for bit (mantissa bits, group sizes, truncate/nearest, promotion intervals incl. Infinity)',
    async run(c) {
      for (const model of [
        { promotionInterval: 128, bits: 13, group: 1, rounding: 'truncate' },
        { promotionInterval: 128, bits: 10, group: 4, rounding: 'nearest' },
        { promotionInterval: 32, bits: 13, group: 32, rounding: 'truncate' },
        { promotionInterval: 64, bits: 7, group: 1, rounding: 'nearest' },
      ] as GemmModel[]) {
        const A = await quantized(c, 3, 300, [1, 128]);
        const B = await quantized(c, 5, 300, [128, 128]);
        const ref = matmulFp8Ref(A.op, B.op, model);
        const opts = { promotionInterval: model.promotionInterval, accumulatorMantissaBits: model.bits, accumulatorGroupSize: model.group, accumulatorRounding: model.rounding };
        const y = c.run(() => matmulFp8(A.q, B.q, opts));
        const r = await readChecked(c, y, 'matmulFp8 emulated', 'f32', [3, 5]);
        expectCodes(`matmulFp8 emulation ${JSON.stringify(model)}`, 'f32', r.codes, ref.emulated, describeAt([3, 5]));
      }
      // Infinity: one partial over all of K (with one scale per row along K, as the definition needs)
      const codesA = Uint8Array.from({ length: 2 * 256 }, () => c.rng.int(0, 0x7f) | (c.rng.bool() ? 0x80 : 0));
      const codesB = Uint8Array.from({ length: 3 * 256 }, () => c.rng.int(0, 0x7f) | (c.rng.bool() ? 0x80 : 0));
      const sa = Float32Array.from([0.5, 0.5, 0.25, 0.25]);
      const sb = Float32Array.from([2, 2]);
      const qa = QuantizedTensor.fromHost({ codes: codesA, scales: sa, shape: [2, 256], block: [1, 128], format: 'e4m3', scaleFormat: 'fp32' });
      const qb = QuantizedTensor.fromHost({ codes: codesB, scales: sb, shape: [3, 256], block: [128, 128], format: 'e4m3', scaleFormat: 'fp32' });
      c.track([qa.codes, qa.scales, qb.codes, qb.scales]);
      for (const bits of [undefined, 12]) {
        const model: GemmModel = { promotionInterval: Infinity, bits, group: 1, rounding: 'truncate' };
        const ref = matmulFp8Ref(
          { codes: codesA, scales: sa, rows: 2, K: 256, block: [1, 128], format: 'e4m3' },
          { codes: codesB, scales: sb, rows: 3, K: 256, block: [128, 128], format: 'e4m3' },
          model,
        );
        const y = c.run(() => matmulFp8(qa, qb, { promotionInterval: Infinity, accumulatorMantissaBits: bits }));
        const r = await readChecked(c, y, 'matmulFp8 Infinity', 'f32', [2, 3]);
        if (bits === undefined) expectNear('matmulFp8 promotionInterval Infinity', 'f32', r.values, ref.exact, ref.absSum.map((a) => (c.tol.matmul + 2) * EPS32 * a));
        else expectCodes(`matmulFp8 promotionInterval Infinity, ${bits} bits`, 'f32', r.codes, ref.emulated);
      }
    },
  },
  {
    name: 'Backend.matmulFp8 on a [129, 131] output (K = 200) with a poisoned allocator',
    async run(c) {
      const A = await quantized(c, 129, 200, [1, 128]);
      const B = await quantized(c, 131, 200, [128, 128]);
      const ref = matmulFp8Ref(A.op, B.op, { promotionInterval: 128 });
      const r = await c.prim('matmulFp8', 'f32', [129, 131], () => c.backend.matmulFp8(A.q, B.q, { promotionInterval: 128 }), [A.q.codes, A.q.scales, B.q.codes, B.q.scales]);
      expectNear('Backend.matmulFp8 [129, 200] x [131, 200]ᵀ', 'f32', r.values, ref.exact, ref.absSum.map((a) => (c.tol.matmul + 2) * EPS32 * a), describeAt([129, 131]));
    },
  },
  {
    name: 'QuantizedTensor: sliceRows keeps whole scale blocks; toHost/fromHost round-trip codes and scales',
    async run(c) {
      const { q, op } = await quantized(c, 6, 256, [1, 128]);
      const s = q.sliceRows(2, 3);
      c.track([s.codes, s.scales]);
      expectCodes('sliceRows codes', 'e4m3', (await c.read(s.codes)).codes, op.codes.slice(2 * 256, 5 * 256));
      expectCodes('sliceRows scales', 'f32', (await c.read(s.scales)).codes, op.scales.slice(4, 10));
      const host = await q.toHost();
      const back = QuantizedTensor.fromHost(host);
      c.track([back.codes, back.scales]);
      expectCodes('fromHost(toHost()) codes', 'e4m3', (await c.read(back.codes)).codes, op.codes);
      expectCodes('fromHost(toHost()) scales', 'f32', (await c.read(back.scales)).codes, op.scales);
    },
  },
];

export const fp8Area: Area = { name: 'fp8', cases };
