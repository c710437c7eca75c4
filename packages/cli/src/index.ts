// @int21/cli: The `int21` command line: quantize, finetune, eval, generate, inspect, demo.
// Re-exports only; see README.md.
export { type CliCommand, COMMANDS, cliVersion, runCli } from "./cli";
export { type CliIo, CliError, EXIT, type TextSink, UsageError, bufferIo, processIo } from "./cli-io";
export { type Action, runProgram, threadsOption, withBackend, writeJson } from "./command";
export { quantize, quantizeProgram } from "./commands/quantize";
export { finetune, finetuneProgram } from "./commands/finetune";
export { lrec, lrecProgram, lrecStatePath } from "./commands/lrec";
export { baseWeights } from "./base-weights";
export { evalCommand, evalProgram } from "./commands/eval";
export { generate, generateProgram } from "./commands/generate";
export {
  type InspectedTensor,
  type Inspection,
  inspect,
  inspectFile,
  inspectProgram,
} from "./commands/inspect";
export { type DemoRow, type DemoSummary, demo, demoProgram } from "./commands/demo";
export {
  type TrainingData,
  type TrainingDataOptions,
  describeTrainingData,
  readTrainingData,
} from "./training-data";
export { type HfDownloadOptions, LOCAL_MODEL_HINT, cacheDir, downloadHfModel, isHfId } from "./hf-download";
export {
  type OpenedModel,
  attachAdapterDir,
  attachCheckpointAdapters,
  checkpointAdaptersOf,
  findTokenizer,
  ggufTokenizer,
  loadTokenizer,
  loraModelOf,
  openModel,
  openTokenizer,
  resolveModelPath,
} from "./model-loading";
export { type ProgressBar, formatDuration, progressBar } from "./progress";
export { barChartSvg } from "./charts";
export { formatBytes, markdownTable, textTable } from "./format-table";
export { intIn, intOneOf, nameList, numberIn } from "./options";
