/**
 * ParaTokenizer: a Hugging Face tokenizer.json (+ tokenizer_config.json) loaded through
 * `@huggingface/tokenizers`, with batch encoding (padding, truncation), bos/eos/pad/unk ids and
 * chat templates rendered by `@huggingface/jinja` the way transformers' `apply_chat_template`
 * does. No Node built-ins: the browser app passes the fetched JSON text.
 */
import type { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { describeValue, ParaError } from '@para/core';
import { type ChatTemplateLimits, compileChatTemplate, renderChatTemplate } from './chat-template';
import { installFastBpe, installUnigramEncode } from './fast-bpe';
import { checkJsonDepth, nestedQuantifier } from './json-guard';
import { installSafeNormalization } from './safe-normalize';
import { guessSpecialTokenRoles } from './trainer';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (e.g. LLaMA's bos). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (bos, eos, pad, …) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface EncodeBatchOptions extends EncodeOptions {
  /** true or 'longest': pad to the longest sequence; 'max_length': pad to maxLength. Default false. */
  padding?: boolean | 'longest' | 'max_length';
  /** Length for truncation and for padding 'max_length'. */
  maxLength?: number;
  /** Cut sequences longer than maxLength (or tokenizer_config's model_max_length). */
  truncation?: boolean;
  /** Default: tokenizer_config's padding_side, else 'right'. */
  paddingSide?: 'left' | 'right';
  /** Default: tokenizer_config's truncation_side, else 'right'. */
  truncationSide?: 'left' | 'right';
}

export interface BatchEncoding {
  ids: number[][];
  /** 1 for a real token, 0 for padding. */
  attentionMask: number[][];
}

export interface ChatTemplateOptions {
  /** End with the header of an assistant turn, so generation continues as the assistant. */
  addGenerationPrompt?: boolean;
  /** Return token ids (encoded without adding special tokens, as transformers does). Default true. */
  tokenize?: boolean;
  /** A template to use instead of the tokenizer's, or the name of one of its named templates. */
  chatTemplate?: string;
  /** Extra variables for the template (transformers' template kwargs: tools, documents, …). */
  variables?: Record<string, unknown>;
  /**
   * Bounds on rendering (a template comes from a file and may loop forever or explode): the
   * longest text or list it may build (default 4 MiB of characters), a work budget (default 2M
   * steps), the deepest recursion (default 500) and an optional deadline. Reaching one is a
   * ParaError LIMIT_EXCEEDED naming the template. See chat-template.ts.
   */
  limits?: ChatTemplateLimits;
}

export interface FromJsonOptions {
  /** Names used in error messages (file paths). */
  tokenizerSource?: string;
  configSource?: string;
}

type Json = Record<string, unknown>;

const PIPELINE_KEYS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;
const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'];

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(input: string | object, what: string, file: string | undefined): Json {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw new ParaError('INVALID_JSON', `${what} is not valid JSON: ${(e as Error).message}`, {
        file: file ?? what,
        cause: e,
      });
    }
  }
  checkJsonDepth(value, file ?? what);
  if (!isObject(value)) {
    throw new ParaError('INVALID_CONFIG', `${what} must hold a JSON object`, {
      file: file ?? what,
      expected: 'an object',
      actual: Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value,
    });
  }
  return value;
}

/**
 * Whether decode applies transformers' `clean_up_tokenization` (" ." → ".", " n't" → "n't", …)
 * after the tokenizer.json decoder, as transformers 5 decides it (TokenizersBackend._decode in
 * tokenization_utils_tokenizers.py, checked against transformers 5.18.0): only when
 * tokenizer_config.json sets `clean_up_tokenization_spaces` (the default is false since v5), and
 * never for a BPE model (byte-level or SentencePiece-style: Llama-3, Qwen, Gemma, Mistral), whose
 * decoders already give back the text exactly — the clean-up would turn `x !== 'y'` into
 * `x!=='y'` — unless `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`
 * is set too. Python `tokenizers` itself never applies it (only a WordPiece/CTC decoder's own
 * `cleanup` field does, which `@huggingface/tokenizers` honours in the decoder).
 */
