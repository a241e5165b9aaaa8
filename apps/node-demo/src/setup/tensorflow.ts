/**
 * `para setup tensorflow [--gpu]` (`pnpm setup:tensorflow`): a working `tensorflow` backend
 * without tfjs-node's install script, which downloads libtensorflow 2.9.1 from outside the npm
 * registry (it fails offline, and is years behind any current CUDA).
 *
 *   1. get the TensorFlow wheel with the user's Python and pip (`tensorflow-cpu`, or with
 *      `--gpu` `tensorflow` plus the CUDA 12 runtime wheels its METADATA names for the
 *      `and-cuda` extra), pinned to the release the binding is tested with, cached so a re-run
 *      downloads nothing;
 *   2. extract `libtensorflow_cc.so.2`, `libtensorflow_framework.so.2` and the C headers the
 *      binding includes into the installed package's `deps/` (`deps/lib`, `deps/include`), with
 *      the names the binding links and loads: `libtensorflow.so(.2)` → `libtensorflow_cc.so.2`
 *      (which exports the C and eager C APIs), `libtensorflow_framework.so`; with `--gpu` also the
 *      CUDA libraries under `deps/nvidia/<lib>/lib`, the layout the wheel's
 *      `$ORIGIN/../nvidia/<lib>/lib` run paths expect;
 *   3. build the binding offline with node-gyp (`--nodedir` at the running Node's headers;
 *      `module_name` / `module_path` / `napi_build_version` as the package's `binary` field says);
 *   4. load it in a child process and run one matmul; record the result in
 *      `deps/para-setup.json`. A later run that finds that record, the binding and a passing
 *      check says "already set up" (seconds).
 *
 * Missing prerequisites are SetupErrors with a code and what to install.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import {
  locateTfjsNode,
  type TensorflowSetupRecord,
  type TfjsNodeLocation,
  type TfjsNodePackage,
} from '@para/core/node';

/** The TensorFlow release whose C library the tfjs-node 4.22 binding is built and tested against. */
export const PINNED_TENSORFLOW = '2.21.0';

export type SetupErrorCode =
  | 'UNSUPPORTED_PLATFORM'
  | 'TFJS_NODE_MISSING'
  | 'NODE_HEADERS_MISSING'
  | 'NODE_GYP_MISSING'
  | 'COMPILER_MISSING'
  | 'PYTHON_MISSING'
  | 'PIP_MISSING'
  | 'WHEEL_UNAVAILABLE'
  | 'WHEEL_INVALID'
  | 'BUILD_FAILED'
  | 'VERIFY_FAILED';

/** A setup step that cannot go on: `expected` says what to install or pass, `actual` what was found. */
export class SetupError extends Error {
  override readonly name = 'SetupError';
  constructor(
    readonly code: SetupErrorCode,
    message: string,
    readonly expected: string | undefined = undefined,
    readonly actual: string | undefined = undefined,
  ) {
    super(message);
  }
}

export interface SetupOptions {
  /** The GPU build: `tensorflow` + CUDA runtime wheels into @tensorflow/tfjs-node-gpu. */
  gpu?: boolean;
  /** Rebuild even when already set up. */
  force?: boolean;
  /** The Python interpreter that runs pip and reads the wheel (default `python3`). */
  python?: string;
  /** A wheel file to use instead of downloading one. */
  wheel?: string;
  /** Where downloaded wheels are kept (default `$PARA_CACHE_DIR`, else `~/.cache/para`, + `/tensorflow`). */
  cacheDir?: string;
  /** Node's headers for node-gyp (default: `<prefix of the running node>/include/node`, then /usr/local, /usr). */
  nodedir?: string;
  /** Resolve @tensorflow/tfjs-node(-gpu) from this directory first (default: the working directory). */
  from?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

export interface VerifyResult {
  backend: string;
  tfjsNode: string;
  tensorflow: string;
  devices: string[];
  /** [[1,2],[3,4]]² as computed by TensorFlow. */
  matmul: number[];
  seconds: number;
}

export interface SetupResult {
  status: 'set-up' | 'already-set-up';
  package: TfjsNodePackage;
  dir: string;
  variant: 'cpu' | 'gpu';
  tensorflow: string;
  wheel: string;
  binding: string;
  verify: VerifyResult;
  /** CUDA runtime wheels extracted (GPU build only). */
  cudaWheels: string[];
  seconds: number;
}

const PYTHON_HINT =
  'python3 with pip (Debian: apt-get install python3 python3-pip), or --python PATH';

/** The Python distribution and the tfjs package of a variant. */
export function variantOf(gpu: boolean): {
  variant: 'cpu' | 'gpu';
  distribution: string;
  pkg: TfjsNodePackage;
} {
  return gpu
    ? { variant: 'gpu', distribution: 'tensorflow', pkg: '@tensorflow/tfjs-node-gpu' }
    : { variant: 'cpu', distribution: 'tensorflow-cpu', pkg: '@tensorflow/tfjs-node' };
}

/** The default wheel cache: `$PARA_CACHE_DIR/tensorflow`, else `$XDG_CACHE_HOME/para/tensorflow`, else `~/.cache/para/tensorflow`. */
export function defaultCacheDir(): string {
  const base =
    process.env.PARA_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'para');
  return join(base, 'tensorflow');
}

