import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, hasFusedKernel, recordingGradients } from './fused';
import { type KVWriteMode, type KVWritePath, kvWritePath, writeKVSlots } from './kv-write';
import { MASK_NEGATIVE } from './mask';
import { applyRope } from './rope';
import { checkMatrix, checkPositiveInt, checkShape } from './shapes';

/**
 * A preallocated key/value cache for batched generation whose rows join and leave.
 *
 * Layout: per layer, `k` and `v` are `[B, Hkv, C, hd]`, allocated once at a **capacity** of C
 * slots per row and written in place every step (see kv-write.ts: cpu, wasm and webgpu write
 * into the tensor's own storage; other backends use a fixed-shape `tf.where` update), so the
 * shapes never change from step to step (no concat, no WebGPU shader recompile). On the host the
 * cache keeps, per row, a **write cursor** (slots used) and the validity of every slot (1 = a
 * real token, 0 = padding or never written). A step writes T slots of every *active* row at that
 * row's own cursor; position ids count the real tokens before, as HF's `cumsum(mask) - 1`, so a
 * row computes exactly what it computes alone. Rows can be released (`releaseRow`: the slot
 * row becomes free, decodes nothing, its garbage is masked) and filled again from another cache
 * (`copyRowsFrom`: e.g. a newcomer's prefill).
 *
 * One forward step (prefill of T tokens, or decode of 1):
 *
 * ```ts
 * const step = cache.beginStep(mask);            // mask [B][T] 0/1, or T (all real)
 * const { cos, sin } = ropeCosSin(step.positions, invFreq);                    // [B, 1, T, hd]
 * const attnMask = cache.attentionMask(step);                                  // [B, 1, T, S]
 * for (let l = 0; l < layers; l++) {
 *   // q [B, Hq, T, hd], k/v [B, Hkv, T, hd], RoPE already applied to q and k
 *   const { k: kAll, v: vAll } = cache.append(l, k, v);                         // [B, Hkv, S, hd]
 *   const out = attention(q, kAll, vAll, attnMask);                               // [B, Hq, T, hd]
 * }
 * ```
 *
 * S (`step.keyLength`) is the capacity C, except in the first step of an empty cache (a
 * prefill), where attention needs only the T new slots and `append` returns the step's own k/v.
 * Masked slots get {@link MASK_NEGATIVE} (finite): a free or idle row's query attends garbage
 * or nothing and yields finite, ignored values, never NaN.
 *
 * Ownership. The cache allocates its storage itself (fresh `tf.fill(…, 0)`, shared with no other
 * tensor), marks it `tf.keep`, and never hands the storage tensor out. `append` copies what it
 * stores (the caller still owns `kNew`/`vNew`) and returns **views**: new tensor handles on the
 * cache's storage, owned by the caller (call it inside `tf.tidy`, or dispose them). A view is
 * valid **only until the next write** to that layer (the next step's `append`, `copyRowsFrom`)
 * or `dispose()`: its contents change in place. `tf.clone` of a view is a view too (Identity
 * shares memory on cpu, wasm and webgpu); to keep a snapshot, read it (`data()`) or compute
 * from it (e.g. `tf.add(view, 0)`). A decode loop keeps `tf.memory().numTensors` flat.
 */
export interface KVCacheOptions {
  numLayers: number;
  /** Slot rows (requests) the cache holds at once. */
  batchSize: number;
  /** Slots per row C: the most tokens (prompt padding included) a row can hold. */
  capacity: number;
  /** With `headDim`: allocate every layer now; otherwise each layer is allocated at its first `append`. */
  numKvHeads?: number;
  headDim?: number;
  /** If set, a step whose position ids reach this value throws (HF `max_position_embeddings`). */
  maxPositions?: number;
  /** `auto` (default): in place where the backend allows; `functional`: always the `tf.where` update. */
  writeMode?: KVWriteMode;
}

export interface CacheStep {
  /** New slots per active row in this step (T). */
  queryLength: number;
  /** Key slots attention runs over in this step (S): the capacity, or T for the first step of an empty cache. */
  keyLength: number;
  /** Slots used by the longest row before this step. */
  pastLength: number;
  /** Slots used by the longest row after this step. */
  totalLength: number;
  /** `[B][S]` validity of the key slots after this step (a copy; see `KVCache.attentionMask`). */
  keyValid: number[][];
  /** `[B][T]` position ids of the new slots (pass to `ropeCosSin`); 1 for padding and idle rows. */
  positions: number[][];
  /** `[B]` the slot each row's first new entry goes to (its cursor before the step). */
  starts: number[];
  /** `[B]` rows that write in this step (idle and free rows do not). */
  active: boolean[];
}

