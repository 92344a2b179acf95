/**
 * The engine: the side of the gpu.js backend that owns the textures and runs the kernels.
 *
 * - `createEngine` is the engine proper: given a gpu.js `GPU` instance bound to a GL context,
 *   it keeps one texture per tensor and runs the command batches the host sends. It runs in a
 *   browser page (gpu.js's browser build, WebGL2) or in Node (gpu.js's Node build on
 *   headless-gl, WebGL1; src/node-engine.ts).
 * - `installEngine` is the page-side setup: a WebGL2 canvas, gpu.js's browser build (global
 *   `GPU`), then `createEngine`, installed as `globalThis.__kilnGpujs`.
 *
 * Both must stay self-contained (they are shipped to the page as their source text): no
 * imports, no outer references.
 *
 * Storage: one gpu.js texture per tensor (numbers in single-precision float textures; integer
 * dtypes and f16/bf16/FP8 codes as integer-valued floats). Every kernel is a gpu.js kernel
 * created with `pipeline: true, immutable: true` (texture-resident output, a new texture per
 * call), `dynamicOutput` and `dynamicArguments` (compiled once per source text, reused for
 * every shape), `precision: 'single'`.
 *
 * A kernel source may start with GLSL functions for gpu.js's `nativeFunctions` (per kernel):
 * blocks `/*@glsl NAME RETURN_TYPE*\/ glsl source /*@end*\/` before the JavaScript function.
 */

/** One command of a batch the host sends. */
export type EngineCommand =
  /** upload: `b64` (the page engine) or `f32` (the in-process engine: no base64 round trip) */
  | { t: 'up'; id: number; n: number; b64?: string; f32?: Float32Array }
  | {
      t: 'k';
      id: number;
      n: number;
      src: string;
      ins: number[];
      meta: number[];
      /** output dimensions when not [n] (a 2D output gets a texture of exactly [w, h] texels) */
      dims?: number[];
      /** sub-kernel sources: the kernel is a gpu.js kernel map; sub-kernel i's output goes to outs[i] */
      subs?: string[];
      outs?: number[];
      /**
       * headless-gl engine: the kernel (n = ceil(flat4 / 4) threads, 'Array(4)') returns a
       * tensor of `flat4` elements four per texel in flat order. It is stored so: read back as is
       * (no gather pass), and expanded to one value per texel when a kernel first takes it.
       */
      flat4?: number;
    }
  | { t: 'free'; id: number };

export interface EngineInfo {
  readonly mode: string;
  readonly renderer: string;
  readonly vendor: string;
  readonly version: string;
  readonly maxTextureSize: number;
  readonly colorBufferFloat: boolean;
  /** WebGL 1.0: MAX_DRAW_BUFFERS_WEBGL (0 without WEBGL_draw_buffers), for the packed GEMM's four render targets; WebGL2 guarantees 4 */
  readonly maxDrawBuffers?: number;
}

export interface EngineApi {
  info(): EngineInfo;
  exec(batch: EngineCommand[]): void;
  read(id: number): string;
  /** The values of `id` as f32 (no base64); see `createEngine` for the headless-gl readback. */
  readF32(id: number): Float32Array;
  /** gl.finish() (profiling: wait for the GL work issued so far) */
  finish(): void;
  /** Every compiled kernel: its source (key) and the fragment shader gpu.js generated (debugging) */
  shaders(): { src: string; glsl: string }[];
  live(): number;
  /** Output-texture counters (the headless-gl engine; see `EngineStats`) */
  stats?(): EngineStats;
  dispose(): void;
}

/**
 * The headless-gl engine's output-texture counters: `created`, GL textures created (gl.createTexture);
 * `reused`, kernel outputs rendered into a texture taken from the pool; `pooled`, textures of freed
 * tensors put in the pool; `evicted`, pooled textures deleted (pool over its cap); `idle`, textures
 * in the pool now; `setOutput`, kernel setOutput() calls (without the pool, one per call).
 * Counted by the headless-gl engine, with or without the pool.
 */
