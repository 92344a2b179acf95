// The scripts' backend: @kiln/backend-gpujs on its headless-gl engine, or exit(0) saying why
// there is none here (no X display, no built `gl` addon): nothing to measure, nothing written.
import { GpujsBackend } from '../dist/index.js';

export async function headlessGlBackendOrExit() {
  try {
    return await GpujsBackend.create({ engine: 'headless-gl' });
  } catch (e) {
    console.log(`skipped: ${e.message}`);
    process.exit(0);
  }
}
