/** Printing commands a user can paste: the prefix that starts para here, and shell quoting. */

/**
 * How para was started, to print commands that run as printed: `pnpm --silent para` or
 * `npm run --silent para --` from the repository root (PARA_COMMAND_PREFIX, set by
 * scripts/para.mjs and scripts/bootstrap.mjs), else `para`.
 */
export function commandPrefix(): string {
  return process.env.PARA_COMMAND_PREFIX?.trim() || 'para';
}

/** Quoted for a POSIX shell (double quotes when nothing in it is special there). */
export function shellQuote(s: string): string {
  if (/^[\w./,:=@+-]+$/.test(s)) return s;
  if (!/[\\"$`!]/.test(s)) return `"${s}"`;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
