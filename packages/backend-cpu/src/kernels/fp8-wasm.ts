/**
 * The two memory-bound loops of the CPU FP8 GEMM, as a small WebAssembly module:
 *
 * - `decode(dst, src, rows, srcStride, width, table)`: dst[r·width + j] = table[src[r·srcStride + j]]
 *   (FP8 codes to f32 by a 256-entry table, one K block of `rows` rows into a packed panel);
 * - `promote(out, part, n, sb, nbw, sa)`: the f32 promotion of one output row,
 *   out[j] = f32(out[j] + f32(part[j] · s)) with s = f32(sa · sb[⌊j / nbw⌋]), 4 lanes at a time.
 *
 * WebAssembly's f32 add and mul (scalar and f32x4) round to nearest-even in single precision,
 * so `promote` computes exactly the same bits as the scalar definition
 * `Math.fround(out + Math.fround(part * Math.fround(sa * sb)))`. The module is small enough to
 * be assembled here, instruction by instruction, rather than built by a toolchain; it imports
 * its memory (`env.mem`, not shared) so that the host can grow it and view it as typed arrays.
 */

// ---- a minimal assembler ---------------------------------------------------------------

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;

const uleb = (v: number): number[] => {
  const out: number[] = [];
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
};
const sleb = (v: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
};
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

// instructions (only those used)
const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const tee = (i: number) => [0x22, ...uleb(i)];
const i32c = (v: number) => [0x41, ...sleb(v)];
const BLOCK = [0x02, 0x40];
const LOOP = [0x03, 0x40];
const END = [0x0b];
const br = (depth: number) => [0x0c, ...uleb(depth)];
const brIf = (depth: number) => [0x0d, ...uleb(depth)];
const SELECT = [0x1b];
const I32_ADD = [0x6a];
const I32_MUL = [0x6c];
const I32_SHL = [0x74];
const I32_GE_U = [0x4f];
const I32_GT_U = [0x4b];
const I32_LT_U = [0x49];
const F32_ADD = [0x92];
const F32_MUL = [0x94];
const f32Load = [0x2a, 2, 0]; // align 2^2, offset 0
const f32Store = [0x38, 2, 0];
const i32Load8U = [0x2d, 0, 0];
const v128Load = [0xfd, ...uleb(0x00), 2, 0]; // align hint 4 bytes: f32 arrays are 4-byte aligned
const v128Store = [0xfd, ...uleb(0x0b), 2, 0];
const F32X4_SPLAT = [0xfd, ...uleb(0x13)];
const F32X4_ADD = [0xfd, ...uleb(0xe4)];
const F32X4_MUL = [0xfd, ...uleb(0xe6)];

/** `for (; i < limit; i += step) body` as block/loop; `i`, `limit` are locals. */
const forLoop = (i: number, limit: number, step: number, body: number[]): number[] => [
  ...BLOCK,
  ...LOOP,
  ...get(i), ...get(limit), ...I32_GE_U, ...brIf(1),
  ...body,
  ...get(i), ...i32c(step), ...I32_ADD, ...set(i),
  ...br(0),
  ...END,
  ...END,
];

// decode(dst, src, rows, srcStride, width, table)
function decodeBody(): number[] {
  const [dst, src, rows, stride, width, table] = [0, 1, 2, 3, 4, 5];
  const [r, j, d, s] = [6, 7, 8, 9]; // r: row, j: column, d: dst byte address, s: src row address
  const inner = [
    // f32.store(d + 4j, f32.load(table + 4·src[s + j]))
    ...get(d), ...get(j), ...i32c(2), ...I32_SHL, ...I32_ADD,
    ...get(table), ...get(s), ...get(j), ...I32_ADD, ...i32Load8U, ...i32c(2), ...I32_SHL, ...I32_ADD, ...f32Load,
    ...f32Store,
  ];
  const row = [
    ...get(src), ...get(r), ...get(stride), ...I32_MUL, ...I32_ADD, ...set(s),
    ...get(dst), ...get(r), ...get(width), ...I32_MUL, ...i32c(2), ...I32_SHL, ...I32_ADD, ...set(d),
    ...i32c(0), ...set(j),
    ...forLoop(j, width, 1, inner),
  ];
  const locals = vec([[4, I32]]);
  return [...locals, ...i32c(0), ...set(r), ...forLoop(r, rows, 1, row), ...END];
}

