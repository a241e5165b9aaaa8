import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { TrainEvent } from '../src/index';
import { formatDuration, metricsWriter, progressReporter } from '../src/node';

function sink(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const w = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream;
  Object.assign(w, {
    isTTY: tty,
    columns: 120,
    rows: 40,
    cursorTo: () => true,
    clearLine: () => true,
    moveCursor: () => true,
  });
  return { stream: w, text: () => out };
}

function step(s: number, total = 10): TrainEvent {
  return {
    type: 'step',
    step: s,
    totalSteps: total,
    epoch: 0,
    loss: 2 / s,
    lr: 1e-3,
    gradNorm: 0.5,
    tokens: 100,
    lossTokens: 20,
    finite: true,
    tokensPerSec: 1234,
    elapsedMs: s * 1000,
    etaMs: (total - s) * 1000,
    stepMs: 1000,
  };
}

describe('progress', () => {
  it('plain lines when not a TTY: start, every N steps, evaluations, the NaN message', () => {
    const { stream, text } = sink(false);
    const p = progressReporter({ stream, label: 'demo', logEvery: 5 });
    p.onEvent({
      type: 'start',
      step: 0,
      totalSteps: 10,
      resumed: false,
      parameters: 4242,
      stepsPerEpoch: 5,
    });
    for (let s = 1; s <= 10; s++) p.onEvent(step(s));
    p.onEvent({
      type: 'eval',
      step: 10,
      metrics: { loss: 1.25, exact_match: 0.5, n: 8 },
      best: true,
      ms: 1500,
    });
    p.onEvent({
      type: 'nan',
      step: 11,
      loss: Number.NaN,
      gradNorm: Number.NaN,
      lastCheckpoint: '/x/checkpoints/step-000010',
    });
    p.close();
    const lines = text().trim().split('\n');
    expect(lines[0]).toBe(
      'demo: training: 10 steps, 4,242 trainable parameters, 5 steps per epoch',
    );
    expect(lines[1]).toBe(
      'demo: step 5/10 loss 0.4000 lr 1.00e-3 grad-norm 0.500 1234 tok/s elapsed 5s eta 5s',
    );
    expect(lines[2]).toContain('step 10/10');
    expect(lines[3]).toBe(
      'demo: eval at step 10: loss 1.2500, exact_match 0.5000, n 8 (best so far) [2s]',
    );
    expect(lines[4]).toContain('The last good checkpoint is /x/checkpoints/step-000010');
  });

  it('a progress bar with tokens/s and ETA on a TTY', () => {
    const { stream, text } = sink(true);
    const p = progressReporter({ stream, label: 't' });
    p.onEvent({
      type: 'start',
      step: 0,
      totalSteps: 10,
      resumed: false,
      parameters: 10,
      stepsPerEpoch: 5,
    });
    for (let s = 1; s <= 10; s++) p.onEvent(step(s));
    p.close();
    const out = text();
    expect(out).toContain('10/10');
    expect(out).toContain('1234 tok/s');
    expect(out).toContain('ETA 0s');
    expect(out).toMatch(/█/);
  });

  it('durations', () => {
    expect([formatDuration(400), formatDuration(61_000), formatDuration(3_723_000)]).toEqual([
      '0s',
      '1m01s',
      '1h02m',
    ]);
  });

  it('metrics JSONL: one line per step and evaluation; a resume drops the lines past its checkpoint', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'para-metrics-')), 'metrics.jsonl');
    const w = metricsWriter(file);
    for (let s = 1; s <= 4; s++) w(step(s));
    w({ type: 'eval', step: 4, metrics: { loss: 1, n: 3 }, best: true, ms: 1 });
    const read = () =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; step: number });
    expect(read().map((e) => `${e.type}${e.step}`)).toEqual([
      'step1',
      'step2',
      'step3',
      'step4',
      'eval4',
    ]);
    writeFileSync(file, `${readFileSync(file, 'utf8')}not json\n`);
    const r = metricsWriter(file, 2);
    r(step(3));
    expect(read().map((e) => `${e.type}${e.step}`)).toEqual(['step1', 'step2', 'step3']);
  });
});
