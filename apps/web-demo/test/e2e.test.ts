/**
 * End to end in a real browser: Debian's Chromium (never a downloaded one), driven by
 * playwright-core, on the built app served by scripts/serve.mjs.
 *
 *   - the page loads and `backend` reads webgpu (Chromium's SwiftShader WebGPU here)
 *   - greedy generation for two tenants gives the text `para generate --adapter` gives in Node
 *   - side by side (one mixed batch) gives each tenant's own text
 *   - a short in-browser fine-tune lowers the loss; the adapter it downloads gives, in
 *     `para logits --adapter`, the logits the page computes
 *   - bad input (malformed JSONL, an adapter for another backbone, a backend that cannot start)
 *     is a message in the page, not a console error
 *   - a screenshot goes to test-results/web-demo.png
 *
 * Without Chromium the suite is skipped with the reason, unless PARA_E2E_REQUIRED=1 (CI).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_FLAGS, chromiumForTests, WEBGPU_FLAG } from '../scripts/chromium.mjs';
import { serveWebDemo } from '../scripts/serve.mjs';

const app = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(app, '..', '..');
const cli = join(repo, 'apps', 'node-demo', 'dist', 'cli.js');

const chromiumPath = chromiumForTests('web-demo e2e');

/** `para …` in Node on the wasm backend; stdout parsed as JSON. */
function para<T>(args: string[]): T {
  const out = execFileSync(process.execPath, [cli, ...args, '--backend', 'wasm'], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    env: { ...process.env, PARA_BLAS_DISABLE: '1' },
  });
  return JSON.parse(out) as T;
}

const byTestId = (id: string) => `[data-testid="${id}"]`;

