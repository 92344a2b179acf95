/**
 * The headless-gl engine: gpu.js's Node build (mode 'headlessgl') on a headless-gl context
 * (the `gl` package, 8.1.6) in this Node process, no browser. headless-gl is WebGL 1.0
 * (GLSL ES 1.00) through its bundled ANGLE on the X server's GLX: Mesa llvmpipe under Xvfb on
 * a machine without a GPU, the GPU's own driver where its GLX is used
 * (`__GLX_VENDOR_LIBRARY_NAME=nvidia`). Without an X display (DISPLAY) it cannot create a
 * context, so the engine is unavailable there.
 *
 * `gl` is an optional dependency: pnpm builds its native addon from source (a bundled ANGLE,
 * minutes of C++; needs g++, python3, libx11-dev libxext-dev libxi-dev). Where that build
 * failed, loading `gl` throws and the engine is unavailable, with the reason.
 */
import { BackendError } from '@kiln/core';
import { openEnginePage, type BrowserOptions, type EnginePage } from './browser.js';
import { createEngine, type EngineCodec, type EngineCommand, type EngineInfo } from './engine.js';
import { HELPERS } from './kernels.js';
import { rendersToFloatTextures } from './float-targets.js';

export interface HeadlessGlOptions {
  /** X display for GLX (default: $DISPLAY). */
  readonly display?: string;
}

type Req = ((id: string) => unknown) & { resolve(id: string): string };
type GlCtx = {
  getParameter(p: number): unknown;
  getExtension(n: string): unknown;
  _getParameterDirect?(p: number): unknown;
  [k: string]: unknown;
};

async function nodeImport<T>(name: string): Promise<T> {
  return (await import(/* @vite-ignore */ name as string)) as T;
}

const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split('\n')[0];

/**
 * Loads gpu.js's Node build and the `gl` it resolves (the same module instance gpu.js's
 * headless-gl kernel uses), or says why not.
 */
async function load(): Promise<{ GPU: new (o: object) => { mode: string }; createGL: (w: number, h: number, o?: object) => GlCtx | null; glVersion: string }> {
  const { createRequire } = await nodeImport<typeof import('node:module')>('node:module');
  const req = createRequire(import.meta.url) as unknown as Req;
  let gpujsMain: string;
  try {
    gpujsMain = req.resolve('gpu.js');
  } catch (e) {
    throw new BackendError('gpujs', `headless-gl engine: gpu.js cannot be found: ${firstLine(e)}`);
  }
  const fromGpujs = createRequire(gpujsMain) as unknown as Req;
  let createGL: (w: number, h: number, o?: object) => GlCtx | null;
  let glVersion = '?';
  try {
    createGL = fromGpujs('gl') as typeof createGL;
    glVersion = String((fromGpujs('gl/package.json') as { version?: string }).version ?? '?');
  } catch (e) {
    const msg = firstLine(e);
    const why = /Cannot find module 'gl'/.test(msg)
      ? 'the optional dependency `gl` is not installed'
      : "headless-gl's native addon (gl) is not built: pnpm builds it from source when `gl` is in onlyBuiltDependencies and g++, python3, libx11-dev, libxext-dev, libxi-dev are installed";
    throw new BackendError('gpujs', `headless-gl engine: ${why} (${msg})`);
  }
  let GPU: new (o: object) => { mode: string };
  try {
    GPU = (fromGpujs(gpujsMain) as { GPU: typeof GPU }).GPU;
  } catch (e) {
    throw new BackendError('gpujs', `headless-gl engine: gpu.js's Node build failed to load: ${firstLine(e)}`);
  }
  return { GPU, createGL, glVersion };
}

/** A headless-gl context, or the reason there is none. */
function context(createGL: (w: number, h: number, o?: object) => GlCtx | null, display: string | undefined): GlCtx {
  let gl: GlCtx | null;
  try {
    gl = createGL(1, 1, { antialias: false, depth: false, stencil: false, preserveDrawingBuffer: false });
  } catch (e) {
    throw new BackendError('gpujs', `headless-gl engine: creating a context threw: ${firstLine(e)}`);
  }
  if (!gl) {
    throw new BackendError(
      'gpujs',
      display
        ? `headless-gl engine: no context on X display ${display} (its GLX failed; check the X server and the GL driver, e.g. \`glxinfo -B\`)`
        : 'headless-gl engine: no context: headless-gl (gl@8) creates its context through GLX and there is no X display (DISPLAY is unset); run under `xvfb-run -a` or start `Xvfb :99` and set DISPLAY=:99',
    );
  }
  return gl;
}

/** MAX_DRAW_BUFFERS_WEBGL, or 0 without WEBGL_draw_buffers (gpu.js's WebGL1 kernel maps need it). */
function drawBuffers(gl: GlCtx): number {
  const ext = gl.getExtension('WEBGL_draw_buffers') as { MAX_DRAW_BUFFERS_WEBGL: number } | null;
  return ext ? Number(gl.getParameter(ext.MAX_DRAW_BUFFERS_WEBGL)) || 0 : 0;
}

const codec: EngineCodec = {
  fromB64(s) {
    const b = Buffer.from(s, 'base64');
    const f = new Float32Array(b.byteLength / 4);
    new Uint8Array(f.buffer).set(b);
    return f;
  },
  toB64(f) {
    return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
  },
};

/**
 * One turn of the event loop. The engine runs synchronously in this process: without this,
 * a chain of batches and reads resolves entirely in microtasks and starves I/O (timers, IPC;
 * vitest's worker RPC timed out after 60 s in the conformance run).
 */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Starts the headless-gl engine in this process (throws BackendError with the reason). */
