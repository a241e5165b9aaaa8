// The same products with PARA_MATMUL=openblas: OpenBLAS's sgemm whatever the CPU.
process.env.PARA_MATMUL = 'openblas';

const { matmulPathSuite } = await import('./matmul-paths');
matmulPathSuite('openblas');

export {};
