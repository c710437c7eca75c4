// @int21/lora: LoRA adapters over float or packed quantized linears: stacking, merging, PEFT-format save/load.
// Re-exports only; see README.md.
export {
  canonicalTarget,
  LLAMA2C_ALIASES,
  LLAMA_TARGETS,
  matchesTarget,
  selectTargets,
  type TargetChoice,
  type TargetSpec,
} from "./targets";
export { hashSeed, LoRAAdapter, type LoRAAdapterOptions, LoRALinear, mulberry32 } from "./lora-linear";
export { type AdapterRecord, applyLoRA, type LoRAConfig, LoRAModel } from "./lora-model";
export {
  attachPeftAdapter,
  decodePeftAdapter,
  loadPeftAdapter,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
  type PeftAdapter,
  type PeftAttachOptions,
  peftConfig,
  peftKey,
  type PeftLoraConfig,
  type PeftSaveOptions,
  peftTargets,
  peftTensors,
  parsePeftAdapter,
  parsePeftConfig,
  readPeftAdapter,
  validatePeftAdapter,
  savePeftAdapter,
  serializePeftAdapter,
} from "./peft";
export {
  adapterTensors,
  dropoutMask,
  type FrozenLinear,
  frozenLinear,
  type LinearForwardOptions,
  linearForward,
  loraParameters,
} from "./lora-op";
export {
  isLoRALinear,
  mergeAdapters,
  mergeAndUnload,
  mergeAndUnloadModel,
  type MergeOptions,
  type MergeReport,
  mergeModel,
  unmergeAdapters,
  unmergeModel,
} from "./merge";
export { type AdapterTensors, adaptersFromCheckpoint, adaptersToCheckpoint } from "./checkpoint-adapters";
export { linearCrossEntropy } from "./linear-cross-entropy";
export { checkSchedule, learningRate, type ScheduleOptions } from "./schedule";
export {
  type Batch,
  batchIndices,
  collate,
  type Example,
  IGNORE_INDEX,
  permutation,
  splitExamples,
  type TextDatasetOptions,
  textDataset,
  type TextEncoder,
  type TextExamples,
  textExamples,
  textWindows,
  type WindowOptions,
} from "./dataset";
export {
  ALPACA_PROMPT_NO_INPUT,
  ALPACA_PROMPT_WITH_INPUT,
  type AlpacaExamples,
  type AlpacaOptions,
  type AlpacaRecord,
  alpacaExamples,
  alpacaPrompt,
  alpacaTemplateText,
  parseAlpaca,
} from "./alpaca";
export { type ChartSeries, lineChartSvg, niceTicks } from "./loss-chart";
export {
  type ContentHasher,
  contentHasher,
  DEFAULT_DIVERGE_FACTOR,
  DEFAULT_DIVERGE_STEPS,
  DIVERGE_WINDOW,
  DivergenceGuard,
  type DivergenceOptions,
  diffRunIdentity,
  formatRunDifferences,
  hashPathContents,
  type RunDifference,
  type RunIdentity,
  type RunIdentityValue,
  RunMismatchError,
  TrainingDivergedError,
} from "./run-identity";
export {
  formatProgress,
  type LossInfo,
  type LossTerms,
  lossChartSvg,
  type Progress,
  type StepResult,
  TRAINER_CHECKPOINT_FILE,
  Trainer,
  trainerCheckpointInfo,
  type TrainerOptions,
  type TrainHistory,
  type TrainResult,
} from "./trainer";
export {
  type ChatExamples,
  type ChatRecord,
  type ChatRenderer,
  type ChatTurn,
  chatExamples,
  isChatRecord,
  parseChatRecords,
} from "./chat-data";
