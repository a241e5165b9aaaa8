/**
 * The safetensors header: an 8-byte little-endian u64 length N, then N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`
 * (possibly padded with trailing spaces), then the data buffer the offsets point into.
 * Parsing validates everything a reader relies on, so later reads cannot go out of bounds.
 */

import { ParaError } from '../errors';
import { describeValue, jsonDepthExceeded, MAX_JSON_DEPTH } from '../json';
import { DTYPE_BYTES, isSafetensorsDtype, type SafetensorsDtype } from './dtypes';

/** Largest header accepted (the Python library's limit), so garbage cannot allocate gigabytes. */
export const MAX_HEADER_BYTES = 100_000_000;

/** The key holding string→string metadata. */
export const METADATA_KEY = '__metadata__';

/** One tensor as described by the header. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Byte range relative to the start of the data buffer. */
  readonly begin: number;
  readonly end: number;
}

/** A validated header. */
export interface SafetensorsHeader {
  /** N, the JSON header length in bytes (padding included). */
  readonly headerLength: number;
  /** Absolute file offset of the data buffer (8 + N). */
  readonly dataStart: number;
  /** Tensors by name, in file (offset) order. */
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Reads N from the first 8 bytes and checks it against the file size: fewer than 8 bytes or a
 * header past the end of the file is FILE_TRUNCATED; N > 100 MB is INVALID_HEADER.
 */
export function readHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new ParaError('FILE_TRUNCATED', 'too short to be a safetensors file', {
      file,
      expected: 'at least 8 bytes (the header length)',
      actual: `${Math.min(fileSize, prefix.byteLength)} bytes`,
    });
  }
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo; // exact below 2^53; anything that large fails the check below
  if (hi !== 0 || n > MAX_HEADER_BYTES) {
    throw new ParaError('INVALID_HEADER', 'header length is implausibly large', {
      file,
      field: 'header length',
      expected: `at most ${MAX_HEADER_BYTES} bytes`,
      actual: `${dv.getBigUint64(0, true)} bytes`,
    });
  }
  if (8 + n > fileSize) {
    throw new ParaError('FILE_TRUNCATED', 'header runs past the end of the file', {
      file,
      field: 'header length',
      expected: `at most ${fileSize - 8} bytes`,
      actual: `${n} bytes`,
    });
  }
  return n;
}

/**
 * Parses and validates a header. `prefix` holds at least the first 8 + N bytes of the file;
 * `fileSize` is the whole file's size, against which the data offsets are checked.
 */
export function parseSafetensorsHeader(
  prefix: Uint8Array,
  fileSize: number,
  file: string,
): SafetensorsHeader {
  const n = readHeaderLength(prefix, fileSize, file);
  if (prefix.byteLength < 8 + n) {
    throw new ParaError('INVALID_ARGUMENT', 'prefix does not hold the whole header', {
      file,
      expected: `at least ${8 + n} bytes`,
      actual: `${prefix.byteLength} bytes`,
    });
  }
  return parseHeaderJson(prefix.subarray(8, 8 + n), fileSize, file);
}

/** Parses the N JSON bytes that follow the length prefix; see `parseSafetensorsHeader`. */
export function parseHeaderJson(
  jsonBytes: Uint8Array,
  fileSize: number,
  file: string,
): SafetensorsHeader {
  const headerLength = jsonBytes.byteLength;
  const dataStart = 8 + headerLength;
  const json = decodeJson(jsonBytes, file);

  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value, file);
    else entries.push(parseEntry(name, value, file));
  }

  checkOffsets(entries, fileSize - dataStart, file);
  const tensors = new Map<string, TensorEntry>();
  for (const e of entries) tensors.set(e.name, e);
  return { headerLength, dataStart, tensors, metadata };
}

/** UTF-8 → JSON object, or INVALID_JSON. */
function decodeJson(bytes: Uint8Array, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    const deep = jsonDepthExceeded(text);
    if (deep >= 0)
      throw new Error(`nested deeper than ${MAX_JSON_DEPTH} levels at character ${deep}`);
    value = JSON.parse(text);
  } catch (cause) {
    throw new ParaError('INVALID_JSON', 'header is not valid UTF-8 JSON', {
      file,
      field: 'header',
      expected: 'a JSON object',
      actual: cause instanceof Error ? cause.message : String(cause),
      cause,
    });
  }
  if (!isPlainObject(value)) {
    throw new ParaError('INVALID_JSON', 'header is not a JSON object', {
      file,
      field: 'header',
      expected: 'a JSON object',
      actual: describeValue(value),
    });
  }
  return value;
}

