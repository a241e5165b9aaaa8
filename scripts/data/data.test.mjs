// Tests for the data scripts: node --test scripts/data/
// Needs Debian's wordnet-base (and fortunes-min/fortunes for the corpus test); skips otherwise.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { diffFiles, generateTasks, itemKeys, renderFiles, SIZES, SPLITS } from './make-tasks.mjs';
import { FORTUNES_DIR, rng, splitGloss, WORDNET_DIR } from './wordnet.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const hasWordnet = existsSync(join(WORDNET_DIR, 'data.noun'));
const hasFortunes = existsSync(join(FORTUNES_DIR, 'fortunes'));
const skipWn = hasWordnet ? false : 'wordnet-base is not installed';

test('seeded PRNG is reproducible and roughly uniform', () => {
  const a = rng('x');
  const b = rng('x');
  const xs = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(
    xs,
    Array.from({ length: 1000 }, () => b.next()),
  );
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05);
  assert.notDeepEqual(rng('y').next(), rng('x').next());
});

test('splitGloss separates definition and quoted examples', () => {
  assert.deepEqual(splitGloss('a young dog'), { definition: 'a young dog', examples: [] });
  assert.deepEqual(
    splitGloss(
      '(usually followed by `to\') having the means; "able to swim"; "she was able; very"',
    ),
    {
      definition: "(usually followed by `to') having the means",
      examples: ['able to swim', 'she was able; very'],
    },
  );
});

test('tasks are deterministic and match the committed files', { skip: skipWn }, () => {
  const a = renderFiles(generateTasks());
  const b = renderFiles(generateTasks());
  assert.deepEqual(a, b);
  assert.deepEqual(diffFiles(a, join(HERE, '..', '..', 'data', 'tasks')), []);
});

test('tasks: sizes, spacing, disjoint splits, balance', { skip: skipWn }, () => {
  const tasks = generateTasks();
  assert.ok(Object.keys(tasks).length >= 3);
  for (const [name, t] of Object.entries(tasks)) {
    const owner = new Map();
    for (const split of SPLITS) {
      const items = t.splits[split];
      assert.equal(items.length, SIZES[split], `${name}/${split} size`);
      for (const it of items) {
        assert.ok(!/\s$/.test(it.prompt), `${name}: prompt ends with whitespace`);
        assert.ok(!/[\r\n]/.test(it.prompt + it.completion), `${name}: newline`);
        const words = it.completion.trim().split(' ');
        assert.ok(words.length <= 3, `${name}: completion longer than 3 words`);
        for (const k of [it.prompt, ...itemKeys(name, it)]) {
          const prev = owner.get(k);
          assert.ok(prev === undefined || prev === split, `${name}: ${k} in ${prev} and ${split}`);
          owner.set(k, split);
        }
      }
    }
  }
  for (const split of SPLITS) {
    const items = tasks.category.splits[split];
    const yes = items.filter((it) => it.completion === ' yes').length;
    assert.equal(yes * 2, items.length, `category/${split} balance`);
  }
  for (const it of tasks.arithmetic.splits.test) {
    const [a, b] = it.prompt.slice(0, -1).split('+').map(Number);
    assert.equal(it.completion, String(a + b));
  }
});

test('make-tasks --check exits 0 on the committed files', { skip: skipWn }, () => {
  const r = spawnSync(process.execPath, [join(HERE, 'make-tasks.mjs'), '--check'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
});

test('scripts name the apt packages when sources are missing', () => {
  const env = { ...process.env, PARA_WORDNET_DIR: '/nonexistent-wordnet' };
  const r = spawnSync(process.execPath, [join(HERE, 'make-tasks.mjs'), '--check'], {
    encoding: 'utf8',
    env,
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /apt-get install wordnet-base/);
  const c = spawnSync(process.execPath, [join(HERE, 'build-corpus.mjs'), '--out', '/dev/null'], {
    encoding: 'utf8',
    env,
  });
  assert.equal(c.status, 2);
  assert.match(c.stderr, /apt-get install wordnet-base/);
});

test('corpus: one document per line, no excluded fortune files', {
  skip: hasWordnet && hasFortunes ? false : 'wordnet-base/fortunes not installed',
}, async () => {
  const { buildCorpus, EXCLUDED_FORTUNES } = await import('./build-corpus.mjs');
  const { docs, stats } = buildCorpus();
  assert.ok(docs.length > 100000);
  const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d) + 1, 0);
  assert.ok(bytes >= 10e6, `corpus is ${bytes} bytes`);
  for (const d of docs.slice(0, 5000)) {
    assert.ok(d.length > 0 && !/[\n\r\t]/.test(d) && d === d.trim());
  }
  assert.equal(new Set(docs).size, docs.length);
  for (const f of Object.keys(EXCLUDED_FORTUNES)) assert.equal(stats.fortunes[f], undefined);
  assert.ok(!Object.keys(stats.fortunes).some((f) => f.includes('off')));
  const again = buildCorpus();
  assert.deepEqual(again.docs.slice(0, 100), docs.slice(0, 100));
});
