import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendCandidate, importOptional, isModuleNotFound } from '../backend/select';
import { installWasmKernelReplacements } from '../backend/wasm-kernels';
import { installWasmMatmulFix } from '../backend/wasm-matmul';
import {
  installWebGpuKernelsFrom,
  raiseStorageBufferLimit,
  type WebGpuKernelsModule,
} from '../backend/webgpu-kernels';
import {
  locateTfjsNode,
  TFJS_NODE_PACKAGES,
  type TfjsNodePackage,
  tensorflowRuntimeOf,
} from './tensorflow';

/**
 * Import an optional package as the application sees it. Optional backends are usually
 * installed by the application, not by @para/core (e.g. `@tensorflow/tfjs-node-gpu` is an
 * optional dependency of the `para` CLI), and with pnpm or a linked workspace they are not
 * visible from @para/core's own directory — so after a plain import fails, resolve from the main
 * script and from the working directory.
 */
export async function importFromApp<T = unknown>(specifier: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (e) {
    if (!isModuleNotFound(e, specifier)) throw e;
    const bases = [process.argv[1], join(process.cwd(), 'package.json')].filter(
      (b): b is string => !!b,
    );
    for (const base of bases) {
      let resolved: string;
      try {
        resolved = createRequire(base).resolve(specifier);
      } catch {
        continue;
      }
      return (await import(pathToFileURL(resolved).href)) as T;
    }
    throw e;
  }
}

/**
 * Backends on Node, in priority order: TensorFlow's native library (CUDA through
 * tfjs-node-gpu, else tfjs-node), then wasm (SIMD), then plain-JS cpu. WebGPU through Dawn (the
 * `webgpu` package) is started only when asked for (`--backend webgpu` / PARA_BACKEND=webgpu).
 */
export function nodeBackendCandidates(options: NodeBackendOptions = {}): BackendCandidate[] {
  return [
    {
      name: 'tensorflow',
      auto: true,
      load: loadTensorflow,
    },
    {
      name: 'wasm',
      auto: true,
      async load() {
        await importOptional('@tensorflow/tfjs-backend-wasm', () =>
          importFromApp('@tensorflow/tfjs-backend-wasm'),
        );
        // Route transposed/batched matmuls to XNNPACK's fast path (10x on training steps),
        // then, where @para/blas loads, replace both matmul kernels with OpenBLAS (it falls
        // back to the fixed kernels for what it does not handle, so the order matters).
        installWasmMatmulFix();
        installWasmKernelReplacements();
        const blas = await installOptionalBlas();
        return `@tensorflow/tfjs-backend-wasm (SIMD, 1 thread in Node); matmul: ${blas}`;
      },
    },
    {
      name: 'cpu',
      auto: true,
      async load() {
        await importOptional('@tensorflow/tfjs-backend-cpu', () =>
          importFromApp('@tensorflow/tfjs-backend-cpu'),
        );
        return '@tensorflow/tfjs-backend-cpu (plain JS)';
      },
    },
    {
      name: 'webgpu',
      auto: false,
      async load() {
        const adapter = await installDawnNavigatorGpu();
        await importOptional('@tensorflow/tfjs-backend-webgpu', () =>
          importFromApp('@tensorflow/tfjs-backend-webgpu'),
        );
        // @para/webgpu's fused WGSL kernels (RMSNorm, SwiGLU, RoPE, attention, ...) where the
        // application has the package, unless PARA_FUSED=0.
        return `${adapter}; ${await installOptionalWebGpuKernels(options.webgpuKernels)}`;
      },
    },
  ];
}

/** The command that builds a package's binding (README: "The tensorflow backend"). */
export function tensorflowSetupCommand(pkg: TfjsNodePackage): string {
  return `pnpm setup:tensorflow${pkg === '@tensorflow/tfjs-node-gpu' ? ' --gpu' : ''}`;
}

/**
 * Start the `tensorflow` backend from the first TensorFlow.js Node package that loads
 * (tfjs-node-gpu, then tfjs-node). A package whose binding file is missing is skipped without
 * importing it ("not set up"); one that is built but fails to load says why. Returns
 * `@tensorflow/tfjs-node 4.22.0, TensorFlow 2.21.0, devices: CPU`.
 */
