#!/usr/bin/env node
// Build the pretraining corpus for the default backbone from Debian's WordNet 3.0
// (`wordnet-base`) and fortune cookies (`fortunes-min`, `fortunes`).
//
//   node scripts/data/build-corpus.mjs --out FILE [--sources FILE] [--seed N]
//        [--no-fortunes] [--no-relations] [--no-shuffle]
//
// Output: UTF-8 text, ONE DOCUMENT PER LINE ('\n'-terminated, no blank lines, whitespace inside
// a document collapsed to single spaces). A document is either one WordNet synset rendered as
//   dog, domestic dog, Canis familiaris (noun): a member of the genus Canis ... breeds. For
//   example: "the dog barked all night". A dog is a kind of canine. A dog is a kind of domestic
//   animal.
// or one fortune cookie. Exact duplicate documents are dropped. Documents are shuffled with a
// seeded PRNG (default seed 0), so the output is byte-for-byte reproducible; --no-shuffle keeps
// source order (WordNet noun, verb, adj, adv by offset, then fortune files by name).
// --sources FILE writes the provenance/licence notes (data/corpus/SOURCES.md).

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import {
  FORTUNES_DIR,
  listFortuneFiles,
  loadWordnet,
  mdTable,
  normaliseText,
  packageVersions,
  readFortuneFile,
  requireFiles,
  rng,
  runMain,
  usageError,
  WORDNET_DIR,
} from './wordnet.mjs';

/**
 * Fortune files left out of the corpus, with the reason. Everything under off/ (the
 * `fortunes-off` package) is excluded as well: listFortuneFiles() never descends into
 * subdirectories, and any path containing an `off` component is rejected below.
 */
export const EXCLUDED_FORTUNES = {
  'ascii-art': { kind: 'content', why: 'ASCII pictures, not prose' },
  'translate-me': { kind: 'content', why: 'mostly untranslated Latin/French one-liners' },
  ethnic: {
    kind: 'content',
    why: 'jokes about national and ethnic groups; not wanted in a default demo model',
  },
  pratchett: {
    kind: 'licence',
    why: "verbatim excerpts from Terry Pratchett's novels (a single author's copyrighted works)",
  },
  zippy: {
    kind: 'licence',
    why: 'lines from Bill Griffith\'s copyrighted comic strip "Zippy the Pinhead"',
  },
  startrek: {
    kind: 'licence',
    why: 'quotations from Star Trek episode scripts (studio-copyrighted)',
  },
  'songs-poems': {
    kind: 'licence',
    why: 'verse including song lyrics and 20th-century poems (e.g. Ogden Nash) whose authors hold the copyright',
  },
  tao: {
    kind: 'licence',
    why: 'a modern English rendering of the Tao Te Ching; translator and licence not stated',
  },
};

/** A cookie that is mostly not letters (ASCII art, line noise) is dropped. */
function looksLikeProse(text) {
  if (text.length < 8) return false;
  const letters = (text.match(/\p{L}/gu) ?? []).length;
  const spaces = (text.match(/ /g) ?? []).length;
  return (letters + spaces) / text.length >= 0.75;
}

const VOWEL_SOUND_EXCEPTIONS_A = /^(?:uni|use|usu|uti|eu|ewe|one|once|ubiq|ura|uro|u\b)/i;
const VOWEL_SOUND_EXCEPTIONS_AN = /^(?:hour|honest|honou?r|heir)/i;

/** Indefinite article by a first-letter heuristic with a few exceptions. */
export function indefinite(noun) {
  if (VOWEL_SOUND_EXCEPTIONS_AN.test(noun)) return 'an';
  if (VOWEL_SOUND_EXCEPTIONS_A.test(noun)) return 'a';
  return /^[aeiou]/i.test(noun) ? 'an' : 'a';
}

