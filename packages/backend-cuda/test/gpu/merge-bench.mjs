#!/usr/bin/env node
// Joins kiln's and PyTorch's all-to-all numbers into bench/results/cuda-alltoall.{json,md}.
//   node merge-bench.mjs RAW_DIR RESULTS_DIR
// RAW_DIR holds kiln-alltoall.json (nccl-2gpu.mjs --bench) and torch-alltoall.json (bench/peers/torch_alltoall.py).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [raw, dest] = process.argv.slice(2);
const read = (f) => (existsSync(join(raw, f)) ? JSON.parse(readFileSync(join(raw, f), 'utf8')) : undefined);
const kiln = read('kiln-alltoall.json');
const torch = read('torch-alltoall.json');
if (!kiln) throw new Error(`${raw}/kiln-alltoall.json is missing`);
const rows = kiln.results.map((k) => {
  const t = torch?.results.find((r) => r.bytes === k.bytes);
  return { ...k, torchMs: t?.ms, torchAlgGBps: t?.algGBps, torchBusGBps: t?.busGBps, ratio: t ? t.ms / k.kilnMs : undefined };
});
const doc = {
  name: 'cuda-alltoall',
  date: new Date().toISOString(),
  worldSize: kiln.worldSize,
  device: kiln.device,
  latency: kiln.latency ?? null,
  ncclKiln: kiln.nccl,
  torch: torch ? { version: torch.torch, nccl: torch.nccl } : null,
  method:
    'even all-to-all of a u8 buffer of `bytes` per rank (bytes/N to each peer); wall clock of back-to-back calls, each awaited, after 3 warm-ups; ' +
    'kiln collective = NcclCollective.allToAll (header ncclAllGather + device copy of the input + output allocation + grouped ncclSend/ncclRecv), ' +
    'raw = the ncclAllToAllV binding alone, torch = torch.distributed.all_to_all_single + cuda.synchronize; algbw = bytes / time, busbw = algbw * (N-1)/N',
  results: rows,
};
mkdirSync(dest, { recursive: true });
writeFileSync(join(dest, 'cuda-alltoall.json'), `${JSON.stringify(doc, null, 2)}\n`);
const f = (x, d = 1) => (x === undefined ? '—' : x.toFixed(d));
const md = [
  `## NCCL all-to-all (\`packages/backend-cuda/test/gpu/nccl-2gpu.mjs --bench\`)`,
  '',
  `${doc.date.slice(0, 10)} · ${kiln.worldSize} × ${kiln.device} · NCCL ${kiln.nccl} (kiln, dlopen) · ${torch ? `PyTorch ${torch.torch}, NCCL ${torch.nccl}` : 'no PyTorch peer'}`,
  '',
  '| bytes per rank | kiln collective ms | GB/s (alg) | raw binding ms | GB/s (alg) | torch ms | GB/s (alg) | torch time / kiln time |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.bytes / 2 ** 20} MiB | ${f(r.kilnMs, 3)} | ${f(r.kilnAlgGBps)} | ${f(r.rawMs, 3)} | ${f(r.rawAlgGBps)} | ${f(r.torchMs, 3)} | ${f(r.torchAlgGBps)} | ${f(r.ratio, 2)} |`),
  '',
  kiln.latency
    ? `Latency (kiln collective, mean of back-to-back calls): barrier ${f(kiln.latency.barrierUs)} µs, allReduce f32 4 KiB ${f(kiln.latency.allReduce4KiBUs)} µs, allReduce f32 64 MiB ${f(kiln.latency.allReduce64MiBMs, 3)} ms.`
    : '',
  '',
  doc.method,
  '',
].join('\n');
writeFileSync(join(dest, 'cuda-alltoall.md'), md);
console.log(md);
