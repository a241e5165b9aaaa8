// Shared by `pnpm para` and `pnpm web`: have turbo build a package and what it depends on (a
// cache hit when nothing changed), its output on stderr so stdout carries only the command's.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Builds `pkg` and its dependencies, or exits with turbo's status after saying so. */
export function buildOrExit(pkg, label) {
  const turbo = join(root, 'node_modules', '.bin', 'turbo');
  if (!existsSync(turbo)) {
    process.stderr.write(`${label}: dependencies are not installed; run \`pnpm install\` first\n`);
    process.exit(1);
  }
  const build = spawnSync(turbo, ['run', 'build', `--filter=${pkg}...`, '--output-logs=errors-only', '--log-prefix=none'], {
    cwd: root,
    stdio: ['ignore', 2, 2],
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
  });
  if (build.status !== 0) {
    process.stderr.write(`${label}: the build failed (see above)\n`);
    process.exit(build.status ?? 1);
  }
}
