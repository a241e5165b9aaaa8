import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  type BackendReport,
  type BackendStatus,
  initBackend,
  locateTfjsNode,
  nodeBackendCandidates,
  selectBackendFrom,
  type TensorflowRuntime,
  type TensorflowSetupRecord,
  TFJS_NODE_PACKAGES,
  type TfjsNodePackage,
  tensorflowRuntimeOf,
  tensorflowSetupCommand,
} from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import type { Command } from 'commander';
import { installedVersion, PARA_VERSION } from '../version';

const PACKAGES = [
  '@para/core',
  '@tensorflow/tfjs-core',
  '@tensorflow/tfjs-backend-cpu',
  '@tensorflow/tfjs-backend-wasm',
  '@tensorflow/tfjs-backend-webgpu',
  '@tensorflow/tfjs-node-gpu',
  '@tensorflow/tfjs-node',
  'webgpu',
] as const;

/** One TensorFlow.js Node package: installed? its binding built by `para setup tensorflow`? */
export interface TfjsNodeInfo {
  name: TfjsNodePackage;
  version: string | null;
  /** The native binding file exists. */
  built: boolean;
  /** What the setup recorded (deps/para-setup.json), when it built this package. */
  setup: TensorflowSetupRecord | null;
  /** The command that builds it. */
  setupCommand: string;
}

export interface TensorflowInfo {
  packages: TfjsNodeInfo[];
  /** The loaded TensorFlow C library (version, devices), when the backend started or was probed. */
  runtime: TensorflowRuntime | null;
  /** Why the tensorflow backend is not in use (null when it is active). */
  notUsed: string | null;
}

export interface InfoOutput {
  para: string;
  node: string;
  platform: string;
  packages: Record<string, string | null>;
  backend: BackendReport;
  tensorflow: TensorflowInfo;
}

/** The tensorflow section of `para info`: each tfjs-node package's state, the loaded library. */
export function tensorflowInfo(report: BackendReport): TensorflowInfo {
  const status = report.backends.find((b) => b.name === 'tensorflow');
  const packages = TFJS_NODE_PACKAGES.map((name): TfjsNodeInfo => {
    const where = locateTfjsNode(name);
    return {
      name,
      version: where?.version ?? null,
      built: where?.built ?? false,
      setup: where?.setup ?? null,
      setupCommand: tensorflowSetupCommand(name),
    };
  });
  const loaded = status?.state === 'active' || status?.state === 'available';
  return {
    packages,
    runtime: loaded ? (tensorflowRuntimeOf(tf.findBackend('tensorflow')) ?? null) : null,
    notUsed:
      status === undefined || status.state === 'active'
        ? null
        : status.state === 'available' || status.state === 'not-tried'
          ? `${report.active} was asked for (${report.chosenBy === 'env' ? 'PARA_BACKEND' : '--backend'})${status.state === 'not-tried' ? '; not probed' : ''}`
          : (status.reason ?? 'unavailable'),
  };
}

/** True when this run asked for WebGPU itself (`--backend webgpu`, else PARA_BACKEND=webgpu). */
function webgpuRequested(backend: string | undefined): boolean {
  const chosen = backend?.trim() ? backend : process.env.PARA_BACKEND;
  return chosen?.trim().toLowerCase() === 'webgpu';
}

/**
 * Probes WebGPU (Dawn) in a child process, `para info --backend webgpu --no-probe --json`, so
 * Dawn's own stderr noise (Vulkan loader and limit warnings, written by native code) stays there.
 */
export function probeWebgpuQuietly(): BackendStatus {
  const status: BackendStatus = { name: 'webgpu', state: 'unavailable', onRequestOnly: true };
  const r = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), 'info', '--backend', 'webgpu', '--no-probe', '--json'],
    {
      encoding: 'utf8',
      env: { ...process.env, PARA_BACKEND: undefined },
      timeout: 120_000,
      maxBuffer: 1 << 24,
    },
  );
  if (r.status === 0) {
    try {
      const child = (JSON.parse(r.stdout) as InfoOutput).backend.backends.find(
        (b) => b.name === 'webgpu',
      );
      if (child?.state === 'active')
        return {
          ...status,
          state: 'available',
          ...(child.detail === undefined ? {} : { detail: child.detail }),
        };
    } catch {
      // fall through to the reason below
    }
  }
  // The child's error is its last JSON line on stderr (Dawn may have printed before it).
  const line = (r.stderr ?? '')
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{"error"'));
  let reason = r.error
    ? `the probe could not run: ${r.error.message}`
    : `the probe exited with status ${r.status}`;
  if (line !== undefined) {
    try {
      reason = (JSON.parse(line) as { error: { message: string } }).error.message.replace(
        /^backend "webgpu" was requested but could not start: /,
        '',
      );
    } catch {
      // keep the generic reason
    }
  }
  return { ...status, reason };
}