function cleansUpSpaces(json: Json, config: Json): boolean {
  if (!config.clean_up_tokenization_spaces) return false;
  const model = json.model as Json;
  const bpe = model.type === 'BPE' || (model.type === undefined && Array.isArray(model.merges));
  return (
    !bpe || Boolean(config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output)
  );
}

/**
 * Unused ids allowed below the largest model-vocabulary id. `@huggingface/tokenizers` keeps the
 * vocabulary in an array indexed by id (and walks all of it in `get_vocab`), so `{"a": 1e9}` would
 * hang; a dense vocabulary has none, a few unusual files have some.
 */
const MAX_VOCAB_HOLES = 1024;

/** The longest added token (real ones are short; the longest we know are runs of spaces). */
const MAX_ADDED_TOKEN_LENGTH = 512;

interface CheckedTokenizerJson {
  /** The file, with every pipeline key present, for `@huggingface/tokenizers`. */
  json: Json;
  /** Every token (model vocabulary and added tokens) → its id. */
  ids: Map<string, number>;
  /** One more than the largest id. */
  vocabSize: number;
}

/**
 * Checks the parts of tokenizer.json that `@huggingface/tokenizers` relies on without checking,
 * so a malformed or hostile file fails here, naming the field, rather than deep inside the
 * library (or by silently encoding wrong). Token lookups use Maps, never `obj[token]`, so tokens
 * named `__proto__` or `constructor` are ordinary tokens.
 */
