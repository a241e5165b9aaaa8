import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { paraRunner, repo } from './helpers/cli';

const para = paraRunner(undefined);

describe('para CLI', () => {
  it('--help lists the commands and every command has --help', () => {
    const top = para(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('info');
    const info = para(['info', '--help']);
    expect(info.code).toBe(0);
    expect(info.stdout).toContain('--backend <name>');
  });

  it('info --json reports versions and the active backend', () => {
    const r = para(['info', '--json', '--no-probe']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.packages['@tensorflow/tfjs-core']).toBe('4.22.0');
    expect(['tensorflow', 'wasm', 'cpu']).toContain(info.backend.active);
    expect(info.backend.backends.map((b: { name: string }) => b.name)).toEqual([
      'tensorflow',
      'wasm',
      'cpu',
      'webgpu',
    ]);
    expect(info.backend.gradients.bundledVersion).toBe(info.backend.gradients.runningVersion);
  });

  it('the wasm backend runs its matmuls on OpenBLAS through @para/blas (required with PARA_BLAS_REQUIRED=1)', () => {
    const wasm = JSON.parse(
      para(['info', '--json', '--no-probe', '--backend', 'wasm']).stdout,
    ).backend.backends.find((b: { name: string }) => b.name === 'wasm');
    if (process.env.PARA_BLAS_REQUIRED === '1')
      expect(wasm.detail).toMatch(/matmul: OpenBLAS .* via @para\/blas/);
    const disabled = JSON.parse(
      para(['info', '--json', '--no-probe', '--backend', 'wasm'], { PARA_BLAS_DISABLE: '1' })
        .stdout,
    );
    expect(
      disabled.backend.backends.find((b: { name: string }) => b.name === 'wasm').detail,
    ).toContain('disabled by PARA_BLAS_DISABLE');
  });

  it('--backend and PARA_BACKEND choose the backend; the flag wins', () => {
    expect(
      JSON.parse(para(['info', '--json', '--no-probe', '--backend', 'cpu']).stdout).backend.active,
    ).toBe('cpu');
    const env = JSON.parse(
      para(['info', '--json', '--no-probe'], { PARA_BACKEND: 'cpu' }).stdout,
    ).backend;
    expect(env.active).toBe('cpu');
    expect(env.chosenBy).toBe('env');
    const both = JSON.parse(
      para(['info', '--json', '--no-probe', '--backend', 'wasm'], { PARA_BACKEND: 'cpu' }).stdout,
    ).backend;
    expect(both.active).toBe('wasm');
  });

  it('a bad or unavailable explicit backend is a typed error with exit code 2', () => {
    const bad = para(['info', '--backend', 'cuda']);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('[INVALID_ARGUMENT]');
    expect(bad.stderr).toContain('field "--backend"');
    const envBad = para(['info'], { PARA_BACKEND: 'webgl' });
    expect(envBad.code).toBe(2);
    expect(envBad.stderr).toContain('[BACKEND_UNAVAILABLE]');
    expect(envBad.stderr).toContain('PARA_BACKEND');
  });

  it('unknown commands and flags fail with usage help', () => {
    const r = para(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    expect(para(['info', '--nope']).code).toBe(2);
  });

  it('every usage error exits with 2: unknown flag, missing required flag, bad value, missing subcommand', () => {
    for (const args of [
      ['info', '--nope'],
      ['train', '--data', 'x.jsonl'],
      ['tokenizer', 'train', '--input', 'a.txt', '--vocab-size', 'abc', '--out', 'o'],
      ['bench'],
      ['generate', '--max-new-tokens'],
    ]) {
      const r = para(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stdout).toBe('');
    }
  });

  it('with --json, usage errors and typed errors are one JSON object on stderr', () => {
    const usage = para(['train', '--data', 'x.jsonl', '--json']);
    expect(usage.code).toBe(2);
    const u = JSON.parse(usage.stderr.trim()) as { error: Record<string, unknown> };
    expect(Object.keys(u.error).sort()).toEqual([
      'actual',
      'code',
      'expected',
      'field',
      'file',
      'message',
    ]);
    expect(u.error).toMatchObject({ code: 'USAGE', field: '--method' });
    const typed = para(['info', '--json', '--backend', 'cuda']);
    expect(typed.code).toBe(2);
    expect(typed.stderr.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(typed.stderr).error).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: '--backend',
      actual: 'cuda',
      message: 'unknown backend "cuda"',
    });
  });

  it("every command's --help ends with an example", () => {
    const commands = [
      [],
      ['info'],
      ['logits'],
      ['generate'],
      ['tokenizer'],
      ['tokenizer', 'train'],
      ['tokenizer', 'encode'],
      ['tokenizer', 'decode'],
      ['pretrain'],
      ['train'],
      ['eval'],
      ['demo'],
      ['bench'],
      ['bench', 'matmul'],
      ['bench', 'model'],
      ['bench', 'multitenant'],
      ['bench', 'train'],
    ];
    for (const c of commands) {
      const r = para([...c, '--help']);
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.stdout.trimEnd(), c.join(' ')).toMatch(/\nExamples?:\n( {2}\$ para .+\n?)+$/);
    }
  });

  it('info probes WebGPU without Dawn warnings on its stderr', () => {
    const r = para(['info']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\n {2}webgpu +(available|unavailable) /);
    expect(r.stderr).not.toMatch(/Vulkan|maxDynamic|Warning/);
  });

  it('`pnpm --silent para info --json` from the repo root prints only the JSON', () => {
    const r = spawnSync(
      'node',
      [join(repo, 'scripts', 'para.mjs'), 'info', '--json', '--no-probe'],
      {
        encoding: 'utf8',
        cwd: repo,
        env: { ...process.env, PARA_BACKEND: 'cpu' },
      },
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).backend.active).toBe('cpu');
  });
});
