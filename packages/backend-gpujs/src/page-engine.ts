/**
 * The page engine: kiln runs in a browser page (or a worker with OffscreenCanvas) and gpu.js's
 * browser build runs the kernels in that same page, on a WebGL2 context (WebGL 1.0 where WebGL2
 * is unavailable and the context renders to float textures). No bridge, no base64: the engine
 * is `createEngine` in this JavaScript realm, called synchronously, as the headless-gl engine
 * is in Node, so the backend offers `readSync`.
 *
 * gpu.js comes from the `gpujs` option, else `globalThis.GPU` (the page loaded
 * gpu.js/dist/gpu-browser(.min).js with a script tag), else `import('gpu.js')`, which a bundler
 * resolves to gpu.js's browser build through its package.json "browser" field
 * (./dist/gpu-browser.js). Nothing here imports a Node module: a bundler can build this path
 * for the browser (the Node engines load theirs with dynamic imports of computed names).
 */
import { BackendError } from '@kiln/core';
import type { EnginePage } from './browser.js';
import { base64Codec, createEngine, type EngineCommand, type EngineInfo } from './engine.js';
import { HELPERS } from './kernels.js';
import { rendersToFloatTextures } from './float-targets.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

/** Options of the page engine (`engine: 'page'`, or 'auto' in a browser). */
export interface PageEngineOptions {
  /**
   * The canvas to create the context on (an HTMLCanvasElement or an OffscreenCanvas). Default: a
   * new `<canvas>` (not attached to the document), or a 1x1 OffscreenCanvas where there is no
   * `document` (a worker).
   */
  readonly canvas?: unknown;
  /**
   * A WebGL2RenderingContext (or WebGLRenderingContext) to run on, e.g. one your page already
   * has; gpu.js then shares it (it changes the GL state: bound framebuffer, viewport, programs).
   * The backend never destroys a context it did not create.
   */
  readonly context?: unknown;
  /**
   * Which WebGL: 'webgl2' (only), 'webgl' (WebGL 1.0 only: needs OES_texture_float and a
   * float-renderable framebuffer) or 'auto' (default: WebGL2, else WebGL 1.0).
   */
  readonly webgl?: 'auto' | 'webgl2' | 'webgl';
  /**
   * gpu.js: its module namespace (`import * as gpujs from 'gpu.js'`) or its `GPU` class.
   * Default: `globalThis.GPU` (gpu.js's browser build loaded by a script tag), else
   * `await import('gpu.js')`.
   */
  readonly gpujs?: unknown;
}

/** The page engine as the backend drives it (an EnginePage whose engine is 'page'; `sync` is always there). */
export type PageEngine = Omit<EnginePage, 'engine' | 'sync'> & { readonly engine: 'page'; readonly sync: NonNullable<EnginePage['sync']> };

/** Whether this is a browser-like realm (a document or OffscreenCanvas, and not Node). */
export function inBrowser(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; document?: unknown; OffscreenCanvas?: unknown };
  if (typeof g.process?.versions?.node === 'string') return false;
  return typeof g.document !== 'undefined' || typeof g.OffscreenCanvas === 'function';
}

const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split('\n')[0];

type GpuCtor = new (o: object) => { mode: string };

/** gpu.js's `GPU` class from the option, the global (script tag) or the module (bundler). */
async function loadGpu(given: unknown): Promise<GpuCtor> {
  // gpu.js's module (or its UMD global) is an object with a GPU class; a bare function only
  // from the option (a browser with WebGPU has a global `GPU` interface of its own)
  const pick = (m: any, fn: boolean): GpuCtor | undefined => {
    if (!m) return undefined;
    if (typeof m.GPU === 'function') return m.GPU as GpuCtor;
    if (m.default && typeof m.default.GPU === 'function') return m.default.GPU as GpuCtor;
    if (fn && typeof m === 'function') return m as GpuCtor;
    return undefined;
  };
  if (given !== undefined) {
    const G = pick(given, true);
    if (!G) throw new BackendError('gpujs', 'page engine: option gpujs is neither gpu.js\'s module nor its GPU class');
    return G;
  }
  const fromGlobal = pick((globalThis as { GPU?: unknown }).GPU, false);
  if (fromGlobal) return fromGlobal;
  let mod: unknown;
  try {
    mod = await import('gpu.js');
  } catch (e) {
    throw new BackendError('gpujs', `page engine: gpu.js is not loaded (no global GPU) and import('gpu.js') failed: ${firstLine(e)}; load gpu.js/dist/gpu-browser.min.js with a script tag, or bundle the gpu.js package (its "browser" field is the browser build)`);
  }
  const G = pick(mod, false);
  if (!G) throw new BackendError('gpujs', "page engine: import('gpu.js') gave no GPU class (is the bundler resolving gpu.js's \"browser\" build?)");
  return G;
}

