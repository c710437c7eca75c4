// @int21/loaders: model files for @int21/model-llama — readers, checkpoints, exporters, tokenizers.
export { Llama2cTokenizer } from "./tokenizer";
export { GGUF_PRE_TOKENIZERS, HfTokenizer, type HfTokenizerOptions } from "./hf-tokenizer";
export { TOKENIZER_MODEL_TYPES, type TokenizerJsonInfo, checkTokenizerJson } from "./tokenizer-json";
export { type ChatMessage, type ChatTemplateOptions, renderChatTemplate } from "./chat-template";
export {
  type SentencePiece,
  type SentencePieceModel,
  parseSentencePieceModel,
  readSentencePieceTokenizer,
  sentencePieceToLlama2c,
} from "./sentencepiece-model";
export { type ByteSource, bytesSource, fileSource } from "./load-source";
export {
  LLAMA2C_MAGIC,
  type Llama2cEntry,
  type Llama2cLayout,
  encodeLlama2c,
  loadLlama2c,
  loadLlama2cBytes,
  loadLlama2cFrom,
  openLlama2cReader,
  parseLlama2cHeader,
} from "./load-llama2c";
export {
  type HfTensorLocation,
  HF_FLOAT_FIELDS,
  HF_INT_FIELDS,
  hfConfigJson,
  hfConfigToLlama,
  hfTensorLocation,
  hfTensorName,
  llamaToHfConfig,
  loadHf,
  loadHfBytes,
  openHfReader,
  permuteHfRows,
  unpermuteHfRows,
} from "./load-hf";
export {
  type AdapterStorage,
  type CheckpointAdapters,
  dequantizeInt8Rows,
  INT21_CHECKPOINT_FORMAT,
  INT21_CHECKPOINT_VERSION,
  type Int21Checkpoint,
  checkpointTensors,
  loadInt21Checkpoint,
  loadInt21CheckpointBytes,
  quantizeInt8Rows,
  saveInt21Checkpoint,
  serializeInt21Checkpoint,
  validateInt21Checkpoint,
} from "./checkpoint";
export { checkpointAdaptersOf, type Int21AdapterMeta } from "./checkpoint-adapters";
export { checkConfigObject, checkTensorCount, minTensorCount } from "./validate-config";
export { type ValidateModelOptions, validateModelFiles } from "./validate";
export { type LoadedModel, type ModelFileKind, detectModelFile, loadModel } from "./model-files";
export {
  GGUF_LINEAR_NAMES,
  type GgmlPackResult,
  type GgufLoadOptions,
  type GgufModel,
  type GgufModelType,
  type GgufSaveOptions,
  type GgufSaveReport,
  type GgufTensorLoad,
  type GgufTensorSave,
  ggmlToQuantized,
  ggufConfigToLlama,
  ggufModelTensors,
  ggufTensorName,
  ggufTokenizerToLlama2c,
  llama2cTokenizerToGguf,
  llamaToGgufMetadata,
  loadGguf,
  openGgufReader,
  quantizedToGgml,
  saveGguf,
  serializeGgufModel,
} from "./gguf-model";
export {
  type GgufLora,
  type GgufLoraModule,
  type GgufLoraReadOptions,
  type GgufLoraReport,
  type GgufLoraSaveOptions,
  ggufLoraTensors,
  ggufModuleTensor,
  loadGgufLora,
  readGgufLora,
  saveGgufLora,
  serializeGgufLora,
} from "./gguf-lora";
export {
  type FloatWeight,
  type HfExportOptions,
  type HfExportReport,
  type HfFusedPart,
  type HfLinearWriter,
  type HfSpecialTokens,
  exportHf,
  floatWeightOf,
  hfExportTensors,
} from "./export-hf";
export {
  type ExportModelOptions,
  type ExportModelReport,
  type ExportTarget,
  type ExportedFile,
  type GgufSize,
  type LossyMerge,
  type MergeInto,
  baseWeightsOf,
  exportModel,
  mergeToFloat,
} from "./export-model";
export { hfTokenizerToGguf } from "./gguf-hf-tokenizer";
export {
  type GptqCheckpointFormat,
  type GptqConfig,
  type GptqExportOptions,
  type GptqTensors,
  type GptqUnpackSpec,
  exportGptqHf,
  gptqLinearWriter,
  gptqQuantizationConfig,
  gptqZeroGroups,
  isGptqConfig,
  loadGptqHf,
  packGptqLinear,
  parseGptqConfig,
  unpackGptqLinear,
} from "./gptq-hf";
export {
  type Llama2cHfTokenizerFiles,
  type Llama2cHfTokenizerOptions,
  llama2cMerges,
  llama2cTokenizerFiles,
  llama2cVocabStrings,
} from "./llama2c-tokenizer-json";
export { llama2cSentencePieceModel } from "./llama2c-sentencepiece";
export { loadLlamaAdapter, peftAdapterSink, saveLlamaAdapter } from "./peft-adapter";
export { quantizeCheckpoint } from "./quantize-checkpoint";
