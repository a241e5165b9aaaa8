/**
 * Backbone presets for `para pretrain --config NAME`: the model shape and the pretraining
 * recipe that goes with it. `small` is the committed default backbone (assets/backbone);
 * `tiny` is for tests and smoke runs.
 */

import { ParaError } from '@para/core';
import { createConfig, type ModelConfig } from '@para/model';
import type { DecayKind } from './schedule';

export interface BackbonePreset {
  /** Vocabulary of the BPE tokenizer trained when none is given. */
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Context length (max_position_embeddings) and the pretraining window. */
  contextLength: number;
  tieWordEmbeddings: boolean;
  /** Pretraining recipe. */
  recipe: {
    steps: number;
    batchSize: number;
    seqLen: number;
    lr: number;
    warmupSteps: number;
    decay: DecayKind;
    minLrRatio: number;
    weightDecay: number;
    beta2: number;
    maxGradNorm: number;
    evalEvery: number;
    checkpointEvery: number;
  };
}

export const BACKBONE_PRESETS = {
  small: {
    vocabSize: 4096,
    hiddenSize: 256,
    intermediateSize: 688,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    contextLength: 256,
    tieWordEmbeddings: true,
    recipe: {
      steps: 1000,
      batchSize: 8,
      seqLen: 256,
      lr: 3e-3,
      warmupSteps: 50,
      decay: 'cosine',
      minLrRatio: 0.1,
      weightDecay: 0.1,
      beta2: 0.95,
      maxGradNorm: 1,
      evalEvery: 100,
      checkpointEvery: 50,
    },
  },
  tiny: {
    vocabSize: 512,
    hiddenSize: 64,
    intermediateSize: 172,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    contextLength: 128,
    tieWordEmbeddings: true,
    recipe: {
      steps: 40,
      batchSize: 4,
      seqLen: 64,
      lr: 3e-3,
      warmupSteps: 4,
      decay: 'cosine',
      minLrRatio: 0.1,
      weightDecay: 0.1,
      beta2: 0.95,
      maxGradNorm: 1,
      evalEvery: 20,
      checkpointEvery: 10,
    },
  },
} as const satisfies Record<string, BackbonePreset>;

export type BackbonePresetName = keyof typeof BACKBONE_PRESETS;

/**
 * A preset by name. Own keys only: `constructor`, `toString` or `__proto__` are not presets
 * (a plain index would return Object.prototype's members).
 */
export function backbonePreset(name: string): BackbonePreset {
  if (typeof name !== 'string' || !Object.hasOwn(BACKBONE_PRESETS, name)) {
    throw new ParaError('INVALID_ARGUMENT', `unknown backbone config ${JSON.stringify(name)}`, {
      field: 'config',
      expected: `one of the presets: ${Object.keys(BACKBONE_PRESETS).join(' | ')}`,
      actual: JSON.stringify(name),
    });
  }
  return (BACKBONE_PRESETS as Record<string, BackbonePreset>)[name] as BackbonePreset;
}

/** The model config of a preset for a tokenizer's vocabulary and special ids. */
export function presetModelConfig(
  p: BackbonePreset,
  ids: { vocabSize: number; bos: number | null; eos: number; pad: number | null },
): ModelConfig {
  return createConfig({
    vocabSize: ids.vocabSize,
    hiddenSize: p.hiddenSize,
    intermediateSize: p.intermediateSize,
    numLayers: p.numLayers,
    numHeads: p.numHeads,
    numKvHeads: p.numKvHeads,
    maxPositionEmbeddings: p.contextLength,
    tieWordEmbeddings: p.tieWordEmbeddings,
    bosTokenId: ids.bos,
    eosTokenIds: [ids.eos],
    padTokenId: ids.pad,
    rmsNormEps: 1e-5,
  });
}

/**
 * The chat template of tokenizers that `para pretrain` trains: plain "User:" / "Assistant:"
 * turns, an assistant turn ends with the EOS token.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}\n{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}";

/** `base_model_name_or_path` of adapters made for the bundled default backbone (`para train`, the web demo). */
export const BUNDLED_BACKBONE_NAME = 'assets/backbone';
