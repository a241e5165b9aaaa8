/**
 * ParaTokenizer: a Hugging Face tokenizer.json (+ tokenizer_config.json) loaded through
 * `@huggingface/tokenizers`, with batch encoding (padding, truncation), bos/eos/pad/unk ids and
 * chat templates rendered by `@huggingface/jinja` the way transformers' `apply_chat_template`
 * does. No Node built-ins: the browser app passes the fetched JSON text.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ParaError } from '@para/core';
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

/** Checks the parts of tokenizer.json that `@huggingface/tokenizers` relies on without checking. */
function validateTokenizerJson(json: Json, file: string): Json {
  const bad = (field: string, expected: string, actual: unknown) =>
    new ParaError('INVALID_CONFIG', 'malformed tokenizer.json', {
      file,
      field,
      expected,
      actual: actual === undefined ? 'nothing' : JSON.stringify(actual)?.slice(0, 80),
    });
  const model = json.model;
  if (!isObject(model)) throw bad('model', 'an object with "type" and "vocab"', model);
  const type = model.type;
  if (type !== undefined && (typeof type !== 'string' || !MODEL_TYPES.includes(type))) {
    throw bad('model.type', `one of ${MODEL_TYPES.join(', ')}`, type);
  }
  if (type === 'Unigram' ? !Array.isArray(model.vocab) : !isObject(model.vocab)) {
    throw bad(
      'model.vocab',
      type === 'Unigram' ? 'an array of [piece, score]' : 'an object token → id',
      model.vocab,
    );
  }
  if (type === 'BPE') {
    if (!Array.isArray(model.merges)) throw bad('model.merges', 'an array of merges', model.merges);
    model.merges.forEach((m, i) => {
      const ok =
        typeof m === 'string'
          ? m.includes(' ')
          : Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === 'string');
      if (!ok) throw bad(`model.merges[${i}]`, '"left right" or ["left", "right"]', m);
    });
  }
  if (type === 'BPE' || type === 'WordPiece') {
    for (const [tok, id] of Object.entries(model.vocab as Json)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
        throw bad(`model.vocab[${JSON.stringify(tok)}]`, 'a non-negative integer id', id);
    }
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw bad('added_tokens', 'an array', added);
  added.forEach((t, i) => {
    if (
      !isObject(t) ||
      typeof t.content !== 'string' ||
      typeof t.id !== 'number' ||
      !Number.isInteger(t.id) ||
      t.id < 0
    ) {
      throw bad(`added_tokens[${i}]`, '{ "id": integer, "content": string, … }', t);
    }
  });
  for (const key of PIPELINE_KEYS) {
    const v = json[key];
    if (v !== undefined && v !== null && !(isObject(v) && typeof v.type === 'string'))
      throw bad(key, 'null or an object with "type"', v);
  }
  // @huggingface/tokenizers wants every pipeline key present (null when unused).
  const out: Json = { ...json, added_tokens: added };
  for (const key of PIPELINE_KEYS) out[key] = json[key] ?? null;
  return out;
}

/** A special-token field of tokenizer_config.json: a string or an AddedToken object. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

const SPECIAL_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

export class ParaTokenizer {
  /** One more than the largest token id (model vocabulary and added tokens). */
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
    json: Json,
    config: Json,
    sources: { tokenizer: string; config: string },
  ) {
    this.tok = tok;
    this.config = config;
    this.tokenizerSource = sources.tokenizer;
    this.configSource = sources.config;
    this.ids = tok.get_vocab(true);
    let max = -1;
    for (const id of this.ids.values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
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
    const json = validateTokenizerJson(
      parseJson(tokenizerJson, 'tokenizer.json', options.tokenizerSource),
      tokenizerSource,
    );
    const config =
      tokenizerConfig === undefined
        ? {}
        : parseJson(tokenizerConfig, 'tokenizer_config.json', options.configSource);
    if (
      config.chat_template !== undefined &&
      typeof config.chat_template !== 'string' &&
      !Array.isArray(config.chat_template)
    ) {
      throw new ParaError('INVALID_CONFIG', 'bad chat template', {
        file: configSource,
        field: 'chat_template',
        expected: 'a string or a list of { name, template }',
      });
    }
    for (const key of SPECIAL_KEYS) {
      const v = config[key];
      if (v !== undefined && v !== null && tokenString(v) === undefined) {
        throw new ParaError('INVALID_CONFIG', 'bad special token', {
          file: configSource,
          field: key,
          expected: 'a string, null or { "content": string }',
          actual: JSON.stringify(v)?.slice(0, 80),
        });
      }
    }
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
    return new ParaTokenizer(tok, json, config, {
      tokenizer: tokenizerSource,
      config: configSource,
    });
  }

  /** Token ids of `text`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new ParaError('INVALID_ARGUMENT', 'encode takes a string', {
        field: 'text',
        expected: 'a string',
        actual: typeof text,
      });
    }
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
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
    return this.tok.tokenize(text);
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
    return this.tok.decode(ids as number[], {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
    });
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
    const t = this.config.chat_template;
    if (typeof t === 'string') return name === 'default' ? t : undefined;
    if (Array.isArray(t)) {
      const found = t.find((x) => isObject(x) && x.name === name);
      return isObject(found) && typeof found.template === 'string' ? found.template : undefined;
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
    const source =
      opts.chatTemplate === undefined
        ? this.chatTemplate
        : (this.namedTemplate(opts.chatTemplate) ?? opts.chatTemplate);
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
        template = new Template(source);
      } catch (e) {
        throw new ParaError(
          'INVALID_CONFIG',
          `chat template does not parse: ${(e as Error).message}`,
          { file: this.configSource, field: 'chat_template', cause: e },
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
      text = template.render({
        ...specials,
        ...opts.variables,
        messages,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
      });
    } catch (e) {
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
