// The choice of instruction set is made at the addon's first attention call: set it before.
process.env.PARA_FUSED_ISA = 'avx2';

const { tilePathSuite } = await import('./attention-isa');
tilePathSuite('avx2');

export {};
