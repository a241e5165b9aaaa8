/** The browser path: range requests through fetch, and sharded checkpoints over HTTP. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  FetchRangeSource,
  openSafetensorsCheckpoint,
  SafetensorsReader,
  ShardedSafetensors,
  serializeSafetensors,
  urlCheckpointAccess,
} from '../src/safetensors';
import { expectParaError, fakeServer, rejection } from './safetensors-helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const URL_ = 'https://models.test/m/model.safetensors';

/** A file with a big tensor nobody reads and a small one. */
async function file(): Promise<Uint8Array> {
  return serializeSafetensors({
    big: { dtype: 'F32', shape: [256, 256], data: new Float32Array(65536) }, // 256 KiB
    small: { dtype: 'F32', shape: [3], data: [1, 2, 3] },
  });
}

describe('FetchRangeSource', () => {
  it('reads the header and one tensor with range requests only', async () => {
    const bytes = await file();
    const server = fakeServer({ [URL_]: bytes });
    const r = await SafetensorsReader.open(new FetchRangeSource(URL_, { fetch: server.fetch }));
    const t = await r.readTensor('small');
    expect(Array.from(await t.data())).toEqual([1, 2, 3]);
    t.dispose();
    expect(server.log.map((l) => l.method)).toEqual(['HEAD', 'GET', 'GET', 'GET']);
    expect(server.log.slice(1).every((l) => l.range !== undefined)).toBe(true);
    const transferred = server.log.reduce((a, l) => a + l.bytes, 0);
    expect(transferred).toBeLessThan(300);
    expect(bytes.byteLength).toBeGreaterThan(260_000);
  });

  it('falls back to one full GET when the server ignores ranges', async () => {
    const server = fakeServer({ [URL_]: await file() }, { ranges: false });
    const r = await SafetensorsReader.open(new FetchRangeSource(URL_, { fetch: server.fetch }));
    const t = await r.readTensor('small');
    expect(Array.from(await t.data())).toEqual([1, 2, 3]);
    t.dispose();
    expect(server.log.filter((l) => l.method === 'GET')).toHaveLength(1);
  });

  it('finds the size from Content-Range when HEAD is refused or has no length', async () => {
    for (const opts of [{ head: false }, { contentLength: false }]) {
      const server = fakeServer({ [URL_]: await file() }, opts);
      const src = new FetchRangeSource(URL_, { fetch: server.fetch });
      const r = await SafetensorsReader.open(src);
      expect(r.names()).toEqual(['big', 'small']);
      expect(server.log[1]?.range).toBe('bytes=0-0');
    }
  });

  it('404 → FILE_NOT_FOUND naming the URL; network failure → IO_ERROR', async () => {
    const server = fakeServer({});
    const e = await rejection(
      SafetensorsReader.open(new FetchRangeSource(URL_, { fetch: server.fetch })),
    );
    expectParaError(e, 'FILE_NOT_FOUND', URL_);
    const failing = (async () => {
      throw new TypeError('network down');
    }) as typeof fetch;
    const e2 = await rejection(new FetchRangeSource(URL_, { fetch: failing }).size());
    expectParaError(e2, 'IO_ERROR', URL_);
    expect(e2.message).toContain('network down');
  });

  it('a truncated range response → FILE_TRUNCATED', async () => {
    const bytes = await file();
    const server = fakeServer({ [URL_]: bytes });
    const lying = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const res = await server.fetch(input, init);
      if (res.status !== 206) return res;
      const body = new Uint8Array(await res.arrayBuffer());
      return new Response(body.subarray(0, body.byteLength - 1), { status: 206 });
    }) as typeof fetch;
    const e = await rejection(new FetchRangeSource(URL_, { fetch: lying }).read(0, 8));
    expectParaError(e, 'FILE_TRUNCATED', URL_);
  });
});

describe('checkpoints over HTTP', () => {
  const base = 'https://models.test/ckpt';

  async function shardedServer() {
    const shard1 = await serializeSafetensors({
      'model.embed_tokens.weight': { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] },
    });
    const shard2 = await serializeSafetensors({
      'model.norm.weight': { dtype: 'F32', shape: [2], data: [5, 6] },
    });
    const index = {
      metadata: { total_size: 24 },
      weight_map: {
        'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
        'model.norm.weight': 'model-00002-of-00002.safetensors',
      },
    };
    return fakeServer({
      [`${base}/model.safetensors.index.json`]: new TextEncoder().encode(JSON.stringify(index)),
      [`${base}/model-00001-of-00002.safetensors`]: shard1,
      [`${base}/model-00002-of-00002.safetensors`]: shard2,
    });
  }

  it('loads a sharded checkpoint, fetching a shard only when one of its tensors is read', async () => {
    const server = await shardedServer();
    const ckpt = await openSafetensorsCheckpoint(
      urlCheckpointAccess(base, { fetch: server.fetch }),
    );
    expect(ckpt).toBeInstanceOf(ShardedSafetensors);
    expect((ckpt as ShardedSafetensors).index.metadata).toEqual({ total_size: 24 });
    expect(ckpt.names()).toEqual(['model.embed_tokens.weight', 'model.norm.weight']);
    const shardUrls = () => new Set(server.log.map((l) => l.url).filter((u) => u.includes('-of-')));
    expect(shardUrls().size).toBe(0);

    const norm = await ckpt.readTensor('model.norm.weight');
    expect(Array.from(await norm.data())).toEqual([5, 6]);
    expect([...shardUrls()]).toEqual([`${base}/model-00002-of-00002.safetensors`]);
    expect(await ckpt.info('model.embed_tokens.weight')).toEqual({
      dtype: 'F32',
      shape: [2, 2],
      byteLength: 16,
    });
    norm.dispose();
    await ckpt.close();
  });

  it('prefers the single file; neither file → FILE_NOT_FOUND naming the location', async () => {
    const single = await serializeSafetensors({ w: { dtype: 'F32', shape: [1], data: [9] } });
    const server = fakeServer({ [`${base}/model.safetensors`]: single });
    const ckpt = await openSafetensorsCheckpoint(
      urlCheckpointAccess(base, { fetch: server.fetch }),
    );
    expect(ckpt).toBeInstanceOf(SafetensorsReader);
    expect(ckpt.names()).toEqual(['w']);

    const empty = fakeServer({});
    const e = await rejection(
      openSafetensorsCheckpoint(urlCheckpointAccess(base, { fetch: empty.fetch })),
    );
    expectParaError(e, 'FILE_NOT_FOUND', `${base}/`);
    expect(e.message).toContain('model.safetensors.index.json');
  });
});
