/**
 * The built-in adapter methods, registered once (one line each), and the registry's lookups.
 * Import lookups from here, not from registry.ts, so the built-ins are always registered.
 */

import { IA3_METHOD } from './ia3/method';
import { LORA_METHOD } from './lora/method';
import { PARA_METHOD } from './para/method';
import { registerAdapterMethod } from './registry';

registerAdapterMethod(PARA_METHOD);
registerAdapterMethod(LORA_METHOD);
registerAdapterMethod(IA3_METHOD);

export { adapterMethod, adapterMethods, methodOfConfig, registerAdapterMethod } from './registry';
