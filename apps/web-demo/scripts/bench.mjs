#!/usr/bin/env node
/**
 * Generation speed of the web demo in Debian's Chromium, per tfjs backend: for each of webgpu,
 * webgl, wasm and cpu, a fresh headless Chromium opens the built app with `?backend=NAME` and
 * calls `window.paraDemo.bench(tokens)` (engine.ts `bench`: greedy decode of N tokens, batch 1,
 * bare — cold (first run) and warm — and with a PARA tenant, then one mixed batch of every
 * tenant; warm figures after a warm-up run of the same length).
 *
 *   pnpm web:bench [--tokens N] [--backends webgpu,wasm] [--kernels fused,generic] [--json]
 *
 * `--kernels`: which webgpu kernel sets to run, each in its own browser, in the same run:
 * `fused` (default; @para/webgpu's WGSL kernels), `generic` (the demo's `?kernels=generic`:
 * tfjs's generic ops only), or both, one row each. The other backends run once. A webgpu row
 * whose backend report does not say the kernel set asked for is an error row, not a figure.
 *
 * On machines without a GPU Chromium's WebGPU and WebGL run on SwiftShader (software).
 */
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, findChromium, WEBGPU_FLAG } from './chromium.mjs';
import { serveWebDemo } from './serve.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args[i + 1];
};
const tokens = Number(flag('--tokens', '32'));
const backends = flag('--backends', 'webgpu,webgl,wasm,cpu').split(',');
const json = args.includes('--json');
const kernelModes = flag('--kernels', 'fused').split(',');
if (kernelModes.length === 0 || kernelModes.some((k) => k !== 'fused' && k !== 'generic')) {
  process.stderr.write('web:bench: --kernels takes fused, generic or fused,generic\n');
  process.exit(2);
}
if (!Number.isInteger(tokens) || tokens < 2) {
  process.stderr.write('web:bench: --tokens must be an integer ≥ 2\n');
  process.exit(2);
}
const executablePath = findChromium();
if (executablePath === null) {
  process.stderr.write(
    'web:bench: no chromium on PATH (apt-get install chromium, or set PARA_CHROMIUM)\n',
  );
  process.exit(1);
}
const FLAGS = [...CHROMIUM_FLAGS, WEBGPU_FLAG];

const server = await serveWebDemo({ port: 0 });
const rows = [];
try {
  const runs = backends.flatMap((backend) =>
    backend === 'webgpu'
      ? kernelModes.map((kernels) => ({ backend, kernels }))
      : [{ backend, kernels: null }],
  );
  for (const { backend, kernels } of runs) {
    const label = kernels === null ? backend : `${backend} (${kernels})`;
    const browser = await chromium.launch({ executablePath, args: FLAGS });
    try {
      const page = await browser.newPage();
      const query = kernels === 'generic' ? '&kernels=generic' : '';
      await page.goto(`${server.url}?backend=${backend}${query}`);
      await page.waitForSelector('body[data-ready]', { state: 'attached', timeout: 300_000 });
      if ((await page.getAttribute('body', 'data-ready')) !== 'true') {
        rows.push({
          backend: label,
          kernels,
          error: await page.textContent('[data-testid="error"]'),
        });
        continue;
      }
      const detail = await page.evaluate(
        (name) =>
          document.querySelector(`[data-testid="backend-report"] li[data-backend="${name}"]`)
            ?.textContent ?? '',
        backend,
      );
      const expected = kernels === 'generic' ? 'fused kernels: off' : '@para/webgpu WGSL';
      if (kernels !== null && !detail.includes(expected)) {
        rows.push({
          backend: label,
          kernels,
          error: `the backend report lacks "${expected}": ${detail}`,
        });
        continue;
      }
      const r = await page.evaluate((n) => window.paraDemo.bench(n), tokens);
      rows.push({ backend: label, kernels, detail, ...r });
      if (!json) process.stderr.write(`web:bench: ${label} done\n`);
    } finally {
      await browser.close();
    }
  }
} finally {
  await server.close();
}

if (json) {
  process.stdout.write(`${JSON.stringify({ chromium: executablePath, tokens, rows }, null, 2)}\n`);
} else {
  const f = (x, d = 1) => (x === undefined || x === null ? '-' : x.toFixed(d));
  process.stdout.write(
    `Chromium (${executablePath}), greedy decode of ${tokens} tokens (warm: after a run of the same length)\n`,
  );
  process.stdout.write(
    '| backend | first token ms (cold / warm) | decode tokens/s, cold | decode tokens/s, warm | PARA tenant, warm | mixed batch (rows), warm |\n|---|---:|---:|---:|---:|---:|\n',
  );
  for (const r of rows) {
    if (r.error) process.stdout.write(`| ${r.backend} | could not start: ${r.error} | | | | |\n`);
    else
      process.stdout.write(
        `| ${r.backend} | ${f(r.cold.firstTokenMs, 0)} / ${f(r.bare.firstTokenMs, 0)} | ${f(r.cold.tokensPerSec)} | ${f(r.bare.tokensPerSec)} | ${f(r.adapted?.tokensPerSec)} | ${f(r.mixed.tokensPerSec)} (${r.mixed.rows}) |\n`,
      );
  }
}
