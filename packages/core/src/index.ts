/**
 * @kiln/core: tensors, dtypes (incl. real FP8 bit formats), the Backend and Collective
 * interfaces, the backend registry, and the ops composed from backend primitives.
 */
export * from './errors.js';
export * from './dtype.js';
export * from './shape.js';
export * from './strided-view.js';
export type * from './backend.js';
export { UNARY_OPS, BINARY_OPS, REDUCE_OPS, COMPARISON_OPS, LOGICAL_OPS } from './backend.js';
export type * from './collective.js';
export { Tensor, decodeValues, type ValueArray, type NestedArray } from './tensor.js';
export {
  registerBackend,
  registeredBackends,
  initBackend,
  setBackend,
  useBackend,
  getBackend,
  probeBackends,
  bestAvailableBackend,
  tidy,
  keep,
  dispose,
  memory,
  resetPeakMemory,
  type BackendAvailability,
  type MemoryInfo,
  type BackendMemoryInfo,
} from './engine.js';
export * from './random.js';
export { resolveSendCounts, checkTimeout, callTimeoutMs } from './collective-args.js';
export * from './collective-host-staged/index.js';
export * from './device-optimizer.js';
export * from './codecs/fp8.js';
export * from './codecs/half.js';
export { encodeMinifloat, decodeMinifloat, f32Bits, bitsToF32, type MinifloatFormat } from './codecs/minifloat.js';

export * from './ops/creation.js';
export * from './ops/cast.js';
export * from './ops/elementwise.js';
export * from './ops/reduce.js';
export * from './ops/matmul.js';
export * from './ops/indexing.js';
export * from './ops/layout.js';
export type { TensorLike } from './ops/plumbing.js';
export { tensorFromDataId } from './ops/plumbing.js';

export * from './composed/softmax.js';
export * from './composed/norm.js';
export * from './composed/activations.js';
export * from './composed/rotary.js';
export * from './composed/attention.js';
export * from './composed/topk.js';
export * from './composed/loss.js';
export * from './quant/blockwise.js';
export * from './quant/accumulator.js';
export * from './quant/fp8-gemm-reference.js';
export * from './quant/quantized-tensor.js';
export * from './quant/serialize.js';
export * from './quant/fp8-linear.js';
export * from './io/safetensors.js';
export { valueAndGrads, noGrad, isRecording, recordGrad, recordGradWith, savedCopy, type BackwardFn, type SavedBackwardFn, type ValueAndGrads } from './autograd/tape.js';
export { sumToShape } from './autograd/grads.js';
export * as nn from './nn/index.js';