function newCanvas(): any {
  const g = globalThis as any;
  if (g.document && typeof g.document.createElement === 'function') return g.document.createElement('canvas');
  if (typeof g.OffscreenCanvas === 'function') return new g.OffscreenCanvas(1, 1);
  throw new BackendError('gpujs', 'page engine: no document and no OffscreenCanvas to create a WebGL context on');
}

const ATTRS = { antialias: false, depth: false, stencil: false, preserveDrawingBuffer: false, failIfMajorPerformanceCaveat: false, powerPreference: 'high-performance' };

const isWebgl2 = (gl: any): boolean => {
  const W2 = (globalThis as any).WebGL2RenderingContext;
  if (typeof W2 === 'function' && gl instanceof W2) return true;
  // a context from elsewhere (another realm, a wrapper): WebGL2 has texStorage2D
  return typeof gl.texStorage2D === 'function' && typeof gl.createVertexArray === 'function';
};

const codec = base64Codec(globalThis);

/**
 * One macrotask: setImmediate where there is one (Node), else a MessageChannel message (not
 * clamped to 4 ms as nested setTimeout(0) is in browsers), else setTimeout(0).
 */
export const macrotask: (cb: () => void) => void = (() => {
  const g = globalThis as any;
  if (typeof g.setImmediate === 'function') return (cb: () => void) => g.setImmediate(cb);
  let port: { postMessage(m: unknown): void } | undefined;
  const queue: (() => void)[] = [];
  return (cb: () => void) => {
    if (!port && typeof g.MessageChannel === 'function') {
      const ch = new g.MessageChannel();
      ch.port1.onmessage = () => queue.shift()?.();
      port = ch.port2;
    }
    if (!port) {
      setTimeout(cb, 0);
      return;
    }
    queue.push(cb);
    port.postMessage(0);
  };
})();

const turn = (): Promise<void> => new Promise((resolve) => macrotask(resolve));

/**
 * Starts the page engine: a WebGL2 (or WebGL 1.0) context, gpu.js in its WebGL mode on it, and
 * `createEngine` in this realm. Throws a BackendError with the reason when there is no usable
 * context (gpu.js's CPU mode is never used).
 */
