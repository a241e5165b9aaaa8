/**
 * Parameter initialisation, seeded (`@para/core`'s `Rng`, one forked stream per tensor so adding
 * a tensor never shifts the others' values).
 */

import type { Rng } from '@para/core';
import type * as tf from '@tensorflow/tfjs-core';

/**
 * torch's `nn.init.kaiming_uniform_(w, a=√5)`, the default init of `nn.Linear` weights and of
 * PEFT's `lora_A`: U(-1/√fan_in, 1/√fan_in) (gain √(2/(1+a²)) = √(1/3), bound gain·√(3/fan_in)).
 * nn.Linear's bias uses the same bound.
 */
export function kaimingUniform(rng: Rng, shape: number[], fanIn: number): tf.Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return rng.uniformTensor(shape, -bound, bound);
}