export interface EngineStats {
  readonly pool: boolean;
  readonly created: number;
  readonly reused: number;
  readonly pooled: number;
  readonly evicted: number;
  readonly idle: number;
  readonly setOutput: number;
}

/** Engine options: `texturePool` recycles freed tensors' textures as kernel outputs (headless-gl engine only). */
export interface EngineCoreOptions {
  readonly texturePool?: boolean;
  /** the pool's cap in bytes (default 256 MiB); textures past it are deleted, oldest first */
  readonly texturePoolBytes?: number;
}

/** base64 <-> f32 (the page uses atob/btoa, Node its Buffer). */
export interface EngineCodec {
  fromB64(s: string): Float32Array;
  toB64(f: Float32Array): string;
}

/**
 * The engine's base64 codec in a browser realm (atob/btoa of `g`). Self-contained, like
 * `createEngine`: the Chromium engine sends its source into the page, and the in-page engine
 * (page-engine.ts) calls it directly.
 */
export function base64Codec(g: { atob(s: string): string; btoa(s: string): string }): EngineCodec {
  return {
    fromB64(s) {
      const bin = g.atob(s);
      const u8 = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
      return new Float32Array(u8.buffer);
    },
    toB64(f) {
      const u8 = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
      let s = '';
      for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
      return g.btoa(s);
    },
  };
}

