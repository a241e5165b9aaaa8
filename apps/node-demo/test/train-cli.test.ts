/**
 * `para pretrain`, `para train` and `para eval` end to end on tiny models built here (nothing is
 * downloaded): files written, `--resume` equal to an uninterrupted run, and every bad input a
 * clear typed error (exit code 2) naming the file, the line and the field.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@para/core/node';
import { CausalLM, createConfig, saveModel } from '@para/model/node';
import { loadTokenizer, saveTokenizer, trainBpeTokenizer } from '@para/tokenizer/node';
import { DEFAULT_CHAT_TEMPLATE } from '@para/train/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, expectTypedError, paraRunner, repo } from './helpers/cli';

const para = paraRunner('wasm');

function lines(task: string, split: string, n: number): string {
  return `${readFileSync(join(repo, 'data', 'tasks', task, `${split}.jsonl`), 'utf8')
    .split('\n')
    .slice(0, n)
    .join('\n')}\n`;
}

function stepLosses(file: string): number[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { type: string; loss: number })
    .filter((e) => e.type === 'step')
    .map((e) => e.loss);
}

let work: string;
let modelDir: string;
let train: string;
let dev: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'para-train-cli-'));
  modelDir = join(work, 'model');
  train = join(work, 'train.jsonl');
  dev = join(work, 'dev.jsonl');
  await writeFile(train, lines('antonym', 'train', 32));
  await writeFile(dev, lines('antonym', 'dev', 12));
  const texts = ['arithmetic', 'antonym', 'category'].flatMap((t) =>
    lines(t, 'train', 200)
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const r = JSON.parse(l) as { prompt: string; completion: string };
        return r.prompt + r.completion;
      }),
  );
  await saveTokenizer(
    modelDir,
    await trainBpeTokenizer({
      texts,
      vocabSize: 400,
      specialTokens: ['<unk>', '<s>', '</s>', '<pad>'],
      chatTemplate: DEFAULT_CHAT_TEMPLATE,
    }),
  );
  const tok = await loadTokenizer(modelDir);
  await initBackend({ backend: 'cpu' });
  const config = createConfig({
    vocabSize: tok.vocabSize,
    hiddenSize: 32,
    intermediateSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    maxPositionEmbeddings: 32,
    tieWordEmbeddings: true,
    initializerRange: 0.3,
    bosTokenId: tok.bosTokenId ?? null,
    eosTokenIds: [tok.eosTokenId as number],
    padTokenId: tok.padTokenId ?? null,
  });
  const model = CausalLM.random(config, 7);
  await saveModel(model, modelDir);
  model.dispose();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('para train / para eval', () => {
  it('trains a PARA adapter, keeps the best by dev exact match, and evaluates it', async () => {
    const out = join(work, 'para');
    const r = para([
      'train',
      '--method',
      'para',
      '--data',
      train,
      '--eval-data',
      dev,
      '--model',
      modelDir,
      '--out',
      out,
      '--steps',
      '6',
      '--batch-size',
      '8',
      '--r',
      '4',
      '--lr',
      '1e-2',
      '--eval-every',
      '3',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as {
      parameters: number;
      steps: number;
      stopped: string;
      best: { step: number; exact_match: number; loss: number; n: number };
    };
    expect(s.steps).toBe(6);
    expect(s.stopped).toBe('done');
    expect(s.parameters).toBe(2 * (4 * 32 + 4 * (32 + 16 + 64))); // r·d + r·(d_q + d_v + d_ff) per layer
    expect(s.best.n).toBe(12);
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as {
      peft_type: string;
      r: number;
    };
    expect(config).toMatchObject({ peft_type: 'PARA', r: 4 });
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'checkpoints'))).toBe(false);
    expect(stepLosses(join(out, 'metrics.jsonl'))).toHaveLength(6);
    // plain progress on a pipe: a start line and eval lines on stderr
    expect(r.stderr).toContain('training: 6 steps');
    expect(r.stderr).toContain('eval at step 3');

    const e = para(['eval', '--data', dev, '--model', modelDir, '--adapter', out, '--json']);
    expect(e.code, e.stderr).toBe(0);
    const m = JSON.parse(e.stdout) as { exact_match: number; loss: number; n: number };
    expect(Object.keys(m).sort()).toEqual(['exact_match', 'loss', 'n']);
    expect(m.n).toBe(12);
    expect(m.loss).toBeCloseTo(s.best.loss, 4);
    expect(m.exact_match).toBeCloseTo(s.best.exact_match, 6);
    const bare = para(['eval', '--data', dev, '--model', modelDir, '--json']);
    expect(bare.code, bare.stderr).toBe(0);
    expect(JSON.parse(bare.stdout).loss).not.toBeCloseTo(m.loss, 4);
  });

  it('LoRA and IA3 train too', () => {
    for (const method of ['lora', 'ia3']) {
      const out = join(work, method);
      const r = para([
        'train',
        '--method',
        method,
        '--data',
        train,
        '--model',
        modelDir,
        '--out',
        out,
        '--steps',
        '2',
        '--batch-size',
        '8',
        '--json',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).peft_type).toBe(
        method.toUpperCase(),
      );
    }
  });

  it('--resume continues exactly where --stop-after left off (same losses as one run)', () => {
    const common = [
      'train',
      '--method',
      'para',
      '--data',
      train,
      '--model',
      modelDir,
      '--steps',
      '7',
      '--batch-size',
      '8',
      '--micro-batch-size',
      '4',
      '--r',
      '4',
      '--seed',
      '3',
      '--quiet',
    ];
    const a = join(work, 'resume-a');
    const b = join(work, 'resume-b');
    expect(para([...common, '--out', a]).code).toBe(0);
    const first = para([...common, '--out', b, '--stop-after', '3']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('stopped (stopped)');
    expect(existsSync(join(b, 'checkpoints', 'latest.json'))).toBe(true);
    // A resume with other settings is refused.
    const other = para([...common.map((x) => (x === '3' ? '4' : x)), '--out', b, '--resume']);
    expectTypedError(
      other,
      'INVALID_ARGUMENT',
      'resuming needs the same settings as the interrupted run: seed differs',
    );
    const second = para([...common, '--out', b, '--resume']);
    expect(second.code, second.stderr).toBe(0);
    expect(stepLosses(join(b, 'metrics.jsonl'))).toEqual(stepLosses(join(a, 'metrics.jsonl')));
    expect(
      readFileSync(join(b, 'adapter_model.safetensors')).equals(
        readFileSync(join(a, 'adapter_model.safetensors')),
      ),
    ).toBe(true);
    // Nothing left to resume once the run finished.
    expectTypedError(
      para([...common, '--out', b, '--resume']),
      'FILE_NOT_FOUND',
      'no checkpoint to resume from',
    );
  });

  it('Ctrl-C (SIGINT) during training writes a checkpoint, prints the resume command, and resuming finishes the run', async () => {
    const out = join(work, 'sigint');
    const args = [
      'train',
      '--method',
      'para',
      '--data',
      train,
      '--model',
      modelDir,
      '--steps',
      '400',
      '--batch-size',
      '8',
      '--r',
      '4',
      '--seed',
      '5',
      '--plain',
      '--out',
      out,
    ];
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, PARA_BACKEND: 'wasm' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += String(d);
    });
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    );
    // Interrupt once training is under way (a few updates logged), whenever that is.
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (d) => {
        stderr += String(d);
        if ((stderr.match(/step \d+\/400/g) ?? []).length >= 3) resolve();
      });
      void exited.then(() => resolve());
    });
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('Continue with:');
    expect(stderr).toContain('--resume');
    expect(existsSync(join(out, 'checkpoints', 'latest.json'))).toBe(true);
    expect(stdout).not.toContain('para: unexpected error');
    const resumed = para([...args, '--resume', '--quiet']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
  });
});

describe('bad input', () => {
  it('--out refuses a non-empty directory unless --resume or --force; the backend line comes first', async () => {
    const out = join(work, 'taken');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'notes.txt'), 'mine\n');
    const args = [
      'train',
      '--method',
      'ia3',
      '--data',
      train,
      '--model',
      modelDir,
      '--out',
      out,
      '--steps',
      '1',
      '--batch-size',
      '8',
    ];
    expectTypedError(
      para(args),
      'INVALID_ARGUMENT',
      `${out}, field "--out": the output directory is not empty`,
      '--force',
    );
    const json = para([...args, '--json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stderr).error).toMatchObject({
      code: 'INVALID_ARGUMENT',
      file: out,
      field: '--out',
    });
    const forced = para([...args, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr.split('\n')[0]).toMatch(
      /^backend: (wasm|cpu|tensorflow)( \+ OpenBLAS)?( \(.*\))?$/,
    );
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
  });

  it('a broken JSONL line names the file and the line', async () => {
    const f = join(work, 'broken.jsonl');
    await writeFile(
      f,
      `${lines('antonym', 'train', 3)}{"prompt": "Opposite of hot:", "completion": " cold"\n`,
    );
    expectTypedError(
      para([
        'train',
        '--method',
        'para',
        '--data',
        f,
        '--model',
        modelDir,
        '--out',
        join(work, 'x'),
      ]),
      'INVALID_JSON',
      `${f}:4: line 4 is not valid JSON`,
    );
  });

  it('an empty dataset, a missing field, an unknown method', async () => {
    const empty = join(work, 'empty.jsonl');
    await writeFile(empty, '\n\n');
    expectTypedError(
      para(['eval', '--data', empty, '--model', modelDir]),
      'INVALID_ARGUMENT',
      `${empty}: the dataset is empty`,
    );
    const missing = join(work, 'missing.jsonl');
    await writeFile(missing, '{"prompt":"1+1="}\n');
    expectTypedError(
      para([
        'train',
        '--method',
        'para',
        '--data',
        missing,
        '--model',
        modelDir,
        '--out',
        join(work, 'y'),
      ]),
      'INVALID_ARGUMENT',
      `${missing}:1, field "completion"`,
      'missing or empty "completion"',
    );
    expectTypedError(
      para([
        'train',
        '--method',
        'dora',
        '--data',
        train,
        '--model',
        modelDir,
        '--out',
        join(work, 'z'),
      ]),
      'INVALID_ARGUMENT',
      'unknown adapter method "dora"',
      '"para", "lora", "ia3"',
    );
    expectTypedError(
      para(['eval', '--data', join(work, 'nope.jsonl'), '--model', modelDir]),
      'FILE_NOT_FOUND',
      'nope.jsonl',
    );
  });

  it('a prompt longer than the context is skipped with a count, or fails with --strict', async () => {
    const f = join(work, 'long.jsonl');
    const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    await writeFile(f, `${lines('antonym', 'train', 4)}{"prompt":"${long}","completion":" x"}\n`);
    const ok = para(['eval', '--data', f, '--model', modelDir, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain(
      `${f}: skipped 1 of 5 examples longer than the model's context (32 tokens): line 5`,
    );
    expect(JSON.parse(ok.stdout).n).toBe(4);
    expectTypedError(
      para(['eval', '--data', f, '--model', modelDir, '--strict']),
      'INVALID_ARGUMENT',
      `${f}:5, field "prompt"`,
      "longer than the model's context",
    );
  });

  it('a NaN loss stops training and points at the last good checkpoint', () => {
    const out = join(work, 'nan');
    const r = para([
      'train',
      '--method',
      'para',
      '--data',
      train,
      '--model',
      modelDir,
      '--out',
      out,
      '--steps',
      '6',
      '--batch-size',
      '8',
      '--lr',
      '1e38',
      '--checkpoint-every',
      '1',
      '--plain',
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /training stopped at step \d: the loss is NaN or infinite\. The last good checkpoint is .*checkpoints\/step-00000\d/,
    );
    expect(r.stderr).toContain('field "--lr"');
    expect(existsSync(join(out, 'checkpoints', 'latest.json'))).toBe(true);
  });
});

describe('para pretrain', () => {
  it('pretrains a tiny backbone that para eval can load', async () => {
    const corpus = join(work, 'corpus.txt');
    await writeFile(corpus, readFileSync(join(repo, 'data', 'tasks', 'README.md'), 'utf8'));
    const out = join(work, 'backbone');
    const r = para([
      'pretrain',
      '--input',
      corpus,
      '--out',
      out,
      '--config',
      'tiny',
      '--steps',
      '4',
      '--json',
      '--quiet',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as {
      steps: number;
      heldOutLoss: number;
      unigramCrossEntropy: number;
      command: string;
    };
    expect(s.steps).toBe(4);
    expect(Number.isFinite(s.heldOutLoss)).toBe(true);
    expect(s.command).toContain('--config tiny');
    for (const f of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'training_summary.json',
      'metrics.jsonl',
    ])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(existsSync(join(out, 'checkpoints'))).toBe(false);
    const e = para(['eval', '--data', dev, '--model', out, '--json', '--limit', '4']);
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).n).toBe(4);
  });
});

describe('no silent loss of a result (issue 13)', () => {
  const base = (out: string, data = train) => [
    'train',
    '--method',
    'para',
    '--data',
    data,
    '--model',
    modelDir,
    '--out',
    out,
    '--steps',
    '1',
    '--batch-size',
    '8',
    '--r',
    '2',
    '--quiet',
  ];

  it('a second run on an --out another live run holds is LOCKED (train and pretrain), naming the lock, pid and start', async () => {
    const out = join(work, 'locked');
    await mkdir(out, { recursive: true });
    const lock = join(out, '.para.lock');
    // This test process plays the first run: a live pid on this host.
    await writeFile(
      lock,
      JSON.stringify({
        pid: process.pid,
        hostname: hostname(),
        startedAt: '2026-03-04T05:06:07.000Z',
        command: 'para train (the first run)',
      }),
    );
    expectTypedError(para(base(out)), 'LOCKED', lock, `pid ${process.pid}`, '2026-03-04T05:06:07');
    const json = para([...base(out), '--json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stderr).error).toMatchObject({
      code: 'LOCKED',
      file: lock,
      field: '--out',
    });
    // --force does not get past it either, and nothing of the first run is touched
    expectTypedError(para([...base(out), '--force']), 'LOCKED', lock);
    const corpus = join(work, 'locked-corpus.txt');
    await writeFile(corpus, 'one\ntwo\nthree\n');
    expectTypedError(
      para(['pretrain', '--input', corpus, '--out', out, '--config', 'tiny', '--steps', '1']),
      'LOCKED',
      lock,
    );
    expect(readFileSync(lock, 'utf8')).toContain('the first run');
    // once that process is gone (a pid that has exited), the lock is stale and taken over
    const dead = spawnSync(process.execPath, ['-e', '']);
    await writeFile(
      lock,
      JSON.stringify({ pid: dead.pid, hostname: hostname(), startedAt: 'x', command: 'gone' }),
    );
    const r = para(base(out));
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(lock)).toBe(false);
  });

  it("--force passes through: an interrupted run's checkpoint is discarded only with it", () => {
    const out = join(work, 'forced');
    const first = para([...base(out), '--steps', '3', '--stop-after', '1']);
    expect(first.code, first.stderr).toBe(0);
    expect(existsSync(join(out, 'checkpoints'))).toBe(true);
    const forced = para([...base(out), '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(existsSync(join(out, 'checkpoints'))).toBe(false);
  });

  it('data that is not UTF-8: INVALID_ENCODING naming file:line, unless --allow-invalid-utf8 (train, eval, pretrain)', async () => {
    const bad = join(work, 'latin1.jsonl');
    const text = lines('antonym', 'train', 8);
    const at = text.indexOf('\n', text.indexOf('\n') + 1) + 1; // line 3
    const bytes = Buffer.concat([
      Buffer.from(text.slice(0, at + 14)),
      Buffer.from([0xe9]),
      Buffer.from(text.slice(at + 14)),
    ]);
    await writeFile(bad, bytes);
    const out = join(work, 'utf8');
    expectTypedError(para(base(out, bad)), 'INVALID_ENCODING', `${bad}:3`, 'byte');
    expect(existsSync(out)).toBe(false);
    const ok = para([...base(out, bad).filter((a) => a !== '--quiet'), '--allow-invalid-utf8']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/replaced 1 invalid UTF-8 sequence/);
    expectTypedError(
      para(['eval', '--data', bad, '--model', modelDir, '--limit', '2']),
      'INVALID_ENCODING',
      `${bad}:3`,
    );
    const e = para([
      'eval',
      '--data',
      bad,
      '--model',
      modelDir,
      '--limit',
      '2',
      '--allow-invalid-utf8',
      '--json',
    ]);
    expect(e.code, e.stderr).toBe(0);
    const corpus = join(work, 'latin1.txt');
    await writeFile(corpus, Buffer.from([0x61, 0x0a, 0x62, 0xe9, 0x0a]));
    expectTypedError(
      para(['pretrain', '--input', corpus, '--out', join(work, 'pt-utf8'), '--config', 'tiny']),
      'INVALID_ENCODING',
      `${corpus}:2`,
    );
  });

  it('pretrain --config constructor / toString / __proto__: a typed error listing the presets', () => {
    for (const name of ['constructor', 'toString', '__proto__']) {
      const r = para([
        'pretrain',
        '--input',
        train,
        '--out',
        join(work, 'preset'),
        '--config',
        name,
        '--json',
      ]);
      expect(r.code, r.stderr).toBe(2);
      const err = JSON.parse(r.stderr.trim().split('\n').pop() as string).error;
      expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', field: '--config' });
      expect(err.expected).toContain('small | tiny');
    }
  });

  it('--batch-size far past memory on the bundled backbone: LIMIT_EXCEEDED naming --batch-size, no crash', () => {
    const r = para([
      'train',
      '--method',
      'para',
      '--data',
      join(repo, 'data', 'tasks', 'antonym', 'train.jsonl'),
      '--batch-size',
      '100000',
      '--steps',
      '1',
      '--out',
      join(work, 'huge-batch'),
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const err = JSON.parse(r.stderr.trim().split('\n').pop() as string).error;
    expect(err).toMatchObject({ code: 'LIMIT_EXCEEDED', field: '--batch-size' });
    expect(err.message).toMatch(/micro/);
    expect(existsSync(join(work, 'huge-batch'))).toBe(false);
  });
});

describe('para demo', () => {
  it('a short run trains both default tenants, saves them, and decodes one mixed batch equal to each tenant alone', () => {
    const out = join(work, 'demo');
    const r = para([
      'demo',
      '--steps',
      '3',
      '--eval-limit',
      '4',
      '--rows',
      '2',
      '--out',
      out,
      '--plain',
    ]);
    expect(r.code, r.stderr).toBe(0);
    for (const t of ['pos', 'antonym']) {
      for (const f of ['adapter_config.json', 'adapter_model.safetensors'])
        expect(existsSync(join(out, t, f)), `${t}/${f}`).toBe(true);
      expect(r.stdout).toMatch(new RegExp(`\\n  ${t} +\\d`)); // a row of the per-tenant table
    }
    expect(r.stdout).toContain('one mixed batch: 4 rows');
    expect(r.stdout).toContain('4/4 rows identical to decoding each tenant alone');
  });
});
