/**
 * Where the bundled default backbone lives: the CLI's default `--model` (library calls always
 * name their model directory).
 */

import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParaError } from '@para/core/node';

const BACKBONE_MARKER = path.join('assets', 'backbone', 'config.json');

/**
 * The bundled default backbone (`assets/backbone` in the repository: config.json,
 * model.safetensors, tokenizer.json, tokenizer_config.json). `PARA_BACKBONE_DIR` overrides it.
 * Found by walking up from this module (and then from the working directory) to the first
 * directory holding `assets/backbone/config.json`; FILE_NOT_FOUND when there is none.
 */
export function defaultBackboneDir(): string {
  const env = process.env.PARA_BACKBONE_DIR;
  if (env !== undefined && env.trim() !== '') return env;
  const starts: string[] = [];
  try {
    starts.push(path.dirname(fileURLToPath(import.meta.url)));
  } catch {
    // CJS build: import.meta.url is unavailable
  }
  if (typeof __dirname === 'string') starts.push(__dirname);
  starts.push(process.cwd());
  for (const start of starts) {
    let dir = start;
    for (;;) {
      if (existsSync(path.join(dir, BACKBONE_MARKER))) return path.join(dir, 'assets', 'backbone');
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new ParaError('FILE_NOT_FOUND', 'the default backbone was not found', {
    file: BACKBONE_MARKER,
    field: 'model',
    expected: 'a para checkout with assets/backbone/, PARA_BACKBONE_DIR, or a model directory',
  });
}
