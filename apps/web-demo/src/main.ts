/**
 * The page: wires the DOM (stable `data-testid` hooks, listed in the README) to the engine in
 * the Web Worker. All model work happens in the worker; this file only renders.
 *
 * Backend: on the first visit each backend that starts here is timed (a warm-up, then a short
 * greedy generation, each in its own worker) and the fastest is used; the figures are cached in
 * localStorage. URL parameters: `?backend=webgpu|webgl|wasm|cpu` starts that backend (or shows
 * why it cannot) without measuring; `?kernels=generic` starts webgpu without @para/webgpu's fused
 * WGSL kernels (tfjs's generic ops only, to compare the two; `fused`, the default, with them).
 * The backend report says which (`fused kernels: @para/webgpu WGSL (…)` or `fused kernels: off`).
 */
import { zipSync } from 'fflate';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { BackendReport } from '@para/core';
import type { EvaluateOutput, ExampleOutput, ExampleRow, TenantInfo } from './engine';
import { binVector, heatScale, type VectorSet } from './heatmap';
import { refuseLargeUpload } from './limits';
import type { ErrorData, InitResult, Request, WorkerEvent, WorkerMessage } from './protocol';

// ---- the worker, as promises ------------------------------------------------------------

class WorkerError extends Error {
  constructor(readonly data: ErrorData) {
    super(data.message);
  }
}

type RequestOf<T extends Request['type']> = Omit<Extract<Request, { type: T }>, 'type'>;

class EngineClient {
  private next = 1;
  private readonly pending = new Map<
    number,
    {
      resolve: (v: unknown) => void;
      reject: (e: Error) => void;
      onEvent?: (e: WorkerEvent) => void;
    }
  >();
  readonly worker: Worker;
  constructor() {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
    this.worker.onmessage = (m: MessageEvent<WorkerMessage>) => {
      const msg = m.data;
      const p = this.pending.get(msg.id);
      if (p === undefined) return;
      if (msg.type === 'event') p.onEvent?.(msg.event);
      else {
        this.pending.delete(msg.id);
        if (msg.type === 'result') p.resolve(msg.value);
        else p.reject(new WorkerError(msg.error));
      }
    };
    this.worker.onerror = (e) => {
      const err = new Error(`the worker failed: ${e.message}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }
  call<T extends Request['type'], R = unknown>(
    type: T,
    payload: RequestOf<T>,
    onEvent?: (e: WorkerEvent) => void,
    transfer: Transferable[] = [],
  ): Promise<R> {
    const id = this.next++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject,
        ...(onEvent === undefined ? {} : { onEvent }),
      });
      this.worker.postMessage({ id, request: { type, ...payload } }, transfer);
    });
  }
  terminate(): void {
    this.worker.terminate();
    const err = new Error('the worker was stopped');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

// ---- DOM helpers -------------------------------------------------------------------------

function $<T extends HTMLElement = HTMLElement>(testid: string): T {
  const el = document.querySelector<T>(`[data-testid="${testid}"]`);
  if (el === null) throw new Error(`missing element ${testid}`);
  return el;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  cls?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls !== undefined) e.className = cls;
  return e;
}

function showError(message: string): void {
  const e = $('error');
  e.textContent = message;
  e.hidden = false;
}

function clearError(): void {
  const e = $('error');
  e.textContent = '';
  e.hidden = true;
}

/** Runs an action, showing any error in the page (never only in the console). */
async function guarded(action: () => Promise<void>): Promise<void> {
  clearError();
  try {
    await action();
  } catch (e) {
    showError(e instanceof Error ? e.message : String(e));
  }
}

const BUTTONS = [
  'generate',
  'side-by-side',
  'evaluate',
  'vectors',
  'train-start',
  'adapter-upload',
  'download-adapter',
];
function setBusy(busy: boolean): void {
  for (const id of BUTTONS) $<HTMLButtonElement>(id).disabled = busy;
}

function download(name: string, data: BlobPart, type: string): void {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  const s = Math.round(ms / 1000);
  const m = Math.floor(s / 60);
  return m >= 60
    ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`
    : `${m}:${String(s % 60).padStart(2, '0')}`;
}
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** The answer exact match reads from generated text: up to the first newline, trimmed. */
const answerOf = (text: string) => {
  const nl = text.indexOf('\n');
  return (nl >= 0 ? text.slice(0, nl) : text).trim();
};

// ---- state -------------------------------------------------------------------------------

let client: EngineClient | null = null;
function engine(): EngineClient {
  if (client === null) throw new Error('the model is not loaded yet');
  return client;
}
let tenants: TenantInfo[] = [];
let tasks: string[] = [];
const examples = new Map<string, { prompt: string; completion: string }[]>();

async function examplesOf(task: string): Promise<{ prompt: string; completion: string }[]> {
  const cached = examples.get(task);
  if (cached !== undefined) return cached;
  const list = await engine().call<'examples', { prompt: string; completion: string }[]>(
    'examples',
    { task, count: 200 },
  );
  examples.set(task, list);
  return list;
}

function fill(
  select: HTMLSelectElement,
  options: { value: string; label: string }[],
  want?: string,
) {
  const current = want ?? select.value;
  select.replaceChildren(...options.map((o) => new Option(o.label, o.value)));
  if (options.some((o) => o.value === current)) select.value = current;
}

function renderTenants(select?: string): void {
  const adapters = tenants.map((t) => ({
    value: t.name,
    label: `${t.name} (${t.method}, ${fmtInt(t.parameters)} parameters, ${t.source}${t.task ? `, task ${t.task}` : ''})`,
  }));
  fill(
    $<HTMLSelectElement>('tenant'),
    [{ value: 'bare', label: 'bare backbone (no adapter)' }, ...adapters],
    select,
  );
  fill(
    $<HTMLSelectElement>('download-tenant'),
    tenants.map((t) => ({ value: t.name, label: t.name })),
    select,
  );
  fill($<HTMLSelectElement>('eval-tenant'), adapters, select);
  fill(
    $<HTMLSelectElement>('vec-tenant'),
    tenants.filter((t) => t.method === 'PARA').map((t) => ({ value: t.name, label: t.name })),
    select,
  );
  syncEvalTask();
  const side = $('side-tenants');
  const ticked = new Set(
    [...side.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value),
  );
  const fresh = side.childElementCount === 0;
  side.replaceChildren(
    ...['bare', ...tenants.map((t) => t.name)].map((name) => {
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = name;
      box.checked = fresh || ticked.has(name) || name === select;
      label.append(box, name);
      return label;
    }),
  );
}

const tenantInfo = (name: string) => tenants.find((t) => t.name === name);

function syncEvalTask(): void {
  const t = tenantInfo($<HTMLSelectElement>('eval-tenant').value);
  if (t?.task !== undefined) $<HTMLSelectElement>('eval-task').value = t.task;
}
$('eval-tenant').addEventListener('change', syncEvalTask);

// ---- loss chart (uPlot) ------------------------------------------------------------------

const lossData: [number[], number[]] = [[], []];
/** Every progress line of the current run (window.paraDemo.lossChart, for tests). */
const trainProgress: string[] = [];
let totalSteps = 1;
const chartBox = $('train-chart');
const chartWidth = () => Math.max(240, Math.min(900, chartBox.clientWidth || 640));
const chart = new uPlot(
  {
    width: chartWidth(),
    height: 200,
    legend: { show: false },
    scales: {
      x: { time: false, range: () => [1, Math.max(2, totalSteps)] },
    },
    series: [{ label: 'step' }, { label: 'loss', stroke: '#3558d4', width: 2 }],
    axes: [
      {
        label: 'step',
        // whole steps only: integer increments, integer labels
        incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000],
        values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : '')),
      },
      { label: 'loss' },
    ],
  },
  lossData,
  chartBox,
);
new ResizeObserver(() => chart.setSize({ width: chartWidth(), height: 200 })).observe(chartBox);

