/**
 * Every WGSL generator the backend dispatches, memoised by its arguments: the sources are
 * built once per variant and then reused as the same string object, so an op costs neither
 * the text building (an unrolled GEMM is ~20 KB) nor re-hashing it in the pipeline caches.
 * That per-op cost was most of a small op's issue time (measured: 90-500 µs per op).
 */
import { rotaryShader as rotaryKernel, rowShader as row, swigluShader as swiglu } from './fused.js';
import { slicedGemmShader as sliced } from './gemm-sliced.js';
import { splitKReduceShader as splitK, tiledGemmShader as tiled } from './gemm-tiled.js';
import { rowWideShader as rowWide } from './rows-wide.js';
import * as gemm from './gemm.js';
import * as k from './kernels.js';

function memo<A extends readonly unknown[]>(generate: (...args: A) => string): (...args: A) => string {
  const cache = new Map<string, string>();
  return (...args: A): string => {
    const key = args.length === 0 ? '' : JSON.stringify(args);
    let code = cache.get(key);
    if (code === undefined) cache.set(key, (code = generate(...args)));
    return code;
  };
}

export const rowShader = memo(row);
export const rowWideShader = memo(rowWide);
export const swigluShader = memo(swiglu);
export const rotaryShader = memo(rotaryKernel);
export const tiledGemmShader = memo(tiled);
export const slicedGemmShader = memo(sliced);
export const splitKReduceShader = memo(splitK);
export const gemmF32Shader = memo(gemm.gemmF32Shader);
export const gemmI32Shader = memo(gemm.gemmI32Shader);
export const quantScalesShader = memo(gemm.quantScalesShader);
export const quantCodesShader = memo(gemm.quantCodesShader);
export const fp8GemmShader = memo(gemm.fp8GemmShader);
export const fp8GemmEmulatedShader = memo(gemm.fp8GemmEmulatedShader);
export const fp8GemmWordsShader = memo(gemm.fp8GemmWordsShader);
export const binaryShader = memo(k.binaryShader);
export const castShader = memo(k.castShader);
export const concatShader = memo(k.concatShader);
export const copyShader = memo(k.copyShader);
export const fillShader = memo(k.fillShader);
export const gatherShader = memo(k.gatherShader);
export const indexAddShader = memo(k.indexAddShader);
export const indexSelectShader = memo(k.indexSelectShader);
export const randomShader = memo(k.randomShader);
export const reduceShader = memo(k.reduceShader);
export const scatterAddShader = memo(k.scatterAddShader);
export const unaryShader = memo(k.unaryShader);
export const whereShader = memo(k.whereShader);
