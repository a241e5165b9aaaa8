import type { Command } from 'commander';
import { type BackendReport, initBackend } from '@para/core/node';
import { PARA_VERSION, installedVersion } from '../version';

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

export interface InfoOutput {
  para: string;
  node: string;
  platform: string;
  packages: Record<string, string | null>;
  backend: BackendReport;
}

export async function collectInfo(options: { backend?: string; probe?: boolean }): Promise<InfoOutput> {
  const report = await initBackend({ backend: options.backend, probe: options.probe ?? true });
  return {
    para: PARA_VERSION,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    packages: Object.fromEntries(PACKAGES.map((p) => [p, installedVersion(p) ?? null])),
    backend: report,
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
  lines.push(`active backend: ${info.backend.active} (chosen ${info.backend.chosenBy === 'auto' ? 'automatically' : `by ${info.backend.chosenBy === 'env' ? 'PARA_BACKEND' : '--backend'}`})`);
  lines.push('backends (Node order; webgpu only on request):');
  for (const b of info.backend.backends) {
    const note = b.state === 'active' || b.state === 'available' ? (b.detail ?? '') : (b.reason ?? '');
    lines.push(`  ${b.name.padEnd(11)} ${b.state.padEnd(12)} ${note}`);
  }
  return lines.join('\n');
}

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description('versions, the active tfjs backend, and which backends are available here and why the others are not')
    .option('-b, --backend <name>', 'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND')
    .option('--no-probe', 'do not try the backends after the active one')
    .option('--json', 'print JSON')
    .action(async (opts: { backend?: string; probe: boolean; json?: boolean }) => {
      const info = await collectInfo({ backend: opts.backend, probe: opts.probe });
      process.stdout.write(opts.json ? `${JSON.stringify(info, null, 2)}\n` : `${formatInfo(info)}\n`);
    });
}
