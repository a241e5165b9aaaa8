/**
 * Safetensors dtypes: element sizes, decoding little-endian bytes into the arrays tfjs takes
 * (Float32Array for floats, Int32Array for integers) and encoding float32 values as F16/BF16.
 * Universal code: no Node built-ins.
 */

import { ParaError } from '../errors';

/** The dtypes this package reads and writes (the safetensors spelling). */
export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'U16'
  | 'I8'
  | 'U8'
  | 'BOOL';

/** Float dtypes a float32 tensor may be written as. */
export type FloatStorageDtype = 'F32' | 'F16' | 'BF16';

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** True when `s` is a dtype this package knows. */
export function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === 'string' && Object.hasOwn(DTYPE_BYTES, s);
}

/** True for F64/F32/F16/BF16 (decoded to float32); false for integer and bool dtypes (int32). */
export function isFloatDtype(d: SafetensorsDtype): boolean {
  return d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';
}

/** Where an array came from, for error messages. */
export interface DecodeContext {
  /** Tensor name. */
  name?: string;
  /** File (path or URL). */
  file?: string;
}

// ---------------------------------------------------------------------------------------------
// Bit-level helpers (shared scratch buffers; single-threaded JS makes this safe)

const scratch = new ArrayBuffer(4);
const scratchF32 = new Float32Array(scratch);
const scratchU32 = new Uint32Array(scratch);

/** True on little-endian hosts (all mainstream ones); big-endian hosts take a DataView path. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The IEEE binary32 bit pattern of `x` (rounded to float32 first). */
export function float32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The float32 whose bit pattern is `bits`. */
export function float32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

/** Decodes one IEEE binary16 bit pattern exactly (subnormals, ±inf, NaN payload kept). */
export function f16BitsToFloat32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return float32FromBits(sign | 0x7f800000 | (mant << 13)); // inf / NaN
  if (exp !== 0) return float32FromBits(sign | ((exp + 112) << 23) | (mant << 13)); // normal
  if (mant === 0) return float32FromBits(sign); // ±0
  // Subnormal half = normal float32: shift the leading 1 into the implicit position.
  let e = 113; // exponent of 2^-14 (the subnormal scale) in float32 bias, before normalising
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return float32FromBits(sign | (e << 23) | ((mant & 0x3ff) << 13));
}

/**
 * float32 → IEEE binary16 bit pattern, rounding to nearest, ties to even. Overflow gives ±inf,
 * underflow gives (signed) subnormals or zero, NaN stays a (quiet) NaN with its top payload bits.
 */
export function float32ToF16Bits(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 127 + 15; // biased half exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half of the smallest subnormal: ±0
    mant |= 0x800000; // make the implicit bit explicit
    const shift = 14 - e; // 13 mantissa bits plus (1 - e) denormalising shifts, 14..24
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const up = rem > halfway || (rem === halfway && (half & 1) === 1);
    return sign | (half + (up ? 1 : 0)); // a carry into bit 10 is the smallest normal: correct
  }
  const r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  const up = rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1);
  return sign | (r + (up ? 1 : 0)); // a carry into the exponent rounds up to ±inf: correct
}

/** Decodes one bfloat16 bit pattern (the upper 16 bits of a float32). */
export function bf16BitsToFloat32(h: number): number {
  return float32FromBits((h & 0xffff) << 16);
}

/** float32 → bfloat16 bit pattern, rounding to nearest, ties to even; NaN stays NaN (quiet). */
export function float32ToBF16Bits(x: number): number {
  const bits = float32Bits(x);
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x0040) & 0xffff;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff; // never wraps: max non-NaN is 0xff800000
}

let f16Table: Float32Array | undefined;

/** All 65,536 half values, built once on first use. */
function f16Lookup(): Float32Array {
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToFloat32(h);
  }
  return f16Table;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Number of elements in `bytes` for `dtype`, or a SIZE_MISMATCH error. */
function elementCount(bytes: Uint8Array, dtype: SafetensorsDtype, ctx: DecodeContext): number {
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new ParaError('SIZE_MISMATCH', `${dtype} data is not a whole number of elements`, {
      file: ctx.file,
      field: ctx.name,
      expected: `a multiple of ${size} bytes`,
      actual: `${bytes.byteLength} bytes`,
    });
  }
  return bytes.byteLength / size;
}

/** `bytes` at an offset aligned to `size` (a copy only when the offset is unaligned). */
function aligned(bytes: Uint8Array, size: number): Uint8Array {
  return bytes.byteOffset % size === 0 ? bytes : bytes.slice();
}

