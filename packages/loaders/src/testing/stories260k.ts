// Test-only: the real stories260K checkpoint, loaded once with the llama2.c loader (reference backend).
import type { LlamaWeights } from "@int21/model-llama";
import { SHARED, sharedPath } from "@int21/shared-data";
import { loadLlama2c } from "../load-llama2c";

let cached: LlamaWeights | undefined;

/** stories260K as float weights on the reference backend (shared by every caller: do not modify). */
export function stories260K(): LlamaWeights {
  cached ??= loadLlama2c(sharedPath(SHARED.stories260K));
  return cached;
}
