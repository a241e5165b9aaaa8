/**
 * AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), as torch.optim.AdamW:
 *
 *     m ← β1·m + (1−β1)·g            v ← β2·v + (1−β2)·g²
 *     m̂ = m / (1−β1^t)               v̂ = v / (1−β2^t)
 *     p ← p − lr·wd·p − lr·m̂ / (√v̂ + ε)
 *
 * The decay is applied to the weights directly, not added to the gradient (that would be
 * Adam with L2 regularisation, which Adam's scaling weakens). tfjs ships Adam but no AdamW, and
 * its optimizers keep state we could not save bit-exactly, so this is a small class over an
 * explicit list of `tf.Variable`s. Only those variables are ever touched: a frozen backbone
 * passed as plain tensors is out of its reach.
 *
 * State (`m`, `v` per parameter, and the step count) is exported as tensors by name and loaded
 * back bit-exactly, which `--resume` relies on.
 *
 * Where the backend registers the fused kernel `ParaAdamW` (@para/ops' fused.ts; @para/blas on
 * wasm), one step over every parameter is one kernel call (in chunks of at most
 * FUSED_CHUNK_ELEMENTS elements, so that its new tensors never hold much more than the largest
 * parameter three times over) instead of ~15 kernels per parameter; it computes the same float32
 * operations in the same order, so the two paths agree bit for bit on IEEE float32 backends. The
 * kernel returns new tensors that are assigned to the variables (a variable may share its data with
 * the tensor it was made from, so nothing is written in place).
 */

import { ParaError } from '@para/core';
import { FUSED_KERNELS, hasFusedKernel } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';

/** The most elements (over p, m, v, g of one parameter each) one fused AdamW call updates, unless one parameter alone is larger. */
const FUSED_CHUNK_ELEMENTS = 1 << 22;

const sameShape = (a: tf.Tensor, b: tf.Tensor): boolean =>
  a.rank === b.rank && a.shape.every((d, i) => d === b.shape[i]);

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (default 0). */
  weightDecay?: number;
  /**
   * Which parameters decay (default: those of rank ≥ 2, i.e. matrices, not norms or biases,
   * as nanoGPT and most LLM recipes do).
   */
  decay?: (name: string, v: tf.Variable) => boolean;
}

export interface AdamWState {
  /** Updates applied so far (t in the bias corrections). */
  step: number;
  /** `m.<name>` and `v.<name>` for every parameter (moments exist once a step was taken). */
  tensors: Record<string, tf.Tensor>;
}

