#!/usr/bin/env node
// `pnpm --silent para <command>`: runs the `para` CLI from the repo root. It first has turbo
// build whatever is stale (a cache hit when nothing changed), with the build's output on stderr,
// so stdout carries only the command's own output.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const turbo = join(root, 'node_modules', '.bin', 'turbo');
if (!existsSync(turbo)) {
  process.stderr.write('para: dependencies are not installed; run `pnpm install` first\n');
  process.exit(1);
}
const build = spawnSync(
  turbo,
  ['run', 'build', '--filter=@para/node-demo...', '--output-logs=errors-only', '--log-prefix=none'],
  { cwd: root, stdio: ['ignore', 2, 2], env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' } },
);
if (build.status !== 0) {
  process.stderr.write('para: the build failed (see above)\n');
  process.exit(build.status ?? 1);
}
const run = spawnSync(process.execPath, [join(root, 'apps', 'node-demo', 'dist', 'cli.js'), ...process.argv.slice(2)], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);
