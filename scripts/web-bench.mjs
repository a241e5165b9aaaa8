#!/usr/bin/env node
// `pnpm web:bench [--tokens N] [--backends a,b] [--kernels fused,generic] [--json]`: builds the web demo, then measures
// generation tokens/s in Chromium per backend (apps/web-demo/scripts/bench.mjs).
import { buildOrExit } from './turbo-build.mjs';

buildOrExit('@para/web-demo', 'web:bench');
await import('../apps/web-demo/scripts/bench.mjs');
