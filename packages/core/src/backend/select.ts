import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '../errors';
import { type GradientRegistration, gradientRegistration } from './gradients';
import { registerWasmKernels } from './wasm-kernels';

/** tfjs backends para knows how to start. */
export const BACKEND_NAMES = ['tensorflow', 'webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** One backend a platform can offer, in priority order. */
export interface BackendCandidate {
  name: BackendName;
  /**
   * Import the backend's package and register it with tfjs. Throws, with a message a user can
   * act on, when the backend cannot be had here. May return a detail (package, adapter...).
   */
  load(): Promise<string | undefined>;
  /** Tried when no backend is chosen explicitly; `false` means "only when asked for". */
  auto: boolean;
}

export type BackendState =
  /** the backend in use */
  | 'active'
  /** would start here (probed) */
  | 'available'
  /** cannot start here; `reason` says why */
  | 'unavailable'
  /** not tried: a backend earlier in the order started (run with probe to check it) */
  | 'not-tried';

export interface BackendStatus {
  name: BackendName;
  state: BackendState;
  /** Only used when asked for explicitly (e.g. WebGPU through Dawn in Node). */
  onRequestOnly: boolean;
  /** What started (package, version, adapter). */
  detail?: string;
  /** Why it is unavailable or was skipped. */
  reason?: string;
}

export interface BackendReport {
  platform: 'node' | 'browser';
  active: BackendName;
  /** How the active backend was chosen. */
  chosenBy: 'option' | 'env' | 'auto';
  backends: BackendStatus[];
  gradients: GradientRegistration;
  tfjsCore: string;
}

export interface SelectBackendOptions {
  /** An explicit backend; wins over `PARA_BACKEND` and the automatic order. */
  backend?: string;
  /** The `PARA_BACKEND` value (Node passes process.env.PARA_BACKEND). */
  envBackend?: string;
  /** Also try every backend after the active one, to report which would start. */
  probe?: boolean;
}

// The wasm kernels are plain registry entries; registering them before wasm loads is fine.
registerWasmKernels();

/** Parse a backend name from user input; throws INVALID_ARGUMENT naming `field`. */
export function parseBackendName(value: string, field: string): BackendName {
  const v = value.trim().toLowerCase();
  if ((BACKEND_NAMES as readonly string[]).includes(v)) return v as BackendName;
  throw new ParaError('INVALID_ARGUMENT', `unknown backend "${value}"`, {
    field,
    expected: `one of ${BACKEND_NAMES.join(', ')}`,
    actual: value,
  });
}

function messageOf(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0]?.trim() || 'unknown error';
}

/** Load and activate one candidate; throws with the reason when it cannot start. */
async function start(c: BackendCandidate): Promise<string | undefined> {
  const detail = await c.load();
  // tfjs logs and returns false when a registered backend fails to initialise.
  const ok = await tf.setBackend(c.name);
  if (!ok) throw new Error(`tfjs could not initialise the ${c.name} backend`);
  await tf.ready();
  return detail;
}

/**
 * Choose and start a backend. An explicit choice (`options.backend`, then `PARA_BACKEND`) must
 * start or this throws BACKEND_UNAVAILABLE — no silent fallback. Otherwise the platform's
 * candidates are tried in order and the first that starts wins; the report says why each
 * earlier one was skipped.
 */
export async function selectBackendFrom(
  platform: 'node' | 'browser',
  candidates: BackendCandidate[],
  options: SelectBackendOptions = {},
): Promise<BackendReport> {
  const explicitOption = options.backend?.trim() ? options.backend : undefined;
  const explicitEnv = options.envBackend?.trim() ? options.envBackend : undefined;
  const chosenBy: BackendReport['chosenBy'] = explicitOption
    ? 'option'
    : explicitEnv
      ? 'env'
      : 'auto';
  const statuses = new Map<BackendName, BackendStatus>(
    candidates.map((c) => [c.name, { name: c.name, state: 'not-tried', onRequestOnly: !c.auto }]),
  );
  let active: BackendName | undefined;

  if (chosenBy !== 'auto') {
    const field = chosenBy === 'option' ? 'backend' : 'PARA_BACKEND';
    const name = parseBackendName((explicitOption ?? explicitEnv) as string, field);
    const c = candidates.find((x) => x.name === name);
    if (c === undefined) {
      throw new ParaError(
        'BACKEND_UNAVAILABLE',
        `backend "${name}" is not available on ${platform}`,
        {
          field,
          expected: `one of ${candidates.map((x) => x.name).join(', ')}`,
        },
      );
    }
    try {
      const detail = await start(c);
      statuses.set(name, { name, state: 'active', onRequestOnly: !c.auto, detail });
      active = name;
    } catch (e) {
      throw new ParaError(
        'BACKEND_UNAVAILABLE',
        `backend "${name}" was requested but could not start: ${messageOf(e)}`,
        {
          field,
          cause: e,
        },
      );
    }
  } else {
    for (const c of candidates) {
      if (!c.auto) continue;
      try {
        const detail = await start(c);
        statuses.set(c.name, { name: c.name, state: 'active', onRequestOnly: false, detail });
        active = c.name;
        break;
      } catch (e) {
        statuses.set(c.name, {
          name: c.name,
          state: 'unavailable',
          onRequestOnly: false,
          reason: messageOf(e),
        });
      }
    }
    if (active === undefined) {
      const reasons = [...statuses.values()]
        .map((s) => `${s.name}: ${s.reason ?? s.state}`)
        .join('; ');
      throw new ParaError(
        'BACKEND_UNAVAILABLE',
        `no tfjs backend could start on ${platform} (${reasons})`,
      );
    }
  }

  for (const c of candidates) {
    const s = statuses.get(c.name) as BackendStatus;
    if (s.state !== 'not-tried') continue;
    if (!options.probe) {
      s.reason = c.auto
        ? `${active} comes first in the ${platform} order`
        : 'used only when asked for';
      continue;
    }
    try {
      s.detail = await start(c);
      s.state = 'available';
    } catch (e) {
      s.state = 'unavailable';
      s.reason = messageOf(e);
    }
  }
  if (options.probe && tf.getBackend() !== active) await tf.setBackend(active);

  return {
    platform,
    active,
    chosenBy,
    backends: candidates.map((c) => statuses.get(c.name) as BackendStatus),
    gradients: gradientRegistration(),
    tfjsCore: tf.version_core,
  };
}

/** True when `e` says that `specifier` itself (not something inside it) is not installed. */
export function isModuleNotFound(e: unknown, specifier: string): boolean {
  const code = (e as { code?: string })?.code;
  const msg = messageOf(e);
  return (
    (code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      /Cannot find (module|package)/.test(msg)) &&
    (msg.includes(`'${specifier}'`) || msg.includes(`"${specifier}"`))
  );
}

/** Load an optional package, turning "not installed" into a readable reason. */
export async function importOptional<T>(specifier: string, importer: () => Promise<T>): Promise<T> {
  try {
    return await importer();
  } catch (e) {
    if (isModuleNotFound(e, specifier)) throw new Error(`${specifier} is not installed`);
    throw new Error(`${specifier} is installed but failed to load: ${messageOf(e)}`);
  }
}