/** Native-endian typed view of little-endian bytes (assumes a little-endian host). */
function view<T>(
  Ctor: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T,
  bytes: Uint8Array,
  size: number,
): T {
  const a = aligned(bytes, size);
  return new Ctor(a.buffer, a.byteOffset, a.byteLength / size);
}

/**
 * Decodes F32/F16/BF16/F64 bytes to float32 (F64 is rounded). The result may share memory with
 * `bytes` (F32 with an aligned offset), so do not reuse `bytes` afterwards.
 */
export function decodeFloat(
  bytes: Uint8Array,
  dtype: SafetensorsDtype,
  ctx: DecodeContext = {},
): Float32Array {
  const n = elementCount(bytes, dtype, ctx);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      if (HOST_LITTLE_ENDIAN) return view(Float32Array, bytes, 4);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      if (HOST_LITTLE_ENDIAN) return Float32Array.from(view(Float64Array, bytes, 8));
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    case 'F16': {
      const table = f16Lookup();
      const out = new Float32Array(n);
      if (HOST_LITTLE_ENDIAN) {
        const h = view(Uint16Array, bytes, 2);
        for (let i = 0; i < n; i++) out[i] = table[h[i]!]!;
      } else {
        for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(2 * i, true)]!;
      }
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(n);
      const outBits = new Uint32Array(out.buffer);
      if (HOST_LITTLE_ENDIAN) {
        const h = view(Uint16Array, bytes, 2);
        for (let i = 0; i < n; i++) outBits[i] = h[i]! << 16;
      } else {
        for (let i = 0; i < n; i++) outBits[i] = dv.getUint16(2 * i, true) << 16;
      }
      return out;
    }
    default:
      throw new ParaError('UNKNOWN_DTYPE', `${dtype} is not a float dtype`, {
        file: ctx.file,
        field: ctx.name,
        expected: 'F32, F16, BF16 or F64',
        actual: dtype,
      });
  }
}

/**
 * Decodes I32/I64/I16/U16/I8/U8/BOOL bytes to int32 (BOOL: nonzero → 1). I64 values outside the
 * int32 range raise UNSUPPORTED naming the tensor. May share memory with `bytes` (aligned I32).
 */
export function decodeInt(
  bytes: Uint8Array,
  dtype: SafetensorsDtype,
  ctx: DecodeContext = {},
): Int32Array {
  const n = elementCount(bytes, dtype, ctx);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = dtype === 'I32' && HOST_LITTLE_ENDIAN ? undefined : new Int32Array(n);
  switch (dtype) {
    case 'I32':
      if (out === undefined) return view(Int32Array, bytes, 4);
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
      return out;
    case 'I64':
      for (let i = 0; i < n; i++) {
        const lo = dv.getInt32(8 * i, true);
        const hi = dv.getInt32(8 * i + 4, true);
        if (hi !== lo >> 31) {
          throw new ParaError('UNSUPPORTED', `I64 value at index ${i} does not fit in int32`, {
            file: ctx.file,
            field: ctx.name,
            expected: 'values in [-2147483648, 2147483647]',
            actual: dv.getBigInt64(8 * i, true).toString(),
          });
        }
        out![i] = lo;
      }
      return out!;
    case 'I16':
      for (let i = 0; i < n; i++) out![i] = dv.getInt16(2 * i, true);
      return out!;
    case 'U16':
      for (let i = 0; i < n; i++) out![i] = dv.getUint16(2 * i, true);
      return out!;
    case 'I8':
      out!.set(new Int8Array(bytes.buffer, bytes.byteOffset, n));
      return out!;
    case 'U8':
      out!.set(bytes);
      return out!;
    case 'BOOL':
      for (let i = 0; i < n; i++) out![i] = bytes[i] === 0 ? 0 : 1;
      return out!;
    default:
      throw new ParaError('UNKNOWN_DTYPE', `${dtype} is not an integer dtype`, {
        file: ctx.file,
        field: ctx.name,
        expected: 'I64, I32, I16, U16, I8, U8 or BOOL',
        actual: dtype,
      });
  }
}

