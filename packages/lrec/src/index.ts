// @int21/lrec: Low-rank error correction (LREC): train LoRA layers so a packed 2-8 bit LLaMA matches its float teacher.
// Re-exports only; see README.md.
export {
  type LossReduction,
  type LrecLoss,
  type LrecLossOptions,
  lrecLoss,
  type TopKLogits,
  topKFromLogits,
  topKKl,
} from "./loss";
export {
  type CalibInputs,
  type Svd,
  type SvdInitOptions,
  type SvdInitResult,
  svdInit,
  symmetricEigen,
  type TruncatedSvdOptions,
  truncatedSvd,
} from "./svd-init";
export {
  type AdapterDtype,
  adapterBitsAt,
  adapterBytes,
  adapterStorage,
  addLrecAdapter,
  effectiveBits,
  LLAMA_SHAPES,
  llamaBlockShapes,
  roundAdapter,
  LREC_TARGETS,
  llamaModuleMap,
  type LrecAdapterOptions,
  loraModelOf,
  projectionInputs,
  storeAdaptersAs,
  type SvdInitReport,
  syncModules,
} from "./adapter";
export {
  type LrecBatch,
  type LrecData,
  type TeacherSampleOptions,
  teacherSample,
  type WindowDataOptions,
  windowData,
} from "./data";
export { TeacherCache, type TeacherCacheBuildOptions } from "./teacher-cache";
export {
  formatLrecProgress,
  type LrecCheckpointStatus,
  type LrecHeldOutScore,
  type LrecOptions,
  type LrecProgress,
  type LrecResult,
  type LrecStep,
  lrecChartSvg,
  lrecCheckpointStatus,
  lrecRunIdentity,
  runLrec,
} from "./run-lrec";
export {
  LREC_RECIPE,
  type LrecInit,
  type LrecJobFinished,
  type LrecJobHeldOut,
  type LrecJobOptions,
  type LrecJobResult,
  type LrecRecipe,
  lrecJob,
  recipeLambda,
} from "./lrec-job";
export { type StoryTokensOptions, storyTokens } from "./evaluate";
export {
  type GroupDequantizeAttrs,
  groupDequantize,
  quantCodes,
  TrainableScales,
  type TrainableScalesOptions,
} from "./trainable-scales";
export {
  type AllocateRanksOptions,
  allocateRanks,
  type LoftqOptions,
  loftqQuantize,
} from "./init-methods";
export {
  INT2_PIPELINE_MIN_STORIES,
  type Int2Check,
  type Int2PipelineEvent,
  type Int2PipelineOptions,
  type Int2PipelineResult,
  type Int2Row,
  type Int2Summary,
  runInt2Pipeline,
} from "./int2-pipeline";
