/** Node file access: FileSource, checkpoint directories (single and sharded), atomic writes. */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FileSource,
  openCheckpoint,
  openSafetensorsFile,
  writeFileAtomic,
  writeSafetensorsFile,
} from '../src/node/safetensors-node';
import {
  openSafetensorsCheckpoint,
  parseShardIndex,
  SafetensorsReader,
  ShardedSafetensors,
  serializeSafetensors,
} from '../src/safetensors';
import { CountingSource, expectParaError, rejection } from './safetensors-helpers';

let root: string;
let n = 0;
/** A fresh empty directory under the test's temp root. */
async function freshDir(): Promise<string> {
  const d = path.join(root, `d${n++}`);
  await mkdir(d);
  return d;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(tmpdir(), 'para-safetensors-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('files', () => {
  it('writes atomically and reads back; the file equals serializeSafetensors', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'adapter_model.safetensors');
    const w = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 6],
    ]); // [2, 3]
    const ids = tf.tensor1d([3, -1], 'int32'); // [2]
    await writeSafetensorsFile(file, { w, ids }, { metadata: { format: 'pt' }, dtype: 'BF16' });
    expect(await readdir(dir)).toEqual(['adapter_model.safetensors']);
    const expected = await serializeSafetensors(
      { w, ids },
      { metadata: { format: 'pt' }, dtype: 'BF16' },
    );
    expect(Buffer.from(await readFile(file)).equals(Buffer.from(expected))).toBe(true);

    const r = await openSafetensorsFile(file);
    expect(r.name).toBe(file);
    expect(r.info('w')).toEqual({ dtype: 'BF16', shape: [2, 3], byteLength: 12 });
    expect(r.metadata).toEqual({ format: 'pt' });
    const back = await r.readAll();
    expect(Array.from(await back.w!.data())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(back.ids!.dtype).toBe('int32');
    expect(Array.from(await back.ids!.data())).toEqual([3, -1]);
    await r.close();
    tf.dispose([w, ids, ...Object.values(back)]);
  });

  it('a missing file → FILE_NOT_FOUND with the path; a directory → IO_ERROR', async () => {
    const missing = path.join(root, 'nope', 'model.safetensors');
    expectParaError(await rejection(openSafetensorsFile(missing)), 'FILE_NOT_FOUND', missing);
    expectParaError(await rejection(FileSource.open(root)), 'IO_ERROR', root);
  });

  it('FileSource reads exact ranges and rejects ranges past the end', async () => {
    const file = path.join(await freshDir(), 'bytes.bin');
    await writeFile(
      file,
      Uint8Array.from({ length: 100 }, (_, i) => i),
    );
    const src = await FileSource.open(file);
    expect(await src.size()).toBe(100);
    expect(Array.from(await src.read(97, 3))).toEqual([97, 98, 99]);
    expectParaError(await rejection(src.read(98, 3)), 'FILE_TRUNCATED', file);
    await src.close();
    expectParaError(await rejection(src.read(0, 1)), 'IO_ERROR', file);
  });

  it('a truncated file on disk → a typed error naming it', async () => {
    const file = path.join(await freshDir(), 'cut.safetensors');
    const full = await serializeSafetensors({
      w: { dtype: 'F32', shape: [4], data: [1, 2, 3, 4] },
    });
    await writeFile(file, full.subarray(0, full.byteLength - 3));
    expectParaError(await rejection(openSafetensorsFile(file)), 'BAD_OFFSETS', file, 'w');
  });
});

