#!/usr/bin/env node
// Self time per function of a `node --cpu-prof` profile: samples summed by function name + file.
//   node scripts/summarize-cpuprofile.mjs FILE.cpuprofile [top=30]
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const dt = new Map();
for (let i = 0; i < p.samples.length; i++) dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
const self = new Map();
let total = 0;
for (const [id, us] of dt) {
  const { callFrame: cf } = byId.get(id);
  const key = `${cf.functionName || '(anonymous)'}  ${cf.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/packages\//, '')}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
  self.set(key, (self.get(key) ?? 0) + us);
  total += us;
}
console.log(`total ${(total / 1000).toFixed(1)} ms`);
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 30))) {
  console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
}
