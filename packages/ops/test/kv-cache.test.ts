import { isParaError, measureTensorLeak, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  applyRope,
  attention,
  attentionMask,
  KVCache,
  padBatch,
  ropeCosSin,
  ropeInvFreq,
} from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { refAttention, refRope } from './helpers/reference';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** One token's projections: q [Hq·hd], k and v [Hkv·hd], head-major. */
interface Tok {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

const [Hq, Hkv, hd] = [4, 2, 8];
const inv = ropeInvFreq({ headDim: hd, theta: 50 });

function randomTok(rng: Rng, std = 1): Tok {
  return {
    q: rng.normalArray(Hq * hd, 0, std),
    k: rng.normalArray(Hkv * hd, 0, std),
    v: rng.normalArray(Hkv * hd, 0, std),
  };
}

/** [B, H, T, hd] from a [B][T] grid of per-token vectors [H·hd]. */
function gridToHeads(grid: Float32Array[][], H: number): tf.Tensor {
  const B = grid.length;
  const T = (grid[0] as Float32Array[]).length;
  const out = new Float32Array(B * H * T * hd);
  for (let b = 0; b < B; b++) {
    const row = grid[b] as Float32Array[];
    for (let t = 0; t < T; t++) {
      const vec = row[t] as Float32Array;
      for (let h = 0; h < H; h++)
        out.set(vec.subarray(h * hd, (h + 1) * hd), ((b * H + h) * T + t) * hd);
    }
  }
  return tf.tensor4d(out, [B, H, T, hd]);
}

/** Output [Hq·hd] of every token of one unpadded row: RoPE at 0..N-1, full causal attention. */
function referenceRow(tokens: Tok[]): Float32Array[] {
  const N = tokens.length;
  const heads = (pick: (t: Tok) => Float32Array, H: number) => {
    const out = new Float64Array(H * N * hd);
    tokens.forEach((tok, t) => {
      for (let h = 0; h < H; h++)
        for (let j = 0; j < hd; j++) out[(h * N + t) * hd + j] = pick(tok)[h * hd + j] as number;
    });
    return out;
  };
  const pos = [Array.from({ length: N }, (_, i) => i)];
  const q = refRope(
    heads((t) => t.q, Hq),
    [1, Hq, N, hd],
    pos,
    Array.from(inv),
  );
  const k = refRope(
    heads((t) => t.k, Hkv),
    [1, Hkv, N, hd],
    pos,
    Array.from(inv),
  );
  const v = heads((t) => t.v, Hkv);
  const o = refAttention(q, k, v, { B: 1, Hq, Hkv, T: N, S: N, hd }, (_b, t, s) => s <= t);
  return tokens.map((_, t) => {
    const vec = new Float32Array(Hq * hd);
    for (let h = 0; h < Hq; h++)
      for (let j = 0; j < hd; j++) vec[h * hd + j] = o[(h * N + t) * hd + j] as number;
    return vec;
  });
}

for (const backend of testBackends()) {
  describe(`KVCache on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('prefill + one-token decode steps equal full causal attention, per row of different length', async () => {
      const rng = new Rng(21);
      const numLayers = 2;
      const promptLengths = [4, 1, 3];
      // Decode validity per step and row: row 2 skips step 1 (a padding slot mid-decode).
      const decodeValid = [
        [1, 1, 1],
        [1, 1, 0],
        [1, 1, 1],
        [1, 1, 1],
      ];
      const B = promptLengths.length;
      const L = Math.max(...promptLengths);
      // Real tokens of each row in each layer, in order: prompt then decoded ones.
      const real: Tok[][][] = Array.from({ length: numLayers }, () =>
        Array.from({ length: B }, () => []),
      );
      // Every slot's token (garbage for padding slots), per layer: [layer][b][slot].
      const slots: Tok[][][] = Array.from({ length: numLayers }, () =>
        Array.from({ length: B }, () => []),
      );
      const { mask: promptMask } = padBatch(
        promptLengths.map((n) => new Array(n).fill(1)),
        { padId: 0 },
      );
      const stepsValid: number[][][] = [
        promptMask,
        ...decodeValid.map((row) => row.map((v) => [v])),
      ];
      for (const stepValid of stepsValid)
        for (let l = 0; l < numLayers; l++)
          for (let b = 0; b < B; b++)
            for (const v of stepValid[b] as number[]) {
              const tok = randomTok(rng, v === 1 ? 1 : 10); // padding slots hold large garbage
              (slots[l] as Tok[][])[b]?.push(tok);
              if (v === 1) (real[l] as Tok[][])[b]?.push(tok);
            }
      const expected = real.map((layer) => layer.map(referenceRow)); // [layer][b][token]

      const cache = new KVCache({ numLayers, batchSize: B, capacity: L + decodeValid.length + 2 });
      const seen = Array.from({ length: numLayers }, () => new Array<number>(B).fill(0));
      let compared = 0;
      for (const stepValid of stepsValid) {
        const step = cache.beginStep(stepValid);
        const T = step.queryLength;
        expect(step.totalLength).toBe(step.pastLength + T);
        const { cos, sin } = ropeCosSin(step.positions, inv); // [B, 1, T, hd]
        const mask = attentionMask({ keyValid: step.keyValid, queryLength: T }); // [B, 1, T, S]
        for (let l = 0; l < numLayers; l++) {
          const layerSlots = slots[l] as Tok[][];
          const pick = (f: (t: Tok) => Float32Array) =>
            Array.from({ length: B }, (_, b) =>
              (layerSlots[b] as Tok[]).slice(step.pastLength, step.totalLength).map(f),
            );
          const out = tf.tidy(() => {
            const q = applyRope(
              gridToHeads(
                pick((t) => t.q),
                Hq,
              ),
              cos,
              sin,
            ); // [B, Hq, T, hd]
            const k = applyRope(
              gridToHeads(
                pick((t) => t.k),
                Hkv,
              ),
              cos,
              sin,
            ); // [B, Hkv, T, hd]
            const v = gridToHeads(
              pick((t) => t.v),
              Hkv,
            ); // [B, Hkv, T, hd]
            const kv = cache.append(l, k, v); // [B, Hkv, S, hd]
            expect(kv.k.shape).toEqual([B, Hkv, step.keyLength, hd]);
            return attention(q, kv.k, kv.v, mask); // [B, Hq, T, hd]
          });
          const got = await take(out);
          const layerSeen = seen[l] as number[];
          for (let b = 0; b < B; b++)
            for (let t = 0; t < T; t++) {
              if ((stepValid[b] as number[])[t] !== 1) continue;
              const idx = layerSeen[b] as number;
              layerSeen[b] = idx + 1;
              const vec: number[] = [];
              for (let h = 0; h < Hq; h++)
                vec.push(
                  ...got.slice(((b * Hq + h) * T + t) * hd, ((b * Hq + h) * T + t + 1) * hd),
                );
              const want = (expected[l] as Float32Array[][])[b]?.[idx] as Float32Array;
              expectClose(vec, want, 1e-5, 1e-5, `layer ${l} row ${b} token ${idx}`);
              compared++;
            }
        }
        tf.dispose([cos, sin, mask]);
      }
      expect(compared).toBe(numLayers * real[0]!.reduce((a, r) => a + r.length, 0));
      expect(cache.rowLengths()).toEqual([8, 5, 6]);
      expect(cache.length).toBe(L + decodeValid.length);
      cache.dispose();
    });

    it('keeps tf.memory().numTensors flat over 50 decode steps and frees everything on dispose', async () => {
      const rng = new Rng(22);
      const numLayers = 2;
      const B = 2;
      const before = tf.memory().numTensors;
      const cache = new KVCache({ numLayers, batchSize: B, capacity: 64 });
      const q0 = rng.normalTensor([B, Hq, 1, hd]);
      const k0 = rng.normalTensor([B, Hkv, 1, hd]);
      const v0 = rng.normalTensor([B, Hkv, 1, hd]);
      const prompt = padBatch([[1, 2, 3], [4]], { padId: 0 });
      const run = (valid: number[][] | number) => {
        const step = cache.beginStep(valid);
        const T = step.queryLength;
        tf.tidy(() => {
          const { cos, sin } = ropeCosSin(step.positions, inv);
          const mask = attentionMask({ keyValid: step.keyValid, queryLength: T });
          for (let l = 0; l < numLayers; l++) {
            const q = applyRope(tf.tile(q0, [1, 1, T, 1]), cos, sin);
            const k = applyRope(tf.tile(k0, [1, 1, T, 1]), cos, sin);
            const { k: kAll, v: vAll } = cache.append(l, k, tf.tile(v0, [1, 1, T, 1]));
            attention(q, kAll, vAll, mask);
          }
        });
      };
      run(prompt.mask);
      const report = await measureTensorLeak(() => run(1), 50, 2);
      expect(report.leaked).toBe(0);
      expect(new Set(report.counts).size).toBe(1);
      expect(cache.length).toBe(3 + 52);
      cache.dispose();
      tf.dispose([q0, k0, v0]);
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}

describe('KVCache misuse', () => {
  it('throws typed errors', async () => {
    await useBackend('cpu');
    const cache = new KVCache({ numLayers: 2, batchSize: 1, capacity: 8, maxPositions: 4 });
    const kv = tf.zeros([1, 1, 2, 4]);
    expect(caught(() => cache.append(0, kv, kv))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'layer',
    });
    expect(
      caught(() =>
        cache.beginStep([
          [1, 1],
          [1, 1],
        ]),
      ),
    ).toMatchObject({ code: 'SHAPE_MISMATCH', field: 'newValid' });
    cache.beginStep(2);
    cache.append(0, kv, kv);
    expect(caught(() => cache.append(0, kv, kv))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'layer',
    });
    expect(caught(() => cache.beginStep(1))).toMatchObject({ code: 'INVALID_ARGUMENT' }); // layer 1 not appended
    expect(caught(() => cache.append(1, tf.zeros([1, 1, 1, 4]), kv))).toMatchObject({
      code: 'SHAPE_MISMATCH',
      field: 'kNew',
    });
    cache.append(1, kv, kv);
    expect(caught(() => cache.append(2, kv, kv))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'layer',
    });
    cache.beginStep(2); // positions 2, 3
    cache.append(0, kv, kv);
    cache.append(1, kv, kv);
    const e = caught(() => cache.beginStep(1)); // position 4
    expect(isParaError(e, 'INVALID_ARGUMENT')).toBe(true);
    expect(e).toMatchObject({ field: 'max_position_embeddings' });
    const before = tf.memory().numTensors;
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before - 4);
    expect(caught(() => cache.beginStep(1))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'cache',
    });
    kv.dispose();
  });
});