// ---- backend choice by measurement -------------------------------------------------------

/** `?kernels=`: 'fused' (default) or 'generic'; anything else is refused (a message in the page). */
type KernelMode = 'fused' | 'generic';
function kernelMode(): KernelMode {
  const k = new URLSearchParams(location.search).get('kernels');
  if (k === null || k === '' || k === 'fused') return 'fused';
  if (k === 'generic') return 'generic';
  throw new Error(`?kernels= must be fused or generic, not ${JSON.stringify(k)}`);
}

const BENCH_KEYS: Record<KernelMode, string> = {
  fused: 'para-web-demo.backend-bench.v1',
  // Measured without the fused kernels: its own figures (webgpu's rank may differ).
  generic: 'para-web-demo.backend-bench.v1.generic-kernels',
};
let benchKey = BENCH_KEYS.fused;
let kernelChoice: KernelMode = 'fused';
const BENCH_TOKENS = 8;
const BENCH_TIMEOUT_MS = 120_000;

interface BenchResult {
  backend: string;
  tokensPerSec: number | null;
  error?: string;
}
interface BenchCache {
  userAgent: string;
  at: string;
  results: BenchResult[];
}

function readBenchCache(): BenchCache | null {
  try {
    const raw = localStorage.getItem(benchKey);
    if (raw === null) return null;
    const c = JSON.parse(raw) as BenchCache;
    if (c.userAgent !== navigator.userAgent || !Array.isArray(c.results)) return null;
    return c;
  } catch {
    return null;
  }
}

