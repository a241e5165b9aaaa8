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
export { rmsNorm } from './rmsnorm';
export {
  applyRope,
  ropeCosSin,
  ropeInvFreq,
  rotateHalf,
  swapHalves,
  type RopeCosSin,
  type RopeCosSinOptions,
  type RopeOptions,
  type RopeScalingConfig,
} from './rope';
export { attention, repeatKv, type AttentionOptions } from './attention';
export {
  attentionMask,
  MASK_NEGATIVE,
  padBatch,
  positionIdsFromMask,
  type AttentionMaskOptions,
  type PaddedBatch,
  type PaddingSide,
} from './mask';
export { KVCache, type CacheStep, type KVCacheOptions } from './kv-cache';
export { kvWritePath, writeKVSlots, type KVWrite, type KVWriteMode, type KVWritePath } from './kv-write';
export { silu, swiglu } from './swiglu';
export { linear } from './linear';
export { sampleFromLogits, samplingDistribution, type SampleOptions } from './sampling';
export { checkShape, describeShape, type Dim } from './shapes';
