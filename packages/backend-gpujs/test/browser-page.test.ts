/**
 * The page engine in a real browser page: test/browser-page/page-entry.ts, bundled with esbuild
 * for the browser (iife) together with @kiln/core, @kiln/backend-gpujs's source entry and gpu.js's
 * browser build (the bundler follows gpu.js's package.json "browser" field), runs in headless
 * Chromium (Debian's chromium, SwiftShader WebGL2, launched as src/browser.ts does). The page
 * creates the backend itself (no Node bridge) and returns its measured errors; they are asserted
 * here. Skips, with the reason, where no Chromium is installed.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpujsBackend, findChromium } from '@kiln/backend-gpujs';
import type { PageResult } from './browser-page/page-entry.js';
import type { PwBrowser, PwPage } from '../src/browser.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const ENTRY = here('./browser-page/page-entry.ts');
const ALIAS = {
  '@kiln/core': here('../../core/src/index.ts'),
  '@kiln/backend-cpu': here('../../backend-cpu/src/index.ts'),
  '@kiln/backend-gpujs': here('../src/index.ts'),
};

type Esbuild = {
  build(o: object): Promise<{ outputFiles: { text: string }[]; metafile: { inputs: Record<string, { imports: { path: string; external?: boolean }[] }> } }>;
};

/** esbuild, as the workspace has it (tsup's dependency; no devDependency of its own). */
function loadEsbuild(): Esbuild {
  const req = createRequire(import.meta.url);
  return createRequire(req.resolve('tsup'))('esbuild') as Esbuild;
}

/** The in-page script: everything bundled for the browser, or gpu.js left to the page's script tag. */
async function bundle(gpujs: 'bundled' | 'global'): Promise<{ code: string; inputs: string[]; externals: string[] }> {
  const r = await loadEsbuild().build({
    entryPoints: [ENTRY],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    metafile: true,
    alias: ALIAS,
    external: gpujs === 'global' ? ['gpu.js'] : [],
    // import.meta.url is read only on the Node engines' paths (createRequire), never in a page
    logOverride: { 'empty-import-meta': 'silent' },
    logLevel: 'silent',
  });
  // bare specifiers left external (relative paths and esbuild's '<runtime>' are in the bundle)
  const externals = Object.values(r.metafile.inputs).flatMap((i) => i.imports.filter((x) => x.external && /^(node:|@|[a-z])/i.test(x.path)).map((x) => x.path));
  return { code: r.outputFiles[0].text, inputs: Object.keys(r.metafile.inputs), externals: [...new Set(externals)] };
}

const found = await findChromium();
const skipReason = 'reason' in found ? found.reason : undefined;

