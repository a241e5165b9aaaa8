/**
 * The umbrella package as a user imports it: `ready()` starts a backend once, `loadPretrained`
 * reads a checkpoint directory the test writes (a tiny random model and a BPE tokenizer trained
 * here), the PeftModel API is reachable from it, and the browser and Node entries export the
 * same API.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConfig, CausalLM as Model, saveModel } from '@para/model/node';
import { saveTokenizer, trainBpe } from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as browserEntry from '../src/index';
import { getPeftModel, isParaError, loadPretrained, PeftModel, ready } from '../src/node';

let dir: string;

beforeAll(async () => {
  await ready({ backend: 'cpu' });
  dir = mkdtempSync(join(tmpdir(), 'para-umbrella-'));
  const trained = trainBpe(
    ['Opposite of hot: cold', 'Opposite of big: small', 'Part of speech of gaily: adverb'],
    { vocabSize: 300, specialTokens: ['<unk>', '<s>', '</s>', '<pad>'] },
  );
  await saveTokenizer(dir, trained);
  const vocab = Math.max(...Object.values(trained.tokenizerJson.model.vocab)) + 1;
  const config = createConfig({
    vocabSize: vocab,
    hiddenSize: 16,
    intermediateSize: 32,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 1,
    maxPositionEmbeddings: 64,
    eosTokenIds: [2],
  });
  const m = Model.random(config, 1);
  await saveModel(m, dir);
  m.dispose();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('para', () => {
  it('ready() starts one backend and reports it; loadPretrained → generate → a PeftModel round trip', async () => {
    const report = await ready();
    expect(report.active).toBe('cpu'); // the first call (in beforeAll) chose
    expect(report.matmul).toBeNull(); // OpenBLAS is for wasm only
    expect(tf.getBackend()).toBe('cpu');
    expect(await ready()).toBe(report); // once
    const { model, tokenizer } = await loadPretrained(dir);
    expect(model.tokenizer).toBe(tokenizer);
    const text = await model.generate('Opposite of hot:', { maxNewTokens: 4 });
    expect(typeof text).toBe('string');
    const peft = getPeftModel(model, { peft_type: 'PARA', r: 2 });
    expect(await peft.generate('Opposite of hot:', { maxNewTokens: 4 })).toBe(text); // a fresh adapter is the identity
    await peft.save(join(dir, 'adapter'));
    const again = await PeftModel.fromPretrained(model, join(dir, 'adapter'));
    expect(again.config).toMatchObject({ peft_type: 'PARA', r: 2, base_model_name_or_path: dir });
    again.dispose();
    peft.dispose();
    model.dispose();
  });

  it('a missing model directory is a typed error naming it', async () => {
    const e = await loadPretrained(join(dir, 'nope')).catch((x: unknown) => x);
    expect(isParaError(e, 'FILE_NOT_FOUND')).toBe(true);
    expect(String((e as Error).message)).toContain(join(dir, 'nope'));
  });

  it('the browser entry exports the same API', async () => {
    const node = await import('../src/node');
    expect(Object.keys(browserEntry).sort()).toEqual(Object.keys(node).sort());
  });
});
