import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What `loadBlas()` found. */
export interface BlasStatus {
  /** The native addon and OpenBLAS loaded. */
  available: boolean;
  /** Why it is unavailable (every load attempt, joined with "; "). */
  reason?: string;
  /** OpenBLAS's build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64". */
  openblas?: string;
  /** The CPU kernel set OpenBLAS chose at run time (e.g. "Haswell"). */
  corename?: string;
  /** OpenBLAS's thread count. */
  threads?: number;
  /** The .node file that loaded. */
  binary?: string;
  /**
   * OPENBLAS_THREAD_TIMEOUT as OpenBLAS read it when it loaded: the environment's, or para's
   * default {@link OPENBLAS_THREAD_TIMEOUT} when the environment left it unset.
   */
  threadTimeout?: { value: string; source: 'environment' | 'para' };
  /**
   * What BatchMatMul's products (M ≥ 96) run on: `openblas`, or para's own tile kernel
   * (`tile-avx512`; `tile-avx2` / `tile-baseline` only when PARA_MATMUL=tile forces it). By
   * default the tile kernel runs where the CPU has AVX-512 and OpenBLAS's core does not use it
   * (OPENBLAS_CORETYPE=Haswell on an AVX-512 machine); PARA_MATMUL=openblas or =tile decides
   * instead. Absent from binaries built before the choice existed.
   */
  matmul?: string;
}

/**
 * OpenBLAS's idle threads spin for 2^OPENBLAS_THREAD_TIMEOUT cycles after each call before they
 * sleep: 2^28 (~0.1 s) by default. Between two matmuls the fused kernels run on their own pool,
 * and on a few cores those spinning threads take the CPU from it. Unless the environment sets the
 * variable, the addon loads with 2^20 (~0.3 ms at 3–4 GHz: still awake across back-to-back
 * products). OpenBLAS reads it once, as it loads; the environment is restored right after, so child
 * processes see what the user set. On a 2-vCPU Zen 5 (CPU family 26), against 2^28: training
 * updates 0.94–1.15× (8 × 256: 1.00–1.15×), decode at batch 32 1.09–1.18× (BENCHMARKS.md, issue
 * 16 part 6). No effect where
 * OpenBLAS was already loaded in the process by something else.
 */
export const OPENBLAS_THREAD_TIMEOUT = '20';

/** The addon's raw interface (native/para_blas.c). */
export interface BlasAddon {
  info(): { config: string; corename: string; threads: number; napiVersion: number };
  sgemm(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
  ): void;
  matmulHeap(heap: ArrayBuffer, params: Float64Array): void;
  // The fused kernels (native/para_fused.c; absent from binaries built before them).
  /** params: [x, w, y, rows, d, eps, unitOffset] (byte offsets, then sizes). */
  rmsNormHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** params: [dy, x, w, dx, dw, rows, d, eps, unitOffset]. */
  rmsNormGradHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** params: [x, res, w, sum, y, rows, d, eps, unitOffset]: sum = x + res, y = rmsNorm(sum). */
  addRmsNormHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** params: [dy, ds, sum, w, dx, dw, rows, d, eps, unitOffset]: dx = ds + the norm's gradient. */
  addRmsNormGradHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** params: [gate, up, y, n]. */
  swigluHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** params: [dy, gate, up, dgate, dup, n]. */
  swigluGradHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** params: [x, cos, sin, y, B, H, T, hd, cosBatch, inverse]. */
  ropeHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** The fused kernels' thread pool: its size (calling thread included), and the work below which one thread runs. */
  /** [q, k, v, mask (-1: none), out, B, Hq, Hkv, T, S, hd, maskBatch, scale] (byte offsets). */
  attentionHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** [dy, q, k, v, mask (-1: none), dq, dk, dv, B, Hq, Hkv, T, S, hd, maskBatch, scale]. */
  attentionGradHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** [gate, up, scale, y, B, T, F, scaleBatch] (forward only: y = silu(gate) · up · scale). */
  swigluScaledHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /**
   * [q, k, v, cos, sin, kCache, vCache, qScale, kScale, vScale (-1: none), qOut, B, Hq, Hkv, T,
   * hd, C, cosBatch, qScaleBatch, kScaleBatch, vScaleBatch, slots…] (forward only; writes the
   * caches in place).
   */
  ropeKvWriteHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** [x, scale, y, B, T, F, scaleBatch]: y = x · scale (x [B, T, F], scale [scaleBatch, 1, F]). */
  scaleHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** [dy, x, scale, dx, dscale, B, T, F, scaleBatch]: dx = dy · scale, dscale = Σ_t (Σ_b) dy · x. */
  scaleGradHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** [logits, targets (int32), weights, loss, lse, N, V] (byte offsets). */
  crossEntropyHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /** [dy, logits, targets, weights, lse, dlogits, N, V]. */
  crossEntropyGradHeap?(heap: ArrayBuffer, params: Float64Array): void;
  /**
   * [count, lr, beta1, 1 − beta1, beta2, 1 − beta2, bc1, bc2, eps, gradScale, then per parameter
   * p, m, v, g, p′, m′, v′ (byte offsets), n, keep].
   */
  adamWHeap?(heap: ArrayBuffer, params: Float64Array): void;
  sumSquaresHeap?(heap: ArrayBuffer, params: Float64Array): void;
  fusedInfo?(): {
    threads: number;
    parallelMinElements: number;
    attentionIsa?: string;
    matmul?: string;
  };
}

