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
