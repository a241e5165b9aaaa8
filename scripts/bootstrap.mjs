#!/usr/bin/env node
// `npm run demo` / `npm test` on a machine with only Node and npm: installs the workspace with
// the pinned pnpm (root package.json `packageManager`, fetched by `npx`) when node_modules is
// missing or older than the lockfile, then runs a root script through that pnpm.
//
//   node scripts/bootstrap.mjs [pnpm args...]     e.g.  node scripts/bootstrap.mjs --silent para demo
//
// Under pnpm itself (`pnpm demo`) the running pnpm is used; otherwise `npx -y pnpm@<pin>`, which
// also puts that pnpm on PATH for the script (turbo and `pnpm pack` need it).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The pinned pnpm version (`packageManager: "pnpm@X"`). */
export function pinnedPnpm() {
  const pm = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager ?? '';
  const m = /^pnpm@(\d[^+]*)/.exec(pm);
  if (m === null) throw new Error(`package.json: packageManager "${pm}" is not pnpm@<version>`);
  return m[1];
}

/** True when this process runs under pnpm (a pnpm script). */
function underPnpm() {
  return (
    /^pnpm\//.test(process.env.npm_config_user_agent ?? '') &&
    !!process.env.npm_execpath &&
    existsSync(process.env.npm_execpath)
  );
}

/** True when an executable `name` is on PATH. */
export function onPath(name) {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .some((d) => d !== '' && existsSync(join(d, name)));
}

/**
 * How to run pnpm here: [command, ...leading args]. The running pnpm under a pnpm script, else
 * `pnpm` when it is on PATH and `preferPath`, else `npx -y pnpm@<pin>` (no global install).
 */
export function pnpmCommand({ preferPath = false } = {}) {
  if (underPnpm()) return [process.execPath, process.env.npm_execpath];
  if (preferPath && onPath('pnpm')) return ['pnpm'];
  return ['npx', '--yes', `pnpm@${pinnedPnpm()}`];
}

/** Why node_modules needs an install, or null when it is up to date with pnpm-lock.yaml. */
export function installNeeded() {
  const modules = join(root, 'node_modules');
  if (!existsSync(join(modules, '.modules.yaml'))) return 'node_modules is missing';
  // pnpm keeps a copy of the lockfile it installed from; a different one means a stale install.
  const installed = join(modules, '.pnpm', 'lock.yaml');
  if (!existsSync(installed)) return 'node_modules has no record of its lockfile';
  if (readFileSync(installed, 'utf8') !== readFileSync(join(root, 'pnpm-lock.yaml'), 'utf8'))
    return 'pnpm-lock.yaml changed since the last install';
  return null;
}

function run(cmd, args, env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) {
    process.stderr.write(`bootstrap: could not run ${cmd}: ${r.error.message}\n`);
    return 1;
  }
  return r.status ?? (r.signal ? 128 + (constants.signals[r.signal] ?? 0) : 1);
}

/** Installs with the pinned pnpm when needed (non-interactive, frozen lockfile); returns 0 or the failing status. */
export function ensureInstalled() {
  const why = installNeeded();
  if (why === null) return 0;
  const [cmd, ...lead] = pnpmCommand();
  process.stderr.write(
    `bootstrap: ${why}; installing with pnpm ${pinnedPnpm()} (${[cmd === process.execPath ? 'pnpm' : cmd, ...lead.filter((a) => a !== process.env.npm_execpath)].join(' ')} install --frozen-lockfile)\n`,
  );
  // stdout of the install goes to stderr: stdout stays the command's own.
  const r = spawnSync(cmd, [...lead, 'install', '--frozen-lockfile'], {
    cwd: root,
    stdio: ['ignore', 2, 2],
    env: { ...process.env, CI: 'true', npm_config_yes: 'true' },
  });
  if (r.error) process.stderr.write(`bootstrap: could not run ${cmd}: ${r.error.message}\n`);
  const status = r.error ? 1 : (r.status ?? 1);
  if (status !== 0)
    process.stderr.write(`bootstrap: the install failed (status ${status}, see above)\n`);
  return status;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const status = ensureInstalled();
  if (status !== 0) process.exit(status);
  const args = process.argv.slice(2);
  if (args.length === 0) process.exit(0);
  // Ctrl-C reaches the script too (same process group); wait for it to finish its own way.
  process.on('SIGINT', () => {});
  const [cmd, ...lead] = pnpmCommand();
  const env = { ...process.env, npm_config_yes: 'true' };
  // The command a user types to run `para` again, for the CLI's printed hints.
  if (env.PARA_COMMAND_PREFIX === undefined) {
    env.PARA_COMMAND_PREFIX = underPnpm() ? 'pnpm --silent para' : 'npm run --silent para --';
  }
  process.exit(run(cmd, [...lead, ...args], env));
}
