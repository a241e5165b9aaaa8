/**
 * The trainer on tiny models built here (2 layers, d = 32), on the default Node backend (wasm):
 * the loss goes down, accumulation equals a big batch, the frozen backbone stays bit-identical,
 * the loss counts only completion tokens, tensors do not leak, resume equals an uninterrupted
 * run, and a NaN loss stops training with the last good checkpoint kept.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoraAdapter, ParaAdapter } from '@para/adapters';
import { measureTensorLeak } from '@para/core';
import { allWeightTensors } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adapterTrainable,
  type Batch,
  collate,
  ExamplePlan,
  fullTrainable,
  runTraining,
  type TrainableModel,
  Trainer,
} from '../src/index';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../src/node';
import { expectClose, useBackend } from './helpers/backends';
import { taskDataset, tinyModel, tinyTokenizer } from './helpers/fixtures';

const BACKEND = (process.env.PARA_TRAIN_TEST_BACKEND ?? 'wasm') as 'wasm' | 'cpu';

beforeAll(async () => {
  await useBackend(BACKEND);
});

const tok = tinyTokenizer();
const pad = () => tok.padTokenId as number;

/** A random tiny backbone with large weights (std 0.3), so its logits depend on the input and PARA's scalings matter. */
function paraSetup(seed = 0) {
  const model = tinyModel(tok, 11, { initializerRange: 0.3 });
  const adapter = ParaAdapter.create(model.config, { r: 4 }, { seed });
  return { model, adapter, trainable: adapterTrainable(model, adapter) };
}

async function values(ts: Iterable<tf.Tensor>): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) out.push((await t.data()) as Float32Array);
  return out;
}

