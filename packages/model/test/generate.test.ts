/** Generation: streaming, stop tokens, seeded sampling, rows independent of their batch. */

import { isParaError } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CausalLM, TokenEvent } from '../src/index';
import { caught, testBackends, useBackend } from './helpers/backends';
import { tinyModel } from './helpers/models';

describe.each(testBackends())('generate on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({}, 21);
  });
  afterAll(() => model.dispose());

  it('streams tokens as they come (iterator and callback agree with the result)', async () => {
    const prompts = [
      [1, 4, 9],
      [1, 2],
    ];
    const fromCallback: TokenEvent[] = [];
    const result = await model.generate(prompts, {
      maxNewTokens: 5,
      stopTokens: [],
      onToken: (e) => void fromCallback.push(e),
    });
    const fromIterator: TokenEvent[] = [];
    const it = model.generateStream(prompts, { maxNewTokens: 5, stopTokens: [] });
    let r = await it.next();
    while (!r.done) {
      fromIterator.push(r.value);
      r = await it.next();
    }
    expect(fromIterator).toEqual(fromCallback);
    expect(r.value.tokens).toEqual(result.tokens);
    expect(fromCallback.map((e) => `${e.step}:${e.row}`)).toEqual([
      '0:0',
      '0:1',
      '1:0',
      '1:1',
      '2:0',
      '2:1',
      '3:0',
      '3:1',
      '4:0',
      '4:1',
    ]);
    result.tokens.forEach((row, b) => {
      expect(row).toEqual(fromCallback.filter((e) => e.row === b).map((e) => e.token));
    });
    expect(result.finishReasons).toEqual(['length', 'length']);
    expect(fromCallback.filter((e) => e.finishReason === 'length')).toHaveLength(2);
    expect(result.timings.decodeSteps).toBe(4);
  });

  it('a row stops at a stop token (included), the others go on', async () => {
    const prompts = [
      [1, 4, 9],
      [1, 2],
    ];
    const free = await model.generate(prompts, { maxNewTokens: 6, stopTokens: [] });
    const stopAt = (free.tokens[0] as number[])[2] as number;
    const firstHit = (row: number[]) => row.indexOf(stopAt);
    const out = await model.generate(prompts, { maxNewTokens: 6, stopTokens: [stopAt] });
    free.tokens.forEach((row, b) => {
      const i = firstHit(row);
      expect(out.tokens[b]).toEqual(i >= 0 ? row.slice(0, i + 1) : row);
      expect(out.finishReasons[b]).toBe(i >= 0 ? 'stop' : 'length');
    });
  });

  it('sampling is seeded, and a row samples the same alone as in a batch', async () => {
    const opts = {
      maxNewTokens: 6,
      temperature: 1.5,
      topK: 20,
      topP: 0.9,
      seed: 42,
      stopTokens: [],
    };
    const a = await model.generate(
      [
        [1, 4, 9],
        [1, 2],
      ],
      opts,
    );
    const b = await model.generate(
      [
        [1, 4, 9],
        [1, 2],
      ],
      opts,
    );
    const c = await model.generate(
      [
        [1, 4, 9],
        [1, 2],
      ],
      { ...opts, seed: 43 },
    );
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    const alone = await model.generate([[1, 4, 9]], opts);
    expect(alone.tokens[0]).toEqual(a.tokens[0]);
  });

  it('bad options are typed errors raised before any work', async () => {
    const before = tf.memory().numTensors;
    for (const o of [
      { maxNewTokens: 0 },
      { temperature: -1 },
      { topP: 0 },
      { topK: 1.5 },
      { stopTokens: [1e6] },
    ]) {
      const e = await caught(() => model.generate([[1, 2]], o));
      expect(isParaError(e, 'INVALID_ARGUMENT'), JSON.stringify(o)).toBe(true);
    }
    expect(isParaError(await caught(() => model.generate([], {})), 'INVALID_ARGUMENT')).toBe(true);
    expect(isParaError(await caught(() => model.generate([[]], {})), 'INVALID_ARGUMENT')).toBe(
      true,
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});
