import type { DType } from '../dtype.js';
import { FormatError } from '../errors.js';

/**
 * The safetensors container (Hugging Face): u64 little-endian header length, a JSON header
 * mapping names to { dtype, shape, data_offsets } (offsets relative to the data section),
 * then the raw little-endian tensor bytes. kiln parses it strictly: a header that does not
 * describe the file exactly (sizes, overlaps, holes, bounds) is refused before any tensor
 * is read.
 */

/** safetensors dtype names and their element sizes. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

const TO_KILN: Readonly<Record<string, DType>> = {
  F32: 'f32', F16: 'f16', BF16: 'bf16', F8_E4M3: 'e4m3', F8_E5M2: 'e5m2', I32: 'i32', U8: 'u8', BOOL: 'bool',
};
const FROM_KILN: Readonly<Record<DType, string>> = {
  f32: 'F32', f16: 'F16', bf16: 'BF16', e4m3: 'F8_E4M3', e5m2: 'F8_E5M2', i32: 'I32', u8: 'U8', bool: 'BOOL',
};

/** kiln's dtype for a safetensors dtype name, or undefined when kiln has no such dtype (F64, I64 ...). */
export function kilnDTypeOf(safetensorsDType: string): DType | undefined {
  return TO_KILN[safetensorsDType];
}

export function safetensorsDTypeOf(dtype: DType): string {
  return FROM_KILN[dtype];
}

export interface SafetensorsEntry {
  readonly name: string;
  /** safetensors dtype name, e.g. 'BF16', 'F8_E4M3'. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte range within the data section. */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  /** Bytes before the data section (8 + header length). */
  readonly dataStart: number;
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
  readonly metadata: Readonly<Record<string, string>>;
}

const MAX_HEADER = 100 * 1024 * 1024;

/**
 * Parses and validates a header. `prefix` holds at least the first 8 bytes (and the whole
 * header once its length is known: call `safetensorsHeaderLength` first when streaming);
 * `fileSize` is the total size, so bounds are checked against the real file.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, source = 'safetensors'): SafetensorsHeader {
  const headerLen = safetensorsHeaderLength(prefix, fileSize, source);
  if (prefix.length < 8 + headerLen) throw new FormatError('safetensors', `${source}: need ${8 + headerLen} bytes to read the header, got ${prefix.length}`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLen)));
  } catch (err) {
    throw new FormatError('safetensors', `${source}: the header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new FormatError('safetensors', `${source}: the header must be a JSON object`);
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        throw new FormatError('safetensors', `${source}: __metadata__ must map strings to strings`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${source}: tensor ${JSON.stringify(name)}`;
    if (e === null || typeof e !== 'object') throw new FormatError('safetensors', `${where} is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in SAFETENSORS_DTYPE_BYTES)) throw new FormatError('safetensors', `${where} has unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new FormatError('safetensors', `${where} has an invalid shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) {
      throw new FormatError('safetensors', `${where} has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const numel = (e.shape as number[]).reduce((a, b) => a * b, 1);
    const want = numel * SAFETENSORS_DTYPE_BYTES[e.dtype];
    if (off[1] - off[0] !== want) throw new FormatError('safetensors', `${where}: ${e.dtype}${JSON.stringify(e.shape)} needs ${want} bytes but data_offsets span ${off[1] - off[0]}`);
    if (off[1] > dataSize) throw new FormatError('safetensors', `${where} ends at byte ${off[1]} of the data section, which has ${dataSize} bytes (truncated file?)`);
    entries.set(name, { name, dtype: e.dtype, shape: e.shape as number[], begin: off[0], end: off[1] });
  }
  // The data section must be covered exactly, without overlaps or holes.
  const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.begin !== cursor) {
      throw new FormatError('safetensors', `${source}: tensor ${JSON.stringify(e.name)} starts at ${e.begin}, expected ${cursor} (${e.begin < cursor ? 'overlap' : 'hole'} in the data section)`);
    }
    cursor = e.end;
  }
  if (cursor !== dataSize) throw new FormatError('safetensors', `${source}: the tensors cover ${cursor} bytes but the data section has ${dataSize} (trailing bytes or truncation)`);
  return { dataStart, entries, metadata };
}

/** Reads and checks the header length from the first 8 bytes. */
export function safetensorsHeaderLength(prefix: Uint8Array, fileSize: number, source = 'safetensors'): number {
  if (prefix.length < 8 || fileSize < 8) throw new FormatError('safetensors', `${source}: ${fileSize} bytes is too short for a safetensors file`);
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const len = hi * 2 ** 32 + lo;
  if (len < 2 || len > MAX_HEADER || 8 + len > fileSize) {
    throw new FormatError('safetensors', `${source}: header length ${len} is impossible for a file of ${fileSize} bytes`);
  }
  return len;
}

export interface SafetensorsTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Raw little-endian bytes (a view into the input for decodeSafetensors). */
  readonly bytes: Uint8Array;
}

/** Parses a whole in-memory safetensors buffer (validated first). */
export function decodeSafetensors(buffer: Uint8Array, source = 'safetensors'): { tensors: Map<string, SafetensorsTensor>; metadata: Record<string, string> } {
  const header = parseSafetensorsHeader(buffer, buffer.length, source);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of header.entries.values()) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, bytes: buffer.subarray(header.dataStart + e.begin, header.dataStart + e.end) });
  }
  return { tensors, metadata: { ...header.metadata } };
}

/** Serialises tensors (raw little-endian bytes per entry) into a safetensors buffer. */
export function encodeSafetensors(tensors: ReadonlyMap<string, SafetensorsTensor> | Record<string, SafetensorsTensor>, metadata?: Record<string, string>): Uint8Array {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of list) {
    const size = SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (size === undefined) throw new FormatError('encodeSafetensors', `tensor ${JSON.stringify(name)} has unknown dtype ${JSON.stringify(t.dtype)}`);
    const want = t.shape.reduce((a: number, b: number) => a * b, 1) * size;
    if (t.bytes.length !== want) throw new FormatError('encodeSafetensors', `tensor ${JSON.stringify(name)}: ${t.dtype}[${t.shape.join(', ')}] needs ${want} bytes, got ${t.bytes.length}`);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + want] };
    offset += want;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the data section starts 8-byte aligned.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(json.length + pad).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, json.length % 2 ** 32, true);
  view.setUint32(4, Math.floor(json.length / 2 ** 32), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const [, t] of list) {
    out.set(t.bytes, pos);
    pos += t.bytes.length;
  }
  return out;
}

/** Views a typed array's bytes (little-endian hosts; every JS engine kiln targets is). */
export function bytesOf(arr: ArrayBufferView): Uint8Array {
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}
