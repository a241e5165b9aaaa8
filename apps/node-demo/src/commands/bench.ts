import type { Command } from 'commander';
import { registerMatmulBench } from './bench-matmul';
import { registerModelBench } from './bench-model';
import { registerMultitenantBench } from './bench-multitenant';
import { registerServeBench } from './bench-serve';
import { registerTrainBench } from './bench-train';

/**
 * `para bench <what>`: benchmarks that print figures (and ratios against a baseline measured in
 * the same run). Subcommands register themselves on the parent returned by `benchCommand`.
 */
export function registerBenchCommand(program: Command): Command {
  const bench = benchCommand(program);
  registerMatmulBench(bench);
  registerModelBench(bench);
  registerMultitenantBench(bench);
  registerServeBench(bench);
  registerTrainBench(bench);
  return bench;
}

/** The `bench` parent command (created on first use). */
export function benchCommand(program: Command): Command {
  const existing = program.commands.find((c) => c.name() === 'bench');
  if (existing) return existing;
  return program
    .command('bench')
    .description('benchmarks: speed figures with same-run baselines (see BENCHMARKS.md)');
}
