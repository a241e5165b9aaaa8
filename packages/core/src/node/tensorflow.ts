/**
 * Where `@tensorflow/tfjs-node(-gpu)` is installed and whether its native binding has been built
 * (`pnpm setup:tensorflow`), without importing it: a failing import of tfjs-node costs ~2 s (it
 * loads the whole tfjs union package before it looks for its binding), so the backend order
 * checks the binding file first and says "not set up" instead.
 */

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

/** The TensorFlow.js Node packages, in the order the `tensorflow` backend tries them. */
export const TFJS_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;
export type TfjsNodePackage = (typeof TFJS_NODE_PACKAGES)[number];

/** What `para setup tensorflow` records next to the libraries it installed (deps/para-setup.json). */
export interface TensorflowSetupRecord {
  /** `cpu` (the tensorflow-cpu wheel) or `gpu` (the tensorflow wheel, CUDA 12 kernels). */
  variant: 'cpu' | 'gpu';
  /** The TensorFlow release the C library comes from, e.g. `2.21.0`. */
  tensorflow: string;
  /** The wheel file it was taken from (name only) and its SHA-256. */
  wheel: string;
  wheelSha256: string;
  /** The Node version and N-API version the binding was built for. */
  node: string;
  napiBuildVersion: number;
  /** The built binding, relative to the package directory. */
  binding: string;
  /** ISO time of the build. */
  builtAt: string;
}

export interface TfjsNodeLocation {
  name: TfjsNodePackage;
  /** The installed package's directory (symlinks resolved). */
  dir: string;
  version: string;
  /** N-API version of the binding node-pre-gyp looks for (the highest the package and Node share). */
  napiBuildVersion: number;
  /** `binary.module_name` (tfjs_binding). */
  moduleName: string;
  /** Absolute directory of the binding (`binary.module_path` with its N-API version). */
  modulePath: string;
  /** Absolute path of the `.node` file tfjs-node loads. */
  bindingPath: string;
  /** True when that file exists. */
  built: boolean;
  /** deps/para-setup.json, when `para setup tensorflow` built this package. */
  setup?: TensorflowSetupRecord;
}

interface PackageJsonLike {
  version?: string;
  binary?: { module_name?: string; module_path?: string; napi_versions?: number[] };
}

/**
 * Directories a package is resolved from, as the backend import sees them: @para/core's own
 * location first (a plain import resolves from there), then the main script and the working
 * directory (see importFromApp).
 */
function resolutionBases(): string[] {
  const bases: string[] = [];
  // The CommonJS build knows its own file; the ES module build cannot name it without
  // `import.meta`, which would not parse in the CommonJS build of this same source. Where none of
  // these bases sees the package, the backend falls back to importing it.
  if (typeof __filename === 'string') bases.push(__filename);
  if (process.argv[1]) bases.push(resolve(process.argv[1]));
  bases.push(join(process.cwd(), 'package.json'));
  return bases;
}

declare const __filename: string | undefined;

/** The package.json of `pkg` as seen from `bases` (or the default bases), or undefined. */
function resolvePackageJson(pkg: string, bases: string[]): string | undefined {
  for (const base of bases) {
    try {
      return createRequire(base).resolve(`${pkg}/package.json`);
    } catch {
      // not visible from here
    }
  }
  return undefined;
}

/** The N-API version node-pre-gyp picks: the highest of the package's that this Node supports. */
export function napiBuildVersion(napiVersions: readonly number[] | undefined): number {
  const node = Number(process.versions.napi ?? 0);
  const usable = (napiVersions ?? []).filter((v) => v <= node);
  return usable.length > 0 ? Math.max(...usable) : node;
}

/**
 * Where `pkg` is installed and where its binding is (or would be), or undefined when it is not
 * installed. `from` adds a directory to resolve from (before the default ones).
 */
export function locateTfjsNode(pkg: TfjsNodePackage, from?: string): TfjsNodeLocation | undefined {
  const bases = [...(from === undefined ? [] : [join(from, 'package.json')]), ...resolutionBases()];
  const pj = resolvePackageJson(pkg, bases);
  if (pj === undefined) return undefined;
  let json: PackageJsonLike;
  try {
    json = JSON.parse(readFileSync(pj, 'utf8')) as PackageJsonLike;
  } catch {
    return undefined;
  }
  const dir = dirname(pj);
  const napi = napiBuildVersion(json.binary?.napi_versions);
  const moduleName = json.binary?.module_name ?? 'tfjs_binding';
  const modulePath = resolve(
    dir,
    (json.binary?.module_path ?? './lib/napi-v{napi_build_version}').replace(
      '{napi_build_version}',
      String(napi),
    ),
  );
  const bindingPath = join(modulePath, `${moduleName}.node`);
  const location: TfjsNodeLocation = {
    name: pkg,
    dir,
    version: json.version ?? 'unknown',
    napiBuildVersion: napi,
    moduleName,
    modulePath,
    bindingPath,
    built: existsSync(bindingPath),
  };
  const setup = readSetupRecord(dir);
  if (setup !== undefined) location.setup = setup;
  return location;
}

/** deps/para-setup.json of a tfjs-node package directory, or undefined. */
export function readSetupRecord(dir: string): TensorflowSetupRecord | undefined {
  const file = join(dir, 'deps', 'para-setup.json');
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as TensorflowSetupRecord;
  } catch {
    return undefined;
  }
}

/** The TensorFlow C library behind the active `tensorflow` backend, read from its binding. */
export interface TensorflowRuntime {
  /** `TF_Version()` of the loaded library, e.g. `2.21.0`. */
  version: string;
  /** Device kinds TensorFlow eager places ops on: always CPU, GPU when a CUDA device is used. */
  devices: string[];
}

interface NodeKernelBackendLike {
  binding?: { TF_Version?: string; isUsingGpuDevice?: () => boolean };
  isUsingGpuDevice?: boolean;
}

/** Version and devices of a started tfjs-node backend object (`tf.findBackend('tensorflow')`). */
export function tensorflowRuntimeOf(backend: unknown): TensorflowRuntime | undefined {
  const b = backend as NodeKernelBackendLike | null | undefined;
  const version = b?.binding?.TF_Version;
  if (typeof version !== 'string') return undefined;
  let gpu = b?.isUsingGpuDevice;
  if (typeof gpu !== 'boolean') {
    try {
      gpu = b?.binding?.isUsingGpuDevice?.() ?? false;
    } catch {
      gpu = false;
    }
  }
  return { version, devices: gpu ? ['CPU', 'GPU'] : ['CPU'] };
}
