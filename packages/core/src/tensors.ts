import * as tf from '@tensorflow/tfjs-core';

/**
 * Tensor-lifetime helpers. tfjs frees GPU/wasm memory only on `dispose()`; `tf.tidy` covers
 * synchronous code, these cover the rest (async steps, tensors held in objects).
 */

/** Dispose every tensor found in `value` (arrays, plain objects, Maps, Sets), recursively. */
export function disposeAll(value: unknown): void {
  const seen = new Set<unknown>();
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof tf.Tensor) {
      if (!v.isDisposed) v.dispose();
      return;
    }
    if (v instanceof Map) {
      for (const x of v.values()) visit(x);
      return;
    }
    if (Array.isArray(v) || v instanceof Set) {
      for (const x of v) visit(x);
      return;
    }
    if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
      for (const x of Object.values(v)) visit(x);
    }
  };
  visit(value);
}

/**
 * Collects tensors made across `await`s and frees them together, for async code that
 * `tf.tidy` cannot wrap. Works with `using` (Symbol.dispose) where the runtime supports it.
 */
export class TensorBag {
  private readonly tensors: tf.Tensor[] = [];

  /** Keep `t` until `dispose()`; returns it for chaining. */
  track<T extends tf.Tensor>(t: T): T {
    this.tensors.push(t);
    return t;
  }

  /** Stop tracking `t` (it survives `dispose()`); returns it. */
  release<T extends tf.Tensor>(t: T): T {
    const i = this.tensors.indexOf(t);
    if (i >= 0) this.tensors.splice(i, 1);
    return t;
  }

  get size(): number {
    return this.tensors.length;
  }

  dispose(): void {
    for (const t of this.tensors) if (!t.isDisposed) t.dispose();
    this.tensors.length = 0;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Live tensor count of the active backend's engine. */
export function liveTensors(): number {
  return tf.memory().numTensors;
}

export interface LeakReport {
  /** Live tensors before the first iteration (after warm-up). */
  before: number;
  /** Live tensors after each iteration. */
  counts: number[];
  /** Tensors gained over all iterations (0 when the loop is flat). */
  leaked: number;
}

/**
 * Run `step` `iterations` times after `warmup` runs and report live tensor counts, so a test can
 * assert that a long loop (training, decoding, serving) keeps `tf.memory().numTensors` flat.
 */
export async function measureTensorLeak(
  step: (i: number) => unknown | Promise<unknown>,
  iterations = 5,
  warmup = 1,
): Promise<LeakReport> {
  for (let i = 0; i < warmup; i++) await step(i);
  const before = liveTensors();
  const counts: number[] = [];
  for (let i = 0; i < iterations; i++) {
    await step(warmup + i);
    counts.push(liveTensors());
  }
  return { before, counts, leaked: (counts[counts.length - 1] ?? before) - before };
}
