// Shared by `pnpm para` and `pnpm web`: have turbo build a package and what it depends on (a
// cache hit when nothing changed), its output on stderr so stdout carries only the command's.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureInstalled, onPath, pnpmCommand, root } from './bootstrap.mjs';

export { root };

/** Builds `pkg` and its dependencies, or exits with turbo's status after saying so. */
export function buildOrExit(pkg, label) {
  // A fresh clone (or a changed lockfile): install first, with the pinned pnpm.
  const installed = ensureInstalled();
  if (installed !== 0) process.exit(installed);
  const turbo = join(root, 'node_modules', '.bin', 'turbo');
  if (!existsSync(turbo)) {
    process.stderr.write(
      `${label}: dependencies are not installed; run \`pnpm install\` (or \`node scripts/bootstrap.mjs\`) first\n`,
    );
    process.exit(1);
  }
  const args = [
    'run',
    'build',
    `--filter=${pkg}...`,
    '--output-logs=errors-only',
    '--log-prefix=none',
  ];
  // turbo runs each package's build script with pnpm: without one on PATH (`npm run para`), run
  // turbo under the pinned pnpm, which puts itself on PATH.
  const [cmd, ...lead] = onPath('pnpm') ? [turbo] : [...pnpmCommand(), 'exec', 'turbo'];
  const build = spawnSync(cmd, [...lead, ...args], {
    cwd: root,
    stdio: ['ignore', 2, 2],
    env: {
      ...process.env,
      TURBO_TELEMETRY_DISABLED: '1',
      DO_NOT_TRACK: '1',
      npm_config_yes: 'true',
    },
  });
  if (build.status !== 0) {
    process.stderr.write(`${label}: the build failed (see above)\n`);
    process.exit(build.status ?? 1);
  }
}
