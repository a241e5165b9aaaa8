import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ArrayBufferSource,
  parseSafetensorsHeader,
  type SafetensorsDtype,
  SafetensorsReader,
  serializeSafetensors,
  type WritableTensor,
} from '../src/safetensors';
import { buildFile, CountingSource, expectParaError, rejection } from './safetensors-helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const FILE = 'bad.safetensors';
const open = (bytes: Uint8Array, name = FILE) =>
  SafetensorsReader.open(new ArrayBufferSource(bytes, name));
const roundTrip = async (t: Record<string, WritableTensor>, opts = {}) =>
  open(await serializeSafetensors(t, opts), 'rt.safetensors');
const u32 = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe('a file built byte by byte', () => {
  // Header exactly as the Python library writes it: metadata first, no spaces, padded to 8.
  const json =
    '{"__metadata__":{"format":"pt"},' +
    '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}';
  const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
  const data = new Uint8Array([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 1, 2, 3]); // 1.0f, -2.0f, 1 2 3
  const bytes = buildFile(padded, data);

  it('parses', async () => {
    const h = parseSafetensorsHeader(bytes, bytes.byteLength, 'fixture');
    expect(h.headerLength).toBe(padded.length);
    expect(h.headerLength % 8).toBe(0);
    expect(h.dataStart).toBe(8 + padded.length);
    expect([...h.tensors.values()]).toEqual([
      { name: 'a', dtype: 'F32', shape: [2], begin: 0, end: 8 },
      { name: 'b', dtype: 'U8', shape: [3], begin: 8, end: 11 },
    ]);

    const r = await open(bytes, 'fixture');
    expect(r.names()).toEqual(['a', 'b']);
    expect(r.metadata).toEqual({ format: 'pt' });
    expect(r.info('b')).toEqual({ dtype: 'U8', shape: [3], byteLength: 3 });
    const a = await r.readTensor('a');
    const b = await r.readTensor('b');
    expect(a.dtype).toBe('float32');
    expect(b.dtype).toBe('int32');
    expect(Array.from(await a.data())).toEqual([1, -2]);
    expect(Array.from(await b.data())).toEqual([1, 2, 3]);
    tf.dispose([a, b]);
  });

  it('is what the writer produces for the same tensors', async () => {
    const a = tf.tensor1d([1, -2]); // [2]
    const out = await serializeSafetensors(
      { b: { dtype: 'U8', shape: [3], data: [1, 2, 3] }, a },
      { metadata: { format: 'pt' } },
    );
    a.dispose();
    expect(Array.from(out)).toEqual(Array.from(bytes));
  });
});

