/**
 * @kiln/trainer: the trainer behind the `kiln` CLI, usable as a library.
 * Commands come as functions (`collectInfo`, `runDemo`) and as the CLI itself (`main`).
 */
export { VERSION } from './version.js';
export { createProgram, main } from './program.js';
export { KNOWN_BACKEND_PACKAGES, loadBackendPackages, backendNameOf, type BackendPackageStatus } from './backends.js';
export { systemInfo, type SystemInfo } from './system.js';
export { isKilnError } from './errors.js';
export { collectInfo, formatInfo, formatMemory, type InfoReport, type BackendReport } from './commands/info.js';
export { runDemo, formatDemo, DEMO_TOLERANCE, type DemoOptions, type DemoResult } from './commands/demo.js';
