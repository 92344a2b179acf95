import { engine } from '../engine.js';
import { ArgumentError, ShapeError } from '../errors.js';
import { isFloatDType } from '../dtype.js';
import type { Tensor } from '../tensor.js';

/**
 * Reverse-mode autograd by tape. While `valueAndGrads` runs its function, every
 * differentiable op whose inputs depend on a watched tensor appends a node: its inputs and
 * output (kept alive as storage-sharing aliases) and a backward function written with public
 * ops. Backward walks the tape in reverse, accumulating gradients and releasing each node's
 * saved tensors and incoming gradient as soon as the node is done.
 */

/** Computes input gradients from the output gradient; null where an input gets none. */
export type BackwardFn = (dy: Tensor, inputs: readonly Tensor[], output: Tensor) => readonly (Tensor | null | undefined)[];

/**
 * Backward of a node recorded with `recordGradWith`: it receives the tensors the op chose to
 * save (not its inputs, not its output) and returns one gradient per input.
 */
export type SavedBackwardFn = (dy: Tensor, saved: readonly Tensor[]) => readonly (Tensor | null | undefined)[];

interface TapeNode {
  readonly op: string;
  readonly inputIds: readonly number[];
  /** Input shapes, to check the gradients backward produces. */
  readonly inputShapes: readonly (readonly number[])[];
  readonly outputId: number;
  /** Aliases held until the node has run: the inputs (recordGrad) or the op's own choice (recordGradWith). */
  readonly saved: Tensor[];
  /** recordGrad keeps an alias of the output for its rule; recordGradWith keeps none. */
  readonly output: Tensor | undefined;
  readonly run: (dy: Tensor) => readonly (Tensor | null | undefined)[];
}

class Tape {
  readonly nodes: TapeNode[] = [];
  /** Ids of watched tensors and of every recorded output. */
  readonly tracked = new Set<number>();
  /** savedCopy's cache for the forward pass: aliases, released when the forward ends. */
  readonly copies = new Map<string, Tensor[]>();
}

function releaseCopies(tape: Tape): void {
  for (const ts of tape.copies.values()) for (const t of ts) t.dispose();
  tape.copies.clear();
}

/**
 * A copy derived from `source` that an op keeps for backward (e.g. x quantized to FP8), shared
 * by every op of the same forward pass that asks for the same `tag` of the same tensor: gate_proj
 * and up_proj both read the MLP's input, and keep one FP8 copy of it instead of two. `make` runs
 * on the first request; later requests get the same tensors while the forward lasts. Pass the
 * result to `recordGradWith` (which holds its own aliases); do not dispose it. Outside a
 * recording tape it simply returns `make()` (owned by the caller's scope).
 */
export function savedCopy(source: Tensor, tag: string, make: () => readonly Tensor[]): readonly Tensor[] {
  const tape = activeTape();
  if (!tape) return make();
  const key = `${source.id}\u0000${tag}`;
  const hit = tape.copies.get(key);
  if (hit) return hit;
  const made = make();
  tape.copies.set(key, made.map((t) => engine.alias(t)));
  return made;
}

function activeTape(): Tape | undefined {
  if (engine.noGradDepth > 0) return undefined;
  return engine.tapes[engine.tapes.length - 1] as Tape | undefined;
}

/** True when an op on these inputs would be recorded (ops skip gradient bookkeeping otherwise). */
export function isRecording(inputs: readonly Tensor[]): boolean {
  const tape = activeTape();
  if (!tape) return false;
  for (const t of inputs) if (tape.tracked.has(t.id)) return true;
  return false;
}

/** Appends a node when any input is tracked. Called by ops after computing `output`. */
export function recordGrad(op: string, inputs: readonly Tensor[], output: Tensor, backward: BackwardFn): void {
  const tape = activeTape();
  if (!tape || !isFloatDType(output.dtype)) return;
  let any = false;
  for (const t of inputs) if (tape.tracked.has(t.id)) any = true;
  if (!any) return;
  const saved = inputs.map((t) => engine.alias(t));
  const out = engine.alias(output);
  tape.nodes.push({
    op,
    inputIds: inputs.map((t) => t.id),
    inputShapes: inputs.map((t) => t.shape),
    outputId: output.id,
    saved,
    output: out,
    run: (dy) => backward(dy, saved, out),
  });
  tape.tracked.add(output.id);
}

/**
 * Like `recordGrad`, but the node holds only the tensors in `saved` (aliases of them), not the
 * inputs nor the output: an op can keep a compressed copy of what its backward needs (FP8 or
 * bf16 activations, see `fp8Linear`) so that the f32 input is freed as soon as nothing else
 * uses it. `backward` gets `saved` in the order given and returns one gradient (or null) per
 * input. Nothing is recorded when no input is tracked.
 */
export function recordGradWith(op: string, inputs: readonly Tensor[], output: Tensor, saved: readonly Tensor[], backward: SavedBackwardFn): void {
  const tape = activeTape();
  if (!tape || !isFloatDType(output.dtype)) return;
  let any = false;
  for (const t of inputs) if (tape.tracked.has(t.id)) any = true;
  if (!any) return;
  for (const t of saved) {
    if (!t || typeof t !== 'object' || !('dataId' in t)) throw new ArgumentError('recordGradWith', `${op}: saved must hold Tensors`);
    if (t.isDisposed) throw new ArgumentError('recordGradWith', `${op}: saved tensor #${t.id} was disposed`);
  }
  const kept = saved.map((t) => engine.alias(t));
  tape.nodes.push({
    op,
    inputIds: inputs.map((t) => t.id),
    inputShapes: inputs.map((t) => t.shape),
    outputId: output.id,
    saved: kept,
    output: undefined,
    run: (dy) => backward(dy, kept),
  });
  tape.tracked.add(output.id);
}