/** The package root: `src/..` when run from source, `dist/..` when built. */
export const packageRoot: string = fileURLToPath(new URL('..', import.meta.url));

const requireHere = createRequire(import.meta.url);

function messageOf(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0]?.trim() || 'unknown error';
}

/** Paths to try, most specific first: what node-gyp-build picks, then each prebuild and build/Release. */
function candidates(root: string, reasons: string[]): string[] {
  const out: string[] = [];
  try {
    const nodeGypBuild = requireHere('node-gyp-build') as { resolve(dir: string): string };
    out.push(nodeGypBuild.resolve(root));
  } catch (e) {
    reasons.push(messageOf(e));
  }
  const dir = join(root, 'prebuilds', `${platform()}-${arch()}`);
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) if (f.endsWith('.node')) out.push(join(dir, f));
  }
  const release = join(root, 'build', 'Release', 'para_blas.node');
  if (existsSync(release)) out.push(release);
  return [...new Set(out)];
}

/** Load the addon from a package root; never throws. */
export function loadAddonFrom(root: string): { addon?: BlasAddon; status: BlasStatus } {
  if (process.env.PARA_BLAS_DISABLE === '1') {
    return { status: { available: false, reason: 'disabled by PARA_BLAS_DISABLE=1' } };
  }
  const reasons: string[] = [];
  const fromEnv = process.env.OPENBLAS_THREAD_TIMEOUT;
  const threadTimeout = {
    value: fromEnv ?? OPENBLAS_THREAD_TIMEOUT,
    source: fromEnv === undefined ? ('para' as const) : ('environment' as const),
  };
  if (fromEnv === undefined) process.env.OPENBLAS_THREAD_TIMEOUT = OPENBLAS_THREAD_TIMEOUT;
  try {
    for (const file of candidates(root, reasons)) {
      try {
        const addon = requireHere(file) as BlasAddon;
        const info = addon.info();
        const matmul = addon.fusedInfo?.().matmul;
        return {
          addon,
          status: {
            available: true,
            openblas: info.config,
            corename: info.corename,
            threads: info.threads,
            binary: file,
            threadTimeout,
            ...(matmul === undefined ? {} : { matmul }),
          },
        };
      } catch (e) {
        reasons.push(`${file}: ${messageOf(e)}`);
      }
    }
  } finally {
    if (fromEnv === undefined) delete process.env.OPENBLAS_THREAD_TIMEOUT;
  }
  if (reasons.length === 0) reasons.push(`no native build in ${root}`);
  return {
    status: {
      available: false,
      reason: `${reasons.join('; ')} (needs OpenBLAS at run time: apt-get install libopenblas0)`,
    },
  };
}

let loaded: { addon?: BlasAddon; status: BlasStatus } | undefined;

/** Load the addon (once) and say whether it works here. Never throws. */
export function loadBlas(): BlasStatus {
  loaded ??= loadAddonFrom(packageRoot);
  return { ...loaded.status };
}

/** The loaded addon, or undefined. */
export function blasAddon(): BlasAddon | undefined {
  loadBlas();
  return loaded?.addon;
}

function requireAddon(): BlasAddon {
  const addon = blasAddon();
  if (addon === undefined)
    throw new Error(`@para/blas is unavailable: ${loaded?.status.reason ?? 'not loaded'}`);
  return addon;
}

/**
 * Raw row-major `cblas_sgemm` on plain arrays: c[m,n] = op(a) · op(b), where `a` is [m,k]
 * ([k,m] when transA) and `b` is [k,n] ([n,k] when transB). The ceiling for benchmarks.
 * Throws when the addon is unavailable or an array is too short.
 */
export function sgemm(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transA = false,
  transB = false,
): void {
  requireAddon().sgemm(a, b, c, m, n, k, transA, transB);
}

/** tfjs's FusableActivation numbering (tfjs-backend-wasm kernels/types). */
export const ACTIVATIONS = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
} as const;
export type Activation = keyof typeof ACTIVATIONS;

/** An epilogue operand (bias or PReLU weights) addressed by (flat batch, row, col) element strides. */
export interface HeapOperand {
  /** Byte offset in the heap. */
  offset: number;
  /** Length in elements. */
  length: number;
  /** Element strides over (flat output batch, row, col); 0 broadcasts. */
  strides: [number, number, number];
}

