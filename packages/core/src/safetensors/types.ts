/** Shapes shared by the single-file reader and the sharded checkpoint. */

import type * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsDtype } from './dtypes';

/** What the header says about one tensor. */
export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  byteLength: number;
}

/** A tensor's undecoded little-endian bytes. */
export interface RawTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

/** Decoded values: Float32Array for float dtypes, Int32Array for integer and bool dtypes. */
export interface TensorData {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Read access to named tensors, whether from one file or from shards. */
export interface TensorStore {
  /** A path or URL naming the store, for messages. */
  readonly name: string;
  /** Tensor names, sorted. */
  names(): string[];
  has(name: string): boolean;
  /** Header information; sharded stores may need to read a shard's header first. */
  info(name: string): TensorInfo | Promise<TensorInfo>;
  readRaw(name: string): Promise<RawTensor>;
  readData(name: string): Promise<TensorData>;
  /** A float32 (float dtypes) or int32 (integer and bool dtypes) tensor; the caller disposes it. */
  readTensor(name: string): Promise<tf.Tensor>;
  close(): Promise<void>;
}
