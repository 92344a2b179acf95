#!/usr/bin/env node
// FP8 GEMM accumulation study: how the error of a limited-precision accumulator grows with K,
// and what promotion to f32 every N_C elements of K does about it (DeepSeek-V3 §3.3.2).
//
// For K = 256 … 16384: a [M, K] and b [N, K] ~ N(0, 1) (kiln's seeded randomNormal), quantised
// to e4m3 with ONE scale per row of a and one for all of b (blocks [1, K] and [N, K]), so
// that "no promotion" (N_C = ∞) and N_C = 512 are well defined; then kiln's CPU matmulFp8
// with the accumulator model as options. Error: Σ|C − R| / Σ|R| against R = the float64
// product of the dequantised operands (so the FP8 rounding of the inputs is not counted).
// Also: the same with DeepSeek's 1×128 / 128×128 scale blocks at N_C = 128, the FP8
// quantisation error of the inputs (for scale), and the other accumulator models.
//
// Writes bench/results/fp8-accumulation.{json,md} and docs/img/fp8-accumulation.svg.
//   node bench/fp8-accumulation.bench.mjs        (M = N = 64: about a minute on 2 cores)
//   FP8_ACC_MN=32 node bench/fp8-accumulation.bench.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';
import { loadKiln, machineInfo, machineLine, relativeError, repoDir, writeResults } from './lib/fp8-common.mjs';

const KS = [256, 512, 1024, 2048, 4096, 8192, 16384];
const MN = Number(process.env.FP8_ACC_MN ?? 64);
const M = MN;
const N = MN;

/** The accumulator model kiln uses to stand for Hopper's (see docs/numerics.md). */
const MODEL = { accumulatorMantissaBits: 13, accumulatorGroupSize: 4, accumulatorRounding: 'truncate' };
/** Alternatives for the sensitivity tables. */
const ALTERNATIVES = [];
for (const bits of [12, 13, 14]) for (const group of [1, 4, 32]) ALTERNATIVES.push({ accumulatorMantissaBits: bits, accumulatorGroupSize: group, accumulatorRounding: 'truncate' });
for (const group of [1, 4]) ALTERNATIVES.push({ accumulatorMantissaBits: 13, accumulatorGroupSize: group, accumulatorRounding: 'nearest' });
const label = (m) => `${m.accumulatorMantissaBits} bits, ${m.accumulatorRounding === 'truncate' ? 'truncate' : 'nearest'}, group ${m.accumulatorGroupSize}`;
const same = (m) => label(m) === label(MODEL);

const machine = machineInfo(); // before the run: its load average is that of the other processes
const t0 = performance.now();
const { k, source } = await loadKiln();
const { randomNormal, quantize, matmulFp8, tidy, WEIGHT_BLOCK } = k;

/** float64 C = A·Bᵀ of f32 row-major [rows, K] operands. */
function gemm64(a, b, rows, cols, K) {
  const c = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let q = 0; q < K; q++) s += a[i * K + q] * b[j * K + q];
      c[i * cols + j] = s;
    }
  return c;
}

const rows = [];
const sensitivity = ALTERNATIVES.map((m) => ({ model: m, label: label(m), chosen: same(m), ncInf: [], nc128: [] }));
for (const K of KS) {
  const tk = performance.now();
  const row = tidy(() => {
    const x = randomNormal([M, K], 1000 + K);
    const w = randomNormal([N, K], 2000 + K);
    const exact = gemm64(x.dataSync(), w.dataSync(), M, N, K);

    // one scale per row of a / for all of b: every chunk of any N_C has the same scales
    const qa = quantize(x, { block: [1, K] });
    const qb = quantize(w, { block: [N, K] });
    const ref = gemm64(qa.dequantize().dataSync(), qb.dequantize().dataSync(), M, N, K);
    const err = (options) => relativeError(matmulFp8(qa, qb, options).dataSync(), ref);

    // DeepSeek's tiling: 1×128 activation tiles, 128×128 weight blocks, N_C = 128
    const qa2 = quantize(x, { block: [1, 128] });
    const qb2 = quantize(w, { block: WEIGHT_BLOCK });
    const ref2 = gemm64(qa2.dequantize().dataSync(), qb2.dequantize().dataSync(), M, N, K);
    const err2 = (options) => relativeError(matmulFp8(qa2, qb2, options).dataSync(), ref2);

    const r = {
      K,
      fp32: { ncInf: err({ promotionInterval: Infinity }), nc128: err({ promotionInterval: 128 }) },
      model: {
        ncInf: err({ promotionInterval: Infinity, ...MODEL }),
        nc512: err({ promotionInterval: 512, ...MODEL }),
        nc128: err({ promotionInterval: 128, ...MODEL }),
      },
      deepseekTiling: { fp32nc128: err2({ promotionInterval: 128 }), modelNc128: err2({ promotionInterval: 128, ...MODEL }) },
      fp8QuantisationError: relativeError(ref, exact),
    };
    for (const s of sensitivity) {
      if (s.chosen) {
        s.ncInf.push(r.model.ncInf.l1);
        s.nc128.push(r.model.nc128.l1);
      } else {
        s.ncInf.push(err({ promotionInterval: Infinity, ...s.model }).l1);
        s.nc128.push(err({ promotionInterval: 128, ...s.model }).l1);
      }
    }
    return r;
  });
  rows.push(row);
  console.log(
    `K=${K}: model N_C=∞ ${pct(row.model.ncInf.l1)}, 512 ${pct(row.model.nc512.l1)}, 128 ${pct(row.model.nc128.l1)}; ` +
      `FP32 acc. ${pct(row.fp32.ncInf.l1)}  (${((performance.now() - tk) / 1000).toFixed(1)} s)`,
  );
}
const seconds = (performance.now() - t0) / 1000;