function endSentence(s) {
  const t = s.trim();
  if (t === '') return t;
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

/** Render one synset as one line (see the header comment). */
export function renderSynset(s, wn, { relations = true } = {}) {
  const lemmas = s.words.map((w) => w.lemma);
  let line = `${lemmas.join(', ')} (${s.pos}): ${endSentence(s.definition)}`;
  if (s.examples.length > 0) {
    line += ` For example: ${s.examples.map((e) => `"${e}"`).join('; ')}.`;
  }
  if (relations) {
    const head = lemmas[0];
    const isProper = /^[A-Z]/.test(head);
    for (const p of s.pointers) {
      if (s.ssType === 'n' && (p.symbol === '@' || p.symbol === '@i')) {
        const h = wn.get(p.pos, p.offset);
        if (!h) continue;
        const hyper = h.words[0].lemma;
        if (p.symbol === '@i' || isProper) {
          line += ` ${head} is ${indefinite(hyper)} ${hyper}.`;
        } else {
          const art = indefinite(head);
          line += ` ${art[0].toUpperCase()}${art.slice(1)} ${head} is a kind of ${hyper}.`;
        }
      } else if (p.symbol === '!' && p.source > 0 && p.target > 0) {
        const t = wn.get(p.pos, p.offset);
        if (!t?.words[p.target - 1]) continue;
        line += ` The opposite of ${s.words[p.source - 1].lemma} is ${t.words[p.target - 1].lemma}.`;
      }
    }
  }
  return normaliseText(line);
}

/** Build all documents. Returns { docs, stats }. Pure function of the installed sources. */
export function buildCorpus({ fortunes = true, relations = true, shuffle = true, seed = 0 } = {}) {
  const wn = loadWordnet();
  const docs = [];
  const seen = new Set();
  const stats = {
    wordnet: {},
    fortunes: {},
    excluded: {},
    duplicates: 0,
    notProse: 0,
    fortuneBytes: 0,
  };
  const add = (text) => {
    if (seen.has(text)) {
      stats.duplicates++;
      return false;
    }
    seen.add(text);
    docs.push(text);
    return true;
  };
  for (const pos of ['noun', 'verb', 'adj', 'adv']) {
    let n = 0;
    for (const s of wn.data[pos]) if (add(renderSynset(s, wn, { relations }))) n++;
    stats.wordnet[pos] = n;
  }
  if (fortunes) {
    const files = listFortuneFiles();
    if (files.length === 0) {
      requireFiles([join(FORTUNES_DIR, 'fortunes')], ['fortunes-min', 'fortunes']);
    }
    for (const name of files) {
      if (name.split('/').includes('off'))
        throw new Error(`refusing offensive fortune file ${name}`);
      const cookies = readFortuneFile(join(FORTUNES_DIR, name));
      if (EXCLUDED_FORTUNES[name]) {
        stats.excluded[name] = cookies.length;
        continue;
      }
      let n = 0;
      for (const c of cookies) {
        const text = normaliseText(c);
        if (!looksLikeProse(text)) {
          stats.notProse++;
          continue;
        }
        if (add(text)) {
          n++;
          stats.fortuneBytes += Buffer.byteLength(text, 'utf8') + 1;
        }
      }
      stats.fortunes[name] = n;
    }
  }
  if (shuffle) rng(`corpus/${seed}`).shuffle(docs);
  return { docs, stats };
}

function parseArgs(argv) {
  const opts = {
    out: null,
    sources: null,
    seed: 0,
    fortunes: true,
    relations: true,
    shuffle: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw usageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--out') opts.out = value();
    else if (a === '--sources') opts.sources = value();
    else if (a === '--seed') {
      opts.seed = Number(value());
      if (!Number.isInteger(opts.seed) || opts.seed < 0)
        throw usageError('--seed must be an integer ≥ 0');
    } else if (a === '--no-fortunes') opts.fortunes = false;
    else if (a === '--no-relations') opts.relations = false;
    else if (a === '--no-shuffle') opts.shuffle = false;
    else if (a === '--help' || a === '-h') {
      console.log(
        'usage: node scripts/data/build-corpus.mjs --out FILE [--sources FILE] [--seed N]\n' +
          '       [--no-fortunes] [--no-relations] [--no-shuffle]',
      );
      process.exit(0);
    } else throw usageError(`unknown argument ${a} (try --help)`);
  }
  if (!opts.out && !opts.sources) throw usageError('--out FILE is required (try --help)');
  return opts;
}

function fmtBytes(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

function copyrightBlock(path, startRe, endRe) {
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const start = lines.findIndex((l) => startRe.test(l));
  if (start < 0) throw new Error(`${path}: licence text not found`);
  let end = lines.findIndex((l, i) => i > start && endRe.test(l));
  if (end < 0) end = lines.length;
  return lines.slice(start, end).join('\n').replace(/\n+$/, '');
}

/** The "Warning:" paragraph of the upstream fortune Notes (gzip), verbatim, tabs removed. */
function notesWarning() {
  const path = '/usr/share/doc/fortunes/Notes.gz';
  const lines = gunzipSync(readFileSync(path)).toString('utf8').split('\n');
  const start = lines.findIndex((l) =>
    /^\s*The fortunes contained in the fortune database/.test(l),
  );
  if (start < 0) throw new Error(`${path}: warning paragraph not found`);
  const end = lines.findIndex((l, i) => i > start && l.trim() === '');
  return lines
    .slice(start, end)
    .map((l) => l.replace(/^\t/, ''))
    .join('\n');
}

export function renderSources({ stats, opts, bytes, lines, chars, sha256 }) {
  const versions = packageVersions(['wordnet-base', 'fortunes-min', 'fortunes']);
  const wnLicence = copyrightBlock(
    '/usr/share/doc/wordnet-base/copyright',
    /^License: WordNet3\.0/,
    /^Files: debian/,
  )
    .split('\n')
    .slice(1)
    .map((l) => (l.trim() === '.' ? '' : l.replace(/^ /, '')))
    .join('\n');
  const fortLicence = copyrightBlock(
    '/usr/share/doc/fortunes/copyright',
    /^This program falls under the BSD copyright/,
    /^-{20,}/,
  );
  const fortTotal = Object.values(stats.fortunes).reduce((a, b) => a + b, 0);
  const wnTotal = Object.values(stats.wordnet).reduce((a, b) => a + b, 0);
  const keptFiles = Object.entries(stats.fortunes)
    .map(([f, n]) => `${f} (${n})`)
    .join(', ');
  const excludedTable = mdTable(
    ['file', 'cookies', 'kind', 'reason'],
    Object.entries(EXCLUDED_FORTUNES).map(([f, e]) => [
      `\`${f}\``,
      String(stats.excluded[f] ?? 'not installed'),
      e.kind,
      e.why,
    ]),
    ['l', 'r', 'l', 'l'],
  );
  const countTable = mdTable(
    ['', 'documents'],
    [
      ['WordNet noun synsets', String(stats.wordnet.noun)],
      ['WordNet verb synsets', String(stats.wordnet.verb)],
      ['WordNet adjective synsets', String(stats.wordnet.adj)],
      ['WordNet adverb synsets', String(stats.wordnet.adv)],
      ['fortune cookies', String(fortTotal)],
      ['**total**', `**${lines}**`],
    ],
    ['l', 'r'],
  );
  const flags = [
    opts.fortunes ? null : '--no-fortunes',
    opts.relations ? null : '--no-relations',
    opts.shuffle ? null : '--no-shuffle',
    opts.seed ? `--seed ${opts.seed}` : null,
  ]
    .filter(Boolean)
    .join(' ');
  return `# Pretraining corpus: sources and licences

This file is generated by \`scripts/data/build-corpus.mjs --sources data/corpus/SOURCES.md\`.
The corpus itself is **not committed** (about ${fmtBytes(bytes)}); rebuild it with

\`\`\`sh
sudo apt-get install wordnet-base fortunes-min fortunes   # Debian/Ubuntu
node scripts/data/build-corpus.mjs --out /tmp/para-corpus.txt${flags ? ` ${flags}` : ''}
\`\`\`

## What it is

Plain UTF-8 text, **one document per line** (\`\\n\`-terminated, no blank lines; whitespace
inside a document collapsed to single spaces, control characters removed, backspace
overstrikes applied). Exact duplicate documents are dropped and the lines are shuffled with a
seeded PRNG, so the same installed packages give the same bytes.

${countTable}

Built with the defaults: ${fmtBytes(bytes)} (${bytes} bytes), ${lines} lines, ${chars}
characters, sha256 \`${sha256}\`. Exact duplicates dropped: ${stats.duplicates}; cookies dropped
as not prose (fewer than 75% letters and spaces, e.g. ASCII art): ${stats.notProse}.

**WordNet documents** (${wnTotal}): one per synset of \`data.noun\`, \`data.verb\`, \`data.adj\`,
\`data.adv\` in \`${WORDNET_DIR}\` (the licence header lines, which start with two spaces, are
skipped). The lemmas (\`_\` read as a space, adjective markers such as \`(a)\` dropped), the part
of speech, the definition (the gloss after the \`|\` separator, minus its quoted parts) and the usage examples
(the double-quoted parts of the gloss), e.g.

\`\`\`
hot (adjective): used of physical heat; having a high or higher than desirable temperature or giving off heat or feeling or causing a sensation of heat or burning. For example: "hot stove"; "hot water"; "a hot August day"; "a hot stuffy room"; "she's hot and tired"; "a hot forehead". The opposite of hot is cold.
\`\`\`

By default each synset line also states its WordNet relations in plain English
(\`--no-relations\` leaves them out): every noun hypernym (\`A poodle is a kind of dog.\`, first
lemma of each synset; instance hypernyms as \`Paris is a national capital.\`) and every
antonym pointer of any part of speech (\`The opposite of hot is cold.\`). They put into the
backbone the facts that the bundled tenant tasks (\`data/tasks/\`) ask about, so that a task's
held-out test items probe whether an adapter can _elicit_ knowledge the backbone has, in a new
prompt format, rather than asking a few-million-parameter model to learn unseen facts from
nothing. The task prompts are phrased differently from these sentences.

**Fortune documents** (${fortTotal}): one per cookie (cookies are separated by lines holding
just \`%\`) of the top-level files in \`${FORTUNES_DIR}\` (before the shuffle: files in name
order, cookies in file order). Cookies kept per file: ${keptFiles}.

## Packages

Output of \`dpkg-query -W wordnet-base fortunes fortunes-min\` when this file was generated:

\`\`\`
wordnet-base\t${versions['wordnet-base'] ?? '(not installed)'}
fortunes\t${versions.fortunes ?? '(not installed)'}
fortunes-min\t${versions['fortunes-min'] ?? '(not installed)'}
\`\`\`

\`fortunes-min\` provides \`fortunes\`, \`literature\` and \`riddles\`; \`fortunes\` provides the
other files. \`fortunes-off\` (the offensive set, \`/usr/share/games/fortunes/off/\`) is **not**
used: it is not installed here, the script never reads subdirectories, and it refuses any path
with an \`off\` component.

## Licences

### WordNet 3.0 (\`wordnet-base\`): permissive, BSD-like

From \`/usr/share/doc/wordnet-base/copyright\` (\`Files: *\`, \`Copyright: © 1996-2012 Cognitive
Science Laboratory Princeton University\`, \`License: WordNet3.0\`), verbatim:

\`\`\`text
${wnLicence}
\`\`\`

Obligations for anything we distribute that contains or is derived from the database (the
default backbone's weights and tokenizer, the files in \`data/tasks/\`): reproduce the copyright
notice, statements and disclaimer above, and do not use Princeton's name in advertising. The
model card and \`data/tasks/README.md\` should carry this notice. (The Debian packaging files are
GPL-2+, but no packaging file is used.)

### fortune cookies (\`fortunes-min\`, \`fortunes\`): licence of the _texts_ is unclear

\`/usr/share/doc/fortunes/copyright\` (identical in \`fortunes-min\`) gives a BSD licence for the
_program_ (Ken Arnold's BSD \`fortune\`, Linux port by Florian LaRoche and Amy A. Lewis), verbatim:

\`\`\`text
${fortLicence}
\`\`\`

That licence is written for "this software" and does not settle the copyright of the cookies
themselves, which are quotations from many people. The upstream \`Notes\` file
(\`/usr/share/doc/fortunes/Notes.gz\`) says so plainly, verbatim:

\`\`\`text
${notesWarning()}
\`\`\`

Debian distributes these files in \`main\` (section \`games\`) under the copyright file above.
**Flag:** the texts' own licence is unclear. We use the files below as short quotations that
Debian redistributes; the corpus text is not committed, but the default backbone trained on it
is, so whether that is acceptable is a judgement for the project, not something the licence
settles. Building with \`--no-fortunes\` gives a WordNet-only corpus with an unambiguous licence
(about ${fmtBytes(bytes - stats.fortuneBytes)} with the defaults, still above 10 MB).

Files excluded (cookie counts as read; \`kind\` says whether the reason is licence or content):

${excludedTable}

Kept files that still contain some quotations from copyrighted modern works (flagged, kept
because they are short and mixed with public-domain or anonymous material): \`literature\`
(mostly Twain and Shakespeare, a few Tolkien lines), \`humorists\`, \`art\`, \`people\`,
\`debian\`/\`knghtbrd\`/\`linux\`/\`perl\` (quotes from mailing lists and IRC with attributions).
\`men-women\` is kept (Debian's "inoffensive" set) but is dated humour about the sexes.
`;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { docs, stats } = buildCorpus(opts);
  const text = docs.join('\n') + '\n';
  const buf = Buffer.from(text, 'utf8');
  const chars = [...text].length;
  const sha256 = createHash('sha256').update(buf).digest('hex');
  if (opts.out) {
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, buf);
    console.log(`wrote ${opts.out}`);
  }
  console.log(
    `size ${fmtBytes(buf.length)} (${buf.length} bytes), ${docs.length} lines, ${chars} characters`,
  );
  console.log(
    `  wordnet: ${Object.entries(stats.wordnet)
      .map(([k, v]) => `${k} ${v}`)
      .join(
        ', ',
      )}; fortunes: ${Object.values(stats.fortunes).reduce((a, b) => a + b, 0)} cookies ` +
      `from ${Object.keys(stats.fortunes).length} files; excluded files: ${
        Object.keys(stats.excluded).join(', ') || 'none'
      }`,
  );
  console.log(
    `  duplicates dropped ${stats.duplicates}, non-prose cookies dropped ${stats.notProse}`,
  );
  console.log(`  sha256 ${sha256}`);
  if (opts.sources) {
    mkdirSync(dirname(opts.sources), { recursive: true });
    writeFileSync(
      opts.sources,
      renderSources({ stats, opts, bytes: buf.length, lines: docs.length, chars, sha256 }),
    );
    console.log(`wrote ${relative(process.cwd(), opts.sources) || opts.sources}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  runMain(main);
}