// promote(out, part, n, sb, nbw, sa)
function promoteBody(): number[] {
  const [out, part, n, sb, nbw, sa] = [0, 1, 2, 3, 4, 5];
  const [j, e, p, j4, s, sv] = [6, 7, 8, 9, 10, 11]; // i32 x4, f32, v128
  // p = 4j
  const addr = [...get(j), ...i32c(2), ...I32_SHL, ...set(p)];
  const vecStep = [
    ...addr,
    ...get(out), ...get(p), ...I32_ADD,
    ...get(out), ...get(p), ...I32_ADD, ...v128Load,
    ...get(part), ...get(p), ...I32_ADD, ...v128Load,
    ...get(sv), ...F32X4_MUL,
    ...F32X4_ADD,
    ...v128Store,
  ];
  const scalarStep = [
    ...addr,
    ...get(out), ...get(p), ...I32_ADD,
    ...get(out), ...get(p), ...I32_ADD, ...f32Load,
    ...get(part), ...get(p), ...I32_ADD, ...f32Load,
    ...get(s), ...F32_MUL,
    ...F32_ADD,
    ...f32Store,
  ];
  const vectorLoop = [
    ...BLOCK,
    ...LOOP,
    // while (j + 4 <= e)
    ...get(j), ...i32c(4), ...I32_ADD, ...tee(j4), ...get(e), ...I32_GT_U, ...brIf(1),
    ...vecStep,
    ...get(j4), ...set(j),
    ...br(0),
    ...END,
    ...END,
  ];
  const columnBlock = [
    // e = min(j + nbw, n)
    ...get(j), ...get(nbw), ...I32_ADD, ...tee(e), ...get(n), ...get(e), ...get(n), ...I32_LT_U, ...SELECT, ...set(e),
    // s = sa · sb[block]; sb += 4
    ...get(sa), ...get(sb), ...f32Load, ...F32_MUL, ...tee(s), ...F32X4_SPLAT, ...set(sv),
    ...get(sb), ...i32c(4), ...I32_ADD, ...set(sb),
    ...vectorLoop,
    // scalar tail of the column block (also the whole block when nbw < 4)
    ...BLOCK,
    ...LOOP,
    ...get(j), ...get(e), ...I32_GE_U, ...brIf(1),
    ...scalarStep,
    ...get(j), ...i32c(1), ...I32_ADD, ...set(j),
    ...br(0),
    ...END,
    ...END,
  ];
  const locals = vec([[4, I32], [1, F32], [1, V128]]);
  return [
    ...locals,
    ...i32c(0), ...set(j),
    ...BLOCK,
    ...LOOP,
    ...get(j), ...get(n), ...I32_GE_U, ...brIf(1),
    ...columnBlock,
    ...br(0),
    ...END,
    ...END,
    ...END,
  ];
}

function assemble(): Uint8Array {
  const types = section(1, vec([
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [I32]]), ...vec([])], // decode
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [F32]]), ...vec([])], // promote
  ]));
  const imports = section(2, vec([[...name('env'), ...name('mem'), 0x02, 0x01, ...uleb(1), ...uleb(65536)]]));
  const funcs = section(3, vec([[0], [1]]));
  const exports = section(7, vec([
    [...name('decode'), 0x00, 0],
    [...name('promote'), 0x00, 1],
  ]));
  const bodies = [decodeBody(), promoteBody()].map((b) => [...uleb(b.length), ...b]);
  const code = section(10, vec(bodies));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code]);
}

// ---- instance --------------------------------------------------------------------------

interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(deltaPages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: object };
  Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory;
}

export interface Fp8Wasm {
  readonly memory: WasmMemory;
  decode(dst: number, src: number, rows: number, srcStride: number, width: number, table: number): void;
  promote(out: number, part: number, n: number, sb: number, nbw: number, sa: number): void;
  /** Grows the memory to at least `bytes` (views of it must be re-made afterwards). */
  reserve(bytes: number): void;
}

const PAGE = 65536;
let instance: Fp8Wasm | null | undefined;

/** The module, or null where WebAssembly (with SIMD) is unavailable: callers use JS loops then. */
export function fp8Wasm(): Fp8Wasm | null {
  if (instance !== undefined) return instance;
  instance = null;
  try {
    const W = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (!W) return null;
    const bytes = assemble();
    if (!W.validate(bytes)) return null;
    const memory = new W.Memory({ initial: 1, maximum: 65536 });
    const ex = new W.Instance(new W.Module(bytes), { env: { mem: memory } }).exports as {
      decode: Fp8Wasm['decode'];
      promote: Fp8Wasm['promote'];
    };
    instance = {
      memory,
      decode: ex.decode,
      promote: ex.promote,
      reserve(bytes: number) {
        const have = memory.buffer.byteLength;
        if (bytes > have) memory.grow(Math.ceil((bytes - have) / PAGE));
      },
    };
  } catch {
    instance = null;
  }
  return instance;
}

/** Drops the module and its memory (it is rebuilt on next use). */
export function disposeFp8Wasm(): void {
  instance = undefined;
}
