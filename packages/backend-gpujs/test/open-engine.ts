import { GpujsBackend, findChromium } from '@kiln/backend-gpujs';

/** The two Node engines the package tests run on (Chromium: WebGL2 / GLSL ES 3.00; headless-gl: WebGL 1.0 / GLSL ES 1.00). */
export type Engine = 'chromium' | 'headless-gl';
export const ENGINES: readonly Engine[] = ['chromium', 'headless-gl'];

/**
 * A backend on one engine, or the reason there is none (no Chromium installed; headless-gl
 * needs an X display, e.g. `xvfb-run -a`): the tests skip with it.
 */
export async function openOn(engine: Engine): Promise<{ b?: GpujsBackend; reason: string }> {
  try {
    if (engine === 'chromium') {
      const found = await findChromium();
      if ('reason' in found) return { reason: found.reason };
      return { b: await GpujsBackend.create({ executablePath: found.path }), reason: '' };
    }
    return { b: await GpujsBackend.create({ engine: 'headless-gl' }), reason: '' };
  } catch (e) {
    return { reason: (e as Error).message };
  }
}