/** Runs `fn` without recording gradients. */
export function noGrad<T>(fn: () => T): T {
  engine.noGradDepth += 1;
  try {
    return fn();
  } finally {
    engine.noGradDepth -= 1;
  }
}

export interface ValueAndGrads<P extends readonly Tensor[] | Record<string, Tensor>> {
  /** The function's value (kept; dispose it when done). */
  value: Tensor;
  /** d value / d param, shaped like each param (f32). Params the value does not depend on get zeros. */
  grads: P extends readonly Tensor[] ? Tensor[] : Record<keyof P, Tensor>;
}

/**
 * Evaluates `f` and the gradients of its (scalar, or summed) value with respect to `params`.
 * `f` runs inside a `tidy` scope, so its intermediates never leak; what backward needs is
 * held by the tape and released as backward proceeds.
 */
export function valueAndGrads<P extends readonly Tensor[] | Record<string, Tensor>>(f: () => Tensor, params: P): ValueAndGrads<P> {
  const list: Tensor[] = Array.isArray(params) ? [...(params as readonly Tensor[])] : Object.values(params as Record<string, Tensor>);
  for (const p of list) {
    if (!isFloatDType(p.dtype)) throw new ArgumentError('valueAndGrads', `parameter #${p.id} has dtype ${p.dtype}; only float tensors have gradients`);
  }
  const tape = new Tape();
  for (const p of list) tape.tracked.add(p.id);
  engine.tapes.push(tape);
  let value: Tensor;
  try {
    // f runs in its own scope: intermediates are freed (the tape keeps what backward needs).
    value = engine.tidy(f);
  } catch (err) {
    engine.tapes.pop();
    releaseTape(tape);
    throw err;
  }
  engine.tapes.pop();
  releaseCopies(tape);
  if (!value || typeof value !== 'object' || !('shape' in value)) {
    releaseTape(tape);
    throw new ArgumentError('valueAndGrads', 'f must return a Tensor');
  }
  const grads = new Map<number, Tensor>();
  try {
    noGrad(() => {
      grads.set(value.id, onesLike(value));
      const paramIds = new Set(list.map((p) => p.id));
      for (let i = tape.nodes.length - 1; i >= 0; i--) {
        const node = tape.nodes[i];
        const dy = grads.get(node.outputId);
        if (dy) {
          if (!paramIds.has(node.outputId)) grads.delete(node.outputId);
          const dxs = engine.tidy(() => node.run(dy).map((g) => g ?? null));
          // A rule may return dy itself, or one tensor for two inputs: give each input its own.
          const seen = new Set<Tensor>([dy]);
          let dyReused = false;
          for (let j = 0; j < node.inputIds.length; j++) {
            let g = dxs[j];
            if (g && seen.has(g)) {
              if (g === dy && !dyReused) dyReused = true;
              else g = engine.makeTensor(g.backend, g.backend.slice(g, g.shape.map(() => 0), g.shape), g.shape, g.dtype);
            }
            if (g) seen.add(g);
            const id = node.inputIds[j];
            if (!g) continue;
            if (g.dtype !== 'f32') {
              const f = engine.makeTensor(g.backend, g.backend.cast(g, 'f32', { saturate: false }), g.shape, 'f32');
              g.dispose();
              g = f;
            }
            if (!tape.tracked.has(id)) {
              g.dispose();
              continue;
            }
            const inputShape = node.inputShapes[j];
            if (g.shape.length !== inputShape.length || g.shape.some((d, k) => d !== inputShape[k])) {
              throw new ShapeError('valueAndGrads', `backward of ${node.op} produced a gradient of shape [${g.shape.join(', ')}] for an input of shape [${inputShape.join(', ')}]`);
            }
            const prev = grads.get(id);
            if (prev) {
              grads.set(id, addInto(prev, g));
            } else grads.set(id, g);
          }
          if (!paramIds.has(node.outputId) && !dyReused) dy.dispose();
        }
        for (const t of node.saved) t.dispose();
        node.output?.dispose();
      }
    });
  } finally {
    releaseTape(tape);
  }
  const out = list.map((p) => {
    const g = grads.get(p.id);
    grads.delete(p.id);
    return g ?? zerosLike(p);
  });
  for (const g of grads.values()) g.dispose();
  const result = Array.isArray(params) ? out : Object.fromEntries(Object.keys(params).map((k, i) => [k, out[i]]));
  return { value, grads: result as ValueAndGrads<P>['grads'] };
}

function releaseTape(tape: Tape): void {
  releaseCopies(tape);
  for (const node of tape.nodes) {
    for (const t of node.saved) t.dispose();
    node.output?.dispose();
  }
  tape.nodes.length = 0;
}

// Small local helpers through the backend directly, to keep this module free of op imports
// (ops import the tape, not the other way round).
function onesLike(t: Tensor): Tensor {
  return engine.makeTensor(t.backend, t.backend.fill(t.shape, 'f32', 1), t.shape, 'f32');
}
function zerosLike(t: Tensor): Tensor {
  return engine.makeTensor(t.backend, t.backend.fill(t.shape, 'f32', 0), t.shape, 'f32');
}
function addInto(a: Tensor, b: Tensor): Tensor {
  const out = engine.makeTensor(a.backend, a.backend.binary('add', a, b, a.shape, 'f32'), a.shape, 'f32');
  a.dispose();
  b.dispose();
  return out;
}
