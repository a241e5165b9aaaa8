/**
 * Debian's Chromium for the web demo's end-to-end test and benchmark (never a downloaded
 * browser). Flags from ../shared/ENVIRONMENT.md; WebGPU also needs `--enable-unsafe-webgpu`
 * (SwiftShader adapter on machines without a GPU).
 */
import { spawnSync } from 'node:child_process';

export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-dev-shm-usage',
];
export const WEBGPU_FLAG = '--enable-unsafe-webgpu';

/** $PARA_CHROMIUM, else `chromium` / `chromium-browser` on PATH, else null. */
export function findChromium() {
  const env = process.env.PARA_CHROMIUM;
  if (env !== undefined && env !== '') return env;
  for (const name of ['chromium', 'chromium-browser']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    const p = r.stdout.trim();
    if (r.status === 0 && p !== '') return p;
  }
  return null;
}

/**
 * The Chromium a browser test runs on, or null when there is none (the test is then skipped,
 * with a warning naming `label`); with PARA_E2E_REQUIRED=1 a missing Chromium is an error.
 */
export function chromiumForTests(label) {
  const path = findChromium();
  const help = 'no chromium on PATH (apt-get install chromium, or set PARA_CHROMIUM)';
  if (path === null && process.env.PARA_E2E_REQUIRED === '1')
    throw new Error(`PARA_E2E_REQUIRED=1 but ${help}`);
  if (path === null) console.warn(`${label}: skipped — ${help}`);
  return path;
}
