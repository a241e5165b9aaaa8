/**
 * The engine's explaining parts in Node (the code the Web Worker runs): examples in one mixed
 * batch with the exact-match reading, evaluate = `para eval` (evalFromFiles) on the same
 * examples, the vectors of a prompt, loading progress, and the heatmap's binning and scale.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, ParaError } from '@para/core/node';
import { directoryAccess } from '@para/model/node';
import { evalFromFiles } from '@para/train/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Assets, BARE, Engine } from '../src/engine';
import { binVector, heatScale } from '../src/heatmap';

const app = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(app, '..', '..');
const staticDir = join(app, 'public', 'static');

function fileAssets(root: string): Assets {
  const abs = (p: string) => join(root, p);
  return {
    location: `${root}/`,
    dir: (p) => directoryAccess(abs(p)),
    text: (p) => readFile(abs(p), 'utf8'),
  };
}

let engine: Engine;
const progress: [number, number | null][] = [];

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  engine = await Engine.load(fileAssets(staticDir), (loaded, total) =>
    progress.push([loaded, total]),
  );
  await engine.loadBundledAdapters();
});

afterAll(() => engine?.dispose());

describe('the web demo explains itself (engine)', () => {
  it('reports loading progress in bytes up to the manifest total', () => {
    const total = engine.manifest.bytes;
    expect(total).toBeGreaterThan(15_000_000);
    expect(progress.length).toBeGreaterThan(2);
    const last = progress.at(-1) as [number, number | null];
    expect(last[1]).toBe(total);
    for (let i = 1; i < progress.length; i++)
      expect((progress[i] as [number, number])[0]).toBeGreaterThan(
        (progress[i - 1] as [number, number])[0],
      );
    // every checkpoint byte is read (header and tensors; a header's first bytes may be read
    // twice, so a little more than the files' total, and the page caps the bar at 100%)
    expect(last[0]).toBeGreaterThanOrEqual(total as number);
    expect(last[0]).toBeLessThan(1.001 * (total as number));
  });

  it('bundled tenants know their task; examples come from its test split', async () => {
    for (const t of engine.listTenants()) expect(t.task).toBe(t.name);
    const recs = await engine.records('pos');
    const first = JSON.parse(
      (await readFile(join(repo, 'data', 'tasks', 'pos', 'test.jsonl'), 'utf8')).split(
        '\n',
      )[0] as string,
    );
    expect(recs[0]).toEqual(first);
    expect(recs).toHaveLength(200);
  });

  it('runs each tenant on its own prompt in one mixed batch; answers read as exact match reads them', async () => {
    const rows = [];
    for (const t of ['pos', 'antonym', 'category', 'arithmetic']) {
      const ex = (await engine.records(t))[1] as { prompt: string; completion: string };
      rows.push({ tenant: t, prompt: ex.prompt, expected: ex.completion });
      rows.push({ tenant: BARE, prompt: ex.prompt, expected: ex.completion });
    }
    const r = await engine.runExamples(rows, 8);
    expect(r.outputs).toHaveLength(rows.length);
    for (const [b, o] of r.outputs.entries()) {
      expect(o.tenant).toBe(rows[b]?.tenant);
      expect(o.answer).toBe(o.text.split('\n')[0]?.trim());
      expect(o.correct).toBe(o.answer === rows[b]?.expected.trim());
      // the row alone gives the same tokens (up to where the batch stopped it: EOS or a newline)
      const alone = await engine.generate({ prompt: o.prompt, tenant: o.tenant, maxNewTokens: 8 });
      expect(alone.ids.slice(0, o.ids.length), `${o.tenant}: ${o.prompt}`).toEqual(o.ids);
    }
    expect(r.outputs.filter((o) => o.tenant === BARE).some((o) => o.correct)).toBe(false);
  });

  it('evaluate gives the exact match `para eval --limit N` gives (tenant and bare)', async () => {
    const n = 12;
    for (const tenant of ['pos', BARE]) {
      const mine = await engine.evaluate(tenant, 'pos', n);
      const cli = await evalFromFiles({
        data: join(repo, 'data', 'tasks', 'pos', 'test.jsonl'),
        model: join(repo, 'assets', 'backbone'),
        ...(tenant === BARE ? {} : { adapter: join(repo, 'assets', 'adapters', tenant) }),
        limit: n,
        log: () => {},
      });
      expect(mine.n).toBe(n);
      expect(mine.exactMatch, tenant).toBeCloseTo(cli.exact_match ?? -1, 10);
      expect(mine.correct).toBe(Math.round((cli.exact_match ?? 0) * n));
      expect(mine.loss).toBeCloseTo(cli.loss, 4);
    }
    await expect(engine.evaluate('pos', 'nope', 3)).rejects.toBeInstanceOf(ParaError);
    await expect(engine.evaluate('pos', 'pos', 0)).rejects.toThrow(/bad number of examples/);
  });

  it('vectors: one per layer and target, different for different prompts; the bare backbone has none', async () => {
    const a = await engine.vectors('pos', 'Part of speech of gracefully:');
    const b = await engine.vectors('pos', 'Opposite of definite:');
    expect(a.targets).toEqual(['q_proj', 'v_proj', 'up_proj']);
    expect(a.dims).toEqual([256, 128, 688]);
    expect(a.layers).toHaveLength(engine.info.layers);
    let diff = 0;
    a.layers.forEach((l, i) => {
      l.forEach((x, j) => {
        const y = b.layers[i]?.[j] as Float32Array;
        for (let k = 0; k < x.length; k++)
          diff = Math.max(diff, Math.abs((x[k] as number) - (y[k] as number)));
      });
    });
    expect(diff).toBeGreaterThan(1e-2);
    await expect(engine.vectors(BARE, 'x')).rejects.toThrow(/PARA tenant/);
  });
});

describe('heatmap numbers', () => {
  it('bins l - 1 by the mean of consecutive entries (at most maxBins columns)', () => {
    expect(binVector([1, 1, 1, 1], 8)).toEqual([0, 0, 0, 0]);
    // width ceil(5 / 2) = 3: [1, -1, 0.5] → 1/6, then [0.5, 2] → 1.25
    const b = binVector([2, 0, 1.5, 1.5, 3], 2);
    expect(b).toHaveLength(2);
    expect(b[0]).toBeCloseTo(1 / 6, 12);
    expect(b[1]).toBeCloseTo(1.25, 12);
    expect(binVector(new Float32Array(688).fill(1.5), 128)).toHaveLength(115);
    expect(binVector([], 4)).toEqual([]);
  });

  it('scales colours by the 98th percentile of |l - 1|, never zero', () => {
    const values = Array.from({ length: 101 }, (_, i) => (i % 2 === 0 ? i : -i) / 100); // |v| = 0 … 1
    expect(heatScale(values)).toBeCloseTo(0.98, 12);
    expect(heatScale([...values, 1000])).toBeLessThan(1.01); // one outlier does not set the scale
    expect(heatScale([0, 0])).toBe(1e-6);
    expect(heatScale([Number.NaN, 2])).toBe(2);
  });
});
