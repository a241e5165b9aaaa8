/**
 * Starting the tfjs backend for a command that computes, and the one short line it prints on
 * stderr (`backend: wasm + OpenBLAS`); `para info` has the details.
 */
import { type BackendReport, initBackend } from '@para/core/node';

/** A few words on what runs the math, from the active backend's report entry. */
export function backendLine(report: BackendReport): string {
  const active = report.backends.find((b) => b.name === report.active);
  const detail = active?.detail ?? '';
  const how = report.chosenBy === 'env' ? ', from PARA_BACKEND' : '';
  switch (report.active) {
    case 'wasm': {
      const matmul = /matmul: (.*)$/.exec(detail)?.[1] ?? '';
      if (/via @para\/blas/.test(matmul)) {
        const pinned = /(OPENBLAS_CORETYPE=\S+) from the environment keeps OpenBLAS off/.exec(
          matmul,
        );
        const notes = [
          how.slice(2),
          pinned && `${pinned[1]} keeps it off this CPU's AVX-512: unset it`,
        ].filter(Boolean);
        return `backend: wasm + OpenBLAS${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
      }
      let why = 'see para info';
      if (/PARA_BLAS_DISABLE/.test(matmul)) why = 'off by PARA_BLAS_DISABLE=1';
      else if (/libopenblas/.test(matmul)) why = 'libopenblas0 missing';
      else if (/@para\/blas is not installed/.test(matmul)) why = '@para/blas not installed';
      return `backend: wasm (OpenBLAS not loaded: ${why}${how})`;
    }
    case 'tensorflow':
      return `backend: tensorflow (${detail.replace(/^@tensorflow\//, '') || 'tfjs-node'}${how})`;
    case 'webgpu':
      return `backend: webgpu (${detail.replace(/:.*$/, '') || 'Dawn'}${how})`;
    default:
      return `backend: ${report.active}${report.chosenBy === 'auto' ? ' (the faster backends did not start; see para info)' : how ? ` (${how.slice(2)})` : ''}`;
  }
}

/**
 * Starts the backend (`--backend`, PARA_BACKEND, else the best one; WebGPU/Dawn only when asked
 * for) and, unless `quiet`, says which in one line on stderr.
 */
export async function startBackend(
  backend: string | undefined,
  quiet = false,
): Promise<BackendReport> {
  const report = await initBackend({ backend, probe: false });
  if (!quiet) process.stderr.write(`${backendLine(report)}\n`);
  return report;
}
