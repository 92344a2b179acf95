/**
 * Node side: a headless Chromium (Debian's `chromium`, or any Chrome/Chromium named by
 * KILN_CHROMIUM) driven by playwright-core, with WebGL2 on SwiftShader (default) or on the
 * machine's GPU (`angle: 'gl' | 'vulkan' | 'egl'`), gpu.js's browser build and the engine
 * loaded into one page. Nothing is downloaded: without a browser the backend is unavailable.
 */
import { BackendError } from '@kiln/core';
import { base64Codec, createEngine, installEngine, type EngineCommand, type EngineInfo, type EngineStats } from './engine.js';
import { HELPERS } from './kernels.js';

export interface BrowserOptions {
  /** Chrome/Chromium executable (default: $KILN_CHROMIUM, then the usual system paths). */
  readonly executablePath?: string;
  /**
   * ANGLE's backend (`--use-angle=`): 'swiftshader' (default, CPU), 'gl' or 'vulkan' for a
   * real GPU. Default: $KILN_GPUJS_ANGLE or 'swiftshader'.
   */
  readonly angle?: string;
  /** Extra Chromium flags. */
  readonly args?: readonly string[];
}

export const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable', '/snap/bin/chromium'];

const env = (k: string): string | undefined => (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[k];

async function nodeImport<T>(name: string): Promise<T> {
  return (await import(/* @vite-ignore */ name as string)) as T;
}

/** The browser executable to use, or the reason there is none. */
export async function findChromium(explicit?: string): Promise<{ path: string } | { reason: string }> {
  const fs = await nodeImport<typeof import('node:fs')>('node:fs');
  const wanted = explicit ?? env('KILN_CHROMIUM');
  if (wanted) return fs.existsSync(wanted) ? { path: wanted } : { reason: `KILN_CHROMIUM / executablePath ${wanted} does not exist` };
  for (const p of CHROMIUM_PATHS) if (fs.existsSync(p)) return { path: p };
  return { reason: `no Chromium found (looked for ${CHROMIUM_PATHS.join(', ')}; set KILN_CHROMIUM, or install Debian's chromium package)` };
}

/**
 * A running engine, as the Node side drives it: a Chromium page (this file) or gpu.js on
 * headless-gl in this process (node-engine.ts).
 */
export interface EnginePage {
  readonly info: EngineInfo;
  /** Which engine: 'chromium' or 'headless-gl'. */
  readonly engine: 'chromium' | 'headless-gl';
  /** How the backend reaches the GL implementation (DeviceInfo.details.via). */
  readonly via: string;
  exec(batch: EngineCommand[]): Promise<void>;
  read(id: number): Promise<string>;
  live(): Promise<number>;
  close(): Promise<void>;
  /**
   * Present when the engine runs in this process (headless-gl): the same calls, synchronous.
   * The backend then runs every command as it is issued and offers `readSync`.
   */
  readonly sync?: { exec(batch: EngineCommand[]): void; read(id: number): string; readF32?(id: number): Float32Array; finish?(): void; shaders?(): { src: string; glsl: string }[]; stats?(): EngineStats };
}

/** The parts of a playwright-core Page this package uses (also the browser-page test's). */
export type PwPage = {
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  addScriptTag(o: { path?: string; content?: string }): Promise<unknown>;
  setContent(html: string): Promise<void>;
  on(ev: string, cb: (x: unknown) => void): void;
};
export type PwBrowser = { newPage(): Promise<PwPage>; close(): Promise<void> };

export async function openEnginePage(options: BrowserOptions = {}): Promise<EnginePage> {
  const found = await findChromium(options.executablePath);
  if ('reason' in found) throw new BackendError('gpujs', found.reason);
  let pw: { chromium: { launch(o: object): Promise<PwBrowser> } };
  try {
    pw = await nodeImport('playwright-core');
  } catch (e) {
    throw new BackendError('gpujs', `playwright-core cannot be loaded: ${(e as Error).message}`);
  }
  const { createRequire } = await nodeImport<typeof import('node:module')>('node:module');
  const require = createRequire(import.meta.url);
  let gpujsPath: string;
  try {
    gpujsPath = require.resolve('gpu.js/dist/gpu-browser.min.js');
  } catch (e) {
    throw new BackendError('gpujs', `gpu.js's browser build cannot be found: ${(e as Error).message}`);
  }
  const angle = options.angle ?? env('KILN_GPUJS_ANGLE') ?? 'swiftshader';
  const args = [
    `--use-angle=${angle}`,
    '--enable-unsafe-swiftshader',
    '--ignore-gpu-blocklist',
    '--enable-webgl',
    '--no-sandbox',
    '--disable-dev-shm-usage',
    ...(options.args ?? []),
  ];
  let browser: PwBrowser;
  try {
    browser = await pw.chromium.launch({ executablePath: found.path, headless: true, args });
  } catch (e) {
    throw new BackendError('gpujs', `Chromium (${found.path}) failed to start: ${(e as Error).message.split('\n')[0]}`);
  }
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><html><body></body></html>');
    await page.addScriptTag({ path: gpujsPath });
    const verdict = await page.evaluate(([src, core, codec, helpers]: [string, string, string, readonly string[]]) => {
      const install = (0, eval)(`(${src})`) as (g: unknown, h: readonly string[], c: unknown, b: unknown) => string | true;
      return install(globalThis, helpers, (0, eval)(`(${core})`), (0, eval)(`(${codec})`));
    }, [installEngine.toString(), createEngine.toString(), base64Codec.toString(), HELPERS] as [string, string, string, readonly string[]]);
    if (verdict !== true) throw new BackendError('gpujs', verdict);
    type Api = { __kilnGpujs: import('./engine.js').EngineApi };
    const info = await page.evaluate(() => (globalThis as unknown as Api).__kilnGpujs.info(), undefined);
    return {
      info,
      engine: 'chromium',
      via: `gpu.js ${info.mode} in headless Chromium (${found.path}, --use-angle=${angle})`,
      exec: (batch) => page.evaluate((b: EngineCommand[]) => (globalThis as unknown as Api).__kilnGpujs.exec(b), batch),
      read: (id) => page.evaluate((i: number) => (globalThis as unknown as Api).__kilnGpujs.read(i), id),
      live: () => page.evaluate(() => (globalThis as unknown as Api).__kilnGpujs.live(), undefined),
      close: async () => {
        await browser.close().catch(() => undefined);
      },
    };
  } catch (e) {
    await browser.close().catch(() => undefined);
    if (e instanceof BackendError) throw e;
    throw new BackendError('gpujs', `the WebGL2 page failed to start: ${(e as Error).message.split('\n')[0]}`);
  }
}
