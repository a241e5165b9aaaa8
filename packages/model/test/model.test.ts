/**
 * The backbone's invariants on every backend: cached decoding equals teacher forcing, padding
 * changes nothing, long decode loops do not leak tensors, inputs are validated.
 */

import { isParaError } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CausalLM } from '../src/index';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { tinyModel } from './helpers/models';

/** Prompts of different lengths and a response of R tokens per row. */
const PROMPTS = [
  [1, 5, 9, 13],
  [1, 7],
  [1, 3, 4, 8, 20, 30, 31],
];
const RESPONSES = [
  [11, 12, 40, 41, 2],
  [63, 0, 17, 17, 5],
  [22, 23, 24, 25, 26],
];

/** Left-pad rows to one length: ids (pad 0) and mask. */
function leftPad(rows: number[][]): { ids: number[][]; mask: number[][] } {
  const L = Math.max(...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...new Array(L - r.length).fill(0), ...r]),
    mask: rows.map((r) => [...new Array(L - r.length).fill(0), ...new Array(r.length).fill(1)]),
  };
}

/** Row b, position t of a [B, T, V] buffer. */
function at(buf: Float32Array, T: number, V: number, b: number, t: number): Float32Array {
  return buf.subarray((b * T + t) * V, (b * T + t + 1) * V);
}

