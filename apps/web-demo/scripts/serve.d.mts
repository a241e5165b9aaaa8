/** Types of serve.mjs (used by the end-to-end test). */
export function serveWebDemo(options?: {
  port?: number;
}): Promise<{ url: string; close(): Promise<void> }>;
