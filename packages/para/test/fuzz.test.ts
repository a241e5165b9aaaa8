/**
 * The fuzz suite in CI (issue 13): test/fuzz/run.mjs mutates valid safetensors files,
 * checkpoints (config.json + weights), adapters, JSONL datasets and tokenizer files with a fixed
 * seed for a fixed budget per target, and every outcome must be success or a typed ParaError,
 * with no tensor leak, no prototype pollution and bounded time and memory per case. The runner
 * is a child process so that a case that never returns is killed and named (via --last).
 * Longer runs: `node packages/para/test/fuzz/run.mjs --seconds 300 [--seed S] [--target T]`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const SECONDS = Number(process.env.PARA_FUZZ_SECONDS ?? '12');
const SEED = process.env.PARA_FUZZ_SEED ?? '20261201';
const work = mkdtempSync(join(tmpdir(), 'para-fuzz-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Report {
  target: string;
  cases: number;
  typed: number;
  ok: number;
  maxCaseMs: number;
  maxRssMB: number;
  failure: { case?: number; input?: string; problem: string } | null;
}

/** Runs one target in a child process; a run that outlives its budget by minutes is killed. */
function runFuzz(target: string, seconds: number): { status: number | null; report: Report } {
  const last = join(work, `${target}.last`);
  const r = spawnSync(
    process.execPath,
    [
      join(here, 'fuzz', 'run.mjs'),
      '--target',
      target,
      '--seconds',
      String(seconds),
      '--seed',
      SEED,
      '--last',
      last,
    ],
    // The per-case bound is 15 s; a case still running long after the budget is a hang.
    { encoding: 'utf8', timeout: (seconds + 120) * 1000, maxBuffer: 64 << 20 },
  );
  if (r.error !== undefined || r.signal !== null) {
    let lastCase = '(none)';
    try {
      lastCase = readFileSync(last, 'utf8');
    } catch {}
    throw new Error(
      `the fuzz runner was killed (${r.error?.message ?? r.signal}); last case: ${lastCase}`,
    );
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { status: r.status, report: JSON.parse(line) as Report };
  } catch {
    throw new Error(`no report from the fuzz runner (exit ${r.status}):\n${r.stderr}`);
  }
}

describe('fuzz: mutated files give success or a typed ParaError', () => {
  it('the runner fails on an untyped error (its self-check target)', () => {
    const { status, report } = runFuzz('self-check', 2);
    expect(status).toBe(1);
    expect(report.failure?.problem).toContain('untyped TypeError');
    expect(report.failure?.input).toMatch(/^<\d+ bytes>/);
  }, 180_000);

  it.each(['safetensors', 'checkpoint', 'adapter', 'jsonl', 'tokenizer'])(
    '%s',
    (target) => {
      const { status, report } = runFuzz(target, SECONDS);
      console.log(
        `fuzz ${target}: ${report.cases} cases (${report.typed} typed errors, ${report.ok} loaded), slowest ${report.maxCaseMs} ms, rss ≤ ${report.maxRssMB} MB`,
      );
      expect(report.failure, JSON.stringify(report.failure, null, 2)).toBeNull();
      expect(status).toBe(0);
      expect(report.cases).toBeGreaterThan(10);
    },
    (SECONDS + 180) * 1000,
  );
});