function fastest(results: readonly BenchResult[]): BenchResult | null {
  let best: BenchResult | null = null;
  for (const r of results)
    if (r.tokensPerSec !== null && (best === null || r.tokensPerSec > (best.tokensPerSec ?? 0)))
      best = r;
  return best;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** A worker with the engine loaded on `backend` (auto when undefined), showing load progress. */
async function startEngine(
  backend: string | undefined,
  label: string,
): Promise<{ c: EngineClient; r: InitResult }> {
  const base = new URL(import.meta.env.BASE_URL, location.href);
  const c = new EngineClient();
  const bar = $<HTMLProgressElement>('load-bar');
  const text = $('load-text');
  bar.value = 0;
  text.textContent = `${label}: starting the backend…`;
  try {
    const r = await c.call<'init', InitResult>(
      'init',
      {
        ...(backend === undefined ? {} : { backend }),
        assetBase: new URL('static/', base).href,
        wasmPaths: new URL('static/tfjs-wasm/', base).href,
        kernels: kernelChoice,
      },
      (e) => {
        if (e.kind !== 'load') return;
        const p = e.total === null ? null : Math.min(100, (100 * e.loaded) / e.total);
        if (p !== null) bar.value = p;
        text.textContent = `${label}: backbone and adapters ${mib(e.loaded)}${e.total === null ? '' : ` of ${mib(e.total)} (${p?.toFixed(0)}%)`}`;
      },
    );
    bar.value = 100;
    return { c, r };
  } catch (e) {
    c.terminate();
    throw e;
  }
}

function renderReport(report: BackendReport, results: readonly BenchResult[], how: string): void {
  $('backend').textContent = report.active;
  const measured = new Map(results.map((r) => [r.backend, r]));
  $('backend-report').replaceChildren(
    ...report.backends.map((b) => {
      const li = document.createElement('li');
      li.dataset.backend = b.name;
      const m = measured.get(b.name);
      if (m?.tokensPerSec != null) li.dataset.tokensPerSec = String(m.tokensPerSec);
      const speed =
        m === undefined
          ? ''
          : m.tokensPerSec === null
            ? ` — not measured: ${m.error ?? 'failed'}`
            : ` — measured ${m.tokensPerSec.toFixed(1)} tokens/s`;
      const state = b.name === report.active ? `active (${how})` : b.state;
      const why = b.state === 'unavailable' && b.reason ? ` — ${b.reason}` : '';
      li.textContent = `${b.name}: ${state}${b.detail ? ` (${b.detail})` : ''}${speed}${why}`;
      return li;
    }),
  );
}

/**
 * Starts the engine on the backend the URL asks for, or the fastest measured one (measuring
 * each available backend first when nothing is cached).
 */
async function chooseBackend(): Promise<{ c: EngineClient; r: InitResult }> {
  kernelChoice = kernelMode();
  benchKey = BENCH_KEYS[kernelChoice];
  document.body.dataset.kernels = kernelChoice;
  const asked = new URLSearchParams(location.search).get('backend');
  const cache = readBenchCache();
  if (asked) {
    document.body.dataset.bench = 'skipped';
    const s = await startEngine(asked, asked);
    renderReport(
      s.r.report,
      cache?.results ?? [],
      `asked for with ?backend=${kernelChoice === 'generic' ? ', ?kernels=generic' : ''}`,
    );
    return s;
  }
  const cachedBest = cache === null ? null : fastest(cache.results);
  if (cache !== null && cachedBest !== null) {
    try {
      const s = await startEngine(cachedBest.backend, cachedBest.backend);
      renderReport(s.r.report, cache.results, 'fastest measured here, cached');
      document.body.dataset.bench = 'cached';
      return s;
    } catch {
      localStorage.removeItem(benchKey); // the device changed: measure again
    }
  }
  // Measure: the automatic choice first, then every other backend that would start.
  let best = await startEngine(undefined, 'measuring');
  const results: BenchResult[] = [];
  const measure = async (c: EngineClient, name: string): Promise<number | null> => {
    $('load-text').textContent = `measuring ${name} (${BENCH_TOKENS} tokens after a warm-up)…`;
    try {
      const tps = await withTimeout(
        c.call<'quick-bench', number>('quick-bench', { tokens: BENCH_TOKENS }),
        BENCH_TIMEOUT_MS,
        `measuring ${name}`,
      );
      results.push({ backend: name, tokensPerSec: tps });
      return tps;
    } catch (e) {
      results.push({
        backend: name,
        tokensPerSec: null,
        error: e instanceof Error ? e.message : String(e),
      });
      return null;
    }
  };
  let bestTps = (await measure(best.c, best.r.report.active)) ?? -1;
  for (const b of best.r.report.backends) {
    if (b.state !== 'available') continue;
    let s: { c: EngineClient; r: InitResult };
    try {
      s = await withTimeout(
        startEngine(b.name, `measuring ${b.name}`),
        BENCH_TIMEOUT_MS,
        `starting ${b.name}`,
      );
    } catch (e) {
      results.push({
        backend: b.name,
        tokensPerSec: null,
        error: e instanceof Error ? e.message : String(e),
      });
      continue;
    }
    const tps = await measure(s.c, b.name);
    if (tps !== null && tps > bestTps) {
      best.c.terminate();
      best = s;
      bestTps = tps;
    } else s.c.terminate();
  }
  const entry: BenchCache = {
    userAgent: navigator.userAgent,
    at: new Date().toISOString(),
    results,
  };
  try {
    localStorage.setItem(benchKey, JSON.stringify(entry));
  } catch {
    // storage may be disabled: measure again next time
  }
  // The first worker's report lists every backend's state; show it with the chosen one active.
  renderReport(best.r.report, results, 'fastest measured here');
  document.body.dataset.bench = 'measured';
  return best;
}

$('bench-reset').addEventListener('click', () => {
  for (const key of Object.values(BENCH_KEYS)) localStorage.removeItem(key);
  const u = new URL(location.href);
  u.searchParams.delete('backend');
  location.href = u.href;
});

// ---- actions -----------------------------------------------------------------------------

async function init(): Promise<void> {
  try {
    const { c, r } = await chooseBackend();
    client = c;
    c.worker.onerror = (e) => showError(`the worker failed: ${e.message}`);
    $('load-text').textContent =
      `loaded: ${r.tenants.length} tenants, ${mib(r.manifest.bytes ?? 0)}`;
    $('model-info').textContent =
      `· backbone ${fmtInt(r.info.parameters)} parameters, ${r.info.layers} layers, d=${r.info.hiddenSize}, vocabulary ${r.info.vocabSize}`;
    tenants = r.tenants;
    tasks = r.tasks;
    fill(
      $<HTMLSelectElement>('eval-task'),
      tasks.map((t) => ({ value: t, label: t })),
    );
    renderTenants((tenants.find((t) => t.name === 'pos') ?? tenants[0])?.name); // pos: the bundled task the toy backbone does best
    $<HTMLSelectElement>('train-task').replaceChildren(
      ...r.tasks.map((t) => new Option(`bundled: ${t}`, t)),
      new Option('uploaded file', ''),
    );
    setBusy(false);
    document.body.dataset.ready = 'true';
  } catch (e) {
    $('backend').textContent = 'failed';
    $('load-text').textContent = 'not loaded';
    showError(`could not start: ${e instanceof Error ? e.message : String(e)}`);
    document.body.dataset.ready = 'error';
  }
}

// ---- playground: examples and generation -------------------------------------------------

/** The example the prompt box holds (cleared when the prompt is edited). */
let currentExample: { task: string; index: number; prompt: string; completion: string } | null =
  null;
const exampleIndex = new Map<string, number>();

$('prompt').addEventListener('input', () => {
  currentExample = null;
  $('example-info').textContent = '';
  $('verdict').textContent = '';
});

$('example').addEventListener('click', () =>
  guarded(async () => {
    // The previous example's line goes now, not when this one has loaded: until then the page
    // must not show an expected answer that belongs to another task.
    currentExample = null;
    $('example-info').textContent = '';
    $('verdict').textContent = '';
    const name = $<HTMLSelectElement>('tenant').value;
    const task =
      tenantInfo(name)?.task ??
      tasks[(exampleIndex.get('') ?? 0) % Math.max(1, tasks.length)] ??
      tasks[0];
    if (task === undefined) throw new Error('no bundled tasks to take an example from');
    if (tenantInfo(name)?.task === undefined) exampleIndex.set('', (exampleIndex.get('') ?? 0) + 1);
    const list = await examplesOf(task);
    const index = exampleIndex.get(task) ?? 0;
    exampleIndex.set(task, (index + 1) % list.length);
    const ex = list[index];
    if (ex === undefined) throw new Error(`task ${task} has no test examples`);
    currentExample = { task, index, ...ex };
    $<HTMLTextAreaElement>('prompt').value = ex.prompt;
    const info = $('example-info');
    info.textContent = `test example ${index + 1} of ${task} · expected answer: `;
    const exp = el('strong', ex.completion.trim());
    exp.dataset.testid = 'expected';
    exp.dataset.task = task;
    info.append(exp);
    $('verdict').textContent = '';
  }),
);

function renderVerdict(text: string): void {
  const v = $('verdict');
  delete v.dataset.correct;
  if (currentExample === null) {
    v.textContent = '';
    return;
  }
  const ok = answerOf(text) === currentExample.completion.trim();
  v.dataset.correct = String(ok);
  v.textContent = ok
    ? `✓ matches the expected answer "${currentExample.completion.trim()}"`
    : `✗ expected "${currentExample.completion.trim()}", got "${answerOf(text)}"`;
  v.className = ok ? 'good' : 'bad';
}

$('generate').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    const out = $('output');
    out.textContent = '';
    $('verdict').textContent = '';
    $('tokens-per-sec').textContent = '';
    try {
      const r = await engine().call<
        'generate',
        { text: string; tokensPerSec: number; ids: number[] }
      >(
        'generate',
        {
          prompt: $<HTMLTextAreaElement>('prompt').value,
          tenant: $<HTMLSelectElement>('tenant').value,
          maxNewTokens: Number($<HTMLInputElement>('max-new-tokens').value),
        },
        (e) => {
          if (e.kind !== 'text') return;
          out.textContent = e.text;
          $('tokens-per-sec').textContent =
            `${e.tokens} tokens · ${e.tokensPerSec.toFixed(1)} tokens/s`;
        },
      );
      out.textContent = r.text;
      $('tokens-per-sec').textContent =
        `${r.ids.length} tokens · ${r.tokensPerSec.toFixed(1)} tokens/s`;
      renderVerdict(r.text);
      out.dataset.done = String(Date.now());
    } finally {
      setBusy(false);
    }
  }),
);