/** RoPE tables of a step (`ropeCosSin`), `[B or 1, 1, T, hd]`. */
export interface StepRope {
  cos: tf.Tensor;
  sin: tf.Tensor;
  sinSigned?: tf.Tensor;
}

/**
 * Per-row scales of the projections, folded into {@link KVCache.appendRotated}: `q [B or 1, 1,
 * Hq·hd]`, `k`/`v [B or 1, 1, Hkv·hd]` (PARA's l_q / l_v, IA3's k and v vectors), in the
 * projection's layout (head h, dimension j at h·hd + j), applied before the rotation.
 */
export interface HeadScales {
  q?: tf.Tensor;
  k?: tf.Tensor;
  v?: tf.Tensor;
}

interface LayerKV {
  k: tf.Tensor; // [B, Hkv, C, hd]
  v: tf.Tensor; // [B, Hkv, C, hd]
}

/** A preallocated, in-place KV cache with per-row cursors; see the module comment above. */
export class KVCache {
  readonly numLayers: number;
  readonly batchSize: number;
  readonly capacity: number;
  readonly maxPositions: number | undefined;
  readonly writeMode: KVWriteMode;
  private numKvHeads: number | undefined;
  private headDim: number | undefined;
  /** Per row: C slot flags. */
  private readonly valid: Uint8Array[];
  /** Per row: slots used (the next write goes there). */
  private readonly cursor: number[];
  /** Per row: real tokens held. */
  private readonly count: number[];
  private readonly free: boolean[];
  private readonly layers: (LayerKV | undefined)[];
  /** Step counter and, per layer, the step it last appended (every layer appends once per step). */
  private stepId = 0;
  private readonly appended: number[];
  private current: CacheStep | null = null;
  private disposed = false;

  constructor(options: KVCacheOptions) {
    this.numLayers = checkPositiveInt(options.numLayers, 'numLayers');
    this.batchSize = checkPositiveInt(options.batchSize, 'batchSize');
    this.capacity = checkPositiveInt(options.capacity, 'capacity');
    if (options.maxPositions !== undefined) checkPositiveInt(options.maxPositions, 'maxPositions');
    this.maxPositions = options.maxPositions;
    const mode = options.writeMode ?? 'auto';
    if (mode !== 'auto' && mode !== 'functional') {
      throw new ParaError('INVALID_ARGUMENT', 'writeMode must be "auto" or "functional"', {
        field: 'writeMode',
        expected: '"auto" | "functional"',
        actual: String(mode),
      });
    }
    this.writeMode = mode;
    const B = this.batchSize;
    this.valid = Array.from({ length: B }, () => new Uint8Array(this.capacity));
    this.cursor = new Array<number>(B).fill(0);
    this.count = new Array<number>(B).fill(0);
    this.free = new Array<boolean>(B).fill(false);
    this.layers = new Array<LayerKV | undefined>(this.numLayers).fill(undefined);
    this.appended = new Array<number>(this.numLayers).fill(0);
    if (options.numKvHeads !== undefined || options.headDim !== undefined) {
      const H = checkPositiveInt(options.numKvHeads, 'numKvHeads');
      const hd = checkPositiveInt(options.headDim, 'headDim');
      for (let l = 0; l < this.numLayers; l++) this.allocate(l, H, hd);
    }
  }

  /** Slots used by the longest row. */
  get length(): number {
    return Math.max(0, ...this.cursor);
  }

  /** `[B][C]` slot validity (a copy). */
  get keyValid(): number[][] {
    return this.valid.map((r) => Array.from(r));
  }

  /** Real (valid) tokens per row. */
  rowLengths(): number[] {
    return this.count.slice();
  }

  /** Slots used per row (each row's write cursor). */
  rowSlots(): number[] {
    return this.cursor.slice();
  }

  /** Rows released and not filled again. */
  freeRows(): number[] {
    const out: number[] = [];
    this.free.forEach((f, b) => {
      if (f) out.push(b);
    });
    return out;
  }

