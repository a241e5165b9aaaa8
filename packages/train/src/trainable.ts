/**
 * What the trainer trains: a set of `tf.Variable`s by name and a function from a batch to
 * logits. Two kinds:
 *
 * - `adapterTrainable(model, adapter)`: the backbone stays frozen — its weights are plain
 *   tensors, never variables, and the optimizer and `tf.variableGrads` see only the adapter's
 *   variables, so backprop builds no gradient for any backbone weight (tfjs prunes the tape to
 *   the paths from the listed variables) and the weights stay bit-identical.
 * - `fullTrainable(model)`: every weight becomes a variable (pretraining, full fine-tuning).
 */

import { ParaError } from '@para/core';
import { CausalLM, type ModelAdapter, namedWeights, weightsFromNamed } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import type { Batch } from './batch';

export interface TrainableModel {
  /** The variables the optimizer updates, by name (PEFT names for adapters, HF names for weights). */
  readonly parameters: ReadonlyMap<string, tf.Variable>;
  /** The model whose forward runs (frozen backbone, or the variable-backed model). */
  readonly model: CausalLM;
  /** Logits `[B, T, V]` of a batch (call inside a tidy / variableGrads). */
  logits(batch: Batch): tf.Tensor;
  /** Switches training-only behaviour (LoRA dropout) on or off. */
  setTraining(on: boolean): void;
  /** Hooks and request for generation with the trained parameters (null: the bare model). */
  readonly adapter: ModelAdapter<{ promptLengths?: readonly number[] }> | null;
}

/** The part of an `@para/adapters` adapter the trainer needs (PARA, LoRA, IA3 all fit). */
export interface TrainableAdapter {
  namedParameters(): ReadonlyMap<string, tf.Variable>;
  attach(model: CausalLM): ModelAdapter<{ promptLengths?: readonly number[] }>;
  training: boolean;
  readonly numParameters: number;
}

export function adapterTrainable(model: CausalLM, adapter: TrainableAdapter): TrainableModel {
  const hooks = adapter.attach(model);
  const parameters = adapter.namedParameters();
  if (parameters.size === 0)
    throw new ParaError('INVALID_ARGUMENT', 'the adapter has no parameters to train', {
      field: 'adapter',
    });
  return {
    parameters,
    model,
    adapter: hooks,
    setTraining: (on) => {
      adapter.training = on;
    },
    logits: (batch) =>
      model.forward(batch.ids, {
        ...(batch.attentionMask === null ? {} : { attentionMask: batch.attentionMask }),
        adapter: hooks,
        request: batch.promptLengths === null ? {} : { promptLengths: batch.promptLengths },
      }),
  };
}

/**
 * Full-parameter training: a new `CausalLM` whose weights are `tf.Variable`s initialised from
 * `model`'s (the tied head stays tied: one variable). `model` is left as it was (dispose it if
 * it is no longer needed); dispose the returned model when done.
 */
export function fullTrainable(model: CausalLM): TrainableModel {
  const named = namedWeights(model.config, model.weights);
  const vars = new Map<string, tf.Variable>();
  const id = nextFullId++;
  for (const [name, t] of Object.entries(named))
    vars.set(name, tf.variable(t, true, `full${id}/${name}`));
  const trainable = new CausalLM(
    model.config,
    weightsFromNamed(model.config, Object.fromEntries(vars)),
  );
  return {
    parameters: vars,
    model: trainable,
    adapter: null,
    setTraining: () => undefined,
    logits: (batch) =>
      trainable.forward(
        batch.ids,
        batch.attentionMask === null ? {} : { attentionMask: batch.attentionMask },
      ),
  };
}

let nextFullId = 0;
