#!/usr/bin/env node
// Generate the bundled tenant tasks in data/tasks/<task>/{train,dev,test}.jsonl, plus
// data/tasks/README.md and data/tasks/tasks.json. Deterministic: a seeded PRNG (mulberry32,
// scripts/data/wordnet.mjs) and the installed WordNet 3.0 (Debian `wordnet-base`).
//
//   node scripts/data/make-tasks.mjs            write the files and print a sanity report
//   node scripts/data/make-tasks.mjs --check    regenerate in memory; exit 1 if any committed
//                                               file differs (and print which)
//   node scripts/data/make-tasks.mjs --out DIR  write somewhere else
//
// Every line is {"prompt": "...", "completion": "..."}. Convention: a prompt never ends with
// whitespace; a completion is exactly the text that follows the prompt in natural writing, so a
// word answer starts with one space (" yes", " cold") and a number after "=" does not ("19").
// A training pipeline concatenates prompt + completion + EOS; exact match compares the
// trimmed greedy completion with the trimmed reference. See data/tasks/README.md.

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadWordnet, mdTable, POS_FILES, rng, runMain, usageError } from './wordnet.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, '..', '..');
export const DEFAULT_OUT = join(REPO_ROOT, 'data', 'tasks');
export const SEED = 'para-tasks-v1';
export const SIZES = { train: 2000, dev: 200, test: 200 };
export const SPLITS = /** @type {const} */ (['train', 'dev', 'test']);
/** The source the committed files were generated from (stated in the README; --check compares data). */
export const GENERATED_WITH = 'wordnet-base 1:3.0-37 (Debian)';

// ---------------------------------------------------------------------------------------------
// arithmetic: "a+b=" → "a+b", a, b ∈ [0, 49]. Split by unordered operand pair, so a test prompt
// "12+7=" has neither "12+7=" nor "7+12=" in train or dev.

export const ARITH_MAX = 49;

export function makeArithmetic() {
  const r = rng(`${SEED}/arithmetic`);
  const pairs = [];
  for (let a = 0; a <= ARITH_MAX; a++) for (let b = a; b <= ARITH_MAX; b++) pairs.push([a, b]);
  r.shuffle(pairs);
  const item = (a, b) => ({ prompt: `${a}+${b}=`, completion: String(a + b) });
  const expand = ([a, b]) => (a === b ? [item(a, b)] : [item(a, b), item(b, a)]);
  const splits = takeGroups(pairs.map(expand), r);
  return {
    splits,
    info: {
      source: `all ordered pairs of operands 0..${ARITH_MAX} (${(ARITH_MAX + 1) ** 2} prompts)`,
      groups: 'unordered operand pair {a, b}',
    },
  };
}

/**
 * Deal shuffled groups of items into test, then dev, then train (a group never straddles two
 * splits). Each split takes whole groups until it holds its size (SIZES); the last group dealt
 * to a split may be cut, and its other items are dropped, never moved to another split. Train
 * takes the remaining groups up to SIZES.train. Each split is then shuffled.
 */
