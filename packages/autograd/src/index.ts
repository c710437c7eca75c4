// @int21/autograd: A small, memory-aware reverse-mode autograd over strided Float32Array views, with the ops LLaMA training needs.
export { currentBackend, getBackend, setBackend, withBackend } from "./backend";
export {
  backward,
  defineOp,
  applyOp,
  detach,
  enableGrad,
  isGradEnabled,
  noGrad,
  type Node,
  OpContext,
  type OpDef,
  releaseGraph,
} from "./engine";
export {
  allocFloats,
  BufferPool,
  type BufferPoolStats,
  type MemoryStats,
  memory,
  resetPeak,
} from "./memory";
export { createRng, type Rng } from "./random";
export {
  contiguousStrides,
  fmtShape,
  full,
  keep,
  ones,
  parameter,
  rand,
  randn,
  shapeSize,
  Tensor,
  type TensorOptions,
  tensor,
  tidy,
  zeros,
} from "./tensor";
export { add, mul, neg, scale, silu, sub, exp, log, swiglu } from "./elementwise";
export { mean, sum } from "./reduce";
export { concat, permute, reshape, slice, transpose } from "./view";
export { matmul, type MatmulOptions } from "./linalg";
export { logSoftmax, logSumExpRows, rmsNorm, softmax } from "./norm";
export { attention, type AttentionOptions, rope, type RopeOptions } from "./attention";
export { embedding } from "./embedding";
export {
  crossEntropy,
  type CrossEntropyOptions,
  klDiv,
  type KlDivOptions,
  mse,
  type Reduction,
} from "./loss";
export {
  isQuantizedLinear,
  linear,
  type LinearOptions,
  type LinearWeight,
} from "./linear";
export { type FrozenLinear, frozenLinear, isFrozenLinear } from "./frozen-linear";
export { checkpoint } from "./checkpoint";
export {
  Adam,
  type AdamOptions,
  AdamW,
  clipGradNorm,
  Optimizer,
  type OptimizerState,
  SGD,
  type SgdOptions,
  scaleGrads,
} from "./optim";
export { gradCheck, type GradCheckOptions, type GradCheckResult } from "./gradcheck";
export { type FromNdarrayOptions, fromNdarray, toNdarray } from "./ndarray";
