/**
 * Serialising tensors to safetensors, laid out as the Rust/Python library does: tensors ordered
 * by dtype (widest first, the library's order) then name, `__metadata__` first in the header,
 * the header padded with spaces to a multiple of 8 so every tensor is aligned to its element size.
 * Tensor data is read with `await t.data()` (WebGPU in Node cannot `dataSync`).
 */

import type * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '../errors';
import {
  DTYPE_BYTES,
  encodeInto,
  type FloatStorageDtype,
  isSafetensorsDtype,
  type NumericArray,
  type SafetensorsDtype,
} from './dtypes';
import { compareNames, METADATA_KEY } from './header';

/** Values to be converted to `dtype` (floats rounded, integers range-checked). */
export interface TensorValues {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: NumericArray;
}

/** Bytes already encoded as little-endian `dtype` (e.g. from `readRaw`), written as they are. */
export interface RawTensorBytes {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  bytes: Uint8Array;
}

/** Anything `serializeSafetensors` can write. */
export type WritableTensor = tf.Tensor | TensorValues | RawTensorBytes;

export interface SerializeOptions {
  /** Written as `__metadata__` (string → string). */
  metadata?: Record<string, string>;
  /** Storage dtype for float32 tf.Tensors (default F32); other inputs keep their own dtype. */
  dtype?: FloatStorageDtype;
}

/** One tensor's place in the file and how to produce its bytes. */
export interface PlannedTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Offset within the data buffer. */
  begin: number;
  byteLength: number;
  /** Fills `out` (exactly `byteLength` bytes) with the tensor's encoded bytes. */
  write(out: Uint8Array): Promise<void>;
}

/** The whole file, laid out but not yet encoded. */
export interface SafetensorsPlan {
  /** The 8-byte length prefix followed by the padded JSON header. */
  header: Uint8Array;
  /** In file order. */
  tensors: PlannedTensor[];
  /** header.byteLength + all tensor bytes. */
  totalSize: number;
}

/** The Rust library's dtype order; tensors are laid out highest rank first. */
const DTYPE_RANK: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  F32: 11,
  F64: 12,
  I64: 13,
};

/** Lays out the file and builds the header; no tensor data is read yet. */
export function planSafetensors(
  tensors: Readonly<Record<string, WritableTensor>>,
  opts: SerializeOptions = {},
): SafetensorsPlan {
  const floatDtype = opts.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(floatDtype)) {
    throw new ParaError('INVALID_ARGUMENT', 'bad storage dtype', {
      field: 'dtype',
      expected: 'F32, F16 or BF16',
      actual: String(floatDtype),
    });
  }
  const planned = Object.entries(tensors).map(([name, t]) => planOne(name, t, floatDtype));
  planned.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareNames(a.name, b.name));

  // The JSON is assembled by hand: a JS object would move integer-like keys ("0") to the front
  // and treat "__proto__" specially.
  const fields: string[] = [];
  if (opts.metadata !== undefined) {
    const meta = checkMetadata(opts.metadata);
    const inner = meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    fields.push(`${JSON.stringify(METADATA_KEY)}:{${inner.join(',')}}`);
  }
  let pos = 0;
  for (const p of planned) {
    p.begin = pos;
    pos += p.byteLength;
    const entry = { dtype: p.dtype, shape: p.shape, data_offsets: [p.begin, pos] };
    fields.push(`${JSON.stringify(p.name)}:${JSON.stringify(entry)}`);
  }

  const text = new TextEncoder().encode(`{${fields.join(',')}}`);
  const n = text.byteLength + ((8 - (text.byteLength % 8)) % 8);
  const header = new Uint8Array(8 + n).fill(0x20); // pad with spaces
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(text, 8);
  return { header, tensors: planned, totalSize: header.byteLength + pos };
}

/** Serialises `tensors` to one safetensors file image. */
export async function serializeSafetensors(
  tensors: Readonly<Record<string, WritableTensor>>,
  opts: SerializeOptions = {},
): Promise<Uint8Array> {
  const plan = planSafetensors(tensors, opts);
  const out = new Uint8Array(plan.totalSize);
  out.set(plan.header, 0);
  const base = plan.header.byteLength;
  for (const t of plan.tensors) {
    await t.write(out.subarray(base + t.begin, base + t.begin + t.byteLength));
  }
  return out;
}