async function loadTensorflow(): Promise<string> {
  // TensorFlow's C++ INFO lines (CPU feature notices) go to stderr when the library loads and
  // would mix with a command's output; warnings and errors still show. A user's value wins.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '1';
  const reasons: string[] = [];
  for (const pkg of TFJS_NODE_PACKAGES) {
    const where = locateTfjsNode(pkg);
    if (where !== undefined && !where.built) {
      reasons.push(
        `${pkg} ${where.version} is installed but not set up (run \`${tensorflowSetupCommand(pkg)}\`)`,
      );
      continue;
    }
    const llvm = where?.built ? loadedLlvm() : undefined;
    if (llvm !== undefined) {
      // Seen on Mesa 22 llvmpipe: TensorFlow's own LLVM (exported by libtensorflow_framework)
      // and Mesa's libLLVM in one process segfault while TensorFlow loads. The other order
      // (tensorflow first, then webgpu) works.
      reasons.push(
        `${pkg}: TensorFlow cannot load into this process: ${basename(llvm)} (Mesa's LLVM, loaded with the webgpu backend) is already loaded and crashes it; start tensorflow before webgpu, or in another process`,
      );
      continue;
    }
    let mod: { version?: Record<string, string> };
    try {
      mod = await importOptional(pkg, () => importFromApp(pkg));
    } catch (e) {
      const m = (e as Error).message;
      reasons.push(
        /tfjs_binding\.node/.test(m)
          ? `${pkg} is installed but its native binding is missing (run \`${tensorflowSetupCommand(pkg)}\`)`
          : m,
      );
      continue;
    }
    const runtime = tensorflowRuntimeOf(tf.findBackend('tensorflow'));
    const version = where?.version ?? mod.version?.['tfjs-node'] ?? '';
    return [
      `${pkg}${version ? ` ${version}` : ''}`,
      runtime ? `TensorFlow ${runtime.version}` : 'TensorFlow (version unknown)',
      `devices: ${runtime?.devices.join(', ') ?? 'unknown'}`,
    ].join(', ');
  }
  throw new Error(reasons.join('; '));
}

/**
 * A libLLVM shared library mapped into this process (Linux) before TensorFlow's library, or
 * undefined (none, or TensorFlow is loaded already: starting it again imports nothing).
 */
function loadedLlvm(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  let maps: string;
  try {
    maps = readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return undefined;
  }
  if (maps.includes('/libtensorflow_framework.so')) return undefined;
  return /\S*\/libLLVM[^\s/]*\.so[^\s/]*/.exec(maps)?.[0];
}

interface DawnAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  isFallbackAdapter?: boolean;
}
interface DawnGpuLike {
  requestAdapter(options?: Record<string, unknown>): Promise<DawnAdapterLike | null>;
}

let dawnDescription: string | undefined;

/**
 * Make `navigator.gpu` a Dawn instance so tfjs-backend-webgpu works in Node. Tries Dawn's
 * default backend (Vulkan on Linux: real GPUs, Mesa ≥ 25 lavapipe), then OpenGL ES in WebGPU
 * compatibility mode (Mesa llvmpipe through surfaceless EGL), unless PARA_DAWN_BACKEND names one
 * (`vulkan`, `opengles`, ...). Returns a description of the adapter.
 */
async function installDawnNavigatorGpu(): Promise<string> {
  if (dawnDescription !== undefined) return dawnDescription;
  // No display here: EGL must not look for X11/Wayland.
  process.env.EGL_PLATFORM ??= 'surfaceless';
  const dawn = (await importOptional('webgpu', () => importFromApp('webgpu'))) as unknown as {
    create(flags: string[]): DawnGpuLike;
    globals: Record<string, unknown>;
  };
  Object.assign(globalThis, dawn.globals);
  const forced = process.env.PARA_DAWN_BACKEND?.trim();
  const attempts: { flags: string[]; compat: boolean; label: string }[] = forced
    ? [
        {
          flags: [`backend=${forced}`],
          compat: forced === 'opengles' || forced === 'opengl',
          label: forced,
        },
      ]
    : [
        { flags: [], compat: false, label: 'default (Vulkan)' },
        { flags: ['backend=opengles'], compat: true, label: 'opengles' },
      ];
  const failures: string[] = [];
  for (const a of attempts) {
    let gpu: DawnGpuLike;
    let adapter: DawnAdapterLike | null = null;
    try {
      gpu = dawn.create(a.flags);
      const opts = a.compat ? { featureLevel: 'compatibility' } : {};
      adapter = await gpu.requestAdapter(opts);
    } catch (e) {
      failures.push(`${a.label}: ${(e as Error).message}`);
      continue;
    }
    if (adapter === null) {
      failures.push(`${a.label}: no adapter`);
      continue;
    }
    if (a.compat) {
      const request = gpu.requestAdapter.bind(gpu);
      gpu.requestAdapter = (o: Record<string, unknown> = {}) =>
        request({ ...o, featureLevel: 'compatibility' });
    }
    // @para/webgpu's fused kernels bind more storage buffers than WebGPU's default limit.
    if (process.env.PARA_FUSED !== '0') raiseStorageBufferLimit(gpu);
    Object.defineProperty(globalThis, 'navigator', {
      value: { ...(globalThis as { navigator?: object }).navigator, gpu },
      configurable: true,
      writable: true,
    });
    const info = adapter.info ?? {};
    const name = [info.vendor, info.architecture, info.device, info.description]
      .filter(Boolean)
      .join(' ');
    dawnDescription = `Dawn ${a.label}${name ? `: ${name}` : ''}${adapter.isFallbackAdapter ? ' (fallback adapter)' : ''}`;
    return dawnDescription;
  }
  throw new Error(`Dawn found no WebGPU adapter (${failures.join('; ')})`);
}

