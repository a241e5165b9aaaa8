/**
 * Sharded checkpoints: `model.safetensors.index.json` (`{"metadata": {...}, "weight_map":
 * {tensorName: shardFile}}`) plus the shard files, each opened lazily, once, on first use.
 * Also the checkpoint-directory loader that picks the single file or the index. Universal code:
 * files are reached through caller-supplied `open`/`exists` functions (fs in Node, fetch in the
 * browser).
 */

import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '../errors';
import { compareNames, MAX_HEADER_BYTES } from './header';
import { SafetensorsReader, tensorNotFound } from './reader';
import type { ByteSource } from './source';
import type { RawTensor, TensorData, TensorInfo, TensorStore } from './types';

/** A validated shard index. */
export interface ShardIndex {
  /** The index file (path or URL), for messages. */
  readonly file: string;
  /** The index's `metadata` object (e.g. `{"total_size": 123}`; values need not be strings). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor name → shard file, relative to the index's directory. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** The distinct shard files, sorted. */
  readonly shards: readonly string[];
}

/** Opens a shard (a path relative to the index's directory) for reading. */
export type ShardOpener = (shardFile: string) => Promise<ByteSource>;

/** Parses and validates an index file's JSON text (or UTF-8 bytes). */
export function parseShardIndex(json: string | Uint8Array, file: string): ShardIndex {
  let value: unknown;
  try {
    const text =
      typeof json === 'string' ? json : new TextDecoder('utf-8', { fatal: true }).decode(json);
    value = JSON.parse(text);
  } catch (cause) {
    throw new ParaError('INVALID_JSON', 'shard index is not valid JSON', {
      file,
      expected: 'a JSON object with "weight_map"',
      actual: cause instanceof Error ? cause.message : String(cause),
      cause,
    });
  }
  if (!isObject(value)) {
    throw new ParaError('INVALID_JSON', 'shard index is not a JSON object', {
      file,
      expected: 'a JSON object with "weight_map"',
      actual: Array.isArray(value) ? 'an array' : String(value),
    });
  }
  const meta = value.metadata ?? {};
  if (!isObject(meta)) {
    throw new ParaError('INVALID_HEADER', 'metadata is not an object', {
      file,
      field: 'metadata',
      expected: 'an object',
      actual: JSON.stringify(meta),
    });
  }
  const wm = value.weight_map;
  if (!isObject(wm)) {
    throw new ParaError(
      'INVALID_HEADER',
      wm === undefined ? 'missing weight_map' : 'bad weight_map',
      {
        file,
        field: 'weight_map',
        expected: 'an object mapping tensor names to shard files',
        actual: wm === undefined ? 'nothing' : JSON.stringify(wm).slice(0, 60),
      },
    );
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string') {
      throw new ParaError('INVALID_HEADER', 'shard file is not a string', {
        file,
        field: `weight_map.${name}`,
        expected: 'a shard file name',
        actual: JSON.stringify(shard),
      });
    }
    checkShardPath(shard, file, `weight_map.${name}`);
    weightMap.set(name, shard);
  }
  const shards = [...new Set(weightMap.values())].sort(compareNames);
  return { file, metadata: meta, weightMap, shards };
}

/**
 * A shard must be a relative path inside the index's directory: not empty, not absolute, no
 * URL scheme or drive letter, no `..` segment.
 */
export function checkShardPath(shard: string, file: string, field: string): void {
  const bad =
    shard === '' ||
    shard.startsWith('/') ||
    shard.startsWith('\\') ||
    /^[A-Za-z][A-Za-z0-9+.-]*:/.test(shard) ||
    shard.split(/[\\/]/).some((seg) => seg === '..') ||
    shard.includes('\0');
  if (bad) {
    throw new ParaError('INVALID_HEADER', 'shard path escapes the checkpoint directory', {
      file,
      field,
      expected: 'a relative file name inside the index directory',
      actual: JSON.stringify(shard),
    });
  }
}

/** Tensors spread over shards; each shard's header is read on first use. */
export class ShardedSafetensors implements TensorStore {
  readonly index: ShardIndex;
  private readonly opener: ShardOpener;
  private readonly readers = new Map<string, Promise<SafetensorsReader>>();
  private closed = false;

  constructor(index: ShardIndex, opener: ShardOpener) {
    this.index = index;
    this.opener = opener;
  }

  get name(): string {
    return this.index.file;
  }

  /** Tensor names from the weight map, sorted. */
  names(): string[] {
    return [...this.index.weightMap.keys()].sort(compareNames);
  }

  has(name: string): boolean {
    return this.index.weightMap.has(name);
  }

