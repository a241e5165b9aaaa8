import { ParaAdapter } from '@para/adapters';
import { Rng } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { bucketedBatches, collate, collateWindows, ExamplePlan, microBatches } from '../src/index';
import { useBackend } from './helpers/backends';
import { tinyModel, tinyTokenizer } from './helpers/fixtures';

describe('collate', () => {
  it('left-pads, shifts targets and masks everything but completion tokens', () => {
    const b = collate(
      [
        { ids: [1, 10, 11, 12, 2], promptLength: 3 },
        { ids: [1, 20, 21, 2], promptLength: 2 },
      ],
      3,
    );
    expect(b.ids).toEqual([
      [1, 10, 11, 12, 2],
      [3, 1, 20, 21, 2],
    ]);
    expect(b.attentionMask).toEqual([
      [1, 1, 1, 1, 1],
      [0, 1, 1, 1, 1],
    ]);
    // position t predicts ids[t + 1]
    expect(Array.from(b.targets)).toEqual([10, 11, 12, 2, 3, 3, 20, 21, 2, 3]);
    // row 0: prompt = [1, 10, 11]: the loss covers the targets 12 and 2 (positions 2, 3)
    // row 1: prompt = [1, 20]: targets 21 and 2 (positions 2, 3); padding (position 0) never counts
    expect(Array.from(b.weights)).toEqual([0, 0, 1, 1, 0, 0, 0, 1, 1, 0]);
    expect(b.promptLengths).toEqual([3, 2]);
    expect(b.tokens).toBe(9);
    expect(b.lossTokens).toBe(4);
  });

  it('no padding → no mask', () => {
    const b = collate([{ ids: [1, 2, 3], promptLength: 1 }], 0);
    expect(b.attentionMask).toBeNull();
  });

  it('rejects an example without a completion', () => {
    expect(() => collate([{ ids: [1, 2], promptLength: 2, source: 'f.jsonl:7' }], 0)).toThrow(
      /f\.jsonl:7/,
    );
  });

  it('windows: inputs are the first T tokens, targets the last T, all counted', () => {
    const b = collateWindows([Int32Array.from([5, 6, 7]), [8, 9, 10]]);
    expect(b.ids).toEqual([
      [5, 6],
      [8, 9],
    ]);
    expect(Array.from(b.targets)).toEqual([6, 7, 9, 10]);
    expect(b.lossTokens).toBe(4);
  });
});

describe('length-bucketed batches', () => {
  it('every example exactly once per epoch, similar lengths within a batch, seeded', () => {
    const rng = new Rng(1);
    const lengths = Array.from({ length: 103 }, () => 2 + rng.int(40));
    const a = bucketedBatches(lengths, 8, new Rng('s'), 4);
    const b = bucketedBatches(lengths, 8, new Rng('s'), 4);
    expect(a).toEqual(b);
    expect(a.flat().sort((x, y) => x - y)).toEqual(lengths.map((_, i) => i));
    // Within a pool of 32 sorted examples, each batch spans a narrow range of lengths.
    const spread = a.map(
      (batch) =>
        Math.max(...batch.map((i) => lengths[i]!)) - Math.min(...batch.map((i) => lengths[i]!)),
    );
    const overall = Math.max(...lengths) - Math.min(...lengths);
    expect(spread.reduce((s, x) => s + x, 0) / spread.length).toBeLessThan(overall / 2);
    expect(bucketedBatches(lengths, 8, new Rng('t'), 4)).not.toEqual(a);
  });

  it('micro-batches split a batch by length', () => {
    expect(microBatches([4, 1, 3, 0], [5, 1, 9, 2, 7], 2)).toEqual([
      [1, 3],
      [0, 4],
    ]);
  });

  it('a plan is deterministic per (seed, epoch) and reshuffles between epochs', () => {
    const ex = Array.from({ length: 20 }, (_, i) => ({
      ids: [1, ...new Array(1 + (i % 5)).fill(7), 2],
      promptLength: 1,
    }));
    const p = new ExamplePlan(ex, { batchSize: 4, seed: 3, padId: 0 });
    expect(p.stepsPerEpoch).toBe(5);
    const q = new ExamplePlan(ex, { batchSize: 4, seed: 3, padId: 0 });
    expect(q.order(1)).toEqual(p.order(1));
    expect(p.order(0)).not.toEqual(p.order(1));
  });
});

describe('PARA under left padding', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it("a padded row's logits equal the row alone: the prompt length indexes the prompt, not the padding", async () => {
    const tok = tinyTokenizer();
    const model = tinyModel(tok, 1);
    const adapter = ParaAdapter.create(model.config, { r: 4 }, { seed: 2 });
    // Give W_up non-zero values so PARA actually changes the activations.
    for (const [name, v] of adapter.namedParameters())
      if (name.endsWith('up.weight')) v.assign(tf.randomNormal(v.shape, 0, 0.5, 'float32', 7));
    const hooks = adapter.attach(model);
    const short = { ids: [1, 30, 31, 32, 2], promptLength: 3 };
    const long = { ids: [1, 40, 41, 42, 43, 44, 45, 2], promptLength: 5 };
    const batch = collate([short, long], tok.padTokenId as number);
    const together = tf.tidy(() =>
      model.forward(batch.ids, {
        attentionMask: batch.attentionMask!,
        adapter: hooks,
        request: { promptLengths: batch.promptLengths! },
      }),
    );
    const alone = tf.tidy(() =>
      model.forward([short.ids], { adapter: hooks, request: { promptLengths: [3] } }),
    );
    const T = batch.ids[0]!.length;
    const off = T - short.ids.length;
    const row = tf.slice(together, [0, off, 0], [1, short.ids.length, together.shape[2]!]);
    const a = await row.data();
    const b = await alone.data();
    let max = 0;
    for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
    expect(max).toBeLessThan(1e-4);
    // A wrong prompt length (counting padding) would change the vectors: check the test can fail.
    const wrong = tf.tidy(() =>
      model.forward([short.ids], { adapter: hooks, request: { promptLengths: [3 + off] } }),
    );
    const c = await wrong.data();
    let diff = 0;
    for (let i = 0; i < c.length; i++) diff = Math.max(diff, Math.abs(c[i]! - b[i]!));
    expect(diff).toBeGreaterThan(1e-3);
    tf.dispose([together, alone, row, wrong]);
    adapter.dispose();
    model.dispose();
  });
});
