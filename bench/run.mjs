#!/usr/bin/env node
// Runs every bench/*.bench.mjs, one child process each (so one benchmark's threads, JIT
// state and memory do not colour the next), in name order. Each benchmark writes its own
// bench/results/<name>.json and .md and prints its table; this script then writes
// bench/results/README.md gathering the tables.
//   node bench/run.mjs            all benchmarks
//   node bench/run.mjs gemm       only those whose file name contains "gemm"
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const results = join(here, 'results');
mkdirSync(results, { recursive: true });

const filter = process.argv[2];
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.mjs') && (!filter || f.includes(filter)))
  .sort();
if (files.length === 0) {
  console.error(`bench: no bench/*.bench.mjs${filter ? ` matching "${filter}"` : ''}`);
  process.exit(1);
}

// GPU benchmarks (cuda-*.bench.mjs) run only where kiln's CUDA addon is built and sees a device.
function cudaSkipReason() {
  const addon = process.env.KILN_CUDA_ADDON ?? join(here, '..', 'packages', 'backend-cuda', 'build', 'Release', 'kiln_cuda.node');
  if (!existsSync(addon)) return `the CUDA addon is not built (${addon})`;
  const js = `const p = require(${JSON.stringify(addon)}).probe(); console.log(p.ok ? '' : p.reason || 'no CUDA device is visible');`;
  const r = spawnSync(process.execPath, ['-e', js], { encoding: 'utf8' });
  if (r.status !== 0) return `the CUDA addon does not load: ${(r.stderr || '').trim().split('\n').pop()}`;
  return r.stdout.trim() || null;
}

const failed = [];
for (const f of files) {
  console.log(`\n=== ${f}`);
  const noCuda = f.startsWith('cuda-') ? cudaSkipReason() : null;
  if (noCuda) {
    console.log(`=== ${f}: skipped: no CUDA device (${noCuda})`);
    continue;
  }
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(here, f)], { stdio: 'inherit', cwd: here });
  console.log(`=== ${f}: ${r.status === 0 ? 'ok' : `FAILED (${r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  if (r.status !== 0) failed.push(f);
}

// Gather every benchmark's markdown (including ones not run this time) into one page.
const mds = readdirSync(results)
  .filter((f) => f.endsWith('.md') && f !== 'README.md')
  .sort();
const page = ['# Benchmark results', '', 'Written by `pnpm bench` (bench/run.mjs). One section per benchmark; each lists its machine and date.', ''];
for (const md of mds) {
  const p = join(results, md);
  if (existsSync(p)) page.push(readFileSync(p, 'utf8').trim(), '');
}
writeFileSync(join(results, 'README.md'), page.join('\n'));
console.log(`\nbench: results in ${results}`);
if (failed.length) {
  console.error(`bench: failed: ${failed.join(', ')}`);
  process.exit(1);
}