// ---- side by side --------------------------------------------------------------------------

async function exampleRows(chosen: string[], k: number): Promise<ExampleRow[]> {
  const rows: ExampleRow[] = [];
  const adapters = chosen.filter((t) => t !== 'bare');
  const withBare = chosen.includes('bare');
  for (const name of adapters) {
    const task = tenantInfo(name)?.task;
    if (task === undefined) {
      rows.push({ tenant: name, prompt: $<HTMLTextAreaElement>('prompt').value });
      continue;
    }
    const list = await examplesOf(task);
    const ex = list[(k - 1) % list.length] as { prompt: string; completion: string };
    rows.push({ tenant: name, prompt: ex.prompt, expected: ex.completion });
    if (withBare) rows.push({ tenant: 'bare', prompt: ex.prompt, expected: ex.completion });
  }
  if (withBare && adapters.length === 0)
    rows.push({ tenant: 'bare', prompt: $<HTMLTextAreaElement>('prompt').value });
  return rows;
}

$('side-by-side').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    const table = $('side-output');
    (table.querySelector('tbody') as HTMLTableSectionElement).replaceChildren();
    $('side-speed').textContent = '';
    try {
      const chosen = [...$('side-tenants').querySelectorAll<HTMLInputElement>('input:checked')].map(
        (i) => i.value,
      );
      const maxNewTokens = Number($<HTMLInputElement>('max-new-tokens').value);
      let outputs: ExampleOutput[];
      let ms: number;
      let tokensPerSec: number;
      if ($<HTMLSelectElement>('side-mode').value === 'examples') {
        const k = Math.max(1, Math.floor(Number($<HTMLInputElement>('side-example').value) || 1));
        const r = await engine().call<
          'run-examples',
          { outputs: ExampleOutput[]; ms: number; tokensPerSec: number }
        >('run-examples', { rows: await exampleRows(chosen, k), maxNewTokens });
        ({ outputs, ms, tokensPerSec } = r);
      } else {
        const prompt = $<HTMLTextAreaElement>('prompt').value;
        const r = await engine().call<
          'side-by-side',
          {
            outputs: { tenant: string; text: string; ids: number[] }[];
            ms: number;
            tokensPerSec: number;
          }
        >('side-by-side', { prompt, tenants: chosen, maxNewTokens });
        outputs = r.outputs.map((o) => ({ ...o, prompt, answer: answerOf(o.text), correct: null }));
        ({ ms, tokensPerSec } = r);
      }
      const body = $('side-output').querySelector('tbody') as HTMLTableSectionElement;
      body.replaceChildren(
        ...outputs.map((o) => {
          const tr = document.createElement('tr');
          tr.dataset.tenant = o.tenant;
          if (o.expected !== undefined) tr.dataset.expected = o.expected.trim();
          if (o.correct !== null) tr.dataset.correct = String(o.correct);
          const mark = el('td', o.correct === null ? '–' : o.correct ? '✓' : '✗', 'mark');
          if (o.correct !== null) {
            mark.classList.add(o.correct ? 'good' : 'bad');
            mark.setAttribute('aria-label', o.correct ? 'correct' : 'wrong');
          }
          tr.append(
            el('td', o.tenant),
            el('td', o.prompt, 'prompt'),
            el('td', o.expected?.trim() ?? '', 'expected'),
            el('td', o.text, 'out'),
            mark,
          );
          return tr;
        }),
      );
      table.dataset.done = String(Date.now());
      $('side-speed').textContent =
        `${outputs.length} rows in one batch · ${(ms / 1000).toFixed(1)} s · ${tokensPerSec.toFixed(1)} tokens/s`;
    } finally {
      setBusy(false);
    }
  }),
);

