#!/usr/bin/env node
// Builds @para/blas's native addon (native/para_blas.c, binding.gyp) — or, more often, decides
// that it need not. Never sets or reads OpenBLAS's environment variables.
//
//   node scripts/build-native.cjs              the package's `build`: skip when the prebuild for this
//                                              platform matches the sources and there is no local build;
//                                              otherwise compile into build/Release if OpenBLAS's
//                                              headers are here. Never fails.
//   node scripts/build-native.cjs --install    the `install` lifecycle (npm/pnpm users): the same; never fails.
//   node scripts/build-native.cjs --force      `build:native`: always compile into build/Release; fails loudly.
//   node scripts/build-native.cjs --check      exit 0 when prebuilds/<platform>-<arch>/ was built from
//                                              the current sources, 1 otherwise (the tests use it).
//   node scripts/build-native.cjs --prebuildify  maintainers: rebuild prebuilds/<platform>-<arch>/ with
//                                              prebuildify (N-API, stripped, libc-tagged) and record the
//                                              sources' hash beside it; fails loudly.
//
// Offline, node-gyp cannot download Node's headers, so --nodedir points at the installed ones
// (found next to the running node: <prefix>/include/node), unless npm_config_nodedir is set.
'use strict';

const { spawnSync } = require('node:child_process');
const { createHash } = require('node:crypto');
const {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} = require('node:fs');
const { tmpdir } = require('node:os');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const args = new Set(process.argv.slice(2));
const force = args.has('--force');
const prebuildifyMode = args.has('--prebuildify');
const check = args.has('--check');
const strict = force || prebuildifyMode || check;
const tuple = `${process.platform}-${process.arch}`;
const prebuildDir = join(root, 'prebuilds', tuple);
const hashFile = join(prebuildDir, 'SOURCES.sha256');
const release = join(root, 'build', 'Release', 'para_blas.node');

const log = (msg) => console.log(`@para/blas: ${msg}`);

/** sha256 over binding.gyp and native/* (the inputs of the binary). */
function sourcesHash() {
  const h = createHash('sha256');
  const files = [
    'binding.gyp',
    ...readdirSync(join(root, 'native'))
      .sort()
      .map((f) => `native/${f}`),
  ];
  for (const f of files) {
    h.update(`${f}\0`);
    h.update(readFileSync(join(root, f)));
    h.update('\0');
  }
  return h.digest('hex');
}

function prebuildState() {
  const present =
    existsSync(prebuildDir) && readdirSync(prebuildDir).some((f) => f.endsWith('.node'));
  if (!present) return 'missing';
  const recorded = existsSync(hashFile) ? readFileSync(hashFile, 'utf8').trim() : '';
  return recorded === sourcesHash() ? 'current' : 'stale';
}

/** Installed Node headers for node-gyp --nodedir (offline builds), or undefined. */
function findNodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefixes = [dirname(dirname(process.execPath)), '/usr/local', '/usr'];
  return prefixes.find(
    (p) =>
      existsSync(join(p, 'include', 'node', 'node_api.h')) &&
      existsSync(join(p, 'include', 'node', 'common.gypi')),
  );
}

/** Can a C compiler here include <cblas.h> and link -lopenblas? Returns a reason when not. */
function openblasProblem() {
  const dir = mkdtempSync(join(tmpdir(), 'para-blas-probe-'));
  try {
    const src = join(dir, 'probe.c');
    writeFileSync(
      src,
      '#include <cblas.h>\nint main(void) { float a = 1, b = 1, c = 0;\n  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);\n  return c == 1.0f ? 0 : 1; }\n',
    );
    const extra =
      process.platform === 'darwin'
        ? [
            '-I/opt/homebrew/opt/openblas/include',
            '-L/opt/homebrew/opt/openblas/lib',
            '-I/usr/local/opt/openblas/include',
            '-L/usr/local/opt/openblas/lib',
          ]
        : [];
    const cc = process.env.CC || 'cc';
    const r = spawnSync(cc, [src, ...extra, '-lopenblas', '-o', join(dir, 'probe')], {
      encoding: 'utf8',
    });
    if (r.error) return `no C compiler (${cc}: ${r.error.message})`;
    if (r.status !== 0)
      return `OpenBLAS headers/library not found (Debian: apt-get install libopenblas-dev): ${(r.stderr || '').split('\n').find((l) => l.trim()) ?? ''}`;
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function nodeGypCommand() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return [process.execPath, process.env.npm_config_node_gyp];
  }
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] })];
  } catch {
    return ['node-gyp'];
  }
}

function run(cmd, argv, env) {
  log(`${cmd.join(' ')} ${argv.join(' ')}`);
  const r = spawnSync(cmd[0], [...cmd.slice(1), ...argv], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ...env },
  });
  if (r.error) throw new Error(`${cmd[0]}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} ${argv[0]} exited with ${r.status}`);
}

function compile() {
  const problem = openblasProblem();
  if (problem) throw new Error(problem);
  const nodedir = findNodedir();
  const gypArgs = nodedir ? [`--nodedir=${nodedir}`] : [];
  if (!nodedir) log('no installed Node headers found; node-gyp will try to download them');
  const configured =
    existsSync(join(root, 'build', 'Makefile')) || existsSync(join(root, 'build', 'binding.sln'));
  run(nodeGypCommand(), [configured ? 'build' : 'rebuild', ...gypArgs]);
  log(`built ${release}`);
}

function prebuildify() {
  const problem = openblasProblem();
  if (problem) throw new Error(problem);
  const nodedir = findNodedir();
  let bin;
  try {
    bin = require.resolve('prebuildify/bin.js', { paths: [root] });
  } catch {
    throw new Error('prebuildify is not installed (it is a devDependency: run pnpm install)');
  }
  const env = nodedir ? { npm_config_nodedir: nodedir } : {};
  // prebuildify calls node-gyp by name; make sure ours (or npm's) is on PATH.
  const gyp = nodeGypCommand();
  if (gyp.length === 2) env.PREBUILD_NODE_GYP = gyp[1];
  run(
    [process.execPath, bin],
    ['--napi', '--strip', '--tag-libc', '--target', `node@${process.versions.node}`],
    env,
  );
  writeFileSync(hashFile, `${sourcesHash()}\n`);
  log(`wrote ${prebuildDir} (sources ${sourcesHash().slice(0, 12)})`);
}

function main() {
  if (check) {
    const state = prebuildState();
    log(`prebuild for ${tuple}: ${state}`);
    if (state !== 'current')
      throw new Error(
        `the prebuild for ${tuple} is ${state}: run \`pnpm --filter @para/blas prebuildify\``,
      );
    return;
  }
  if (prebuildifyMode) return prebuildify();
  if (force) return compile();
  const state = prebuildState();
  const localBuild = existsSync(release);
  if (state === 'current' && !localBuild) {
    log(`prebuild for ${tuple} matches the sources; nothing to compile`);
    return;
  }
  if (state === 'stale')
    log(`the prebuild for ${tuple} was built from other sources; compiling from source`);
  if (state === 'missing') log(`no prebuild for ${tuple}; compiling from source`);
  try {
    compile();
  } catch (e) {
    log(`native build skipped: ${e.message}`);
    log(
      state === 'missing'
        ? 'the OpenBLAS kernels will be unavailable (loadBlas() says why); everything else works'
        : `the ${state} prebuild stays in use`,
    );
  }
}

try {
  main();
} catch (e) {
  console.error(`@para/blas: ${e.message}`);
  process.exit(strict ? 1 : 0);
}
