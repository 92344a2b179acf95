// The scripts' backend: @kiln/backend-gpujs on its headless-gl engine, or exit(0) saying why
// there is none here (no X display, no built `gl` addon): nothing to measure, nothing written.
import { createRequire } from 'node:module';
import { GpujsBackend } from '../dist/index.js';

export async function headlessGlBackendOrExit() {
  try {
    return await GpujsBackend.create({ engine: 'headless-gl' });
  } catch (e) {
    console.log(`skipped: ${e.message}`);
    process.exit(0);
  }
}

/**
 * The peer: tfjs-backend-webgl on its own headless-gl context (WebGL 1, `gl` resolved the way
 * gpu.js resolves it), registered and ready. Returns { tf, gl }; throws where there is none.
 */
export async function tfjsWebglOnHeadlessGl() {
  const require = createRequire(import.meta.url);
  const createGL = createRequire(require.resolve('gpu.js'))('gl');
  const tf = require('@tensorflow/tfjs-core');
  const tfwebgl = require('@tensorflow/tfjs-backend-webgl');
  const gl = createGL(1, 1, { antialias: false, depth: false, stencil: false, alpha: false, premultipliedAlpha: false, preserveDrawingBuffer: false });
  if (!gl) throw new Error('no headless-gl context for tfjs');
  tf.env().set('WEBGL_VERSION', 1);
  tfwebgl.setWebGLContext(1, gl);
  // tfjs-backend-webgl registers its kernels for the name 'webgl' (in Node it registers no backend itself)
  tf.registerBackend('webgl', () => new tfwebgl.MathBackendWebGL(new tfwebgl.GPGPUContext(gl)), 10);
  await tf.setBackend('webgl');
  await tf.ready();
  return { tf, gl };
}
