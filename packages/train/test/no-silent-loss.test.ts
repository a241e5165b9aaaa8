/**
 * No silent loss of a result (issue 13), through the library functions behind `para train` and
 * `para pretrain`: the output directory's lock, an interrupted run's checkpoint never discarded
 * without `force`, tampered checkpoints refused, checkpoint writes that fail leave nothing to
 * trip over, data that is not UTF-8, preset names that are Object.prototype members, and
 * batches larger than memory allows.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError, type ParaError, writeSafetensorsFile } from '@para/core/node';
import { saveModel } from '@para/model/node';
import { poisonSafetensors } from '@para/test-utils/files';
import { saveTokenizer } from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeUtf8Text, firstInvalidUtf8 } from '../src/data';
import { backbonePreset } from '../src/index';
import {
  checkpointTestHooks,
  checkTrainerState,
  latestCheckpoint,
  saveCheckpoint,
} from '../src/node/checkpoint';
import { LOCK_FILE } from '../src/node/files';
import { pretrain } from '../src/node/pretrain';
import {
  estimateStepMemory,
  loadBackbone,
  type TrainFilesOptions,
  trainAdapterFromFiles,
  WASM_MEMORY_LIMIT,
} from '../src/node/train-files';
import { useBackend } from './helpers/backends';
import { taskLines, tinyModel, tinyTokenizer, tinyTokenizerFiles } from './helpers/fixtures';

let work: string;
let modelDir: string;
let trainFile: string;
let devFile: string;
let backbone: Awaited<ReturnType<typeof loadBackbone>>;
let n = 0;

async function caught(fn: () => Promise<unknown>): Promise<ParaError> {
  try {
    await fn();
  } catch (e) {
    return e as ParaError;
  }
  throw new Error('expected an error');
}

function fresh(name: string): string {
  n++;
  return join(work, `${name}-${n}`);
}

function opts(out: string, over: Partial<TrainFilesOptions> = {}): TrainFilesOptions {
  return {
    method: 'para',
    data: trainFile,
    backbone,
    out,
    steps: 4,
    batchSize: 4,
    r: 2,
    quiet: true,
    log: () => undefined,
    ...over,
  };
}

function lockJson(pid: number, startedAt = '2026-01-01T00:00:00.000Z'): string {
  return JSON.stringify({ pid, hostname: hostname(), startedAt, command: 'para train (test)' });
}

beforeAll(async () => {
  await useBackend('cpu');
  work = await mkdtemp(join(tmpdir(), 'para-no-silent-loss-'));
  modelDir = join(work, 'model');
  const tok = tinyTokenizer();
  const files = tinyTokenizerFiles();
  await saveTokenizer(modelDir, files);
  const model = tinyModel(tok, 3);
  await saveModel(model, modelDir);
  model.dispose();
  trainFile = join(work, 'train.jsonl');
  devFile = join(work, 'dev.jsonl');
  await writeFile(trainFile, `${taskLines('antonym', 'train', 16)}\n`);
  await writeFile(devFile, `${taskLines('antonym', 'dev', 6)}\n`);
  backbone = await loadBackbone(modelDir);
}, 120_000);

afterAll(async () => {
  backbone?.model.dispose();
  await rm(work, { recursive: true, force: true });
});

afterEach(() => {
  delete checkpointTestHooks.beforeRename;
});

describe('the output directory lock', () => {
  it('a lock held by a live process: LOCKED naming the lock file, the pid and its start time', async () => {
    const out = fresh('locked');
    await mkdir(out);
    await writeFile(join(out, LOCK_FILE), lockJson(process.pid, '2026-02-03T04:05:06.000Z'));
    const e = await caught(() => trainAdapterFromFiles(opts(out)));
    expect(isParaError(e, 'LOCKED'), String(e)).toBe(true);
    expect(e.file).toBe(join(out, LOCK_FILE));
    expect(e.message).toContain(`pid ${process.pid}`);
    expect(e.message).toContain('2026-02-03T04:05:06.000Z');
    // the other run's lock is left alone, and nothing was written
    expect(await readFile(join(out, LOCK_FILE), 'utf8')).toContain('2026-02-03T04:05:06');
    expect(await readdir(out)).toEqual([LOCK_FILE]);
    // pretrain too
    const p = await caught(() =>
      pretrain({ inputs: [trainFile], out, config: 'tiny', steps: 1, log: () => undefined }),
    );
    expect(isParaError(p, 'LOCKED'), String(p)).toBe(true);
  });

  it('a stale lock (its pid is gone) is taken over with a log line, and released after the run', async () => {
    const dead = spawnSync(process.execPath, ['-e', '']);
    expect(dead.status).toBe(0);
    const out = fresh('stale');
    await mkdir(out);
    await writeFile(join(out, LOCK_FILE), lockJson(dead.pid as number));
    const logs: string[] = [];
    const r = await trainAdapterFromFiles(opts(out, { log: (s) => logs.push(s) }));
    expect(r.result.reason).toBe('done');
    expect(logs.join('\n')).toMatch(new RegExp(`stale lock of pid ${dead.pid}`));
    expect(existsSync(join(out, LOCK_FILE))).toBe(false);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    // an unparsable lock file is taken over too
    const junk = fresh('junk-lock');
    await mkdir(junk);
    await writeFile(join(junk, LOCK_FILE), 'not json');
    await trainAdapterFromFiles(opts(junk, { steps: 1 }));
    expect(existsSync(join(junk, LOCK_FILE))).toBe(false);
  });

  it('released after a failing run (and a directory it created for nothing is removed)', async () => {
    const out = fresh('failing');
    const e = await caught(() =>
      trainAdapterFromFiles(opts(out, { data: join(work, 'no-such.jsonl') })),
    );
    expect(isParaError(e, 'FILE_NOT_FOUND'), String(e)).toBe(true);
    expect(existsSync(out)).toBe(false);
    const kept = fresh('failing-kept');
    await mkdir(kept);
    await writeFile(join(kept, 'notes.txt'), 'mine');
    const bad = await caught(() => trainAdapterFromFiles(opts(kept, { lr: Number.NaN })));
    expect(isParaError(bad), String(bad)).toBe(true);
    expect(await readdir(kept)).not.toContain(LOCK_FILE);
    expect(await readdir(kept)).toContain('notes.txt');
    // a second run can take it at once
    await trainAdapterFromFiles(opts(kept, { steps: 1 }));
    expect(existsSync(join(kept, LOCK_FILE))).toBe(false);
  });

  it('two runs on one directory at the same time: the second is LOCKED', async () => {
    const out = fresh('concurrent');
    let second: Promise<unknown> = Promise.resolve(null);
    const first = trainAdapterFromFiles(
      opts(out, {
        steps: 3,
        onEvent: (ev) => {
          if (ev.type === 'step' && ev.step === 1)
            second = trainAdapterFromFiles(opts(out)).then(
              () => null,
              (e: unknown) => e,
            );
        },
      }),
    );
    await first;
    const e = await second;
    expect(isParaError(e, 'LOCKED'), String(e)).toBe(true);
  });
});

describe("an interrupted run's checkpoint", () => {
  it('is refused without resume (field resume), kept, and discarded only with force', async () => {
    const out = fresh('interrupted');
    const a = await trainAdapterFromFiles(opts(out, { stopAtStep: 2 }));
    expect(a.result.reason).toBe('stopped');
    const ckpt = await latestCheckpoint(out);
    expect(ckpt).not.toBeNull();
    const e = await caught(() => trainAdapterFromFiles(opts(out)));
    expect(isParaError(e, 'INVALID_ARGUMENT'), String(e)).toBe(true);
    expect(e.field).toBe('resume');
    expect(e.expected).toBe('resume: true to continue, force: true to discard it');
    expect(e.file).toBe(join(out, 'checkpoints'));
    expect(existsSync(ckpt as string)).toBe(true);
    const logs: string[] = [];
    const f = await trainAdapterFromFiles(opts(out, { force: true, log: (s) => logs.push(s) }));
    expect(f.result.step).toBe(4);
    expect(logs.join('\n')).toMatch(/discarding/);
    expect(existsSync(join(out, 'checkpoints'))).toBe(false);
  });

  it('pretrain refuses one too', async () => {
    const out = fresh('pretrain-interrupted');
    await mkdir(join(out, 'checkpoints', 'step-000010'), { recursive: true });
    await writeFile(
      join(out, 'checkpoints', 'latest.json'),
      JSON.stringify({ dir: 'step-000010', step: 10 }),
    );
    const e = await caught(() =>
      pretrain({ inputs: [trainFile], out, config: 'tiny', steps: 1, log: () => undefined }),
    );
    expect(isParaError(e, 'INVALID_ARGUMENT'), String(e)).toBe(true);
    expect(e.field).toBe('resume');
    expect(existsSync(join(out, 'checkpoints', 'step-000010'))).toBe(true);
  });
});

describe('tampered checkpoints', () => {
  let out: string;
  let stateFile: string;
  let original: string;
  beforeAll(async () => {
    out = fresh('tampered');
    await trainAdapterFromFiles(opts(out, { stopAtStep: 2 }));
    const dir = (await latestCheckpoint(out)) as string;
    stateFile = join(dir, 'trainer_state.json');
    original = await readFile(stateFile, 'utf8');
  });

  it.each([
    ['step beyond the run', { step: 999, totalSteps: 999 }, 'step'],
    ['step beyond its own totalSteps', { step: 5 }, 'step'],
    ['negative step', { step: -1 }, 'step'],
    ['non-integer step', { step: 1.5 }, 'step'],
    ['string step', { step: '2' }, 'step'],
    ['missing rng state', { rng: undefined }, 'rng'],
    ['bad rng words', { rng: { s: [1, 2, 3], spare: null } }, 'rng.s'],
    ['meta not an object', { meta: 'x' }, 'meta'],
    ['meta null', { meta: null }, 'meta'],
    ['best of the wrong type', { best: 3 }, 'best'],
  ] as const)('%s → INVALID_CONFIG naming the file and field', async (_what, patch, field) => {
    const state = { ...JSON.parse(original), ...patch };
    await writeFile(stateFile, JSON.stringify(state));
    try {
      const e = await caught(() => trainAdapterFromFiles(opts(out, { resume: true })));
      expect(isParaError(e, 'INVALID_CONFIG'), String(e)).toBe(true);
      expect(e.file).toBe(stateFile);
      expect(e.field).toBe(field);
    } finally {
      await writeFile(stateFile, original);
    }
  });

  it('NaN in state.safetensors (a moment or a parameter) → NON_FINITE naming the file and tensor', async () => {
    const dir = (await latestCheckpoint(out)) as string;
    const file = join(dir, 'state.safetensors');
    const intact = await readFile(file);
    const name = await poisonSafetensors(file, (n) => n.startsWith('v.'), Number.NaN);
    try {
      const e = await caught(() => trainAdapterFromFiles(opts(out, { resume: true })));
      expect(isParaError(e, 'NON_FINITE'), String(e)).toBe(true);
      expect(e.file).toBe(file);
      expect(e.field).toBe(name);
    } finally {
      await writeFile(file, intact);
    }
  });

  it('state.safetensors missing a tensor the trainer needs → INVALID_CONFIG naming it; the intact checkpoint resumes', async () => {
    const dir = (await latestCheckpoint(out)) as string;
    const file = join(dir, 'state.safetensors');
    const intact = await readFile(file);
    await writeSafetensorsFile(file, { 'param.nothing': tf.zeros([1]) });
    try {
      const e = await caught(() => trainAdapterFromFiles(opts(out, { resume: true })));
      expect(isParaError(e, 'INVALID_CONFIG'), String(e)).toBe(true);
      expect(e.file).toBe(file);
      expect(e.field).toMatch(/^param\./);
    } finally {
      await writeFile(file, intact);
    }
    const r = await trainAdapterFromFiles(opts(out, { resume: true }));
    expect([r.result.reason, r.result.step]).toEqual(['done', 4]);
  });

  it('checkTrainerState: a state that is not an object at all', () => {
    for (const v of [null, 3, 'x', []]) {
      let e: unknown;
      try {
        checkTrainerState(v, 'f.json');
      } catch (x) {
        e = x;
      }
      expect(isParaError(e, 'INVALID_CONFIG')).toBe(true);
    }
  });
});

describe('checkpoint writes', () => {
  it('a failed write removes its partial directory; the previous checkpoint stays the latest and resumes', async () => {
    const out = fresh('disk-full');
    let saves = 0;
    checkpointTestHooks.beforeRename = () => {
      saves++;
      if (saves === 2) throw new Error('ENOSPC: no space left on device (simulated)');
    };
    const e = await caught(() =>
      trainAdapterFromFiles(opts(out, { checkpointEvery: 1, stopAtStep: 3 })),
    );
    expect(isParaError(e, 'IO_ERROR'), String(e)).toBe(true);
    expect(e.message).toContain('ENOSPC');
    delete checkpointTestHooks.beforeRename;
    const entries = await readdir(join(out, 'checkpoints'));
    expect(entries.filter((x) => x.endsWith('.tmp'))).toEqual([]);
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoints', 'step-000001'));
    const r = await trainAdapterFromFiles(opts(out, { checkpointEvery: 1, resume: true }));
    expect([r.result.reason, r.result.step]).toEqual(['done', 4]);
  });

  it('a stale .tmp directory (a crash mid-write) is ignored by resume and removed by the next save', async () => {
    const out = fresh('stale-tmp');
    await trainAdapterFromFiles(opts(out, { checkpointEvery: 1, stopAtStep: 2 }));
    const junk = join(out, 'checkpoints', 'step-000003.tmp');
    await mkdir(junk);
    await writeFile(join(junk, 'trainer_state.json'), '{"step": 3');
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoints', 'step-000002'));
    // the pointer naming a directory that is gone falls back to the newest complete one
    await writeFile(
      join(out, 'checkpoints', 'latest.json'),
      JSON.stringify({ dir: 'step-000003', step: 3 }),
    );
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoints', 'step-000002'));
    const r = await trainAdapterFromFiles(
      opts(out, { checkpointEvery: 1, resume: true, keepCheckpoints: true }),
    );
    expect(r.result.step).toBe(4);
    expect(await readdir(join(out, 'checkpoints'))).toEqual(['latest.json', 'step-000004']);
  });

  it('saveCheckpoint with an unwritable tensor: nothing partial is left', async () => {
    const out = fresh('bad-tensor');
    const t = tf.zeros([2]);
    t.dispose();
    const state = JSON.parse(
      JSON.stringify({
        format: 'para-trainer-state',
        version: 1,
        step: 1,
        totalSteps: 2,
        seed: 0,
        rng: { s: [1, 2, 3, 4], spare: null },
        tokensSeen: 0,
        elapsedMs: 0,
        best: null,
        evalsWithoutImprovement: 0,
        lastLoss: null,
        meta: {},
      }),
    );
    await expect(saveCheckpoint(out, { state, tensors: { 'param.x': t } })).rejects.toThrow();
    expect(await readdir(join(out, 'checkpoints'))).toEqual([]);
  });
});

describe('data that is not UTF-8', () => {
  const enc = new TextEncoder();
  const good = `${taskLines('antonym', 'train', 4)}\n`;
  function withBadByte(text: string, line: number): Uint8Array {
    const lines = text.split('\n');
    const before = enc.encode(`${lines.slice(0, line - 1).join('\n')}\n`);
    const bad = enc.encode(lines[line - 1] as string);
    const cut = bad.indexOf(0x3a); // after the first ':' of the JSON
    const after = enc.encode(`\n${lines.slice(line).join('\n')}`);
    const out = new Uint8Array(before.length + bad.length + 1 + after.length);
    out.set(before);
    out.set(bad.subarray(0, cut + 2), before.length);
    out[before.length + cut + 2] = 0xff;
    out.set(bad.subarray(cut + 2), before.length + cut + 3);
    out.set(after, before.length + bad.length + 1);
    return out;
  }

  it('firstInvalidUtf8 finds the first bad byte (invalid lead, truncated, overlong, surrogate)', () => {
    expect(firstInvalidUtf8(enc.encode('héllo 😀 ∑'))).toBe(-1);
    expect(firstInvalidUtf8(new Uint8Array([0x61, 0xff]))).toBe(1);
    expect(firstInvalidUtf8(new Uint8Array([0x61, 0xe2, 0x82]))).toBe(1);
    expect(firstInvalidUtf8(new Uint8Array([0xc0, 0x80]))).toBe(0);
    expect(firstInvalidUtf8(new Uint8Array([0x61, 0x62, 0xed, 0xa0, 0x80]))).toBe(2);
    expect(firstInvalidUtf8(new Uint8Array([0xf4, 0x90, 0x80, 0x80]))).toBe(0);
  });

  it('decodeUtf8Text: INVALID_ENCODING naming the line and byte offset; allowInvalidUtf8 replaces and warns with the count', () => {
    const bytes = new Uint8Array([...enc.encode('ok\nfine\nba'), 0xff, 0xfe, ...enc.encode('d\n')]);
    let e: ParaError | undefined;
    try {
      decodeUtf8Text(bytes, 'x.jsonl');
    } catch (x) {
      e = x as ParaError;
    }
    expect(isParaError(e, 'INVALID_ENCODING')).toBe(true);
    expect(e?.file).toBe('x.jsonl:3');
    expect(e?.message).toContain('byte 10');
    const warnings: string[] = [];
    const text = decodeUtf8Text(bytes, 'x.jsonl', {
      allowInvalidUtf8: true,
      log: (s) => warnings.push(s),
    });
    expect(text).toBe('ok\nfine\nba\uFFFD\uFFFDd\n');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/replaced 2 invalid UTF-8 sequences/);
    // a U+FFFD already in the file is not counted
    const w2: string[] = [];
    decodeUtf8Text(new Uint8Array([...enc.encode('\uFFFD'), 0xff]), 'y', {
      allowInvalidUtf8: true,
      log: (s) => w2.push(s),
    });
    expect(w2[0]).toMatch(/replaced 1 invalid UTF-8 sequence /);
  });

  it('train and eval data files: INVALID_ENCODING with file:line, unless allowInvalidUtf8', async () => {
    const bad = join(work, 'bad-utf8.jsonl');
    await writeFile(bad, withBadByte(good, 3));
    const e = await caught(() => trainAdapterFromFiles(opts(fresh('utf8'), { data: bad })));
    expect(isParaError(e, 'INVALID_ENCODING'), String(e)).toBe(true);
    expect(e.file).toBe(`${bad}:3`);
    expect(e.message).toMatch(/byte \d+/);
    const ev = await caught(() =>
      trainAdapterFromFiles(opts(fresh('utf8-eval'), { evalData: bad })),
    );
    expect(isParaError(ev, 'INVALID_ENCODING'), String(ev)).toBe(true);
    const logs: string[] = [];
    const r = await trainAdapterFromFiles(
      opts(fresh('utf8-allowed'), {
        data: bad,
        steps: 1,
        allowInvalidUtf8: true,
        log: (s) => logs.push(s),
      }),
    );
    expect(r.result.step).toBe(1);
    expect(logs.join('\n')).toMatch(/replaced 1 invalid UTF-8 sequence/);
  });

  it("pretrain's text inputs too", async () => {
    const bad = join(work, 'bad-utf8.txt');
    await writeFile(bad, new Uint8Array([...enc.encode('one line\nand '), 0xc3, 0x28, 0x0a]));
    const e = await caught(() =>
      pretrain({
        inputs: [bad],
        out: fresh('pretrain-utf8'),
        config: 'tiny',
        log: () => undefined,
      }),
    );
    expect(isParaError(e, 'INVALID_ENCODING'), String(e)).toBe(true);
    expect(e.file).toBe(`${bad}:2`);
  });
});

describe('preset names', () => {
  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'])(
    '%s is not a preset: INVALID_ARGUMENT listing the presets',
    async (name) => {
      let e: ParaError | undefined;
      try {
        backbonePreset(name);
      } catch (x) {
        e = x as ParaError;
      }
      expect(isParaError(e, 'INVALID_ARGUMENT')).toBe(true);
      expect(e?.field).toBe('config');
      expect(e?.expected).toContain('small | tiny');
      const p = await caught(() =>
        pretrain({ inputs: [trainFile], out: fresh('preset'), config: name, log: () => undefined }),
      );
      expect(isParaError(p, 'INVALID_ARGUMENT'), String(p)).toBe(true);
      expect(p.field).toBe('config');
    },
  );
});

describe('batches larger than memory allows', () => {
  it('the pre-check refuses before training, naming batchSize or microBatchSize', async () => {
    const out = fresh('memory');
    const e = await caught(() => trainAdapterFromFiles(opts(out, { memoryLimit: 10_000 })));
    expect(isParaError(e, 'LIMIT_EXCEEDED'), String(e)).toBe(true);
    expect(e.field).toBe('batchSize');
    expect(e.message).toMatch(/microBatchSize/);
    const m = await caught(() =>
      trainAdapterFromFiles(opts(out, { microBatchSize: 2, memoryLimit: 10_000 })),
    );
    expect(isParaError(m, 'LIMIT_EXCEEDED'), String(m)).toBe(true);
    expect(m.field).toBe('microBatchSize');
    expect(existsSync(out)).toBe(false);
    const p = await caught(() =>
      pretrain({ inputs: [trainFile], out, config: 'tiny', memoryLimit: 10_000 }),
    );
    expect(isParaError(p, 'LIMIT_EXCEEDED'), String(p)).toBe(true);
    expect(p.field).toBe('batchSize');
  });

  it('the bundled backbone with a 2000-row batch is past the wasm heap; the default batch is far below', () => {
    const cfg = {
      hiddenSize: 256,
      intermediateSize: 688,
      numLayers: 4,
      numHeads: 4,
      vocabSize: 4096,
    };
    expect(estimateStepMemory(cfg, 2000, 16)).toBeGreaterThan(WASM_MEMORY_LIMIT);
    // measured with the wasm backend (antonym, 20 tokens): 380 rows ran, 550 ran out of the heap
    expect(estimateStepMemory(cfg, 380, 20)).toBeLessThan(WASM_MEMORY_LIMIT);
    expect(estimateStepMemory(cfg, 550, 20)).toBeGreaterThan(WASM_MEMORY_LIMIT);
    expect(estimateStepMemory(cfg, 16, 64)).toBeLessThan(WASM_MEMORY_LIMIT / 4);
  });

  it('an allocation failure inside a step becomes LIMIT_EXCEEDED naming the batch option', async () => {
    const e = await caught(() =>
      trainAdapterFromFiles(
        opts(fresh('oom'), {
          microBatchSize: 2,
          onEvent: (ev) => {
            if (ev.type === 'step') throw new RangeError('Array buffer allocation failed');
          },
        }),
      ),
    );
    expect(isParaError(e, 'LIMIT_EXCEEDED'), String(e)).toBe(true);
    expect(e.field).toBe('microBatchSize');
    expect(e.message).toMatch(/lower microBatchSize/);
  });
});
