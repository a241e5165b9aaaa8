/**
 * The CLI's main job on `--backend tensorflow` (tfjs-node with the binding `para setup tensorflow`
 * builds against the TensorFlow 2.21 C library): `para info` reports TensorFlow's version and
 * devices, `para train` runs a few steps, `para generate` decodes with the adapter, `para logits`
 * agrees with the cpu backend, `para demo` runs a short end to end.
 *
 * Skipped, with the reason, where the binding is not set up (`pnpm setup:tensorflow`), unless
 * PARA_TENSORFLOW_REQUIRED=1 (CI runs the setup and sets it): then a missing backend fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, paraRunner, repo } from './helpers/cli';

const required = process.env.PARA_TENSORFLOW_REQUIRED === '1';
const para = paraRunner('tensorflow');

/** Does `--backend tensorflow` start here? If not, the CLI's one-line reason. */
function probe(): { ok: boolean; why: string } {
  const r = spawnSync(process.execPath, [cli, 'info', '--json', '--no-probe'], {
    encoding: 'utf8',
    env: { ...process.env, PARA_BACKEND: 'tensorflow' },
    maxBuffer: 1 << 24,
  });
  if (r.status === 0) return { ok: true, why: '' };
  const line = (r.stderr ?? '')
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('para: error'));
  return { ok: false, why: line ?? `para info exited with ${r.status}` };
}

const { ok: haveTensorflow, why } = probe();
const skipNote = haveTensorflow
  ? ''
  : ` (skipped: ${why}; run \`pnpm setup:tensorflow\`, or PARA_TENSORFLOW_REQUIRED=1 to fail)`;
if (!haveTensorflow && !required) console.warn(`tensorflow-cli.test.ts${skipNote}`);

if (!haveTensorflow && required) {
  describe('tensorflow backend prerequisites', () => {
    it('the tensorflow backend starts (PARA_TENSORFLOW_REQUIRED=1)', () => {
      throw new Error(`PARA_TENSORFLOW_REQUIRED=1 but --backend tensorflow does not start: ${why}`);
    });
  });
}

function rows(task: string, split: string, n: number): string {
  return `${readFileSync(join(repo, 'data', 'tasks', task, `${split}.jsonl`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .slice(0, n)
    .join('\n')}\n`;
}

describe.skipIf(!haveTensorflow)(`the CLI on --backend tensorflow${skipNote}`, () => {
  let work = '';
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'para-tensorflow-cli-'));
    await writeFile(join(work, 'train.jsonl'), rows('antonym', 'train', 32));
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('para info reports the TensorFlow version and devices of the active tensorflow backend', () => {
    const r = para(['info', '--json', '--no-probe']);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.backend.active).toBe('tensorflow');
    expect(info.backend.chosenBy).toBe('env');
    const tensorflow = info.backend.backends.find((b: { name: string }) => b.name === 'tensorflow');
    expect(tensorflow.detail).toMatch(
      /^@tensorflow\/tfjs-node(-gpu)? 4\.22\.0, TensorFlow 2\.\d+\.\d+, devices: CPU/,
    );
    expect(info.tensorflow.runtime.version).toMatch(/^2\.\d+\.\d+$/);
    expect(info.tensorflow.runtime.devices).toContain('CPU');
    expect(info.tensorflow.notUsed).toBeNull();
    const setUp = info.tensorflow.packages.filter((p: { built: boolean }) => p.built);
    expect(setUp.length).toBeGreaterThan(0);
    // Text form: the tensorflow block names the library and the devices.
    const text = para(['info', '--no-probe']);
    expect(text.stdout).toMatch(/\n {2}TensorFlow 2\.\d+\.\d+, devices: CPU/);
  });

  it('para train (a few steps), then para generate with the adapter', () => {
    const out = join(work, 'adapter');
    const train = para([
      'train',
      '--method',
      'para',
      '--data',
      join(work, 'train.jsonl'),
      '--steps',
      '4',
      '--batch-size',
      '8',
      '--out',
      out,
      '--plain',
      '--json',
    ]);
    expect(train.code, train.stderr).toBe(0);
    expect(train.stderr).toContain('backend: tensorflow');
    const summary = JSON.parse(train.stdout) as { steps: number; train_loss: number };
    expect(summary.steps).toBe(4);
    expect(Number.isFinite(summary.train_loss)).toBe(true);
    expect(existsSync(join(out, 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    const gen = para([
      'generate',
      '--adapter',
      out,
      '--prompt',
      'Opposite of hot:',
      '--max-new-tokens',
      '4',
      '--json',
    ]);
    expect(gen.code, gen.stderr).toBe(0);
    const g = JSON.parse(gen.stdout) as { ids: number[]; text: string };
    expect(g.ids.length).toBeGreaterThan(0);
    expect(g.ids.length).toBeLessThanOrEqual(4);
    expect(typeof g.text).toBe('string');
  });

  it('greedy para generate with a bundled adapter gives the same tokens as on cpu; logits agree', () => {
    const adapter = join(repo, 'assets', 'adapters', 'antonym');
    const args = ['--adapter', adapter, '--prompt', 'Opposite of unattached:'];
    const onTf = para(['generate', ...args, '--max-new-tokens', '6', '--json']);
    const onCpu = para(['generate', ...args, '--max-new-tokens', '6', '--json'], {
      PARA_BACKEND: 'cpu',
    });
    expect(onTf.code, onTf.stderr).toBe(0);
    expect(onCpu.code, onCpu.stderr).toBe(0);
    expect(JSON.parse(onTf.stdout).ids).toEqual(JSON.parse(onCpu.stdout).ids);
    const lt = para(['logits', ...args]);
    const lc = para(['logits', ...args], { PARA_BACKEND: 'cpu' });
    expect(lt.code, lt.stderr).toBe(0);
    const a = (JSON.parse(lt.stdout) as { logits: number[][] }).logits.flat();
    const b = (JSON.parse(lc.stdout) as { logits: number[][] }).logits.flat();
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
    expect(worst).toBeLessThan(1e-3);
  });

  it('para demo runs end to end (two tenants, a few steps, one mixed batch)', () => {
    const r = para(
      [
        'demo',
        '--steps',
        '3',
        '--eval-limit',
        '4',
        '--rows',
        '2',
        '--batch-size',
        '4',
        '--out',
        join(work, 'demo'),
        '--plain',
      ],
      { PARA_COMMAND_PREFIX: 'para' },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('backend: tensorflow');
    for (const task of ['pos', 'antonym'])
      expect(existsSync(join(work, 'demo', task, 'adapter_model.safetensors')), task).toBe(true);
  });
});
