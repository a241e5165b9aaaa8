#!/usr/bin/env node
// `pnpm --silent para <command>`: runs the `para` CLI from the repo root. It first has turbo
// build whatever is stale (a cache hit when nothing changed), with the build's output on stderr,
// so stdout carries only the command's own output.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { buildOrExit, root } from './turbo-build.mjs';

buildOrExit('@para/node-demo', 'para');
const run = spawnSync(process.execPath, [join(root, 'apps', 'node-demo', 'dist', 'cli.js'), ...process.argv.slice(2)], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);
