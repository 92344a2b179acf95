/// <reference types="@webgpu/types" />
import { BackendError } from '@kiln/core';

/** What `acquireDevice` found: the adapter, its device and how it was reached. */
export interface AcquiredDevice {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  /** 'navigator.gpu', or the Dawn toggles used in Node, e.g. 'dawn (backend=opengl)'. */
  readonly via: string;
  readonly featureLevel: 'core' | 'compatibility';
  /** The GPU object (Dawn's instance in Node), which must stay referenced while the device is used. */
  readonly instance?: GPU;
}

export interface AcquireOptions {
  /** Dawn flags for Node (default: try Dawn's default backend, then `backend=opengl`). Also KILN_WEBGPU_DAWN_FLAGS (see parseDawnFlags). */
  readonly dawnFlags?: readonly string[];
  readonly powerPreference?: GPUPowerPreference;
}

type DawnModule = { create(flags: string[]): GPU };

// A dynamic import (kept as import() in both builds: the CommonJS build can load the ESM-only
// `webgpu` package), reached only in Node.
const DAWN_PACKAGE = 'webgpu';
const importModule = (s: string): Promise<unknown> => import(/* @vite-ignore */ s);

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[name];
}

/** The limits worth raising, up to what the adapter allows. */
export const WANTED_LIMITS: readonly string[] = [
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
];

async function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ['shader-f16', 'subgroups'] as const) if (adapter.features.has(f)) requiredFeatures.push(f as GPUFeatureName);
  return adapter.requestDevice({ requiredLimits, requiredFeatures });
}

/**
 * Finds a WebGPU adapter and creates a device: `navigator.gpu` where it exists (browsers,
 * Deno), else Dawn through the `webgpu` npm package in Node (loaded here, lazily, so that
 * importing kiln never fails where it is missing). In Node, Dawn's default backend (Vulkan,
 * Metal, D3D12) is tried first, then its OpenGL(ES) backend at the compatibility feature
 * level, which runs on Mesa's llvmpipe without a GPU (EGL_PLATFORM=surfaceless is set if unset).
 * Throws a BackendError saying why when there is no adapter.
 */
/**
 * Node: the environment Mesa and Dawn read when the device is created. EGL_PLATFORM=surfaceless
 * lets Dawn's OpenGL backend reach llvmpipe without a display; LP_NUM_THREADS gives llvmpipe
 * every core (it runs compute on one thread otherwise). Set only when unset, on the main
 * thread (a worker's process.env is its own copy).
 */
export async function prepareNodeEnv(): Promise<void> {
  const p = (globalThis as { process: { env: Record<string, string | undefined> } }).process;
  if (p.env.EGL_PLATFORM === undefined) p.env.EGL_PLATFORM = 'surfaceless';
  if (p.env.LP_NUM_THREADS === undefined) {
    try {
      const os = (await importModule('node:os')) as { availableParallelism?: () => number; cpus: () => unknown[] };
      p.env.LP_NUM_THREADS = String(os.availableParallelism?.() ?? os.cpus().length);
    } catch {
      /* leave Mesa's default */
    }
  }
}

/** Node: the file URL of the `webgpu` package (Dawn), or a BackendError saying it is missing. */
export async function resolveDawn(): Promise<string> {
  try {
    const { createRequire } = (await importModule('node:module')) as { createRequire: (from: string) => { resolve: (s: string) => string } };
    const { pathToFileURL } = (await importModule('node:url')) as { pathToFileURL: (p: string) => URL };
    const req = createRequire(import.meta.url);
    return pathToFileURL(req.resolve(DAWN_PACKAGE)).href;
  } catch (e) {
    throw new BackendError('webgpu', `the 'webgpu' package (Dawn for Node) is not installed: ${(e as Error).message?.split('\n')[0] ?? String(e)}; install it with \`npm install webgpu\``);
  }
}

/**
 * KILN_WEBGPU_DAWN_FLAGS's list: flags separated by commas, where an item without '=' continues
 * the previous flag's comma-separated value, so
 * `backend=vulkan,enable-dawn-features=allow_unsafe_apis,disable_robustness` is two flags.
 */
export function parseDawnFlags(text: string): string[] {
  const flags: string[] = [];
  for (const item of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (!item.includes('=') && flags.length) flags[flags.length - 1] += `,${item}`;
    else flags.push(item);
  }
  return flags;
}

