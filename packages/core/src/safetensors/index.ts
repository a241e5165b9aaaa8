/** Safetensors reading and writing (universal: Node and browser). */

export {
  bf16BitsToFloat32,
  type DecodeContext,
  DTYPE_BYTES,
  decodeFloat,
  decodeInt,
  decodeTensorData,
  encodeFloat32,
  encodeInto,
  type FloatStorageDtype,
  f16BitsToFloat32,
  float32Bits,
  float32FromBits,
  float32ToBF16Bits,
  float32ToF16Bits,
  isFloatDtype,
  isSafetensorsDtype,
  type NumericArray,
  type SafetensorsDtype,
} from './dtypes';
export { findNonFinite, readAllFinite, readFiniteTensor, requireFinite } from './finite';
export {
  compareNames,
  MAX_HEADER_BYTES,
  METADATA_KEY,
  parseHeaderJson,
  parseSafetensorsHeader,
  readHeaderLength,
  type SafetensorsHeader,
  type TensorEntry,
} from './header';
export { SafetensorsReader, tensorNotFound } from './reader';
export {
  type CheckpointAccess,
  type CheckpointOptions,
  checkShardPath,
  openSafetensorsCheckpoint,
  parseShardIndex,
  readWhole,
  ShardedSafetensors,
  type ShardIndex,
  type ShardOpener,
} from './sharded';
export {
  ArrayBufferSource,
  type ByteSource,
  checkRange,
  FetchRangeSource,
  type FetchRangeSourceOptions,
} from './source';
export type { RawTensor, TensorData, TensorInfo, TensorStore } from './types';
export { urlCheckpointAccess } from './url';
export {
  type PlannedTensor,
  planSafetensors,
  type RawTensorBytes,
  type SafetensorsPlan,
  type SerializeOptions,
  serializeSafetensors,
  type TensorValues,
  type WritableTensor,
} from './writer';
