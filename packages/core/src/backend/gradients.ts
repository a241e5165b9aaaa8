import * as tf from '@tensorflow/tfjs-core';
// Side effect: registers every tfjs-core gradient and the chained tensor ops (see the script
// that generates it for why this is a bundled copy rather than a plain import).
import { TFJS_CORE_VERSION } from './tfjs-gradients.generated.js';

export interface GradientRegistration {
  /** tfjs-core version the bundled gradients come from. */
  bundledVersion: string;
  /** tfjs-core version running. */
  runningVersion: string;
}

/**
 * Gradients live in one global registry shared by all backends, so importing this module once
 * makes `tf.grad` work on cpu, wasm, webgl, webgpu and tensorflow alike. Returns the versions so
 * callers (`para info`) can flag a mismatch.
 */
export function gradientRegistration(): GradientRegistration {
  return { bundledVersion: TFJS_CORE_VERSION, runningVersion: tf.version_core };
}
