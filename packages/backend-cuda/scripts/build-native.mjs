#!/usr/bin/env node
// Builds native/ into build/Release/kiln_cuda.node with cmake-js and nvcc.
//   --if-missing  build only when no addon exists (the package's install hook)
//   --force       rebuild from scratch
// Without nvcc or cmake the package still works as JS: it records why in build/unavailable.json
// and reports the backend unavailable at run time. KILN_CUDA_REQUIRE_BUILD=1 (CI) turns a
// missing toolchain or a failed build into an error. KILN_CUDA_ARCHS overrides the GPU targets.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const required = process.env.KILN_CUDA_REQUIRE_BUILD === '1';
const addon = join(pkg, 'build', 'Release', 'kiln_cuda.node');
const marker = join(pkg, 'build', 'unavailable.json');

function which(cmd, extra = []) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extra]) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

function giveUp(reason) {
  mkdirSync(dirname(marker), { recursive: true });
  writeFileSync(marker, JSON.stringify({ reason, at: new Date().toISOString() }, null, 2));
  const msg = `@kiln/backend-cuda: native addon not built: ${reason}`;
  if (required) {
    console.error(msg);
    process.exit(1);
  }
  console.warn(`${msg} (the package still loads and reports the backend unavailable)`);
  process.exit(0);
}

if (args.has('--if-missing') && existsSync(addon)) process.exit(0);
if (process.platform !== 'linux') giveUp(`CUDA builds are supported on Linux; this is ${process.platform}`);
const nvcc = process.env.CUDACXX ?? which('nvcc', ['/usr/local/cuda/bin']);
if (!nvcc) giveUp('nvcc not found (install the CUDA toolkit or set CUDACXX)');
const cmake = which('cmake');
if (!cmake) giveUp('cmake not found (apt-get install cmake)');

const require = createRequire(import.meta.url);
let cmakeJs;
try {
  cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
} catch {
  giveUp('cmake-js is not installed (a devDependency of @kiln/backend-cuda)');
}
if (args.has('--force')) rmSync(join(pkg, 'build'), { recursive: true, force: true });
rmSync(marker, { force: true });

const archs = process.env.KILN_CUDA_ARCHS ?? '80;90a-real';
const jobs = String(Math.max(1, Math.min(8, (await import('node:os')).availableParallelism())));
const started = Date.now();
console.log(`@kiln/backend-cuda: building the addon with ${nvcc} for CUDA archs ${archs} (${jobs} jobs)`);
const r = spawnSync(process.execPath, [cmakeJs, 'build', '--out', 'build', '--parallel', jobs,
  `--CDCMAKE_CUDA_COMPILER=${nvcc}`, `--CDCMAKE_CUDA_ARCHITECTURES=${archs}`], {
  cwd: pkg,
  stdio: 'inherit',
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
});
if (r.status !== 0 || !existsSync(addon)) giveUp(`the build failed (cmake-js exit ${r.status}); see the log above`);
console.log(`@kiln/backend-cuda: built ${addon} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
