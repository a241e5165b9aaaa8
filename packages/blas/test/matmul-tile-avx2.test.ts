// The tile kernel's products forced on, in its AVX2 build (the baseline one where the CPU lacks
// AVX2), so that every machine tests the tile path's blocking. Both are read once per process.
process.env.PARA_MATMUL = 'tile';
process.env.PARA_FUSED_ISA = 'avx2';

const { matmulPathSuite } = await import('./matmul-paths');
matmulPathSuite('tile-avx2');

export {};