describe.each(testBackends())('CausalLM on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({ bias: { q: true, k: true, v: true } });
  });
  afterAll(() => model.dispose());

  it('teacher-forced logits equal prefill + step-by-step cached decode (left padding, rows of different lengths)', async () => {
    const V = model.config.vocabSize;
    const full = PROMPTS.map((p, b) => [...p, ...(RESPONSES[b] as number[])]);
    const { ids, mask } = leftPad(full);
    const Tf = (ids[0] as number[]).length;
    const teacher = await take(model.forward(ids, { attentionMask: mask })); // [B, Tf, V]

    const { logits: prefillLogits, state } = model.prefill(PROMPTS, { allLogits: true });
    const Tp = Math.max(...PROMPTS.map((p) => p.length));
    const pre = await take(prefillLogits); // [B, Tp, V]
    const R = (RESPONSES[0] as number[]).length;
    const steps: Float32Array[] = [];
    for (let r = 0; r < R - 1; r++)
      steps.push(
        await take(
          model.decodeStep(
            RESPONSES.map((x) => x[r] as number),
            state,
          ),
        ),
      ); // [B, V]
    expect(state.rowLengths()).toEqual(PROMPTS.map((p) => p.length + R - 1));
    state.dispose();

    PROMPTS.forEach((p, b) => {
      const offF = Tf - p.length - R; // slot of token 0 in the teacher-forced batch
      const offP = Tp - p.length; // ... and in the prefill
      for (let j = 0; j < p.length; j++)
        expectClose(
          at(pre, Tp, V, b, offP + j),
          at(teacher, Tf, V, b, offF + j),
          1e-4,
          0,
          `row ${b} prompt ${j}`,
        );
      steps.forEach((s, r) => {
        expectClose(
          s.subarray(b * V, (b + 1) * V),
          at(teacher, Tf, V, b, offF + p.length + r),
          1e-4,
          0,
          `row ${b} step ${r}`,
        );
      });
    });
  });

  it('a padded batch equals each row run alone (forward and prefill)', async () => {
    const V = model.config.vocabSize;
    const { ids, mask } = leftPad(PROMPTS);
    const T = (ids[0] as number[]).length;
    const batch = await take(model.forward(ids, { attentionMask: mask }));
    const { logits, state } = model.prefill(PROMPTS);
    const last = await take(logits);
    state.dispose();
    for (let b = 0; b < PROMPTS.length; b++) {
      const p = PROMPTS[b] as number[];
      const alone = await take(model.forward([p]));
      for (let j = 0; j < p.length; j++)
        expectClose(
          at(batch, T, V, b, T - p.length + j),
          at(alone, p.length, V, 0, j),
          1e-4,
          0,
          `row ${b} pos ${j}`,
        );
      expectClose(
        last.subarray(b * V, (b + 1) * V),
        at(alone, p.length, V, 0, p.length - 1),
        1e-4,
        0,
        `row ${b} prefill`,
      );
    }
  });

  it('a tensor attention mask (device path) gives the host-mask logits', async () => {
    const { ids, mask } = leftPad(PROMPTS);
    const host = await take(model.forward(ids, { attentionMask: mask }));
    const idsT = tf.tensor2d(ids, undefined, 'int32');
    const maskT = tf.tensor2d(mask, undefined, 'int32');
    const dev = await take(model.forward(idsT, { attentionMask: maskT }));
    tf.dispose([idsT, maskT]);
    const T = (ids[0] as number[]).length;
    const V = model.config.vocabSize;
    PROMPTS.forEach((p, b) => {
      for (let j = T - p.length; j < T; j++)
        expectClose(at(dev, T, V, b, j), at(host, T, V, b, j), 1e-4, 0, `row ${b} pos ${j}`);
    });
  });

  it('tf.memory().numTensors stays flat over 200 decode steps', async () => {
    const before = tf.memory().numTensors;
    const { logits, state } = model.prefill([[1, 2, 3], [4]], { capacity: 3 + 200 });
    logits.dispose();
    const counts: number[] = [];
    let next = [5, 6];
    for (let i = 0; i < 200; i++) {
      const l = model.decodeStep(next, state);
      if (i % 20 === 0)
        next = Array.from(await l.data())
          .slice(0, 2)
          .map((x) => Math.abs(Math.round(x * 100)) % 64);
      l.dispose();
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts.slice(1)).size).toBe(1);
    state.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('generate leaves no tensors behind, also when the stream is abandoned', async () => {
    const before = tf.memory().numTensors;
    await model.generate([[1, 2], [3]], { maxNewTokens: 6, temperature: 0.8, seed: 1 });
    for await (const e of model.generateStream([[1, 2, 3]], { maxNewTokens: 10 })) {
      if (e.step === 2) break;
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('token ids out of range, bad masks and sequences past max_position_embeddings are typed errors', async () => {
    const V = model.config.vocabSize;
    const e1 = await caught(() => model.forward([[1, V]]));
    expect(isParaError(e1, 'INVALID_ARGUMENT')).toBe(true);
    expect((e1 as Error).message).toContain(`[0, ${V})`);
    expect(isParaError(await caught(() => model.forward([[1, -1]])), 'INVALID_ARGUMENT')).toBe(
      true,
    );
    expect(isParaError(await caught(() => model.prefill([[1, 2.5]])), 'INVALID_ARGUMENT')).toBe(
      true,
    );
    expect(isParaError(await caught(() => model.forward([[1, 2], [3]])), 'SHAPE_MISMATCH')).toBe(
      true,
    );
    expect(
      isParaError(
        await caught(() => model.forward([[1, 2]], { attentionMask: [[1]] })),
        'SHAPE_MISMATCH',
      ),
    ).toBe(true);
    const tooLong = [new Array(model.config.maxPositionEmbeddings + 1).fill(1)];
    const e2 = await caught(() => model.forward(tooLong));
    expect(isParaError(e2, 'INVALID_ARGUMENT')).toBe(true);
    expect((e2 as Error).message).toContain('max_position_embeddings');
    expect(
      isParaError(
        await caught(() =>
          model.generate([[1, 2, 3]], { maxNewTokens: model.config.maxPositionEmbeddings }),
        ),
        'INVALID_ARGUMENT',
      ),
    ).toBe(true);
    expect(
      isParaError(
        await caught(() => model.prefill([[1, 2]], { attentionMask: [[1, 0]] })),
        'INVALID_ARGUMENT',
      ),
    ).toBe(true);
    // Decoding past the limit stops at the step that would cross it.
    const { logits, state } = model.prefill([
      new Array(model.config.maxPositionEmbeddings).fill(1),
    ]);
    logits.dispose();
    expect(isParaError(await caught(() => model.decodeStep([1], state)), 'INVALID_ARGUMENT')).toBe(
      true,
    );
    expect(
      isParaError(await caught(() => model.decodeStep([1, 2], state)), 'INVALID_ARGUMENT'),
    ).toBe(true);
    state.dispose();
  });
});
