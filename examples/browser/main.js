// The browser version of examples/node/quickstart.mjs: the same calls, with a URL instead of a
// directory and `toFiles()` instead of `save(dir)`. Serve a backbone directory (config.json,
// model.safetensors, tokenizer.json, tokenizer_config.json) at ./backbone/ next to this page and
// bundle this file with any bundler (Vite: `npx vite examples/browser`); `?backend=wasm` picks a
// backend (default: the best this browser has).
import { getPeftModel, loadPretrained, ready } from 'para';

const out = document.getElementById('out');
const show = (line) => {
  out.textContent = out.textContent === 'loading…' ? line : `${out.textContent}\n${line}`;
};

async function main() {
  const backend = new URLSearchParams(location.search).get('backend') ?? undefined;
  const report = await ready(backend === undefined ? {} : { backend });
  document.getElementById('backend').textContent = report.active;
  const { model } = await loadPretrained(new URL('./backbone/', location.href));
  const peft = getPeftModel(model, { peft_type: 'PARA', r: 8 });
  const records = [
    { prompt: 'Part of speech of pallor:', completion: ' noun' },
    { prompt: 'Part of speech of decompose:', completion: ' verb' },
    { prompt: 'Part of speech of gaily:', completion: ' adverb' },
    { prompt: 'Part of speech of scarlet:', completion: ' adjective' },
  ];
  const result = await peft.train(records, { steps: 2, batchSize: 4 });
  show(`trained ${result.step} updates, loss ${result.lastLoss?.toFixed(3)}`);
  const text = await peft.generate('Part of speech of bewail:', { maxNewTokens: 3, stop: '\n' });
  show(`Part of speech of bewail:${text}`);
  const files = await peft.toFiles();
  show(
    `adapter_config.json ${files.config.length} chars, adapter_model.safetensors ${files.weights.byteLength} bytes`,
  );
  return {
    backend: report.active,
    steps: result.step,
    text,
    weightBytes: files.weights.byteLength,
  };
}

window.paraExample = main().catch((e) => {
  show(`error: ${e.message}`);
  throw e;
});