/** Installed Node headers for node-gyp --nodedir, or undefined. */
export function findNodedir(explicit?: string): string | undefined {
  const candidates = explicit
    ? [explicit]
    : [
        ...(process.env.npm_config_nodedir ? [process.env.npm_config_nodedir] : []),
        dirname(dirname(process.execPath)),
        '/usr/local',
        '/usr',
      ];
  return candidates.find(
    (p) =>
      existsSync(join(p, 'include', 'node', 'node_api.h')) &&
      existsSync(join(p, 'include', 'node', 'common.gypi')),
  );
}

/** node-gyp's script: npm's (npm_config_node_gyp, or the one npm bundles next to this node). */
export function findNodeGyp(): string | undefined {
  const prefix = dirname(dirname(process.execPath));
  const candidates = [
    process.env.npm_config_node_gyp,
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: Error;
}

function run(cmd: string, args: string[], cwd?: string, env?: NodeJS.ProcessEnv): Ran {
  const r = spawnSync(cmd, args, {
    cwd,
    env: env ?? process.env,
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    ...(r.error ? { error: r.error } : {}),
  };
}

function lastLines(text: string, n = 12): string {
  return text.trim().split('\n').slice(-n).join('\n');
}

/** pip's ERROR lines (its retries and warnings before them say little), else its last lines. */
function pipReason(text: string): string {
  const errors = text.split('\n').filter((l) => l.startsWith('ERROR:'));
  return errors.length > 0 ? errors.join(' ') : lastLines(text, 3);
}

/** The first line of `cmd --version`, or a SetupError of `code`. */
function requireTool(
  cmd: string,
  args: string[],
  code: SetupErrorCode,
  what: string,
  expected: string,
): string {
  const r = run(cmd, args);
  if (r.error || r.status !== 0) {
    throw new SetupError(
      code,
      `${what} not found: \`${cmd} ${args.join(' ')}\` ${r.error ? `could not run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})` : `exited with ${r.status}`}`,
      expected,
      r.error ? cmd : lastLines(r.stderr || r.stdout, 1),
    );
  }
  return (r.stdout || r.stderr).trim().split('\n')[0] ?? '';
}

/** SHA-256 of a file, streamed. */
export function sha256File(file: string): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('error', rej)
      .on('end', () => res(h.digest('hex')));
  });
}

/** Wheels of `distribution` at `version` in `dir` (PEP 427 names: `tensorflow_cpu-2.21.0-...whl`). */
function cachedWheels(dir: string, distribution: string, version: string): string[] {
  if (!existsSync(dir)) return [];
  const stem = `${distribution.replace(/-/g, '_')}-${version}-`;
  return readdirSync(dir)
    .filter((f) => f.startsWith(stem) && f.endsWith('.whl'))
    .map((f) => join(dir, f));
}

// Python helpers: the wheels are zip files; Python's zipfile reads them (Python is needed for pip
// anyway, and `unzip` may be missing).
const INSPECT_PY = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = set(z.namelist())
meta = next((n for n in names if n.endswith('.dist-info/METADATA')), None)
fields = {'Name': None, 'Version': None}
cuda = []
if meta is not None:
    for line in z.read(meta).decode('utf-8', 'replace').splitlines():
        if not line.strip():
            break
        k, _, v = line.partition(': ')
        if k in fields and fields[k] is None:
            fields[k] = v.strip()
        if k == 'Requires-Dist' and 'extra == "and-cuda"' in v:
            cuda.append(v.split(';')[0].strip().replace(' ', ''))
libs = ['tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2']
print(json.dumps({'name': fields['Name'], 'version': fields['Version'], 'cuda': cuda,
                  'missing': [l for l in libs if l not in names]}))
