import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests run against package sources (no rebuild needed between edits); the built
// packages are checked separately by publint/attw and by the CLI smoke tests.
export default defineConfig({
  resolve: {
    alias: {
      '@kiln/core': src('./packages/core/src/index.ts'),
      '@kiln/backend-cpu': src('./packages/backend-cpu/src/index.ts'),
      '@kiln/backend-cuda': src('./packages/backend-cuda/src/index.ts'),
      '@kiln/backend-webgpu': src('./packages/backend-webgpu/src/index.ts'),
      '@kiln/backend-gpujs': src('./packages/backend-gpujs/src/index.ts'),
      '@kiln/conformance': src('./packages/conformance/src/index.ts'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