  isFree(row: number): boolean {
    this.checkRow(row, 'row');
    return this.free[row] as boolean;
  }

  /** `[Hkv, hd]` once allocated. */
  get headShape(): [number, number] | undefined {
    return this.numKvHeads === undefined ? undefined : [this.numKvHeads, this.headDim as number];
  }

  /** How writes are done on the cache's backend (`cpu`, `wasm`, `webgpu` in place, or `functional`); undefined before allocation. */
  get writePath(): KVWritePath | undefined {
    const kv = this.layers[0];
    return kv === undefined ? undefined : kvWritePath(kv.k, this.writeMode);
  }

  /**
   * Start a forward step over T new slots per row. `newValid` is `[B][T]` 0/1 (1 = a real token;
   * the prefill's left padding mask), or a number T meaning T real tokens in every row that is
   * not free. A row whose entries are all 0 is **idle** in this step: it writes nothing and its
   * cursor stays (a finished or paused row); any other row writes its T slots at its cursor
   * (padding entries become invalid slots). Returns slot validity, position ids and cursors for
   * the step. Every layer must then `append` exactly once before the next `beginStep`.
   */
  beginStep(newValid: number[][] | number): CacheStep {
    this.checkAlive();
    const B = this.batchSize;
    const rows =
      typeof newValid === 'number'
        ? Array.from({ length: B }, (_, b) =>
            new Array<number>(checkPositiveInt(newValid, 'newValid')).fill(this.free[b] ? 0 : 1),
          )
        : newValid;
    const [rB, T] = checkMatrix(rows, 'newValid');
    if (rB !== B) {
      throw new ParaError('SHAPE_MISMATCH', 'newValid must have one row per batch row', {
        field: 'newValid',
        expected: `${B} rows`,
        actual: `${rB} rows`,
      });
    }
    if (T === 0)
      throw new ParaError('SHAPE_MISMATCH', 'a step needs at least one slot', {
        field: 'newValid',
        expected: '[B][T] with T ≥ 1',
        actual: `[${B}][0]`,
      });
    this.checkAllAppended();
    const active = rows.map((r, b) => {
      r.forEach((v, t) => {
        if (v !== 0 && v !== 1)
          throw new ParaError('INVALID_ARGUMENT', 'mask entries must be 0 or 1', {
            field: `newValid[${b}][${t}]`,
            expected: '0 or 1',
            actual: String(v),
          });
      });
      const on = r.some((v) => v === 1);
      if (on && this.free[b]) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `row ${b} was released: it cannot take tokens until rows are inserted there`,
          {
            field: `newValid[${b}]`,
            expected: 'all 0 for a free row',
            actual: JSON.stringify(r),
          },
        );
      }
      return on;
    });
    const C = this.capacity;
    const positions = rows.map((r, b) => {
      if (!active[b]) return new Array<number>(T).fill(1);
      if ((this.cursor[b] as number) + T > C) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `row ${b} is full: ${this.cursor[b]} of ${C} slots used, this step needs ${T} more`,
          {
            field: 'capacity',
            expected: `at most ${C} slots per row (pass a larger capacity to prefill)`,
            actual: String((this.cursor[b] as number) + T),
          },
        );
      }
      let c = this.count[b] as number;
      return r.map((v) => {
        if (v !== 1) return 1;
        const p = c++;
        if (this.maxPositions !== undefined && p >= this.maxPositions) {
          throw new ParaError(
            'INVALID_ARGUMENT',
            `row ${b} reaches position ${p}, past the model's limit`,
            {
              field: 'max_position_embeddings',
              expected: `positions below ${this.maxPositions}`,
              actual: String(p),
            },
          );
        }
        return p;
      });
    });
    // Nothing held anywhere: attention needs only this step's slots.
    const empty = this.cursor.every((c) => c === 0);
    const S = empty ? T : C;
    const pastLength = this.length;
    const starts = this.cursor.slice();
    rows.forEach((r, b) => {
      if (!active[b]) return;
      const start = this.cursor[b] as number;
      const flags = this.valid[b] as Uint8Array;
      r.forEach((v, t) => {
        flags[start + t] = v;
      });
      this.cursor[b] = start + T;
      this.count[b] = (this.count[b] as number) + r.reduce((a, v) => a + v, 0);
    });
    this.stepId++;
    const keyValid = this.valid.map((f) => Array.from(f.subarray(0, S)));
    this.current = {
      queryLength: T,
      keyLength: S,
      pastLength,
      totalLength: this.length,
      keyValid,
      positions,
      starts,
      active,
    };
    return {
      ...this.current,
      keyValid: keyValid.map((r) => r.slice()),
      starts: starts.slice(),
      active: active.slice(),
    };
  }

  /**
   * The additive attention mask of a step, `[B, 1, T, S]` float32: query t of row b sits in slot
   * `starts[b] + t` and may attend to key slot s iff `s ≤ starts[b] + t` and the slot is valid;
   * 0 there, {@link MASK_NEGATIVE} elsewhere. With `slidingWindow` W (a sliding-window layer),
   * only slots `s > starts[b] + t - W` too, as transformers' sliding-window mask. The cache
   * keeps every slot (full length): older keys are masked, not evicted, so one cache serves
   * full and sliding layers alike. The caller disposes it.
   */
  attentionMask(step: CacheStep, options: { slidingWindow?: number | null } = {}): tf.Tensor {
    const { queryLength: T, keyLength: S, keyValid, starts } = step;
    const W = options.slidingWindow ?? null;
    if (W !== null) checkPositiveInt(W, 'slidingWindow');
    const B = keyValid.length;
    const out = new Float32Array(B * T * S); // [B, 1, T, S]
    for (let b = 0; b < B; b++) {
      const row = keyValid[b] as number[];
      const start = starts[b] as number; // all 0 in the first step of an empty cache (S = T)
      for (let t = 0; t < T; t++) {
        const last = start + t;
        const first = W === null ? 0 : last - W + 1; // sliding window: slots (last - W, last]
        const base = (b * T + t) * S;
        for (let s = 0; s < S; s++)
          out[base + s] = s <= last && s >= first && row[s] === 1 ? 0 : MASK_NEGATIVE;
      }
    }
    return tf.tensor4d(out, [B, 1, T, S]);
  }

  /**
   * Write this step's keys and values (`[B, Hkv, T, hd]`, RoPE already applied to k) into a
   * layer at every active row's cursor, and return views of the layer's keys and values over
   * the step's S key slots (`[B, Hkv, S, hd]`; see the module comment: owned by the caller,
   * valid until the next write). In the first step of an empty cache these are `kNew`/`vNew`.
   */
  append(layerIndex: number, kNew: tf.Tensor, vNew: tf.Tensor): { k: tf.Tensor; v: tf.Tensor } {
    this.checkAlive();
    this.checkLayer(layerIndex);
    const step = this.current;
    if (step === null)
      throw new ParaError('INVALID_ARGUMENT', 'call beginStep before append', { field: 'layer' });
    if (this.appended[layerIndex] === this.stepId) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `layer ${layerIndex} was already appended in this step`,
        { field: 'layer', expected: 'one append per layer per step' },
      );
    }
    const T = step.queryLength;
    const dims = new Map<string, number>();
    const expected = [this.batchSize, this.numKvHeads ?? 'Hkv', T, this.headDim ?? 'hd'];
    checkShape(kNew, 'kNew', expected, dims);
    checkShape(vNew, 'vNew', expected, dims);
    if (this.layers[layerIndex] === undefined)
      this.allocate(layerIndex, kNew.shape[1] as number, kNew.shape[3] as number);
    const writes = step.active.flatMap((on, b) =>
      on ? [{ src: b, row: b, start: step.starts[b] as number }] : [],
    );
    this.write(layerIndex, kNew, vNew, writes);
    this.appended[layerIndex] = this.stepId;
    if (step.keyLength === T && step.pastLength === 0) return { k: kNew, v: vNew };
    const kv = this.layers[layerIndex] as LayerKV;
    return { k: tf.reshape(kv.k, kv.k.shape), v: tf.reshape(kv.v, kv.v.shape) }; // views [B, Hkv, C, hd]
  }

  /**
   * {@link append} with RoPE and the projections' scales folded in: `q [B, Hq, T, hd]` and
   * `kNew`/`vNew [B, Hkv, T, hd]` as they leave the projections (no RoPE yet), `rope` the step's
   * tables, `scales` optional per-row vectors ({@link HeadScales}). Returns the rotated (scaled)
   * q and the views of `append`. Equal to `applyRope(q ⊙ sq)`, `applyRope(k ⊙ sk)`, `append(…,
   * v ⊙ sv)`; where the backend has `ParaRopeKvWrite` (@para/webgpu on webgpu, @para/blas on
   * wasm, whose kernel writes the cache's storage on the wasm heap in place), no gradient is
   * recorded and the cache is written in place, all of it is one kernel (a decode step: 4+
   * launches → 1).
   */
  appendRotated(
    layerIndex: number,
    q: tf.Tensor,
    kNew: tf.Tensor,
    vNew: tf.Tensor,
    rope: StepRope,
    scales: HeadScales = {},
  ): { q: tf.Tensor; k: tf.Tensor; v: tf.Tensor } {
    this.checkAlive();
    this.checkLayer(layerIndex);
    const step = this.current;
    const [B, Hq, T, hd] = checkShape(q, 'q', [this.batchSize, 'Hq', 'T', 'hd']) as [
      number,
      number,
      number,
      number,
    ];
    const Hkv = kNew.shape[1] as number;
    const headScale = (s: tf.Tensor | undefined, H: number, field: string) => {
      if (s === undefined) return undefined;
      const [sb] = checkShape(s, field, [null, 1, H * hd]);
      if (sb !== B && sb !== 1) {
        throw new ParaError('SHAPE_MISMATCH', `${field} batch does not match q`, {
          field,
          expected: `[${B} or 1, 1, ${H * hd}]`,
          actual: `[${s.shape.join(', ')}]`,
        });
      }
      return s;
    };
    const sq = headScale(scales.q, Hq, 'scales.q');
    const sk = headScale(scales.k, Hkv, 'scales.k');
    const sv = headScale(scales.v, Hkv, 'scales.v');
    const kv = this.layers[layerIndex];
    const fused =
      step !== null &&
      kv !== undefined &&
      !(step.keyLength === T && step.pastLength === 0) &&
      this.appended[layerIndex] !== this.stepId &&
      q.dtype === 'float32' &&
      kNew.dtype === 'float32' &&
      vNew.dtype === 'float32' &&
      rope.cos.dtype === 'float32' &&
      rope.sin.dtype === 'float32' &&
      [sq, sk, sv].every((s) => s === undefined || s.dtype === 'float32') &&
      q.size > 0 &&
      hasFusedKernel(FUSED_KERNELS.ropeKvWrite) &&
      !recordingGradients() &&
      // The kernel writes the cache's own storage in place (see Ownership above): webgpu, wasm.
      (['webgpu', 'wasm'] as KVWritePath[]).includes(kvWritePath(kv.k, this.writeMode));
    if (!fused) {
      return tf.tidy(() => {
        // [B|1, 1, H·hd] → [B|1, H, 1, hd]: the same elementwise products as scaling [B, T, H·hd].
        const scaled = (t: tf.Tensor, s: tf.Tensor | undefined, H: number) =>
          s === undefined ? t : tf.mul(t, tf.reshape(s, [s.shape[0] as number, H, 1, hd]));
        const qr = applyRope(scaled(q, sq, Hq), rope.cos, rope.sin, rope.sinSigned); // [B, Hq, T, hd]
        const kr = applyRope(scaled(kNew, sk, Hkv), rope.cos, rope.sin, rope.sinSigned); // [B, Hkv, T, hd]
        const { k, v } = this.append(layerIndex, kr, scaled(vNew, sv, Hkv)); // [B, Hkv, S, hd]
        return { q: qr, k, v };
      });
    }
    // Same checks as append (shapes against the cache), then one kernel writes every active row.
    const expected = [this.batchSize, this.numKvHeads ?? 'Hkv', T, this.headDim ?? 'hd'];
    const dims = new Map<string, number>([['hd', hd]]);
    checkShape(kNew, 'kNew', expected, dims);
    checkShape(vNew, 'vNew', expected, dims);
    const cosShape = checkShape(rope.cos, 'cos', [null, 1, T, hd]);
    if (cosShape[0] !== B && cosShape[0] !== 1) {
      throw new ParaError('SHAPE_MISMATCH', 'cos batch does not match q', {
        field: 'cos',
        expected: `[${B} or 1, 1, ${T}, ${hd}]`,
        actual: `[${cosShape.join(', ')}]`,
      });
    }
    checkShape(rope.sin, 'sin', cosShape);
    const slots = step.active.map((on, b) => (on ? (step.starts[b] as number) : -1)); // [B]
    const qr = tf.tidy(() => {
      const inputs: tf.NamedTensorMap = {
        q,
        k: kNew,
        v: vNew,
        cos: rope.cos,
        sin: rope.sin,
        kCache: kv.k,
        vCache: kv.v,
      };
      if (sq !== undefined) inputs.qScale = sq;
      if (sk !== undefined) inputs.kScale = sk;
      if (sv !== undefined) inputs.vScale = sv;
      return tf.engine().runKernel(FUSED_KERNELS.ropeKvWrite, inputs, { slots }) as tf.Tensor; // [B, Hq, T, hd]
    });
    this.appended[layerIndex] = this.stepId;
    return { q: qr, k: tf.reshape(kv.k, kv.k.shape), v: tf.reshape(kv.v, kv.v.shape) }; // views [B, Hkv, C, hd]
  }

  /**
   * Mark a row free: its slots become invalid and its cursor returns to 0. A free row is idle in
   * every step (it writes nothing; its outputs are finite garbage to ignore) until
   * `copyRowsFrom` fills it.
   */
  releaseRow(row: number): void {
    this.checkAlive();
    this.checkRow(row, 'row');
    if (this.free[row])
      throw new ParaError('INVALID_ARGUMENT', `row ${row} is already free`, {
        field: 'row',
        expected: 'a row in use',
        actual: String(row),
      });
    this.free[row] = true;
    (this.valid[row] as Uint8Array).fill(0);
    this.cursor[row] = 0;
    this.count[row] = 0;
  }

  /**
   * Copy rows `fromRows` of `source` (another cache of the same model, e.g. a newcomer's
   * prefill) into the free rows `toRows` of this cache, slot for slot (slots, validity and
   * cursor), so they continue decoding here. The source is unchanged (dispose it when done).
   */
  copyRowsFrom(source: KVCache, fromRows: readonly number[], toRows: readonly number[]): void {
    this.checkAlive();
    source.checkAlive();
    if (!(source instanceof KVCache))
      throw new ParaError('INVALID_ARGUMENT', 'source must be a KVCache', { field: 'source' });
    if (fromRows.length !== toRows.length) {
      throw new ParaError('INVALID_ARGUMENT', 'one target row per source row', {
        field: 'toRows',
        expected: `${fromRows.length} rows`,
        actual: `${toRows.length} rows`,
      });
    }
    if (source.numLayers !== this.numLayers) {
      throw new ParaError('SHAPE_MISMATCH', 'the caches have different numbers of layers', {
        field: 'source.numLayers',
        expected: String(this.numLayers),
        actual: String(source.numLayers),
      });
    }
    const theirs = source.headShape;
    const mine = this.headShape;
    if (theirs === undefined)
      throw new ParaError('INVALID_ARGUMENT', 'the source cache holds nothing yet', {
        field: 'source',
      });
    if (mine !== undefined && (mine[0] !== theirs[0] || mine[1] !== theirs[1])) {
      throw new ParaError('SHAPE_MISMATCH', 'the caches have different key/value heads', {
        field: 'source',
        expected: `Hkv ${mine[0]}, hd ${mine[1]}`,
        actual: `Hkv ${theirs[0]}, hd ${theirs[1]}`,
      });
    }
    source.checkAllAppended();
    this.checkAllAppended();
    const seen = new Set<number>();
    fromRows.forEach((from, i) => {
      const to = toRows[i] as number;
      source.checkRow(from, `fromRows[${i}]`);
      this.checkRow(to, `toRows[${i}]`);
      if (source.free[from] || source.cursor[from] === 0) {
        throw new ParaError('INVALID_ARGUMENT', `source row ${from} holds no tokens`, {
          field: `fromRows[${i}]`,
          expected: 'a row in use',
          actual: String(from),
        });
      }
      if (!this.free[to] || seen.has(to)) {
        throw new ParaError('INVALID_ARGUMENT', `row ${to} is not free`, {
          field: `toRows[${i}]`,
          expected: 'a free row (releaseRow first), each once',
          actual: String(to),
        });
      }
      seen.add(to);
      if ((source.cursor[from] as number) > this.capacity) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `source row ${from} holds ${source.cursor[from]} slots, more than this cache's capacity`,
          {
            field: 'capacity',
            expected: `at most ${this.capacity} slots`,
            actual: String(source.cursor[from]),
          },
        );
      }
    });
    // Source rows fit whole (their capacity within ours): one write per layer copies every row
    // straight from the source's storage (no slice: a tfjs Slice per row and layer costs ~10 ms
    // on wasm, seconds for a batch of newcomers). Slots past a row's cursor come along as
    // garbage and stay invalid (the flags below).
    const whole = source.capacity <= this.capacity;
    for (let l = 0; l < this.numLayers; l++) {
      if (this.layers[l] === undefined) this.allocate(l, theirs[0], theirs[1]);
      const src = source.layers[l] as LayerKV;
      if (whole) {
        this.write(
          l,
          src.k,
          src.v,
          fromRows.map((from, i) => ({ src: from, row: toRows[i] as number, start: 0 })),
        );
        continue;
      }
      fromRows.forEach((from, i) => {
        const n = source.cursor[from] as number;
        const H = theirs[0];
        const hd = theirs[1];
        tf.tidy(() => {
          const k = tf.slice(src.k, [from, 0, 0, 0], [1, H, n, hd]); // [1, Hkv, n, hd]
          const v = tf.slice(src.v, [from, 0, 0, 0], [1, H, n, hd]); // [1, Hkv, n, hd]
          this.write(l, k, v, [{ src: 0, row: toRows[i] as number, start: 0 }]);
        });
      });
    }
    fromRows.forEach((from, i) => {
      const to = toRows[i] as number;
      const flags = this.valid[to] as Uint8Array;
      flags.fill(0);
      const n = source.cursor[from] as number;
      flags.set((source.valid[from] as Uint8Array).subarray(0, n));
      this.cursor[to] = n;
      this.count[to] = source.count[from] as number;
      this.free[to] = false;
    });
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
    this.current = null;
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private allocate(layer: number, H: number, hd: number): void {
    if (this.numKvHeads === undefined) {
      this.numKvHeads = H;
      this.headDim = hd;
    }
    const shape = [this.batchSize, this.numKvHeads, this.capacity, this.headDim as number];
    // Fresh storage (a Fill kernel's output: made on the backend itself, no host array to upload),
    // kept outside any tidy, never shared with another tensor. Zeros: unused slots stay finite.
    const k = tf.keep(tf.fill(shape, 0, 'float32')); // [B, Hkv, C, hd]
    const v = tf.keep(tf.fill(shape, 0, 'float32')); // [B, Hkv, C, hd]
    this.layers[layer] = { k, v };
  }

  /** Write k and v rows into a layer, in place where possible (else replace the tensors). */
  private write(
    layer: number,
    kNew: tf.Tensor,
    vNew: tf.Tensor,
    writes: { src: number; row: number; start: number }[],
  ): void {
    const kv = this.layers[layer] as LayerKV;
    const k = writeKVSlots(kv.k, kNew, writes, this.writeMode);
    const v = writeKVSlots(kv.v, vNew, writes, this.writeMode);
    if (k !== kv.k) {
      kv.k.dispose();
      kv.k = tf.keep(k);
    }
    if (v !== kv.v) {
      kv.v.dispose();
      kv.v = tf.keep(v);
    }
  }

  private checkAllAppended(): void {
    if (this.current === null) return;
    for (let l = 0; l < this.numLayers; l++) {
      if (this.appended[l] !== this.stepId) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `layer ${l} has not appended in the current step: every layer must append before the next step`,
          { field: 'layer' },
        );
      }
    }
  }

  private checkRow(row: number, field: string): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.batchSize) {
      throw new ParaError('INVALID_ARGUMENT', 'row index out of range', {
        field,
        expected: `0 … ${this.batchSize - 1}`,
        actual: String(row),
      });
    }
  }

  private checkLayer(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.numLayers) {
      throw new ParaError('INVALID_ARGUMENT', 'layer index out of range', {
        field: 'layer',
        expected: `0 … ${this.numLayers - 1}`,
        actual: String(index),
      });
    }
  }

  private checkAlive(): void {
    if (this.disposed)
      throw new ParaError('INVALID_ARGUMENT', 'the KV cache was disposed', { field: 'cache' });
  }
}