/** `__metadata__`: string→string (null is taken as empty). */
function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (value === null) return {};
  if (!isPlainObject(value)) {
    throw new ParaError('INVALID_HEADER', 'metadata must be an object of strings', {
      file,
      field: METADATA_KEY,
      expected: 'an object mapping strings to strings',
      actual: describeValue(value),
    });
  }
  const entries = Object.entries(value);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') {
      throw new ParaError('INVALID_HEADER', 'metadata values must be strings', {
        file,
        field: `${METADATA_KEY}.${k}`,
        expected: 'a string',
        actual: describeValue(v),
      });
    }
  }
  return Object.fromEntries(entries) as Record<string, string>; // "__proto__" stays a plain key
}

/** One tensor entry: shape, dtype, offsets and the size they imply. */
function parseEntry(name: string, value: unknown, file: string): TensorEntry {
  const bad = (what: string, expected: string, actual: unknown): ParaError =>
    new ParaError('INVALID_HEADER', what, {
      file,
      field: name,
      expected,
      actual: describeValue(actual),
    });
  if (!isPlainObject(value)) throw bad('tensor entry is not an object', 'an object', value);

  const { dtype, shape, data_offsets: offsets } = value;
  if (dtype === undefined) throw bad('tensor entry has no dtype', 'a "dtype" key', dtype);
  if (typeof dtype !== 'string') throw bad('dtype is not a string', 'a dtype string', dtype);
  if (!isSafetensorsDtype(dtype)) {
    throw new ParaError('UNKNOWN_DTYPE', `unsupported dtype "${dtype}"`, {
      file,
      field: name,
      expected: Object.keys(DTYPE_BYTES).join(', '),
      actual: dtype,
    });
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
    throw bad('bad shape', 'an array of non-negative integers', shape);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
    throw bad('bad data_offsets', '[begin, end] with non-negative integers', offsets);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new ParaError('BAD_OFFSETS', 'data_offsets end before they begin', {
      file,
      field: name,
      expected: 'begin <= end',
      actual: `[${begin}, ${end}]`,
    });
  }
  const dims = shape as number[];
  const count = dims.reduce((a, b) => a * b, 1);
  const expectedBytes = count * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(expectedBytes) || expectedBytes !== end - begin) {
    throw new ParaError('SIZE_MISMATCH', 'byte range does not match shape × dtype size', {
      file,
      field: name,
      expected: `${expectedBytes} bytes for ${dtype} [${dims.join(', ')}]`,
      actual: `${end - begin} bytes`,
    });
  }
  return { name, dtype, shape: dims, begin, end };
}

/**
 * The tensors must tile the data buffer: sorted by offset, the first starts at 0, each starts
 * where the previous one ends (no overlap, no gap), and the last ends at the end of the file.
 * Sorts `entries` in place into file order.
 */
function checkOffsets(entries: TensorEntry[], dataBytes: number, file: string): void {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: TensorEntry | undefined;
  for (const e of entries) {
    if (e.begin !== pos) {
      // begin < pos needs a previous tensor (pos starts at 0), so an overlap always names one.
      const what = e.begin < pos ? `tensor overlaps "${prev?.name}"` : 'gap before tensor';
      const where = prev === undefined ? 'the start of the data buffer' : `"${prev.name}" ends`;
      throw new ParaError('BAD_OFFSETS', what, {
        file,
        field: e.name,
        expected: `data to begin at ${pos} (where ${where})`,
        actual: `[${e.begin}, ${e.end}]`,
      });
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== dataBytes) {
    throw new ParaError('BAD_OFFSETS', 'tensor data does not cover the data buffer exactly', {
      file,
      field: prev?.name ?? 'data_offsets',
      expected: `tensors covering the file's ${dataBytes} data bytes`,
      actual: `tensors covering ${pos} bytes`,
    });
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A short description of a JSON value for error messages. */

/** Orders names by Unicode code point (UTF-8 byte order), as the Rust/Python library sorts. */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (astral code points) sort after every BMP code unit in UTF-8 order.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}
