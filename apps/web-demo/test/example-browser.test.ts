/**
 * examples/browser runs as a user would run it: bundled by Vite (resolving `para` like any
 * package), served with the bundled backbone at ./backbone/, opened in Debian's Chromium. The
 * page loads the backbone over HTTP range requests, trains a PARA adapter on four records,
 * generates and serializes it; the test reads the result the page exposes.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { build, preview } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_FLAGS, chromiumForTests } from '../scripts/chromium.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const chromiumPath = chromiumForTests('examples/browser');

describe.skipIf(chromiumPath === null)('examples/browser in Chromium', () => {
  let work: string;
  let server: { url: string; close(): Promise<void> };
  let browser: Browser;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'para-example-browser-'));
    const outDir = join(work, 'dist');
    await build({
      root: join(repo, 'examples', 'browser'),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
    await cp(join(repo, 'assets', 'backbone'), join(outDir, 'backbone'), { recursive: true });
    const s = await preview({
      root: work,
      logLevel: 'warn',
      build: { outDir },
      preview: { host: '127.0.0.1', port: 0, open: false },
    });
    const url = s.resolvedUrls?.local[0];
    if (url === undefined) throw new Error('the preview server has no local URL');
    server = {
      url,
      close: () => new Promise((resolve) => s.httpServer.close(() => resolve(undefined))),
    };
    browser = await chromium.launch({
      executablePath: chromiumPath as string,
      args: CHROMIUM_FLAGS,
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('loads the backbone by URL, trains, generates and serializes the adapter', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    const result = (await page.evaluate(
      () => (window as unknown as { paraExample: Promise<unknown> }).paraExample,
    )) as {
      backend: string;
      steps: number;
      text: string;
      weightBytes: number;
    };
    expect(errors).toEqual([]);
    expect(['webgl', 'wasm', 'cpu', 'webgpu']).toContain(result.backend);
    expect(result.steps).toBe(2);
    expect(typeof result.text).toBe('string');
    expect(result.weightBytes).toBeGreaterThan(1000);
    expect(await page.textContent('#out')).toContain('Part of speech of bewail:');
    await page.close();
  });
});
