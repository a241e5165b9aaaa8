/**
 * PARA's vector generator against a naive float64 loop reference (every pooler, every
 * activation, biases on and off), and the parameter counts of DESIGN.md.
 */

import { Rng } from '@para/core';
import { createConfig } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  activate,
  PARA_ACTIVATIONS,
  PARA_POOLERS,
  type ParaActivation,
  ParaAdapter,
  type ParaPooler,
  paraParameterCount,
  paraVectors,
  resolveParaConfig,
} from '../src/index';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { randomize } from './helpers/models';

/** Φ via erf from a 30-term Taylor series (|x| ≤ 3 here): float64, independent of tfjs. */
function erf64(x: number): number {
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function act64(x: number, a: ParaActivation): number {
  switch (a) {
    case 'gelu':
      return 0.5 * x * (1 + erf64(x / Math.SQRT2));
    case 'relu':
      return Math.max(0, x);
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'tanh':
      return Math.tanh(x);
    case 'identity':
      return x;
  }
}

/** The method written out: h [B][T][d], mask [B][T] → l [B][D]. */
function reference(
  h: Float32Array,
  mask: number[][],
  [B, T, d]: number[],
  w: {
    down: Float32Array;
    downBias: Float32Array | null;
    up: Float32Array;
    upBias: Float32Array | null;
    pool: Float32Array | null;
  },
  r: number,
  D: number,
  pooler: ParaPooler,
  act: ParaActivation,
): Float64Array {
  const out = new Float64Array((B as number) * D);
  for (let b = 0; b < (B as number); b++) {
    const rows: number[] = [];
    for (let t = 0; t < (T as number); t++) if ((mask[b] as number[])[t] === 1) rows.push(t);
    const H = (t: number, j: number) => h[(b * (T as number) + t) * (d as number) + j] as number;
    const p = new Float64Array(d as number);
    if (pooler === 'last')
      for (let j = 0; j < (d as number); j++) p[j] = H(rows[rows.length - 1] as number, j);
    if (pooler === 'mean')
      for (let j = 0; j < (d as number); j++)
        p[j] = rows.reduce((s, t) => s + H(t, j), 0) / rows.length;
    if (pooler === 'max')
      for (let j = 0; j < (d as number); j++) p[j] = Math.max(...rows.map((t) => H(t, j)));
    if (pooler === 'attention') {
      const s = rows.map((t) => {
        let x = 0;
        for (let j = 0; j < (d as number); j++)
          x += H(t, j) * ((w.pool as Float32Array)[j] as number);
        return x;
      });
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, c) => a + c, 0);
      for (let j = 0; j < (d as number); j++)
        p[j] = rows.reduce((acc, t, k) => acc + ((e[k] as number) / z) * H(t, j), 0);
    }
    const zr = new Float64Array(r);
    for (let i = 0; i < r; i++) {
      let x = w.downBias === null ? 0 : (w.downBias[i] as number);
      for (let j = 0; j < (d as number); j++)
        x += (w.down[i * (d as number) + j] as number) * (p[j] as number);
      zr[i] = act64(x, act);
    }
    for (let k = 0; k < D; k++) {
      let x = w.upBias === null ? 0 : (w.upBias[k] as number);
      for (let i = 0; i < r; i++) x += (w.up[k * r + i] as number) * (zr[i] as number);
      out[b * D + k] = 1 + x;
    }
  }
  return out;
}