/** One product on a heap: C[batch..., M, N] = act(op(A) · op(B) + bias), all float32. */
export interface HeapMatMulSpec {
  /** Byte offsets of A, B and C in the heap; C is contiguous. */
  a: number;
  b: number;
  c: number;
  m: number;
  n: number;
  k: number;
  /** A is stored [K, M] (else [M, K]). */
  transA?: boolean;
  /** B is stored [N, K] (else [K, N]). */
  transB?: boolean;
  /** The output's batch shape (at most 8 dims); with per-operand element strides (0 = broadcast). */
  batchShape?: number[];
  aStrides?: number[];
  bStrides?: number[];
  bias?: HeapOperand;
  activation?: Activation;
  /** LeakyReLU slope. */
  alpha?: number;
  prelu?: HeapOperand;
}

const FIXED = 21;

/** Pack a spec into the addon's Float64Array parameter block (layout: native/para_blas.c, PARAM_*). */
export function packSpec(spec: HeapMatMulSpec): Float64Array {
  return packSpecInto(spec, new Float64Array(FIXED + 3 * (spec.batchShape ?? []).length));
}

/** Room for the params of any spec (at most 8 batch dims: the kernels' MAX_BATCH_DIMS). */
const scratch = new Float64Array(FIXED + 3 * 8);

/**
 * {@link packSpec} of `{ ...shape, a, b, c, bias, prelu, activation, alpha }` into one reused
 * module-level array (the addon reads it synchronously and keeps nothing), building no spec
 * object on the way: the matmul kernels call this once per product. Per-call garbage is what
 * costs here — a decode step runs ~60 matmuls, and in a CPU profile of the kernel the spec
 * object, its spread and a fresh `Float64Array` per call (where V8's young-generation GC lands,
 * it scans tfjs's WeakMap of tensor data each time) took 10–14 µs of a 512×512 gemv's ~30 µs.
 * More than 8 batch dims: a fresh array.
 */
export function packSpecScratch(
  shape: Omit<HeapMatMulSpec, 'a' | 'b' | 'c' | 'bias' | 'prelu' | 'activation' | 'alpha'>,
  a: number,
  b: number,
  c: number,
  bias: HeapOperand | undefined,
  prelu: HeapOperand | undefined,
  activation: Activation,
  alpha: number,
): Float64Array {
  const nb = (shape.batchShape ?? []).length;
  const p = nb > 8 ? new Float64Array(FIXED + 3 * nb) : scratch;
  writeFixed(p, shape, a, b, c, activation, alpha);
  writeOperand(p, 11, bias);
  writeOperand(p, 16, prelu);
  writeBatch(p, shape);
  return p;
}

function writeFixed(
  p: Float64Array,
  shape: Pick<HeapMatMulSpec, 'm' | 'n' | 'k' | 'transA' | 'transB' | 'batchShape'>,
  a: number,
  b: number,
  c: number,
  activation: Activation,
  alpha: number,
): void {
  p[0] = a;
  p[1] = b;
  p[2] = c;
  p[3] = shape.m;
  p[4] = shape.n;
  p[5] = shape.k;
  p[6] = shape.transA ? 1 : 0;
  p[7] = shape.transB ? 1 : 0;
  p[8] = (shape.batchShape ?? []).length;
  p[9] = ACTIVATIONS[activation];
  p[10] = alpha;
}

function writeOperand(p: Float64Array, at: number, o: HeapOperand | undefined): void {
  if (o === undefined) {
    p[at] = -1;
    return;
  }
  p[at] = o.offset;
  p[at + 1] = o.length;
  p[at + 2] = o.strides[0];
  p[at + 3] = o.strides[1];
  p[at + 4] = o.strides[2];
}

function writeBatch(
  p: Float64Array,
  spec: Pick<HeapMatMulSpec, 'batchShape' | 'aStrides' | 'bStrides'>,
): void {
  const shape = spec.batchShape ?? [];
  const nb = shape.length;
  for (let d = 0; d < nb; d++) {
    p[FIXED + d] = shape[d] as number;
    p[FIXED + nb + d] = spec.aStrides?.[d] ?? 0;
    p[FIXED + 2 * nb + d] = spec.bStrides?.[d] ?? 0;
  }
}

function packSpecInto(spec: HeapMatMulSpec, p: Float64Array): Float64Array {
  writeFixed(p, spec, spec.a, spec.b, spec.c, spec.activation ?? 'linear', spec.alpha ?? 0);
  writeOperand(p, 11, spec.bias);
  writeOperand(p, 16, spec.prelu);
  writeBatch(p, spec);
  return p;
}

/**
 * Compute one (batched, fused) product directly inside `heap` (e.g. the wasm backend's
 * `backend.wasm.HEAPU8.buffer`). The addon checks every offset, length and stride against
 * `heap.byteLength` and throws (writing nothing) on a violation.
 */
export function heapMatMul(heap: ArrayBuffer, spec: HeapMatMulSpec): void {
  requireAddon().matmulHeap(heap, packSpec(spec));
}
