/**
 * End to end in a real browser: Debian's Chromium (never a downloaded one), driven by
 * playwright-core, on the built app served by scripts/serve.mjs.
 *
 *   - the page introduces PARA (text, SVG diagram, the bundled tenants) and shows the backbone
 *     loading in bytes and percent
 *   - the backend is the fastest of a measured warm-up benchmark (tokens/s in the report),
 *     cached in localStorage for the next visit; `?backend=` skips it
 *   - `?kernels=generic` starts webgpu without the fused WGSL kernels, the backend report says
 *     which set runs, and both sets give `para generate`'s greedy text
 *   - greedy generation for two tenants gives the text `para generate --adapter` gives in Node;
 *     so does each tenant's first test example, and its ✓/✗ is exact match on that text
 *   - side by side (one mixed batch) gives each tenant its own task's example, with expected
 *     answers and ✓/✗ consistent with them; with one prompt, each tenant's own text
 *   - evaluate's exact match (tenant and bare) equals `para eval --limit N` on the same examples
 *   - the vectors heatmap differs between two prompts and shows the vectors @para/adapters'
 *     paraPromptVectors computes in Node (within 1e-4)
 *   - a short in-browser fine-tune lowers the loss (progress: step / total, tokens/s, ETA, lr;
 *     integer step axis); the one zip it downloads, unzipped, gives in `para logits --adapter`
 *     the logits the page computes and in `para eval` the page's exact match
 *   - every control is labelled, the page fits a phone width and 400% zoom, works by keyboard
 *   - bad input (malformed JSONL, an adapter for another backbone, a backend that cannot start)
 *     is a message in the page, not a console error
 *   - screenshots go to test-results/ (web-demo.png is the README's)
 *
 * Without Chromium the suite is skipped with the reason, unless PARA_E2E_REQUIRED=1 (CI).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAdapter, ParaAdapter, paraPromptVectors } from '@para/adapters/node';
import { initBackend } from '@para/core/node';
import { loadModel } from '@para/model/node';
import { loadTokenizer } from '@para/tokenizer/node';
import { unzipSync } from 'fflate';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
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
const TENANTS = ['antonym', 'arithmetic', 'category', 'pos'];
/** The answer exact match reads: up to the first newline, trimmed. */
const answerOf = (text: string) =>
  (text.includes('\n') ? text.slice(0, text.indexOf('\n')) : text).trim();

/** Largest |a - b| over layer → target → entry (Infinity when the shapes differ). */
function maxDiff(a: ArrayLike<number>[][], b: ArrayLike<number>[][]): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const la = a[i] as ArrayLike<number>[];
    const lb = b[i] ?? [];
    if (la.length !== lb.length) return Number.POSITIVE_INFINITY;
    for (let j = 0; j < la.length; j++) {
      const x = la[j] as ArrayLike<number>;
      const y = lb[j] as ArrayLike<number>;
      if (x.length !== y.length) return Number.POSITIVE_INFINITY;
      for (let k = 0; k < x.length; k++)
        m = Math.max(m, Math.abs((x[k] as number) - (y[k] as number)));
    }
  }
  return m;
}

async function firstTestExample(task: string): Promise<{ prompt: string; completion: string }> {
  const line = (await readFile(join(repo, 'data', 'tasks', task, 'test.jsonl'), 'utf8')).split(
    '\n',
  )[0];
  return JSON.parse(line as string) as { prompt: string; completion: string };
}

