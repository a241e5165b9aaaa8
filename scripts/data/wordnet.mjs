// Shared helpers for the data scripts: locating and parsing Debian's WordNet 3.0 database
// (package `wordnet-base`) and the fortune cookie files (packages `fortunes-min`, `fortunes`),
// plus a small seeded PRNG. Plain Node ESM, Node built-ins only.
//
// WordNet data file format (wndb(5)), one synset per line after the licence header (header lines
// start with two spaces):
//   offset lex_filenum ss_type w_cnt(hex) {word lex_id(hex)}×w_cnt p_cnt(3 digits)
//   {ptr_symbol offset pos source/target(4 hex)}×p_cnt [frames, verbs only] | gloss
// Index file format: lemma pos synset_cnt p_cnt {ptr_symbol}×p_cnt sense_cnt tagsense_cnt
//   {synset_offset}×synset_cnt   (offsets ordered by sense frequency, most frequent first)

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

// Overridable for tests and non-Debian layouts; these scripts are not turbo tasks.
// biome-ignore lint/suspicious/noUndeclaredEnvVars: plain script, not a turbo task
export const WORDNET_DIR = process.env.PARA_WORDNET_DIR ?? '/usr/share/wordnet';
// biome-ignore lint/suspicious/noUndeclaredEnvVars: plain script, not a turbo task
export const FORTUNES_DIR = process.env.PARA_FORTUNES_DIR ?? '/usr/share/games/fortunes';

export const POS_FILES = /** @type {const} */ (['noun', 'verb', 'adj', 'adv']);
export const POS_NAME = { n: 'noun', v: 'verb', a: 'adjective', s: 'adjective', r: 'adverb' };

/** Throw (as a process-level message) when a required source file is missing. */
export function requireFiles(paths, packages) {
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length > 0) {
    const err = new Error(
      `missing source file(s):\n  ${missing.join('\n  ')}\n` +
        `Install them with: sudo apt-get install ${packages.join(' ')}`,
    );
    err.code = 'PARA_DATA_MISSING_SOURCE';
    throw err;
  }
}

export function requireWordnet() {
  requireFiles(
    POS_FILES.flatMap((p) => [join(WORDNET_DIR, `data.${p}`), join(WORDNET_DIR, `index.${p}`)]),
    ['wordnet-base'],
  );
}