/** The engine over a gpu.js `GPU` instance (any GL mode; gpu.js's CPU mode is refused by the callers). */
export function createEngine(
  gpu: unknown,
  info: EngineInfo,
  helpers: readonly string[],
  codec: EngineCodec,
  onDispose?: () => void,
  options?: EngineCoreOptions,
): EngineApi {
  /* eslint-disable @typescript-eslint/no-explicit-any */
  const G = gpu as any;
  for (const h of helpers) {
    const params = (/^\s*function\s*\w*\s*\(([^)]*)\)/.exec(h)?.[1] ?? 'x').split(',').filter((p) => p.trim());
    G.addFunction(h, { argumentTypes: params.map(() => 'Number'), returnType: 'Number' });
  }
  const store = new Map<number, any>();
  const kernels = new Map<string, any>();
  const EMPTY = new Float32Array(0);
  const COPY = 'function (a) { return a[this.thread.x]; }';
  // GLSL ES 1.00 (floor(a / b), a - b floor(a / b)) for integer-valued 0 <= a < 2^24, exact (the
  // quotient corrected twice), as a native function named `name` (one per kernel source below)
  const divModGlsl = (name: string): string => `vec2 ${name}(float a, float b) {
  float q = floor(a / b);
  float r = a - q * b;
  if (r < 0.0) { q -= 1.0; r += b; } else if (r >= b) { q += 1.0; r -= b; }
  if (r < 0.0) { q -= 1.0; r += b; } else if (r >= b) { q += 1.0; r -= b; }
  return vec2(q, r);
}`;
  // readF32's gather pass (GLSL ES 1.00, headless-gl): texel t = values 4t .. 4t + 3 of x (exact
  // float index math below 2^24, as the packed GEMM's kernels; zero past n); m = [n]
  const READ4_MIN = 4096;
  const READ4 = `/*@glsl kilnRead4 Array(4)*/${divModGlsl('kilnDivModR')}
float kilnRead1(float p, vec2 s) {
  vec2 d = kilnDivModR(p, s.x);
  return texture2D(user_x, (vec2(d.y, d.x) + 0.5) / s).r;
}
vec4 kilnRead4(float t, float n) {
  vec2 s = vec2(user_xSize);
  float p = 4.0 * t;
  vec4 v = vec4(0.0);
  if (p < n) { v.x = kilnRead1(p, s); }
  if (p + 1.0 < n) { v.y = kilnRead1(p + 1.0, s); }
  if (p + 2.0 < n) { v.z = kilnRead1(p + 2.0, s); }
  if (p + 3.0 < n) { v.w = kilnRead1(p + 3.0, s); }
  return v;
}
/*@end*/function (x, m) { return kilnRead4(this.thread.x, m[0]); }`;
  // a flat4 tensor (EngineCommand flat4) expanded to one value per texel: value i is component
  // i % 4 of texel floor(i / 4); m = [n]
  const EXPAND4 = `/*@glsl kilnExpand4 Number*/${divModGlsl('kilnDivModE')}
float kilnExpand4(float i) {
  vec2 s = vec2(user_xSize);
  vec2 d = kilnDivModE(i, 4.0);
  vec2 g = kilnDivModE(d.x, s.x);
  vec4 v = texture2D(user_x, (vec2(g.y, g.x) + 0.5) / s);
  if (d.y == 0.0) { return v.x; }
  if (d.y == 1.0) { return v.y; }
  if (d.y == 2.0) { return v.z; }
  return v.w;
}
/*@end*/function (x, m) { return kilnExpand4(this.thread.x); }`;
  /** a flat4 tensor as stored: its texture (four values per texel) and its element count */
  type Flat4 = { flat4: any; n: number };
  const isFlat4 = (v: any): v is Flat4 => v !== null && typeof v === 'object' && 'flat4' in v && !('output' in v);
  const NATIVE = /^\s*\/\*@glsl (\w+) ([\w()]+)\*\/([\s\S]*?)\/\*@end\*\//;
  const kernel = (src: string, subs?: string[]): any => {
    const key = subs ? `${src}\n${subs.join('\n')}` : src;
    let k = kernels.get(key);
    if (!k) {
      const settings: Record<string, unknown> = {
        output: [1],
        pipeline: true,
        immutable: true,
        precision: 'single',
        dynamicOutput: true,
        dynamicArguments: true,
        loopMaxIterations: 1 << 24,
        tactic: 'precision',
      };
      // GLSL functions shipped in the source (gemm.ts): this kernel's nativeFunctions
      // (argument types from NAME's own signature: gpu.js would parse the block's first function)
      const natives: { name: string; source: string; returnType: string; argumentTypes: Record<string, string> }[] = [];
      let body = src;
      for (let mt = NATIVE.exec(body); mt; mt = NATIVE.exec(body)) {
        const argumentTypes: Record<string, string> = {};
        const sig = new RegExp(`\\b${mt[1]}\\s*\\(([^)]*)\\)`).exec(mt[3]);
        for (const p of (sig ? sig[1] : '').split(',')) {
          const [ty, nm] = p.trim().split(/\s+/).slice(-2);
          if (nm) argumentTypes[nm] = ty === 'vec4' ? 'Array(4)' : ty === 'int' ? 'Integer' : 'Number';
        }
        natives.push({ name: mt[1], returnType: mt[2], source: mt[3], argumentTypes });
        body = body.slice(mt[0].length);
      }
      if (natives.length) settings.nativeFunctions = natives;
      // a kernel map (multiple render targets): its outputs are vec4, as gpu.js declares sub-kernel outputs of an Array(4) kernel
      k = subs ? G.createKernelMap(subs, body.trim(), { ...settings, returnType: 'Array(4)' }) : G.createKernel(body.trim(), settings);
      kernels.set(key, k);
    }
    return k;
  };
  // Output textures. gpu.js (pipeline + immutable) gives every call a texture of its own: setOutput()
  // always deletes the kernel's output texture and creates a new one (createTexture + texImage2D +
  // a new framebuffer attachment), and a call whose previous result is still alive creates another
  // (GLTexture.beforeMutate). Only the headless-gl engine (WebGL 1.0) does better: setOutput only
  // when the size changes, and a pool of the textures of freed tensors (by texel size) that a call
  // renders into instead of a new one. A pooled texture is one no Texture object refers to any more
  // (its `_refs` count went to 0 with the freed tensor's), so it is neither live nor any call's input.
  // This leans on gpu.js internals, checked against the installed gpu.js 2.24.1 (this repo's
  // build): a kernel's `texture` (a GLTexture; `.texture` the GL texture, whose `_refs` counts the
  // GLTexture objects sharing it: the kernel's own, the clones it returned, argument `prevArg`s),
  // `mappedTextures` (kernel maps), `_textureSwitched` / `_mappedTextureSwitched` (run() attaches the
  // texture again), `_setupOutputTexture` / `TextureConstructor` / `getInternalFormat` /
  // `getTextureFormat`, `texSize`, `output`, `deleteTexture`; and that run() keeps a texture whose
  // `_refs` is 1 (beforeMutate) and that setOutput keeps the viewport at the shared maxTexSize.
  // KILN_GPUJS_TEXTURE_POOL=0 (option texturePool: false) turns all of it off.
  const pooling = !!options?.texturePool && G.mode === 'headlessgl';
  const poolCap = options?.texturePoolBytes ?? 256 * 1024 * 1024;
  type Pooled = { key: string; tex: any; owner: any; bytes: number };
  const pool = new Map<string, Pooled[]>();
  const fifo: Pooled[] = [];
  let poolBytes = 0;
  const counts = { created: 0, reused: 0, pooled: 0, evicted: 0, setOutput: 0 };
  // counted on the headless-gl engine with or without the pool
  const ctx = G.mode === 'headlessgl' ? G.context : undefined;
  if (ctx && typeof ctx.createTexture === 'function') {
    const create = ctx.createTexture;
    ctx.createTexture = function (this: unknown, ...a: unknown[]) {
      counts.created++;
      return create.apply(this, a);
    };
  }
  // A texture's raw RGBA floats, its first n values. gpu.js's renderRawOutput reads into a new
  // Float32Array; on headless-gl a read of up to STAGE_MAX bytes goes into one kept staging
  // array instead and the n values are sliced out of it: a fresh typed array of a few hundred
  // KiB costs its page faults on first touch inside readPixels (256 KiB: ~0.2 ms, measured; the
  // GL read itself 0.04 ms on an H200), a slice copies into memory the allocator already has.
  const STAGE_MAX = 1 << 20;
  let staging: Float32Array | undefined;
  /** the texture's raw RGBA floats: a view of the staging array (valid until the next read), or a new array */
  const readStaged = (tex: any): Float32Array => {
    const gl = tex.context;
    const [w, h] = tex.size as [number, number];
    const len = w * h * 4;
    if (!ctx || len * 4 > STAGE_MAX || typeof tex.framebuffer !== 'function') return tex.renderRawOutput() as Float32Array;
    if (!staging || staging.length < len) staging = new Float32Array(len);
    const into = staging.length === len ? staging : staging.subarray(0, len);
    // renderRawOutput's own steps, with the kept array as the destination
    gl.bindFramebuffer(gl.FRAMEBUFFER, tex.framebuffer());
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex.texture, 0);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.FLOAT, into);
    return into;
  };
  /** the first n raw floats of the texture, in an array of their own */
  const readRaw = (tex: any, n: number): Float32Array => {
    const raw = readStaged(tex);
    // a view of the staging array is copied out; an array of its own is returned as is when whole
    return raw.buffer === staging?.buffer || raw.length !== n ? raw.slice(0, n) : raw;
  };
  const texKey = (size: number[]): string => `${size[0]}x${size[1]}`;
  const dropPooled = (e: Pooled): void => {
    poolBytes -= e.bytes;
    counts.evicted++;
    if (e.owner && typeof e.owner.deleteTexture === 'function') e.owner.deleteTexture(e.tex);
    else ctx?.deleteTexture(e.tex);
  };
  /** a GL texture no GLTexture refers to any more: into the pool (its owner kernel deletes it when evicted) */
  const putPooled = (tex: any, size: number[], owner: any): void => {
    const e: Pooled = { key: texKey(size), tex, owner, bytes: size[0] * size[1] * 16 };
    if (e.bytes > poolCap) {
      poolBytes += e.bytes;
      dropPooled(e);
      return;
    }
    let list = pool.get(e.key);
    if (!list) pool.set(e.key, (list = []));
    list.push(e);
    fifo.push(e);
    poolBytes += e.bytes;
    counts.pooled++;
    while (poolBytes > poolCap && fifo.length) {
      const old = fifo.shift()!;
      const l = pool.get(old.key)!;
      l.splice(l.indexOf(old), 1);
      dropPooled(old);
    }
  };
  const takePooled = (size: number[]): any => {
    const list = pool.get(texKey(size));
    const e = list?.pop();
    if (!e) return undefined;
    fifo.splice(fifo.lastIndexOf(e), 1);
    poolBytes -= e.bytes;
    counts.reused++;
    return e.tex;
  };
  /** gives up a GLTexture (a freed tensor's, or one a call made for itself): its GL texture goes to the pool when nothing else shares it */
  const release = (t: any): void => {
    if (!t || typeof t.delete !== 'function') return;
    const tex = t.texture;
    const gl = ctx;
    if (!pooling || t._deleted || !tex || tex._refs !== 1 || t.internalFormat !== gl.RGBA || t.textureType !== gl.FLOAT || !t.size) {
      t.delete();
      return;
    }
    t._deleted = true;
    tex._refs = 0;
    putPooled(tex, t.size, t.kernel);
  };
  const HOOKED = '__kilnPool';
  /** this kernel's output texture setup takes a pooled texture of its size when there is one */
  const hook = (ki: any): void => {
    if (ki[HOOKED] || typeof ki._setupOutputTexture !== 'function') return;
    ki[HOOKED] = true;
    const setup = ki._setupOutputTexture;
    ki._setupOutputTexture = function (this: any) {
      const tex = this.texture ? undefined : takePooled(this.texSize);
      if (!tex) return setup.call(this);
      // as gpu.js's own, less the texImage2D: the framebuffer is bound (build, setOutput), the
      // texture has its parameters (every gpu.js texture gets the same) and this texSize
      const gl = this.context;
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
      this.texture = new this.TextureConstructor({
        texture: tex,
        size: this.texSize,
        dimensions: this.threadDim,
        output: this.output,
        context: gl,
        internalFormat: this.getInternalFormat(),
        textureFormat: this.getTextureFormat(),
        kernel: this,
      });
    };
  };
  /**
   * A small Float32Array argument (every kernel's `meta`) is uploaded by gpu.js with a texImage2D
   * on every call; this kernel value skips the upload when the values are those of its last one
   * (bit for bit) and only binds its texture again (pinned: WebGLKernelValue(Dynamic)SingleArray's
   * updateValue, `texture`, `contextHandle`, `id`, `index`). Nothing else writes that texture.
   */
  const hookArg = (kv: any): void => {
    kv[HOOKED] = true;
    if (!/^WebGLKernelValue(Dynamic)?SingleArray$/.test(String(kv.constructor?.name)) || typeof kv.updateValue !== 'function') return;
    const update = kv.updateValue;
    let last: Int32Array | undefined;
    kv.updateValue = function (this: any, value: unknown) {
      if (last && value instanceof Float32Array && value.length === last.length && this.texture) {
        const bits = new Int32Array(value.buffer, value.byteOffset, value.length);
        let same = true;
        for (let i = 0; i < bits.length && same; i++) same = bits[i] === last[i];
        if (same) {
          const gl = this.context;
          gl.activeTexture(this.contextHandle);
          gl.bindTexture(gl.TEXTURE_2D, this.texture);
          this.kernel.setUniform1i(this.id, this.index);
          return;
        }
      }
      last = undefined;
      update.call(this, value);
      if (value instanceof Float32Array && value.length <= 64 && !this.kernel.switchingKernels) last = new Int32Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
    };
  };
  const sameOutput = (a: ArrayLike<number> | undefined, b: number[]): boolean => {
    if (!a || a.length !== b.length) return false;
    for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false;
    return true;
  };
  /** a texture run() would replace (a returned clone still shares it) is swapped for a pooled one */
  const swapIn = (t: any): any => {
    if (!t || !t.texture || t.texture._refs <= 1) return undefined;
    const tex = takePooled(t.size);
    if (!tex) return undefined;
    t.texture._refs--;
    t.texture = tex;
    tex._refs = 1;
    return tex;
  };
  const run = (src: string, n: number, args: unknown[], dims?: number[], subs?: string[]): any => {
    const k = kernel(src, subs);
    const out = dims ?? [n];
    if (!pooling) {
      counts.setOutput++;
      k.setOutput(out);
      return k(...args);
    }
    const ki = k.kernel;
    hook(ki);
    if (!sameOutput(ki.output, out)) {
      counts.setOutput++;
      // setOutput deletes the output textures: keep them (a count of ours) and pool those nothing else holds
      const olds: { tex: any; size: number[]; owner: any }[] = [];
      for (const t of [ki.texture, ...(ki.mappedTextures ?? [])]) {
        if (t && t.texture && !t._deleted) {
          t.texture._refs++;
          olds.push({ tex: t.texture, size: t.size, owner: ki });
        }
      }
      k.setOutput(out);
      for (const o of olds) if (--o.tex._refs === 0) putPooled(o.tex, o.size, o.owner);
    } else if (ki.texture) {
      // what setOutput would have done that a call needs: the viewport (the size of this
      // kernel's own canvas, gpu.js's headless-gl kernels have one each; run() does the rest)
      const gl = ki.context;
      if (ki.maxTexSize) gl.viewport(0, 0, ki.maxTexSize[0], ki.maxTexSize[1]);
      if (swapIn(ki.texture)) ki._textureSwitched = true;
      if (ki.mappedTextures && ki._mappedTextureSwitched) {
        for (let i = 0; i < ki.mappedTextures.length; i++) if (swapIn(ki.mappedTextures[i])) ki._mappedTextureSwitched[i] = true;
      }
    }
    const r = k(...args);
    for (const kv of k.kernel?.kernelArguments ?? []) if (kv && !kv[HOOKED]) hookArg(kv);
    // a call that reads the kernel's own output texture leaves a clone of it in that argument's
    // `prevArg`, which a later call would make the kernel's output texture again, whatever its size
    // by then (gpu.js's updateTextureArgumentRefs; only reachable now that setOutput does not give
    // every call a new texture): give those back at once
    for (const kv of k.kernel?.kernelArguments ?? []) {
      if (kv && kv.prevArg) {
        const p = kv.prevArg;
        kv.prevArg = null;
        release(p);
      }
    }
    return r;
  };
  let zero: any;
  const get = (id: number): any => {
    const v = store.get(id);
    if (v === undefined) throw new Error(`gpujs engine: no storage ${id}`);
    // an empty operand is never indexed; kernels take a one-texel stand-in
    if (v === EMPTY) return (zero ??= run(COPY, 1, [new Float32Array(1)]));
    if (isFlat4(v)) {
      // first use by a kernel: one value per texel from now on
      const t = run(EXPAND4, v.n, [v.flat4, new Float32Array([v.n])]);
      store.set(id, t);
      release(v.flat4);
      return t;
    }
    return v;
  };
  const free = (id: number): void => {
    const v = store.get(id);
    store.delete(id);
    if (v && v !== EMPTY) release(isFlat4(v) ? v.flat4 : v);
  };
  return {
    info: () => info,
    exec(batch) {
      for (const c of batch) {
        if (c.t === 'free') free(c.id);
        else if (c.t === 'up') store.set(c.id, c.n === 0 ? EMPTY : run(COPY, c.n, [c.f32 ?? codec.fromB64(c.b64 ?? '')]));
        else if (c.n === 0) {
          store.set(c.id, EMPTY);
          for (const o of c.outs ?? []) store.set(o, EMPTY);
        } else {
          const r = run(c.src, c.n, [...c.ins.map(get), new Float32Array(c.meta.length ? c.meta : [0])], c.dims, c.subs);
          if (c.subs) {
            store.set(c.id, r.result);
            (c.outs ?? []).forEach((o, i) => store.set(o, r[i]));
          } else if (c.flat4 !== undefined) store.set(c.id, { flat4: r, n: c.flat4 });
          else store.set(c.id, r);
        }
      }
    },
    read(id) {
      if (store.get(id) === undefined) throw new Error(`gpujs engine: no storage ${id}`);
      const v = store.get(id) === EMPTY ? EMPTY : get(id);
      if (v === EMPTY) return '';
      const arr = v.toArray() as Float32Array;
      return codec.toB64(arr instanceof Float32Array ? arr : Float32Array.from(arr));
    },
    readF32(id) {
      const v = store.get(id);
      if (v === undefined) throw new Error(`gpujs engine: no storage ${id}`);
      if (v === EMPTY) return EMPTY;
      if (isFlat4(v)) {
        // already four values per texel in order: read as is
        return readRaw(v.flat4, v.n);
      }
      const n = Number(v.output?.[0] ?? 0);
      // a storage texture holds one float per RGBA texel: reading it back moves 4x the bytes. On
      // WebGL 1.0 (headless-gl) larger tensors first go through a copy pass that gathers 4
      // consecutive values per texel, and that texture is read as is (its raw RGBA floats are
      // the values in order): a quarter of the readPixels bytes and no per-element JS loop.
      if (G.mode === 'headlessgl' && n >= READ4_MIN && v.type === 'ArrayTexture(1)' && !(v.output?.[1] > 1)) {
        const t = run(READ4, Math.ceil(n / 4), [v, new Float32Array([n])]);
        try {
          return readRaw(t, n);
        } finally {
          release(t);
        }
      }
      if (typeof v.renderRawOutput === 'function' && v.type === 'ArrayTexture(1)' && !(v.output?.[1] > 1)) {
        const raw = readStaged(v);
        const out = new Float32Array(n);
        for (let i = 0, j = 0; i < n; i++, j += 4) out[i] = raw[j];
        return out;
      }
      const arr = v.toArray() as Float32Array;
      return arr instanceof Float32Array ? arr : Float32Array.from(arr);
    },
    finish() {
      G.context?.finish?.();
    },
    shaders() {
      const out: { src: string; glsl: string }[] = [];
      for (const [key, k] of kernels) {
        const inner = k.kernel ?? k;
        out.push({ src: key, glsl: String(inner.compiledFragmentShader ?? '') });
      }
      return out;
    },
    live: () => store.size,
    stats: () => ({ pool: pooling, ...counts, idle: fifo.length }),
    dispose() {
      for (const id of [...store.keys()]) free(id);
      for (const e of fifo.splice(0)) dropPooled(e);
      pool.clear();
      if (zero && typeof zero.delete === 'function') zero.delete();
      zero = undefined;
      for (const k of kernels.values()) k.destroy?.(true);
      kernels.clear();
      G.destroy?.();
      onDispose?.();
    },
  };
}