// ---- evaluation --------------------------------------------------------------------------

interface EvalGroup {
  tenant: string;
  task: string;
  n: number;
  bare: EvaluateOutput;
  adapted: EvaluateOutput;
}
const evalGroups: EvalGroup[] = [];

function renderBars(): void {
  const chartEl = $('eval-chart');
  chartEl.replaceChildren(
    ...evalGroups.map((g) => {
      const group = el('div', undefined, 'bar-group');
      group.setAttribute('role', 'listitem');
      group.dataset.tenant = g.tenant;
      group.dataset.task = g.task;
      group.dataset.n = String(g.n);
      group.dataset.exactMatch = String(g.adapted.exactMatch);
      group.dataset.bareExactMatch = String(g.bare.exactMatch);
      group.append(el('div', `${g.tenant} on ${g.task}, ${g.n} test examples`, 'bar-title'));
      for (const [label, r, cls] of [
        ['bare backbone', g.bare, 'bare'],
        [g.tenant, g.adapted, 'adapted'],
      ] as const) {
        const row = el('div', undefined, 'bar-row');
        const name = el('span', label, 'bar-label');
        const track = el('span', undefined, 'bar-track');
        const fillEl = el('span', undefined, `bar-fill ${cls}`);
        fillEl.style.width = `${(100 * r.exactMatch).toFixed(1)}%`;
        track.append(fillEl);
        const value = el('span', `${pct(r.exactMatch)} (${r.correct}/${r.n})`, 'bar-value');
        row.append(name, track, value);
        group.append(row);
      }
      return group;
    }),
  );
}

