/**
 * `para setup tensorflow`: a missing prerequisite is a typed error (exit 2, nothing on stdout)
 * naming what to install, found before anything is changed; a second run where the binding is
 * built says "already set up" and builds nothing. (The full build itself is what CI's
 * `pnpm setup:tensorflow` step runs.)
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { locateTfjsNode } from '@para/core/node';
import { afterAll, describe, expect, it } from 'vitest';
import { expectTypedError, paraRunner, repo } from './helpers/cli';

const para = paraRunner(undefined);
const work = mkdtempSync(join(tmpdir(), 'para-setup-cli-'));
const emptyCache = join(work, 'cache');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs `para setup tensorflow ...` from the repository root (where the package resolves). */
function setup(args: string[], env: Record<string, string | undefined> = {}) {
  const r = spawnSync(
    process.execPath,
    [join(repo, 'apps', 'node-demo', 'dist', 'cli.js'), 'setup', 'tensorflow', ...args],
    { cwd: repo, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 24 },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tfjsNode = locateTfjsNode('@tensorflow/tfjs-node', repo);
const built = tfjsNode?.built === true && tfjsNode.setup !== undefined;
const bindingMtime = built ? statSync(tfjsNode.bindingPath).mtimeMs : 0;

describe('para setup tensorflow', () => {
  it('is a command with --help and an example', () => {
    const r = para(['setup', 'tensorflow', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--gpu');
    expect(r.stdout).toContain('para setup tensorflow');
  });

  it('@tensorflow/tfjs-node is installed by pnpm install without its download script', () => {
    expect(tfjsNode?.version).toBe('4.22.0');
    expect(tfjsNode?.napiBuildVersion).toBe(8);
    expect(tfjsNode?.bindingPath).toMatch(/lib\/napi-v8\/tfjs_binding\.node$/);
    // The install script would have written deps/lib/libtensorflow.so from its own download.
    if (!built)
      expect(existsSync(join(tfjsNode?.dir ?? '', 'deps', 'lib', 'libtensorflow.so'))).toBe(false);
  });

  it('missing Node headers: NODE_HEADERS_MISSING', () => {
    const r = setup(['--force', '--nodedir', join(work, 'no-headers')]);
    expectTypedError(r, 'NODE_HEADERS_MISSING', 'no-headers', '--nodedir');
  });

  it('no C++ compiler: COMPILER_MISSING naming g++ and make', () => {
    const r = setup(['--force'], { CXX: join(work, 'no-such-g++') });
    expectTypedError(r, 'COMPILER_MISSING', 'no-such-g++', 'apt-get install g++ make');
  });

  it('no Python: PYTHON_MISSING', () => {
    const r = setup(['--force', '--python', join(work, 'no-python3')]);
    expectTypedError(r, 'PYTHON_MISSING', 'no-python3', 'python3-pip');
  });

  it('Python without pip and no cached wheel: PIP_MISSING (nothing downloaded)', () => {
    const fake = join(work, 'python-without-pip');
    writeFileSync(
      fake,
      '#!/bin/sh\n[ "$1" = "--version" ] && echo "Python 3.11.7" && exit 0\nexit 1\n',
    );
    chmodSync(fake, 0o755);
    const r = setup(['--force', '--python', fake, '--cache-dir', emptyCache]);
    expectTypedError(r, 'PIP_MISSING', 'pip', 'python3-pip');
  });

  it('a wheel that is not there, or not TensorFlow: WHEEL_UNAVAILABLE / WHEEL_INVALID', () => {
    const missing = setup(['--force', '--wheel', join(work, 'nope.whl')]);
    expectTypedError(missing, 'WHEEL_UNAVAILABLE', 'nope.whl');
    const zip = join(work, 'not_tensorflow-1.0-py3-none-any.whl');
    const py = spawnSync('python3', [
      '-c',
      'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").writestr("x/METADATA", "Name: x\\n")',
      zip,
    ]);
    if (py.status !== 0) return; // no python3 here: the case above covered the error path
    const invalid = setup(['--force', '--wheel', zip]);
    expectTypedError(invalid, 'WHEEL_INVALID', 'libtensorflow_cc.so.2');
  });

  it('--json: the error is one JSON object on stderr', () => {
    const r = setup(['--force', '--json', '--python', join(work, 'no-python3')]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const e = JSON.parse(r.stderr.trim().split('\n').pop() ?? '{}') as { error: { code: string } };
    expect(e.error.code).toBe('PYTHON_MISSING');
  });

  it('the error cases above changed nothing: the binding (if built) is the same file', () => {
    if (!built) return;
    expect(statSync(tfjsNode.bindingPath).mtimeMs).toBe(bindingMtime);
  });

  it.skipIf(!built)(
    `a second run says "already set up" and rebuilds nothing${built ? '' : ' (skipped: not set up here; `pnpm setup:tensorflow`)'}`,
    () => {
      const r = setup(['--json']);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as {
        status: string;
        tensorflow: string;
        verify: { matmul: number[]; backend: string };
      };
      expect(out.status).toBe('already-set-up');
      expect(out.verify.backend).toBe('tensorflow');
      expect(out.verify.matmul).toEqual([7, 10, 15, 22]);
      expect(r.stderr).toContain('already set up');
      expect(statSync(tfjsNode?.bindingPath ?? '').mtimeMs).toBe(bindingMtime);
    },
  );
});
