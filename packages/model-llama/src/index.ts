// @int21/model-llama: LLaMA models — load, tokenize, run, generate, evaluate, train.
export {
  CONFIG_INT_FIELDS,
  CONFIG_NUMBER_FIELDS,
  type LlamaConfig,
  type ModelFamily,
  type RopeScaling,
  headSize,
  kvDim,
  layerWindow,
  qDim,
  ropeInvFreq,
  validateConfig,
} from "./config";
export {
  EXTRA_LAYER_TENSORS,
  type ExtraLayerTensor,
  type LayerWeights,
  LINEAR_NAMES,
  type LinearName,
  type LlamaWeights,
} from "./weights";
export {
  type TokenEmbedding,
  checkTokenEmbedding,
  denseTokenEmbedding,
  embeddingRows,
  isPackedEmbedding,
  isTiedClassifier,
  quantizeTokenEmbedding,
  tiedClassifier,
  tokenEmbeddingBytes,
} from "./embedding";
export type { EncodeOptions, StreamDecoder, Tokenizer } from "./tokenizer";
export { type RunState, type RunStateOptions, createRunState, ensureContext } from "./run-state";
export {
  addBias,
  attention,
  forward,
  geglu,
  type LogitsMode,
  type RowBuffers,
  RowOps,
  rmsnorm,
  rope,
  softcap,
  swiglu,
} from "./forward";
export {
  type BlockAttention,
  type BlockBiasName,
  type BlockHeadNormName,
  type BlockNormName,
  type BlockOps,
  attentionScale,
  llamaBlock,
} from "./block";
export { Sampler, type SamplerOptions, XorShiftRng, argmax, softmaxInPlace } from "./sampler";
export { type GenerateOptions, type GenerateResult, generate } from "./generate";
export {
  type NllOptions,
  type NllResult,
  type ProgressFn,
  type StoriesOptions,
  evaluateNll,
  evaluateStories,
  evaluateLlamaCppChunks,
  type LlamaCppChunkOptions,
  tokenNll,
} from "./eval";
export {
  type LoadOptions,
  type QuantizeSpec,
  type TensorReader,
  type TensorSpec,
  WeightAssembler,
  assembleFromReader,
  assertFinite,
  extraLayerSpecs,
  llamaTensorSpecs,
  numel,
} from "./load-assemble";
export { type LinearParts, linearParts } from "./linear-parts";
export {
  type LinearErrorReport,
  type QuantizeModelOptions,
  type QuantizeModelResult,
  type QuantizeProgress,
  calibrationHiddenStates,
  calibrationWindows,
  fitBlockFormat,
  quantizeFromReader,
  quantizeModel,
  relOutputError,
} from "./quantize-model";
export {
  type SyntheticModelName,
  type SyntheticOptions,
  randomPacked,
  syntheticConfig,
  syntheticWeights,
} from "./synthetic";
export {
  type LinearOpHook,
  type TrainForwardOptions,
  applyLinear,
  geglu as gegluTensor,
  ropeScaled,
  softcapTensor,
  trainForward,
  windowAttention,
} from "./train-forward";
export {
  type AdapterSink,
  type FinetuneOptions,
  type FinetuneResult,
  type LlamaLossOptions,
  addLlamaLoRA,
  finetune,
  llamaLoss,
  llamaModules,
  setLlamaModules,
} from "./finetune";
export { type WidenOptions, widenExactly } from "./widen";
