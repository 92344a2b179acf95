export { CheckpointError } from './errors.js';
export { SafetensorsFile } from './safetensors-file.js';
export { HfCheckpoint, parseQuantizationConfig, readJson, type Fp8QuantizationConfig, type LoadTensorOptions } from './checkpoint.js';
export { loadModelWeights, type LoadableModel, type LoadWeightsOptions, type LoadReport } from './load-model.js';
export { writeFileAtomic, writeSafetensorsAtomic } from './atomic.js';
export { readInputIds, checkTokenIds, type InputIds } from './inputs.js';
