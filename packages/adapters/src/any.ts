/** Any adapter of any registered method, and creating one from a config of any method. */

import { describeValue, ParaError } from '@para/core';
import { countParameters, type ModelConfig } from '@para/model';
import type { PeftAdapter } from './base/adapter';
import { INLINE_CONFIG } from './base/config';
import type { Ia3ConfigInit } from './ia3/config';
import type { LoraConfigInit } from './lora/config';
import { methodOfConfig } from './methods';
import type { ParaConfigInit } from './para/config';

/** An adapter of any registered method (PARA, LoRA, IA3, …). */
export type AnyAdapter = PeftAdapter;

/** A config of any built-in method, told apart by `peft_type` (PEFT key names, as in adapter_config.json). */
export type AnyConfigInit =
  | (ParaConfigInit & { peft_type: 'PARA' })
  | (LoraConfigInit & { peft_type: 'LORA' })
  | (Ia3ConfigInit & { peft_type: 'IA3' });

/**
 * A fresh adapter of the config's method for `modelConfig` (seeded init), through the method
 * registry. Config errors are typed and name `file` (default: an inline config) and the key.
 */
export function createAdapter(
  modelConfig: ModelConfig,
  config: AnyConfigInit | Readonly<Record<string, unknown>>,
  options: { seed?: number | string; file?: string } = {},
): AnyAdapter {
  const raw = config as Readonly<Record<string, unknown>>;
  const file = options.file ?? INLINE_CONFIG;
  const method = methodOfConfig(raw, file);
  const resolved = method.resolveConfig(raw, file);
  // Sizes are checked before anything is allocated: an adapter larger than its backbone is a
  // mistake (a rank typed with extra zeros), and it would otherwise allocate gigabytes first.
  const size = method
    .tensorSpecs(resolved, modelConfig)
    .reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  const backbone = countParameters(modelConfig);
  if (size > backbone) {
    // A per-module rank above `r` (LoRA's rank_pattern) is the likelier culprit.
    const rank = method.rankKey === null ? null : raw[method.rankKey];
    const pattern = raw.rank_pattern;
    const patterned =
      typeof pattern === 'object' &&
      pattern !== null &&
      Object.values(pattern).some((v) => typeof v === 'number' && v > (Number(rank) || 0));
    const field = patterned ? 'rank_pattern' : (method.rankKey ?? 'target_modules');
    throw new ParaError(
      'INVALID_CONFIG',
      `this ${method.peftType} adapter would have ${size.toLocaleString('en-US')} parameters, more than the ${backbone.toLocaleString('en-US')} of its backbone`,
      {
        file,
        field,
        expected: 'an adapter smaller than the model it adapts',
        actual:
          field === 'rank_pattern'
            ? describeValue(pattern, 120)
            : method.rankKey === null
              ? undefined
              : JSON.stringify(rank),
      },
    );
  }
  return method.create(modelConfig, resolved, { seed: options.seed ?? 0 });
}
