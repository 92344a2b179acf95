/**
 * Host detection without a static `node:os` import, so the package still loads in a
 * browser bundle: Node's `process.getBuiltinModule` (Node >= 20.16) when present, else
 * `navigator.hardwareConcurrency`.
 */

interface OsLike {
  cpus(): { model: string }[];
  availableParallelism?(): number;
}

interface HostInfo {
  readonly cpuModel: string;
  readonly threads: number;
  readonly simd: boolean;
  readonly runtime: string;
}

function nodeOs(): OsLike | undefined {
  const proc = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  if (!proc?.versions?.node || typeof proc.getBuiltinModule !== 'function') return undefined;
  try {
    return proc.getBuiltinModule('node:os') as OsLike;
  } catch {
    return undefined;
  }
}

// A minimal module whose only function returns a v128 constant: valid iff the engine
// supports WebAssembly SIMD. (type section: () -> v128; code: v128.const 0; end)
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x16, 0x01, 0x14, 0x00, 0xfd, 0x0c,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x0b,
]);

export function wasmSimdSupported(): boolean {
  const wasm = (globalThis as { WebAssembly?: { validate(bytes: Uint8Array): boolean } }).WebAssembly;
  try {
    return !!wasm && wasm.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

let cached: HostInfo | undefined;

export function hostInfo(): HostInfo {
  if (cached) return cached;
  const os = nodeOs();
  let cpuModel = 'CPU';
  let threads = 1;
  let runtime = 'unknown';
  if (os) {
    try {
      const cpus = os.cpus();
      cpuModel = cpus[0]?.model?.trim() || 'CPU';
      threads = typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length || 1;
    } catch {
      // keep defaults
    }
    runtime = `node ${(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node ?? ''}`.trim();
  } else {
    const nav = (globalThis as { navigator?: { hardwareConcurrency?: number; userAgent?: string } }).navigator;
    if (nav?.hardwareConcurrency) threads = nav.hardwareConcurrency;
    runtime = nav?.userAgent ? 'browser' : 'unknown';
  }
  cached = { cpuModel, threads: Math.max(1, threads), simd: wasmSimdSupported(), runtime };
  return cached;
}
