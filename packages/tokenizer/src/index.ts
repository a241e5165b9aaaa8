/**
 * @para/tokenizer — the universal entry (no Node built-ins; bundles for the browser):
 * ParaTokenizer over a Hugging Face tokenizer.json (+ tokenizer_config.json), chat templates,
 * and the byte-level BPE trainer on in-memory texts. `@para/tokenizer/node` adds files.
 */

export { type AddedTokenSpec, ByteLevelBpe } from './bpe-encoder';
export {
  BYTE_TO_CHAR,
  byteLevelToBytes,
  bytesToByteLevel,
  GPT2_PRETOKENIZE_PATTERN,
  gpt2Regex,
} from './byte-level';
export { type ChatTemplateLimits, DEFAULT_CHAT_TEMPLATE_LIMITS } from './chat-template';
export { decodeUtf8File, MAX_JSON_DEPTH } from './json-guard';
export {
  type BatchEncoding,
  type ChatMessage,
  type ChatTemplateOptions,
  type DecodeOptions,
  type EncodeBatchOptions,
  type EncodeOptions,
  type FromJsonOptions,
  ParaTokenizer,
} from './tokenizer';
export {
  type BpeTrainOptions,
  type BpeTrainProgress,
  type BpeTrainStats,
  guessSpecialTokenRoles,
  MAX_VOCAB,
  type SpecialRole,
  type TokenizerJson,
  TrainedBpeTokenizer,
  trainBpe,
  trainBpeFromCounts,
  validateTrainOptions,
} from './trainer';
export {
  DEFAULT_MAX_DISTINCT_WORDS,
  lastSafeCut,
  WordCounter,
  type WordCounterOptions,
} from './word-counter';