function pct(x, digits = 3) {
  if (x === 0) return '0';
  const p = x * 100;
  return p >= 0.00995 ? `${p.toFixed(p >= 0.995 ? 2 : digits)}%` : `${p.toExponential(1)}%`;
}

// ---------------------------------------------------------------------------------------
// results
const date = new Date().toISOString();
const at4096 = rows.find((r) => r.K === 4096);
const result = {
  benchmark: 'fp8-accumulation',
  date,
  command: 'node bench/fp8-accumulation.bench.mjs (or pnpm bench)',
  machine,
  kiln: { module: source },
  setup: {
    M,
    N,
    K: KS,
    inputs: 'a [M, K], b [N, K] ~ N(0, 1), kiln randomNormal with seeds 1000+K and 2000+K',
    quantisation: 'e4m3, fp32 scales; a in [1, K] blocks (one scale per row), b in [N, K] blocks (one scale); deepseekTiling: [1, 128] and [128, 128]',
    reference: 'float64 product of the dequantised operands',
    metric: 'l1 = Σ|C − R| / Σ|R| (the one tabulated and plotted); frobenius = ‖C − R‖₂ / ‖R‖₂; medianElementwise = median of |C − R| / |R|',
    model: MODEL,
    modelDescription:
      'products exact; summed exactly in groups of 4; each group sum added to the accumulator, which is then truncated (toward zero) to 13 fraction bits (14 significant bits with the leading one); every N_C elements of K the accumulator is promoted: out = f32(out + f32(partial · f32(sa · sb)))',
  },
  seconds,
  results: rows,
  sensitivity,
};

const md = [
  '## FP8 GEMM accumulation error (`bench/fp8-accumulation.bench.mjs`)',
  '',
  `${machineLine(machine, date)} · M = N = ${M}, ${seconds.toFixed(0)} s`,
  '',
  `Relative error Σ|C − R| / Σ|R| of kiln's CPU \`matmulFp8\` against R = the float64 product of the dequantised operands; ` +
    `a, b ~ N(0, 1), e4m3 with one scale per row of a and one for b (N_C = ∞ and 512 are only well defined with equal scales along K). ` +
    `Accumulator model: ${label(MODEL)} (13 fraction bits = 14 significant bits); "FP32 acc." = exact f32 accumulation, no promotion. ` +
    'Last two columns: DeepSeek\'s 1×128 / 128×128 scale blocks at N_C = 128, and the FP8 rounding of the inputs themselves (dequantised product vs the product of the unquantised inputs), for scale.',
  '',
  '| K | FP32 acc. | model, N_C = ∞ | model, N_C = 512 | model, N_C = 128 | model, N_C = 128, 1×128/128×128 scales | FP8 input rounding |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.K} | ${pct(r.fp32.ncInf.l1)} | ${pct(r.model.ncInf.l1)} | ${pct(r.model.nc512.l1)} | **${pct(r.model.nc128.l1)}** | ${pct(r.deepseekTiling.modelNc128.l1)} | ${pct(r.fp8QuantisationError.l1, 2)} |`,
  ),
  '',
  `At K = 4096: no promotion ${pct(at4096.model.ncInf.l1)} (Frobenius ${pct(at4096.model.ncInf.frobenius)}, median elementwise ${pct(at4096.model.ncInf.medianElementwise)}); ` +
    `N_C = 128 ${pct(at4096.model.nc128.l1)}.`,
  '',
  'Sensitivity to the accumulator model (same data; Σ|C − R| / Σ|R|), no promotion:',
  '',
  `| model | ${KS.map((K) => `K = ${K}`).join(' | ')} |`,
  `| --- | ${KS.map(() => '---:').join(' | ')} |`,
  ...sensitivity.map((s) => `| ${s.chosen ? `**${s.label}** (kiln)` : s.label} | ${s.ncInf.map((e) => pct(e)).join(' | ')} |`),
  '',
  'and with promotion every N_C = 128:',
  '',
  `| model | ${KS.map((K) => `K = ${K}`).join(' | ')} |`,
  `| --- | ${KS.map(() => '---:').join(' | ')} |`,
  ...sensitivity.map((s) => `| ${s.chosen ? `**${s.label}** (kiln)` : s.label} | ${s.nc128.map((e) => pct(e)).join(' | ')} |`),
  '',
  'Plot: docs/img/fp8-accumulation.svg.',
  '',
].join('\n');