describe('atomic writes', () => {
  it('leave no temp files and replace the target whole', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'config.json');
    await writeFileAtomic(file, '{"a":1}');
    await writeFileAtomic(file, '{"a":2}');
    expect(await readFile(file, 'utf8')).toBe('{"a":2}');
    expect(await readdir(dir)).toEqual(['config.json']);
  });

  it('into a missing directory → IO_ERROR naming the path, nothing created', async () => {
    const dir = path.join(root, 'missing-dir');
    const file = path.join(dir, 'model.safetensors');
    const e = await rejection(writeSafetensorsFile(file, { w: tf.scalar(1) }));
    expectParaError(e, 'IO_ERROR', file);
    expect(await rejection(readdir(dir))).toBeInstanceOf(Error);
  });

  it('a failure half-way through keeps the old file and removes the temp file', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'model.safetensors');
    await writeSafetensorsFile(file, { a: { dtype: 'F32', shape: [1], data: [1] } });
    const before = await readFile(file);

    // "a" (F32) is written first; "z" is a disposed tensor whose data read fails afterwards.
    const a = tf.zeros([1024]); // [1024]
    const z = tf.zeros([2], 'int32'); // [2]
    z.dispose();
    const e = await rejection(writeSafetensorsFile(file, { a, z }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.field).toBe('z');
    a.dispose();
    expect(Buffer.from(await readFile(file)).equals(before)).toBe(true);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
  });
});

