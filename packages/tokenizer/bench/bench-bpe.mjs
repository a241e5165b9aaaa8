#!/usr/bin/env node
// Byte-level BPE training benchmark: our trainer vs the Rust `tokenizers` BpeTrainer (Python
// binding, the established baseline) on the same ≥ 10 MB English corpus, in the same run.
//
//   apt-get install -y wordnet-base fortunes      # the corpus (Debian)
//   pip install tokenizers                         # optional: the baseline
//   pnpm --filter @para/tokenizer build && node packages/tokenizer/bench/bench-bpe.mjs
//
// Options: --vocab 2000,8000   vocabulary sizes
//          --repeat N          train on the training text repeated N times (memory/streaming
//                              check: e.g. --repeat 9 is ~100 MB; distinct words stay the same)
//          --work DIR          where the corpus files go (default: a temp dir, removed after)
//          --no-python         skip the baseline
//
// Corpus: WordNet 3.0 glosses (definitions + usage examples, /usr/share/wordnet/data.*) and
// the fortune cookies of `fortunes` (/usr/share/games/fortunes/*). Every 20th line is held out;
// compression is characters (Unicode code points) per token on the held-out text.
import { spawnSync } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer, saveTokenizer, trainBpeTokenizer } from '@para/tokenizer/node';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const vocabSizes = opt('vocab', '2000,8000').split(',').map(Number);
const repeat = Number(opt('repeat', '1'));
const usePython = !args.includes('--no-python');
const workArg = opt('work', undefined);
const work = workArg ?? mkdtempSync(join(tmpdir(), 'para-bench-bpe-'));
mkdirSync(work, { recursive: true });

const WORDNET = '/usr/share/wordnet';
const FORTUNES = '/usr/share/games/fortunes';
if (!existsSync(join(WORDNET, 'data.noun')) || !existsSync(FORTUNES)) {
  console.error(
    'bench-bpe: the corpus needs Debian packages: apt-get install -y wordnet-base fortunes',
  );
  process.exit(1);
}

// --- Corpus ---------------------------------------------------------------------------------
function glosses() {
  const out = [];
  for (const pos of ['noun', 'verb', 'adj', 'adv']) {
    for (const line of readFileSync(join(WORDNET, `data.${pos}`), 'utf8').split('\n')) {
      if (line.startsWith('  ')) continue; // licence header
      const bar = line.indexOf(' | ');
      if (bar >= 0) out.push(line.slice(bar + 3).trimEnd());
    }
  }
  return out;
}
function fortunes() {
  const out = [];
  for (const name of readdirSync(FORTUNES).sort()) {
    const file = join(FORTUNES, name);
    if (name.includes('.') || !statSync(file).isFile()) continue; // skip .dat/.u8 and off/
    for (const line of readFileSync(file, 'utf8').split('\n'))
      if (line !== '%') out.push(line.trimEnd());
  }
  return out;
}
const lines = [...glosses(), ...fortunes()];
const train = [];
const held = [];
lines.forEach((l, i) => {
  (i % 20 === 0 ? held : train).push(l);
});
const trainText = `${train.join('\n')}\n`;
const heldText = `${held.join('\n')}\n`;
const trainFile = join(work, 'train.txt');
const heldFile = join(work, 'heldout.txt');
await new Promise((resolve, reject) => {
  const ws = createWriteStream(trainFile);
  ws.on('error', reject);
  for (let r = 0; r < repeat; r++) ws.write(trainText);
  ws.end(resolve);
});
writeFileSync(heldFile, heldText);
const trainBytes = statSync(trainFile).size;
const heldChars = [...heldText].length;
console.error(
  `corpus: ${(trainBytes / 1e6).toFixed(1)} MB training text (${train.length * repeat} lines), held-out ${(Buffer.byteLength(heldText) / 1e6).toFixed(2)} MB (${held.length} lines), in ${work}`,
);

