import * as k from '@kiln/core';
import { ArgumentError, BackendError, DTypeError, DisposedTensorError, KilnError, ShapeError } from '@kiln/core';
import { fail } from '../check.js';
import { backendView, type Area, type CaseDef, type Ctx } from '../harness.js';

type ErrorClass = typeof ShapeError | typeof DTypeError | typeof DisposedTensorError | typeof BackendError | typeof ArgumentError;

/** Expects `fn` to throw `cls` whose `op` and message name `op`. */
function expectThrows(label: string, cls: ErrorClass, op: string, fn: () => unknown): void {
  let err: unknown;
  try {
    const r = fn();
    if (r && typeof r === 'object' && 'then' in r) fail(`${label}: expected a synchronous ${cls.name}`);
    // tidy in the caller disposes a result if one was (wrongly) produced
  } catch (e) {
    err = e;
  }
  if (err === undefined) fail(`${label}: expected ${cls.name} from ${op}, nothing was thrown`);
  if (!(err instanceof cls)) fail(`${label}: expected ${cls.name} from ${op}, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  if (!(err instanceof KilnError)) fail(`${label}: ${cls.name} must be a KilnError`);
  if (err.op !== op) fail(`${label}: error.op is ${JSON.stringify(err.op)}, expected ${JSON.stringify(op)} (message: ${err.message})`);
  if (!err.message.startsWith(`${op}: `)) fail(`${label}: message should start with "${op}: ", got ${JSON.stringify(err.message)}`);
  if (err.message.length < op.length + 10) fail(`${label}: message ${JSON.stringify(err.message)} does not say what was wrong`);
}

function checks(c: Ctx, cls: ErrorClass, list: [string, string, () => unknown][]): void {
  for (const [label, op, fn] of list) expectThrows(label, cls, op, () => c.run(fn));
}

/** A small valid quantised pair for the FP8 error checks. */
function q(c: Ctx, rows: number, cols: number, block: [number, number]): k.QuantizedTensor {
  const x = c.tensor(Array.from({ length: rows * cols }, (_, i) => Math.sin(i)), [rows, cols]);
  return c.track(k.quantize(x, { block }));
}

const cases: CaseDef[] = [
  {
    name: 'ShapeError (naming the op) for mismatched shapes, bad axes, bad sizes, empty reductions',
    run(c) {
      const a23 = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const a4 = c.tensor([1, 2, 3, 4], [4]);
      const a32 = c.tensor([1, 2, 3, 4, 5, 6], [3, 2]);
      const i23 = c.tensor([0, 1, 0, 1, 0, 1], [2, 3], 'i32');
      const empty = c.tensor([], [2, 0]);
      checks(c, ShapeError, [
        ['add [2,3] + [4]', 'add', () => k.add(a23, a4)],
        ['less [2,3] < [4]', 'lt', () => k.less(a23, a4)],
        ['where cond [4] with [2,3]', 'where', () => k.where(c.tensor([1, 0, 1, 0], [4], 'bool'), a23, a23)],
        ['matmul K mismatch', 'matmul', () => k.matmul(a23, a23)],
        ['matmul rank 1', 'matmul', () => k.matmul(a4, a23)],
        ['matmul batch mismatch', 'matmul', () => k.matmul(c.tensor(new Array(12).fill(1), [2, 2, 3]), c.tensor(new Array(18).fill(1), [3, 3, 2]))],
        ['linear weight rank', 'linear', () => k.linear(a23, a4)],
        ['sum axis out of range', 'sum', () => k.sum(a23, 2)],
        ['sum repeated axis', 'sum', () => k.sum(a23, [1, -1])],
        ['max of an empty axis', 'max', () => k.max(empty, 1)],
        ['argmax with two axes', 'argmax', () => k.reduce('argmax', a23, [0, 1])],
        ['reshape to the wrong size', 'reshape', () => k.reshape(a23, [4, 2])],
        ['reshape with two -1', 'reshape', () => k.reshape(a23, [-1, -1])],
        ['squeeze a non-1 axis', 'squeeze', () => k.squeeze(a23, 0)],
        ['expandDims axis out of range', 'expandDims', () => k.expandDims(a23, 4)],
        ['concat shape mismatch', 'concat', () => k.concat([a23, a32], 0)],
        ['concat empty list', 'concat', () => k.concat([], 0)],
        ['stack shape mismatch', 'stack', () => k.stack([a23, a32])],
        ['split uneven', 'split', () => k.split(a23, 2, 1)],
        ['split sizes do not sum', 'split', () => k.split(a23, [1, 1], 1)],
        ['slice overrun', 'slice', () => k.slice(a23, [1, 1], [2, 1])],
        ['slice begin out of range', 'slice', () => k.slice(a23, [3])],
        ['broadcastTo impossible', 'broadcastTo', () => k.broadcastTo(a23, [3, 3])],
        ['gather rank mismatch', 'gather', () => k.gather(a23, 0, c.tensor([0, 1], [2], 'i32'))],
        ['gather index larger than data', 'gather', () => k.gather(a23, 0, c.tensor(new Array(8).fill(0), [2, 4], 'i32'))],
        ['indexSelect 2-D indices', 'indexSelect', () => k.indexSelect(a23, 0, i23)],
        ['scatterAdd shape', 'scatterAdd', () => k.scatterAdd(a23, 0, i23, a32)],
        ['indexAdd src shape', 'indexAdd', () => k.indexAdd(a23, 0, c.tensor([0], [1], 'i32'), a23)],
        ['rmsNorm weight shape', 'rmsNorm', () => k.rmsNorm(a23, a4)],
        ['swiglu shapes', 'swiglu', () => k.swiglu(a23, a32)],
        ['rotary odd d', 'rotary', () => k.rotary(a23, c.tensor([1, 1], [2, 1]), c.tensor([1, 1], [2, 1]))],
        ['rotary table shape', 'rotary', () => k.rotary(c.tensor([1, 2, 3, 4], [1, 4]), a23, a23)],
        ['crossEntropy targets shape', 'crossEntropy', () => k.crossEntropy(a23, c.tensor([0, 1, 2], [3], 'i32'))],
        ['softmax axis', 'softmax', () => k.softmax(a23, 2)],
        ['attention dk mismatch', 'attention', () => k.attention(a23, a32, a23)],
        ['attention S mismatch (k vs v)', 'attention', () => k.attention(a23, a23, a32)],
        ['attention k leading axes not broadcastable to q', 'attention', () => k.attention(a23, c.tensor(new Array(12).fill(1), [2, 2, 3]), c.tensor(new Array(12).fill(1), [2, 2, 3]))],
        ['attention rank 1', 'attention', () => k.attention(a4, a4, a4)],
        ['tensor values do not fill the shape', 'tensor', () => k.tensor([1, 2, 3], [2, 2])],
        ['tensor ragged nested array', 'tensor', () => k.tensor([[1, 2], [3]] as unknown as number[][])],
        ['zeros negative dimension', 'full', () => k.zeros([2, -1])],
        ['fromStorage length', 'fromStorage', () => k.fromStorage(new Float32Array(3), [2, 2], 'f32')],
        ['quantize of a 3-D tensor', 'quantize', () => k.quantize(c.tensor(new Array(8).fill(1), [2, 2, 2]))],
        ['matmulFp8 K mismatch', 'matmulFp8', () => k.matmulFp8(q(c, 2, 128, [1, 128]), q(c, 3, 130, [128, 128]))],
        ['matmulFp8 K blocks differ', 'matmulFp8', () => k.matmulFp8(q(c, 2, 128, [1, 128]), q(c, 3, 128, [128, 64]))],
        ['QuantizedTensor scales shape', 'QuantizedTensor', () => new k.QuantizedTensor(k.cast(a23, 'e4m3'), c.tensor([1], [1, 1]), [1, 3])],
        ['sliceRows through a block', 'QuantizedTensor.sliceRows', () => q(c, 256, 128, [128, 128]).sliceRows(64, 128)],
      ]);
    },
  },
  {
    name: 'DTypeError (naming the op) for dtypes an op does not accept',
    run(c) {
      const f = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const b = c.tensor([1, 0, 1, 0, 1, 0], [2, 3], 'bool');
      const i = c.tensor([0, 1, 2, 0, 1, 2], [2, 3], 'i32');
      const idxF = c.tensor([0, 1], [2], 'f32');
      checks(c, DTypeError, [
        ['matmul bool', 'matmul', () => k.matmul(b, k.transpose(b))],
        ['gather with f32 indices', 'gather', () => k.gather(f, 0, c.tensor([0, 1, 0, 1, 0, 1], [2, 3]))],
        ['indexSelect with f32 indices', 'indexSelect', () => k.indexSelect(f, 0, idxF)],
        ['scatterAdd bool base', 'scatterAdd', () => k.scatterAdd(b, 0, c.tensor([0, 0, 0, 0, 0, 0], [2, 3], 'i32'), b)],
        ['indexAdd with u8 indices', 'indexAdd', () => k.indexAdd(f, 0, c.tensor([0], [1], 'u8'), c.tensor([1, 1, 1], [1, 3]))],
        ['concat mixed dtypes', 'concat', () => k.concat([f, i], 0)],
        ['softmax of i32', 'softmax', () => k.softmax(i)],
        ['logSoftmax of bool', 'logSoftmax', () => k.logSoftmax(b)],
        ['rmsNorm of i32', 'rmsNorm', () => k.rmsNorm(i, c.tensor([1, 1, 1], [3]))],
        ['swiglu of i32', 'swiglu', () => k.swiglu(i, i)],
        ['attention of i32 q', 'attention', () => k.attention(i, f, f)],
        ['attention of bool v', 'attention', () => k.attention(f, f, b)],
        ['rotary of i32', 'rotary', () => k.rotary(c.tensor([1, 2, 3, 4], [1, 4], 'i32'), c.tensor([1, 1], [1, 2]), c.tensor([0, 0], [1, 2]))],
        ['crossEntropy f32 targets', 'crossEntropy', () => k.crossEntropy(f, c.tensor([0, 1], [2]))],
        ['topk of bool', 'topk', () => k.topk(b, 1)],
        ['variance of bool', 'variance', () => k.variance(b)],
        ['cast to an unknown dtype', 'cast', () => k.cast(f, 'f64' as never)],
        ['tensor with an unknown dtype', 'tensor', () => k.tensor([1], [1], 'f64' as never)],
        ['full with an unknown dtype', 'full', () => k.full([1], 0, 'int8' as never)],
        ['add with a string operand', 'add', () => k.add(f, '1' as never)],
        ['add of two numbers', 'add', () => k.add(1, 2)],
        ['quantize of i32', 'quantize', () => k.quantize(i)],
        ['QuantizedTensor with f32 codes', 'QuantizedTensor', () => new k.QuantizedTensor(f, c.tensor([1, 1], [2, 1]), [1, 3])],
        ['matmulFp8 outDtype', 'matmulFp8', () => k.matmulFp8(q(c, 1, 128, [1, 128]), q(c, 1, 128, [128, 128]), { outDtype: 'f16' as never })],
      ]);
    },
  },
  {
    name: 'DisposedTensorError (naming the op) when any operand of any op was disposed',
    async run(c) {
      const live = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const dead = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const deadI = c.tensor([0, 1, 0, 1, 0, 1], [2, 3], 'i32');
      const deadB = c.tensor([1, 0, 1, 0, 1, 0], [2, 3], 'bool');
      const deadW = c.tensor([1, 1, 1], [3]);
      deadW.dispose();
      dead.dispose();
      deadI.dispose();
      deadB.dispose();
      if (!dead.isDisposed) fail('isDisposed should be true after dispose()');
      dead.dispose(); // idempotent
      checks(c, DisposedTensorError, [
        ['add', 'add', () => k.add(live, dead)],
        ['add (number)', 'add', () => k.add(dead, 1)],
        ['exp', 'exp', () => k.exp(dead)],
        ['where cond', 'where', () => k.where(deadB, live, live)],
        ['where operand', 'where', () => k.where(c.tensor([1, 0, 1, 0, 1, 0], [2, 3], 'bool'), live, dead)],
        ['sum', 'sum', () => k.sum(dead)],
        ['argmax', 'argmax', () => k.argmax(dead)],
        ['matmul second', 'matmul', () => k.matmul(live, dead)],
        ['reshape', 'reshape', () => k.reshape(dead, [6])],
        ['transpose', 'transpose', () => k.transpose(dead)],
        ['slice', 'slice', () => k.slice(dead, [0])],
        ['concat', 'concat', () => k.concat([live, dead])],
        ['cast', 'cast', () => k.cast(dead, 'f16')],
        ['gather indices', 'gather', () => k.gather(live, 0, deadI)],
        ['indexSelect', 'indexSelect', () => k.indexSelect(dead, 0, c.tensor([0], [1], 'i32'))],
        ['scatterAdd', 'scatterAdd', () => k.scatterAdd(dead, 0, c.tensor([0, 0, 0, 0, 0, 0], [2, 3], 'i32'), live)],
        ['clone', 'clone', () => k.clone(dead)],
        ['quantize', 'quantize', () => k.quantize(dead)],
        // composed ops check their operands before any kernel (fused ones included) runs
        ['softmax', 'softmax', () => k.softmax(dead)],
        ['logSoftmax', 'logSoftmax', () => k.logSoftmax(dead)],
        ['rmsNorm', 'rmsNorm', () => k.rmsNorm(dead, c.tensor([1, 1, 1], [3]))],
        ['rmsNorm weight', 'rmsNorm', () => k.rmsNorm(live, deadW)],
        ['swiglu', 'swiglu', () => k.swiglu(live, dead)],
        ['attention', 'attention', () => k.attention(live, dead, live)],
        ['crossEntropy', 'crossEntropy', () => k.crossEntropy(dead, c.tensor([0, 1], [2], 'i32'))],
      ]);
      for (const [label, fn] of [
        ['data', () => dead.data()],
        ['values', () => dead.values()],
        ['array', () => dead.array()],
      ] as [string, () => Promise<unknown>][]) {
        let err: unknown;
        try {
          await fn();
        } catch (e) {
          err = e;
        }
        if (!(err instanceof DisposedTensorError) || !(err as DisposedTensorError).message.startsWith('data: ')) {
          fail(`${label}() of a disposed tensor: expected DisposedTensorError from data, got ${String(err)}`);
        }
      }
    },
  },
  {
    name: 'BackendError (naming the op) when operands live on different backends; none when they share one',
    async run(c) {
      const other = backendView(c.backend, {});
      const mine = c.tensor([1, 2, 3, 4], [2, 2]);
      const theirs = c.tensor([1, 2, 3, 4], [2, 2], 'f32', other);
      checks(c, BackendError, [
        ['add', 'add', () => k.add(mine, theirs)],
        ['matmul', 'matmul', () => k.matmul(theirs, mine)],
        ['where', 'where', () => k.where(k.cast(mine, 'bool'), mine, theirs)],
        ['concat', 'concat', () => k.concat([mine, theirs])],
        ['gather', 'gather', () => k.gather(mine, 0, c.tensor([0, 1, 0, 1], [2, 2], 'i32', other))],
        ['scatterAdd', 'scatterAdd', () => k.scatterAdd(mine, 0, c.tensor([0, 1, 0, 1], [2, 2], 'i32'), theirs)],
        ['rmsNorm', 'rmsNorm', () => k.rmsNorm(mine, c.tensor([1, 1], [2], 'f32', other))],
        ['swiglu', 'swiglu', () => k.swiglu(mine, theirs)],
        ['attention', 'attention', () => k.attention(mine, mine, theirs)],
      ]);
      // toBackend moves a tensor, after which the op works
      const moved = c.track(await k.toBackend(theirs, c.backend));
      const y = c.run(() => k.add(mine, moved));
      const r = await c.read(y);
      if (Array.from(r.values).join() !== '2,4,6,8') fail(`add after toBackend gave ${Array.from(r.values).join()}`);
    },
  },
  {
    name: 'ArgumentError (naming the op) for invalid non-shape arguments',
    run(c) {
      const x = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      checks(c, ArgumentError, [
        ['topk k > n', 'topk', () => k.topk(x, 4)],
        ['topk negative k', 'topk', () => k.topk(x, -1)],
        ['topk of rank 0', 'topk', () => k.topk(c.tensor([1], []), 1)],
        ['attention negative causalOffset', 'attention', () => k.attention(x, x, x, { causalOffset: -1 })],
        ['attention fractional causalOffset', 'attention', () => k.attention(x, x, x, { causalOffset: 0.5 })],
        ['attention causalOffset with causal false', 'attention', () => k.attention(x, x, x, { causal: false, causalOffset: 1 })],
        ['attention non-finite scale', 'attention', () => k.attention(x, x, x, { scale: Infinity })],
        ['arange step 0', 'arange', () => k.arange(0, 5, 0)],
        ['randomUniform seed', 'randomUniform', () => k.randomUniform([2], -1)],
        ['randomNormal std < 0', 'randomNormal', () => k.randomNormal([2], 1, 0, -1)],
        ['transpose bad permutation', 'transpose', () => k.transpose(x, [0, 0])],
        ['transpose permutation length', 'transpose', () => k.transpose(x, [0])],
        ['fromStorage wrong array type', 'fromStorage', () => k.fromStorage(new Float32Array(4), [4], 'f16')],
        ['quantize format', 'quantize', () => k.quantize(x, { format: 'e3m4' as never })],
        ['matmulFp8 promotionInterval 0', 'matmulFp8', () => k.matmulFp8(q(c, 1, 128, [1, 128]), q(c, 1, 128, [128, 128]), { promotionInterval: 0 })],
        ['matmulFp8 promotionInterval 48 with 128-wide blocks', 'matmulFp8', () => k.matmulFp8(q(c, 1, 128, [1, 128]), q(c, 1, 128, [128, 128]), { promotionInterval: 48 })],
        ['matmulFp8 accumulator bits', 'matmulFp8', () => k.matmulFp8(q(c, 1, 128, [1, 128]), q(c, 1, 128, [128, 128]), { accumulatorMantissaBits: 40 })],
        ['matmulFp8 of plain tensors', 'matmulFp8', () => k.matmulFp8(x as never, x as never)],
      ]);
    },
  },
];

export const errorsArea: Area = { name: 'errors', cases };
