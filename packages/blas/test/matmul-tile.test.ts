// BatchMatMul's products as this machine runs them by default (the tile kernel on an AVX-512 CPU
// whose OpenBLAS runs AVX2 kernels, OpenBLAS otherwise). PARA_MATMUL is read once per process.
delete process.env.PARA_MATMUL;

const { matmulPathSuite } = await import('./matmul-paths');
matmulPathSuite('auto');

export {};
