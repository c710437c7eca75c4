// @int21/model-llama: LLaMA models — load, tokenize, run, generate, evaluate, train.
export { type LlamaConfig, headSize, kvDim, validateConfig } from "./config";
export { type LayerWeights, LINEAR_NAMES, type LinearName, type LlamaWeights } from "./weights";
export { type EncodeOptions, Llama2cTokenizer, type StreamDecoder, type Tokenizer } from "./tokenizer";
export { type RunState, type RunStateOptions, createRunState } from "./run-state";
export { attention, forward, type LogitsMode, rmsnorm, rope, swiglu } from "./forward";
export { Sampler, type SamplerOptions, XorShiftRng, argmax, softmaxInPlace } from "./sampler";
export { type GenerateOptions, type GenerateResult, generate } from "./generate";
export {
  type NllOptions,
  type NllResult,
  type ProgressFn,
  type StoriesOptions,
  evaluateNll,
  evaluateStories,
  tokenNll,
} from "./eval";
export { HfTokenizer, type HfTokenizerOptions } from "./hf-tokenizer";
