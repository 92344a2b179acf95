/**
 * Training checkpoints ("snapshots"): everything a run needs to resume, written so that a crash,
 * a SIGKILL or a full disk at any moment leaves the previous checkpoint readable.
 *
 * Layout: `RUN_DIR/checkpoints/step-00001234/`
 *   - `tensors.safetensors`: every tensor (F32, BF16, I32, U16), written streaming; 4-byte tensors
 *     come first in the data section so they load as aligned views of one buffer.
 *   - `state.json`: `{ format, version, step, config, state }` (the run's config and JSON state).
 *   - `manifest.json`: format + version, step, and the size and SHA-256 of both files above.
 *
 * Writing: the three files go to a temporary directory `checkpoints/.tmp-step-…-PID-RAND/`, each
 * fsync'ed, the manifest last; the directory is fsync'ed and renamed to `step-…`, then
 * `checkpoints/` is fsync'ed. A checkpoint without a manifest that verifies does not exist:
 * `loadLatestSnapshot` skips it (with a warning) and returns the newest one that verifies.
 * Older checkpoints beyond `keep` are removed only once the new one is in place.
 *
 * Key convention shared with the training loop and `kiln export`: model parameters are stored
 * under `model/<transformers name>` (e.g. `model/model.layers.0.self_attn.kv_b_proj.weight`),
 * and the model's transformers config.json under `configJson.model`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgumentError, SAFETENSORS_DTYPE_BYTES, bytesOf, parseSafetensorsHeader } from '@kiln/core';
import { CheckpointError } from '../checkpoint/errors.js';

export interface SnapshotTensor {
  dtype: 'f32' | 'bf16' | 'i32' | 'u16';
  shape: number[];
  data: Float32Array | Uint16Array | Int32Array;
}

export interface TrainingSnapshot {
  step: number;
  configJson: Record<string, unknown>;
  tensors: Map<string, SnapshotTensor>;
  state: Record<string, unknown>;
  /** Set by `loadLatestSnapshot`: newer checkpoints it skipped, and why. Not saved. */
  warnings?: string[];
}

/** Prefix of model parameters among a snapshot's tensors (`model/<transformers name>`). */
export const MODEL_TENSOR_PREFIX = 'model/';
export const SNAPSHOT_FORMAT = 'kiln-training-snapshot';
export const SNAPSHOT_VERSION = 1;
export const CHECKPOINTS_DIR = 'checkpoints';
export const TENSORS_FILE = 'tensors.safetensors';
export const STATE_FILE = 'state.json';
export const MANIFEST_FILE = 'manifest.json';

/** A write failed because the disk (or quota) is full; temporary files were removed. */
export class CheckpointDiskFullError extends CheckpointError {
  readonly code: string;
  constructor(file: string, code: string) {
    super(file, `the disk is full (${code}) while writing the checkpoint; its temporary files were removed and earlier checkpoints are intact`);
    this.code = code;
  }
}

/** A resume was attempted against a different config; `field` is the first differing path. */
export class ConfigMismatchError extends CheckpointError {
  readonly field: string;
  constructor(source: string, field: string, saved: unknown, current: unknown) {
    super(source, `field '${field}' differs: the checkpoint has ${show(saved)}, the current config has ${show(current)}; refusing to resume against a different model config`);
    this.field = field;
  }
}

/** Where saving is: for progress reporting and for tests that interrupt a save at a given point. */
export type SnapshotProgress =
  | { phase: 'tensors'; file: string; bytes: number; totalBytes: number }
  | { phase: 'file-written'; file: string }
  | { phase: 'manifest-written'; file: string }
  | { phase: 'committed'; dir: string }
  | { phase: 'pruned'; removed: string[] };

export interface SaveSnapshotOptions {
  /** How many checkpoints to keep, the new one included (default 3). */
  keep?: number;
  /**
   * Writes `data` at `position` of an open file and returns the number of bytes written
   * (default: `handle.write`). Injected by tests to simulate a full disk.
   */
  write?: (handle: FileHandle, data: Uint8Array, position: number) => Promise<number>;
  /** Called (and awaited) as the save progresses. */
  onProgress?: (p: SnapshotProgress) => void | Promise<void>;
}

const STEP_DIR_RE = /^step-(\d{8,})$/;
const CHUNK = 4 << 20;
const DTYPE_TO_ST = { f32: 'F32', bf16: 'BF16', i32: 'I32', u16: 'U16' } as const;
const ST_TO_DTYPE: Record<string, SnapshotTensor['dtype']> = { F32: 'f32', BF16: 'bf16', I32: 'i32', U16: 'u16' };

