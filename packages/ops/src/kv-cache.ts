import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '@para/core';
import { positionIdsFromMask } from './mask';
import { checkMatrix, checkPositiveInt, checkShape } from './shapes';

/**
 * A key/value cache for batched generation with rows of different lengths.
 *
 * Layout: per layer, `k` and `v` are `[B, Hkv, S, hd]` over S **slots** shared by all rows, and
 * the cache keeps (on the host) `keyValid [B][S]`, 1 where a slot holds a real token. Rows of
 * different lengths are **left**-padded at prefill, so every row appends its next token to the
 * same new slot; a row that should not advance in a step (e.g. it already finished) can append a
 * padding slot (valid 0). Position ids and masks follow from `keyValid` exactly as in HF's
 * `generate` (see `mask.ts`).
 *
 * One forward step (prefill of T tokens, or decode of 1):
 *
 * ```ts
 * const step = cache.beginStep(mask);            // mask [B][T] 0/1, or T (all real)
 * const { cos, sin } = ropeCosSin(step.positions, invFreq);                    // [B, 1, T, hd]
 * const attnMask = attentionMask({ keyValid: step.keyValid, queryLength: step.queryLength }); // [B, 1, T, S]
 * for (let l = 0; l < layers; l++) {
 *   // q [B, Hq, T, hd], k/v [B, Hkv, T, hd], RoPE already applied to q and k
 *   const { k: kAll, v: vAll } = cache.append(l, k, v);                         // [B, Hkv, S, hd]
 *   const out = attention(q, kAll, vAll, attnMask);                               // [B, Hq, T, hd]
 * }
 * ```
 *
 * Ownership: `append` copies what it stores (the caller still owns and disposes `kNew`/`vNew`)
 * and marks stored tensors with `tf.keep`, so calling it inside `tf.tidy` is safe. The tensors
 * it returns belong to the cache: valid until the next `append` to that layer or `dispose()`,
 * which free them. A decode loop therefore keeps `tf.memory().numTensors` flat.
 */
export interface KVCacheOptions {
  numLayers: number;
  batchSize: number;
  /** If set, a step whose position ids reach this value throws (HF `max_position_embeddings`). */
  maxPositions?: number;
}

export interface CacheStep {
  /** Slots before this step. */
  pastLength: number;
  /** New slots in this step (T). */
  queryLength: number;
  /** Slots after this step, S = pastLength + T. */
  totalLength: number;
  /** `[B][S]` validity of every slot after this step (a copy; pass to `attentionMask`). */
  keyValid: number[][];
  /** `[B][T]` position ids of the new slots (pass to `ropeCosSin`). */
  positions: number[][];
}

interface LayerKV {
  k: tf.Tensor;
  v: tf.Tensor;
}

export class KVCache {
  readonly numLayers: number;
  readonly batchSize: number;
  readonly maxPositions: number | undefined;
  private valid: number[][];
  private readonly layers: (LayerKV | undefined)[];
  private slots = 0;
  private stepLength = 0;
  private disposed = false;

  constructor(options: KVCacheOptions) {
    this.numLayers = checkPositiveInt(options.numLayers, 'numLayers');
    this.batchSize = checkPositiveInt(options.batchSize, 'batchSize');
    if (options.maxPositions !== undefined) checkPositiveInt(options.maxPositions, 'maxPositions');
    this.maxPositions = options.maxPositions;
    this.valid = Array.from({ length: this.batchSize }, () => []);
    this.layers = new Array<LayerKV | undefined>(this.numLayers).fill(undefined);
  }

  /** Slots held after the latest `beginStep` (S). */
  get length(): number {
    return this.slots;
  }

  /** `[B][S]` slot validity (a copy). */
  get keyValid(): number[][] {
    return this.valid.map((r) => r.slice());
  }

  /** Real (valid) tokens per row. */
  rowLengths(): number[] {
    return this.valid.map((r) => r.reduce((a, b) => a + b, 0));
  }

  /** The stored `k`/`v` of a layer (`[B, Hkv, S, hd]`, owned by the cache), if any. */
  layer(index: number): { k: tf.Tensor; v: tf.Tensor } | undefined {
    this.checkLayer(index);
    const kv = this.layers[index];
    return kv === undefined ? undefined : { k: kv.k, v: kv.v };
  }

