/**
 * @kiln/conformance: the one suite every kiln backend must pass. A backend's test file is
 * `runConformance(() => new MyBackend())`; see README.md for what is checked and how.
 */
export { runConformance, type ConformanceOptions, type ToleranceName } from './run.js';
export { DEFAULT_TOLERANCES, type Tolerances } from './harness.js';
export { AREAS } from './cases/index.js';
export { gradcheck, backendHoldsFloat64, observeGradchecks, type GradSpec, type GradcheckOptions, type GradcheckReport } from './gradcheck.js';
