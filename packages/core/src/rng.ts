import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from './errors';

/**
 * Seeded random numbers: weight init, dropout masks, data shuffling and sampling all draw from
 * an `Rng`, so the same seed gives the same weights, samples and training curve.
 *
 * The generator is xoshiro128** (Blackman & Vigna) seeded through splitmix32. It is written
 * here rather than taken from a library because its exact output stream is part of our
 * reproducibility contract (checkpoints store `state()` and `--resume` restores it), so it must
 * never change with a dependency upgrade. 32-bit state words keep it fast in plain JS.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** A cached second normal deviate from Box–Muller (NaN when empty). */
  private spareNormal = Number.NaN;

  constructor(seed: number | string = 0) {
    let h = typeof seed === 'string' ? hashString(seed) : seedToUint32(seed);
    const next = () => {
      // splitmix32
      h = (h + 0x9e3779b9) | 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform float in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). Unbiased (rejection sampling). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) {
      throw new ParaError('INVALID_ARGUMENT', 'Rng.int needs a positive integer bound', {
        field: 'n',
        expected: 'an integer in [1, 2^32]',
        actual: String(n),
      });
    }
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal deviate (Box–Muller, both deviates used). */
  normal(mean = 0, std = 1): number {
    if (!Number.isNaN(this.spareNormal)) {
      const z = this.spareNormal;
      this.spareNormal = Number.NaN;
      return mean + std * z;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return mean + std * r * Math.cos(2 * Math.PI * v);
  }

  /** Fisher–Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i] as T;
      items[i] = items[j] as T;
      items[j] = tmp;
    }
    return items;
  }

  /** An independent generator derived from this one's stream and a label (e.g. a layer name). */
  fork(label: string | number = ''): Rng {
    const child = new Rng(0);
    const mix = hashString(String(label));
    child.s0 = (this.nextUint32() ^ mix) >>> 0;
    child.s1 = this.nextUint32();
    child.s2 = this.nextUint32();
    child.s3 = this.nextUint32();
    if ((child.s0 | child.s1 | child.s2 | child.s3) === 0) child.s0 = 1;
    return child;
  }

  /** Serializable state, for checkpoints (`Rng.fromState(rng.state())` continues the stream). */
  state(): RngState {
    return {
      s: [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0],
      spare: Number.isNaN(this.spareNormal) ? null : this.spareNormal,
    };
  }

  static fromState(state: RngState): Rng {
    const s = state?.s;
    if (
      !Array.isArray(s) ||
      s.length !== 4 ||
      !s.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)
    ) {
      throw new ParaError('INVALID_ARGUMENT', 'bad RNG state', {
        field: 's',
        expected: 'four unsigned 32-bit integers',
        actual: JSON.stringify(s),
      });
    }
    const rng = new Rng(0);
    [rng.s0, rng.s1, rng.s2, rng.s3] = s as [number, number, number, number];
    rng.spareNormal = state.spare ?? Number.NaN;
    return rng;
  }

  /** Float32 array of uniform deviates in [lo, hi). */
  uniformArray(size: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = this.uniform(lo, hi);
    return out;
  }

  /** Float32 array of normal deviates. */
  normalArray(size: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = this.normal(mean, std);
    return out;
  }

  /** A float32 tensor of uniform deviates in [lo, hi). */
  uniformTensor(shape: number[], lo = 0, hi = 1): tf.Tensor {
    return tf.tensor(this.uniformArray(sizeOf(shape), lo, hi), shape, 'float32');
  }

  /** A float32 tensor of normal deviates. */
  normalTensor(shape: number[], mean = 0, std = 1): tf.Tensor {
    return tf.tensor(this.normalArray(sizeOf(shape), mean, std), shape, 'float32');
  }
}

export interface RngState {
  s: [number, number, number, number] | number[];
  spare: number | null;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function seedToUint32(seed: number): number {
  if (!Number.isFinite(seed)) {
    throw new ParaError('INVALID_ARGUMENT', 'seed must be a finite number', {
      field: 'seed',
      actual: String(seed),
    });
  }
  // Fold integers beyond 32 bits so that e.g. 2**32 + 1 and 1 differ.
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  return (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0;
}

/** FNV-1a over UTF-16 code units. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function sizeOf(shape: number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ParaError('SHAPE_MISMATCH', 'bad tensor shape', {
        field: 'shape',
        expected: 'non-negative integers',
        actual: JSON.stringify(shape),
      });
    }
    n *= d;
  }
  return n;
}