/** Decodes to what tfjs takes: Float32Array for float dtypes, Int32Array for the rest. */
export function decodeTensorData(
  bytes: Uint8Array,
  dtype: SafetensorsDtype,
  ctx: DecodeContext = {},
): Float32Array | Int32Array {
  return isFloatDtype(dtype) ? decodeFloat(bytes, dtype, ctx) : decodeInt(bytes, dtype, ctx);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** Numeric values accepted for encoding. */
export type NumericArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint32Array
  | Uint16Array
  | Uint8Array
  | Uint8ClampedArray
  | BigInt64Array
  | readonly number[];

const INT_RANGE: Partial<Record<SafetensorsDtype, readonly [number, number]>> = {
  I64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  I32: [-0x80000000, 0x7fffffff],
  I16: [-0x8000, 0x7fff],
  U16: [0, 0xffff],
  I8: [-0x80, 0x7f],
  U8: [0, 0xff],
  BOOL: [0, 1],
};

/**
 * Encodes `values` as little-endian `dtype` into `out` (exactly `values.length × size` bytes).
 * Floats are rounded to the dtype (F16/BF16: to nearest, ties to even); integer dtypes need
 * integer values in range, else INVALID_ARGUMENT naming the tensor.
 */
export function encodeInto(
  out: Uint8Array,
  values: NumericArray,
  dtype: SafetensorsDtype,
  ctx: DecodeContext = {},
): void {
  const n = values.length;
  const size = DTYPE_BYTES[dtype];
  if (out.byteLength !== n * size) {
    throw new ParaError('SIZE_MISMATCH', 'output buffer has the wrong size', {
      file: ctx.file,
      field: ctx.name,
      expected: `${n * size} bytes`,
      actual: `${out.byteLength} bytes`,
    });
  }
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (values instanceof BigInt64Array) {
    encodeBigInts(dv, values, dtype, ctx);
    return;
  }
  if (HOST_LITTLE_ENDIAN && sameLayout(values, dtype)) {
    const src = values as ArrayBufferView;
    out.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    return;
  }
  const v = values as ArrayLike<number>;
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, v[i]!, true);
      return;
    case 'F64':
      for (let i = 0; i < n; i++) dv.setFloat64(8 * i, v[i]!, true);
      return;
    case 'F16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, float32ToF16Bits(v[i]!), true);
      return;
    case 'BF16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, float32ToBF16Bits(v[i]!), true);
      return;
    default:
      break;
  }
  const [lo, hi] = INT_RANGE[dtype]!;
  for (let i = 0; i < n; i++) {
    const x = v[i]!;
    if (!Number.isInteger(x) || x < lo || x > hi) {
      throw new ParaError('INVALID_ARGUMENT', `value at index ${i} cannot be stored as ${dtype}`, {
        file: ctx.file,
        field: ctx.name,
        expected: `an integer in [${lo}, ${hi}]`,
        actual: String(x),
      });
    }
    switch (dtype) {
      case 'I64':
        dv.setBigInt64(8 * i, BigInt(x), true);
        break;
      case 'I32':
        dv.setInt32(4 * i, x, true);
        break;
      case 'I16':
        dv.setInt16(2 * i, x, true);
        break;
      case 'U16':
        dv.setUint16(2 * i, x, true);
        break;
      case 'I8':
        dv.setInt8(i, x);
        break;
      default: // U8, BOOL
        dv.setUint8(i, x);
    }
  }
}

/** True when `values` already hold `dtype`'s elements, so their bytes can be copied as-is. */
function sameLayout(values: NumericArray, dtype: SafetensorsDtype): boolean {
  switch (dtype) {
    case 'F32':
      return values instanceof Float32Array;
    case 'F64':
      return values instanceof Float64Array;
    case 'I32':
      return values instanceof Int32Array;
    case 'I16':
      return values instanceof Int16Array;
    case 'U16':
      return values instanceof Uint16Array;
    case 'I8':
      return values instanceof Int8Array;
    case 'U8':
      return values instanceof Uint8Array || values instanceof Uint8ClampedArray;
    default:
      return false;
  }
}

/** BigInt64Array values: only I64 takes them as they are. */
function encodeBigInts(
  dv: DataView,
  values: BigInt64Array,
  dtype: SafetensorsDtype,
  ctx: DecodeContext,
): void {
  if (dtype !== 'I64') {
    throw new ParaError('INVALID_ARGUMENT', `BigInt64Array data can only be written as I64`, {
      file: ctx.file,
      field: ctx.name,
      expected: 'dtype I64',
      actual: dtype,
    });
  }
  for (let i = 0; i < values.length; i++) dv.setBigInt64(8 * i, values[i]!, true);
}

/** Encodes float32 values as F32/F16/BF16 little-endian bytes (a new array). */
export function encodeFloat32(values: Float32Array, dtype: FloatStorageDtype): Uint8Array {
  const out = new Uint8Array(values.length * DTYPE_BYTES[dtype]);
  encodeInto(out, values, dtype);
  return out;
}
