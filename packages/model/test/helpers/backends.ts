// The shared numeric-test helpers (one copy, in @para/test-utils).
export * from '@para/test-utils/backends';
