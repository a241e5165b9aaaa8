/** Shared fixtures: the bundled backbone, its bundled PARA adapters, and seeded LoRA / IA3 tenants. */

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AnyAdapter, Ia3Adapter, LoraAdapter } from '@para/adapters';
import { loadAdapter } from '@para/adapters/node';
import { initBackend, Rng } from '@para/core/node';
import type { CausalLM } from '@para/model';
import { loadPretrained } from '@para/model/node';
import type { ParaTokenizer } from '@para/tokenizer';
import * as tf from '@tensorflow/tfjs-core';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BACKBONE = join(REPO, 'assets', 'backbone');
export const ADAPTERS = join(REPO, 'assets', 'adapters');
export const BUNDLED = ['antonym', 'arithmetic', 'category', 'pos'] as const;

export async function startBackend(): Promise<void> {
  await initBackend({ backend: process.env.PARA_TEST_BACKEND ?? 'wasm', probe: false });
}

export async function backbone(): Promise<{ model: CausalLM; tokenizer: ParaTokenizer }> {
  const { model, tokenizer } = await loadPretrained(BACKBONE);
  return { model, tokenizer };
}

export async function bundledAdapter(name: string, model: CausalLM): Promise<AnyAdapter> {
  return loadAdapter(join(ADAPTERS, name), model, { baseModelMismatch: 'warn', warn: () => {} });
}

/** Overwrites every parameter with seeded noise (so the tenant is far from the identity). */
export function randomize(adapter: AnyAdapter, seed: string, std: number, mean = 0): AnyAdapter {
  const rng = new Rng(seed);
  for (const [name, v] of adapter.namedParameters()) {
    const t = rng.fork(name).normalTensor([...v.shape], mean, std);
    v.assign(t);
    t.dispose();
  }
  return adapter;
}

export function loraTenant(model: CausalLM, seed = 1): AnyAdapter {
  return randomize(
    LoraAdapter.create(
      model.config,
      { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj', 'o_proj'] },
      { seed },
    ),
    `lora${seed}`,
    0.05,
  );
}

export function ia3Tenant(model: CausalLM): AnyAdapter {
  return randomize(Ia3Adapter.create(model.config), 'ia3', 0.3, 1);
}

/** Greedy (or seeded) tokens of one prompt decoded alone with `generate`. */
export async function alone(
  model: CausalLM,
  adapter: AnyAdapter | null,
  prompt: number[],
  maxNewTokens: number,
  stopTokens: number[],
  sampling: { temperature?: number; topK?: number; topP?: number; seed?: number } = {},
): Promise<number[]> {
  const r = await model.generate([prompt], {
    maxNewTokens,
    stopTokens,
    ...sampling,
    ...(adapter === null ? {} : { adapter: adapter.attach(model), request: {} }),
  });
  return r.tokens[0] as number[];
}

export const numTensors = (): number => tf.memory().numTensors;