/** Run `main`, turning our own errors into a one-line message and exit code 2. */
export async function runMain(main) {
  try {
    await main();
  } catch (err) {
    if (err && (err.code === 'PARA_DATA_MISSING_SOURCE' || err.code === 'PARA_DATA_USAGE')) {
      console.error(`error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

export function usageError(message) {
  const err = new Error(message);
  err.code = 'PARA_DATA_USAGE';
  return err;
}

/** Versions of the Debian packages that provide the sources (null where dpkg is unavailable). */
export function packageVersions(names) {
  const out = {};
  for (const name of names) {
    try {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format string
      out[name] = execFileSync('dpkg-query', ['-W', '-f=${Version}', name], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      out[name] = null;
    }
  }
  return out;
}

/**
 * Split a WordNet gloss into its definition and its usage examples. Examples are the
 * `;`-separated segments that start with a double quote; everything else is definition text.
 * `;` inside a quoted example does not split.
 */
export function splitGloss(gloss) {
  const segments = [];
  let cur = '';
  let inQuote = false;
  for (const ch of gloss) {
    if (ch === '"') inQuote = !inQuote;
    if (ch === ';' && !inQuote) {
      segments.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  segments.push(cur);
  const definition = [];
  const examples = [];
  for (const raw of segments) {
    const s = raw.trim();
    if (s === '') continue;
    if (s.startsWith('"')) {
      // Strip the surrounding quotes; some examples carry a trailing attribution after the
      // closing quote (`"..." - Shakespeare`), which we keep.
      const m = /^"([^"]*)"?(.*)$/.exec(s);
      const text = (m[1] + (m[2] ? ` ${m[2].trim()}` : '')).trim();
      if (text) examples.push(text);
    } else {
      definition.push(s);
    }
  }
  return { definition: definition.join('; '), examples };
}

/** Clean a lemma as stored in data.*: `_` → space, adjective markers `(a)`, `(p)`, `(ip)` dropped. */
export function cleanLemma(word) {
  return word.replace(/\((?:a|p|ip)\)$/, '').replace(/_/g, ' ');
}

/**
 * Parse one data.<pos> file. Returns synsets in file order (by offset):
 * { offset, pos: 'noun'|..., ssType: 'n'|'v'|'a'|'s'|'r', lexFile, words: [{lemma, lexId}],
 *   pointers: [{symbol, offset, pos, source, target}], definition, examples }
 */
export function parseDataFile(file) {
  const text = readFileSync(file, 'latin1');
  const synsets = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('  ')) continue; // licence header
    const bar = line.indexOf(' | ');
    const head = (bar >= 0 ? line.slice(0, bar) : line).trim().split(/\s+/);
    const gloss = bar >= 0 ? line.slice(bar + 3).trim() : '';
    let i = 0;
    const offset = head[i++];
    const lexFile = Number.parseInt(head[i++], 10);
    const ssType = head[i++];
    const wCnt = Number.parseInt(head[i++], 16);
    const words = [];
    for (let k = 0; k < wCnt; k++) {
      const word = head[i++];
      const lexId = Number.parseInt(head[i++], 16);
      words.push({ raw: word, lemma: cleanLemma(word), lexId });
    }
    const pCnt = Number.parseInt(head[i++], 10);
    const pointers = [];
    for (let k = 0; k < pCnt; k++) {
      const symbol = head[i++];
      const target = head[i++];
      const pos = head[i++];
      const st = head[i++];
      pointers.push({
        symbol,
        offset: target,
        pos,
        source: Number.parseInt(st.slice(0, 2), 16),
        target: Number.parseInt(st.slice(2, 4), 16),
      });
    }
    if (!/^\d{8}$/.test(offset) || !POS_NAME[ssType] || words.length !== wCnt) {
      throw new Error(`${file}: cannot parse line starting ${JSON.stringify(line.slice(0, 60))}`);
    }
    const { definition, examples } = splitGloss(gloss);
    synsets.push({
      offset,
      pos: POS_NAME[ssType],
      ssType,
      lexFile,
      words,
      pointers,
      definition,
      examples,
    });
  }
  return synsets;
}

/**
 * Parse index.<pos>: Map lemma → { senseCnt, tagsenseCnt, offsets } (lemma lowercased with `_`).
 */
export function parseIndexFile(file) {
  const text = readFileSync(file, 'latin1');
  const index = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('  ')) continue;
    const f = line.trim().split(/\s+/);
    const lemma = f[0];
    const synsetCnt = Number.parseInt(f[2], 10);
    const pCnt = Number.parseInt(f[3], 10);
    const senseCnt = Number.parseInt(f[4 + pCnt], 10);
    const tagsenseCnt = Number.parseInt(f[5 + pCnt], 10);
    const offsets = f.slice(6 + pCnt, 6 + pCnt + synsetCnt);
    index.set(lemma, { senseCnt, tagsenseCnt, offsets });
  }
  return index;
}

let cachedWordnet = null;

/** Load all four data files and index files. Cached per process. */
export function loadWordnet() {
  if (cachedWordnet) return cachedWordnet;
  requireWordnet();
  const data = {};
  const index = {};
  const byKey = new Map(); // `${posLetter}:${offset}` → synset ('s' satellites are keyed as 'a')
  for (const p of POS_FILES) {
    data[p] = parseDataFile(join(WORDNET_DIR, `data.${p}`));
    index[p] = parseIndexFile(join(WORDNET_DIR, `index.${p}`));
    for (const s of data[p]) byKey.set(`${keyPos(s.ssType)}:${s.offset}`, s);
  }
  cachedWordnet = {
    data,
    index,
    /** Look up a synset by pointer pos letter and offset. */
    get(pos, offset) {
      return byKey.get(`${keyPos(pos)}:${offset}`);
    },
  };
  return cachedWordnet;
}

function keyPos(p) {
  return p === 's' ? 'a' : p;
}

/** Fortune files (top-level regular files without .dat/.u8 suffix), sorted by name. */
export function listFortuneFiles(dir = FORTUNES_DIR) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => !name.endsWith('.dat') && !name.endsWith('.u8'))
    .filter((name) => statSync(join(dir, name)).isFile()) // skips off/ and symlinks to dirs
    .sort();
}

/** Decode a fortune file as UTF-8, falling back to Latin-1 when it is not valid UTF-8. */
export function readFortuneFile(path) {
  const buf = readFileSync(path);
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    text = buf.toString('latin1');
  }
  // Cookies are separated by lines holding just `%`.
  const cookies = [];
  let cur = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '%') {
      cookies.push(cur.join('\n'));
      cur = [];
    } else {
      cur.push(line);
    }
  }
  cookies.push(cur.join('\n'));
  return cookies.filter((c) => c.trim() !== '');
}

function isControl(ch) {
  const cp = ch.codePointAt(0);
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/**
 * Normalise a text to one line: apply backspace overstrikes (`_\bX` → `X`), drop other
 * control characters, collapse all whitespace runs to one space, trim.
 */
export function normaliseText(text) {
  let out = '';
  for (const ch of text.normalize('NFC')) {
    if (ch === '\b') {
      out = out.slice(0, -1);
    } else if (ch === '\t' || ch === '\n' || ch === '\r' || ch === '\f' || ch === '\v') {
      out += ' ';
    } else if (isControl(ch)) {
      // drop bells, escapes and C1 controls
    } else {
      out += ch;
    }
  }
  return out.replace(/\s+/g, ' ').trim();
}

// ---------------------------------------------------------------------------------------------
// Seeded PRNG: mulberry32 over a 32-bit state, seeded through a string hash (FNV-1a), so every
// task can derive an independent stream from a name: rng('arithmetic/split').

export function hashString(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function rng(seed) {
  let a = typeof seed === 'string' ? hashString(seed) : seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    /** Uniform float in [0, 1). */
    next,
    /** Uniform integer in [0, n). */
    int: (n) => Math.floor(next() * n),
    /** In-place Fisher–Yates shuffle; returns the array. */
    shuffle(arr) {
      for (let i = arr.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [arr[i], arr[j]] = [arr[j], arr[i]];
      }
      return arr;
    },
    pick: (arr) => arr[Math.floor(next() * arr.length)],
  };
}

/**
 * A Markdown table padded the way Biome's Markdown formatter pads it, so generated files are
 * stable under `biome format`. `align` holds 'l' or 'r' per column.
 */
export function mdTable(header, rows, align = header.map(() => 'l')) {
  const len = (s) => [...s].length;
  const widths = header.map((h, i) => Math.max(3, len(h), ...rows.map((r) => len(r[i]))));
  const cell = (s, i) =>
    align[i] === 'r' ? ' '.repeat(widths[i] - len(s)) + s : s + ' '.repeat(widths[i] - len(s));
  const line = (cells) => `| ${cells.map(cell).join(' | ')} |`;
  const sep = `| ${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}
