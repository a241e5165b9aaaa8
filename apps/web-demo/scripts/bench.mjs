#!/usr/bin/env node
/**
 * Generation speed of the web demo in Debian's Chromium, per tfjs backend: for each of webgpu,
 * webgl, wasm and cpu, a fresh headless Chromium opens the built app with `?backend=NAME` and
 * calls `window.paraDemo.bench(tokens)` (engine.ts `bench`: greedy decode of N tokens, batch 1,
 * bare — cold (first run) and warm — and with a PARA tenant, then one mixed batch of every
 * tenant; warm figures after a warm-up run of the same length).
 *
 *   pnpm web:bench [--tokens N] [--backends webgpu,wasm] [--json]
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
  for (const backend of backends) {
    const browser = await chromium.launch({ executablePath, args: FLAGS });
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}?backend=${backend}`);
      await page.waitForSelector('body[data-ready]', { state: 'attached', timeout: 300_000 });
      if ((await page.getAttribute('body', 'data-ready')) !== 'true') {
        rows.push({ backend, error: await page.textContent('[data-testid="error"]') });
        continue;
      }
      const detail = await page.evaluate(
        () => document.querySelector('[data-testid="backend-report"] li')?.textContent ?? '',
      );
      const r = await page.evaluate((n) => window.paraDemo.bench(n), tokens);
      rows.push({ backend, detail, ...r });
      if (!json) process.stderr.write(`web:bench: ${backend} done\n`);
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