/** `step-00001234`. */
export function snapshotDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** Checkpoint directories of a run (complete or not), oldest first. */
export async function listSnapshotDirs(runDir: string): Promise<{ step: number; dir: string }[]> {
  const root = join(runDir, CHECKPOINTS_DIR);
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CheckpointError(root, `cannot list the directory (${(err as Error).message})`);
  }
  const out: { step: number; dir: string }[] = [];
  for (const n of names) {
    const m = STEP_DIR_RE.exec(n);
    if (m) out.push({ step: Number(m[1]), dir: join(root, n) });
  }
  return out.sort((a, b) => a.step - b.step);
}

// ---------------------------------------------------------------------------------------------
// saving

/**
 * Saves `snap` as `RUN_DIR/checkpoints/step-XXXXXXXX/` atomically and returns that directory.
 * A checkpoint of the same step is replaced. Throws ArgumentError for a malformed snapshot,
 * CheckpointDiskFullError on ENOSPC/EDQUOT and CheckpointError for other write failures; in
 * every failure the temporary directory is removed and existing checkpoints are untouched.
 */
export async function saveSnapshot(runDir: string, snap: TrainingSnapshot, options: SaveSnapshotOptions = {}): Promise<string> {
  const keep = options.keep ?? 3;
  if (!Number.isSafeInteger(keep) || keep < 1) throw new ArgumentError('saveSnapshot', `keep must be an integer >= 1, got ${keep}`);
  if (!Number.isSafeInteger(snap.step) || snap.step < 0) throw new ArgumentError('saveSnapshot', `step must be an integer >= 0, got ${snap.step}`);
  const ordered = validateTensors(snap.tensors);
  let stateText: string;
  try {
    stateText = JSON.stringify({ format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, step: snap.step, config: snap.configJson, state: snap.state });
  } catch (err) {
    throw new ArgumentError('saveSnapshot', `configJson and state must be JSON-serialisable (${(err as Error).message})`);
  }
  const write = options.write ?? (async (h: FileHandle, d: Uint8Array, pos: number) => (await h.write(d, 0, d.length, pos)).bytesWritten);
  const progress = options.onProgress ?? (() => undefined);

  const root = join(runDir, CHECKPOINTS_DIR);
  await fsCall(root, () => mkdir(root, { recursive: true }));
  await removeStaleTemp(root);
  const name = snapshotDirName(snap.step);
  const tmp = join(root, `.tmp-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const final = join(root, name);
  await fsCall(tmp, () => mkdir(tmp));
  try {
    const header = safetensorsHeader(ordered);
    const totalBytes = header.length + ordered.reduce((a, t) => a + t.data.byteLength, 0);
    const tensorsPath = join(tmp, TENSORS_FILE);
    const tensorsSum = await writeHashed(tensorsPath, chunksOf(header, ordered), write, async (bytes) => {
      await progress({ phase: 'tensors', file: tensorsPath, bytes, totalBytes });
    });
    await progress({ phase: 'file-written', file: tensorsPath });
    const statePath = join(tmp, STATE_FILE);
    const stateSum = await writeHashed(statePath, [new TextEncoder().encode(stateText)], write);
    await progress({ phase: 'file-written', file: statePath });
    const manifest = {
      format: SNAPSHOT_FORMAT,
      version: SNAPSHOT_VERSION,
      step: snap.step,
      created: new Date().toISOString(),
      tensors: ordered.length,
      configSha256: sha256Hex(new TextEncoder().encode(canonicalJson(snap.configJson))),
      files: { [TENSORS_FILE]: tensorsSum, [STATE_FILE]: stateSum },
    };
    const manifestPath = join(tmp, MANIFEST_FILE);
    await writeHashed(manifestPath, [new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`)], write);
    await progress({ phase: 'manifest-written', file: manifestPath });
    await syncDir(tmp);
    // Same step saved before (e.g. a resume repeating a step): move the old one aside first.
    let old: string | undefined;
    if (await exists(final)) {
      old = join(root, `.del-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
      await fsCall(final, () => rename(final, old!));
    }
    await fsCall(final, () => rename(tmp, final));
    await syncDir(root);
    await progress({ phase: 'committed', dir: final });
    if (old) await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  const removed = await prune(root, snap.step, keep);
  await progress({ phase: 'pruned', removed });
  return final;
}

function validateTensors(tensors: Map<string, SnapshotTensor>): (SnapshotTensor & { name: string })[] {
  const op = 'saveSnapshot';
  const list: (SnapshotTensor & { name: string })[] = [];
  for (const [name, t] of tensors) {
    if (name.length === 0 || name === '__metadata__') throw new ArgumentError(op, `invalid tensor name ${JSON.stringify(name)}`);
    const want = t.dtype === 'f32' ? Float32Array : t.dtype === 'i32' ? Int32Array : t.dtype === 'bf16' || t.dtype === 'u16' ? Uint16Array : undefined;
    if (!want) throw new ArgumentError(op, `tensor '${name}': dtype ${JSON.stringify(t.dtype)} is not one of f32, bf16, i32, u16`);
    if (!(t.data instanceof want)) throw new ArgumentError(op, `tensor '${name}': ${t.dtype} data must be a ${want.name}, got ${t.data?.constructor?.name}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new ArgumentError(op, `tensor '${name}': invalid shape ${JSON.stringify(t.shape)}`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new ArgumentError(op, `tensor '${name}': shape [${t.shape.join(', ')}] holds ${numel} elements, data has ${t.data.length}`);
    list.push({ name, ...t });
  }
  return list;
}

/** The safetensors header: entries in the caller's order, data laid out 4-byte dtypes first. */
function safetensorsHeader(list: (SnapshotTensor & { name: string })[]): Uint8Array {
  const offsets = new Map<string, [number, number]>();
  let off = 0;
  for (const t of dataOrder(list)) {
    offsets.set(t.name, [off, off + t.data.byteLength]);
    off += t.data.byteLength;
  }
  const header: Record<string, unknown> = { __metadata__: { format: SNAPSHOT_FORMAT } };
  for (const t of list) header[t.name] = { dtype: DTYPE_TO_ST[t.dtype], shape: [...t.shape], data_offsets: offsets.get(t.name) };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setUint32(0, padded, true);
  out.set(json, 8);
  return out;
}

function dataOrder<T extends SnapshotTensor>(list: T[]): T[] {
  const wide = list.filter((t) => t.data.BYTES_PER_ELEMENT === 4);
  const narrow = list.filter((t) => t.data.BYTES_PER_ELEMENT !== 4);
  return [...wide, ...narrow];
}

function* chunksOf(header: Uint8Array, list: SnapshotTensor[]): Generator<Uint8Array> {
  yield header;
  for (const t of dataOrder(list)) {
    const b = bytesOf(t.data);
    for (let i = 0; i < b.length; i += CHUNK) yield b.subarray(i, Math.min(b.length, i + CHUNK));
  }
}

async function writeHashed(
  path: string,
  chunks: Iterable<Uint8Array>,
  write: NonNullable<SaveSnapshotOptions['write']>,
  onChunk?: (bytes: number) => Promise<void>,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const fh = await fsCall(path, () => open(path, 'wx'));
  let pos = 0;
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.length) {
        const part = chunk.subarray(done);
        const n = await fsCall(path, () => write(fh, part, pos));
        if (!(n > 0)) throw new CheckpointError(path, `a write of ${part.length} bytes wrote ${n}`);
        done += n;
        pos += n;
      }
      hash.update(chunk);
      if (onChunk) await onChunk(pos);
    }
    await fsCall(path, () => fh.sync());
  } finally {
    await fh.close().catch(() => undefined);
  }
  return { bytes: pos, sha256: hash.digest('hex') };
}

