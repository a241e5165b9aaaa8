// The choice of instruction set is made at the addon's first attention call: set it before.
process.env.PARA_FUSED_ISA = 'baseline';

const { tilePathSuite } = await import('./attention-isa');
tilePathSuite('baseline');

export {};
