/**
 * FLOP counts for throughput figures: 2 FLOPs per multiply-add of every weight matrix a token
 * passes through (the layers' projections and the lm_head; the embedding lookup is a gather),
 * plus attention's two matmuls (scores q·kᵀ and the weighted sum of v) over the keys actually
 * computed: a prefill of T tokens computes the full T×T score matrix (masked, not skipped).
 */

import type { ModelConfig } from './config';

export interface ModelFlops {
  /** Weights used in matmuls per token: the layers' projections plus the head (V·d). */
  matmulParams: number;
  /** FLOPs of a prefill of B rows × T tokens. */
  prefill(B: number, T: number): number;
  /** FLOPs of one decode step of B rows attending to S slots (the new one included). */
  decodeStep(B: number, S: number): number;
}

export function modelFlops(c: ModelConfig): ModelFlops {
  const d = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const perLayer = d * q + 2 * d * kv + q * d + 3 * d * c.intermediateSize;
  const matmulParams = c.numLayers * perLayer + c.vocabSize * d;
  // scores [Hq, T, S] and probs·v [Hq, T, hd]: 2·Hq·hd·T·S FLOPs each
  const attention = (T: number, S: number) => c.numLayers * 4 * c.numHeads * c.headDim * T * S;
  return {
    matmulParams,
    prefill: (B, T) => B * (2 * matmulParams * T + attention(T, T)),
    decodeStep: (B, S) => B * (2 * matmulParams + attention(1, S)),
  };
}
