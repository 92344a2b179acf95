/** Public surface of the f32 GEMM, re-exported by the package entry. */
export { sgemm, configureGemm, gemmInfo, disposeGemmPool } from './index.js';
export type { GemmJob, GemmConfig, GemmInfo } from './index.js';