  /** The shard file holding `name`. */
  shardOf(name: string): string {
    const shard = this.index.weightMap.get(name);
    if (shard === undefined) throw tensorNotFound(name, this.names(), this.index.file);
    return shard;
  }

  async info(name: string): Promise<TensorInfo> {
    return (await this.readerFor(name)).info(name);
  }

  async readRaw(name: string): Promise<RawTensor> {
    return (await this.readerFor(name)).readRaw(name);
  }

  async readData(name: string): Promise<TensorData> {
    return (await this.readerFor(name)).readData(name);
  }

  async readTensor(name: string): Promise<tf.Tensor> {
    return (await this.readerFor(name)).readTensor(name);
  }

  /** Every tensor, shard by shard; on failure the tensors made so far are disposed. */
  async readAll(): Promise<tf.NamedTensorMap> {
    const read: [string, tf.Tensor][] = [];
    try {
      for (const shard of this.index.shards) {
        for (const [name, s] of this.index.weightMap) {
          if (s === shard) read.push([name, await this.readTensor(name)]);
        }
      }
    } catch (e) {
      tf.dispose(read.map(([, t]) => t));
      throw e;
    }
    return Object.fromEntries(read);
  }

  /** Opens every shard and checks each mapped tensor is really in its shard. */
  async verify(): Promise<void> {
    for (const name of this.index.weightMap.keys()) await this.readerFor(name);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pending = [...this.readers.values()];
    this.readers.clear();
    const results = await Promise.allSettled(pending);
    for (const r of results) if (r.status === 'fulfilled') await r.value.close();
  }

  /** The (lazily opened) reader of the shard holding `name`, checked to contain it. */
  private async readerFor(name: string): Promise<SafetensorsReader> {
    const shard = this.shardOf(name);
    const reader = await this.openShard(shard);
    if (!reader.has(name)) {
      throw new ParaError('TENSOR_NOT_FOUND', 'the index maps the tensor to a shard without it', {
        file: reader.name,
        field: name,
        expected: `"${name}" in ${shard} (per ${this.index.file})`,
        actual: `a shard with ${reader.names().length} other tensors`,
      });
    }
    return reader;
  }

  private openShard(shard: string): Promise<SafetensorsReader> {
    if (this.closed) {
      return Promise.reject(
        new ParaError('IO_ERROR', 'sharded checkpoint is closed', { file: this.index.file }),
      );
    }
    let p = this.readers.get(shard);
    if (p === undefined) {
      p = this.opener(shard).then((src) => SafetensorsReader.open(src));
      this.readers.set(shard, p);
      p.catch(() => this.readers.delete(shard)); // let a later call retry
    }
    return p;
  }
}

/** How the checkpoint loader reaches files (names relative to the checkpoint directory). */
export interface CheckpointAccess {
  /** The directory or base URL, for messages. */
  location: string;
  open(file: string): Promise<ByteSource>;
  exists(file: string): Promise<boolean>;
}

export interface CheckpointOptions {
  /** The single-file name (default `model.safetensors`; adapters use `adapter_model.safetensors`). */
  fileName?: string;
  /** The index name (default `<fileName>.index.json`). */
  indexName?: string;
}

/**
 * Opens a checkpoint directory: the single file when it exists, else the shard index (as
 * transformers does). Neither → FILE_NOT_FOUND naming the directory and both file names.
 */
export async function openSafetensorsCheckpoint(
  access: CheckpointAccess,
  opts: CheckpointOptions = {},
): Promise<TensorStore> {
  const fileName = opts.fileName ?? 'model.safetensors';
  const indexName = opts.indexName ?? `${fileName}.index.json`;
  if (await access.exists(fileName)) return SafetensorsReader.open(await access.open(fileName));
  if (await access.exists(indexName)) {
    const src = await access.open(indexName);
    let text: Uint8Array;
    try {
      text = await readWhole(src, MAX_HEADER_BYTES);
    } finally {
      await src.close?.();
    }
    const index = parseShardIndex(text, src.name);
    return new ShardedSafetensors(index, (shard) => access.open(shard));
  }
  throw new ParaError('FILE_NOT_FOUND', 'no safetensors checkpoint in directory', {
    file: access.location,
    expected: `${fileName} or ${indexName}`,
    actual: 'neither',
  });
}

/** All bytes of a (small) source, refusing anything over `limit` bytes. */
export async function readWhole(src: ByteSource, limit: number): Promise<Uint8Array> {
  const size = await src.size();
  if (size > limit) {
    throw new ParaError('INVALID_HEADER', 'file is implausibly large for an index', {
      file: src.name,
      expected: `at most ${limit} bytes`,
      actual: `${size} bytes`,
    });
  }
  return src.read(0, size);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
