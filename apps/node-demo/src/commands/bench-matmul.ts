import type { Command } from 'commander';
import { formatMatmulBench, runMatmulBench } from '../bench/matmul';

/** `para bench matmul [--json]` (see bench/matmul.ts). */
export function registerMatmulBench(bench: Command): void {
  bench
    .command('matmul')
    .description(
      'GFLOP/s of the wasm matmul kernels: stock, with the transpose/batch fix, with OpenBLAS, and raw sgemm; plus a training step',
    )
    .option('--json', 'print JSON')
    .option('--skip-stock-training', 'skip the (slow) training step on stock wasm kernels')
    .action(async (opts: { json?: boolean; skipStockTraining?: boolean }) => {
      const result = await runMatmulBench({
        skipStockTraining: opts.skipStockTraining,
        onProgress: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(
        opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatMatmulBench(result)}\n`,
      );
    });
}
