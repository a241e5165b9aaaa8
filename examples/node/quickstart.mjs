// The main job in ten lines: load a backbone, give it a PARA adapter, train it on 20 in-memory
// records, save it in PEFT's layout, load it back and generate (about 30 s on 2 cores).
//   node examples/node/quickstart.mjs [BACKBONE_DIR] [OUT_DIR]
// (from the repository after `pnpm build`, or anywhere `para` is installed). Default backbone:
// the bundled one (assets/backbone), default output: adapters/quickstart.
import { fileURLToPath } from 'node:url';
import { getPeftModel, loadPretrained, PeftModel } from 'para';

const backbone =
  process.argv[2] ?? fileURLToPath(new URL('../../assets/backbone', import.meta.url));
const out = process.argv[3] ?? 'adapters/quickstart';
const records = [
  { prompt: 'Part of speech of pallor:', completion: ' noun' },
  { prompt: 'Part of speech of decompose:', completion: ' verb' },
  { prompt: 'Part of speech of gaily:', completion: ' adverb' },
  { prompt: 'Part of speech of validity:', completion: ' noun' },
  { prompt: 'Part of speech of passionately:', completion: ' adverb' },
  { prompt: 'Part of speech of insignificantly:', completion: ' adverb' },
  { prompt: 'Part of speech of bandstand:', completion: ' noun' },
  { prompt: 'Part of speech of logistic:', completion: ' adjective' },
  { prompt: 'Part of speech of crumble:', completion: ' verb' },
  { prompt: 'Part of speech of diagnosing:', completion: ' noun' },
  { prompt: 'Part of speech of pithy:', completion: ' adjective' },
  { prompt: 'Part of speech of ginmill:', completion: ' noun' },
  { prompt: 'Part of speech of disruption:', completion: ' noun' },
  { prompt: 'Part of speech of anciently:', completion: ' adverb' },
  { prompt: 'Part of speech of abolish:', completion: ' verb' },
  { prompt: 'Part of speech of occasions:', completion: ' noun' },
  { prompt: 'Part of speech of wryly:', completion: ' adverb' },
  { prompt: 'Part of speech of enigma:', completion: ' noun' },
  { prompt: 'Part of speech of goat:', completion: ' noun' },
  { prompt: 'Part of speech of juxtapose:', completion: ' verb' },
];

const { model } = await loadPretrained(backbone);
const peft = getPeftModel(model, { peft_type: 'PARA', r: 8 });
const { step, lastLoss } = await peft.train(records, { epochs: 20, batchSize: 4 });
await peft.save(out);
const tenant = await PeftModel.fromPretrained(model, out);
// Words the adapter never saw (from data/tasks/pos/test.jsonl): noun, verb, adjective, adverb.
for (const word of ['uneasiness', 'bewail', 'contributory', 'unsuitably']) {
  console.log(
    `Part of speech of ${word}:${await tenant.generate(`Part of speech of ${word}:`, { maxNewTokens: 3, stop: '\n' })}`,
  );
}
console.log(`trained ${step} updates (last loss ${lastLoss?.toFixed(3)}), saved to ${out}`);