writeResults('fp8-accumulation', result, md);

// ---------------------------------------------------------------------------------------
// plot (vega-lite, rendered headless to SVG)
const SERIES = ['N_C = ∞ (no promotion)', 'N_C = 512', 'N_C = 128', 'FP32 accumulation'];
const values = rows.flatMap((r) => [
  { K: r.K, error: r.model.ncInf.l1, series: SERIES[0] },
  { K: r.K, error: r.model.nc512.l1, series: SERIES[1] },
  { K: r.K, error: r.model.nc128.l1, series: SERIES[2] },
  { K: r.K, error: r.fp32.ncInf.l1, series: SERIES[3] },
]);
const xEnc = {
  field: 'K',
  type: 'quantitative',
  scale: { type: 'log', base: 2, domain: [KS[0], KS[KS.length - 1]] },
  axis: { values: KS, format: 'd', title: 'K (inner dimension)', labelFlush: true },
};
const yEnc = {
  field: 'error',
  type: 'quantitative',
  scale: { type: 'log' },
  axis: { title: 'relative error  Σ|C − R| / Σ|R|', format: '.0e', grid: true },
};
const REPORT = '+ : DeepSeek-V3 report, ~2% at K = 4096 without promotion';
const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  width: 600,
  height: 380,
  background: 'white',
  // fixed padding: without a canvas, vega over-estimates text widths and would widen the SVG
  autosize: { type: 'none' },
  padding: { left: 80, right: 20, top: 80, bottom: 50 },
  title: {
    text: 'FP8 GEMM: accumulation error vs K',
    subtitle: [
      `e4m3 inputs ~ N(0,1), M = N = ${M}, one scale per row; accumulator: 14 significant bits,`,
      'truncated, groups of 4 products; promoted to f32 every N_C elements of K;',
      'error against the float64 product of the dequantised inputs',
    ],
    anchor: 'start',
    subtitleFontSize: 11,
  },
  layer: [
    {
      data: { values },
      mark: { type: 'line', point: true, strokeWidth: 2 },
      encoding: {
        x: xEnc,
        y: yEnc,
        color: {
          field: 'series',
          type: 'nominal',
          sort: SERIES,
          scale: { domain: SERIES, range: ['#d62728', '#ff7f0e', '#1f77b4', '#7f7f7f'] },
          legend: { title: null, orient: 'none', legendX: 14, legendY: 190, fillColor: 'white', strokeColor: '#ccc', padding: 6, labelLimit: 220 },
        },
        strokeDash: {
          field: 'series',
          type: 'nominal',
          sort: SERIES,
          scale: { domain: SERIES, range: [[1, 0], [1, 0], [1, 0], [4, 3]] },
        },
      },
    },
    {
      data: { values: [{ K: 4096, error: 0.02, text: REPORT }] },
      mark: { type: 'point', shape: 'cross', size: 120, color: 'black', filled: true },
      encoding: { x: xEnc, y: yEnc },
    },
    {
      // left-aligned from the left edge (vega sizes the SVG from left-aligned text bounds)
      data: { values: [{ K: KS[0], error: 0.05, text: REPORT }] },
      mark: { type: 'text', align: 'left', dx: 8, fontSize: 11 },
      encoding: { x: xEnc, y: yEnc, text: { field: 'text' } },
    },
  ],
};
const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
const svg = await view.toSVG();
view.finalize();
const imgDir = join(repoDir, 'docs', 'img');
mkdirSync(imgDir, { recursive: true });
writeFileSync(join(imgDir, 'fp8-accumulation.svg'), svg);

console.log(`\n${md}`);
process.exit(0);
