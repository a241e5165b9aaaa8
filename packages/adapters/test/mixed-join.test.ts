/**
 * Continuous batching with real adapters: rows of a running mixed batch leave (`releaseRow`)
 * and newcomers — prefilled alone as a batch of one, with their own adapter — join in the freed
 * slots (`insertRows`) while the others keep decoding. Every row's greedy tokens (and logits)
 * are the same as when that row decodes alone, including newcomers whose method or sites the
 * running batch did not have (LoRA of another rank and targets, IA3's down_proj input scale).
 */

import type { CausalLM, DecodeState } from '@para/model';
import type * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AnyAdapter, Ia3Adapter, LoraAdapter, mixedAdapter, ParaAdapter } from '../src/index';
import { expectClose, testBackends, useBackend } from './helpers/backends';
import { randomize, tinyModel } from './helpers/models';

async function hostRows(logits: tf.Tensor): Promise<Float32Array[]> {
  const [B, V] = logits.shape as [number, number];
  const d = (await logits.data()) as Float32Array;
  logits.dispose();
  return Array.from({ length: B }, (_, b) => d.slice(b * V, (b + 1) * V));
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
}

/** One row decoding alone: its greedy tokens and the logits of each. */
async function alone(
  model: CausalLM,
  adapter: AnyAdapter | null,
  prompt: number[],
  steps: number,
): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const { logits, state } = model.prefill([prompt], {
    adapter: mixedAdapter(model, [adapter]),
    request: {},
    capacity: prompt.length + steps + 1,
  });
  const out = { tokens: [] as number[], logits: [] as Float32Array[] };
  let row = (await hostRows(logits))[0] as Float32Array;
  for (let s = 0; s < steps; s++) {
    out.logits.push(row);
    out.tokens.push(argmax(row));
    if (s < steps - 1)
      row = (await hostRows(model.decodeStep([out.tokens[s] as number], state)))[0] as Float32Array;
  }
  state.dispose();
  return out;
}

describe.each(testBackends())('rows join and leave a running mixed batch on %s', (backend) => {
  let model: CausalLM;
  let owned: AnyAdapter[];
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({ bias: { q: true, v: true } }, 9);
    const c = model.config;
    owned = [
      ParaAdapter.create(c, { r: 4 }, { seed: 1 }),
      LoraAdapter.create(c, { r: 2, lora_alpha: 4 }, { seed: 2 }),
      LoraAdapter.create(
        c,
        { r: 5, lora_alpha: 3, target_modules: ['v_proj', 'down_proj', 'o_proj'] },
        { seed: 3 },
      ),
      Ia3Adapter.create(c),
      ParaAdapter.create(c, { r: 3, pooler: 'last', target_modules: ['up_proj'] }, { seed: 4 }),
    ];
    owned.forEach((a, i) => {
      randomize(a, `join${i}`, 0.3, a instanceof Ia3Adapter ? 1 : 0);
    });
  });
  afterAll(() => {
    for (const a of owned) a.dispose();
    model.dispose();
  });

  it('a newcomer decodes the same tokens joining mid-way as alone, and the others are undisturbed', async () => {
    const [paraA, loraX, loraY, ia3, paraB] = owned as [
      AnyAdapter,
      AnyAdapter,
      AnyAdapter,
      AnyAdapter,
      AnyAdapter,
    ];
    const tol = backend === 'webgpu' ? 1e-4 : 1e-5;
    const STEPS = 8;
    // The running batch: three rows, then row 1 leaves after 3 steps and newcomer Y (LoRA on
    // other sites and rank) joins; row 2 leaves after 5 and newcomer I (IA3: a site new to the
    // batch) joins.
    const first = {
      adapters: [paraA, loraX, null] as (AnyAdapter | null)[],
      prompts: [
        [1, 5, 9, 13, 4],
        [1, 7, 30],
        [1, 8, 8, 3, 2, 6],
      ],
    };
    const Y = { adapter: loraY, prompt: [1, 11, 12], at: 3, row: 1 };
    const I = { adapter: ia3, prompt: [1, 40, 41, 42], at: 5, row: 2 };
    const P = { adapter: paraB, prompt: [1, 3, 3], at: 5, row: -1 }; // never joins: checks nothing leaks between tenants
    const capacity = 6 + STEPS + 2;
    const { logits, state } = model.prefill(first.prompts, {
      adapter: mixedAdapter(model, first.adapters),
      request: {},
      capacity,
    });
    const got: number[][] = [[], [], []]; // per row slot, the tokens of whoever is there
    const gotLogits: Float32Array[][] = [[], [], []];
    const joinedTokens = new Map<string, number[]>([
      ['Y', []],
      ['I', []],
    ]);
    const joinedLogits = new Map<string, Float32Array[]>([
      ['Y', []],
      ['I', []],
    ]);
    const who: (string | null)[] = ['0', '1', '2'];
    let rows = await hostRows(logits);
    const join = async (name: 'Y' | 'I', j: typeof Y, s: DecodeState) => {
      s.releaseRow(j.row);
      const newcomer = model.prefill([j.prompt], {
        adapter: mixedAdapter(model, [j.adapter]),
        request: {},
        capacity,
      });
      const first = (await hostRows(newcomer.logits))[0] as Float32Array;
      expect(s.insertRows(newcomer.state, { into: [j.row] })).toEqual([j.row]);
      newcomer.state.dispose();
      who[j.row] = name;
      return first;
    };
    for (let step = 0; step < STEPS; step++) {
      // Newcomers join between steps: their first token comes from their own prefill.
      if (step === Y.at) rows[Y.row] = await join('Y', Y, state);
      if (step === I.at) rows[I.row] = await join('I', I, state);
      const next = rows.map((r) => argmax(r));
      rows.forEach((r, b) => {
        const w = who[b] as string;
        if (w === 'Y' || w === 'I') {
          (joinedTokens.get(w) as number[]).push(next[b] as number);
          (joinedLogits.get(w) as Float32Array[]).push(r);
        } else {
          (got[b] as number[]).push(next[b] as number);
          (gotLogits[b] as Float32Array[]).push(r);
        }
      });
      if (step < STEPS - 1) rows = await hostRows(model.decodeStep(next, state));
    }
    state.dispose();

    // Row 0 stayed all the way; rows 1 and 2 until their newcomers came.
    for (const [b, n] of [
      [0, STEPS],
      [1, Y.at],
      [2, I.at],
    ] as const) {
      const ref = await alone(model, first.adapters[b] ?? null, first.prompts[b] as number[], n);
      expect(got[b]).toEqual(ref.tokens);
      ref.logits.forEach((l, s) => {
        expectClose((gotLogits[b] as Float32Array[])[s] as Float32Array, l, tol);
      });
    }
    for (const [name, j] of [
      ['Y', Y],
      ['I', I],
    ] as const) {
      const ref = await alone(model, j.adapter, j.prompt, STEPS - j.at);
      expect(joinedTokens.get(name)).toEqual(ref.tokens);
      ref.logits.forEach((l, s) => {
        expectClose((joinedLogits.get(name) as Float32Array[])[s] as Float32Array, l, tol);
      });
    }
    // A tenant that never joined computes something else (the comparison can fail).
    const other = await alone(model, P.adapter, Y.prompt, 3);
    const y = await alone(model, Y.adapter, Y.prompt, 3);
    expect(other.logits[0]).not.toEqual(y.logits[0]);
  });
});
