/**
 * The config stamp of an adapter directory: `adapter_model.safetensors` records in its
 * `__metadata__` the sha256 of the adapter_config.json it was saved with
 * (`para.adapter_config_sha256`), so a directory whose two files come from different saves
 * (a save interrupted between them, or a config edited by hand) is refused on load instead of
 * silently loading weights with the wrong settings (another `lora_alpha`, other modules).
 *
 * The hash covers the config's canonical JSON (keys sorted, no whitespace) without the cosmetic
 * keys `base_model_name_or_path`, `revision` and `inference_mode`: editing those keeps the
 * adapter loadable. Weights without the stamp (Python PEFT's, or saved before it existed) load
 * as before. Universal: a small synchronous SHA-256 (no `crypto.subtle`, which browsers offer
 * only in secure contexts and only asynchronously).
 */

import { ParaError } from '@para/core';

/** The safetensors metadata key holding the config's hash. */
export const CONFIG_STAMP_KEY = 'para.adapter_config_sha256';

/** Config keys that do not change what the weights mean (not hashed). */
export const COSMETIC_CONFIG_KEYS: readonly string[] = [
  'base_model_name_or_path',
  'revision',
  'inference_mode',
];

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const keys = Object.keys(v).sort();
    return `{${keys
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The canonical JSON the stamp hashes: the config without its cosmetic keys, keys sorted. */
export function canonicalConfigJson(config: unknown): string {
  if (typeof config !== 'object' || config === null || Array.isArray(config))
    return canonical(config);
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) if (!COSMETIC_CONFIG_KEYS.includes(k)) rest[k] = v;
  return canonical(rest);
}

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of `data` as lowercase hex (synchronous, universal). */
export function sha256Hex(data: Uint8Array | string): string {
  const msg = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const n = msg.length;
  const padded = new Uint8Array((((n + 9 + 63) >> 6) << 6) >>> 0);
  padded.set(msg);
  padded[n] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(n / 2 ** 29), false);
  view.setUint32(padded.length - 4, (n << 3) >>> 0, false);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x: number, r: number) => (x >>> r) | (x << (32 - r));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i, false);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15] as number;
      const b = w[i - 2] as number;
      const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
      const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
      w[i] = ((w[i - 16] as number) + s0 + (w[i - 7] as number) + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h as unknown as number[];
    for (let i = 0; i < 64; i++) {
      const S1 = rotr(e as number, 6) ^ rotr(e as number, 11) ^ rotr(e as number, 25);
      const ch = ((e as number) & (f as number)) ^ (~(e as number) & (g as number));
      const t1 = ((hh as number) + S1 + ch + (K[i] as number) + (w[i] as number)) >>> 0;
      const S0 = rotr(a as number, 2) ^ rotr(a as number, 13) ^ rotr(a as number, 22);
      const maj =
        ((a as number) & (b as number)) ^
        ((a as number) & (c as number)) ^
        ((b as number) & (c as number));
      const t2 = (S0 + maj) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = ((d as number) + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] = (h[0] as number) + (a as number);
    h[1] = (h[1] as number) + (b as number);
    h[2] = (h[2] as number) + (c as number);
    h[3] = (h[3] as number) + (d as number);
    h[4] = (h[4] as number) + (e as number);
    h[5] = (h[5] as number) + (f as number);
    h[6] = (h[6] as number) + (g as number);
    h[7] = (h[7] as number) + (hh as number);
  }
  return Array.from(h, (x) => x.toString(16).padStart(8, '0')).join('');
}

/** The stamp of a config (its JSON text or parsed value). */
export function configStamp(config: string | unknown): string {
  return sha256Hex(canonicalConfigJson(typeof config === 'string' ? JSON.parse(config) : config));
}

/**
 * Refuses a weights file whose stamp is not that of `config` (a parsed adapter_config.json):
 * INVALID_CONFIG naming both files. No stamp in `metadata`: nothing to check.
 */
export function checkConfigStamp(
  config: unknown,
  configFile: string,
  metadata: Readonly<Record<string, string>> | undefined,
  weightsFile: string,
): void {
  const stamp = metadata?.[CONFIG_STAMP_KEY];
  if (stamp === undefined) return;
  const actual = sha256Hex(canonicalConfigJson(config));
  if (stamp === actual) return;
  throw new ParaError(
    'INVALID_CONFIG',
    `${configFile} is not the config ${weightsFile} was saved with: the save was interrupted between the two files, or the config was edited afterwards (only base_model_name_or_path, revision and inference_mode may be). Save the adapter again, or restore the config it was saved with`,
    {
      file: configFile,
      field: CONFIG_STAMP_KEY,
      expected: `a config with sha256 ${stamp} (recorded in ${weightsFile})`,
      actual: `sha256 ${actual}`,
    },
  );
}
