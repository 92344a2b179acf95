export { generate, type GenerateOptions, type GenerateResult } from './generate.js';
export { sampleToken, argmax, type SamplingOptions } from './sampler.js';
