import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@para/core';
import { CausalLM, createConfig, type ModelConfig, type ModelConfigInit } from '@para/model';
import type { PeftAdapter } from '../../src/index';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'goldens', 'fixtures');

/** A tiny config (GQA, so d_q ≠ d_v) for tests that build their own model. */
export function tinyConfig(over: Partial<ModelConfigInit> = {}): ModelConfig {
  return createConfig({
    vocabSize: 64,
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    maxPositionEmbeddings: 256,
    rmsNormEps: 1e-5,
    initializerRange: 0.1,
    bosTokenId: 1,
    eosTokenIds: [2],
    ...over,
  });
}

export function tinyModel(over: Partial<ModelConfigInit> = {}, seed = 7): CausalLM {
  return CausalLM.random(tinyConfig(over), seed);
}

/** Overwrites every parameter of `adapter` with seeded noise (so it is far from the identity). */
export function randomize(adapter: PeftAdapter, seed: number | string, std = 0.3, mean = 0): void {
  const rng = new Rng(seed);
  for (const [name, v] of adapter.namedParameters()) {
    const t = rng.fork(name).normalTensor([...v.shape], mean, std);
    v.assign(t);
    t.dispose();
  }
}

/** Left-pads rows to one length: ids (pad 0) and the 0/1 mask. */
export function leftPad(rows: number[][]): { ids: number[][]; mask: number[][]; T: number } {
  const T = Math.max(...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...new Array(T - r.length).fill(0), ...r]),
    mask: rows.map((r) => [...new Array(T - r.length).fill(0), ...new Array(r.length).fill(1)]),
    T,
  };
}

/** Row b, position t of a [B, T, V] buffer. */
export function at(buf: Float32Array, b: number, t: number, T: number, V: number): Float32Array {
  return buf.subarray((b * T + t) * V, (b * T + t + 1) * V);
}