export async function collectInfo(options: {
  backend?: string;
  probe?: boolean;
}): Promise<InfoOutput> {
  const probe = options.probe ?? true;
  let report: BackendReport;
  if (probe && !webgpuRequested(options.backend)) {
    // Probe everything here but WebGPU, which is probed in a child process (see above).
    const candidates = nodeBackendCandidates();
    report = await selectBackendFrom(
      'node',
      candidates.filter((c) => c.name !== 'webgpu'),
      { envBackend: process.env.PARA_BACKEND, backend: options.backend, probe: true },
    );
    if (candidates.some((c) => c.name === 'webgpu'))
      report = { ...report, backends: [...report.backends, probeWebgpuQuietly()] };
  } else {
    report = await initBackend({ backend: options.backend, probe });
  }
  return {
    para: PARA_VERSION,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    packages: Object.fromEntries(PACKAGES.map((p) => [p, installedVersion(p) ?? null])),
    backend: report,
    tensorflow: tensorflowInfo(report),
  };
}

export function formatInfo(info: InfoOutput): string {
  const lines: string[] = [];
  lines.push(`para ${info.para} on Node ${info.node} (${info.platform})`);
  lines.push('');
  lines.push('packages:');
  for (const [name, version] of Object.entries(info.packages)) {
    lines.push(`  ${name.padEnd(32)} ${version ?? 'not installed'}`);
  }
  const g = info.backend.gradients;
  lines.push('');
  lines.push(
    `gradients: registered (bundled from tfjs-core ${g.bundledVersion}${g.bundledVersion === g.runningVersion ? '' : `, MISMATCH: running ${g.runningVersion}`})`,
  );
  lines.push('');
  lines.push(
    `active backend: ${info.backend.active} (chosen ${info.backend.chosenBy === 'auto' ? 'automatically' : `by ${info.backend.chosenBy === 'env' ? 'PARA_BACKEND' : '--backend'}`})`,
  );
  lines.push('backends (Node order; webgpu only on request):');
  for (const b of info.backend.backends) {
    const note =
      b.state === 'active' || b.state === 'available' ? (b.detail ?? '') : (b.reason ?? '');
    lines.push(`  ${b.name.padEnd(11)} ${b.state.padEnd(12)} ${note}`);
  }
  lines.push('');
  lines.push(...formatTensorflow(info.tensorflow));
  return lines.join('\n');
}

/** The `tensorflow:` block: the loaded library and devices, each package's setup, why not used. */
export function formatTensorflow(t: TensorflowInfo): string[] {
  const lines = ['tensorflow (TensorFlow C library through tfjs-node):'];
  if (t.runtime !== null)
    lines.push(`  TensorFlow ${t.runtime.version}, devices: ${t.runtime.devices.join(', ')}`);
  for (const p of t.packages) {
    let state: string;
    if (p.version === null) state = 'not installed';
    else if (p.built && p.setup !== null)
      state = `set up: TensorFlow ${p.setup.tensorflow} (${p.setup.variant}, ${p.setup.wheel}, built ${p.setup.builtAt.slice(0, 10)})`;
    else if (p.built) state = 'native binding present (not built by para setup)';
    else state = `not set up (\`${p.setupCommand}\` builds it)`;
    lines.push(`  ${p.name.padEnd(26)} ${(p.version ?? '').padEnd(7)} ${state}`);
  }
  if (t.notUsed !== null) lines.push(`  not used: ${t.notUsed}`);
  return lines;
}

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description(
      'versions, the active tfjs backend, and which backends are available here and why the others are not',
    )
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .option(
      '--no-probe',
      "do not try the backends after the active one (WebGPU is probed in a child process, so Dawn's warnings stay out of this output)",
    )
    .option('--json', 'print JSON')
    .action(async (opts: { backend?: string; probe: boolean; json?: boolean }) => {
      const info = await collectInfo({ backend: opts.backend, probe: opts.probe });
      process.stdout.write(
        opts.json ? `${JSON.stringify(info, null, 2)}\n` : `${formatInfo(info)}\n`,
      );
    });
}
