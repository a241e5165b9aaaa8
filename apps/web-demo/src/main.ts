/**
 * The page: wires the DOM (stable `data-testid` hooks, listed in the README) to the engine in
 * the Web Worker. All model work happens in the worker; this file only renders.
 *
 * URL parameters: `?backend=webgpu|webgl|wasm|cpu` starts that backend or shows why it cannot.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { TenantInfo } from './engine';
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
  constructor(private readonly worker: Worker) {
    worker.onmessage = (m: MessageEvent<WorkerMessage>) => {
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
    worker.onerror = (e) => showError(`the worker failed: ${e.message}`);
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
}

// ---- DOM helpers -------------------------------------------------------------------------

function $<T extends HTMLElement = HTMLElement>(testid: string): T {
  const el = document.querySelector<T>(`[data-testid="${testid}"]`);
  if (el === null) throw new Error(`missing element ${testid}`);
  return el;
}

function showError(message: string): void {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}

function clearError(): void {
  const el = $('error');
  el.textContent = '';
  el.hidden = true;
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

function setBusy(busy: boolean): void {
  for (const id of [
    'generate',
    'side-by-side',
    'train-start',
    'adapter-upload',
    'download-config',
    'download-weights',
  ])
    $<HTMLButtonElement>(id).disabled = busy;
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

// ---- state -------------------------------------------------------------------------------

const client = new EngineClient(
  new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }),
);
let tenants: TenantInfo[] = [];

function renderTenants(select?: string): void {
  const picker = $<HTMLSelectElement>('tenant');
  const current = select ?? picker.value;
  const options = [
    { value: 'bare', label: 'bare backbone (no adapter)' },
    ...tenants.map((t) => ({
      value: t.name,
      label: `${t.name} (${t.method}, ${t.parameters.toLocaleString('en-US')} parameters, ${t.source})`,
    })),
  ];
  picker.replaceChildren(...options.map((o) => new Option(o.label, o.value)));
  if (options.some((o) => o.value === current)) picker.value = current;
  const dl = $<HTMLSelectElement>('download-tenant');
  const dlCurrent = select ?? dl.value;
  dl.replaceChildren(...tenants.map((t) => new Option(t.name, t.name)));
  if (tenants.some((t) => t.name === dlCurrent)) dl.value = dlCurrent;
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
      box.checked = fresh || ticked.has(name);
      label.append(box, name);
      return label;
    }),
  );
}

// ---- loss chart (uPlot) ------------------------------------------------------------------

const lossData: [number[], number[]] = [[], []];
const chart = new uPlot(
  {
    width: 640,
    height: 200,
    legend: { show: false },
    scales: { x: { time: false } },
    series: [{ label: 'step' }, { label: 'loss', stroke: '#3558d4', width: 2 }],
    axes: [{ label: 'step' }, { label: 'loss' }],
  },
  lossData,
  $('train-chart'),
);

// ---- actions -----------------------------------------------------------------------------

async function init(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const base = new URL(import.meta.env.BASE_URL, location.href);
  try {
    const r = await client.call<'init', InitResult>('init', {
      ...(params.get('backend') ? { backend: params.get('backend') as string } : {}),
      assetBase: new URL('static/', base).href,
      wasmPaths: new URL('static/tfjs-wasm/', base).href,
    });
    $('backend').textContent = r.report.active;
    $('backend-report').replaceChildren(
      ...r.report.backends.map((b) => {
        const li = document.createElement('li');
        const why =
          b.state === 'available'
            ? ` — would start; not used: ${r.report.active} ${r.report.chosenBy === 'auto' ? 'comes first in the browser order' : 'was asked for'}`
            : b.reason
              ? ` — ${b.reason}`
              : '';
        li.textContent = `${b.name}: ${b.state}${b.detail ? ` (${b.detail})` : ''}${why}`;
        return li;
      }),
    );
    $('model-info').textContent =
      `· backbone ${r.info.parameters.toLocaleString('en-US')} parameters, ${r.info.layers} layers, d=${r.info.hiddenSize}, vocabulary ${r.info.vocabSize}`;
    tenants = r.tenants;
    renderTenants((tenants.find((t) => t.name === 'pos') ?? tenants[0])?.name); // pos: the bundled task the toy backbone does best
    $<HTMLSelectElement>('train-task').replaceChildren(
      ...r.tasks.map((t) => new Option(`bundled: ${t}`, t)),
      new Option('uploaded file', ''),
    );
    setBusy(false);
    document.body.dataset.ready = 'true';
  } catch (e) {
    $('backend').textContent = 'failed';
    showError(`could not start: ${e instanceof Error ? e.message : String(e)}`);
    document.body.dataset.ready = 'error';
  }
}

$('generate').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    const out = $('output');
    out.textContent = '';
    $('tokens-per-sec').textContent = '';
    try {
      const r = await client.call<
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
      out.dataset.done = String(Date.now());
    } finally {
      setBusy(false);
    }
  }),
);

$('side-by-side').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    try {
      const chosen = [...$('side-tenants').querySelectorAll<HTMLInputElement>('input:checked')].map(
        (i) => i.value,
      );
      const r = await client.call<
        'side-by-side',
        { outputs: { tenant: string; text: string }[]; ms: number; tokensPerSec: number }
      >('side-by-side', {
        prompt: $<HTMLTextAreaElement>('prompt').value,
        tenants: chosen,
        maxNewTokens: Number($<HTMLInputElement>('max-new-tokens').value),
      });
      const body = $('side-output').querySelector('tbody') as HTMLTableSectionElement;
      body.replaceChildren(
        ...r.outputs.map((o) => {
          const tr = document.createElement('tr');
          tr.dataset.tenant = o.tenant;
          const name = document.createElement('td');
          name.textContent = o.tenant;
          const text = document.createElement('td');
          text.className = 'out';
          text.textContent = o.text;
          tr.append(name, text);
          return tr;
        }),
      );
      $('side-speed').textContent =
        `${r.outputs.length} rows in one batch · ${(r.ms / 1000).toFixed(1)} s · ${r.tokensPerSec.toFixed(1)} tokens/s`;
    } finally {
      setBusy(false);
    }
  }),
);

// The data is a bundled task or the uploaded file: choosing one clears the other.
$('train-file').addEventListener('change', () => {
  if (($<HTMLInputElement>('train-file').files?.length ?? 0) > 0)
    $<HTMLSelectElement>('train-task').value = '';
});
$('train-task').addEventListener('change', () => {
  if ($<HTMLSelectElement>('train-task').value !== '') $<HTMLInputElement>('train-file').value = '';
});

async function trainingData(): Promise<{ jsonl: string | Uint8Array; file: string }> {
  const task = $<HTMLSelectElement>('train-task').value;
  if (task === '') {
    const f = $<HTMLInputElement>('train-file').files?.[0];
    if (f === undefined) throw new Error('choose a JSONL file to upload, or a bundled task');
    // Checked before reading; sent as bytes so the worker decodes strict UTF-8.
    refuseLargeUpload('jsonl', f.size, f.name);
    return { jsonl: new Uint8Array(await f.arrayBuffer()), file: f.name };
  }
  const r = await client.call<'read-task', { file: string; text: string }>('read-task', {
    task,
    split: 'train',
  });
  return { jsonl: r.text, file: r.file };
}

$('train-start').addEventListener('click', () =>
  guarded(async () => {
    setBusy(true);
    $<HTMLButtonElement>('train-cancel').disabled = false;
    lossData[0].length = 0;
    lossData[1].length = 0;
    chart.setData(lossData);
    $('train-chart').dataset.losses = '[]';
    $('train-loss').textContent = '';
    const status = $('train-status');
    delete status.dataset.done;
    status.textContent = 'preparing…';
    try {
      const data = await trainingData();
      const name = $<HTMLInputElement>('train-name').value.trim();
      const r = await client.call<
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
          if (e.kind === 'train-start')
            status.textContent = `training ${e.parameters.toLocaleString('en-US')} PARA parameters for ${e.totalSteps} steps…`;
          if (e.kind === 'train-step') {
            lossData[0].push(e.step);
            lossData[1].push(e.loss);
            chart.setData(lossData);
            $('train-chart').dataset.losses = JSON.stringify(lossData[1]);
            $('train-loss').textContent = e.loss.toFixed(4);
            status.textContent = `step ${e.step}/${e.totalSteps} · ${e.tokensPerSec.toFixed(0)} tokens/s`;
          }
        },
      );
      if (r.tenant === null) {
        status.textContent = `stopped at step ${r.steps} (${r.reason}); no tenant added`;
      } else {
        tenants = [...tenants.filter((t) => t.name !== r.tenant?.name), r.tenant];
        renderTenants(r.tenant.name);
        status.textContent = `done: ${r.steps} steps; tenant "${r.tenant.name}" added${r.skipped ? ` (${r.skipped})` : ''}`;
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
  void client.call('cancel-train', {});
});

for (const [id, which] of [
  ['download-config', 'config'],
  ['download-weights', 'weights'],
] as const) {
  $(id).addEventListener('click', () =>
    guarded(async () => {
      const tenant = $<HTMLSelectElement>('download-tenant').value;
      if (tenant === '') throw new Error('no adapter to download yet: train or upload one');
      const r = await client.call<'export-adapter', { config: string; weights: Uint8Array }>(
        'export-adapter',
        { tenant },
      );
      if (which === 'config') download('adapter_config.json', r.config, 'application/json');
      else
        download(
          'adapter_model.safetensors',
          r.weights as Uint8Array<ArrayBuffer>,
          'application/octet-stream',
        );
    }),
  );
}

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
      const info = await client.call<'add-adapter', TenantInfo>(
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
    };
  }
}
window.paraDemo = {
  logits: (prompt, tenant) => client.call<'logits', number[]>('logits', { prompt, tenant }),
  bench: (tokens) => client.call('bench', { tokens }),
};

void init();