async function runEvaluation(tenant: string, task: string, n: number): Promise<void> {
  const status = $('eval-status');
  delete status.dataset.done;
  const run = (t: string) =>
    engine().call<'evaluate', EvaluateOutput>('evaluate', { tenant: t, task, limit: n }, (e) => {
      if (e.kind === 'eval-progress')
        status.textContent = `${t === 'bare' ? 'bare backbone' : t}: ${e.done}/${e.total} examples…`;
    });
  status.textContent = `evaluating the bare backbone on ${task}…`;
  const bare = await run('bare');
  status.textContent = `evaluating ${tenant} on ${task}…`;
  const adapted = await run(tenant);
  evalGroups.unshift({ tenant, task, n: adapted.n, bare, adapted });
  renderBars();
  status.textContent = `${tenant}: ${pct(adapted.exactMatch)} exact match on ${adapted.n} ${task} examples, bare backbone ${pct(bare.exactMatch)} (${((bare.ms + adapted.ms) / 1000).toFixed(1)} s)`;
  status.dataset.done = String(Date.now());
}

$('evaluate').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    try {
      const tenant = $<HTMLSelectElement>('eval-tenant').value;
      if (tenant === '') throw new Error('no tenant to evaluate');
      await runEvaluation(
        tenant,
        $<HTMLSelectElement>('eval-task').value,
        Math.floor(Number($<HTMLInputElement>('eval-n').value)),
      );
    } finally {
      setBusy(false);
    }
  }),
);

// ---- vectors heatmap -----------------------------------------------------------------------

let lastHeatmap: {
  tenant: string;
  prompts: [string, string];
  vectors: [VectorSet, VectorSet];
  binned: [number[][][], number[][][]];
  scale: number;
} | null = null;

const ROW_H = 10;
const BLOCK_GAP = 8;
const COL_W = 3;
const MAX_BINS = 128;

function drawHeatmap(
  canvas: HTMLCanvasElement,
  binned: number[][][],
  scale: number,
  label: string,
) {
  // binned[layer][target][bin] = mean(l - 1); blocks by target, one row per layer
  const layers = binned.length;
  const targets = binned[0]?.length ?? 0;
  const cols = Math.max(...binned.flatMap((l) => l.map((t) => t.length)), 1);
  canvas.width = cols * COL_W;
  canvas.height = targets * layers * ROW_H + (targets - 1) * BLOCK_GAP;
  const ctx = canvas.getContext('2d');
  if (ctx === null) throw new Error('this browser gives no 2D canvas');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let j = 0; j < targets; j++)
    for (let i = 0; i < layers; i++) {
      const row = binned[i]?.[j] ?? [];
      const y = j * (layers * ROW_H + BLOCK_GAP) + i * ROW_H;
      row.forEach((v, k) => {
        ctx.fillStyle = heatColor(v / scale);
        ctx.fillRect(k * COL_W, y, COL_W, ROW_H);
      });
    }
  canvas.setAttribute('aria-label', label);
}

