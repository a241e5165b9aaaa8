/**
 * How the CLI reports errors: usage errors (commander's) and typed library errors (ParaError)
 * exit with 2, crashes with 1. With `--json`, an error is one JSON object on stderr:
 * `{"error": {"code", "message", "file", "field", "expected", "actual"}}`.
 *
 * Library errors name the library's option (`batchSize`); printed by the CLI they name the
 * running command's flag (`--batch-size`), from a map built from the commander options.
 */

import type { ParaError } from '@para/core/node';
import type { Command, CommanderError } from 'commander';

export interface JsonError {
  code: string;
  message: string;
  file: string | null;
  field: string | null;
  expected: string | null;
  actual: string | null;
}

/** True when `--json` is among the arguments (before a `--` terminator). */
export function wantsJson(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--json') return true;
  }
  return false;
}

/** Option attribute name (`batchSize`) → its long flag (`--batch-size`), for one command. */
export function flagMap(cmd: Command | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const o of cmd?.options ?? []) {
    const flag = o.long ?? o.short;
    if (flag === undefined) continue;
    map.set(o.attributeName(), flag);
    // `--no-probe` sets `probe`; the flag a user types is the long one either way.
    map.set(flag, flag);
  }
  return map;
}

/**
 * The field as the user of `cmd` knows it: an option name of the command becomes its flag
 * (`batchSize` → `--batch-size`, `r` → `--r`); a flag stays a flag; anything else (a JSON key,
 * a JSONL field with its file and line) is left alone.
 */
export function fieldForCli(
  field: string | undefined,
  file: string | undefined,
  cmd: Command | undefined,
): string | undefined {
  if (field === undefined) return undefined;
  // A field of a data file (`train.jsonl:4`, field "prompt") is that file's, not a flag.
  if (file !== undefined && /:\d+$/.test(file)) return field;
  return flagMap(cmd).get(field) ?? field;
}

/** ParaError's message without the file/field prefix and the expected/actual suffix it adds. */
function bareMessage(e: ParaError): string {
  let m = e.message;
  const parts: string[] = [];
  if (e.file !== undefined) parts.push(e.file);
  if (e.field !== undefined) parts.push(`field "${e.field}"`);
  const prefix = parts.length > 0 ? `${parts.join(', ')}: ` : '';
  if (prefix !== '' && m.startsWith(prefix)) m = m.slice(prefix.length);
  let suffix = '';
  if (e.expected !== undefined)
    suffix = ` (expected ${e.expected}${e.actual !== undefined ? `, got ${e.actual})` : ')'}`;
  else if (e.actual !== undefined) suffix = ` (got ${e.actual})`;
  if (suffix !== '' && m.endsWith(suffix)) m = m.slice(0, -suffix.length);
  return m;
}

/** A ParaError as the CLI prints it: the same text, with the field in flag language. */
export function paraErrorForCli(e: ParaError, cmd: Command | undefined): JsonError {
  const field = fieldForCli(e.field, e.file, cmd);
  return {
    code: e.code,
    message: bareMessage(e),
    file: e.file ?? null,
    field: field ?? null,
    expected: e.expected ?? null,
    actual: e.actual ?? null,
  };
}

/** The one-line text form, as ParaError formats it (with the translated field). */
export function formatErrorLine(j: JsonError): string {
  const parts: string[] = [];
  if (j.file !== null) parts.push(j.file);
  if (j.field !== null) parts.push(`field "${j.field}"`);
  let text = parts.length > 0 ? `${parts.join(', ')}: ${j.message}` : j.message;
  if (j.expected !== null) text += ` (expected ${j.expected}`;
  if (j.actual !== null) text += j.expected !== null ? `, got ${j.actual})` : ` (got ${j.actual})`;
  else if (j.expected !== null) text += ')';
  return `para: error [${j.code}]: ${text}`;
}

/** commander's usage error as a JSON error: code USAGE, the flag or command it names as field/actual. */
export function usageErrorJson(e: CommanderError): JsonError {
  const message = e.message.replace(/^error: /, '');
  const quoted = [...message.matchAll(/'([^']*)'/g)].map((m) => m[1] as string);
  const flag = quoted.find((q) => q.startsWith('-'))?.split(/[ ,]/)[0];
  let actual: string | null = null;
  if (e.code === 'commander.unknownCommand') actual = quoted[0] ?? null;
  else if (e.code === 'commander.invalidArgument') actual = quoted[1] ?? null;
  return {
    code: 'USAGE',
    message,
    file: null,
    field: flag ?? null,
    expected: e.code === 'commander.help' ? 'a subcommand (see --help)' : null,
    actual,
  };
}

/** Thrown by a command to end with this exit code after it printed what it had to (e.g. 130 after Ctrl-C). */
export class CliExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}