/** Runs an fs call, turning its failure into a CheckpointError naming `path` (disk full: typed). */
async function fsCall<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new CheckpointDiskFullError(path, code);
    const e = new CheckpointError(path, `cannot write the checkpoint (${(err as Error).message})`);
    (e as { cause?: unknown }).cause = err;
    throw e;
  }
}

async function syncDir(dir: string): Promise<void> {
  let d: FileHandle | undefined;
  try {
    d = await open(dir, 'r');
    await d.sync();
  } catch {
    // fsync on a directory is not supported everywhere (Windows); the rename is still atomic.
  } finally {
    await d?.close().catch(() => undefined);
  }
}

/** Removes `.tmp-*` / `.del-*` directories left by processes that no longer run. */
async function removeStaleTemp(root: string): Promise<void> {
  for (const n of await readdir(root).catch(() => [] as string[])) {
    const m = /^\.(?:tmp|del)-step-\d+-(\d+)-[0-9a-f]+$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue; // a save in progress (here or elsewhere)
    await rm(join(root, n), { recursive: true, force: true }).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Keeps the new checkpoint and the `keep - 1` newest older ones; later steps are left alone. */
async function prune(root: string, newStep: number, keep: number): Promise<string[]> {
  const older = (await listSnapshotDirs(join(root, '..'))).filter((s) => s.step < newStep);
  const drop = older.slice(0, Math.max(0, older.length - (keep - 1)));
  const removed: string[] = [];
  for (const s of drop) {
    // Renamed out of the checkpoint namespace first, so a half-deleted one is never seen.
    const trash = join(root, `.del-${snapshotDirName(s.step)}-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await rename(s.dir, trash);
      await rm(trash, { recursive: true, force: true });
      removed.push(s.dir);
    } catch {
      // best effort: a leftover old checkpoint is harmless
    }
  }
  if (removed.length) await syncDir(root);
  return removed;
}

// ---------------------------------------------------------------------------------------------
// loading

/**
 * The newest checkpoint of the run that verifies (manifest, sizes, SHA-256 checksums), or
 * undefined when there is none. Newer checkpoints that fail verification are skipped: each is
 * reported through `onWarning` (default: a line on stderr) and in the result's `warnings`.
 */
export async function loadLatestSnapshot(runDir: string, options: { onWarning?: (message: string) => void } = {}): Promise<TrainingSnapshot | undefined> {
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`kiln: warning: ${m}\n`));
  const warnings: string[] = [];
  const dirs = await listSnapshotDirs(runDir);
  for (let i = dirs.length - 1; i >= 0; i--) {
    try {
      const snap = await loadSnapshot(dirs[i]!.dir);
      if (warnings.length) snap.warnings = warnings;
      return snap;
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      const m = `skipping checkpoint ${dirs[i]!.dir}: ${err.message}`;
      warnings.push(m);
      warn(m);
    }
  }
  return undefined;
}

/** Reads and verifies one checkpoint directory; CheckpointError (naming file and field) otherwise. */
export async function loadSnapshot(checkpointDir: string): Promise<TrainingSnapshot> {
  const manifestPath = join(checkpointDir, MANIFEST_FILE);
  const manifest = await readManifest(manifestPath);
  const m = STEP_DIR_RE.exec(checkpointDir.split(/[\\/]/).filter(Boolean).pop() ?? '');
  if (m && Number(m[1]) !== manifest.step) throw new CheckpointError(manifestPath, `field step is ${manifest.step}, but the directory is for step ${Number(m[1])}`);

  // Verify both files completely before interpreting either.
  const stateBytes = await readVerified(join(checkpointDir, STATE_FILE), manifest.files[STATE_FILE]!, manifestPath);
  const tensorBytes = await readVerified(join(checkpointDir, TENSORS_FILE), manifest.files[TENSORS_FILE]!, manifestPath);

  const statePath = join(checkpointDir, STATE_FILE);
  let state: unknown;
  try {
    state = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(stateBytes));
  } catch (err) {
    throw new CheckpointError(statePath, `not valid JSON (${(err as Error).message})`);
  }
  const s = state as Record<string, unknown>;
  if (s === null || typeof s !== 'object' || Array.isArray(s)) throw new CheckpointError(statePath, 'expected a JSON object');
  if (s.format !== SNAPSHOT_FORMAT) throw new CheckpointError(statePath, `field format is ${show(s.format)}, expected "${SNAPSHOT_FORMAT}"`);
  if (s.step !== manifest.step) throw new CheckpointError(statePath, `field step is ${show(s.step)}, the manifest says ${manifest.step}`);
  if (!isObject(s.config)) throw new CheckpointError(statePath, 'field config must be an object');
  if (!isObject(s.state)) throw new CheckpointError(statePath, 'field state must be an object');

  const tensors = decodeTensors(join(checkpointDir, TENSORS_FILE), tensorBytes);
  return { step: manifest.step, configJson: s.config, tensors, state: s.state };
}

interface Manifest {
  step: number;
  files: Record<string, { bytes: number; sha256: string }>;
}

async function readManifest(path: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CheckpointError(path, code === 'ENOENT' ? 'missing: the checkpoint is incomplete (its manifest is written last)' : `cannot read the file (${(err as Error).message})`);
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(path, `not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(j)) throw new CheckpointError(path, 'expected a JSON object');
  if (j.format !== SNAPSHOT_FORMAT) throw new CheckpointError(path, `field format is ${show(j.format)}, expected "${SNAPSHOT_FORMAT}"`);
  if (typeof j.version !== 'number' || !Number.isInteger(j.version)) throw new CheckpointError(path, `field version is ${show(j.version)}, expected an integer`);
  if (j.version > SNAPSHOT_VERSION) throw new CheckpointError(path, `field version is ${j.version}: written by a newer kiln (this one reads version ${SNAPSHOT_VERSION})`);
  if (j.version < 1) throw new CheckpointError(path, `field version is ${j.version}, expected ${SNAPSHOT_VERSION}`);
  if (!Number.isSafeInteger(j.step) || (j.step as number) < 0) throw new CheckpointError(path, `field step is ${show(j.step)}, expected an integer >= 0`);
  if (!isObject(j.files)) throw new CheckpointError(path, 'field files must be an object');
  const files: Manifest['files'] = {};
  for (const f of [TENSORS_FILE, STATE_FILE]) {
    const e = j.files[f];
    if (!isObject(e)) throw new CheckpointError(path, `field files["${f}"] is missing`);
    if (!Number.isSafeInteger(e.bytes) || (e.bytes as number) < 0) throw new CheckpointError(path, `field files["${f}"].bytes is ${show(e.bytes)}, expected a byte count`);
    if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw new CheckpointError(path, `field files["${f}"].sha256 is ${show(e.sha256)}, expected 64 hex digits`);
    files[f] = { bytes: e.bytes as number, sha256: e.sha256 };
  }
  return { step: j.step as number, files };
}

/** Reads a whole file into a fresh buffer, checking its size and SHA-256 against the manifest. */
async function readVerified(path: string, want: { bytes: number; sha256: string }, manifestPath: string): Promise<Uint8Array> {
  const name = path.split(/[\\/]/).pop()!;
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new CheckpointError(path, `cannot open the file (${(err as Error).message})`);
  }
  try {
    const { size } = await fh.stat();
    if (size !== want.bytes) throw new CheckpointError(path, `the file has ${size} bytes, ${manifestPath} field files["${name}"].bytes says ${want.bytes} (truncated or replaced?)`);
    const buf = new Uint8Array(size);
    const hash = createHash('sha256');
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(buf, done, Math.min(CHUNK, size - done), done);
      if (bytesRead === 0) throw new CheckpointError(path, `the file ended after ${done} bytes, expected ${size}`);
      hash.update(buf.subarray(done, done + bytesRead));
      done += bytesRead;
    }
    const got = hash.digest('hex');
    if (got !== want.sha256) throw new CheckpointError(path, `SHA-256 is ${got}, ${manifestPath} field files["${name}"].sha256 says ${want.sha256} (corrupt file)`);
    return buf;
  } finally {
    await fh.close();
  }
}

function decodeTensors(path: string, buf: Uint8Array): Map<string, SnapshotTensor> {
  let header;
  try {
    header = parseSafetensorsHeader(buf, buf.length, path);
  } catch (err) {
    throw new CheckpointError(path, (err as Error).message.replace(/^safetensors: /, ''));
  }
  const out = new Map<string, SnapshotTensor>();
  for (const e of header.entries.values()) {
    const dtype = ST_TO_DTYPE[e.dtype];
    if (!dtype) throw new CheckpointError(path, `dtype ${e.dtype} is not a snapshot dtype (F32, BF16, I32, U16)`, e.name);
    const size = SAFETENSORS_DTYPE_BYTES[e.dtype]!;
    const start = buf.byteOffset + header.dataStart + e.begin;
    const n = (e.end - e.begin) / size;
    // Views where aligned (kiln's writer aligns everything); a copy otherwise.
    const src = start % size === 0 ? buf.buffer : buf.slice(header.dataStart + e.begin, header.dataStart + e.end).buffer;
    const off = start % size === 0 ? start : 0;
    const data = dtype === 'f32' ? new Float32Array(src, off, n) : dtype === 'i32' ? new Int32Array(src, off, n) : new Uint16Array(src, off, n);
    out.set(e.name, { dtype, shape: [...e.shape], data });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// config fingerprint

/**
 * Refuses to resume a run whose config differs from the checkpoint's: throws
 * ConfigMismatchError naming the first differing field (dotted path, e.g. `model.hidden_size`).
 * Pass the part of the config that must not change (e.g. `configJson.model`) to compare only it.
 */
export function assertSameConfig(saved: Record<string, unknown>, current: Record<string, unknown>, source = 'checkpoint config'): void {
  const diff = firstDifference(saved, current, '');
  if (diff) throw new ConfigMismatchError(source, diff.path || '(root)', diff.a, diff.b);
}

function firstDifference(a: unknown, b: unknown, path: string): { path: string; a: unknown; b: unknown } | undefined {
  if (Object.is(a, b)) return undefined;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return { path: `${path}.length`.replace(/^\./, ''), a: a.length, b: b.length };
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (isObject(a) && isObject(b) && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      const d = firstDifference(a[k], b[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return undefined;
  }
  return { path, a, b };
}

/** JSON with object keys sorted (the config fingerprint in the manifest). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isObject(v)) {
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing (absent)';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
