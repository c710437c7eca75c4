// The packed or float base of a model whose projections may be LoRA-wrapped.
import { isLoRALinear } from "@int21/lora";
import { LINEAR_NAMES, type LinearName, type LlamaWeights } from "@int21/model-llama";

/** A shallow copy of `weights` with every LoRA-wrapped projection replaced by its base layer. */
export function baseWeights(weights: LlamaWeights): LlamaWeights {
  const unwrap = <T>(l: T): T => {
    let x = l as unknown as import("@int21/quant-kernels").Linear;
    while (isLoRALinear(x)) x = x.base;
    return x as unknown as T;
  };
  return {
    ...weights,
    classifier: unwrap(weights.classifier),
    layers: weights.layers.map((L) => {
      const out = { ...L };
      for (const k of Object.keys(LINEAR_NAMES) as LinearName[]) out[k] = unwrap(L[k]);
      return out;
    }),
  };
}