function takeGroups(groups, r) {
  const out = { train: [], dev: [], test: [] };
  let g = 0;
  for (const split of ['test', 'dev', 'train']) {
    while (out[split].length < SIZES[split] && g < groups.length) {
      for (const it of groups[g++]) if (out[split].length < SIZES[split]) out[split].push(it);
    }
  }
  for (const split of SPLITS) r.shuffle(out[split]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// antonym: "Opposite of hot:" → " cold", from WordNet adjective antonym pointers (`!` in data.adj,
// lexical: word → word). Only lowercase single-word lemmas, and only prompt words with exactly
// one such antonym across all their senses (so the reference is unambiguous). Split by connected
// component of the antonym graph, so no word of a test item occurs in any train/dev item.

export function makeAntonym() {
  const wn = loadWordnet();
  const r = rng(`${SEED}/antonym`);
  const single = /^[a-z]+$/;
  const ants = new Map(); // word → Set(antonym)
  for (const s of wn.data.adj) {
    for (const p of s.pointers) {
      if (p.symbol !== '!' || p.source === 0 || p.target === 0) continue;
      const t = wn.get(p.pos, p.offset);
      const a = s.words[p.source - 1].lemma;
      const b = t.words[p.target - 1].lemma;
      if (!single.test(a) || !single.test(b) || a === b) continue;
      if (!ants.has(a)) ants.set(a, new Set());
      ants.get(a).add(b);
    }
  }
  // Union-find over all antonym edges (including ambiguous words, so components are closed).
  const parent = new Map();
  const find = (x) => {
    if (!parent.has(x)) parent.set(x, x);
    let y = x;
    while (parent.get(y) !== y) y = parent.get(y);
    parent.set(x, y);
    return y;
  };
  for (const [a, set] of ants) for (const b of set) parent.set(find(a), find(b));
  const comps = new Map();
  for (const [a, set] of [...ants].sort(([x], [y]) => (x < y ? -1 : 1))) {
    if (set.size !== 1) continue; // ambiguous prompt word
    const b = [...set][0];
    const root = find(a);
    if (!comps.has(root)) comps.set(root, []);
    comps.get(root).push({ prompt: `Opposite of ${a}:`, completion: ` ${b}` });
  }
  const groups = [...comps.keys()].sort().map((k) => comps.get(k));
  r.shuffle(groups);
  const available = groups.reduce((n, g) => n + g.length, 0);
  const splits = takeGroups(groups, r);
  return {
    splits,
    info: {
      source: `${ants.size} single-word adjectives with an antonym pointer; ${available} have exactly one single-word antonym and became prompts`,
      groups: `connected component of the antonym graph (${groups.length} components)`,
      available,
    },
  };
}

/** True when the antonym is the prompt word with a negating prefix added or removed. */
export function isMorphologicalAntonym(a, b) {
  const prefixes = ['un', 'in', 'im', 'il', 'ir', 'dis', 'non', 'a', 'an', 'anti', 'mis', 'ab'];
  return prefixes.some((p) => a === p + b || b === p + a);
}

// ---------------------------------------------------------------------------------------------
// category: "Is poodle a kind of animal?" → " yes" / " no". Categories are a fixed list of
// WordNet noun synsets at a similar level of generality. Words are common (tagged at least once
// in WordNet's semantic concordance, tagsense_cnt ≥ 1), lowercase, single-word nouns whose most
// frequent sense lies under (the hypernym closure of) a category; the CATEGORY_CAP most
// frequent words of each category are kept. Every word yields one "yes"
// item (its most specific listed category) and one "no" item (a listed category that is not in
// the hypernym closure of ANY of the word's noun senses, chosen to keep each category's yes/no
// counts equal). Split by word: test words never occur in train or dev.

export const CATEGORIES = [
  // [name in the prompt, lemma, sense number in index.noun]
  ['animal', 'animal', 1],
  ['person', 'person', 1],
  ['plant', 'plant', 2],
  ['food', 'food', 2],
  ['beverage', 'beverage', 1],
  ['body part', 'body_part', 1],
  ['feeling', 'feeling', 1],
  ['disease', 'disease', 1],
  ['symptom', 'symptom', 1],
  ['garment', 'clothing', 1],
  ['furniture', 'furniture', 1],
  ['container', 'container', 1],
  ['vehicle', 'vehicle', 1],
  ['building', 'building', 1],
  ['room', 'room', 1],
  ['weapon', 'weapon', 1],
  ['device', 'device', 1],
  ['fabric', 'fabric', 1],
  ['drug', 'drug', 1],
  ['language', 'language', 1],
  ['unit of measurement', 'unit', 1],
  ['time period', 'time_period', 1],
  ['color', 'color', 1],
  ['document', 'document', 1],
  ['music', 'music', 1],
  ['field of study', 'discipline', 1],
  ['chemical element', 'chemical_element', 1],
  ['geological formation', 'geological_formation', 1],
  ['body of water', 'body_of_water', 1],
];
/** At most this many words per category (keeps `person` from dominating). */
export const CATEGORY_CAP = 80;

export function makeCategory() {
  const wn = loadWordnet();
  const r = rng(`${SEED}/category`);
  const closure = new Map();
  const ancestors = (off) => {
    if (closure.has(off)) return closure.get(off);
    const set = new Set();
    closure.set(off, set); // guards against cycles
    for (const p of wn.get('n', off).pointers) {
      if (p.symbol !== '@') continue;
      set.add(p.offset);
      for (const x of ancestors(p.offset)) set.add(x);
    }
    return set;
  };
  const cats = CATEGORIES.map(([name, lemma, sense]) => {
    const e = wn.index.noun.get(lemma);
    if (!e?.offsets[sense - 1]) throw new Error(`category ${lemma}#${sense} not in WordNet`);
    const offset = e.offsets[sense - 1];
    const synset = wn.get('n', offset);
    return {
      name,
      offset,
      depth: ancestors(offset).size,
      lemmas: synset.words.map((w) => w.lemma),
    };
  });
  // Candidate words, in sorted order.
  const byCat = new Map(cats.map((c) => [c.name, []]));
  const words = [];
  for (const [lemma, e] of [...wn.index.noun].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!/^[a-z]{3,}$/.test(lemma) || e.tagsenseCnt < 1) continue;
    const first = e.offsets[0];
    const firstSynset = wn.get('n', first);
    if (firstSynset.pointers.some((p) => p.symbol === '@i')) continue; // an instance
    // index.noun lowercases lemmas; skip words written capitalised in their first sense
    // (December, Chopin, ...).
    const written = firstSynset.words.find((w) => w.lemma.toLowerCase() === lemma);
    if (!written || written.lemma !== lemma) continue;
    const firstAnc = ancestors(first);
    const allAnc = new Set();
    for (const off of e.offsets) {
      allAnc.add(off);
      for (const x of ancestors(off)) allAnc.add(x);
    }
    const yes = cats.filter((c) => firstAnc.has(c.offset) && !c.lemmas.includes(lemma));
    if (yes.length === 0) continue;
    // The most specific listed category (deepest in the hierarchy) is the "yes" category.
    yes.sort((a, b) => b.depth - a.depth || (a.name < b.name ? -1 : 1));
    const no = cats.filter((c) => !allAnc.has(c.offset) && !c.lemmas.includes(lemma));
    const w = { lemma, yes: yes[0].name, no: no.map((c) => c.name), freq: e.tagsenseCnt };
    byCat.get(w.yes).push(w);
    words.push(w);
  }
  const available = Object.fromEntries([...byCat].map(([k, v]) => [k, v.length]));
  // Cap each category, keeping its most frequent words (tagsense_cnt, then alphabetical).
  const chosen = [];
  for (const c of cats) {
    const list = byCat.get(c.name).sort((a, b) => b.freq - a.freq || (a.lemma < b.lemma ? -1 : 1));
    chosen.push(...list.slice(0, CATEGORY_CAP));
  }
  r.shuffle(chosen);
  // Split by word (each word gives two items), then pick each word's "no" category within its
  // split, greedily on the largest yes−no deficit (random tie-break), so that every category is
  // asked about as often with "yes" as with "no" in every split.
  const ask = (lemma, cat) => `Is ${lemma} a kind of ${cat}?`;
  const splits = {};
  let next = 0;
  for (const split of ['test', 'dev', 'train']) {
    const ws = chosen.slice(next, next + SIZES[split] / 2);
    next += ws.length;
    const balance = new Map(cats.map((c) => [c.name, 0])); // yes − no
    for (const w of ws) balance.set(w.yes, balance.get(w.yes) + 1);
    const items = [];
    for (const w of ws) {
      let best = -Infinity;
      let options = [];
      for (const c of w.no) {
        const d = balance.get(c);
        if (d > best) {
          best = d;
          options = [c];
        } else if (d === best) options.push(c);
      }
      const neg = r.pick(options);
      balance.set(neg, balance.get(neg) - 1);
      items.push({ prompt: ask(w.lemma, w.yes), completion: ' yes' });
      items.push({ prompt: ask(w.lemma, neg), completion: ' no' });
    }
    splits[split] = r.shuffle(items);
  }
  return {
    splits,
    info: {
      source: `${words.length} common single-word nouns under ${cats.length} categories; at most ${CATEGORY_CAP} words per category (${chosen.length} words)`,
      groups: 'word (its "yes" and "no" items stay together)',
      unused: chosen.length - next,
      available,
      categories: cats.map((c) => c.name),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// pos: "Part of speech of happily:" → " adverb". Lowercase single-word lemmas (3+ letters) that
// WordNet lists under exactly one part of speech (so the answer is unambiguous) and that occur in
// its sense-tagged corpus (tagsense_cnt ≥ 1: common words). Balanced: a quarter of every split
// per part of speech, so always answering one of them scores 25%. Split by word. The backbone's
// pretraining documents start with "word (part of speech):", so the knowledge is there in
// another format; morphology (-ly, -ness, -ize) also helps.

export const POS_ANSWER = { noun: 'noun', verb: 'verb', adj: 'adjective', adv: 'adverb' };

export function makePos() {
  const wn = loadWordnet();
  const r = rng(`${SEED}/pos`);
  const parts = new Map(); // lemma → [pos file, tagsense_cnt][]
  for (const pos of POS_FILES) {
    for (const [lemma, e] of wn.index[pos]) {
      if (!/^[a-z]{3,}$/.test(lemma)) continue;
      if (!parts.has(lemma)) parts.set(lemma, []);
      parts.get(lemma).push([pos, e.tagsenseCnt]);
    }
  }
  const byPos = Object.fromEntries(POS_FILES.map((p) => [p, []]));
  for (const [lemma, ps] of [...parts].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (ps.length === 1 && ps[0][1] >= 1) byPos[ps[0][0]].push(lemma);
  }
  const available = Object.fromEntries(POS_FILES.map((p) => [p, byPos[p].length]));
  for (const p of POS_FILES) r.shuffle(byPos[p]);
  const splits = {};
  const used = Object.fromEntries(POS_FILES.map((p) => [p, 0]));
  for (const split of ['test', 'dev', 'train']) {
    const per = SIZES[split] / POS_FILES.length;
    const items = [];
    for (const p of POS_FILES) {
      const words = byPos[p].slice(used[p], used[p] + per);
      if (words.length < per) throw new Error(`pos: only ${byPos[p].length} ${p} words`);
      used[p] += per;
      for (const w of words)
        items.push({ prompt: `Part of speech of ${w}:`, completion: ` ${POS_ANSWER[p]}` });
    }
    splits[split] = r.shuffle(items);
  }
  return {
    splits,
    info: {
      source: `common single-word lemmas with exactly one part of speech (${POS_FILES.map((p) => `${available[p]} ${POS_ANSWER[p]}s`).join(', ')})`,
      groups: 'word',
      available,
    },
  };
}

// ---------------------------------------------------------------------------------------------

export const TASKS = {
  arithmetic: {
    make: makeArithmetic,
    summary: 'two-operand addition, operands 0–49',
    answer: 'a number (0–98), no leading space',
  },
  category: {
    make: makeCategory,
    summary: 'yes/no: is a noun a kind of a category (WordNet hypernym closure)',
    answer: '" yes" or " no"',
  },
  antonym: {
    make: makeAntonym,
    summary: 'the antonym of an adjective (WordNet antonym pointers)',
    answer: 'one word with a leading space',
  },
  pos: {
    make: makePos,
    summary: 'the part of speech of a word (balanced: noun, verb, adjective, adverb)',
    answer: '" noun", " verb", " adjective" or " adverb"',
  },
};

/** Generate all tasks in memory: { name: { splits: {train, dev, test}, info } }. */
export function generateTasks() {
  const out = {};
  for (const [name, t] of Object.entries(TASKS)) {
    const res = t.make();
    validate(name, res.splits);
    out[name] = res;
  }
  return out;
}

/** Structural checks; throws on any violation. */
export function validate(name, splits) {
  const seen = new Map();
  for (const split of SPLITS) {
    const items = splits[split];
    if (!items || items.length === 0) throw new Error(`${name}/${split}: empty`);
    for (const it of items) {
      if (typeof it.prompt !== 'string' || typeof it.completion !== 'string') {
        throw new Error(`${name}/${split}: bad item ${JSON.stringify(it)}`);
      }
      if (/[\r\n]/.test(it.prompt + it.completion))
        throw new Error(`${name}: newline in ${JSON.stringify(it)}`);
      if (/\s$/.test(it.prompt))
        throw new Error(`${name}: prompt ends with whitespace: ${JSON.stringify(it)}`);
      if (it.completion.trim() === '' || /\s$/.test(it.completion) || /^\s\s/.test(it.completion)) {
        throw new Error(`${name}: bad completion spacing: ${JSON.stringify(it)}`);
      }
      if (seen.has(it.prompt)) {
        throw new Error(
          `${name}: prompt ${JSON.stringify(it.prompt)} in ${seen.get(it.prompt)} and ${split}`,
        );
      }
      seen.set(it.prompt, split);
    }
  }
}

/** Words (or operand pairs) an item is about, to check that splits are disjoint beyond prompts. */
export function itemKeys(task, it) {
  if (task === 'arithmetic') {
    const [a, b] = it.prompt.slice(0, -1).split('+').map(Number);
    return [`${Math.min(a, b)}+${Math.max(a, b)}`];
  }
  if (task === 'antonym') return [it.prompt.slice('Opposite of '.length, -1), it.completion.trim()];
  if (task === 'category') return [/^Is (\S+) a kind of/.exec(it.prompt)[1]];
  if (task === 'pos') return [it.prompt.slice('Part of speech of '.length, -1)];
  return [it.prompt];
}

export function toJsonl(items) {
  return (
    items.map((it) => JSON.stringify({ prompt: it.prompt, completion: it.completion })).join('\n') +
    '\n'
  );
}

/** Everything the generator writes, as { relativePath: content }. */
export function renderFiles(tasks) {
  const files = {};
  for (const [name, t] of Object.entries(tasks)) {
    for (const split of SPLITS) files[`${name}/${split}.jsonl`] = toJsonl(t.splits[split]);
  }
  files['tasks.json'] = `${JSON.stringify(manifest(tasks), null, 2)}\n`;
  files['README.md'] = renderReadme(tasks);
  return files;
}

function manifest(tasks) {
  return {
    generator: 'node scripts/data/make-tasks.mjs',
    seed: SEED,
    format: 'jsonl: {"prompt": string, "completion": string}',
    metric:
      'exact_match: greedy completion (stop at EOS or newline), trimmed, equals trimmed reference',
    tasks: Object.fromEntries(
      Object.entries(tasks).map(([name, t]) => [
        name,
        {
          description: TASKS[name].summary,
          answer: TASKS[name].answer,
          files: Object.fromEntries(SPLITS.map((s) => [s, `${name}/${s}.jsonl`])),
          sizes: Object.fromEntries(SPLITS.map((s) => [s, t.splits[s].length])),
        },
      ]),
    ),
  };
}

function stats(task, items) {
  if (task === 'category') {
    const yes = items.filter((it) => it.completion === ' yes').length;
    const per = new Map(); // category → yes − no
    for (const it of items) {
      const c = /a kind of (.*)\?$/.exec(it.prompt)[1];
      per.set(c, (per.get(c) ?? 0) + (it.completion === ' yes' ? 1 : -1));
    }
    const gap = Math.max(...[...per.values()].map(Math.abs));
    return `${yes} yes / ${items.length - yes} no; ${per.size} categories, largest yes/no gap within a category ${gap}`;
  }
  if (task === 'antonym') {
    const m = items.filter((it) => {
      const [a, b] = itemKeys('antonym', it);
      return isMorphologicalAntonym(a, b);
    }).length;
    return `${m} (${Math.round((100 * m) / items.length)}%) formed by a negating prefix (un-, in-, dis-, non-, …)`;
  }
  if (task === 'arithmetic') {
    const carry = items.filter((it) => {
      const [a, b] = it.prompt.slice(0, -1).split('+').map(Number);
      return (a % 10) + (b % 10) >= 10;
    }).length;
    return `${carry} (${Math.round((100 * carry) / items.length)}%) with a carry`;
  }
  if (task === 'pos') {
    const per = Object.values(POS_ANSWER).map(
      (a) => `${items.filter((it) => it.completion === ` ${a}`).length} ${a}`,
    );
    return per.join(' / ');
  }
  return '';
}

function renderReadme(tasks) {
  const table = mdTable(
    ['task', 'what', 'train / dev / test', 'completion'],
    Object.entries(tasks).map(([name, t]) => [
      `\`${name}\``,
      TASKS[name].summary,
      SPLITS.map((s) => t.splits[s].length).join(' / '),
      TASKS[name].answer,
    ]),
  );
  const examples = (name, split, n = 3) =>
    tasks[name].splits[split]
      .slice(0, n)
      .map((it) => JSON.stringify({ prompt: it.prompt, completion: it.completion }))
      .join('\n');
  const splitStats = (name) =>
    SPLITS.map(
      (s) => `- ${s}: ${tasks[name].splits[s].length} items; ${stats(name, tasks[name].splits[s])}`,
    ).join('\n');
  const cat = tasks.category.info;
  const ant = tasks.antonym.info;
  return `# Bundled tenant tasks

Generated by \`node scripts/data/make-tasks.mjs\` from WordNet 3.0 (generated with
${GENERATED_WITH}) and the fixed seed \`${SEED}\`; needs \`sudo apt-get install wordnet-base\`.
Do not edit by hand: \`node scripts/data/make-tasks.mjs --check\` regenerates everything in
memory and exits 1, naming the files, if anything here differs. \`tasks.json\` lists the same
facts for programs.

${table}

## Format and conventions

- One JSON object per line: \`{"prompt": "...", "completion": "..."}\`; UTF-8, \`\\n\` line ends.
- A training pipeline feeds \`prompt + completion + EOS\`; the loss covers the completion and
  EOS; PARA pools over the prompt tokens.
- **Spacing:** a prompt never ends with whitespace. The completion is exactly the text that
  would follow the prompt in ordinary writing: a word answer starts with **one space**
  (\`"Opposite of hot:"\` + \`" cold"\`, \`"Is poodle a kind of animal?"\` + \`" yes"\`), a number
  after \`=\` does not (\`"12+7="\` + \`"19"\`). With a GPT-2-style byte-level BPE
  pre-tokenizer this makes the prompt's tokens an exact prefix of the tokens of
  \`prompt + completion\` (the boundary is always a pre-token boundary), so the prompt length
  PARA needs is unambiguous, and the answer word is the same token (\`Ġcold\`) the backbone saw
  in pretraining.
- No completion contains a newline; none ends with whitespace.
- **Metric:** exact match: greedy decoding from the prompt, stopping at EOS or a newline; the
  output and the reference completion are both trimmed and compared as strings.
- **Generalisation:** the splits are disjoint not only by prompt but by the underlying item:
  operand pair (arithmetic), word (category, pos), antonym-graph component (antonym). No test prompt
  occurs in train or dev; \`make-tasks.mjs\` checks this every time it runs.

## \`arithmetic\`

\`a+b=\` → \`a+b\` for operands 0–49 (${ARITH_MAX + 1}² = ${(ARITH_MAX + 1) ** 2} prompts in all).
Split by **unordered** operand pair: when \`12+7=\` is in test, \`7+12=\` is in test too (or
unused) and neither is in train or dev. Test and dev take 200 prompts each from the shuffled
pairs; train takes 2000 of the rest (the other prompts are unused). It needs no backbone
knowledge: it measures whether an adapter can teach a skill that generalises to unseen
operand pairs.

${splitStats('arithmetic')}

\`\`\`
${examples('arithmetic', 'test')}
\`\`\`

## \`category\`

\`Is <word> a kind of <category>?\` → \` yes\` / \` no\`. The word has no article: many of
the nouns are mass nouns (\`physics\`, \`bread\`, \`gadgetry\`) and WordNet does not say which,
so "Is a physics ..." would be wrong as often as "Is poodle ..." is terse.

${cat.categories.length} categories, WordNet noun synsets at a similar level of generality (\`CATEGORIES\` in
the script): ${cat.categories.map((c) => `\`${c}\``).join(', ')}.

- Words: lowercase single-word nouns of at least 3 letters that are _common_ (tagged at least
  once in WordNet's sense-tagged concordance, \`tagsense_cnt ≥ 1\` in \`index.noun\`), not an
  instance (proper noun) and not a lemma of the category itself, whose **most frequent sense**
  lies in the hypernym closure (\`@\` pointers) of a category, and which are written in
  lowercase in that sense (so no \`december\`, \`chopin\`). The ${CATEGORY_CAP} most frequent words of
  each category (by \`tagsense_cnt\`) are kept: ${cat.source}.
- Each word gives **two items, kept in the same split**: a \`yes\` for its most specific
  listed category, and a \`no\` for a listed category that is not in the hypernym closure of
  **any** of the word's noun senses (so the \`no\` is right for every reading). Within each
  split the \`no\` category is chosen greedily to keep each category's yes and no counts
  equal, so neither the word nor the category name alone predicts the answer; every split is
  exactly 50/50 overall and (nearly) per category.
- Negatives come from this fixed category list rather than from "a random category at the
  same depth": depth in WordNet's noun hierarchy varies a lot between domains, and a fixed
  list keeps the negatives readable and each category balanced.
- Split by word (words shuffled, then 100 to test, 100 to dev, 1000 to train; the other
  ${cat.unused} are unused): a test word never occurs in train or dev.
- The pretraining corpus (\`data/corpus/SOURCES.md\`) states every direct hypernym in plain
  English (\`A poodle is a kind of dog.\`), not the multi-step category questions asked here.

Words available per category before the cap of ${CATEGORY_CAP}:
${Object.entries(cat.available)
  .map(([k, n]) => `${k} ${n}`)
  .join(', ')}.

${splitStats('category')}

\`\`\`
${examples('category', 'test', 4)}
\`\`\`

## \`antonym\`

\`Opposite of <adjective>:\` → \` <antonym>\`, from the direct antonym pointers (\`!\`) of
\`data.adj\` (lexical pointers, word to word), lowercase single-word lemmas only.

- ${ant.source}. Words with several antonyms (e.g. \`good\` → \`bad\`, \`evil\`) are not used as
  prompts, so every reference is the only answer WordNet gives.
- Split by ${ant.groups}: no word of a test item (prompt or answer) occurs in any train or dev
  item. Both directions of a pair (\`hot\` → \`cold\`, \`cold\` → \`hot\`) land in the same split.
- Test and dev take 200 each; train takes ${tasks.antonym.splits.train.length} of the remaining prompts
  (${ant.available - SIZES.test - SIZES.dev - tasks.antonym.splits.train.length} are unused).
- About 60% of the answers add or remove a negating prefix, which a model can learn as a rule;
  the rest need the backbone's knowledge (the pretraining corpus states every antonym pointer
  as \`The opposite of hot is cold.\`).

${splitStats('antonym')}

\`\`\`
${examples('antonym', 'test')}
\`\`\`

## \`pos\`

\`Part of speech of <word>:\` → \` noun\` / \` verb\` / \` adjective\` / \` adverb\`.

- Words: lowercase single-word lemmas of at least 3 letters that WordNet lists under
  **exactly one** part of speech (so the reference is the only answer) and that are common
  (\`tagsense_cnt ≥ 1\` in their index file): ${tasks.pos.info.source}.
- Balanced: every split has a quarter of each part of speech (always answering one of them
  scores 25%). Split by word; test and dev take 50 words per part of speech, train 500.
- The pretraining corpus starts every document with \`<word> (<part of speech>):\`, so the
  backbone has seen each word's part of speech in another format; suffixes (\`-ly\`, \`-ness\`,
  \`-ize\`, \`-ous\`) give a partial rule. It measures whether an adapter can elicit what the
  backbone knows.

${splitStats('pos')}

\`\`\`
${examples('pos', 'test', 4)}
\`\`\`

## Licence

Derived from WordNet 3.0. WordNet 3.0 Copyright 2006 by Princeton University. All rights
reserved. Distributed under the WordNet 3.0 licence: permission to use, copy, modify and
distribute for any purpose and without fee or royalty, provided the copyright notice,
statements and disclaimer appear on all copies; THE DATABASE IS PROVIDED "AS IS" and
Princeton University makes no representations or warranties, express or implied; the name of
Princeton University or Princeton may not be used in advertising or publicity pertaining to
distribution. Full text: \`data/corpus/SOURCES.md\` (quoted from
\`/usr/share/doc/wordnet-base/copyright\`). The arithmetic task is generated, not derived
from any source.
`;
}

// ---------------------------------------------------------------------------------------------

function report(tasks) {
  let ok = true;
  for (const [name, t] of Object.entries(tasks)) {
    const sizes = SPLITS.map((s) => `${s} ${t.splits[s].length}`).join(', ');
    console.log(`\n${name}: ${sizes}`);
    for (const s of SPLITS) console.log(`  ${s}: ${stats(name, t.splits[s])}`);
    // Overlap checks: prompts and underlying keys.
    const keySplit = new Map();
    const promptSplit = new Map();
    let overlaps = 0;
    for (const s of SPLITS) {
      for (const it of t.splits[s]) {
        if (promptSplit.has(it.prompt) && promptSplit.get(it.prompt) !== s) overlaps++;
        promptSplit.set(it.prompt, s);
        for (const k of itemKeys(name, it)) {
          if (keySplit.has(k) && keySplit.get(k) !== s) overlaps++;
          keySplit.set(k, s);
        }
      }
    }
    console.log(
      `  split overlap (prompts and ${name === 'arithmetic' ? 'operand pairs' : 'words'}): ${overlaps}`,
    );
    if (overlaps > 0) ok = false;
    for (const it of t.splits.test.slice(0, 3)) {
      console.log(`  e.g. ${JSON.stringify(it.prompt)} -> ${JSON.stringify(it.completion)}`);
    }
  }
  return ok;
}

function parseArgs(argv) {
  const opts = { check: false, out: DEFAULT_OUT, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--check') opts.check = true;
    else if (a === '--quiet') opts.quiet = true;
    else if (a === '--out') {
      if (i + 1 >= argv.length) throw usageError('--out needs a directory');
      opts.out = resolve(argv[++i]);
    } else if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/data/make-tasks.mjs [--check] [--out DIR] [--quiet]');
      process.exit(0);
    } else throw usageError(`unknown argument ${a} (try --help)`);
  }
  return opts;
}

/** Compare generated files with those on disk: returns a list of differing relative paths. */
export function diffFiles(files, dir = DEFAULT_OUT) {
  const diffs = [];
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    if (!existsSync(p)) diffs.push(`${rel} (missing)`);
    else if (readFileSync(p, 'utf8') !== content) diffs.push(`${rel} (differs)`);
  }
  // Files the generator does not write (e.g. a stale task) are reported too.
  if (existsSync(dir)) {
    for (const rel of readdirSync(dir, { recursive: true })) {
      const p = join(dir, rel);
      if (statSync(p).isFile() && !(rel.split(sep).join('/') in files)) {
        diffs.push(`${rel} (not written by the generator)`);
      }
    }
  }
  return diffs;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const tasks = generateTasks();
  const files = renderFiles(tasks);
  const shown = relative(process.cwd(), opts.out) || '.';
  if (opts.check) {
    const diffs = diffFiles(files, opts.out);
    if (diffs.length > 0) {
      console.error(`${shown}: ${diffs.length} file(s) differ from the generator:`);
      for (const d of diffs) console.error(`  ${d}`);
      console.error('regenerate with: node scripts/data/make-tasks.mjs');
      process.exit(1);
    }
    console.log(`${shown}: all ${Object.keys(files).length} files match the generator`);
    return;
  }
  for (const [rel, content] of Object.entries(files)) {
    const p = join(opts.out, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  console.log(`wrote ${Object.keys(files).length} files under ${shown}`);
  if (!opts.quiet && !report(tasks)) {
    console.error('split overlap found');
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  runMain(main);
}