export async function openHeadlessGlEngine(options: HeadlessGlOptions = {}): Promise<EnginePage> {
  const proc = (globalThis as { process?: { env: Record<string, string | undefined>; versions?: { node?: string } } }).process;
  if (!proc?.versions?.node) throw new BackendError('gpujs', 'headless-gl engine: needs Node');
  const display = (options.display ?? proc.env.DISPLAY) || undefined;
  const { GPU, createGL, glVersion } = await load();
  // GLX opens $DISPLAY when the context is created; an explicit display is set only for that
  const saved = proc.env.DISPLAY;
  if (options.display !== undefined) proc.env.DISPLAY = options.display;
  let gl: GlCtx;
  try {
    gl = context(createGL, display);
  } finally {
    if (options.display !== undefined) {
      if (saved === undefined) delete proc.env.DISPLAY;
      else proc.env.DISPLAY = saved;
    }
  }
  let destroyed = false;
  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    try {
      (gl.getExtension('STACKGL_destroy_context') as { destroy(): void } | null)?.destroy();
    } catch {
      // already destroyed by gpu.js's own teardown ("Invalid GL context")
    }
  };
  try {
    const direct = (p: number): string => String(gl._getParameterDirect ? gl._getParameterDirect(p) : gl.getParameter(p));
    const renderer = direct(gl.RENDERER as number);
    const colorBufferFloat = rendersToFloatTextures(gl);
    if (!colorBufferFloat) throw new BackendError('gpujs', `headless-gl engine: ${renderer} cannot render to float textures (OES_texture_float missing or a float framebuffer is incomplete)`);
    let gpu: { mode: string };
    try {
      gpu = new GPU({ mode: 'headlessgl', context: gl });
    } catch (e) {
      throw new BackendError('gpujs', `headless-gl engine: gpu.js refused the context: ${firstLine(e)}`);
    }
    if (gpu.mode !== 'headlessgl') throw new BackendError('gpujs', `headless-gl engine: gpu.js chose mode '${gpu.mode}', not headlessgl (its CPU mode does not count as this backend)`);
    const info: EngineInfo = {
      mode: gpu.mode,
      renderer,
      vendor: direct(gl.VENDOR as number),
      version: `WebGL 1.0 (headless-gl ${glVersion}; ${direct(gl.VERSION as number)})`,
      maxTextureSize: Number(gl.getParameter(gl.MAX_TEXTURE_SIZE as number)),
      colorBufferFloat,
      maxDrawBuffers: drawBuffers(gl),
    };
    // gpu.destroy() tears its kernels (and the context) down on a timer; the context goes after it
    // KILN_GPUJS_TEXTURE_POOL=0: every kernel call gets a new output texture, as gpu.js does by itself
    const texturePool = proc.env.KILN_GPUJS_TEXTURE_POOL !== '0';
    const api = createEngine(gpu, info, HELPERS, codec, () => setTimeout(destroy, 0), { texturePool });
    let closed = false;
    return {
      info,
      engine: 'headless-gl',
      via: `gpu.js headlessgl on headless-gl ${glVersion} in Node (WebGL 1.0, GLX on ${display ?? 'no display'})`,
      exec: async (batch: EngineCommand[]) => {
        await turn();
        api.exec(batch);
      },
      read: async (id: number) => {
        await turn();
        return api.read(id);
      },
      live: async () => api.live(),
      sync: { exec: (batch: EngineCommand[]) => api.exec(batch), read: (id: number) => api.read(id), readF32: (id: number) => api.readF32(id), finish: () => api.finish(), shaders: () => api.shaders(), stats: () => api.stats!() },
      close: async () => {
        if (closed) return;
        closed = true;
        api.dispose();
      },
    };
  } catch (e) {
    destroy();
    if (e instanceof BackendError) throw e;
    throw new BackendError('gpujs', `headless-gl engine failed to start: ${firstLine(e)}`);
  }
}

/** Which engine runs the kernels (option `engine`, env KILN_GPUJS_ENGINE). */
export type GpujsEngineKind = 'auto' | 'headless-gl' | 'chromium';

export interface EngineOptions extends BrowserOptions, HeadlessGlOptions {
  /**
   * 'headless-gl': gpu.js in this process on headless-gl (WebGL 1.0; needs the built `gl`
   * addon and an X display). 'chromium': gpu.js in a headless Chromium page (WebGL2).
   * 'auto' (default): headless-gl when it can create a context, else Chromium; an explicit
   * `executablePath` means Chromium. Default: $KILN_GPUJS_ENGINE or 'auto'.
   */
  readonly engine?: GpujsEngineKind;
}

const ENGINES: readonly GpujsEngineKind[] = ['auto', 'headless-gl', 'chromium'];

/** Starts the engine the options (or KILN_GPUJS_ENGINE) ask for; throws BackendError with every reason. */
export async function openEngine(options: EngineOptions = {}): Promise<EnginePage> {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
  const kind = options.engine ?? (env.KILN_GPUJS_ENGINE || 'auto');
  if (!ENGINES.includes(kind as GpujsEngineKind)) throw new BackendError('gpujs', `unknown engine ${JSON.stringify(kind)} (option engine / KILN_GPUJS_ENGINE: ${ENGINES.join(', ')})`);
  if (kind === 'headless-gl') return openHeadlessGlEngine(options);
  if (kind === 'chromium' || options.executablePath !== undefined) return openEnginePage(options);
  let first: BackendError;
  try {
    return await openHeadlessGlEngine(options);
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    first = e;
  }
  try {
    return await openEnginePage(options);
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    throw new BackendError('gpujs', `no engine: ${first.message.slice(first.op.length + 2)}; and the Chromium engine: ${e.message.slice(e.op.length + 2)}`);
  }
}
