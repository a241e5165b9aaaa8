import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Version of this app (package.json). */
export const PARA_VERSION: string = (require('../package.json') as { version: string }).version;

/** Installed version of a package, or undefined when it is not installed. */
export function installedVersion(pkg: string): string | undefined {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}
