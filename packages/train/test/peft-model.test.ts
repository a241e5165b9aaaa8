/**
 * The high-level API as a user meets it: getPeftModel / PeftModel with text in and text out,
 * training on plain in-memory records, save → fromPretrained, merge, and the typed errors. A
 * tiny random backbone and a BPE tokenizer the test trains (nothing downloaded).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core';
import { CausalLM, loadPretrained, saveModel } from '@para/model/node';
import { saveTokenizer } from '@para/tokenizer/node';
import type * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getPeftModel, PeftModel } from '../src/node';
import { testBackends, useBackend } from './helpers/backends';
import { taskLines, tinyModel, tinyTokenizer, tinyTokenizerFiles } from './helpers/fixtures';

const records = (task: string, n: number) =>
  taskLines(task, 'train', n)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { prompt: string; completion: string });

async function caught(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

async function logitsOf(t: tf.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

describe.each(testBackends())('PeftModel on %s', (backend) => {
  let model: CausalLM;
  let dir: string;
  const tok = tinyTokenizer();
  beforeAll(async () => {
    await useBackend(backend);
    dir = mkdtempSync(join(tmpdir(), 'para-peft-'));
    // A backbone directory, loaded the way a user loads one.
    const m = tinyModel(tok, 5);
    await saveModel(m, join(dir, 'backbone'));
    await saveTokenizer(join(dir, 'backbone'), tinyTokenizerFiles());
    m.dispose();
    ({ model } = await loadPretrained(join(dir, 'backbone')));
  });
  afterAll(() => {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loadPretrained gives a model that generates text with its tokenizer, the same as the token-id form', async () => {
    expect(model.tokenizer).not.toBeNull();
    expect(model.nameOrPath).toBe(join(dir, 'backbone'));
    const prompt = 'Opposite of hot:';
    const text = await model.generate(prompt, { maxNewTokens: 6 });
    const ids = await model.generate([tok.encode(prompt)], { maxNewTokens: 6 });
    const eos = tok.eosTokenId as number;
    expect(text).toBe(
      tok.decode(
        (ids.tokens[0] as number[]).filter((t) => t !== eos),
        { skipSpecialTokens: true },
      ),
    );
    // A batch of prompts: one text each, each equal to that prompt alone.
    const two = await model.generate([prompt, 'Opposite of big:'], { maxNewTokens: 6 });
    expect(two[0]).toBe(text);
    expect(two[1]).toBe(await model.generate('Opposite of big:', { maxNewTokens: 6 }));
    // Streaming pieces add up to the text.
    let streamed = '';
    for await (const piece of model.stream(prompt, { maxNewTokens: 6 })) streamed += piece;
    expect(streamed).toBe(text);
    // Chat messages go through the chat template.
    const chat = await model.generate([{ role: 'user', content: 'hello' }], { maxNewTokens: 4 });
    const chatIds = tok.applyChatTemplate([{ role: 'user', content: 'hello' }], {
      addGenerationPrompt: true,
    }) as number[];
    const direct = await model.generate([chatIds], { maxNewTokens: 4 });
    expect(chat).toBe(
      tok.decode(
        (direct.tokens[0] as number[]).filter((t) => t !== eos),
        { skipSpecialTokens: true },
      ),
    );
  });

  it('a stop string ends the text before it, and a streamed text never shows part of it', async () => {
    const full = await model.generate('Opposite of hot:', { maxNewTokens: 12 });
    expect(full.length).toBeGreaterThan(4); // the random backbone writes something to cut
    const cut = full.slice(2, 4);
    const stopped = await model.generate('Opposite of hot:', { maxNewTokens: 12, stop: cut });
    expect(stopped).toBe(full.slice(0, full.indexOf(cut)));
    let streamed = '';
    for await (const piece of model.stream('Opposite of hot:', { maxNewTokens: 12, stop: cut }))
      streamed += piece;
    expect(streamed).toBe(stopped);
  });

  it('a fresh adapter of each method is the identity; PARA trains on plain records, saves and reloads exactly', async () => {
    const prompt = 'Opposite of cold:';
    const bare = await model.generate(prompt, { maxNewTokens: 5 });
    for (const peft_type of ['PARA', 'LORA', 'IA3'] as const) {
      const p = getPeftModel(model, { peft_type });
      expect(await p.generate(prompt, { maxNewTokens: 5 })).toBe(bare);
      p.dispose();
    }
    const peft = getPeftModel(model, { peft_type: 'PARA', r: 4 }, { seed: 1 });
    expect(peft.config).toMatchObject({
      peft_type: 'PARA',
      r: 4,
      base_model_name_or_path: join(dir, 'backbone'),
    });
    expect(peft.trainableParametersSummary()).toMatch(
      /^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: /,
    );
    const train = records('antonym', 20);
    const before = await peft.evaluate(train);
    const events: string[] = [];
    const result = await peft.train(train, {
      steps: 30,
      batchSize: 10,
      lr: 1e-2,
      onEvent: (e) => void events.push(e.type),
    });
    expect(result.step).toBe(30);
    expect(events).toContain('step');
    const after = await peft.evaluate(train);
    expect(after.loss).toBeLessThan(before.loss);
    const out = join(dir, 'para-adapter');
    await peft.save(out);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'PARA',
      r: 4,
      base_model_name_or_path: join(dir, 'backbone'),
    });
    const again = await PeftModel.fromPretrained(model, out);
    const ids = [tok.encode('Opposite of wet:')];
    expect(await logitsOf(again.forward(ids))).toEqual(await logitsOf(peft.forward(ids)));
    expect(await again.generate(prompt, { maxNewTokens: 5 })).toBe(
      await peft.generate(prompt, { maxNewTokens: 5 }),
    );
    // PARA cannot merge, and says why.
    const e = (await caught(() => again.merge())) as Error;
    expect(isParaError(e, 'UNSUPPORTED')).toBe(true);
    expect(e.message).toMatch(/computed from each prompt/);
    peft.dispose();
    again.dispose();
  });

  it('LoRA and IA3 merge into the weights: the merged backbone computes what the adapter did', async () => {
    const { model: own } = await loadPretrained(join(dir, 'backbone'));
    try {
      const ids = [tok.encode('Opposite of up:')];
      for (const config of [
        { peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'v_proj', 'down_proj'] },
        { peft_type: 'IA3' },
      ] as const) {
        const peft = getPeftModel(own, config, { seed: 2 });
        await peft.train(records('antonym', 10), { steps: 4, batchSize: 5, lr: 5e-2 });
        const adapted = await logitsOf(peft.forward(ids));
        const merged = peft.merge();
        expect(merged).toBe(own);
        const plain = await logitsOf(merged.forward(ids));
        let worst = 0;
        for (let i = 0; i < plain.length; i++)
          worst = Math.max(worst, Math.abs((plain[i] as number) - (adapted[i] as number)));
        expect(worst).toBeLessThan(1e-4);
        expect(isParaError(await caught(() => peft.generate('x')), 'INVALID_ARGUMENT')).toBe(true); // merged = done
      }
    } finally {
      own.dispose();
    }
  });

  it('bad input is a typed error naming what is wrong', async () => {
    const peft = getPeftModel(model, { peft_type: 'para' });
    const bad = (await caught(() => peft.train([{ prompt: 'x' }]))) as Error & {
      details?: { field?: string };
    };
    expect(isParaError(bad, 'INVALID_ARGUMENT')).toBe(true);
    expect(bad.message).toMatch(/records\[0\]: missing or empty "completion"/);
    expect(isParaError(await caught(() => peft.train([])), 'INVALID_ARGUMENT')).toBe(true);
    expect(
      isParaError(await caught(() => getPeftModel(model, { peft_type: 'PREFIX' })), 'UNSUPPORTED'),
    ).toBe(true);
    expect(
      isParaError(
        await caught(() => getPeftModel(model, { peft_type: 'LORA', r: 0 })),
        'INVALID_CONFIG',
      ),
    ).toBe(true);
    expect(
      isParaError(await caught(() => model.generate(42 as unknown as string)), 'INVALID_ARGUMENT'),
    ).toBe(true);
    const bareModel = CausalLM.random(model.config, 1);
    expect(isParaError(await caught(() => bareModel.generate('hi')), 'INVALID_ARGUMENT')).toBe(
      true,
    );
    bareModel.dispose();
    // An adapter directory for another backbone is refused by name.
    const out = join(dir, 'named');
    await peft.save(out, { baseModelName: 'someone/other-model' });
    expect(
      isParaError(await caught(() => PeftModel.fromPretrained(model, out)), 'INVALID_CONFIG'),
    ).toBe(true);
    writeFileSync(join(out, 'adapter_config.json'), '{"peft_type": "PARA", "r": "big"}');
    expect(
      isParaError(await caught(() => PeftModel.fromPretrained(model, out)), 'INVALID_CONFIG'),
    ).toBe(true);
    peft.dispose();
  });
});
