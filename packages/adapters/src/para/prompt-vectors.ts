/**
 * The adjusting vectors a PARA adapter generates for one prompt, read back to the host: for
 * each layer and target (`l_q`, `l_v`, `l_u`), the `[dim]` vector that scales every position of
 * that call. Computed by the adapter's own hooks (`attach(model)`, `ParaAdapter.vectors`) in one
 * teacher-forced pass over the prompt, so each layer sees the input the earlier layers' vectors
 * produced — the same values prefill computes before generation (tools that show the vectors,
 * e.g. the web demo's heatmap, call this instead of copying the math).
 */

import type { AdapterContext, CausalLM, ModelAdapter } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import type { AdapterRequest } from '../base/request';
import type { ParaTarget } from './config';
import type { ParaAdapter } from './model';

export interface ParaPromptVectors {
  /** The adapter's target_modules, in order (`q_proj`, `v_proj`, `up_proj`). */
  targets: readonly ParaTarget[];
  /** Width of each target's vector, in target order. */
  dims: readonly number[];
  /** `layers[i][j]`: layer i's vector for target j (`dims[j]` values; 1 = no change). */
  layers: Float32Array[][];
}

/** PARA's vectors for one prompt (token ids, e.g. with `<s>` first as `para generate` encodes). */
export async function paraPromptVectors(
  model: CausalLM,
  adapter: ParaAdapter,
  ids: readonly number[],
): Promise<ParaPromptVectors> {
  const inner = adapter.attach(model);
  const targets = adapter.targets;
  const seen: tf.Tensor[][] = [];
  const capture: ModelAdapter<AdapterRequest> = {
    ...inner,
    layerInput(ctx: AdapterContext<AdapterRequest>, h: tf.Tensor) {
      inner.layerInput?.(ctx, h);
      seen[ctx.layer] = targets.map((t) => {
        const s = ctx.state.scale(t);
        if (s === undefined) throw new Error(`internal: PARA set no scale for ${t}`);
        return tf.keep(tf.reshape(s, [-1])); // [dim] (batch of one row)
      });
    },
  };
  try {
    tf.dispose(model.forward([[...ids]], { adapter: capture, request: {} }));
    const layers: Float32Array[][] = [];
    for (const layer of seen)
      layers.push(await Promise.all(layer.map(async (t) => (await t.data()) as Float32Array)));
    return { targets, dims: adapter.dims, layers };
  } finally {
    tf.dispose(seen.flat());
  }
}
