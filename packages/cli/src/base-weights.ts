// The packed or float base of a model whose projections may be LoRA-wrapped: loaders' baseWeightsOf, under the
// name the CLI has always exported.
export { baseWeightsOf as baseWeights } from "@int21/loaders";
