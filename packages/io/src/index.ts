// @int21/io: safetensors and GGUF readers/writers. Re-exports only; see README.md.
export { bf16ToF32, f16BitsToF32, f16ToF32, f32BitsToBf16, f32BitsToF16, f32ToBf16, f32ToF16 } from "./half";
export { type FileSource, openFileSource } from "./file-source";
export {
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  SAFETENSORS_DTYPES,
  SAFETENSORS_MAX_HEADER,
  type SafetensorsDtype,
  type SafetensorsDtypeInfo,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
  type SafetensorsTypedArray,
} from "./safetensors-format";
export {
  openSafetensors,
  parseSafetensors,
  type RawTensor,
  type SafetensorsBytes,
  type SafetensorsFile,
  type SafetensorsInfo,
} from "./safetensors-reader";
export {
  type SafetensorsWriteInput,
  type SafetensorsWriteTensor,
  serializeSafetensors,
  writeSafetensors,
} from "./safetensors-writer";
export {
  openSafetensorsIndex,
  SAFETENSORS_INDEX_FILE,
  type SafetensorsIndex,
  type ShardedTensor,
  type ShardedTensorInfo,
} from "./safetensors-index";