/** Diverging colour: -1 blue, 0 white, +1 red. */
function heatColor(x: number): string {
  const t = Math.max(-1, Math.min(1, x));
  const a = Math.abs(t);
  const [r, g, b] = t >= 0 ? [202, 52, 40] : [40, 88, 202];
  const mix = (c: number) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

$('vec-use-prompt').addEventListener('click', () => {
  $<HTMLInputElement>('vec-prompt-a').value = $<HTMLTextAreaElement>('prompt').value;
});

$('vectors').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    try {
      const tenant = $<HTMLSelectElement>('vec-tenant').value;
      if (tenant === '') throw new Error('no PARA tenant loaded');
      const prompts: [string, string] = [
        $<HTMLInputElement>('vec-prompt-a').value,
        $<HTMLInputElement>('vec-prompt-b').value,
      ];
      const vectors = (await Promise.all(
        prompts.map((prompt) => engine().call<'vectors', VectorSet>('vectors', { tenant, prompt })),
      )) as [VectorSet, VectorSet];
      const binned = vectors.map((v) =>
        v.layers.map((layer) => layer.map((x) => binVector(x, MAX_BINS))),
      ) as [number[][][], number[][][]];
      const scale = heatScale(binned.flat(3));
      const names = vectors[0].targets.map((t) => `l_${t === 'up_proj' ? 'u' : t[0]}`);
      for (const [p, id] of (['heatmap-a', 'heatmap-b'] as const).entries())
        drawHeatmap(
          $<HTMLCanvasElement>(id),
          binned[p] as number[][][],
          scale,
          `heatmap of ${tenant}'s vectors for "${prompts[p]}": ${names.join(', ')} blocks, ${vectors[0].layers.length} layers each`,
        );
      const widths = vectors[0].dims.map((d) => Math.ceil(d / Math.ceil(d / MAX_BINS)));
      $('heatmap-legend').textContent =
        `${tenant}: blocks ${names.map((n, j) => `${n} (${vectors[0].dims[j]} entries → ${widths[j]} columns)`).join(', ')}, top to bottom; in each block layers 0–${vectors[0].layers.length - 1}, top to bottom. Colour: l − 1, full red = +${scale.toPrecision(2)}, full blue = −${scale.toPrecision(2)} or beyond (the 98th percentile of |l − 1|, one scale for both prompts).`;
      lastHeatmap = { tenant, prompts, vectors, binned, scale };
      $('heatmap-legend').dataset.done = String(Date.now());
    } finally {
      setBusy(false);
    }
  }),
);

// ---- fine-tuning -------------------------------------------------------------------------

// The data is a bundled task or the uploaded file: choosing one clears the other.
$('train-file').addEventListener('change', () => {
  if (($<HTMLInputElement>('train-file').files?.length ?? 0) > 0)
    $<HTMLSelectElement>('train-task').value = '';
});
$('train-task').addEventListener('change', () => {
  if ($<HTMLSelectElement>('train-task').value !== '') $<HTMLInputElement>('train-file').value = '';
});

async function trainingData(): Promise<{
  jsonl: string | Uint8Array;
  file: string;
  task?: string;
}> {
  const task = $<HTMLSelectElement>('train-task').value;
  if (task === '') {
    const f = $<HTMLInputElement>('train-file').files?.[0];
    if (f === undefined) throw new Error('choose a JSONL file to upload, or a bundled task');
    // Checked before reading; sent as bytes so the worker decodes strict UTF-8.
    refuseLargeUpload('jsonl', f.size, f.name);
    return { jsonl: new Uint8Array(await f.arrayBuffer()), file: f.name };
  }
  const r = await engine().call<'read-task', { file: string; text: string }>('read-task', {
    task,
    split: 'train',
  });
  return { jsonl: r.text, file: r.file, task };
}

$('train-start').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    $<HTMLButtonElement>('train-cancel').disabled = false;
    lossData[0].length = 0;
    lossData[1].length = 0;
    totalSteps = Math.max(1, Number($<HTMLInputElement>('train-steps').value) || 1);
    chart.setData(lossData);
    $('train-chart').dataset.losses = '[]';
    $('train-loss').textContent = '';
    const status = $('train-status');
    delete status.dataset.done;
    status.textContent = 'preparing…';
    trainProgress.length = 0;
    try {
      const data = await trainingData();
      const name = $<HTMLInputElement>('train-name').value.trim();
      const r = await engine().call<
        'train',
        { tenant: TenantInfo | null; reason: string; steps: number; skipped: string | null }
      >(
        'train',
        {
          name,
          ...data,
          steps: Number($<HTMLInputElement>('train-steps').value),
          batchSize: Number($<HTMLInputElement>('train-batch').value),
          lr: Number($<HTMLInputElement>('train-lr').value),
          r: Number($<HTMLInputElement>('train-r').value),
        },
        (e) => {
          if (e.kind === 'train-start') {
            totalSteps = e.totalSteps;
            status.textContent = `training ${fmtInt(e.parameters)} PARA parameters for ${e.totalSteps} steps…`;
          }
          if (e.kind === 'train-step') {
            lossData[0].push(e.step);
            lossData[1].push(e.loss);
            chart.setData(lossData);
            $('train-chart').dataset.losses = JSON.stringify(lossData[1]);
            $('train-loss').textContent = e.loss.toFixed(4);
            status.textContent = `step ${e.step} / ${e.totalSteps} · ${fmtInt(e.tokensPerSec)} tokens/s · elapsed ${fmtDuration(e.elapsedMs)} · ETA ${fmtDuration(e.etaMs)} · lr ${e.lr.toExponential(2)}`;
            trainProgress.push(status.textContent);
          }
        },
      );
      if (r.tenant === null) {
        status.textContent = `stopped at step ${r.steps} (${r.reason}); no tenant added`;
      } else {
        tenants = [...tenants.filter((t) => t.name !== r.tenant?.name), r.tenant];
        renderTenants(r.tenant.name);
        status.textContent = `done: ${r.steps} steps; tenant "${r.tenant.name}" added${r.skipped ? ` (${r.skipped})` : ''} — evaluate it below "How well does a tenant do?"`;
      }
      status.dataset.done = r.reason;
    } catch (e) {
      status.textContent = 'failed';
      status.dataset.done = 'error';
      throw e;
    } finally {
      setBusy(false);
      $<HTMLButtonElement>('train-cancel').disabled = true;
    }
  }),
);