  /**
   * Start a forward step over T new slots. `newValid` is `[B][T]` 0/1 (1 = a real token; the
   * prefill's padding mask), or a number T meaning T real tokens in every row (decode: 1).
   * Returns the slot validity and the position ids for the step. Every layer must then `append`
   * exactly T slots before the next `beginStep`.
   */
  beginStep(newValid: number[][] | number): CacheStep {
    this.checkAlive();
    const rows =
      typeof newValid === 'number'
        ? Array.from({ length: this.batchSize }, () => new Array<number>(checkPositiveInt(newValid, 'newValid')).fill(1))
        : newValid;
    const [B, T] = checkMatrix(rows, 'newValid');
    if (B !== this.batchSize) {
      throw new ParaError('SHAPE_MISMATCH', 'newValid must have one row per batch row', { field: 'newValid', expected: `${this.batchSize} rows`, actual: `${B} rows` });
    }
    if (T === 0) throw new ParaError('SHAPE_MISMATCH', 'a step needs at least one slot', { field: 'newValid', expected: '[B][T] with T ≥ 1', actual: `[${B}][0]` });
    for (let l = 0; l < this.numLayers; l++) {
      const held = this.layers[l]?.k.shape[2] ?? 0;
      if (held !== this.slots) {
        throw new ParaError('INVALID_ARGUMENT', `layer ${l} has ${held} slots but the previous step has ${this.slots}: every layer must append before the next step`, { field: 'layer' });
      }
    }
    const nextValid = this.valid.map((r, b) => {
      const add = rows[b] as number[];
      add.forEach((v, t) => {
        if (v !== 0 && v !== 1) throw new ParaError('INVALID_ARGUMENT', 'mask entries must be 0 or 1', { field: `newValid[${b}][${t}]`, expected: '0 or 1', actual: String(v) });
      });
      return [...r, ...add];
    });
    const positions = positionIdsFromMask(nextValid, T);
    if (this.maxPositions !== undefined) {
      positions.forEach((row, b) => {
        row.forEach((p, t) => {
          if ((rows[b] as number[])[t] === 1 && p >= (this.maxPositions as number)) {
            throw new ParaError('INVALID_ARGUMENT', `row ${b} reaches position ${p}, past the model's limit`, {
              field: 'max_position_embeddings',
              expected: `positions below ${this.maxPositions}`,
              actual: String(p),
            });
          }
        });
      });
    }
    this.valid = nextValid;
    this.slots += T;
    this.stepLength = T;
    return { pastLength: this.slots - T, queryLength: T, totalLength: this.slots, keyValid: this.keyValid, positions };
  }

  /**
   * Append this step's keys and values (`[B, Hkv, T, hd]`, RoPE already applied to k) to a
   * layer and return the layer's full `k`, `v` (`[B, Hkv, S, hd]`, owned by the cache). The
   * tensors the layer held before are disposed.
   */
  append(layerIndex: number, kNew: tf.Tensor, vNew: tf.Tensor): { k: tf.Tensor; v: tf.Tensor } {
    this.checkAlive();
    this.checkLayer(layerIndex);
    if (this.stepLength === 0) {
      throw new ParaError('INVALID_ARGUMENT', 'call beginStep before append', { field: 'layer' });
    }
    const old = this.layers[layerIndex];
    const past = this.slots - this.stepLength;
    const held = old?.k.shape[2] ?? 0;
    if (held !== past) {
      throw new ParaError('INVALID_ARGUMENT', `layer ${layerIndex} was already appended in this step`, { field: 'layer', expected: `${past} slots held`, actual: `${held}` });
    }
    const dims = new Map<string, number>();
    const expected = old === undefined ? [this.batchSize, 'Hkv', this.stepLength, 'hd'] : [this.batchSize, old.k.shape[1] as number, this.stepLength, old.k.shape[3] as number];
    checkShape(kNew, 'kNew', expected, dims);
    checkShape(vNew, 'vNew', expected, dims);
    const k = tf.keep(old === undefined ? tf.clone(kNew) : tf.concat([old.k, kNew], 2)); // [B, Hkv, S, hd]
    const v = tf.keep(old === undefined ? tf.clone(vNew) : tf.concat([old.v, vNew], 2)); // [B, Hkv, S, hd]
    if (old !== undefined) {
      old.k.dispose();
      old.v.dispose();
    }
    this.layers[layerIndex] = { k, v };
    return { k, v };
  }

  /** Free every stored tensor. The cache cannot be used afterwards. */
  dispose(): void {
    for (const kv of this.layers) {
      if (kv !== undefined) {
        kv.k.dispose();
        kv.v.dispose();
      }
    }
    this.layers.fill(undefined);
    this.disposed = true;
  }

  private checkLayer(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.numLayers) {
      throw new ParaError('INVALID_ARGUMENT', 'layer index out of range', { field: 'layer', expected: `0 … ${this.numLayers - 1}`, actual: String(index) });
    }
  }

  private checkAlive(): void {
    if (this.disposed) throw new ParaError('INVALID_ARGUMENT', 'the KV cache was disposed', { field: 'cache' });
  }
}