function validateTokenizerJson(json: Json, file: string): CheckedTokenizerJson {
  const bad = (field: string, expected: string, actual: unknown) =>
    new ParaError('INVALID_CONFIG', 'malformed tokenizer.json', {
      file,
      field,
      expected,
      actual: describeValue(actual, 80),
    });
  const model = json.model;
  if (!isObject(model)) throw bad('model', 'an object with "type" and "vocab"', model);
  const type = model.type;
  if (type !== undefined && (typeof type !== 'string' || !MODEL_TYPES.includes(type))) {
    throw bad('model.type', `one of ${MODEL_TYPES.join(', ')}`, type);
  }
  const unigram = type === 'Unigram' || (type === undefined && Array.isArray(model.vocab));
  if (unigram ? !Array.isArray(model.vocab) : !isObject(model.vocab)) {
    throw bad(
      'model.vocab',
      unigram ? 'an array of [piece, score]' : 'an object token → id',
      model.vocab,
    );
  }
  // The model vocabulary, token → id.
  const modelIds = new Map<string, number>();
  let modelLen: number;
  if (unigram) {
    const pieces = model.vocab as unknown[];
    pieces.forEach((p, i) => {
      if (
        !Array.isArray(p) ||
        p.length !== 2 ||
        typeof p[0] !== 'string' ||
        typeof p[1] !== 'number' ||
        !Number.isFinite(p[1])
      ) {
        throw bad(`model.vocab[${i}]`, '[piece: string, score: number]', p);
      }
      modelIds.set(p[0], i); // the last of a repeated piece wins, as in Rust and JS
    });
    modelLen = pieces.length;
  } else {
    const entries = Object.entries(model.vocab as Json);
    modelLen = entries.length;
    for (const [tok, id] of entries) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
        throw bad(`model.vocab[${JSON.stringify(tok)}]`, 'a non-negative integer id', id);
      if (id >= modelLen + MAX_VOCAB_HOLES)
        throw bad(
          `model.vocab[${JSON.stringify(tok)}]`,
          `an id below ${modelLen + MAX_VOCAB_HOLES} (the vocabulary has ${modelLen} entries; at most ${MAX_VOCAB_HOLES} unused ids)`,
          id,
        );
      modelIds.set(tok, id);
    }
  }
  if (type === 'BPE' || (type === undefined && !unigram && model.merges !== undefined)) {
    validateMerges(model, modelIds, bad);
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw bad('added_tokens', 'an array', added);
  // Added-token ids. The Rust `tokenizers` library (serialization.rs, AddedVocabulary::add_tokens)
  // does not trust the ids in the file: a token whose content is already known keeps that id,
  // any other gets the next free id (the model vocabulary's size, then one more than the largest
  // added id), and a file that says otherwise only logs a warning. `@huggingface/tokenizers`
  // trusts the file instead, so the two would encode differently — and a hostile id (1e9, a
  // duplicate of another token's id) breaks the JS side. We require the id Rust would assign:
  // that rules out negative or fractional ids, an id shared by two contents, holes and ids past
  // the vocabulary, with one rule Python agrees with.
  const ids = new Map(modelIds);
  const addedIds = new Map<string, number>();
  let maxAdded = -1;
  added.forEach((t, i) => {
    if (!isObject(t)) throw bad(`added_tokens[${i}]`, '{ "id": integer, "content": string, … }', t);
    if (typeof t.content !== 'string' || t.content.length === 0)
      throw bad(`added_tokens[${i}].content`, 'a non-empty string', t.content);
    // Added tokens are matched at every position of every text (a trie walk as deep as the
    // text matches), so one huge added token makes encoding quadratic.
    if (t.content.length > MAX_ADDED_TOKEN_LENGTH)
      throw bad(
        `added_tokens[${i}].content`,
        `at most ${MAX_ADDED_TOKEN_LENGTH} characters`,
        `${t.content.length} characters`,
      );
    if (typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0)
      throw bad(`added_tokens[${i}].id`, 'a non-negative integer', t.id);
    const next = maxAdded < 0 || (maxAdded < modelLen && modelLen > 0) ? modelLen : maxAdded + 1;
    const expected = addedIds.get(t.content) ?? modelIds.get(t.content) ?? next;
    if (t.id !== expected) {
      const holder = [...addedIds].find(([, id]) => id === t.id)?.[0];
      throw bad(
        `added_tokens[${i}].id`,
        `${expected}, the id Hugging Face tokenizers gives ${JSON.stringify(t.content)} here${
          holder !== undefined ? ` (${t.id} is already ${JSON.stringify(holder)})` : ''
        }`,
        t.id,
      );
    }
    addedIds.set(t.content, t.id);
    ids.set(t.content, t.id);
    maxAdded = Math.max(maxAdded, t.id);
  });
  for (const key of PIPELINE_KEYS) {
    const v = json[key];
    if (v !== undefined && v !== null && !(isObject(v) && typeof v.type === 'string'))
      throw bad(key, 'null or an object with "type"', v);
  }
  checkPatterns(json, file);
  let vocabSize = 0;
  for (const id of ids.values()) vocabSize = Math.max(vocabSize, id + 1);
  // @huggingface/tokenizers wants every pipeline key present (null when unused).
  const out: Json = { ...json, added_tokens: added };
  for (const key of PIPELINE_KEYS) out[key] = json[key] ?? null;
  return { json: out, ids, vocabSize };
}

/**
 * Regular expressions of the pipeline (`{"Regex": …}` in Split pre-tokenizers, Replace
 * normalizers and decoders): one that can backtrack exponentially is refused with
 * LIMIT_EXCEEDED naming its field (see nestedQuantifier), since a JS regex cannot be stopped.
 */
function checkPatterns(json: Json, file: string): void {
  const stack: [unknown, string][] = PIPELINE_KEYS.map((k) => [json[k], k]);
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        stack.push([x, `${path}[${i}]`]);
      });
      continue;
    }
    for (const [key, x] of Object.entries(v)) {
      if (key === 'Regex' && typeof x === 'string') {
        const problem = nestedQuantifier(x);
        if (problem !== undefined) {
          throw new ParaError(
            'LIMIT_EXCEEDED',
            'a regular expression that can take exponential time',
            {
              file,
              field: `${path}.Regex`,
              expected: 'a pattern without a repeated group that itself repeats without bound',
              actual: `${describeValue(x, 80)}: ${problem}`,
            },
          );
        }
      } else stack.push([x, `${path}.${key}`]);
    }
  }
}