describe.skipIf(skipReason)(`page engine in a browser page${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let browser: PwBrowser;
  let bundled: { code: string; inputs: string[]; externals: string[] };
  const errors: string[] = [];

  const openPage = async (scripts: { path?: string; content?: string }[]): Promise<PwPage> => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(String((e as Error)?.message ?? e)));
    await page.setContent('<!doctype html><html><body></body></html>');
    for (const s of scripts) await page.addScriptTag(s);
    return page;
  };

  beforeAll(async () => {
    if (skipReason) return;
    bundled = await bundle('bundled');
    const pw = (await import('playwright-core')) as unknown as { chromium: { launch(o: object): Promise<PwBrowser> } };
    browser = await pw.chromium.launch({
      executablePath: (found as { path: string }).path,
      headless: true,
      args: ['--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--enable-webgl', '--no-sandbox', '--disable-dev-shm-usage'],
    });
  });

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
  });

  it('the browser bundle has gpu.js\'s browser build and nothing of Node (no node: builtins, gl, playwright-core, gpu.js\'s Node build)', () => {
    const ins = bundled.inputs.join('\n');
    expect(ins).toMatch(/gpu\.js\/dist\/gpu-browser\.js/);
    expect(ins).not.toMatch(/gpu\.js\/src\/index\.js|node_modules\/gl\/|playwright-core/);
    // platform 'browser' fails the build on a static import of a Node builtin; nothing is left external either
    expect(bundled.externals).toEqual([]);
  });

  it('runs kiln in the page on WebGL2: f32 matmul (one-pass and packed), FP8 GEMM bit-exact, softmax/rmsNorm, readSync, an elementwise chain, autograd', async () => {
    const page = await openPage([{ content: bundled.code }]);
    const r = await page.evaluate(() => (globalThis as unknown as { __kilnPageTest: { run(o: object): Promise<PageResult> } }).__kilnPageTest.run({ engine: 'page' }), undefined);
    console.log(`page engine (${r.device.name}; ${String(r.device.details.glVersion)}): ${JSON.stringify({ matmul: r.matmul, packedKernels: r.packedKernels, fp8: r.fp8, quantizeHost: r.quantizeHost, softmax: r.softmax, rmsNorm: r.rmsNorm, readSync: r.readSync, chain: r.chain, grad: r.grad, liveAfter: r.liveAfter })}`);
    expect(errors).toEqual([]);
    // the device: the page engine on WebGL2, the renderer's name; SwiftShader is software
    expect(r.device.details.engine).toBe('page');
    expect(r.device.details.glVersion).toMatch(/^WebGL 2\.0/);
    expect(r.device.details.via).toMatch(/webgl2 in this page/);
    expect(r.device.name.length).toBeGreaterThan(0);
    if (/swiftshader/i.test(r.device.name)) {
      expect(r.device.details.software).toBe(true);
      expect(r.device.accelerated).toBe(false);
      expect(r.device.notPreferred).toMatch(/software WebGL/);
    }
    expect(r.hasReadSync).toBe(true);
    // f32 GEMM: error relative to sum_k |a_ik b_kj|, against float64 (K = 7, 50, 256 in f32)
    // (measured on SwiftShader: 0.8e-7 .. 1.9e-7; sqrt(K) * 2^-24 is 1e-6 for K = 256)
    for (const [shape, e] of Object.entries(r.matmul)) expect(e, shape).toBeLessThan(1e-6);
    expect(Object.keys(r.matmul)).toHaveLength(3);
    // 5x7x3 runs the one-pass kernel; 70x50x90 and 256^3 the packed GEMM (its kernels carry GLSL natives)
    expect(r.packedKernels['5x7x3']).toBe(0);
    expect(r.packedKernels['70x50x90']).toBeGreaterThan(0);
    expect(r.fp8.mismatches, `FP8 GEMM: ${r.fp8.mismatches} of ${r.fp8.total} differ from fp8GemmReference`).toBe(0);
    expect(r.fp8.total).toBe(33 * 70);
    expect(r.quantizeHost).toEqual({ codeMismatches: 0, scaleMismatches: 0 });
    expect(r.softmax).toBeLessThan(2e-7);
    expect(r.rmsNorm).toBeLessThan(4e-6);
    expect(r.readSync.mismatches).toBe(0);
    expect(r.readSync.n).toBe(40 * 40);
    expect(r.chain).toBeLessThan(2e-6);
    expect(r.grad.dA).toBeLessThan(1e-6);
    expect(r.grad.dB).toBeLessThan(1e-6);
    expect(r.grad.value).toBeLessThan(2e-6);
    expect(r.liveAfter).toBe(0);
    // unavailable: typed, with the reason; never gpu.js's CPU mode
    expect(r.noContext).toMatch(/^BackendError: .*no WebGL context/);
    expect(r.wrongEngine).toMatch(/^BackendError: .*runs only in Node/);
    // a lost WebGL context: typed errors naming it, never data
    expect(r.lostRead).toMatch(/^BackendError: .*context was lost/);
    expect(r.lostOp).toMatch(/^BackendError: .*context was lost/);
  });

  it('WebGL 1.0 (option webgl: \'webgl\'): gpu.js webgl mode on the same page, or unavailable with the reason', async () => {
    const page = await openPage([{ content: bundled.code }]);
    type Quick = { device: PageResult['device']; matmul: number; softmax: number; readSync: boolean } | string;
    const r = await page.evaluate(
      () =>
        (globalThis as unknown as { __kilnPageTest: { quick(o: object): Promise<Quick> } }).__kilnPageTest
          .quick({ webgl: 'webgl' })
          .catch((e: Error) => `${e.name}: ${e.message}`),
      undefined,
    );
    console.log(`page engine, WebGL 1.0: ${JSON.stringify(r)}`);
    if (typeof r === 'string') {
      expect(r).toMatch(/^BackendError: page engine: /);
      return;
    }
    expect(r.device.details.engine).toBe('page');
    expect(r.device.details.glVersion).toMatch(/^WebGL 1\.0/);
    expect(r.device.details.via).toMatch(/webgl in this page \(WebGL 1\.0/);
    expect(r.readSync).toBe(true);
    expect(r.matmul).toBeLessThan(1e-6);
    expect(r.softmax).toBeLessThan(2e-7);
  });

  it('gpu.js from a script tag (global GPU; the bundle leaves gpu.js out)', async () => {
    const req = createRequire(here('../src/index.ts'));
    const gpujsBrowser = req.resolve('gpu.js/dist/gpu-browser.min.js');
    const noGpujs = await bundle('global');
    expect(noGpujs.inputs.join('\n')).not.toMatch(/gpu\.js\//);
    expect(noGpujs.externals).toEqual(['gpu.js']);
    const page = await openPage([{ path: gpujsBrowser }, { content: noGpujs.code }]);
    const r = await page.evaluate(
      () => (globalThis as unknown as { __kilnPageTest: { quick(o: object): Promise<{ device: PageResult['device']; matmul: number; softmax: number; readSync: boolean }> } }).__kilnPageTest.quick({}),
      undefined,
    );
    console.log(`page engine, gpu.js by script tag: ${JSON.stringify(r)}`);
    expect(r.device.details.engine).toBe('page');
    expect(r.device.details.glVersion).toMatch(/^WebGL 2\.0/);
    expect(r.matmul).toBeLessThan(1e-6);
    expect(r.softmax).toBeLessThan(2e-7);
  });
});

describe('page engine outside a browser', () => {
  it('in Node, engine \'page\' is a BackendError with the reason', async () => {
    const err = await GpujsBackend.create({ engine: 'page' }).then(
      (b) => {
        b.dispose();
        return undefined;
      },
      (e: Error) => e,
    );
    expect(err?.name).toBe('BackendError');
    expect(err?.message).toMatch(/page engine runs in a browser/);
  });
});
