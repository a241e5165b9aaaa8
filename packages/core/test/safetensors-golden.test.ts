/**
 * Files written by the reference implementation (Python safetensors 0.8.0 + numpy; see
 * fixtures-safetensors/gen_golden.py): we must read them, and write the same bytes.
 */
import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ArrayBufferSource,
  decodeFloat,
  encodeFloat32,
  SafetensorsReader,
  serializeSafetensors,
  type WritableTensor,
} from '../src/safetensors';

const fixture = (name: string) =>
  readFile(new URL(`./fixtures-safetensors/${name}`, import.meta.url)).then(
    (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
  );

beforeAll(async () => {
  await tf.setBackend('cpu');
});

// The tensors gen_golden.py saves, as this package's writer takes them.
const GOLDEN: Record<string, WritableTensor> = {
  f64: { dtype: 'F64', shape: [3], data: new Float64Array([1.5, -2.25, 1e300]) },
  f32: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 0.5, 3.25, -0, 1e-45]) },
  f16: { dtype: 'F16', shape: [4], data: [1, 65504, -0.5, 2 ** -24] },
  i64: { dtype: 'I64', shape: [3], data: [-2147483648, 2147483647, 7] },
  i32: { dtype: 'I32', shape: [3], data: new Int32Array([-5, 0, 123456789]) },
  i16: { dtype: 'I16', shape: [2], data: [-32768, 32767] },
  u16: { dtype: 'U16', shape: [2], data: [0, 65535] },
  i8: { dtype: 'I8', shape: [3], data: [-128, 127, -1] },
  u8: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 255, 3]) },
  bool: { dtype: 'BOOL', shape: [3], data: [1, 0, 1] },
  scalar: { dtype: 'F32', shape: [], data: [2.5] },
  empty: { dtype: 'F32', shape: [0, 3], data: [] },
};

describe('python-golden.safetensors', () => {
  it('reads every tensor with the values Python wrote', async () => {
    const r = await SafetensorsReader.open(
      new ArrayBufferSource(await fixture('python-golden.safetensors'), 'golden'),
    );
    expect(r.metadata).toEqual({ format: 'np' });
    expect(r.names()).toEqual(Object.keys(GOLDEN).sort());
    const want: Record<string, number[]> = {
      f64: [1.5, -2.25, Number.POSITIVE_INFINITY],
      f32: [1, -2, 0.5, 3.25, -0, Math.fround(1e-45)],
      f16: [1, 65504, -0.5, 2 ** -24],
      i64: [-2147483648, 2147483647, 7],
      i32: [-5, 0, 123456789],
      i16: [-32768, 32767],
      u16: [0, 65535],
      i8: [-128, 127, -1],
      u8: [0, 255, 3],
      bool: [1, 0, 1],
      scalar: [2.5],
      empty: [],
    };
    for (const [name, values] of Object.entries(want)) {
      const spec = GOLDEN[name] as { dtype: string; shape: number[] };
      expect(r.info(name).dtype, name).toBe(spec.dtype);
      const t = await r.readTensor(name);
      expect(t.shape, name).toEqual(spec.shape);
      const got = Array.from(await t.data());
      expect(
        got.map((x) => (Object.is(x, -0) ? '-0' : x)),
        name,
      ).toEqual(values.map((x) => (Object.is(x, -0) ? '-0' : x)));
      t.dispose();
    }
  });

  it('is reproduced byte for byte by serializeSafetensors', async () => {
    const ours = await serializeSafetensors(GOLDEN, { metadata: { format: 'np' } });
    const theirs = await fixture('python-golden.safetensors');
    expect(new TextDecoder().decode(ours.subarray(0, 400))).toBe(
      new TextDecoder().decode(theirs.subarray(0, 400)),
    );
    expect(ours.byteLength).toBe(theirs.byteLength);
    expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
  });
});

describe('python-f16.safetensors (numpy float32 → float16 rounding)', () => {
  it('our F16 encoder and decoder agree with numpy on 3,000+ values', async () => {
    const r = await SafetensorsReader.open(
      new ArrayBufferSource(await fixture('python-f16.safetensors'), 'f16'),
    );
    const x = (await r.readData('x')).data as Float32Array;
    const x16 = (await r.readRaw('x16')).bytes;
    const asF32 = (await r.readData('x16_as_f32')).data as Float32Array;
    expect(x.length).toBeGreaterThan(3000);

    const ours = encodeFloat32(x, 'F16');
    const mismatches: string[] = [];
    for (let i = 0; i < x.length; i++) {
      const a = ours[2 * i]! | (ours[2 * i + 1]! << 8);
      const b = x16[2 * i]! | (x16[2 * i + 1]! << 8);
      if (a !== b) mismatches.push(`${x[i]}: ours 0x${a.toString(16)}, numpy 0x${b.toString(16)}`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);

    const decoded = decodeFloat(x16, 'F16');
    const u = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
    expect(Array.from(u(decoded))).toEqual(Array.from(u(asF32)));
  });
});
