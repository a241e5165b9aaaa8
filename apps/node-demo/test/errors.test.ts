/** The CLI's error language: library option names become the running command's flags. */
import { ParaError } from '@para/core/node';
import { describe, expect, it } from 'vitest';
import { fieldForCli, flagMap, paraErrorForCli, wantsJson } from '../src/errors';
import { buildProgram } from '../src/program';

const train = buildProgram().commands.find((c) => c.name() === 'train');

describe('errors', () => {
  it('maps option names to flags from the commander options', () => {
    const m = flagMap(train);
    expect(m.get('batchSize')).toBe('--batch-size');
    expect(m.get('microBatchSize')).toBe('--micro-batch-size');
    expect(m.get('r')).toBe('--r');
    expect(m.get('epochs')).toBe('--epochs');
  });

  it('translates both spellings of a field: option name and flag', () => {
    for (const [lib, flag] of [
      ['batchSize', '--batch-size'],
      ['--batch-size', '--batch-size'],
      ['steps', '--steps'],
      ['lr', '--lr'],
      ['method', '--method'],
      ['resume', '--resume'],
      ['r', '--r'],
    ]) {
      expect(fieldForCli(lib, undefined, train)).toBe(flag);
    }
    // Not an option of the command, or a field of a data file: left alone.
    expect(fieldForCli('vocab_size', 'model/config.json', train)).toBe('vocab_size');
    expect(fieldForCli('data', 'train.jsonl:4', train)).toBe('data');
  });

  it('prints a ParaError with the flag, as text and as JSON', () => {
    const e = new ParaError('INVALID_ARGUMENT', 'bad rank', {
      field: 'r',
      expected: 'a positive integer',
      actual: '0',
    });
    expect(paraErrorForCli(e, train)).toEqual({
      code: 'INVALID_ARGUMENT',
      message: 'bad rank',
      file: null,
      field: '--r',
      expected: 'a positive integer',
      actual: '0',
    });
  });

  it('finds --json before a -- terminator only', () => {
    expect(wantsJson(['eval', '--json'])).toBe(true);
    expect(wantsJson(['eval', '--', '--json'])).toBe(false);
  });
});