/**
 * model.merges: all "left right" strings or all ["left", "right"] pairs. A file mixing the two is
 * refused, as the Rust `tokenizers` library refuses it (its merges are one serde type, a list of
 * strings or a list of pairs; `@huggingface/tokenizers` looks at merges[0] alone and would split
 * nothing or the wrong things). A string is split at its one space, as Rust does (exactly two
 * parts: "ab" and "a  b" are errors). Both parts and the merged token must be in the vocabulary,
 * as Rust requires (with `continuing_subword_prefix`, the merged token drops the right part's
 * prefix).
 */
function validateMerges(
  model: Json,
  vocab: Map<string, number>,
  bad: (field: string, expected: string, actual: unknown) => ParaError,
): void {
  const merges = model.merges;
  if (!Array.isArray(merges)) throw bad('model.merges', 'an array of merges', merges);
  if (merges.length === 0) return;
  const pairs = Array.isArray(merges[0]);
  const prefix =
    typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '';
  merges.forEach((m: unknown, i: number) => {
    const field = `model.merges[${i}]`;
    let parts: unknown[];
    if (pairs) {
      if (!Array.isArray(m)) {
        throw bad(
          field,
          `["left", "right"], the format of model.merges[0] (a file uses one format)`,
          m,
        );
      }
      parts = m;
      if (parts.length !== 2 || !parts.every((x) => typeof x === 'string'))
        throw bad(field, '["left", "right"]: two strings', m);
    } else {
      if (typeof m !== 'string') {
        throw bad(
          field,
          Array.isArray(m)
            ? '"left right", the format of model.merges[0] (a file uses one format)'
            : '"left right" or ["left", "right"]',
          m,
        );
      }
      parts = m.split(' ');
      if (parts.length !== 2) throw bad(field, '"left right": two parts split by one space', m);
    }
    const [a, b] = parts as [string, string];
    for (const [k, part] of [a, b].entries()) {
      if (!vocab.has(part)) throw bad(`${field}[${k}]`, 'a token of model.vocab', part);
    }
    const merged = a + (prefix !== '' && b.startsWith(prefix) ? b.slice(prefix.length) : b);
    if (!vocab.has(merged) && !vocab.has(a + b))
      throw bad(field, `the merged token ${JSON.stringify(merged).slice(0, 40)} in model.vocab`, m);
  });
}

/** A special-token field of tokenizer_config.json: a string or an AddedToken object. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

const ROLE_KEYS: readonly string[] = ['bos_token', 'eos_token', 'pad_token', 'unk_token'];

const SPECIAL_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

/**
 * Checks tokenizer_config.json against the tokenizer: the chat template's shape (it is parsed
 * when first used, not here: `@huggingface/jinja` parses a subset of Jinja — no `{% generation %}`
 * for one — and a tokenizer should load for encoding even if its template is beyond that
 * subset; a template that does not parse is a ParaError INVALID_CONFIG naming this file and the
 * field when applied), the special tokens (bos, eos, pad and unk must be tokens of the
 * vocabulary: transformers would silently add a missing one as a new token, growing the
 * vocabulary past the model's embeddings) and `added_tokens_decoder` (integer ids, each the id
 * the tokenizer gives that content).
 */
