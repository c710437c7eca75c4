// @int21/io: safetensors and GGUF readers/writers. Re-exports only; see README.md.
export { bf16ToF32, f16BitsToF32, f16ToF32, f32BitsToBf16, f32BitsToF16, f32ToBf16, f32ToF16 } from "./half";
export { type FileSource, openFileSource } from "./file-source";
export {
  ATOMIC_TEMP_MARKER,
  type AtomicWriter,
  atomicTempPath,
  cleanStaleAtomicTemps,
  FileWriteError,
  writeFileAtomic,
  writeFileAtomicStream,
} from "./atomic-write";
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
  type ShardOptions,
  writeSafetensorsSharded,
} from "./safetensors-index";
export { type GgmlType, type GgmlTypeName, GGML_TYPES, ggmlTypeById } from "./ggml-types";
export {
  dequantizeQ2_K,
  dequantizeQ3_K,
  dequantizeQ4_0,
  dequantizeQ4_1,
  dequantizeQ4_K,
  dequantizeQ5_0,
  dequantizeQ5_1,
  dequantizeQ5_K,
  dequantizeQ6_K,
  dequantizeQ8_0,
  dequantizeIQ4_NL,
  dequantizeIQ4_XS,
  IQ4_NL_VALUES,
} from "./ggml-dequant";
export { quantizeQ4_0, quantizeQ4_1, quantizeQ8_0 } from "./ggml-quantize";
export {
  quantizeIQ4_NL,
  quantizeIQ4_XS,
  quantizeQ2_K,
  quantizeQ3_K,
  quantizeQ4_K,
  quantizeQ5_0,
  quantizeQ5_1,
  quantizeQ5_K,
  quantizeQ6_K,
} from "./ggml-quantize-k";
export {
  GGML_MAX_DIMS,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_VALUE_TYPES,
  type GgufArray,
  type GgufArrayItems,
  type GgufHeader,
  type GgufTensorInfo,
  type GgufValue,
  type GgufValueType,
  ggufGet,
  ggufNumber,
  ggufString,
  parseGgufHeader,
} from "./gguf-format";
export { type GgufBytes, type GgufFile, type GgufInfo, openGguf, parseGguf } from "./gguf-reader";
export { type GgufWriteInput, type GgufWriteTensor, serializeGguf, writeGguf } from "./gguf-writer";
export { type GgufTokenizer, readGgufTokenizer } from "./gguf-tokenizer";
export { GGML_GROUP_TYPES, type GgmlGroups, ggmlToGroups } from "./ggml-groups";
export {
  type FileProblem,
  nonFiniteProblem,
  type ValidateOptions,
  validateGguf,
  validateSafetensors,
} from "./validate";