describe.skipIf(chromiumPath === null)('web demo in Chromium', () => {
  let server: { url: string; close(): Promise<void> };
  let browser: Browser;
  let page: Page;
  let work: string;
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'para-web-e2e-'));
    server = await serveWebDemo({ port: 0 });
    browser = await chromium.launch({
      executablePath: chromiumPath as string,
      args: [...CHROMIUM_FLAGS, WEBGPU_FLAG],
    });
    page = await browser.newPage({ acceptDownloads: true });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`console: ${m.text()}`);
    });
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready]', { state: 'attached', timeout: 180_000 });
  });

  afterAll(async () => {
    if (page !== undefined) {
      await mkdir(join(app, 'test-results'), { recursive: true });
      await page
        .screenshot({ path: join(app, 'test-results', 'web-demo.png'), fullPage: true })
        .catch(() => undefined);
    }
    await browser?.close();
    await server?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  async function generate(prompt: string, tenant: string, maxNewTokens: number): Promise<string> {
    await page.fill(byTestId('prompt'), prompt);
    await page.selectOption(byTestId('tenant'), tenant);
    await page.fill(byTestId('max-new-tokens'), String(maxNewTokens));
    const before = await page.getAttribute(byTestId('output'), 'data-done');
    await page.click(byTestId('generate'));
    await page.waitForFunction(
      ([sel, prev]) => {
        const el = document.querySelector(sel as string) as HTMLElement;
        return el.dataset.done !== undefined && el.dataset.done !== prev;
      },
      [byTestId('output'), before],
      { timeout: 180_000 },
    );
    return (await page.textContent(byTestId('output'))) ?? '';
  }

  it('loads on WebGPU', async () => {
    expect(await page.getAttribute('body', 'data-ready')).toBe('true');
    expect(await page.textContent(byTestId('backend'))).toBe('webgpu');
    expect(await page.isHidden(byTestId('error'))).toBe(true);
  });

  it('greedy generation for two tenants equals `para generate --adapter` in Node', async () => {
    const cases = [
      { tenant: 'category', prompt: 'Is quart a kind of unit of measurement?' },
      { tenant: 'arithmetic', prompt: '14+49=' },
    ];
    const texts: string[] = [];
    for (const c of cases) {
      const browserText = await generate(c.prompt, c.tenant, 6);
      const node = para<{ text: string }>([
        'generate',
        '--prompt',
        c.prompt,
        '--adapter',
        join(repo, 'assets', 'adapters', c.tenant),
        '--json',
        '-n',
        '6',
      ]);
      expect(browserText, c.tenant).toBe(node.text);
      texts.push(browserText);
    }
    expect(texts[0]).not.toBe(texts[1]);
    expect(await page.textContent(byTestId('tokens-per-sec'))).toMatch(/tokens\/s/);
  });

  it('side by side runs the tenants in one batch and shows each its own output', async () => {
    const prompt = '14+49=';
    await page.fill(byTestId('prompt'), prompt);
    await page.fill(byTestId('max-new-tokens'), '4');
    await page.click(byTestId('side-by-side'));
    await page.waitForSelector(`${byTestId('side-output')} tr[data-tenant="arithmetic"]`, {
      timeout: 180_000,
    });
    const rows = await page.$$eval(`${byTestId('side-output')} tr`, (trs) =>
      trs.map((tr) => ({
        tenant: (tr as HTMLElement).dataset.tenant,
        text: tr.querySelector('td.out')?.textContent ?? '',
      })),
    );
    expect(rows.map((r) => r.tenant)).toContain('bare');
    const arithmetic = rows.find((r) => r.tenant === 'arithmetic')?.text;
    expect(arithmetic).toBe(await generate(prompt, 'arithmetic', 4));
  });

  it('an in-browser fine-tune lowers the loss, and its downloaded adapter gives the same logits in Node', async () => {
    // Eight examples, all in every batch: the same data each step, so the loss must go down.
    const eight = (await readFile(join(repo, 'data', 'tasks', 'category', 'train.jsonl'), 'utf8'))
      .split('\n')
      .slice(0, 8)
      .join('\n');
    await page.setInputFiles(byTestId('train-file'), {
      name: 'eight.jsonl',
      mimeType: 'application/jsonl',
      buffer: Buffer.from(eight),
    });
    expect(await page.inputValue(byTestId('train-task'))).toBe(''); // the upload replaces the bundled task
    await page.fill(byTestId('train-name'), 'browser-tuned');
    await page.fill(byTestId('train-steps'), '6');
    await page.fill(byTestId('train-batch'), '8');
    await page.fill(byTestId('train-lr'), '0.01');
    await page.click(byTestId('train-start'));
    await page.waitForSelector(`${byTestId('train-status')}[data-done]`, {
      state: 'attached',
      timeout: 300_000,
    });
    expect(await page.getAttribute(byTestId('train-status'), 'data-done')).toBe('done');
    const losses = JSON.parse(
      (await page.getAttribute(byTestId('train-chart'), 'data-losses')) ?? '[]',
    ) as number[];
    expect(losses).toHaveLength(6);
    expect(Number(await page.textContent(byTestId('train-loss')))).toBeCloseTo(
      losses[5] as number,
      3,
    );
    expect(losses[5] as number).toBeLessThan(0.8 * (losses[0] as number));
    await page.setInputFiles(byTestId('train-file'), []);

    await mkdir(join(app, 'test-results'), { recursive: true });
    await page.screenshot({
      path: join(app, 'test-results', 'web-demo-trained.png'),
      fullPage: true,
    });

    const dir = join(work, 'browser-tuned');
    await mkdir(dir);
    await page.selectOption(byTestId('download-tenant'), 'browser-tuned');
    for (const [button, file] of [
      ['download-config', 'adapter_config.json'],
      ['download-weights', 'adapter_model.safetensors'],
    ] as const) {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.click(byTestId(button)),
      ]);
      expect(download.suggestedFilename()).toBe(file);
      await download.saveAs(join(dir, file));
    }
    const prompt = 'Is dirge a kind of fabric?';
    const inBrowser = await page.evaluate(
      ([p, t]) => window.paraDemo.logits(p as string, t as string),
      [prompt, 'browser-tuned'],
    );
    const inNode = para<{ logits: number[][] }>([
      'logits',
      '--prompt',
      prompt,
      '--adapter',
      dir,
    ]).logits.at(-1) as number[];
    const bare = para<{ logits: number[][] }>(['logits', '--prompt', prompt]).logits.at(
      -1,
    ) as number[];
    expect(inBrowser).toHaveLength(inNode.length);
    const diff = Math.max(...inNode.map((x, j) => Math.abs(x - (inBrowser[j] as number))));
    const change = Math.max(...inNode.map((x, j) => Math.abs(x - (bare[j] as number))));
    expect(diff).toBeLessThan(2e-3);
    expect(change).toBeGreaterThan(100 * diff); // the adapter matters far more than backend rounding
  });

  it('an adapter trained in Node can be uploaded and used', async () => {
    await page.setInputFiles(byTestId('adapter-files'), [
      join(repo, 'assets', 'adapters', 'category', 'adapter_config.json'),
      join(repo, 'assets', 'adapters', 'category', 'adapter_model.safetensors'),
    ]);
    await page.fill(byTestId('adapter-name'), 'category-upload');
    await page.click(byTestId('adapter-upload'));
    await page.waitForSelector(`${byTestId('tenant')} option[value="category-upload"]`, {
      state: 'attached',
    });
    const prompt = 'Is quart a kind of unit of measurement?';
    expect(await generate(prompt, 'category-upload', 4)).toBe(
      await generate(prompt, 'category', 4),
    );
  });

  it('training runs in a worker: the page answers while it trains, and Cancel stops it without a tenant', async () => {
    await page.selectOption(byTestId('train-task'), 'arithmetic');
    await page.fill(byTestId('train-name'), 'to-cancel');
    await page.fill(byTestId('train-steps'), '500');
    await page.fill(byTestId('train-batch'), '4');
    await page.click(byTestId('train-start'));
    await page.waitForFunction(
      (sel) => (document.querySelector(sel)?.textContent ?? '') !== '',
      byTestId('train-loss'),
      { timeout: 120_000 },
    );
    const t0 = Date.now();
    await page.evaluate(
      () => new Promise((resolve) => requestAnimationFrame(() => resolve(document.title))),
    );
    expect(Date.now() - t0).toBeLessThan(1000); // the main thread is free while the worker trains
    await page.click(byTestId('train-cancel'));
    await page.waitForSelector(`${byTestId('train-status')}[data-done]`, {
      state: 'attached',
      timeout: 120_000,
    });
    expect(await page.getAttribute(byTestId('train-status'), 'data-done')).toBe('stopped');
    expect(await page.textContent(byTestId('train-status'))).toContain('no tenant added');
    expect(await page.$(`${byTestId('tenant')} option[value="to-cancel"]`)).toBeNull();
  });

  it('bad input is a message in the page, not a console error', async () => {
    consoleErrors.length = 0;
    // malformed JSONL: the file and the line
    await page.setInputFiles(byTestId('train-file'), {
      name: 'bad.jsonl',
      mimeType: 'application/jsonl',
      buffer: Buffer.from('{"prompt": "a", "completion": " b"}\n{"prompt": oops}\n'),
    });
    await page.fill(byTestId('train-name'), 'bad-data');
    await page.click(byTestId('train-start'));
    await page.waitForSelector(`${byTestId('error')}:not([hidden])`);
    const jsonlError = (await page.textContent(byTestId('error'))) ?? '';
    expect(jsonlError).toContain('bad.jsonl');
    expect(jsonlError).toContain('line 2');
    await page.setInputFiles(byTestId('train-file'), []);

    // an adapter made for another backbone
    const other = join(work, 'other');
    await mkdir(other);
    const config = JSON.parse(
      await readFile(join(repo, 'assets', 'adapters', 'category', 'adapter_config.json'), 'utf8'),
    );
    await writeFile(
      join(other, 'adapter_config.json'),
      JSON.stringify({ ...config, base_model_name_or_path: 'meta-llama/Llama-2-7b-hf' }),
    );
    await page.setInputFiles(byTestId('adapter-files'), [
      join(other, 'adapter_config.json'),
      join(repo, 'assets', 'adapters', 'category', 'adapter_model.safetensors'),
    ]);
    await page.fill(byTestId('adapter-name'), 'other');
    await page.click(byTestId('adapter-upload'));
    await page.waitForFunction(
      (sel) =>
        (document.querySelector(sel) as HTMLElement).textContent?.includes(
          'base_model_name_or_path',
        ),
      byTestId('error'),
    );
    expect(await page.textContent(byTestId('error'))).toContain('Llama-2-7b-hf');
    expect(await page.$(`${byTestId('tenant')} option[value="other"]`)).toBeNull();
    expect(consoleErrors).toEqual([]);
  });

  it('a backend that cannot start is a message in the page', async () => {
    // Without --enable-unsafe-webgpu Chromium offers no WebGPU adapter here.
    const plain = await chromium.launch({
      executablePath: chromiumPath as string,
      args: CHROMIUM_FLAGS,
    });
    try {
      const p = await plain.newPage();
      const errors: string[] = [];
      p.on('pageerror', (e) => errors.push(e.message));
      await p.goto(`${server.url}?backend=webgpu`);
      await p.waitForSelector('body[data-ready]', { state: 'attached', timeout: 120_000 });
      expect(await p.getAttribute('body', 'data-ready')).toBe('error');
      expect(await p.textContent(byTestId('backend'))).toBe('failed');
      const msg = (await p.textContent(byTestId('error'))) ?? '';
      expect(msg).toContain('webgpu');
      expect(msg).toContain('could not start');
      expect(errors).toEqual([]);
    } finally {
      await plain.close();
    }
  });
});