/**
 * Install @para/webgpu's fused WGSL kernels for the webgpu backend when the package loads
 * (from `loader`, else from the application; PARA_FUSED=0 turns this off, as it does @para/blas's fused kernels on wasm). Returns the
 * report's phrase: `fused kernels: @para/webgpu WGSL (ParaRmsNorm, …)`, or why none.
 */
export function installOptionalWebGpuKernels(
  loader?: (() => Promise<WebGpuKernelsModule>) | false,
): Promise<string> {
  const disabled =
    process.env.PARA_FUSED === '0'
      ? 'PARA_FUSED=0'
      : loader === false
        ? 'webgpuKernels: false'
        : undefined;
  return installWebGpuKernelsFrom(
    loader || (() => importFromApp<WebGpuKernelsModule>('@para/webgpu')),
    disabled,
  );
}

/** Options of the Node backend candidates. */
export interface NodeBackendOptions {
  /**
   * How to load @para/webgpu when webgpu starts: a loader (`() => import('@para/webgpu')`, for a
   * package that depends on it), `false` for none; default: import it from the application.
   */
  webgpuKernels?: (() => Promise<WebGpuKernelsModule>) | false;
}

interface BlasModuleLike {
  loadBlas(): {
    available: boolean;
    reason?: string;
    openblas?: string;
    corename?: string;
    threads?: number;
    threadTimeout?: { value: string; source: 'environment' | 'para' };
    matmul?: string;
  };
  installBlasKernels(): boolean;
}

/** OpenBLAS's kernel sets that use AVX-512 (its `OPENBLAS_CORETYPE` names, lower-cased). */
const AVX512_CORETYPES = new Set(['skylakex', 'cooperlake', 'sapphirerapids']);

/**
 * A warning for reports when `OPENBLAS_CORETYPE` pins OpenBLAS to kernels without AVX-512 on a
 * CPU that has it (some machines set it in their environment; torch's MKL ignores it): on an
 * AVX-512 EPYC, `Haswell` ran sgemm at 193 GFLOP/s against 343 for OpenBLAS's own choice
 * (BENCHMARKS.md, issue 16 part 4). `cpuinfo` defaults to Linux's /proc/cpuinfo.
 */
export function openblasCoretypeWarning(
  env: Readonly<Record<string, string | undefined>> = process.env,
  cpuinfo?: string,
): string | undefined {
  const forced = env.OPENBLAS_CORETYPE?.trim();
  if (!forced || AVX512_CORETYPES.has(forced.toLowerCase())) return undefined;
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const flags = /^flags\s*:(.*)$/m.exec(text)?.[1]?.trim().split(/\s+/) ?? [];
  if (!flags.includes('avx512f')) return undefined;
  return `OPENBLAS_CORETYPE=${forced} from the environment keeps OpenBLAS off this CPU's AVX-512 kernels; unset it to let OpenBLAS choose`;
}

/**
 * Install @para/blas's OpenBLAS kernels under the wasm backend when the package and its native
 * addon load (PARA_BLAS_DISABLE=1 turns this off). Returns what the matmuls run on, for reports.
 */
export async function installOptionalBlas(): Promise<string> {
  if (process.env.PARA_BLAS_DISABLE === '1')
    return 'XNNPACK with the transpose/batch fix (OpenBLAS disabled by PARA_BLAS_DISABLE=1)';
  let blas: BlasModuleLike;
  try {
    blas = await importFromApp<BlasModuleLike>('@para/blas');
  } catch (e) {
    const why = isModuleNotFound(e, '@para/blas')
      ? '@para/blas is not installed'
      : `@para/blas failed to load: ${(e as Error).message}`;
    return `XNNPACK with the transpose/batch fix (${why})`;
  }
  const status = blas.loadBlas();
  if (!status.available)
    return `XNNPACK with the transpose/batch fix (OpenBLAS unavailable: ${status.reason ?? 'unknown reason'})`;
  if (!blas.installBlasKernels())
    return 'XNNPACK with the transpose/batch fix (OpenBLAS kernels could not be installed)';
  const version = status.openblas?.split(' ').slice(0, 2).join(' ') ?? 'OpenBLAS';
  const detail = [
    status.corename && `${status.corename} kernels`,
    status.matmul?.startsWith('tile-') &&
      `products of ≥ 96 rows on para's ${status.matmul.slice(5)} tile kernel`,
    status.threads && `${status.threads} threads`,
    status.threadTimeout &&
      `OPENBLAS_THREAD_TIMEOUT ${status.threadTimeout.value}${status.threadTimeout.source === 'para' ? " (para's default)" : ''}`,
    openblasCoretypeWarning(),
  ].filter(Boolean);
  return `${version} via @para/blas${detail.length > 0 ? ` (${detail.join(', ')})` : ''}`;
}