function validateConfig(config: Json, file: string, ids: Map<string, number>): void {
  const bad = (
    field: string,
    expected: string,
    actual: unknown,
    message = 'malformed tokenizer_config.json',
  ) =>
    new ParaError('INVALID_CONFIG', message, {
      file,
      field,
      expected,
      actual: describeValue(actual, 80),
    });
  const t = config.chat_template;
  if (t !== undefined && t !== null && typeof t !== 'string') {
    if (!Array.isArray(t))
      throw bad(
        'chat_template',
        'a string or a list of { "name", "template" }',
        t,
        'bad chat template',
      );
    t.forEach((x, i) => {
      if (!isObject(x) || typeof x.name !== 'string' || typeof x.template !== 'string')
        throw bad(
          `chat_template[${i}]`,
          '{ "name": string, "template": string }',
          x,
          'bad chat template',
        );
    });
  }
  for (const key of SPECIAL_KEYS) {
    const v = config[key];
    if (v === undefined || v === null) continue;
    const s = tokenString(v);
    if (s === undefined)
      throw bad(key, 'a string, null or { "content": string }', v, 'bad special token');
    // The four this class resolves to ids; sep/cls/mask are not used here, so a config naming an
    // unknown one still loads.
    if (ROLE_KEYS.includes(key) && !ids.has(s))
      throw bad(
        key,
        'a token of tokenizer.json (its model.vocab or added_tokens)',
        s,
        'special token not in the vocabulary',
      );
  }
  const atd = config.added_tokens_decoder;
  if (atd !== undefined && atd !== null) {
    if (!isObject(atd)) throw bad('added_tokens_decoder', 'an object id → { "content": … }', atd);
    for (const [key, v] of Object.entries(atd)) {
      const field = `added_tokens_decoder[${JSON.stringify(key)}]`;
      if (!/^(0|[1-9][0-9]{0,9})$/.test(key))
        throw bad(field, 'a key that is a non-negative integer token id', key);
      if (!isObject(v) || typeof v.content !== 'string')
        throw bad(field, '{ "content": string, … }', v);
      const id = ids.get(v.content);
      if (id !== Number(key))
        throw bad(
          field,
          id === undefined
            ? `${JSON.stringify(v.content)} to be a token of tokenizer.json`
            : `the key ${id}, the id tokenizer.json gives ${JSON.stringify(v.content)}`,
          key,
        );
    }
  }
}

export class ParaTokenizer {
  /**
   * One more than the largest token id (model vocabulary and added tokens): the fewest rows an
   * embedding matrix needs for every id this tokenizer can produce. Compare it with a model's
   * config.json `vocab_size` (which may be larger: models pad their vocabularies).
   */
  readonly vocabSize: number;
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
  unkTokenId?: number;
  /** The parsed tokenizer_config.json ({} when none was given). */
  readonly config: Readonly<Json>;
  /** The content of every added token marked special. */
  readonly specialTokens: readonly string[];
  private readonly tok: Tokenizer;
  private readonly tokenizerSource: string;
  private readonly configSource: string;
  private readonly templates = new Map<string, Template>();
  private readonly ids: Map<string, number>;

  private constructor(
    tok: Tokenizer,
    checked: CheckedTokenizerJson,
    config: Json,
    sources: { tokenizer: string; config: string },
  ) {
    const { json, ids, vocabSize } = checked;
    this.tok = tok;
    this.config = config;
    this.tokenizerSource = sources.tokenizer;
    this.configSource = sources.config;
    this.ids = ids;
    this.vocabSize = vocabSize;
    const added = (json.added_tokens as { content: string; special?: boolean }[])
      .filter((t) => t.special === true)
      .map((t) => t.content);
    this.specialTokens = added;
    const roles = Object.keys(config).length > 0 ? undefined : guessSpecialTokenRoles(added);
    const idOf = (
      key: 'bos_token' | 'eos_token' | 'pad_token' | 'unk_token',
      guessed: string | undefined,
    ) => {
      const s = roles === undefined ? tokenString(config[key]) : guessed;
      return s === undefined ? undefined : this.ids.get(s);
    };
    this.bosTokenId = idOf('bos_token', roles?.bos);
    this.eosTokenId = idOf('eos_token', roles?.eos);
    this.padTokenId = idOf('pad_token', roles?.pad);
    this.unkTokenId = idOf('unk_token', roles?.unk);
  }