describe.each(testBackends())('PARA vector generator on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('activations match float64 references (gelu is the erf form)', async () => {
    const xs = [-3, -1.5, -0.5, -0.1, 0, 0.1, 0.5, 1, 2, 3];
    for (const a of PARA_ACTIVATIONS) {
      const got = await take(tf.tidy(() => activate(tf.tensor1d(xs), a)));
      expectClose(
        got,
        xs.map((x) => act64(x, a)),
        2e-6,
        2e-6,
        a,
      );
    }
    expect(act64(1, 'gelu')).toBeCloseTo(0.8413447460685429, 12);
  });

  const config = createConfig({
    vocabSize: 16,
    hiddenSize: 8,
    intermediateSize: 12,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 1,
  });
  for (const pooler of PARA_POOLERS) {
    for (const [act, useBias] of [
      ['gelu', true],
      ['identity', false],
    ] as [ParaActivation, boolean][]) {
      it(`paraVectors = the reference (${pooler}, ${act}, bias ${useBias}), split per target`, async () => {
        const para = ParaAdapter.create(
          config,
          {
            pooler,
            activation: act,
            use_bias: useBias,
            r: 3,
            target_modules: ['up_proj', 'q_proj', 'v_proj'],
          },
          { seed: 1 },
        );
        randomize(para, `${pooler}${act}`, 0.5);
        const rng = new Rng(pooler);
        const [B, T, d] = [3, 5, 8];
        const h = rng.normalArray(B * T * d);
        const mask = [
          [0, 0, 1, 1, 1],
          [1, 1, 1, 1, 1],
          [0, 0, 0, 0, 1],
        ];
        const dims = para.dims;
        expect(dims).toEqual([12, 8, 4]); // up_proj, q_proj, v_proj (GQA: d_v = 4)
        const D = dims.reduce((a, b) => a + b, 0);
        const lw = para.layer(0);
        const data = async (t: tf.Tensor | null) =>
          t === null ? null : ((await t.data()) as Float32Array);
        const w = {
          down: (await data(lw.down)) as Float32Array,
          downBias: await data(lw.downBias),
          up: (await data(lw.up)) as Float32Array,
          upBias: await data(lw.upBias),
          pool: await data(lw.pool),
        };
        const want = reference(h, mask, [B, T, d], w, 3, D, pooler, act);
        const got = tf.tidy(() =>
          paraVectors(tf.tensor3d(h, [B, T, d]), tf.tensor2d(mask), lw, pooler, act, dims),
        );
        let off = 0;
        for (let k = 0; k < dims.length; k++) {
          const dim = dims[k] as number;
          expect(got[k]?.shape).toEqual([B, 1, dim]);
          const v = await take(got[k] as tf.Tensor);
          const ref: number[] = [];
          for (let b = 0; b < B; b++)
            for (let j = 0; j < dim; j++) ref.push(want[b * D + off + j] as number);
          expectClose(v, ref, 2e-5, 2e-5, `target ${k}`);
          off += dim;
        }
        para.dispose();
      });
    }
  }
});

describe('PARA parameter counts', () => {
  const llama2_7b = createConfig({
    vocabSize: 32000,
    hiddenSize: 4096,
    intermediateSize: 11008,
    numLayers: 32,
    numHeads: 32,
    maxPositionEmbeddings: 4096,
  });

  it('r = 12 on LLaMA-2-7B (d = 4096, d_ff = 11008, 32 layers, q/v 4096): 8,945,664', () => {
    expect(paraParameterCount(resolveParaConfig({ r: 12 }), llama2_7b)).toBe(8_945_664);
    expect(
      paraParameterCount(
        resolveParaConfig({
          r: 12,
          target_modules: ['q_proj', 'v_proj', 'up_proj'],
          use_bias: false,
          pooler: 'last',
        }),
        llama2_7b,
      ),
    ).toBe(8_945_664);
    // Biases add r + D per layer, the attention pooler d.
    expect(paraParameterCount(resolveParaConfig({ r: 12, use_bias: true }), llama2_7b)).toBe(
      8_945_664 + 32 * (12 + 4096 + 4096 + 11008),
    );
    expect(paraParameterCount(resolveParaConfig({ r: 12, pooler: 'attention' }), llama2_7b)).toBe(
      8_945_664 + 32 * 4096,
    );
  });

  it('the adapter built on the 7B config holds exactly that many parameters', async () => {
    await useBackend('cpu');
    const para = ParaAdapter.create(llama2_7b, { r: 12 });
    expect(para.numParameters).toBe(8_945_664);
    expect(para.parameters().length).toBe(64);
    para.dispose();
  });
});
