import type { Backend } from '@kiln/core';
import { BackendError, getBackend, useBackend } from '@kiln/core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { AREAS } from './cases/index.js';
import { fail } from './check.js';
import { Ctx, DEFAULT_TOLERANCES, liveTensors, type Tolerances } from './harness.js';
import { Rng, hashString } from './prng.js';

export type ToleranceName = keyof Tolerances;

export interface ConformanceOptions {
  /** Shown in the suite's title, e.g. 'cpu' or 'webgpu (Dawn, Vulkan)'. */
  name?: string;
  /**
   * Case ids to skip: an area ('matmul'), or an area and case ('unary/erf'), as printed in
   * the test names. Each skipped case is reported as skipped with this option as its reason.
   */
  skip?: string[];
  /**
   * Only these areas are registered (default: all). For a special-purpose backend mode that
   * is checked on one area (e.g. autograd in the CPU backend's float64 reference mode); a
   * backend claiming conformance runs them all.
   */
  areas?: string[];
  /** Overrides of the default tolerances (f32 1 ulp, transcendental 4 ulp, matmul c = 4). */
  tolerance?: Partial<Record<ToleranceName, number>>;
  /** Seed of the suite's input generator (default 0x6b696c6e). */
  seed?: number;
  /**
   * Decides up front whether the backend can run here: `true`, or the reason it cannot
   * (every case is then skipped with that reason). Without it, a factory that throws a
   * BackendError skips the suite with the error's message.
   */
  available?: () => true | string | Promise<true | string>;
}

const DEFAULT_SEED = 0x6b696c6e;

/**
 * Registers the conformance suite (vitest `describe`/`it` blocks) for a backend. The backend
 * is created in `beforeAll`, made current with `useBackend`, and disposed in `afterAll`.
 *
 * ```ts
 * import { runConformance } from '@kiln/conformance';
 * import { CpuBackend } from '@kiln/backend-cpu';
 * runConformance(() => new CpuBackend());
 * ```
 */
export function runConformance(factory: () => Backend | Promise<Backend>, options: ConformanceOptions = {}): void {
  const tol: Tolerances = { ...DEFAULT_TOLERANCES };
  for (const [k, v] of Object.entries(options.tolerance ?? {})) {
    if (!(k in DEFAULT_TOLERANCES)) throw new Error(`runConformance: unknown tolerance ${JSON.stringify(k)} (expected f32, transcendental or matmul)`);
    if (typeof v !== 'number' || !(v > 0)) throw new Error(`runConformance: tolerance.${k} must be a positive number, got ${String(v)}`);
    tol[k as ToleranceName] = v;
  }
  const seed = (options.seed ?? DEFAULT_SEED) >>> 0;
  const skip = options.skip ?? [];
  for (const a of options.areas ?? []) {
    if (!AREAS.some((x) => x.name === a)) throw new Error(`runConformance: unknown area ${JSON.stringify(a)} (expected one of ${AREAS.map((x) => x.name).join(', ')})`);
  }
  // an entry names an area, or a case by a prefix of its id that ends at a word boundary
  const skipFor = (area: string, id: string): string | undefined =>
    skip.find((s) => s === area || (id.startsWith(s) && s.includes('/') && !/[A-Za-z0-9]/.test(id.charAt(s.length))));

  const state: { backend?: Backend; previous?: Backend; reason?: string } = {};

  describe(`@kiln/conformance${options.name ? ` (${options.name})` : ''}`, () => {
    beforeAll(async () => {
      if (options.available) {
        const verdict = await options.available();
        if (verdict !== true) {
          state.reason = String(verdict);
          console.warn(`@kiln/conformance${options.name ? ` (${options.name})` : ''}: skipped, backend unavailable: ${state.reason}`);
          return;
        }
      }
      let backend: Backend;
      try {
        backend = await factory();
      } catch (err) {
        if (err instanceof BackendError) {
          state.reason = err.message;
          console.warn(`@kiln/conformance${options.name ? ` (${options.name})` : ''}: skipped, backend unavailable: ${state.reason}`);
          return;
        }
        throw err;
      }
      try {
        state.previous = getBackend();
      } catch {
        state.previous = undefined;
      }
      state.backend = backend;
      useBackend(backend);
    });

    afterAll(() => {
      const b = state.backend;
      state.backend = undefined;
      if (state.previous) useBackend(state.previous);
      b?.dispose?.();
    });

    for (const area of AREAS) {
      if (options.areas && !options.areas.includes(area.name)) continue;
      describe(area.name, () => {
        for (const def of area.cases) {
          const id = `${area.name}/${def.name}`;
          const skipped = skipFor(area.name, id);
          if (skipped !== undefined) {
            it.skip(`${def.name} (skipped: options.skip contains ${JSON.stringify(skipped)})`, () => {});
            continue;
          }
          it(
            def.name,
            async (t) => {
              if (state.reason !== undefined) t.skip(`backend unavailable: ${state.reason}`);
              const backend = state.backend;
              if (!backend) fail('the backend was not created (see the beforeAll error)');
              const ctx = new Ctx(backend, tol, new Rng((seed ^ hashString(id)) >>> 0), id);
              const before = liveTensors(backend.name);
              const buffersBefore = backend.memory().buffers;
              let completed = false;
              try {
                await def.run(ctx);
                completed = true;
              } finally {
                ctx.cleanup();
              }
              if (completed) {
                const after = liveTensors(backend.name);
                if (after !== before) fail(`${id}: ${after - before} tensor(s) leaked by the ops under test (live tensors ${before} -> ${after})`);
                const buffersAfter = backend.memory().buffers;
                if (buffersAfter !== buffersBefore) {
                  fail(`${id}: Backend.memory().buffers went ${buffersBefore} -> ${buffersAfter} although every tensor and DataId the case made was released`);
                }
              }
            },
            def.timeout,
          );
        }
      });
    }
  });
}
