#!/usr/bin/env node
// `pnpm web [--port N]`: builds the web demo (apps/web-demo) and what it depends on, then serves
// it on 127.0.0.1 and prints its URL. Ctrl-C stops it.
import { buildOrExit } from './turbo-build.mjs';

const args = process.argv.slice(2);
const i = args.indexOf('--port');
const port = i < 0 ? 4173 : Number(args[i + 1]);
if (
  (i >= 0 && args[i + 1] === undefined) ||
  !Number.isInteger(port) ||
  port < 0 ||
  port > 65535 ||
  args.some((a, k) => a !== '--port' && k !== i + 1)
) {
  process.stderr.write(
    `web: usage: pnpm web [--port N]   (N in 0..65535, default 4173; got ${JSON.stringify(args.join(' '))})\n`,
  );
  process.exit(2);
}
buildOrExit('@para/web-demo', 'web');
const { serveWebDemo } = await import('../apps/web-demo/scripts/serve.mjs');
try {
  const { url } = await serveWebDemo({ port });
  process.stdout.write(
    `para web demo: ${url}  (the first visit times each backend the browser offers and uses the fastest; ?backend=wasm picks one; Ctrl-C to stop)\n`,
  );
} catch (e) {
  process.stderr.write(`web: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
