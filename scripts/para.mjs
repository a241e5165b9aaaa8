#!/usr/bin/env node
// `pnpm --silent para <command>` (or `npm run --silent para -- <command>`): runs the `para` CLI
// from the repo root. It first installs (when node_modules is missing or stale) and has turbo
// build whatever is stale (a cache hit when nothing changed), with that output on stderr, so
// stdout carries only the command's own output.
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { join } from 'node:path';
import { buildOrExit, root } from './turbo-build.mjs';

buildOrExit('@para/node-demo', 'para');
// How to run `para` again from here, for the commands the CLI prints (the demo's next steps,
// the resume command after Ctrl-C). npm run bootstrap.mjs sets it for `npm run demo`.
const agent = process.env.npm_config_user_agent ?? '';
const prefix =
  process.env.PARA_COMMAND_PREFIX ??
  (agent.startsWith('pnpm/')
    ? 'pnpm --silent para'
    : agent.startsWith('npm/')
      ? 'npm run --silent para --'
      : 'node scripts/para.mjs');
// Ctrl-C reaches the CLI too (same process group): let it write its checkpoint and exit.
process.on('SIGINT', () => {});
const run = spawnSync(
  process.execPath,
  [join(root, 'apps', 'node-demo', 'dist', 'cli.js'), ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    env: { ...process.env, PARA_COMMAND_PREFIX: prefix },
  },
);
process.exit(run.status ?? (run.signal ? 128 + (constants.signals[run.signal] ?? 0) : 1));
