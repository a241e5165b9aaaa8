import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CausalLM, createConfig, type ModelConfig, type ModelConfigInit } from '../../src/index';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'goldens', 'fixtures');
export const GOLDEN_MODELS = [
  'llama',
  'llama3-bf16',
  'qwen2-tied-f16',
  'mistral-sharded',
  'smollm-tied',
  'qwen3-bf16',
  'qwen3-yarn',
  'llama-dynamic',
  'qwen3-sliding',
  'qwen2-sliding',
  'mistral-sliding',
  'gemma2-f16',
  'gemma3-bf16',
  'smollm3',
  'olmo2-bf16',
  'phi3',
  'phi3-longrope',
] as const;

/** The fixtures with sliding-window layers (every prompt + generation is longer than the window). */
export const SLIDING_MODELS = [
  'qwen3-sliding',
  'qwen2-sliding',
  'mistral-sliding',
  'gemma2-f16',
  'gemma3-bf16',
  'smollm3',
  'phi3',
] as const;

/** A tiny config (GQA, biases optional) for tests that build their own model. */
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