export function installEngine(
  g: { GPU?: { GPU: new (o: object) => unknown }; __kilnGpujs?: EngineApi; document?: unknown },
  helpers: readonly string[],
  create: typeof createEngine,
  codecOf: typeof base64Codec,
): string | true {
  /* eslint-disable @typescript-eslint/no-explicit-any */
  const G = g as any;
  if (!G.GPU || !G.GPU.GPU) return 'gpu.js is not loaded in this page';
  const canvas = G.document.createElement('canvas');
  const gl = canvas.getContext('webgl2', { antialias: false, preserveDrawingBuffer: false, failIfMajorPerformanceCaveat: false });
  if (!gl) return 'this browser cannot create a WebGL2 context';
  const dbg = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
  const vendor = String(dbg ? gl.getParameter(dbg.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR));
  const colorBufferFloat = !!gl.getExtension('EXT_color_buffer_float');
  if (!colorBufferFloat) return `WebGL2 on ${renderer} cannot render to float textures (no EXT_color_buffer_float)`;
  const gpu = new G.GPU.GPU({ mode: 'webgl2', canvas, context: gl });
  if (gpu.mode !== 'webgl2') return `gpu.js chose mode '${gpu.mode}', not webgl2 (its CPU mode does not count as this backend)`;
  const info: EngineInfo = {
    mode: gpu.mode,
    renderer,
    vendor,
    version: String(gl.getParameter(gl.VERSION)),
    maxTextureSize: Number(gl.getParameter(gl.MAX_TEXTURE_SIZE)),
    colorBufferFloat,
  };
  g.__kilnGpujs = create(gpu, info, helpers, codecOf(G));
  return true;
}
