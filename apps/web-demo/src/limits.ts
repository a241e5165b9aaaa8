/**
 * Largest uploads the page accepts, checked before a file is read (main.ts) and again in the
 * worker (engine.ts): an uploaded file must not be able to freeze the worker or exhaust the
 * tab's memory. Below these sizes a file is validated by the same bounded loaders the CLI uses
 * (header before allocation, linear-time regexes, JSON depth, strict UTF-8). No imports, so
 * the page can use it without bundling the engine.
 */

export const UPLOAD_LIMITS = {
  /** Training data (JSONL). */
  jsonl: 32 * 2 ** 20,
  /** adapter_config.json. */
  adapterConfig: 2 ** 20,
  /** adapter_model.safetensors (the bundled backbone's own weights are far smaller). */
  adapterWeights: 512 * 2 ** 20,
} as const;

export type UploadKind = keyof typeof UPLOAD_LIMITS;

/** What was expected and found when `bytes` exceeds the limit of `kind`, else null. */
export function uploadTooLarge(
  kind: UploadKind,
  bytes: number,
): { expected: string; actual: string } | null {
  const limit = UPLOAD_LIMITS[kind];
  if (bytes <= limit) return null;
  return {
    expected: `at most ${(limit / 2 ** 20).toFixed(0)} MiB`,
    actual: `${(bytes / 2 ** 20).toFixed(1)} MiB`,
  };
}

/** Throws a plain Error (the page shows its message) when an upload is too large. */
export function refuseLargeUpload(kind: UploadKind, bytes: number, file: string): void {
  const p = uploadTooLarge(kind, bytes);
  if (p !== null)
    throw new Error(
      `${file}: the file is too large to upload here (expected ${p.expected}, got ${p.actual})`,
    );
}
