// This package's numeric-test helpers (number arrays, rtol 1e-5): shared with @para/ops and @para/train.
export * from '@para/test-utils/backends-arrays';
