/**
 * @para/ops — transformer math on TensorFlow.js, backend-agnostic (cpu, wasm, webgl, webgpu,
 * tensorflow) and browser-safe: RMSNorm, RoPE (HF convention, linear and llama3 scaling),
 * grouped-query causal attention with padding masks, a KV cache for batches of rows with
 * different lengths (preallocated, written in place; rows join and leave), SwiGLU and seeded
 * sampling.
 *
 * Shape conventions: activations `[B, T, d]`; attention heads `[B, H, T, hd]`; keys/values
 * `[B, Hkv, S, hd]` over S slots; additive masks `[B, 1, T, S]` (0 allowed, -1e9 masked);
 * left padding for batched generation, position ids `cumsum(mask) - 1` (see mask.ts).
 *
 * Importing @para/core (done here) registers tfjs gradients and chained ops, so `tf.grad`
 * works through every op.
 */

export { type AttentionOptions, attention, repeatKv } from './attention';
export {
  FUSED_KERNELS,
  type FusedKernelName,
  fusedWeightedCrossEntropy,
  hasFusedKernel,
  recordingGradients,
  setFusedKernelsEnabled,
} from './fused';
export { type CacheStep, KVCache, type KVCacheOptions } from './kv-cache';
export {
  type KVWrite,
  type KVWriteMode,
  type KVWritePath,
  kvWritePath,
  writeKVSlots,
} from './kv-write';
export { linear } from './linear';
export {
  type AttentionMaskOptions,
  attentionMask,
  MASK_NEGATIVE,
  type PaddedBatch,
  type PaddingSide,
  padBatch,
  positionIdsFromMask,
} from './mask';
export { addRmsNorm, type RmsNormOptions, rmsNorm } from './rmsnorm';
export {
  applyRope,
  type RopeCosSin,
  type RopeCosSinOptions,
  type RopeOptions,
  type RopeScalingConfig,
  ropeAttentionScaling,
  ropeCosSin,
  ropeInvFreq,
  rotateHalf,
  swapHalves,
} from './rope';
export { type SampleOptions, sampleFromLogits, samplingDistribution } from './sampling';
export { scaleRows } from './scale';
export { checkShape, type Dim, describeShape } from './shapes';
export { geglu, geluTanh, silu, swiglu } from './swiglu';