$('train-cancel').addEventListener('click', () => {
  void engine().call('cancel-train', {});
});

// ---- adapter files -----------------------------------------------------------------------

$('download-adapter').addEventListener('click', () =>
  guarded(async () => {
    const tenant = $<HTMLSelectElement>('download-tenant').value;
    if (tenant === '') throw new Error('no adapter to download yet: train or upload one');
    const r = await engine().call<'export-adapter', { config: string; weights: Uint8Array }>(
      'export-adapter',
      { tenant },
    );
    // One file: a folder named after the tenant holding both adapter files (stored, not
    // deflated: safetensors floats hardly compress).
    const zip = zipSync(
      {
        [tenant]: {
          'adapter_config.json': new TextEncoder().encode(r.config),
          'adapter_model.safetensors': r.weights,
        },
      },
      { level: 0 },
    );
    download(`${tenant}.zip`, zip as Uint8Array<ArrayBuffer>, 'application/zip');
  }),
);

$('adapter-upload').addEventListener('click', () =>
  guarded(async () => {
    const files = [...($<HTMLInputElement>('adapter-files').files ?? [])];
    const config = files.find((f) => f.name.endsWith('.json'));
    const weights = files.find((f) => f.name.endsWith('.safetensors'));
    if (config === undefined || weights === undefined)
      throw new Error(
        'choose both adapter_config.json and adapter_model.safetensors (one upload, two files)',
      );
    const name = $<HTMLInputElement>('adapter-name').value.trim();
    refuseLargeUpload('adapterConfig', config.size, config.name);
    refuseLargeUpload('adapterWeights', weights.size, weights.name);
    setBusy(true);
    try {
      const buf = await weights.arrayBuffer();
      const info = await engine().call<'add-adapter', TenantInfo>(
        'add-adapter',
        { name, config: await config.text(), weights: buf, file: 'upload' },
        undefined,
        [buf],
      );
      tenants = [...tenants.filter((t) => t.name !== info.name), info];
      renderTenants(info.name);
    } finally {
      setBusy(false);
    }
  }),
);

// A small programmatic API for end-to-end tests and other tools (documented in the README).
declare global {
  interface Window {
    paraDemo: {
      /** Next-token logits after `prompt` with `tenant`'s adapter ("bare": none). */
      logits(prompt: string, tenant: string): Promise<number[]>;
      /** Decode speed on the active backend (scripts/bench.mjs). */
      bench(tokens: number): Promise<unknown>;
      /** What the heatmaps show: the raw vectors per prompt (layer → target → values), binned, scale. */
      heatmap(): {
        tenant: string;
        prompts: [string, string];
        vectors: { targets: string[]; dims: number[]; layers: number[][][] }[];
        binned: [number[][][], number[][][]];
        scale: number;
      } | null;
      /** The loss chart: the steps plotted, the step axis' tick labels, the run's progress lines. */
      lossChart(): { steps: number[]; ticks: string[]; progress: string[] };
    };
  }
}
window.paraDemo = {
  logits: (prompt, tenant) => engine().call<'logits', number[]>('logits', { prompt, tenant }),
  bench: (tokens) => engine().call('bench', { tokens }),
  lossChart: () => ({
    steps: [...lossData[0]],
    ticks: ((chart.axes[0] as { _values?: (string | number | null)[] })._values ?? [])
      .filter((v) => v !== null && v !== '')
      .map(String),
    progress: [...trainProgress],
  }),
  heatmap: () =>
    lastHeatmap === null
      ? null
      : {
          ...lastHeatmap,
          vectors: lastHeatmap.vectors.map((v) => ({
            targets: [...v.targets],
            dims: [...v.dims],
            layers: v.layers.map((l) => l.map((x) => Array.from(x))),
          })),
        },
};

void init();