let nextOptimizerId = 0;

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly params: ReadonlyMap<string, tf.Variable>;
  private readonly decays: ReadonlyMap<string, boolean>;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private t = 0;

  constructor(params: ReadonlyMap<string, tf.Variable>, options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    const check = (field: string, v: number, lo: number, hi: number) => {
      if (!(Number.isFinite(v) && v >= lo && v < hi)) {
        throw new ParaError('INVALID_ARGUMENT', `bad AdamW ${field}`, {
          field,
          expected: `a number in [${lo}, ${hi})`,
          actual: String(v),
        });
      }
    };
    check('beta1', this.beta1, 0, 1);
    check('beta2', this.beta2, 0, 1);
    check('eps', this.eps, 0, Number.POSITIVE_INFINITY);
    check('weightDecay', this.weightDecay, 0, Number.POSITIVE_INFINITY);
    if (params.size === 0) {
      throw new ParaError('INVALID_ARGUMENT', 'AdamW needs at least one parameter', {
        field: 'params',
        expected: 'a non-empty map of tf.Variables',
      });
    }
    this.params = params;
    const decay = options.decay ?? ((_n: string, v: tf.Variable) => v.rank >= 2);
    this.decays = new Map([...params].map(([n, v]) => [n, decay(n, v)]));
    const id = nextOptimizerId++;
    const zeros = (p: tf.Variable, k: string): tf.Variable => {
      const z = tf.zerosLike(p);
      const v = tf.variable(z, false, `adamw${id}/${k}/${p.name}`);
      z.dispose();
      return v;
    };
    for (const [name, p] of params) {
      this.m.set(name, zeros(p, 'm'));
      this.v.set(name, zeros(p, 'v'));
    }
  }

  /** Updates applied so far. */
  get step(): number {
    return this.t;
  }

  /**
   * One update with gradients by parameter name (every parameter needs one), at learning rate
   * `lr`; `gradScale` multiplies every gradient first (clipping by global norm).
   */
  apply(grads: Readonly<Record<string, tf.Tensor>>, lr: number, gradScale = 1): void {
    for (const name of this.params.keys()) {
      if (grads[name] === undefined) {
        throw new ParaError('INVALID_ARGUMENT', 'no gradient for a parameter', {
          field: name,
          expected: 'a gradient for every parameter',
        });
      }
    }
    this.t += 1;
    if (this.fusable(grads)) {
      this.applyFused(grads, lr, gradScale);
      return;
    }
    const { beta1: b1, beta2: b2, eps } = this;
    const bc1 = 1 - b1 ** this.t;
    const bc2 = 1 - b2 ** this.t;
    for (const [name, p] of this.params) {
      const m = this.m.get(name) as tf.Variable;
      const v = this.v.get(name) as tf.Variable;
      const decay = this.decays.get(name) === true ? this.weightDecay : 0;
      tf.tidy(() => {
        const g =
          gradScale === 1
            ? (grads[name] as tf.Tensor)
            : tf.mul(grads[name] as tf.Tensor, gradScale);
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        m.assign(m1);
        v.assign(v1);
        const update = tf.div(tf.div(m1, bc1), tf.add(tf.sqrt(tf.div(v1, bc2)), eps));
        const decayed = decay === 0 ? p : tf.mul(p, 1 - lr * decay);
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      });
    }
  }

  /** Whether this step can run as `ParaAdamW`: registered, every tensor float32 of its parameter's shape. */
  private fusable(grads: Readonly<Record<string, tf.Tensor>>): boolean {
    if (!hasFusedKernel(FUSED_KERNELS.adamW)) return false;
    for (const [name, p] of this.params) {
      const g = grads[name] as tf.Tensor;
      if (p.dtype !== 'float32' || g.dtype !== 'float32' || !sameShape(p, g)) return false;
      const m = this.m.get(name) as tf.Variable;
      const v = this.v.get(name) as tf.Variable;
      if (m.dtype !== 'float32' || v.dtype !== 'float32' || !sameShape(p, m) || !sameShape(p, v))
        return false;
    }
    return true;
  }

  /** One step through `ParaAdamW`: one kernel call per chunk of parameters; new tensors assigned. */
  private applyFused(
    grads: Readonly<Record<string, tf.Tensor>>,
    lr: number,
    gradScale: number,
  ): void {
    const chunks: string[][] = [];
    let chunk: string[] = [];
    let elems = 0;
    for (const [name, p] of this.params) {
      if (chunk.length > 0 && elems + p.size > FUSED_CHUNK_ELEMENTS) {
        chunks.push(chunk);
        chunk = [];
        elems = 0;
      }
      chunk.push(name);
      elems += p.size;
    }
    chunks.push(chunk);
    for (const names of chunks) {
      tf.tidy(() => {
        const inputs: tf.NamedTensorMap = {};
        names.forEach((name, i) => {
          inputs[`param${i}`] = this.params.get(name) as tf.Variable;
          inputs[`m${i}`] = this.m.get(name) as tf.Variable;
          inputs[`v${i}`] = this.v.get(name) as tf.Variable;
          inputs[`grad${i}`] = grads[name] as tf.Tensor;
        });
        const attrs = {
          count: names.length,
          lr,
          beta1: this.beta1,
          beta2: this.beta2,
          eps: this.eps,
          step: this.t,
          gradScale,
          weightDecay: names.map((n) => (this.decays.get(n) === true ? this.weightDecay : 0)),
        };
        // [param′0, m′0, v′0, param′1, …]: new tensors, disposed by the tidy once assigned
        const out = tf
          .engine()
          .runKernel(
            FUSED_KERNELS.adamW,
            inputs,
            attrs as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[];
        names.forEach((name, i) => {
          (this.params.get(name) as tf.Variable).assign(out[3 * i] as tf.Tensor);
          (this.m.get(name) as tf.Variable).assign(out[3 * i + 1] as tf.Tensor);
          (this.v.get(name) as tf.Variable).assign(out[3 * i + 2] as tf.Tensor);
        });
      });
    }
  }

  /** The moments (live variables: do not dispose) and the step, for a checkpoint. */
  state(): AdamWState {
    const tensors: Record<string, tf.Tensor> = {};
    for (const name of this.params.keys()) {
      tensors[`m.${name}`] = this.m.get(name) as tf.Variable;
      tensors[`v.${name}`] = this.v.get(name) as tf.Variable;
    }
    return { step: this.t, tensors };
  }

  /** Restores `state()` exactly; every moment must be present with its parameter's shape. */
  loadState(state: AdamWState, file?: string): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new ParaError('INVALID_CONFIG', 'bad optimizer step', {
        file,
        field: 'step',
        expected: 'an integer ≥ 0',
        actual: String(state.step),
      });
    }
    for (const [name, p] of this.params) {
      for (const k of ['m', 'v'] as const) {
        const t = state.tensors[`${k}.${name}`];
        if (t === undefined) {
          throw new ParaError('TENSOR_NOT_FOUND', 'optimizer state lacks a moment', {
            file,
            field: `${k}.${name}`,
            expected: `a tensor [${p.shape.join(', ')}]`,
          });
        }
        if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
          throw new ParaError('SHAPE_MISMATCH', 'optimizer moment has the wrong shape', {
            file,
            field: `${k}.${name}`,
            expected: `[${p.shape.join(', ')}]`,
            actual: `[${t.shape.join(', ')}]`,
          });
        }
      }
    }
    for (const name of this.params.keys()) {
      (this.m.get(name) as tf.Variable).assign(state.tensors[`m.${name}`] as tf.Tensor);
      (this.v.get(name) as tf.Variable).assign(state.tensors[`v.${name}`] as tf.Tensor);
    }
    this.t = state.step;
  }

  dispose(): void {
    for (const x of this.m.values()) x.dispose();
    for (const x of this.v.values()) x.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** The most tensors one `ParaSumSquares` call reads (one call per this many gradients). */
const SUM_SQUARES_CHUNK = 256;

/**
 * Σ‖g‖² over every gradient as a scalar tensor: one `ParaSumSquares` call per chunk of float32
 * gradients where the backend registers it (@para/ops' fused.ts; @para/blas on wasm), else a sum
 * of `tf.sum(tf.square(g))` — two kernels per gradient, which a full fine-tuning update pays
 * for every weight.
 */
export function sumOfSquares(grads: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    if (grads.length === 0) return tf.scalar(0);
    const fused = hasFusedKernel(FUSED_KERNELS.sumSquares);
    const parts: tf.Tensor[] = [];
    const rest: tf.Tensor[] = [];
    for (const g of grads) (fused && g.dtype === 'float32' && g.size > 0 ? parts : rest).push(g);
    const sums: tf.Tensor[] = rest.map((g) => tf.sum(tf.square(g)));
    for (let i = 0; i < parts.length; i += SUM_SQUARES_CHUNK) {
      const chunk = parts.slice(i, i + SUM_SQUARES_CHUNK);
      const inputs: tf.NamedTensorMap = {};
      chunk.forEach((g, j) => {
        inputs[`x${j}`] = g;
      });
      sums.push(
        tf.engine().runKernel(FUSED_KERNELS.sumSquares, inputs, {
          count: chunk.length,
        } as unknown as tf.NamedAttrMap) as tf.Tensor,
      );
    }
    return (sums.length === 1 ? sums[0] : tf.addN(sums)) as tf.Scalar;
  });
}

/** √(Σ‖g‖²) over every gradient, as a host number (one read). */
export async function globalNorm(grads: readonly tf.Tensor[]): Promise<number> {
  if (grads.length === 0) return 0;
  const total = tf.tidy(() => tf.sqrt(sumOfSquares(grads)));
  const value = (await total.data())[0] as number;
  total.dispose();
  return value;
}

/** The factor that clips gradients of global norm `norm` to at most `maxNorm` (1 when within it, or when maxNorm is 0/∞). */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm) || !Number.isFinite(norm) || norm <= maxNorm)
    return 1;
  return maxNorm / (norm + 1e-6);
}