describe('checkpoint directories', () => {
  /** Two shards plus an index in a fresh directory; returns the directory. */
  async function shardedDir(index?: unknown): Promise<string> {
    const dir = await freshDir();
    await writeSafetensorsFile(
      path.join(dir, 'model-00001-of-00002.safetensors'),
      {
        'model.embed_tokens.weight': { dtype: 'F32', shape: [3, 2], data: [1, 2, 3, 4, 5, 6] },
        'model.layers.0.self_attn.q_proj.weight': {
          dtype: 'F16',
          shape: [2, 2],
          data: [1, 0.5, -1, 2],
        },
      },
      { metadata: { format: 'pt' } },
    );
    await writeSafetensorsFile(path.join(dir, 'model-00002-of-00002.safetensors'), {
      'model.norm.weight': { dtype: 'BF16', shape: [2], data: [1, -2] },
    });
    const idx = index ?? {
      metadata: { total_size: 36 },
      weight_map: {
        'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
        'model.layers.0.self_attn.q_proj.weight': 'model-00001-of-00002.safetensors',
        'model.norm.weight': 'model-00002-of-00002.safetensors',
      },
    };
    await writeFileAtomic(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(idx));
    return dir;
  }

  it('loads two shards and an index', async () => {
    const dir = await shardedDir();
    const ckpt = await openCheckpoint(dir);
    expect(ckpt).toBeInstanceOf(ShardedSafetensors);
    expect(ckpt.names()).toEqual([
      'model.embed_tokens.weight',
      'model.layers.0.self_attn.q_proj.weight',
      'model.norm.weight',
    ]);
    const q = await ckpt.readTensor('model.layers.0.self_attn.q_proj.weight');
    expect(q.shape).toEqual([2, 2]);
    expect(Array.from(await q.data())).toEqual([1, 0.5, -1, 2]);
    const norm = await ckpt.readTensor('model.norm.weight');
    expect(Array.from(await norm.data())).toEqual([1, -2]);
    expect(await ckpt.info('model.embed_tokens.weight')).toEqual({
      dtype: 'F32',
      shape: [3, 2],
      byteLength: 24,
    });
    tf.dispose([q, norm]);
    const all = await (ckpt as ShardedSafetensors).readAll();
    expect(Object.keys(all).sort()).toEqual(ckpt.names());
    tf.dispose(Object.values(all));
    await ckpt.close();
  });

  it('opens each shard lazily and only once', async () => {
    const dir = await shardedDir();
    const opened: string[] = [];
    const ckpt = (await openSafetensorsCheckpoint({
      location: dir,
      exists: async (f) => f === 'model.safetensors.index.json',
      open: async (f) => {
        if (f !== 'model.safetensors.index.json') opened.push(f);
        return new CountingSource(await FileSource.open(path.join(dir, f)));
      },
    })) as ShardedSafetensors;
    expect(opened).toEqual([]);
    const reads = await Promise.all([
      ckpt.readTensor('model.embed_tokens.weight'),
      ckpt.readTensor('model.layers.0.self_attn.q_proj.weight'),
      ckpt.readTensor('model.embed_tokens.weight'),
    ]);
    expect(opened).toEqual(['model-00001-of-00002.safetensors']);
    tf.dispose(reads);
    await ckpt.verify();
    expect(opened).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    await ckpt.close();
  });

  it('a single model.safetensors wins; a file path opens that file', async () => {
    const dir = await shardedDir();
    const single = path.join(dir, 'model.safetensors');
    await writeSafetensorsFile(single, { w: { dtype: 'F32', shape: [1], data: [7] } });
    const a = await openCheckpoint(dir);
    expect(a).toBeInstanceOf(SafetensorsReader);
    expect(a.names()).toEqual(['w']);
    await a.close();
    const b = await openCheckpoint(path.join(dir, 'model-00002-of-00002.safetensors'));
    expect(b.names()).toEqual(['model.norm.weight']);
    await b.close();
    const e = await rejection(openCheckpoint(dir, { fileName: 'adapter_model.safetensors' }));
    expectParaError(e, 'FILE_NOT_FOUND', dir);
    expect(e.message).toContain('adapter_model.safetensors.index.json');
  });

  it('an empty directory → FILE_NOT_FOUND naming it and both file names', async () => {
    const dir = await freshDir();
    const e = await rejection(openCheckpoint(dir));
    expectParaError(e, 'FILE_NOT_FOUND', dir);
    expect(e.message).toContain('model.safetensors.index.json');
    expectParaError(await rejection(openCheckpoint(path.join(dir, 'x'))), 'FILE_NOT_FOUND', 'x');
  });

  it('bad indexes give typed errors naming the index file and field', async () => {
    const cases: [unknown, string, string | undefined][] = [
      [{ metadata: {} }, 'INVALID_HEADER', 'weight_map'],
      [{ weight_map: [] }, 'INVALID_HEADER', 'weight_map'],
      [{ weight_map: { w: '../evil.safetensors' } }, 'INVALID_HEADER', 'weight_map.w'],
      [{ weight_map: { w: '/etc/evil.safetensors' } }, 'INVALID_HEADER', 'weight_map.w'],
      [{ weight_map: { w: 'sub\\..\\..\\evil' } }, 'INVALID_HEADER', 'weight_map.w'],
      [{ weight_map: { w: 'https://evil.test/x' } }, 'INVALID_HEADER', 'weight_map.w'],
      [{ weight_map: { w: 3 } }, 'INVALID_HEADER', 'weight_map.w'],
      [{ weight_map: {}, metadata: 'x' }, 'INVALID_HEADER', 'metadata'],
      ['[1]', 'INVALID_JSON', undefined],
    ];
    for (const [index, code, field] of cases) {
      const dir = await freshDir();
      const file = path.join(dir, 'model.safetensors.index.json');
      await writeFile(file, typeof index === 'string' ? index : JSON.stringify(index));
      const e = await rejection(openCheckpoint(dir));
      expectParaError(e, code as 'INVALID_HEADER', file, field);
    }
    expectParaError(
      (() => {
        try {
          parseShardIndex('{"weight_map": {', 'idx.json');
        } catch (e) {
          return e;
        }
      })(),
      'INVALID_JSON',
      'idx.json',
    );
  });

  it('an index naming a missing shard or a tensor absent from its shard → typed errors', async () => {
    const dir = await shardedDir({
      weight_map: {
        'model.norm.weight': 'model-00003-of-00002.safetensors',
        ghost: 'model-00002-of-00002.safetensors',
      },
    });
    const ckpt = await openCheckpoint(dir);
    const missing = path.join(dir, 'model-00003-of-00002.safetensors');
    expectParaError(
      await rejection(ckpt.readTensor('model.norm.weight')),
      'FILE_NOT_FOUND',
      missing,
    );
    const shard2 = path.join(dir, 'model-00002-of-00002.safetensors');
    expectParaError(await rejection(ckpt.readTensor('ghost')), 'TENSOR_NOT_FOUND', shard2, 'ghost');
    expectParaError(
      await rejection(ckpt.readTensor('nope')),
      'TENSOR_NOT_FOUND',
      'index.json',
      'nope',
    );
    await ckpt.close();
  });
});
