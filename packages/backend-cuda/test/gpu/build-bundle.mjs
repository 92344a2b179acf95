#!/usr/bin/env node
// Bundles the GPU scripts (nccl-2gpu.mjs) with kiln's sources into one file each under .carry/
// (git-ignored), because GPU machines get the working tree without node_modules.
//   node packages/backend-cuda/test/gpu/build-bundle.mjs   -> .carry/nccl-gpu.bundle.mjs
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..', '..');
const require = createRequire(join(root, 'packages', 'backend-cuda', 'package.json'));
let esbuild;
try {
  esbuild = require('esbuild');
} catch {
  esbuild = createRequire(require.resolve('tsup')).call ? createRequire(require.resolve('tsup'))('esbuild') : undefined;
}
await esbuild.build({
  entryPoints: [join(here, 'nccl-2gpu.mjs')],
  outfile: join(root, '.carry', 'nccl-gpu.bundle.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  alias: {
    '@kiln/core': join(root, 'packages', 'core', 'src', 'index.ts'),
    '@kiln/backend-cuda': join(root, 'packages', 'backend-cuda', 'src', 'index.ts'),
  },
  // src/addon.ts uses createRequire(import.meta.url) for the addon; keep __dirname-free ESM.
  banner: { js: "import { createRequire as __kilnCreateRequire } from 'node:module'; const require = __kilnCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
console.log('wrote .carry/nccl-gpu.bundle.mjs');