// --- Ours -----------------------------------------------------------------------------------
const results = [];
for (const vocabSize of vocabSizes) {
  const t0 = performance.now();
  const trained = await trainBpeTokenizer({ files: [trainFile], vocabSize });
  const seconds = (performance.now() - t0) / 1000;
  const dir = join(work, `ours-${vocabSize}`);
  await saveTokenizer(dir, trained);
  const tok = await loadTokenizer(dir);
  const ids = tok.encode(heldText, { addSpecialTokens: false });
  const same = JSON.stringify(ids) === JSON.stringify(trained.encoder.encode(heldText));
  const roundTrip = tok.decode(ids) === heldText;
  results.push({
    trainer: 'para (JS)',
    vocabSize,
    seconds,
    countSeconds: trained.stats.countMs / 1000,
    mergeSeconds: trained.stats.mergeMs / 1000,
    tokens: ids.length,
    charsPerToken: heldChars / ids.length,
    note: `loader ids == trainer ids: ${same}; round trip: ${roundTrip}; distinct words ${trained.stats.distinctWords}`,
    dir,
    merges: trained.tokenizerJson.model.merges,
  });
  console.error(
    `para vocab ${vocabSize}: ${seconds.toFixed(2)} s, ${(heldChars / ids.length).toFixed(3)} chars/token`,
  );
}
const maxRssMB = process.resourceUsage().maxRSS / 1024;

// --- Baseline: Rust `tokenizers` through Python, same files, same settings ------------------
const PY = `
import json, sys, time
try:
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
except ImportError:
    print(json.dumps({"error": "python tokenizers not importable"})); sys.exit(0)
train_file, held_file, work, sizes = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split(",")]
held = open(held_file, encoding="utf-8").read()
out = {"version": tokenizers.__version__, "runs": []}
for vs in sizes:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vs, min_frequency=2, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter(); tok.train([train_file], trainer=tr); secs = time.perf_counter() - t0
    ids = tok.encode(held).ids
    ours = Tokenizer.from_file(f"{work}/ours-{vs}/tokenizer.json")
    ours_ids = ours.encode(held).ids
    merges = json.loads(tok.to_str())["model"]["merges"]
    out["runs"].append({"vocabSize": vs, "seconds": secs, "tokens": len(ids), "oursTokensInPython": len(ours_ids),
                        "oursIdsInPython": ours_ids, "merges": [m if isinstance(m, str) else " ".join(m) for m in merges]})
print(json.dumps(out))
`;
let python;
if (usePython) {
  const r = spawnSync('python3', ['-c', PY, trainFile, heldFile, work, vocabSizes.join(',')], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  if (r.status === 0) {
    python = JSON.parse(r.stdout);
    if (python.error) {
      console.error(`baseline skipped: ${python.error}`);
      python = undefined;
    }
  } else {
    console.error(`baseline skipped: python3 failed: ${r.stderr.slice(0, 400)}`);
  }
}
if (python) {
  for (const run of python.runs) {
    const ours = results.find((r) => r.vocabSize === run.vocabSize);
    const oursIds = (await loadTokenizer(ours.dir)).encode(heldText, { addSpecialTokens: false });
    ours.note += `; Python loads our tokenizer.json and gives the same ids: ${JSON.stringify(run.oursIdsInPython) === JSON.stringify(oursIds)}`;
    const shared = new Set(run.merges);
    const common = ours.merges.filter((m) => shared.has(m)).length;
    results.push({
      trainer: `HF tokenizers ${python.version} (Rust, Python)`,
      vocabSize: run.vocabSize,
      seconds: run.seconds,
      tokens: run.tokens,
      charsPerToken: heldChars / run.tokens,
      note: `${common}/${ours.merges.length} merges in common with ours (it reads files line by line)`,
    });
  }
}

// --- Report ---------------------------------------------------------------------------------
const cpus = (await import('node:os')).cpus();
console.log(
  `# byte-level BPE training: ${(trainBytes / 1e6).toFixed(1)} MB of WordNet glosses + fortunes${repeat > 1 ? ` (repeated ×${repeat})` : ''}; held-out ${heldChars} chars`,
);
console.log(
  `# ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, Node ${process.version}; our peak RSS ${maxRssMB.toFixed(0)} MB`,
);
console.log('');
console.log(
  '| trainer | vocab | train time (s) | chars/token (held-out) | held-out tokens | notes |',
);
console.log('|---|---:|---:|---:|---:|---|');
for (const r of results.sort(
  (a, b) => a.vocabSize - b.vocabSize || a.trainer.localeCompare(b.trainer),
)) {
  const time =
    r.countSeconds !== undefined
      ? `${r.seconds.toFixed(2)} (count ${r.countSeconds.toFixed(2)} + merge ${r.mergeSeconds.toFixed(2)})`
      : r.seconds.toFixed(2);
  console.log(
    `| ${r.trainer} | ${r.vocabSize} | ${time} | ${r.charsPerToken.toFixed(3)} | ${r.tokens} | ${r.note} |`,
  );
}
if (!python && usePython) console.log('\n(baseline not run: `pip install tokenizers` to compare)');
if (workArg === undefined) rmSync(work, { recursive: true, force: true });
