import { runConformance } from '@kiln/conformance';
import { GpujsBackend } from '@kiln/backend-gpujs';

// Each skip is a documented limit of float textures and GLSL arithmetic (docs/backend-gpujs.md,
// "Exactness"), not a loosened check. The same 26 cases fail on both engines (WebGL2 / GLSL ES
// 3.00 in Chromium, WebGL 1.0 / GLSL ES 1.00 on headless-gl; checked with an empty skip list):
//  I32  i32 lives in f32 textures: exact only for |v| <= 2^24, no int32 wrap-around
//  FTZ  the GPU (SwiftShader; most GPUs in fragment shaders) flushes f32 subnormals to zero
//  NAN  signalling-NaN payloads come back quieted
//  POW  GLSL pow = exp2(y log2 x): 3 + 2|y log2 x| ulp (GLSL ES 3.00 §4.5.1), not 4 ulp
//  MOD  floor-mod as a - b floor(a / b) in f32: within 2 ulp of |b|, not exact fmod
export const GPUJS_SKIPS: Record<string, string> = {
  'storage-and-dtypes/write/read round-trips every dtype bit for bit': 'I32, NAN, FTZ',
  // runs where readSync exists (headless-gl); its i32 codes span the whole int32 range
  'storage-and-dtypes/readSync, when the backend has it, agrees with read': 'I32',
  'unary/neg': 'I32', 'unary/abs': 'I32', 'unary/relu': 'I32', 'unary/floor': 'I32', 'unary/ceil': 'I32', 'unary/round': 'I32',
  'unary/Backend.unary: i32 ops': 'I32',
  // square's f32 subnormal results may flush (the suite allows that); its i32 squares overflow 2^24
  'unary/square': 'I32',
  'binary-broadcast/pow': 'POW', 'binary-broadcast/Backend.binary: every op on [129, 131] x [131] f32': 'POW',
  'binary-broadcast/mod': 'MOD',
  'binary-broadcast/i32 arithmetic wraps like int32': 'I32', 'binary-broadcast/Backend.binary: i32 add/sub/mul': 'I32',
  'matmul/dtypes': 'I32',
  'indexing/gather along every axis of rank-3 data, all 8 dtypes': 'I32',
  'indexing/indexSelect along each axis, all 8 dtypes': 'I32',
  'layout/transpose': 'I32', 'layout/slice and sliceAxis': 'I32', 'layout/concat along each axis': 'I32, FTZ', 'layout/stack along new axes': 'I32', 'layout/broadcastTo': 'I32',
  'cast/f32 -> i32 / u8 / bool': 'FTZ', 'cast/random f32 values over the whole exponent range': 'FTZ', 'cast/every bf16 code': 'FTZ', 'cast/i32 -> every dtype': 'I32',
};

// Each engine runs the whole suite; an engine that cannot start here (no X display or no built
// `gl` addon for headless-gl, no browser for Chromium) skips every case with its reason.
for (const engine of ['headless-gl', 'chromium'] as const) {
  runConformance(() => GpujsBackend.create({ engine }), { name: `gpujs on ${engine}`, skip: Object.keys(GPUJS_SKIPS) });
}
