/** Any adapter of this package, and creating one from a config of any method. */

import type { ModelConfig } from '@para/model';
import { INLINE_CONFIG, peftTypeOf } from './base/config';
import { type Ia3ConfigInit, resolveIa3Config } from './ia3/config';
import { Ia3Adapter } from './ia3/model';
import { type LoraConfigInit, resolveLoraConfig } from './lora/config';
import { LoraAdapter } from './lora/model';
import { type ParaConfigInit, resolveParaConfig } from './para/config';
import { ParaAdapter } from './para/model';

export type AnyAdapter = ParaAdapter | LoraAdapter | Ia3Adapter;

/** A config of any method, told apart by `peft_type`. */
export type AnyConfigInit = (ParaConfigInit & { peft_type: 'PARA' }) | (LoraConfigInit & { peft_type: 'LORA' }) | (Ia3ConfigInit & { peft_type: 'IA3' });

/** A fresh adapter of the config's method for `modelConfig` (seeded init). */
export function createAdapter(modelConfig: ModelConfig, config: AnyConfigInit, options: { seed?: number | string } = {}): AnyAdapter {
  const raw = config as unknown as Record<string, unknown>;
  switch (peftTypeOf(raw, INLINE_CONFIG)) {
    case 'PARA':
      return ParaAdapter.fromConfig(modelConfig, resolveParaConfig(raw), options);
    case 'LORA':
      return LoraAdapter.fromConfig(modelConfig, resolveLoraConfig(raw), options);
    case 'IA3':
      return Ia3Adapter.fromConfig(modelConfig, resolveIa3Config(raw), options);
  }
}
