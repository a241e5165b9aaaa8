/**
 * Lazy reader for one safetensors file: `open` reads only the 8-byte prefix and the header;
 * each tensor is read by offset when asked for, so a multi-GB file is never loaded whole.
 */

import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '../errors';
import { decodeTensorData, isFloatDtype } from './dtypes';
import {
  compareNames,
  parseHeaderJson,
  readHeaderLength,
  type SafetensorsHeader,
  type TensorEntry,
} from './header';
import type { ByteSource } from './source';
import type { RawTensor, TensorData, TensorInfo, TensorStore } from './types';

export class SafetensorsReader implements TensorStore {
  readonly source: ByteSource;
  readonly header: SafetensorsHeader;
  private closed = false;

  private constructor(source: ByteSource, header: SafetensorsHeader) {
    this.source = source;
    this.header = header;
  }

  /**
   * Reads and validates the header of `source` (two reads: the prefix, then the JSON).
   * On failure the source is closed and the typed error is rethrown.
   */
  static async open(source: ByteSource): Promise<SafetensorsReader> {
    try {
      const size = await source.size();
      const prefix = size >= 8 ? await source.read(0, 8) : new Uint8Array(size);
      const n = readHeaderLength(prefix, size, source.name);
      const json = await source.read(8, n);
      return new SafetensorsReader(source, parseHeaderJson(json, size, source.name));
    } catch (e) {
      await source.close?.().catch(() => undefined);
      throw e;
    }
  }

  get name(): string {
    return this.source.name;
  }

  /** The `__metadata__` map (empty when the file has none). */
  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  /** Tensor names, sorted by code point. */
  names(): string[] {
    return [...this.header.tensors.keys()].sort(compareNames);
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: [...e.shape], byteLength: e.end - e.begin };
  }

  async readRaw(name: string): Promise<RawTensor> {
    const e = this.entry(name);
    this.checkOpen();
    const bytes = await this.source.read(this.header.dataStart + e.begin, e.end - e.begin);
    return { dtype: e.dtype, shape: [...e.shape], bytes };
  }

  async readData(name: string): Promise<TensorData> {
    const raw = await this.readRaw(name);
    const data = decodeTensorData(raw.bytes, raw.dtype, { name, file: this.source.name });
    return { dtype: raw.dtype, shape: raw.shape, data };
  }

  async readTensor(name: string): Promise<tf.Tensor> {
    const { dtype, shape, data } = await this.readData(name);
    return tf.tensor(data, shape, isFloatDtype(dtype) ? 'float32' : 'int32');
  }

  /** Every tensor, read in file order; on failure the tensors made so far are disposed. */
  async readAll(): Promise<tf.NamedTensorMap> {
    const read: [string, tf.Tensor][] = [];
    try {
      for (const name of this.header.tensors.keys()) read.push([name, await this.readTensor(name)]);
    } catch (e) {
      tf.dispose(read.map(([, t]) => t));
      throw e;
    }
    return Object.fromEntries(read); // not `out[name] =`: a tensor may be named "__proto__"
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close?.();
  }

  private entry(name: string): TensorEntry {
    const e = this.header.tensors.get(name);
    if (e === undefined) throw tensorNotFound(name, this.names(), this.source.name);
    return e;
  }

  private checkOpen(): void {
    if (this.closed) {
      throw new ParaError('IO_ERROR', 'reader is closed', { file: this.source.name });
    }
  }
}

/** TENSOR_NOT_FOUND listing a few existing names, those sharing the longest prefix first. */
export function tensorNotFound(
  name: string,
  available: readonly string[],
  file: string,
): ParaError {
  const common = (s: string): number => {
    let i = 0;
    while (i < s.length && i < name.length && s[i] === name[i]) i++;
    return i;
  };
  const nearest = available
    .map((n, i) => ({ n, i, c: common(n) }))
    .sort((a, b) => b.c - a.c || a.i - b.i)
    .slice(0, 5);
  const shown = nearest.map(({ n }) => JSON.stringify(n));
  if (available.length > 5) shown.push(`… (${available.length} in all)`);
  return new ParaError('TENSOR_NOT_FOUND', 'no such tensor', {
    file,
    field: name,
    expected: available.length > 0 ? `one of ${shown.join(', ')}` : 'a tensor (the file has none)',
    actual: JSON.stringify(name),
  });
}
