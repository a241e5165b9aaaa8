/** Seeded, generated corpora for tests (no files from the machine, no network). */

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ONSETS = [
  '',
  'b',
  'c',
  'd',
  'f',
  'g',
  'h',
  'l',
  'm',
  'n',
  'p',
  'r',
  's',
  't',
  'th',
  'st',
  'ch',
  'w',
  'pr',
  'tr',
];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ea', 'ou', 'ai', 'é', 'ö'];
const CODAS = ['', '', 'n', 'r', 's', 't', 'l', 'nd', 'ng', 'st', 'ck'];
const EXTRAS = ['日本語', '東京', 'テキスト', '👋🏽', '🙂', 'naïve', 'café', 'Ελληνικά', 'русский'];
const PUNCT = ['.', ',', '!', '?', ';', "'s", "'ll", '—', '(', ')'];
const SPACES = [' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', '  ', '\t', '    '];

/** English-like text: `lines` lines of syllable words with some Unicode, digits and odd spacing. */
export function generateCorpus(seed: number, lines: number, lexiconSize = 800): string {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const lexicon = Array.from({ length: lexiconSize }, () => {
    let w = '';
    const n = 1 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) w += pick(ONSETS) + pick(VOWELS) + pick(CODAS);
    return w;
  });
  const out: string[] = [];
  for (let l = 0; l < lines; l++) {
    const n = 3 + Math.floor(r() * 12);
    let line = '';
    for (let i = 0; i < n; i++) {
      const x = r();
      // Zipf-like: most words come from the head of the lexicon.
      let w =
        x < 0.03
          ? pick(EXTRAS)
          : x < 0.06
            ? String(Math.floor(r() * 2025))
            : lexicon[Math.floor(lexicon.length * r() ** 3)]!;
      if (r() < 0.1) w = w.charAt(0).toUpperCase() + w.slice(1);
      if (r() < 0.08) w += pick(PUNCT);
      line += (i === 0 ? '' : pick(SPACES)) + w;
    }
    out.push(line + pick(['\n', '\n', '\n', '\r\n', '\n\n']));
  }
  return out.join('');
}

/** Text that exercises every round-trip corner: emoji (with modifiers, ZWJ), CJK, accents (composed
 * and combining), tabs, CRLF, runs of spaces, leading/trailing whitespace, control characters. */
export const TRICKY_TEXTS: readonly string[] = [
  'Hello, world!',
  '  leading and trailing spaces   ',
  'runs     of      spaces and\t\ttabs\tand a final tab\t',
  'line one\r\nline two\r\n\r\nline four\n\n\n',
  'emoji 👋🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and 🙂',
  '日本語のテキストと中文字符，한국어 텍스트',
  'accents: café naïve Ångström façade — composed é vs combining é',
  'Ελληνικά русский עברית العربية हिन्दी',
  "contractions: it's we'll they're I'd you've",
  'numbers 1234567890 3.14159 -42 1e-9',
  'control \u0000 \u0001 \u007f bell\u0007 and nbsp\u00a0here',
  '',
  ' ',
  '\n',
  'x'.repeat(300) + ' ' + ' '.repeat(200) + '🙂'.repeat(60),
];