export async function openPageEngine(options: PageEngineOptions = {}): Promise<PageEngine> {
  if (!inBrowser() && options.context === undefined && options.canvas === undefined) {
    throw new BackendError('gpujs', 'page engine: runs in a browser page or worker (no document or OffscreenCanvas here); in Node use the headless-gl or chromium engine');
  }
  const want = options.webgl ?? 'auto';
  if (want !== 'auto' && want !== 'webgl2' && want !== 'webgl') throw new BackendError('gpujs', `page engine: webgl ${JSON.stringify(want)} (one of auto, webgl2, webgl)`);
  const GPU = await loadGpu(options.gpujs);
  const owned = options.context === undefined;
  let gl: any = options.context;
  let canvas: any = options.canvas ?? gl?.canvas;
  const tried: string[] = [];
  if (!gl) {
    canvas ??= newCanvas();
    for (const kind of want === 'auto' ? ['webgl2', 'webgl'] : [want]) {
      try {
        gl = canvas.getContext(kind, ATTRS);
      } catch (e) {
        tried.push(`${kind}: ${firstLine(e)}`);
        gl = null;
      }
      if (gl) break;
      if (!tried.some((t) => t.startsWith(kind))) tried.push(`${kind}: getContext gave null`);
    }
    if (!gl) throw new BackendError('gpujs', `page engine: no WebGL context (${tried.join('; ')}); this backend does not use gpu.js's CPU mode`);
  }
  const lose = (): void => {
    if (!owned) return;
    try {
      gl.getExtension('WEBGL_lose_context')?.loseContext();
    } catch {
      // already lost
    }
  };
  try {
    const webgl2 = isWebgl2(gl);
    if (want === 'webgl2' && !webgl2) throw new BackendError('gpujs', 'page engine: the context given is WebGL 1.0, option webgl asks for webgl2');
    if (want === 'webgl' && webgl2) throw new BackendError('gpujs', 'page engine: the context given is WebGL2, option webgl asks for webgl');
    const dbg = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = String(dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
    const vendor = String(dbg ? gl.getParameter(dbg.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR));
    const colorBufferFloat = webgl2 ? !!gl.getExtension('EXT_color_buffer_float') : rendersToFloatTextures(gl);
    if (!colorBufferFloat) {
      throw new BackendError('gpujs', webgl2 ? `page engine: WebGL2 on ${renderer} cannot render to float textures (no EXT_color_buffer_float)` : `page engine: WebGL 1.0 on ${renderer} cannot render to float textures (OES_texture_float missing or a float framebuffer is incomplete)`);
    }
    const mode = webgl2 ? 'webgl2' : 'webgl';
    let gpu: { mode: string };
    try {
      gpu = new GPU({ mode, canvas, context: gl });
    } catch (e) {
      throw new BackendError('gpujs', `page engine: gpu.js refused the ${mode} context: ${firstLine(e)}`);
    }
    if (gpu.mode !== mode) throw new BackendError('gpujs', `page engine: gpu.js chose mode '${gpu.mode}', not ${mode} (its CPU mode does not count as this backend)`);
    const ext = webgl2 ? undefined : (gl.getExtension('WEBGL_draw_buffers') as { MAX_DRAW_BUFFERS_WEBGL: number } | null);
    const info: EngineInfo = {
      mode: gpu.mode,
      renderer,
      vendor,
      version: String(gl.getParameter(gl.VERSION)),
      maxTextureSize: Number(gl.getParameter(gl.MAX_TEXTURE_SIZE)),
      colorBufferFloat,
      maxDrawBuffers: webgl2 ? Number(gl.getParameter(gl.MAX_DRAW_BUFFERS)) || 4 : ext ? Number(gl.getParameter(ext.MAX_DRAW_BUFFERS_WEBGL)) || 0 : 0,
    };
    // gpu.destroy() tears its kernels down on a timer; a context created here is lost after it
    const api = createEngine(gpu, info, HELPERS, codec, () => setTimeout(lose, 0));
    let closed = false;
    // A lost context (the browser or the driver reset the GPU) renders nothing and reads back
    // zeros: every call checks before and after it runs, so a loss is a BackendError, never a
    // silent wrong answer. (No restore: the textures are gone; a new backend is needed.)
    let lostEvent = false;
    canvas?.addEventListener?.('webglcontextlost', () => {
      lostEvent = true;
    });
    const alive = (): void => {
      if (closed) return;
      if (lostEvent || (typeof gl.isContextLost === 'function' && gl.isContextLost())) {
        throw new BackendError('gpujs', `page engine: the WebGL context was lost (${renderer}); its tensors are gone: create a new backend`);
      }
    };
    const guarded = <A extends unknown[], R>(f: (...a: A) => R) => (...a: A): R => {
      alive();
      const r = f(...a);
      alive();
      return r;
    };
    return {
      info,
      engine: 'page',
      via: `gpu.js ${gpu.mode} in this page (${webgl2 ? 'WebGL2' : 'WebGL 1.0'}${owned ? '' : ', a context given by the caller'})`,
      exec: async (batch: EngineCommand[]) => {
        await turn();
        guarded(api.exec)(batch);
      },
      read: async (id: number) => {
        await turn();
        return guarded(api.read)(id);
      },
      live: async () => api.live(),
      sync: {
        exec: guarded((batch: EngineCommand[]) => api.exec(batch)),
        read: guarded((id: number) => api.read(id)),
        readF32: guarded((id: number) => api.readF32(id)),
        finish: () => api.finish(),
        shaders: () => api.shaders(),
        stats: () => api.stats!(),
      },
      close: async () => {
        if (closed) return;
        closed = true;
        api.dispose();
      },
    };
  } catch (e) {
    lose();
    if (e instanceof BackendError) throw e;
    throw new BackendError('gpujs', `page engine failed to start: ${firstLine(e)}`);
  }
}
