import type { Backend } from '@kiln/core';

/**
 * KILN_CUDA_PROFILE=1: times every primitive with a device synchronisation before and after
 * (so each op's GPU time is attributed to it; the run is slower) and prints a table by op and
 * input shape at exit. For finding which kernels a training step spends its time in.
 */
export function installProfiler(backend: Backend & { synchronize(): void }): void {
  const stats = new Map<string, { calls: number; ms: number }>();
  const ops = ['write', 'fill', 'random', 'unary', 'binary', 'where', 'reduce', 'matmul', 'gather', 'indexSelect', 'scatterAdd', 'indexAdd', 'concat', 'slice', 'transpose', 'cast', 'quantizeBlockwise', 'matmulFp8', 'readSync', 'release'] as const;
  const target = backend as unknown as Record<string, (...args: unknown[]) => unknown>;
  const describe = (args: unknown[]) =>
    args
      .map((a) => (a && typeof a === 'object' && 'shape' in a ? `[${(a as { shape: number[] }).shape.join(',')}]` : typeof a === 'string' ? a : ''))
      .filter(Boolean)
      .join(' ');
  const wrap = (name: string, fn: (...args: unknown[]) => unknown, self: unknown) =>
    (...args: unknown[]) => {
      backend.synchronize();
      const t0 = performance.now();
      const r = fn.apply(self, args);
      backend.synchronize();
      const key = `${name} ${describe(args)}`;
      const s = stats.get(key) ?? { calls: 0, ms: 0 };
      s.calls += 1;
      s.ms += performance.now() - t0;
      stats.set(key, s);
      return r;
    };
  for (const op of ops) if (typeof target[op] === 'function') target[op] = wrap(op, target[op], backend);
  const fused = (backend as { fused?: Record<string, (...args: unknown[]) => unknown> }).fused;
  if (fused) for (const k of Object.keys(fused)) fused[k] = wrap(`fused.${k}`, fused[k], fused);
  process.on('exit', () => {
    const rows = [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((a, [, s]) => a + s.ms, 0);
    const byOp = new Map<string, number>();
    for (const [k, s] of rows) byOp.set(k.split(' ')[0], (byOp.get(k.split(' ')[0]) ?? 0) + s.ms);
    process.stderr.write(`\nKILN_CUDA_PROFILE: ${total.toFixed(1)} ms in primitives\n`);
    for (const [op, ms] of [...byOp.entries()].sort((a, b) => b[1] - a[1])) process.stderr.write(`  ${op.padEnd(20)} ${ms.toFixed(1).padStart(9)} ms\n`);
    process.stderr.write('top calls:\n');
    for (const [k, s] of rows.slice(0, 40)) process.stderr.write(`  ${s.ms.toFixed(2).padStart(9)} ms ${String(s.calls).padStart(6)}x  ${k}\n`);
  });
}