function planOne(name: string, t: WritableTensor, floatDtype: FloatStorageDtype): PlannedTensor {
  if (name === '' || name === METADATA_KEY) {
    throw new ParaError('INVALID_ARGUMENT', 'bad tensor name', {
      field: name,
      expected: `a non-empty name other than ${METADATA_KEY}`,
      actual: JSON.stringify(name),
    });
  }
  if (typeof t !== 'object' || t === null) {
    throw new ParaError('INVALID_ARGUMENT', 'not a tensor', {
      field: name,
      expected: 'a tf.Tensor or {dtype, shape, data | bytes}',
      actual: String(t),
    });
  }
  if (isTfTensor(t)) return planTf(name, t, floatDtype);

  const dtype = t.dtype;
  if (!isSafetensorsDtype(dtype)) {
    throw new ParaError('UNKNOWN_DTYPE', 'unsupported dtype', {
      field: name,
      expected: Object.keys(DTYPE_BYTES).join(', '),
      actual: String(dtype),
    });
  }
  const shape = checkShape(name, t.shape);
  const count = shape.reduce((a, b) => a * b, 1);
  const byteLength = count * DTYPE_BYTES[dtype];

  if ('bytes' in t) {
    if (!(t.bytes instanceof Uint8Array) || t.bytes.byteLength !== byteLength) {
      throw new ParaError('SIZE_MISMATCH', 'raw bytes do not match shape × dtype size', {
        field: name,
        expected: `${byteLength} bytes for ${dtype} [${shape.join(', ')}]`,
        actual: t.bytes instanceof Uint8Array ? `${t.bytes.byteLength} bytes` : 'no Uint8Array',
      });
    }
    const bytes = t.bytes;
    return plannedTensor(name, dtype, shape, byteLength, async (out) => out.set(bytes));
  }
  const data = t.data;
  if (data === undefined || typeof data.length !== 'number' || data.length !== count) {
    throw new ParaError('SHAPE_MISMATCH', 'data length does not match shape', {
      field: name,
      expected: `${count} values for shape [${shape.join(', ')}]`,
      actual: data === undefined ? 'no data' : `${data.length} values`,
    });
  }
  return plannedTensor(name, dtype, shape, byteLength, async (out) =>
    encodeInto(out, data, dtype, { name }),
  );
}

function planTf(name: string, t: tf.Tensor, floatDtype: FloatStorageDtype): PlannedTensor {
  const dtype = TF_DTYPES[t.dtype] ?? (t.dtype === 'float32' ? floatDtype : undefined);
  if (dtype === undefined) {
    throw new ParaError('UNSUPPORTED', `cannot write a ${t.dtype} tensor`, {
      field: name,
      expected: 'a float32, int32 or bool tensor',
      actual: t.dtype,
    });
  }
  const shape = [...t.shape];
  const byteLength = t.size * DTYPE_BYTES[dtype];
  return plannedTensor(name, dtype, shape, byteLength, async (out) => {
    if (t.isDisposed) {
      throw new ParaError('INVALID_ARGUMENT', 'tensor is disposed', { field: name });
    }
    encodeInto(out, (await t.data()) as NumericArray, dtype, { name });
  });
}

const TF_DTYPES: Partial<Record<string, SafetensorsDtype>> = { int32: 'I32', bool: 'BOOL' };

function plannedTensor(
  name: string,
  dtype: SafetensorsDtype,
  shape: number[],
  byteLength: number,
  write: (out: Uint8Array) => Promise<void>,
): PlannedTensor {
  return { name, dtype, shape, begin: 0, byteLength, write };
}

/** A tf.Tensor, recognised by shape rather than `instanceof` (works across bundle copies). */
function isTfTensor(t: object): t is tf.Tensor {
  const x = t as { data?: unknown; dataId?: unknown; dtype?: unknown };
  return typeof x.data === 'function' && x.dataId !== undefined && typeof x.dtype === 'string';
}

function checkShape(name: string, shape: unknown): number[] {
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new ParaError('INVALID_ARGUMENT', 'bad shape', {
      field: name,
      expected: 'an array of non-negative integers',
      actual: JSON.stringify(shape) ?? String(shape),
    });
  }
  return [...(shape as number[])];
}

/** Metadata entries sorted by key, values checked to be strings. */
function checkMetadata(metadata: Record<string, string>): [string, string][] {
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new ParaError('INVALID_ARGUMENT', 'metadata must be an object of strings', {
      field: METADATA_KEY,
      expected: 'an object mapping strings to strings',
      actual: String(metadata),
    });
  }
  const entries = Object.entries(metadata as Record<string, unknown>);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') {
      throw new ParaError('INVALID_ARGUMENT', 'metadata values must be strings', {
        field: `${METADATA_KEY}.${k}`,
        expected: 'a string',
        actual: typeof v,
      });
    }
  }
  return (entries as [string, string][]).sort((a, b) => compareNames(a[0], b[0]));
}
