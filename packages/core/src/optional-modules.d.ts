// Optional native backends: loaded with a dynamic import when installed (see node/backends.ts).
declare module '@tensorflow/tfjs-node-gpu';
declare module '@tensorflow/tfjs-node';
