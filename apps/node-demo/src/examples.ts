/**
 * The example every command's `--help` ends with (commander `addHelpText('after', ...)`), keyed
 * by the command's path below `para` ('' is `para` itself). Paths are relative to the
 * repository root, where `pnpm --silent para ...` runs.
 */
import type { Command } from 'commander';

export const HELP_EXAMPLES: Record<string, string[]> = {
  '': [
    'para demo',
    'para info',
    'para train --method para --data data/tasks/pos/train.jsonl --out adapters/pos-para',
  ],
  info: ['para info --json'],
  logits: [
    'para logits --prompt "Opposite of hot:"',
    'para logits --ids 1,5,9 --adapter adapters/demo/pos',
  ],
  generate: [
    'para generate --prompt "Part of speech of bewail:" --adapter adapters/demo/pos --max-new-tokens 4',
  ],
  tokenizer: ['para tokenizer train --input corpus.txt --vocab-size 2000 --out my-tokenizer'],
  'tokenizer train': [
    'para tokenizer train --input corpus.txt --vocab-size 2000 --special-tokens "<s>,</s>,<pad>" --out my-tokenizer',
  ],
  'tokenizer encode': [
    'para tokenizer encode --tokenizer assets/backbone --file prompts.txt > ids.jsonl',
  ],
  'tokenizer decode': ['para tokenizer decode --tokenizer assets/backbone --file ids.jsonl'],
  pretrain: ['para pretrain --input corpus.txt --out my-backbone --config tiny --steps 200'],
  train: [
    'para train --method para --data data/tasks/pos/train.jsonl --eval-data data/tasks/pos/dev.jsonl --out adapters/pos-para --steps 300',
  ],
  eval: ['para eval --data data/tasks/pos/test.jsonl --adapter adapters/demo/pos --limit 100'],
  serve: [
    'para serve',
    'para serve --adapters adapters --port 8080 --max-batch 16 --api-key "$PARA_API_KEY"',
    'para serve --keys-file keys.json --data-dir /var/lib/para',
  ],
  setup: ['para setup tensorflow'],
  'setup tensorflow': [
    'para setup tensorflow',
    'para setup tensorflow --gpu --cache-dir /data/wheels',
  ],
  demo: ['para demo', 'para demo --tasks pos,category --steps 100'],
  bench: ['para bench model', 'para bench train --json'],
  'bench matmul': ['para bench matmul --skip-stock-training'],
  'bench model': ['para bench model --batch 1,8 --json'],
  'bench multitenant': ['para bench multitenant --batch 8 --rounds 1'],
  'bench serve': [
    'para bench serve',
    'para bench serve --concurrency 8 --rounds 1 --no-sequential',
  ],
  'bench train': ['para bench train', 'para bench train --quality --tasks pos'],
};

function pathOf(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Every command under `program` (itself included), depth first. */
export function allCommands(program: Command): Command[] {
  return [program, ...program.commands.flatMap((c) => allCommands(c))];
}

/** Adds its example to every command's help; throws if one lacks an entry (a test catches it). */
export function addHelpExamples(program: Command): void {
  for (const cmd of allCommands(program)) {
    const path = pathOf(cmd);
    const examples = HELP_EXAMPLES[path];
    if (examples === undefined) throw new Error(`no help example for "para ${path}"`);
    cmd.addHelpText(
      'after',
      `\n${examples.length === 1 ? 'Example' : 'Examples'}:\n${examples.map((e) => `  $ ${e}`).join('\n')}`,
    );
  }
}
