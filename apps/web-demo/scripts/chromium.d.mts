/** Types of chromium.mjs (used by the end-to-end test). */
export const CHROMIUM_FLAGS: string[];
export const WEBGPU_FLAG: string;
export function findChromium(): string | null;
export function chromiumForTests(label: string): string | null;
