import { readFileSync, rmSync } from 'node:fs';
import { defineConfig } from 'tsup';

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string };

// The two builds below run concurrently, so neither may `clean`: empty dist/ once, up front.
rmSync(new URL('./dist', import.meta.url), { recursive: true, force: true });

const shared = {
  target: 'es2022',
  platform: 'node',
  sourcemap: true,
  define: { __KILN_TRAINER_VERSION__: JSON.stringify(version) },
  // Backend packages are optional and loaded by name at run time: never bundle them.
  external: [/^@kiln\//],
} as const;

export default defineConfig([
  // Library entry: ESM + CJS, with .d.ts for import and .d.cts for require.
  { ...shared, entry: ['src/index.ts'], format: ['esm', 'cjs'], dts: true, clean: false },
  // The `kiln` binary: ESM only; tsup keeps the shebang and marks the file executable.
  { ...shared, entry: ['src/cli.ts'], format: ['esm'], dts: false, clean: false },
]);
