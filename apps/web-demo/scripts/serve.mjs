#!/usr/bin/env node
/**
 * Serves the built web demo (dist/) on 127.0.0.1 with Vite's preview server (COOP/COEP headers
 * from vite.config.ts) and prints its URL. `pnpm web` at the repository root builds first.
 *
 *   node scripts/serve.mjs [--port N]      (default 4173; 0 = any free port)
 */
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { preview } from 'vite';

const app = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** Starts the preview server; resolves to { url, close() }. */
export async function serveWebDemo({ port = 4173 } = {}) {
  if (
    !(await stat(path.join(app, 'dist', 'index.html')).then(
      () => true,
      () => false,
    ))
  ) {
    throw new Error(
      `${path.join(app, 'dist')} has no build: run \`pnpm web\` at the repository root (or \`pnpm --filter @para/web-demo build\`)`,
    );
  }
  const server = await preview({
    root: app,
    logLevel: 'warn',
    preview: { host: '127.0.0.1', port, strictPort: port !== 0, open: false },
  });
  const url = server.resolvedUrls?.local[0];
  if (url === undefined) throw new Error('the preview server has no local URL');
  return {
    url,
    close: () => new Promise((resolve) => server.httpServer.close(() => resolve(undefined))),
  };
}

if (
  process.argv[1] !== undefined &&
  path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  const i = process.argv.indexOf('--port');
  const port = i < 0 ? 4173 : Number(process.argv[i + 1]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(
      `serve: bad --port ${JSON.stringify(process.argv[i + 1])}: expected an integer in [0, 65535]\n`,
    );
    process.exit(2);
  }
  try {
    const { url } = await serveWebDemo({ port });
    process.stdout.write(`para web demo: ${url}  (Ctrl-C to stop)\n`);
  } catch (e) {
    process.stderr.write(`serve: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
