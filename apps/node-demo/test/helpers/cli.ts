/** Running the built `para` CLI in the CLI tests (one copy, shared by every test file). */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const appDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const repo = join(appDir, '..', '..');
export const cli = join(appDir, 'dist', 'cli.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * A `para(args, env?)` runner with `PARA_BACKEND` set to `backend` (undefined: unset, so the CLI
 * picks its default). Extra `env` entries override; large outputs (logits) fit.
 */
export function paraRunner(
  backend: string | undefined,
): (args: string[], env?: Record<string, string | undefined>) => CliResult {
  return (args, env = {}) => {
    const r = spawnSync(process.execPath, [cli, ...args], {
      encoding: 'utf8',
      env: { ...process.env, PARA_BACKEND: backend, ...env },
      maxBuffer: 1 << 26,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
}

/** A typed error: exit code 2, nothing on stdout, `[CODE]` and every mention on stderr. */
export function expectTypedError(r: CliResult, code: string, ...mentions: string[]): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr).toContain(`[${code}]`);
  for (const m of mentions) expect(r.stderr).toContain(m);
}