/** The Dawn backends to try in order: options.dawnFlags, KILN_WEBGPU_DAWN_FLAGS, else the default backend then OpenGL (compatibility). */
export function dawnAttempts(options: AcquireOptions = {}): { flags: string[]; level: 'core' | 'compatibility' }[] {
  const fromEnv = env('KILN_WEBGPU_DAWN_FLAGS');
  const level = (flags: readonly string[]): 'core' | 'compatibility' => (flags.some((f) => /opengl/.test(f)) ? 'compatibility' : 'core');
  if (options.dawnFlags) return [{ flags: [...options.dawnFlags], level: level(options.dawnFlags) }];
  if (fromEnv) {
    const flags = parseDawnFlags(fromEnv);
    return [{ flags, level: level(flags) }];
  }
  return [
    { flags: [], level: 'core' },
    { flags: ['backend=opengl'], level: 'compatibility' },
  ];
}

export async function acquireDevice(options: AcquireOptions = {}): Promise<AcquiredDevice> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu && !isNode()) {
    const adapter = await nav.gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    if (!adapter) throw new BackendError('webgpu', 'navigator.gpu.requestAdapter() returned no adapter (WebGPU disabled or no supported GPU)');
    return { adapter, device: await requestDevice(adapter), via: 'navigator.gpu', featureLevel: 'core', instance: nav.gpu };
  }
  if (!isNode()) throw new BackendError('webgpu', 'WebGPU is not available: no navigator.gpu in this environment');
  await prepareNodeEnv();
  let dawn: DawnModule;
  try {
    dawn = (await importModule(await resolveDawn())) as DawnModule;
    if (typeof dawn.create !== 'function') throw new Error('the module has no create()');
  } catch (e) {
    if (e instanceof BackendError) throw e;
    throw new BackendError('webgpu', `the 'webgpu' package (Dawn for Node) could not be loaded: ${(e as Error).message?.split('\n')[0] ?? String(e)}`);
  }
  const attempts = dawnAttempts(options);
  const tried: string[] = [];
  for (const { flags, level } of attempts) {
    try {
      const gpu = dawn.create(flags);
      const adapter = await gpu.requestAdapter({ featureLevel: level, powerPreference: options.powerPreference ?? 'high-performance' } as GPURequestAdapterOptions);
      if (!adapter) {
        tried.push(`dawn (${flags.join(',') || 'default backend'}): no adapter`);
        continue;
      }
      const device = await requestDevice(adapter);
      return { adapter, device, via: `dawn (${flags.join(',') || 'default backend'})`, featureLevel: level, instance: gpu };
    } catch (e) {
      tried.push(`dawn (${flags.join(',') || 'default backend'}): ${(e as Error).message?.split('\n')[0] ?? String(e)}`);
    }
  }
  throw new BackendError('webgpu', `no WebGPU adapter: ${tried.join('; ')}`);
}

/** The device limits kiln reads. */
export interface KernelLimits {
  readonly maxBufferSize: number;
  readonly maxStorageBufferBindingSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupSizeX: number;
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxStorageBuffersPerShaderStage: number;
}

/** What kiln's kernels need: 256-invocation workgroups, 8 KiB of workgroup memory, 10 storage buffers per dispatch. */
export const REQUIRED_LIMITS = {
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 8192,
  maxStorageBuffersPerShaderStage: 10,
} as const;

/** Why a device cannot run kiln's kernels (limits below REQUIRED_LIMITS), or undefined. */
export function limitsShortfall(limits: KernelLimits): string | undefined {
  const low = Object.entries(REQUIRED_LIMITS)
    .filter(([k, v]) => !((limits as unknown as Record<string, number>)[k] >= v))
    .map(([k, v]) => `${k} ${(limits as unknown as Record<string, number>)[k]} < ${v}`);
  return low.length ? `the device's limits are below what kiln's kernels need (${low.join(', ')})` : undefined;
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe|software|warp|basic render/i;

/** The name of a software rasteriser adapter (llvmpipe, SwiftShader, lavapipe ...), or undefined for hardware. */
export function softwareAdapterName(info: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean }): string | undefined {
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  const m = SOFTWARE.exec(text);
  if (m) return m[0].toLowerCase();
  if (info.isFallbackAdapter) return 'fallback adapter';
  return undefined;
}