describe('round trips', () => {
  it('F32 is bit-exact, including NaN payloads, ±inf, -0 and subnormals', async () => {
    const bits = new Uint32Array([
      0x3f800000, 0x7fc00000, 0x7fc00123, 0xffc00001, 0x7f800000, 0xff800000, 0x80000000,
      0x00000001, 0x807fffff, 0x7f7fffff,
    ]);
    const values = new Float32Array(bits.buffer);
    const r = await roundTrip({ w: { dtype: 'F32', shape: [2, 5], data: values } });
    const { data, shape, dtype } = await r.readData('w');
    expect(dtype).toBe('F32');
    expect(shape).toEqual([2, 5]);
    expect(u32(data as Float32Array)).toEqual(Array.from(bits));
  });

  it('float32 tf tensors written as F16 and BF16 decode to the rounded values', async () => {
    const x = tf.tensor2d([1, 0.1, 65504, 1e6, -3, 2 ** -24], [2, 3]); // [2, 3]
    for (const dtype of ['F16', 'BF16'] as const) {
      const r = await roundTrip({ x }, { dtype });
      expect(r.info('x')).toEqual({ dtype, shape: [2, 3], byteLength: 12 });
      const raw = await r.readRaw('x');
      const words = Array.from(new Uint16Array(raw.bytes.buffer, raw.bytes.byteOffset, 6));
      const t = await r.readTensor('x');
      const got = Array.from(await t.data());
      t.dispose();
      if (dtype === 'F16') {
        expect(words).toEqual([0x3c00, 0x2e66, 0x7bff, 0x7c00, 0xc200, 0x0001]);
        expect(got).toEqual([1, 0.0999755859375, 65504, Number.POSITIVE_INFINITY, -3, 2 ** -24]);
      } else {
        expect(words).toEqual([0x3f80, 0x3dcd, 0x4780, 0x4974, 0xc040, 0x3380]); // 65504 rounds up
        expect(got).toEqual([1, 0.10009765625, 65536, 999424, -3, 2 ** -24]);
      }
    }
    x.dispose();
  });

  it('every dtype round-trips through values, and tf int32/bool tensors keep their kind', async () => {
    const cases: [SafetensorsDtype, number[] | BigInt64Array, number[]][] = [
      ['F64', [1.5, -2.25, 1e300], [1.5, -2.25, Number.POSITIVE_INFINITY]],
      ['F32', [0.5, -1, 3], [0.5, -1, 3]],
      ['F16', [0.5, -1, 3], [0.5, -1, 3]],
      ['BF16', [0.5, -1, 3], [0.5, -1, 3]],
      ['I64', new BigInt64Array([-(2n ** 31n), 5n, 2n ** 31n - 1n]), [-(2 ** 31), 5, 2 ** 31 - 1]],
      ['I32', [-(2 ** 31), 0, 2 ** 31 - 1], [-(2 ** 31), 0, 2 ** 31 - 1]],
      ['I16', [-32768, 1, 32767], [-32768, 1, 32767]],
      ['U16', [0, 1, 65535], [0, 1, 65535]],
      ['I8', [-128, 1, 127], [-128, 1, 127]],
      ['U8', [0, 128, 255], [0, 128, 255]],
      ['BOOL', [1, 0, 1], [1, 0, 1]],
    ];
    const tensors: Record<string, WritableTensor> = {};
    for (const [dtype, data] of cases) tensors[`t_${dtype}`] = { dtype, shape: [3], data };
    const ti = tf.tensor1d([7, -8], 'int32'); // [2]
    const tb = tf.tensor1d([true, false], 'bool'); // [2]
    const r = await roundTrip({ ...tensors, ti, tb });

    for (const [dtype, , want] of cases) {
      expect(r.info(`t_${dtype}`).dtype).toBe(dtype);
      const t = await r.readTensor(`t_${dtype}`);
      expect(t.dtype, dtype).toBe(
        ['F64', 'F32', 'F16', 'BF16'].includes(dtype) ? 'float32' : 'int32',
      );
      expect(Array.from(await t.data()), dtype).toEqual(want);
      t.dispose();
    }
    expect(r.info('ti').dtype).toBe('I32');
    expect(r.info('tb').dtype).toBe('BOOL');
    expect(Array.from((await r.readData('ti')).data)).toEqual([7, -8]);
    expect(Array.from((await r.readData('tb')).data)).toEqual([1, 0]);
    tf.dispose([ti, tb]);
  });

  it('reports I64 values outside int32 when reading, naming the tensor', async () => {
    const r = await roundTrip({
      ids: { dtype: 'I64', shape: [2], data: new BigInt64Array([1n, 2n ** 31n]) },
    });
    expectParaError(await rejection(r.readTensor('ids')), 'UNSUPPORTED', 'rt.safetensors', 'ids');
  });

  it('keeps metadata, scalars, empty tensors and awkward names', async () => {
    const metadata = { format: 'pt', ключ: 'значение 🙂', __proto__x: 'p', '0': 'zero' };
    const s = tf.scalar(2.5); // []
    const e = tf.zeros([0, 3]); // [0, 3]
    // A computed key: a literal `__proto__:` would set the prototype instead.
    const r = await roundTrip({ s, e, '10': s, '9': s, '🙂': s, ['__proto__']: s }, { metadata });
    expect(r.metadata).toEqual(metadata);
    expect(r.names()).toEqual(['10', '9', '__proto__', 'e', 's', '🙂']);
    expect(r.info('s')).toEqual({ dtype: 'F32', shape: [], byteLength: 4 });
    expect(r.info('e')).toEqual({ dtype: 'F32', shape: [0, 3], byteLength: 0 });
    const all = await r.readAll();
    expect(Object.keys(all).sort()).toEqual(['10', '9', '__proto__', 'e', 's', '🙂'].sort());
    expect(Object.hasOwn(all, '__proto__')).toBe(true);
    expect(all.e?.shape).toEqual([0, 3]);
    expect(await all['🙂']?.data()).toEqual(new Float32Array([2.5]));
    tf.dispose([s, e, ...Object.values(all)]);
  });

  it('lays tensors out widest dtype first, then by name, aligned to their element size', async () => {
    const out = await serializeSafetensors({
      b: { dtype: 'U8', shape: [3], data: [1, 2, 3] },
      z: { dtype: 'F32', shape: [1], data: [1] },
      a: { dtype: 'F32', shape: [1], data: [2] },
      h: { dtype: 'F16', shape: [1], data: [1] },
      l: { dtype: 'I64', shape: [1], data: [1] },
    });
    const r = await open(out);
    expect([...r.header.tensors.keys()]).toEqual(['l', 'a', 'z', 'h', 'b']);
    expect(r.header.dataStart % 8).toBe(0);
    for (const e of r.header.tensors.values())
      expect(e.begin % Math.min(e.end - e.begin, 8)).toBe(0);
  });

  it('readAll leaves no tensors behind when a read fails', async () => {
    const r = await roundTrip({
      a: { dtype: 'F32', shape: [1], data: [1] },
      ids: { dtype: 'I64', shape: [1], data: new BigInt64Array([2n ** 40n]) },
    });
    const before = tf.memory().numTensors;
    await rejection(r.readAll());
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('malformed files give typed errors naming the file and field', () => {
  const f32 = (shape: number[], offsets: number[]) => ({
    dtype: 'F32',
    shape,
    data_offsets: offsets,
  });

  it('file shorter than 8 bytes → FILE_TRUNCATED', async () => {
    expectParaError(await rejection(open(new Uint8Array(5))), 'FILE_TRUNCATED', FILE);
  });

  it('header length past the end of the file → FILE_TRUNCATED', async () => {
    const e = await rejection(open(buildFile('{}', 0, { length: 1000n })));
    expectParaError(e, 'FILE_TRUNCATED', FILE, 'header length');
  });

  it('absurd header length → INVALID_HEADER without allocating it', async () => {
    for (const length of [2n ** 40n, 100_000_001n, 2n ** 64n - 1n]) {
      const e = await rejection(open(buildFile('{}', 0, { length })));
      expectParaError(e, 'INVALID_HEADER', FILE, 'header length');
    }
  });

  it.each([
    ['broken JSON', '{"a": '],
    ['a JSON array', '[1, 2]'],
    ['a JSON string', '"x"'],
    ['null', 'null'],
    ['empty header', ''],
  ])('%s → INVALID_JSON', async (_, header) => {
    expectParaError(await rejection(open(buildFile(header))), 'INVALID_JSON', FILE, 'header');
  });

  it('invalid UTF-8 → INVALID_JSON', async () => {
    const bytes = buildFile('{"a":1}');
    bytes[10] = 0xff;
    expectParaError(await rejection(open(bytes)), 'INVALID_JSON', FILE, 'header');
  });

  it.each([
    ['entry not an object', { w: 5 }],
    ['entry an array', { w: [1] }],
    ['missing dtype', { w: { shape: [1], data_offsets: [0, 4] } }],
    ['dtype not a string', { w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }],
    ['missing shape', { w: { dtype: 'F32', data_offsets: [0, 4] } }],
    ['negative dim', { w: f32([-1], [0, 4]) }],
    ['fractional dim', { w: f32([1.5], [0, 4]) }],
    ['shape a string', { w: { dtype: 'F32', shape: '1', data_offsets: [0, 4] } }],
    ['missing data_offsets', { w: { dtype: 'F32', shape: [1] } }],
    ['three offsets', { w: f32([1], [0, 4, 8]) }],
    ['negative offset', { w: f32([1], [-4, 0]) }],
  ])('%s → INVALID_HEADER', async (_, header) => {
    expectParaError(await rejection(open(buildFile(header, 4))), 'INVALID_HEADER', FILE, 'w');
  });

  it('unknown dtype → UNKNOWN_DTYPE', async () => {
    const h = { w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } };
    const e = await rejection(open(buildFile(h, 4)));
    expectParaError(e, 'UNKNOWN_DTYPE', FILE, 'w');
    expect(e.message).toContain('F8_E4M3');
  });

  it.each([
    ['end before begin', { w: f32([0], [8, 0]) }, 8, 'w'],
    ['overlap', { a: f32([2], [0, 8]), w: f32([2], [4, 12]) }, 12, 'w'],
    ['gap', { a: f32([2], [0, 8]), w: f32([2], [12, 20]) }, 20, 'w'],
    ['not starting at 0', { w: f32([2], [4, 12]) }, 12, 'w'],
    ['trailing bytes after the data', { w: f32([2], [0, 8]) }, 9, 'w'],
    ['data cut short', { a: f32([1], [0, 4]), w: f32([2], [4, 12]) }, 10, 'w'],
    ['no tensors but data', {}, 4, 'data_offsets'],
  ])('%s → BAD_OFFSETS', async (_, header, dataBytes, field) => {
    const e = await rejection(open(buildFile(header, dataBytes)));
    expectParaError(e, 'BAD_OFFSETS', FILE, field);
  });

  it('byte size ≠ product(shape) × dtype size → SIZE_MISMATCH', async () => {
    const e = await rejection(open(buildFile({ w: f32([3], [0, 8]) }, 8)));
    expectParaError(e, 'SIZE_MISMATCH', FILE, 'w');
    expect(e.message).toContain('12 bytes');
  });

  it('__metadata__ must map strings to strings → INVALID_HEADER', async () => {
    const e1 = await rejection(open(buildFile({ __metadata__: { k: 1 } })));
    expectParaError(e1, 'INVALID_HEADER', FILE, '__metadata__.k');
    const e2 = await rejection(open(buildFile({ __metadata__: ['x'] })));
    expectParaError(e2, 'INVALID_HEADER', FILE, '__metadata__');
  });

  it('a good file with trailing spaces in the header and zero tensors parses', async () => {
    const r = await open(buildFile('{"__metadata__":{"k":"v"}}   \n  '));
    expect(r.names()).toEqual([]);
    expect(r.metadata).toEqual({ k: 'v' });
  });

  it('an unknown tensor name → TENSOR_NOT_FOUND listing the nearest names', async () => {
    const r = await roundTrip({
      'layer.0.q': { dtype: 'F32', shape: [1], data: [1] },
      'layer.0.k': { dtype: 'F32', shape: [1], data: [1] },
      other: { dtype: 'F32', shape: [1], data: [1] },
    });
    const e = await rejection(r.readTensor('layer.0.v'));
    expectParaError(e, 'TENSOR_NOT_FOUND', 'rt.safetensors', 'layer.0.v');
    expect(e.message).toContain('"layer.0.k"');
    expect(() => r.info('nope')).toThrow(/nope/);
  });
});

describe('the writer rejects bad input', () => {
  it.each([
    ['data length ≠ shape', { w: { dtype: 'F32', shape: [2], data: [1] } }, 'SHAPE_MISMATCH'],
    [
      'raw bytes of the wrong size',
      { w: { dtype: 'F32', shape: [2], bytes: new Uint8Array(4) } },
      'SIZE_MISMATCH',
    ],
    ['an unknown dtype', { w: { dtype: 'F8', shape: [1], data: [1] } }, 'UNKNOWN_DTYPE'],
    ['a bad shape', { w: { dtype: 'F32', shape: [-1], data: [] } }, 'INVALID_ARGUMENT'],
    ['out-of-range integers', { w: { dtype: 'U8', shape: [1], data: [300] } }, 'INVALID_ARGUMENT'],
  ])('%s', async (_, tensors, code) => {
    const e = await rejection(serializeSafetensors(tensors as Record<string, WritableTensor>));
    expect(e.code).toBe(code);
    expect(e.field).toBe('w');
  });

  it('string tensors, non-string metadata and disposed tensors', async () => {
    const s = tf.tensor1d(['a'], 'string'); // [1]
    expect((await rejection(serializeSafetensors({ s }))).code).toBe('UNSUPPORTED');
    s.dispose();
    const meta = { k: 1 } as unknown as Record<string, string>;
    const e = await rejection(serializeSafetensors({}, { metadata: meta }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.field).toBe('__metadata__.k');
    const d = tf.scalar(1);
    d.dispose();
    expect((await rejection(serializeSafetensors({ d }))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('lazy reading', () => {
  it('open reads only the prefix and the header; a tensor read reads only that tensor', async () => {
    const big = new Float32Array(256 * 1024); // [512, 512], 1 MiB
    big[7] = 42;
    const bytes = await serializeSafetensors({
      big: { dtype: 'F32', shape: [512, 512], data: big },
      small: { dtype: 'F32', shape: [2], data: [3, 4] },
    });
    const src = new CountingSource(new ArrayBufferSource(bytes, 'big.safetensors'));
    const r = await SafetensorsReader.open(src);
    expect(src.reads.length).toBe(2);
    expect(src.reads[0]).toEqual([0, 8]);
    expect(src.bytesRead).toBe(r.header.dataStart);
    expect(src.bytesRead).toBeLessThan(200);
    expect(bytes.byteLength).toBeGreaterThan(1_000_000);

    const t = await r.readTensor('small');
    expect(Array.from(await t.data())).toEqual([3, 4]);
    t.dispose();
    expect(src.reads.at(-1)).toEqual([
      r.header.dataStart + r.header.tensors.get('small')!.begin,
      8,
    ]);
    expect(src.bytesRead).toBeLessThan(200);

    await r.close();
    expect(src.closed).toBe(true);
    expect((await rejection(r.readRaw('small'))).code).toBe('IO_ERROR');
  });

  it('open closes the source when the header is bad', async () => {
    const src = new CountingSource(new ArrayBufferSource(buildFile('nope'), FILE));
    await rejection(SafetensorsReader.open(src));
    expect(src.closed).toBe(true);
  });
});