`;

const EXTRACT_PY = String.raw`
import json, os, re, shutil, sys, zipfile
wheel, out, binding_dir = sys.argv[1], sys.argv[2], sys.argv[3]
cuda_wheels = sys.argv[4:]
z = zipfile.ZipFile(wheel)
names = set(z.namelist())
def copy(zf, member, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zf.open(member) as src, open(dest, 'wb') as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
libs = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']
for lib in libs:
    copy(z, 'tensorflow/' + lib, os.path.join(out, 'lib', lib))
# The C headers the binding includes, and what they include, from the wheel's include tree.
inc = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
prefix = 'tensorflow/include/'
todo = []
for f in os.listdir(binding_dir):
    if f.endswith(('.h', '.cc')):
        with open(os.path.join(binding_dir, f), encoding='utf-8', errors='replace') as fh:
            todo += inc.findall(fh.read())
seen, headers = set(), []
while todo:
    h = todo.pop()
    if h in seen:
        continue
    seen.add(h)
    if os.path.exists(os.path.join(binding_dir, h)):
        continue
    if prefix + h not in names:
        continue
    headers.append(h)
    copy(z, prefix + h, os.path.join(out, 'include', h))
    todo += inc.findall(z.read(prefix + h).decode('utf-8', 'replace'))
# GPU: the CUDA runtime libraries, at deps/nvidia/<lib>/lib as in site-packages.
so = re.compile(r'^nvidia/[^/]+/lib/[^/]+\.so(\.[0-9]+)*$')
cuda = []
for w in cuda_wheels:
    cz = zipfile.ZipFile(w)
    for m in cz.namelist():
        if so.match(m):
            copy(cz, m, os.path.join(out, m))
            cuda.append(m)
print(json.dumps({'headers': sorted(headers), 'cuda': sorted(cuda)}))
`;

function python(py: string, script: string, args: string[], what: string): Ran {
  const r = run(py, ['-c', script, ...args]);
  if (r.error)
    throw new SetupError('PYTHON_MISSING', `${py} could not run`, PYTHON_HINT, r.error.message);
  if (r.status !== 0)
    throw new SetupError(
      'WHEEL_INVALID',
      `${what} failed`,
      'a readable TensorFlow wheel (zip)',
      lastLines(r.stderr),
    );
  return r;
}

/** Name, version, CUDA requirements and missing libraries of a TensorFlow wheel. */
export function inspectWheel(
  py: string,
  wheel: string,
): { name: string | null; version: string | null; cuda: string[]; missing: string[] } {
  return JSON.parse(python(py, INSPECT_PY, [wheel], `reading ${wheel}`).stdout);
}

/**
 * `python -m pip download --no-deps` of `specs` into `dest`; WHEEL_UNAVAILABLE with pip's words
 * when it fails (`what` names them in the message, `expected` says how else to provide them).
 */
function pipDownload(
  py: string,
  specs: string[],
  dest: string,
  what: string,
  expected: string,
): void {
  mkdirSync(dest, { recursive: true });
  const r = run(py, [
    '-m',
    'pip',
    'download',
    '--no-deps',
    '--only-binary=:all:',
    '--progress-bar',
    'off',
    '--dest',
    dest,
    ...specs,
  ]);
  if (r.error || r.status !== 0)
    throw new SetupError(
      'WHEEL_UNAVAILABLE',
      `pip could not download ${what}`,
      expected,
      pipReason(r.stderr || r.stdout),
    );
}

/** The script the verification child runs: load the package, one matmul, report as JSON. */
const VERIFY_JS = `
process.env.TF_CPP_MIN_LOG_LEVEL ??= '1';
const t0 = Date.now();
const tf = require(process.argv[1]);
const a = tf.tensor2d([[1, 2], [3, 4]]);
const m = Array.from(tf.matMul(a, a).dataSync());
const b = tf.backend();
const gpu = typeof b.isUsingGpuDevice === 'boolean' ? b.isUsingGpuDevice : false;
process.stdout.write(JSON.stringify({
  backend: tf.getBackend(), tfjsNode: tf.version['tfjs-node'], tensorflow: b.binding.TF_Version,
  devices: gpu ? ['CPU', 'GPU'] : ['CPU'], matmul: m, seconds: (Date.now() - t0) / 1000,
}));
`;

/** Load the package in a child process and multiply [[1,2],[3,4]] by itself. */
export function verifyBinding(dir: string): VerifyResult {
  const r = run(process.execPath, ['-e', VERIFY_JS, dir], dir);
  let out: VerifyResult | undefined;
  try {
    out = JSON.parse(r.stdout) as VerifyResult;
  } catch {
    out = undefined;
  }
  const ok =
    r.status === 0 &&
    out !== undefined &&
    out.backend === 'tensorflow' &&
    JSON.stringify(out.matmul) === JSON.stringify([7, 10, 15, 22]);
  if (!ok || out === undefined)
    throw new SetupError(
      'VERIFY_FAILED',
      `the built binding did not load and compute in a fresh process (${dir})`,
      'backend tensorflow and [[1,2],[3,4]]² = [7,10,15,22]',
      out ? JSON.stringify(out) : lastLines(r.stderr || r.stdout || String(r.error ?? ''), 6),
    );
  return out;
}

function replaceDir(from: string, to: string): void {
  const old = `${to}.para-old`;
  rmSync(old, { recursive: true, force: true });
  if (existsSync(to)) renameSync(to, old);
  renameSync(from, to);
  rmSync(old, { recursive: true, force: true });
}

function link(dir: string, name: string, target: string): void {
  rmSync(join(dir, name), { force: true });
  symlinkSync(target, join(dir, name));
}

/** Set up (or check) the tensorflow backend. */
export async function setupTensorflow(options: SetupOptions = {}): Promise<SetupResult> {
  const t0 = performance.now();
  const log = options.log ?? ((l: string) => process.stderr.write(`setup tensorflow: ${l}\n`));
  const { variant, distribution, pkg } = variantOf(options.gpu === true);
  const elapsed = () => (performance.now() - t0) / 1000;

  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new SetupError(
      'UNSUPPORTED_PLATFORM',
      `the TensorFlow wheels this setup reads are for Linux x86-64; this is ${process.platform}-${process.arch}`,
      'linux-x64',
      `${process.platform}-${process.arch}`,
    );

  const where = locateTfjsNode(pkg, options.from ?? process.cwd());
  if (where === undefined)
    throw new SetupError(
      'TFJS_NODE_MISSING',
      `${pkg} is not installed (an optional dependency of the repository root)`,
      `${pkg} 4.22.0 in node_modules: run \`pnpm install\` (its download script is not run; this setup builds its binding)`,
    );

  // Already set up: the record matches, the binding exists and loads.
  const wheelArg = options.wheel === undefined ? undefined : resolve(options.wheel);
  const record = where.setup;
  if (
    !options.force &&
    where.built &&
    record !== undefined &&
    record.variant === variant &&
    (wheelArg === undefined
      ? record.tensorflow === PINNED_TENSORFLOW
      : record.wheel === basename(wheelArg))
  ) {
    try {
      const verify = verifyBinding(where.dir);
      log(
        `already set up: ${pkg} ${where.version} on TensorFlow ${verify.tensorflow} (${verify.devices.join(', ')}); --force rebuilds`,
      );
      return result('already-set-up', where, record, verify, [], elapsed());
    } catch (e) {
      log(`the existing build does not load (${(e as Error).message}); rebuilding`);
    }
  }

  // Prerequisites, cheapest first.
  const nodedir = findNodedir(options.nodedir);
  if (nodedir === undefined)
    throw new SetupError(
      'NODE_HEADERS_MISSING',
      `Node's C headers (include/node/node_api.h and common.gypi) were not found${options.nodedir ? ` under ${options.nodedir}` : ` next to ${process.execPath}, in /usr/local or /usr`}`,
      "the headers of this Node (they ship with Node's official tarballs; Debian: apt-get install libnode-dev / nodejs), or --nodedir DIR",
      options.nodedir,
    );
  const nodeGyp = findNodeGyp();
  if (nodeGyp === undefined)
    throw new SetupError(
      'NODE_GYP_MISSING',
      'node-gyp was not found (npm bundles it)',
      'npm installed next to this node, or npm_config_node_gyp=/path/to/node-gyp.js',
    );
  const cxx = process.env.CXX || 'g++';
  const make = process.env.MAKE || 'make';
  const compilerHint = 'a C++ compiler and make (Debian: apt-get install g++ make)';
  requireTool(cxx, ['--version'], 'COMPILER_MISSING', `the C++ compiler (${cxx})`, compilerHint);
  requireTool(make, ['--version'], 'COMPILER_MISSING', `make (${make})`, compilerHint);
  const py = options.python ?? 'python3';
  requireTool(py, ['--version'], 'PYTHON_MISSING', `Python (${py})`, PYTHON_HINT);

  // The wheel: given, cached, or downloaded with pip.
  const cacheDir = resolve(options.cacheDir ?? defaultCacheDir());
  let wheel: string;
  if (wheelArg !== undefined) {
    if (!existsSync(wheelArg))
      throw new SetupError(
        'WHEEL_UNAVAILABLE',
        `${wheelArg} does not exist`,
        'a TensorFlow wheel file',
      );
    wheel = wheelArg;
  } else {
    const cached = cachedWheels(cacheDir, distribution, PINNED_TENSORFLOW);
    if (cached[0] !== undefined) {
      wheel = cached[0];
      log(`using the cached wheel ${wheel}`);
    } else {
      requireTool(py, ['-m', 'pip', '--version'], 'PIP_MISSING', `pip (${py} -m pip)`, PYTHON_HINT);
      log(
        `downloading ${distribution}==${PINNED_TENSORFLOW} with pip into ${cacheDir} (${variant === 'cpu' ? '~270 MB' : '~600 MB'})`,
      );
      pipDownload(
        py,
        [`${distribution}==${PINNED_TENSORFLOW}`],
        cacheDir,
        `${distribution}==${PINNED_TENSORFLOW}`,
        `the wheel from your package index, or one downloaded elsewhere (pip download --no-deps ${distribution}==${PINNED_TENSORFLOW}) given as --wheel FILE or put in ${cacheDir}`,
      );
      const got = cachedWheels(cacheDir, distribution, PINNED_TENSORFLOW)[0];
      if (got === undefined)
        throw new SetupError(
          'WHEEL_UNAVAILABLE',
          `pip reported success but no ${distribution} ${PINNED_TENSORFLOW} wheel is in ${cacheDir}`,
          'a wheel named like tensorflow_cpu-2.21.0-...whl',
        );
      wheel = got;
    }
  }
  const info = inspectWheel(py, wheel);
  if (info.missing.length > 0)
    throw new SetupError(
      'WHEEL_INVALID',
      `${wheel} does not contain the TensorFlow C library`,
      'a tensorflow / tensorflow-cpu wheel for Linux x86-64 with tensorflow/libtensorflow_cc.so.2',
      `missing ${info.missing.join(', ')}`,
    );
  const tensorflowVersion = info.version ?? PINNED_TENSORFLOW;
  if (variant === 'gpu' && info.name?.replace(/[-_]/g, '-').toLowerCase() === 'tensorflow-cpu')
    log(
      `note: ${basename(wheel)} is the CPU build; @tensorflow/tfjs-node-gpu will run on the CPU only`,
    );
  if (tensorflowVersion !== PINNED_TENSORFLOW)
    log(
      `note: ${basename(wheel)} is TensorFlow ${tensorflowVersion}; the binding is tested with ${PINNED_TENSORFLOW}`,
    );

  // GPU: the CUDA runtime wheels the `and-cuda` extra names, with the wheel's own bounds.
  const cudaWheels: string[] = [];
  if (variant === 'gpu') {
    if (info.cuda.length === 0)
      throw new SetupError(
        'WHEEL_INVALID',
        `${basename(wheel)} names no CUDA runtime wheels (Requires-Dist ... extra == "and-cuda")`,
        'the `tensorflow` wheel (CUDA 12 build)',
      );
    const cudaDir = join(cacheDir, `cuda-${tensorflowVersion}`);
    const have = existsSync(cudaDir) ? readdirSync(cudaDir).filter((f) => f.endsWith('.whl')) : [];
    if (have.length < info.cuda.length) {
      requireTool(py, ['-m', 'pip', '--version'], 'PIP_MISSING', `pip (${py} -m pip)`, PYTHON_HINT);
      log(
        `downloading the CUDA runtime wheels (${info.cuda.join(' ')}) into ${cudaDir} (several GB)`,
      );
      pipDownload(
        py,
        info.cuda,
        cudaDir,
        `the ${info.cuda.length} CUDA runtime wheels of ${basename(wheel)} (${info.cuda.map((c) => c.split(/[<>=!~;]/)[0]).join(', ')})`,
        `them from your package index, or downloaded elsewhere (pip download --no-deps --only-binary=:all: -d DIR ${info.cuda.map((c) => `'${c}'`).join(' ')}) and put in ${cudaDir}`,
      );
    }
    for (const f of readdirSync(cudaDir)) if (f.endsWith('.whl')) cudaWheels.push(join(cudaDir, f));
  }

  // Extract into deps.para-tmp, then swap it in as deps/.
  const deps = join(where.dir, 'deps');
  const tmp = join(where.dir, 'deps.para-tmp');
  rmSync(tmp, { recursive: true, force: true });
  log(`extracting the C library and headers from ${basename(wheel)} into ${deps}`);
  const extracted = JSON.parse(
    python(py, EXTRACT_PY, [wheel, tmp, join(where.dir, 'binding'), ...cudaWheels], 'extracting')
      .stdout,
  ) as { headers: string[]; cuda: string[] };
  const lib = join(tmp, 'lib');
  // The binding links -ltensorflow -ltensorflow_framework and, at run time, asks for the soname
  // of what it linked: libtensorflow_cc.so.2 keeps its name, the others are links to it.
  link(lib, 'libtensorflow.so.2', 'libtensorflow_cc.so.2');
  link(lib, 'libtensorflow.so', 'libtensorflow.so.2');
  link(lib, 'libtensorflow_framework.so', 'libtensorflow_framework.so.2');
  replaceDir(tmp, deps);
  log(
    `deps/: ${extracted.headers.length} headers${extracted.cuda.length ? `, ${extracted.cuda.length} CUDA libraries` : ''}`,
  );

  // Build the binding offline.
  log(`building ${where.moduleName}.node with node-gyp (--nodedir=${nodedir}); about a minute`);
  const buildLog = join(cacheDir, `build-${pkg.replace('@tensorflow/', '')}.log`);
  mkdirSync(cacheDir, { recursive: true });
  const gyp = run(
    process.execPath,
    [
      nodeGyp,
      'rebuild',
      `--nodedir=${nodedir}`,
      `--module_name=${where.moduleName}`,
      `--module_path=${where.modulePath}`,
      `--napi_build_version=${where.napiBuildVersion}`,
      `--jobs=${Math.max(1, availableParallelism())}`,
      // gyp itself is Python: the interpreter checked above.
      `--python=${py}`,
    ],
    where.dir,
    { ...process.env, npm_config_nodedir: nodedir },
  );
  writeFileSync(buildLog, `${gyp.stdout}\n${gyp.stderr}`);
  if (gyp.error || gyp.status !== 0)
    throw new SetupError(
      'BUILD_FAILED',
      `node-gyp could not build the binding (full log: ${buildLog})`,
      compilerHint,
      lastLines(gyp.stderr || gyp.stdout || String(gyp.error ?? ''), 6),
    );
  const built = join(where.dir, 'build', 'Release', `${where.moduleName}.node`);
  if (!existsSync(where.bindingPath) && existsSync(built)) {
    mkdirSync(where.modulePath, { recursive: true });
    renameSync(built, where.bindingPath);
  }
  if (!existsSync(where.bindingPath))
    throw new SetupError(
      'BUILD_FAILED',
      `node-gyp finished but ${where.bindingPath} is missing (full log: ${buildLog})`,
      `${where.moduleName}.node at the package's binary.module_path`,
    );

  log('checking it in a fresh process');
  const verify = verifyBinding(where.dir);
  const newRecord: TensorflowSetupRecord = {
    variant,
    tensorflow: verify.tensorflow,
    wheel: basename(wheel),
    wheelSha256: await sha256File(wheel),
    node: process.version,
    napiBuildVersion: where.napiBuildVersion,
    binding: relative(where.dir, where.bindingPath),
    builtAt: new Date().toISOString(),
  };
  writeFileSync(join(deps, 'para-setup.json'), `${JSON.stringify(newRecord, null, 2)}\n`);
  log(
    `done: ${pkg} ${where.version} on TensorFlow ${verify.tensorflow} (devices: ${verify.devices.join(', ')}) in ${elapsed().toFixed(0)} s`,
  );
  return result(
    'set-up',
    where,
    newRecord,
    verify,
    cudaWheels.map((w) => basename(w)),
    elapsed(),
  );
}

function result(
  status: SetupResult['status'],
  where: TfjsNodeLocation,
  record: TensorflowSetupRecord,
  verify: VerifyResult,
  cudaWheels: string[],
  seconds: number,
): SetupResult {
  return {
    status,
    package: where.name,
    dir: where.dir,
    variant: record.variant,
    tensorflow: verify.tensorflow,
    wheel: record.wheel,
    binding: where.bindingPath,
    verify,
    cudaWheels,
    seconds,
  };
}