describe(`training on ${BACKEND}`, () => {
  it('a small PARA run lowers the loss (and full-parameter training too)', async () => {
    const data = taskDataset(tok, 'antonym', 'train', 32);
    const { model, adapter, trainable } = paraSetup();
    const evalBatches = () => [collate(data.examples, pad())];
    const trainer = new Trainer(trainable, { lr: 1e-2, totalSteps: 30, warmupSteps: 2, seed: 0 });
    const before = (await trainer.evalLoss(evalBatches())).loss;
    const r = await runTraining(trainer, {
      plan: new ExamplePlan(data.examples, { batchSize: 8, seed: 0, padId: pad() }),
    });
    const after = (await trainer.evalLoss(evalBatches())).loss;
    expect(r.reason).toBe('done');
    expect(r.losses).toHaveLength(30);
    expect(after).toBeLessThan(before - 0.3);
    trainer.dispose();

    const full = fullTrainable(model);
    const t2 = new Trainer(full, { lr: 3e-3, totalSteps: 20, seed: 0, weightDecay: 0.1 });
    const b0 = (await t2.evalLoss(evalBatches())).loss;
    await runTraining(t2, {
      plan: new ExamplePlan(data.examples, { batchSize: 8, seed: 0, padId: pad() }),
    });
    expect((await t2.evalLoss(evalBatches())).loss).toBeLessThan(b0 - 0.5);
    t2.dispose();
    full.model.dispose();
    adapter.dispose();
    model.dispose();
  });

  it('gradient accumulation: 4 micro-batches of 2 = one batch of 8', async () => {
    const data = taskDataset(tok, 'category', 'train', 8);
    const { model, adapter, trainable } = paraSetup(3);
    for (const [n, v] of adapter.namedParameters())
      if (n.endsWith('up.weight')) v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', 1));
    const trainer = new Trainer(trainable, { lr: 1e-2, totalSteps: 2 });
    const one = await trainer.gradients([collate(data.examples, pad())]);
    const micro = [0, 2, 4, 6].map((i) => collate(data.examples.slice(i, i + 2), pad()));
    const four = await trainer.gradients(micro);
    expect(four.loss).toBeCloseTo(one.loss, 5);
    expect(Object.keys(four.grads).sort()).toEqual(Object.keys(one.grads).sort());
    for (const name of Object.keys(one.grads)) {
      const [a, b] = await values([one.grads[name]!, four.grads[name]!]);
      expectClose(b!, a!, 1e-6, 1e-4, name);
    }
    tf.dispose([...Object.values(one.grads), ...Object.values(four.grads)]);
    trainer.dispose();
    adapter.dispose();
    model.dispose();
  });

  it('adapter training: only adapter variables get gradients; the backbone stays bit-identical', async () => {
    const data = taskDataset(tok, 'arithmetic', 'train', 16);
    for (const make of [
      (m: ReturnType<typeof tinyModel>) => ParaAdapter.create(m.config, { r: 4 }),
      (m: ReturnType<typeof tinyModel>) => LoraAdapter.create(m.config, { r: 4, lora_alpha: 8 }),
    ]) {
      const model = tinyModel(tok, 5);
      const adapter = make(model);
      const weightsBefore = await values(allWeightTensors(model.weights));
      const adapterBefore = await values(adapter.namedParameters().values());
      const trainer = new Trainer(adapterTrainable(model, adapter), { lr: 1e-2, totalSteps: 5 });
      const g = await trainer.gradients([collate(data.examples.slice(0, 4), pad())]);
      expect(Object.keys(g.grads).sort()).toEqual([...adapter.namedParameters().keys()].sort());
      tf.dispose(Object.values(g.grads));
      await runTraining(trainer, {
        plan: new ExamplePlan(data.examples, { batchSize: 4, seed: 1, padId: pad() }),
      });
      const weightsAfter = await values(allWeightTensors(model.weights));
      weightsAfter.forEach((w, i) => {
        expect(Buffer.from(w.buffer).equals(Buffer.from(weightsBefore[i]!.buffer))).toBe(true);
      });
      const adapterAfter = await values(adapter.namedParameters().values());
      expect(
        adapterAfter.some(
          (w, i) => !Buffer.from(w.buffer).equals(Buffer.from(adapterBefore[i]!.buffer)),
        ),
      ).toBe(true);
      trainer.dispose();
      adapter.dispose();
      model.dispose();
    }
  });

  it('the loss counts completion tokens only: prompt and padding targets do not matter', async () => {
    const data = taskDataset(tok, 'antonym', 'dev', 4);
    const { model, adapter, trainable } = paraSetup(2);
    const trainer = new Trainer(trainable, { lr: 1e-3, totalSteps: 1 });
    const batch = collate(data.examples, pad());
    const loss = async (b: Batch) => {
      const s = tf.tidy(() => trainer.batchLoss(b, 1 / b.lossTokens));
      const v = (await s.data())[0]!;
      s.dispose();
      return v;
    };
    const base = await loss(batch);
    // Garbage in every target the mask excludes (prompt positions, padding, last position).
    const garbage: Batch = {
      ...batch,
      targets: batch.targets.map((t, i) =>
        batch.weights[i] === 0 ? (t * 7 + 13) % tok.vocabSize : t,
      ),
    };
    expect(await loss(garbage)).toBe(base);
    // Another padding id changes nothing either (padding is masked out of attention).
    expect(await loss(collate(data.examples, 0))).toBeCloseTo(base, 5);
    // Reference: each row alone, no padding, mean over its completion tokens (float64 sums).
    let sum = 0;
    let count = 0;
    for (const e of data.examples) {
      const logits = tf.tidy(() =>
        tf.logSoftmax(
          model.forward([e.ids], {
            adapter: trainable.adapter!,
            request: { promptLengths: [e.promptLength] },
          }),
        ),
      );
      const lp = await logits.data();
      const V = logits.shape[2]!;
      for (let j = e.promptLength; j < e.ids.length; j++) {
        sum -= lp[(j - 1) * V + e.ids[j]!]!;
        count++;
      }
      logits.dispose();
    }
    expect(count).toBe(batch.lossTokens);
    expect(base).toBeCloseTo(sum / count, 4);
    trainer.dispose();
    adapter.dispose();
    model.dispose();
  });

  it('the tensor count stays flat over training steps', async () => {
    const data = taskDataset(tok, 'category', 'train', 16);
    const { model, adapter, trainable } = paraSetup();
    const trainer = new Trainer(trainable, { lr: 1e-3, totalSteps: 100 });
    const plan = new ExamplePlan(data.examples, {
      batchSize: 4,
      microBatchSize: 2,
      seed: 0,
      padId: pad(),
    });
    const report = await measureTensorLeak(
      async (i) => trainer.trainStep(plan.microBatches(0, i % plan.stepsPerEpoch)),
      4,
      1,
    );
    expect(report.leaked).toBe(0);
    expect(new Set(report.counts).size).toBe(1);
    trainer.dispose();
    adapter.dispose();
    model.dispose();
  });

  it('--resume continues exactly: the same losses, bit for bit, as an uninterrupted run', async () => {
    const data = taskDataset(tok, 'arithmetic', 'train', 12);
    const plan = () =>
      new ExamplePlan(data.examples, { batchSize: 4, microBatchSize: 2, seed: 9, padId: pad() });
    const opts = {
      lr: 5e-3,
      totalSteps: 8,
      warmupSteps: 2,
      decay: 'cosine' as const,
      weightDecay: 0.01,
      seed: 9,
    };
    // Uninterrupted (8 steps: 3 per epoch, so it crosses two epoch boundaries).
    const a = paraSetup(4);
    const ta = new Trainer(a.trainable, opts);
    const full = await runTraining(ta, { plan: plan() });
    const finalA = await values(a.adapter.namedParameters().values());
    // Interrupted after step 5 (a checkpoint on disk), then a fresh process-like restart.
    const dir = mkdtempSync(join(tmpdir(), 'para-resume-'));
    const b = paraSetup(4);
    const tb = new Trainer(b.trainable, opts);
    const first = await runTraining(tb, {
      plan: plan(),
      stopAtStep: 5,
      saveCheckpoint: (d) => saveCheckpoint(dir, d),
    });
    expect(first.reason).toBe('stopped');
    tb.dispose();
    b.adapter.dispose();
    const c = paraSetup(123); // a different init seed: everything must come from the checkpoint
    const tc = new Trainer(c.trainable, opts);
    const ckpt = await loadCheckpoint((await latestCheckpoint(dir))!);
    tc.restore(ckpt);
    tf.dispose(Object.values(ckpt.tensors));
    expect(tc.step).toBe(5);
    const second = await runTraining(tc, { plan: plan() });
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
    const finalC = await values(c.adapter.namedParameters().values());
    finalC.forEach((w, i) => {
      expect(Array.from(w)).toEqual(Array.from(finalA[i]!));
    });
    for (const s of [a, b, c]) s.model.dispose();
    a.adapter.dispose();
    c.adapter.dispose();
    ta.dispose();
    tc.dispose();
  });

  it('evaluation every N steps: keep-best by exact match (ties broken by loss) and early stopping', async () => {
    const data = taskDataset(tok, 'arithmetic', 'train', 16);
    const { model, adapter, trainable } = paraSetup();
    const trainer = new Trainer(trainable, { lr: 1e-3, totalSteps: 20 });
    const scripted = [
      { loss: 2.0, exact_match: 0.1, n: 10 },
      { loss: 1.5, exact_match: 0.1, n: 10 }, // same EM, lower loss: better
      { loss: 1.4, exact_match: 0.0, n: 10 },
      { loss: 1.3, exact_match: 0.05, n: 10 },
    ];
    const best: number[] = [];
    const evals: number[] = [];
    const r = await runTraining(trainer, {
      plan: new ExamplePlan(data.examples, { batchSize: 4, seed: 0, padId: pad() }),
      evalEvery: 2,
      evaluate: async (step) => {
        evals.push(step);
        return scripted[evals.length - 1]!;
      },
      saveBest: async (step) => {
        best.push(step);
      },
      patience: 2,
    });
    expect(evals).toEqual([2, 4, 6, 8]);
    expect(best).toEqual([2, 4]);
    expect(r.reason).toBe('early-stop');
    expect(r.step).toBe(8);
    expect(r.best).toMatchObject({ step: 4, metrics: { loss: 1.5 } });
    trainer.dispose();
    adapter.dispose();
    model.dispose();
  });

  it('a NaN loss stops training, applies no update and keeps the last good checkpoint', async () => {
    const data = taskDataset(tok, 'arithmetic', 'train', 16);
    const { model, adapter, trainable } = paraSetup();
    let calls = 0;
    const poisoned: TrainableModel = {
      ...trainable,
      logits: (b) => (++calls > 3 ? tf.mul(trainable.logits(b), Number.NaN) : trainable.logits(b)),
    };
    const trainer = new Trainer(poisoned, { lr: 1e-3, totalSteps: 10 });
    const dir = mkdtempSync(join(tmpdir(), 'para-nan-'));
    const events: string[] = [];
    const r = await runTraining(trainer, {
      plan: new ExamplePlan(data.examples, { batchSize: 4, seed: 0, padId: pad() }),
      checkpointEvery: 2,
      saveCheckpoint: (d) => saveCheckpoint(dir, d),
      onEvent: (e) => {
        events.push(e.type);
      },
    });
    expect(r.reason).toBe('nan');
    expect(r.step).toBe(3);
    expect(r.lastCheckpoint).toBe(join(dir, 'checkpoints', 'step-000002'));
    expect(existsSync(join(r.lastCheckpoint!, 'state.safetensors'))).toBe(true);
    expect(events).toContain('nan');
    const params = await values(adapter.namedParameters().values());
    for (const p of params) expect(p.every(Number.isFinite)).toBe(true);
    trainer.dispose();
    adapter.dispose();
    model.dispose();
  });
});