  /**
   * Builds a tokenizer from tokenizer.json and, optionally, tokenizer_config.json (JSON text or
   * parsed objects). Malformed input throws ParaError INVALID_JSON / INVALID_CONFIG naming the
   * file and field. Without a config, bos/eos/pad/unk are recognised among the special tokens
   * by their usual names (`<s>`, `</s>`, `<pad>`, `<unk>`, `<|endoftext|>`, …).
   */
  static fromJSON(
    tokenizerJson: string | object,
    tokenizerConfig?: string | object,
    options: FromJsonOptions = {},
  ): ParaTokenizer {
    const tokenizerSource = options.tokenizerSource ?? 'tokenizer.json';
    const configSource = options.configSource ?? 'tokenizer_config.json';
    const checked = validateTokenizerJson(
      parseJson(tokenizerJson, 'tokenizer.json', tokenizerSource),
      tokenizerSource,
    );
    const { json } = checked;
    const config =
      tokenizerConfig === undefined
        ? {}
        : parseJson(tokenizerConfig, 'tokenizer_config.json', configSource);
    validateConfig(config, configSource, checked.ids);
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json, {
        ...config,
        clean_up_tokenization_spaces: cleansUpSpaces(json, config),
      });
    } catch (e) {
      throw new ParaError('INVALID_CONFIG', `malformed tokenizer.json: ${(e as Error).message}`, {
        file: tokenizerSource,
        cause: e,
      });
    }
    installFastBpe(tok);
    installUnigramEncode(tok);
    installSafeNormalization(tok);
    return new ParaTokenizer(tok, checked, config, {
      tokenizer: tokenizerSource,
      config: configSource,
    });
  }

  /**
   * Token ids of `text`, any JS string: lone surrogates are encoded as U+FFFD (as `TextEncoder`
   * does; decode gives U+FFFD back), NUL and control characters as themselves.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new ParaError('INVALID_ARGUMENT', 'encode takes a string', {
        field: 'text',
        expected: 'a string',
        actual: typeof text,
      });
    }
    const { ids, tokens } = this.guard('encode', () =>
      this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }),
    );
    // @huggingface/tokenizers gives `undefined` for a token outside the vocabulary when there
    // is no unk token (a post-processor naming a missing special token, say).
    const bad = (ids as (number | undefined)[]).indexOf(undefined);
    if (bad >= 0) {
      throw new ParaError('INVALID_CONFIG', 'the tokenizer produced a token it has no id for', {
        file: this.tokenizerSource,
        expected: 'every token the pipeline produces in model.vocab or added_tokens',
        actual: JSON.stringify(tokens[bad])?.slice(0, 80),
      });
    }
    return ids;
  }

  /**
   * Runs a `@huggingface/tokenizers` call so that whatever it throws is a ParaError: a runtime
   * limit (the largest string V8 allows, the stack — a normalizer in the file that multiplies
   * the text, say) is LIMIT_EXCEEDED, anything else INVALID_CONFIG naming tokenizer.json (the
   * input was checked, so the fault is in the file's pipeline).
   */
  private guard<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof ParaError) throw e;
      const message = e instanceof Error ? e.message : String(e);
      if (e instanceof RangeError) {
        throw new ParaError('LIMIT_EXCEEDED', `${what} exhausted a runtime limit: ${message}`, {
          file: this.tokenizerSource,
          field: 'text',
          expected: 'a text the pipeline can process within the JavaScript limits',
          actual: message,
          cause: e,
        });
      }
      throw new ParaError('INVALID_CONFIG', `the tokenizer failed to ${what}: ${message}`, {
        file: this.tokenizerSource,
        cause: e,
      });
    }
  }

  /** Tokens (as strings) of `text`, without special tokens added. */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') {
      throw new ParaError('INVALID_ARGUMENT', 'tokenize takes a string', {
        field: 'text',
        expected: 'a string',
        actual: typeof text,
      });
    }
    return this.guard('tokenize', () => this.tok.tokenize(text));
  }

  /** Text of `ids`. Throws INVALID_ARGUMENT for an id that is not in the vocabulary. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (!Array.isArray(ids)) {
      throw new ParaError('INVALID_ARGUMENT', 'decode takes an array of token ids', {
        field: 'ids',
        expected: 'an array of integers',
      });
    }
    for (const id of ids) {
      if (
        typeof id !== 'number' ||
        !Number.isInteger(id) ||
        this.tok.id_to_token(id) === undefined
      ) {
        throw new ParaError('INVALID_ARGUMENT', 'not a token id of this tokenizer', {
          field: 'ids',
          expected: `integers in [0, ${this.vocabSize})`,
          actual: JSON.stringify(id),
        });
      }
    }
    if (ids.length === 0) return '';
    return this.guard('decode', () =>
      this.tok.decode(ids as number[], {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
      }),
    );
  }

  /** Encodes several texts, with optional truncation and padding (pad id: padTokenId). */
  encodeBatch(texts: readonly string[], opts: EncodeBatchOptions = {}): BatchEncoding {
    if (!Array.isArray(texts)) {
      throw new ParaError('INVALID_ARGUMENT', 'encodeBatch takes an array of strings', {
        field: 'texts',
        expected: 'an array of strings',
      });
    }
    const { maxLength } = opts;
    if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 1)) {
      throw new ParaError('INVALID_ARGUMENT', 'bad maxLength', {
        field: 'maxLength',
        expected: 'a positive integer',
        actual: String(maxLength),
      });
    }
    const padding =
      opts.padding === true
        ? 'longest'
        : opts.padding === false || opts.padding === undefined
          ? undefined
          : opts.padding;
    if (padding !== undefined && padding !== 'longest' && padding !== 'max_length') {
      throw new ParaError('INVALID_ARGUMENT', 'bad padding', {
        field: 'padding',
        expected: "true, false, 'longest' or 'max_length'",
        actual: String(opts.padding),
      });
    }
    const side = (v: unknown, field: string, dflt: unknown): 'left' | 'right' => {
      const s = v ?? dflt ?? 'right';
      if (s !== 'left' && s !== 'right')
        throw new ParaError('INVALID_ARGUMENT', `bad ${field}`, {
          field,
          expected: "'left' or 'right'",
          actual: String(s),
        });
      return s;
    };
    const paddingSide = side(opts.paddingSide, 'paddingSide', this.config.padding_side);
    const truncationSide = side(opts.truncationSide, 'truncationSide', this.config.truncation_side);
    const modelMax =
      typeof this.config.model_max_length === 'number' && this.config.model_max_length < 1e7
        ? this.config.model_max_length
        : undefined;
    let ids = texts.map((t) => this.encode(t, opts));
    if (opts.truncation) {
      const limit = maxLength ?? modelMax;
      if (limit === undefined) {
        throw new ParaError('INVALID_ARGUMENT', 'truncation needs a length', {
          field: 'maxLength',
          expected: 'maxLength, or model_max_length in tokenizer_config.json',
        });
      }
      ids = ids.map((s) =>
        s.length <= limit
          ? s
          : truncationSide === 'right'
            ? s.slice(0, limit)
            : s.slice(s.length - limit),
      );
    }
    if (padding === undefined) return { ids, attentionMask: ids.map((s) => s.map(() => 1)) };
    const pad = this.padTokenId;
    if (pad === undefined) {
      throw new ParaError('INVALID_CONFIG', 'padding needs a pad token', {
        file: this.configSource,
        field: 'pad_token',
        expected:
          'a pad token in tokenizer_config.json, or set tokenizer.padTokenId (e.g. to eosTokenId)',
      });
    }
    let target: number;
    if (padding === 'max_length') {
      const limit = maxLength ?? modelMax;
      if (limit === undefined) {
        throw new ParaError('INVALID_ARGUMENT', "padding 'max_length' needs a length", {
          field: 'maxLength',
          expected: 'a positive integer',
        });
      }
      const longest = ids.findIndex((s) => s.length > limit);
      if (longest >= 0) {
        throw new ParaError('INVALID_ARGUMENT', `text ${longest} is longer than maxLength`, {
          field: 'truncation',
          expected: `true, or texts of at most ${limit} tokens`,
          actual: `${ids[longest]!.length} tokens`,
        });
      }
      target = limit;
    } else {
      target = ids.reduce((m, s) => Math.max(m, s.length), 0);
    }
    const attentionMask: number[][] = [];
    ids = ids.map((s) => {
      const n = target - s.length;
      const fill = new Array<number>(n).fill(pad);
      const ones = new Array<number>(s.length).fill(1);
      const zeros = new Array<number>(n).fill(0);
      attentionMask.push(paddingSide === 'right' ? [...ones, ...zeros] : [...zeros, ...ones]);
      return paddingSide === 'right' ? [...s, ...fill] : [...fill, ...s];
    });
    return { ids, attentionMask };
  }

  /** The chat template of tokenizer_config.json (the one named "default" when there are several). */
  get chatTemplate(): string | undefined {
    return this.namedTemplate('default');
  }

  private namedTemplate(name: string): string | undefined {
    return this.namedTemplateAt(name)?.source;
  }

  /** The named template of tokenizer_config.json and the field it is in. */
  private namedTemplateAt(name: string): { source: string; field: string } | undefined {
    const t = this.config.chat_template;
    if (typeof t === 'string')
      return name === 'default' ? { source: t, field: 'chat_template' } : undefined;
    if (Array.isArray(t)) {
      const i = t.findIndex((x) => isObject(x) && x.name === name);
      const found = t[i];
      if (isObject(found) && typeof found.template === 'string')
        return { source: found.template, field: `chat_template[${i}].template` };
    }
    return undefined;
  }

  /**
   * Renders a conversation with the chat template, as transformers' `apply_chat_template`:
   * variables `messages`, `add_generation_prompt`, the special tokens as strings (`bos_token`,
   * `eos_token`, …) and `raise_exception`; with `tokenize` (the default) the text is encoded
   * without adding special tokens (the template writes them).
   */
  applyChatTemplate(
    messages: ChatMessage[],
    opts: ChatTemplateOptions & { tokenize: false },
  ): string;
  applyChatTemplate(
    messages: ChatMessage[],
    opts?: ChatTemplateOptions & { tokenize?: true },
  ): number[];
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string | number[];
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string | number[] {
    if (
      !Array.isArray(messages) ||
      !messages.every(
        (m) => isObject(m) && typeof m.role === 'string' && typeof m.content === 'string',
      )
    ) {
      throw new ParaError('INVALID_ARGUMENT', 'bad chat messages', {
        field: 'messages',
        expected: 'an array of { role: string, content: string }',
      });
    }
    const named = this.namedTemplateAt(opts.chatTemplate ?? 'default');
    const source = named?.source ?? opts.chatTemplate;
    // Where the template came from, for errors: this file's field, or the caller's option.
    const origin =
      named !== undefined
        ? { file: this.configSource, field: named.field }
        : { field: 'chatTemplate' };
    if (source === undefined) {
      throw new ParaError('UNSUPPORTED', 'this tokenizer has no chat template', {
        file: this.configSource,
        field: 'chat_template',
        expected: 'a chat_template in tokenizer_config.json, or opts.chatTemplate',
      });
    }
    let template = this.templates.get(source);
    if (template === undefined) {
      try {
        template = compileChatTemplate(source);
      } catch (e) {
        throw new ParaError(
          named !== undefined ? 'INVALID_CONFIG' : 'INVALID_ARGUMENT',
          `chat template does not parse: ${(e as Error).message}`,
          { ...origin, cause: e },
        );
      }
      this.templates.set(source, template);
    }
    const specials: Record<string, string> = {};
    for (const key of SPECIAL_KEYS) {
      const s = tokenString(this.config[key]);
      if (s !== undefined) specials[key] = s;
    }
    if (Array.isArray(this.config.additional_special_tokens)) {
      specials.additional_special_tokens = this.config.additional_special_tokens
        .map(tokenString)
        .filter((s) => s !== undefined) as never;
    }
    let text: string;
    try {
      text = renderChatTemplate(
        template,
        {
          ...specials,
          ...opts.variables,
          messages,
          add_generation_prompt: opts.addGenerationPrompt ?? false,
        },
        opts.limits,
        origin,
      );
    } catch (e) {
      if (e instanceof ParaError) throw e;
      throw new ParaError('INVALID_ARGUMENT', `chat template failed: ${(e as Error).message}`, {
        field: 'messages',
        cause: e,
      });
    }
    return opts.tokenize === false ? text : this.encode(text, { addSpecialTokens: false });
  }

  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** Where the tokenizer.json came from (a path, or "tokenizer.json"). */
  get source(): string {
    return this.tokenizerSource;
  }
}
