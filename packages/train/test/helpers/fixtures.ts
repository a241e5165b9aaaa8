/**
 * Tiny fixtures built in the tests (nothing is downloaded): a byte-level BPE tokenizer trained
 * on a few lines of the bundled tasks, a 2-layer random LLaMA, and task examples.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CausalLM, createConfig, type ModelConfig } from '@para/model';
import { ParaTokenizer, trainBpe } from '@para/tokenizer';
import {
  DEFAULT_CHAT_TEMPLATE,
  parseJsonl,
  type TokenizedDataset,
  tokenizeRecords,
} from '../../src/index';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export function taskFile(task: string, split: string): string {
  return join(REPO, 'data', 'tasks', task, `${split}.jsonl`);
}

/** The first `n` lines of a bundled task split as JSONL text. */
export function taskLines(task: string, split: string, n: number): string {
  return readFileSync(taskFile(task, split), 'utf8').split('\n').slice(0, n).join('\n');
}

let cachedTok: ParaTokenizer | null = null;
let cachedFiles: { tokenizerJson: object; tokenizerConfig: object } | null = null;

/** The tiny tokenizer's tokenizer.json and tokenizer_config.json objects (to save it). */
export function tinyTokenizerFiles(): { tokenizerJson: object; tokenizerConfig: object } {
  tinyTokenizer();
  return cachedFiles as { tokenizerJson: object; tokenizerConfig: object };
}

/** A ~400-token BPE tokenizer (<unk> <s> </s> <pad>) with the default chat template. */
export function tinyTokenizer(): ParaTokenizer {
  if (cachedTok !== null) return cachedTok;
  const texts: string[] = [];
  for (const task of ['arithmetic', 'antonym', 'category']) {
    for (const l of readFileSync(taskFile(task, 'train'), 'utf8').split('\n').slice(0, 300)) {
      if (l.trim() === '') continue;
      const r = JSON.parse(l) as { prompt: string; completion: string };
      texts.push(r.prompt + r.completion);
    }
  }
  texts.push('User: hello\nAssistant: hi there');
  const trained = trainBpe(texts, {
    vocabSize: 400,
    specialTokens: ['<unk>', '<s>', '</s>', '<pad>'],
    chatTemplate: DEFAULT_CHAT_TEMPLATE,
  });
  cachedTok = ParaTokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
  cachedFiles = { tokenizerJson: trained.tokenizerJson, tokenizerConfig: trained.tokenizerConfig };
  return cachedTok;
}

export function tinyConfig(
  tok: ParaTokenizer,
  over: Partial<Parameters<typeof createConfig>[0]> = {},
): ModelConfig {
  return createConfig({
    vocabSize: tok.vocabSize,
    hiddenSize: 32,
    intermediateSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    maxPositionEmbeddings: 64,
    tieWordEmbeddings: true,
    bosTokenId: tok.bosTokenId ?? null,
    eosTokenIds: [tok.eosTokenId as number],
    padTokenId: tok.padTokenId ?? null,
    ...over,
  });
}

export function tinyModel(
  tok: ParaTokenizer,
  seed = 0,
  over: Partial<Parameters<typeof createConfig>[0]> = {},
): CausalLM {
  return CausalLM.random(tinyConfig(tok, over), seed);
}

/** The first `n` examples of a bundled task split, tokenised. */
export function taskDataset(
  tok: ParaTokenizer,
  task: string,
  split: string,
  n: number,
  maxLength = 64,
): TokenizedDataset {
  const file = taskFile(task, split);
  return tokenizeRecords(tok, parseJsonl(taskLines(task, split, n), file), file, { maxLength });
}