describe.skipIf(chromiumPath === null)('web demo in Chromium', () => {
  let server: { url: string; close(): Promise<void> };
  let browser: Browser;
  let context: BrowserContext;
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
    context = await browser.newContext({ acceptDownloads: true });
    page = await context.newPage();
    // Every text the loading line shows, to check it reports bytes and percent.
    await page.addInitScript(() => {
      const seen: string[] = [];
      (window as unknown as { loadTexts: string[] }).loadTexts = seen;
      new MutationObserver(() => {
        const t = document.querySelector('[data-testid="load-text"]')?.textContent;
        if (t && seen.at(-1) !== t) seen.push(t);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`console: ${m.text()}`);
    });
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready]', { state: 'attached', timeout: 600_000 });
  });

  afterAll(async () => {
    if (page !== undefined) {
      await mkdir(join(app, 'test-results'), { recursive: true });
      await page
        .screenshot({ path: join(app, 'test-results', 'web-demo-end.png'), fullPage: true })
        .catch(() => undefined);
    }
    await browser?.close();
    await server?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  async function generate(
    prompt: string,
    tenant: string,
    maxNewTokens: number,
    on: Page = page,
  ): Promise<string> {
    await on.fill(byTestId('prompt'), prompt);
    await on.selectOption(byTestId('tenant'), tenant);
    await on.fill(byTestId('max-new-tokens'), String(maxNewTokens));
    const before = await on.getAttribute(byTestId('output'), 'data-done');
    await on.click(byTestId('generate'));
    await on.waitForFunction(
      ([sel, prev]) => {
        const el = document.querySelector(sel as string) as HTMLElement;
        return el.dataset.done !== undefined && el.dataset.done !== prev;
      },
      [byTestId('output'), before],
      { timeout: 180_000 },
    );
    return (await on.textContent(byTestId('output'))) ?? '';
  }

  it('introduces PARA, the toy backbone and the tenants', async () => {
    const intro = (await page.textContent(byTestId('intro'))) ?? '';
    for (const words of [
      'PARA',
      'tenant',
      'one mixed batch',
      '4M-parameter toy',
      'WordNet',
      'cannot',
    ])
      expect(intro).toContain(words);
    expect(await page.$eval(`${byTestId('intro-diagram')} title`, (t) => t.textContent)).toMatch(
      /backbone/,
    );
    const listed = await page.$$eval(`${byTestId('tenant-list')} code`, (c) =>
      c.map((x) => x.textContent),
    );
    expect(listed.sort()).toEqual(TENANTS);
  });

  it('shows loading progress in bytes and percent', async () => {
    const texts = await page.evaluate(
      () => (window as unknown as { loadTexts: string[] }).loadTexts,
    );
    expect(texts.some((t) => /[\d.]+ MiB of [\d.]+ MiB \(\d+%\)/.test(t))).toBe(true);
    expect(await page.getAttribute(byTestId('load-bar'), 'value')).toBe('100');
  });

  it('runs on the fastest backend of its warm-up benchmark, cached for the next visit', async () => {
    expect(await page.getAttribute('body', 'data-ready')).toBe('true');
    expect(await page.isHidden(byTestId('error'))).toBe(true);
    expect(await page.getAttribute('body', 'data-bench')).toBe('measured');
    const measured = await page.$$eval(`${byTestId('backend-report')} li`, (lis) =>
      lis.map((li) => ({
        name: (li as HTMLElement).dataset.backend,
        tps: (li as HTMLElement).dataset.tokensPerSec,
        text: li.textContent ?? '',
      })),
    );
    const timed = measured.filter((m) => m.tps !== undefined);
    expect(timed.length).toBeGreaterThanOrEqual(2); // webgpu, webgl, wasm and cpu start here
    for (const m of timed) expect(m.text).toMatch(/measured [\d.]+ tokens\/s/);
    const best = timed.reduce((a, b) => (Number(b.tps) > Number(a.tps) ? b : a));
    const active = await page.textContent(byTestId('backend'));
    expect(active).toBe(best.name);
    expect(measured.find((m) => m.name === active)?.text).toContain(
      'active (fastest measured here)',
    );
    // A second visit reuses the figures (localStorage) instead of measuring again.
    const again = await context.newPage();
    try {
      await again.goto(server.url);
      await again.waitForSelector('body[data-ready]', { state: 'attached', timeout: 300_000 });
      expect(await again.getAttribute('body', 'data-bench')).toBe('cached');
      expect(await again.textContent(byTestId('backend'))).toBe(active);
      expect(await again.textContent(byTestId('backend-report'))).toMatch(
        /measured [\d.]+ tokens\/s/,
      );
    } finally {
      await again.close();
    }
  });

  it("each tenant's example prompt gives the CLI's greedy text, and ✓/✗ is exact match on it", async () => {
    let correct = 0;
    for (const tenant of TENANTS) {
      await page.selectOption(byTestId('tenant'), tenant);
      await page.click(byTestId('example'));
      const first = await firstTestExample(tenant);
      // The examples of a task load on its first click; wait for this task's, not the last one's.
      await page.waitForSelector(`${byTestId('expected')}[data-task="${tenant}"]`);
      expect(await page.inputValue(byTestId('prompt'))).toBe(first.prompt);
      expect(await page.textContent(byTestId('expected'))).toBe(first.completion.trim());
      const before = await page.getAttribute(byTestId('output'), 'data-done');
      await page.fill(byTestId('max-new-tokens'), '8');
      await page.click(byTestId('generate'));
      await page.waitForFunction(
        ([sel, prev]) => {
          const e = document.querySelector(sel as string) as HTMLElement;
          return e.dataset.done !== undefined && e.dataset.done !== prev;
        },
        [byTestId('output'), before],
        { timeout: 180_000 },
      );
      const browserText = (await page.textContent(byTestId('output'))) ?? '';
      const node = para<{ text: string }>([
        'generate',
        '--prompt',
        first.prompt,
        '--adapter',
        join(repo, 'assets', 'adapters', tenant),
        '--json',
        '-n',
        '8',
      ]);
      expect(browserText, tenant).toBe(node.text);
      const ok = answerOf(node.text) === first.completion.trim();
      expect(await page.getAttribute(byTestId('verdict'), 'data-correct'), tenant).toBe(String(ok));
      expect(await page.textContent(byTestId('verdict'))).toContain(ok ? '✓' : '✗');
      if (ok) correct++;
    }
    expect(correct).toBeGreaterThan(0); // pos answers its first example ("noun")
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

  /** Clicks "Run side by side" and waits for this run's table (not the previous one's). */
  async function runSideBySide(): Promise<void> {
    const before = await page.getAttribute(byTestId('side-output'), 'data-done');
    await page.click(byTestId('side-by-side'));
    await page.waitForFunction(
      ([sel, prev]) => {
        const e = document.querySelector(sel as string) as HTMLElement;
        return e.dataset.done !== undefined && e.dataset.done !== prev;
      },
      [byTestId('side-output'), before],
      { timeout: 180_000 },
    );
  }

  it("side by side gives each tenant its own task's example in one batch, with expected answers and ✓/✗", async () => {
    await page.selectOption(byTestId('side-mode'), 'examples');
    await page.fill(byTestId('side-example'), '1');
    await page.fill(byTestId('max-new-tokens'), '8');
    for (const box of await page.$$(`${byTestId('side-tenants')} input`)) await box.check();
    await runSideBySide();
    const rows = await page.$$eval(`${byTestId('side-output')} tbody tr`, (trs) =>
      trs.map((tr) => ({
        tenant: (tr as HTMLElement).dataset.tenant,
        correct: (tr as HTMLElement).dataset.correct,
        prompt: tr.querySelector('td.prompt')?.textContent ?? '',
        expected: tr.querySelector('td.expected')?.textContent ?? '',
        text: tr.querySelector('td.out')?.textContent ?? '',
        mark: tr.querySelector('td.mark')?.textContent ?? '',
      })),
    );
    expect(rows).toHaveLength(2 * TENANTS.length); // each tenant, and the bare backbone on its prompt
    for (const tenant of TENANTS) {
      const first = await firstTestExample(tenant);
      const own = rows.filter((r) => r.prompt === first.prompt);
      expect(own.map((r) => r.tenant).sort(), tenant).toEqual(['bare', tenant].sort());
      for (const r of own) expect(r.expected).toBe(first.completion.trim());
    }
    for (const r of rows) {
      const ok = answerOf(r.text) === r.expected;
      expect(r.correct, `${r.tenant}: ${r.text}`).toBe(String(ok));
      expect(r.mark).toBe(ok ? '✓' : '✗');
    }
    expect(rows.find((r) => r.tenant === 'pos')?.mark).toBe('✓');
    expect(rows.filter((r) => r.tenant === 'bare').every((r) => r.mark === '✗')).toBe(true);
    // In the batch, a row is what its tenant gives alone (the CLI, stopping at a newline here).
    const pos = rows.find((r) => r.tenant === 'pos');
    const alone = para<{ text: string }>([
      'generate',
      '--prompt',
      pos?.prompt as string,
      '--adapter',
      join(repo, 'assets', 'adapters', 'pos'),
      '--json',
      '-n',
      '8',
    ]);
    expect(answerOf(alone.text)).toBe(answerOf(pos?.text as string));
  });

  it('side by side with one prompt runs the tenants in one batch and shows each its own output', async () => {
    await page.selectOption(byTestId('side-mode'), 'prompt');
    const prompt = '14+49=';
    await page.fill(byTestId('prompt'), prompt);
    await page.fill(byTestId('max-new-tokens'), '4');
    await runSideBySide();
    const rows = await page.$$eval(`${byTestId('side-output')} tbody tr`, (trs) =>
      trs.map((tr) => ({
        tenant: (tr as HTMLElement).dataset.tenant,
        text: tr.querySelector('td.out')?.textContent ?? '',
      })),
    );
    expect(rows.map((r) => r.tenant)).toContain('bare');
    const arithmetic = rows.find((r) => r.tenant === 'arithmetic')?.text;
    expect(arithmetic).toBe(await generate(prompt, 'arithmetic', 4));
  });

  async function evaluate(tenant: string, task: string, n: number) {
    await page.selectOption(byTestId('eval-tenant'), tenant);
    await page.selectOption(byTestId('eval-task'), task);
    await page.fill(byTestId('eval-n'), String(n));
    const before = await page.getAttribute(byTestId('eval-status'), 'data-done');
    await page.click(byTestId('evaluate'));
    await page.waitForFunction(
      ([sel, prev]) => {
        const e = document.querySelector(sel as string) as HTMLElement;
        return e.dataset.done !== undefined && e.dataset.done !== prev;
      },
      [byTestId('eval-status'), before],
      { timeout: 300_000 },
    );
    // The newest result is the first bar group.
    return page.$eval(`${byTestId('eval-chart')} .bar-group`, (g) => ({
      tenant: (g as HTMLElement).dataset.tenant,
      task: (g as HTMLElement).dataset.task,
      n: Number((g as HTMLElement).dataset.n),
      adapted: Number((g as HTMLElement).dataset.exactMatch),
      bare: Number((g as HTMLElement).dataset.bareExactMatch),
      text: g.textContent ?? '',
    }));
  }

  it("evaluate's exact match (tenant and bare) equals `para eval --limit N` on the same examples", async () => {
    const n = 16;
    const r = await evaluate('pos', 'pos', n);
    expect(r).toMatchObject({ tenant: 'pos', task: 'pos', n });
    const data = join(repo, 'data', 'tasks', 'pos', 'test.jsonl');
    const adapted = para<{ exact_match: number; n: number }>([
      'eval',
      '--data',
      data,
      '--adapter',
      join(repo, 'assets', 'adapters', 'pos'),
      '--limit',
      String(n),
      '--json',
    ]);
    const bare = para<{ exact_match: number; n: number }>([
      'eval',
      '--data',
      data,
      '--limit',
      String(n),
      '--json',
    ]);
    expect(adapted.n).toBe(n);
    expect(r.adapted).toBeCloseTo(adapted.exact_match, 10);
    expect(r.bare).toBeCloseTo(bare.exact_match, 10);
    expect(r.adapted).toBeGreaterThan(r.bare); // pos is the toy's best task
    expect(r.text).toContain(`${Math.round(adapted.exact_match * n)}/${n}`);
  });

  it('the vectors heatmap differs between two prompts and shows the vectors @para/adapters computes in Node', async () => {
    const prompts = ['Part of speech of gracefully:', 'Opposite of definite:'];
    await page.selectOption(byTestId('vec-tenant'), 'pos');
    await page.fill(byTestId('vec-prompt-a'), prompts[0] as string);
    await page.fill(byTestId('vec-prompt-b'), prompts[1] as string);
    await page.click(byTestId('vectors'));
    await page.waitForSelector(`${byTestId('heatmap-legend')}[data-done]`, {
      state: 'attached',
      timeout: 180_000,
    });
    const pixels = await page.evaluate(() =>
      ['heatmap-a', 'heatmap-b'].map((id) => {
        const c = document.querySelector(`[data-testid="${id}"]`) as HTMLCanvasElement;
        const d = (c.getContext('2d') as CanvasRenderingContext2D).getImageData(
          0,
          0,
          c.width,
          c.height,
        ).data;
        let white = 0;
        for (let i = 0; i < d.length; i += 4)
          if (d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255) white++;
        return { url: c.toDataURL(), w: c.width, h: c.height, white, total: d.length / 4 };
      }),
    );
    expect(pixels[0]?.url).not.toBe(pixels[1]?.url);
    for (const p of pixels) {
      expect(p.w).toBeGreaterThan(300); // a few hundred columns
      expect(p.white).toBeLessThan(0.9 * p.total); // coloured, not blank
    }
    const shown = await page.evaluate(() => window.paraDemo.heatmap());
    expect(shown?.tenant).toBe('pos');
    expect(shown?.prompts).toEqual(prompts);

    await initBackend({ backend: 'wasm' });
    const model = await loadModel(join(repo, 'assets', 'backbone'));
    const tok = await loadTokenizer(join(repo, 'assets', 'backbone'));
    const adapter = await loadAdapter(join(repo, 'assets', 'adapters', 'pos'), model);
    try {
      expect(adapter).toBeInstanceOf(ParaAdapter);
      let worst = 0;
      let between = 0;
      const nodeSets = [];
      for (const [p, prompt] of prompts.entries()) {
        const ids = tok.encode(prompt, { addSpecialTokens: true });
        const v = await paraPromptVectors(model, adapter as ParaAdapter, ids);
        nodeSets.push(v);
        const b = shown?.vectors[p];
        expect(b?.targets).toEqual([...v.targets]);
        expect(b?.dims).toEqual([...v.dims]);
        expect(b?.layers).toHaveLength(model.config.numLayers);
        worst = Math.max(worst, maxDiff(v.layers, b?.layers ?? []));
      }
      const [a, b] = nodeSets;
      between = maxDiff(a?.layers ?? [], b?.layers ?? []);
      expect(worst).toBeLessThan(1e-4);
      expect(between).toBeGreaterThan(1e-2); // the prompts give different vectors
    } finally {
      adapter.dispose();
      model.dispose();
    }
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
    expect(await page.textContent(byTestId('train-status'))).toContain('done: 6 steps');
    const axis = await page.evaluate(() => window.paraDemo.lossChart());
    expect(axis.steps).toEqual([1, 2, 3, 4, 5, 6]); // the whole curve
    expect(axis.ticks.length).toBeGreaterThan(1);
    for (const t of axis.ticks) expect(t).toMatch(/^\d+$/); // whole steps, no 1.5
    expect(
      axis.progress.some((t) =>
        /^step \d+ \/ 6 · [\d,]+ tokens\/s · elapsed [\d:]+ · ETA [\d:]+ · lr [\d.]+e[-+]\d+$/.test(
          t,
        ),
      ),
    ).toBe(true);

    await mkdir(join(app, 'test-results'), { recursive: true });
    await page.screenshot({
      path: join(app, 'test-results', 'web-demo-trained.png'),
      fullPage: true,
    });

    const dir = join(work, 'browser-tuned'); // where the zip's folder unpacks
    await mkdir(dir);
    await page.selectOption(byTestId('download-tenant'), 'browser-tuned');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click(byTestId('download-adapter')),
    ]);
    expect(download.suggestedFilename()).toBe('browser-tuned.zip');
    const zipPath = join(work, 'browser-tuned.zip');
    await download.saveAs(zipPath);
    const files = unzipSync(new Uint8Array(await readFile(zipPath)));
    // one folder holding both files (fflate also writes the folder's own entry)
    const names = Object.keys(files).filter((n) => !n.endsWith('/'));
    expect(names.sort()).toEqual([
      'browser-tuned/adapter_config.json',
      'browser-tuned/adapter_model.safetensors',
    ]);
    expect(Object.keys(files).every((n) => n.startsWith('browser-tuned/'))).toBe(true);
    for (const name of names) await writeFile(join(work, name), files[name] as Uint8Array);
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

    // The page's evaluation of the new tenant is `para eval` of the downloaded adapter.
    const r = await evaluate('browser-tuned', 'category', 8);
    const node = para<{ exact_match: number }>([
      'eval',
      '--data',
      join(repo, 'data', 'tasks', 'category', 'test.jsonl'),
      '--adapter',
      dir,
      '--limit',
      '8',
      '--json',
    ]);
    expect(r.adapted).toBeCloseTo(node.exact_match, 10);
  });

  it('every control is labelled; the page fits a phone and 400% zoom, and works by keyboard', async () => {
    // The README's screenshot: every part used (examples, evaluation, vectors, a fine-tune),
    // side by side back on each tenant's own example.
    await page.selectOption(byTestId('side-mode'), 'examples');
    await page.fill(byTestId('side-example'), '1');
    await page.fill(byTestId('max-new-tokens'), '8');
    await page.selectOption(byTestId('vec-tenant'), 'pos');
    await runSideBySide();
    await page.screenshot({ path: join(app, 'test-results', 'web-demo.png'), fullPage: true });
    const unlabelled = await page.$$eval('input, select, textarea, button', (els) =>
      els
        .filter((e) => {
          const c = e as HTMLInputElement;
          if (c.type === 'hidden') return false;
          const name =
            (c.labels?.length ?? 0) > 0 ||
            (c.getAttribute('aria-label') ?? '') !== '' ||
            (e.tagName === 'BUTTON' && (e.textContent ?? '').trim() !== '');
          return !name;
        })
        .map((e) => e.outerHTML.slice(0, 80)),
    );
    expect(unlabelled).toEqual([]);
    expect(consoleErrors).toEqual([]);
    // Keyboard: Tab reaches "Try an example", Enter takes one.
    await page.focus(byTestId('tenant'));
    await page.selectOption(byTestId('tenant'), 'antonym');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => (document.activeElement as HTMLElement).dataset.testid)).toBe(
      'example',
    );
    await page.keyboard.press('Enter');
    await page.waitForFunction(
      (sel) => (document.querySelector(sel) as HTMLTextAreaElement).value.startsWith('Opposite of'),
      byTestId('prompt'),
    );
    // A phone (375 px) and 400% zoom of a 1280 px window (320 CSS px): no sideways scrolling.
    for (const width of [375, 320]) {
      await page.setViewportSize({ width, height: 800 });
      await page.waitForTimeout(300);
      const { over, wide } = await page.evaluate(() => ({
        over: document.documentElement.scrollWidth - window.innerWidth,
        wide: [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
          .filter((e) => e.closest('.scroll') === null || e.classList.contains('scroll'))
          .slice(0, 5)
          .map((e) => `${e.tagName.toLowerCase()}[data-testid=${e.getAttribute('data-testid')}]`),
      }));
      expect(over, `${width} px: ${wide.join(', ')}`).toBeLessThanOrEqual(0);
      if (width === 375)
        await page.screenshot({
          path: join(app, 'test-results', 'web-demo-phone.png'),
          fullPage: true,
        });
    }
    await page.setViewportSize({ width: 1280, height: 720 });
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
    // The main thread is free while the worker trains: a frame is drawn before the 500 steps end.
    // (Were training on the main thread, the frame would come only after it, with the status done.)
    const trainingAtFrame = await page.evaluate(
      (sel) =>
        new Promise<boolean>((resolve) =>
          requestAnimationFrame(() =>
            resolve((document.querySelector(sel) as HTMLElement).dataset.done === undefined),
          ),
        ),
      byTestId('train-status'),
    );
    expect(trainingAtFrame).toBe(true);
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

  it('?kernels=generic runs webgpu on tfjs generic ops, the report says which, and both kernel sets give the CLI greedy text', async () => {
    const prompt = '14+49=';
    const node = para<{ text: string }>([
      'generate',
      '--prompt',
      prompt,
      '--adapter',
      join(repo, 'assets', 'adapters', 'arithmetic'),
      '--json',
      '-n',
      '4',
    ]);
    const seen: Record<string, string> = {};
    for (const [query, kernels, says] of [
      ['?backend=webgpu', 'fused', 'fused kernels: @para/webgpu WGSL (ParaRmsNorm'],
      ['?backend=webgpu&kernels=generic', 'generic', 'fused kernels: off'],
    ] as const) {
      const p = await context.newPage();
      try {
        const errors: string[] = [];
        p.on('pageerror', (e) => errors.push(e.message));
        await p.goto(`${server.url}${query}`);
        await p.waitForSelector('body[data-ready]', { state: 'attached', timeout: 300_000 });
        expect(await p.getAttribute('body', 'data-ready'), query).toBe('true');
        expect(await p.getAttribute('body', 'data-kernels')).toBe(kernels);
        expect(await p.textContent(byTestId('backend'))).toBe('webgpu');
        const report =
          (await p.textContent(`${byTestId('backend-report')} li[data-backend="webgpu"]`)) ?? '';
        expect(report, query).toContain(says);
        if (kernels === 'generic') expect(report).toContain('?kernels=generic');
        seen[kernels] = await generate(prompt, 'arithmetic', 4, p);
        expect(seen[kernels], query).toBe(node.text);
        expect(errors).toEqual([]);
      } finally {
        await p.close();
      }
    }
    // Anything else is refused, in the page.
    const bad = await context.newPage();
    try {
      await bad.goto(`${server.url}?backend=wasm&kernels=fast`);
      await bad.waitForSelector('body[data-ready]', { state: 'attached', timeout: 120_000 });
      expect(await bad.getAttribute('body', 'data-ready')).toBe('error');
      expect(await bad.textContent(byTestId('error'))).toContain(
        '?kernels= must be fused or generic, not "fast"',
      );
    } finally {
      await bad.close();
    }
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
      expect(await p.getAttribute('body', 'data-bench')).toBe('skipped');
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
