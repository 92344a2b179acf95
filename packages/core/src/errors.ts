/**
 * Typed errors. Every message names the op, what it got and what it expected,
 * so a user can fix the call without reading kiln's source.
 */
export class KilnError extends Error {
  /** The public op or subsystem that raised the error, e.g. `matmul`. */
  readonly op: string;
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = new.target.name;
    this.op = op;
  }
}

/** Shapes are incompatible, an axis is out of range, or sizes do not match the data. */
export class ShapeError extends KilnError {}

/** A dtype is not accepted by an op, or operands disagree on dtype. */
export class DTypeError extends KilnError {}

/** A backend is missing, failed to initialise, or tensors from two backends were mixed. */
export class BackendError extends KilnError {}

/** A tensor was used after `dispose()`. */
export class DisposedTensorError extends KilnError {}

/** An argument (not a shape or dtype) is invalid: a negative size, an unknown option, ... */
export class ArgumentError extends KilnError {}

/** A collective operation failed: mismatched participants, a bad rank, a peer that died. */
export class CollectiveError extends KilnError {}

/** A collective operation did not complete within its timeout. */
export class CollectiveTimeoutError extends CollectiveError {}

/** The backend could not allocate memory for a tensor. */
export class OutOfMemoryError extends BackendError {}

/** A file or serialized buffer is malformed (truncated, corrupt header, wrong field). Nothing is half-read. */
export class FormatError extends KilnError {}
