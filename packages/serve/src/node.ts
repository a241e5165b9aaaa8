/**
 * @para/serve for Node: everything in the universal entry, plus adapter directories on disk
 * (`directorySource`) and the OpenAI-compatible HTTP server (`createServer`, Fastify).
 */

export * from './index';
export {
  type DirectorySourceOptions,
  directorySource,
  resolveAdapterDir,
} from './node/directory';
export { type ApiKeys, apiKeys, type KeyGrant, loadKeysFile, parseKeys } from './node/keys';
export { createServer, type ParaServer, type ServerOptions } from './node/server';
