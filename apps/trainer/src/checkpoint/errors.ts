import { FormatError } from '@kiln/core';

/**
 * A checkpoint file, tensor or config field is missing, malformed or unsupported. The
 * message names the file, the tensor or field (when there is one) and what was expected.
 */
export class CheckpointError extends FormatError {
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, message: string, tensor?: string) {
    super('checkpoint', `${file}${tensor !== undefined ? `: tensor '${tensor}'` : ''}: ${message}`);
    this.file = file;
    this.tensor = tensor;
  }
}
